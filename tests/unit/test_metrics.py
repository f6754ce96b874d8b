"""The operator's own metrics: values set from a plan and decisions, removal, serving."""

from __future__ import annotations

import socket

import httpx
from prometheus_client.parser import text_string_to_metric_families

from controllers.adapters.operator_metrics import OperatorMetrics
from controllers.api.v1alpha1 import (
    Finding,
    PlanStatus,
    PoolPlanStatus,
    PoolScorecard,
    ScorecardWindow,
)
from tests.plans import fleet_plan, pool_plan


def _pool(name: str, gpus: int) -> PoolPlanStatus:
    return pool_plan(
        pool=name,
        replicas=gpus // 2,
        c_max=48,
        usable_rps_per_replica="2.750",
        gpus=gpus,
        cost_per_hour=f"{gpus * 2.99:.2f}",
        cost_per_million_tokens="0.4000",
        kv_cache_tokens=300000,
        cold_start_seconds=90,
    )


def _plan(*pools: PoolPlanStatus) -> PlanStatus:
    return fleet_plan(*pools, cost_per_hour="0", cost_per_month="0")


def _samples(metrics: OperatorMetrics) -> dict[tuple, float]:
    out = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _key(name: str, **labels: str) -> tuple:
    return (name, tuple(sorted(labels.items())))


def test_plan_replicas_findings_and_resize_appear_with_fleet_labels():
    m = OperatorMetrics()
    m.set_plan("llm", "chat", _plan(_pool("h100", 8), _pool("h200", 4)))
    m.set_replicas("llm", "chat", "h100", desired=4, ready=3, warming=1)
    m.set_slo("llm", "chat", "1500ms")
    m.set_forecast("llm", "chat", 42.5)
    m.set_findings(
        "llm",
        "chat",
        [
            Finding(
                metric="kvCacheUtilization",
                severity="warning",
                observed="95%",
                threshold="90%",
                advice="a",
            )
        ]
        * 2,
    )
    m.set_resize_recommended("llm", "chat", True)
    m.observe_reconcile(0.2)
    m.count_error("PrometheusUnreachable")
    s = _samples(m)
    pool = {"namespace": "llm", "fleet": "chat", "pool": "h100"}
    assert s[_key("inferfleet_pool_planned_gpus", **pool)] == 8
    assert s[_key("inferfleet_pool_cost_per_hour_usd", **pool)] == 23.92
    assert s[_key("inferfleet_pool_c_max", **pool)] == 48
    assert s[_key("inferfleet_pool_usable_rps_per_replica", **pool)] == 2.75
    assert s[_key("inferfleet_pool_replicas", **pool, state="ready")] == 3
    assert s[_key("inferfleet_pool_replicas", **pool, state="warming")] == 1
    assert s[_key("inferfleet_fleet_slo_ttft_p99_seconds", namespace="llm", fleet="chat")] == 1.5
    assert s[_key("inferfleet_fleet_forecast_rps", namespace="llm", fleet="chat")] == 42.5
    assert (
        s[_key("inferfleet_fleet_findings", namespace="llm", fleet="chat", severity="warning")] == 2
    )
    assert (
        s[_key("inferfleet_fleet_findings", namespace="llm", fleet="chat", severity="critical")]
        == 0
    )
    assert s[_key("inferfleet_resize_recommended", namespace="llm", fleet="chat")] == 1
    assert s[_key("inferfleet_reconcile_duration_seconds_count")] == 1
    assert s[_key("inferfleet_reconcile_errors_total", reason="PrometheusUnreachable")] == 1


def test_a_pool_dropped_from_the_plan_and_a_deleted_fleet_leave_no_series():
    m = OperatorMetrics()
    m.set_plan("llm", "chat", _plan(_pool("h100", 8), _pool("h200", 4)))
    m.set_replicas("llm", "chat", "h200", 2, 2, 0)
    m.set_plan("ops", "other", _plan(_pool("l4", 1)))
    m.set_plan("llm", "chat", _plan(_pool("h100", 8)))
    names = {labels for _, labels in _samples(m)}
    assert not any(("pool", "h200") in labels for labels in names)
    m.set_resize_recommended("llm", "chat", False)
    m.forget_fleet("llm", "chat")
    left = {labels for _, labels in _samples(m)}
    assert not any(("fleet", "chat") in labels for labels in left)
    assert any(("fleet", "other") in labels for labels in left)


def test_registries_are_separate_and_served_over_http():
    first, second = OperatorMetrics(), OperatorMetrics()
    first.set_forecast("llm", "chat", 3.0)
    assert b"inferfleet_fleet_forecast_rps{" not in second.exposition()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = first.serve(port, address="127.0.0.1")
    try:
        body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    finally:
        server.shutdown()
        server.server_close()
    assert 'inferfleet_fleet_forecast_rps{fleet="chat",namespace="llm"} 3.0' in body


def test_the_scorecard_is_exported_per_pool_and_window_in_ratios_and_seconds():
    m = OperatorMetrics()
    m.set_plan("llm", "chat", _plan(_pool("h100", 8)))
    day = ScorecardWindow(
        window="24h", covered_minutes=1440, slo_met_percent="99.50", replica_hours="30",
        lower_bound_replica_hours="20", over_lower_bound="1.5", forecast_mape_percent="12.00",
        reactive_mape_percent="8.00", scale_events_per_day="14", flaps_per_day="2",
        pending_minutes="3",
    )  # fmt: skip
    hour = ScorecardWindow(window="1h", covered_minutes=0, replica_hours="0",
                           lower_bound_replica_hours="0")  # fmt: skip
    m.set_scorecard("llm", "chat", [PoolScorecard(pool="h100", windows=[hour, day])])
    s = _samples(m)
    labels = {"namespace": "llm", "fleet": "chat", "pool": "h100", "window": "24h"}
    assert s[_key("inferfleet_scorecard_slo_met_ratio", **labels)] == 0.995
    assert s[_key("inferfleet_scorecard_forecast_mape_ratio", **labels)] == 0.12
    assert s[_key("inferfleet_scorecard_reactive_mape_ratio", **labels)] == 0.08
    assert s[_key("inferfleet_scorecard_over_lower_bound_ratio", **labels)] == 1.5
    assert s[_key("inferfleet_scorecard_pending_seconds", **labels)] == 180
    assert s[_key("inferfleet_scorecard_flaps_per_day", **labels)] == 2
    unjudged = {**labels, "window": "1h"}
    assert _key("inferfleet_scorecard_slo_met_ratio", **unjudged) not in s  # absent, not 0
    m.forget_fleet("llm", "chat")
    assert not any(name.startswith("inferfleet_scorecard") for name, _ in _samples(m))
