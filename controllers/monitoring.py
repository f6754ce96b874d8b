"""Monitoring policy: the guide's section 9.3 thresholds and the step-13 re-size trigger.

Pure: a `MetricsSnapshot` (built by `controllers.prometheus`), the spec and the plan go in;
conditions, findings, a hysteresis state and a recommendation come out. Time is a parameter.
A missing or stale value is unknown, never zero: no finding is raised on what was not seen.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, Literal

import numpy as np

from controllers.api import (
    Finding,
    InferenceFleetSpec,
    PlanStatus,
    Severity,
    TokenPercentiles,
    parse_decimal,
    parse_duration_s,
)
from controllers.planning import plan_spec, plan_status
from controllers.scaling import Metrics
from sizing.errors import InvalidInput
from sizing.simulator import LoadPoint

# --- the snapshot the Prometheus adapter fills --------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One observed value and how old its newest underlying sample is at query time."""

    value: float
    age_s: float


@dataclass(frozen=True)
class PoolMetrics:
    """vLLM and DCGM signals of one pool, aggregated over its replicas (None = not seen)."""

    pool: str
    replicas_reporting: Sample | None = None
    requests_running: Sample | None = None
    requests_waiting: Sample | None = None
    kv_cache_usage_ratio: Sample | None = None
    preemptions_per_s: Sample | None = None
    request_rate_rps: Sample | None = None
    prompt_tok_per_s: Sample | None = None
    generation_tok_per_s: Sample | None = None
    prefix_cache_hit_ratio: Sample | None = None
    ttft_p50_s: Sample | None = None
    ttft_p99_s: Sample | None = None
    itl_p50_s: Sample | None = None
    itl_p99_s: Sample | None = None
    spec_decode_acceptance_ratio: Sample | None = None
    lora_adapter_hit_ratio: Sample | None = None
    gpu_util_percent: Sample | None = None
    sm_active_ratio: Sample | None = None
    fb_used_mib: Sample | None = None
    fb_free_mib: Sample | None = None


@dataclass(frozen=True)
class WorkloadMetrics:
    """Fleet-wide traffic shape over the workload window: what step 1 would measure."""

    prompt_tokens_p50: Sample | None = None
    prompt_tokens_p95: Sample | None = None
    prompt_tokens_p99: Sample | None = None
    output_tokens_p50: Sample | None = None
    output_tokens_p95: Sample | None = None
    output_tokens_p99: Sample | None = None
    request_rate_rps: Sample | None = None
    peak_request_rate_rps: Sample | None = None


POOL_METRIC_NAMES = tuple(f.name for f in fields(PoolMetrics) if f.name != "pool")
WORKLOAD_METRIC_NAMES = tuple(f.name for f in fields(WorkloadMetrics))
# Without these a pool cannot be judged at all; the others are optional (no traffic, no GPU
# exporter, feature not enabled) and only reported in the condition message.
REQUIRED_POOL_METRICS = ("requests_running", "requests_waiting", "kv_cache_usage_ratio")


@dataclass(frozen=True)
class MetricsSnapshot:
    """What Prometheus said about one fleet at `queried_at_s`.

    `missing` and `stale` name `pool/metric` (or `workload/metric`) entries; a stale value is
    left out of `pools`/`workload` so nobody mistakes it for a current one.
    """

    namespace: str
    fleet: str
    queried_at_s: float
    reachable: bool
    error: str | None = None
    pools: tuple[PoolMetrics, ...] = ()
    workload: WorkloadMetrics = WorkloadMetrics()
    missing: tuple[str, ...] = ()
    stale: tuple[str, ...] = ()

    def pool(self, name: str) -> PoolMetrics | None:
        return next((p for p in self.pools if p.pool == name), None)


