"""The operator image, tested as far as a machine without a container engine allows.

The Dockerfile is checked for what reviewers ask (pinned slim base, non-root, Kopf entry on the
file it copies, the same path the chart runs). Then the image's build is replayed: the wheel is
built from exactly the paths the build stage copies, installed into a fresh venv outside the
repository, and the image's entry command (`kopf run <operator file> --liveness=...`) is started
against a local API server: its health endpoint answers and it reconciles an example fleet.

The fresh venv borrows third-party dependencies from the dev venv through a path file (a full
install from the registry takes 2-3 min here); inferfleet's own code comes only from the wheel,
which the test asserts.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from inferfleet_testing.kube.harness import (
    Cluster,
    create_example_and_wait_for_deployments,
    wait_for,
)
from inferfleet_testing.prometheus import free_port
from tests.conftest import REPO

DOCKERFILE = REPO / "Dockerfile"
CHART_HELPERS = REPO / "charts" / "inferfleet" / "templates" / "_helpers.tpl"


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", dockerfile.read_text())
    lines = [
        ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")
    ]
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1]) for ln in lines]


def stage_sources(stage: str) -> list[str]:
    """Source paths the stage named `stage` COPYs."""
    sources: list[str] = []
    current = None
    for op, args in instructions(DOCKERFILE):
        if op == "FROM":
            words = args.split()
            current = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
        elif op == "COPY" and current == stage:
            sources += args.split()[:-1]
    return sources


def build_stage_sources() -> list[str]:
    """Source paths the build stage COPYs (the wheel is built from these alone)."""
    return stage_sources("build")


def operator_file_in_image() -> str:
    (dest,) = [a.split()[-1] for op, a in instructions(DOCKERFILE)
               if op == "COPY" and a.split()[0] == "operator/main.py"]  # fmt: skip
    return dest


def test_base_image_is_a_pinned_slim_python():
    args = dict(a.split("=", 1) for op, a in instructions(DOCKERFILE) if op == "ARG" and "=" in a)
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", args["PYTHON_IMAGE"])
    froms = [a for op, a in instructions(DOCKERFILE) if op == "FROM"]
    assert len(froms) == 3, "multi-stage: dependency wheels, inferfleet's wheel, then runtime"
    assert all(f.split()[0] == "${PYTHON_IMAGE}" for f in froms)


def test_dependency_wheels_come_from_pyproject_alone():
    """A source change must not rebuild the third-party wheels (the slow layer)."""
    assert stage_sources("deps") == ["pyproject.toml"]
    assert {"sizing", "controllers", "inferfleet"} <= set(build_stage_sources())


def test_runtime_stage_is_non_root_and_runs_kopf_on_the_copied_file():
    ops = instructions(DOCKERFILE)
    assert ("USER", "65532:65532") in ops
    entry = next(yaml.safe_load(a) for op, a in ops if op == "ENTRYPOINT")
    cmd = next(yaml.safe_load(a) for op, a in ops if op == "CMD")
    assert entry == ["kopf"]
    assert cmd[:2] == ["run", operator_file_in_image()]
    assert "--liveness=http://0.0.0.0:8080/healthz" in cmd
    assert (REPO / "operator" / "main.py").is_file()


def test_chart_runs_the_file_the_image_ships():
    assert f"- {operator_file_in_image()}" in CHART_HELPERS.read_text()


def test_dockerignore_admits_every_copied_path():
    allowed = {ln[1:].rstrip("/") for ln in (REPO / ".dockerignore").read_text().splitlines()
               if ln.startswith("!")}  # fmt: skip
    for dockerfile in (DOCKERFILE, REPO / "e2e" / "kind" / "Dockerfile.emulator"):
        for op, args in instructions(dockerfile):
            if op != "COPY" or args.startswith("--from"):
                continue
            for source in args.split()[:-1]:
                assert (REPO / source).exists(), source
                assert source.rstrip("/") in allowed, f"{dockerfile.name}: {source} is ignored"


def run(*cmd: str | Path, cwd: Path, timeout: int = 120, **kw: Any) -> str:
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, check=False, **kw)  # fmt: skip
    assert done.returncode == 0, f"{cmd}: {done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A venv with the wheel built as the image's build stage builds it; returns its python."""
    work = tmp_path_factory.mktemp("image")
    src = work / "src"
    for source in build_stage_sources():
        origin = REPO / source
        if origin.is_dir():
            shutil.copytree(origin, src / source, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (src / source).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, src / source)
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir",
        work / "wheels", src, cwd=work)  # fmt: skip
    (wheel,) = (work / "wheels").glob("inferfleet-*.whl")
    venv.EnvBuilder(with_pip=False).create(work / "venv")
    python = work / "venv" / "bin" / "python"
    target = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                 cwd=work).strip()  # fmt: skip
    (Path(target) / "borrowed-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run(sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps",
        wheel, cwd=work)  # fmt: skip
    app = work / operator_file_in_image().lstrip("/")
    app.parent.mkdir(parents=True)
    shutil.copy2(REPO / "operator" / "main.py", app)
    return python


