"""One reconcile's scaling + monitoring glue: cadence, restarts, unknown metrics, modes."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from controllers.api.v1alpha1 import FleetHistory, InferenceFleet, PlanStatus
from controllers.policy.autoscale import FleetTick, decide_fleet, needs_history
from controllers.policy.monitoring.snapshot import (
    MetricsSnapshot,
    PoolMetrics,
    Sample,
    WorkloadMetrics,
)
from sizing.simulator import LoadPoint
from tests.conftest import REPO
from tests.plans import fleet_plan, load_point, pool_plan

NOW_S = 1_700_000_000.0
UPPER = 32  # the h100 pool's 64 GPUs at TP2 bind before maxReplicas 40


def spec(mode: str = "predictive", **scaling):
    doc = yaml.safe_load((REPO / "examples/fleet-chat-70b.yaml").read_text())
    doc["spec"]["scaling"] = {
        "mode": mode, "minReplicas": 2, "maxReplicas": 40, "interval": "30s",
        "scaleDownStabilization": "5m", **scaling,
    }  # fmt: skip
    return InferenceFleet.model_validate(doc).spec


def plan(replicas: int = 10, cold_start_s: int = 120) -> PlanStatus:
    pool = pool_plan(
        replicas=replicas, min_warm=3, c_max=64, usable_rps_per_replica="10.000",
        gpus=2 * replicas, cost_per_hour="59.80", cost_per_million_tokens="0.1500",
        max_model_len=6144, max_num_seqs=128, max_num_batched_tokens=2048,
        kv_cache_tokens=200000, cold_start_seconds=cold_start_s,
    )  # fmt: skip
    return fleet_plan(pool, hash="abc", cost_per_hour="59.80", cost_per_month="43654.00")


def snapshot(rps: float | None, reachable: bool = True, age_s: float = 5.0) -> MetricsSnapshot:
    pool = PoolMetrics(
        pool="h100",
        requests_running=Sample(4.0, age_s),
        requests_waiting=Sample(0.0, age_s),
        kv_cache_usage_ratio=Sample(0.5, age_s),
        request_rate_rps=None if rps is None else Sample(rps, age_s),
    )
    return MetricsSnapshot(
        namespace="llm", fleet="chat-70b", queried_at_s=NOW_S, reachable=reachable,
        error=None if reachable else "connection refused", pools=(pool,) if reachable else (),
    )  # fmt: skip


def tick(**kw) -> FleetTick:
    base = {"spec": spec(), "plan": plan(), "snapshot": snapshot(50.0), "history": None,
            "current": {"h100": 10}, "now_s": NOW_S}  # fmt: skip
    base.update(kw)
    return FleetTick(**base)


def test_static_mode_runs_the_plan():
    decision = decide_fleet(tick(spec=spec("static"), current={"h100": 4}))
    assert decision.replicas == {"h100": 10}
    assert decision.changed == {"h100": (4, 10)}
    assert "static mode" in decision.reasons["h100"]


def test_load_above_the_fleet_scales_up_with_a_reason():
    decision = decide_fleet(tick(snapshot=snapshot(180.0), current={"h100": 10}))
    assert decision.replicas["h100"] >= 18
    assert decision.changed["h100"][0] == 10
    assert decision.reasons["h100"]
    assert decision.metrics_condition[0] == "True"


def test_prometheus_unreachable_never_scales_down():
    decision = decide_fleet(tick(snapshot=snapshot(None, reachable=False), current={"h100": 25}))
    assert decision.replicas["h100"] >= 25
    assert decision.metrics_condition[:2] == ("False", "PrometheusUnreachable")
    assert decision.findings == ()


def test_no_prometheus_configured_is_unknown_and_holds():
    decision = decide_fleet(tick(snapshot=None, current={"h100": 12}))
    assert decision.replicas["h100"] >= 12
    assert decision.metrics_condition[:2] == ("Unknown", "PrometheusNotConfigured")


def test_a_pass_within_the_interval_reuses_the_decision():
    first = decide_fleet(tick(snapshot=snapshot(180.0)))
    later = NOW_S + 5
    again = decide_fleet(
        tick(snapshot=snapshot(5.0), history=first.history, now_s=later, current=first.replicas)
    )
    assert again.replicas == first.replicas
    assert again.changed == {}


def test_history_survives_a_restart_as_json():
    history = None
    current = {"h100": 10}
    for i in range(6):
        decision = decide_fleet(
            tick(snapshot=snapshot(80.0), history=history, now_s=NOW_S + 30 * i, current=current)
        )
        history = json.loads(json.dumps(decision.history))  # what status round-trips through
        current = decision.replicas
    assert history["version"] == 1
    assert "policy" in history["pools"]["h100"]
    assert decision.forecast is not None and decision.forecast.forecaster == "seasonal"


@pytest.mark.parametrize("forecaster", ["seasonal", "holt-winters", "last-value"])
def test_the_typed_status_history_loses_nothing_the_policy_remembers(forecaster):
    """Through status the memory is typed (FleetHistory, nulls dropped); a policy restored from
    it on every pass decides as one restored from the plain JSON."""
    fleet = spec(forecaster=forecaster)
    plain, typed = None, None
    current_plain, current_typed = {"h100": 10}, {"h100": 10}
    for i, rps in enumerate([80.0, 120.0, None, 200.0, 150.0, 90.0, 60.0, 60.0]):
        at = {"spec": fleet, "snapshot": snapshot(rps), "now_s": NOW_S + 30 * i}
        a = decide_fleet(tick(**at, history=plain, current=current_plain))
        b = decide_fleet(tick(**at, history=typed, current=current_typed))
        assert (a.replicas, a.reasons, a.forecast) == (b.replicas, b.reasons, b.forecast)
        plain = json.loads(json.dumps(a.history))
        stored = FleetHistory.model_validate(json.loads(json.dumps(b.history)))
        assert stored.pools["h100"].policy is not None
        typed = stored.model_dump(by_alias=True, exclude_none=True)
        current_plain, current_typed = a.replicas, b.replicas


@settings(max_examples=25)
@given(
    rates=st.lists(st.one_of(st.none(), st.floats(0, 500)), min_size=1, max_size=12),
    start=st.integers(0, 60),
)
def test_replicas_stay_within_bounds_and_never_drop_on_unknown(rates, start):
    history, current = None, {"h100": start}
    for i, rps in enumerate(rates):
        decision = decide_fleet(
            tick(snapshot=snapshot(rps), history=history, now_s=NOW_S + 30 * i, current=current)
        )
        count = decision.replicas["h100"]
        assert 2 <= count <= UPPER
        if rps is None:
            assert count >= min(current["h100"], UPPER)
        history, current = decision.history, decision.replicas


def test_external_mode_does_not_run_the_policy():
    decision = decide_fleet(tick(spec=spec("external"), snapshot=snapshot(300.0)))
    assert decision.history["pools"] == {}
    assert decision.forecast is None


def test_keda_mode_runs_the_policy_for_the_floor():
    decision = decide_fleet(tick(spec=spec("keda"), snapshot=snapshot(180.0)))
    assert decision.replicas["h100"] >= 18  # the ScaledObject's minReplicaCount
    assert "policy" in decision.history["pools"]["h100"]
    assert decision.forecast is not None


def _daily_peak_history(peak_starts_in_s: float, days: int = 3):
    """5-minute request rates: 10 req/s, and 100 req/s for an hour at the same time each day."""
    points = []
    t = NOW_S - days * 86_400.0
    while t < NOW_S:
        into_peak = (t - (NOW_S + peak_starts_in_s)) % 86_400.0
        points.append((t, 100.0 if into_peak < 3600.0 else 10.0))
        t += 300.0
    return tuple(points)


def test_past_traffic_seeds_the_forecast_so_the_first_day_prewarms():
    # A 10-minute cold start: the peak that starts in 400 s must be warming now.
    slow = plan(cold_start_s=600)
    history = _daily_peak_history(peak_starts_in_s=400.0)
    base = {"plan": slow, "snapshot": snapshot(10.0), "current": {"h100": 3}}
    cold = decide_fleet(tick(**base))
    seeded = decide_fleet(tick(**base, history_rps=history))
    assert seeded.replicas["h100"] >= 10 > cold.replicas["h100"]
    assert "forecast" in seeded.reasons["h100"]
    # Once the policy has memory, past traffic is not fed in again.
    later = {**base, "now_s": NOW_S + 30, "current": seeded.replicas}
    again = decide_fleet(tick(**later, history=seeded.history, history_rps=()))
    assert again.replicas["h100"] == seeded.replicas["h100"]


def _curve() -> tuple[LoadPoint, ...]:
    return (load_point(1.0, 0.5), load_point(20.0, 1.0))


def test_the_fleets_peak_is_judged_against_the_plan_only_after_a_day_of_watching():
    base_spec = spec()
    thresholds = {"resizeFireAfterSeconds": "60"}
    quick = base_spec.model_copy(
        update={"monitoring": base_spec.monitoring.model_copy(update={"thresholds": thresholds})}
    )
    planned = float(base_spec.workload.peak_requests_per_second)
    quiet = replace(
        snapshot(0.2 * planned),
        workload=WorkloadMetrics(peak_request_rate_rps=Sample(0.2 * planned, 5.0)),
    )
    common = {"spec": quick, "snapshot": quiet, "curves": {"h100": _curve()}}
    history, now_s = None, NOW_S
    for _ in range(3):  # the first hours: a low peak is no verdict yet
        step = decide_fleet(tick(**common, history=history, now_s=now_s))
        assert step.resize_condition is not None and step.resize_condition[0] == "False"
        history, now_s = step.history, now_s + 3600.0
    assert history["watchingSince"] == NOW_S
    now_s, newly = NOW_S + 86_400.0, []
    for _ in range(3):
        step = decide_fleet(tick(**common, history=history, now_s=now_s))
        history, now_s = step.history, now_s + 60.0
        newly.append(step.resize_newly_recommended)
    assert step.resize_condition is not None and step.resize_condition[0] == "True"
    assert "over-sized" in step.resize_condition[2]
    assert newly == [False, True, False]  # one Warning Event and one re-plan, not three


def test_a_new_fleet_on_old_traffic_counts_as_watched_since_its_history_starts():
    past = tuple((NOW_S - 2 * 86_400.0 + 300.0 * k, 5.0) for k in range(576))
    first = decide_fleet(tick(history_rps=past))
    assert first.history["watchingSince"] == NOW_S - 2 * 86_400.0
    assert needs_history(spec(), plan(), None) and not needs_history(
        spec("static"), plan(), first.history
    )


def test_forecast_status_shows_the_spare_percentile_and_recent_slo_met_share():
    history, now_s, current = None, NOW_S, {"h100": 10}
    for _ in range(4):  # 50 req/s on 10 replicas of 10 req/s: every interval covered
        step = decide_fleet(tick(history=history, now_s=now_s, current=current))
        history, now_s, current = step.history, now_s + 30.0, step.replicas
    forecast = step.forecast
    assert forecast is not None and forecast.target_slo_met_percent == "99.8"
    assert forecast.recent_slo_met_percent == "100.00"
    assert forecast.spare_percentile is not None and float(forecast.spare_percentile) < 99.0
    fixed = decide_fleet(tick(spec=spec(minWarmReplicas=2)))
    assert fixed.forecast is not None and fixed.forecast.spare_percentile is None


def test_the_scorecard_accumulates_across_passes_and_restarts():
    history, current = None, {"h100": 10}
    for i in range(8):
        decision = decide_fleet(
            tick(snapshot=snapshot(80.0), history=history, now_s=NOW_S + 30 * i, current=current)
        )
        history = json.loads(json.dumps(decision.history))  # status round-trips it
        current = decision.replicas
    (card,) = decision.scorecard
    assert card.pool == "h100" and [w.window for w in card.windows] == ["1h", "24h", "7d"]
    hour = card.windows[0]
    assert hour.covered_minutes == 4  # eight 30 s policy intervals
    # 80 req/s over 10 req/s per replica: a lower bound of 8 replicas for every interval.
    assert float(hour.lower_bound_replica_hours) == pytest.approx(8 * 8 * 30 / 3600, abs=0.05)
    assert float(hour.replica_hours) >= float(hour.lower_bound_replica_hours)
    assert hour.slo_met_percent == "100.00"  # no queue, no latency signal over the SLO
    assert "scorecard" in history["pools"]["h100"]


def test_a_damaged_scorecard_record_starts_afresh_rather_than_wedging_the_fleet():
    first = decide_fleet(tick(snapshot=snapshot(80.0)))
    history = json.loads(json.dumps(first.history))
    history["pools"]["h100"]["scorecard"] = {"rings": {"1h": [["x"]]}}
    again = decide_fleet(
        tick(snapshot=snapshot(80.0), history=history, now_s=NOW_S + 30, current=first.replicas)
    )
    assert again.scorecard[0].windows[0].covered_minutes == 0  # one 30 s interval, rounded
