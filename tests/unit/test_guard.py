"""The SLO guard: acts after N bad scrapes by a bounded step sized from the overload, holds
scale-down while on and for its window after, never moves on unknown signals; and the
decision obeys it in every mode that scales."""

from __future__ import annotations

import math

import pytest

from controllers.policy.scaling.capacity import LoadSample, SLOLimits
from controllers.policy.scaling.guard import (
    DRAIN_S,
    LATENCY_FACTOR_CAP,
    GuardConfig,
    SLOGuard,
    overload_factor,
)
from controllers.policy.scaling.policy import ClosedLoop, Metrics, ScalingConfig, ScalingPolicy

LIMITS = SLOLimits(ttft_p99_s=1.5, itl_p99_s=0.05)
CALM = LoadSample(ready=10, served_rps=10.0, waiting=0.0, ttft_p99_s=0.4)


def guard(scrapes: int = 2, window_s: float = 600.0) -> SLOGuard:
    return SLOGuard(LIMITS, GuardConfig(scrapes=scrapes), window_s, 60.0)


def test_ttft_over_the_slo_for_n_scrapes_scales_by_the_latency_ratio_with_the_numbers():
    g = guard()
    slow = LoadSample(ready=10, served_rps=10.0, waiting=0.0, ttft_p99_s=1.8)
    first = g.observe(60.0, slow, current=10, demand_rps=None)
    assert first.floor is None and first.hold  # one scrape is not yet a trend
    second = g.observe(120.0, slow, current=10, demand_rps=None)
    assert second.floor == math.ceil(10 * 1.8 / 1.5)
    assert "TTFT P99 1.8 s > SLO 1.5 s" in second.reason and "for 2 scrapes" in second.reason


def test_a_queue_is_sized_by_what_must_be_served_including_the_queue():
    sample = LoadSample(ready=4, served_rps=8.0, waiting=240.0, ttft_p99_s=9.0)
    factor = overload_factor(sample, LIMITS, demand_rps=12.0)
    assert factor == pytest.approx((12.0 + 240.0 / DRAIN_S) / 8.0)
    g = guard(scrapes=1)
    verdict = g.observe(60.0, sample, current=4, demand_rps=12.0)
    assert verdict.floor == min(8, math.ceil(4 * factor))
    assert "240 requests waiting on 4 ready" in verdict.reason


def test_latency_alone_sizes_at_most_the_cap_and_one_action_at_most_the_step():
    huge = LoadSample(ready=10, served_rps=10.0, waiting=0.0, ttft_p99_s=60.0)
    assert overload_factor(huge, LIMITS, None) == LATENCY_FACTOR_CAP
    flooded = LoadSample(ready=10, served_rps=1.0, waiting=5000.0)
    g = SLOGuard(LIMITS, GuardConfig(scrapes=1, max_step_fraction=0.5), 600.0, 60.0)
    assert g.observe(60.0, flooded, current=10, demand_rps=None).floor == 15


def test_a_queue_with_nothing_served_asks_for_one_whole_step():
    g = guard(scrapes=1)
    stuck = LoadSample(ready=3, served_rps=0.0, waiting=50.0)
    assert g.observe(60.0, stuck, current=3, demand_rps=None).floor == 6


def test_unknown_signals_neither_trip_nor_clear_the_guard():
    g = guard()
    slow = LoadSample(ready=10, served_rps=10.0, ttft_p99_s=3.0)
    g.observe(60.0, slow, current=10, demand_rps=None)
    assert g.observe(120.0, None, current=10, demand_rps=None).floor is None  # a gap
    assert g.observe(180.0, LoadSample(ready=10), current=10, demand_rps=None).floor is None
    assert g.observe(240.0, slow, current=10, demand_rps=None).floor is not None  # streak kept


def test_it_holds_scale_down_for_the_window_after_it_acted_then_lets_go():
    g = guard(scrapes=1, window_s=600.0)
    slow = LoadSample(ready=10, served_rps=10.0, waiting=0.0, ttft_p99_s=2.0)
    assert g.observe(0.0, slow, current=10, demand_rps=None).floor is not None
    assert g.observe(300.0, CALM, current=14, demand_rps=None).hold
    assert not g.observe(660.0, CALM, current=14, demand_rps=None).hold


def test_a_growing_queue_trips_it_before_the_queue_is_long():
    g = guard(scrapes=2)
    for t, waiting in ((60.0, 2.0), (120.0, 4.0)):
        assert (
            g.observe(t, LoadSample(ready=10, served_rps=10.0, waiting=waiting), 10, None).floor
            is None
        )
    verdict = g.observe(180.0, LoadSample(ready=10, served_rps=10.0, waiting=6.0), 10, None)
    assert verdict.floor is not None and "queue grew 4 -> 6" in verdict.reason


def test_a_full_queue_that_grew_acts_on_its_first_scrape_a_standing_one_waits():
    g = guard(scrapes=3)
    full = LoadSample(ready=4, served_rps=8.0, waiting=40.0, ttft_p99_s=6.0)
    verdict = g.observe(60.0, full, current=4, demand_rps=12.0)
    assert verdict.floor is not None and "for 1 scrapes" in verdict.reason
    # The same queue, no longer growing, is a trend to confirm over the configured scrapes.
    assert g.observe(120.0, full, current=verdict.floor, demand_rps=12.0).floor is None
    assert g.observe(180.0, full, current=verdict.floor, demand_rps=12.0).floor is not None