def scaling_metrics(pool: PoolMetrics | None) -> Metrics:
    """The scaling policy's input for one pool: req/s, tokens/s, and the oldest age used."""
    if pool is None or pool.request_rate_rps is None:
        return Metrics(rps=None)
    used = [pool.request_rate_rps]
    tok_per_s = None
    if pool.prompt_tok_per_s is not None and pool.generation_tok_per_s is not None:
        used += [pool.prompt_tok_per_s, pool.generation_tok_per_s]
        tok_per_s = pool.prompt_tok_per_s.value + pool.generation_tok_per_s.value
    return Metrics(
        rps=pool.request_rate_rps.value,
        tok_per_s=tok_per_s,
        age_s=max(sample.age_s for sample in used),
    )


ConditionStatus = Literal["True", "False", "Unknown"]
METRICS_AVAILABLE = "MetricsAvailable"
RESIZE_RECOMMENDED = "ResizeRecommended"


def metrics_condition(
    snapshot: MetricsSnapshot, expected_pools: Sequence[str]
) -> tuple[ConditionStatus, str, str]:
    """The `MetricsAvailable` condition as (status, reason, message) for the planned pools."""
    if not snapshot.reachable:
        return "False", "PrometheusUnreachable", f"Prometheus did not answer: {snapshot.error}"
    required = [f"{pool}/{name}" for pool in expected_pools for name in REQUIRED_POOL_METRICS]
    stale = [key for key in required if key in snapshot.stale]
    missing = [key for key in required if key in snapshot.missing]
    if missing:
        return "False", "MetricsMissing", f"no series for {', '.join(missing)}"
    if stale:
        return "False", "MetricsStale", f"series too old: {', '.join(stale)}"
    optional = [k for k in (*snapshot.missing, *snapshot.stale) if k not in required]
    note = f"; not available: {', '.join(optional)}" if optional else ""
    return "True", "MetricsFresh", f"all required series present{note}"


# --- thresholds -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Thresholds:
    """The guide's table (section 9.3) and step-13 trigger, each overridable by spec key.

    Percentages are percent (0-100); `None` disables a check that has no universal default.
    """

    gpu_memory_low_percent: float = 70.0
    gpu_memory_high_percent: float = 95.0
    compute_low_percent: float = 60.0
    compute_saturated_percent: float = 95.0
    kv_cache_high_percent: float = 90.0
    preemption_warning_percent: float = 5.0
    preemption_degraded_percent: float = 20.0
    fleet_utilization_trap_percent: float = 40.0
    fleet_utilization_no_headroom_percent: float = 90.0
    queue_depth_per_replica_max: float = 1.0
    prefix_cache_hit_low_percent: float = 30.0
    spec_decode_acceptance_low_percent: float = 50.0
    adapter_hit_low_percent: float = 60.0
    tokens_per_gpu_hour_min: float | None = None
    resize_ttft_above_percent: float = 30.0
    resize_ttft_clear_percent: float = 15.0
    resize_gpu_util_below_points: float = 20.0
    resize_gpu_util_clear_points: float = 10.0
    # Over-sized: the day's peak request rate below this share of the planned peak.
    resize_peak_below_percent: float = 50.0
    resize_peak_clear_percent: float = 70.0
    resize_fire_after_s: float = 1800.0
    resize_clear_after_s: float = 3600.0


