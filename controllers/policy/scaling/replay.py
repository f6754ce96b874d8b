"""Cold-start replay: what a replica schedule would have served on a recorded trace.

Time runs in intervals. The policy learns interval j at its end and its answer holds for
interval j + 1 on. A replica asked for at the start of interval j serves from interval
j + L on (L = cold start in intervals, rounded up); scale-downs act at once, newest first, so
the ready count in interval k is the least count asked for over intervals k - L .. k. The
fleet asked for after interval 0 is taken as already warm (the service ran before the trace
began), and interval 0 itself is not scored, for every policy alike.

The hindsight oracle is the cheapest schedule that meets every interval given the cold start:
asked-for(j) = the most any of intervals j .. j + L needs.

Pure: the caller reads the trace and passes the counts in.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from controllers.policy.scaling.policy import (
    Metrics,
    ScalingConfig,
    ScalingDecision,
    ScalingPolicy,
    cold_start_intervals,
    replicas_for,
)
from controllers.policy.scaling.scorecard import Interval, Scorecard


@dataclass(frozen=True)
class Trace:
    """Request counts per interval; None marks an interval with no data (a collection gap)."""

    interval_s: float
    start_s: float  # policy time (seconds from a local midnight) of the start of interval 0
    requests: tuple[int | None, ...]
    tokens: tuple[int | None, ...] | None = None  # prompt + output tokens per interval

    def rps(self, j: int) -> float | None:
        count = self.requests[j]
        return None if count is None else count / self.interval_s


@dataclass(frozen=True)
class ReplayScore:
    policy: str
    scored_intervals: int
    slo_met_intervals: int
    replica_hours: float
    gpu_hours: float
    cost_usd: float

    @property
    def slo_met_share(self) -> float:
        return self.slo_met_intervals / self.scored_intervals if self.scored_intervals else 1.0


def ready_replicas(asked: Sequence[int], lag_n: int) -> list[int]:
    """Replicas serving in each interval: the least asked for over the last lag_n + 1."""
    return [min(asked[max(0, k - lag_n) : k + 1]) for k in range(len(asked))]


def needed_replicas(trace: Trace, rps_per_replica: float) -> list[int]:
    """Replicas each interval needs; 0 for gaps and for interval 0 (neither is scored)."""
    return [0] + [
        0 if (rate := trace.rps(k)) is None else replicas_for(rate, rps_per_replica)
        for k in range(1, len(trace.requests))
    ]


def oracle_replicas(need: Sequence[int], lag_n: int, min_replicas: int) -> list[int]:
    return [max(min_replicas, *need[j : j + lag_n + 1]) for j in range(len(need))]


def replay_policy(
    trace: Trace,
    policy: ScalingPolicy,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[int], list[ScalingDecision]]:
    """Feed the trace to the policy one interval at a time, as the operator would."""
    decisions: list[ScalingDecision] = []
    asked: list[int] = []
    current = policy.config.min_replicas
    tokens = trace.tokens
    n = len(trace.requests)
    for j in range(n):
        rate = trace.rps(j)
        tok = tokens[j] if tokens is not None else None
        tok_per_s = None if tok is None or rate is None else tok / trace.interval_s
        metrics = Metrics(
            rps=rate, tok_per_s=tok_per_s, age_s=0.0 if rate is not None else math.inf
        )
        end_s = trace.start_s + (j + 1) * trace.interval_s
        decision = policy.step(end_s, metrics, current)
        current = decision.desired_replicas
        decisions.append(decision)
        if j == 0:
            asked.append(current)  # the warm fleet the trace starts with
        if j + 1 < n:
            asked.append(current)
        if progress is not None and (j % 1440 == 0 or j == n - 1):
            progress(j + 1, n)
    return asked, decisions


def score(
    name: str,
    trace: Trace,
    asked: Sequence[int],
    config: ScalingConfig,
    cost_per_gpu_hour_usd: float = 0.0,
) -> ReplayScore:
    lag_n = cold_start_intervals(config.cold_start_s, trace.interval_s)
    ready = ready_replicas(asked, lag_n)
    scored = met = 0
    for k in range(1, len(trace.requests)):
        rate = trace.rps(k)
        if rate is None:
            continue
        scored += 1
        if rate <= ready[k] * config.usable_rps_per_replica * (1 + 1e-9):
            met += 1
    replica_hours = sum(asked[1:]) * trace.interval_s / 3600
    gpu_hours = replica_hours * config.gpus_per_replica
    return ReplayScore(
        name, scored, met, replica_hours, gpu_hours, gpu_hours * cost_per_gpu_hour_usd
    )


@dataclass(frozen=True)
class HighestAsk:
    """The most a policy asked for relative to the highest need seen so far (the bounds' test)."""

    ratio: float
    interval: int
    replicas: int
    peak_need: int


def highest_ask(trace: Trace, desired: Sequence[int], rps_per_replica: float) -> HighestAsk:
    """Replicas asked for after each interval over the peak need up to it (at least one),
    at the worst interval. `desired[j]` is the answer given at the end of interval j."""
    worst = HighestAsk(0.0, 0, 0, 0)
    peak = 0
    for j, replicas in enumerate(desired):
        rate = trace.rps(j)
        if rate is not None:
            peak = max(peak, replicas_for(rate, rps_per_replica))
        ratio = replicas / max(1, peak)
        if ratio > worst.ratio:
            worst = HighestAsk(ratio, j, replicas, peak)
    return worst


POLICIES = ("predictive", "reactive", "static", "oracle")


@dataclass(frozen=True)
class Comparison:
    """Each policy's schedule and score on one trace, plus the predictive decisions."""

    scores: dict[str, ReplayScore]
    asked: dict[str, list[int]]
    need: list[int]
    decisions: list[ScalingDecision]


def compare(
    trace: Trace,
    config: ScalingConfig,
    cost_per_gpu_hour_usd: float = 0.0,
    progress: Callable[[str, int, int], None] | None = None,
) -> Comparison:
    """Predictive and reactive policies, a static peak fleet and the oracle on one trace."""
    need = needed_replicas(trace, config.usable_rps_per_replica)
    lag_n = cold_start_intervals(config.cold_start_s, trace.interval_s)
    asked: dict[str, list[int]] = {}
    decisions: list[ScalingDecision] = []
    for mode in ("predictive", "reactive"):
        policy = ScalingPolicy(replace(config, mode=mode))
        report = None if progress is None else (lambda i, n, m=mode: progress(m, i, n))
        asked[mode], found = replay_policy(trace, policy, report)
        if mode == "predictive":
            decisions = found
    peak = max(config.min_replicas, *need)
    asked["static"] = [peak] * len(need)
    asked["oracle"] = oracle_replicas(need, lag_n, config.min_replicas)
    scores = {
        name: score(name, trace, asked[name], config, cost_per_gpu_hour_usd) for name in POLICIES
    }
    return Comparison(scores, asked, need, decisions)


def replay_scorecard(
    trace: Trace, asked: Sequence[int], decisions: Sequence[ScalingDecision], config: ScalingConfig
) -> Scorecard:
    """The scorecard the operator would keep for this schedule: an interval meets the SLO when
    its ready replicas cover its demand, the lower bound is demand / the declared capacity, and
    the forecast is the one each decision used. Interval 0 is not scored, as in `score`."""
    card = Scorecard(config.horizon_s, config.cold_start_s, config.stabilization_s)
    ready = ready_replicas(asked, cold_start_intervals(config.cold_start_s, trace.interval_s))
    usable = config.usable_rps_per_replica
    for k in range(1, len(trace.requests)):
        rate = trace.rps(k)
        card.observe(
            Interval(
                end_s=trace.start_s + (k + 1) * trace.interval_s,
                duration_s=trace.interval_s,
                replicas=asked[k],
                ready=ready[k],
                slo_met=None if rate is None else rate <= ready[k] * usable * (1 + 1e-9),
                demand_rps=rate,
                capacity_rps=usable,
                forecast_rps=decisions[k].forecast_rps if k < len(decisions) else None,
            )
        )
    return card
