"""Measured capacity: bounded, monotone in what was served, deaf to idle windows, and what it
tells the decision (the unit that limits, the blend by confidence)."""

from __future__ import annotations

import math

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from controllers.policy.scaling import capacity as cap
from controllers.policy.scaling.capacity import (
    CapacityEstimator,
    LoadSample,
    PerReplica,
    SLOLimits,
    rps_in_limiting_unit,
)

PREDICTED = PerReplica(rps=2.0, prompt_tok_per_s=4000.0, gen_tok_per_s=400.0)
LIMITS = SLOLimits(ttft_p99_s=1.5, itl_p99_s=0.05, running_per_replica=32.0)


def estimator() -> CapacityEstimator:
    return CapacityEstimator(PREDICTED, LIMITS)


def saturated(per_replica_rps: float, ready: int = 4) -> LoadSample:
    """Replicas full: a queue and TTFT over the SLO."""
    return LoadSample(
        ready=ready, served_rps=per_replica_rps * ready, waiting=3.0 * ready, ttft_p99_s=4.0
    )


def idle(ready: int = 4) -> LoadSample:
    return LoadSample(ready=ready, served_rps=0.1 * ready, waiting=0.0, ttft_p99_s=0.2)


def feed(est: CapacityEstimator, samples: list[LoadSample], t0: float = 0.0) -> float:
    t = t0
    for sample in samples:
        t += 60.0
        est.observe(t, sample)
    return t


numbers = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.floats(min_value=0, max_value=1e6),
)
samples = st.builds(
    LoadSample,
    ready=st.one_of(st.none(), st.integers(0, 64)),
    served_rps=numbers,
    prompt_tok_per_s=numbers,
    gen_tok_per_s=numbers,
    waiting=numbers,
    running=numbers,
    kv_usage_ratio=st.one_of(st.none(), st.floats(-1, 2), st.just(math.nan)),
    ttft_p99_s=numbers,
    itl_p99_s=numbers,
)


@given(st.lists(samples, max_size=40))
def test_the_estimate_is_bounded_finite_and_positive_whatever_the_metrics_say(seq):
    est = estimator()
    t = feed(est, seq)
    estimate = est.estimate(t)
    assert 0.0 <= estimate.confidence < 1.0
    used = est.current(t)
    for unit in cap.UNITS:
        value, predicted = used.get(unit), PREDICTED.get(unit)
        assert value is not None and predicted is not None and math.isfinite(value)
        assert cap.MIN_FACTOR * predicted * (1 - 1e-9) <= value
        assert value <= cap.MAX_FACTOR * predicted * (1 + 1e-9)
        measured = estimate.measured.get(unit) if estimate.measured else None
        if measured is not None:
            assert cap.MIN_FACTOR * predicted * (1 - 1e-9) <= measured
            assert measured <= cap.MAX_FACTOR * predicted * (1 + 1e-9)


@given(
    st.lists(
        st.tuples(
            st.floats(0.05, 30.0),  # served req/s per replica
            st.integers(1, 32),  # ready
            st.booleans(),  # saturated, or loaded within the SLO
            st.floats(0.0, 1.4),  # TTFT P99 of a loaded sample
        ),
        min_size=1,
        max_size=30,
    ),
    st.floats(1.0, 5.0),
)
def test_more_served_never_measures_less(seq, factor):
    """The same intervals, read alike (saturated, loaded or idle), with every served figure
    scaled up give a measurement no lower."""

    def run(scale: float) -> tuple[float | None, list[str]]:
        est = estimator()
        kinds = []
        t = 0.0
        for rps, ready, full, ttft in seq:
            t += 60.0
            est.observe(t, LoadSample(ready=ready))  # the ready count is steady
            t += 60.0
            served = scale * rps * ready
            if full:
                kinds.append(est.observe(t, saturated(scale * rps, ready)))
            else:
                loaded = LoadSample(ready=ready, served_rps=served, waiting=0.0,
                                    ttft_p99_s=ttft, running=16.0 * ready)  # fmt: skip
                kinds.append(est.observe(t, loaded))
        measured = est.estimate(t).measured
        return (None if measured is None else measured.rps), kinds

    (low, low_kinds), (high, high_kinds) = run(1.0), run(factor)
    assume(low_kinds == high_kinds)
    assert (low is None) == (high is None)
    if low is not None and high is not None:
        assert high >= low * (1 - 1e-9)


@given(
    st.lists(st.floats(0.5, 6.0), min_size=1, max_size=20),
    st.lists(st.integers(0, 20), min_size=1, max_size=20),
)
def test_idle_windows_change_nothing(rates, idle_runs):
    """Light load says little about capacity: inserting idle intervals leaves the state be."""
    busy = [saturated(r) for r in rates]
    plain, padded = estimator(), estimator()
    for est in (plain, padded):
        est.observe(0.0, LoadSample(ready=4))  # both know the ready count to begin with
    t = feed(plain, busy)
    s = 0.0
    for k, sample in enumerate(busy):
        for _ in range(idle_runs[k % len(idle_runs)]):
            padded.observe(s, idle())  # at the same time stamps: only the samples differ
        s += 60.0
        padded.observe(s, sample)
    assert padded.estimate(t) == plain.estimate(t)


def test_with_no_saturated_or_loaded_sample_it_stays_at_the_prediction():
    est = estimator()
    t = feed(est, [idle() for _ in range(500)])
    assert est.estimate(t).measured is None and est.current(t) == PREDICTED