# spec.monitoring.thresholds key -> Thresholds field. Keys are camelCase like the rest of the API.
THRESHOLD_KEYS: Mapping[str, str] = {
    "gpuMemoryLowPercent": "gpu_memory_low_percent",
    "gpuMemoryHighPercent": "gpu_memory_high_percent",
    "computeLowPercent": "compute_low_percent",
    "computeSaturatedPercent": "compute_saturated_percent",
    "kvCacheHighPercent": "kv_cache_high_percent",
    "preemptionWarningPercent": "preemption_warning_percent",
    "preemptionDegradedPercent": "preemption_degraded_percent",
    "fleetUtilizationTrapPercent": "fleet_utilization_trap_percent",
    "fleetUtilizationNoHeadroomPercent": "fleet_utilization_no_headroom_percent",
    "queueDepthPerReplicaMax": "queue_depth_per_replica_max",
    "prefixCacheHitLowPercent": "prefix_cache_hit_low_percent",
    "specDecodeAcceptanceLowPercent": "spec_decode_acceptance_low_percent",
    "adapterHitLowPercent": "adapter_hit_low_percent",
    "tokensPerGPUHourMin": "tokens_per_gpu_hour_min",
    "resizeTTFTAbovePercent": "resize_ttft_above_percent",
    "resizeTTFTClearPercent": "resize_ttft_clear_percent",
    "resizeGPUUtilBelowPoints": "resize_gpu_util_below_points",
    "resizeGPUUtilClearPoints": "resize_gpu_util_clear_points",
    "resizePeakBelowPercent": "resize_peak_below_percent",
    "resizePeakClearPercent": "resize_peak_clear_percent",
    "resizeFireAfterSeconds": "resize_fire_after_s",
    "resizeClearAfterSeconds": "resize_clear_after_s",
}

# (lower, upper) pairs that must stay ordered after overrides, or the bands make no sense.
_ORDERED = (
    ("gpu_memory_low_percent", "gpu_memory_high_percent"),
    ("compute_low_percent", "compute_saturated_percent"),
    ("preemption_warning_percent", "preemption_degraded_percent"),
    ("fleet_utilization_trap_percent", "fleet_utilization_no_headroom_percent"),
    ("resize_ttft_clear_percent", "resize_ttft_above_percent"),
    ("resize_gpu_util_clear_points", "resize_gpu_util_below_points"),
    ("resize_peak_below_percent", "resize_peak_clear_percent"),
)


def resolve_thresholds(overrides: Mapping[str, str]) -> Thresholds:
    """Defaults with `spec.monitoring.thresholds` applied; unknown keys and bad bands raise."""
    unknown = sorted(set(overrides) - set(THRESHOLD_KEYS))
    if unknown:
        raise InvalidInput(
            f"spec.monitoring.thresholds: unknown key(s) {', '.join(unknown)}; "
            f"valid keys are {', '.join(THRESHOLD_KEYS)}"
        )
    values = {THRESHOLD_KEYS[key]: parse_decimal(text) for key, text in overrides.items()}
    thresholds = replace(Thresholds(), **values)
    for low, high in _ORDERED:
        if getattr(thresholds, low) > getattr(thresholds, high):
            raise InvalidInput(
                f"spec.monitoring.thresholds: {_key_of(low)} ({getattr(thresholds, low):g}) must "
                f"not exceed {_key_of(high)} ({getattr(thresholds, high):g})"
            )
    return thresholds


def _key_of(field_name: str) -> str:
    return next(key for key, name in THRESHOLD_KEYS.items() if name == field_name)


# --- findings -------------------------------------------------------------------------------


def _value(sample: Sample | None) -> float | None:
    return None if sample is None else sample.value


def _pct(x: float) -> str:
    return f"{x:.1f}%"


def _finding(
    metric: str, severity: Severity, observed: str, threshold: str, advice: str, pool: str
) -> Finding:
    return Finding(
        metric=metric,
        severity=severity,
        observed=observed,
        threshold=threshold,
        advice=advice,
        pool=pool,
    )


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def fleet_utilization_percent(metrics: PoolMetrics, usable_rps_per_replica: float) -> float | None:
    """Served req/s over the capacity of the replicas actually reporting, in percent."""
    replicas = _value(metrics.replicas_reporting)
    capacity = None if replicas is None else replicas * usable_rps_per_replica
    ratio = _ratio(_value(metrics.request_rate_rps), capacity)
    return None if ratio is None else 100.0 * ratio


