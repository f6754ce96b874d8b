"""Weight formats: bytes per parameter, which tensors each format shrinks, and per-GPU shards.

Quantized formats shrink the linear layers only. Embeddings, lm_head, norms, the MoE router
and a vision tower stay in the activation dtype, which is why an FP8 8B model is 8.5 GiB and
not 7.5. Group-wise 4-bit formats also store one scale per group, so "4 bit" costs a little more
than half a byte.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sizing.checkpoint import CheckpointWeights, role_bytes
from sizing.errors import InvalidInput
from sizing.model import ModelArch
from sizing.precision import CAVEATS

DTYPE_BYTES = {"float32": 4.0, "bfloat16": 2.0, "float16": 2.0}
KV_CACHE_DTYPES = ("auto", "fp8", "fp8_e4m3", "fp8_e5m2")


@dataclass(frozen=True)
class WeightFormat:
    name: str
    bits: int
    scale_bytes_per_group: float  # scales (and zero points) stored per group of weights
    experts_only: bool = False  # the format quantizes only the routed experts

    def bytes_per_param(self, group_size: int) -> float:
        return self.bits / 8 + self.scale_bytes_per_group / group_size


# Per-channel 8-bit scales are one float per output row: negligible, so left out.
FORMATS: dict[str, WeightFormat] = {
    "fp8": WeightFormat("fp8", 8, 0.0),
    "int8": WeightFormat("int8", 8, 0.0),
    "int4": WeightFormat("int4", 4, 2.0),  # 16-bit scale per group (compressed-tensors W4A16)
    "gptq": WeightFormat("gptq", 4, 2.5),  # 16-bit scale + packed 4-bit zero per group
    "awq": WeightFormat("awq", 4, 2.5),
    "mxfp4": WeightFormat("mxfp4", 4, 1.0, experts_only=True),  # 8-bit shared exponent / 32
    "nvfp4": WeightFormat("nvfp4", 4, 1.0),  # FP8 (E4M3) scale per 16 (+ one FP32 per tensor)
    "bnb4": WeightFormat("bnb4", 4, 1.0),  # NF4 with double-quantized absmax per 64
}
QUANTIZATIONS = ("none", *FORMATS)
_GROUP_SIZE = {"mxfp4": 32, "nvfp4": 16, "bnb4": 64}
_FOUR_BIT = {"int4", "gptq", "awq"}  # the same packed int4 kernels in vLLM
# vLLM's MXFP4 MoE kernels pad each rank's expert intermediate size up to a multiple of this.
_MXFP4_PAD = 256


def dtype_bytes(dtype: str, arch: ModelArch) -> float:
    """Bytes of one 16/32-bit value. `auto` serves the checkpoint's dtype, except that vLLM
    serves float32 checkpoints in bfloat16."""
    name = arch.checkpoint_dtype if dtype == "auto" else dtype
    if name == "float32" and dtype == "auto":
        name = "bfloat16"
    if name not in DTYPE_BYTES:
        raise InvalidInput(f"dtype: {dtype!r} is not one of auto, {', '.join(DTYPE_BYTES)}")
    return DTYPE_BYTES[name]


def kv_dtype_bytes(kv_cache_dtype: str, dtype: str, arch: ModelArch) -> float:
    if kv_cache_dtype not in KV_CACHE_DTYPES:
        raise InvalidInput(
            f"kv_cache_dtype: {kv_cache_dtype!r} is not one of {', '.join(KV_CACHE_DTYPES)}"
        )
    return dtype_bytes(dtype, arch) if kv_cache_dtype == "auto" else 1.0


def effective_format(arch: ModelArch, quantization: str) -> WeightFormat | None:
    """The weight format actually served: `none` means the checkpoint as it is.

    A pre-quantized checkpoint cannot be re-quantized into another format by vLLM, so asking
    for one is an input error rather than a silent guess.
    """
    if quantization not in QUANTIZATIONS:
        raise InvalidInput(
            f"quantization: {quantization!r} is not one of {', '.join(QUANTIZATIONS)}"
        )
    checkpoint = arch.checkpoint_quantization
    if quantization == "none":
        return FORMATS[checkpoint] if checkpoint else None
    if checkpoint and checkpoint != quantization:
        if not (checkpoint in _FOUR_BIT and quantization in _FOUR_BIT):
            raise InvalidInput(
                f"quantization: the checkpoint is already {checkpoint}; use none (serve it as "
                f"is) instead of {quantization}, or start from a 16-bit checkpoint"
            )
        return FORMATS[checkpoint]
    return FORMATS[quantization]


def _weight_bytes(arch: ModelArch, quantization: str, dtype: str, tp: int = 1) -> tuple[
        float, float, float, float, float]:  # fmt: skip
    """(all layers' linear bytes, norms+router bytes, embedding, lm_head, other) for the model,
    as loaded at this TP (padding included)."""
    fmt = effective_format(arch, quantization)
    wide = dtype_bytes(dtype, arch)
    p = arch.params
    experts: float = p.routed_experts
    dense_linear = p.attention + p.dense_mlp + p.shared_experts
    group = _GROUP_SIZE.get(fmt.name, arch.quantization_group_size) if fmt else 0
    narrow = fmt.bytes_per_param(group) if fmt else wide
    experts_only = fmt is not None and (fmt.experts_only or arch.quantized_experts_only)
    experts *= _expert_padding(arch, tp, fmt.name if fmt else None)
    if experts_only and arch.is_moe:
        linear = experts * narrow + dense_linear * wide
    else:
        linear = (experts + dense_linear) * narrow
    lm_head = p.lm_head * wide
    return linear, (p.norms + p.router) * wide, p.embedding * wide, lm_head, p.other * wide


def served_as_stored(arch: ModelArch, quantization: str) -> CheckpointWeights | None:
    """The checkpoint's header summary when vLLM serves its tensors as stored (no runtime
    quantization), else None: then the bytes come from the parameter counts."""
    if arch.checkpoint is None:
        return None
    fmt = effective_format(arch, quantization)
    stored = FORMATS.get(arch.checkpoint_quantization or "")
    return arch.checkpoint if fmt is stored else None


def weights_bytes(arch: ModelArch, quantization: str = "none", dtype: str = "auto") -> float:
    """Bytes of all weights of the model in this format, before any sharding."""
    exact = served_as_stored(arch, quantization)
    if exact is not None:
        wide = dtype_bytes(dtype, arch)
        roles = (*exact.layer_sharded, *exact.layer_experts, *exact.layer_replicated,
                 exact.embedding, exact.lm_head, exact.encoder, exact.final)  # fmt: skip
        return sum(role_bytes(role, wide) for role in roles)
    return sum(_weight_bytes(arch, quantization, dtype))


def _expert_padding(arch: ModelArch, tp: int, format_name: str | None) -> float:
    """How much vLLM's MXFP4 MoE kernels grow the routed experts: each rank's expert
    intermediate size is padded up to a multiple of 256."""
    if format_name != "mxfp4" or not arch.is_moe:
        return 1.0
    per_rank = arch.moe_intermediate_size / tp
    return math.ceil(per_rank / _MXFP4_PAD) * _MXFP4_PAD / per_rank


def _stored_stage_bytes(
    arch: ModelArch, weights: CheckpointWeights, wide: float, layers: tuple[int, ...], tp: int
) -> tuple[float, ...]:
    """Per-stage bytes on one GPU from the header: whole layers per stage, linear tensors
    split over TP (experts padded as the MXFP4 kernels pad them), norms and router
    replicated; embedding and encoder on the first stage, lm_head (a copy of the embedding
    when tied and PP > 1) and the final norm on the last."""
    padding = _expert_padding(arch, tp, arch.checkpoint_quantization)
    lm_head = weights.lm_head
    if lm_head == (0, 0) and len(layers) > 1:
        lm_head = weights.embedding
    stages, start = [], 0
    for i, count in enumerate(layers):
        span = range(start, start + count)
        start += count
        shard = sum(role_bytes(weights.layer_sharded[j], wide) / tp for j in span)
        shard += sum(role_bytes(weights.layer_experts[j], wide) * padding / tp for j in span)
        shard += sum(role_bytes(weights.layer_replicated[j], wide) for j in span)
        if i == 0:
            shard += (role_bytes(weights.embedding, wide) + role_bytes(weights.encoder, wide)) / tp
        if i == len(layers) - 1:
            shard += role_bytes(lm_head, wide) / tp + role_bytes(weights.final, wide)
        stages.append(shard)
    return tuple(stages)


def stage_weights_bytes(
    arch: ModelArch, quantization: str, dtype: str, tp: int = 1, pp: int = 1
) -> tuple[float, ...]:
    """Weight bytes on one GPU of each pipeline stage.

    Tensor parallelism splits the linear layers and the (vocab-parallel) embedding and lm_head;
    norms and the router are replicated. Under pipeline parallelism the first stage holds the
    embedding and any vision tower, the last holds lm_head (its own copy even when tied).
    """
    layers = arch.stage_layer_counts(pp)
    exact = served_as_stored(arch, quantization)
    if exact is not None:
        return _stored_stage_bytes(arch, exact, dtype_bytes(dtype, arch), layers, tp)
    linear, replicated, embedding, lm_head, other = _weight_bytes(arch, quantization, dtype, tp)
    if lm_head == 0 and pp > 1:
        lm_head = embedding
    per_layer = linear / arch.num_layers / tp + replicated / arch.num_layers
    stages = []
    for i, count in enumerate(layers):
        shard = count * per_layer
        if i == 0:
            shard += embedding / tp + other / tp
        if i == pp - 1:
            shard += lm_head / tp
        stages.append(shard)
    return tuple(stages)


def mtp_weights_bytes(arch: ModelArch, quantization: str, dtype: str, tp: int = 1) -> float:
    """Bytes on one GPU of the MTP modules vLLM loads for MTP speculative decoding.

    From the headers when the checkpoint is served as stored (the MTP tensors but their copies
    of the embedding and head, which the drafter shares); otherwise each module is a decoder
    layer the size of the model's average one plus the projection of [embedding; hidden] back
    to the hidden size (2 h^2 in the model dtype), split over TP.
    """
    layers = arch.mtp_layers or 1
    exact = served_as_stored(arch, quantization)
    if exact is not None and exact.mtp != (0, 0):
        return role_bytes(exact.mtp, dtype_bytes(dtype, arch)) / tp
    linear, replicated, *_ = _weight_bytes(arch, quantization, dtype, tp)
    projection = 2 * arch.hidden_size**2 * dtype_bytes(dtype, arch)
    per_layer = (linear + projection * arch.num_layers) / arch.num_layers / tp
    return layers * (per_layer + replicated / arch.num_layers)


def weights_bytes_per_gpu(
    arch: ModelArch, quantization: str, dtype: str, tp: int = 1, pp: int = 1
) -> float:
    """The heaviest GPU's share of the weights."""
    return max(stage_weights_bytes(arch, quantization, dtype, tp, pp))


def quality_caveat(quantization: str, arch: ModelArch | None = None) -> str:
    """What serving this format costs in quality, for the planner to print beside the choice."""
    fmt = effective_format(arch, quantization) if arch is not None else FORMATS.get(quantization)
    key = fmt.name if fmt else "none"
    if key not in CAVEATS:
        raise InvalidInput(f"quantization: {quantization!r} has no known quality caveat")
    return CAVEATS[key]
