"""The latency-throughput curve of one replica and its SLO-constrained capacity (guide ch. 8).

C_max is the highest concurrency at which TTFT P99 (and ITL P99 when an ITL SLO is given)
stays within the SLO; usable RPS is the request rate the replica sustains there. We find it
with the closed-loop simulator, galloping 1, 2, 4, ... until the SLO breaks and then bisecting,
so a search costs about 2 log2(C_max) load points. Every point draws its lengths from the same
seed (common random numbers), so neighbouring points differ by load, not by luck.

Points are measured in steady state: the first C requests (which all arrive at once) and the
last C (while concurrency drains) are left out, as the guide says to warm up before measuring.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from sizing.errors import InvalidInput
from sizing.hardware import GPU
from sizing.lengths import check_percentiles, sample_lengths
from sizing.memory import EngineConfig, MemoryBreakdown, default_batching
from sizing.model import ModelArch
from sizing.performance import (
    DEFAULT_EFFICIENCY,
    Efficiency,
    StepTimeModel,
    build_step_model,
    replica_shape,
)
from sizing.simulator import EngineLimits, LoadPoint, simulate_closed_loop
from sizing.workload import Percentiles

# Requests measured per load point at least (P99 over fewer is the maximum, not a percentile),
# and per concurrency slot (each client completes this many requests in the window).
MIN_MEASURED_REQUESTS = 64
MEASURED_REQUESTS_PER_SLOT = 8
# Enough for a P99 with a handful of samples above it, at high concurrency.
MAX_MEASURED_REQUESTS = 2048
# Above what the replica can run at once (max_num_seqs, or the requests the KV cache holds)
# extra requests only queue; the search goes to twice that and stops.
SEARCH_CAP_OVER_RUNNABLE = 2
SAMPLES_FOR_MEAN_LENGTH = 4096
# Little's-law gap above which the guide says the benchmark does not reflect production.
LITTLES_LAW_MAX_GAP = 2.0


@dataclass(frozen=True)
class Capacity:
    """One replica's SLO-constrained operating point, with the curve points behind it."""

    c_max: int
    usable_rps: float
    ttft_p99_s: float
    itl_p99_s: float
    output_tok_per_s: float
    littles_law_rps: float
    littles_law_gap: float
    knee_concurrency: int
    limited_by: str  # "ttft" | "itl" | "kv_cache" | "max_num_seqs"
    points: tuple[LoadPoint, ...]

    @property
    def littles_law_ok(self) -> bool:
        return self.littles_law_gap <= LITTLES_LAW_MAX_GAP


