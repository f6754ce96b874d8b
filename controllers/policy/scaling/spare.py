"""The warm spare's percentile, steered by the policy's own misses toward an SLO-met target.

`minWarmReplicas: auto` keeps spare replicas for the load growth seen over one cold start at a
high percentile of past ramps. Which percentile is right depends on the traffic: smooth daily
traffic meets 99.8 % of intervals with far less spare than bursty traffic does. A fixed
percentile is therefore either wasteful on the first or short on the second.

So every interval the policy checks whether the replicas that were ready in it (its own
earlier answers under the cold-start model: a replica asked for serves one cold start later,
a removed one leaves at once) covered the load, and moves the percentile the way adaptive
conformal inference does (Gibbs and Candès, 2021): `q += GAIN x (missed - (1 - target))`, so a
miss lifts it by almost GAIN and a covered interval lowers it by GAIN x (1 - target). While
the percentile stays inside its bounds, the long-run share of missed intervals is within
`(HIGH - LOW + GAIN) / (GAIN x intervals)` of `1 - target`, whatever the traffic.

Pure: no clock, no I/O; state round-trips through `to_dict` / `load`.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

START = 0.99  # a careful start: no track record yet
LOW = 0.5  # never below the median ramp
HIGH = 0.998  # the very top of the ramp histogram is one freak burst, not a plan
GAIN = 0.01  # one miss at a 99.8 % target lifts the percentile by about 0.01
SHARE_HALF_LIFE_N = 1440  # the SLO-met share shown in reasons: about a day of minutes


class SparePercentile:
    """The ramp percentile for the warm spare, and the recent SLO-met share behind it."""

    def __init__(self, target_met: float, cold_start_n: int) -> None:
        if not 0.5 < target_met < 1.0:
            raise ValueError(f"SLO-met target must be in (0.5, 1), got {target_met}")
        self.target_met = target_met
        self.quantile = START
        self.asked: deque[int] = deque(maxlen=cold_start_n + 1)
        self.decay = 0.5 ** (1.0 / SHARE_HALF_LIFE_N)
        self.scored = 0.0
        self.missed = 0.0

    def ready(self) -> int | None:
        """Replicas that served the interval just ended; None before the first answer."""
        return min(self.asked) if self.asked else None

    def observe(self, rate_rps: float | None, rps_per_replica: float) -> None:
        """Score the interval that just ended; unknown load is not scored."""
        ready = self.ready()
        if ready is None or rate_rps is None or not math.isfinite(rate_rps):
            return
        missed = rate_rps > ready * rps_per_replica * (1 + 1e-9)
        step = GAIN * (float(missed) - (1.0 - self.target_met))
        self.quantile = min(HIGH, max(LOW, self.quantile + step))
        self.scored = self.scored * self.decay + 1.0
        self.missed = self.missed * self.decay + float(missed)

    def record(self, desired_replicas: int) -> None:
        """The answer just given: it is part of what serves the next cold start's intervals."""
        self.asked.append(desired_replicas)

    def met_share(self) -> float | None:
        """Share of recent intervals (decaying, half-life a day) the ready replicas covered."""
        return None if self.scored <= 0 else 1.0 - self.missed / self.scored

    def describe(self) -> str:
        """E.g. 'P98.7 of ramps, steered to 99.8 % SLO-met (recent 99.91 %)'."""
        share = self.met_share()
        recent = "" if share is None else f" (recent {100 * share:.2f} %)"
        return (
            f"P{100 * self.quantile:.3g} of ramps, steered to {100 * self.target_met:.3g} % "
            f"SLO-met{recent}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "q": self.quantile,
            "asked": list(self.asked),
            "scored": self.scored,
            "missed": self.missed,
        }

    def load(self, data: dict[str, Any]) -> None:
        quantile = float(data["q"])
        if not LOW <= quantile <= HIGH:
            raise ValueError(f"spare percentile {quantile} is outside [{LOW}, {HIGH}]")
        self.quantile = quantile
        self.asked.clear()
        self.asked.extend(int(r) for r in data["asked"])
        self.scored, self.missed = float(data["scored"]), float(data["missed"])
