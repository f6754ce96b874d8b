"""The guide's section 9.3 thresholds and the step-13 trigger, each overridable by spec key."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from controllers.api.v1alpha1 import (
    parse_decimal,
)
from sizing.errors import InvalidInput

# --- thresholds -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Thresholds:
    """The guide's table (section 9.3) and step-13 trigger, each overridable by spec key.

    Percentages are percent (0-100); `None` disables a check that has no universal default.
    """

    gpu_memory_low_percent: float = 70.0
    gpu_memory_high_percent: float = 95.0
    compute_low_percent: float = 60.0
    compute_saturated_percent: float = 95.0
    kv_cache_high_percent: float = 90.0
    preemption_warning_percent: float = 5.0
    preemption_degraded_percent: float = 20.0
    fleet_utilization_trap_percent: float = 40.0
    fleet_utilization_no_headroom_percent: float = 90.0
    queue_depth_per_replica_max: float = 1.0
    prefix_cache_hit_low_percent: float = 30.0
    spec_decode_acceptance_low_percent: float = 50.0
    adapter_hit_low_percent: float = 60.0
    tokens_per_gpu_hour_min: float | None = None
    resize_ttft_above_percent: float = 30.0
    resize_ttft_clear_percent: float = 15.0
    resize_gpu_util_below_points: float = 20.0
    resize_gpu_util_clear_points: float = 10.0
    # Over-sized: the day's peak request rate below this share of the planned peak.
    resize_peak_below_percent: float = 50.0
    resize_peak_clear_percent: float = 70.0
    resize_fire_after_s: float = 1800.0
    resize_clear_after_s: float = 3600.0
    # Measured capacity per replica this far from the prediction (either way) is an Event.
    capacity_divergence_percent: float = 25.0


# spec.monitoring.thresholds key -> Thresholds field. Keys are camelCase like the rest of the API.
THRESHOLD_KEYS: Mapping[str, str] = {
    "gpuMemoryLowPercent": "gpu_memory_low_percent",
    "gpuMemoryHighPercent": "gpu_memory_high_percent",
    "computeLowPercent": "compute_low_percent",
    "computeSaturatedPercent": "compute_saturated_percent",
    "kvCacheHighPercent": "kv_cache_high_percent",
    "preemptionWarningPercent": "preemption_warning_percent",
    "preemptionDegradedPercent": "preemption_degraded_percent",
    "fleetUtilizationTrapPercent": "fleet_utilization_trap_percent",
    "fleetUtilizationNoHeadroomPercent": "fleet_utilization_no_headroom_percent",
    "queueDepthPerReplicaMax": "queue_depth_per_replica_max",
    "prefixCacheHitLowPercent": "prefix_cache_hit_low_percent",
    "specDecodeAcceptanceLowPercent": "spec_decode_acceptance_low_percent",
    "adapterHitLowPercent": "adapter_hit_low_percent",
    "tokensPerGPUHourMin": "tokens_per_gpu_hour_min",
    "resizeTTFTAbovePercent": "resize_ttft_above_percent",
    "resizeTTFTClearPercent": "resize_ttft_clear_percent",
    "resizeGPUUtilBelowPoints": "resize_gpu_util_below_points",
    "resizeGPUUtilClearPoints": "resize_gpu_util_clear_points",
    "resizePeakBelowPercent": "resize_peak_below_percent",
    "resizePeakClearPercent": "resize_peak_clear_percent",
    "resizeFireAfterSeconds": "resize_fire_after_s",
    "resizeClearAfterSeconds": "resize_clear_after_s",
    "capacityDivergencePercent": "capacity_divergence_percent",
}

# (lower, upper) pairs that must stay ordered after overrides, or the bands make no sense.
_ORDERED = (
    ("gpu_memory_low_percent", "gpu_memory_high_percent"),
    ("compute_low_percent", "compute_saturated_percent"),
    ("preemption_warning_percent", "preemption_degraded_percent"),
    ("fleet_utilization_trap_percent", "fleet_utilization_no_headroom_percent"),
    ("resize_ttft_clear_percent", "resize_ttft_above_percent"),
    ("resize_gpu_util_clear_points", "resize_gpu_util_below_points"),
    ("resize_peak_below_percent", "resize_peak_clear_percent"),
)


def resolve_thresholds(overrides: Mapping[str, str]) -> Thresholds:
    """Defaults with `spec.monitoring.thresholds` applied; unknown keys and bad bands raise."""
    unknown = sorted(set(overrides) - set(THRESHOLD_KEYS))
    if unknown:
        raise InvalidInput(
            f"spec.monitoring.thresholds: unknown key(s) {', '.join(unknown)}; "
            f"valid keys are {', '.join(THRESHOLD_KEYS)}"
        )
    values = {THRESHOLD_KEYS[key]: parse_decimal(text) for key, text in overrides.items()}
    thresholds = replace(Thresholds(), **values)
    for low, high in _ORDERED:
        if getattr(thresholds, low) > getattr(thresholds, high):
            raise InvalidInput(
                f"spec.monitoring.thresholds: {_key_of(low)} ({getattr(thresholds, low):g}) must "
                f"not exceed {_key_of(high)} ({getattr(thresholds, high):g})"
            )
    return thresholds


def _key_of(field_name: str) -> str:
    return next(key for key, name in THRESHOLD_KEYS.items() if name == field_name)
