"""Token-length samples from the three percentiles a workload spec gives (P50/P95/P99).

The spec never gives a full distribution, so we draw from the simplest one that honours all
three numbers: an inverse CDF that is linear in log(length) between percentile anchors. Below
P50 it mirrors the P50→P95 slope (lengths are roughly log-symmetric around the median); above
P99 it keeps the P95→P99 slope up to the 100th percentile, so the tail stays heavy but finite.
Sampling takes a seeded numpy Generator from the caller: same seed, same lengths.
"""

from __future__ import annotations

import numpy as np

from sizing.errors import InvalidInput
from sizing.workload import Percentiles

_ANCHOR_QUANTILES = (0.0, 0.05, 0.5, 0.95, 0.99, 1.0)


def check_percentiles(field: str, lengths: Percentiles) -> None:
    """Lengths must be positive and ordered, or the inverse CDF would run backwards."""
    if lengths.p50 < 1:
        raise InvalidInput(f"{field}: P50 must be at least 1 token, got {lengths.p50}")
    if not lengths.p50 <= lengths.p95 <= lengths.p99:
        raise InvalidInput(
            f"{field}: percentiles must satisfy P50 <= P95 <= P99, got "
            f"{lengths.p50}/{lengths.p95}/{lengths.p99}"
        )


def inverse_cdf_anchors(lengths: Percentiles) -> tuple[np.ndarray, np.ndarray]:
    """(quantiles, log lengths) of the piecewise log-linear inverse CDF."""
    log50, log95, log99 = np.log([lengths.p50, lengths.p95, lengths.p99])
    upper_slope = (log99 - log95) / (0.99 - 0.95)
    log_max = log99 + upper_slope * (1.0 - 0.99)
    log05 = max(0.0, 2 * log50 - log95)  # mirror of P95 around the median, at least 1 token
    log_min = max(0.0, log05 - (log50 - log05) / (0.5 - 0.05) * 0.05)
    return np.array(_ANCHOR_QUANTILES), np.array([log_min, log05, log50, log95, log99, log_max])


def sample_lengths(
    lengths: Percentiles, count: int, rng: np.random.Generator, max_tokens: int | None = None
) -> np.ndarray:
    """`count` integer lengths (>= 1, <= max_tokens when given) through the three percentiles."""
    check_percentiles("lengths", lengths)
    if count < 0:
        raise InvalidInput(f"count must be >= 0, got {count}")
    quantiles, log_lengths = inverse_cdf_anchors(lengths)
    drawn = np.exp(np.interp(rng.random(count), quantiles, log_lengths))
    result = np.maximum(np.rint(drawn), 1).astype(np.int64)
    if max_tokens is not None:
        np.minimum(result, max_tokens, out=result)
    return result
