"""Shared test settings: paths to the repository's shared data, hypothesis profiles."""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, settings

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
CALIBRATION = SHARED / "data" / "calibration"
TRACES = SHARED / "data" / "traces"

settings.register_profile("default", deadline=None, max_examples=60)
# CI derandomizes: a clean clone has no example database, so a run's verdict must not depend
# on its luck; local runs keep exploring new inputs (and have found real bugs that way).
settings.register_profile(
    "ci",
    deadline=None,
    max_examples=100,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("ci" if os.environ.get("CI") else "default")


def pytest_terminal_summary(terminalreporter) -> None:
    """The fuzz tally, when a fuzz test ran (the figures `make fuzz` reports)."""
    from tests.fuzz import summary

    for line in summary():
        terminalreporter.write_line(line)
