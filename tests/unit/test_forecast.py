"""Forecasters on real traces and on bad input: fallback order, NaN, state round-trip."""

from __future__ import annotations

import base64
import json
import math
import tracemalloc

import numpy as np
import pytest

from controllers.api.packed import INT32, unpack_array, unpacked_bytes
from controllers.api.v1alpha1 import ForecasterMemory, RampMemory
from controllers.policy.scaling.forecast import (
    DAY_S,
    FORECASTERS,
    Forecaster,
    LastValue,
    RampTracker,
    Seasonal,
    make_forecaster,
)
from inferfleet.traces import read_per_minute
from tests.conftest import TRACES

HORIZON_S = 300.0


@pytest.fixture(scope="module")
def m_small_rps() -> list[float]:
    trace = read_per_minute(str(TRACES / "servegen_m_small.per_minute_uniform.csv"))
    return [c / 60 for c in trace.requests]


def mean_abs_error(fc: Forecaster, rps: list[float], score_from: int) -> float:
    """Mean |forecast max over the next 5 min - actual max| once the model is warm."""
    errors = []
    for k, rate in enumerate(rps):
        now_s = (k + 1) * 60.0
        fc.observe(now_s, rate)
        if score_from <= k < len(rps) - 5:
            errors.append(abs(fc.forecast(now_s, HORIZON_S).point_rps - max(rps[k + 1 : k + 6])))
    return float(np.mean(errors))


def test_seasonal_beats_last_value_five_minutes_ahead_on_m_small(m_small_rps):
    score_from = 2 * 1440  # days 2..6, once the daily profile is trusted
    seasonal = mean_abs_error(Seasonal(), m_small_rps, score_from)
    last = mean_abs_error(LastValue(), m_small_rps, score_from)
    assert seasonal < 0.9 * last, (seasonal, last)


def test_holt_winters_beats_last_value_on_m_small(m_small_rps):
    score_from = 2 * 1440
    hw = mean_abs_error(make_forecaster("holt-winters", 60, 360), m_small_rps, score_from)
    last = mean_abs_error(LastValue(), m_small_rps, score_from)
    assert hw < last, (hw, last)


def test_fallback_order_last_value_then_daily():
    fc = Seasonal()
    for k in range(1, 1441):  # one day: not enough for a profile
        fc.observe(k * 60.0, 10.0 + (k % 7))
    assert fc.forecast(1440 * 60.0, HORIZON_S).method == "last-value"
    assert fc.forecast(1440 * 60.0, HORIZON_S).point_rps == 16.0  # max of the last 10 min
    for k in range(1441, 2 * 1440 + 11):
        fc.observe(k * 60.0, 10.0 + (k % 7))
    assert fc.forecast((2 * 1440 + 10) * 60.0, HORIZON_S).method == "seasonal/daily"


def test_nan_negative_and_repeated_times_are_skipped():
    fc = Seasonal()
    fc.observe(60.0, 5.0)
    for bad in (math.nan, math.inf, -3.0, None):
        fc.observe(120.0, bad)
    fc.observe(60.0, 999.0)  # not after the last observation
    f = fc.forecast(120.0, HORIZON_S)
    assert f.point_rps == 5.0 and math.isfinite(f.upper_rps) and f.upper_rps >= 5.0


def test_empty_history_forecasts_zero():
    for name in FORECASTERS:
        f = make_forecaster(name, 60, 360).forecast(0.0, HORIZON_S)
        assert (f.point_rps, f.upper_rps) == (0.0, 0.0)


def test_unknown_forecaster_names_the_choices():
    with pytest.raises(ValueError, match=r"scaling.forecaster .prophet. is unknown; choose one of"):
        make_forecaster("prophet", 60, 360)


@pytest.mark.parametrize("name", sorted(FORECASTERS))
def test_state_round_trips_and_forgets_nothing(name, m_small_rps):
    fc = make_forecaster(name, 60, 360)
    rps = m_small_rps[: 3 * 1440]
    for k, rate in enumerate(rps[:-60]):
        fc.observe((k + 1) * 60.0, rate)
    copy = Forecaster.from_dict(fc.to_dict())
    for k in range(len(rps) - 60, len(rps)):
        fc.observe((k + 1) * 60.0, rps[k])
        copy.observe((k + 1) * 60.0, rps[k])
        assert copy.forecast((k + 1) * 60.0, 360) == fc.forecast((k + 1) * 60.0, 360)


@pytest.mark.parametrize("name", sorted(FORECASTERS))
def test_a_forecaster_restored_every_interval_forecasts_as_the_running_one(name, m_small_rps):
    """The operator rebuilds the policy from its stored state on every pass; policy-replay and
    simulate keep one running. Both must see the same numbers, in float32 profiles too."""
    running = make_forecaster(name, 60, 360)
    restored = make_forecaster(name, 60, 360)
    for k, rate in enumerate(m_small_rps[: 2 * 1440 + 240]):
        t_s = (k + 1) * 60.0
        if k % 7 == 0:  # every bin sees several round trips
            restored = Forecaster.from_dict(json.loads(json.dumps(restored.to_dict())))
            assert restored.forecast(t_s, 360) == running.forecast(t_s, 360)
        running.observe(t_s, rate)
        restored.observe(t_s, rate)
    assert restored.to_dict() == running.to_dict()


