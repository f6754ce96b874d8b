"""Step 1: the workload profile — size for the worst case, not the average."""

from __future__ import annotations

import math
from dataclasses import dataclass

from sizing.errors import InvalidInput

# Headroom by predictability (field guide 8.3 / step 11): 20 % for stable, well-understood
# traffic; 50 % for new deployments or high input-length variance.
HEADROOM_BY_PREDICTABILITY = {"predictable": 0.20, "new": 0.50}
# P99/P50 prompt ratio above which the guide calls input-length variance "high" (it quotes 3-5x).
HIGH_VARIANCE_P99_OVER_P50 = 5.0
CONTEXT_ROUNDING_TOKENS = 1024
# Bounds far above any real service (the largest public APIs serve thousands of req/s; the
# longest contexts are ~10M tokens): beyond them the fleet arithmetic stops being finite.
MAX_RATE_RPS = 1_000_000.0
# And far below: one request in about 12 days. Smaller rates divide into replica counts that
# overflow (1e-310 req/s per replica made the scaler's ceil() raise).
MIN_RATE_RPS = 1e-6
MAX_TOKENS = 2**24


@dataclass(frozen=True)
class Percentiles:
    """Token-length percentiles of one request field."""

    p50: int
    p95: int
    p99: int

    @property
    def mean_estimate(self) -> float:
        """Mean of a log-normal through P50 and P95 (lengths are right-skewed, so mean > P50)."""
        if self.p95 <= self.p50:
            return float(self.p50)
        sigma = math.log(self.p95 / self.p50) / 1.6449
        return self.p50 * math.exp(sigma * sigma / 2)


def check_rate_rps(value: float, field: str) -> float:
    """An arrival rate the sizing can divide by: finite, from MIN_RATE_RPS to MAX_RATE_RPS."""
    if not (isinstance(value, (int, float)) and MIN_RATE_RPS <= value <= MAX_RATE_RPS):
        raise InvalidInput(
            f"{field}: {value!r} req/s must be at least {MIN_RATE_RPS:g} and at most "
            f"{MAX_RATE_RPS:,.0f}",
            field=field,
        )
    return float(value)


def _check_tokens(p: Percentiles, field: str) -> None:
    for name in ("p50", "p95", "p99"):
        value = getattr(p, name)
        if not isinstance(value, int) or not 1 <= value <= MAX_TOKENS:
            raise InvalidInput(
                f"{field}.{name}: {value!r} tokens must be an integer in [1, {MAX_TOKENS}]",
                field=f"{field}.{name}",
            )
    if not p.p50 <= p.p95 <= p.p99:
        raise InvalidInput(
            f"{field}: percentiles must satisfy p50 <= p95 <= p99, got {p.p50}/{p.p95}/{p.p99}",
            field=field,
        )


@dataclass(frozen=True)
class Workload:
    """Arrival rates and lengths, checked on construction so no later step divides by zero."""

    prompt: Percentiles
    output: Percentiles
    peak_rps: float
    average_rps: float | None = None
    max_model_len: int | None = None
    predictability: str = "new"
    prefix_share: float | None = None

    def __post_init__(self) -> None:
        check_rate_rps(self.peak_rps, "workload.peak_rps")
        if self.average_rps is not None:
            check_rate_rps(self.average_rps, "workload.average_rps")
        _check_tokens(self.prompt, "workload.prompt")
        _check_tokens(self.output, "workload.output")
        if self.max_model_len is not None and not 1 <= self.max_model_len <= MAX_TOKENS:
            raise InvalidInput(
                f"workload.max_model_len: {self.max_model_len} must be in [1, {MAX_TOKENS}]",
                field="workload.max_model_len",
            )
        if self.predictability not in HEADROOM_BY_PREDICTABILITY:
            raise InvalidInput(
                f"workload.predictability: {self.predictability!r} is not one of "
                f"{', '.join(HEADROOM_BY_PREDICTABILITY)}",
                field="workload.predictability",
            )
        if self.prefix_share is not None and not 0.0 <= self.prefix_share <= 1.0:
            raise InvalidInput(
                f"workload.prefix_share: {self.prefix_share} must be in [0, 1]",
                field="workload.prefix_share",
            )


@dataclass(frozen=True)
class WorkloadProfile:
    """The decisions of step 1, with the numbers that drove them."""

    max_model_len: int
    headroom: float
    archetype: str
    prefill_decode_ratio: float
    high_variance: bool
    reason: str


def profile_workload(workload: Workload, model_max_len: int) -> WorkloadProfile:
    """Context limit from P99 lengths, headroom from predictability and variance, archetype."""
    wanted = workload.prompt.p99 + workload.output.p99
    if workload.max_model_len is not None:
        max_len = workload.max_model_len
        len_reason = f"maxModelLen {max_len} as set"
    else:
        max_len = math.ceil(wanted / CONTEXT_ROUNDING_TOKENS) * CONTEXT_ROUNDING_TOKENS
        len_reason = (
            f"P99 prompt {workload.prompt.p99} + P99 output {workload.output.p99} → {max_len}"
        )
    if max_len > model_max_len:
        max_len = model_max_len
        len_reason += f", capped at the model's {model_max_len}"
    spread = workload.prompt.p99 / workload.prompt.p50
    high_variance = spread > HIGH_VARIANCE_P99_OVER_P50
    predictability = workload.predictability
    if predictability == "predictable" and high_variance:
        predictability = "new"
    headroom = HEADROOM_BY_PREDICTABILITY[predictability]
    ratio = workload.prompt.p50 / max(workload.output.p50, 1)
    if ratio >= 4:
        archetype = "prefill-heavy"
    elif ratio <= 0.5:
        archetype = "decode-heavy"
    else:
        archetype = "balanced"
    why_headroom = (
        f"{workload.predictability} traffic"
        if predictability == workload.predictability
        else f"prompt P99/P50 = {spread:.1f}x > {HIGH_VARIANCE_P99_OVER_P50:.0f}x is high variance"
    )
    reason = (
        f"prompt P50/P95/P99 {workload.prompt.p50}/{workload.prompt.p95}/{workload.prompt.p99}, "
        f"output {workload.output.p50}/{workload.output.p95}/{workload.output.p99}; "
        f"max_model_len: {len_reason}; {why_headroom} → {headroom:.0%} headroom; "
        f"prompt:output P50 = {ratio:.1f} → {archetype}; sized at peak {workload.peak_rps:g} req/s"
    )
    return WorkloadProfile(max_len, headroom, archetype, ratio, high_variance, reason)
