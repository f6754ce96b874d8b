"""sizing.model: config.json parsing, parameter counts, KV bytes per token."""

from __future__ import annotations

import json

import pytest

from sizing.errors import InvalidInput
from sizing.model import ModelArch, load_model_config
from tests.conftest import CALIBRATION, REPO

CONFIGS = CALIBRATION / "model_configs"


def _raw(name: str) -> dict:
    return json.loads((CONFIGS / f"{name}.json").read_text())


def _arch(name: str, **kwargs: object) -> ModelArch:
    return load_model_config(_raw(name), **kwargs)


def _derived(name: str) -> ModelArch:
    """Parameter counts from the shapes alone (the config's total dropped)."""
    raw = {k: v for k, v in _raw(name).items() if k != "total_params_b"}
    return load_model_config(raw)


TEXT_ONLY = sorted(
    p.stem for p in CONFIGS.glob("*.json") if "vision_config" not in json.loads(p.read_text())
)


@pytest.mark.parametrize("name", TEXT_ONLY)
def test_parameter_count_from_shapes_matches_the_checkpoint(name: str) -> None:
    stated = _raw(name)["total_params_b"] * 1e9
    derived = _derived(name).total_params
    assert derived == pytest.approx(stated, rel=0.015), name


def test_dense_gqa_llama() -> None:
    arch = _arch("meta-llama--Llama-3.1-8B-Instruct")
    assert (arch.num_layers, arch.num_attention_heads, arch.num_kv_heads) == (32, 32, 8)
    assert arch.head_dim == 128 and arch.vocab_size == 128256
    assert arch.checkpoint_dtype == "bfloat16" and not arch.tie_word_embeddings
    assert not arch.is_moe and not arch.is_mla and arch.checkpoint_quantization is None
    assert arch.total_params == arch.active_params == 8_030_000_000
    # 2 (K and V) x 32 layers x 8 heads x 128 x 2 bytes
    assert arch.kv_bytes_per_token(2.0) == 131_072
    assert arch.kv_bytes_per_token(2.0, tp=2) == 65_536
    assert arch.kv_bytes_per_token(1.0, tp=8) == 32 * 2 * 1 * 128
    # TP 16 > 8 KV heads: each rank still holds one head per layer (replicated).
    assert arch.kv_bytes_per_token(2.0, tp=16) == arch.kv_bytes_per_token(2.0, tp=8)


def test_mha_model_has_as_many_kv_heads_as_query_heads() -> None:
    arch = _arch("microsoft--phi-2")
    assert arch.num_kv_heads == arch.num_attention_heads == 32
    assert not arch.gated_mlp  # phi: up -> gelu -> down
    assert arch.kv_bytes_per_token(2.0) == 32 * 2 * 32 * 80 * 2


def test_moe_with_shared_experts_first_k_dense_and_mla_kimi() -> None:
    arch = _arch("moonshotai--Kimi-K2-Thinking")
    assert arch.is_moe and arch.is_mla
    assert (arch.num_experts, arch.experts_per_token, arch.num_shared_experts) == (384, 8, 1)
    assert arch.first_k_dense_replace == 1 and arch.num_moe_layers == 60
    assert arch.active_params == pytest.approx(32e9, rel=0.05)  # "32B activated"
    assert arch.checkpoint_quantization == "int4" and arch.quantized_experts_only
    # One latent of 512 + 64 values per layer, replicated on every TP rank.
    assert arch.kv_bytes_per_token(2.0) == 61 * 576 * 2
    assert arch.kv_bytes_per_token(2.0, tp=8) == 61 * 576 * 2


def test_qwen_moe_active_parameters() -> None:
    arch = _arch("Qwen--Qwen3-235B-A22B-FP8")
    assert arch.num_experts == 128 and arch.num_moe_layers == 94
    assert arch.active_params == pytest.approx(22e9, rel=0.03)
    assert arch.checkpoint_quantization == "fp8"
    assert arch.kv_heads_per_gpu(8) == 1  # 4 KV heads replicated at TP 8


def test_hybrid_sliding_window_gpt_oss() -> None:
    arch = _arch("openai--gpt-oss-20b")
    assert arch.sliding_window == 128
    assert arch.num_sliding_layers == 12 and len(arch.layer_types) == 24
    assert arch.checkpoint_quantization == "mxfp4"
    assert arch.moe_intermediate_size == 2880  # experts use intermediate_size
    # vLLM's hybrid manager gives every layer equal-size blocks: all 24 layers count.
    assert arch.kv_bytes_per_token(2.0) == 24 * 2 * 8 * 64 * 2


