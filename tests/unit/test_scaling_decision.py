"""The scaling decision's safety clamps and explanations (pure; no cluster, no clock)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controllers.api.v1alpha1 import ScalingSpec
from controllers.policy.scaling.bounds import Envelope
from controllers.policy.scaling.forecast import Forecast
from controllers.policy.scaling.policy import (
    Metrics,
    ScalingConfig,
    ScalingPolicy,
    Schedule,
    TickInput,
    config_from_spec,
    decide,
    prewarm_plan,
    replicas_for,
)

NOW_S = 9 * 3600.0  # 09:00, a Thursday in policy time 0 (no calendar needed)


def tick(config: ScalingConfig, rps: float | None, current: int, **kw) -> TickInput:
    fc = kw.pop("forecast_rps", None)
    forecast = None if fc is None else Forecast(fc, fc, config.horizon_s, "seasonal/daily")
    return TickInput(
        now_s=kw.pop("now_s", NOW_S),
        config=config,
        metrics=Metrics(rps=rps, age_s=kw.pop("age_s", 0.0)),
        current_replicas=current,
        forecast=forecast,
        ramp_growth_rps=kw.pop("growth", None),
        spare_note=kw.pop("spare_note", ""),
        recent=kw.pop("recent", ()),
    )


configs = st.builds(
    lambda usable, lo, span, gpus, max_gpus: ScalingConfig(
        usable_rps_per_replica=usable,
        cold_start_s=300,
        min_replicas=lo,
        max_replicas=None if span is None else lo + span,
        gpus_per_replica=gpus,
        max_gpus=max_gpus,
    ),
    st.floats(0.1, 50),
    st.integers(0, 5),
    st.one_of(st.none(), st.integers(1, 40)),
    st.sampled_from([1, 2, 4, 8]),
    st.one_of(st.none(), st.integers(8, 256)),
)
rates = st.one_of(st.none(), st.just(math.nan), st.floats(0, 5000))


@given(configs, rates, st.integers(0, 100), st.one_of(st.none(), st.floats(0, 5000)))
def test_desired_stays_within_min_max_and_gpu_limit(cfg, rps, current, fc):
    d = decide(tick(cfg, rps, current, forecast_rps=fc, growth=1.0))
    limit = cfg.upper_limit
    assert d.desired_replicas >= cfg.min_replicas
    if limit is not None and limit >= cfg.min_replicas:
        assert d.desired_replicas <= limit
    if cfg.max_gpus is not None and cfg.max_gpus // cfg.gpus_per_replica >= cfg.min_replicas:
        assert d.desired_replicas * cfg.gpus_per_replica <= cfg.max_gpus


@given(configs, st.integers(0, 100), st.sampled_from(["unknown", "nan", "stale"]))
def test_never_scales_down_on_unknown_or_stale_metrics(cfg, current, how):
    rps, age = {"unknown": (None, 0.0), "nan": (math.nan, 0.0), "stale": (0.0, 3600.0)}[how]
    d = decide(tick(cfg, rps, current, age_s=age))
    limit = cfg.upper_limit
    assert d.desired_replicas >= min(current, limit if limit is not None else current)


@given(st.integers(0, 60), st.integers(0, 59), st.integers(1, 30))
def test_schedules_are_honoured_while_active_only(floor, minute, duration_min):
    cfg = ScalingConfig(
        usable_rps_per_replica=1.0,
        cold_start_s=300,
        min_replicas=0,
        schedules=(Schedule("0 9 * * *", floor, duration_min * 60.0),),
    )
    d = decide(tick(cfg, 0.0, 0, now_s=NOW_S + minute * 60, growth=0.0))
    active = minute * 60 < duration_min * 60
    assert (d.desired_replicas >= floor) if active else (d.desired_replicas == 1)
    assert d.schedule_floor == (floor if active else 0)


@given(st.integers(2, 200), st.floats(0, 10), st.integers(1, 9))
def test_scale_down_waits_for_the_window_and_is_bounded(current, rps, minutes_ago):
    cfg = ScalingConfig(usable_rps_per_replica=1.0, cold_start_s=300, min_replicas=0)
    want = replicas_for(rps, 1.0) + 1
    # A higher recommendation inside the 10-minute window holds the count.
    held = decide(
        tick(cfg, rps, current, growth=0.0, recent=((NOW_S - minutes_ago * 60, current),))
    )
    assert held.desired_replicas == current or want >= current
    # With the window clear, the fleet shrinks by at most 20 % (at least 1) per interval.
    free = decide(tick(cfg, rps, current, growth=0.0, recent=((NOW_S - 11 * 60, current),)))
    step = max(1, math.ceil(current * 0.2))
    assert free.desired_replicas >= current - step
    assert free.desired_replicas >= min(current, want)


def test_the_window_spans_at_least_three_decisions_when_intervals_are_long():
    # 8-minute intervals against a 10-minute window (a compressed demo, a slow resync): one
    # low reading two decisions ago must not shrink the fleet on its own.
    cfg = ScalingConfig(usable_rps_per_replica=1.0, cold_start_s=300, min_replicas=0,
                        interval_s=480.0, min_warm_replicas=0)  # fmt: skip
    assert cfg.stabilization_s == 3 * 480.0
    recent = ((NOW_S - 2 * 480.0, 10),)
    assert decide(tick(cfg, 2.0, 10, recent=recent)).desired_replicas == 10
    free = decide(tick(cfg, 2.0, 10, recent=((NOW_S - 3 * 480.0, 10),)))
    assert free.desired_replicas < 10
    short = ScalingConfig(usable_rps_per_replica=1.0, cold_start_s=300, interval_s=30.0)
    assert short.stabilization_s == short.scale_down_stabilization_s  # as configured


def test_forecast_drives_scale_up_and_explains_itself():
    """A learned forecast's point plus the warm spare (what the forecast missed before)."""
    cfg = ScalingConfig(usable_rps_per_replica=12.0, cold_start_s=300)
    d = decide(tick(cfg, 140.0, 12, forecast_rps=212.0, growth=30.0))
    assert d.need_forecast == 18 and d.warm_spare == 3 and d.desired_replicas == 21
    assert "forecast 212 RPS (seasonal/daily)" in d.reason and "load 140 RPS" in d.reason
    assert "09:06" in d.reason and "5 min cold start" in d.reason
    assert d.reason.endswith("→ 21 replicas; was 12")


