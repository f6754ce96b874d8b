"""The operator image `make image` built, run by a real Docker daemon as the chart runs it.

The container's settings come from the Deployment the chart renders, not from a copy here:
its image reference (so the chart's default must be the tag `make image` gives), user and
group, read-only root filesystem, dropped capabilities, no privilege escalation, its
size-limited emptyDir as a tmpfs, its arguments, its environment and its resource limits.
It reaches the KMock API server on loopback through the host network, reconciles one fleet,
and answers its health and metrics endpoints.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from inferfleet_testing.emulator import free_port
from inferfleet_testing.kube.harness import (
    Cluster,
    create_example_and_wait_for_deployments,
    wait_for,
)

REPO = Path(__file__).resolve().parents[2]
HELM = REPO / ".tools" / "bin" / "helm"
DOCKER = shutil.which("docker")
KUBECONFIG_IN_CONTAINER = "/etc/inferfleet/kubeconfig"


def docker(*args: str, timeout_s: float = 120, check: bool = True) -> str:
    assert DOCKER is not None
    done = subprocess.run(
        [DOCKER, *args], capture_output=True, text=True, timeout=timeout_s, check=False
    )
    if check:
        assert done.returncode == 0, f"docker {' '.join(args)}: {done.stderr}"
    return done.stdout


def render_operator(values: dict[str, Any]) -> dict[str, Any]:
    """The operator Deployment as `helm template` renders it with `values`."""
    if not HELM.is_file():
        pytest.skip("helm missing; run `make tools`")
    out = subprocess.run(
        [str(HELM), "template", "inferfleet", str(REPO / "charts" / "inferfleet"),
         "--values", "-"],
        input=yaml.safe_dump(values), capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    (deployment,) = [d for d in yaml.safe_load_all(out) if d and d["kind"] == "Deployment"]
    return deployment


@pytest.fixture(scope="module")
def chart_image() -> str:
    """The chart's default image reference, which `make image` must have built here."""
    image = render_operator({})["spec"]["template"]["spec"]["containers"][0]["image"]
    if DOCKER is None:
        pytest.skip("no docker client; run `make image` (scripts/start-docker.sh installs it)")
    info = subprocess.run([DOCKER, "info"], capture_output=True, text=True, check=False)
    if info.returncode != 0:
        pytest.skip(f"no Docker daemon answers ({info.stderr.strip()[:200]}); run `make image`")
    inspect = [DOCKER, "image", "inspect", image]
    if subprocess.run(inspect, capture_output=True, check=False).returncode:
        pytest.skip(f"{image} is not built; run `make image`")
    return image


def _quantity_bytes(quantity: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "": 1}
    number, unit = re.fullmatch(r"(\d+)(Ki|Mi|Gi|)", quantity).groups()  # type: ignore[union-attr]
    return int(number) * units[unit]


