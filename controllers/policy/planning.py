"""Spec to plan and plan to status: the bridge between the API types and the pure sizing core.

Pure: the caller resolves `hfConfig` (inline, from a ConfigMap, or by model name) and passes
the dict in, with the checkpoint's safetensors summary when it has one.
"""

from __future__ import annotations

import re
from dataclasses import replace

from controllers.api.engine_args import engine_extras
from controllers.api.v1alpha1 import (
    DEFAULT_VLLM_IMAGE,
    InferenceFleetSpec,
    PlanStatus,
    PlanStep,
    PoolPlanStatus,
    PoolSpec,
    UsableBand,
    parse_decimal,
    parse_duration_s,
)
from sizing.checkpoint import CheckpointWeights
from sizing.curve import Capacity
from sizing.errors import InvalidInput
from sizing.hardware import GPU, custom_gpu, get_gpu
from sizing.memory import EngineConfig
from sizing.model import load_model_config, with_checkpoint
from sizing.performance import Efficiency
from sizing.plan import CapacityFn, FleetRequest, PoolOption, PoolRequest, SizingPlan, plan_fleet
from sizing.workload import Percentiles, Workload

_DTYPES = {"auto": "auto", "bfloat16": "bfloat16", "float16": "float16", "float32": "float32"}


# vllm/vllm-openai:v0.11.0, ...:0.10.1.1, ...:v0.19.0-cu130: the release is the tag's X.Y.
_RELEASE_TAG = re.compile(r":v?(\d+)\.(\d+)(?:[.\-+][0-9A-Za-z.\-+]*)?$")


def release_of_image(image: str) -> str | None:
    """The vLLM release (MAJOR.MINOR) an image's tag names, or None (latest, nightly, a bare
    digest, a private tag): then `spec.engine.version` says it, or the chart's is assumed."""
    match = _RELEASE_TAG.search(image.split("@", 1)[0])
    return f"{match[1]}.{match[2]}" if match else None


DEFAULT_VLLM_RELEASE = release_of_image(DEFAULT_VLLM_IMAGE) or "0.19"


def engine_release(spec: InferenceFleetSpec) -> str:
    """The release whose profiler the memory model follows: engine.version, else the image
    tag's, else the release of the image the chart pins."""
    if spec.engine.version:
        parts = spec.engine.version.lstrip("v").split(".")
        release, where = f"{parts[0]}.{parts[1]}", f"spec.engine.version {spec.engine.version}"
    else:
        release = release_of_image(spec.model.image) or DEFAULT_VLLM_RELEASE
        where = f"spec.model.image {spec.model.image}"
    major, minor = (int(part) for part in release.split("."))
    if spec.sizing_method == "vllm" and (major, minor) < (0, 10):
        raise InvalidInput(
            f"{where}: vLLM {release} predates the V1 engine whose profiler sizingMethod vllm "
            "models (0.10 or newer); set spec.engine.version if the image runs a newer release, "
            "or use sizingMethod guide"
        )
    return release


def _percentiles(p) -> Percentiles:
    return Percentiles(p.p50, p.p95, p.p99)


def fleet_request(
    spec: InferenceFleetSpec, hf_config: dict, checkpoint: CheckpointWeights | None = None
) -> FleetRequest:
    """Translate the validated spec into the sizing core's typed request (units resolved)."""
    model = spec.model
    params_b = parse_decimal(model.parameter_count) if model.parameter_count else None
    arch = load_model_config(hf_config, params_b=params_b, name=model.name)
    if checkpoint is not None:
        arch = with_checkpoint(arch, checkpoint, keep_params=params_b is not None)
    w = spec.workload
    workload = Workload(
        prompt=_percentiles(w.prompt_tokens),
        output=_percentiles(w.output_tokens),
        peak_rps=parse_decimal(w.peak_requests_per_second),
        average_rps=(
            parse_decimal(w.average_requests_per_second) if w.average_requests_per_second else None
        ),
        max_model_len=w.max_model_len,
        predictability=w.predictability,
        prefix_share=parse_decimal(w.prefix_share) if w.prefix_share else None,
    )
    pools = tuple(
        PoolRequest(
            name=p.name,
            gpu=pool_gpu(p),
            max_gpus=p.max_gpus,
            cost_per_gpu_hour_usd=(
                parse_decimal(p.cost_per_gpu_hour) if p.cost_per_gpu_hour else None
            ),
            storage=p.storage,
            cold_start_s=parse_duration_s(p.cold_start) if p.cold_start else None,
        )
        for p in spec.pools
    )
    serving = spec.serving
    lora = model.lora
    extras = engine_extras(list(model.extra_args))
    engine = EngineConfig(
        dtype=_DTYPES[model.dtype],
        kv_cache_dtype=model.kv_cache_dtype,
        gpu_memory_utilization=parse_decimal(serving.gpu_memory_utilization),
        enforce_eager=serving.enforce_eager,
        vllm_version=engine_release(spec),
        mm_items_per_prompt=serving.limit_mm_per_prompt,
        max_loras=lora.max_loras if lora else 0,
        max_lora_rank=lora.max_lora_rank if lora else 16,
        lora_adapter_bytes=(
            lora.adapter_size_mib * 2**20 if lora and lora.adapter_size_mib else None
        ),
        mm_max_pixels=extras.mm_max_pixels,
        speculative_method=extras.speculative_method,
        num_speculative_tokens=extras.num_speculative_tokens,
        enable_prefix_caching=serving.enable_prefix_caching,
        mamba_cache_mode=extras.mamba_cache_mode,
    )
    return FleetRequest(
        arch=arch,
        workload=workload,
        ttft_slo_s=parse_duration_s(spec.slo.ttft_p99),
        itl_slo_s=parse_duration_s(spec.slo.itl_p99) if spec.slo.itl_p99 else None,
        pools=pools,
        engine=engine,
        quantization=model.quantization,
        method=spec.sizing_method,
        measured_usable_rps=(
            parse_decimal(w.usable_rps_per_replica) if w.usable_rps_per_replica else None
        ),
        max_replicas=spec.scaling.max_replicas,
        max_num_seqs=serving.max_num_seqs,
        max_num_batched_tokens=serving.max_num_batched_tokens,
        enable_prefix_caching=serving.enable_prefix_caching,
        capacity_quantile=parse_decimal(spec.sizing_quantile),
    )


