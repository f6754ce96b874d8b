"""Semantic checks of a Hugging Face config.json before the shapes are turned into bytes.

The parser in `sizing.model` reads keys; this module makes sure the numbers describe a model
that can exist: KV heads that divide the query heads, a head size that the hidden size allows,
layer lists inside the layer count, a `quantization_config` of the documented shape, sizes
below bounds far beyond any published model. A config that fails raises `InvalidInput` with
the key path in `field` (`config.json:text_config.head_dim`), never an arithmetic error later.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from sizing.errors import InvalidInput

# (smallest, largest) accepted value per integer key. The upper bounds are one to two orders of
# magnitude above the largest published models (hidden 16k-25k, 128k-256k vocab, 10M context,
# 384 experts), so they only stop numbers no checkpoint has, which would overflow the sizing.
INT_BOUNDS: dict[str, tuple[int, int]] = {
    "hidden_size": (1, 2**18),
    "num_hidden_layers": (1, 4096),
    "num_attention_heads": (1, 4096),
    "num_key_value_heads": (1, 4096),
    "head_dim": (1, 4096),
    "vocab_size": (1, 2**24),
    "intermediate_size": (0, 2**21),
    "moe_intermediate_size": (0, 2**21),
    "shared_expert_intermediate_size": (0, 2**21),
    "max_position_embeddings": (1, 2**28),
    "num_local_experts": (0, 4096),
    "num_experts": (0, 4096),
    "n_routed_experts": (0, 4096),
    "num_experts_per_tok": (0, 4096),
    "n_shared_experts": (0, 4096),
    "first_k_dense_replace": (0, 4096),
    "decoder_sparse_step": (0, 4096),
    "kv_lora_rank": (0, 2**16),
    "q_lora_rank": (0, 2**16),
    "qk_rope_head_dim": (0, 4096),
    "qk_nope_head_dim": (0, 4096),
    "v_head_dim": (0, 4096),
}
MAX_TOTAL_PARAMS_B = 100_000.0  # 100 T parameters
_EXPERT_COUNT_KEYS = ("num_local_experts", "num_experts", "n_routed_experts")


def _fail(key: str, message: str) -> InvalidInput:
    return InvalidInput(f"config.json: {key}: {message}", field=f"config.json:{key}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _ints(cfg: Mapping[str, Any], where: str) -> dict[str, int]:
    """The integer keys that are set, each checked against its bounds."""
    found: dict[str, int] = {}
    for key, (low, high) in INT_BOUNDS.items():
        value = cfg.get(key)
        if value is None:
            continue
        if not _is_int(value):
            raise _fail(where + key, f"must be an integer, got {value!r}")
        if not low <= value <= high:
            raise _fail(where + key, f"{value} is outside [{low}, {high}]")
        found[key] = value
    return found


def _check_heads(n: Mapping[str, int], where: str) -> None:
    hidden = n.get("hidden_size")
    heads = n.get("num_attention_heads")
    kv_heads = n.get("num_key_value_heads")
    if hidden is None or heads is None:
        return  # the parser reports the missing key
    if heads > hidden:
        raise _fail(
            where + "num_attention_heads",
            f"{heads} heads is more than hidden_size {hidden}",
        )
    if "head_dim" not in n and hidden % heads:
        raise _fail(
            where + "num_attention_heads",
            f"{heads} does not divide hidden_size {hidden}; set head_dim explicitly",
        )
    if kv_heads is not None and (kv_heads > heads or heads % kv_heads):
        raise _fail(
            where + "num_key_value_heads",
            f"{kv_heads} must divide num_attention_heads {heads} (grouped-query attention)",
        )


def _check_experts(n: Mapping[str, int], where: str) -> None:
    experts = next((n[k] for k in _EXPERT_COUNT_KEYS if n.get(k)), 0)
    top_k = n.get("num_experts_per_tok", 0)
    if experts and top_k > experts:
        raise _fail(
            where + "num_experts_per_tok", f"{top_k} is more than the {experts} routed experts"
        )
    layers = n.get("num_hidden_layers")
    if layers is None:
        return
    for key in ("first_k_dense_replace", "decoder_sparse_step"):
        if n.get(key, 0) > layers:
            raise _fail(where + key, f"{n[key]} is more than num_hidden_layers {layers}")


def _check_layer_lists(cfg: Mapping[str, Any], layers: int | None, where: str) -> None:
    only = cfg.get("mlp_only_layers")
    if only is not None:
        if not isinstance(only, list) or not all(_is_int(i) for i in only):
            raise _fail(where + "mlp_only_layers", f"must be a list of layer indices, got {only!r}")
        outside = [i for i in only if layers is not None and not 0 <= i < layers]
        if outside:
            raise _fail(
                where + "mlp_only_layers",
                f"indices {outside} are outside 0..{(layers or 1) - 1} (num_hidden_layers)",
            )
    types = cfg.get("layer_types")
    if types is not None:
        if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
            raise _fail(where + "layer_types", f"must be a list of strings, got {types!r}")
        if layers is not None and types and len(types) != layers:
            raise _fail(
                where + "layer_types",
                f"has {len(types)} entries for num_hidden_layers {layers}",
            )
    window = cfg.get("sliding_window")
    if window is not None and (not _is_int(window) or window < 0):
        raise _fail(where + "sliding_window", f"must be a non-negative integer, got {window!r}")


def _optional_int(qc: Mapping[str, Any], key: str, low: int, high: int, path: str) -> None:
    value = qc.get(key)
    if value is None:
        return
    if not _is_int(value) or not (low <= value <= high or (key == "group_size" and value == -1)):
        raise _fail(f"{path}.{key}", f"must be an integer in [{low}, {high}], got {value!r}")


def check_quantization_config(qc: Any, path: str = "quantization_config") -> None:
    """The documented shape: an object with a string `quant_method`, integer bits and group
    sizes (-1 = one group per channel, as GPTQ writes it), lists of skipped modules, and for
    compressed-tensors `config_groups` of objects whose `weights` are objects."""
    if qc is None or qc == {}:
        return
    if not isinstance(qc, dict):
        raise _fail(path, f"must be an object, got {qc!r}")
    method = qc.get("quant_method")
    if method is not None and not isinstance(method, str):
        raise _fail(f"{path}.quant_method", f"must be a string, got {method!r}")
    _optional_int(qc, "bits", 1, 16, path)
    _optional_int(qc, "group_size", 1, 2**20, path)
    for key in ("ignore", "modules_to_not_convert"):
        skipped = qc.get(key)
        if skipped is not None and not isinstance(skipped, list):
            raise _fail(f"{path}.{key}", f"must be a list of module names, got {skipped!r}")
    groups = qc.get("config_groups")
    if groups is None:
        return
    if not isinstance(groups, dict):
        raise _fail(f"{path}.config_groups", f"must be an object, got {groups!r}")
    for name, group in groups.items():
        where = f"{path}.config_groups.{name}"
        if not isinstance(group, dict):
            raise _fail(where, f"must be an object, got {group!r}")
        weights = group.get("weights")
        if weights is None:
            continue
        if not isinstance(weights, dict):
            raise _fail(f"{where}.weights", f"must be an object, got {weights!r}")
        _optional_int(weights, "num_bits", 1, 16, f"{where}.weights")
        _optional_int(weights, "group_size", 1, 2**20, f"{where}.weights")
        kind = weights.get("type")
        if kind is not None and not isinstance(kind, str):
            raise _fail(f"{where}.weights.type", f"must be a string, got {kind!r}")


def check_params_b(value: Any, field: str) -> float:
    """A stated parameter count in billions: a positive, finite number below 100 T."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or not 0 < value <= MAX_TOTAL_PARAMS_B:
        raise InvalidInput(
            f"{field}: {value!r} must be a positive number of billions up to "
            f"{MAX_TOTAL_PARAMS_B:,.0f}",
            field=field,
        )
    return float(value)


def check_model_config(config: Mapping[str, Any]) -> None:
    """Raise `InvalidInput` naming the key when the config cannot describe a real model.

    `config` is the whole decoded config.json; a multimodal model's language part lives under
    `text_config` (or `llm_config`) and is checked there.
    """
    for key in ("text_config", "llm_config"):
        inner = config.get(key)
        if inner is not None and not isinstance(inner, dict):
            raise _fail(key, f"must be an object, got {inner!r}")
    text = config.get("text_config") or config.get("llm_config")
    where = "text_config." if text else ""
    cfg: Mapping[str, Any] = text if isinstance(text, dict) else config
    numbers = _ints(cfg, where)
    _check_heads(numbers, where)
    _check_experts(numbers, where)
    _check_layer_lists(cfg, numbers.get("num_hidden_layers"), where)
    check_quantization_config(config.get("quantization_config"))
    if config.get("total_params_b") is not None:
        check_params_b(config["total_params_b"], "config.json:total_params_b")
