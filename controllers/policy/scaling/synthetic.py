"""Adversarial per-minute traces, to watch the forecast bounds work (`simulate --synthetic`).

Every kind rides on the same smooth daily curve (night at a fifth of the peak) with Poisson
minutes, and adds what has broken autoscalers before:

* `sinusoid`: the curve alone, the traffic a seasonal forecaster is built for;
* `spike`: a few minutes a day at several times the curve, unannounced;
* `step`: the level jumps up or down for hours at random times (a launch, a failover);
* `zeros`: short stretches of zero requests at random times (a scrape that reports nothing);
* `outage`: one 50-minute stretch of zeros ending abruptly at full load on the first day. A
  seasonal profile that learns it as demand divides by it one day later (the runaway of
  issue 16: tens of thousands of replicas for a peak need of about thirty).

Pure and seedable: the same arguments give the same trace.
"""

from __future__ import annotations

import numpy as np

from controllers.policy.scaling.replay import Trace

KINDS = ("spike", "step", "zeros", "sinusoid", "outage")
MINUTES_PER_DAY = 1440
OUTAGE_MINUTES = 50
OUTAGE_START_MINUTE = 20 * 60  # 20:00 on day 0, at about the day's mean load
MAX_DAYS = 366.0
MAX_PEAK_RPS = 1e6


def daily_curve(minutes: np.ndarray) -> np.ndarray:
    """Share of the peak per minute: 0.2 at night, 1.0 in the afternoon."""
    phase = (minutes % MINUTES_PER_DAY) / MINUTES_PER_DAY - 0.1
    return 0.2 + 0.8 * (0.5 - 0.5 * np.cos(2 * np.pi * phase)) ** 2


def synthetic_trace(kind: str, days: float, peak_rps: float, seed: int = 0) -> Trace:
    """One per-minute trace of `kind` over `days`, peaking near `peak_rps` (before spikes)."""
    if kind not in KINDS:
        raise ValueError(
            f"synthetic trace kind {kind!r} is unknown; choose one of {', '.join(KINDS)}"
        )
    if not (0 < days <= MAX_DAYS):
        raise ValueError(
            f"synthetic trace days must be above 0 and at most {MAX_DAYS:g}, got {days}"
        )
    if not (0 < peak_rps <= MAX_PEAK_RPS):
        raise ValueError(
            f"synthetic trace peak must be above 0 and at most {MAX_PEAK_RPS:g} req/s, "
            f"got {peak_rps}"
        )
    rng = np.random.default_rng(seed)
    n = max(1, round(days * MINUTES_PER_DAY))
    minutes = np.arange(n)
    mean = peak_rps * 60 * daily_curve(minutes)
    per_day = max(1, round(n / MINUTES_PER_DAY))
    if kind == "spike":
        for start in rng.integers(0, n, size=3 * per_day):
            mean[start : start + rng.integers(1, 4)] *= rng.uniform(3, 8)
    elif kind == "step":
        for start in rng.integers(0, n, size=2 * per_day):
            mean[start : start + rng.integers(60, 360)] *= rng.choice([0.3, 2.5])
    counts = rng.poisson(mean)
    if kind == "zeros":
        for start in rng.integers(0, n, size=4 * per_day):
            counts[start : start + rng.integers(5, 30)] = 0
    elif kind == "outage":
        counts[OUTAGE_START_MINUTE : OUTAGE_START_MINUTE + OUTAGE_MINUTES] = 0
    return Trace(60.0, 0.0, tuple(int(c) for c in counts))
