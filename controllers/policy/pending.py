"""Replicas no node takes: find them, stop counting them, and cover for them elsewhere.

A GPU pool that is full (no node with a free GPU, a quota, a taint nobody tolerates) leaves new
replicas Pending with the scheduler's reason in their `PodScheduled` condition, or, under a
ResourceQuota, never created at all (`ReplicaFailure` on the Deployment). Past
`scaling.pendingDeadline` such a replica is not capacity that is coming: the pool is held where
it is (more replicas there would only wait too), and what it was asked for beyond what it holds
spills, in req/s, to the next pool of the plan that has room. When the preferred pool places its
replicas again the spill-over stays until they are ready, then goes.

Pure: pods and Deployments are the plain dicts the watches deliver; time is a parameter.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from controllers.api.v1alpha1 import PendingPool, PoolPlanStatus, parse_decimal

POOL_LABEL = "app.kubernetes.io/component"
WARMING_REASON = "SpillUntilReady"  # the pool places its replicas again; they are warming


@dataclass(frozen=True)
class Waiting:
    """One pool's replicas that have waited past the deadline, with the scheduler's word."""

    pool: str
    replicas: int
    reason: str
    message: str
    since_s: float


@dataclass(frozen=True)
class Spill:
    replicas: dict[str, int]  # per pool, after holding stuck pools and adding the spill-over
    reasons: dict[str, str] = field(default_factory=dict)  # why a pool's count moved
    pending: tuple[PendingPool, ...] = ()  # status.pending


def _time_s(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def _iso(t_s: float) -> str:
    return datetime.fromtimestamp(t_s, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _condition(obj: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    conditions = (obj.get("status") or {}).get("conditions") or ()
    return next((c for c in conditions if isinstance(c, Mapping) and c.get("type") == type_), None)


def _unscheduled(pod: Mapping[str, Any]) -> tuple[float, str, str] | None:
    """(waiting since, reason, message) of a pod the scheduler has not placed, else None."""
    meta = pod.get("metadata") or {}
    if meta.get("deletionTimestamp") or (pod.get("status") or {}).get("phase") != "Pending":
        return None
    scheduled = _condition(pod, "PodScheduled")
    if scheduled is not None and scheduled.get("status") == "True":
        return None  # placed: pulling its image or starting, which the cold start covers
    since = _time_s((scheduled or {}).get("lastTransitionTime")) or _time_s(
        meta.get("creationTimestamp")
    )
    if since is None:
        return None
    reason = str((scheduled or {}).get("reason") or "Pending")
    return since, reason, str((scheduled or {}).get("message") or "")


def waiting_replicas(
    pods: Sequence[Mapping[str, Any]],
    deployments: Mapping[str, Mapping[str, Any] | None],
    deadline_s: float,
    now_s: float,
) -> dict[str, Waiting]:
    """Per pool, the replicas unplaced for longer than `deadline_s`: Pending pods the scheduler
    turned down, and replicas the ReplicaSet could not create (quota)."""
    found: dict[str, list[tuple[float, str, str]]] = {}
    for pod in pods:
        pool = str(((pod.get("metadata") or {}).get("labels") or {}).get(POOL_LABEL))
        waiting = _unscheduled(pod)
        if pool in deployments and waiting is not None and now_s - waiting[0] >= deadline_s:
            found.setdefault(pool, []).append(waiting)
    for pool, deployment in deployments.items():
        failure = _condition(deployment or {}, "ReplicaFailure")
        if failure is None or failure.get("status") != "True":
            continue
        since = _time_s(failure.get("lastTransitionTime"))
        asked = int(((deployment or {}).get("spec") or {}).get("replicas") or 0)
        exist = int(((deployment or {}).get("status") or {}).get("replicas") or 0)
        if since is not None and now_s - since >= deadline_s and asked > exist:
            entry = (
                since,
                str(failure.get("reason") or "FailedCreate"),
                str(failure.get("message") or ""),
            )
            found.setdefault(pool, []).extend([entry] * (asked - exist))
    return {
        pool: Waiting(
            pool,
            len(entries),
            min(entries)[1],
            min(entries)[2],
            min(entries)[0],
        )
        for pool, entries in found.items()
    }


def _limit(pool: PoolPlanStatus, max_gpus: Mapping[str, int | None]) -> int | None:
    gpus = pool.tensor_parallel * pool.pipeline_parallel
    limit = max_gpus.get(pool.pool)
    return None if limit is None else limit // gpus


def spill(
    pools: Sequence[PoolPlanStatus],
    desired: Mapping[str, int],
    current: Mapping[str, int],
    ready: Mapping[str, int],
    waiting: Mapping[str, Waiting],
    previous: Sequence[PendingPool],
    max_gpus: Mapping[str, int | None],
) -> Spill:
    """Hold pools whose replicas wait past the deadline; give their shortfall to the next pools.

    `desired` is what the scaling policy asked for, `current` what each Deployment asks now,
    `ready` its ready replicas, `previous` the last pass's status.pending (the spill-over stays,
    never growing, while a recovered pool's replicas warm). Pools are tried in the plan's order
    (cheapest first), the standby pools it ranked but does not run last (their `desired` is
    0); a shortfall carried past the last pool is reported, not invented.
    """
    replicas = {**{p.pool: 0 for p in pools}, **desired}
    reasons: dict[str, str] = {}
    before = {p.pool: p for p in previous}
    # (stuck pool, req/s it cannot serve, most replicas to give it), in plan order
    owed: list[tuple[str, float, int | None]] = []
    entries: dict[str, dict[str, Any]] = {}
    for pool in pools:
        name, usable = pool.pool, parse_decimal(pool.usable_rps_per_replica)
        asked, runs = desired.get(name, 0), current.get(name, desired.get(name, 0))
        stuck = waiting.get(name)
        last = before.get(name)
        if stuck is not None:
            held = min(asked, runs)
            replicas[name] = held
            if held < asked:
                reasons[name] = (
                    f"held at {held}: {stuck.replicas} replicas wait for a node ({stuck.reason})"
                )
            entries[name] = {
                "pool": name, "replicas": stuck.replicas, "reason": stuck.reason,
                "message": stuck.message, "since": _iso(stuck.since_s),
            }  # fmt: skip
            short = max(0, asked - (runs - stuck.replicas))
            if short:
                owed.append((name, short * usable, None))
            continue
        if last is not None and last.spilled_replicas and ready.get(name, 0) < asked:
            # Placed again but not ready yet: keep covering what still warms, never more.
            warming = asked - ready.get(name, 0)
            entries[name] = {
                "pool": name, "replicas": 0, "reason": WARMING_REASON,
                "message": f"{warming} replicas placed and warming", "since": last.since,
            }  # fmt: skip
            owed.append((name, warming * usable, last.spilled_replicas))
            continue  # what it owes goes to the pools after it
        if not owed:
            continue
        limit = _limit(pool, max_gpus)
        room = math.inf if limit is None else max(0, limit - replicas[name])
        while owed and room > 0:
            source, rps, cap = owed[0]
            need = math.ceil(rps / usable - 1e-9)
            if cap is not None:
                need = min(need, cap)
            add = int(min(room, need))
            if add:
                replicas[name] += add
                entry = entries[source]
                entry.setdefault("spilledTo", name)
                entry["spilledReplicas"] = entry.get("spilledReplicas", 0) + add
                note = f"+{add} covering pool {source} ({entry['reason']})"
                reasons[name] = f"{reasons[name]}; {note}" if name in reasons else note
            room -= add
            if add < need:  # this pool is full: the rest goes on to the next one
                owed[0] = (source, rps - add * usable, None if cap is None else cap - add)
            else:
                owed.pop(0)
    pending = tuple(
        PendingPool.model_validate(e)
        for e in entries.values()
        if e["replicas"] > 0 or e.get("spilledReplicas")
    )
    return Spill(replicas, reasons, pending)
