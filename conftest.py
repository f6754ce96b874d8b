"""Repository-wide pytest hooks."""

import os
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]  # tests/unit/test_ci_tiers.py runs pytest on made-up tests

LAYERS = ("unit", "integration", "real_vllm", "image", "e2e")
# Tiers whose set-up `make` does (make vllm, make image): on CI a skip there means the set-up
# failed, so it is reported as the failure it is instead of passing silently.
REQUIRED_ON_CI = ("real_vllm", "image")


def pytest_collection_modifyitems(config, items):
    """Mark each test by the folder it lives in, so `-m unit` / `-m real_vllm` select layers."""
    for item in items:
        path = Path(str(item.fspath))
        for layer in LAYERS:
            if layer in path.parts:
                item.add_marker(getattr(pytest.mark, layer))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not os.environ.get("CI") or not report.skipped or hasattr(report, "wasxfail"):
        return
    tier = next((t for t in REQUIRED_ON_CI if item.get_closest_marker(t)), None)
    if tier is not None:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"CI is set, so the {tier} tier may not skip: {reason}"
