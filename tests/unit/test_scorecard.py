"""The autoscaler's scorecard: windows, bounds, forecast error, flaps, Pending, state."""

from __future__ import annotations

import contextlib
import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controllers.api.v1alpha1 import ScorecardMemory
from controllers.policy.scaling.capacity import LoadSample, SLOLimits
from controllers.policy.scaling.scorecard import WINDOWS, Interval, Scorecard, slo_met

INTERVAL_S = 60.0


def card(horizon_s: float = 300.0, cold_start_s: float = 240.0) -> Scorecard:
    return Scorecard(horizon_s=horizon_s, cold_start_s=cold_start_s, flap_window_s=600.0)


def window(c: Scorecard, name: str, now_s: float):
    return next(s for s in c.scores(now_s) if s.window == name)


def test_slo_met_share_counts_judged_intervals_only():
    c = card()
    verdicts = [True, True, None, False, True]
    for i, met in enumerate(verdicts):
        c.observe(Interval((i + 1) * INTERVAL_S, INTERVAL_S, replicas=2, slo_met=met))
    hour = window(c, "1h", len(verdicts) * INTERVAL_S)
    assert hour.slo_met_share == pytest.approx(3 / 4)
    assert hour.covered_s == pytest.approx(len(verdicts) * INTERVAL_S)


def test_replica_hours_against_the_lower_bound():
    c = card()
    for i in range(60):  # an hour at 10 req/s, 2 req/s per replica: the bound is 5 replicas
        c.observe(Interval((i + 1) * INTERVAL_S, INTERVAL_S, 8, demand_rps=10.0, capacity_rps=2.0))
    hour = window(c, "1h", 3600.0)
    assert hour.replica_hours == pytest.approx(8.0)
    assert hour.bound_replica_hours == pytest.approx(5.0)
    assert hour.over_bound == pytest.approx(8 / 5)


def test_an_old_hour_leaves_the_one_hour_window_but_not_the_day():
    c = card()
    c.observe(Interval(60.0, 60.0, 1, slo_met=False))
    later = 2 * 3600.0
    c.observe(Interval(later, 60.0, 1, slo_met=True))
    assert window(c, "1h", later).slo_met_share == 1.0
    assert window(c, "24h", later).slo_met_share == pytest.approx(0.5)


def test_forecast_error_is_judged_one_horizon_later_against_the_reactive_estimate():
    c = card(horizon_s=120.0)
    demand = [10.0, 10.0, 20.0, 20.0, 20.0]
    # The forecaster foresaw the rise; holding the rate (reactive) did not.
    for i, rps in enumerate(demand):
        c.observe(Interval((i + 1) * INTERVAL_S, INTERVAL_S, 2, demand_rps=rps, forecast_rps=20.0))
    hour = window(c, "1h", 5 * INTERVAL_S)
    # Judged at minutes 3, 4, 5 (made at 1, 2, 3): reactive said 10, 10, 20 against 20.
    assert hour.forecast_mape == pytest.approx(0.0)
    assert hour.reactive_mape == pytest.approx((0.5 + 0.5 + 0.0) / 3)
    assert not hour.forecast_worse


def test_a_forecaster_worse_than_holding_the_rate_says_so():
    c = card(horizon_s=60.0)
    for i in range(30):
        c.observe(Interval((i + 1) * INTERVAL_S, INTERVAL_S, 2, demand_rps=5.0, forecast_rps=50.0))
    assert window(c, "24h", 30 * INTERVAL_S).forecast_worse


def test_idle_demand_is_not_a_percentage_error():
    c = card(horizon_s=60.0)
    for i in range(5):
        c.observe(Interval((i + 1) * INTERVAL_S, INTERVAL_S, 1, demand_rps=0.0, forecast_rps=3.0))
    assert window(c, "1h", 5 * INTERVAL_S).forecast_mape is None


def test_scale_events_and_flaps_per_day():
    c = card()
    counts = [2, 3, 2, *[2] * 10, 4]  # up, down within 10 min (a flap), up 11 min later
    for i, n in enumerate(counts):
        c.observe(Interval((i + 1) * INTERVAL_S, INTERVAL_S, n))
    hour = window(c, "1h", len(counts) * INTERVAL_S)
    days = len(counts) * INTERVAL_S / 86_400
    assert hour.scale_events_per_day == pytest.approx(3 / days)
    # The last change (up after down) came 11 minutes after the one before: not a flap.
    assert hour.flaps_per_day == pytest.approx(1 / days)


def test_pending_counts_only_a_shortfall_older_than_a_cold_start():
    c = card(cold_start_s=120.0)
    for i in range(6):  # 4 asked, 2 ready for six minutes: the last four are Pending time
        c.observe(Interval((i + 1) * INTERVAL_S, INTERVAL_S, 4, ready=2))
    c.observe(Interval(7 * INTERVAL_S, INTERVAL_S, 4, ready=4))
    assert window(c, "1h", 7 * INTERVAL_S).pending_s == pytest.approx(4 * INTERVAL_S)


def test_pending_follows_the_pending_detection_where_it_ran():
    c = card(cold_start_s=120.0)
    # Short of ready for five minutes, but the detection saw nothing waiting for a node in
    # the first three (slow warming), then two replicas past the deadline for two minutes.
    for i, waiting in enumerate([0, 0, 0, 2, 2]):
        c.observe(Interval((i + 1) * INTERVAL_S, INTERVAL_S, 4, ready=2, pending=waiting))
    c.observe(Interval(6 * INTERVAL_S, INTERVAL_S, 4, ready=2, pending=0))
    assert window(c, "1h", 6 * INTERVAL_S).pending_s == pytest.approx(2 * INTERVAL_S)