def _memory_findings(m: PoolMetrics, t: Thresholds) -> list[Finding]:
    used, free = _value(m.fb_used_mib), _value(m.fb_free_mib)
    share = _ratio(used, None if used is None or free is None else used + free)
    if share is None:
        return []
    observed = 100.0 * share
    if observed > t.gpu_memory_high_percent:
        return [
            _finding(
                "gpuMemoryUtilization",
                "warning",
                _pct(observed),
                f"<= {_pct(t.gpu_memory_high_percent)}",
                "GPU memory is nearly full: a traffic spike risks out-of-memory; lower "
                "gpuMemoryUtilization or give each replica more memory.",
                m.pool,
            )
        ]
    if observed < t.gpu_memory_low_percent:
        return [
            _finding(
                "gpuMemoryUtilization",
                "info",
                _pct(observed),
                f">= {_pct(t.gpu_memory_low_percent)}",
                "GPU memory is mostly idle: the pool is over-provisioned on memory; a smaller "
                "GPU or a denser packing would serve the same traffic.",
                m.pool,
            )
        ]
    return []


def _compute_findings(m: PoolMetrics, ttft_violated: bool, t: Thresholds) -> list[Finding]:
    util = _value(m.gpu_util_percent)
    running = _value(m.requests_running)
    if util is None or not running:
        return []  # the guide's band applies only during active serving
    if util >= t.compute_saturated_percent and ttft_violated:
        return [
            _finding(
                "gpuComputeUtilization",
                "warning",
                _pct(util),
                f"< {_pct(t.compute_saturated_percent)} while TTFT violates the SLO",
                "Compute is pegged and TTFT is rising: prefill-bound and saturated; enable "
                "chunked prefill or split prefill and decode.",
                m.pool,
            )
        ]
    if util < t.compute_low_percent:
        return [
            _finding(
                "gpuComputeUtilization",
                "info",
                _pct(util),
                f">= {_pct(t.compute_low_percent)}",
                "Compute is low while requests run: batches are small or decode-bound; larger "
                "batches would serve more per GPU.",
                m.pool,
            )
        ]
    return []


def _kv_findings(m: PoolMetrics, t: Thresholds) -> list[Finding]:
    kv = _value(m.kv_cache_usage_ratio)
    if kv is None or 100.0 * kv <= t.kv_cache_high_percent:
        return []
    return [
        _finding(
            "kvCacheUtilization",
            "warning",
            _pct(100.0 * kv),
            f"<= {_pct(t.kv_cache_high_percent)}",
            "The KV cache is close to its ceiling: quantize the KV cache (fp8), offload it, or "
            "add replicas before it becomes the bottleneck.",
            m.pool,
        )
    ]


def _preemption_findings(m: PoolMetrics, t: Thresholds) -> list[Finding]:
    ratio = _ratio(_value(m.preemptions_per_s), _value(m.request_rate_rps))
    if ratio is None or 100.0 * ratio < t.preemption_warning_percent:
        return []
    degraded = 100.0 * ratio > t.preemption_degraded_percent
    return [
        _finding(
            "kvCacheEvictionRate",
            "critical" if degraded else "warning",
            _pct(100.0 * ratio),
            f"< {_pct(t.preemption_warning_percent)}",
            (
                "Over a fifth of requests are preempted: the KV budget is far too small and "
                "it shows as latency; add memory per replica or replicas now."
                if degraded
                else "Requests are being preempted: the KV budget is undersized for the "
                "current traffic; re-size before it cascades into latency."
            ),
            m.pool,
        )
    ]


def _utilization_findings(
    m: PoolMetrics, usable_rps_per_replica: float | None, t: Thresholds
) -> list[Finding]:
    if usable_rps_per_replica is None:
        return []
    util = fleet_utilization_percent(m, usable_rps_per_replica)
    if util is None:
        return []
    if util < t.fleet_utilization_trap_percent:
        return [
            _finding(
                "fleetUtilization",
                "warning",
                _pct(util),
                f">= {_pct(t.fleet_utilization_trap_percent)}",
                "Utilization trap: most paid GPU time is idle; scale down faster, fill "
                "off-peak hours with batch work, or share the GPUs.",
                m.pool,
            )
        ]
    if util > t.fleet_utilization_no_headroom_percent:
        return [
            _finding(
                "fleetUtilization",
                "warning",
                _pct(util),
                f"<= {_pct(t.fleet_utilization_no_headroom_percent)}",
                "No headroom left for a spike: add replicas, or quantize to move the "
                "latency knee to a higher load.",
                m.pool,
            )
        ]
    return []


