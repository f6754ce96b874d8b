"""The 13-step sizing algorithm (field guide section 9.1), every decision with its reason.

`plan_fleet` evaluates each allowed GPU pool (steps 4-12 per pool: precision, memory floor,
parallelism, KV strategy, batching, load curve and C_max, fleet size, cost), then fills the
cheapest pools first within their GPU limits (a heterogeneous fleet when one pool is too
small). Steps that need a running fleet (13) are stated as what the operator will watch.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial

from sizing.curve import Capacity, find_capacity, replica_engine
from sizing.error_bands import DEFAULT_CAPACITY_QUANTILE, curve_regimes, ratio_at
from sizing.errors import ModelDoesNotFit, NoPoolFits
from sizing.fleet import circuit_breaker_queue_depth, size_fleet
from sizing.hardware import GPU, cold_start_s
from sizing.memory import EngineConfig, MemoryBreakdown, estimate_memory
from sizing.model import ModelArch
from sizing.parallelism import allreduce_overhead, parallel_candidates, pipeline_bubble
from sizing.performance import DEFAULT_EFFICIENCY, Efficiency
from sizing.precision import choose_precision
from sizing.serving import choose_batching, choose_kv_strategy
from sizing.tco import DEFAULT_UTILIZATION, fleet_cost
from sizing.units import GB, GIB
from sizing.workload import Workload, WorkloadProfile, profile_workload

# vLLM refuses to start unless the KV cache holds at least one request of max_model_len.
MIN_REQUESTS_AT_MAX_LEN = 1.0


@dataclass(frozen=True)
class PoolRequest:
    name: str
    gpu: GPU
    max_gpus: int | None = None
    cost_per_gpu_hour_usd: float | None = None
    storage: str = "object-store"
    cold_start_s: float | None = None

    @property
    def price_usd(self) -> float:
        if self.cost_per_gpu_hour_usd is not None:
            return self.cost_per_gpu_hour_usd
        return self.gpu.cost_per_gpu_hour_usd


@dataclass(frozen=True)
class FleetRequest:
    """Everything the plan needs, already parsed and in SI units."""

    arch: ModelArch
    workload: Workload
    ttft_slo_s: float
    itl_slo_s: float | None
    pools: tuple[PoolRequest, ...]
    engine: EngineConfig = field(default_factory=EngineConfig)
    quantization: str = "auto"
    method: str = "vllm"
    measured_usable_rps: float | None = None
    max_replicas: int | None = None
    max_num_seqs: int | None = None  # user overrides; the batching step chooses otherwise
    max_num_batched_tokens: int | None = None
    enable_prefix_caching: bool = True
    efficiency: Efficiency = DEFAULT_EFFICIENCY  # from `inferfleet bench --calibrate`
    # Quantile of the model's measured residuals the fleet is sized on (low = conservative).
    capacity_quantile: float = DEFAULT_CAPACITY_QUANTILE


@dataclass(frozen=True)
class Step:
    number: int
    title: str
    decision: str
    reason: str


@dataclass(frozen=True)
class PoolOption:
    """One pool evaluated on its own: does it fit, with what, and at what cost."""

    pool: PoolRequest
    fits: bool
    why_not: str = ""
    quantization: str = ""
    engine: EngineConfig | None = None
    memory: MemoryBreakdown | None = None
    capacity: Capacity | None = None
    usable_rps: float = 0.0  # what the fleet is sized on
    # The model's p10 / p50 / p90 of usable req/s (measured residuals in C_max's regime).
    usable_rps_band: tuple[float, float, float] = (0.0, 0.0, 0.0)
    band_regime: str = ""
    gpus_per_replica: int = 0
    cold_start_s: float = 0.0
    cost_per_million_tokens_usd: float = math.inf
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class PoolAllocation:
    option: PoolOption
    replicas: int
    min_warm: int
    reason: str  # the fleet-size arithmetic for this pool (step 11)

    @property
    def gpus(self) -> int:
        return self.replicas * self.option.gpus_per_replica

    @property
    def cost_per_hour_usd(self) -> float:
        return self.gpus * self.option.pool.price_usd


@dataclass(frozen=True)
class SizingPlan:
    steps: tuple[Step, ...]
    options: tuple[PoolOption, ...]
    allocations: tuple[PoolAllocation, ...]
    profile: WorkloadProfile
    cost_per_hour_usd: float
    cost_per_month_usd: float
    cost_per_million_tokens_usd: float
    utilization: float
    circuit_breaker_queue: int
    checkpoint_format: str  # e.g. "bf16", or the pre-quantized checkpoint's "fp8"

    @property
    def total_gpus(self) -> int:
        return sum(a.gpus for a in self.allocations)

    @property
    def total_replicas(self) -> int:
        return sum(a.replicas for a in self.allocations)

    def fingerprint(self) -> str:
        """A short hash of what would be deployed: changes exactly when a Deployment would."""
        parts = []
        for a in self.allocations:
            e = a.option.engine
            assert e is not None
            parts.append(
                f"{a.option.pool.name}:{a.option.quantization}:{e.kv_cache_dtype}:{e.tp}:{e.pp}:"
                f"{e.max_model_len}:{e.max_num_seqs}:{e.max_num_batched_tokens}:"
                f"{e.gpu_memory_utilization}:{a.replicas}"
            )
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:12]


CapacityFn = Callable[..., Capacity]


def memoized(capacity_fn: CapacityFn) -> CapacityFn:
    """The same capacity function with its own cache, for callers that re-plan often.

    A load-curve search simulates dozens of load points; an operator re-planning unchanged or
    similar fleets (same model, GPU and settings) should pay for it once. The cache belongs to
    the returned function, so whoever creates it decides its lifetime.
    """
    cache: dict[tuple, Capacity] = {}

    def cached(arch, gpu, cfg, memory, prompt, output, ttft_slo_s, itl_slo_s) -> Capacity:
        key = (arch, gpu.name, cfg, memory, prompt, output, ttft_slo_s, itl_slo_s)
        if key not in cache:
            cache[key] = capacity_fn(arch, gpu, cfg, memory, prompt, output, ttft_slo_s, itl_slo_s)
        return cache[key]

    return cached


def _fit_engine(
    arch: ModelArch, pool: PoolRequest, base: EngineConfig, quantization: str, method: str
) -> tuple[EngineConfig, MemoryBreakdown] | tuple[None, str]:
    """The lowest TP x PP at which weights and one full-length request fit (step 6)."""
    refusal = pool.gpu.startup_refusal(base.gpu_memory_utilization)
    if refusal:  # no layout helps: vLLM stops before it loads anything
        return None, refusal.replace("gpu_memory_utilization", "serving.gpuMemoryUtilization")
    candidates, rejected = parallel_candidates(
        arch.num_attention_heads, arch.num_kv_heads, pool.gpu, pool.max_gpus
    )
    tried = []
    for tp, pp in candidates:
        cfg = replace(base, tp=tp, pp=pp, quantization=quantization)
        memory = estimate_memory(arch, pool.gpu, cfg, method=method)
        needed_tokens = MIN_REQUESTS_AT_MAX_LEN * memory.max_model_len
        if memory.fits and memory.kv_cache_tokens >= needed_tokens:
            return cfg, memory
        per_gpu_need = memory.weights_gib + memory.activation_gib + memory.non_torch_gib
        tried.append(
            f"TP{tp}xPP{pp}: needs {per_gpu_need:.1f} GiB/GPU before KV, "
            f"{memory.usable_gib:.1f} GiB usable"
        )
    why = "; ".join(tried[-2:] or rejected[:2]) or "no parallel layout is allowed"
    return None, why


def evaluate_pool(
    request: FleetRequest, profile: WorkloadProfile, pool: PoolRequest, capacity_fn: CapacityFn
) -> PoolOption:
    """Steps 4-12 for one pool."""
    arch, workload = request.arch, request.workload
    precision = choose_precision(request.quantization, arch.checkpoint_quantization, pool.gpu)
    base = replace(request.engine, max_model_len=profile.max_model_len)
    fitted = None
    failures = []
    for quant in precision.options:
        engine, memory_or_why = _fit_engine(arch, pool, base, quant, request.method)
        if engine is not None:
            fitted = (quant, engine, memory_or_why)
            break
        failures.append(f"{quant}: {memory_or_why}")
    if fitted is None:
        return PoolOption(pool, False, why_not="; ".join(failures))
    quant, engine, memory = fitted
    assert isinstance(memory, MemoryBreakdown)
    mean_tokens = workload.prompt.mean_estimate + workload.output.mean_estimate
    step_model, _ = replica_engine(arch, pool.gpu, engine, memory, request.efficiency)

    def prefill_step_s(tokens: int) -> float:
        return step_model.step_time_s(1, tokens, tokens, tokens * (tokens + 1) / 2)

    batching = choose_batching(
        memory.kv_cache_tokens,
        mean_tokens,
        profile.max_model_len,
        request.itl_slo_s,
        request.max_num_seqs,
        request.max_num_batched_tokens,
        prefill_step_s,
    )
    engine = replace(
        engine,
        max_num_seqs=batching.max_num_seqs,
        max_num_batched_tokens=batching.max_num_batched_tokens,
    )
    memory = estimate_memory(arch, pool.gpu, engine, method=request.method)
    capacity = capacity_fn(
        arch,
        pool.gpu,
        engine,
        memory,
        workload.prompt,
        workload.output,
        request.ttft_slo_s,
        request.itl_slo_s,
    )
    band, regime = usable_band(capacity)
    if request.measured_usable_rps:
        usable = request.measured_usable_rps
    else:
        usable = capacity.usable_rps * ratio_at(
            regime, "output_tok_per_s", request.capacity_quantile
        )
    if usable <= 0:
        return PoolOption(
            pool,
            False,
            why_not=f"cannot meet TTFT P99 {request.ttft_slo_s:g} s even at concurrency 1",
        )
    gpus_per_replica = engine.tp * engine.pp
    weights_gb = memory.weights_gib * GIB / GB * gpus_per_replica
    start_s = pool.cold_start_s or cold_start_s(weights_gb, pool.storage)
    tok_per_replica = usable * mean_tokens
    cost = fleet_cost(gpus_per_replica, pool.price_usd, tok_per_replica, 1.0, "at capacity")
    kv = choose_kv_strategy(
        memory.kv_cache_tokens,
        profile.max_model_len,
        engine.kv_cache_dtype,
        request.enable_prefix_caching,
        workload.prefix_share,
        kv_limits_c_max=capacity.limited_by == "kv_cache",
    )
    notes = (
        precision.reason,
        kv.reason,
        batching.reason,
        f"all-reduce ≈ {allreduce_overhead(engine.tp, pool.gpu.interconnect.kind):.0%} of step "
        f"time on {pool.gpu.interconnect.kind}"
        + (
            f"; PP bubble {pipeline_bubble(engine.pp, max(1, capacity.c_max)):.0%}"
            if engine.pp > 1
            else ""
        ),
    )
    return PoolOption(
        pool,
        True,
        quantization=quant,
        engine=engine,
        memory=memory,
        capacity=capacity,
        usable_rps=usable,
        usable_rps_band=band,
        band_regime=regime,
        gpus_per_replica=gpus_per_replica,
        cold_start_s=start_s,
        cost_per_million_tokens_usd=cost.cost_per_million_tokens_usd,
        notes=notes,
    )


def _band_reason(option: PoolOption, quantile: float) -> str:
    low, mid, high = option.usable_rps_band
    return (
        f"; sized on the P{100 * quantile:.0f} of the model's measured error: predicted "
        f"{option.capacity.usable_rps if option.capacity else 0:.2f} req/s, band P10 {low:.2f} / "
        f"P50 {mid:.2f} / P90 {high:.2f} req/s ({option.band_regime} regime: its throughput "
        "residual on measured benchmarks dominates the uncertainty)"
    )


def usable_band(capacity: Capacity) -> tuple[tuple[float, float, float], str]:
    """Usable req/s at the p10 / p50 / p90 of the model's measured residuals in the regime
    C_max falls in (the prediction times measured/predicted quantiles), and that regime."""
    points = capacity.points
    regimes = curve_regimes(
        [p.concurrency or 0 for p in points],
        [p.output_tok_per_s for p in points],
        [p.preemptions > 0 or p.kv_blocked_steps > 0 for p in points],
    )
    at_c_max = [r for p, r in zip(points, regimes, strict=True) if p.concurrency == capacity.c_max]
    regime = at_c_max[0] if at_c_max else "knee"
    band = tuple(
        capacity.usable_rps * ratio_at(regime, "output_tok_per_s", q) for q in (0.1, 0.5, 0.9)
    )
    return (band[0], band[1], band[2]), regime


def _allocate(
    options: list[PoolOption], peak_rps: float, headroom: float, average_rps: float | None
) -> list[PoolAllocation]:
    """Cheapest $/1M tokens first; spill to the next pool when a pool's GPU limit is reached."""
    allocations: list[PoolAllocation] = []
    remaining = peak_rps
    for option in sorted(options, key=lambda o: o.cost_per_million_tokens_usd):
        if remaining <= 0:
            break
        fleet = size_fleet(
            remaining,
            option.usable_rps,
            option.gpus_per_replica,
            headroom,
            average_rps=None if allocations else average_rps,
            cold_start_s=option.cold_start_s,
            spare_replicas=0 if allocations else 1,
        )
        limit = (
            option.pool.max_gpus // option.gpus_per_replica
            if option.pool.max_gpus
            else fleet.replicas
        )
        replicas = min(fleet.replicas, limit)
        if replicas <= 0:
            continue
        allocations.append(
            PoolAllocation(option, replicas, min(fleet.min_warm, replicas), fleet.reason)
        )
        if replicas >= fleet.replicas:
            remaining = 0
        else:
            remaining -= replicas * option.usable_rps / (1 + headroom)
    if remaining > 0:
        have = sum(a.replicas * a.option.usable_rps for a in allocations)
        raise NoPoolFits(
            f"the allowed pools hold {have:.1f} usable req/s within their maxGPUs, but peak "
            f"{peak_rps:g} req/s with {headroom:.0%} headroom needs "
            f"{peak_rps * (1 + headroom):.1f}; raise pools[].maxGPUs or add a pool"
        )
    return allocations


