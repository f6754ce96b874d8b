"""The pod runner against the KMock API with real emulator processes, without the operator.

A Deployment is written by hand (as the operator would) and the runner must behave like the
cluster: pods up to `spec.replicas`, status written back, scale-down, rolling update, crash
replacement, deletion, and nothing left running afterwards.
"""

from __future__ import annotations

import json
import os
import signal
from typing import Any

import pytest

from controllers.adapters.kube import object_path
from controllers.policy.drain import prestop_command
from e2e.local.pods import PodRunner, template_hash
from inferfleet_testing.kube.fixtures import cluster_fixture  # noqa: F401
from inferfleet_testing.kube.harness import Cluster, wait_for

pytestmark = pytest.mark.timeout(120)

NS, FLEET, POOL = "llm", "tiny", "l4"
DEPLOYMENT = f"{FLEET}-{POOL}"
ARGS = ["--model=tiny", "--port=8000", "--tensor-parallel-size=1", "--max-model-len=4096"]


def make_fleet(cluster: Cluster) -> dict[str, Any]:
    fleet = cluster.create({
        "apiVersion": "inferfleet.io/v1alpha1", "kind": "InferenceFleet",
        "metadata": {"name": FLEET, "namespace": NS}, "spec": {},
    })  # fmt: skip
    plan = {"pools": [{"pool": POOL, "gpu": "L4", "coldStartSeconds": 240}]}
    path = object_path("inferfleet.io/v1alpha1", "InferenceFleet", NS, FLEET) + "/status"
    cluster.client.patch(
        path,
        json={"status": {"plan": plan}},
        headers={"Content-Type": "application/merge-patch+json"},
    ).raise_for_status()
    return fleet


def deployment(fleet: dict[str, Any], replicas: int, args: list[str]) -> dict[str, Any]:
    labels = {
        "app.kubernetes.io/managed-by": "inferfleet",
        "app.kubernetes.io/instance": FLEET,
        "app.kubernetes.io/component": POOL,
    }
    owner = {"apiVersion": "inferfleet.io/v1alpha1", "kind": "InferenceFleet", "name": FLEET,
             "uid": fleet["metadata"]["uid"], "controller": True}  # fmt: skip
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": DEPLOYMENT, "namespace": NS, "labels": labels,
                     "ownerReferences": [owner]},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels},
                         "spec": {"containers": [{"name": "vllm", "args": args}]}},
        },
    }  # fmt: skip


def status(cluster: Cluster) -> dict[str, Any]:
    found = cluster.get("apps/v1", "Deployment", NS, DEPLOYMENT)
    return (found or {}).get("status") or {}


def settled(cluster: Cluster, runner: PodRunner, replicas: int) -> bool:
    live = [p for p in runner.pods() if not p.terminating]
    state = status(cluster)
    return (
        len(live) == replicas
        and all(p.ready for p in live)
        and len(runner.pods()) == replicas  # the stopped ones are gone too
        and state.get("readyReplicas") == replicas == state.get("replicas")
    )


def targets(runner: PodRunner) -> list[dict[str, Any]]:
    return json.loads(runner.targets_file.read_text())


