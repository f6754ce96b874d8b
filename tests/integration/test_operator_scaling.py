"""The operator scaling on what a real Prometheus says, holding while Prometheus is gone, and
recovering when it is back.

Real Kopf against the KMock API, a real Prometheus scraping two pods whose vLLM numbers the test
chooses. The operator runs on a compressed clock (60 policy seconds per wall second) so a
policy interval and the PromQL windows fit in a test; the plan is the real one for
`examples/fleet-code-8b.yaml` (3 x L40S at about 8 usable req/s each).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from controllers.reconcile.runtime import TIME_COMPRESSION_ENV
from inferfleet_testing.kube.fixtures import cluster_fixture  # noqa: F401
from inferfleet_testing.kube.harness import Cluster, Operator, wait_for
from inferfleet_testing.prometheus import (
    ExpositionServer,
    PrometheusServer,
    Target,
    VllmLoad,
    render_exposition,
    requires_prometheus,
    vllm_pod,
)
from tests.integration.test_operator import FLEETS, condition, example, fleet_of

pytestmark = requires_prometheus

NS, FLEET, POOL = "llm", "code-8b", "l40s"
PODS = 2


class Pods:
    """Two scrape targets whose per-pod load the test changes while Prometheus watches."""

    def __init__(self, load: VllmLoad) -> None:
        self.load = load
        self.servers = [
            ExpositionServer(
                lambda elapsed_s: render_exposition([vllm_pod({}, self.load)], elapsed_s)
            )
            for _ in range(PODS)
        ]

    def targets(self) -> list[Target]:
        return [
            Target(s.address, {"namespace": NS, "fleet": FLEET, "pool": POOL, "pod": f"p{i}"})
            for i, s in enumerate(self.servers)
        ]

    def close(self) -> None:
        for server in self.servers:
            server.close()


@pytest.fixture
def stack(cluster: Cluster, monkeypatch):
    monkeypatch.setenv(TIME_COMPRESSION_ENV, "60")
    pods = Pods(VllmLoad(rps=20.0, running=30.0))  # 40 req/s: far above 3 replicas' ~24
    prometheus = PrometheusServer(pods.targets()).start()
    prometheus.wait_for_series(f'vllm:num_requests_running{{fleet="{FLEET}"}}', count=PODS)
    operator = Operator()
    try:
        yield cluster, prometheus, pods
    finally:
        operator.stop()
        prometheus.close()
        pods.close()


def fleet_doc(prometheus_url: str) -> dict[str, Any]:
    doc = copy.deepcopy(example("fleet-code-8b.yaml"))
    doc["spec"]["scaling"] = {
        "mode": "predictive", "minReplicas": 1, "maxReplicas": 16, "interval": "1s",
        "scaleDownStabilization": "10m",
    }  # fmt: skip
    doc["spec"]["monitoring"] = {"prometheusURL": prometheus_url}
    return doc


def wait_for_recommendation(cluster: Cluster, doc: dict[str, Any]) -> dict[str, Any]:
    """The fleet once `ResizeRecommended=True` and `status.recommendation` are both written."""

    def recommended() -> dict[str, Any] | None:
        fleet = fleet_of(cluster, doc)
        cond = condition(fleet, "ResizeRecommended")
        if cond and cond["status"] == "True" and fleet["status"].get("recommendation"):
            return fleet
        return None

    return wait_for(recommended, "ResizeRecommended=True with a recommendation", 90)


def replicas(cluster: Cluster) -> int | None:
    found = cluster.get("apps/v1", "Deployment", NS, f"{FLEET}-{POOL}")
    return None if found is None else found["spec"]["replicas"]


def test_load_above_the_plan_scales_up_an_outage_never_scales_down_and_it_recovers(stack):
    cluster, prometheus, _ = stack
    doc = fleet_doc(prometheus.url)
    cluster.create(doc)
    scaled = wait_for(lambda: (r := replicas(cluster)) and r >= 6 and r, "a scale-up", 90)

    def status_caught_up():
        fleet = fleet_of(cluster, doc)
        desired = fleet.get("status", {}).get("replicas", {}).get("desired")
        return fleet if desired is not None and desired >= scaled else None

    fleet = wait_for(status_caught_up, "status.replicas to follow the Deployment", 30)
    available = condition(fleet, "MetricsAvailable")
    assert available is not None and available["status"] == "True", available
    assert "pools" in fleet["status"]["history"]
    events = [e for e in cluster.objects("Event") if e.get("reason") == "Scaled"]
    assert any(e["message"].startswith(f"Scaled up {FLEET}-{POOL} from ") for e in events), events

    prometheus.stop()

    def unreachable():
        cond = condition(fleet_of(cluster, doc), "MetricsAvailable")
        return cond if cond and cond["reason"] == "PrometheusUnreachable" else None

    wait_for(unreachable, "MetricsAvailable=False while Prometheus is down", 60)
    for _ in range(3):  # several policy intervals without data: never below the last count
        held = wait_for(lambda: replicas(cluster), "the Deployment", 5)
        assert held >= scaled
        cluster_fleet = fleet_of(cluster, doc)
        assert cluster_fleet["status"]["replicas"]["desired"] >= scaled

    prometheus.start()  # same port and data: the operator's URL works again

    def recovered():
        fleet = fleet_of(cluster, doc)
        cond = condition(fleet, "MetricsAvailable")
        return fleet if cond and cond["status"] == "True" else None

    back = wait_for(recovered, "MetricsAvailable=True once Prometheus is back", 60)
    assert back["status"]["replicas"]["desired"] >= scaled  # the load is still as high


@pytest.fixture
def long_prompt_stack(cluster: Cluster, monkeypatch):
    """Prompts far longer than planned: the pods report multi-second TTFT at modest load."""
    monkeypatch.setenv(TIME_COMPRESSION_ENV, "60")
    slow = VllmLoad(
        rps=3.0, running=12.0, waiting=6.0, kv_usage=0.97,
        ttft_points={1.0: 0.1, 2.5: 0.5, 5.0: 0.98, 10.0: 1.0},
        prompt_points={4096.0: 0.3, 8192.0: 0.9, 16384.0: 1.0},
    )  # fmt: skip
    pods = Pods(slow)
    prometheus = PrometheusServer(pods.targets()).start()
    prometheus.wait_for_series(f'vllm:num_requests_running{{fleet="{FLEET}"}}', count=PODS)
    operator = Operator()
    try:
        yield cluster, prometheus
    finally:
        operator.stop()
        prometheus.close()
        pods.close()


def test_production_diverging_from_the_plan_recommends_a_resize(long_prompt_stack):
    cluster, prometheus = long_prompt_stack
    doc = fleet_doc(prometheus.url)
    doc["spec"]["workload"]["maxModelLen"] = 32768
    doc["spec"]["monitoring"]["thresholds"] = {"resizeFireAfterSeconds": "120"}
    cluster.create(doc)
    fleet = wait_for_recommendation(cluster, doc)
    recommendation = fleet["status"]["recommendation"]
    assert "TTFT P99" in condition(fleet, "ResizeRecommended")["message"]
    observed = recommendation["accept"]["spec"]["workload"]["promptTokens"]
    assert observed["p95"] > doc["spec"]["workload"]["promptTokens"]["p95"]
    findings = {f["metric"] for f in fleet["status"]["findings"]}
    assert {"kvCacheUtilization", "ttftP99"} & findings, findings
    warnings = [e for e in cluster.objects("Event") if e.get("reason") == "ResizeRecommended"]
    assert len(warnings) == 1, warnings


def _deployment_writes(cluster: Cluster) -> list[Any]:
    return [w for w in cluster.writes() if "/deployments" in w.path and not w.is_status]


def test_advisory_mode_writes_nothing_to_deployments_and_switching_back_acts(stack):
    cluster, prometheus, _ = stack
    doc = fleet_doc(prometheus.url)
    doc["spec"]["scaling"]["mode"] = "static"  # the plan's 3 replicas
    cluster.create(doc)
    planned = wait_for(lambda: replicas(cluster), "the Deployment", 30)
    wait_for(lambda: fleet_of(cluster, doc).get("status", {}).get("replicas"), "status", 30)
    before = len(_deployment_writes(cluster))
    cluster.merge_patch(
        FLEETS, "InferenceFleet", NS, FLEET, {"spec": {"scaling": {"mode": "advisory"}}}
    )

    def advised() -> dict[str, Any] | None:
        fleet = fleet_of(cluster, doc)
        count = fleet.get("status", {}).get("replicas", {}).get("advised")
        return fleet if count is not None and count >= 6 else None

    fleet = wait_for(advised, "status.replicas.advised to show the scale-up", 90)
    assert fleet["status"]["replicas"]["desired"] == planned
    would = [e for e in cluster.objects("Event") if e.get("reason") == "WouldScale"]
    # The demand the fixture serves may reach the first pass part-way (one advice down first).
    up = f"Would scale up {FLEET}-{POOL} from {planned}"
    assert any(e["message"].startswith(up) for e in would), [e["message"] for e in would]
    assert _deployment_writes(cluster)[before:] == []  # not one write to a Deployment
    assert replicas(cluster) == planned

    cluster.merge_patch(
        FLEETS, "InferenceFleet", NS, FLEET, {"spec": {"scaling": {"mode": "predictive"}}}
    )
    wait_for(lambda: (r := replicas(cluster)) and r >= 6, "the scale-up once acting", 60)
