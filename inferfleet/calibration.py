"""Efficiency calibration: fit the step-time model to a measured curve, and keep it as YAML.

The step-time model's datasheet-fraction defaults are H100-class vLLM figures; a real replica
(another GPU, driver, vLLM release, kernel choice) reaches other fractions. `inferfleet bench
--calibrate` measures the curve, fits the three factors that shape it (achievable share of
peak FLOPS for prefill, of HBM bandwidth for decode, and the fixed per-step cost) and writes:

    apiVersion: inferfleet.io/v1alpha1
    kind: EfficiencyCalibration
    gpu: L4
    model: meta-llama/Meta-Llama-3-8B
    efficiency:            # any subset of sizing.performance.Efficiency's fields
      compute_fraction: 0.41
      hbm_fraction: 0.63
      step_overhead_s: 0.0029
    fit: {points: 3, rmsLogErrorBefore: 0.31, rmsLogErrorAfter: 0.02}

`load_calibration(path)` turns such a file back into an `Efficiency` for `plan`, `curve`, the
emulator and the operator; fields it does not list keep their defaults.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import yaml

from controllers.policy import calibration as policy_calibration
from inferfleet.errors import UsageError
from inferfleet.inputs import read_text
from sizing.curve import replica_engine
from sizing.errors import SizingError
from sizing.frontend import ClientClosedLoop, front_end_of
from sizing.hardware import GPU
from sizing.memory import EngineConfig, MemoryBreakdown
from sizing.model import ModelArch
from sizing.performance import DEFAULT_EFFICIENCY, Efficiency

API_VERSION = policy_calibration.API_VERSION
KIND = policy_calibration.KIND
# What the fit moves: prefill (compute), decode (HBM) and the per-step floor. The others
# (interconnect, pipeline hand-offs) need multi-GPU curves to be identifiable.
FITTED_FIELDS = ("compute_fraction", "hbm_fraction", "step_overhead_s")
# On curves where every step is dominated by streaming the weights, HBM fraction and per-step
# overhead trade off almost exactly (a ridge); a weak pull toward the starting values keeps the
# fit from wandering along it, without moving what the data do determine.
PRIOR_WEIGHT = 1e-5
_FRACTION_FLOOR = 0.01  # keeps the search inside Efficiency's (0, 1] without touching 0
_MAX_OVERHEAD_S = 0.1
_MAX_START_FRACTION = 0.9


@dataclass(frozen=True)
class MeasuredPoint:
    """One closed-loop load point as `inferfleet bench` measured it (GPU time)."""

    concurrency: int
    num_prompts: int
    ttft_p50_s: float | None
    itl_p50_s: float | None
    output_tok_per_s: float


@dataclass(frozen=True)
class PredictedPoint:
    ttft_p50_s: float
    itl_p50_s: float
    output_tok_per_s: float


# (efficiency, concurrency, num_prompts) -> what the simulator predicts for that point.
Predictor = Callable[[Efficiency, int, int], PredictedPoint]


@dataclass(frozen=True)
class Fit:
    efficiency: Efficiency
    rms_log_error_before: float
    rms_log_error_after: float
    evaluations: int


def rms_log_error(
    predict: Predictor, efficiency: Efficiency, measured: Sequence[MeasuredPoint]
) -> float:
    """Root-mean-square of log(predicted / measured) over TTFT P50, ITL P50 and throughput.

    Logs weigh a 10 % miss the same on a 20 ms ITL and on a 2 s TTFT.
    """
    errors: list[float] = []
    for point in measured:
        predicted = predict(efficiency, point.concurrency, point.num_prompts)
        pairs = (
            (predicted.ttft_p50_s, point.ttft_p50_s),
            (predicted.itl_p50_s, point.itl_p50_s),
            (predicted.output_tok_per_s, point.output_tok_per_s),
        )
        errors += [math.log(p / m) for p, m in pairs if m and p > 0]
    if not errors:
        raise UsageError("no measured point has a latency or throughput to calibrate against")
    return float(np.sqrt(np.mean(np.square(errors))))


def _to_search(e: Efficiency) -> np.ndarray:
    """Unbounded coordinates: logit of the two fractions, log of the overhead."""

    def logit(f: float) -> float:
        # Near 1 the logistic is flat and the simplex stalls: start a little inside.
        f = min(max(f, _FRACTION_FLOOR), _MAX_START_FRACTION)
        return math.log(f / (1 - f))

    return np.array(
        [logit(e.compute_fraction), logit(e.hbm_fraction), math.log(max(e.step_overhead_s, 1e-6))]
    )


def _from_search(x: np.ndarray, base: Efficiency) -> Efficiency:
    def fraction(v: float) -> float:
        return max(_FRACTION_FLOOR, 1 / (1 + math.exp(-v)))

    return replace(
        base,
        compute_fraction=fraction(x[0]),
        hbm_fraction=fraction(x[1]),
        step_overhead_s=min(math.exp(x[2]), _MAX_OVERHEAD_S),
    )


def nelder_mead(
    f: Callable[[np.ndarray], float], x0: np.ndarray, max_evaluations: int, tolerance: float
) -> tuple[np.ndarray, float, int]:
    """Derivative-free minimisation: the simulated curve is piecewise (steps are discrete)."""
    n = x0.size
    simplex = [x0] + [x0 + np.eye(n)[i] * 0.5 for i in range(n)]
    values = [f(x) for x in simplex]
    evaluations = n + 1
    while evaluations < max_evaluations:
        order = np.argsort(values)
        simplex = [simplex[i] for i in order]
        values = [values[i] for i in order]
        if values[-1] - values[0] < tolerance:
            break
        centroid = np.mean(simplex[:-1], axis=0)
        reflected = centroid + (centroid - simplex[-1])
        fr = f(reflected)
        evaluations += 1
        if fr < values[0]:
            expanded = centroid + 2 * (centroid - simplex[-1])
            fe = f(expanded)
            evaluations += 1
            simplex[-1], values[-1] = (expanded, fe) if fe < fr else (reflected, fr)
        elif fr < values[-2]:
            simplex[-1], values[-1] = reflected, fr
        else:
            contracted = centroid + 0.5 * (simplex[-1] - centroid)
            fc = f(contracted)
            evaluations += 1
            if fc < values[-1]:
                simplex[-1], values[-1] = contracted, fc
            else:
                simplex = [simplex[0] + 0.5 * (x - simplex[0]) for x in simplex]
                values = [values[0]] + [f(x) for x in simplex[1:]]
                evaluations += n
    best = int(np.argmin(values))
    return simplex[best], values[best], evaluations


def fit_efficiency(
    predict: Predictor,
    measured: Sequence[MeasuredPoint],
    start: Efficiency = DEFAULT_EFFICIENCY,
    max_evaluations: int = 300,
) -> Fit:
    """The compute/HBM fractions and step overhead that make the simulator match `measured`."""
    if not measured:
        raise UsageError("calibration needs at least one measured --concurrency point")

    origin = _to_search(start)

    def objective(x: np.ndarray) -> float:
        misfit = rms_log_error(predict, _from_search(x, start), measured)
        return misfit**2 + PRIOR_WEIGHT * float(np.sum(np.square(x - origin)))

    before = rms_log_error(predict, start, measured)
    best, _, evaluations = nelder_mead(objective, origin, max_evaluations, 1e-7)
    fitted = _from_search(best, start)
    after = rms_log_error(predict, fitted, measured)
    if after > before:  # the search never does worse than where it started
        fitted, after = start, before
    return Fit(fitted, before, after, evaluations)


def simulator_predictor(
    arch: ModelArch,
    gpu: GPU,
    cfg: EngineConfig,
    memory: MemoryBreakdown,
    input_len: int,
    output_len: int,
) -> Predictor:
    """Predict a client's closed-loop point the way `inferfleet curve` does, for any efficiency."""

    def predict(efficiency: Efficiency, concurrency: int, num_prompts: int) -> PredictedPoint:
        step_model, limits = replica_engine(arch, gpu, cfg, memory, efficiency)
        n = max(num_prompts, concurrency)
        prompts, outputs = np.full(n, input_len), np.full(n, output_len)
        # Through the API server's front end, as the bench measured it and `curve` prices it.
        loop = ClientClosedLoop(
            limits, prompts, outputs, concurrency, False, front_end_of(efficiency)
        )
        point = loop.price(step_model)
        return PredictedPoint(point.ttft_p50_s, point.itl_p50_s, point.output_tok_per_s)

    return predict


