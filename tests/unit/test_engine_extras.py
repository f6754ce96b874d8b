"""Engine flags in extraArgs that move memory: MTP speculative decoding, the multimodal
processor's max_pixels, and the state-cache mode of hybrid models (real configs)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controllers.api.engine_args import EngineExtras, check_extra_args, engine_extras
from inferfleet_testing.checkpoints import dense_decoder_tensors, safetensors_header
from sizing.checkpoint import summarize, tensors_from_header
from sizing.encoder import with_max_pixels
from sizing.errors import InvalidInput
from sizing.hardware import get_gpu
from sizing.memory import EngineConfig, estimate_memory
from sizing.model import ModelArch, load_model_config, with_checkpoint
from sizing.quantization import mtp_weights_bytes, stage_weights_bytes
from sizing.units import GIB
from tests.conftest import REPO

CATALOG = REPO / "controllers" / "adapters" / "model_catalog"
H200, H100 = get_gpu("H200"), get_gpu("H100")
MTP3 = {"speculative_method": "mtp", "num_speculative_tokens": 3}


def _arch(name: str) -> ModelArch:
    return load_model_config(json.loads((CATALOG / f"{name}.json").read_text()), name=name)


def _header(tensors: list) -> tuple:
    blob = safetensors_header(tensors)
    return tensors_from_header(json.loads(blob[8 : 8 + int.from_bytes(blob[:8], "little")]))


def test_mtp_loads_one_decoder_layer_and_caches_its_kv() -> None:
    """DeepSeek-V3 (real config, num_nextn_predict_layers 1) at TP 8: the MTP module adds one
    MoE layer's shard to the weights and one MLA layer (576 values) to every token's cache,
    so the same memory holds 61/62 of the tokens."""
    arch = _arch("deepseek-ai--DeepSeek-V3")
    assert arch.mtp_layers == 1
    base = EngineConfig(tp=8, max_model_len=32768)
    plain = estimate_memory(arch, H200, base)
    mtp = estimate_memory(arch, H200, replace(base, **MTP3))
    layers = stage_weights_bytes(arch, "none", "auto", 8)[0] / GIB / arch.num_layers
    extra = mtp.weights_gib - plain.weights_gib
    assert layers < extra < 1.2 * layers  # a MoE layer is above the average (3 dense ones)
    assert mtp.kv_bytes_per_token - plain.kv_bytes_per_token == 576 * 2
    expected = (plain.kv_cache_gib - extra) * GIB / mtp.kv_bytes_per_token
    assert mtp.kv_cache_tokens == pytest.approx(expected, abs=64)


def test_mtp_weights_come_from_the_checkpoint_without_its_embedding_copies() -> None:
    """A DeepSeek-style extra layer holds its own embedding and shared head: vLLM's drafter
    shares the model's, so only the layer's other tensors are loaded, and the embedding copy
    never counts as the model's embedding."""
    cfg = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 160,
           "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2,
           "vocab_size": 1000, "max_position_embeddings": 4096, "torch_dtype": "bfloat16",
           "num_nextn_predict_layers": 1}  # fmt: skip
    base = dense_decoder_tensors(cfg)
    extra = [
        ("model.layers.4.embed_tokens.weight", "BF16", (1000, 64)),
        ("model.layers.4.shared_head.head.weight", "BF16", (1000, 64)),
        ("model.layers.4.eh_proj.weight", "BF16", (64, 128)),
        ("model.layers.4.mlp.up_proj.weight", "BF16", (160, 64)),
    ]
    weights, plain = (summarize(_header(tensors), 4) for tensors in (base + extra, base))
    assert weights.mtp == (64 * 128 + 160 * 64, 0)
    assert weights.embedding == plain.embedding == (1000 * 64, 0)
    arch = with_checkpoint(load_model_config(cfg), weights)
    assert mtp_weights_bytes(arch, "none", "auto", tp=2) == (64 * 128 + 160 * 64) * 2 / 2


