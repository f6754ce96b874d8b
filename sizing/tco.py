"""Step 12: cost. Average utilization, not peak, decides the real cost per token."""

from __future__ import annotations

from dataclasses import dataclass

HOURS_PER_MONTH = 730.0
# Utilization assumed when no average rate is given: the middle of the 30-60 % the guide
# reports for most production fleets (section 9.2).
DEFAULT_UTILIZATION = 0.45


@dataclass(frozen=True)
class Cost:
    cost_per_hour_usd: float
    cost_per_month_usd: float
    utilization: float
    tokens_per_hour: float  # at that utilization
    cost_per_million_tokens_usd: float
    reason: str


def fleet_cost(
    gpus: int,
    cost_per_gpu_hour_usd: float,
    capacity_tok_per_s: float,
    utilization: float,
    utilization_source: str,
) -> Cost:
    """$/1M tokens = GPU count × $/GPU-hour ÷ (tokens per hour at capacity × utilization)."""
    if not 0 < utilization <= 1:
        raise ValueError(f"utilization must be in (0, 1], got {utilization}")
    per_hour = gpus * cost_per_gpu_hour_usd
    tokens_per_hour = capacity_tok_per_s * 3600 * utilization
    per_million = per_hour / tokens_per_hour * 1e6 if tokens_per_hour > 0 else float("inf")
    reason = (
        f"{gpus} GPUs × ${cost_per_gpu_hour_usd:.2f}/GPU-h = ${per_hour:,.2f}/h"
        f" (${per_hour * HOURS_PER_MONTH:,.0f}/month); {capacity_tok_per_s:,.0f} tok/s at"
        f" capacity × {utilization:.0%} utilization ({utilization_source})"
        f" → ${per_million:.3f} per 1M tokens"
    )
    return Cost(
        per_hour, per_hour * HOURS_PER_MONTH, utilization, tokens_per_hour, per_million, reason
    )
