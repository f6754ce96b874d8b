"""The adapter against a real Prometheus scraping pods with known numbers.

Three fleets run side by side (steady, long prompts, low load) so one Prometheus start and one
wait cover every scenario; the stop/start scenario has its own server.
"""

from __future__ import annotations

import math
import statistics
import time

import pytest
import yaml

from controllers.adapters.prometheus import (
    QueryWindows,
    fetch_snapshot,
    make_client,
    request_rate_history,
)
from controllers.api.v1alpha1 import InferenceFleet, PlanStatus
from controllers.policy.monitoring.findings import evaluate
from controllers.policy.monitoring.resize import observed_spec
from controllers.policy.monitoring.snapshot import metrics_condition, scaling_metrics
from controllers.policy.monitoring.thresholds import resolve_thresholds
from inferfleet_testing.prometheus import (
    PrometheusServer,
    Target,
    VllmLoad,
    requires_prometheus,
    serve_pods,
    vllm_pod,
)
from tests.conftest import REPO
from tests.plans import fleet_plan, pool_plan

pytestmark = requires_prometheus

# Short windows: the server only has seconds of data, and rate() divides by the window.
WINDOWS = QueryWindows(rate="8s", workload="8s", peak_step="1s", max_age_s=10.0)
NS = "llm"
# The request rate is a required series: it exists once two scrapes fall in the rate window.
RATE_READY = f"rate(vllm:request_success_total[{WINDOWS.rate}])"

SCENARIOS = {
    "steady": VllmLoad(),
    "longprompt": VllmLoad(
        running=40.0,
        waiting=12.0,
        kv_usage=0.97,
        ttft_points={1.0: 0.2, 2.5: 0.4, 5.0: 0.98, 10.0: 1.0},
        prompt_points={4096.0: 0.3, 8192.0: 0.9, 16384.0: 1.0},
    ),
    "idle": VllmLoad(running=1.0, rps=0.2, gpu_util_percent=70.0),
}
PODS_PER_POOL = 2


def _spec():
    data = yaml.safe_load((REPO / "examples" / "fleet-chat-70b.yaml").read_text())
    data["spec"]["slo"] = {"ttftP99": "2s", "itlP99": "100ms"}  # what the scenarios are judged by
    return InferenceFleet.model_validate(data).spec


def _plan(pool: str, usable_rps: str = "3.000") -> PlanStatus:
    """A plan for one pool with the capacity the numbers below are judged against."""
    pool_status = pool_plan(
        pool=pool,
        replicas=PODS_PER_POOL,
        usable_rps_per_replica=usable_rps,
        gpus=2 * PODS_PER_POOL,
        cost_per_hour="11.96",
        cost_per_million_tokens="0.5000",
        kv_cache_tokens=400000,
        cold_start_seconds=120,
    )
    return fleet_plan(pool_status, hash="x", cost_per_hour="11.96", cost_per_month="8730.80")


@pytest.fixture(scope="module")
def fleets():
    servers, targets = [], []
    for fleet, load in SCENARIOS.items():
        for pod in range(PODS_PER_POOL):
            server = serve_pods([vllm_pod({}, load)])
            servers.append(server)
            labels = {"namespace": NS, "fleet": fleet, "pool": "h100", "pod": f"{fleet}-{pod}"}
            targets.append(Target(server.address, labels))
    prom = PrometheusServer(targets).start()
    try:
        # Until every pod has samples spanning the rate window (and the history's range): a
        # series with a sample 10 s old. A loaded machine's late first scrape waits longer.
        prom.wait_for_series("vllm:request_success_total offset 10s", count=len(targets))
        yield prom
    finally:
        prom.close()
        for server in servers:
            server.close()


def test_steady_fleet_values_match_what_the_pods_expose(fleets):
    snap = fetch_snapshot(make_client(fleets.url), NS, "steady", ["h100"], windows=WINDOWS)
    assert snap.reachable
    pool = snap.pool("h100")
    assert pool is not None
    assert pool.replicas_reporting.value == PODS_PER_POOL
    assert pool.requests_running.value == 8.0 * PODS_PER_POOL
    assert pool.requests_waiting.value == 0.0
    assert pool.kv_cache_usage_ratio.value == pytest.approx(0.6)
    assert pool.request_rate_rps.value == pytest.approx(2.0 * PODS_PER_POOL, rel=0.05)
    assert pool.prompt_tok_per_s.value == pytest.approx(1600.0 * PODS_PER_POOL, rel=0.05)
    scaling = scaling_metrics(pool)
    assert scaling.tok_per_s == pytest.approx(2000.0 * PODS_PER_POOL, rel=0.05)
    assert scaling.rps == pool.request_rate_rps.value
    assert pool.prefix_cache_hit_ratio.value == pytest.approx(0.5, rel=1e-6)
    # Bucket shares scale together, so the quantiles are the linear interpolation inside the
    # bucket the rank falls in: lower + width * (rank - share below) / (share of the bucket).
    assert pool.ttft_p50_s.value == pytest.approx(0.1 + 0.15 * (0.5 - 0.4) / 0.58, rel=1e-6)
    assert pool.ttft_p99_s.value == pytest.approx(0.25 + 0.25 * (0.99 - 0.98) / 0.02, rel=1e-6)
    assert pool.itl_p99_s.value == pytest.approx(0.05 + 0.05 * (0.99 - 0.98) / 0.02, rel=1e-6)
    assert pool.gpu_util_percent.value == 75.0
    assert pool.fb_used_mib.value == 69000.0 * PODS_PER_POOL
    assert pool.preemptions_per_s.value == 0.0
    # Shares stay flat from 512 to 1024 prompt tokens, so the median sits in (1024, 2048].
    w = snap.workload
    assert w.prompt_tokens_p50.value == pytest.approx(1024 + 1024 * 0.1 / 0.5, rel=1e-6)
    assert w.prompt_tokens_p95.value == pytest.approx(2048 + 2048 * 0.05 / 0.08, rel=1e-6)
    assert w.output_tokens_p99.value == pytest.approx(1024 + 1024 * 0.01 / 0.02, rel=1e-6)
    assert snap.workload.peak_request_rate_rps.value == pytest.approx(4.0, rel=0.1)
    assert all(0.0 <= s.age_s < 5.0 for s in (pool.requests_running, pool.ttft_p99_s))
    # Spec decoding is not enabled on these pods: missing, not zero.
    assert pool.spec_decode_acceptance_ratio is None
    assert "h100/spec_decode_acceptance_ratio" in snap.missing
    assert metrics_condition(snap, ["h100"])[:2] == ("True", "MetricsFresh")