def test_speculative_tokens_widen_the_gated_delta_conv_state() -> None:
    """Qwen3.5-9B (real config, mtp_num_hidden_layers 1): each drafted token adds one conv tap
    over the q, k and v channels (vLLM's `conv_kernel - 1 + num_spec`), and the MTP layer is
    one more full-attention layer in the pool."""
    arch = _arch("Qwen--Qwen3.5-9B")
    assert arch.mtp_layers == 1 and arch.mamba_conv_channels == 8192
    assert arch.state_bytes_per_sequence(2.0, 1, 3) - arch.state_bytes_per_sequence(2.0) == (
        3 * 8192 * 2
    )
    assert arch.stage_cache_layers(1, 1) == (36,)  # 9 full + 24 gated delta, groups of 9
    plain = estimate_memory(arch, H100, EngineConfig(max_model_len=32768))
    mtp = estimate_memory(arch, H100, EngineConfig(max_model_len=32768, **MTP3))
    assert mtp.weights_gib > plain.weights_gib
    assert mtp.kv_cache_tokens < plain.kv_cache_tokens


def test_state_cache_mode_sets_the_pages_a_sequence_holds() -> None:
    """Qwen3-Next (real config): 36 gated-delta layers in 3 groups beside 1 attention group.
    A sequence holds 1 state page per group without prefix caching, 2 in align mode (the
    default with prefix caching from 0.17) and one per block in "all" mode, so the requests of
    max_model_len the pool holds fall in that order; the pages themselves do not change."""
    arch = _arch("Qwen--Qwen3-Next-80B-A3B-Instruct")
    base = EngineConfig(tp=4, max_model_len=32768)

    def run(**kw: object) -> tuple[int, float]:
        m = estimate_memory(arch, H200, replace(base, **kw))
        return m.kv_cache_tokens, m.max_concurrency

    none, align, every = run(enable_prefix_caching=False), run(), run(mamba_cache_mode="all")
    assert none[0] == align[0] == every[0]
    assert none[1] > align[1] > every[1]
    old = "0.16"  # align mode is not the default before 0.17
    assert run(vllm_version=old) == run(vllm_version=old, enable_prefix_caching=False)
    assert run(mamba_cache_mode="align", enable_prefix_caching=False) == none
    # Per request of 32k at block 272 (TP 4): 121 attention pages + 3 groups x 2 state pages.
    blocks = align[0] / 272
    assert align[1] == pytest.approx(4 * blocks / (121 + 3 * 2))


def test_max_concurrency_is_the_pages_one_request_needs_in_every_group() -> None:
    """Gemma 3 27B (real config): its sliding layers keep only window + batch pages, so the
    pool holds more requests of max_model_len than tokens / max_model_len; a model with one
    kind of layer holds exactly tokens / max_model_len."""
    gemma = estimate_memory(
        _arch("google--gemma-3-27b-it"), H100, EngineConfig(max_model_len=32768)
    )
    assert gemma.max_concurrency > 2 * gemma.kv_cache_tokens / 32768
    llama = estimate_memory(
        _arch("meta-llama--Llama-3.1-8B-Instruct"), H100, EngineConfig(max_model_len=32768)
    )
    assert llama.max_concurrency == pytest.approx(llama.kv_cache_tokens / 32768)


def test_max_pixels_resizes_the_dummy_image_of_an_any_size_tower() -> None:
    """Qwen2.5-VL-72B (real config): the processor's max_pixels bounds the profiled image
    (smart_resize: a square whose side is a multiple of 28 px); 1,003,520 px is 980 x 980, 4,900
    patches merged into 1,225 tokens. Gemma 3's fixed 896 px tower ignores it."""
    arch = _arch("Qwen--Qwen2.5-VL-72B-Instruct")
    assert arch.tower is not None and arch.tower.patches_per_item == 65536
    small = with_max_pixels(arch.tower, 1_003_520)
    assert (small.patches_per_item, small.tokens_per_item) == (4900, 1225)
    base = EngineConfig(tp=4, max_model_len=32768)
    full = estimate_memory(arch, H100, base)
    less = estimate_memory(arch, H100, replace(base, mm_max_pixels=1_003_520))
    assert less.activation_gib < full.activation_gib
    gemma = _arch("google--gemma-3-27b-it")
    assert gemma.tower is not None and with_max_pixels(gemma.tower, 1_003_520) == gemma.tower


@given(st.integers(min_value=1, max_value=2**26))
def test_a_smaller_max_pixels_never_profiles_more_patches(pixels: int) -> None:
    tower = _arch("Qwen--Qwen2.5-VL-72B-Instruct").tower
    assert tower is not None
    smaller = with_max_pixels(tower, pixels)
    assert 4 <= smaller.patches_per_item <= with_max_pixels(tower, pixels + 784).patches_per_item
    assert smaller.tokens_per_item * 4 == smaller.patches_per_item