def test_pods_follow_the_deployment(cluster: Cluster, tmp_path):
    fleet = make_fleet(cluster)
    cluster.create(deployment(fleet, 2, ARGS))
    runner = PodRunner(
        cluster.url, tmp_path, speedup=4.0, time_compression=480.0, poll_s=0.1, drain_s=2.0
    )
    try:
        wait_for(lambda: settled(cluster, runner, 2), "2 ready pods")
        first = {p.name: p for p in runner.pods()}
        assert status(cluster)["availableReplicas"] == 2
        assert status(cluster)["updatedReplicas"] == 2
        groups = targets(runner)
        assert len(groups) == 4  # vLLM + dcgm-exporter per pod
        assert {(g["labels"]["namespace"], g["labels"]["fleet"], g["labels"]["pool"])
                for g in groups} == {(NS, FLEET, POOL)}  # fmt: skip
        assert {e.url for e in runner.endpoints(NS, FLEET)} == {p.url for p in first.values()}
        assert runner.endpoints(NS, "another-fleet") == ()

        # Scale down: one pod leaves the endpoints at once but drains before its SIGTERM;
        # then its process ends and status and targets follow.
        cluster.merge_patch("apps/v1", "Deployment", NS, DEPLOYMENT, {"spec": {"replicas": 1}})
        wait_for(lambda: len(runner.endpoints(NS, FLEET)) == 1, "the surplus out of endpoints")
        (draining,) = [p for p in runner.pods() if p.terminating]
        assert draining.process.poll() is None, "SIGTERM came before the drain period"
        wait_for(lambda: settled(cluster, runner, 1), "1 pod after scale-down")
        gone = [p for name, p in first.items() if name not in {q.name for q in runner.pods()}]
        assert len(gone) == 1 and gone[0].process.poll() is not None
        assert len(targets(runner)) == 2

        # A new pod template rolls: the new pod serves before the old one goes.
        template = deployment(fleet, 1, [*ARGS, "--max-num-seqs=8"])["spec"]["template"]
        patch = {"spec": {"template": template}}
        cluster.merge_patch("apps/v1", "Deployment", NS, DEPLOYMENT, patch)
        current = template_hash(cluster.get("apps/v1", "Deployment", NS, DEPLOYMENT))

        def rolled() -> bool:
            pods = runner.pods()
            return settled(cluster, runner, 1) and pods[0].template_hash == current

        wait_for(rolled, "the rollout to the new template")
        assert status(cluster)["updatedReplicas"] == 1

        # A crashed pod is replaced.
        (crashed,) = runner.pods()
        os.killpg(crashed.process.pid, signal.SIGKILL)
        wait_for(
            lambda: settled(cluster, runner, 1) and runner.pods()[0].name != crashed.name,
            "a replacement for the crashed pod",
        )

        # Deleting the Deployment stops its pods.
        survivors = runner.pods()
        cluster.delete("apps/v1", "Deployment", NS, DEPLOYMENT)
        wait_for(lambda: not runner.pods(), "all pods gone after the delete")
        assert all(p.process.poll() is not None for p in survivors)
        assert targets(runner) == []
        runner.check()  # the loop is still alive
    finally:
        still = list(runner.pods())
        runner.close()
    assert all(p.process.poll() is not None for p in still)
    assert not runner.errors


def test_a_pod_with_the_operators_prestop_drains_before_its_sigterm(cluster: Cluster, tmp_path):
    fleet = make_fleet(cluster)
    manifest = deployment(fleet, 2, ARGS)
    pod_spec = manifest["spec"]["template"]["spec"]
    pod_spec["terminationGracePeriodSeconds"] = 30
    pod_spec["containers"][0]["lifecycle"] = {
        "preStop": {"exec": {"command": prestop_command(8000, 30)}}
    }
    cluster.create(manifest)
    runner = PodRunner(cluster.url, tmp_path, speedup=4.0, time_compression=480.0, poll_s=0.1)
    try:
        wait_for(lambda: settled(cluster, runner, 2), "2 ready pods")
        cluster.merge_patch("apps/v1", "Deployment", NS, DEPLOYMENT, {"spec": {"replicas": 1}})
        wait_for(lambda: len(runner.endpoints(NS, FLEET)) == 1, "the surplus out of endpoints")
        (draining,) = [p for p in runner.pods() if p.terminating]
        assert draining.hook is not None and draining.process.poll() is None
        # Idle, so the hook returns after its settle time and two idle readings, well inside
        # the grace period, and only then the SIGTERM ends the emulator.
        wait_for(lambda: draining.process.poll() is not None, "the drained pod to exit", 25)
        assert draining.hook.poll() == 0
        wait_for(lambda: settled(cluster, runner, 1), "1 pod after scale-down")
    finally:
        runner.close()
    assert not runner.errors
