"""Replay against a fleet whose true capacity is not the declared one: queues and time-outs.

`replay.py` scores a schedule by demand <= ready x usable req/s, with the declared capacity.
Here the fleet serves `true_factor x` the declared req/s per replica, and what it cannot serve
waits in one FIFO queue; a request still waiting `timeout_s` after it arrived is dropped. The
policy is driven in closed loop with what the operator would see at the end of each interval
(`ready`, `served`, `waiting`, `ttft_p99_s`, the arrivals as `requests`), through
`ScalingPolicy.step` like `policy-replay`.

The observed TTFT P99 is synthetic: below saturation `SLO x (0.2 + 0.8 rho^4)` (rho = offered
load over true capacity: flat when light, steep near capacity, at the SLO at capacity, the
shape of a batching server), above it the SLO plus the time the queue takes to drain. An
interval meets the SLO when it ends with no queue and its oldest request waited no longer than
the SLO.

The policies compared: the scaling policy, the hindsight oracle with the *true* capacity (the
cheapest schedule that never queues), and a simple closed-loop rule (scale up by the observed
overload when TTFT P99 is over the SLO or requests wait; one replica down after five
quiet intervals).

Pure: the caller passes the trace in.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace

from controllers.policy.scaling.capacity import LoadSample
from controllers.policy.scaling.policy import (
    Metrics,
    ScalingConfig,
    ScalingPolicy,
    cold_start_intervals,
    replicas_for,
)
from controllers.policy.scaling.replay import Trace, needed_replicas, oracle_replicas

TIMEOUT_S = 300.0  # a request that waited this long is dropped by its client
QUIET_N = 5  # the simple rule steps down after this many quiet intervals


@dataclass(frozen=True)
class Interval:
    """What one interval did: served and dropped requests, the queue left, the SLO verdict."""

    served: int
    dropped: int
    waiting: int
    met: bool
    ttft_p99_s: float


class ServedFleet:
    """One FIFO queue in front of the ready replicas, each serving `rps_per_replica`."""

    def __init__(self, rps_per_replica: float, interval_s: float, ttft_slo_s: float) -> None:
        self.rps_per_replica = rps_per_replica
        self.interval_s = interval_s
        self.ttft_slo_s = ttft_slo_s
        self.timeout_n = max(1, math.ceil(TIMEOUT_S / interval_s - 1e-9))
        self.queue: deque[list[int]] = deque()  # [arrived in interval k, requests left]
        self.k = 0
        self.carry = 0.0  # fractional capacity carried between intervals

    def step(self, ready: int, arrivals: int) -> Interval:
        rate_s = ready * self.rps_per_replica
        carried = sum(n for _, n in self.queue)
        wait_s = carried / rate_s if rate_s > 0 else math.inf
        offered = carried + arrivals
        if arrivals:
            self.queue.append([self.k, arrivals])
        budget = rate_s * self.interval_s + self.carry + 1e-6
        served = 0
        while self.queue and budget >= 1:
            take = min(self.queue[0][1], int(budget))
            self.queue[0][1] -= take
            budget -= take
            served += take
            if self.queue[0][1] == 0:
                self.queue.popleft()
        self.carry = min(budget, 1.0) if self.queue else 0.0
        dropped = 0
        while self.queue and self.queue[0][0] <= self.k - self.timeout_n + 1:
            dropped += self.queue.popleft()[1]
        waiting = sum(n for _, n in self.queue)
        self.k += 1
        if waiting or wait_s > self.ttft_slo_s:
            drain_s = waiting / rate_s if rate_s > 0 else TIMEOUT_S
            ttft = self.ttft_slo_s + min(TIMEOUT_S, max(drain_s, wait_s))
        else:
            rho = offered / (rate_s * self.interval_s) if rate_s > 0 else 0.0
            ttft = self.ttft_slo_s * (0.2 + 0.8 * min(1.0, rho) ** 4)
        met = waiting == 0 and dropped == 0 and wait_s <= self.ttft_slo_s
        return Interval(served, dropped, waiting, met, ttft)


@dataclass(frozen=True)
class QueueScore:
    policy: str
    scored_intervals: int
    slo_met_intervals: int
    replica_hours: float
    dropped_requests: int
    requests: int

    @property
    def slo_met_share(self) -> float:
        return self.slo_met_intervals / self.scored_intervals if self.scored_intervals else 1.0


Decider = Callable[[float, Metrics, int], int]  # (end of interval, what was seen, current)


def run_closed_loop(
    name: str,
    trace: Trace,
    config: ScalingConfig,
    true_rps_per_replica: float,
    ttft_slo_s: float,
    decider: Decider,
) -> QueueScore:
    """Drive a decider interval by interval against the served fleet, and score it."""
    fleet = ServedFleet(true_rps_per_replica, trace.interval_s, ttft_slo_s)
    lag_n = cold_start_intervals(config.cold_start_s, trace.interval_s)
    asked: list[int] = []
    current = config.min_replicas
    scored = met = dropped = total = 0
    n = len(trace.requests)
    iv = trace.interval_s
    for j in range(n):
        count = trace.requests[j]
        load = None
        if j > 0:  # interval 0 only shows the load: the fleet it asks for is taken as warm
            ready = min(asked[max(0, j - lag_n) :])
            result = fleet.step(ready, count or 0)
            dropped += result.dropped
            if count is not None:
                scored += 1
                met += result.met
                total += count
            load = LoadSample(
                ready=ready, served_rps=result.served / iv, waiting=result.waiting,
                ttft_p99_s=result.ttft_p99_s,
            )  # fmt: skip
        metrics = (
            Metrics(rps=count / iv, load=load)
            if count is not None
            else Metrics(rps=None, age_s=math.inf)
        )
        current = decider(trace.start_s + (j + 1) * iv, metrics, current)
        if j == 0:
            asked.append(current)  # the warm fleet the trace starts with
        if j + 1 < n:
            asked.append(current)
    hours = sum(asked[1:]) * trace.interval_s / 3600
    return QueueScore(name, scored, met, hours, dropped, total)


def policy_decider(policy: ScalingPolicy, closed: bool = True) -> Decider:
    """The policy's answers; open loop (`closed=False`) it sees the arrivals only, as before
    the closed loop existed."""

    def decide(now_s: float, metrics: Metrics, current: int) -> int:
        seen = metrics if closed else replace(metrics, load=None)
        return policy.step(now_s, seen, current).desired_replicas

    return decide


def oracle_decider(trace: Trace, config: ScalingConfig, true_rps: float) -> Decider:
    """The hindsight schedule with the true capacity, replayed as answers."""
    lag_n = cold_start_intervals(config.cold_start_s, trace.interval_s)
    schedule = oracle_replicas(needed_replicas(trace, true_rps), lag_n, config.min_replicas)
    step = iter(range(len(schedule)))
    return lambda now_s, metrics, current: schedule[min(next(step) + 1, len(schedule) - 1)]


def simple_rule_decider(config: ScalingConfig, ttft_slo_s: float) -> Decider:
    """Up by the observed overload ((arrivals + queue drained in one interval) / served, and
    at least one replica) when TTFT P99 > SLO or requests wait; one replica down after
    `QUIET_N` quiet intervals."""
    trace_interval_s = config.interval_s
    quiet = [0]

    def decide(now_s: float, metrics: Metrics, current: int) -> int:
        load = metrics.load
        if load is None or load.ttft_p99_s is None:  # interval 0: the load is all it knows
            if metrics.rps is None:
                return current
            return max(
                config.min_replicas, replicas_for(metrics.rps, config.usable_rps_per_replica)
            )
        if load.ttft_p99_s > ttft_slo_s or (load.waiting or 0) > 0:
            quiet[0] = 0
            ready = load.ready or current
            served, waiting = load.served_rps or 0.0, load.waiting or 0.0
            demand = max(metrics.rps or 0.0, served) + waiting / trace_interval_s
            wanted = ready * demand / served if served > 0 else 2 * current
            return max(current, ready + 1, math.ceil(wanted - 1e-9))
        quiet[0] += 1
        if quiet[0] < QUIET_N:
            return current
        quiet[0] = 0
        return max(config.min_replicas, 1, current - 1)

    return decide


def with_slo(config: ScalingConfig, ttft_slo_s: float) -> ScalingConfig:
    loop = config.closed_loop
    return replace(
        config, closed_loop=replace(loop, limits=replace(loop.limits, ttft_p99_s=ttft_slo_s))
    )


def compare_true_capacity(
    trace: Trace, config: ScalingConfig, true_factor: float, ttft_slo_s: float
) -> dict[str, QueueScore]:
    """The policy, the simple rule and the true-capacity oracle on a fleet at `true_factor`."""
    if not true_factor > 0:
        raise ValueError(f"the true capacity factor must be > 0, got {true_factor}")
    config = with_slo(config, ttft_slo_s)
    true_rps = true_factor * config.usable_rps_per_replica
    deciders = {
        "predictive": policy_decider(ScalingPolicy(config)),
        "predictive, open loop": policy_decider(ScalingPolicy(config), closed=False),
        "simple rule": simple_rule_decider(config, ttft_slo_s),
        "oracle (true capacity)": oracle_decider(trace, config, true_rps),
    }
    return {
        name: run_closed_loop(name, trace, config, true_rps, ttft_slo_s, decider)
        for name, decider in deciders.items()
    }
