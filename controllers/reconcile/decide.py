"""Decide: one pure call from an `Observation` to the `Effects` of a pass.

No I/O and no clock: the observation carries `now`. The scaling policy and the monitoring
verdict come from `controllers.policy.autoscale.decide_fleet`, the manifests from
`controllers.policy.render`; this module adds what a pass writes around them: which objects
drifted and must be applied, which pools' objects are pruned, the Events that say why, the
conditions and the minimal status patch (empty when nothing changed, so a resync writes
nothing).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from controllers.adapters.kube import Owner, owned
from controllers.api.conditions import (
    DEGRADED,
    METRICS_AVAILABLE,
    READY,
    RESIZE_RECOMMENDED,
    SIZED,
    find,
    set_condition,
)
from controllers.api.conditions import (
    Status as ConditionStatus,
)
from controllers.api.engine_args import redact
from controllers.api.v1alpha1 import (
    Condition,
    FleetHistory,
    InferenceFleetSpec,
    InferenceFleetStatus,
    PendingPool,
    PlanStatus,
    PoolCapacity,
    PoolPlanStatus,
    Recommendation,
    ReplicaStatus,
    parse_duration_s,
)
from controllers.policy.advisory import is_advisory, policy_spec
from controllers.policy.autoscale import (
    FleetDecision,
    FleetTick,
    capacity_divergence,
    decide_fleet,
)
from controllers.policy.drain import (
    DELETION_COST,
    fleet_request_s,
    grace_period_s,
    removal_costs,
)
from controllers.policy.monitoring.resize import propose_resize
from controllers.policy.monitoring.snapshot import MetricsSnapshot
from controllers.policy.monitoring.thresholds import resolve_thresholds
from controllers.policy.pending import POOL_LABEL, Spill, Waiting, spill, waiting_replicas
from controllers.policy.render import EXTERNALLY_SCALED, drifted, object_name, render_fleet
from controllers.reconcile.observe import POOL_COMPANIONS, Observation, Planned
from controllers.reconcile.runtime import Remembered, share_unchanged
from sizing.checkpoint import CheckpointWeights
from sizing.errors import SizingError

# Policy memory is written to status at most this often (wall seconds) unless replicas change:
# enough that a restart forgets little, rare enough that an idle fleet is not a write stream.
HISTORY_PERSIST_S = 300.0
_OWNED_STATUS = {
    "observed_generation",
    "conditions",
    "plan",
    "replicas",
    "forecast",
    "findings",
    "history",
    "recommendation",
    "capacity",
    "scorecard",
    "pending",
}
UNSCHEDULABLE = "ReplicasUnschedulable"


@dataclass(frozen=True)
class PostEvent:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Apply:
    manifest: dict[str, Any]
    message: str  # also its Event's message


@dataclass(frozen=True)
class Delete:
    api_version: str
    kind: str
    name: str


@dataclass(frozen=True)
class Annotate:
    """Merge these annotations into one object (a pod's deletion cost)."""

    api_version: str
    kind: str
    name: str
    annotations: Mapping[str, str]


Write = PostEvent | Apply | Delete | Annotate


@dataclass(frozen=True)
class PoolReplicas:
    pool: str
    desired: int
    ready: int
    warming: int
    pending: int = 0
    advised: int | None = None  # advisory mode: what the autoscaler would ask for


@dataclass(frozen=True)
class ReplanRequest:
    """Step 13's re-plan of the observed workload: pure but slow, so run off the loop."""

    snapshot: MetricsSnapshot
    spec: InferenceFleetSpec
    hf_config: dict[str, Any]
    plan: PlanStatus
    reason: str
    capacity: PoolCapacity | None = None  # the first pool's measured capacity, if any
    checkpoint: CheckpointWeights | None = None  # exact weights, as the plan used them


@dataclass(frozen=True)
class Effects:
    """Everything one pass writes, in order, and what the operator's metrics report of it."""

    owner: Owner
    writes: tuple[Write, ...]
    status_patch: Mapping[str, Any]  # merge patch of status; empty: nothing to write
    status: InferenceFleetStatus  # the status the patch brings about
    memory: Remembered | None = None  # the policy memory to keep in the operator
    plan: PlanStatus | None = None
    pool_replicas: tuple[PoolReplicas, ...] = ()
    refusal: str | None = None  # the Sized=False reason, when the fleet was refused
    replan: ReplanRequest | None = None  # a re-size to work out before acting
    # Pools whose replicas go down this pass: the caller reads each pod's load and
    # `with_removal_order` marks the least loaded to go first.
    scale_down: tuple[str, ...] = ()

    @property
    def applied(self) -> tuple[str, ...]:
        """What changed in the cluster, one line each (applies and prunes)."""
        return tuple(
            w.message
            for w in self.writes
            if isinstance(w, Apply) or (isinstance(w, PostEvent) and w.reason == "Pruned")
        )


def status_patch(current: Mapping[str, Any], new: InferenceFleetStatus) -> dict[str, Any]:
    """Only the keys this operator owns that differ from what is stored (null clears one)."""
    wanted = new.model_dump(by_alias=True, exclude_none=True, include=_OWNED_STATUS)
    patch = {
        key: value
        for key, value in wanted.items()
        if current.get(key) != value and not (value == [] and key not in current)
    }
    for key in ("forecast", "recommendation"):
        if key in current and key not in wanted:
            patch[key] = None
    return patch


def _status_events(obs: Observation) -> list[Write]:
    if not obs.dropped_status:
        return []
    fields = ", ".join(f"status.{name}" for name in obs.dropped_status)
    return [
        PostEvent(
            "Warning",
            "StatusReset",
            f"{fields} did not parse and was started afresh (edited by hand, or written by "
            "another release)",
        )
    ]


def _refused(obs: Observation) -> Effects:
    """Say why in status and an Event; touch nothing that already runs."""
    refusal = obs.refusal
    assert refusal is not None
    message = redact(str(refusal))
    conditions = set_condition(
        obs.status.conditions, SIZED, "False", refusal.reason, message,
        generation=obs.generation, now_s=obs.now_s,
    )  # fmt: skip
    new = obs.status.model_copy(
        update={"conditions": conditions, "observed_generation": obs.generation}
    )
    writes = _status_events(obs)
    before = find(obs.status.conditions, SIZED)
    if before is None or (before.reason, before.message) != (refusal.reason, message):
        writes.append(PostEvent("Warning", refusal.reason, message))
    return Effects(
        obs.owner, tuple(writes), status_patch(obs.raw_status, new), new, refusal=refusal.reason
    )


def failed(obs: Observation, err: Exception) -> Effects:
    """A pass that could not finish: `Degraded=True` with the error, said once in an Event.

    Nothing that runs is touched; observedGeneration moves on so the user sees the error is
    about this generation of the spec; the next pass tries again.
    """
    message = redact(f"reconcile failed: {type(err).__name__}: {err}")[:1000]
    conditions = set_condition(
        obs.status.conditions, DEGRADED, "True", "ReconcileFailed", message,
        generation=obs.generation, now_s=obs.now_s,
    )  # fmt: skip
    new = obs.status.model_copy(
        update={"conditions": conditions, "observed_generation": obs.generation}
    )
    before = find(obs.status.conditions, DEGRADED)
    writes: list[Write] = []
    if before is None or (before.status, before.message) != ("True", message):
        writes.append(PostEvent("Warning", "ReconcileFailed", message))
    return Effects(obs.owner, tuple(writes), status_patch(obs.raw_status, new), new)


def _ready_condition(
    conditions: list[Condition], desired: int, ready: int, generation: int | None, now_s: float
) -> list[Condition]:
    status: ConditionStatus = "True" if ready >= desired else "False"
    reason = "ReplicasReady" if ready >= desired else "ReplicasWarming"
    message = f"{ready}/{desired} replicas ready"
    if ready < desired:
        message += "; the rest are starting or pending GPUs"
    return set_condition(
        conditions, READY, status, reason, message, generation=generation, now_s=now_s
    )


def _describe_apply(manifest: Mapping[str, Any], plan: PlanStatus, pool: str) -> str:
    kind = manifest["kind"]
    name = manifest["metadata"]["name"]
    if kind != "Deployment":
        return f"Applied {kind} {name} (plan {plan.hash})"
    layout = next(p for p in plan.pools if p.pool == pool)
    count = manifest["spec"].get("replicas")
    replicas = f"{count} replicas" if count is not None else "replicas left to the external scaler"
    return (
        f"Applied Deployment {name}: {replicas} of TP{layout.tensor_parallel}"
        f"xPP{layout.pipeline_parallel} on {layout.gpu} (plan {plan.hash})"
    )


def _current_replicas(obs: Observation, planned: Planned) -> dict[str, int]:
    """Replicas each pool's Deployment asks for now (pools without one are left out), standby
    pools included (one runs while it covers a Pending shortfall)."""
    current = {}
    for pool in (*planned.plan.pools, *planned.plan.standby):
        deployment = obs.owned.get(("Deployment", object_name(obs.owner.name, pool.pool)))
        count = (deployment or {}).get("spec", {}).get("replicas")
        if count is not None:
            current[pool.pool] = int(count)
    return current


def _fleet_decision(obs: Observation, planned: Planned) -> FleetDecision:
    return decide_fleet(
        FleetTick(
            spec=policy_spec(planned.spec),
            plan=planned.plan,
            snapshot=obs.snapshot,
            history=obs.policy_memory,
            current=_current_replicas(obs, planned),
            now_s=obs.policy_now_s,
            curves=planned.curves,
            time_compression=obs.time_compression,
            history_rps=obs.history_rps,
            pending={pool: w.replicas for pool, w in _waiting(obs, planned).items()},
        )
    )


def _waiting(obs: Observation, planned: Planned) -> dict[str, Waiting]:
    """Per pool, the replicas waiting for a node past `scaling.pendingDeadline`: a Pending pod
    (with the scheduler's reason) or a Deployment's own ReplicaFailure says more than the
    not-ready fallback (`obs.unready`, when the operator has no pod access)."""
    deployments = {p.pool: _deployment(obs, p.pool) for p in _ranked(planned.plan)}
    deadline_s = parse_duration_s(planned.spec.scaling.pending_deadline)
    return {**obs.unready, **waiting_replicas(obs.pods, deployments, deadline_s, obs.now_s)}


def _deployment(obs: Observation, pool: str) -> Mapping[str, Any] | None:
    return obs.owned.get(("Deployment", object_name(obs.owner.name, pool)))


def _spilled(
    obs: Observation, planned: Planned, own: Mapping[str, int], current: Mapping[str, int]
) -> Spill:
    """Pools whose replicas wait for nodes past the deadline held, their shortfall spilled."""
    spec = planned.spec
    if spec.scaling.mode in EXTERNALLY_SCALED:  # another controller owns replicas
        return Spill(dict(own))
    deployments = {p.pool: _deployment(obs, p.pool) for p in _ranked(planned.plan)}
    waiting = _waiting(obs, planned)
    ready = {
        pool: int(((found or {}).get("status") or {}).get("readyReplicas") or 0)
        for pool, found in deployments.items()
    }
    max_gpus = {p.name: p.max_gpus for p in spec.pools}
    return spill(_ranked(planned.plan), own, current, ready, waiting, obs.status.pending, max_gpus)


def _ranked(plan: PlanStatus) -> tuple[PoolPlanStatus, ...]:
    """The pools the plan runs, then the allowed ones it ranked after them, in its order."""
    return (*plan.pools, *plan.standby)


def _running(planned: Planned, replicas: Mapping[str, int]) -> Planned:
    """The plan with the standby pools that cover a Pending shortfall now, at their count."""
    covering = [
        p.model_copy(update={"replicas": replicas[p.pool]})
        for p in planned.plan.standby
        if replicas.get(p.pool, 0) > 0
    ]
    if not covering:
        return planned
    plan = planned.plan.model_copy(update={"pools": [*planned.plan.pools, *covering]})
    return replace(planned, plan=plan)


@dataclass(frozen=True)
class Acting:
    """What a pass applies (`decision.replicas`), what it would in advisory mode, and why."""

    decision: FleetDecision
    placed: Spill
    advised: dict[str, int] | None  # advisory mode only
    events: tuple[PostEvent, ...]


def _acting(obs: Observation, planned: Planned, decision: FleetDecision) -> Acting:
    """The policy's replicas, held where replicas wait for nodes and spilled to the next pools;
    in advisory mode the Deployments keep what they have and the policy steps from that."""
    plan, name = planned.plan, obs.owner.name
    current = _current_replicas(obs, planned)
    advisory = is_advisory(planned.spec)
    before = (obs.policy_memory or {}).get("pools", {})
    memories = dict(decision.history.get("pools", {}))
    own = {}
    for pool in plan.pools:
        memory = memories.get(pool.pool) or {}
        # A pass between policy steps kept the last step's memory, advice included.
        kept = advisory and "advised" in memory
        own[pool.pool] = int(memory["advised"]) if kept else decision.replicas[pool.pool]
    placed = _spilled(obs, planned, own, current)
    runs = {p.pool: current.get(p.pool, p.replicas) for p in plan.pools}
    runs |= {p.pool: current.get(p.pool, 0) for p in plan.standby}
    applied = runs if advisory else placed.replicas
    events = []
    for pool in plan.pools:
        memory = {k: v for k, v in (memories.get(pool.pool) or {}).items() if k != "advised"}
        if advisory:
            memory.update(replicas=applied[pool.pool], advised=own[pool.pool])
            last = before.get(pool.pool) or {}
            was_advised = last.get("advised", last.get("replicas"))
            advice = placed.replicas[pool.pool]
            if advice != applied[pool.pool] and own[pool.pool] != was_advised:
                verb = "up" if advice > applied[pool.pool] else "down"
                events.append(
                    PostEvent(
                        "Normal",
                        "WouldScale",
                        f"Would scale {verb} {object_name(name, pool.pool)} from "
                        f"{applied[pool.pool]} to {advice}: {decision.reasons[pool.pool]} "
                        "(scaling.mode advisory: replicas are left as they are)",
                    )
                )
        if pool.pool in memories:
            memories[pool.pool] = memory
    reasons = {
        pool: "; ".join(r for r in (reason, placed.reasons.get(pool)) if r)
        for pool, reason in decision.reasons.items()
    }
    reasons |= {p.pool: placed.reasons.get(p.pool, "standby pool") for p in plan.standby}
    # A standby pool has no count in `runs`, nor in `applied` when scaling is external.
    changed = {
        p.pool: (runs.get(p.pool, 0), applied.get(p.pool, 0))
        for p in _ranked(plan)
        if applied.get(p.pool, 0) != runs.get(p.pool, 0)
    }
    history = {**decision.history, "pools": memories}
    decided = replace(decision, replicas=applied, reasons=reasons, changed=changed, history=history)
    return Acting(decided, placed, placed.replicas if advisory else None, tuple(events))


def _grace_periods(obs: Observation, planned: Planned) -> dict[str, int]:
    """Each pool's grace period from the observed request-duration P99 (the plan's estimate
    until there is one), kept where the running one is close enough (or in advisory mode)."""
    graces = {}
    snapshot = obs.snapshot if obs.snapshot is not None and obs.snapshot.reachable else None

    for pool in planned.plan.pools:
        metrics = snapshot.pool(pool.pool) if snapshot is not None else None
        sample = metrics.request_duration_p99_s if metrics is not None else None
        request_s = (
            sample.value
            if sample is not None
            else fleet_request_s(planned.spec, pool, planned.curves.get(pool.pool, ()))
        )
        template = ((_deployment(obs, pool.pool) or {}).get("spec") or {}).get("template") or {}
        current = (template.get("spec") or {}).get("terminationGracePeriodSeconds")
        running = current if isinstance(current, int) else None
        if is_advisory(planned.spec) and running is not None:
            graces[pool.pool] = running  # advisory: no restart on what metrics say either
        else:
            graces[pool.pool] = grace_period_s(request_s, running)
    return graces


def _pending_events(obs: Observation, pending: tuple[PendingPool, ...]) -> list[Write]:
    """A Warning when a pool's replicas newly wait past the deadline (or their number or
    reason changes), saying where the shortfall went."""
    before = {(p.pool, p.replicas, p.reason, p.spilled_to) for p in obs.status.pending}
    writes: list[Write] = []
    for entry in pending:
        if (
            entry.replicas
            and (entry.pool, entry.replicas, entry.reason, entry.spilled_to) not in before
        ):
            writes.append(PostEvent("Warning", UNSCHEDULABLE, pending_message(entry)))
    return writes


def pending_message(entry: PendingPool) -> str:
    text = (
        f"pool {entry.pool}: {entry.replicas} replicas not placed since {entry.since} "
        f"({entry.reason}: {entry.message or 'no message'})"
    )
    if entry.spilled_to:
        return f"{text}; {entry.spilled_replicas} replicas spilled to pool {entry.spilled_to}"
    return f"{text}; no other pool of the plan has room, holding the pool where it is"


def _history_to_write(
    obs: Observation, decision: FleetDecision
) -> tuple[FleetHistory | None, Remembered]:
    """Keep the newest policy memory in the operator; write it to status now and then."""
    stored = obs.status.history
    last_written_s = obs.remembered.written_s if obs.remembered else obs.now_s
    due = (
        stored is None
        or bool(decision.changed)
        or (obs.now_s - last_written_s >= HISTORY_PERSIST_S)
    )
    memory = share_unchanged(decision.history, obs.raw_status.get("history"))
    remembered = Remembered(memory, obs.now_s if due else last_written_s)
    if not due:
        return stored, remembered
    return FleetHistory.model_validate(decision.history), remembered


def _capacity_to_write(
    obs: Observation, planned: Planned, decision: FleetDecision, history_due: bool
) -> tuple[list[PoolCapacity], list[Write]]:
    """`status.capacity`, refreshed as often as the policy memory is written (so an idle
    resync writes nothing), and an Event when the measurement newly parts from the plan."""
    stored = list(obs.status.capacity)
    if not history_due and stored:
        return stored, []
    threshold = resolve_thresholds(planned.spec.monitoring.thresholds).capacity_divergence_percent
    before = {c.pool: capacity_divergence(c, threshold) for c in stored}
    writes: list[Write] = []
    for capacity in decision.capacity:
        message = capacity_divergence(capacity, threshold)
        if message is not None and before.get(capacity.pool) is None:
            writes.append(PostEvent("Warning", "CapacityDiverges", message))
    return list(decision.capacity), writes


def _manifest_writes(
    obs: Observation, planned: Planned, replicas: Mapping[str, int], grace_s: Mapping[str, int]
) -> tuple[list[Write], list[PoolReplicas], set[str]]:
    """Apply what drifted or is missing; count ready/warming replicas per pool."""
    writes: list[Write] = []
    per_pool: list[PoolReplicas] = []
    owner = obs.owner
    keda_url = obs.prometheus_url if planned.spec.scaling.mode == "keda" else None
    rendered = render_fleet(
        owner.name, owner.namespace, planned.spec, planned.plan, replicas, keda_url, grace_s
    )
    for pool in rendered:
        for manifest in pool.all():
            desired = owned(manifest, owner)
            observed = obs.owned.get((desired["kind"], desired["metadata"]["name"]))
            if observed is None or drifted(desired, observed):
                writes.append(Apply(desired, _describe_apply(desired, planned.plan, pool.pool)))
            if desired["kind"] == "Deployment":
                state = (observed or {}).get("status", {})
                ready = state.get("readyReplicas", 0)
                warming = max(0, state.get("replicas", 0) - ready)
                per_pool.append(PoolReplicas(pool.pool, replicas[pool.pool], ready, warming))
    kept = {pool.deployment["metadata"]["name"] for pool in rendered}
    return writes, per_pool, kept


def _prune_writes(obs: Observation, plan: PlanStatus, kept: set[str]) -> list[Write]:
    """Delete the objects of pools this fleet no longer runs (removed, or at zero replicas)."""
    writes: list[Write] = []
    for deployment in obs.owned_deployments:
        name = deployment["metadata"]["name"]
        if name in kept:
            continue
        writes.append(Delete("apps/v1", "Deployment", name))
        writes += [Delete(api_version, kind, name) for api_version, kind in POOL_COMPANIONS]
        writes.append(
            PostEvent(
                "Normal",
                "Pruned",
                f"Deleted Deployment, Service and PodDisruptionBudget {name}: "
                f"its pool has no replicas in plan {plan.hash}",
            )
        )
    return writes


def _conditions(
    obs: Observation,
    planned: Planned,
    decision: FleetDecision,
    desired: int,
    ready: int,
    pending: tuple[PendingPool, ...] = (),
) -> list[Condition]:
    plan, generation, now_s = planned.plan, obs.generation, obs.now_s
    sized_message = (
        f"{plan.total_gpus} GPUs, ${plan.cost_per_hour}/hour: "
        + ", ".join(f"{p.pool}: {p.replicas}x TP{p.tensor_parallel} {p.gpu}" for p in plan.pools)
        + f" (plan {plan.hash})"
        + (f"; config.json from the {planned.origin}" if planned.origin else "")
    )
    conditions = set_condition(
        obs.status.conditions, SIZED, "True", "Planned", sized_message,
        generation=generation, now_s=now_s,
    )  # fmt: skip
    if planned.spec.scaling.mode not in EXTERNALLY_SCALED:
        conditions = _ready_condition(conditions, desired, ready, generation, now_s)
    conditions = set_condition(
        conditions, METRICS_AVAILABLE, *decision.metrics_condition,
        generation=generation, now_s=now_s,
    )  # fmt: skip
    if decision.resize_condition is not None:
        conditions = set_condition(
            conditions, RESIZE_RECOMMENDED, *decision.resize_condition,
            generation=generation, now_s=now_s,
        )  # fmt: skip
    waiting = [pending_message(p) for p in pending if p.replicas]
    degraded = find(conditions, DEGRADED)
    if waiting:
        conditions = set_condition(
            conditions, DEGRADED, "True", UNSCHEDULABLE, "; ".join(waiting),
            generation=generation, now_s=now_s,
        )  # fmt: skip
    elif degraded is not None and degraded.status == "True":
        conditions = set_condition(
            conditions, DEGRADED, "False", "Recovered", "the last pass completed",
            generation=generation, now_s=now_s,
        )  # fmt: skip
    return conditions


def decide(obs: Observation) -> Effects:
    """The pass's effects. Pure: the same observation always gives the same effects."""
    if obs.planned is None:
        return _refused(obs)
    planned = obs.planned
    owner = obs.owner
    acting = _acting(obs, planned, _fleet_decision(obs, planned))
    decision, placed = acting.decision, acting.placed
    running = _running(planned, decision.replicas)
    replicas = decision.replicas
    writes = _status_events(obs)
    for pool_name, (was, now) in decision.changed.items():
        verb = "up" if now > was else "down"
        writes.append(
            PostEvent(
                "Normal",
                "Scaled",
                f"Scaled {verb} {object_name(owner.name, pool_name)} from {was} to {now}: "
                f"{decision.reasons[pool_name]}",
            )
        )
    writes += acting.events
    writes += _pending_events(obs, placed.pending)
    grace_s = _grace_periods(obs, running)
    applies, per_pool, kept = _manifest_writes(obs, running, replicas, grace_s)
    for apply in applies:
        writes.append(apply)
        assert isinstance(apply, Apply)
        writes.append(PostEvent("Normal", "Applied", apply.message))
    writes += _prune_writes(obs, planned.plan, kept)
    pending = {p.pool: p.replicas for p in placed.pending}
    per_pool = [
        replace(
            p,
            warming=max(0, p.warming - pending.get(p.pool, 0)),
            pending=pending.get(p.pool, 0),
            advised=None if acting.advised is None else acting.advised.get(p.pool),
        )
        for p in per_pool
    ]
    desired = sum(replicas.values())
    ready = sum(p.ready for p in per_pool)
    warming = sum(p.warming for p in per_pool)
    advised = None if acting.advised is None else sum(acting.advised.values())
    recommendation = obs.status.recommendation
    if decision.resize_condition is not None and decision.resize_condition[0] != "True":
        recommendation = None
    replan = None
    if decision.resize_newly_recommended and decision.snapshot is not None:
        reason = (
            decision.resize_condition[2] if decision.resize_condition else "production diverges"
        )
        replan = ReplanRequest(
            decision.snapshot,
            planned.spec,
            planned.hf_config,
            planned.plan,
            reason,
            decision.capacity[0] if decision.capacity else None,
            planned.checkpoint,
        )
    history, remembered = _history_to_write(obs, decision)
    capacity, capacity_events = _capacity_to_write(
        obs, planned, decision, history is not obs.status.history
    )
    writes += capacity_events
    # The scorecard moves every step; written as often as the policy memory, like capacity,
    # and when replicas newly wait for nodes or stop waiting (its time Pending moved).
    scorecard = (
        list(decision.scorecard)
        if history is not obs.status.history
        or not obs.status.scorecard
        or list(placed.pending) != list(obs.status.pending)
        else list(obs.status.scorecard)
    )
    new = obs.status.model_copy(
        update={
            "observed_generation": obs.generation,
            "conditions": _conditions(obs, planned, decision, desired, ready, placed.pending),
            "plan": planned.plan,
            "replicas": ReplicaStatus(
                desired=desired,
                ready=ready,
                warming=warming,
                pending=sum(pending.values()),
                advised=advised,
            ),
            "pending": list(placed.pending),
            "forecast": decision.forecast,
            "findings": list(decision.findings),
            "history": history,
            "recommendation": recommendation,
            "capacity": capacity,
            "scorecard": scorecard,
        }
    )
    return Effects(
        owner=owner,
        writes=tuple(writes),
        status_patch=status_patch(obs.raw_status, new),
        status=new,
        memory=remembered,
        plan=planned.plan,
        pool_replicas=tuple(per_pool),
        replan=replan,
        scale_down=tuple(pool for pool, (was, now) in decision.changed.items() if now < was),
    )


def with_removal_order(
    effects: Effects, pods: tuple[Mapping[str, Any], ...], requests: Mapping[str, float]
) -> Effects:
    """The effects with each scaled-down pool's pods marked, before its Deployment's apply,
    so the ReplicaSet removes the least loaded (`controllers.policy.drain.removal_costs`)."""
    writes: list[Write] = []
    for write in effects.writes:
        manifest = write.manifest if isinstance(write, Apply) else {}
        pool = (manifest.get("metadata", {}).get("labels") or {}).get(POOL_LABEL)
        if manifest.get("kind") == "Deployment" and pool in effects.scale_down:
            ours = [p for p in pods if (p["metadata"].get("labels") or {}).get(POOL_LABEL) == pool]
            marked = {p["metadata"]["name"]: p["metadata"].get("annotations") or {} for p in ours}
            for name, cost in removal_costs(ours, requests).items():
                if marked[name].get(DELETION_COST) != cost:
                    writes.append(Annotate("v1", "Pod", name, {DELETION_COST: cost}))
        writes.append(write)
    return replace(effects, writes=tuple(writes))


def replan(request: ReplanRequest) -> Recommendation:
    """Step 13: re-plan from the observed workload. Pure; never raises for a sizing answer."""
    try:
        proposed = propose_resize(
            request.snapshot,
            request.spec,
            request.hf_config,
            request.plan,
            request.reason,
            request.capacity,
            request.checkpoint,
        )
    except SizingError as err:
        return Recommendation(reason=request.reason, error=str(err))
    return Recommendation.model_validate(proposed)


def with_recommendation(
    effects: Effects, raw_status: Mapping[str, Any], recommendation: Recommendation
) -> Effects:
    """The effects once the re-plan is known: in status, and said once in an Event."""
    if recommendation.error is None:
        message = f"Re-size recommended: {recommendation.reason}"
        if recommendation.basis:
            message += f" (from {recommendation.basis})"
    else:
        message = (
            "Re-size recommended but the observed workload cannot be planned: "
            f"{recommendation.error}"
        )
    new = effects.status.model_copy(update={"recommendation": recommendation})
    return replace(
        effects,
        writes=(*effects.writes, PostEvent("Warning", RESIZE_RECOMMENDED, message)),
        status=new,
        status_patch=status_patch(raw_status, new),
        replan=None,
    )
