"""Plan statuses and load points for tests: one H100 TP2 FP8 pool by default, each test
overriding the fields it judges, so a new field is added here once rather than in every test."""

from __future__ import annotations

import dataclasses
from typing import Any

from controllers.api.v1alpha1 import PlanStatus, PoolPlanStatus
from sizing.simulator import LoadPoint

_POOL: dict[str, Any] = {
    "pool": "h100",
    "gpu": "H100-SXM-80GB",
    "quantization": "fp8",
    "weight_format": "fp8",
    "kv_cache_dtype": "auto",
    "tensor_parallel": 2,
    "pipeline_parallel": 1,
    "replicas": 4,
    "min_warm": 1,
    "c_max": 32,
    "usable_rps_per_replica": "2.000",
    "gpus": 8,
    "cost_per_hour": "1",
    "cost_per_million_tokens": "1",
    "max_model_len": 8192,
    "max_num_seqs": 64,
    "max_num_batched_tokens": 8192,
    "kv_cache_tokens": 1,
    "cold_start_seconds": 60,
}


def pool_plan(**overrides: Any) -> PoolPlanStatus:
    return PoolPlanStatus(**{**_POOL, **overrides})


def fleet_plan(*pools: PoolPlanStatus, **overrides: Any) -> PlanStatus:
    """The pools' plan; total GPUs are their sum unless given."""
    values: dict[str, Any] = {
        "hash": "h",
        "pools": list(pools),
        "steps": [],
        "total_gpus": sum(p.gpus for p in pools),
        "cost_per_hour": "1",
        "cost_per_month": "1",
    }
    return PlanStatus(**{**values, **overrides})


def load_point(rps: float, ttft_p99_s: float) -> LoadPoint:
    """A predicted load-curve point with only the request rate and TTFT P99 set."""
    blank: dict[str, Any] = {f.name: 0 for f in dataclasses.fields(LoadPoint)}
    return LoadPoint(**(blank | {"request_per_s": rps, "ttft_p99_s": ttft_p99_s}))
