"""The graceful stop: the grace period's bounds and hysteresis, the removal order."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from controllers.policy.drain import (
    GRACE_CAP_S,
    GRACE_FLOOR_S,
    GRACE_LADDER_S,
    grace_period_s,
    needed_grace_s,
    planned_request_s,
    removal_costs,
)
from sizing.simulator import LoadPoint

durations = st.one_of(st.none(), st.floats(min_value=-10, max_value=1e6), st.floats())
graces = st.one_of(st.none(), st.sampled_from(GRACE_LADDER_S), st.integers(1, 5000))


@given(durations, graces)
def test_the_grace_period_stays_within_floor_and_cap_and_on_the_ladder(request_s, current_s):
    grace = grace_period_s(request_s, current_s)
    assert GRACE_FLOOR_S <= grace <= GRACE_CAP_S
    assert grace >= needed_grace_s(request_s)  # never shorter than what a P99 request needs
    assert grace in GRACE_LADDER_S or grace == current_s


@given(st.floats(min_value=0, max_value=2000), st.floats(min_value=0, max_value=2000))
def test_a_longer_request_never_gets_a_shorter_grace(a_s, b_s):
    low, high = sorted((a_s, b_s))
    assert grace_period_s(low) <= grace_period_s(high)


def test_a_request_duration_covers_settle_margin_and_shutdown():
    assert grace_period_s(None) == GRACE_FLOOR_S
    assert grace_period_s(60.0) == 120  # 5 + 75 + 15 = 95 -> the next step up
    assert needed_grace_s(10_000.0) == GRACE_CAP_S


def test_a_small_drift_keeps_the_running_grace_and_a_large_one_moves_it():
    assert grace_period_s(60.0, current_s=180) == 180  # within twice the need: no rollout
    assert grace_period_s(60.0, current_s=300) == 120  # far too long: brought down
    assert grace_period_s(200.0, current_s=120) == 300  # too short cuts requests: raised


def test_the_plan_estimate_is_the_curve_point_nearest_c_max_or_the_longest_the_slo_allows():
    def point(concurrency: int, e2e_s: float) -> LoadPoint:
        latencies = (*(0.1,) * 3, *(0.01,) * 3, *(e2e_s,) * 3, e2e_s)
        return LoadPoint(concurrency, None, 10, 1.0, *latencies, *(1.0,) * 3, 0, 0, 1.0, 1.0)

    points = [point(8, 4.0), point(32, 9.0), point(64, 30.0)]
    assert planned_request_s(points, 30, ttft_p99_s=1.0, itl_p99_s=None, output_tokens_p99=500) == 9
    # The SLO allows longer requests than predicted: 1 s + 500 tokens x 50 ms.
    assert planned_request_s(points, 30, 1.0, 0.05, 500) == 26.0
    assert planned_request_s([], 30, 2.0, None, 500) == 2.0


def _pod(name: str, ready: bool, cost: str | None = None, deleting: bool = False) -> dict:
    meta: dict = {"name": name, "annotations": {} if cost is None else {"x": cost}}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    status = {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    return {"metadata": meta, "status": status}


def test_warming_pods_go_first_then_the_least_loaded_and_unknown_load_is_left_alone():
    pods = [_pod("busy", True), _pod("idle", True), _pod("warming", False),
            _pod("unknown", True), _pod("leaving", True, deleting=True)]  # fmt: skip
    costs = removal_costs(pods, {"busy": 12.0, "idle": 0.4, "leaving": 3.0})
    assert costs == {"busy": "12", "idle": "0", "warming": "-1"}
    order = sorted(costs, key=lambda name: int(costs[name]))
    assert order == ["warming", "idle", "busy"]
