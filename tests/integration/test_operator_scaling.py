"""The operator scaling on what a real Prometheus says, holding while Prometheus is gone, and
recovering when it is back.

Real Kopf against the KMock API, a real Prometheus scraping two pods whose vLLM numbers the test
chooses. The operator runs on a compressed clock (60 policy seconds per wall second) so a
policy interval and the PromQL windows fit in a test; the plan is the real one for
`examples/fleet-code-8b.yaml` (3 x L40S at about 8 usable req/s each).
"""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest

from controllers.policy.drain import DELETION_COST
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
from tests.integration.test_operator_pending import RUNNING, UNSCHEDULABLE
from tests.integration.test_operator_pending import _pod as running_pod_with

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

    fleet = wait_for(status_caught_up, "status.replicas to follow the Deployment")
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
    accept = recommendation.get("accept")
    if recommendation.get("error"):
        # The observed prompts cannot be planned on any allowed pool: that is step 13's
        # answer, said in the recommendation, with nothing to accept.
        assert accept is None
    elif accept is None:
        # The observed workload planned to fewer GPUs than the (conservative) plan while the
        # SLO is missed: step 13 holds the current plan and offers nothing to accept.
        assert "no fewer GPUs while the SLO is missed" in recommendation["reason"]
        assert recommendation["gpuDelta"] == 0
    else:
        observed = accept["spec"]["workload"]["promptTokens"]
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
    planned = wait_for(lambda: replicas(cluster), "the Deployment")
    wait_for(lambda: fleet_of(cluster, doc).get("status", {}).get("replicas"), "status")
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


def _pods_stack(cluster: Cluster, loads: dict[str, VllmLoad]):
    """Prometheus scraping one target per named pod with its own load, and the operator."""
    servers = {
        pod: ExpositionServer(lambda s, load=load: render_exposition([vllm_pod({}, load)], s))
        for pod, load in loads.items()
    }
    targets = [
        Target(s.address, {"namespace": NS, "fleet": FLEET, "pool": POOL, "pod": pod})
        for pod, s in servers.items()
    ]
    prometheus = PrometheusServer(targets).start()
    prometheus.wait_for_series(f'vllm:num_requests_running{{fleet="{FLEET}"}}', count=len(loads))
    operator = Operator()
    try:
        yield cluster, prometheus
    finally:
        operator.stop()
        prometheus.close()
        for server in servers.values():
            server.close()


@pytest.fixture
def uneven_stack(cluster: Cluster, monkeypatch):
    """Two pods Prometheus sees with 30 and 2 requests in flight."""
    monkeypatch.setenv(TIME_COMPRESSION_ENV, "60")
    yield from _pods_stack(cluster, {"p0": VllmLoad(running=30.0), "p1": VllmLoad(running=2.0)})


@pytest.fixture
def light_stack(cluster: Cluster, monkeypatch):
    """Eight lightly loaded pods, all ready: more than the policy keeps."""
    monkeypatch.setenv(TIME_COMPRESSION_ENV, "60")
    yield from _pods_stack(cluster, {f"p{i}": VllmLoad(rps=0.5, running=1.0) for i in range(8)})


def test_a_scale_down_marks_the_least_loaded_pods_before_it_lowers_replicas(uneven_stack):
    cluster, prometheus = uneven_stack
    doc = fleet_doc(prometheus.url)
    doc["spec"]["scaling"]["mode"] = "static"  # the plan's 3 replicas
    cluster.create(doc)
    planned = wait_for(lambda: replicas(cluster), "the Deployment")
    for pod in ("p0", "p1"):
        running_pod_with(cluster, pod, RUNNING)
    # Someone scaled the Deployment up by hand: the operator brings it back down to the plan.
    # The log is marked before that edit: the pass it runs may mark the pods before the test
    # thread is back from its request.
    start = len(cluster.writes())
    cluster.merge_patch("apps/v1", "Deployment", NS, f"{FLEET}-{POOL}",
                        {"spec": {"replicas": planned + 2}})  # fmt: skip
    wait_for(lambda: replicas(cluster) == planned, "the scale-down to the plan's count", 60)
    writes = cluster.writes()[start:]
    lowered = next(
        i for i, w in enumerate(writes)
        if w.path.endswith(f"/deployments/{FLEET}-{POOL}") and not w.is_status
        and (w.body or {}).get("spec", {}).get("replicas") == planned
    )  # fmt: skip
    marked = {
        w.path.rsplit("/", 1)[1]: w.body["metadata"]["annotations"][DELETION_COST]
        for w in writes[:lowered]
        if "/pods/" in w.path
        and DELETION_COST in (w.body or {}).get("metadata", {}).get("annotations", {})
    }
    # Before the Deployment is lowered, each pod carries its requests in flight as its cost:
    # the ReplicaSet removes the least loaded first.
    assert marked == {"p0": "30", "p1": "2"}, [w.path for w in writes]
    for pod, cost in marked.items():
        annotations = cluster.get("v1", "Pod", NS, pod)["metadata"]["annotations"]
        assert annotations[DELETION_COST] == cost


def pending_minutes(cluster: Cluster, doc: dict[str, Any]) -> float:
    """The pool's time Pending over the last hour, from status.scorecard."""
    cards = fleet_of(cluster, doc).get("status", {}).get("scorecard") or []
    hour = [w for c in cards if c["pool"] == POOL for w in c["windows"] if w["window"] == "1h"]
    return float(hour[0]["pendingMinutes"]) if hour else 0.0


def test_the_scorecard_counts_time_pending_from_the_pending_detection(light_stack):
    cluster, prometheus = light_stack
    doc = fleet_doc(prometheus.url)
    doc["spec"]["scaling"]["pendingDeadline"] = "1m"
    cluster.create(doc)
    wait_for(lambda: replicas(cluster), "the Deployment", 60)
    time.sleep(8)  # more than a cold start: ready (eight) never short of what it asks
    for name in ("l40s-a", "l40s-b"):  # yet the pods say two wait for a node
        running_pod_with(cluster, name, UNSCHEDULABLE)
    wait_for(lambda: fleet_of(cluster, doc)["status"].get("pending"), "the Pending detection", 60)
    # The status is rewritten as they start waiting, with the time Pending counted.
    assert pending_minutes(cluster, doc) > 0
