"""The metrics snapshot the Prometheus adapter fills and the policy reads; MetricsAvailable.

A missing or stale value is unknown, never zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

from controllers.api.conditions import Status as ConditionStatus
from controllers.policy.scaling.capacity import LoadSample
from controllers.policy.scaling.policy import Metrics

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
    request_duration_p99_s: Sample | None = None  # over the workload window: the drain's bound
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
# The request rate is what the scaler divides by capacity: without it the scaler is blind.
REQUIRED_POOL_METRICS = (
    "requests_running",
    "requests_waiting",
    "kv_cache_usage_ratio",
    "request_rate_rps",
)


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
    # Why an unreachable snapshot has nothing: PrometheusUnreachable (no answer, 5xx),
    # PrometheusReplyInvalid (an error reply or one of another shape), PrometheusNotAllowed.
    fault: str = "PrometheusUnreachable"
    pools: tuple[PoolMetrics, ...] = ()
    workload: WorkloadMetrics = WorkloadMetrics()
    missing: tuple[str, ...] = ()
    stale: tuple[str, ...] = ()

    def pool(self, name: str) -> PoolMetrics | None:
        return next((p for p in self.pools if p.pool == name), None)


def load_sample(pool: PoolMetrics) -> LoadSample:
    """What the pool's replicas report, for measured capacity and the SLO guard."""
    ready = value_of(pool.replicas_reporting)
    gpu = value_of(pool.gpu_util_percent)
    return LoadSample(
        ready=None if ready is None else round(ready),
        served_rps=value_of(pool.request_rate_rps),
        prompt_tok_per_s=value_of(pool.prompt_tok_per_s),
        gen_tok_per_s=value_of(pool.generation_tok_per_s),
        waiting=value_of(pool.requests_waiting),
        running=value_of(pool.requests_running),
        kv_usage_ratio=value_of(pool.kv_cache_usage_ratio),
        ttft_p99_s=value_of(pool.ttft_p99_s),
        itl_p99_s=value_of(pool.itl_p99_s),
        gpu_busy_ratio=None if gpu is None else gpu / 100,
    )


def scaling_metrics(pool: PoolMetrics | None) -> Metrics:
    """The scaling policy's input for one pool: req/s, tokens/s, what the replicas report,
    and the oldest age used."""
    if pool is None or pool.request_rate_rps is None:
        return Metrics(rps=None, load=None if pool is None else load_sample(pool))
    used = [pool.request_rate_rps]
    tok_per_s = None
    if pool.prompt_tok_per_s is not None and pool.generation_tok_per_s is not None:
        used += [pool.prompt_tok_per_s, pool.generation_tok_per_s]
        tok_per_s = pool.prompt_tok_per_s.value + pool.generation_tok_per_s.value
    return Metrics(
        rps=pool.request_rate_rps.value,
        tok_per_s=tok_per_s,
        age_s=max(sample.age_s for sample in used),
        load=load_sample(pool),
    )


def metrics_condition(
    snapshot: MetricsSnapshot, expected_pools: Sequence[str]
) -> tuple[ConditionStatus, str, str]:
    """The `MetricsAvailable` condition as (status, reason, message) for the planned pools."""
    if not snapshot.reachable:
        return "False", snapshot.fault, f"no usable answer from Prometheus: {snapshot.error}"
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


def value_of(sample: Sample | None) -> float | None:
    return None if sample is None else sample.value
