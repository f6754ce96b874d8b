"""Step 6 rules: TP divides heads, NVLink above TP 2, PP bubble formula."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sizing.hardware import get_gpu
from sizing.parallelism import check_tp, parallel_candidates, pipeline_bubble


def test_tp_must_divide_attention_heads():
    h100 = get_gpu("H100")
    assert not check_tp(8, 28, 4, h100).allowed  # Qwen2.5-7B: 28 heads
    assert check_tp(4, 28, 4, h100).allowed


def test_pcie_caps_tp_at_two():
    l40s = get_gpu("L40S")
    assert check_tp(2, 64, 8, l40s).allowed
    verdict = check_tp(4, 64, 8, l40s)
    assert not verdict.allowed
    assert "NVLink" in verdict.why


def test_kv_heads_replicated_above_kv_head_count():
    verdict = check_tp(8, 64, 4, get_gpu("H200"))
    assert verdict.allowed
    assert "replicated 2x" in verdict.why


def test_h100_nvl_domain_is_a_pair():
    assert not check_tp(4, 64, 8, get_gpu("H100-NVL")).allowed


def test_pipeline_bubble_guide_example():
    # Guide 5.2: PP=4 with 4 micro-batches still wastes 3/7 ≈ 43 %.
    assert pipeline_bubble(4, 4) == pytest.approx(3 / 7)
    assert pipeline_bubble(1, 1) == 0.0


@given(
    heads=st.sampled_from([8, 12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 64, 96, 128]),
    kv_div=st.sampled_from([1, 2, 4, 8, 16]),
    gpu=st.sampled_from(["H100", "L40S", "A100-80GB", "MI300X", "T4"]),
    max_gpus=st.one_of(st.none(), st.integers(1, 32)),
)
def test_candidates_always_divide_heads(heads, kv_div, gpu, max_gpus):
    kv_heads = max(1, heads // kv_div)
    candidates, _ = parallel_candidates(heads, kv_heads, get_gpu(gpu), max_gpus)
    for tp, pp in candidates:
        assert heads % tp == 0
        assert kv_heads % tp == 0 or tp % kv_heads == 0
        assert max_gpus is None or tp * pp <= max_gpus
    sizes = [tp * pp for tp, pp in candidates]
    assert sizes == sorted(sizes)
