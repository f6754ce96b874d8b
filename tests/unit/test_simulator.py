"""The continuous-batching engine: scheduling rules, conservation, KV limits, Little's law."""

from __future__ import annotations

import csv
import gzip
import itertools
from dataclasses import asdict, replace
from datetime import datetime

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from sizing.errors import InvalidInput
from sizing.hardware import get_gpu
from sizing.performance import ReplicaShape, StepTimeModel, build_step_model
from sizing.simulator import (
    Engine,
    EngineLimits,
    poisson_arrivals,
    simulate_arrivals,
    simulate_closed_loop,
    weighted_percentiles,
)
from tests.conftest import TRACES

# An 8B-class dense model in BF16 on one H100 (Llama-3-8B shape: 32 layers, 4096 wide, 8 KV
# heads of 128 → 128 KiB of KV per token).
KV_BYTES_PER_TOKEN = 2 * 32 * 8 * 128 * 2


def small_model() -> StepTimeModel:
    shape = ReplicaShape(
        num_layers=32,
        hidden_size=4096,
        attention_width=4096,
        active_params=8.03e9,
        dense_weight_bytes_per_gpu=16.06e9,
        expert_weight_bytes_per_gpu=0.0,
        num_experts=0,
        experts_per_token=0,
        kv_bytes_per_token_per_gpu=KV_BYTES_PER_TOKEN,
    )
    return build_step_model(shape, get_gpu("H100"))


MODEL = small_model()
ROOMY = EngineLimits(max_num_seqs=256, max_num_batched_tokens=8192, kv_cache_tokens=400_000)


def run_engine(engine: Engine, prompts, outputs):
    """Add everything at t=0 and step to the end, checking invariants on every step."""
    for p, o in zip(prompts, outputs, strict=True):
        engine.add_request(int(p), int(o))
    limits = engine._limits
    emitted = [0] * len(prompts)
    finished = []
    steps = 0
    while engine.has_work:
        result = engine.step()
        steps += 1
        assert steps < 1_000_000
        assert result.kv_blocks_used <= limits.kv_blocks
        assert result.batch_size <= limits.max_num_seqs
        assert result.decode_tokens + result.prefill_tokens <= limits.max_num_batched_tokens
        assert result.duration_s > 0
        for rid in result.token_ids:
            emitted[rid] += 1
        finished.extend(result.finished_ids)
    return emitted, finished


def test_single_request_latency_is_one_prefill_then_decode_steps():
    engine = Engine(MODEL, ROOMY)
    engine.add_request(1000, 5)
    first = engine.step()
    assert first.first_token_ids == (0,)
    assert first.duration_s == pytest.approx(MODEL.prefill_s(1000))
    decode_steps = [engine.step() for _ in range(4)]
    assert decode_steps[-1].finished_ids == (0,)
    assert not engine.has_work
    for i, step in enumerate(decode_steps):
        # Context read: the prompt, the tokens decoded so far, and the new one.
        assert step.duration_s == pytest.approx(MODEL.decode_step_s(1, 1000 + i + 1))


def test_long_prompt_is_chunked_into_the_token_budget():
    limits = EngineLimits(max_num_seqs=8, max_num_batched_tokens=1024, kv_cache_tokens=100_000)
    engine = Engine(MODEL, limits)
    engine.add_request(3000, 2)
    chunks = [engine.step() for _ in range(3)]
    assert [c.prefill_tokens for c in chunks] == [1024, 1024, 952]
    assert [c.first_token_ids for c in chunks] == [(), (), (0,)]


def test_decodes_are_scheduled_before_new_prefills():
    limits = EngineLimits(max_num_seqs=8, max_num_batched_tokens=512, kv_cache_tokens=100_000)
    engine = Engine(MODEL, limits)
    engine.add_request(100, 50)
    engine.step()
    engine.add_request(5000, 2)
    step = engine.step()
    assert step.decode_tokens == 1
    assert step.prefill_tokens == 511


def test_max_num_seqs_keeps_the_rest_waiting():
    limits = EngineLimits(max_num_seqs=4, max_num_batched_tokens=8192, kv_cache_tokens=100_000)
    engine = Engine(MODEL, limits)
    for _ in range(10):
        engine.add_request(10, 100)
    engine.step()
    assert engine.running == 4
    assert engine.waiting == 6


