"""Exact weight bytes from safetensors headers: what each tensor costs once vLLM has loaded it.

A safetensors file starts with an 8-byte little-endian length N and N bytes of JSON naming every
tensor's dtype, shape and byte range. That is enough to count a checkpoint as it is loaded:
packed 4/8-bit weights and their scales keep their stored bytes, 16/32-bit tensors take the
served dtype, a vision tower or audio encoder is counted where vLLM puts it, and tensors vLLM
skips (multi-token-prediction heads past the last decoder layer) are counted apart. Bytes that
were read elsewhere (the Hub adapter reads and decodes them) are checked and sorted here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sizing.errors import InvalidInput

# Bytes per element of the dtypes safetensors names (F4 etc. are packed below one byte).
ELEMENT_BYTES = {
    "F64": 8.0, "I64": 8.0, "U64": 8.0, "F32": 4.0, "I32": 4.0, "U32": 4.0,
    "F16": 2.0, "BF16": 2.0, "I16": 2.0, "U16": 2.0, "I8": 1.0, "U8": 1.0, "BOOL": 1.0,
    "F8_E4M3": 1.0, "F8_E5M2": 1.0, "F8_E8M0": 1.0, "F6_E2M3": 0.75, "F6_E3M2": 0.75, "F4": 0.5,
}  # fmt: skip
# 16/32-bit floats vLLM converts to the served dtype; everything else is kept as stored.
FLOAT_DTYPES = frozenset({"F16", "BF16", "F32", "F64"})
# Quantization side tensors kept as stored whatever their dtype (scales, zero points, indices).
_KEPT_SUFFIXES = ("scale", "scales", "scale_inv", "zeros", "qzeros", "g_idx", "zero_point",
                  "input_scale", "weight_shape", "absmax", "quant_map", "quant_state")  # fmt: skip
_ENCODER_WORDS = ("vision", "visual", "multi_modal_projector", "mm_projector", "image_newline",
                  "audio", "speech", "patch_embed", "img_", "siglip")  # fmt: skip
_MTP = re.compile(r"(^|\.)mtp(s|_layers|_block)?(\.|_)")
_LAYER = re.compile(r"(?:^|\.)(?:layers|h|blocks|block)\.(\d+)\.")
_EMBEDDING = re.compile(
    r"(^|\.)(embed_tokens|wte|word_embeddings|tok_embeddings|embedding|embed_in)\.weight$"
)
_LM_HEAD = re.compile(r"(^|\.)(lm_head|unembedding|embed_out)\.|^output\.weight$")
# Inside a decoder layer these are replicated on every TP rank (norms, the MoE router).
_ROUTED_EXPERTS = re.compile(r"\.experts\.")
_REPLICATED = re.compile(r"norm|(^|\.)ln_|\.gate\.weight$|\.router\.|e_score_correction_bias")


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of a safetensors header."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    stored_bytes: int

    @property
    def elements(self) -> int:
        count = 1
        for dim in self.shape:
            count *= dim
        return count

    @property
    def converted(self) -> bool:
        """True when vLLM casts this tensor to the served dtype (16/32-bit, not a scale)."""
        return self.dtype in FLOAT_DTYPES and not self.name.endswith(_KEPT_SUFFIXES)


def _tensor(name: str, entry: object) -> TensorInfo:
    if not isinstance(entry, dict):
        raise InvalidInput(f"safetensors: tensor {name!r} is not an object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in ELEMENT_BYTES:
        raise InvalidInput(
            f"safetensors: tensor {name!r} has dtype {dtype!r}, not one of "
            f"{', '.join(ELEMENT_BYTES)}"
        )
    ok_shape = isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)
    ok_offsets = (
        isinstance(offsets, list)
        and len(offsets) == 2
        and all(isinstance(o, int) for o in offsets)
        and 0 <= offsets[0] <= offsets[1]
    )
    if not ok_shape or not ok_offsets:
        raise InvalidInput(
            f"safetensors: tensor {name!r} needs a shape of non-negative integers and "
            f"data_offsets [start, end], got {shape!r} and {offsets!r}"
        )
    assert isinstance(shape, list) and isinstance(offsets, list)
    info = TensorInfo(name, str(dtype), tuple(shape), offsets[1] - offsets[0])
    expected = info.elements * ELEMENT_BYTES[info.dtype]
    if abs(info.stored_bytes - expected) > 1:
        raise InvalidInput(
            f"safetensors: tensor {name!r} spans {info.stored_bytes} bytes, but {dtype} "
            f"x {list(shape)} is {expected:.0f}"
        )
    return info


def tensors_from_header(decoded: Mapping[str, object]) -> tuple[TensorInfo, ...]:
    """Every tensor of one decoded header (the JSON after the 8-byte length), each checked:
    dtype known, shape non-negative, bytes matching the shape."""
    return tuple(_tensor(k, v) for k, v in decoded.items() if k != "__metadata__")


@dataclass(frozen=True)
class CheckpointWeights:
    """A checkpoint's loaded weights by where vLLM places them.

    Each role is (elements cast to the served dtype, bytes kept as stored), so the same header
    answers for --dtype bfloat16 or float16. Decoder layers are listed one by one because
    pipeline stages take whole layers and MoE, dense and hybrid layers differ in size.
    """

    layer_sharded: tuple[tuple[int, int], ...]  # per decoder layer: split across TP ranks
    layer_experts: tuple[tuple[int, int], ...]  # per decoder layer: routed experts (also split)
    layer_replicated: tuple[tuple[int, int], ...]  # per decoder layer: norms, router
    embedding: tuple[int, int]
    lm_head: tuple[int, int]  # (0, 0) when tied to the embedding
    encoder: tuple[int, int]  # vision/audio towers and their projectors
    final: tuple[int, int]  # outside the layers: final norm and the like (last stage)
    skipped_bytes: int  # stored but not loaded by vLLM (MTP heads unless MTP decoding is on)
    stored_bytes: int  # every tensor of every shard, as on disk
    stored_bytes_by_dtype: tuple[tuple[str, int], ...]
    float_elements: int  # loaded 16/32-bit elements (parameters when nothing is packed)
    packed: bool  # some loaded weights are stored below 16 bit
    mtp: tuple[int, int] = (0, 0)  # MTP modules, loaded for MTP speculative decoding only

    @property
    def num_layers(self) -> int:
        return len(self.layer_sharded)


def _add(acc: dict[str, list[int]], role: str, tensor: TensorInfo) -> None:
    pair = acc.setdefault(role, [0, 0])
    if tensor.converted:
        pair[0] += tensor.elements
    else:
        pair[1] += tensor.stored_bytes


def _mtp_role(lowered: str) -> str:
    """An MTP module's tensor: loaded only for MTP speculative decoding, except its copies of
    the vocabulary embedding and head, which vLLM's drafter shares with the model."""
    if _EMBEDDING.search(lowered) or _LM_HEAD.search(lowered) or ".shared_head.head." in lowered:
        return "skip"
    return "mtp"


