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


class PlanCache:
    """The last plan (or refusal) per fleet uid, keyed by its spec and config.json."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[str, tuple[PlanStatus, Curves] | SpecRefused]] = {}
        # Fleets of the same model on the same GPUs (and calibration) share one load curve.
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
        cached = self._entries.get(uid)
        if cached is None or cached[0] != key:
            # Off the event loop, so watches and other fleets' handlers keep running meanwhile.
            engine = DEFAULT_EFFICIENCY if efficiency is None else efficiency
            capacity = self._capacity.get(engine)
            if capacity is None:
                capacity = self._capacity[engine] = memoized(
                    partial(find_capacity, efficiency=engine)
                )
            planned = await asyncio.to_thread(
                plan_or_refusal, spec, hf_config, capacity, checkpoint, efficiency
            )
            cached = (key, planned)
            self._entries[uid] = cached
        if isinstance(cached[1], SpecRefused):
            raise cached[1]
        return cached[1]

    def forget(self, uid: str) -> None:
        self._entries.pop(uid, None)