def test_every_request_finishes_and_gets_exactly_its_tokens():
    rng = np.random.default_rng(3)
    prompts = rng.integers(1, 3000, 200)
    outputs = rng.integers(1, 400, 200)
    engine = Engine(MODEL, ROOMY, track_tokens=True)
    emitted, finished = run_engine(engine, prompts, outputs)
    assert sorted(finished) == list(range(200))
    assert emitted == [int(o) for o in outputs]
    assert engine.kv_blocks_used == 0


@given(
    st.integers(1, 6),
    st.integers(16, 512),
    st.integers(64, 4000),
    st.lists(st.tuples(st.integers(1, 600), st.integers(1, 300)), min_size=1, max_size=30),
)
def test_kv_limit_respected_and_tokens_conserved_under_preemption(
    max_num_seqs, budget, kv_tokens, requests
):
    """Tiny caches force waiting and preemption; nothing is lost or invented."""
    longest = max(p + o for p, o in requests)
    limits = EngineLimits(max_num_seqs, budget, max(kv_tokens, longest + 16))
    prompts = [p for p, _ in requests]
    outputs = [o for _, o in requests]
    engine = Engine(MODEL, limits, track_tokens=True)
    emitted, finished = run_engine(engine, prompts, outputs)
    assert sorted(finished) == list(range(len(requests)))
    assert emitted == outputs
    assert engine.kv_blocks_used == 0


def test_a_short_cache_preempts_and_recomputes():
    limits = EngineLimits(max_num_seqs=16, max_num_batched_tokens=4096, kv_cache_tokens=2048)
    engine = Engine(MODEL, limits, track_tokens=True)
    emitted, _ = run_engine(engine, [500] * 6, [600] * 6)
    assert engine.preemptions > 0
    assert emitted == [600] * 6


def test_a_request_larger_than_the_cache_is_refused():
    engine = Engine(MODEL, EngineLimits(8, 1024, 1024))
    with pytest.raises(InvalidInput, match="KV blocks"):
        engine.add_request(1000, 100)


def test_littles_law_holds_on_closed_loop_output():
    """C = X × R in steady state: the simulator's own clock and counts are consistent."""
    rng = np.random.default_rng(7)
    n = 600
    prompts = rng.integers(100, 2000, n)
    outputs = rng.integers(20, 300, n)
    for concurrency in (4, 32, 100):
        point = simulate_closed_loop(MODEL, ROOMY, prompts, outputs, concurrency, steady_state=True)
        assert point.request_per_s * point.e2e_mean_s == pytest.approx(concurrency, rel=0.1)
        assert point.mean_running == pytest.approx(concurrency, rel=0.01)


def test_throughput_grows_with_concurrency_until_saturation():
    n = 512
    prompts, outputs = np.full(n, 512), np.full(n, 128)
    rates = [
        simulate_closed_loop(MODEL, ROOMY, prompts, outputs, c).output_tok_per_s
        for c in (1, 2, 4, 8, 16, 32, 64)
    ]
    assert all(b >= a for a, b in itertools.pairwise(rates))
    assert rates[-1] > 10 * rates[0]


def test_bench_mode_counts_every_token():
    n = 50
    prompts, outputs = np.full(n, 300), np.full(n, 40)
    point = simulate_closed_loop(MODEL, ROOMY, prompts, outputs, 8)
    assert point.requests == n
    assert point.output_tok_per_s * point.duration_s == pytest.approx(40 * n)
    assert point.total_tok_per_s * point.duration_s == pytest.approx(340 * n)
    assert point.request_per_s * point.duration_s == pytest.approx(n)


def test_ttft_at_low_load_is_the_prefill_time():
    rng = np.random.default_rng(1)
    arrivals = poisson_arrivals(0.5, 100, rng)
    point = simulate_arrivals(MODEL, ROOMY, arrivals, np.full(100, 800), np.full(100, 50), 0.5)
    assert point.ttft_p50_s == pytest.approx(MODEL.prefill_s(800), rel=0.05)
    assert point.request_per_s == pytest.approx(0.5, rel=0.3)


