"""The plan of each fleet, cached while its spec, config.json and calibration stay the same.

Planning is the costly, pure part of a pass (a CPU-second or two for a large model); resyncs
and owned-object events of an unchanged fleet reuse it. Only a cache: after a restart the first
pass recomputes the same plan.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import asdict
from functools import partial
from typing import Any

from controllers.api.v1alpha1 import InferenceFleetSpec, PlanStatus
from controllers.policy.planning import plan_spec, plan_status
from sizing.checkpoint import CheckpointWeights
from sizing.curve import find_capacity
from sizing.errors import SizingError
from sizing.performance import DEFAULT_EFFICIENCY, Efficiency
from sizing.plan import CapacityFn, memoized
from sizing.simulator import LoadPoint

log = logging.getLogger("inferfleet.operator")

Curves = dict[str, tuple[LoadPoint, ...]]


class SpecRefused(Exception):
    """The fleet cannot be planned as written; `reason` is the Sized condition's reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def plan_or_refusal(
    spec: InferenceFleetSpec,
    hf_config: dict[str, Any],
    capacity_fn: CapacityFn,
    checkpoint: CheckpointWeights | None = None,
    efficiency: Efficiency | None = None,
) -> tuple[PlanStatus, Curves] | SpecRefused:
    """The plan and its predicted curves, or why there is none. Never raises.

    A planner bug on some odd input is still the user's answer: `Sized=False` with the error,
    logged once here (the result is cached per spec, so it is not logged on every pass).
    """
    try:
        plan = plan_spec(spec, hf_config, capacity_fn, efficiency, checkpoint=checkpoint)
    except SizingError as err:
        return SpecRefused(err.reason, str(err))
    except Exception as err:  # the planner must not wedge the fleet
        log.exception("planning failed on an input that passed validation")
        return SpecRefused("PlanningFailed", f"the planner failed: {type(err).__name__}: {err}")
    curves = {
        a.option.pool.name: a.option.capacity.points
        for a in plan.allocations
        if a.option.capacity is not None
    }
    return plan_status(plan), curves


Entry = tuple[PlanStatus, Curves] | SpecRefused


class PlanCache:
    """The plan (or refusal) per spec, config.json, checkpoint and calibration, shared by every
    fleet that has them.

    Fleets with the same spec (copies in other namespaces, one service in several regions)
    hold one plan and one set of curves between them; an entry goes when no fleet uses it.
    Fleets of the same model on the same GPUs (and calibration) share one simulated load curve.
    """

    def __init__(self) -> None:
        self._entries: dict[str, tuple[str, Entry]] = {}  # key -> (that key's string, entry)
        self._key_of: dict[str, str] = {}  # fleet uid -> its key (the entry's own string)
        self._users: dict[str, int] = {}  # key -> fleets using it
        self._planning: dict[str, asyncio.Future[Entry]] = {}  # key -> planning in flight
        self._capacity: dict[Efficiency, CapacityFn] = {}

    async def plan_with_curves(
        self,
        uid: str,
        spec: InferenceFleetSpec,
        hf_config: dict[str, Any],
        checkpoint: CheckpointWeights | None = None,
        efficiency: Efficiency | None = None,
    ) -> tuple[PlanStatus, Curves]:
        """The plan and its curves; raises `SpecRefused` when the fleet cannot be planned."""
        weights = None if checkpoint is None else hash(checkpoint)
        measured = None if efficiency is None else asdict(efficiency)
        key = json.dumps(
            [spec.model_dump(mode="json"), hf_config, weights, measured], sort_keys=True
        )
        found = self._entries.get(key)
        if found is None:
            found = await self._plan(key, spec, hf_config, checkpoint, efficiency)
        shared_key, entry = found
        if self._key_of.get(uid) != shared_key:
            self.forget(uid)
            self._key_of[uid] = shared_key
            self._users[shared_key] = self._users.get(shared_key, 0) + 1
        if isinstance(entry, SpecRefused):
            raise entry
        return entry

    async def _plan(
        self,
        key: str,
        spec: InferenceFleetSpec,
        hf_config: dict[str, Any],
        checkpoint: CheckpointWeights | None,
        efficiency: Efficiency | None,
    ) -> tuple[str, Entry]:
        """Plan once per key even when several fleets ask at once, off the event loop (so
        watches and other fleets' passes run meanwhile)."""
        future = self._planning.get(key)
        if future is None:
            engine = DEFAULT_EFFICIENCY if efficiency is None else efficiency
            capacity = self._capacity.get(engine)
            if capacity is None:
                capacity = self._capacity[engine] = memoized(
                    partial(find_capacity, efficiency=engine)
                )
            future = asyncio.ensure_future(
                asyncio.to_thread(
                    plan_or_refusal, spec, hf_config, capacity, checkpoint, efficiency
                )
            )
            self._planning[key] = future
            future.add_done_callback(lambda _: self._planning.pop(key, None))
        entry = await asyncio.shield(future)  # one fleet's pass cancelled: not the others'
        return self._entries.setdefault(key, (key, entry))

    def forget(self, uid: str) -> None:
        """This fleet no longer uses its entry; the entry goes with its last user."""
        key = self._key_of.pop(uid, None)
        if key is None:
            return
        self._users[key] -= 1
        if not self._users[key]:
            del self._users[key]
            self._entries.pop(key, None)
