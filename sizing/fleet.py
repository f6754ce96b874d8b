"""Step 11: replicas and GPUs from usable RPS per replica, N+1, and the minimum warm count."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class FleetSize:
    base_instances: int  # ceil(peak / usable), no headroom
    replicas: int  # with the safety factor and the N+1 spare
    gpus: int
    min_warm: int
    reason: str


def size_fleet(
    peak_rps: float,
    usable_rps_per_replica: float,
    gpus_per_replica: int,
    headroom: float,
    *,
    average_rps: float | None = None,
    cold_start_s: float = 0.0,
    spare_replicas: int = 1,
) -> FleetSize:
    """instances = ceil(peak / usable); replicas = ceil(instances × (1 + headroom)), at least N+1.

    The minimum warm count keeps one failure domain spare above the load that is always there
    (the average, or a third of peak when no average is known): a cold start of minutes means
    replicas that are not warm cannot help with the next surprise.
    """
    if usable_rps_per_replica <= 0:
        raise ValueError(f"usable RPS per replica must be > 0, got {usable_rps_per_replica}")
    base = max(1, math.ceil(peak_rps / usable_rps_per_replica - 1e-9))
    with_headroom = math.ceil(base * (1 + headroom) - 1e-9)
    replicas = max(with_headroom, base + spare_replicas)
    baseline_rps = average_rps if average_rps is not None else peak_rps / 3
    warm_floor = math.ceil(baseline_rps / usable_rps_per_replica - 1e-9) + spare_replicas
    min_warm = min(replicas, max(1 + spare_replicas, warm_floor))
    baseline_word = "average" if average_rps is not None else "a third of peak"
    reason = (
        f"ceil({peak_rps:g} req/s ÷ {usable_rps_per_replica:.3g} usable req/s) = {base} instances"
        f" × (1 + {headroom:.0%}) → {with_headroom}; N+{spare_replicas} → {replicas} replicas"
        f" × {gpus_per_replica} GPUs = {replicas * gpus_per_replica} GPUs; min warm {min_warm}"
        f" ({baseline_word} {baseline_rps:.3g} req/s + {spare_replicas} spare; cold start"
        f" {cold_start_s:.0f} s)"
    )
    return FleetSize(base, replicas, replicas * gpus_per_replica, min_warm, reason)


def circuit_breaker_queue_depth(ttft_slo_s: float, arrival_rps: float) -> tuple[int, int, int]:
    """Max queue before a guaranteed SLO miss (SLO × arrival rate) and the 80-90 % trip band."""
    max_queue = ttft_slo_s * arrival_rps
    return (
        math.floor(max_queue),
        math.floor(max_queue * 0.8),
        math.floor(max_queue * 0.9),
    )