def test_steady_load_within_slo_gives_no_finding(fleets):
    snap = fetch_snapshot(make_client(fleets.url), NS, "steady", ["h100"], windows=WINDOWS)
    findings = evaluate(snap, _spec(), _plan("h100"), resolve_thresholds({}))
    assert findings == ()


def test_long_prompts_saturate_kv_cache_and_break_ttft(fleets):
    snap = fetch_snapshot(make_client(fleets.url), NS, "longprompt", ["h100"], windows=WINDOWS)
    findings = evaluate(snap, _spec(), _plan("h100"), resolve_thresholds({}))
    by_metric = {f.metric: f for f in findings}
    assert by_metric["kvCacheUtilization"].severity == "warning"
    assert by_metric["kvCacheUtilization"].observed == "97.0%"
    assert by_metric["ttftP99"].severity == "critical"  # P50 2.9 s also above the 2 s SLO
    assert by_metric["queueDepth"].observed == "12.0 per replica"
    # The observed workload replaces the spec's prompt tokens: Prometheus
    # interpolates linearly inside a bucket, and the spec wants whole tokens, rounded up.
    # Its quantile is a ratio of rates, so it can land a hair above a whole number (12288.0
    # read as 12288.000001 rounds up to 12289): one token either way.
    prompt = observed_spec(snap, _spec()).workload.prompt_tokens
    assert prompt.p50 == pytest.approx(math.ceil(4096 + 4096 * (0.5 - 0.3) / (0.9 - 0.3)), abs=1)
    assert prompt.p95 == pytest.approx(12288, abs=1)  # 8192 + 8192 x (0.95 - 0.9) / 0.1
    assert prompt.p99 == pytest.approx(15565, abs=1)  # 8192 + 8192 x (0.99 - 0.9) / 0.1, up


def test_low_load_is_the_utilization_trap(fleets):
    snap = fetch_snapshot(make_client(fleets.url), NS, "idle", ["h100"], windows=WINDOWS)
    findings = evaluate(snap, _spec(), _plan("h100"), resolve_thresholds({}))
    trap = [f for f in findings if f.metric == "fleetUtilization"]
    assert len(trap) == 1
    assert trap[0].threshold == ">= 40.0%"
    assert float(trap[0].observed.rstrip("%")) == pytest.approx(100 * 0.2 / 3.0, rel=0.05)


def test_a_fleet_without_series_is_missing(fleets):
    snap = fetch_snapshot(make_client(fleets.url), NS, "absent", ["h100"], windows=WINDOWS)
    assert snap.reachable
    assert snap.pool("h100").requests_running is None
    assert metrics_condition(snap, ["h100"])[:2] == ("False", "MetricsMissing")


def test_request_rate_history_is_a_range_query(fleets):
    now = time.time()
    history = request_rate_history(
        make_client(fleets.url), NS, "steady", now - 5, now, step_s=1, rate_window="8s"
    )
    assert len(history.rps) >= 4
    # The median point: the newest one can miss the last scrape and read 10 % low.
    assert statistics.median(history.rps) == pytest.approx(4.0, rel=0.1)


def test_unreachable_prometheus_then_recovery():
    server = serve_pods([vllm_pod({}, VllmLoad())])
    labels = {"namespace": NS, "fleet": "steady", "pool": "h100", "pod": "p0"}
    prom = PrometheusServer([Target(server.address, labels)]).start()
    client = make_client(prom.url, timeout_s=2.0)
    try:
        prom.wait_for_series(RATE_READY)
        assert (
            metrics_condition(
                fetch_snapshot(client, NS, "steady", ["h100"], windows=WINDOWS), ["h100"]
            )[0]
            == "True"
        )
        prom.stop()
        down = fetch_snapshot(client, NS, "steady", ["h100"], windows=WINDOWS)
        assert not down.reachable
        status, reason, message = metrics_condition(down, ["h100"])
        assert (status, reason) == ("False", "PrometheusUnreachable")
        assert "ConnectionError" in message
        prom.start()
        prom.wait_for_series(RATE_READY)
        back = fetch_snapshot(client, NS, "steady", ["h100"], windows=WINDOWS)
        assert metrics_condition(back, ["h100"])[:2] == ("True", "MetricsFresh")
    finally:
        prom.close()
        server.close()
