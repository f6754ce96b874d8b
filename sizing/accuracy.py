"""How far the replica model is from measured vLLM serving benchmarks (issue 14).

A benchmark case is one measured load point asked again of the model: the same replica (model,
GPU, TP, DP, quantization, KV dtype, scheduler limits) under the same load (closed loop at the
client's concurrency, or at the server's `max_num_seqs` with a saturated queue). Errors are
absolute percentages of the measured value, grouped by source, GPU, model, TP and load regime,
so a reader sees where the model is wrong, not only how much on average. The signed residuals
per regime also give the error bars `curve` prints.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from sizing.curve import replica_engine
from sizing.error_bands import METRICS, REGIMES, ratio_at, ratio_quantiles
from sizing.errors import InvalidInput, SizingError
from sizing.frontend import ClientClosedLoop, front_end_of
from sizing.hardware import get_gpu
from sizing.memory import EngineConfig, estimate_memory
from sizing.model import ModelArch
from sizing.performance import DEFAULT_EFFICIENCY, Efficiency, StepTimeModel
from sizing.simulator import ClosedLoopSchedule, LoadPoint, schedule_closed_loop

# A steady-state window needs warm-up and drain around the measured requests.
STEADY_STATE_ROUNDS = 3


# The statistic a source published for a latency, which the prediction must match: TTFT over
# requests; TPOT per request ((e2e - TTFT) / (output - 1)) or ITL over every token gap.
TTFT_STATS = ("median", "mean")
TPOT_STATS = ("tpot_median", "tpot_mean", "itl_median")


@dataclass(frozen=True)
class Measured:
    output_tok_per_s: float
    ttft_ms: float | None
    tpot_ms: float | None
    ttft_stat: str = "median"  # of TTFT_STATS
    tpot_stat: str = "itl_median"  # of TPOT_STATS

    def __post_init__(self) -> None:
        if self.ttft_stat not in TTFT_STATS or self.tpot_stat not in TPOT_STATS:
            raise InvalidInput(
                f"latency statistics must be among {TTFT_STATS} and {TPOT_STATS}, got "
                f"{self.ttft_stat!r} and {self.tpot_stat!r}"
            )


@dataclass(frozen=True)
class BenchmarkCase:
    """One measured point and the replica configuration that produced it."""

    case_id: str
    sweep_id: str
    source: str
    gpu: str
    model_id: str
    arch: ModelArch
    engine: EngineConfig
    data_parallel: int
    concurrency: int  # requests in flight across the whole server
    input_len: int
    output_len: int
    num_prompts: int
    steady_state: bool  # measured over a steady-state window (no ramp-up or drain)
    measured: Measured
    regime: str
    confidence: str
    # Lengths drawn uniformly within +-this share of input_len / output_len (0: fixed), as
    # `vllm bench serve --random-range-ratio` does; a seeded draw, the same on every run.
    length_spread: float = 0.0
    # The set's own README calls this sweep unreliable: scored and reported, never fitted on.
    flagged: bool = False


@dataclass(frozen=True)
class Prediction:
    output_tok_per_s: float
    ttft_ms: float
    tpot_ms: float


@dataclass(frozen=True)
class Scored:
    case: BenchmarkCase
    predicted: Prediction

    def error_pct(self, metric: str) -> float | None:
        """Signed error of the prediction, in % of the measurement (None if not measured)."""
        measured = getattr(self.case.measured, metric)
        if measured is None or measured <= 0:
            return None
        return 100.0 * (getattr(self.predicted, metric) - measured) / measured


def _lengths(case: BenchmarkCase, count: int) -> tuple[np.ndarray, np.ndarray]:
    if not case.length_spread:
        return np.full(count, case.input_len), np.full(count, case.output_len)
    rng = np.random.default_rng(0)
    drawn = []
    for nominal in (case.input_len, case.output_len):
        low = max(1, round(nominal * (1 - case.length_spread)))
        drawn.append(rng.integers(low, round(nominal * (1 + case.length_spread)) + 1, count))
    return drawn[0], drawn[1]


def schedule(
    case: BenchmarkCase, efficiency: Efficiency = DEFAULT_EFFICIENCY
) -> tuple[ClosedLoopSchedule | ClientClosedLoop, StepTimeModel]:
    """The case's closed loop, ready to be priced by a step model, and its step model.

    A server-side load (a saturated queue at `max_num_seqs`) is scheduled once in ticks, the
    same under any efficiency. A client's loop goes through the API server first
    (sizing.frontend), whose queue depends on the clock, so it is stepped when priced.
    """
    gpu = get_gpu(case.gpu)
    memory = estimate_memory(case.arch, gpu, case.engine)
    if not memory.fits:
        raise InvalidInput(f"{case.case_id}: the model does not fit: {'; '.join(memory.notes)}")
    step_model, limits = replica_engine(case.arch, gpu, case.engine, memory, efficiency)
    # Data-parallel ranks are independent engines that share the load evenly.
    per_rank = max(1, case.concurrency // case.data_parallel)
    count = max(case.num_prompts // case.data_parallel, 1)
    if case.steady_state:
        count = max(count, STEADY_STATE_ROUNDS * per_rank)
    prompts, outputs = _lengths(case, count)
    if case.steady_state:
        run = schedule_closed_loop(step_model, limits, prompts, outputs, per_rank, True)
        return run, step_model
    front_end = front_end_of(efficiency).shared_by(case.data_parallel)
    loop = ClientClosedLoop(limits, prompts, outputs, per_rank, False, front_end)
    return loop, step_model


def predict(case: BenchmarkCase, efficiency: Efficiency = DEFAULT_EFFICIENCY) -> Prediction:
    run, step_model = schedule(case, efficiency)
    return prediction_of(case, run.price(step_model))


def prediction_of(case: BenchmarkCase, point: LoadPoint) -> Prediction:
    """What the benchmark reports, from the simulated load point of one engine rank: each
    latency as the statistic the source published."""
    ttft_s = {"median": point.ttft_p50_s, "mean": point.ttft_mean_s}
    tpot_s = {
        "tpot_median": point.tpot_p50_s,
        "tpot_mean": point.tpot_mean_s,
        "itl_median": point.itl_p50_s,
    }
    return Prediction(
        output_tok_per_s=point.output_tok_per_s * case.data_parallel,
        ttft_ms=ttft_s[case.measured.ttft_stat] * 1e3,
        tpot_ms=tpot_s[case.measured.tpot_stat] * 1e3,
    )


def score(
    cases: Iterable[BenchmarkCase], efficiency: Efficiency = DEFAULT_EFFICIENCY
) -> tuple[list[Scored], list[str]]:
    """Every case the model can answer, and why it could not answer the others."""
    scored, skipped = [], []
    for case in cases:
        try:
            scored.append(Scored(case, predict(case, efficiency)))
        except SizingError as err:
            skipped.append(f"{case.case_id}: {err}")
    return scored, skipped


@dataclass(frozen=True)
class ErrorStats:
    """Absolute % errors of one metric over one group of points, and their sign."""

    count: int
    median_pct: float
    p90_pct: float
    max_pct: float
    median_signed_pct: float  # > 0: the model is optimistic for throughput, slow for latency


def error_stats(signed_pct: list[float]) -> ErrorStats | None:
    if not signed_pct:
        return None
    values = np.asarray(signed_pct)
    absolute = np.abs(values)
    return ErrorStats(
        count=len(values),
        median_pct=float(np.median(absolute)),
        p90_pct=float(np.percentile(absolute, 90)),
        max_pct=float(absolute.max()),
        median_signed_pct=float(np.median(values)),
    )


GROUPINGS: dict[str, Callable[[BenchmarkCase], str]] = {
    "all": lambda c: "all",
    "source": lambda c: c.source,
    "gpu": lambda c: c.gpu,
    "model": lambda c: c.model_id,
    "tp": lambda c: f"TP{c.engine.tp}" + (f" DP{c.data_parallel}" if c.data_parallel > 1 else ""),
    "regime": lambda c: c.regime,
    "flagged": lambda c: "flagged by the set" if c.flagged else "not flagged",
}


def error_table(scored: list[Scored], grouping: str, metric: str) -> dict[str, ErrorStats]:
    """Error statistics of `metric` per group of `grouping` (one of GROUPINGS)."""
    key = GROUPINGS[grouping]
    groups: dict[str, list[float]] = {}
    for item in scored:
        error = item.error_pct(metric)
        if error is not None:
            groups.setdefault(key(item.case), []).append(error)
    table = {}
    for name in sorted(groups):
        stats = error_stats(groups[name])
        if stats is not None:
            table[name] = stats
    return table


def residual_bands(scored: list[Scored]) -> dict[str, dict[str, tuple[float, ...]]]:
    """Quantiles of measured / predicted per regime and metric: the error bars' table."""
    table: dict[str, dict[str, tuple[float, ...]]] = {}
    for regime in REGIMES:
        row = {}
        for metric in METRICS:
            ratios = [
                getattr(s.case.measured, metric) / getattr(s.predicted, metric)
                for s in scored
                if s.case.regime == regime
                and getattr(s.case.measured, metric)
                and getattr(s.predicted, metric) > 0
            ]
            if ratios:
                row[metric] = ratio_quantiles(ratios)
        table[regime] = row
    return table


def band_coverage(scored: list[Scored], metric: str, low: float = 0.1, high: float = 0.9) -> float:
    """Share of measured points inside the recorded [low, high] band around the prediction."""
    inside = total = 0
    for s in scored:
        measured = getattr(s.case.measured, metric)
        if not measured:
            continue
        predicted = getattr(s.predicted, metric)
        lo = predicted * ratio_at(s.case.regime, metric, low)
        hi = predicted * ratio_at(s.case.regime, metric, high)
        inside += lo <= measured <= hi
        total += 1
    return inside / total if total else float("nan")
