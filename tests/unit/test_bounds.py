"""Forecasts bounded by construction: outages are not demand, no runaway, bounded growth."""

from __future__ import annotations

import json
import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from controllers.policy.scaling.bounds import (
    WINDOW_DAYS,
    DemandEnvelope,
    Envelope,
    bound_forecast,
    step_up_limit,
)
from controllers.policy.scaling.forecast import (
    DAY_S,
    OUTAGE_MAX_S,
    RATIO_LIMIT,
    Forecast,
    HoltWinters,
    Seasonal,
)
from controllers.policy.scaling.policy import Metrics, ScalingConfig, ScalingPolicy, replicas_for
from controllers.policy.scaling.replay import replay_policy
from controllers.policy.scaling.synthetic import (
    OUTAGE_MINUTES,
    OUTAGE_START_MINUTE,
    synthetic_trace,
)

floats = st.floats(0, 1e6)
odd = st.sampled_from([math.nan, math.inf, -math.inf, -1.0])


@given(floats, floats, floats, st.one_of(st.none(), floats), st.floats(1, 10))
def test_a_forecast_never_exceeds_the_envelope_and_small_ones_pass(
    point, extra, peak, rate, multiple
):
    env = Envelope(peak, peak / 3)
    fc = Forecast(point, point + extra, 360, "seasonal/daily")
    bounded, note = bound_forecast(fc, rate, env, multiple)
    cap = multiple * peak + peak / 3
    assert 0 <= bounded.point_rps <= bounded.upper_rps <= max(cap, fc.upper_rps)
    assert bounded.upper_rps <= cap or bounded == fc
    if fc.upper_rps <= cap:
        assert bounded == fc and note == ""
    if point > cap:
        assert "capped" in note


@given(odd, floats, st.one_of(st.none(), floats))
def test_an_unusable_forecast_falls_back_to_the_load(bad, good, rate):
    for fc in (Forecast(bad, good, 360, "seasonal/daily"), Forecast(good, bad, 360, "x")):
        bounded, note = bound_forecast(fc, rate, Envelope(1e9, 0), 2.0)
        expected = rate or 0.0
        assert (bounded.point_rps, bounded.upper_rps) == (expected, expected)
        assert not bounded.learned and "unusable" in note


@given(st.integers(0, 500), st.integers(0, 500), floats, st.floats(0.01, 100))
def test_the_step_limit_allows_the_reactive_answer_and_a_bounded_rise(
    current, reactive, rise, per_replica
):
    limit = step_up_limit(current, reactive, rise, per_replica, 2.0)
    assert limit >= max(current, reactive) + 1
    assert limit <= max(current, reactive) + max(1, math.ceil(2 * rise / per_replica))


def test_the_envelope_keeps_three_weeks_of_peaks_and_rises():
    env = DemandEnvelope(interval_s=60, cold_start_s=300)
    env.observe(60.0, 100.0)  # day 0: a peak of 100
    for k in range(1, 10):
        env.observe(DAY_S + 60.0 * k, 10.0 * k)  # day 1: a climb of 10 req/s a minute
    assert env.envelope() == Envelope(100.0, 50.0)  # five minutes of climb
    env.observe(WINDOW_DAYS * DAY_S + 60.0, 1.0)  # day 21: day 0 leaves the window
    assert env.envelope().peak_rps == 90.0
    copy = DemandEnvelope(60, 300)
    copy.load(json.loads(json.dumps(env.to_dict())))
    assert copy.envelope() == env.envelope() and copy.window == env.window


def daily(minute: int) -> float:
    return 100.0 + 50.0 * math.sin(2 * math.pi * minute / 1440)


def feed(fc, start: int, stop: int, rate=daily) -> None:
    for k in range(start, stop):
        fc.observe((k + 1) * 60.0, rate(k))


def test_an_outage_that_ends_abruptly_is_not_learned():
    fc = Seasonal()
    outage = range(600, 650)  # 10:00 to 10:50 on day 0
    feed(fc, 0, 1440, lambda k: 0.0 if k in outage else daily(k))
    values = fc.daily.values[60:65, 0]
    assert np.all(np.isnan(values)), values  # the outage's bins hold nothing, not zeros
    assert fc.quiet is None


