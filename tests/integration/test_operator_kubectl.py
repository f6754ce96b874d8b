"""kubectl against the same harness: apply an example, read it back, delete it (GC follows)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from inferfleet_testing.kube.fixtures import cluster_fixture, operator_fixture  # noqa: F401
from inferfleet_testing.kube.harness import Cluster, Operator, wait_for
from tests.conftest import REPO

KUBECTL = shutil.which("kubectl", path=os.pathsep.join(
    [str(REPO / ".tools" / "bin"), os.environ.get("PATH", "")]))  # fmt: skip
pytestmark = pytest.mark.skipif(
    KUBECTL is None, reason="kubectl is not installed (PATH or .tools/bin; make tools installs it)"
)


def kubectl(cluster: Cluster, *args: str) -> str:
    assert KUBECTL is not None
    done = subprocess.run(
        [KUBECTL, "--kubeconfig", str(cluster.kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
    return done.stdout


def test_kubectl_apply_get_delete(cluster: Cluster, operator: Operator):
    example = str(REPO / "examples" / "fleet-code-8b.yaml")
    # KMock serves no OpenAPI, so kubectl cannot validate client-side (the CRD tests do).
    assert "created" in kubectl(cluster, "apply", "--validate=false", "-f", example)

    def sized():
        out = kubectl(cluster, "get", "ifleet", "code-8b", "-n", "llm", "-o", "json")
        conditions = json.loads(out).get("status", {}).get("conditions", [])
        return any(c["type"] == "Sized" and c["status"] == "True" for c in conditions)

    wait_for(sized, "kubectl to show Sized=True")
    deployments = json.loads(kubectl(cluster, "get", "deployments", "-n", "llm", "-o", "json"))
    assert [d["metadata"]["name"] for d in deployments["items"]]
    # Re-applying the unchanged file is a no-op for the operator.
    writes = len(cluster.writes())
    assert "unchanged" in kubectl(cluster, "apply", "--validate=false", "-f", example)
    kubectl(cluster, "delete", "inferencefleet", "code-8b", "-n", "llm", "--wait=false")
    wait_for(lambda: not cluster.objects("Deployment"), "garbage collection after kubectl delete")
    assert all(w.method != "PATCH" or "/deployments/" not in w.path
               for w in cluster.writes()[writes:])  # fmt: skip
