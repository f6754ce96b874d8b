"""Cold-start replay: ready-capacity rule, the oracle's optimality, and policies on real traces."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from controllers.policy.scaling.policy import ScalingConfig, ScalingPolicy
from controllers.policy.scaling.replay import (
    Trace,
    compare,
    oracle_replicas,
    ready_replicas,
    replay_policy,
    score,
)
from inferfleet.traces import read_per_minute, spread_evenly
from tests.conftest import TRACES


def test_scale_up_serves_after_the_cold_start_and_scale_down_at_once():
    asked = [2, 5, 5, 5, 5, 1, 4]
    assert ready_replicas(asked, 2) == [2, 2, 2, 5, 5, 1, 1]


@given(st.lists(st.integers(0, 40), min_size=1, max_size=60), st.integers(0, 6))
def test_oracle_meets_every_interval_and_no_entry_can_be_lowered(need, lag_n):
    asked = oracle_replicas(need, lag_n, min_replicas=0)
    ready = ready_replicas(asked, lag_n)
    assert all(r >= n for r, n in zip(ready, need, strict=True))
    for j in range(len(asked)):
        if asked[j] == 0:
            continue
        lowered = [*asked[:j], asked[j] - 1, *asked[j + 1 :]]
        assert any(r < n for r, n in zip(ready_replicas(lowered, lag_n), need, strict=True))


def test_gaps_are_not_scored_and_not_fed_as_zero_load():
    trace = Trace(60.0, 0.0, (60, 600, None, None, 600, 600))
    cfg = ScalingConfig(usable_rps_per_replica=1.0, cold_start_s=120)
    asked, decisions = replay_policy(trace, ScalingPolicy(cfg))
    assert "metrics unknown" in decisions[2].reason and asked[3] >= asked[2]
    assert score("p", trace, asked, cfg).scored_intervals == 3


def test_spread_evenly_matches_the_uniform_files():
    assert spread_evenly(115, 60)[:56] == [2] * 55 + [1]
    assert sum(spread_evenly(115, 60)) == 115


@pytest.mark.parametrize(
    "file",
    ["servegen_deepseek_r1.per_minute_uniform.csv", "servegen_mm_image.per_minute_uniform.csv"],
)
def test_predictive_policy_far_above_a_reactive_hpa_on_real_traces(file):
    trace = read_per_minute(str(TRACES / file))
    usable = float(np.percentile(trace.requests, 99)) / 60 / 30
    cfg = ScalingConfig(usable_rps_per_replica=usable, cold_start_s=300)
    result = compare(trace, cfg)
    hpa = replace(cfg, mode="reactive", min_warm_replicas=0)  # HPA: current load only
    hpa_asked, _ = replay_policy(trace, ScalingPolicy(hpa))
    hpa_score = score("hpa", trace, hpa_asked, hpa)
    pred = result.scores["predictive"]
    assert pred.slo_met_share >= 0.97
    assert pred.slo_met_share >= hpa_score.slo_met_share + 0.10
    assert result.scores["oracle"].slo_met_share == 1.0
    assert result.scores["oracle"].replica_hours < pred.replica_hours
    assert pred.replica_hours < result.scores["static"].replica_hours
