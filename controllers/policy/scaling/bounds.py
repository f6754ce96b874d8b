"""Bounds on what a forecast may ask for: what history makes plausible, and how fast.

Whatever a forecaster answers (a bug, a corrupt state, a learned outage), the decision sees
at most `multiple x the highest demand in the learned window + the highest rise in demand
over one cold start`, and a forecast that is NaN, infinite or negative is replaced by the
reactive estimate (the load now). The fleet a forecast asks for also grows per interval by
at most `multiple x` that rise beyond the reactive answer, so one bad input cannot multiply
the fleet. The load itself, the SLO guard, schedules and `minReplicas` are not bounded here:
they are measurements and the user's own floors.

`DemandEnvelope` keeps one (peak, rise) pair per day over the learned window (three weeks,
the weekly profile's depth): 21 pairs of state, saved in `status.history`. Pure.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

from controllers.policy.scaling.forecast import DAY_S, Forecast, LastValue

WINDOW_DAYS = 21  # the weekly profile's three cycles


@dataclass(frozen=True)
class Envelope:
    """The highest demand and the highest rise over one cold start in the learned window."""

    peak_rps: float
    rise_rps: float

    def cap_rps(self, multiple: float) -> float:
        return multiple * self.peak_rps + self.rise_rps


class DemandEnvelope:
    """Per-day highest rate and highest rise over one cold start, over `WINDOW_DAYS` days.

    Fed the rates the forecaster learns (held-back zeros are not fed: the return from an
    outage is not growth).
    """

    def __init__(self, interval_s: float, cold_start_s: float) -> None:
        self.window_n = max(1, math.ceil(cold_start_s / interval_s - 1e-9))
        self.window: deque[float] = deque(maxlen=self.window_n)
        self.days: dict[int, tuple[float, float]] = {}  # day -> (peak, rise)

    def observe(self, t_s: float, rate_rps: float | None) -> None:
        if rate_rps is None or not math.isfinite(rate_rps) or rate_rps < 0:
            return
        rise = max(0.0, rate_rps - min(self.window)) if self.window else 0.0
        self.window.append(rate_rps)
        day = int(t_s // DAY_S)
        peak, top_rise = self.days.get(day, (0.0, 0.0))
        self.days[day] = (max(peak, rate_rps), max(top_rise, rise))
        for old in [d for d in self.days if d <= day - WINDOW_DAYS]:
            del self.days[old]

    def envelope(self) -> Envelope:
        return Envelope(
            max((p for p, _ in self.days.values()), default=0.0),
            max((r for _, r in self.days.values()), default=0.0),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "window": list(self.window),
            "days": [[d, p, r] for d, (p, r) in sorted(self.days.items())],
        }

    def load(self, data: dict[str, Any]) -> None:
        self.window = deque((float(r) for r in data["window"]), maxlen=self.window_n)
        self.days = {int(d): (float(p), float(r)) for d, p, r in data["days"]}


def bound_forecast(
    forecast: Forecast, reactive_rps: float | None, envelope: Envelope, multiple: float
) -> tuple[Forecast, str]:
    """The forecast within what history makes plausible, and a note when it had to be changed.

    Not finite or negative: the reactive estimate (the load now, 0 when unknown) as a
    last-value answer, so the decision treats it as no model. Above the envelope's cap: the cap.
    """
    rate = reactive_rps if reactive_rps is not None and math.isfinite(reactive_rps) else 0.0
    rate = max(rate, 0.0)
    values = (forecast.point_rps, forecast.upper_rps)
    if not all(math.isfinite(v) and v >= 0 for v in values):
        note = f"forecast {forecast.point_rps:.3g} RPS ({forecast.method}) unusable: load instead"
        return Forecast(rate, rate, forecast.horizon_s, LastValue.name), note
    cap = envelope.cap_rps(multiple)
    if forecast.upper_rps <= cap:
        return forecast, ""
    point = min(forecast.point_rps, cap)
    note = ""
    if forecast.point_rps > cap:
        note = (
            f"forecast {forecast.point_rps:.3g} RPS capped at {cap:.3g} ({multiple:g} x peak "
            f"{envelope.peak_rps:.3g} + rise {envelope.rise_rps:.3g} per cold start)"
        )
    return Forecast(point, cap, forecast.horizon_s, forecast.method), note


def step_up_limit(
    current: int, reactive_replicas: int, rise_rps: float, rps_per_replica: float, multiple: float
) -> int:
    """Most replicas a forecast may ask for this interval: the reactive answer (or the fleet,
    if larger) plus `multiple x` the highest rise over one cold start, at least one replica."""
    step = max(1, math.ceil(multiple * rise_rps / rps_per_replica - 1e-9))
    return max(current, reactive_replicas) + step
