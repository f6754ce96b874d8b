"""sizing.validate_config: a config.json that cannot describe a model is refused by key path."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from sizing.errors import InvalidInput
from sizing.model import load_model_config
from tests.conftest import CALIBRATION

CONFIGS = CALIBRATION / "model_configs"
Mutation = Callable[[dict[str, Any]], object]


def _raw(name: str) -> dict[str, Any]:
    return json.loads((CONFIGS / f"{name}.json").read_text())


def _set(**values: object) -> Mutation:
    return lambda c: c.update(values)


DENSE_CASES: list[tuple[Mutation, str]] = [
    (_set(num_key_value_heads=0), "num_key_value_heads"),
    (_set(num_key_value_heads=5), "num_key_value_heads"),  # 32 heads: not a GQA grouping
    (_set(num_key_value_heads=64), "num_key_value_heads"),  # more KV heads than heads
    (_set(head_dim=0), "head_dim"),
    (_set(num_attention_heads=8192, num_key_value_heads=8), "num_attention_heads"),
    (_set(num_attention_heads=5000, num_key_value_heads=8), "num_attention_heads"),
    (lambda c: c.update(head_dim=None, num_attention_heads=48), "num_attention_heads"),
    (_set(hidden_size=10**12), "hidden_size"),
    (_set(num_hidden_layers=True), "num_hidden_layers"),
    (_set(vocab_size=2**40), "vocab_size"),
    (_set(max_position_embeddings=10**15), "max_position_embeddings"),
    (_set(mlp_only_layers=5), "mlp_only_layers"),
    (_set(mlp_only_layers=[0, 32]), "mlp_only_layers"),
    (_set(mlp_only_layers=[[1]]), "mlp_only_layers"),
    (_set(layer_types=7), "layer_types"),
    (_set(layer_types=["full_attention"] * 3), "layer_types"),
    (_set(sliding_window="wide"), "sliding_window"),
    (_set(total_params_b=float("inf")), "total_params_b"),
    (_set(total_params_b=1e9), "total_params_b"),
    (_set(quantization_config=5), "quantization_config"),
    (_set(quantization_config={"quant_method": 4}), "quantization_config.quant_method"),
    (_set(quantization_config={"quant_method": "gptq", "bits": "x"}), "quantization_config.bits"),
    (
        _set(quantization_config={"quant_method": "awq", "group_size": 0}),
        "quantization_config.group_size",
    ),
    (
        _set(quantization_config={"quant_method": "fp8", "ignore": "lm_head"}),
        "quantization_config.ignore",
    ),
    (
        _set(quantization_config={"quant_method": "compressed-tensors", "config_groups": {"g": 5}}),
        "quantization_config.config_groups.g",
    ),
    (
        _set(
            quantization_config={
                "quant_method": "compressed-tensors",
                "config_groups": {"g": {"weights": {"num_bits": "8"}}},
            }
        ),
        "quantization_config.config_groups.g.weights.num_bits",
    ),
    (_set(text_config=3), "text_config"),
]


@pytest.mark.parametrize(("mutate", "key"), DENSE_CASES)
def test_impossible_dense_config_names_the_key(mutate: Mutation, key: str) -> None:
    raw = _raw("meta-llama--Llama-3.1-8B-Instruct")
    mutate(raw)
    with pytest.raises(InvalidInput) as caught:
        load_model_config(raw)
    assert caught.value.field == f"config.json:{key}"
    assert key.rsplit(".", 1)[-1] in str(caught.value)


MOE_CASES: list[tuple[Mutation, str]] = [
    (_set(num_experts_per_tok=500), "num_experts_per_tok"),
    (_set(decoder_sparse_step=10_000), "decoder_sparse_step"),
    (_set(mlp_only_layers=[-1]), "mlp_only_layers"),
]


@pytest.mark.parametrize(("mutate", "key"), MOE_CASES)
def test_impossible_moe_config_names_the_key(mutate: Mutation, key: str) -> None:
    raw = _raw("Qwen--Qwen3-235B-A22B-FP8")
    mutate(raw)
    with pytest.raises(InvalidInput) as caught:
        load_model_config(raw)
    assert caught.value.field == f"config.json:{key}"


def test_the_key_inside_text_config_is_named_with_its_prefix() -> None:
    raw = _raw("mistralai--Mistral-Small-3.1-24B-Instruct-2503")
    raw["text_config"]["head_dim"] = 0
    with pytest.raises(InvalidInput) as caught:
        load_model_config(raw)
    assert caught.value.field == "config.json:text_config.head_dim"


def test_every_calibration_config_passes() -> None:
    """The bounds stop numbers no checkpoint has, not the checkpoints we know."""
    configs = sorted(CONFIGS.glob("*.json"))
    assert len(configs) > 20
    for path in configs:
        load_model_config(json.loads(path.read_text()))


def test_gptq_per_channel_group_size_is_accepted() -> None:
    raw = _raw("meta-llama--Llama-3.1-8B-Instruct")
    raw["quantization_config"] = {"quant_method": "gptq", "bits": 4, "group_size": -1}
    assert load_model_config(raw).checkpoint_quantization == "gptq"