def _role(name: str, num_layers: int) -> str:
    """Where a tensor goes: encoder, mtp, skip, embedding, lm_head, L<i>s / L<i>r, or final."""
    lowered = name.lower()
    if "mtp" in lowered and _MTP.search(lowered):
        return _mtp_role(lowered)
    if any(word in lowered for word in _ENCODER_WORDS):
        return "encoder"
    match = _LAYER.search(lowered)
    if match is not None and int(match[1]) >= num_layers:
        return _mtp_role(lowered)  # DeepSeek-V3 / GLM keep their MTP head as one extra layer
    if _EMBEDDING.search(lowered):
        return "embedding"
    if _LM_HEAD.search(lowered):
        return "lm_head"
    if lowered.endswith("rotary_emb.inv_freq"):
        return "skip"  # a buffer vLLM recomputes
    if match is None:
        return "final"
    index = int(match[1])
    if _REPLICATED.search(lowered):
        return f"L{index}r"
    return f"L{index}{'e' if _ROUTED_EXPERTS.search(lowered) else 's'}"


def summarize(tensors: Iterable[TensorInfo], num_layers: int) -> CheckpointWeights:
    """Sort every tensor of all shards into the roles of `CheckpointWeights`."""
    if num_layers < 1:
        raise InvalidInput(f"num_layers: {num_layers} must be at least 1")
    acc: dict[str, list[int]] = {}
    by_dtype: dict[str, int] = {}
    stored = skipped = float_elements = 0
    packed = False
    names: set[str] = set()
    for tensor in tensors:
        if tensor.name in names:
            raise InvalidInput(f"safetensors: tensor {tensor.name!r} appears in two shards")
        names.add(tensor.name)
        stored += tensor.stored_bytes
        by_dtype[tensor.dtype] = by_dtype.get(tensor.dtype, 0) + tensor.stored_bytes
        role = _role(tensor.name, num_layers)
        if role in ("skip", "mtp"):
            skipped += tensor.stored_bytes
            if role == "mtp":
                _add(acc, role, tensor)
            continue
        _add(acc, role, tensor)
        if tensor.converted:
            float_elements += tensor.elements
        elif not tensor.name.endswith(_KEPT_SUFFIXES):
            packed = True
    if not names:
        raise InvalidInput("safetensors: the checkpoint has no tensors")

    def pair(role: str) -> tuple[int, int]:
        found = acc.get(role, [0, 0])
        return found[0], found[1]

    return CheckpointWeights(
        layer_sharded=tuple(pair(f"L{i}s") for i in range(num_layers)),
        layer_experts=tuple(pair(f"L{i}e") for i in range(num_layers)),
        layer_replicated=tuple(pair(f"L{i}r") for i in range(num_layers)),
        embedding=pair("embedding"),
        lm_head=pair("lm_head"),
        encoder=pair("encoder"),
        final=pair("final"),
        skipped_bytes=skipped,
        stored_bytes=stored,
        stored_bytes_by_dtype=tuple(sorted(by_dtype.items())),
        float_elements=float_elements,
        packed=packed,
        mtp=pair("mtp"),
    )


def role_bytes(role: tuple[int, int], served_bytes: float) -> float:
    """Loaded bytes of one role when 16/32-bit tensors are served at `served_bytes` each."""
    return role[0] * served_bytes + role[1]


def weight_map_files(index: Mapping[str, object]) -> tuple[str, ...]:
    """The shard files a `model.safetensors.index.json` names, each once, in order."""
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise InvalidInput("model.safetensors.index.json: 'weight_map' must be a non-empty object")
    files = dict.fromkeys(str(f) for f in weight_map.values())
    bad = [f for f in files if not f.endswith(".safetensors") or "/" in f or f.startswith(".")]
    if bad:
        raise InvalidInput(
            f"model.safetensors.index.json: shard {bad[0]!r} is not a plain *.safetensors name"
        )
    return tuple(files)
