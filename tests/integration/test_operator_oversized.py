"""Production far below the plan: a utilization-trap finding and a smaller recommendation.

Two days of traffic at 30 % of the planned peak are backfilled into a real Prometheus with
promtool. A fleet created now sees that history (the policy seeds its forecaster from it, so
the fleet counts as watched for more than a day), finds most paid GPU time idle, and step 13
recommends re-planning from the observed peak: fewer GPUs, a negative $/month delta, and the
merge patch to accept it.
"""

from __future__ import annotations

import copy
import time

import pytest

from inferfleet_testing.kube.fixtures import cluster_fixture  # noqa: F401
from inferfleet_testing.kube.harness import Cluster, Operator
from inferfleet_testing.prometheus import (
    PrometheusServer,
    VllmLoad,
    backfill_openmetrics,
    daily_cycle_openmetrics,
    requires_prometheus,
)
from tests.integration.test_operator import condition, example
from tests.integration.test_operator_scaling import (
    FLEET,
    NS,
    POOL,
    Pods,
    wait_for_recommendation,
)

pytestmark = requires_prometheus

DAYS = 2


@pytest.fixture
def quiet_prometheus(tmp_path):
    planned_rps = float(example("fleet-code-8b.yaml")["spec"]["workload"]["peakRequestsPerSecond"])
    now_s = int(time.time())
    labels = {"namespace": NS, "fleet": FLEET, "pool": POOL, "pod": "steady"}
    history = daily_cycle_openmetrics(
        labels, now_s - DAYS * 86_400, DAYS, 30, lambda _t: 0.3 * planned_rps
    )
    data_dir = tmp_path / "tsdb"
    backfill_openmetrics(history, data_dir)
    # Light load meets the SLO (ITL P99 about 38 ms against 40 ms): step 13 may shrink it.
    quick = {0.01: 0.4, 0.025: 0.98, 0.05: 1.0}
    pods = Pods(VllmLoad(rps=0.0, running=2.0, gpu_util_percent=20.0, itl_points=quick))
    prometheus = PrometheusServer(pods.targets(), data_dir=data_dir).start()
    try:
        prometheus.wait_for_series(f'vllm:num_requests_running{{fleet="{FLEET}"}}', 2)
        yield prometheus, planned_rps
    finally:
        prometheus.close()
        pods.close()


def test_load_at_30_percent_of_the_plan_recommends_a_smaller_fleet(
    cluster: Cluster, quiet_prometheus
):
    prometheus, planned_rps = quiet_prometheus
    doc = copy.deepcopy(example("fleet-code-8b.yaml"))
    doc["spec"]["pools"] = [p for p in doc["spec"]["pools"] if p["name"] == POOL]
    doc["spec"]["scaling"] = {"mode": "static", "interval": "2s"}
    doc["spec"]["monitoring"] = {
        "prometheusURL": prometheus.url,
        "thresholds": {"resizeFireAfterSeconds": "4"},
    }
    operator = Operator()
    try:
        cluster.create(doc)
        fleet = wait_for_recommendation(cluster, doc)
    finally:
        operator.stop()
    message = condition(fleet, "ResizeRecommended")["message"]
    assert "over-sized" in message and "of the planned" in message, message
    findings = {f["metric"]: f for f in fleet["status"]["findings"]}
    assert "fleetUtilization" in findings, findings
    recommendation = fleet["status"]["recommendation"]
    assert recommendation["gpuDelta"] < 0, recommendation["reason"]
    assert float(recommendation["costPerMonthDelta"]) < 0
    peak = float(recommendation["accept"]["spec"]["workload"]["peakRequestsPerSecond"])
    assert 0.25 * planned_rps <= peak <= 0.35 * planned_rps
    warnings = [e for e in cluster.objects("Event") if e.get("reason") == "ResizeRecommended"]
    assert len(warnings) == 1, warnings