def test_quiet_that_fades_in_or_lasts_an_hour_is_learned():
    fades, long = Seasonal(), Seasonal()
    quiet = range(600, 650)
    feed(fades, 0, 700, lambda k: 0.0 if k in quiet else (1.0 if 650 <= k < 660 else daily(k)))
    assert np.all(fades.daily.values[60:65, 0] == 0.0)  # 1 req/s after it: a real lull
    hours = int(OUTAGE_MAX_S // 60) + 30
    feed(long, 0, 600 + hours, lambda k: 0.0 if k >= 600 else daily(k))
    assert long.quiet is None and np.all(long.daily.values[60:67, 0] == 0.0)


def test_zeros_at_a_few_requests_an_hour_are_ordinary():
    fc = Seasonal()
    feed(fc, 0, 120, lambda k: 1 / 60 if k % 20 == 0 else 0.0)
    assert fc.quiet is None and fc.daily.values[0, 0] < 0.01


def test_an_outage_learned_into_a_profile_cannot_multiply_the_forecast():
    """The profile from before outages were held back: zeros in the bin the forecast divides by."""
    fc = Seasonal()
    feed(fc, 0, 3 * 1440)
    fc.daily.values[60:65] = 0.0  # 10:00..10:50 learned as zero load on every day
    fc.daily._refresh()
    now_s = (3 * 1440 + 645) * 60.0  # 10:45, load normal, next bin normal
    feed(fc, 3 * 1440, 3 * 1440 + 645)
    point = fc.forecast(now_s, 360).point_rps
    assert point <= RATIO_LIMIT * 1.01 * max(daily(k) for k in range(645, 652))


def test_holt_winters_factors_near_zero_do_not_blow_up_the_level():
    fc = HoltWinters()
    feed(fc, 0, 3 * 1440)
    fc.daily[60:65] = 1e-9
    feed(fc, 3 * 1440, 4 * 1440)
    assert fc.level is not None and fc.level < 30 * 150.0


def need_bound(peak_rps: float, rise_rps: float, spare: int, config: ScalingConfig) -> int:
    """k x peak need + the rise over one cold start + the warm spare (+ the floor)."""
    cap = config.bound_multiple * peak_rps + rise_rps
    return max(config.min_replicas, replicas_for(cap, config.usable_rps_per_replica) + spare)


def test_the_outage_runaway_is_gone():
    """Issue 16's mechanism: 50 minutes of zeros on day 0, then the next day forecasts
    hundreds of thousands of replicas for a peak need of about 31."""
    trace = synthetic_trace("outage", days=3, peak_rps=1700, seed=1)
    assert set(trace.requests[OUTAGE_START_MINUTE : OUTAGE_START_MINUTE + OUTAGE_MINUTES]) == {0}
    config = ScalingConfig(usable_rps_per_replica=1700 / 30, cold_start_s=300)
    _, decisions = replay_policy(trace, ScalingPolicy(config))
    rates = [c / 60 for c in trace.requests if c is not None]
    peak_need = replicas_for(max(rates), config.usable_rps_per_replica)
    day1 = decisions[1440:]
    assert any(d.reason.startswith("forecast") and "seasonal" in d.reason for d in day1)
    assert max(d.desired_replicas for d in decisions) <= 2 * peak_need + max(
        d.warm_spare for d in decisions
    )


SEGMENTS = st.lists(
    st.tuples(
        st.sampled_from(["level", "spike", "zeros", "gap", "nan"]),
        st.integers(1, 80),  # intervals
        st.floats(0, 2000),  # req/s of a level, or the spike's multiple of the last level
    ),
    min_size=1,
    max_size=12,
)


def trace_from(segments, repeat: int) -> list[float | None]:
    rates: list[float | None] = []
    level = 10.0
    for kind, n, value in segments:
        if kind == "level":
            level = value
            rates += [value] * n
        elif kind == "spike":
            rates += [level * (1 + value)] * min(n, 3)
        elif kind == "zeros":
            rates += [0.0] * n
        else:
            rates += [None if kind == "gap" else math.nan] * n
    return rates * repeat


@settings(max_examples=25)
@given(
    SEGMENTS,
    st.integers(1, 4),
    st.sampled_from([60.0, 600.0]),
    st.sampled_from(["seasonal", "holt-winters", "last-value"]),
    st.sets(st.integers(0, 1200), max_size=4),
)
def test_desired_stays_under_k_times_peak_need_plus_spare(
    segments, repeat, interval_s, forecaster, restarts
):
    """Random levels, adversarial spikes, zeros, gaps and NaN, cycled so the profiles learn
    them (10-minute intervals make a day 144 steps), with restarts from stored state."""
    config = ScalingConfig(
        usable_rps_per_replica=5.0,
        cold_start_s=300,
        interval_s=interval_s,
        forecaster=forecaster,
    )
    policy = ScalingPolicy(config)
    rates = trace_from(segments, repeat)
    lag_n = config.cold_start_n
    current, peak, rise, spare = 1, 0.0, 0.0, 0
    known: list[float] = []
    for j, rate in enumerate(rates):
        if j in restarts:
            policy = ScalingPolicy.from_dict(config, json.loads(json.dumps(policy.to_dict())))
        if rate is not None and math.isfinite(rate):
            rise = max(rise, rate - min(known[-lag_n:], default=rate))
            peak = max(peak, rate)
            known.append(rate)
        decision = policy.step((j + 1) * interval_s, Metrics(rps=rate), current)
        current = decision.desired_replicas
        spare = max(spare, decision.warm_spare)
        assert 0 <= current <= need_bound(peak, rise, spare, config), decision.reason


def test_held_zeros_reach_the_other_statistics_once_they_turn_out_real():
    """The policy's ramps and bounds learn what the forecaster returns: nothing while zeros
    are held, the zeros first once load comes back too low to be the end of an outage."""
    fc = Seasonal()
    feed(fc, 0, 100)
    assert fc.observe(101 * 60.0, 0.0) == [] and fc.observe(102 * 60.0, 0.0) == []
    learned = fc.observe(103 * 60.0, 1.0)
    assert learned == [(101 * 60.0, 0.0), (102 * 60.0, 0.0), (103 * 60.0, 1.0)]


def test_zeros_that_may_be_an_outage_hold_the_fleet_for_an_hour_at_most():
    for mode in ("predictive", "reactive"):
        config = ScalingConfig(usable_rps_per_replica=5.0, cold_start_s=300, mode=mode)
        policy, current = ScalingPolicy(config), 1
        for k in range(1, 61):
            current = policy.step(k * 60.0, Metrics(rps=100.0), current).desired_replicas
        held = current
        for k in range(61, 61 + int(OUTAGE_MAX_S // 60) + 30):
            decision = policy.step(k * 60.0, Metrics(rps=0.0), current)
            current = decision.desired_replicas
            if k < 61 + OUTAGE_MAX_S // 60:
                assert current == held and "zero requests since 01:00" in decision.reason
        assert current < held  # an hour of zeros is real quiet: scale-down resumes
