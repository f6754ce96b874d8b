"""The autoscaler's scorecard: is it any good, per pool, over the last hour, day and week?

Fed one `Interval` per policy step (what the pool held, served and was forecast), it keeps, per
rolling window, the sums that answer:

* **SLO met**: the share of judged intervals without an SLO miss (TTFT/ITL P99 over the
  target while busy, a queue, KV cache past its threshold: `capacity.overloaded`);
* **efficiency**: replica-hours held against a lower bound, demand / measured capacity per
  replica (fractional replicas, no spare, no cold start: no schedule can do better);
* **forecast error**: MAPE of the forecast made one horizon (a cold start plus the lead) before,
  beside the error of the reactive estimate (the rate then, held) at the same horizon, so a
  forecaster that does worse than doing nothing shows;
* **scale events and flaps per day**: a flap is a change against the direction of the one
  before within `flap_window_s` (the stabilization window);
* **time Pending**: interval time during which the Pending detection found replicas waiting
  for a node past `scaling.pendingDeadline` (`controllers.policy.pending`); where no detection
  ran (`inferfleet simulate`), time during which fewer replicas were ready than asked for,
  for longer than one cold start.

Each window is a ring of `BUCKETS` buckets of window / `BUCKETS` each plus the current one, so
the state is small (it lives in status.history) and a window spans between its length and one
bucket more. Unknown figures are left out
of what they would judge, never counted as met or as zero.

Pure: time is a parameter; state round-trips through `to_dict` / `load`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from controllers.policy.scaling.capacity import WAITING_PER_REPLICA, LoadSample, SLOLimits

WINDOWS: tuple[tuple[str, float], ...] = (("1h", 3600.0), ("24h", 86_400.0), ("7d", 604_800.0))
BUCKETS = 24
DAY_S = 86_400.0
# Demand below this many req/s makes a percentage error meaningless (an idle night).
MAPE_FLOOR_RPS = 1e-3
# The sums each bucket keeps, in this order.
SUMS = (
    "covered_s",  # interval time seen
    "judged",  # intervals whose SLO verdict is known
    "met",
    "replica_s",  # replica-seconds held where the lower bound is known
    "bound_s",  # lower-bound replica-seconds over the same intervals
    "ape",  # sum of forecast absolute percentage errors (as ratios)
    "reactive_ape",
    "forecasts",  # forecasts judged
    "events",
    "flaps",
    "pending_s",
)


@dataclass(frozen=True)
class Interval:
    """One policy interval of a pool; None = unknown."""

    end_s: float
    duration_s: float
    replicas: int  # asked for over the interval (they hold GPUs, ready or not)
    ready: int | None = None
    slo_met: bool | None = None
    demand_rps: float | None = None
    capacity_rps: float | None = None  # per replica, what the decision divided by
    forecast_rps: float | None = None  # the forecast, made now, for now + horizon
    pending: int | None = None  # replicas the Pending detection found; None: it did not run


@dataclass(frozen=True)
class WindowScore:
    """One window's verdict; None where nothing was judged."""

    window: str
    covered_s: float
    slo_met_share: float | None
    replica_hours: float
    bound_replica_hours: float
    forecast_mape: float | None
    reactive_mape: float | None
    scale_events_per_day: float | None
    flaps_per_day: float | None
    pending_s: float

    @property
    def over_bound(self) -> float | None:
        """Replica-hours over the lower bound (>= 1 unless the fleet served less than asked)."""
        return self.replica_hours / self.bound_replica_hours if self.bound_replica_hours else None

    @property
    def forecast_worse(self) -> bool:
        """The forecaster erred more than the reactive estimate would have."""
        f, r = self.forecast_mape, self.reactive_mape
        return f is not None and r is not None and f > r