def test_wheel_holds_every_package_the_operator_imports(installed: Path):
    venv_root = installed.parent.parent
    out = run(installed, "-c",
              "import controllers.reconcile.handlers, sizing.hardware, inferfleet.cli as c; "
              "import controllers, sizing, inferfleet; "
              "print(controllers.__file__, sizing.__file__, inferfleet.__file__)",
              cwd=venv_root)  # fmt: skip
    for path in out.split():
        assert Path(path).is_relative_to(venv_root), f"{path} did not come from the wheel"


def test_console_script_works_from_the_wheel(installed: Path):
    out = run(installed.parent / "inferfleet", "--version", cwd=installed.parent.parent)
    assert re.fullmatch(r"inferfleet \d+\.\d+\.\d+\S*\n", out)


def test_the_wheel_ships_the_offline_model_catalog(installed: Path):
    """An air-gapped operator sizes a model named only by name from the installed package."""
    out = run(installed.parent / "inferfleet", "memory", "--model", "Qwen/Qwen3-8B", "--offline",
              "--gpu", "H100", "--tp", "1", "--max-model-len", "8192", "--output", "json",
              cwd=installed.parent.parent)  # fmt: skip
    assert json.loads(out)["kv_cache_tokens"] > 8192


def dockerfile_command() -> list[str]:
    ops = instructions(DOCKERFILE)
    entry = next(yaml.safe_load(a) for op, a in ops if op == "ENTRYPOINT")
    return [*entry, *next(yaml.safe_load(a) for op, a in ops if op == "CMD")]


def chart_command(values: dict[str, Any]) -> list[str] | None:
    """The operator container's command as the chart renders it; None without helm."""
    helm = shutil.which("helm") or shutil.which("helm", path=str(REPO / ".tools" / "bin"))
    if helm is None:
        return None
    out = run(helm, "template", "x", REPO / "charts" / "inferfleet", "--values", "-",
              input=yaml.safe_dump(values), cwd=REPO)  # fmt: skip
    (workload,) = [d for d in yaml.safe_load_all(out) if d and d["kind"] == "Deployment"]
    return ["kopf", *workload["spec"]["template"]["spec"]["containers"][0]["args"]]


# The chart's namespaced mode is not run here: Kopf then lists /api/v1/namespaces, which KMock
# 0.8 cannot parse (500); the chart tests cover its rendering.
COMMANDS = {
    "dockerfile-cmd": dockerfile_command,
    "chart-default": lambda: chart_command({"logLevel": "debug"}),
}


@pytest.mark.parametrize("source", sorted(COMMANDS))
def test_entry_command_starts_and_reconciles(source: str, installed: Path, tmp_path: Path):
    """The image's command (or the chart's) from the wheel: healthy, then it sizes a fleet."""
    command = COMMANDS[source]()
    if command is None:
        pytest.skip("helm not found; run `bash scripts/install-tools.sh`")
    work = installed.parent.parent.parent
    cluster = Cluster(tmp_path)
    port = free_port()
    # As the image runs it: no home directory, no bytecode writes, no repository on the path.
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig), "HOME": "/nonexistent",
           "PYTHONDONTWRITEBYTECODE": "1"}  # fmt: skip
    env.pop("PYTHONPATH", None)
    image_file = operator_file_in_image()
    assert command[:3] == ["kopf", "run", image_file]
    local = {image_file: str(work / image_file.lstrip("/"))}
    cmd = [str(installed), "-m", *(local.get(a, a) for a in command)]
    cmd = [a.replace("0.0.0.0:8080", f"127.0.0.1:{port}") for a in cmd]
    assert f"--liveness=http://127.0.0.1:{port}/healthz" in cmd
    log_path = tmp_path / "operator.log"
    log = log_path.open("w")
    process = subprocess.Popen(cmd, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:

        def healthy() -> bool:
            assert process.poll() is None, log_path.read_text()
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(healthy, "the operator's health endpoint", timeout_s=60)
        fleet, deployments = create_example_and_wait_for_deployments(
            cluster, REPO / "examples" / "fleet-code-8b.yaml", log_path.read_text
        )
        assert deployments[0]["metadata"]["namespace"] == fleet["metadata"]["namespace"]
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()
        cluster.close()
