"""The reactive SLO guard: when production misses the SLO, add replicas now, whatever the plan.

The predictive decision divides expected demand by a capacity per replica; when that capacity
is wrong, or the forecast is, the fleet misses the SLO until the estimate catches up. The guard
watches the symptoms directly: TTFT or ITL P99 above the SLO while the replicas are busy (at
least half of what the plan says one serves: a replica too slow per step at light load is not
fixed by more replicas, that is step 13's to say), requests queuing (one waiting per ready
replica, or a queue that grows between scrapes), KV cache past its threshold. After
`scrapes` such intervals in a row (a full queue that grew: at its first scrape, since requests
already wait and a cold start is still ahead) it asks for a floor sized from the observed
overload:

    ready x (max(demand, served) + waiting / drain) / served     with a queue, else
    ready x min(1.5, max(TTFT / SLO, ITL / SLO, KV / threshold))

at least one replica more than is ready, and at most `max_step_fraction` of the fleet more per
action. While it holds, and for the stabilization window after its last action, the decision
does not scale down; it also holds, without acting, while TTFT misses the SLO or requests queue
at light load (a fleet missing its TTFT SLO never shrinks; ITL over the SLO at light load is a
decode step too slow, which no count changes, so it does not hold). Unknown signals neither trip nor
clear it (missing metrics never scale down, and never scale up either). The verdict's reason
carries the numbers, so the Scaled Event says why.

Pure: time is a parameter; state round-trips through `to_dict` / `load`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from controllers.policy.scaling.capacity import (
    WAITING_PER_REPLICA,
    LoadSample,
    SLOLimits,
    overloaded,
)

DRAIN_S = 120.0  # a queue should be gone within this once the floor is ready
# Latency grows faster than load near capacity, so its ratio to the SLO overstates the
# overload: without a queue one action sizes for at most this factor.
LATENCY_FACTOR_CAP = 1.5


@dataclass(frozen=True)
class GuardConfig:
    scrapes: int = 2  # consecutive over-limit intervals before the guard acts
    max_step_fraction: float = 1.0  # one action adds at most this share of the fleet (min 1)

    def __post_init__(self) -> None:
        if self.scrapes < 1:
            raise ValueError(f"scaling guard: scrapes must be >= 1, got {self.scrapes}")
        if not self.max_step_fraction > 0:
            raise ValueError(
                f"scaling guard: the step fraction must be > 0, got {self.max_step_fraction}"
            )


@dataclass(frozen=True)
class GuardVerdict:
    floor: int | None  # replicas the guard asks for now; None when it does not act
    hold: bool  # no scale-down: the guard is on, or acted within the stabilization window
    reason: str


QUIET = GuardVerdict(None, False, "")


def overload_factor(sample: LoadSample, limits: SLOLimits, demand_rps: float | None) -> float:
    """How many times the ready replicas' capacity the pool needs now (>= 1).

    With a queue (or demand above what was served) the overload is what must be served over
    what was: the arrivals plus the queue drained within `DRAIN_S`. Latency over the SLO
    without a queue is a ratio of latencies, and KV cache past its threshold a ratio of usage.
    """
    s = sample
    served, waiting = s.served_rps, s.waiting or 0.0
    if served:
        demand = served if demand_rps is None or not math.isfinite(demand_rps) else demand_rps
        if waiting or demand > served:
            return max(1.0, (max(demand, served) + waiting / DRAIN_S) / served)
    elif waiting:
        return math.inf  # a queue and nothing served: as much as one step allows
    factors = [1.0]
    if s.ttft_p99_s is not None and limits.ttft_p99_s:
        factors.append(s.ttft_p99_s / limits.ttft_p99_s)
    if s.itl_p99_s is not None and limits.itl_p99_s:
        factors.append(s.itl_p99_s / limits.itl_p99_s)
    if s.kv_usage_ratio is not None:
        factors.append(s.kv_usage_ratio / limits.kv_usage_ratio)
    return min(LATENCY_FACTOR_CAP, max(factors))


class SLOGuard:
    """The guard's memory: how many intervals in a row were over, and when it last acted."""

    def __init__(
        self, limits: SLOLimits, config: GuardConfig, stabilization_s: float, interval_s: float
    ) -> None:
        self.limits = limits
        self.config = config
        self.stabilization_s = stabilization_s
        self.interval_s = interval_s
        self.streak = 0
        self.missing = False  # the last judged interval missed the SLO, busy or not
        self.last_waiting: float | None = None
        self.acted_at_s: float | None = None

    def observe(
        self,
        now_s: float,
        raw: LoadSample | None,
        current: int,
        demand_rps: float | None,
        capacity_rps: float | None = None,
    ) -> GuardVerdict:
        """One interval: `capacity_rps` is what the plan says a replica serves (latency over
        the SLO at light load is not a shortage, see `capacity.overloaded`)."""
        sample = (raw or LoadSample()).clean()
        over = overloaded(sample, self.limits, capacity_rps)
        w, last = sample.waiting, self.last_waiting
        if w is not None and last is not None and w > last > 0:
            over.append(f"queue grew {last:.0f} -> {w:.0f}")
        judged = any(
            v is not None
            for v in (sample.ttft_p99_s, sample.itl_p99_s, sample.kv_usage_ratio, sample.waiting)
        )
        if w is not None:
            self.last_waiting = w
        if over:
            self.streak += 1
        elif judged:
            self.streak = 0
        if judged:
            # ITL over the SLO at light load is one decode step too slow, whatever the count:
            # holding on it would only ratchet the fleet up on every noisy reading.
            self.missing = bool(over or overloaded(replace(sample, itl_p99_s=None), self.limits))
        within = self.acted_at_s is not None and now_s - self.acted_at_s < self.stabilization_s
        # A full queue that grew is no noisy reading: requests are being turned away now.
        queue_grew = (
            w is not None
            and bool(sample.ready)
            and w >= WAITING_PER_REPLICA * (sample.ready or 0)
            and w > (last or 0.0)
        )
        if not over or (self.streak < self.config.scrapes and not queue_grew):
            return GuardVerdict(None, self.streak > 0 or within or self.missing, "")
        if w is not None and last is not None and w > last and sample.served_rps is not None:
            # What vLLM completes is capped by the replicas: what arrived also filled the queue.
            arrived = sample.served_rps + (w - last) / self.interval_s
            demand_rps = arrived if demand_rps is None else max(demand_rps, arrived)
        factor = overload_factor(sample, self.limits, demand_rps)
        ready = sample.ready if sample.ready is not None else current
        step = max(1, math.ceil(current * self.config.max_step_fraction))
        wanted = math.ceil(ready * factor - 1e-9) if math.isfinite(factor) else current + step
        floor = min(current + step, max(ready + 1, wanted))
        self.acted_at_s = now_s
        factor_text = f"x{factor:.3g}" if math.isfinite(factor) else "unbounded"
        reason = (
            f"SLO guard: {', '.join(over)} for {self.streak} scrapes; overload {factor_text} "
            f"on {ready} ready needs {floor} (step <= {step})"
        )
        return GuardVerdict(floor, True, reason)

    def to_dict(self) -> dict[str, Any]:
        return {
            "streak": self.streak,
            "missing": self.missing,
            "waiting": self.last_waiting,
            "actedAt": self.acted_at_s,
        }

    def load(self, data: dict[str, Any]) -> None:
        self.streak = int(data["streak"])
        self.missing = bool(data.get("missing", False))  # absent in state saved before it
        self.last_waiting = None if data.get("waiting") is None else float(data["waiting"])
        self.acted_at_s = None if data.get("actedAt") is None else float(data["actedAt"])