def test_open_loop_overload_queues_up():
    rng = np.random.default_rng(2)
    prompts, outputs = np.full(400, 2000), np.full(400, 200)
    light = simulate_arrivals(MODEL, ROOMY, poisson_arrivals(1, 400, rng), prompts, outputs)
    heavy = simulate_arrivals(MODEL, ROOMY, poisson_arrivals(200, 400, rng), prompts, outputs)
    assert heavy.ttft_p99_s > 10 * light.ttft_p99_s


def test_same_inputs_same_result():
    rng = np.random.default_rng(5)
    prompts, outputs = rng.integers(1, 2000, 300), rng.integers(1, 300, 300)
    a = simulate_closed_loop(MODEL, ROOMY, prompts, outputs, 16)
    b = simulate_closed_loop(MODEL, ROOMY, prompts, outputs, 16)
    assert a == b


def test_bad_inputs_name_the_field():
    with pytest.raises(InvalidInput, match="max_num_seqs"):
        EngineLimits(0, 100, 1000)
    with pytest.raises(InvalidInput, match="concurrency"):
        simulate_closed_loop(MODEL, ROOMY, np.ones(3), np.ones(3), 0)
    with pytest.raises(InvalidInput, match="sorted"):
        simulate_arrivals(MODEL, ROOMY, np.array([1.0, 0.5]), np.ones(2), np.ones(2))
    with pytest.raises(InvalidInput, match="rate"):
        poisson_arrivals(0, 3, np.random.default_rng(0))


def test_weighted_percentiles_repeat_values_by_weight():
    values = np.array([3.0, 1.0, 2.0])
    weights = np.array([1, 98, 1])
    assert weighted_percentiles(values, weights, (50, 99, 100)) == (1.0, 2.0, 3.0)
    assert weighted_percentiles(values[:0], weights[:0], (50,)) == (0.0,)


def same_point(a, b):
    for (name, x), y in zip(asdict(a).items(), asdict(b).values(), strict=True):
        assert x == (y if y is None else pytest.approx(y, rel=1e-9)), name


@pytest.mark.parametrize("kv_cache_tokens", [400_000, 6_000])
def test_the_fast_path_gives_the_step_by_step_result(kv_cache_tokens):
    """Decode-only stretches run at once must change nothing but the speed (also when the KV
    cache is short and admission is blocked, or blocks run out inside a stretch)."""
    rng = np.random.default_rng(11)
    limits = replace(ROOMY, kv_cache_tokens=kv_cache_tokens)
    prompts, outputs = rng.integers(1, 1500, 120), rng.integers(1, 400, 120)
    for concurrency in (2, 7, 40):
        fast = simulate_closed_loop(MODEL, limits, prompts, outputs, concurrency)
        slow = simulate_closed_loop(MODEL, limits, prompts, outputs, concurrency, fast_path=False)
        same_point(fast, slow)
    arrivals = poisson_arrivals(3.0, 120, rng)
    fast = simulate_arrivals(MODEL, limits, arrivals, prompts, outputs)
    slow = simulate_arrivals(MODEL, limits, arrivals, prompts, outputs, fast_path=False)
    same_point(fast, slow)