def test_without_a_learned_model_predictive_decides_as_reactive():
    """The last-value fallback knows no more than the load: its upper quantile is published
    (need_forecast, the pre-warm plan), the decision is the reactive one."""
    cfg = ScalingConfig(usable_rps_per_replica=12.0, cold_start_s=300)
    fallback = Forecast(150.0, 212.0, cfg.horizon_s, "last-value")
    d = decide(replace(tick(cfg, 140.0, 12, growth=5.0), forecast=fallback))
    r = decide(tick(replace(cfg, mode="reactive"), 140.0, 12, growth=5.0))
    assert d.need_forecast == 18 and d.desired_replicas == r.desired_replicas == 13
    assert d.reason == r.reason


def test_a_forecast_grows_the_fleet_by_a_bounded_step_per_interval():
    cfg = ScalingConfig(usable_rps_per_replica=10.0, cold_start_s=300)
    envelope = Envelope(peak_rps=1000.0, rise_rps=20.0)  # 2 x 20 req/s rise: 4 replicas a tick
    d = decide(replace(tick(cfg, 100.0, 10, forecast_rps=900.0, growth=0.0), envelope=envelope))
    assert d.need_forecast == 90 and d.warm_spare == 1
    assert d.desired_replicas == 10 + 1 + 4  # the reactive answer (need 10 + spare 1) + step
    assert "forecast growth held to 15 this interval" in d.reason


def test_a_learned_forecast_still_counts_when_the_load_is_unknown():
    cfg = ScalingConfig(usable_rps_per_replica=12.0, cold_start_s=300)
    d = decide(tick(cfg, None, 12, forecast_rps=212.0, growth=0.0))
    assert d.desired_replicas == 19 and "load unknown" in d.reason


