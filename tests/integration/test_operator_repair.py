"""Owned Services and PodDisruptionBudgets changed behind the operator's back are repaired at
once (their watch events run a pass), not at the next resync: the real Kopf operator against
the KMock API server, with a resync interval far longer than the test."""

from __future__ import annotations

from typing import Any

import pytest

from inferfleet_testing.kube.fixtures import cluster_fixture, operator_fixture  # noqa: F401
from inferfleet_testing.kube.harness import Cluster, Operator, wait_for
from tests.integration.test_operator import example, settle, wait_sized

FLEET = "code-8b"
NAME = "code-8b-l40s"  # the example's one pool: Deployment, Service and PDB all named so


@pytest.fixture(name="fleet")
def fleet_fixture(cluster: Cluster, operator: Operator) -> dict[str, Any]:
    obj = example()
    obj["spec"]["scaling"]["interval"] = "1h"  # no resync within the test: only events repair
    cluster.create(obj)
    wait_sized(cluster, obj)
    settle(cluster)
    return obj


def test_deleted_service_is_recreated(cluster: Cluster, fleet: dict[str, Any]):
    old = cluster.get("v1", "Service", "llm", NAME)
    assert old is not None
    cluster.delete("v1", "Service", "llm", NAME)
    new = wait_for(lambda: cluster.get("v1", "Service", "llm", NAME), "the Service back")
    assert new["metadata"]["uid"] != old["metadata"]["uid"]
    assert new["spec"] == old["spec"]


def test_deleted_pdb_is_recreated(cluster: Cluster, fleet: dict[str, Any]):
    old = cluster.get("policy/v1", "PodDisruptionBudget", "llm", NAME)
    assert old is not None
    cluster.delete("policy/v1", "PodDisruptionBudget", "llm", NAME)
    new = wait_for(
        lambda: cluster.get("policy/v1", "PodDisruptionBudget", "llm", NAME), "the PDB back"
    )
    assert new["spec"] == old["spec"]


def test_hand_edited_pdb_is_put_back(cluster: Cluster, fleet: dict[str, Any]):
    original = cluster.get("policy/v1", "PodDisruptionBudget", "llm", NAME)
    assert original is not None
    edit = {"spec": {"maxUnavailable": original["spec"]["maxUnavailable"] + 2}}
    cluster.merge_patch("policy/v1", "PodDisruptionBudget", "llm", NAME, edit)

    def restored() -> bool:
        now = cluster.get("policy/v1", "PodDisruptionBudget", "llm", NAME)
        return now is not None and now["spec"] == original["spec"]

    wait_for(restored, "the hand edit of the PDB to be reverted")


def test_hand_edited_service_is_put_back(cluster: Cluster, fleet: dict[str, Any]):
    original = cluster.get("v1", "Service", "llm", NAME)
    assert original is not None
    edit = {"spec": {"selector": {"app.kubernetes.io/instance": "someone-else"}}}
    cluster.merge_patch("v1", "Service", "llm", NAME, edit)

    def restored() -> bool:
        now = cluster.get("v1", "Service", "llm", NAME)
        return now is not None and now["spec"]["selector"] == original["spec"]["selector"]

    wait_for(restored, "the hand edit of the Service to be reverted")


def test_a_pass_run_by_an_event_reads_the_fleet_from_the_watch(
    cluster: Cluster, fleet: dict[str, Any]
):
    mark = len(cluster.server.paths)
    cluster.delete("apps/v1", "Deployment", "llm", NAME)
    wait_for(lambda: cluster.get("apps/v1", "Deployment", "llm", NAME), "the Deployment back")
    settle(cluster)
    fleet_path = f"GET /apis/inferfleet.io/v1alpha1/namespaces/llm/inferencefleets/{FLEET}"
    assert fleet_path not in cluster.server.paths[mark:]
