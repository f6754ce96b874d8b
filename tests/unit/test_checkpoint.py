"""sizing.checkpoint: safetensors headers to exact loaded weight bytes."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from inferfleet_testing.checkpoints import dense_decoder_tensors, safetensors_header
from sizing.checkpoint import (
    TensorInfo,
    summarize,
    tensors_from_header,
    weight_map_files,
)
from sizing.errors import InvalidInput
from sizing.hardware import get_gpu
from sizing.memory import EngineConfig, estimate_memory
from sizing.model import load_model_config, with_checkpoint
from sizing.quantization import stage_weights_bytes, weights_bytes
from tests.conftest import CALIBRATION

TINY = {
    "model_type": "llama", "hidden_size": 64, "intermediate_size": 160, "num_hidden_layers": 4,
    "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 1000,
    "max_position_embeddings": 4096, "torch_dtype": "bfloat16",
}  # fmt: skip


def _tensors(blob: bytes) -> tuple[TensorInfo, ...]:
    """A header as the Hub adapter hands it over: the JSON after the 8-byte length, decoded."""
    length = int.from_bytes(blob[:8], "little")
    return tensors_from_header(json.loads(blob[8 : 8 + length]))


def test_header_round_trip_gives_dtype_shape_and_bytes() -> None:
    blob = safetensors_header([("a.weight", "BF16", (3, 5)), ("b.scale", "F32", (3,))])
    a, b = _tensors(blob)
    assert (a.name, a.dtype, a.shape, a.stored_bytes) == ("a.weight", "BF16", (3, 5), 30)
    assert (b.stored_bytes, b.converted, a.converted) == (12, False, True)


@pytest.mark.parametrize(
    ("header", "words"),
    [
        ({"x": {"dtype": "Q3", "shape": [1], "data_offsets": [0, 1]}}, "Q3"),
        ({"x": {"dtype": "F16", "shape": [4], "data_offsets": [0, 6]}}, "spans 6 bytes"),
        ({"x": {"dtype": "F16", "shape": [-1], "data_offsets": [0, 2]}}, "non-negative"),
        ({"x": [1, 2]}, "not an object"),
    ],
)  # fmt: skip
def test_bad_headers_are_named(header: dict, words: str) -> None:
    with pytest.raises(InvalidInput, match=words):
        tensors_from_header(header)
    assert tensors_from_header({"__metadata__": {"format": "pt"}}) == ()


def test_exact_bytes_of_a_real_config_match_the_logged_weights() -> None:
    """Llama-3.1-8B in bf16 has 8,030,261,248 parameters; vLLM 0.19 logs 14.99 GiB of weights
    on H100: the tensors plus the rotary cos/sin cache (131,072 positions x 128 x 2 bytes)."""
    config = json.loads((CALIBRATION / "model_configs/meta-llama--Llama-3.1-8B-Instruct.json")
                        .read_text())  # fmt: skip
    arch = load_model_config(config)
    weights = summarize(
        _tensors(safetensors_header(dense_decoder_tensors(config))), arch.num_layers
    )
    exact = with_checkpoint(arch, weights)
    assert weights_bytes(exact) == 2 * 8_030_261_248 == 2 * exact.total_params
    memory = estimate_memory(exact, get_gpu("H100"), EngineConfig(max_model_len=8192))
    assert memory.weights_gib == pytest.approx(14.99, abs=0.005)
    # float16 serving: same elements, same bytes; float32 doubles them.
    assert weights_bytes(exact, dtype="float32") == pytest.approx(2 * weights_bytes(exact))


def test_mtp_heads_and_inv_freq_are_stored_but_not_loaded() -> None:
    base = dense_decoder_tensors(TINY)
    extra = [
        ("model.layers.4.eh_proj.weight", "BF16", (64, 128)),  # DeepSeek-style extra layer
        ("mtp.layers.0.mlp.up_proj.weight", "BF16", (160, 64)),  # Qwen3-Next-style module
        ("model.layers.0.self_attn.rotary_emb.inv_freq", "F32", (8,)),
    ]
    plain = summarize(_tensors(safetensors_header(base)), 4)
    with_mtp = summarize(_tensors(safetensors_header(base + extra)), 4)
    assert with_mtp.skipped_bytes == 2 * 64 * 128 + 2 * 160 * 64 + 4 * 8
    arch = load_model_config(TINY)
    assert weights_bytes(with_checkpoint(arch, with_mtp)) == weights_bytes(
        with_checkpoint(arch, plain)
    )


def test_packed_weights_keep_stored_bytes_and_16_bit_parts_follow_the_dtype() -> None:
    """An FP8 checkpoint: linear layers 1 byte plus F32 scales, embedding/norms/lm_head wide."""
    tensors = [
        (name, "F8_E4M3", shape) if "proj" in name else (name, dtype, shape)
        for name, dtype, shape in dense_decoder_tensors(TINY)
    ]
    tensors += [(f"model.layers.{i}.mlp.down_proj.weight_scale", "F32", (64,)) for i in range(4)]
    weights = summarize(_tensors(safetensors_header(tensors)), 4)
    assert weights.packed
    arch = with_checkpoint(load_model_config({**TINY, "quantization_config": {
        "quant_method": "fp8"}}), weights)  # fmt: skip
    linear = 4 * (64 * 64 * 2 + 2 * 32 * 64 + 3 * 160 * 64)
    wide = 2 * 1000 * 64 + (2 * 4 + 1) * 64
    assert weights_bytes(arch) == linear + 4 * 4 * 64 + 2 * wide
    assert weights_bytes(arch, dtype="float32") == linear + 4 * 4 * 64 + 4 * wide


def test_encoder_goes_to_the_first_stage() -> None:
    tensors = [
        *dense_decoder_tensors(TINY),
        ("vision_tower.encoder.layers.0.mlp.fc1.weight", "BF16", (256, 64)),
        ("multi_modal_projector.linear.weight", "BF16", (64, 64)),
    ]
    weights = summarize(_tensors(safetensors_header(tensors)), 4)
    arch = with_checkpoint(load_model_config(TINY), weights)
    assert arch.has_encoder and arch.vision_params == 256 * 64 + 64 * 64
    one, two = stage_weights_bytes(arch, "none", "auto", pp=2)
    plain = with_checkpoint(load_model_config(TINY), summarize(_tensors(safetensors_header(
        dense_decoder_tensors(TINY))), 4))  # fmt: skip
    p_one, p_two = stage_weights_bytes(plain, "none", "auto", pp=2)
    assert (one - p_one, two - p_two) == (2 * (256 * 64 + 64 * 64), 0)


@given(tp=st.sampled_from([1, 2, 4]), pp=st.integers(1, 4), tied=st.booleans())
def test_stages_add_up_to_the_model(tp: int, pp: int, tied: bool) -> None:
    """Over all GPUs the shards hold each sharded byte once and each replicated byte TP times
    (plus lm_head's copy of a tied embedding on the last stage under PP)."""
    config = {**TINY, "tie_word_embeddings": tied}
    arch = load_model_config(config)
    weights = summarize(_tensors(safetensors_header(dense_decoder_tensors(config))), 4)
    exact = with_checkpoint(arch, weights)
    replicated = sum(e for e, _ in weights.layer_replicated) * 2 + weights.final[0] * 2
    copy = 2 * 1000 * 64 if tied and pp > 1 else 0
    total = sum(stage_weights_bytes(exact, "none", "auto", tp, pp)) * tp
    assert total == pytest.approx(weights_bytes(exact) + (tp - 1) * replicated + copy)


def test_weight_map_lists_each_shard_once_and_refuses_paths() -> None:
    index = {"weight_map": {"a": "model-00001.safetensors", "b": "model-00001.safetensors",
                            "c": "model-00002.safetensors"}}  # fmt: skip
    assert weight_map_files(index) == ("model-00001.safetensors", "model-00002.safetensors")
    with pytest.raises(InvalidInput, match="plain"):
        weight_map_files({"weight_map": {"a": "../etc/passwd.safetensors"}})
    with pytest.raises(InvalidInput, match="weight_map"):
        weight_map_files({})


def test_layer_count_must_match_the_config() -> None:
    weights = summarize(_tensors(safetensors_header(dense_decoder_tensors(TINY))), 3)
    with pytest.raises(InvalidInput, match="3 decoder layers"):
        with_checkpoint(load_model_config(TINY), weights)


def _gpt_oss_tensors(config: dict) -> list[tuple[str, str, tuple[int, ...]]]:
    """gpt-oss as published: attention, router and embeddings in bf16, the routed experts as
    MXFP4 blocks (16 bytes per 32 weights) with one u8 scale per block and bf16 biases."""
    hidden, vocab, experts = (
        config["hidden_size"],
        config["vocab_size"],
        config["num_local_experts"],
    )
    q, kv = config["num_attention_heads"] * config["head_dim"], 512
    tensors = [("model.embed_tokens.weight", "BF16", (vocab, hidden))]
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        for name, rows, cols in (("q", q, hidden), ("k", kv, hidden), ("v", kv, hidden),
                                 ("o", hidden, q)):  # fmt: skip
            tensors += [(f"{p}self_attn.{name}_proj.weight", "BF16", (rows, cols)),
                        (f"{p}self_attn.{name}_proj.bias", "BF16", (rows,))]  # fmt: skip
        for proj, rows in (("gate_up_proj", 2 * hidden), ("down_proj", hidden)):
            e = f"{p}mlp.experts.{proj}"
            tensors += [(f"{e}_blocks", "U8", (experts, rows, hidden // 32, 16)),
                        (f"{e}_scales", "U8", (experts, rows, hidden // 32)),
                        (f"{e}_bias", "BF16", (experts, rows))]  # fmt: skip
        tensors += [(f"{p}self_attn.sinks", "BF16", (64,)),
                    (f"{p}input_layernorm.weight", "BF16", (hidden,)),
                    (f"{p}post_attention_layernorm.weight", "BF16", (hidden,)),
                    (f"{p}mlp.router.weight", "BF16", (experts, hidden)),
                    (f"{p}mlp.router.bias", "BF16", (experts,))]  # fmt: skip
    return [*tensors, ("model.norm.weight", "BF16", (hidden,)),
            ("lm_head.weight", "BF16", (vocab, hidden))]  # fmt: skip


@pytest.mark.parametrize(("tp", "logged_gib", "within"), [(1, 13.64, 0.02), (2, 7.01, 0.05)])
def test_mxfp4_moe_from_its_header_matches_the_logged_shard(
    tp: int, logged_gib: float, within: float
) -> None:
    """gpt-oss-20b on vLLM 0.19 / H100: packed experts as stored and padded as the MXFP4
    kernels pad them, bf16 attention kept wide (the same tolerance as the parameter count)."""
    config = json.loads((CALIBRATION / "model_configs/openai--gpt-oss-20b.json").read_text())
    arch = load_model_config(config)
    weights = summarize(_tensors(safetensors_header(_gpt_oss_tensors(config))), arch.num_layers)
    assert weights.packed and sum(e for _, e in weights.layer_experts) > 0
    memory = estimate_memory(with_checkpoint(arch, weights), get_gpu("H100"),
                             EngineConfig(tp=tp, max_model_len=8192))  # fmt: skip
    assert memory.weights_gib == pytest.approx(logged_gib, rel=within)


def test_a_stated_parameter_count_is_kept_and_the_bytes_still_come_from_the_header() -> None:
    weights = summarize(_tensors(safetensors_header(dense_decoder_tensors(TINY))), 4)
    stated = load_model_config(TINY, params_b=1.0)
    kept = with_checkpoint(stated, weights, keep_params=True)
    assert kept.total_params == 10**9
    assert weights_bytes(kept) == weights_bytes(with_checkpoint(load_model_config(TINY), weights))
