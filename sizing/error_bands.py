"""Error bars from the model's measured residuals (issue 14).

How far measured vLLM figures fell from the prediction, as quantiles of measured / predicted
over the benchmark set, per load regime (the set's README: low = at most 8 requests in flight;
saturated = within 10 % of the curve's best throughput, or bound by the KV cache; the knee in
between). A curve point's interval is its prediction times its regime's quantiles; a plan
sizes on a low quantile of usable req/s so that a fleet is not undersized when the model is
optimistic. The table is recorded by `inferfleet accuracy --bands` and an accuracy test checks
it against a fresh scoring run, so it cannot drift from the model it describes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from sizing.errors import InvalidInput

METRICS = ("output_tok_per_s", "ttft_ms", "tpot_ms")
REGIMES = ("low", "knee", "saturated")
BAND_QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)
# The benchmark README's regimes: low = at most this many requests in flight ...
LOW_LOAD_MAX_IN_FLIGHT = 8
# ... saturated = within this share of the sweep's best throughput (or bound by the KV cache).
SATURATED_WITHIN = 0.10
# What a plan sizes on unless told otherwise: the low decile of usable req/s.
DEFAULT_CAPACITY_QUANTILE = 0.1

# measured / predicted at BAND_QUANTILES, per regime and metric: `inferfleet accuracy --bands`.
RATIO_QUANTILES: dict[str, dict[str, tuple[float, ...]]] = {
    "low": {
        "output_tok_per_s": (0.615, 0.735, 0.988, 1.108, 1.355),
        "ttft_ms": (0.4, 0.784, 1.451, 1.732, 1.926),
        "tpot_ms": (0.692, 0.851, 0.933, 1.084, 1.486),
    },
    "knee": {
        "output_tok_per_s": (0.66, 0.797, 0.95, 1.093, 1.253),
        "ttft_ms": (0.492, 0.84, 1.662, 2.423, 3.503),
        "tpot_ms": (0.758, 0.88, 1.028, 1.21, 1.436),
    },
    "saturated": {
        "output_tok_per_s": (0.721, 0.919, 1.048, 1.351, 1.697),
        "ttft_ms": (0.414, 0.414, 0.846, 0.857, 0.857),
        "tpot_ms": (0.736, 0.914, 1.162, 1.355, 1.917),
    },
}


def regime_of(load: int, output_tok_per_s: float, sweep_best: float, kv_bound: bool) -> str:
    if load <= LOW_LOAD_MAX_IN_FLIGHT:
        return "low"
    if kv_bound or output_tok_per_s >= (1 - SATURATED_WITHIN) * sweep_best:
        return "saturated"
    return "knee"


def curve_regimes(
    loads: Sequence[float], output_tok_per_s: Sequence[float], kv_bound: Sequence[bool]
) -> list[str]:
    """The regime of each point of one predicted curve (its own best throughput)."""
    best = max(output_tok_per_s, default=0.0)
    return [
        regime_of(round(load), tok, best, bound)
        for load, tok, bound in zip(loads, output_tok_per_s, kv_bound, strict=True)
    ]


def ratio_at(regime: str, metric: str, quantile: float) -> float:
    """measured / predicted of `metric` at `quantile` in `regime` (interpolated)."""
    if regime not in RATIO_QUANTILES:
        raise InvalidInput(f"regime must be one of {', '.join(REGIMES)}, got {regime!r}")
    if metric not in METRICS:
        raise InvalidInput(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    low, high = BAND_QUANTILES[0], BAND_QUANTILES[-1]
    if not low <= quantile <= high:
        raise InvalidInput(
            f"quantile must be in [{low}, {high}] (the recorded band), got {quantile}"
        )
    return float(np.interp(quantile, BAND_QUANTILES, RATIO_QUANTILES[regime][metric]))


def ratio_quantiles(ratios: Sequence[float]) -> tuple[float, ...]:
    """The recorded quantiles of some measured / predicted ratios, each edge an observed ratio
    taken and rounded (to 3 decimals) away from the median, so that the P10-P90 band holds at
    least 80 % of the ratios it was taken from, not 80 % less interpolation and rounding."""
    if not ratios:
        raise InvalidInput("no residuals to take quantiles of")
    values = np.asarray(ratios, dtype=float)
    out = []
    for q in BAND_QUANTILES:
        if q < 0.5:
            out.append(math.floor(float(np.quantile(values, q, method="lower")) * 1e3) / 1e3)
        elif q > 0.5:
            out.append(math.ceil(float(np.quantile(values, q, method="higher")) * 1e3) / 1e3)
        else:
            out.append(round(float(np.quantile(values, q)), 3))
    return tuple(out)


def interval(predicted: float, regime: str, metric: str) -> tuple[float, float]:
    """The p10-p90 range the measured value fell in around predictions like this one."""
    return (
        predicted * ratio_at(regime, metric, BAND_QUANTILES[0]),
        predicted * ratio_at(regime, metric, BAND_QUANTILES[-1]),
    )
