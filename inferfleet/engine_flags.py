"""The vLLM engine flags shared by `curve`, `bench` and the emulator, turned into one config."""

from __future__ import annotations

import argparse

from sizing.memory import EngineConfig


def engine_config_from_args(args: argparse.Namespace) -> EngineConfig:
    """The replica's engine settings from flags named as vLLM names them."""
    return EngineConfig(
        tp=args.tp,
        pp=args.pp,
        dtype=args.dtype,
        quantization=args.quantization,
        kv_cache_dtype=args.kv_cache_dtype,
        gpu_memory_utilization=args.gpu_memory_utilization,
        max_model_len=args.max_model_len,
        max_num_seqs=args.max_num_seqs,
        max_num_batched_tokens=args.max_num_batched_tokens,
        enforce_eager=args.enforce_eager,
        expert_parallel=getattr(args, "expert_parallel", False),
    )
