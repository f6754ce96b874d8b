"""Safetensors headers for tests: the tensor list a Hugging Face Llama-style checkpoint has.

Real checkpoints are gigabytes; a header is all the sizing reads, so tests build the header a
checkpoint of a given config.json would have (names and shapes as `transformers` writes them)
and serve or parse only that.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

Tensor = tuple[str, str, tuple[int, ...]]  # name, safetensors dtype, shape
_ELEMENT_BYTES = {"F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "U8": 1, "I8": 1, "I32": 4}


def dense_decoder_tensors(config: Mapping[str, Any], dtype: str = "BF16") -> list[Tensor]:
    """Every tensor of a dense gated-MLP decoder (Llama, Qwen, Mistral layout)."""
    hidden, inter = int(config["hidden_size"]), int(config["intermediate_size"])
    heads = int(config["num_attention_heads"])
    kv_heads = int(config.get("num_key_value_heads") or heads)
    head_dim = int(config.get("head_dim") or hidden // heads)
    vocab, layers = int(config["vocab_size"]), int(config["num_hidden_layers"])
    tensors: list[Tensor] = [("model.embed_tokens.weight", dtype, (vocab, hidden))]
    for i in range(layers):
        p = f"model.layers.{i}."
        tensors += [
            (p + "self_attn.q_proj.weight", dtype, (heads * head_dim, hidden)),
            (p + "self_attn.k_proj.weight", dtype, (kv_heads * head_dim, hidden)),
            (p + "self_attn.v_proj.weight", dtype, (kv_heads * head_dim, hidden)),
            (p + "self_attn.o_proj.weight", dtype, (hidden, heads * head_dim)),
            (p + "mlp.gate_proj.weight", dtype, (inter, hidden)),
            (p + "mlp.up_proj.weight", dtype, (inter, hidden)),
            (p + "mlp.down_proj.weight", dtype, (hidden, inter)),
            (p + "input_layernorm.weight", dtype, (hidden,)),
            (p + "post_attention_layernorm.weight", dtype, (hidden,)),
        ]
    tensors.append(("model.norm.weight", dtype, (hidden,)))
    if not config.get("tie_word_embeddings"):
        tensors.append(("lm_head.weight", dtype, (vocab, hidden)))
    return tensors


def safetensors_header(
    tensors: Iterable[Tensor], metadata: Mapping[str, str] | None = None
) -> bytes:
    """The first bytes of a safetensors file holding `tensors`: the 8-byte length and the JSON
    header (data offsets laid end to end, as the format requires)."""
    header: dict[str, Any] = {"__metadata__": dict(metadata or {"format": "pt"})}
    offset = 0
    for name, dtype, shape in tensors:
        size = _ELEMENT_BYTES[dtype]
        for dim in shape:
            size *= dim
        header[name] = {
            "dtype": dtype,
            "shape": list(shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # writers pad the header to 8 bytes
    return len(raw).to_bytes(8, "little") + raw


def data_bytes(header: bytes) -> int:
    """How many data bytes follow a header built by `safetensors_header`."""
    length = int.from_bytes(header[:8], "little")
    entries = json.loads(header[8 : 8 + length])
    return max((e["data_offsets"][1] for k, e in entries.items() if k != "__metadata__"), default=0)