def plan_fleet(request: FleetRequest, capacity_fn: CapacityFn | None = None) -> SizingPlan:
    """Run the 13 steps. Raises ModelDoesNotFit / NoPoolFits with the numbers behind it.

    `capacity_fn` defaults to the simulated load curve with the request's efficiency factors.
    """
    if capacity_fn is None:
        capacity_fn = partial(find_capacity, efficiency=request.efficiency)
    arch, workload = request.arch, request.workload
    profile = profile_workload(workload, arch.max_position_embeddings)
    steps = [Step(1, "Workload profile", f"max_model_len {profile.max_model_len}", profile.reason)]
    gpus = ", ".join(f"{p.name}={p.gpu.name} (${p.price_usd:.2f}/GPU-h)" for p in request.pools)
    bottleneck = {
        "prefill-heavy": "TFLOPS matter most",
        "decode-heavy": "HBM bandwidth matters most",
        "balanced": "both TFLOPS and bandwidth matter",
    }[profile.archetype]
    steps.append(
        Step(
            2,
            "Hardware",
            f"compare {len(request.pools)} pool(s)",
            f"{profile.archetype} workload: {bottleneck}; allowed pools {gpus}",
        )
    )
    steps.append(
        Step(
            3,
            "Routing",
            "single fleet",
            "one model per InferenceFleet; route tiers to separate fleets, each sized on its own",
        )
    )
    options = [evaluate_pool(request, profile, pool, capacity_fn) for pool in request.pools]
    fitting = [o for o in options if o.fits]
    if not fitting:
        detail = " | ".join(f"{o.pool.name} ({o.pool.gpu.name}): {o.why_not}" for o in options)
        raise ModelDoesNotFit(f"{arch.name or 'model'} does not fit on any pool: {detail}")
    allocations = _allocate(fitting, workload.peak_rps, profile.headroom, workload.average_rps)
    if request.max_replicas is not None:
        total = sum(a.replicas for a in allocations)
        if total > request.max_replicas:
            raise NoPoolFits(
                f"the SLO at peak {workload.peak_rps:g} req/s needs {total} replicas, above "
                f"scaling.maxReplicas {request.max_replicas}; raise maxReplicas or the SLO"
            )
    best = allocations[0].option
    assert best.memory is not None and best.engine is not None and best.capacity is not None
    m, e, c = best.memory, best.engine, best.capacity
    steps.append(
        Step(
            4,
            "Memory floor",
            f"{m.weights_gib + m.activation_gib + m.non_torch_gib:.1f} GiB/GPU before KV",
            f"{request.method} method on {best.pool.gpu.name}: weights {m.weights_gib:.1f} + "
            f"activations {m.activation_gib:.1f} + non-torch {m.non_torch_gib:.1f} + LoRA "
            f"{m.lora_gib:.2f} GiB per GPU of {best.pool.gpu.memory_gib_reported:.1f} GiB × "
            f"{e.gpu_memory_utilization:.2f}"
            + (f" (vLLM {e.vllm_version} profiler)" if request.method == "vllm" else "")
            + ("; weights as the safetensors headers list them" if arch.checkpoint else ""),
        )
    )
    steps.append(Step(5, "Quantization", best.quantization, best.notes[0]))
    steps.append(
        Step(
            6,
            "Parallelism",
            f"TP {e.tp}, PP {e.pp}",
            f"lowest layout that holds weights + one {profile.max_model_len}-token request; "
            + best.notes[3],
        )
    )
    steps.append(
        Step(
            7,
            "Benchmark curve",
            f"C_max {c.c_max}, {best.usable_rps:.2f} req/s",
            f"TTFT P99 {c.ttft_p99_s:.2f} s (SLO {request.ttft_slo_s:g} s) at C_max, limited by "
            f"{c.limited_by}; Little's law ceiling {c.littles_law_rps:.2f} req/s, gap "
            f"{c.littles_law_gap:.2f}x"
            + (" (over 2x: check the inputs)" if c.littles_law_gap > 2 else "")
            + (
                "; usable req/s as measured (workload.usableRPSPerReplica)"
                if request.measured_usable_rps
                else _band_reason(best, request.capacity_quantile)
            ),
        )
    )
    steps.append(
        Step(8, "KV cache", f"{m.kv_cache_tokens:,} tokens, {e.kv_cache_dtype}", best.notes[1])
    )
    steps.append(
        Step(
            9,
            "Batching",
            f"max_num_seqs {e.max_num_seqs}, max_num_batched_tokens {e.max_num_batched_tokens}",
            best.notes[2],
        )
    )
    steps.append(
        Step(
            10,
            "Re-benchmark",
            "predicted curve with the final settings",
            "C_max and usable req/s above come from the final configuration; run `inferfleet "
            "bench` on a live replica and set workload.usableRPSPerReplica to use the measured",
        )
    )
    fleet_desc = ", ".join(
        f"{a.replicas} x {a.option.pool.name} (TP{a.option.engine.tp}) = {a.gpus} GPUs"
        for a in allocations
        if a.option.engine is not None
    )
    fleet_reason = allocations[0].reason
    if len(allocations) > 1:
        fleet_reason += f"; {best.pool.name} capped by maxGPUs, rest spills to the next pool"
    steps.append(Step(11, "Fleet size", fleet_desc, fleet_reason))
    per_hour = sum(a.cost_per_hour_usd for a in allocations)
    capacity_tok_s = sum(
        a.replicas
        * a.option.usable_rps
        * (workload.prompt.mean_estimate + workload.output.mean_estimate)
        for a in allocations
    )
    if workload.average_rps is not None:
        capacity_rps = sum(a.replicas * a.option.usable_rps for a in allocations)
        utilization = min(1.0, workload.average_rps / capacity_rps)
        source = f"average {workload.average_rps:g} req/s over {capacity_rps:.1f} req/s capacity"
    else:
        utilization, source = DEFAULT_UTILIZATION, "assumed; set averageRequestsPerSecond"
    total_gpus = sum(a.gpus for a in allocations)
    cost = fleet_cost(total_gpus, per_hour / total_gpus, capacity_tok_s, utilization, source)
    steps.append(
        Step(12, "TCO", f"${cost.cost_per_million_tokens_usd:.3f} per 1M tokens", cost.reason)
    )
    max_queue, trip_low, trip_high = circuit_breaker_queue_depth(
        request.ttft_slo_s, workload.peak_rps
    )
    steps.append(
        Step(
            13,
            "Validate in production",
            "watch vs plan",
            f"the operator compares TTFT P99, ITL P99, GPU and KV utilization with this plan "
            f"and recommends a re-size when TTFT P99 runs > 30 % above it or GPU utilization "
            f"> 20 points below; circuit breaker: queue ≤ {max_queue} (SLO × peak rate), "
            f"trip at {trip_low}-{trip_high}",
        )
    )
    return SizingPlan(
        steps=tuple(steps),
        options=tuple(options),
        allocations=tuple(allocations),
        profile=profile,
        cost_per_hour_usd=per_hour,
        cost_per_month_usd=cost.cost_per_month_usd,
        cost_per_million_tokens_usd=cost.cost_per_million_tokens_usd,
        utilization=utilization,
        circuit_breaker_queue=trip_high,
        checkpoint_format=arch.checkpoint_quantization or _short_dtype(arch.checkpoint_dtype),
    )


def _short_dtype(dtype: str) -> str:
    return {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}.get(dtype, dtype)
