"""scaling.mode keda end to end: the real operator writes one ScaledObject per pool, the API
server checks each write against KEDA's own ScaledObject schema (models generated from KEDA's
CRDs) as a cluster with KEDA installed would, and every trigger's query is valid PromQL that a
real Prometheus answers.
"""

from __future__ import annotations

import copy
from typing import Any

import httpx
import pydantic
import pytest
from cloudcoil.models.keda.v1alpha1 import ScaledObject

from controllers.policy.render import object_name
from inferfleet_testing.kube.fixtures import cluster_fixture  # noqa: F401
from inferfleet_testing.kube.harness import Cluster, Operator, wait_for
from inferfleet_testing.prometheus import PrometheusServer, requires_prometheus
from tests.integration.test_operator import example, wait_sized

pytestmark = requires_prometheus
KEDA = "keda.sh/v1alpha1"


def dropped(sent: Any, kept: Any, path: str = "") -> list[str]:
    """Paths in `sent` that the schema's round trip lost: fields a real server would prune."""
    if isinstance(sent, dict):
        if not isinstance(kept, dict):
            return [path or "."]
        lost = [f"{path}.{k}" for k in sent if k not in kept]
        return lost + [p for k, v in sent.items() if k in kept
                       for p in dropped(v, kept[k], f"{path}.{k}")]  # fmt: skip
    if isinstance(sent, list):
        if not isinstance(kept, list) or len(kept) != len(sent):
            return [path]
        return [p for i, (a, b) in enumerate(zip(sent, kept, strict=True))
                for p in dropped(a, b, f"{path}[{i}]")]  # fmt: skip
    return []


def keda_schema(obj: dict[str, Any]) -> str | None:
    """Why KEDA's ScaledObject schema rejects `obj` (or would prune part of it), else None."""
    try:
        model = ScaledObject.model_validate(obj)
    except pydantic.ValidationError as err:
        return f"ScaledObject.keda.sh is invalid: {err}"
    lost = dropped(obj, model.model_dump(by_alias=True, exclude_unset=True, mode="json"))
    return f"ScaledObject.keda.sh: unknown fields {lost}" if lost else None


def test_the_schema_check_rejects_what_keda_would():
    good = {
        "apiVersion": KEDA, "kind": "ScaledObject",
        "metadata": {"name": "x", "namespace": "llm"},
        "spec": {"scaleTargetRef": {"name": "x"},
                 "triggers": [{"type": "prometheus", "metadata": {"query": "up"}}]},
    }  # fmt: skip
    assert keda_schema(good) is None
    wrong_type = copy.deepcopy(good)
    wrong_type["spec"]["minReplicaCount"] = "two"
    assert "minReplicaCount" in (keda_schema(wrong_type) or "")
    no_type = copy.deepcopy(good)
    del no_type["spec"]["triggers"][0]["type"]
    assert "type" in (keda_schema(no_type) or "")
    unknown = copy.deepcopy(good)
    unknown["spec"]["triggers"][0]["metricsType"] = "Value"  # KEDA's field is metricType
    assert keda_schema(unknown) == (
        "ScaledObject.keda.sh: unknown fields ['.spec.triggers[0].metricsType']"
    )


@pytest.fixture
def prometheus():
    server = PrometheusServer().start()
    yield server
    server.close()


@pytest.fixture
def keda_cluster(cluster: Cluster) -> Cluster:
    cluster.server.validators["scaledobjects"] = keda_schema
    return cluster


def scaled_objects(cluster: Cluster, fleet: str) -> dict[str, dict[str, Any]]:
    found = cluster.objects("ScaledObject")
    return {o["metadata"]["name"]: o for o in found
            if o["metadata"]["labels"].get("app.kubernetes.io/instance") == fleet}  # fmt: skip


def test_keda_mode_writes_scaled_objects_keda_accepts_with_queries_prometheus_answers(
    keda_cluster: Cluster, prometheus: PrometheusServer
):
    cluster = keda_cluster
    doc = copy.deepcopy(example("fleet-code-8b.yaml"))
    doc["spec"]["scaling"]["mode"] = "keda"
    doc["spec"]["monitoring"] = {"prometheusURL": prometheus.url}
    operator = Operator()
    try:
        cluster.create(doc)
        fleet = wait_sized(cluster, doc)
        pools = [p["pool"] for p in fleet["status"]["plan"]["pools"]]
        name = doc["metadata"]["name"]
        wait_for(lambda: len(scaled_objects(cluster, name)) == len(pools),
                 "a ScaledObject per planned pool")  # fmt: skip
    finally:
        operator.stop()
    found = scaled_objects(cluster, name)
    rejected = [w for w in cluster.writes() if "/scaledobjects" in w.path and w.status >= 400]
    assert rejected == []
    deployments = {d["metadata"]["name"]: d for d in cluster.objects("Deployment")}
    for pool in pools:
        scaled = found[object_name(name, pool)]
        spec = scaled["spec"]
        target = deployments[spec["scaleTargetRef"]["name"]]
        assert "replicas" not in target["spec"], "KEDA owns replicas, the operator must not"
        assert [o["uid"] for o in scaled["metadata"]["ownerReferences"]] == [
            fleet["metadata"]["uid"]
        ]
        cap = doc["spec"]["scaling"]["maxReplicas"]
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"] <= cap
        triggers = {t["name"]: t for t in spec["triggers"]}
        # The SLO guard's signals: queue, running requests, and both latency SLOs of the fleet.
        assert set(triggers) == {"vllm-waiting", "vllm-running", "vllm-ttft-p99", "vllm-itl-p99"}
        for trigger in triggers.values():
            meta = trigger["metadata"]
            assert trigger["type"] == "prometheus" and meta["serverAddress"] == prometheus.url
            assert f'fleet="{name}",pool="{pool}"' in meta["query"]
            assert float(meta["threshold"]) > 0
            answer = httpx.get(f"{prometheus.url}/api/v1/query", params={"query": meta["query"]})
            assert answer.status_code == 200, (meta["query"], answer.text)
        assert float(triggers["vllm-ttft-p99"]["metadata"]["threshold"]) == 1.5
        assert float(triggers["vllm-itl-p99"]["metadata"]["threshold"]) == 0.04


def test_an_invalid_scaled_object_is_refused_and_named(keda_cluster: Cluster):
    """The check is live in the server: a write KEDA's schema rejects is a 422 with the reason."""
    bad = {"apiVersion": KEDA, "kind": "ScaledObject",
           "metadata": {"name": "x", "namespace": "llm"},
           "spec": {"scaleTargetRef": {"name": "x"}, "triggers": [{"metadata": {}}]}}  # fmt: skip
    with pytest.raises(httpx.HTTPStatusError) as refused:
        keda_cluster.create(bad)
    assert refused.value.response.status_code == 422
    assert "triggers.0.type" in refused.value.response.json()["message"]
    assert keda_cluster.objects("ScaledObject") == []