def pool_gpu(pool: PoolSpec) -> GPU:
    """The catalog's GPU, or the pool's own datasheet (gpuSpec) for one the catalog lacks."""
    spec = pool.gpu_spec
    if spec is None:
        return get_gpu(pool.gpu)
    return custom_gpu(
        pool.gpu,
        parse_decimal(spec.memory_gib),
        parse_decimal(spec.memory_bandwidth_gb_per_second),
        {dtype: parse_decimal(v) for dtype, v in spec.tflops.items()},
        spec.interconnect.kind,
        parse_decimal(spec.interconnect.bandwidth_gb_per_second),
        parse_decimal(pool.cost_per_gpu_hour or "0"),
    )


def plan_spec(
    spec: InferenceFleetSpec,
    hf_config: dict,
    capacity_fn: CapacityFn | None = None,
    efficiency: Efficiency | None = None,
    checkpoint: CheckpointWeights | None = None,
) -> SizingPlan:
    """Plan a validated spec; raises `sizing.errors.SizingError` subclasses with reasons."""
    request = fleet_request(spec, hf_config, checkpoint)
    if efficiency is not None:
        request = replace(request, efficiency=efficiency)
    return plan_fleet(request, capacity_fn)


def _money(value: float) -> str:
    return f"{value:.2f}"


def weight_format(quantization: str, plan: SizingPlan) -> str:
    """What the weights are on the GPU: the runtime format, else the checkpoint's own."""
    if quantization != "none":
        return quantization
    return plan.checkpoint_format


def _pool_status(
    o: PoolOption, replicas: int, min_warm: int, cost_per_hour_usd: float, plan: SizingPlan
) -> PoolPlanStatus:
    """One pool's replica shape and count as `status.plan` shows it."""
    assert o.engine is not None and o.memory is not None and o.capacity is not None
    capacity: Capacity = o.capacity
    return PoolPlanStatus(
        pool=o.pool.name,
        gpu=o.pool.gpu.name,
        quantization=o.quantization,
        weight_format=weight_format(o.quantization, plan),
        kv_cache_dtype=o.engine.kv_cache_dtype,
        tensor_parallel=o.engine.tp,
        pipeline_parallel=o.engine.pp,
        replicas=replicas,
        min_warm=min_warm,
        c_max=capacity.c_max,
        usable_rps_per_replica=f"{o.usable_rps:.3f}",
        usable_rps_band=UsableBand(
            p10=f"{o.usable_rps_band[0]:.3f}",
            p50=f"{o.usable_rps_band[1]:.3f}",
            p90=f"{o.usable_rps_band[2]:.3f}",
            regime=o.band_regime,
        )
        if o.band_regime
        else None,
        gpus=replicas * o.gpus_per_replica,
        cost_per_hour=_money(cost_per_hour_usd),
        cost_per_million_tokens=f"{o.cost_per_million_tokens_usd:.4f}",
        max_model_len=o.engine.max_model_len or plan.profile.max_model_len,
        max_num_seqs=o.engine.max_num_seqs,
        max_num_batched_tokens=o.engine.max_num_batched_tokens or 0,
        kv_cache_tokens=o.memory.kv_cache_tokens,
        cold_start_seconds=round(o.cold_start_s),
        weights_gib=f"{o.memory.weights_gib * o.engine.tp * o.engine.pp:.1f}",
    )


def plan_status(plan: SizingPlan) -> PlanStatus:
    """The plan as it appears in `status.plan` (decimals as strings: no floats in the API)."""
    pools = [
        _pool_status(a.option, a.replicas, a.min_warm, a.cost_per_hour_usd, plan)
        for a in plan.allocations
    ]
    running = {a.option.pool.name for a in plan.allocations}
    standby = [
        _pool_status(o, 0, 0, 0.0, plan)
        for o in sorted(plan.options, key=lambda o: o.cost_per_million_tokens_usd)
        if o.fits and o.pool.name not in running
    ]
    return PlanStatus(
        hash=plan.fingerprint(),
        pools=pools,
        standby=standby,
        steps=[
            PlanStep(step=f"{s.number}. {s.title}", decision=s.decision, reason=s.reason)
            for s in plan.steps
        ],
        total_gpus=plan.total_gpus,
        cost_per_hour=_money(plan.cost_per_hour_usd),
        cost_per_month=_money(plan.cost_per_month_usd),
    )
