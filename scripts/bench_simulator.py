"""Benchmark the replica simulator and the C_max search (figures for the performance model).

1. One hour of Poisson traffic at 50 req/s (~180k requests) with the Azure 2023 conversation
   trace's token lengths (resampled), on one replica. Target: under 10 s on one core.
2. Replay of the real Azure conversation trace (its own arrival times and lengths).
3. Full C_max searches for a few replicas. Target: under 2 s each.

Each case runs `--repeat` times; CPU seconds (process time) are reported beside wall seconds,
since other work on a shared machine inflates wall time but hardly CPU time.

    .venv/bin/python scripts/bench_simulator.py [--repeat 3] [--trace PATH]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import statistics
import time
from collections.abc import Callable
from datetime import datetime
from functools import partial
from pathlib import Path

import numpy as np

from sizing.curve import find_capacity, replica_engine
from sizing.hardware import get_gpu
from sizing.memory import EngineConfig, estimate_memory
from sizing.model import load_model_config
from sizing.simulator import LoadPoint, poisson_arrivals, simulate_arrivals
from sizing.workload import Percentiles

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"
CONFIGS = SHARED / "calibration" / "model_configs"
DEFAULT_TRACE = SHARED / "traces" / "azure2023_conv.requests.csv.gz"
# Azure 2023 conversation trace percentiles (the traces' stats.json).
CONV_PROMPT = Percentiles(1020, 4083, 4142)
CONV_OUTPUT = Percentiles(129, 451, 601)
HOUR_S = 3600.0
RATE_RPS = 50.0


def read_trace(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(arrival seconds from the first request, prompt tokens, output tokens)."""
    times, prompts, outputs = [], [], []
    with gzip.open(path, "rt", newline="") as f:
        for row in csv.DictReader(f):
            stamp = row["TIMESTAMP"][:26]  # microseconds: datetime takes at most 6 digits
            times.append(datetime.fromisoformat(stamp).timestamp())
            prompts.append(int(row["ContextTokens"]))
            outputs.append(max(1, int(row["GeneratedTokens"])))
    arrival = np.asarray(times) - times[0]
    order = np.argsort(arrival, kind="stable")
    return arrival[order], np.asarray(prompts)[order], np.asarray(outputs)[order]


def replica(config: str, gpu_name: str, cfg: EngineConfig):
    arch = load_model_config(json.loads((CONFIGS / config).read_text()))
    gpu = get_gpu(gpu_name)
    memory = estimate_memory(arch, gpu, cfg)
    return arch, gpu, cfg, memory


def timed(fn: Callable[[], object], repeat: int) -> tuple[list[float], list[float], object]:
    walls, cpus, result = [], [], None
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return walls, cpus, result


def show(label: str, walls: list[float], cpus: list[float]) -> None:
    print(
        f"{label}: wall {', '.join(f'{w:.2f}' for w in walls)} s "
        f"(median {statistics.median(walls):.2f}); CPU {', '.join(f'{c:.2f}' for c in cpus)} s "
        f"(median {statistics.median(cpus):.2f})"
    )


def describe(point: LoadPoint) -> str:
    return (
        f"{point.requests} requests, TTFT P50/P99 {point.ttft_p50_s * 1e3:.0f}/"
        f"{point.ttft_p99_s * 1e3:.0f} ms, ITL P50/P99 {point.itl_p50_s * 1e3:.1f}/"
        f"{point.itl_p99_s * 1e3:.1f} ms, {point.output_tok_per_s:,.0f} out tok/s, "
        f"{point.request_per_s:.2f} req/s, mean batch {point.mean_batch_size:.0f}, "
        f"{point.preemptions} preemptions"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--trace", type=Path, default=DEFAULT_TRACE)
    args = parser.parse_args()

    trace_arrival, trace_prompts, trace_outputs = read_trace(args.trace)
    rng = np.random.default_rng(0)
    count = int(HOUR_S * RATE_RPS)
    arrival = poisson_arrivals(RATE_RPS, count, rng)
    pick = rng.integers(0, trace_prompts.size, count)
    prompts, outputs = trace_prompts[pick], trace_outputs[pick]

    # The first replica keeps up with 50 req/s of these lengths; the second is overloaded
    # (the queue grows all hour), which stresses the waiting queue and preemption.
    hour_cases = [
        ("Llama-3.1-8B FP8 on 1x B200 (keeps up)", "meta-llama--Llama-3.1-8B-Instruct.json",
         "B200", EngineConfig(tp=1, quantization="fp8", max_model_len=16384)),
        ("Llama-3.3-70B FP8 on 4x H100 (overloaded)",
         "RedHatAI--Llama-3.3-70B-Instruct-FP8-dynamic.json", "H100",
         EngineConfig(tp=4, max_model_len=16384)),
    ]  # fmt: skip
    for label, config, gpu_name, engine_cfg in hour_cases:
        arch, gpu, cfg, memory = replica(config, gpu_name, engine_cfg)
        step_model, limits = replica_engine(arch, gpu, cfg, memory)
        walls, cpus, point = timed(
            partial(simulate_arrivals, step_model, limits, arrival, prompts, outputs, RATE_RPS),
            args.repeat,
        )
        show(f"1 h at {RATE_RPS:g} req/s ({count:,} requests), {label}", walls, cpus)
        assert isinstance(point, LoadPoint)
        print(f"    {describe(point)}")

    arch, gpu, cfg, memory = replica(
        "meta-llama--Llama-3.1-8B-Instruct.json", "H100", EngineConfig(tp=1, max_model_len=16384)
    )
    step_model, limits = replica_engine(arch, gpu, cfg, memory)
    walls, cpus, point = timed(
        lambda: simulate_arrivals(step_model, limits, trace_arrival, trace_prompts, trace_outputs),
        args.repeat,
    )
    show(f"Azure conv trace replay ({trace_prompts.size:,} requests), 8B on 1x H100", walls, cpus)
    assert isinstance(point, LoadPoint)
    print(f"    {describe(point)}")

    search_cases = [
        ("Llama-3.1-8B BF16, 1x H100", "meta-llama--Llama-3.1-8B-Instruct.json", "H100",
         EngineConfig(tp=1, max_model_len=8192)),
        ("Llama-3.3-70B FP8, 4x H100", "RedHatAI--Llama-3.3-70B-Instruct-FP8-dynamic.json",
         "H100", EngineConfig(tp=4, max_model_len=8192)),
        ("Qwen3-235B-A22B FP8, 4x H200", "Qwen--Qwen3-235B-A22B-FP8.json", "H200",
         EngineConfig(tp=4, max_model_len=8192)),
        ("Llama-3.1-8B BF16, 1x L4", "meta-llama--Llama-3.1-8B-Instruct.json", "L4",
         EngineConfig(tp=1, max_model_len=8192)),
    ]  # fmt: skip
    for label, config, gpu_name, engine_cfg in search_cases:
        arch, gpu, cfg, memory = replica(config, gpu_name, engine_cfg)
        walls, cpus, capacity = timed(
            partial(find_capacity, arch, gpu, cfg, memory, CONV_PROMPT, CONV_OUTPUT, 2.0, None),
            args.repeat,
        )
        show(f"C_max search (TTFT P99 <= 2 s, Azure conv lengths), {label}", walls, cpus)
        print(
            f"    C_max {capacity.c_max}, {capacity.usable_rps:.2f} req/s, limited by "
            f"{capacity.limited_by}, knee {capacity.knee_concurrency}, Little's-law gap "
            f"{capacity.littles_law_gap:.2f}x, {len(capacity.points)} load points"
        )


if __name__ == "__main__":
    main()
