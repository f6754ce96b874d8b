"""Findings: the snapshot against the thresholds. No finding is raised on what was not seen."""

from __future__ import annotations

from controllers.api.v1alpha1 import (
    Finding,
    InferenceFleetSpec,
    PlanStatus,
    PoolPlanStatus,
    Severity,
    parse_decimal,
    parse_duration_s,
)
from controllers.policy.monitoring.snapshot import MetricsSnapshot, PoolMetrics, Sample, value_of
from controllers.policy.monitoring.thresholds import Thresholds

# --- findings -------------------------------------------------------------------------------


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
    replicas = value_of(metrics.replicas_reporting)
    capacity = None if replicas is None else replicas * usable_rps_per_replica
    ratio = _ratio(value_of(metrics.request_rate_rps), capacity)
    return None if ratio is None else 100.0 * ratio


def _memory_findings(m: PoolMetrics, t: Thresholds) -> list[Finding]:
    used, free = value_of(m.fb_used_mib), value_of(m.fb_free_mib)
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
    util = value_of(m.gpu_util_percent)
    running = value_of(m.requests_running)
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
    kv = value_of(m.kv_cache_usage_ratio)
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
    ratio = _ratio(value_of(m.preemptions_per_s), value_of(m.request_rate_rps))
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
    per_replica = _ratio(value_of(m.requests_waiting), value_of(m.replicas_reporting))
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
    replicas = value_of(m.replicas_reporting)
    gpus = None if replicas is None else replicas * gpus_per_replica
    per_gpu_s = _ratio(value_of(m.generation_tok_per_s), gpus)
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


def expected_rps_per_replica(pool_plan: PoolPlanStatus) -> float:
    """What a replica is predicted to serve: the band's median where the plan has one (the
    plan sizes on a low quantile, so utilization against that would read high)."""
    band = pool_plan.usable_rps_band
    return parse_decimal(band.p50 if band else pool_plan.usable_rps_per_replica)


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
        usable = expected_rps_per_replica(pool_plan) if pool_plan else None
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
