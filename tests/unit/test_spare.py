"""The warm spare's percentile: steered by misses, bounded, and scored on the replicas ready."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from controllers.policy.scaling import spare
from controllers.policy.scaling.policy import ScalingConfig, ScalingPolicy
from controllers.policy.scaling.replay import (
    Trace,
    needed_replicas,
    oracle_replicas,
    ready_replicas,
    replay_policy,
    score,
)
from controllers.policy.scaling.spare import SparePercentile


def test_a_miss_lifts_the_percentile_and_covered_intervals_lower_it():
    level = SparePercentile(target_met=0.998, cold_start_n=5)
    level.record(10)
    level.observe(rate_rps=5.0, rps_per_replica=1.0)  # 5 req/s on 10 ready replicas: covered
    covered = level.quantile
    assert covered == pytest.approx(spare.START - spare.GAIN * 0.002)
    level.observe(rate_rps=11.0, rps_per_replica=1.0)  # 11 req/s on 10: a miss
    assert level.quantile == pytest.approx(min(spare.HIGH, covered + spare.GAIN * 0.998))
    assert level.met_share() == pytest.approx(0.5, abs=0.01)


def test_nothing_is_scored_before_the_first_answer_or_on_unknown_load():
    level = SparePercentile(target_met=0.998, cold_start_n=5)
    level.observe(rate_rps=100.0, rps_per_replica=1.0)
    level.record(3)
    level.observe(rate_rps=None, rps_per_replica=1.0)
    level.observe(rate_rps=float("nan"), rps_per_replica=1.0)
    assert level.quantile == spare.START and level.met_share() is None


@given(
    st.lists(st.tuples(st.integers(0, 30), st.floats(0, 40)), min_size=1, max_size=200),
    st.integers(0, 6),
)
def test_the_percentile_stays_in_bounds_and_ready_follows_the_cold_start(steps, lag_n):
    level = SparePercentile(target_met=0.995, cold_start_n=lag_n)
    answers: list[int] = []
    for asked, rate in steps:
        if answers:
            # The replay's own rule for what served this interval (the first answer was warm).
            expected = ready_replicas([answers[0], *answers], lag_n)[len(answers)]
            assert level.ready() == expected
        level.observe(rate, rps_per_replica=1.0)
        assert spare.LOW <= level.quantile <= spare.HIGH
        level.record(asked)
        answers.append(asked)


def test_state_round_trips_and_a_damaged_one_is_a_clear_error():
    level = SparePercentile(target_met=0.998, cold_start_n=3)
    for asked, rate in [(4, 3.0), (5, 6.0), (6, 2.0)]:
        level.observe(rate, 1.0)
        level.record(asked)
    again = SparePercentile(target_met=0.998, cold_start_n=3)
    again.load(level.to_dict())
    assert again.to_dict() == level.to_dict()
    with pytest.raises(ValueError, match="outside"):
        again.load({**level.to_dict(), "q": 1.5})
    with pytest.raises(ValueError, match="SLO-met target"):
        SparePercentile(target_met=1.0, cold_start_n=3)


def test_policy_state_without_the_spare_percentile_still_loads():
    cfg = ScalingConfig(usable_rps_per_replica=1.0, cold_start_s=300)
    policy = ScalingPolicy(cfg)
    state = policy.to_dict()
    del state["spare"]
    assert ScalingPolicy.from_dict(cfg, state).spare.quantile == spare.START
    with pytest.raises(ValueError, match="start afresh"):
        ScalingPolicy.from_dict(cfg, {**policy.to_dict(), "spare": {"q": "high"}})


def _smooth_daily_trace(days: int, peak_per_min: float, seed: int) -> Trace:
    """Poisson counts around a smooth daily curve: traffic a forecaster can learn."""
    minute = np.arange(days * 1440)
    shape = 0.2 + 0.8 * (0.5 - 0.5 * np.cos(2 * np.pi * (minute % 1440) / 1440)) ** 2
    counts = np.random.default_rng(seed).poisson(peak_per_min * shape)
    return Trace(60.0, 0.0, tuple(int(c) for c in counts))


def test_on_learnable_traffic_the_spare_comes_down_and_the_target_still_holds():
    """Smooth daily traffic needs less than the careful starting percentile: the policy finds
    that out from its own record, and the SLO-met share stays at the target."""
    trace = _smooth_daily_trace(days=5, peak_per_min=1500, seed=7)
    peak_rps = float(np.percentile(trace.requests, 99)) / 60
    cfg = ScalingConfig(usable_rps_per_replica=peak_rps / 30, cold_start_s=300)
    policy = ScalingPolicy(cfg)
    asked, _ = replay_policy(trace, policy)
    assert policy.spare.quantile < spare.START - 0.05
    result = score("predictive", trace, asked, cfg)
    oracle = oracle_replicas(needed_replicas(trace, cfg.usable_rps_per_replica), 5, 1)
    assert result.slo_met_share >= 0.995
    assert result.replica_hours < 1.25 * score("oracle", trace, oracle, cfg).replica_hours