def test_replicas_at_six_tenths_are_measured_and_confidence_grows_with_saturated_samples():
    est = estimator()
    confidences = []
    t = 0.0
    for _ in range(10):
        t = feed(est, [saturated(1.2)], t)
        confidences.append(est.estimate(t).confidence)
    assert confidences == sorted(confidences) and confidences[-1] > 0.9
    estimate = est.estimate(t)
    assert estimate.measured is not None
    assert estimate.measured.rps == pytest.approx(1.2)
    assert est.current(t).rps == pytest.approx(1.2, rel=0.05)  # blended, nearly all measured


def test_a_replica_lost_within_the_interval_is_not_a_sample_one_joining_is():
    est = estimator()
    t = feed(est, [saturated(1.0, ready=4)] * 2)
    before = est.estimate(t)
    t = feed(est, [saturated(3.0, ready=3)], t)  # a restart: four replicas' work over three
    assert est.estimate(t).samples == before.samples
    t = feed(est, [saturated(0.8, ready=5)], t)  # one joined: counts, and can only lower it
    after = est.estimate(t)
    assert after.samples == before.samples + 1
    assert after.measured is not None and before.measured is not None
    assert after.measured.rps < before.measured.rps


def test_a_loaded_interval_within_the_slo_extrapolates_at_most_by_the_floor():
    est = estimator()
    sample = LoadSample(ready=2, served_rps=2 * 1.8, waiting=0.0, ttft_p99_s=0.3)
    t = feed(est, [sample, sample])
    measured = est.estimate(t).measured
    assert measured is not None
    assert measured.rps == pytest.approx(1.8 / cap.U_FLOOR)


def test_saturated_evidence_pulls_the_loaded_extrapolation_down():
    est = estimator()
    loaded = LoadSample(ready=2, served_rps=2 * 1.8, waiting=0.0, ttft_p99_s=0.3)
    t = feed(est, [loaded] * 3 + [saturated(2.2, ready=2)] * 10)
    measured = est.estimate(t).measured
    assert measured is not None and 2.2 <= measured.rps < 2.3


def test_state_round_trips_and_garbage_is_refused():
    est = estimator()
    t = feed(est, [saturated(1.1), saturated(1.3), idle()])
    again = estimator()
    again.load(est.to_dict())
    assert again.estimate(t) == est.estimate(t) and again.to_dict() == est.to_dict()
    broken = est.to_dict()
    broken["saturated"]["mean"]["rps"] = -1.0
    with pytest.raises(ValueError, match="negative or non-finite"):
        estimator().load(broken)


def test_a_prompt_length_shift_lowers_the_rate_a_replica_serves_at_once():
    served = 10.0
    base, unit = rps_in_limiting_unit(PREDICTED, served, served * 2000, served * 200)
    assert (base, unit) == (2.0, "requests")
    doubled, unit = rps_in_limiting_unit(PREDICTED, served, served * 4000, served * 200)
    assert doubled == pytest.approx(1.0) and unit == "prefill tokens"


def mixed(prompt_tokens: float, requests_per_s: float, interval_s: float = 60.0) -> LoadSample:
    """An interval whose requests all carried `prompt_tokens` and 100 output tokens."""
    return LoadSample(
        ready=2,
        served_rps=requests_per_s,
        prompt_tok_per_s=requests_per_s * prompt_tokens,
        gen_tok_per_s=requests_per_s * 100.0,
    )


@given(
    st.lists(st.floats(min_value=10, max_value=20_000), min_size=1, max_size=30),
    st.floats(min_value=0.001, max_value=100),
)
def test_the_smoothed_mix_stays_within_what_was_served(prompts: list[float], rps: float):
    mix = cap.RequestMix()
    for prompt in prompts:
        mix.observe(mixed(prompt, rps), 60.0)
    per_request = mix.per_request("prompt")
    assert per_request is not None
    assert min(prompts) * (1 - 1e-9) <= per_request <= max(prompts) * (1 + 1e-9)


def test_a_few_requests_with_one_long_prompt_do_not_set_the_rate_alone():
    """Three requests a minute: one minute of 7,000-token prompts after an hour of 1,500 moves
    the mix a little; a busy pool's same minute moves it almost all the way."""
    quiet, busy = cap.RequestMix(), cap.RequestMix()
    for _ in range(60):
        quiet.observe(mixed(1500, 0.05), 60.0)
        busy.observe(mixed(1500, 50.0), 60.0)
    quiet.observe(mixed(7000, 0.05), 60.0)
    busy.observe(mixed(7000, 50.0), 60.0)
    assert (quiet.per_request("prompt") or 0) < 2000
    assert (busy.per_request("prompt") or 0) > 6900
    shifted, unit = rps_in_limiting_unit(PREDICTED, *busy.smoothed(mixed(7000, 50.0)))
    assert unit == "prefill tokens" and shifted < 0.6 * PREDICTED.rps  # the shift, at once


def test_the_mix_round_trips_with_the_estimator_and_older_state_loads():
    est = estimator()
    feed(est, [mixed(3000, 1.0), mixed(1000, 1.0)])
    again = estimator()
    again.load(est.to_dict())
    assert again.mix.per_request("prompt") == est.mix.per_request("prompt")
    older = est.to_dict()
    del older["mix"]
    estimator().load(older)  # saved before the mix was smoothed
    broken = est.to_dict()
    broken["mix"]["prompt"] = [1.0, float("nan")]
    with pytest.raises(ValueError, match="request mix"):
        estimator().load(broken)
