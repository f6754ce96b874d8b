"""The chart's RBAC is enough: every request the real operator makes is one its rules allow.

The operator (real Kopf + controllers.reconcile) runs against the KMock API server through a
scenario that exercises each kind of call: create, re-plan on edit, repair a deleted
Deployment, refuse a bad spec (Events), read a ConfigMap, delete the fleet. Every request is
recorded, turned into the (API group, resource, verb) an API server's authorizer would check,
and looked up in `charts/inferfleet/files/rbac-rules.yaml` — the rules the ClusterRole grants.
A call without a rule here is a 403 in a real cluster.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from inferfleet_testing.kube.fixtures import recorded_fixture  # noqa: F401
from inferfleet_testing.kube.harness import Cluster, Operator, wait_for
from tests.conftest import REPO

RULES_FILE = REPO / "charts" / "inferfleet" / "files" / "rbac-rules.yaml"
FLEETS = "inferfleet.io/v1alpha1"
# Readable by every authenticated user (system:discovery / system:public-info-viewer).
PUBLIC_PREFIXES = ("/version", "/openapi", "/healthz", "/livez", "/readyz")


def attributes(method: str, path: str, query: dict[str, str]) -> tuple[str, str, str] | None:
    """(apiGroup, resource[/subresource], verb) of a resource request; None for discovery."""
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"] and len(parts) > 2:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) > 3:
        group, rest = parts[1], parts[3:]
    else:
        return None  # /api, /apis, /api/v1, /apis/<group>/<version>: discovery
    if rest[0] == "namespaces" and len(rest) >= 3:
        rest = rest[2:]  # namespaced resource: drop namespaces/<ns>
    resource, name, sub = rest[0], rest[1] if len(rest) > 1 else None, rest[2:3]
    collection = name is None
    verb = {
        "GET": ("watch" if query.get("watch") in ("true", "1") else "list")
        if collection
        else "get",
        "POST": "create",
        "PUT": "update",
        "PATCH": "patch",
        "DELETE": "deletecollection" if collection else "delete",
    }[method]
    return group, "/".join([resource, *sub]), verb


def allowed(rules: list[dict[str, list[str]]], group: str, resource: str, verb: str) -> bool:
    return any(
        group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"] for r in rules
    )


@pytest.fixture
def running(tmp_path, monkeypatch, recorded) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path)
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    operator = Operator()
    try:
        yield cluster
    finally:
        operator.stop()
        cluster.close()


def example() -> dict[str, Any]:
    docs = yaml.safe_load_all((REPO / "examples" / "fleet-code-8b.yaml").read_text())
    return next(d for d in docs if d and d.get("kind") == "InferenceFleet")


def sized(cluster: Cluster, name: str, generation: int):
    def check():
        fleet = cluster.get(FLEETS, "InferenceFleet", "llm", name)
        return fleet and fleet.get("status", {}).get("observedGeneration") == generation

    wait_for(check, f"{name} reconciled at generation {generation}")


def test_every_operator_request_is_granted_by_the_chart(running: Cluster, recorded):
    cluster = running
    fleet = example()
    name = fleet["metadata"]["name"]
    cluster.create(fleet)
    sized(cluster, name, 1)
    (deployment, *_) = [d["metadata"]["name"] for d in cluster.objects("Deployment")]
    cluster.delete("apps/v1", "Deployment", "llm", deployment)  # repair: get + apply again
    wait_for(lambda: cluster.get("apps/v1", "Deployment", "llm", deployment), "the repair")
    patch = {"spec": {"workload": {"peakRequestsPerSecond": "40"}}}
    cluster.merge_patch(FLEETS, "InferenceFleet", "llm", name, patch)  # re-plan
    sized(cluster, name, 2)
    cluster.merge_patch(FLEETS, "InferenceFleet", "llm", name, {"spec": {"pools": []}})
    sized(cluster, name, 3)  # refused spec: an Event and a status, nothing else

    second = example()
    second["metadata"]["name"] = "from-configmap"
    config = second["spec"]["model"]["hfConfig"].pop("inline")
    second["spec"]["model"]["hfConfig"]["configMapRef"] = {"name": "model-config"}
    cluster.create({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "model-config", "namespace": "llm"},
                    "data": {"config.json": json.dumps(config)}})  # fmt: skip
    cluster.create(second)
    sized(cluster, "from-configmap", 1)
    cluster.delete(FLEETS, "InferenceFleet", "llm", "from-configmap")
    wait_for(
        lambda: cluster.get(FLEETS, "InferenceFleet", "llm", "from-configmap") is None,
        "the fleet to be released",
    )

    rules = yaml.safe_load(RULES_FILE.read_text())
    # This operator has every access on (no chart settings in its environment): checked against
    # every rule the chart can grant. The default grant is test_operator_least_privilege's.
    optional = [rule for granted_by in rules["optional"].values() for rule in granted_by]
    granted = rules["namespaced"] + rules["cluster"] + optional
    checked = {
        attrs
        for method, path, query in recorded
        if not path.startswith(PUBLIC_PREFIXES)
        and (attrs := attributes(method, path, query)) is not None
    }
    missing = sorted(a for a in checked if not allowed(granted, *a))
    assert not missing, f"the operator made calls its chart RBAC does not grant: {missing}"
    resources = {resource for _, resource, _ in checked}
    assert {"inferencefleets", "inferencefleets/status", "deployments", "configmaps"} <= resources
