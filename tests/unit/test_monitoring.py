"""Monitoring policy: thresholds, findings, the MetricsAvailable mapping, the resize trigger."""

from __future__ import annotations

import dataclasses

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from controllers.adapters.prometheus import FAMILIES, UNQUERIED, snapshot_query
from controllers.api.v1alpha1 import InferenceFleet, PlanStatus, PoolCapacity, parse_decimal
from controllers.policy.monitoring.findings import evaluate
from controllers.policy.monitoring.resize import (
    Expectation,
    ResizeState,
    observed_spec,
    observed_workload,
    predicted_at_load,
    propose_resize,
    recommendation,
    resize_condition,
    step_resize,
)
from controllers.policy.monitoring.snapshot import (
    POOL_METRIC_NAMES,
    REQUIRED_POOL_METRICS,
    WORKLOAD_METRIC_NAMES,
    MetricsSnapshot,
    PoolMetrics,
    Sample,
    WorkloadMetrics,
    metrics_condition,
    scaling_metrics,
)
from controllers.policy.monitoring.thresholds import Thresholds, resolve_thresholds
from controllers.policy.planning import plan_spec, plan_status
from sizing.errors import InvalidInput
from tests.conftest import REPO
from tests.plans import fleet_plan, load_point, pool_plan


def s(value: float) -> Sample:
    return Sample(value=value, age_s=1.0)


def spec(prefix_share: bool = True):
    data = yaml.safe_load((REPO / "examples" / "fleet-chat-70b.yaml").read_text())
    data["spec"]["slo"] = {"ttftP99": "2s", "itlP99": "100ms"}  # the numbers judged below
    data["spec"]["workload"]["promptTokens"] = {"p50": 1000, "p95": 4000, "p99": 6000}
    data["spec"]["workload"]["outputTokens"] = {"p50": 200, "p95": 600, "p99": 1000}
    data["spec"]["workload"]["prefixShare"] = "0.30" if prefix_share else None
    return InferenceFleet.model_validate(data).spec


