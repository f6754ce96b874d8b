"""Without pod access, replicas a Deployment has not made ready past the deadline and the cold
start count as waiting for a node; the clock is per missing replica."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from controllers.reconcile.unready import REASON, missing_replicas, missing_since, unready_waiting
from tests.plans import pool_plan

NOW_S = 1_800_000_000.0
DEADLINE_S = 300.0
L40S = pool_plan(pool="l40s", cold_start_seconds=120)


def deployment(asked: int, ready: int) -> dict:
    return {"spec": {"replicas": asked}, "status": {"readyReplicas": ready}}


def test_missing_counts_asked_replicas_not_ready():
    assert missing_replicas(deployment(4, 1)) == 3
    assert missing_replicas(deployment(2, 3)) == 0  # a scale-down's extra ready replica
    assert missing_replicas({"spec": {"replicas": 2}}) == 2  # no status yet
    assert missing_replicas(None) == 0


def test_a_replica_counts_only_past_the_deadline_plus_the_cold_start():
    allowed_s = DEADLINE_S + L40S.cold_start_seconds
    since = {"l40s": [NOW_S - allowed_s - 1, NOW_S - allowed_s + 1]}
    clocks, waiting = unready_waiting([L40S], {"l40s": deployment(2, 0)}, since, DEADLINE_S, NOW_S)
    assert clocks == since
    (found,) = waiting.values()
    assert (found.pool, found.replicas, found.reason, found.since_s) == (
        "l40s",
        1,
        REASON,
        NOW_S - allowed_s - 1,
    )
    assert "rbac.podAccess" in found.message


def test_ready_again_clears_the_clock():
    since = {"l40s": [NOW_S - 10_000.0]}
    clocks, waiting = unready_waiting([L40S], {"l40s": deployment(2, 2)}, since, DEADLINE_S, NOW_S)
    assert clocks == {} and waiting == {}


@given(
    previous=st.lists(st.floats(0, NOW_S), max_size=8).map(sorted),
    missing=st.integers(-3, 12),
)
def test_the_clock_keeps_the_newest_known_and_starts_new_ones_now(previous, missing):
    clock = missing_since(previous, missing, NOW_S)
    assert len(clock) == max(missing, 0)
    kept = min(len(previous), len(clock))
    # The newest of what was known is kept: a replica that came ready is taken to be the
    # oldest, so none left is counted as waiting longer than it was seen missing.
    assert clock[:kept] == previous[len(previous) - kept :]
    assert clock[kept:] == [NOW_S] * (len(clock) - kept)


@given(
    steps=st.lists(st.tuples(st.integers(0, 6), st.floats(0, 200)), min_size=1, max_size=30),
)
def test_waiting_never_exceeds_missing_and_a_steady_shortfall_is_all_found(steps):
    """Passes with changing shortfalls: never more waiting than missing, and once the
    shortfall has been steady for the whole allowance, all of it is waiting."""
    now_s, since = NOW_S, {}
    allowed_s = DEADLINE_S + L40S.cold_start_seconds
    for missing, advance_s in steps:
        now_s += advance_s
        since, waiting = unready_waiting(
            [L40S], {"l40s": deployment(missing, 0)}, since, DEADLINE_S, now_s
        )
        assert sum(w.replicas for w in waiting.values()) <= missing
    last_missing = steps[-1][0]
    since, waiting = unready_waiting(
        [L40S], {"l40s": deployment(last_missing, 0)}, since, DEADLINE_S, now_s + allowed_s
    )
    assert sum(w.replicas for w in waiting.values()) == last_missing
