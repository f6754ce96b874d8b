"""Injected failures: what an unhealthy replica does, switchable by flag or at run time.

Autoscalers and the load generator must cope with 5xx answers, slow starts and streams cut
mid-response; these are the faults seen most often in vLLM fleets (OOM restarts, overloaded
pods, node loss). Decisions come from a seeded generator so a test run is reproducible.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, fields


class FaultError(ValueError):
    """A fault setting that cannot be applied; the message names the field and the value."""


@dataclass(frozen=True)
class Faults:
    error_500_rate: float = 0.0  # fraction of requests answered 500 before any token
    error_503_rate: float = 0.0  # fraction answered 503 (overloaded), before any token
    drop_stream_rate: float = 0.0  # fraction of streams cut after their first token
    slow_s: float = 0.0  # extra wall seconds before each response starts

    def __post_init__(self) -> None:
        for name in ("error_500_rate", "error_503_rate", "drop_stream_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise FaultError(f"{name} must be a fraction in [0, 1], got {value}")
        if self.error_500_rate + self.error_503_rate > 1.0:
            raise FaultError(
                f"error_500_rate + error_503_rate must be <= 1, got "
                f"{self.error_500_rate} + {self.error_503_rate}"
            )
        if self.slow_s < 0:
            raise FaultError(f"slow_s must be >= 0 seconds, got {self.slow_s}")

    @classmethod
    def from_mapping(cls, data: object) -> Faults:
        """Parse the admin endpoint's JSON body; unknown keys are an error, not ignored."""
        if not isinstance(data, dict):
            raise FaultError(f"faults must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise FaultError(f"unknown fault field(s) {unknown}; expected some of {sorted(known)}")
        values: dict[str, float] = {}
        for key, value in data.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise FaultError(f"{key} must be a number, got {value!r}")
            values[key] = float(value)
        return cls(**values)

    def to_mapping(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class Verdict:
    """What to do to one request."""

    status: int | None  # answer with this HTTP error instead of serving
    drop_stream: bool  # serve, but cut the stream after the first token
    delay_s: float


class FaultInjector:
    """Holds the current faults (replaceable at run time) and draws a verdict per request."""

    def __init__(self, faults: Faults, seed: int) -> None:
        self.faults = faults
        self._rng = random.Random(seed)

    def verdict(self) -> Verdict:
        f = self.faults
        draw = self._rng.random()
        status = None
        if draw < f.error_500_rate:
            status = 500
        elif draw < f.error_500_rate + f.error_503_rate:
            status = 503
        drop = status is None and self._rng.random() < f.drop_stream_rate
        return Verdict(status=status, drop_stream=drop, delay_s=f.slow_s)