def plan(usable_rps: str = "2.000", gpus: int = 8, cost_per_month: str = "1000.00") -> PlanStatus:
    pool = pool_plan(replicas=gpus // 2, usable_rps_per_replica=usable_rps, gpus=gpus)
    return fleet_plan(pool, cost_per_month=cost_per_month)


HEALTHY = PoolMetrics(
    pool="h100",
    replicas_reporting=s(4),
    requests_running=s(40),
    requests_waiting=s(0),
    kv_cache_usage_ratio=s(0.8),
    preemptions_per_s=s(0.0),
    request_rate_rps=s(5.6),  # 70 % of 4 x 2 req/s
    generation_tok_per_s=s(2000),
    prefix_cache_hit_ratio=s(0.6),
    ttft_p50_s=s(0.4),
    ttft_p99_s=s(1.5),
    itl_p50_s=s(0.03),
    itl_p99_s=s(0.08),
    gpu_util_percent=s(75),
    sm_active_ratio=s(0.7),
    fb_used_mib=s(4 * 2 * 70000),
    fb_free_mib=s(4 * 2 * 11000),
)


def snap(pool: PoolMetrics = HEALTHY, **kw) -> MetricsSnapshot:
    return MetricsSnapshot(
        namespace="llm", fleet="chat", queried_at_s=1000.0, reachable=True, pools=(pool,), **kw
    )


def findings(pool: PoolMetrics, **kw):
    return {f.metric: f for f in evaluate(snap(pool), spec(**kw), plan(), Thresholds())}


def test_a_fleet_inside_every_band_has_no_finding():
    assert evaluate(snap(), spec(), plan(), Thresholds()) == ()


@pytest.mark.parametrize(
    ("change", "metric", "severity", "observed"),
    [
        ({"kv_cache_usage_ratio": s(0.95)}, "kvCacheUtilization", "warning", "95.0%"),
        ({"preemptions_per_s": s(0.56)}, "kvCacheEvictionRate", "warning", "10.0%"),
        ({"preemptions_per_s": s(1.68)}, "kvCacheEvictionRate", "critical", "30.0%"),
        ({"request_rate_rps": s(2.4)}, "fleetUtilization", "warning", "30.0%"),
        ({"request_rate_rps": s(7.6)}, "fleetUtilization", "warning", "95.0%"),
        ({"ttft_p99_s": s(2.5)}, "ttftP99", "warning", "2.500s"),
        ({"ttft_p99_s": s(3.0), "ttft_p50_s": s(2.2)}, "ttftP99", "critical", "3.000s"),
        ({"itl_p99_s": s(0.2)}, "itlP99", "warning", "0.200s"),
        ({"requests_waiting": s(12)}, "queueDepth", "warning", "3.0 per replica"),
        ({"prefix_cache_hit_ratio": s(0.1)}, "prefixCacheHitRate", "warning", "10.0%"),
        ({"spec_decode_acceptance_ratio": s(0.4)}, "specDecodeAcceptanceRate", "warning", "40.0%"),
        ({"lora_adapter_hit_ratio": s(0.5)}, "adapterHitRate", "warning", "50.0%"),
        (
            {"fb_used_mib": s(8 * 79000), "fb_free_mib": s(8 * 1000)},
            "gpuMemoryUtilization",
            "warning",
            "98.8%",
        ),
        (
            {"fb_used_mib": s(8 * 40000), "fb_free_mib": s(8 * 40000)},
            "gpuMemoryUtilization",
            "info",
            "50.0%",
        ),
        ({"gpu_util_percent": s(30)}, "gpuComputeUtilization", "info", "30.0%"),
    ],
)
def test_each_band_of_the_guide_table_raises_its_finding(change, metric, severity, observed):
    found = findings(dataclasses.replace(HEALTHY, **change))
    assert found[metric].severity == severity
    assert found[metric].observed == observed
    assert found[metric].pool == "h100"
    assert found[metric].advice


def test_pegged_compute_is_healthy_unless_ttft_breaks():
    pegged = dataclasses.replace(HEALTHY, gpu_util_percent=s(100))
    assert "gpuComputeUtilization" not in findings(pegged)
    rising = dataclasses.replace(pegged, ttft_p99_s=s(2.5))
    assert findings(rising)["gpuComputeUtilization"].severity == "warning"


def test_prefix_hit_rate_is_judged_only_where_reuse_is_expected():
    low = dataclasses.replace(HEALTHY, prefix_cache_hit_ratio=s(0.1))
    assert "prefixCacheHitRate" not in findings(low, prefix_share=False)


def test_missing_values_raise_no_finding_and_are_not_zero():
    empty = PoolMetrics(pool="h100")
    assert evaluate(snap(empty), spec(), plan(), Thresholds()) == ()


def test_findings_are_sorted_worst_first():
    bad = dataclasses.replace(HEALTHY, kv_cache_usage_ratio=s(0.99), preemptions_per_s=s(2.0))
    severities = [f.severity for f in evaluate(snap(bad), spec(), plan(), Thresholds())]
    assert severities == sorted(severities, key=["critical", "warning", "info"].index)


def test_overrides_move_the_bands_and_tokens_per_gpu_hour_is_opt_in():
    t = resolve_thresholds({"kvCacheHighPercent": "97", "tokensPerGPUHourMin": "1000000"})
    found = {
        f.metric: f
        for f in evaluate(
            snap(dataclasses.replace(HEALTHY, kv_cache_usage_ratio=s(0.95))), spec(), plan(), t
        )
    }
    assert "kvCacheUtilization" not in found
    # 2000 tok/s over 4 replicas x 2 GPUs = 900000 tokens per GPU-hour, below 1e6.
    assert found["tokensPerGPUHour"].observed == "900000"


def test_bad_threshold_overrides_name_the_key():
    with pytest.raises(InvalidInput, match=r"kvCacheHigh.*valid keys are"):
        resolve_thresholds({"kvCacheHigh": "90"})
    with pytest.raises(
        InvalidInput,
        match=r"preemptionWarningPercent \(30\) must not exceed preemptionDegradedPercent \(20\)",
    ):
        resolve_thresholds({"preemptionWarningPercent": "30"})


def test_metrics_condition_reasons():
    assert metrics_condition(
        MetricsSnapshot("llm", "chat", 0.0, False, error="refused"), ["h100"]
    ) == (
        "False",
        "PrometheusUnreachable",
        "no usable answer from Prometheus: refused",
    )
    missing = snap(PoolMetrics(pool="h100"), missing=tuple(f"h100/{n}" for n in POOL_METRIC_NAMES))
    assert metrics_condition(missing, ["h100"])[:2] == ("False", "MetricsMissing")
    stale = snap(missing=(), stale=("h100/kv_cache_usage_ratio",))
    status, reason, message = metrics_condition(stale, ["h100"])
    assert (status, reason) == ("False", "MetricsStale") and "kv_cache_usage_ratio" in message
    optional = snap(missing=("h100/spec_decode_acceptance_ratio",))
    status, reason, message = metrics_condition(optional, ["h100"])
    assert (status, reason) == ("True", "MetricsFresh") and "spec_decode" in message
    # A planned pool Prometheus knows nothing about is missing too.
    assert (
        metrics_condition(
            snap(missing=tuple(f"h200/{n}" for n in REQUIRED_POOL_METRICS)), ["h100", "h200"]
        )[1]
        == "MetricsMissing"
    )


def test_every_snapshot_field_has_exactly_one_query_family():
    pool_names = [f.name for f in FAMILIES if not f.fleet_wide]
    assert sorted(pool_names) == sorted(set(POOL_METRIC_NAMES) - UNQUERIED)
    assert sorted(f.name for f in FAMILIES if f.fleet_wide) == sorted(WORKLOAD_METRIC_NAMES)


# --- resize trigger ----------------------------------------------------------------------

EXPECTED = Expectation(ttft_p99_s=1.0, gpu_util_percent=70.0)
FAST = Thresholds(resize_fire_after_s=600, resize_clear_after_s=900)


def run(observations, dt_s=60.0):
    state, out = ResizeState(), []
    for i, obs in enumerate(observations):
        state = step_resize(state, obs, EXPECTED, FAST, now_s=i * dt_s)
        out.append(state)
    return out


def test_fires_only_after_sustained_divergence():
    slow = Expectation(ttft_p99_s=1.4, gpu_util_percent=70.0)  # 40 % above 1.0 s
    states = run([slow] * 12)
    assert [st.recommended for st in states].index(True) == 10  # 600 s after the first at t=0
    assert "40% above" in states[-1].reason


def test_a_blip_resets_the_pending_timer():
    slow, fine = Expectation(1.4, 70.0), Expectation(1.0, 70.0)
    states = run([slow] * 9 + [fine] + [slow] * 9)
    assert not any(st.recommended for st in states)


def test_gpu_utilization_gap_fires_and_clears_with_hysteresis():
    idle = Expectation(ttft_p99_s=None, gpu_util_percent=45.0)  # 25 points below 70
    mid = Expectation(
        ttft_p99_s=None, gpu_util_percent=55.0
    )  # 15: above clear (10), below fire (20)
    fine = Expectation(ttft_p99_s=None, gpu_util_percent=68.0)
    states = run([idle] * 11 + [mid] * 30 + [fine] * 16)
    flags = [st.recommended for st in states]
    assert flags[10] and all(flags[10:41])  # mid is inside the hysteresis band: stays on
    assert flags[41 + 14] and not flags[41 + 15]  # cleared 900 s after `fine` began


def test_unknown_observations_hold_the_state():
    on = ResizeState(recommended=True, reason="x")
    assert step_resize(on, Expectation(None, None), EXPECTED, FAST, now_s=5.0) == on


@given(
    st.lists(
        st.tuples(st.floats(0.1, 5.0), st.floats(0.0, 100.0)),
        min_size=1,
        max_size=40,
    )
)
def test_never_fires_without_the_full_window_of_divergence(points):
    """Property: a recommendation needs fire_after_s of consecutive divergent observations."""
    state, run_start = ResizeState(), None
    for i, (ttft, util) in enumerate(points):
        now = i * 60.0
        obs = Expectation(ttft, util)
        diverged = ttft > 1.3 * EXPECTED.ttft_p99_s or util < EXPECTED.gpu_util_percent - 20
        before = state.recommended
        state = step_resize(state, obs, EXPECTED, FAST, now_s=now)
        if not before:
            run_start = (run_start if run_start is not None else now) if diverged else None
            if state.recommended:
                assert run_start is not None and now - run_start >= FAST.resize_fire_after_s


# --- recommendation ------------------------------------------------------------------------


def test_observed_workload_rounds_up_orders_and_keeps_what_is_missing():
    w = WorkloadMetrics(
        prompt_tokens_p50=s(700.2),
        prompt_tokens_p95=s(650.0),  # bucket interpolation can tie; order is restored
        prompt_tokens_p99=s(9000.0),
        output_tokens_p50=None,
        output_tokens_p95=s(float("nan")),
        output_tokens_p99=s(1200.0),
        peak_request_rate_rps=s(180.123),
    )
    fields = observed_workload(snap(workload=w), spec())
    assert fields["promptTokens"] == {"p50": 701, "p95": 701, "p99": 9000}
    assert fields["outputTokens"] == {"p50": 200, "p95": 600, "p99": 1200}
    assert fields["peakRequestsPerSecond"] == "180.13"
    new = observed_spec(snap(workload=w), spec())
    assert new.workload.prompt_tokens.p99 == 9000
    assert new.workload.peak_requests_per_second == "180.13"
    assert new.model == spec().model


@given(st.lists(st.floats(1.0, 1e6), min_size=3, max_size=3))
def test_observed_token_percentiles_always_validate(values):
    w = WorkloadMetrics(
        **{f"prompt_tokens_p{q}": s(v) for q, v in zip((50, 95, 99), values, strict=True)}
    )
    tokens = observed_spec(snap(workload=w), spec()).workload.prompt_tokens
    assert tokens.p50 <= tokens.p95 <= tokens.p99


def test_recommendation_diffs_two_plans_and_carries_the_patch():
    w = observed_workload(snap(), spec())
    rec = recommendation(
        plan(gpus=8, cost_per_month="17460.80"), plan(gpus=12, cost_per_month="26191.20"), w, "TTFT"
    )
    assert rec["gpuDelta"] == 4
    assert rec["costPerMonthDelta"] == "+8730.40"
    assert rec["accept"] == {"spec": {"workload": w}}
    assert rec["proposed"]["pools"][0]["gpus"] == 12


def test_scaling_metrics_take_the_oldest_age_and_never_invent_a_rate():
    assert scaling_metrics(None).rps is None
    assert scaling_metrics(PoolMetrics(pool="h100")).rps is None
    pool = dataclasses.replace(
        HEALTHY, prompt_tok_per_s=Sample(8000.0, 4.0), generation_tok_per_s=Sample(2000.0, 2.0)
    )
    m = scaling_metrics(pool)
    assert (m.rps, m.tok_per_s, m.age_s) == (5.6, 10000.0, 4.0)
    assert scaling_metrics(HEALTHY).tok_per_s is None  # prompt tokens unknown


def test_propose_resize_plans_the_observed_workload_with_the_real_planner():
    data = yaml.safe_load((REPO / "examples" / "fleet-code-8b.yaml").read_text())
    fleet = InferenceFleet.model_validate(data).spec
    hf = fleet.model.hf_config.inline
    current = plan_status(plan_spec(fleet, hf))
    peak = 4 * parse_decimal(fleet.workload.peak_requests_per_second)
    busier = WorkloadMetrics(peak_request_rate_rps=s(peak))
    rec = propose_resize(snap(workload=busier), fleet, hf, current, "traffic x4")
    assert rec["reason"] == "traffic x4"
    assert rec["accept"]["spec"]["workload"]["peakRequestsPerSecond"] == f"{peak:.2f}"
    assert rec["gpuDelta"] > 0
    assert rec["gpuDelta"] == rec["proposed"]["totalGPUs"] - current.total_gpus
    assert rec["costPerMonthDelta"].startswith("+")


def test_resize_condition_follows_the_trigger_state():
    slow = Expectation(1.4, 70.0)
    pending = step_resize(ResizeState(), slow, EXPECTED, FAST, now_s=0.0)
    assert resize_condition(pending)[:2] == ("False", "DivergencePending")
    fired = step_resize(pending, slow, EXPECTED, FAST, now_s=600.0)
    status, reason, message = resize_condition(fired)
    assert (status, reason) == ("True", "ProductionDiverges") and "TTFT P99 1.400s" in message
    assert resize_condition(ResizeState())[:2] == ("False", "MatchesPrediction")


def test_snapshot_query_quotes_label_values():
    query = snapshot_query(namespace='a"b', fleet="chat")
    assert 'namespace="a\\"b",fleet="chat"' in query
    assert 'namespace="a"b"' not in query


def test_prediction_interpolates_the_load_curve_and_holds_its_ends():
    curve = [load_point(4.0, 0.9), load_point(1.0, 0.3), load_point(2.0, 0.5)]
    assert predicted_at_load(curve, 3.0).ttft_p99_s == pytest.approx(0.7)
    assert predicted_at_load(curve, 0.2).ttft_p99_s == pytest.approx(0.3)
    assert predicted_at_load(curve, 9.0).ttft_p99_s == pytest.approx(0.9)
    assert predicted_at_load(curve, 3.0, gpu_util_percent=65.0).gpu_util_percent == 65.0
    assert predicted_at_load([], 3.0) == Expectation(None, None)


def test_a_days_peak_far_below_the_plan_fires_over_sized_with_hysteresis():
    planned = Expectation(None, None, peak_rps=10.0)

    def seen(peak_rps: float) -> Expectation:
        return Expectation(None, None, peak_rps=peak_rps)

    pending = step_resize(ResizeState(), seen(3.0), planned, FAST, now_s=0.0)
    assert not pending.recommended and "over-sized" in pending.reason
    fired = step_resize(pending, seen(3.0), planned, FAST, now_s=600.0)
    assert fired.recommended and "is 30% of the planned 10 req/s" in fired.reason
    # 60 % of the plan: past the fire margin (50 %) but under the clear one (70 %): held.
    held = step_resize(fired, seen(6.0), planned, FAST, now_s=1200.0)
    assert held.recommended and held.since_s is None
    clearing = step_resize(held, seen(8.0), planned, FAST, now_s=1800.0)
    assert clearing.recommended and clearing.since_s == 1800.0
    cleared = step_resize(clearing, seen(8.0), planned, FAST, now_s=1800.0 + 900.0)
    assert not cleared.recommended


def test_the_peak_is_judged_only_when_both_sides_have_one():
    quiet = step_resize(ResizeState(), Expectation(None, None, 1.0), EXPECTED, FAST, now_s=0.0)
    assert quiet == ResizeState()


def _code_fleet():
    data = yaml.safe_load((REPO / "examples" / "fleet-code-8b.yaml").read_text())
    fleet = InferenceFleet.model_validate(data).spec
    return (
        fleet,
        fleet.model.hf_config.inline,
        plan_status(plan_spec(fleet, fleet.model.hf_config.inline)),
    )


def _measured(pool: str, rps: str, confidence: str = "90") -> PoolCapacity:
    return PoolCapacity(
        pool=pool, predicted_rps="2", measured_rps=rps, used_rps=rps, samples=40,
        saturated_samples=12, confidence_percent=confidence,
    )  # fmt: skip


def test_a_resize_while_the_slo_is_missed_never_proposes_fewer_gpus():
    fleet, hf, current = _code_fleet()
    pool = current.pools[0].pool
    quieter = WorkloadMetrics(peak_request_rate_rps=s(0.2))  # the observed peak alone shrinks it
    missing = dataclasses.replace(HEALTHY, pool=pool, ttft_p99_s=s(2.2), itl_p99_s=s(0.02))
    rec = propose_resize(snap(missing, workload=quieter), fleet, hf, current, "TTFT 48 % over")
    assert rec["gpuDelta"] == 0 and rec["accept"] is None
    assert "TTFT P99 2.2 s > SLO 1.5 s: no fewer GPUs while the SLO is missed" in rec["reason"]
    healthy = dataclasses.replace(missing, ttft_p99_s=s(0.9))
    fine = propose_resize(snap(healthy, workload=quieter), fleet, hf, current, "over-sized")
    assert fine["gpuDelta"] < 0  # the same re-plan once the SLO holds


def test_a_trusted_measured_capacity_replans_and_says_it_drove_the_proposal():
    fleet, hf, current = _code_fleet()
    pool = current.pools[0].pool
    planned_rps = parse_decimal(current.pools[0].usable_rps_per_replica)
    slower = f"{0.5 * planned_rps:.3f}"
    rec = propose_resize(snap(), fleet, hf, current, "TTFT", _measured(pool, slower))
    assert rec["accept"]["spec"]["workload"]["usableRPSPerReplica"] == slower
    assert rec["gpuDelta"] > 0
    assert f"measured {slower} req/s per replica on pool {pool}" in rec["basis"]
    assert "observed prompt tokens P50/P95/P99" in rec["basis"]
    unsure = propose_resize(snap(), fleet, hf, current, "TTFT", _measured(pool, slower, "20"))
    assert "usableRPSPerReplica" not in unsure["accept"]["spec"]["workload"]
    assert "not used yet" in unsure["basis"]
