"""C_max search, knee, Little's law, and the percentile length sampler."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sizing.curve import (
    LengthProfile,
    knee_concurrency,
    measure_point,
    meets_slo,
    search_capacity,
)
from sizing.errors import InvalidInput
from sizing.hardware import get_gpu
from sizing.lengths import sample_lengths
from sizing.model import load_model_config
from sizing.performance import build_step_model, replica_shape
from sizing.simulator import EngineLimits
from sizing.workload import Percentiles
from tests.conftest import CALIBRATION

H100 = get_gpu("H100")


def llama_8b_model():
    config = json.loads(
        (CALIBRATION / "model_configs" / "meta-llama--Llama-3.1-8B-Instruct.json").read_text()
    )
    return build_step_model(replica_shape(load_model_config(config), H100, tp=1), H100)


MODEL = llama_8b_model()
SMALL = EngineLimits(max_num_seqs=16, max_num_batched_tokens=2048, kv_cache_tokens=60_000)
CHAT = LengthProfile(Percentiles(500, 1500, 3000), Percentiles(60, 150, 300), max_model_len=4096)


@pytest.mark.parametrize("slo_over_low_load", [3.0, 5.0, 10.0])
def test_search_agrees_with_a_brute_force_sweep(slo_over_low_load):
    """Where the SLO crosses the rising part of the curve. (Below saturation P99 TTFT is a
    flat, noisy band — prefill collisions — and a crossing inside it is not well defined.)"""
    slo_s = measure_point(MODEL, SMALL, CHAT, 1, seed=0).ttft_p99_s * slo_over_low_load
    capacity = search_capacity(MODEL, SMALL, CHAT, slo_s, None, seed=0)
    brute = 0
    for concurrency in range(1, 2 * SMALL.max_num_seqs + 1):
        if not meets_slo(measure_point(MODEL, SMALL, CHAT, concurrency, 0), slo_s, None):
            break
        brute = concurrency
    assert capacity.c_max == brute
    assert SMALL.max_num_seqs <= capacity.c_max < 2 * SMALL.max_num_seqs
    at = next(p for p in capacity.points if p.concurrency == capacity.c_max)
    assert capacity.usable_rps == at.request_per_s > 0
    assert capacity.ttft_p99_s <= slo_s


def test_littles_law_gap_is_small_on_a_consistent_simulation():
    capacity = search_capacity(MODEL, SMALL, CHAT, 1.0, None)
    assert capacity.littles_law_rps == pytest.approx(capacity.usable_rps, rel=0.15)
    assert capacity.littles_law_ok


def test_an_impossible_ttft_slo_gives_no_capacity():
    capacity = search_capacity(MODEL, SMALL, CHAT, 1e-4, None)
    assert capacity.c_max == 0
    assert capacity.usable_rps == 0
    assert capacity.limited_by == "ttft"


def test_a_tight_itl_slo_is_what_limits():
    loose_ttft_s = 30.0
    itl_at_1 = measure_point(MODEL, SMALL, CHAT, 1, 0).itl_p99_s
    capacity = search_capacity(MODEL, SMALL, CHAT, loose_ttft_s, itl_at_1 * 1.2)
    assert capacity.limited_by == "itl"
    assert capacity.itl_p99_s <= itl_at_1 * 1.2


def test_a_generous_slo_is_limited_by_max_num_seqs():
    capacity = search_capacity(MODEL, SMALL, CHAT, 1e6, None)
    assert capacity.c_max == 2 * SMALL.max_num_seqs
    assert capacity.limited_by == "max_num_seqs"


def test_a_short_kv_cache_is_named_as_the_limit():
    short = replace(SMALL, kv_cache_tokens=8_000)
    slo_s = measure_point(MODEL, short, CHAT, 1, 0).ttft_p99_s * 3
    capacity = search_capacity(MODEL, short, CHAT, slo_s, None)
    assert capacity.limited_by == "kv_cache"


def test_knee_is_where_tail_latency_outgrows_throughput():
    base = measure_point(MODEL, SMALL, CHAT, 1, 0)

    def point(concurrency, ttft_p99_s, rps):
        return replace(base, concurrency=concurrency, ttft_p99_s=ttft_p99_s, request_per_s=rps)

    points = [point(1, 0.1, 1), point(2, 0.1, 2), point(4, 0.12, 3.8), point(8, 0.4, 5)]
    assert knee_concurrency(points) == 8
    assert knee_concurrency(points[:3]) == 4  # no knee yet: the highest measured
    blip = [point(1, 0.1, 1), point(2, 0.25, 1.5), point(4, 0.25, 2.8), point(8, 0.6, 3)]
    assert knee_concurrency(blip) == 8  # the jump at 2 is not sustained
    saturating = [*points, point(16, 1.5, 5.1), point(32, 4.0, 5.0)]
    assert knee_concurrency(saturating) == 8


def test_bad_slo_and_workload_are_refused():
    with pytest.raises(InvalidInput, match="SLO"):
        search_capacity(MODEL, SMALL, CHAT, 0, None)
    with pytest.raises(InvalidInput, match="prompt"):
        LengthProfile(Percentiles(100, 50, 200), Percentiles(1, 1, 1), 1000)


@given(
    st.integers(1, 5000),
    st.floats(1.0, 6.0),
    st.floats(1.0, 3.0),
)
def test_lengths_reproduce_their_percentiles(p50, p95_ratio, p99_ratio):
    p95 = round(p50 * p95_ratio)
    lengths = Percentiles(p50, p95, round(p95 * p99_ratio))
    drawn = sample_lengths(lengths, 40_000, np.random.default_rng(0))
    got = np.percentile(drawn, (50, 95, 99))
    for want, have in zip((lengths.p50, lengths.p95, lengths.p99), got, strict=True):
        assert have == pytest.approx(want, rel=0.06, abs=1)
    assert drawn.min() >= 1


def test_lengths_are_seeded_and_capped():
    lengths = Percentiles(1000, 4000, 9000)
    a = sample_lengths(lengths, 1000, np.random.default_rng(3), max_tokens=8000)
    b = sample_lengths(lengths, 1000, np.random.default_rng(3), max_tokens=8000)
    assert np.array_equal(a, b)
    assert a.max() == 8000
    fixed = sample_lengths(Percentiles(256, 256, 256), 10, np.random.default_rng(0))
    assert set(fixed.tolist()) == {256}


def test_sampled_requests_fit_max_model_len():
    prompts, outputs = CHAT.sample(2000, seed=1)
    assert (prompts + outputs <= CHAT.max_model_len).all()
    assert (outputs >= 1).all() and (prompts >= 1).all()
