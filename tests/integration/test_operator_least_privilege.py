"""The operator as the chart's default RBAC runs it: no access to Pods or Secrets.

The real operator process (`kopf run operator/main.py`, as the image runs it) gets the settings
the chart renders by default (`rbac.podAccess: false`, `rbac.hubTokenSecrets: []`) and works
against the KMock API server, which records every request. It must ask for no pod and no
Secret at all (a pods watch without the grant would retry its 403 forever), every request it
does make must be one the default rules grant, and it must still see replicas no node takes,
from the Deployment's own status, and refuse a fleet whose token Secret it may not read with a
reason that names the chart value.
"""

from __future__ import annotations

import base64
import copy
from pathlib import Path
from typing import Any

import yaml

from controllers.reconcile.runtime import POD_ACCESS_ENV, READABLE_SECRETS_ENV
from controllers.reconcile.unready import REASON
from inferfleet_testing.kube.fixtures import recorded_fixture  # noqa: F401
from inferfleet_testing.kube.harness import Cluster, wait_for
from tests.integration.test_chart_rbac_coverage import (
    PUBLIC_PREFIXES,
    RULES_FILE,
    allowed,
    attributes,
)
from tests.integration.test_operator import condition, example, fleet_of, wait_sized
from tests.integration.test_operator_pending import NS, _status, replicas
from tests.integration.test_operator_sigkill import OperatorProcess

CHART_DEFAULTS = {POD_ACCESS_ENV: "false", READABLE_SECRETS_ENV: "", "HF_HUB_OFFLINE": "1"}


def _fleet() -> dict[str, Any]:
    doc = copy.deepcopy(example("fleet-code-8b.yaml"))
    doc["spec"]["pools"][0].update(maxGPUs=2, coldStart="1s")  # the plan: 2 L40S, then L4
    doc["spec"]["scaling"] = {"mode": "static", "interval": "1s", "pendingDeadline": "1s"}
    return doc


def _gated() -> dict[str, Any]:
    """A fleet naming a model the catalog lacks, with its own Hub token Secret."""
    doc = copy.deepcopy(example("fleet-code-8b.yaml"))
    doc["metadata"]["name"] = "gated"
    del doc["spec"]["model"]["hfConfig"]
    doc["spec"]["model"].update(name="acme/private-8b", hub={"tokenSecretRef": {"name": "hf"}})
    return doc


def test_without_pod_or_secret_access_pending_is_seen_from_the_deployment(
    tmp_path: Path, recorded: list[tuple[str, str, dict[str, str]]]
):
    cluster = Cluster(tmp_path)
    operator = OperatorProcess(cluster, tmp_path / "operator.log", env=CHART_DEFAULTS)
    try:
        doc = _fleet()
        cluster.create(doc)
        planned_l4 = wait_for(lambda: replicas(cluster, "l4"), "the l4 Deployment", 60)
        assert replicas(cluster, "l40s") == 2
        # Nothing places the L40S replicas: their Deployment never reports them ready.
        spilled = wait_for(
            lambda: (r := replicas(cluster, "l4")) and r > planned_l4 and r, "the spill to l4", 30
        )
        assert replicas(cluster, "l40s") == 2  # held there
        # A pass writes the Deployments before the status: wait for the status of that pass.
        fleet = wait_for(
            lambda: (f := fleet_of(cluster, doc))["status"].get("pending") and f,
            "status.pending",
            30,
        )
        (pending,) = fleet["status"]["pending"]
        assert (pending["pool"], pending["replicas"], pending["reason"]) == ("l40s", 2, REASON)
        assert pending["spilledTo"] == "l4" and pending["spilledReplicas"] == spilled - planned_l4
        degraded = condition(fleet, "Degraded")
        assert degraded is not None and degraded["status"] == "True"
        assert "rbac.podAccess" in degraded["message"]

        _status(
            cluster, "apps/v1", "Deployment", "code-8b-l40s", {"replicas": 2, "readyReplicas": 2}
        )
        wait_for(lambda: replicas(cluster, "l4") == planned_l4, "l4 back to the plan's count")
        # As above, the status of the pass that shrank l4 lands after its Deployment write.
        wait_for(
            lambda: not fleet_of(cluster, doc)["status"].get("pending"),
            "status.pending cleared",
            30,
        )

        token = base64.b64encode(b"hf_secret").decode()
        cluster.create({"apiVersion": "v1", "kind": "Secret",
                        "metadata": {"name": "hf", "namespace": NS},
                        "data": {"token": token}})  # fmt: skip
        gated = _gated()
        cluster.create(gated)
        sized = condition(wait_sized(cluster, gated, status="False"), "Sized")
        assert sized is not None and sized["reason"] == "ModelConfigUnavailable"
        assert "rbac.hubTokenSecrets" in sized["message"] and "hf_secret" not in sized["message"]
    finally:
        operator.stop()
        cluster.close()
    log = (tmp_path / "operator.log").read_text()
    assert "Traceback" not in log, log

    checked = {
        attrs
        for method, path, query in recorded
        if not path.startswith(PUBLIC_PREFIXES)
        and (attrs := attributes(method, path, query)) is not None
    }
    asked = {resource for _, resource, _ in checked}
    assert not {"pods", "secrets"} & asked, sorted(checked)
    assert {"inferencefleets", "deployments"} <= asked
    rules = yaml.safe_load(RULES_FILE.read_text())
    granted = rules["namespaced"] + rules["cluster"]
    assert not [a for a in sorted(checked) if not allowed(granted, *a)]