def _policy(mode: str) -> ScalingPolicy:
    config = ScalingConfig(
        usable_rps_per_replica=1.0,
        cold_start_s=120.0,
        mode=mode,  # type: ignore[arg-type]
        min_warm_replicas=0,
        static_replicas=10,
        closed_loop=ClosedLoop(limits=LIMITS, guard=GuardConfig(scrapes=1, max_step_fraction=2.0)),
    )
    return ScalingPolicy(config)


@pytest.mark.parametrize("mode", ["predictive", "reactive", "keda"])
def test_the_decision_follows_the_guard_and_never_scales_down_while_it_holds(mode):
    policy = _policy(mode)
    # The plan says 10 req/s fit 10 replicas; production queues and misses TTFT.
    over = LoadSample(ready=10, served_rps=7.0, waiting=3000.0, ttft_p99_s=6.0)
    decision = policy.step(60.0, Metrics(rps=10.0, load=over), current_replicas=10)
    assert decision.desired_replicas == 30 and "SLO guard" in decision.reason
    # Then load drops to a third: the plan alone would shrink, the guard's window holds.
    calm = LoadSample(ready=decision.desired_replicas, served_rps=3.0, waiting=0.0,
                      ttft_p99_s=0.3)  # fmt: skip
    later = policy.step(120.0, Metrics(rps=3.0, load=calm), decision.desired_replicas)
    assert later.desired_replicas == decision.desired_replicas
    assert "no scale-down while the SLO guard holds" in later.reason


def test_static_mode_keeps_the_plan_count_whatever_the_guard_sees():
    policy = _policy("static")
    over = LoadSample(ready=10, served_rps=7.0, waiting=300.0, ttft_p99_s=6.0)
    assert policy.step(60.0, Metrics(rps=10.0, load=over), 10).desired_replicas == 10


def test_guard_state_round_trips_through_the_policy_memory():
    policy = _policy("predictive")
    over = LoadSample(ready=10, served_rps=7.0, waiting=300.0, ttft_p99_s=6.0)
    policy.step(60.0, Metrics(rps=10.0, load=over), 10)
    again = ScalingPolicy.from_dict(policy.config, policy.to_dict())
    assert again.to_dict() == policy.to_dict()


def test_latency_over_the_slo_at_light_load_is_not_a_shortage():
    """Replicas serving a tenth of what one can, still over the ITL SLO per step: more of them
    would not shorten a step, so the guard does not add any (step 13 and the findings say it)."""
    g = guard(scrapes=1)
    light = LoadSample(ready=8, served_rps=8 * 0.2, waiting=0.0, itl_p99_s=0.06)
    assert g.observe(60.0, light, 8, None, capacity_rps=2.0).floor is None
    busy = LoadSample(ready=8, served_rps=8 * 1.5, waiting=0.0, itl_p99_s=0.06)
    assert g.observe(120.0, busy, 8, None, capacity_rps=2.0).floor == 10


def test_latency_over_the_slo_at_light_load_holds_scale_down_without_adding_replicas():
    g = guard(scrapes=1)
    light = LoadSample(ready=10, served_rps=5.0, waiting=0.0, ttft_p99_s=2.5)  # 0.5 each
    verdict = g.observe(60.0, light, current=10, demand_rps=None, capacity_rps=7.0)
    assert verdict.floor is None and verdict.hold
    assert not g.observe(120.0, CALM, current=10, demand_rps=None, capacity_rps=7.0).hold
    restored = guard(scrapes=1)
    g.observe(180.0, light, current=10, demand_rps=None, capacity_rps=7.0)
    restored.load(g.to_dict())
    assert restored.observe(240.0, None, current=10, demand_rps=None).hold  # a gap keeps it
    slow_steps = LoadSample(ready=10, served_rps=5.0, waiting=0.0, itl_p99_s=0.2)
    assert not guard(scrapes=1).observe(60.0, slow_steps, 10, None, 7.0).hold  # no ratchet


def test_ttft_over_the_slo_on_busy_gpus_is_a_shortage_even_below_the_plans_share():
    g = guard(scrapes=1)
    busy = LoadSample(ready=10, served_rps=5.0, waiting=0.0, ttft_p99_s=2.5, gpu_busy_ratio=0.9)
    assert g.observe(60.0, busy, current=10, demand_rps=None, capacity_rps=7.0).floor == 15
    idle_gpus = LoadSample(ready=10, served_rps=5.0, ttft_p99_s=2.5, gpu_busy_ratio=0.3)
    assert guard(scrapes=1).observe(60.0, idle_gpus, 10, None, 7.0).floor is None
    slow_steps = LoadSample(ready=10, served_rps=5.0, itl_p99_s=0.2, gpu_busy_ratio=0.95)
    assert guard(scrapes=1).observe(60.0, slow_steps, 10, None, 7.0).floor is None  # ITL: not
