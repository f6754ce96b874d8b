"""What the demo records as the day goes by: the fleet as the API shows it, and its Events.

Everything is read from the API server (Deployments, the fleet's status, Events), the way a
person with kubectl would see it, so the record shows whatever sets the replicas: today the
plan, later the scaling policy. Times are trace minutes since the day's 00:00.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from controllers.api.v1alpha1 import parse_decimal
from controllers.policy.render import object_name
from e2e.local.harness import LocalHarness


@dataclass(frozen=True)
class PoolSample:
    pool: str
    desired: int  # the Deployment's spec.replicas
    ready: int  # its status.readyReplicas
    usable_rps_per_replica: float
    cost_per_replica_hour_usd: float
    gpus_per_replica: int = 1


@dataclass(frozen=True)
class Sample:
    minute: float
    pools: tuple[PoolSample, ...]
    conditions: tuple[tuple[str, str], ...]  # (type, status)
    forecast_rps: float | None  # status.forecast.nextPeakRPS when the operator writes one
    plan_cost_per_hour_usd: float | None  # the plan's fleet at its sized count, all day

    @property
    def desired(self) -> int:
        return sum(p.desired for p in self.pools)

    @property
    def ready(self) -> int:
        return sum(p.ready for p in self.pools)

    @property
    def ready_capacity_rps(self) -> float:
        return sum(p.ready * p.usable_rps_per_replica for p in self.pools)

    @property
    def desired_capacity_rps(self) -> float:
        return sum(p.desired * p.usable_rps_per_replica for p in self.pools)

    @property
    def gpus_held(self) -> int:
        """GPUs the ready and warming replicas hold."""
        return sum(p.desired * p.gpus_per_replica for p in self.pools)

    @property
    def cost_per_hour_usd(self) -> float:
        """What the ready and warming replicas cost: a starting replica holds its GPUs too."""
        return sum(p.desired * p.cost_per_replica_hour_usd for p in self.pools)

    def condition(self, type_: str) -> str | None:
        return next((status for t, status in self.conditions if t == type_), None)


@dataclass(frozen=True)
class EventSeen:
    minute: float  # when the demo first saw it
    type: str
    reason: str
    message: str


def _pool_sample(
    harness: LocalHarness, fleet: dict[str, Any], layout: dict[str, Any]
) -> PoolSample | None:
    meta = fleet["metadata"]
    name = object_name(meta["name"], layout["pool"])
    deployment = harness.cluster.get("apps/v1", "Deployment", meta["namespace"], name)
    if deployment is None:  # a pool the plan gives no replica has no Deployment
        return None
    replicas = max(1, int(layout["replicas"]))
    return PoolSample(
        pool=layout["pool"],
        desired=int(deployment["spec"].get("replicas") or 0),
        ready=int((deployment.get("status") or {}).get("readyReplicas") or 0),
        usable_rps_per_replica=float(parse_decimal(layout["usableRPSPerReplica"])),
        cost_per_replica_hour_usd=float(parse_decimal(layout["costPerHour"])) / replicas,
        gpus_per_replica=int(layout["tensorParallel"]) * int(layout["pipelineParallel"]),
    )


def take_sample(harness: LocalHarness, namespace: str, name: str, minute: float) -> Sample:
    fleet = harness.fleet(namespace, name) or {"metadata": {"namespace": namespace, "name": name}}
    status = fleet.get("status") or {}
    layouts = (status.get("plan") or {}).get("pools", [])
    pools = tuple(
        s for s in (_pool_sample(harness, fleet, layout) for layout in layouts) if s is not None
    )
    forecast = (status.get("forecast") or {}).get("nextPeakRPS")
    plan_cost = (status.get("plan") or {}).get("costPerHour")
    return Sample(
        minute=minute,
        pools=pools,
        conditions=tuple((c["type"], c["status"]) for c in status.get("conditions", [])),
        forecast_rps=float(parse_decimal(forecast)) if forecast is not None else None,
        plan_cost_per_hour_usd=float(parse_decimal(plan_cost)) if plan_cost is not None else None,
    )


class EventLog:
    """Events of one fleet, each stamped with the trace minute it first appeared."""

    def __init__(self, namespace: str, name: str) -> None:
        self.namespace = namespace
        self.name = name
        self.seen: list[EventSeen] = []
        self._uids: set[str] = set()

    def poll(self, harness: LocalHarness, minute: float) -> list[EventSeen]:
        new = []
        for event in harness.events(self.namespace, self.name):
            uid = event["metadata"].get("uid") or event["metadata"]["name"]
            if uid in self._uids:
                continue
            self._uids.add(uid)
            new.append(
                EventSeen(minute, event.get("type", ""), event.get("reason", ""), event["message"])
            )
        self.seen.extend(new)
        return new


def clock(minute: float) -> str:
    """Trace minute as hh:mm of the day."""
    whole = int(minute)
    return f"{whole // 60 % 24:02d}:{whole % 60:02d}"
