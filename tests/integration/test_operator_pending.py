"""Replicas no node takes, and advisory mode, with the real operator against the KMock API.

Pods are created the way the ReplicaSet would create them (the fleet's labels), with the
status the scheduler writes when it cannot place one: `PodScheduled=False`, reason
`Unschedulable` and its message. The operator reads them from its pod watch.
"""

from __future__ import annotations

import copy
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from inferfleet_testing.kube.fixtures import cluster_fixture  # noqa: F401
from inferfleet_testing.kube.harness import Cluster, Operator, wait_for
from tests.integration.test_operator import condition, example, fleet_of

NS, FLEET = "llm", "code-8b"
MESSAGE = "0/6 nodes are available: 6 Insufficient nvidia.com/gpu."


@pytest.fixture
def operator(cluster: Cluster):
    running = Operator()
    try:
        yield cluster
    finally:
        running.stop()


def _fleet(mode: str) -> dict[str, Any]:
    doc = copy.deepcopy(example("fleet-code-8b.yaml"))
    doc["spec"]["pools"][0]["maxGPUs"] = 2  # the plan: 2 L40S, the rest on L4
    doc["spec"]["scaling"] = {"mode": mode, "interval": "1s", "pendingDeadline": "1m"}
    return doc


def replicas(cluster: Cluster, pool: str) -> int | None:
    found = cluster.get("apps/v1", "Deployment", NS, f"{FLEET}-{pool}")
    return None if found is None else found["spec"]["replicas"]


def _ago(seconds: float) -> str:
    return datetime.fromtimestamp(time.time() - seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _pod(cluster: Cluster, name: str, status: dict[str, Any]) -> None:
    labels = {
        "app.kubernetes.io/name": "vllm",
        "app.kubernetes.io/instance": FLEET,
        "app.kubernetes.io/component": "l40s",
        "app.kubernetes.io/managed-by": "inferfleet",
    }
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": NS, "labels": labels,
                        "creationTimestamp": _ago(600)},
           "spec": {"containers": [{"name": "vllm", "image": "vllm/vllm-openai"}]}}  # fmt: skip
    if cluster.get("v1", "Pod", NS, name) is None:
        cluster.create(pod)
    _status(cluster, "v1", "Pod", name, status)


def _status(cluster: Cluster, api_version: str, kind: str, name: str, status: dict) -> None:
    cluster.patch_status(api_version, kind, NS, name, status)


UNSCHEDULABLE = {
    "phase": "Pending",
    "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                    "message": MESSAGE, "lastTransitionTime": _ago(600)}],
}  # fmt: skip
RUNNING = {
    "phase": "Running",
    "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": _ago(1)},
                   {"type": "Ready", "status": "True", "lastTransitionTime": _ago(1)}],
}  # fmt: skip


def test_pending_replicas_degrade_the_fleet_spill_to_the_next_pool_and_come_back(operator):
    cluster = operator
    doc = _fleet("static")
    cluster.create(doc)
    planned_l4 = wait_for(lambda: replicas(cluster, "l4"), "the l4 Deployment")
    assert replicas(cluster, "l40s") == 2
    for name in ("l40s-a", "l40s-b"):  # both L40S replicas wait for a node
        _pod(cluster, name, UNSCHEDULABLE)

    spilled = wait_for(
        lambda: (r := replicas(cluster, "l4")) and r > planned_l4 and r, "the spill to l4", 30
    )
    assert replicas(cluster, "l40s") == 2  # held: never more Pending replicas there

    def degraded() -> dict[str, Any] | None:
        fleet = fleet_of(cluster, doc)
        cond = condition(fleet, "Degraded")
        return fleet if cond and cond["status"] == "True" else None

    fleet = wait_for(degraded, "Degraded=True")
    cond = condition(fleet, "Degraded")
    assert cond is not None and cond["reason"] == "ReplicasUnschedulable"
    assert MESSAGE in cond["message"]
    (pending,) = fleet["status"]["pending"]
    assert (pending["pool"], pending["replicas"], pending["reason"]) == ("l40s", 2, "Unschedulable")
    assert pending["spilledTo"] == "l4" and pending["spilledReplicas"] == spilled - planned_l4
    events = [e for e in cluster.objects("Event") if e.get("reason") == "ReplicasUnschedulable"]
    assert len(events) == 1 and "spilled to pool l4" in events[0]["message"], events

    for name in ("l40s-a", "l40s-b"):  # room again: placed and ready
        _pod(cluster, name, RUNNING)
    _status(cluster, "apps/v1", "Deployment", f"{FLEET}-l40s", {"replicas": 2, "readyReplicas": 2})
    wait_for(lambda: replicas(cluster, "l4") == planned_l4, "l4 back to the plan's count")

    def recovered() -> bool:
        cond = condition(fleet_of(cluster, doc), "Degraded")
        return bool(cond and cond["status"] == "False")

    wait_for(recovered, "Degraded=False")
    assert not fleet_of(cluster, doc)["status"].get("pending")


def test_a_shortfall_spills_to_an_allowed_pool_the_plan_ranked_but_does_not_run(operator):
    cluster = operator
    doc = copy.deepcopy(example("fleet-code-8b.yaml"))  # the plan: 5 L40S; L4 allowed, unused
    doc["spec"]["scaling"] = {"mode": "static", "interval": "1s", "pendingDeadline": "1m"}
    cluster.create(doc)
    planned = wait_for(lambda: replicas(cluster, "l40s"), "the l40s Deployment")
    plan = wait_for(lambda: fleet_of(cluster, doc).get("status", {}).get("plan"), "the plan")
    standby = plan["standby"]
    assert [p["pool"] for p in standby] == ["l4"] and replicas(cluster, "l4") is None
    for name in ("l40s-a", "l40s-b"):
        _pod(cluster, name, UNSCHEDULABLE)

    made = wait_for(lambda: replicas(cluster, "l4"), "a Deployment for the standby pool")
    deployment = cluster.get("apps/v1", "Deployment", NS, f"{FLEET}-l4")
    assert deployment is not None
    # The replica shape is the plan's for that pool: its GPU, its tensor parallelism.
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    args = " ".join(container.get("args") or container.get("command") or [])
    shape = standby[0]
    assert f"--tensor-parallel-size={shape['tensorParallel']}" in args, args
    assert f"--max-num-seqs={shape['maxNumSeqs']}" in args, args
    assert replicas(cluster, "l40s") == planned  # held: never more Pending replicas there
    # The pass applies the Deployment before it writes status.
    (pending,) = wait_for(
        lambda: fleet_of(cluster, doc)["status"].get("pending"), "status.pending", 30
    )
    assert pending["spilledTo"] == "l4" and pending["spilledReplicas"] == made

    for name in ("l40s-a", "l40s-b"):  # room again: placed and ready
        _pod(cluster, name, RUNNING)
    _status(cluster, "apps/v1", "Deployment", f"{FLEET}-l40s",
            {"replicas": planned, "readyReplicas": planned})  # fmt: skip
    wait_for(lambda: replicas(cluster, "l4") is None, "the standby pool's Deployment gone")
    assert replicas(cluster, "l40s") == planned

    def settled() -> bool:  # the pass that pruned it has written its status too
        fleet = fleet_of(cluster, doc)
        cond = condition(fleet, "Degraded")
        return bool(cond and cond["status"] == "False" and not fleet["status"].get("pending"))

    wait_for(settled, "Degraded=False and no status.pending")
