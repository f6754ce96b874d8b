"""The e2e scenario on a real kind cluster: helm install, apply the examples, wait for Ready.

Needs a running container engine and the `kind`, `kubectl` and `helm` binaries. Where they are
missing the suite skips itself and says how to run it; the local harness (`e2e/local`) runs the
same scenario in CI without a cluster.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CLUSTER = "inferfleet-e2e"
HOW_TO_RUN = (
    "needs a running Docker or Podman engine plus kind, kubectl and helm on PATH; "
    "run `pytest e2e/kind -m e2e` on a machine that has them"
)


def _engine_running() -> bool:
    for engine in ("docker", "podman"):
        if shutil.which(engine):
            probe = subprocess.run([engine, "info"], capture_output=True, timeout=20, check=False)
            if probe.returncode == 0:
                return True
    return False


def _missing() -> str | None:
    tools = [t for t in ("kind", "kubectl", "helm") if not shutil.which(t)]
    if tools:
        return f"missing {', '.join(tools)}"
    if not _engine_running():
        return "no container engine answers (docker/podman info failed)"
    return None


pytestmark = pytest.mark.skipif(
    (reason := _missing()) is not None, reason=f"kind e2e: {reason}; {HOW_TO_RUN}"
)


def sh(*cmd: str, stdin: str | None = None, timeout: int = 600) -> str:
    done = subprocess.run(
        cmd, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode:
        raise AssertionError(f"{' '.join(cmd)} failed: {done.stderr.strip()}")
    return done.stdout


@pytest.fixture(scope="module")
def cluster():
    sh("kind", "create", "cluster", "--name", CLUSTER, "--config",
       str(REPO / "e2e/kind/cluster.yaml"), "--wait", "120s")  # fmt: skip
    try:
        images = {"inferfleet:e2e": "Dockerfile",
                  "inferfleet-emulator:e2e": "e2e/kind/Dockerfile.emulator"}  # fmt: skip
        for tag, dockerfile in images.items():
            sh("docker", "build", "-t", tag, "-f", str(REPO / dockerfile), str(REPO), timeout=1200)
            sh("kind", "load", "docker-image", tag, "--name", CLUSTER)
        nodes = json.loads(sh("kubectl", "get", "nodes", "-l", "inferfleet.io/fake-gpu=true",
                              "-o", "json"))["items"]  # fmt: skip
        for node in nodes:
            patch = '[{"op":"add","path":"/status/capacity/nvidia.com~1gpu","value":"8"}]'
            sh("kubectl", "patch", "node", node["metadata"]["name"], "--subresource=status",
               "--type=json", "-p", patch)  # fmt: skip
        sh("helm", "install", "inferfleet", str(REPO / "charts/inferfleet"),
           "--namespace", "inferfleet-system", "--create-namespace", "--wait",
           "--set", "image.repository=inferfleet", "--set", "image.tag=e2e",
           "--set", "image.pullPolicy=Never")  # fmt: skip
        yield CLUSTER
    finally:
        subprocess.run(["kind", "delete", "cluster", "--name", CLUSTER], check=False)


EXAMPLES = sorted(p.name for p in (REPO / "examples").glob("fleet-*.yaml"))


@pytest.mark.parametrize("example", EXAMPLES)
def test_example_becomes_ready(cluster, example):
    fleet = yaml.safe_load((REPO / "examples" / example).read_text())
    fleet["spec"]["model"]["image"] = "inferfleet-emulator:e2e"
    for pool in fleet["spec"]["pools"]:
        pool["nodeSelector"] = {"inferfleet.io/fake-gpu": "true"}
        pool["maxGPUs"] = 16
    namespace = fleet["metadata"].get("namespace", "default")
    subprocess.run(["kubectl", "create", "namespace", namespace], check=False)
    sh("kubectl", "apply", "-f", "-", stdin=yaml.safe_dump(fleet))
    name = fleet["metadata"]["name"]
    sh("kubectl", "wait", "-n", namespace, f"inferencefleet/{name}",
       "--for=condition=Sized", "--timeout=120s")  # fmt: skip
    sh("kubectl", "wait", "-n", namespace, f"inferencefleet/{name}",
       "--for=condition=Ready", "--timeout=600s")  # fmt: skip
    status = json.loads(sh("kubectl", "get", "-n", namespace, f"inferencefleet/{name}",
                           "-o", "json"))["status"]  # fmt: skip
    assert status["plan"]["pools"], status
    assert status["replicas"]["ready"] >= 1
