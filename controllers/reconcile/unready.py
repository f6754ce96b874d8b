"""Replicas waiting for a node, seen without pod access: the Deployment's status alone.

With the chart's default RBAC (no `rbac.podAccess`) the operator cannot read a Pending pod's
`PodScheduled` condition; what it sees is the count the Deployment reports. A replica the
Deployment asks for but has not made ready within `scaling.pendingDeadline` plus the plan's cold
start (what a placed replica needs to load its model) is taken for one no node takes, as a
Pending pod past the deadline is. It is found a cold start later than from the pod, and with no
reason; a replica that crash-loops counts too, which is the same shortfall to cover.

The clock is the operator's own: when it first saw each replica missing. A restart starts it
again, so detection can come later, never earlier.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from controllers.api.v1alpha1 import PoolPlanStatus
from controllers.policy.pending import Waiting

REASON = "NotReadyPastDeadline"


def missing_since(since_s: Sequence[float], missing: int, now_s: float) -> list[float]:
    """First-seen times of the `missing` replicas, oldest first: new ones start now, and those
    that came ready are taken to be the oldest (the later detection of the two)."""
    if missing <= 0:
        return []
    kept = list(since_s)[-missing:]
    return kept + [now_s] * (missing - len(kept))


def missing_replicas(deployment: Mapping[str, Any] | None) -> int:
    """Replicas the Deployment asks for that are not ready."""
    if deployment is None:
        return 0
    asked = int((deployment.get("spec") or {}).get("replicas") or 0)
    ready = int((deployment.get("status") or {}).get("readyReplicas") or 0)
    return max(asked - ready, 0)


def unready_waiting(
    pools: Sequence[PoolPlanStatus],
    deployments: Mapping[str, Mapping[str, Any] | None],
    since_s: Mapping[str, Sequence[float]],
    deadline_s: float,
    now_s: float,
) -> tuple[dict[str, list[float]], dict[str, Waiting]]:
    """Per pool, the missing replicas' clocks (to keep for the next pass) and those missing
    past the deadline plus the pool's cold start."""
    clocks: dict[str, list[float]] = {}
    waiting: dict[str, Waiting] = {}
    for pool in pools:
        clock = missing_since(
            since_s.get(pool.pool, ()), missing_replicas(deployments.get(pool.pool)), now_s
        )
        if not clock:
            continue
        clocks[pool.pool] = clock
        allowed_s = deadline_s + pool.cold_start_seconds
        late = [t for t in clock if now_s - t >= allowed_s]
        if late:
            waiting[pool.pool] = Waiting(
                pool.pool,
                len(late),
                REASON,
                f"{len(late)} replica(s) not ready {allowed_s:.0f} s after they were asked for "
                f"(scaling.pendingDeadline plus the plan's cold start, {pool.cold_start_seconds} "
                "s); without pod access (chart value rbac.podAccess) the scheduler's reason is "
                "not known",
                min(late),
            )
    return clocks, waiting