def test_warm_spare_auto_comes_from_ramps_and_is_at_least_one():
    cfg = ScalingConfig(usable_rps_per_replica=10.0, cold_start_s=300, mode="reactive")
    assert decide(tick(cfg, 100.0, 10, growth=0.0)).desired_replicas == 11
    grown = decide(tick(cfg, 100.0, 10, growth=35.0, spare_note="P99 of ramps"))
    assert grown.desired_replicas == 14 and grown.warm_spare == 4
    assert "growth 35 RPS per cold start at P99 of ramps" in grown.reason


def test_token_budget_lowers_capacity_per_replica():
    cfg = ScalingConfig(
        usable_rps_per_replica=10.0, cold_start_s=300, usable_tok_per_s_per_replica=5000.0
    )
    plain = TickInput(NOW_S, cfg, Metrics(rps=100.0, tok_per_s=100_000.0), 1, None, 0.0)
    # 1000 tokens per request: 5 req/s per replica, not 10.
    assert decide(plain).need_now == 20


def test_static_mode_holds_the_plan_count():
    cfg = ScalingConfig(
        usable_rps_per_replica=1.0, cold_start_s=300, mode="static", static_replicas=7
    )
    assert decide(tick(cfg, 500.0, 3, forecast_rps=900.0)).desired_replicas == 7


def test_config_from_spec_and_bad_cron():
    spec = ScalingSpec.model_validate(
        {
            "minReplicas": 2,
            "maxReplicas": 9,
            "minWarmReplicas": 3,
            "schedules": [{"cron": "30 8 * * 1-5", "minReplicas": 6, "duration": "2h"}],
            "scaleDownStabilization": "5m",
            "interval": "30s",
        }
    )
    cfg = config_from_spec(spec, usable_rps_per_replica=4.0, cold_start_s=240)
    assert (cfg.min_replicas, cfg.max_replicas, cfg.min_warm_replicas) == (2, 9, 3)
    assert cfg.schedules[0].duration_s == 7200 and cfg.scale_down_stabilization_s == 300
    assert cfg.interval_s == 30 and cfg.horizon_s == 270
    with pytest.raises(ValueError, match="not a 5-field cron"):
        Schedule("every morning", 3, 60)
    with pytest.raises(ValueError, match="usableRPSPerReplica must be between 1e-06 and"):
        ScalingConfig(usable_rps_per_replica=0, cold_start_s=300)


def test_policy_state_survives_a_restart():
    cfg = ScalingConfig(usable_rps_per_replica=2.0, cold_start_s=300)
    a = ScalingPolicy(cfg)
    current = 1
    for k in range(1, 200):
        current = a.step(k * 60.0, Metrics(rps=10 + (k % 17)), current).desired_replicas
    b = ScalingPolicy.from_dict(cfg, a.to_dict())
    for k in range(200, 260):
        m = Metrics(rps=10 + (k % 23))
        assert a.step(k * 60.0, m, current) == b.step(k * 60.0, m, current)
        current = a.step(k * 60.0 + 1, m, current).desired_replicas
        b.step(k * 60.0 + 1, m, current)


def test_prewarm_plan_starts_warming_one_cold_start_before_the_daily_peak():
    cfg = ScalingConfig(usable_rps_per_replica=10.0, cold_start_s=300)
    policy = ScalingPolicy(cfg)
    current = 1
    for k in range(1, 3 * 1440 + 1):  # three days: 50 req/s, 200 req/s from 18:00 to 20:00
        minute = k % 1440
        rps = 200.0 if 18 * 60 < minute <= 20 * 60 else 50.0
        current = policy.step(k * 60.0, Metrics(rps=rps), current).desired_replicas
    now_s = 3 * 86_400 + 12 * 3600.0  # noon on day 3
    plan = prewarm_plan(policy.forecaster, cfg, now_s, current_replicas=6)
    assert plan.next_peak_at_s == 3 * 86_400 + 18 * 3600
    assert plan.prewarm_replicas >= 20
    assert plan.prewarm_at_s == 3 * 86_400 + 18 * 3600 - 360
    assert "warming due from 17:54" in plan.reason
    covered = prewarm_plan(policy.forecaster, cfg, now_s, current_replicas=plan.prewarm_replicas)
    assert covered.prewarm_at_s is None and "already cover" in covered.reason
