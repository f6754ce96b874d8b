"""sizing.workload: rates and lengths the fleet arithmetic cannot use are refused by field."""

from __future__ import annotations

import math

import pytest

from sizing.errors import InvalidInput
from sizing.workload import MAX_RATE_RPS, Percentiles, Workload

LENGTHS = Percentiles(500, 1500, 2000)


@pytest.mark.parametrize("rps", [0.0, -1.0, math.nan, math.inf, MAX_RATE_RPS * 10])
def test_peak_rate_out_of_range_names_the_field(rps: float) -> None:
    with pytest.raises(InvalidInput) as caught:
        Workload(LENGTHS, LENGTHS, peak_rps=rps)
    assert caught.value.field == "workload.peak_rps"


@pytest.mark.parametrize("rps", [0.0, math.nan, 1e400])
def test_average_rate_out_of_range_names_the_field(rps: float) -> None:
    with pytest.raises(InvalidInput) as caught:
        Workload(LENGTHS, LENGTHS, peak_rps=10.0, average_rps=rps)
    assert caught.value.field == "workload.average_rps"


@pytest.mark.parametrize(
    ("prompt", "field"),
    [
        (Percentiles(0, 1, 1), "workload.prompt.p50"),
        (Percentiles(1, 2, 10**30), "workload.prompt.p99"),
        (Percentiles(900, 500, 1000), "workload.prompt"),
    ],
)
def test_lengths_out_of_range_name_the_percentile(prompt: Percentiles, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        Workload(prompt, LENGTHS, peak_rps=1.0)
    assert caught.value.field == field


def test_rates_inside_the_bounds_are_kept() -> None:
    w = Workload(LENGTHS, LENGTHS, peak_rps=MAX_RATE_RPS, average_rps=1e-6)
    assert (w.peak_rps, w.average_rps) == (MAX_RATE_RPS, 1e-6)
