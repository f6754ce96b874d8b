"""Error bands: quantiles of measured / predicted, interpolated; regimes as the benchmark set's."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sizing.error_bands import (
    BAND_QUANTILES,
    METRICS,
    RATIO_QUANTILES,
    REGIMES,
    curve_regimes,
    interval,
    ratio_at,
    ratio_quantiles,
)
from sizing.errors import InvalidInput


def test_every_regime_and_metric_has_a_rising_band():
    assert set(RATIO_QUANTILES) == set(REGIMES)
    for regime in REGIMES:
        for metric in METRICS:
            values = RATIO_QUANTILES[regime][metric]
            assert len(values) == len(BAND_QUANTILES)
            assert list(values) == sorted(values) and values[0] > 0


@given(st.floats(0.1, 0.9), st.floats(0.1, 0.9), st.sampled_from(REGIMES), st.sampled_from(METRICS))
def test_a_higher_quantile_never_gives_a_lower_ratio(q1, q2, regime, metric):
    low, high = sorted((q1, q2))
    assert ratio_at(regime, metric, low) <= ratio_at(regime, metric, high)


def test_the_recorded_quantiles_are_returned_exactly():
    for q, value in zip(BAND_QUANTILES, RATIO_QUANTILES["knee"]["tpot_ms"], strict=True):
        assert ratio_at("knee", "tpot_ms", q) == pytest.approx(value)
    low, high = interval(100.0, "knee", "tpot_ms")
    assert low == pytest.approx(100 * RATIO_QUANTILES["knee"]["tpot_ms"][0])
    assert high == pytest.approx(100 * RATIO_QUANTILES["knee"]["tpot_ms"][-1])


@pytest.mark.parametrize(
    ("args", "field"),
    [(("knee", "tpot_ms", 0.99), "quantile"), (("busy", "tpot_ms", 0.5), "regime"),
     (("knee", "e2e", 0.5), "metric")],
)  # fmt: skip
def test_out_of_range_questions_name_what_was_wrong(args, field):
    with pytest.raises(InvalidInput, match=field):
        ratio_at(*args)


def test_a_curves_regimes_follow_the_benchmark_readme():
    loads = [1, 8, 16, 64, 256]
    tok = [100.0, 700.0, 1200.0, 1900.0, 2000.0]
    assert curve_regimes(loads, tok, [False] * 5) == [
        "low",
        "low",
        "knee",
        "saturated",
        "saturated",
    ]
    assert curve_regimes([16], [10.0], [True]) == ["saturated"]


def test_quantiles_of_ratios_are_rounded_and_need_data():
    assert ratio_quantiles([1.0] * 10) == (1.0,) * len(BAND_QUANTILES)
    with pytest.raises(InvalidInput):
        ratio_quantiles([])


@given(st.lists(st.floats(0.05, 20), min_size=1, max_size=300))
def test_a_p10_p90_band_holds_at_least_80_percent_of_the_ratios_it_was_taken_from(ratios):
    quantiles = ratio_quantiles(ratios)
    low, high = quantiles[0], quantiles[-1]
    inside = sum(low <= r <= high for r in ratios)
    assert inside >= 0.8 * len(ratios)
    assert list(quantiles) == sorted(quantiles)
