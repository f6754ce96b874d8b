"""Replicas no node takes: found past the deadline, held, and covered by the next pool."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from controllers.api.v1alpha1 import PendingPool
from controllers.policy.pending import WARMING_REASON, Waiting, spill, waiting_replicas
from tests.plans import pool_plan

NOW_S = 1_800_000_000.0  # 2027-01-15T08:00:00Z
MESSAGE = "0/4 nodes are available: 4 Insufficient nvidia.com/gpu."


def _at(seconds_ago: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(NOW_S - seconds_ago, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def pending_pod(name: str, pool: str, waited_s: float, scheduled: bool = False) -> dict:
    condition = {"type": "PodScheduled", "status": "True" if scheduled else "False",
                 "lastTransitionTime": _at(waited_s)}  # fmt: skip
    if not scheduled:
        condition |= {"reason": "Unschedulable", "message": MESSAGE}
    return {
        "metadata": {"name": name, "labels": {"app.kubernetes.io/component": pool},
                     "creationTimestamp": _at(waited_s)},
        "status": {"phase": "Pending", "conditions": [condition]},
    }  # fmt: skip


def test_only_pods_the_scheduler_turned_down_past_the_deadline_count():
    pods = [
        pending_pod("a", "l40s", 400),
        pending_pod("b", "l40s", 100),  # not yet past the 300 s deadline
        pending_pod("c", "l40s", 900, scheduled=True),  # placed: pulling its image
        pending_pod("d", "other", 900),  # no pool of this fleet
    ]
    found = waiting_replicas(pods, {"l40s": None}, deadline_s=300, now_s=NOW_S)
    assert found == {"l40s": Waiting("l40s", 1, "Unschedulable", MESSAGE, NOW_S - 400)}


def test_replicas_a_quota_kept_from_being_created_count_too():
    deployment = {
        "spec": {"replicas": 5},
        "status": {"replicas": 3, "conditions": [{
            "type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
            "message": "exceeded quota: gpu-quota", "lastTransitionTime": _at(600)}]},
    }  # fmt: skip
    (found,) = waiting_replicas([], {"l40s": deployment}, 300, NOW_S).values()
    assert (found.replicas, found.reason, found.message) == (
        2,
        "FailedCreate",
        "exceeded quota: gpu-quota",
    )


L40S = pool_plan(pool="l40s", usable_rps_per_replica="8", tensor_parallel=1)
L4 = pool_plan(pool="l4", usable_rps_per_replica="2", tensor_parallel=1)
STUCK = {"l40s": Waiting("l40s", 2, "Unschedulable", MESSAGE, NOW_S - 400)}


def test_a_full_pool_is_held_and_its_shortfall_goes_to_the_next_pool_in_req_per_s():
    # The policy wants 6 L40S; 5 are asked for, 2 of them wait: 3 serve, 3 are missing.
    result = spill([L40S, L4], {"l40s": 6, "l4": 0}, {"l40s": 5, "l4": 0},
                   {"l40s": 3}, STUCK, (), {})  # fmt: skip
    assert result.replicas == {"l40s": 5, "l4": 12}  # 3 x 8 req/s = 24 req/s = 12 L4
    (entry,) = result.pending
    assert (entry.pool, entry.replicas, entry.spilled_to, entry.spilled_replicas) == (
        "l40s",
        2,
        "l4",
        12,
    )
    assert (
        "wait for a node" in result.reasons["l40s"] and "covering pool l40s" in result.reasons["l4"]
    )


def test_the_next_pool_takes_no_more_than_its_gpus_and_the_rest_is_not_invented():
    result = spill([L40S, L4], {"l40s": 6, "l4": 0}, {"l40s": 5, "l4": 0}, {"l40s": 3},
                   STUCK, (), {"l4": 4})  # fmt: skip
    assert result.replicas == {"l40s": 5, "l4": 4}
    assert result.pending[0].spilled_replicas == 4


def test_with_one_pool_the_shortfall_is_reported_and_the_pool_held():
    result = spill([L40S], {"l40s": 9}, {"l40s": 5}, {"l40s": 3}, STUCK, (), {})
    assert result.replicas == {"l40s": 5}
    assert result.pending[0].spilled_to is None


def test_a_pool_with_room_again_keeps_its_spill_over_until_its_replicas_are_ready():
    before = (PendingPool(pool="l40s", replicas=2, reason="Unschedulable", since=_at(400),
                          spilled_to="l4", spilled_replicas=12),)  # fmt: skip
    desired, current = {"l40s": 6, "l4": 0}, {"l40s": 6, "l4": 12}
    warming = spill([L40S, L4], desired, current, {"l40s": 4}, {}, before, {})
    assert warming.replicas == {"l40s": 6, "l4": 8}  # 2 L40S still warming: 16 req/s = 8 L4
    assert warming.pending[0].reason == WARMING_REASON and warming.pending[0].replicas == 0
    ready = spill([L40S, L4], desired, current, {"l40s": 6}, {}, warming.pending, {})
    assert ready.replicas == {"l40s": 6, "l4": 0} and ready.pending == ()


counts = st.integers(0, 40)


@given(counts, counts, counts, st.integers(1, 40), counts, st.one_of(st.none(), counts))
def test_a_pool_with_waiting_replicas_never_grows_and_the_next_one_only_covers_it(
    asked, runs, other, stuck, ready, l4_gpus
):
    waiting = {"l40s": Waiting("l40s", min(stuck, runs) or 1, "Unschedulable", "", NOW_S)}
    result = spill([L40S, L4], {"l40s": asked, "l4": other}, {"l40s": runs, "l4": other},
                   {"l40s": ready}, waiting, (), {"l4": l4_gpus})  # fmt: skip
    assert result.replicas["l40s"] <= max(runs, 0) and result.replicas["l40s"] <= asked
    added = result.replicas["l4"] - other
    serving = runs - waiting["l40s"].replicas
    assert 0 <= added <= max(0, asked - serving) * 8 / 2 + 1  # never more than the shortfall
    if l4_gpus is not None:
        assert result.replicas["l4"] <= max(other, l4_gpus)