def calibration_document(fit: Fit, gpu: str, model: str, points: int) -> dict[str, object]:
    values = asdict(fit.efficiency)
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "gpu": gpu,
        "model": model,
        "efficiency": {name: values[name] for name in FITTED_FIELDS},
        "fit": {
            "points": points,
            "rmsLogErrorBefore": round(fit.rms_log_error_before, 4),
            "rmsLogErrorAfter": round(fit.rms_log_error_after, 4),
        },
    }


def write_calibration(path: str | Path, document: dict[str, object]) -> None:
    Path(path).write_text(yaml.safe_dump(document, sort_keys=False))


def efficiency_from_document(document: object, where: str) -> Efficiency:
    """Validate a parsed calibration document; errors name the file and the field."""
    try:
        return policy_calibration.efficiency_from_document(document, where)
    except SizingError:
        raise  # a value out of range: the model's own error names the field
    except ValueError as err:
        raise UsageError(str(err)) from None


def load_calibration(path: str | Path) -> Efficiency:
    """Read a calibration YAML written by `inferfleet bench --calibrate`."""
    text = read_text(path, "calibration file")
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise UsageError(f"calibration file {str(path)!r} is not readable YAML: {err}") from None
    return efficiency_from_document(document, f"calibration file {str(path)!r}")
