"""sizing.quantization and sizing.memory: weight formats, both methods, the guide's examples."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sizing.errors import InvalidInput
from sizing.hardware import get_gpu
from sizing.memory import EngineConfig, estimate_memory, guide_min_gpus
from sizing.model import ModelArch, load_model_config
from sizing.quantization import (
    FORMATS,
    quality_caveat,
    stage_weights_bytes,
    weights_bytes,
    weights_bytes_per_gpu,
)
from sizing.units import GB, GIB
from tests.conftest import CALIBRATION, REPO

H100 = get_gpu("H100")

# Llama-3-70B's published shapes; the guide counts it as 70 B parameters.
LLAMA3_70B = load_model_config(
    {
        "model_type": "llama",
        "hidden_size": 8192,
        "intermediate_size": 28672,
        "num_hidden_layers": 80,
        "num_attention_heads": 64,
        "num_key_value_heads": 8,
        "vocab_size": 128256,
        "max_position_embeddings": 8192,
        "torch_dtype": "bfloat16",
    },
    params_b=70,
    name="llama-3-70b",
)


def _arch(name: str) -> ModelArch:
    return load_model_config(
        json.loads((CALIBRATION / "model_configs" / f"{name}.json").read_text())
    )


LLAMA8B = _arch("meta-llama--Llama-3.1-8B-Instruct")


# --- weight formats -------------------------------------------------------------------------


def test_quantized_formats_keep_embeddings_in_16_bit() -> None:
    bf16 = weights_bytes(LLAMA8B, "none")
    fp8 = weights_bytes(LLAMA8B, "fp8")
    embeddings = 2 * 128256 * 4096 * 2  # embedding + lm_head, 2 bytes each
    assert bf16 == pytest.approx(8.03e9 * 2, rel=1e-3)
    assert fp8 == pytest.approx((8.03e9 * 2 - embeddings) / 2 + embeddings, rel=2e-3)
    assert weights_bytes(LLAMA8B, "none", "float32") == pytest.approx(2 * bf16)


def test_four_bit_groups_cost_their_scales() -> None:
    assert FORMATS["int4"].bytes_per_param(128) == pytest.approx(0.5 + 2 / 128)
    assert FORMATS["mxfp4"].bytes_per_param(32) == pytest.approx(0.5 + 1 / 32)
    assert FORMATS["awq"].bytes_per_param(128) > FORMATS["int4"].bytes_per_param(128)


def test_mxfp4_quantizes_only_the_experts() -> None:
    arch = _arch("openai--gpt-oss-20b")
    p = arch.params
    total = weights_bytes(arch, "none")
    experts_4bit = p.routed_experts * 0.53125
    rest_16bit = (p.total - p.routed_experts) * 2
    assert total >= experts_4bit + rest_16bit  # plus the kernels' padding
    assert total < 1.08 * (experts_4bit + rest_16bit)


def test_tp_splits_weights_and_pp_puts_embeddings_at_the_ends() -> None:
    whole = weights_bytes(LLAMA8B, "none")
    assert weights_bytes_per_gpu(LLAMA8B, "none", "auto", tp=2) == pytest.approx(
        whole / 2, rel=0.01
    )
    first, last = stage_weights_bytes(LLAMA8B, "none", "auto", pp=2)
    assert first + last == pytest.approx(whole)
    assert first == pytest.approx(last)  # embedding on one end, lm_head on the other


def test_prequantized_checkpoint_cannot_be_requantized() -> None:
    fp8_checkpoint = _arch("RedHatAI--Llama-3.3-70B-Instruct-FP8-dynamic")
    with pytest.raises(InvalidInput, match="already fp8"):
        weights_bytes(fp8_checkpoint, "awq")
    assert weights_bytes(fp8_checkpoint, "fp8") == weights_bytes(fp8_checkpoint, "none")
    with pytest.raises(InvalidInput, match="quantization: 'int2'"):
        weights_bytes(LLAMA8B, "int2")


def test_quality_caveat_per_format() -> None:
    assert "near-lossless" in quality_caveat("fp8")
    assert "no quality change" in quality_caveat("none", LLAMA8B)
    assert "AWQ" in quality_caveat("awq")


# --- the guide's worked example (section 2.6) ------------------------------------------------


def test_guide_example_fp16_llama3_70b_50_requests_8k() -> None:
    floor = guide_min_gpus(LLAMA3_70B, H100, "none", context_tokens=8000, concurrency=50)
    assert floor.weights_gb == pytest.approx(140)
    assert floor.activations_gb == pytest.approx(28)
    # 50 x 8000 x 0.33 MB (the guide writes 0.26 MB/token and 104 GB; the formula gives this)
    assert floor.kv_gb == pytest.approx(50 * 8000 * 2 * 80 * 8 * 128 * 2 / GB)
    assert floor.overhead_gb == pytest.approx(15, abs=1)  # the guide's 15 GB
    assert floor.min_gpus == 4
    assert floor.min_gpus_with_headroom == 6


def test_guide_example_fp8_halves_weights_and_kv() -> None:
    floor = guide_min_gpus(LLAMA3_70B, H100, "fp8", "fp8", context_tokens=8000, concurrency=50)
    assert floor.weights_gb == pytest.approx(70)
    assert floor.activations_gb == pytest.approx(28)  # unaffected by weight precision
    assert 2 <= floor.min_gpus <= 3
    assert 3 <= floor.min_gpus_with_headroom <= 4


def test_guide_lora_is_small_at_this_scale() -> None:
    base = guide_min_gpus(LLAMA3_70B, H100, context_tokens=8000, concurrency=50)
    with_lora = guide_min_gpus(
        LLAMA3_70B, H100, context_tokens=8000, concurrency=50, max_loras=8, lora_rank=16
    )
    assert 0.3 < with_lora.lora_gb < 2.0  # "roughly 0.8 GB"
    assert with_lora.min_gpus == base.min_gpus


def test_guide_method_per_gpu_breakdown() -> None:
    cfg = EngineConfig(tp=4, max_model_len=8000)
    m = estimate_memory(LLAMA3_70B, H100, cfg, method="guide")
    assert m.weights_gib == pytest.approx(140e9 / 4 / GIB)
    assert m.activation_gib == pytest.approx(0.2 * m.weights_gib)
    assert m.fits and m.kv_cache_tokens > 50 * 8000  # 4 GPUs hold the example's load
    tight = estimate_memory(LLAMA3_70B, H100, replace(cfg, tp=1), method="guide")
    assert not tight.fits and "GiB per GPU" in tight.notes[0]


# --- the vllm method ---------------------------------------------------------------------------


def test_vllm_method_does_not_raise_when_the_model_does_not_fit() -> None:
    m = estimate_memory(LLAMA3_70B, get_gpu("L4"), EngineConfig())
    assert not m.fits and m.kv_cache_tokens == 0
    assert "needs" in m.notes[0] and "usable" in m.notes[0]


def test_vllm_defaults_follow_the_gpu() -> None:
    big = estimate_memory(LLAMA8B, H100, EngineConfig(max_model_len=8192))
    small = estimate_memory(LLAMA8B, get_gpu("L40S"), EngineConfig(max_model_len=8192))
    assert (big.max_num_seqs, big.max_num_batched_tokens) == (1024, 8192)
    assert (small.max_num_seqs, small.max_num_batched_tokens) == (256, 2048)
    assert big.max_model_len == 8192
    assert estimate_memory(LLAMA8B, H100, EngineConfig()).max_model_len == 131072


def test_pipeline_parallel_keeps_the_smallest_stage() -> None:
    one = estimate_memory(LLAMA8B, H100, EngineConfig(max_model_len=8192))
    two = estimate_memory(LLAMA8B, H100, EngineConfig(pp=2, max_model_len=8192))
    assert one.kv_cache_tokens < two.kv_cache_tokens < 2.4 * one.kv_cache_tokens
    assert two.kv_bytes_per_token == one.kv_bytes_per_token / 2


def test_cuda_graphs_in_budget_and_lora_reduce_the_kv_cache() -> None:
    base = EngineConfig(max_model_len=8192)
    plain = estimate_memory(LLAMA8B, H100, base)
    graphs = estimate_memory(LLAMA8B, H100, replace(base, cuda_graphs_in_budget=True))
    eager = estimate_memory(LLAMA8B, H100, replace(base, enforce_eager=True))
    lora = estimate_memory(LLAMA8B, H100, replace(base, max_loras=4, max_lora_rank=64))
    assert graphs.kv_cache_tokens < plain.kv_cache_tokens == eager.kv_cache_tokens
    assert eager.cuda_graph_gib == 0
    assert lora.lora_gib > 0 and lora.kv_cache_tokens < plain.kv_cache_tokens


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tp": 3}, "does not divide num_attention_heads 32"),
        ({"gpu_memory_utilization": 1.2}, "gpu_memory_utilization"),
        ({"max_model_len": 0}, "max_model_len"),
        ({"kv_cache_dtype": "int2"}, "kv_cache_dtype"),
        ({"dtype": "int8"}, "dtype"),
        ({"vllm_version": "0.8"}, "V1 engine"),
        ({"vllm_version": "latest"}, "vllm_version"),
    ],
)
def test_bad_engine_config_names_the_field(change: dict, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        estimate_memory(LLAMA8B, H100, replace(EngineConfig(), **change))


def test_unknown_method() -> None:
    with pytest.raises(InvalidInput, match="sizingMethod"):
        estimate_memory(LLAMA8B, H100, EngineConfig(), method="magic")


# --- properties ------------------------------------------------------------------------------

dense_arch = st.builds(
    lambda heads, kv_div, head_dim, layers, mult, vocab: load_model_config(
        {
            "model_type": "llama",
            "hidden_size": heads * head_dim,
            "intermediate_size": heads * head_dim * mult,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "num_key_value_heads": max(1, heads // kv_div),
            "head_dim": head_dim,
            "vocab_size": vocab,
            "max_position_embeddings": 32768,
        }
    ),
    heads=st.sampled_from([8, 16, 32, 64]),
    kv_div=st.sampled_from([1, 2, 4, 8]),
    head_dim=st.sampled_from([64, 128]),
    layers=st.integers(2, 96),
    mult=st.integers(2, 5),
    vocab=st.integers(1000, 260_000),
)
gpus = st.sampled_from(["H100", "A100-80GB", "L40S", "L4", "H200", "MI300X", "T4"])


@given(dense_arch, gpus, st.integers(1, 64_000), st.integers(1, 256), st.integers(1, 5000))
def test_more_context_or_concurrency_never_needs_less(arch, gpu, context, concurrency, extra):
    g = get_gpu(gpu)
    base = guide_min_gpus(arch, g, context_tokens=context, concurrency=concurrency)
    longer = guide_min_gpus(arch, g, context_tokens=context + extra, concurrency=concurrency)
    busier = guide_min_gpus(arch, g, context_tokens=context, concurrency=concurrency + 1)
    for more in (longer, busier):
        assert more.total_gb >= base.total_gb
        assert more.min_gpus >= base.min_gpus
        assert more.min_gpus_with_headroom >= more.min_gpus


@given(dense_arch, gpus, st.sampled_from([1, 2, 4, 8]), st.sampled_from(["vllm", "guide"]),
       st.floats(0.3, 0.98), st.integers(1, 16384))  # fmt: skip
def test_capacities_are_never_negative(arch, gpu, tp, method, util, batched):
    if arch.num_attention_heads % tp:
        return
    cfg = EngineConfig(tp=tp, gpu_memory_utilization=util, max_num_batched_tokens=batched)
    m = estimate_memory(arch, get_gpu(gpu), cfg, method=method)
    assert m.kv_cache_tokens >= 0 and m.max_concurrency >= 0
    assert m.fits == (m.kv_cache_gib > 0)
    if method == "vllm":
        assert m.kv_cache_tokens % cfg.block_size == 0


@given(dense_arch, st.integers(1, 4))
def test_kv_bytes_per_gpu_never_grow_with_tp(arch, step):
    tps = [1, 2, 4, 8, 16][: step + 1]
    per_gpu = [arch.kv_bytes_per_token(2.0, tp=tp) for tp in tps]
    assert all(a >= b for a, b in pairwise(per_gpu))


@given(dense_arch, st.integers(256, 8192), st.integers(1, 8192), st.integers(1, 512))
def test_bigger_profiling_batches_never_leave_more_kv(arch, batched, more_tokens, more_seqs):
    base = EngineConfig(max_num_batched_tokens=batched, max_num_seqs=64)
    m = estimate_memory(arch, H100, base)
    wider = estimate_memory(arch, H100, replace(base, max_num_batched_tokens=batched + more_tokens))
    more = estimate_memory(arch, H100, replace(base, max_num_seqs=64 + more_seqs))
    assert wider.kv_cache_tokens <= m.kv_cache_tokens
    assert more.kv_cache_tokens <= m.kv_cache_tokens


@pytest.mark.parametrize("device", ["GB10", "Jetson-AGX-Thor"])
def test_unified_memory_devices_start_only_within_what_the_host_leaves(device: str) -> None:
    """vLLM reads the host's available memory as free on these devices and refuses to start
    when utilization x total is more: 0.92 (its default) does not start on a DGX Spark,
    0.83 does, and the KV cache is then sized from utilization x total as anywhere else."""
    arch = _arch("Qwen--Qwen3-8B")
    gpu = get_gpu(device)
    assert 0.8 < gpu.startable_utilization < 0.85
    refused = estimate_memory(
        arch, gpu, EngineConfig(max_model_len=8192, gpu_memory_utilization=0.92)
    )
    assert not refused.fits and refused.kv_cache_gib > 0
    most = f"at most {math.floor(100 * gpu.startable_utilization) / 100:.2f}"
    assert any("refuses to start" in n and most in n for n in refused.notes)
    started = estimate_memory(
        arch, gpu, EngineConfig(max_model_len=8192, gpu_memory_utilization=0.83)
    )
    assert started.fits and not any("refuses" in n for n in started.notes)
    assert started.usable_gib == pytest.approx(0.83 * gpu.memory_gib_reported)
    discrete = estimate_memory(
        arch, get_gpu("H100"), EngineConfig(max_model_len=8192, gpu_memory_utilization=0.92)
    )
    assert discrete.fits and get_gpu("H100").startable_utilization == 1.0


def test_hybrid_mamba_kv_comes_in_whole_grown_blocks() -> None:
    """Nemotron-H: the KV pool is cut into attention blocks big enough for a Mamba state, so
    the token capacity is a multiple of that block, not of 16."""
    path = REPO / "controllers/adapters/model_catalog/nvidia--NVIDIA-Nemotron-Nano-9B-v2.json"
    arch = load_model_config(json.loads(path.read_text()))
    memory = estimate_memory(arch, get_gpu("H100"), EngineConfig(max_model_len=8192))
    block = arch.block_tokens(2.0, 2.0, 1, 16)
    assert block > 16 and memory.kv_cache_tokens % block == 0
    assert memory.kv_bytes_per_token == 32 * arch.kv_bytes_per_token_per_layer(2.0)


def test_rocm_tensor_parallel_reserves_its_collective_buffers() -> None:
    """At TP > 1 an MI300X replica keeps 1.7 GiB per GPU more non-torch memory than the CUDA
    figures (RCCL, all-reduce and hipBLASLt/AITER buffers; the bound one ROCm log sets), so it
    never holds more KV than an otherwise equal CUDA GPU; at TP 1 nothing changes."""
    arch = load_model_config(json.loads(
        (REPO / "controllers/adapters/model_catalog/meta-llama--Llama-3.1-70B-Instruct.json")
        .read_text()))  # fmt: skip
    mi300x = get_gpu("MI300X")
    as_cuda = replace(mi300x, vendor="nvidia")
    for tp, extra in ((1, 0.0), (2, 1.7), (8, 1.7)):
        cfg = EngineConfig(tp=tp, max_model_len=8192)
        rocm, cuda = estimate_memory(arch, mi300x, cfg), estimate_memory(arch, as_cuda, cfg)
        assert rocm.non_torch_gib - cuda.non_torch_gib == pytest.approx(extra)
        assert rocm.kv_cache_tokens <= cuda.kv_cache_tokens
