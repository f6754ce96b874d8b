"""Benchmark (not a timed test): one full plan of a 3-pool fleet, and the CLI end to end.

Run with `make bench`; in `make test` each body runs once as a smoke test.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from controllers.api.v1alpha1 import InferenceFleet
from controllers.policy.planning import plan_spec
from sizing.curve import find_capacity
from sizing.plan import memoized
from tests.conftest import REPO

pytestmark = pytest.mark.benchmark


def three_pool_fleet() -> InferenceFleet:
    doc = yaml.safe_load((REPO / "examples/fleet-chat-70b.yaml").read_text())
    doc["spec"]["pools"].append({"name": "b200", "gpu": "B200", "maxGPUs": 16, "storage": "nvme"})
    return InferenceFleet.model_validate(doc)


def test_bench_plan_three_pools(benchmark):
    fleet = three_pool_fleet()
    config = fleet.spec.model.hf_config.inline
    plan = benchmark(plan_spec, fleet.spec, config)
    assert len(plan.options) == 3


def test_bench_plan_cli_end_to_end(benchmark):
    cmd = [sys.executable, "-m", "inferfleet", "plan", str(REPO / "examples/fleet-chat-70b.yaml")]
    done = benchmark(subprocess.run, cmd, capture_output=True, check=False)
    assert done.returncode == 0, done.stderr


def test_bench_replan_with_memoized_curve(benchmark):
    """What the operator pays to re-plan a fleet whose model, GPUs and settings it has seen."""
    fleet = three_pool_fleet()
    config = fleet.spec.model.hf_config.inline
    capacity_fn = memoized(find_capacity)
    plan_spec(fleet.spec, config, capacity_fn)
    plan = benchmark(plan_spec, fleet.spec, config, capacity_fn)
    assert len(plan.options) == 3