@dataclass(frozen=True)
class LengthProfile:
    """Lengths to draw and the context limit they are capped at."""

    prompt: Percentiles
    output: Percentiles
    max_model_len: int

    def __post_init__(self) -> None:
        check_percentiles("prompt", self.prompt)
        check_percentiles("output", self.output)
        if self.max_model_len < 2:
            raise InvalidInput(f"max_model_len must be >= 2 tokens, got {self.max_model_len}")

    def sample(self, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Prompt and output lengths; each request fits max_model_len (prompt first)."""
        rng = np.random.default_rng(seed)
        prompts = sample_lengths(self.prompt, count, rng, self.max_model_len - 1)
        outputs = sample_lengths(self.output, count, rng)
        return prompts, np.minimum(outputs, self.max_model_len - prompts)


def measure_point(
    step_model: StepTimeModel,
    limits: EngineLimits,
    lengths: LengthProfile,
    concurrency: int,
    seed: int,
) -> LoadPoint:
    """Steady-state closed-loop point at one concurrency."""
    measured = min(
        MAX_MEASURED_REQUESTS,
        max(MIN_MEASURED_REQUESTS, MEASURED_REQUESTS_PER_SLOT * concurrency),
    )
    prompts, outputs = lengths.sample(measured + 2 * concurrency, seed)
    return simulate_closed_loop(
        step_model, limits, prompts, outputs, concurrency, steady_state=True
    )


def runnable_requests(limits: EngineLimits, lengths: LengthProfile, seed: int) -> int:
    """Requests the replica can run at once: max_num_seqs, or fewer when the KV cache holds
    fewer requests of the mean length."""
    prompts, outputs = lengths.sample(SAMPLES_FOR_MEAN_LENGTH, seed)
    mean_tokens = float(np.mean(prompts + outputs))
    return max(1, min(limits.max_num_seqs, int(limits.kv_cache_tokens // mean_tokens)))


def meets_slo(point: LoadPoint, ttft_slo_s: float, itl_slo_s: float | None) -> bool:
    return point.ttft_p99_s <= ttft_slo_s and (itl_slo_s is None or point.itl_p99_s <= itl_slo_s)


def knee_concurrency(points: list[LoadPoint]) -> int:
    """Where P99 TTFT starts growing faster than throughput, for good (guide 8.1).

    Left of the knee more load buys proportionally more requests per second than it costs in
    tail latency; from the knee on, each step up in concurrency raises P99 TTFT by a larger
    factor than it raises throughput. A blip below saturation (two long prompts sharing a
    step) does not count, since the curve recovers after it. Without a knee the highest
    concurrency measured is returned.
    """
    ordered = sorted(points, key=lambda p: p.concurrency or 0)
    knee = ordered[-1]
    for before, point in reversed(list(itertools.pairwise(ordered))):
        latency_growth = point.ttft_p99_s / before.ttft_p99_s
        throughput_growth = point.request_per_s / before.request_per_s
        if latency_growth <= throughput_growth:
            break
        knee = point
    return knee.concurrency or 0


def _limited_by(
    failing: LoadPoint, ttft_slo_s: float, itl_slo_s: float | None, limits: EngineLimits
) -> str:
    """Why the first concurrency past C_max fails: the SLO it broke, or what made it break."""
    if failing.ttft_p99_s <= ttft_slo_s:
        return "itl"
    if (failing.concurrency or 0) > limits.max_num_seqs:
        return "max_num_seqs"
    if failing.kv_blocked_steps or failing.preemptions:
        return "kv_cache"
    return "ttft"


def search_capacity(
    step_model: StepTimeModel,
    limits: EngineLimits,
    lengths: LengthProfile,
    ttft_slo_s: float,
    itl_slo_s: float | None,
    seed: int = 0,
) -> Capacity:
    """C_max by galloping then bisection over concurrency, with the closed-loop simulator."""
    if ttft_slo_s <= 0 or (itl_slo_s is not None and itl_slo_s <= 0):
        raise InvalidInput(f"SLOs must be > 0 s, got TTFT {ttft_slo_s} and ITL {itl_slo_s}")
    cap = SEARCH_CAP_OVER_RUNNABLE * runnable_requests(limits, lengths, seed)
    points: dict[int, LoadPoint] = {}

    def passes(concurrency: int) -> bool:
        if concurrency not in points:
            points[concurrency] = measure_point(step_model, limits, lengths, concurrency, seed)
        return meets_slo(points[concurrency], ttft_slo_s, itl_slo_s)

    good, bad = 0, None
    concurrency = 1
    while bad is None:
        if passes(concurrency):
            good = concurrency
            if concurrency == cap:
                break
            concurrency = min(2 * concurrency, cap)
        else:
            bad = concurrency
    while bad is not None and bad - good > 1:
        middle = (good + bad) // 2
        if passes(middle):
            good = middle
        else:
            bad = middle
    return _capacity(good, bad, points, ttft_slo_s, itl_slo_s, limits)


def _capacity(
    c_max: int,
    first_bad: int | None,
    points: dict[int, LoadPoint],
    ttft_slo_s: float,
    itl_slo_s: float | None,
    limits: EngineLimits,
) -> Capacity:
    ordered = tuple(points[c] for c in sorted(points))
    if first_bad is None:
        at_cap = points[c_max]
        limited_by = "kv_cache" if at_cap.kv_blocked_steps else "max_num_seqs"
    else:
        limited_by = _limited_by(points[first_bad], ttft_slo_s, itl_slo_s, limits)
    if c_max == 0:
        low = points[1]
        return Capacity(
            0, 0.0, low.ttft_p99_s, low.itl_p99_s, 0.0, 0.0, 0.0, 0, limited_by, ordered
        )
    at = points[c_max]
    littles_law_rps = c_max / at.e2e_mean_s
    gap = max(littles_law_rps / at.request_per_s, at.request_per_s / littles_law_rps)
    return Capacity(
        c_max=c_max,
        usable_rps=at.request_per_s,
        ttft_p99_s=at.ttft_p99_s,
        itl_p99_s=at.itl_p99_s,
        output_tok_per_s=at.output_tok_per_s,
        littles_law_rps=littles_law_rps,
        littles_law_gap=gap,
        knee_concurrency=knee_concurrency(list(ordered)),
        limited_by=limited_by,
        points=ordered,
    )


def find_capacity(
    arch: ModelArch,
    gpu: GPU,
    cfg: EngineConfig,
    memory: MemoryBreakdown,
    prompt: Percentiles,
    output: Percentiles,
    ttft_slo_s: float,
    itl_slo_s: float | None,
    efficiency: Efficiency = DEFAULT_EFFICIENCY,
    seed: int = 0,
) -> Capacity:
    """C_max and usable RPS of one replica of this model, engine config and memory split."""
    step_model, limits = replica_engine(arch, gpu, cfg, memory, efficiency)
    lengths = LengthProfile(prompt, output, memory.max_model_len)
    return search_capacity(step_model, limits, lengths, ttft_slo_s, itl_slo_s, seed)


def replica_engine(
    arch: ModelArch,
    gpu: GPU,
    cfg: EngineConfig,
    memory: MemoryBreakdown,
    efficiency: Efficiency = DEFAULT_EFFICIENCY,
) -> tuple[StepTimeModel, EngineLimits]:
    """The step-time model and scheduler limits vLLM would run with for this configuration."""
    shape = replica_shape(
        arch,
        gpu,
        cfg.tp,
        cfg.pp,
        quantization=cfg.quantization,
        dtype=cfg.dtype,
        kv_cache_dtype=cfg.kv_cache_dtype,
        cuda_graphs=not cfg.enforce_eager,
        expert_parallel=cfg.expert_parallel,
    )
    max_num_seqs, max_num_batched_tokens = default_batching(gpu, cfg)
    if memory.kv_cache_tokens < memory.max_model_len:
        raise InvalidInput(
            f"the KV cache holds {memory.kv_cache_tokens} tokens, less than one request of "
            f"max_model_len {memory.max_model_len}: vLLM would not start; lower max_model_len, "
            "use an FP8 KV cache or add GPUs"
        )
    limits = EngineLimits(
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=max_num_batched_tokens,
        kv_cache_tokens=memory.kv_cache_tokens,
        block_size=cfg.block_size,
    )
    return build_step_model(shape, gpu, efficiency), limits