def _latency_findings(
    m: PoolMetrics, name: str, p50: Sample | None, p99: Sample | None, slo_s: float | None
) -> list[Finding]:
    if slo_s is None or p99 is None or p99.value <= slo_s:
        return []
    both = p50 is not None and p50.value > slo_s
    advice = {
        ("ttft", False): "P99 TTFT misses the SLO while P50 is fine: queueing or prefill "
        "interference lengthens the tail; check queue depth and chunked prefill.",
        ("ttft", True): "Both P50 and P99 TTFT miss the SLO: the fleet is undersized or the "
        "workload moved beyond the benchmark; re-size from observed traffic.",
        ("itl", False): "P99 inter-token latency spikes: prefill interferes with decode; try "
        "chunked prefill.",
        ("itl", True): "Inter-token latency is high at every percentile: decode batches are "
        "too large or the decode hardware is too small.",
    }[(name, both)]
    return [
        _finding(
            f"{name}P99",
            "critical" if both else "warning",
            f"{p99.value:.3f}s",
            f"<= {slo_s:g}s",
            advice,
            m.pool,
        )
    ]


def _queue_findings(m: PoolMetrics, t: Thresholds) -> list[Finding]:
    per_replica = _ratio(_value(m.requests_waiting), _value(m.replicas_reporting))
    if per_replica is None or per_replica <= t.queue_depth_per_replica_max:
        return []
    return [
        _finding(
            "queueDepth",
            "warning",
            f"{per_replica:.1f} per replica",
            f"<= {t.queue_depth_per_replica_max:g} per replica",
            "Requests are queueing faster than they are served: the pool is undersized "
            "for the current load.",
            m.pool,
        )
    ]


def _ratio_floor_finding(
    m: PoolMetrics, metric: str, sample: Sample | None, floor_percent: float, advice: str
) -> list[Finding]:
    if sample is None or 100.0 * sample.value >= floor_percent:
        return []
    return [
        _finding(
            metric,
            "warning",
            _pct(100.0 * sample.value),
            f">= {_pct(floor_percent)}",
            advice,
            m.pool,
        )
    ]


def _tokens_per_gpu_hour_findings(
    m: PoolMetrics, gpus_per_replica: int | None, t: Thresholds
) -> list[Finding]:
    if t.tokens_per_gpu_hour_min is None or gpus_per_replica is None:
        return []
    replicas = _value(m.replicas_reporting)
    gpus = None if replicas is None else replicas * gpus_per_replica
    per_gpu_s = _ratio(_value(m.generation_tok_per_s), gpus)
    if per_gpu_s is None or per_gpu_s * 3600.0 >= t.tokens_per_gpu_hour_min:
        return []
    return [
        _finding(
            "tokensPerGPUHour",
            "info",
            f"{per_gpu_s * 3600.0:.0f}",
            f">= {t.tokens_per_gpu_hour_min:.0f}",
            "Output per GPU-hour is below target: quantization, batching, KV efficiency or "
            "utilization has slipped; the other findings say which.",
            m.pool,
        )
    ]


