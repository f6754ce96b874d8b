"""The guide's worked fleet, TCO and circuit-breaker examples, and fleet-size properties."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sizing.fleet import circuit_breaker_queue_depth, size_fleet
from sizing.tco import fleet_cost


def test_guide_fleet_example_52_h100():
    # Figure 8.2: C_max 48, 12 usable RPS per instance, 120 peak RPS, TP4, 1.3 safety factor.
    fleet = size_fleet(peak_rps=120, usable_rps_per_replica=12, gpus_per_replica=4, headroom=0.3)
    assert fleet.base_instances == 10
    assert fleet.replicas == 13
    assert fleet.gpus == 52
    assert "52 GPUs" in fleet.reason


def test_n_plus_one_when_headroom_rounds_to_nothing():
    fleet = size_fleet(peak_rps=1, usable_rps_per_replica=12, gpus_per_replica=1, headroom=0.2)
    assert fleet.base_instances == 1
    assert fleet.replicas == 2  # one spare failure domain even when 1.2 instances round to 2


def test_min_warm_from_average_plus_spare():
    fleet = size_fleet(100, 10, 2, 0.2, average_rps=35, cold_start_s=300)
    assert fleet.min_warm == 5  # ceil(35 / 10) + 1
    assert fleet.min_warm <= fleet.replicas


def test_circuit_breaker_example():
    # Guide 9.4: 2 s TTFT SLO at 50 RPS → 100 queued requests; trip at 80-90.
    assert circuit_breaker_queue_depth(2.0, 50.0) == (100, 80, 90)


def test_utilization_trap_doubles_cost_per_token():
    # Guide step 12: the same fleet at 40 % average utilization costs 2x per token vs 80 %.
    at_40 = fleet_cost(52, 3.0, 10_000, 0.40, "given")
    at_80 = fleet_cost(52, 3.0, 10_000, 0.80, "given")
    assert at_40.cost_per_hour_usd == pytest.approx(156.0)
    assert at_40.cost_per_million_tokens_usd == pytest.approx(2 * at_80.cost_per_million_tokens_usd)
    assert at_40.cost_per_million_tokens_usd == pytest.approx(156.0 / (10_000 * 3600 * 0.4) * 1e6)


@given(
    peak=st.floats(0.01, 5000),
    usable=st.floats(0.05, 500),
    tp=st.sampled_from([1, 2, 4, 8]),
    headroom=st.sampled_from([0.2, 0.5]),
    extra=st.floats(0, 1000),
)
def test_more_load_never_needs_fewer_gpus(peak, usable, tp, headroom, extra):
    low = size_fleet(peak, usable, tp, headroom)
    high = size_fleet(peak + extra, usable, tp, headroom)
    assert high.gpus >= low.gpus
    assert low.replicas >= low.base_instances + 1
    assert low.replicas * usable >= peak * (1 + headroom) - 1e-6 * peak
    assert low.gpus == low.replicas * tp
    assert 1 <= low.min_warm <= low.replicas


def test_zero_usable_rps_is_an_error():
    with pytest.raises(ValueError, match="usable RPS"):
        size_fleet(10, 0, 1, 0.2)


def test_base_instances_is_ceil():
    assert size_fleet(121, 12, 4, 0.3).base_instances == math.ceil(121 / 12)