def docker_run_args(pod_spec: dict[str, Any], pod_name: str) -> list[str]:
    """`docker run` flags that hold the container to what the pod spec asks of it."""
    (container,) = pod_spec["containers"]
    pod_sc, sc = pod_spec.get("securityContext", {}), container["securityContext"]
    user, group = sc.get("runAsUser", pod_sc["runAsUser"]), pod_sc["runAsGroup"]
    args = ["--user", f"{user}:{group}", "--cap-drop", "ALL"]
    assert sc["capabilities"]["drop"] == ["ALL"] and sc["runAsNonRoot"] and user != 0
    if sc.get("readOnlyRootFilesystem"):
        args.append("--read-only")
    if sc.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    volumes = {v["name"]: v for v in pod_spec.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        empty_dir = volumes[mount["name"]]["emptyDir"]
        size = _quantity_bytes(empty_dir["sizeLimit"])
        args += ["--tmpfs", f"{mount['mountPath']}:size={size},uid={user},gid={group}"]
    for var in container.get("env", []):
        if "value" in var:
            args += ["--env", f"{var['name']}={var['value']}"]
        else:  # the downward API's pod name
            assert var["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
            args += ["--env", f"{var['name']}={pod_name}"]
    limits = container["resources"]["limits"]
    args += ["--memory", str(_quantity_bytes(limits["memory"])), "--cpus", str(limits["cpu"])]
    return args


class RunningOperator:
    def __init__(self, name: str, health_url: str, metrics_url: str) -> None:
        self.name, self.health_url, self.metrics_url = name, health_url, metrics_url

    def logs(self) -> str:
        done = subprocess.run([DOCKER or "docker", "logs", self.name], capture_output=True,
                              text=True, check=False)  # fmt: skip
        return done.stdout + done.stderr


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    server = Cluster(tmp_path)
    server.kubeconfig.chmod(0o644)  # the container's non-root user reads it
    yield server
    server.close()


@pytest.fixture
def operator_container(chart_image: str, cluster: Cluster) -> Iterator[RunningOperator]:
    health_port, metrics_port = free_port(), free_port()
    deployment = render_operator({"healthPort": health_port, "metrics": {"port": metrics_port}})
    pod_spec = deployment["spec"]["template"]["spec"]
    (container,) = pod_spec["containers"]
    name = f"inferfleet-image-test-{health_port}"
    running = RunningOperator(
        name,
        f"http://127.0.0.1:{health_port}/healthz",
        f"http://127.0.0.1:{metrics_port}/metrics",
    )
    try:  # a container that was created but failed to start is removed too
        docker(
            "run", "--detach", "--name", name, "--network", "host",
            *docker_run_args(pod_spec, pod_name=name),
            "--volume", f"{cluster.kubeconfig}:{KUBECONFIG_IN_CONTAINER}:ro",
            "--env", f"KUBECONFIG={KUBECONFIG_IN_CONTAINER}",
            container["image"], *container["args"],
        )  # fmt: skip
        yield running
    finally:
        docker("rm", "--force", name, check=False)


def _answers(url: str) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=2)
    except httpx.TransportError:
        return None


def test_the_image_reconciles_a_fleet_as_the_chart_runs_it(
    operator_container: RunningOperator, cluster: Cluster
):
    op = operator_container

    def healthy() -> bool:
        state = json.loads(docker("inspect", "--format", "{{json .State}}", op.name))
        assert state["Running"], f"the container exited:\n{op.logs()}"
        answer = _answers(op.health_url)
        return answer is not None and answer.status_code == 200

    wait_for(healthy, "the operator container's health endpoint", timeout_s=90)
    fleet, deployments = create_example_and_wait_for_deployments(
        cluster, REPO / "examples" / "fleet-code-8b.yaml", op.logs
    )
    assert deployments[0]["metadata"]["namespace"] == fleet["metadata"]["namespace"]

    def reconciled_metrics() -> str | None:
        answer = _answers(op.metrics_url)
        if answer is None or answer.status_code != 200:
            return None
        return answer.text if "inferfleet_reconcile" in answer.text else None

    metrics = wait_for(reconciled_metrics, "the operator's /metrics", timeout_s=30)
    assert re.search(r"^inferfleet_\w+", metrics, re.MULTILINE)
    assert "Traceback" not in op.logs()


def test_the_image_runs_as_its_non_root_user_with_inferfleet_from_its_wheel(chart_image: str):
    config = json.loads(docker("image", "inspect", "--format", "{{json .Config}}", chart_image))
    assert config["User"] == "65532:65532" and config["Entrypoint"] == ["kopf"]
    script = (
        "import os, controllers, sizing, inferfleet; "
        "print(os.getuid(), controllers.__file__, sizing.__file__, inferfleet.__file__)"
    )
    out = docker("run", "--rm", "--read-only", "--network", "none", "--entrypoint", "python3",
                 chart_image, "-c", script).split()  # fmt: skip
    assert out[0] == "65532"
    assert all("-packages/" in path for path in out[1:]), out  # installed, not a source tree
    version = docker("run", "--rm", "--read-only", "--network", "none", "--entrypoint",
                     "inferfleet", chart_image, "--version")  # fmt: skip
    assert re.fullmatch(r"inferfleet \d+\.\d+\.\d+\S*\n", version)


def test_the_image_sizes_a_catalogued_model_offline(chart_image: str):
    """An air-gapped operator sizes a model named only by name from the installed catalog."""
    out = docker("run", "--rm", "--read-only", "--network", "none", "--entrypoint", "inferfleet",
                 chart_image, "memory", "--model", "Qwen/Qwen3-8B", "--offline", "--gpu", "H100",
                 "--tp", "1", "--max-model-len", "8192", "--output", "json")  # fmt: skip
    assert json.loads(out)["kv_cache_tokens"] > 8192
