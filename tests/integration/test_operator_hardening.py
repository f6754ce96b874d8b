"""Through the real Kubernetes adapter against KMock: what the operator writes for a fleet with
a conflicting or secret `extraArgs`, and for one with a Hub token reference."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import yaml

from controllers.adapters.kube import Kube
from controllers.reconcile.handlers import reconcile
from controllers.reconcile.plans import PlanCache
from controllers.reconcile.runtime import Watcher
from inferfleet_testing.kube.apiserver import Fault
from inferfleet_testing.kube.fixtures import cluster_fixture  # noqa: F401
from inferfleet_testing.kube.harness import Cluster
from tests.conftest import REPO

SECRET = "hf_DoNotLeakThisValue42"


def _create(cluster: Cluster, **model: Any) -> None:
    docs = yaml.safe_load_all((REPO / "examples" / "fleet-code-8b.yaml").read_text())
    fleet = next(d for d in docs if d and d.get("kind") == "InferenceFleet")
    fleet["spec"]["model"].update(model)
    cluster.create(fleet)


def _pass(cluster: Cluster, watcher: Watcher | None = None) -> dict[str, Any]:
    (fleet,) = cluster.objects("InferenceFleet")

    async def run() -> None:
        kube = Kube.from_environment()
        try:
            await reconcile(
                kube, fleet, now_s=1_000_000.0, plans=PlanCache(), owned=cluster.owned(),
                watcher=watcher or Watcher(),
            )  # fmt: skip
        finally:
            await kube.close()

    asyncio.run(run())
    (fleet,) = cluster.objects("InferenceFleet")
    return fleet


def _sized(fleet: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in fleet["status"]["conditions"] if c["type"] == "Sized")


def test_a_managed_flag_in_extra_args_is_refused_with_the_field_named(cluster: Cluster):
    _create(cluster, extraArgs=["--trust-remote-code", "--tensor-parallel-size=8"])
    sized = _sized(_pass(cluster))
    assert sized["status"] == "False"
    assert "spec.model.extraArgs" in sized["message"] and "extraArgs[1]" in sized["message"]
    assert "--tensor-parallel-size" in sized["message"]
    assert cluster.objects("Deployment") == []
    assert [e["reason"] for e in cluster.objects("Event")] == [sized["reason"]]


def test_a_secret_in_extra_args_never_reaches_status_events_or_objects(cluster: Cluster):
    # KMock does not run the CRD's CEL rules, as an older CRD would not: the model still refuses.
    _create(cluster, extraArgs=[f"--hf-token={SECRET}"])
    fleet = _pass(cluster)
    assert _sized(fleet)["status"] == "False"
    assert "hub.tokenSecretRef" in _sized(fleet)["message"]
    written = [fleet["status"], *cluster.objects("Event"), *cluster.objects("Deployment")]
    assert SECRET not in json.dumps(written)


def test_the_token_reference_reaches_the_pod_as_a_secret_key_ref(cluster: Cluster):
    _create(cluster, hub={"tokenSecretRef": {"name": "hf-gated"}})
    assert _sized(_pass(cluster))["status"] == "True"
    (deployment,) = cluster.objects("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["HF_TOKEN"]["valueFrom"] == {"secretKeyRef": {"name": "hf-gated", "key": "token"}}
    assert pod["automountServiceAccountToken"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])


def test_a_token_secret_the_operator_may_not_read_is_refused_naming_the_chart_value(
    cluster: Cluster,
):
    """The API answers 403 (the chart grants no such Secret): a clear refusal, not a retry."""
    fault = cluster.inject(Fault("GET", "/secrets/hf-gated", 403, times=100))
    _create(cluster, name="acme/private-8b", hfConfig=None,
            hub={"tokenSecretRef": {"name": "hf-gated"}})  # fmt: skip
    sized = _sized(_pass(cluster))
    assert fault.hits, "the operator did not try to read the Secret"
    assert (sized["status"], sized["reason"]) == ("False", "ModelConfigUnavailable")
    assert "rbac.hubTokenSecrets" in sized["message"] and "hf-gated" in sized["message"]


def test_root_in_the_vllm_pods_only_where_the_chart_allows_it(cluster: Cluster):
    _create(cluster, securityContext={"runAsUser": 0, "privileged": True})
    sized = _sized(_pass(cluster))
    assert (sized["status"], sized["reason"]) == ("False", "InvalidSpec")
    assert "spec.model.securityContext.runAsUser" in sized["message"]
    assert "spec.model.securityContext.privileged" in sized["message"]
    assert "vllmPods.allowPrivileged" in sized["message"]
    assert cluster.objects("Deployment") == []
    assert _sized(_pass(cluster, Watcher(allow_privileged_pods=True)))["status"] == "True"
    (deployment,) = cluster.objects("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == 0
    assert pod["containers"][0]["securityContext"]["privileged"] is True
