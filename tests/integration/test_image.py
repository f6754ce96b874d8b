"""The Dockerfile, read: what reviewers ask of it (pinned slim base, non-root, Kopf entry on the
file it copies, the same path the chart runs, layers that keep the dependencies cached).

The image it builds is run for real by the image tier (`tests/image`, `make image`), which
`make test` runs too.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

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
