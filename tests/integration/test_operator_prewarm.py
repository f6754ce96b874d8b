"""The operator pre-warms for a daily peak it learned from history in a real Prometheus.

A week of a daily cycle is backfilled with promtool (10 req/s, and 100 req/s for an hour that
starts a few minutes from now each day); the live pods serve the off-peak 10 req/s. A fleet
created now has no policy memory, so the operator reads the fleet's past request rate with a
range query, and asks for the peak's replicas one cold start ahead — while the load it sees
needs only a few.
"""

from __future__ import annotations

import copy
import time

import pytest

from inferfleet_testing.kube.fixtures import cluster_fixture  # noqa: F401
from inferfleet_testing.kube.harness import Cluster, Operator, wait_for
from inferfleet_testing.prometheus import (
    PrometheusServer,
    VllmLoad,
    backfill_openmetrics,
    daily_cycle_openmetrics,
    requires_prometheus,
)
from tests.integration.test_operator import example
from tests.integration.test_operator_scaling import FLEET, NS, POOL, Pods, replicas

pytestmark = requires_prometheus

DAY_S = 86_400
PEAK_IN_S = 400  # the daily peak starts this far from now: inside one cold start (15 min)


@pytest.fixture
def prometheus_with_history(tmp_path):
    now_s = time.time()
    peak_start_s = now_s + PEAK_IN_S

    def daily_rps(t_s: float) -> float:
        return 100.0 if (t_s - peak_start_s) % DAY_S < 3600 else 10.0

    # The request counter's week, up to half a minute ago: a rate() window over it reads what a
    # long-running replica would report (live pods only minutes old would read far less).
    start_s = int(now_s) - 7 * DAY_S
    labels = {"namespace": NS, "fleet": FLEET, "pool": POOL, "pod": "steady"}
    data_dir = tmp_path / "tsdb"
    history = daily_cycle_openmetrics(labels, start_s, 7, 30, daily_rps)
    backfill_openmetrics(history, data_dir)
    pods = Pods(VllmLoad(rps=0.0, running=4.0))  # the live gauges; requests come from history
    prometheus = PrometheusServer(pods.targets(), data_dir=data_dir).start()
    try:
        prometheus.wait_for_series(f'vllm:num_requests_running{{fleet="{FLEET}"}}', 2)
        yield prometheus
    finally:
        prometheus.close()
        pods.close()


def test_first_day_prewarms_for_the_peak_in_the_history(cluster: Cluster, prometheus_with_history):
    doc = copy.deepcopy(example("fleet-code-8b.yaml"))
    doc["spec"]["pools"] = [p for p in doc["spec"]["pools"] if p["name"] == POOL]
    doc["spec"]["pools"][0].update({"coldStart": "15m", "maxGPUs": 16})
    doc["spec"]["scaling"] = {"mode": "predictive", "minReplicas": 1, "maxReplicas": 16,
                              "interval": "2s"}  # fmt: skip
    doc["spec"]["monitoring"] = {"prometheusURL": prometheus_with_history.url}
    operator = Operator()
    try:
        cluster.create(doc)
        # 10 req/s needs 2 replicas of ~8 req/s (3 with the spare); the peak needs 13.
        warmed = wait_for(lambda: (r := replicas(cluster)) and r >= 10 and r, "pre-warming", 90)

        def forecast_written():
            fleet = cluster.get("inferfleet.io/v1alpha1", "InferenceFleet", NS, FLEET) or {}
            return (fleet.get("status") or {}).get("forecast")

        forecast = wait_for(forecast_written, "status.forecast")
        assert float(forecast["nextPeakRPS"]) >= 50.0, forecast
        events = [e["message"] for e in cluster.objects("Event") if e.get("reason") == "Scaled"]
        assert any("forecast" in m for m in events), events
        assert warmed <= 16
    finally:
        operator.stop()