def _as_lists(model: dict) -> dict:
    """The model state as the previous release wrote it: plain (nested) lists, None missing."""

    def lists(text: str, shape: tuple[int, ...]) -> list:
        values = unpack_array(text, shape)
        return [[None if math.isnan(v) else v for v in row] for row in values.tolist()]

    out = {}
    for period, profile in model.items():
        rows = (DAY_S if period == "daily" else 7 * DAY_S) // 600
        depth = len(unpacked_bytes(profile["values"], 2**24)) // 4 // rows
        out[period] = {
            "values": lists(profile["values"], (rows, depth)),
            "cycles": [int(c) for c in unpack_array(profile["cycles"], (rows,), INT32)],
            "open": profile["open"],
        }
    return out


def test_state_stored_as_plain_lists_by_an_older_release_still_loads(m_small_rps):
    fc = Seasonal(60, 360)
    for k, rate in enumerate(m_small_rps[: 2 * 1440]):
        fc.observe((k + 1) * 60.0, rate)
    state = fc.to_dict()
    older = json.loads(json.dumps({**state, "model": _as_lists(state["model"])}))
    typed = ForecasterMemory.model_validate(older)  # as the operator reads status
    restored = Forecaster.from_dict(typed.model_dump(by_alias=True, exclude_none=True))
    now_s = 2 * 1440 * 60.0
    assert restored.forecast(now_s, 3600) == fc.forecast(now_s, 3600)
    assert restored.to_dict() == state


def test_state_stored_as_float64_strings_by_an_older_release_still_loads(m_small_rps):
    fc = Seasonal(60, 360)
    for k, rate in enumerate(m_small_rps[: 2 * 1440]):
        fc.observe((k + 1) * 60.0, rate)
    state = fc.to_dict()

    def widened(text: str, dtype: str) -> str:
        values = np.frombuffer(unpacked_bytes(text, 2**24), dtype=dtype)
        return base64.b64encode(values.astype("<f8").tobytes()).decode("ascii")

    older_model = {
        period: {
            **profile,
            "values": widened(profile["values"], "<f4"),
            "cycles": widened(profile["cycles"], "<i4"),
        }
        for period, profile in state["model"].items()
    }
    older = json.loads(json.dumps({**state, "model": older_model}))
    typed = ForecasterMemory.model_validate(older)
    restored = Forecaster.from_dict(typed.model_dump(by_alias=True, exclude_none=True))
    now_s = 2 * 1440 * 60.0
    assert restored.forecast(now_s, 3600) == fc.forecast(now_s, 3600)
    assert restored.to_dict() == state


def test_a_learned_profile_is_small_in_memory(m_small_rps):
    """The operator keeps several copies of every fleet's state (the watch's copy of the fleet,
    its policy memory); at 1,000 fleets each 100 KB is 100 MB."""
    fc = Seasonal(60, 360)
    for k, rate in enumerate(m_small_rps[: 8 * 1440]):  # a week and a day: every bin filled
        fc.observe((k + 1) * 60.0, rate)
    text = json.dumps(fc.to_dict())
    tracemalloc.start()
    try:
        parsed = json.loads(text)
        size_b, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert parsed["forecaster"] == "seasonal"
    assert size_b < 100_000


def test_corrupt_state_is_a_clear_error():
    with pytest.raises(ValueError, match="forecaster state is not usable"):
        Forecaster.from_dict({"forecaster": "seasonal"})


def test_upper_quantile_learns_the_size_of_misses():
    fc = LastValue()
    for k in range(1, 3 * DAY_S // 60):
        fc.observe(k * 60.0, 100.0 if (k // 10) % 2 else 50.0)  # jumps 2x every 10 minutes
    f = fc.forecast(k * 60.0, 360)
    assert f.upper_rps >= 1.9 * f.point_rps or f.point_rps == 100.0


def test_ramp_tracker_reports_high_growth_over_one_cold_start():
    ramps = RampTracker(interval_s=60, cold_start_s=300)
    assert ramps.high_growth_rps(0.99) is None
    for k in range(2000):
        ramps.observe(10.0 + (30.0 if k % 100 == 0 else 0.0))
    growth = ramps.high_growth_rps(0.99)
    assert growth is not None and 29.0 <= growth <= 33.0


def test_ramps_count_only_growth_beyond_what_was_expected():
    """A rise the forecast foresaw is not a surprise: the spare is not paid for it twice."""
    foreseen, raw = RampTracker(60, 300), RampTracker(60, 300)
    for k in range(600):
        rate = 10.0 + (k % 60)  # climbs 1 req/s a minute, then drops back
        foreseen.observe(rate, expected_rps=rate + 6.0)  # a forecast six minutes ahead
        raw.observe(rate)
    assert (foreseen.high_growth_rps(0.99) or 0.0) < 0.01  # the first bin: no growth
    growth = raw.high_growth_rps(0.99)
    assert growth is not None and growth >= 5.0


def test_ramp_state_from_before_expectations_were_kept_still_loads():
    ramps = RampTracker(60, 300)
    state = ramps.to_dict()
    older = {**state, "window": [1.0, 2.0]}
    ramps.load(RampMemory.model_validate(older).model_dump(by_alias=True, exclude_none=True))
    ramps.observe(3.0)
    assert list(ramps.window) == [(1.0, 1.0), (2.0, 2.0), (3.0, 3.0)]