def test_multimodal_keeps_language_keys_under_text_config() -> None:
    arch = _arch("mistralai--Mistral-Small-3.1-24B-Instruct-2503")
    assert arch.has_encoder and arch.num_layers == 40 and arch.hidden_size == 5120
    assert arch.vision_params == pytest.approx(0.43e9, rel=0.05)
    assert arch.total_params == 24_000_000_000


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("RedHatAI--Llama-3.3-70B-Instruct-FP8-dynamic", "fp8"),
        ("RedHatAI--Meta-Llama-3.1-8B-Instruct-quantized.w8a8", "int8"),
        ("RedHatAI--Meta-Llama-3.1-8B-Instruct-quantized.w4a16", "gptq"),
        ("TheBloke--zephyr-7B-beta-AWQ", "awq"),
        ("unsloth--phi-4-bnb-4bit", "bnb4"),
        ("openai--gpt-oss-120b", "mxfp4"),
        ("Qwen--Qwen3-8B", None),
    ],
)
def test_checkpoint_quantization(name: str, expected: str | None) -> None:
    assert _arch(name).checkpoint_quantization == expected


def test_params_b_overrides_the_count() -> None:
    arch = _arch("meta-llama--Llama-3.1-8B-Instruct", params_b=7.5)
    assert arch.total_params == pytest.approx(7.5e9, rel=1e-6)
    assert arch.params.embedding == 128256 * 4096  # embeddings are shapes, not rescaled


def test_pipeline_stages_follow_vllm_split() -> None:
    arch = _arch("meta-llama--Llama-3.1-8B-Instruct")
    assert arch.stage_layer_counts(1) == (32,)
    assert arch.stage_layer_counts(3) == (11, 11, 10)  # the last stage gets no extra layer
    assert arch.kv_bytes_per_token(2.0, pp=3) == 11 * 2 * 8 * 128 * 2
    assert arch.kv_tokens(2**30, 2.0, block_size=16) % 16 == 0


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda c: c.pop("num_hidden_layers"), "missing key 'num_hidden_layers'"),
        (lambda c: c.update(hidden_size="big"), "hidden_size: must be an integer"),
        (lambda c: c.update(torch_dtype="int3"), "'torch_dtype'"),
        (lambda c: c.update(quantization_config={"quant_method": "zip"}), "quant_method 'zip'"),
        (lambda c: c.update(vocab_size=0), r"vocab_size: 0 is outside \[1, "),
    ],
)
def test_malformed_config_names_the_key(mutate, message: str) -> None:
    raw = _raw("meta-llama--Llama-3.1-8B-Instruct")
    mutate(raw)
    with pytest.raises(InvalidInput, match=message):
        load_model_config(raw)


def test_missing_key_inside_text_config_says_so() -> None:
    raw = _raw("mistralai--Mistral-Small-3.1-24B-Instruct-2503")
    raw["text_config"].pop("num_attention_heads")
    with pytest.raises(InvalidInput, match=r"text_config\.'num_attention_heads'"):
        load_model_config(raw)


def test_bad_params_b_and_pipeline_size() -> None:
    with pytest.raises(InvalidInput, match="params_b"):
        _arch("Qwen--Qwen3-8B", params_b=-1.0)
    with pytest.raises(InvalidInput, match="pipeline_parallel_size: 99"):
        _arch("Qwen--Qwen3-8B").stage_layer_counts(99)


def test_a_hub_config_that_leaves_out_its_class_defaults() -> None:
    """Gemma 3's published config.json omits what equals Gemma3TextConfig's defaults (vocab,
    context, tied embeddings); the model read from it is the benchmark set's full config."""
    published = {
        "architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3",
        "mm_tokens_per_image": 256, "torch_dtype": "bfloat16",
        "text_config": {"head_dim": 128, "hidden_size": 5376, "intermediate_size": 21504,
                        "model_type": "gemma3_text", "num_attention_heads": 32,
                        "num_hidden_layers": 62, "num_key_value_heads": 16,
                        "sliding_window": 1024},
        "vision_config": {"hidden_size": 1152, "image_size": 896, "intermediate_size": 4304,
                          "model_type": "siglip_vision_model", "num_hidden_layers": 27,
                          "patch_size": 14},
    }  # fmt: skip
    full = json.loads((REPO / "controllers/adapters/model_catalog/google--gemma-3-27b-it.json")
                      .read_text())  # fmt: skip
    full.pop("total_params_b")
    a, b = load_model_config(published), load_model_config(full)
    assert (a.vocab_size, a.max_position_embeddings, a.tie_word_embeddings) == (
        262_208,
        131_072,
        True,
    )
    assert a.params == b.params and a.tower == b.tower


CATALOG = REPO / "controllers" / "adapters" / "model_catalog"


@pytest.mark.parametrize(
    ("name", "kinds", "slots"),
    [
        ("meta-llama--Llama-3.1-8B-Instruct", "32 full", 32),  # one group of all layers
        ("openai--gpt-oss-20b", "12 sliding + 12 full", 24),  # two groups of 12
        ("google--gemma-3-27b-it", "52 sliding + 10 full", 70),  # 6 + 1 groups of 10
        ("nvidia--NVIDIA-Nemotron-Nano-9B-v2", "4 attention + 27 Mamba + 25 MLP", 32),  # 1 + 7 of 4
        ("nvidia--NVIDIA-Nemotron-3-Nano-30B-A3B-FP8", "6 attention + 23 Mamba + 23 MoE", 30),
    ],
)
def test_cache_slots_follow_vllms_layer_groups(name: str, kinds: str, slots: int) -> None:
    arch = load_model_config(json.loads((CATALOG / f"{name}.json").read_text()))
    assert arch.stage_cache_layers(1) == (slots,), kinds
    # Per token, only the slots count: MLP/MoE-only layers hold no cache.
    assert arch.kv_bytes_per_token(2.0) == slots * arch.kv_bytes_per_token_per_layer(2.0)