def evaluate(
    snapshot: MetricsSnapshot,
    spec: InferenceFleetSpec,
    plan: PlanStatus | None,
    thresholds: Thresholds,
) -> tuple[Finding, ...]:
    """Findings for every pool in the snapshot, worst first; empty when all is in band."""
    ttft_slo_s = parse_duration_s(spec.slo.ttft_p99)
    itl_slo_s = parse_duration_s(spec.slo.itl_p99) if spec.slo.itl_p99 else None
    planned = {p.pool: p for p in plan.pools} if plan else {}
    out: list[Finding] = []
    for m in snapshot.pools:
        pool_plan = planned.get(m.pool)
        usable = parse_decimal(pool_plan.usable_rps_per_replica) if pool_plan else None
        gpus_per_replica = (
            pool_plan.tensor_parallel * pool_plan.pipeline_parallel if pool_plan else None
        )
        ttft = _latency_findings(m, "ttft", m.ttft_p50_s, m.ttft_p99_s, ttft_slo_s)
        out += ttft
        out += _latency_findings(m, "itl", m.itl_p50_s, m.itl_p99_s, itl_slo_s)
        out += _kv_findings(m, thresholds)
        out += _preemption_findings(m, thresholds)
        out += _queue_findings(m, thresholds)
        out += _utilization_findings(m, usable, thresholds)
        out += _memory_findings(m, thresholds)
        out += _compute_findings(m, bool(ttft), thresholds)
        if spec.workload.prefix_share is not None:  # reuse is known, so a low hit rate is a bug
            out += _ratio_floor_finding(
                m,
                "prefixCacheHitRate",
                m.prefix_cache_hit_ratio,
                thresholds.prefix_cache_hit_low_percent,
                "Prefix reuse is expected but rarely hits: check prefix-aware routing, or "
                "the cache is too small.",
            )
        out += _ratio_floor_finding(
            m,
            "specDecodeAcceptanceRate",
            m.spec_decode_acceptance_ratio,
            thresholds.spec_decode_acceptance_low_percent,
            "The draft model rarely guesses right for this traffic: speculative decoding "
            "costs more than it saves; retune or disable it.",
        )
        out += _ratio_floor_finding(
            m,
            "adapterHitRate",
            m.lora_adapter_hit_ratio,
            thresholds.adapter_hit_low_percent,
            "Too many adapters compete for GPU slots: raise maxLoras or lower the rank.",
        )
        out += _tokens_per_gpu_hour_findings(m, gpus_per_replica, thresholds)
    order = {"critical": 0, "warning": 1, "info": 2}
    return tuple(sorted(out, key=lambda f: (order[f.severity], f.pool or "", f.metric)))


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


def observed_workload(snapshot: MetricsSnapshot, spec: InferenceFleetSpec) -> dict[str, Any]:
    """The `spec.workload` fields as Prometheus saw them (camelCase, ready to patch in)."""
    w = snapshot.workload
    current = spec.workload
    peak = _value(w.peak_request_rate_rps)
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
    }


def observed_spec(snapshot: MetricsSnapshot, spec: InferenceFleetSpec) -> InferenceFleetSpec:
    """The current spec with its workload replaced by the observed one (validated again)."""
    data = spec.model_dump(by_alias=True, exclude_none=True)
    data["workload"].update(observed_workload(snapshot, spec))
    return InferenceFleetSpec.model_validate(data)


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
    current: PlanStatus, proposed: PlanStatus, workload: Mapping[str, Any], reason: str
) -> dict[str, Any]:
    """`status.recommendation`: both plans, the difference, and the merge patch to accept it.

    `workload` is `observed_workload(...)`; `accept` is a ready `kubectl patch --type merge`.
    """
    cost_delta = parse_decimal(proposed.cost_per_month) - parse_decimal(current.cost_per_month)
    return {
        "reason": reason,
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
) -> dict[str, Any]:
    """`status.recommendation` in one call: re-plan the observed workload and diff the plans.

    Raises `sizing.errors.SizingError` when the observed workload cannot be served at all;
    that is itself the answer to report (e.g. prompts outgrew every pool).
    """
    proposed = plan_status(plan_spec(observed_spec(snapshot, spec), hf_config))
    return recommendation(current, proposed, observed_workload(snapshot, spec), reason)
