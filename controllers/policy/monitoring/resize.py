"""Step 13: the re-size trigger with hysteresis and the re-plan from the observed workload.

Pure: time is a parameter.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from controllers.api.conditions import Status as ConditionStatus
from controllers.api.v1alpha1 import (
    InferenceFleetSpec,
    PlanStatus,
    PoolCapacity,
    TokenPercentiles,
    parse_decimal,
    parse_duration_s,
)
from controllers.policy.monitoring.snapshot import MetricsSnapshot, Sample, value_of
from controllers.policy.monitoring.thresholds import Thresholds
from controllers.policy.planning import plan_spec, plan_status
from sizing.checkpoint import CheckpointWeights
from sizing.simulator import LoadPoint

# --- step 13: re-size trigger with hysteresis ---------------------------------------------


@dataclass(frozen=True)
class Expectation:
    """What the plan (or `inferfleet bench`) predicted at the load now observed.

    `peak_rps` is the fleet's peak request rate: the spec's planned one on the expected side,
    the workload window's (a day's) on the observed side; None where it is not judged.
    """

    ttft_p99_s: float | None
    gpu_util_percent: float | None
    peak_rps: float | None = None


@dataclass(frozen=True)
class ResizeState:
    """Carried between reconciles (e.g. in status); `since_s` = start of the pending change."""

    recommended: bool = False
    since_s: float | None = None
    reason: str = ""


def predicted_at_load(
    points: Sequence[LoadPoint], rps_per_replica: float, gpu_util_percent: float | None = None
) -> Expectation:
    """The plan's TTFT P99 at the per-replica rate seen now: the simulated (or benchmarked)
    load curve, interpolated linearly by request rate and held flat beyond its ends.

    The curve has no GPU-utilization figure; pass one measured by `inferfleet bench` at this
    load if there is one, otherwise only the TTFT rule of step 13 can fire.
    """
    curve = sorted((p.request_per_s, p.ttft_p99_s) for p in points)
    if not curve:
        return Expectation(ttft_p99_s=None, gpu_util_percent=gpu_util_percent)
    rates = np.array([rate for rate, _ in curve])
    ttfts = np.array([ttft for _, ttft in curve])
    return Expectation(
        ttft_p99_s=float(np.interp(rps_per_replica, rates, ttfts)),
        gpu_util_percent=gpu_util_percent,
    )


def _divergence(
    observed: Expectation,
    expected: Expectation,
    ttft_pct: float,
    util_points: float,
    peak_pct: float,
) -> list[str]:
    """Which step-13 signals exceed the given margins, in words; empty when none do."""
    out = []
    if observed.ttft_p99_s is not None and expected.ttft_p99_s:
        over_pct = 100.0 * (observed.ttft_p99_s / expected.ttft_p99_s - 1.0)
        # Compared as a product: 1.3 s over 1.0 s is not "more than 30 %" by float rounding.
        if observed.ttft_p99_s > expected.ttft_p99_s * (1.0 + ttft_pct / 100.0):
            out.append(
                f"TTFT P99 {observed.ttft_p99_s:.3f}s is {over_pct:.0f}% above the predicted "
                f"{expected.ttft_p99_s:.3f}s"
            )
    if observed.gpu_util_percent is not None and expected.gpu_util_percent is not None:
        below = expected.gpu_util_percent - observed.gpu_util_percent
        if below > util_points:
            out.append(
                f"GPU utilization {observed.gpu_util_percent:.0f}% is {below:.0f} points below "
                f"the predicted {expected.gpu_util_percent:.0f}%"
            )
    if observed.peak_rps is not None and expected.peak_rps:
        share_pct = 100.0 * observed.peak_rps / expected.peak_rps
        if share_pct < peak_pct:
            out.append(
                f"the day's peak {observed.peak_rps:.3g} req/s is {share_pct:.0f}% of the "
                f"planned {expected.peak_rps:.3g} req/s (over-sized)"
            )
    return out


def step_resize(
    state: ResizeState,
    observed: Expectation,
    expected: Expectation,
    thresholds: Thresholds,
    now_s: float,
) -> ResizeState:
    """Advance the trigger: fire after `resize_fire_after_s` of sustained divergence, clear
    after `resize_clear_after_s` below the (lower) clear margins; unknown values hold the state.
    """
    if (
        observed.ttft_p99_s is None
        and observed.gpu_util_percent is None
        and observed.peak_rps is None
    ):
        return state
    t = thresholds
    if not state.recommended:
        reasons = _divergence(
            observed,
            expected,
            t.resize_ttft_above_percent,
            t.resize_gpu_util_below_points,
            t.resize_peak_below_percent,
        )
        if not reasons:
            return ResizeState()
        since_s = now_s if state.since_s is None else state.since_s
        fire = now_s - since_s >= t.resize_fire_after_s
        return ResizeState(
            recommended=fire, since_s=None if fire else since_s, reason="; ".join(reasons)
        )
    still = _divergence(
        observed,
        expected,
        t.resize_ttft_clear_percent,
        t.resize_gpu_util_clear_points,
        t.resize_peak_clear_percent,
    )
    if still:
        return ResizeState(recommended=True, since_s=None, reason=state.reason)
    since_s = now_s if state.since_s is None else state.since_s
    if now_s - since_s >= t.resize_clear_after_s:
        return ResizeState()
    return ResizeState(recommended=True, since_s=since_s, reason=state.reason)


def resize_condition(state: ResizeState) -> tuple[ConditionStatus, str, str]:
    """The `ResizeRecommended` condition as (status, reason, message)."""
    if state.recommended:
        return "True", "ProductionDiverges", f"step 13: {state.reason}; see status.recommendation"
    if state.since_s is not None:
        return "False", "DivergencePending", f"diverging, not yet sustained: {state.reason}"
    return "False", "MatchesPrediction", "production matches the sizing prediction"


# --- the recommendation: re-plan from the observed workload -------------------------------


def _tokens(samples: Sequence[Sample | None], current: TokenPercentiles) -> dict[str, int]:
    """Observed P50/P95/P99, ordered and whole; the current value where one is missing."""
    values = [
        current_value if s is None or not math.isfinite(s.value) else max(1, math.ceil(s.value))
        for s, current_value in zip(samples, (current.p50, current.p95, current.p99), strict=True)
    ]
    for i in (1, 2):
        values[i] = max(values[i], values[i - 1])
    return {"p50": values[0], "p95": values[1], "p99": values[2]}


# Measured capacity replaces the plan's figure in a re-plan once this sure of it (percent).
MEASURED_CAPACITY_CONFIDENCE = 50.0


def trusted_capacity(capacity: PoolCapacity | None) -> str | None:
    """The measured req/s per replica a re-plan should use, or None while it is unsure."""
    if capacity is None or capacity.measured_rps is None:
        return None
    if float(capacity.confidence_percent) < MEASURED_CAPACITY_CONFIDENCE:
        return None
    return f"{float(capacity.measured_rps):.3f}"


def observed_workload(
    snapshot: MetricsSnapshot, spec: InferenceFleetSpec, capacity: PoolCapacity | None = None
) -> dict[str, Any]:
    """The `spec.workload` fields as Prometheus saw them (camelCase, ready to patch in), with
    the measured usable req/s per replica once it is trusted."""
    w = snapshot.workload
    current = spec.workload
    peak = value_of(w.peak_request_rate_rps)
    measured = trusted_capacity(capacity)
    return {
        "promptTokens": _tokens(
            (w.prompt_tokens_p50, w.prompt_tokens_p95, w.prompt_tokens_p99), current.prompt_tokens
        ),
        "outputTokens": _tokens(
            (w.output_tokens_p50, w.output_tokens_p95, w.output_tokens_p99), current.output_tokens
        ),
        "peakRequestsPerSecond": (
            f"{math.ceil(peak * 100) / 100:.2f}"
            if peak is not None and peak > 0
            else current.peak_requests_per_second
        ),
        **({"usableRPSPerReplica": measured} if measured is not None else {}),
    }


def observed_spec(
    snapshot: MetricsSnapshot, spec: InferenceFleetSpec, capacity: PoolCapacity | None = None
) -> InferenceFleetSpec:
    """The current spec with its workload replaced by the observed one (validated again)."""
    data = spec.model_dump(by_alias=True, exclude_none=True)
    data["workload"].update(observed_workload(snapshot, spec, capacity))
    return InferenceFleetSpec.model_validate(data)


def slo_missed(snapshot: MetricsSnapshot, spec: InferenceFleetSpec, pool: str) -> str | None:
    """What says the pool misses its SLO right now, in words; None when nothing does."""
    metrics = snapshot.pool(pool)
    if metrics is None:
        return None
    out = []
    ttft, itl = value_of(metrics.ttft_p99_s), value_of(metrics.itl_p99_s)
    ttft_slo = parse_duration_s(spec.slo.ttft_p99)
    if ttft is not None and ttft > ttft_slo:
        out.append(f"TTFT P99 {ttft:.3g} s > SLO {ttft_slo:.3g} s")
    itl_slo = parse_duration_s(spec.slo.itl_p99) if spec.slo.itl_p99 else None
    if itl is not None and itl_slo is not None and itl > itl_slo:
        out.append(f"ITL P99 {1000 * itl:.3g} ms > SLO {1000 * itl_slo:.3g} ms")
    waiting, ready = value_of(metrics.requests_waiting), value_of(metrics.replicas_reporting)
    if waiting and ready and waiting >= ready:
        out.append(f"{waiting:.0f} requests waiting on {ready:.0f} replicas")
    return ", ".join(out) or None


def _basis(
    snapshot: MetricsSnapshot, spec: InferenceFleetSpec, capacity: PoolCapacity | None
) -> str:
    """Which measurements the re-plan used, beside what the spec said."""
    workload = observed_workload(snapshot, spec, capacity)
    planned = spec.workload

    def lengths(kind: str, p: TokenPercentiles) -> str:
        seen = workload[kind]
        return f"{seen['p50']}/{seen['p95']}/{seen['p99']} (planned {p.p50}/{p.p95}/{p.p99})"

    parts = [
        f"observed prompt tokens P50/P95/P99 {lengths('promptTokens', planned.prompt_tokens)}",
        f"output {lengths('outputTokens', planned.output_tokens)}",
        f"peak {workload['peakRequestsPerSecond']} req/s (planned "
        f"{planned.peak_requests_per_second})",
    ]
    if capacity is not None and capacity.measured_rps is not None:
        used = "used" if "usableRPSPerReplica" in workload else "not used yet"
        parts.append(
            f"measured {capacity.measured_rps} req/s per replica on pool {capacity.pool} "
            f"(predicted {capacity.predicted_rps}; {capacity.confidence_percent} % confidence "
            f"from {capacity.saturated_samples} saturated of {capacity.samples} samples; {used})"
        )
    else:
        parts.append("no measured capacity yet (the plan's prediction)")
    return "; ".join(parts)


def _plan_summary(plan: PlanStatus) -> dict[str, Any]:
    return {
        "totalGPUs": plan.total_gpus,
        "costPerMonth": plan.cost_per_month,
        "pools": [
            {
                "pool": p.pool,
                "gpu": p.gpu,
                "replicas": p.replicas,
                "tensorParallel": p.tensor_parallel,
                "gpus": p.gpus,
            }
            for p in plan.pools
        ],
    }


def recommendation(
    current: PlanStatus,
    proposed: PlanStatus,
    workload: Mapping[str, Any],
    reason: str,
    basis: str | None = None,
) -> dict[str, Any]:
    """`status.recommendation`: both plans, the difference, and the merge patch to accept it.

    `workload` is `observed_workload(...)`; `accept` is a ready `kubectl patch --type merge`.
    """
    cost_delta = parse_decimal(proposed.cost_per_month) - parse_decimal(current.cost_per_month)
    return {
        "reason": reason,
        **({"basis": basis} if basis else {}),
        "current": _plan_summary(current),
        "proposed": _plan_summary(proposed),
        "gpuDelta": proposed.total_gpus - current.total_gpus,
        "costPerMonthDelta": f"{cost_delta:+.2f}",
        "accept": {"spec": {"workload": dict(workload)}},
    }


def propose_resize(
    snapshot: MetricsSnapshot,
    spec: InferenceFleetSpec,
    hf_config: dict[str, Any],
    current: PlanStatus,
    reason: str,
    capacity: PoolCapacity | None = None,
    checkpoint: CheckpointWeights | None = None,
) -> dict[str, Any]:
    """`status.recommendation` in one call: re-plan the observed workload (lengths, peak, and
    the measured capacity per replica once trusted) and diff the plans; `basis` says which
    measurements drove it.

    While the SLO is being missed it never proposes fewer GPUs: the plan it would make is named
    in the reason, the proposal stays the current one and there is nothing to accept.

    Raises `sizing.errors.SizingError` when the observed workload cannot be served at all;
    that is itself the answer to report (e.g. prompts outgrew every pool).
    """
    observed = observed_spec(snapshot, spec, capacity)
    proposed = plan_status(plan_spec(observed, hf_config, checkpoint=checkpoint))
    workload = observed_workload(snapshot, spec, capacity)
    basis = _basis(snapshot, spec, capacity)
    missed = slo_missed(snapshot, spec, current.pools[0].pool) if current.pools else None
    if missed is not None and proposed.total_gpus < current.total_gpus:
        held = recommendation(current, current, workload, reason, basis)
        held["reason"] = (
            f"{reason}; the observed workload plans to {proposed.total_gpus} GPUs, fewer than "
            f"the {current.total_gpus} planned now, but {missed}: no fewer GPUs while the SLO "
            "is missed"
        )
        held["accept"] = None
        return held
    return recommendation(current, proposed, workload, reason, basis)