def test_state_round_trips_through_json():
    c = card(horizon_s=120.0)
    for i in range(40):
        c.observe(
            Interval((i + 1) * INTERVAL_S, INTERVAL_S, 2 + i % 3, ready=2, slo_met=i % 4 != 0,
                     demand_rps=5.0 + i, capacity_rps=2.0, forecast_rps=6.0 + i)
        )  # fmt: skip
    again = card(horizon_s=120.0)
    again.load(json.loads(json.dumps(c.to_dict())))
    assert again.scores(2400.0) == c.scores(2400.0)
    nxt = Interval(2460.0, 60.0, 3, ready=3, slo_met=True, demand_rps=50.0, capacity_rps=2.0)
    c.observe(nxt)
    again.observe(nxt)
    assert again.scores(2460.0) == c.scores(2460.0)


def test_state_round_trips_through_the_typed_status_model():
    c = card(horizon_s=120.0)
    for i in range(30):
        c.observe(
            Interval((i + 1) * INTERVAL_S, INTERVAL_S, 2 + i % 2, ready=1 + i % 3,
                     demand_rps=4.0 + i, capacity_rps=2.0, forecast_rps=None if i % 5 else 3.0)
        )  # fmt: skip
    # As status.history stores it: validated, then written without its unset figures.
    stored = ScorecardMemory.model_validate(c.to_dict()).model_dump(
        by_alias=True, exclude_none=True
    )
    again = card(horizon_s=120.0)
    again.load(json.loads(json.dumps(stored)))
    assert again.scores(1800.0) == c.scores(1800.0)
    assert (again.last_change, again.short_since_s) == (c.last_change, c.short_since_s)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=30,
)
_memory_keys = st.sampled_from(["rings", "due", "lastReplicas", "lastChange", "shortSince", "x"])
_ring = st.lists(st.lists(st.floats(allow_nan=True) | st.integers(), max_size=14), max_size=3)


@given(
    st.one_of(
        _json,
        st.dictionaries(_memory_keys, _json, max_size=5),
        st.fixed_dictionaries(
            {"rings": st.dictionaries(st.sampled_from(["1h", "7d", "2h"]), _ring)}
        ),
    )
)
def test_any_stored_scorecard_parses_and_loads_or_is_refused(raw):
    try:
        memory = ScorecardMemory.model_validate(raw)
    except ValueError:  # pydantic's ValidationError: status.history starts afresh
        return
    # Anything else would escape the autoscaler, which answers these with a fresh card.
    with contextlib.suppress(KeyError, TypeError, ValueError):
        card().load(memory.model_dump(by_alias=True, exclude_none=True))


def test_damaged_state_is_refused():
    c = card()
    with pytest.raises(ValueError, match="malformed"):
        c.load({"rings": {"1h": [[0, 1.0]]}, "due": [], "lastReplicas": None,
                "lastChange": None, "shortSince": None})  # fmt: skip


maybe = st.one_of(
    st.none(), st.floats(min_value=-10, max_value=1e6), st.just(math.nan), st.just(math.inf)
)


@given(
    st.lists(
        st.tuples(st.integers(0, 500), st.one_of(st.none(), st.integers(0, 500)),
                  st.one_of(st.none(), st.booleans()), maybe, maybe, maybe),
        max_size=80,
    )
)  # fmt: skip
def test_scores_stay_bounded_and_finite_on_any_input(rows):
    c = card()
    for i, (replicas, ready, met, demand, capacity, forecast) in enumerate(rows):
        c.observe(Interval((i + 1) * INTERVAL_S, INTERVAL_S, replicas, ready, met, demand,
                           capacity, forecast))  # fmt: skip
    for score in c.scores(len(rows) * INTERVAL_S):
        assert score.window in dict(WINDOWS)
        if score.slo_met_share is not None:
            assert 0.0 <= score.slo_met_share <= 1.0
        for value in (score.replica_hours, score.bound_replica_hours, score.pending_s,
                      score.forecast_mape, score.reactive_mape, score.scale_events_per_day,
                      score.flaps_per_day):  # fmt: skip
            assert value is None or (math.isfinite(value) and value >= 0)
        assert score.pending_s <= score.covered_s + 1e-6
        if score.flaps_per_day is not None and score.scale_events_per_day is not None:
            assert score.flaps_per_day <= score.scale_events_per_day


def test_the_slo_verdict_reads_latency_and_the_queue_and_unknown_is_unknown():
    limits = SLOLimits(ttft_p99_s=1.5, itl_p99_s=0.05)
    assert slo_met(LoadSample(ready=2, ttft_p99_s=1.0, itl_p99_s=0.03, waiting=0), limits)
    assert slo_met(LoadSample(ready=2, ttft_p99_s=2.0), limits) is False
    assert slo_met(LoadSample(ready=2, itl_p99_s=0.08), limits) is False
    assert slo_met(LoadSample(ready=2, ttft_p99_s=1.0, waiting=5), limits) is False
    assert slo_met(LoadSample(ready=2, served_rps=3.0), limits) is None
    assert slo_met(None, limits) is None
    assert slo_met(LoadSample(ttft_p99_s=math.nan), limits) is None