@pytest.mark.parametrize("tp", [1, 2, 4])
def test_a_state_layer_fits_one_attention_page(tp: int) -> None:
    """vLLM grows the attention block until one page holds a sequence's Mamba state."""
    arch = load_model_config(
        json.loads((CATALOG / "nvidia--NVIDIA-Nemotron-Nano-9B-v2.json").read_text())
    )
    block = arch.block_tokens(2.0, 2.0, tp, 16)
    page = block * arch.kv_bytes_per_token_per_layer(2.0, tp)
    state = (arch.mamba_state_elements + arch.mamba_conv_elements) * 2.0 / tp
    assert block % 16 == 0 and page >= state > page - 16 * arch.kv_bytes_per_token_per_layer(
        2.0, tp
    )
    plain = load_model_config(
        json.loads((CATALOG / "meta-llama--Llama-3.1-8B-Instruct.json").read_text())
    )
    assert plain.block_tokens(2.0, 2.0, tp, 16) == 16


def _raw_catalog(name: str) -> dict:
    return json.loads((CATALOG / f"{name}.json").read_text())


def _catalog(name: str) -> ModelArch:
    return load_model_config(_raw_catalog(name))


def test_gated_delta_layers_hold_a_recurrent_state_per_sequence() -> None:
    """Qwen3-Next (real config): every 4th layer full attention, the rest gated delta, whose
    per-sequence state is what vLLM allocates: value heads x key dim x value dim, plus the
    conv's (kernel - 1) taps over the q, k and v channels."""
    arch = _catalog("Qwen--Qwen3-Next-80B-A3B-Instruct")
    assert arch.layer_types[:4] == ("linear_attention",) * 3 + ("full_attention",)
    assert (arch.num_state_layers, arch.num_attention_layers) == (36, 12)
    recurrent, conv = 32 * 128 * 128, 3 * (2 * 16 * 128 + 32 * 128)
    assert (arch.mamba_state_elements, arch.mamba_conv_elements) == (recurrent, conv)
    assert arch.state_bytes_per_sequence(2.0, tp=4) == (recurrent + conv) * 2.0 / 4
    # The shapes alone give the model card's 80B (79.67B) and 3B active (3.87B).
    derived = load_model_config({**_raw_catalog("Qwen--Qwen3-Next-80B-A3B-Instruct"),
                                 "total_params_b": None})  # fmt: skip
    assert derived.total_params == pytest.approx(79.67e9, rel=0.002)
    assert derived.active_params == pytest.approx(3.87e9, rel=0.005)
    # The attention block grows until a page holds one state: 544 tokens at TP 1, 272 at TP 4.
    assert [arch.block_tokens(2.0, 2.0, tp, 16) for tp in (1, 4)] == [544, 272]
    # One pool shared by groups of 12 layers (3 gated-delta groups + 1 attention group).
    assert arch.stage_cache_layers(1) == (48,)


def test_a_pinned_float32_recurrent_state_doubles_its_page() -> None:
    """Qwen3.5-9B (real config) pins mamba_ssm_dtype float32: a 2,146,304-byte state per
    layer, so vLLM sets the attention block to 528 tokens and pads the state by 0.76 % (the
    figures a vLLM start-up log of this layer shape prints)."""
    arch = _catalog("Qwen--Qwen3.5-9B")
    assert arch.ssm_state_dtype == "float32"
    state = arch.state_bytes_per_sequence(2.0)
    assert state == 3 * 8192 * 2 + 32 * 128 * 128 * 4
    block = arch.block_tokens(2.0, 2.0, 1, 16)
    page = block * arch.kv_bytes_per_token_per_layer(2.0)
    assert block == 528 and round(100 * (page - state) / state, 2) == 0.76
    raw = _raw_catalog("Qwen--Qwen3.5-9B")
    raw["text_config"]["mamba_ssm_dtype"] = None  # vLLM's "auto": the model dtype
    bf16 = load_model_config(raw)
    assert bf16.block_tokens(2.0, 2.0, 1, 16) < block


def test_llama4_chunked_local_layers_are_local_kv_layers() -> None:
    """Llama 4 Scout (real config): layers with RoPE attend within attention_chunk_size
    (chunked local attention), the NoPE ones (every 4th) over everything. vLLM's pool holds
    both kinds in groups of 12, so the KV slots stay 48 either way."""
    arch = _catalog("meta-llama--Llama-4-Scout-17B-16E-Instruct")
    assert arch.layer_types[:4] == ("chunked_attention",) * 3 + ("full_attention",)
    assert (arch.num_sliding_layers, arch.num_attention_layers) == (36, 48)
    assert arch.sliding_window == 8192  # what a chunked layer's token attends to, at most
    assert arch.stage_cache_layers(1) == (48,)
