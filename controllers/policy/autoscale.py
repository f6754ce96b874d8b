"""One reconcile's scaling and monitoring for a fleet: metrics in, replicas and status out.

Pure glue between the scaling policy (`controllers.policy.scaling`) and the monitoring policy
(`controllers.policy.monitoring`): the handler passes what it observed (a Prometheus snapshot or
none, the Deployments' current replicas, `status.history`) and the time; this returns the replicas
per pool with their reasons, the next `status.history`, `status.forecast`, the findings and the
`MetricsAvailable` / `ResizeRecommended` conditions. The policy's memory lives in
`status.history`, so an operator restart forgets nothing.

A policy steps once per `spec.scaling.interval`; reconciles in between (a spec edit, an owned
Deployment event) reuse the last decision, so extra passes never speed up the clock.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from controllers.api.conditions import Status as ConditionStatus
from controllers.api.v1alpha1 import (
    Finding,
    ForecastStatus,
    InferenceFleetSpec,
    PlanStatus,
    PoolCapacity,
    PoolPlanStatus,
    PoolScorecard,
    ScorecardWindow,
    TokenPercentiles,
    parse_decimal,
    parse_duration_s,
)
from controllers.policy.monitoring.findings import evaluate
from controllers.policy.monitoring.resize import (
    Expectation,
    ResizeState,
    predicted_at_load,
    resize_condition,
    step_resize,
)
from controllers.policy.monitoring.snapshot import (
    MetricsSnapshot,
    metrics_condition,
    scaling_metrics,
)
from controllers.policy.monitoring.thresholds import resolve_thresholds
from controllers.policy.scaling.capacity import SLOLimits
from controllers.policy.scaling.guard import GuardConfig
from controllers.policy.scaling.policy import (
    ClosedLoop,
    Metrics,
    ScalingConfig,
    ScalingPolicy,
    config_from_spec,
    prewarm_plan,
    rps_per_replica,
)
from controllers.policy.scaling.scorecard import Interval, Scorecard, slo_met
from sizing.simulator import LoadPoint
from sizing.workload import Percentiles

HISTORY_VERSION = 1
# A policy step a little early still counts: the daemon's timer drifts by the reconcile time.
STEP_TOLERANCE = 0.9
# The fleet's peak is compared with the planned one only after a whole workload window (the
# Prometheus queries' 1 d, in policy time) of watching.
PEAK_JUDGED_AFTER_S = 86_400.0
# keda: the policy's decision becomes the ScaledObject's minReplicaCount (the forecast floor).
POLICY_MODES = ("predictive", "reactive", "keda")

ConditionTuple = tuple[ConditionStatus, str, str]


@dataclass(frozen=True)
class FleetTick:
    spec: InferenceFleetSpec
    plan: PlanStatus
    snapshot: MetricsSnapshot | None  # None: no Prometheus configured for this fleet
    history: Mapping[str, Any] | None  # status.history as stored
    current: Mapping[str, int]  # pool -> replicas its Deployment asks for now
    now_s: float
    curves: Mapping[str, Sequence[LoadPoint]] = field(default_factory=dict)  # predicted, per pool
    time_compression: float = 1.0  # policy seconds per wall second (demos run a day in minutes)
    # The fleet's past request rate as (policy time, req/s), from a Prometheus range query:
    # seeds the first pool's forecaster when it has no memory yet (a new operator, a new fleet
    # on old traffic), so the first day already knows the daily cycle.
    history_rps: tuple[tuple[float, float], ...] = ()
    # Per pool, replicas waiting for a node past the pending deadline (the Pending detection,
    # `controllers.policy.pending`); None: no detection ran. For the scorecard's time Pending.
    pending: Mapping[str, int] | None = None


@dataclass(frozen=True)
class FleetDecision:
    replicas: dict[str, int]
    reasons: dict[str, str]
    changed: dict[str, tuple[int, int]]  # pool -> (was, now), for Events
    history: dict[str, Any]
    forecast: ForecastStatus | None
    findings: tuple[Finding, ...]
    metrics_condition: ConditionTuple
    resize_condition: ConditionTuple | None
    resize_newly_recommended: bool
    snapshot: MetricsSnapshot | None  # what the decision saw (the recommendation re-plans it)
    capacity: tuple[PoolCapacity, ...] = ()  # status.capacity: predicted vs measured per pool
    scorecard: tuple[PoolScorecard, ...] = ()  # status.scorecard: the autoscaler's own record


def _iso(t_s: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t_s))


def closed_loop(spec: InferenceFleetSpec, pool: PoolPlanStatus) -> ClosedLoop:
    """The SLO, the plan's concurrency and token rates per replica, and the guard's settings:
    what production is judged against."""
    usable = parse_decimal(pool.usable_rps_per_replica)
    w = spec.workload

    def mean(p: TokenPercentiles) -> float:
        return Percentiles(p.p50, p.p95, p.p99).mean_estimate

    thresholds = resolve_thresholds(spec.monitoring.thresholds)
    slo = spec.slo
    return ClosedLoop(
        limits=SLOLimits(
            ttft_p99_s=parse_duration_s(slo.ttft_p99),
            itl_p99_s=parse_duration_s(slo.itl_p99) if slo.itl_p99 else None,
            kv_usage_ratio=thresholds.kv_cache_high_percent / 100,
            running_per_replica=float(pool.c_max),
        ),
        prompt_tok_per_s_per_replica=usable * mean(w.prompt_tokens),
        gen_tok_per_s_per_replica=usable * mean(w.output_tokens),
        guard=GuardConfig(scrapes=spec.scaling.slo_guard_scrapes),
    )


def pool_config(
    spec: InferenceFleetSpec, pool: PoolPlanStatus, primary: bool, time_compression: float = 1.0
) -> ScalingConfig:
    """The policy's settings for one pool; the fleet's replica floor applies to its first pool.

    The reconcile interval is wall time; under time compression one interval spans
    `interval x compression` seconds of policy time.
    """
    pool_spec = next((p for p in spec.pools if p.name == pool.pool), None)
    scaling = spec.scaling
    if not primary:
        scaling = scaling.model_copy(update={"min_replicas": 0, "schedules": []})
    config = config_from_spec(
        scaling,
        usable_rps_per_replica=parse_decimal(pool.usable_rps_per_replica),
        cold_start_s=float(pool.cold_start_seconds),
        gpus_per_replica=pool.tensor_parallel * pool.pipeline_parallel,
        max_gpus=pool_spec.max_gpus if pool_spec else None,
        static_replicas=pool.replicas,
    )
    config = replace(config, closed_loop=closed_loop(spec, pool))
    if time_compression == 1.0:
        return config
    # Rates stay per wall second: an interval still counts the requests of its wall seconds.
    return replace(
        config, interval_s=config.interval_s * time_compression, count_interval_s=config.interval_s
    )


def last_decided(tick: FleetTick, pool: PoolPlanStatus, stored: Mapping[str, Any] | None) -> int:
    """The count the operator itself last chose: its own memory, else what runs, else the plan.

    A hand edit of a Deployment's replicas is therefore put back, not taken as the new floor.
    """
    if stored and "replicas" in stored:
        return int(stored["replicas"])
    return tick.current.get(pool.pool, pool.replicas)


def _pool_metrics(snapshot: MetricsSnapshot | None, pool: str) -> Metrics:
    if snapshot is None or not snapshot.reachable:
        return Metrics(rps=None)
    return scaling_metrics(snapshot.pool(pool))


def _scorecard(config: ScalingConfig, stored: Mapping[str, Any] | None) -> Scorecard:
    card = Scorecard(config.horizon_s, config.cold_start_s, config.stabilization_s)
    if stored and stored.get("scorecard"):
        try:
            card.load(stored["scorecard"])
        except (KeyError, TypeError, ValueError):
            card = Scorecard(
                config.horizon_s, config.cold_start_s, config.stabilization_s
            )  # a damaged record: start a new one rather than wedge the fleet
    return card


def pool_interval(
    policy: ScalingPolicy, metrics: Metrics, decision_forecast_rps: float | None,
    held: int, now_s: float, duration_s: float, pending: int | None = None,
) -> Interval:  # fmt: skip
    """The interval that just ended as the scorecard judges it, from what the policy saw."""
    fresh = metrics.age_s <= policy.config.stale_limit_s
    load = metrics.load if fresh else None
    used, _ = policy.capacity_rps(now_s, metrics)
    return Interval(
        end_s=now_s,
        duration_s=duration_s,
        replicas=held,
        ready=None if load is None else load.ready,
        slo_met=slo_met(load, policy.config.closed_loop.limits),
        demand_rps=metrics.rps if fresh else None,
        capacity_rps=rps_per_replica(policy.config, metrics) if used is None else used,
        forecast_rps=decision_forecast_rps,
        pending=pending,
    )


def _step_pool(
    tick: FleetTick, pool: PoolPlanStatus, primary: bool, stored: Mapping[str, Any] | None
) -> tuple[int, str, dict[str, Any], ScalingPolicy, Scorecard]:
    """Replicas for one pool now, its reason, and what to remember."""
    config = pool_config(tick.spec, pool, primary, tick.time_compression)
    current = last_decided(tick, pool, stored)
    policy = None
    if stored and "policy" in stored:
        try:
            policy = ScalingPolicy.from_dict(config, stored["policy"])
        except ValueError:
            policy = None  # a damaged status.history: relearn rather than wedge the fleet
    if policy is None:
        policy = ScalingPolicy(config)
        if primary:
            for t_s, rps in tick.history_rps:
                if t_s < tick.now_s:
                    policy.seed(t_s, rps)
    card = _scorecard(config, stored)
    stepped_at = None if stored is None else stored.get("steppedAt")
    due = stepped_at is None or tick.now_s - float(stepped_at) >= (
        STEP_TOLERANCE * config.interval_s
    )
    if not due:
        assert stored is not None
        return int(stored["replicas"]), str(stored["reason"]), dict(stored), policy, card
    metrics = _pool_metrics(tick.snapshot, pool.pool)
    decision = policy.step(tick.now_s, metrics, current)
    # An interval is one policy step; a longer gap (the operator was away) is not all judged.
    elapsed_s = config.interval_s if stepped_at is None else tick.now_s - float(stepped_at)
    card.observe(
        pool_interval(policy, metrics, decision.forecast_rps, current, tick.now_s,
                      min(elapsed_s, 2 * config.interval_s),
                      None if tick.pending is None else tick.pending.get(pool.pool, 0))
    )  # fmt: skip
    memory = {
        "policy": policy.to_dict(),
        "steppedAt": tick.now_s,
        "replicas": decision.desired_replicas,
        "reason": decision.reason,
        "scorecard": card.to_dict(),
    }
    return decision.desired_replicas, decision.reason, memory, policy, card


def _rounded(value: float | None) -> str | None:
    return None if value is None else f"{value:.1f}"


def _percent(value: float | None) -> str | None:
    return None if value is None else f"{100 * value:.2f}"


def scorecard_status(pool: str, card: Scorecard, now_s: float) -> PoolScorecard:
    """`status.scorecard` of one pool, every window."""
    return PoolScorecard(
        pool=pool,
        windows=[
            ScorecardWindow(
                window=w.window,
                covered_minutes=round(w.covered_s / 60),
                slo_met_percent=_percent(w.slo_met_share),
                replica_hours=f"{w.replica_hours:.1f}",
                lower_bound_replica_hours=f"{w.bound_replica_hours:.1f}",
                over_lower_bound=_figure(w.over_bound),
                forecast_mape_percent=_percent(w.forecast_mape),
                reactive_mape_percent=_percent(w.reactive_mape),
                scale_events_per_day=_rounded(w.scale_events_per_day),
                flaps_per_day=_rounded(w.flaps_per_day),
                pending_minutes=f"{w.pending_s / 60:.1f}",
            )
            for w in card.scores(now_s)
        ],
    )


def _figure(value: float | None) -> str | None:
    return None if value is None else f"{value:.3g}"


def _tokens(rates: tuple[float | None, float | None]) -> float | None:
    return None if None in rates else sum(r for r in rates if r is not None)


def capacity_status(
    pool: str, policy: ScalingPolicy, metrics: Metrics, now_s: float
) -> PoolCapacity:
    """`status.capacity` of one pool: the plan's per-replica figures beside the measured ones,
    and what the decision divides by."""
    estimate = policy.capacity.estimate(now_s)
    predicted, measured = policy.capacity.predicted, estimate.measured
    used, _ = policy.capacity_rps(now_s, metrics)
    return PoolCapacity(
        pool=pool,
        predicted_rps=f"{predicted.rps:.3g}",
        measured_rps=_figure(measured.rps if measured else None),
        predicted_tok_per_s=_figure(_tokens((predicted.prompt_tok_per_s, predicted.gen_tok_per_s))),
        measured_tok_per_s=_figure(
            _tokens((measured.prompt_tok_per_s, measured.gen_tok_per_s)) if measured else None
        ),
        used_rps=f"{rps_per_replica(policy.config, metrics) if used is None else used:.3g}",
        samples=estimate.samples,
        saturated_samples=estimate.saturated_samples,
        confidence_percent=f"{100 * estimate.confidence:.0f}",
        last_updated=None if estimate.last_updated_s is None else _iso(estimate.last_updated_s),
    )


CONFIDENT_TO_REPORT = 50.0  # percent confidence before a divergence is worth an Event


def capacity_divergence(capacity: PoolCapacity, threshold_percent: float) -> str | None:
    """Why the measured capacity is news (an Event), or None while it matches the plan."""
    if capacity.measured_rps is None or float(capacity.confidence_percent) < CONFIDENT_TO_REPORT:
        return None
    measured, predicted = float(capacity.measured_rps), float(capacity.predicted_rps)
    off_percent = 100 * (measured / predicted - 1)
    if abs(off_percent) <= threshold_percent:
        return None
    return (
        f"pool {capacity.pool}: one replica serves {capacity.measured_rps} req/s within the "
        f"SLO, measured, against {capacity.predicted_rps} predicted ({off_percent:+.0f} %, "
        f"{capacity.confidence_percent} % confidence from {capacity.saturated_samples} "
        f"saturated of {capacity.samples} samples); scaling now divides by "
        f"{capacity.used_rps} req/s per replica"
    )


def _forecast_status(policy: ScalingPolicy, now_s: float, current: int) -> ForecastStatus:
    config = policy.config
    plan = prewarm_plan(
        policy.forecaster, config, now_s, current, envelope=policy.envelope.envelope()
    )
    met = policy.spare.met_share()
    return ForecastStatus(
        spare_percentile=(
            f"{100 * policy.spare.quantile:.2f}" if config.min_warm_replicas is None else None
        ),
        recent_slo_met_percent=None if met is None else f"{100 * met:.2f}",
        target_slo_met_percent=f"{100 * config.target_slo_met:g}",
        next_peak_rps=f"{plan.next_peak_rps:.2f}",
        next_peak_at=_iso(plan.next_peak_at_s),
        prewarm_at=_iso(plan.prewarm_at_s) if plan.prewarm_at_s is not None else None,
        prewarm_replicas=plan.prewarm_replicas,
        forecaster=config.forecaster,
        reason=plan.reason,
    )


def _observed_expectation(snapshot: MetricsSnapshot, pool: str, judge_peak: bool) -> Expectation:
    metrics = snapshot.pool(pool)
    peak = snapshot.workload.peak_request_rate_rps if judge_peak else None
    peak_rps = peak.value if peak is not None else None
    if metrics is None:
        return Expectation(None, None, peak_rps)
    ttft = metrics.ttft_p99_s.value if metrics.ttft_p99_s else None
    util = metrics.gpu_util_percent.value if metrics.gpu_util_percent else None
    return Expectation(ttft_p99_s=ttft, gpu_util_percent=util, peak_rps=peak_rps)


def _resize(
    tick: FleetTick, stored: Mapping[str, Any] | None, watched_since_s: float
) -> tuple[ResizeState, ConditionTuple | None]:
    """Step 13 for the fleet's first pool against the plan's own predicted curve, and the
    fleet's peak against the planned one once a whole workload window has been watched (a
    fleet an hour old has not seen its daily peak yet)."""
    state = ResizeState(**stored) if stored else ResizeState()
    snapshot = tick.snapshot
    if snapshot is None or not snapshot.reachable or not tick.plan.pools:
        return state, None
    primary = tick.plan.pools[0]
    metrics = snapshot.pool(primary.pool)
    points = tick.curves.get(primary.pool, ())
    ready = tick.current.get(primary.pool, primary.replicas)
    if metrics is None or metrics.request_rate_rps is None or not points or ready <= 0:
        return state, resize_condition(state)
    judge_peak = tick.now_s - watched_since_s >= PEAK_JUDGED_AFTER_S
    expected = replace(
        predicted_at_load(points, metrics.request_rate_rps.value / ready),
        peak_rps=parse_decimal(tick.spec.workload.peak_requests_per_second) if judge_peak else None,
    )
    thresholds = resolve_thresholds(tick.spec.monitoring.thresholds)
    observed = _observed_expectation(snapshot, primary.pool, judge_peak)
    state = step_resize(state, observed, expected, thresholds, tick.now_s)
    return state, resize_condition(state)


def _watched_since(tick: FleetTick, history: Mapping[str, Any]) -> float:
    """Since when this fleet's traffic is known: its first reachable snapshot, or the oldest
    request rate Prometheus held for it then (a new fleet on old traffic)."""
    since = float(history.get("watchingSince", tick.now_s))
    return min([since, *(t_s for t_s, _ in tick.history_rps)])


def needs_history(
    spec: InferenceFleetSpec, plan: PlanStatus, history: Mapping[str, Any] | None
) -> bool:
    """True when past traffic is worth a range query: the fleet was never watched (its watch
    starts where Prometheus's history of it does), or the first pool's policy has no memory
    yet and would learn from it."""
    if not plan.pools:
        return False
    if "watchingSince" not in (history or {}):
        return True
    if spec.scaling.mode not in POLICY_MODES:
        return False
    pools = (
        (history or {}).get("pools", {})
        if (history or {}).get("version") == HISTORY_VERSION
        else {}
    )
    return "policy" not in pools.get(plan.pools[0].pool, {})


def decide_fleet(tick: FleetTick) -> FleetDecision:
    """Replicas per pool with reasons, plus everything the status shows about them."""
    spec, plan = tick.spec, tick.plan
    history = dict(tick.history or {})
    stored_pools: Mapping[str, Any] = (
        history.get("pools", {}) if history.get("version") == HISTORY_VERSION else {}
    )
    replicas: dict[str, int] = {}
    reasons: dict[str, str] = {}
    changed: dict[str, tuple[int, int]] = {}
    pools_memory: dict[str, Any] = {}
    forecast: ForecastStatus | None = None
    capacity: list[PoolCapacity] = []
    scorecard: list[PoolScorecard] = []
    for index, pool in enumerate(plan.pools):
        was = tick.current.get(pool.pool, pool.replicas)
        stored = stored_pools.get(pool.pool)
        if spec.scaling.mode not in POLICY_MODES:
            replicas[pool.pool] = pool.replicas
            reasons[pool.pool] = f"{spec.scaling.mode} mode: the plan's {pool.replicas} replicas"
        elif tick.snapshot is None:
            # No metrics source at all: nothing to scale on, so hold what runs (the plan's count
            # when the pool is new) and keep whatever policy memory there was.
            held = last_decided(tick, pool, stored)
            replicas[pool.pool] = held
            reasons[pool.pool] = f"no Prometheus configured: holding {held} replicas"
            pools_memory[pool.pool] = {**(stored or {}), "replicas": held}
        else:
            count, reason, memory, policy, card = _step_pool(tick, pool, index == 0, stored)
            replicas[pool.pool], reasons[pool.pool] = count, reason
            pools_memory[pool.pool] = memory
            metrics = _pool_metrics(tick.snapshot, pool.pool)
            capacity.append(capacity_status(pool.pool, policy, metrics, tick.now_s))
            scorecard.append(scorecard_status(pool.pool, card, tick.now_s))
            if index == 0 and spec.scaling.mode in ("predictive", "keda"):
                forecast = _forecast_status(policy, tick.now_s, count)
        if replicas[pool.pool] != was:
            # A new pool started away from the plan's count is a change too (was = the plan).
            changed[pool.pool] = (was, replicas[pool.pool])
    watched_since_s = _watched_since(tick, history)
    resize_state, resize_cond = _resize(tick, history.get("resize"), watched_since_s)
    was_recommended = bool((history.get("resize") or {}).get("recommended"))
    snapshot = tick.snapshot
    if snapshot is None:
        condition: ConditionTuple = (
            "Unknown",
            "PrometheusNotConfigured",
            "set spec.monitoring.prometheusURL (or the operator's default) to watch this fleet",
        )
        findings: tuple[Finding, ...] = ()
    else:
        condition = metrics_condition(snapshot, [p.pool for p in plan.pools])
        thresholds = resolve_thresholds(spec.monitoring.thresholds)
        findings = evaluate(snapshot, spec, plan, thresholds) if snapshot.reachable else ()
    new_history = {
        "version": HISTORY_VERSION,
        "pools": pools_memory,
        # The watch starts with the first reachable snapshot and is never restarted.
        **(
            {"watchingSince": watched_since_s}
            if "watchingSince" in history or (snapshot is not None and snapshot.reachable)
            else {}
        ),
        "resize": {
            "recommended": resize_state.recommended,
            "since_s": resize_state.since_s,
            "reason": resize_state.reason,
        },
    }
    return FleetDecision(
        replicas=replicas,
        reasons=reasons,
        changed=changed,
        history=new_history,
        forecast=forecast,
        findings=findings,
        metrics_condition=condition,
        resize_condition=resize_cond,
        resize_newly_recommended=resize_state.recommended and not was_recommended,
        snapshot=snapshot,
        capacity=tuple(capacity),
        scorecard=tuple(scorecard),
    )