def test_a_draft_model_method_is_noted_as_not_counted() -> None:
    arch = _arch("meta-llama--Llama-3.1-8B-Instruct")
    m = estimate_memory(arch, H100, EngineConfig(speculative_method="eagle3",
                                                 num_speculative_tokens=2))  # fmt: skip
    assert any("eagle3" in note and "not counted" in note for note in m.notes)
    ngram = estimate_memory(
        arch, H100, EngineConfig(speculative_method="ngram", num_speculative_tokens=4)
    )
    assert (
        ngram.notes == ()
        and ngram.kv_cache_tokens == estimate_memory(arch, H100, EngineConfig()).kv_cache_tokens
    )


@pytest.mark.parametrize(
    ("cfg", "words"),
    [
        (EngineConfig(speculative_method="mtp"), "num_speculative_tokens"),
        (EngineConfig(num_speculative_tokens=2), "method"),
        (EngineConfig(mamba_cache_mode="last"), "mamba_cache_mode"),
        (EngineConfig(mm_max_pixels=0), "max_pixels"),
    ],
)
def test_bad_engine_extras_are_named(cfg: EngineConfig, words: str) -> None:
    with pytest.raises(InvalidInput, match=words):
        estimate_memory(_arch("meta-llama--Llama-3.1-8B-Instruct"), H100, cfg)


def test_extra_args_are_read_as_vllm_reads_them() -> None:
    args = [
        "--speculative-config", '{"method": "qwen3_next_mtp", "num_speculative_tokens": 2}',
        '--mm-processor-kwargs={"max_pixels": 1003520}',
        "--mamba-cache-mode", "all",
    ]  # fmt: skip
    assert engine_extras(args) == EngineExtras("qwen3_next_mtp", 2, 1_003_520, "all")
    assert engine_extras(["--speculative_config={}"]) == EngineExtras("mtp", 1)
    assert engine_extras(['--speculative-config={"model": "x", "num_speculative_tokens": 5}'])
    assert engine_extras(["--enforce-eager-ish"]) == EngineExtras()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--speculative-config", "{method: mtp}"], r"extraArgs\[0\]: --speculative-config"),
        (["--speculative-config=[1]"], "JSON object"),
        (['--speculative-config={"method": "eagle"}'], "num_speculative_tokens"),
        (['--speculative-config={"num_speculative_tokens": 0}'], "num_speculative_tokens"),
        (['--mm-processor-kwargs={"max_pixels": "big"}'], "max_pixels"),
        (["-O3", "--mamba-cache-mode", "last"], r"extraArgs\[1\]: --mamba-cache-mode"),
    ],
)
def test_bad_extra_args_fail_with_the_argument_named(args: list[str], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        check_extra_args(args)


CATALOG_MODELS = sorted(p.stem for p in CATALOG.glob("*--*.json"))
MTP_MODELS = [name for name in CATALOG_MODELS if _arch(name).mtp_layers]


@given(
    st.one_of(
        st.tuples(st.sampled_from(MTP_MODELS), st.just("mtp")),
        st.tuples(st.sampled_from(CATALOG_MODELS), st.just("ngram")),
    ),
    st.integers(min_value=1, max_value=8),
)
def test_drafting_never_frees_memory(model: tuple[str, str], tokens: int) -> None:
    """Over the catalog (MTP on the models that carry MTP modules, n-gram on all): drafting
    never lowers the weights or raises the tokens, and the more tokens drafted, the fewer
    requests the pool holds. (On a hybrid model an extra full layer can regroup the pool, so
    MTP is only sampled where the checkpoint has it.)"""
    name, method = model
    arch = _arch(name)
    gpu = get_gpu("B200")
    tp = next(n for n in (8, 4, 2, 1) if arch.num_attention_heads % n == 0)
    base = EngineConfig(tp=tp, max_model_len=8192)
    plain = estimate_memory(arch, gpu, base)
    spec = replace(base, speculative_method=method, num_speculative_tokens=tokens)
    more = estimate_memory(arch, gpu, replace(spec, num_speculative_tokens=tokens + 1))
    drafted = estimate_memory(arch, gpu, spec)
    assert drafted.weights_gib >= plain.weights_gib
    assert drafted.kv_cache_tokens <= plain.kv_cache_tokens
    assert more.max_concurrency <= drafted.max_concurrency <= plain.max_concurrency