@pytest.mark.parametrize("kv_cache_tokens", [400_000, 6_000])
def test_the_closed_loop_matches_the_engine_stepped_on_its_clock(kv_cache_tokens):
    """The closed loop schedules in ticks and prices every step at the end; driving
    `Engine.step()` on its clock, as a client would, must give the same latencies, to the last
    bit (also with preemptions, whose gaps are priced after the fact)."""
    rng = np.random.default_rng(13)
    limits = replace(ROOMY, kv_cache_tokens=kv_cache_tokens)
    n = 150
    prompts, outputs = rng.integers(1, 1500, n), rng.integers(1, 400, n)
    for concurrency in (3, 30):
        point = simulate_closed_loop(MODEL, limits, prompts, outputs, concurrency)
        engine = Engine(MODEL, limits)
        sent_s, first_s, finish_s = np.zeros(n), np.zeros(n), np.zeros(n)
        for rid in range(concurrency):
            engine.add_request(int(prompts[rid]), int(outputs[rid]))
        queued = concurrency
        gaps, weights = [], []  # every inter-token gap, as the ITL percentiles count them
        while engine.has_work:
            step = engine.step()
            gaps += [step.duration_s, *step.resume_gaps_s]
            weights += [step.decode_tokens, *[1] * len(step.resume_gaps_s)]
            first_s[list(step.first_token_ids)] = step.end_s
            for rid in step.finished_ids:
                finish_s[rid] = step.end_s
                if queued < n:
                    sent_s[queued] = step.end_s
                    engine.add_request(int(prompts[queued]), int(outputs[queued]))
                    queued += 1
        ttft, e2e = first_s - sent_s, finish_s - sent_s
        assert point.duration_s == engine.now_s
        assert point.preemptions == engine.preemptions
        assert point.kv_blocked_steps == engine.kv_blocked_steps
        assert (point.ttft_p50_s, point.ttft_p99_s) == tuple(np.percentile(ttft, (50, 99)))
        assert (point.e2e_p99_s, point.e2e_mean_s) == (np.percentile(e2e, 99), e2e.mean())
        assert point.ttft_mean_s == pytest.approx(ttft.mean(), rel=1e-12)
        several = outputs > 1
        tpot = (e2e - ttft)[several] / (outputs[several] - 1)
        assert point.tpot_p50_s == pytest.approx(np.median(tpot), rel=1e-9)
        assert point.tpot_mean_s == pytest.approx(tpot.mean(), rel=1e-9)
        itl = weighted_percentiles(np.array(gaps), np.array(weights), (50, 95, 99))
        assert (point.itl_p50_s, point.itl_p95_s, point.itl_p99_s) == itl
    assert kv_cache_tokens > 10_000 or engine.preemptions > 0


def test_replaying_real_traffic_obeys_littles_law():
    """The first ~10 minutes of the Azure 2023 conversation trace, replayed open loop: every
    request is served, and requests in the engine = arrival rate × mean latency."""
    times, prompts, outputs = [], [], []
    with gzip.open(TRACES / "azure2023_conv.requests.csv.gz", "rt", newline="") as f:
        for row in itertools.islice(csv.DictReader(f), 3000):
            times.append(datetime.fromisoformat(row["TIMESTAMP"][:26]).timestamp())
            prompts.append(int(row["ContextTokens"]))
            outputs.append(max(1, int(row["GeneratedTokens"])))
    arrivals = np.sort(np.asarray(times) - min(times))
    point = simulate_arrivals(MODEL, ROOMY, arrivals, np.asarray(prompts), np.asarray(outputs))
    assert point.requests == 3000
    rate_rps = 3000 / point.duration_s
    assert point.request_per_s == pytest.approx(rate_rps)
    assert point.mean_running == pytest.approx(rate_rps * point.e2e_mean_s, rel=0.02)
    assert point.ttft_p50_s < 0.2  # a lightly loaded 8B on an H100


@given(st.floats(0.1, 100), st.integers(1, 500), st.integers(0, 2**32 - 1))
def test_poisson_arrivals_start_at_zero_sorted_at_the_rate(rate, count, seed):
    arrivals = poisson_arrivals(rate, count, np.random.default_rng(seed))
    assert arrivals.size == count and arrivals[0] == 0.0
    assert (np.diff(arrivals) >= 0).all()


def test_poisson_arrivals_have_the_requested_rate():
    arrivals = poisson_arrivals(20.0, 20_001, np.random.default_rng(0))
    assert 20_000 / arrivals[-1] == pytest.approx(20.0, rel=0.03)


@given(st.integers(1, 4000), st.integers(2, 400), st.sampled_from([1, 2, 4, 8, 16, 32]))
def test_doubling_concurrency_never_lowers_throughput_below_saturation(prompt, output, c):
    """With a roomy KV cache, C well under max_num_seqs and every prompt of a wave fitting one
    step's token budget, more clients keep the GPU busier. (Once prefills saturate the
    budget, how prompts pack into steps makes throughput wobble: not a property.)"""
    assume(2 * c * prompt <= ROOMY.max_num_batched_tokens)
    n = 8 * c
    prompts, outputs = np.full(n, prompt), np.full(n, output)
    single = simulate_closed_loop(MODEL, ROOMY, prompts, outputs, c)
    double = simulate_closed_loop(MODEL, ROOMY, prompts, outputs, 2 * c)
    assert double.output_tok_per_s >= single.output_tok_per_s * (1 - 1e-9)
