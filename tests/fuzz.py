"""Shared settings of the fuzz tests: how many examples, and a tally of what each one did.

CI runs FUZZ_EXAMPLES (500) per fuzz test; `make fuzz` sets INFERFLEET_FUZZ_EXAMPLES (10,000)
and prints the tally (tried / crashed / clear error / accepted) at the end of the run.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict

from hypothesis import HealthCheck, settings

FUZZ_EXAMPLES = int(os.environ.get("INFERFLEET_FUZZ_EXAMPLES", "500"))
TALLY: defaultdict[str, Counter[str]] = defaultdict(Counter)

fuzz_settings = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    database=None,  # a fresh search each run, not the last run's examples again
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def tally(target: str, outcome: str) -> None:
    TALLY[target][outcome] += 1


def summary() -> list[str]:
    """One line per target: tried, and each outcome's count."""
    lines = []
    for target, outcomes in sorted(TALLY.items()):
        parts = ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))
        lines.append(f"fuzz {target}: tried {sum(outcomes.values())}: {parts}")
    return lines