def slo_met(sample: LoadSample | None, limits: SLOLimits) -> bool | None:
    """Did the pool meet its SLO over the interval: TTFT and ITL P99 within the targets and no
    queue (one request waiting per ready replica)? None when no signal says."""
    s = (sample or LoadSample()).clean()
    verdicts = []
    if s.ttft_p99_s is not None and limits.ttft_p99_s:
        verdicts.append(s.ttft_p99_s <= limits.ttft_p99_s)
    if s.itl_p99_s is not None and limits.itl_p99_s:
        verdicts.append(s.itl_p99_s <= limits.itl_p99_s)
    if s.waiting is not None and (s.ready or s.waiting == 0):
        verdicts.append(s.waiting < WAITING_PER_REPLICA * max(s.ready or 0, 1))
    return all(verdicts) if verdicts else None


MAX_NEED_REPLICAS = 1e6  # the lower bound's need is clipped here (a near-zero capacity)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) and value >= 0 else None


class _Ring:
    """`BUCKETS` buckets of `bucket_s`, keyed by bucket index since the epoch."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self.bucket_s = window_s / BUCKETS
        self.buckets: dict[int, list[float]] = {}

    def add(self, at_s: float, sums: dict[str, float]) -> None:
        index = math.floor(at_s / self.bucket_s)
        bucket = self.buckets.setdefault(index, [0.0] * len(SUMS))
        for i, name in enumerate(SUMS):
            bucket[i] += sums.get(name, 0.0)
        oldest = index - BUCKETS
        for stale in [k for k in self.buckets if k < oldest]:
            del self.buckets[stale]

    def totals(self, now_s: float) -> dict[str, float]:
        oldest = math.floor(now_s / self.bucket_s) - BUCKETS
        out = dict.fromkeys(SUMS, 0.0)
        for index, bucket in self.buckets.items():
            if index >= oldest:
                for name, value in zip(SUMS, bucket, strict=True):
                    out[name] += value
        return out


class Scorecard:
    """One pool's scorecard; feed it with `observe` once per policy step."""

    def __init__(self, horizon_s: float, cold_start_s: float, flap_window_s: float) -> None:
        self.horizon_s = horizon_s
        self.cold_start_s = cold_start_s
        self.flap_window_s = flap_window_s
        self.rings = {name: _Ring(window_s) for name, window_s in WINDOWS}
        self.due: list[tuple[float, float | None, float | None]] = []  # (at, forecast, reactive)
        self.last_replicas: int | None = None
        self.last_change: tuple[float, int] | None = None  # (time, +1 up / -1 down)
        self.short_since_s: float | None = None  # fewer ready than asked since then

    def observe(self, interval: Interval) -> None:
        iv = interval
        duration = max(0.0, iv.duration_s)
        sums: dict[str, float] = {"covered_s": duration}
        if iv.slo_met is not None:
            sums["judged"] = 1.0
            sums["met"] = 1.0 if iv.slo_met else 0.0
        demand, capacity = _finite(iv.demand_rps), _finite(iv.capacity_rps)
        if demand is not None and capacity:
            sums["replica_s"] = iv.replicas * duration
            # Clipped, it is still a lower bound, and a near-zero capacity cannot make it inf.
            sums["bound_s"] = min(demand / capacity, MAX_NEED_REPLICAS) * duration
        self._judge_forecasts(iv.end_s, duration, demand, sums)
        if demand is not None:
            self.due.append((iv.end_s + self.horizon_s, _finite(iv.forecast_rps), demand))
        self._count_change(iv, sums)
        self._count_pending(iv, duration, sums)
        for ring in self.rings.values():
            ring.add(iv.end_s, sums)

    def _judge_forecasts(
        self, now_s: float, duration: float, demand: float | None, sums: dict[str, float]
    ) -> None:
        """Forecasts that fell due within this interval meet the demand that came."""
        kept = []
        judged = demand is not None and demand > MAPE_FLOOR_RPS
        for at_s, forecast, reactive in self.due:
            if at_s > now_s:
                kept.append((at_s, forecast, reactive))
                continue
            if not judged or at_s <= now_s - duration or forecast is None or reactive is None:
                continue  # idle, fell due while the operator was away, or never forecast
            assert demand is not None
            sums["ape"] = sums.get("ape", 0.0) + abs(forecast - demand) / demand
            sums["reactive_ape"] = sums.get("reactive_ape", 0.0) + abs(reactive - demand) / demand
            sums["forecasts"] = sums.get("forecasts", 0.0) + 1.0
        self.due = kept

    def _count_change(self, iv: Interval, sums: dict[str, float]) -> None:
        last, self.last_replicas = self.last_replicas, iv.replicas
        if last is None or iv.replicas == last:
            return
        direction = 1 if iv.replicas > last else -1
        sums["events"] = 1.0
        before = self.last_change
        if (
            before is not None
            and before[1] != direction
            and iv.end_s - before[0] <= (self.flap_window_s)
        ):
            sums["flaps"] = 1.0
        self.last_change = (iv.end_s, direction)

    def _count_pending(self, iv: Interval, duration: float, sums: dict[str, float]) -> None:
        if iv.pending is not None:
            self.short_since_s = None
            if iv.pending > 0:
                sums["pending_s"] = duration
            return
        if iv.ready is None:
            return
        if iv.ready >= iv.replicas:
            self.short_since_s = None
            return
        start_s = iv.end_s - duration
        if self.short_since_s is None:
            self.short_since_s = start_s
        pending_from = self.short_since_s + self.cold_start_s
        sums["pending_s"] = max(0.0, min(duration, iv.end_s - max(start_s, pending_from)))

    def scores(self, now_s: float) -> list[WindowScore]:
        out = []
        for name, ring in self.rings.items():
            t = ring.totals(now_s)
            days = t["covered_s"] / DAY_S
            out.append(
                WindowScore(
                    window=name,
                    covered_s=t["covered_s"],
                    slo_met_share=t["met"] / t["judged"] if t["judged"] else None,
                    replica_hours=t["replica_s"] / 3600,
                    bound_replica_hours=t["bound_s"] / 3600,
                    forecast_mape=t["ape"] / t["forecasts"] if t["forecasts"] else None,
                    reactive_mape=t["reactive_ape"] / t["forecasts"] if t["forecasts"] else None,
                    scale_events_per_day=t["events"] / days if days else None,
                    flaps_per_day=t["flaps"] / days if days else None,
                    pending_s=t["pending_s"],
                )
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "rings": {
                name: [[index, *bucket] for index, bucket in sorted(ring.buckets.items())]
                for name, ring in self.rings.items()
            },
            "due": [list(d) for d in self.due],
            "lastReplicas": self.last_replicas,
            "lastChange": None if self.last_change is None else list(self.last_change),
            "shortSince": self.short_since_s,
        }

    def load(self, data: dict[str, Any]) -> None:
        """Restore `to_dict` output (status.history's `ScorecardMemory`, validated there); a
        ValueError (or KeyError/TypeError) says it is unusable."""
        for name, rows in data["rings"].items():
            ring = self.rings[name]
            buckets = {}
            for row in rows:
                values = [float(v) for v in row[1:]]
                if len(values) != len(SUMS) or not all(math.isfinite(v) for v in values):
                    raise ValueError(f"scorecard bucket of {name} is malformed")
                buckets[int(row[0])] = values
            ring.buckets = buckets
        self.due = [
            (float(at), None if f is None else float(f), None if r is None else float(r))
            for at, f, r in data.get("due", ())
        ]
        # Unset figures may be left out (status.history is written without nulls).
        last = data.get("lastReplicas")
        self.last_replicas = None if last is None else int(last)
        change = data.get("lastChange")
        self.last_change = None if change is None else (float(change[0]), int(change[1]))
        since = data.get("shortSince")
        self.short_since_s = None if since is None else float(since)
