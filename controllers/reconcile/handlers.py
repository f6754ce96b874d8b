"""Kopf handlers for InferenceFleet: validate -> plan -> render -> apply -> status.

Level-triggered: every pass recomputes from the spec and what is observed in the cluster, so a
restart, a resync or a second pass over an unchanged fleet writes nothing, and a hand-deleted or
hand-edited Deployment is put back. A per-fleet daemon re-runs the pass every
`spec.scaling.interval`; a spec edit runs it at once. The decisions live in the pure modules
(`planning`, `render`, `conditions`); this module only moves data between them and the API.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf
from pydantic import ValidationError

from controllers.adapters.kube import Conflict, Kube, KubeError, Owner, Unavailable, owned
from controllers.adapters.operator_metrics import OperatorMetrics
from controllers.adapters.prometheus_reader import OperatorClock, PrometheusReader
from controllers.api.conditions import (
    METRICS_AVAILABLE,
    READY,
    RESIZE_RECOMMENDED,
    SIZED,
    find,
    set_condition,
)
from controllers.api.v1alpha1 import (
    API_VERSION,
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    Condition,
    InferenceFleetSpec,
    InferenceFleetStatus,
    PlanStatus,
    ReplicaStatus,
    describe_validation_error,
    parse_duration_s,
)
from controllers.policy.autoscale import FleetDecision, FleetTick, decide_fleet, needs_history
from controllers.policy.monitoring.resize import propose_resize
from controllers.policy.monitoring.snapshot import MetricsSnapshot
from controllers.policy.planning import plan_spec, plan_status
from controllers.policy.render import (
    EXTERNALLY_SCALED,
    MANAGED_BY,
    drifted,
    object_name,
    render_fleet,
)
from sizing.curve import find_capacity
from sizing.errors import SizingError
from sizing.plan import CapacityFn, memoized
from sizing.simulator import LoadPoint

log = logging.getLogger("inferfleet.operator")

RETRY_BASE_S = 1.0
METRICS_PORT_ENV = "INFERFLEET_METRICS_PORT"  # serve /metrics on this port when set
METRICS_ADDRESS_ENV = "INFERFLEET_METRICS_ADDRESS"  # all interfaces unless set
DEFAULT_INTERVAL_S = 30.0


class SpecRefused(Exception):
    """The fleet cannot be planned as written; `reason` is the Sized condition's reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Outcome:
    """What one reconcile pass decided and wrote (`applied` is empty when nothing changed)."""

    applied: tuple[str, ...]
    status_written: bool
    plan: PlanStatus | None = None
    pool_replicas: tuple[PoolReplicas, ...] = ()
    refusal: str | None = None  # the Sized=False reason, when the spec was refused


@dataclass(frozen=True)
class PoolReplicas:
    pool: str
    desired: int
    ready: int
    warming: int


def _owner(body: Mapping[str, Any]) -> Owner:
    meta = body["metadata"]
    return Owner(name=meta["name"], namespace=meta["namespace"], uid=meta["uid"])


def _current_status(body: Mapping[str, Any]) -> InferenceFleetStatus:
    try:
        return InferenceFleetStatus.model_validate(body.get("status") or {})
    except ValidationError:
        # A status someone else mangled is rebuilt from scratch rather than trusted.
        return InferenceFleetStatus()


async def _hf_config(kube: Kube, owner: Owner, spec: InferenceFleetSpec) -> dict[str, Any]:
    source = spec.model.hf_config
    if source.inline is not None:
        return dict(source.inline)
    ref = source.config_map_ref
    assert ref is not None  # the model validator guarantees exactly one source
    text = await kube.read_config_map_key(owner.namespace, ref.name, ref.key)
    where = f"spec.model.hfConfig.configMapRef: ConfigMap {ref.name}, key {ref.key}"
    if text is None:
        raise SpecRefused("InvalidSpec", f"{where}: not found in namespace {owner.namespace}")
    try:
        config = json.loads(text)
    except ValueError as err:
        raise SpecRefused("InvalidSpec", f"{where}: not valid JSON ({err})") from None
    if not isinstance(config, dict):
        raise SpecRefused("InvalidSpec", f"{where}: expected a JSON object")
    return config


Curves = dict[str, tuple[LoadPoint, ...]]


def _plan_or_refusal(
    spec: InferenceFleetSpec, hf_config: dict[str, Any], capacity_fn: CapacityFn
) -> tuple[PlanStatus, Curves] | SpecRefused:
    try:
        plan = plan_spec(spec, hf_config, capacity_fn)
    except SizingError as err:
        return SpecRefused(err.reason, str(err))
    curves = {
        a.option.pool.name: a.option.capacity.points
        for a in plan.allocations
        if a.option.capacity is not None
    }
    return plan_status(plan), curves


class PlanCache:
    """The last plan per fleet, reused while its spec and config.json stay the same.

    Planning is the costly, pure part of a pass; resyncs and owned-object events of an unchanged
    fleet reuse it. Only a cache: after a restart the first pass recomputes the same plan.
    """

    def __init__(self) -> None:
        self._entries: dict[str, tuple[str, tuple[PlanStatus, Curves] | SpecRefused]] = {}
        # Fleets of the same model on the same GPUs share one simulated load curve.
        self._capacity = memoized(find_capacity)

    async def plan(
        self, uid: str, spec: InferenceFleetSpec, hf_config: dict[str, Any]
    ) -> PlanStatus:
        key = json.dumps([spec.model_dump(mode="json"), hf_config], sort_keys=True)
        cached = self._entries.get(uid)
        if cached is None or cached[0] != key:
            # Planning a large model takes a CPU-second or two: off the event loop, so watches
            # and other fleets' handlers keep running meanwhile.
            planned = await asyncio.to_thread(_plan_or_refusal, spec, hf_config, self._capacity)
            cached = (key, planned)
            self._entries[uid] = cached
        if isinstance(cached[1], SpecRefused):
            raise cached[1]
        return cached[1][0]

    def curves(self, uid: str) -> Curves:
        """The predicted load curve per pool of the fleet's current plan (step 13's baseline)."""
        cached = self._entries.get(uid)
        if cached is None or isinstance(cached[1], SpecRefused):
            return {}
        return cached[1][1]

    def forget(self, uid: str) -> None:
        self._entries.pop(uid, None)


async def _plan(
    kube: Kube, owner: Owner, body: Mapping[str, Any], plans: PlanCache
) -> tuple[InferenceFleetSpec, dict[str, Any], PlanStatus]:
    try:
        spec = InferenceFleetSpec.model_validate(body.get("spec") or {})
    except ValidationError as err:
        raise SpecRefused("InvalidSpec", describe_validation_error(err, "spec.")) from None
    hf_config = await _hf_config(kube, owner, spec)
    return spec, hf_config, await plans.plan(owner.uid, spec, hf_config)


# Policy memory is written to status at most this often (wall seconds) unless replicas change:
# enough that a restart forgets little, rare enough that an idle fleet is not a write stream.
HISTORY_PERSIST_S = 300.0
_WATCHED = {"forecast", "findings", "history", "recommendation"}


@dataclass
class Watcher:
    """The operator's view beyond Kubernetes: Prometheus, its clock, and policy memory."""

    prometheus: PrometheusReader | None = None
    clock: OperatorClock = field(default_factory=lambda: OperatorClock(time.time()))
    # uid -> (latest status.history, wall time it was last written to status)
    memory: dict[str, tuple[dict[str, Any], float]] = field(default_factory=dict)

    @classmethod
    def from_environment(cls) -> Watcher:
        compression = float(os.environ.get(TIME_COMPRESSION_ENV, "1") or 1)
        clock = OperatorClock(time.time(), compression)
        url = os.environ.get(PROMETHEUS_URL_ENV) or None
        return cls(PrometheusReader(url, clock), clock)

    def forget(self, uid: str) -> None:
        self.memory.pop(uid, None)


PROMETHEUS_URL_ENV = "INFERFLEET_PROMETHEUS_URL"
TIME_COMPRESSION_ENV = "INFERFLEET_TIME_COMPRESSION"


async def _observed_deployments(
    kube: Kube, owner: Owner, plan: PlanStatus
) -> dict[str, dict[str, Any] | None]:
    """Each planned pool's Deployment as it is now (None where there is none), read once."""
    return {
        pool.pool: await kube.get(
            "apps/v1", "Deployment", owner.namespace, object_name(owner.name, pool.pool)
        )
        for pool in plan.pools
    }


def _current_replicas(deployments: Mapping[str, dict[str, Any] | None]) -> dict[str, int]:
    """Replicas each pool's Deployment asks for now (pools without one are left out)."""
    current = {}
    for pool, observed in deployments.items():
        count = (observed or {}).get("spec", {}).get("replicas")
        if count is not None:
            current[pool] = int(count)
    return current


async def _watch(
    owner: Owner,
    body: Mapping[str, Any],
    spec: InferenceFleetSpec,
    plan: PlanStatus,
    curves: Curves,
    watcher: Watcher,
    url: str | None,
    current: Mapping[str, int],
    now_s: float,
) -> FleetDecision:
    """Metrics in, scaling decision and monitoring verdict out (controllers.policy.autoscale)."""
    snapshot = None
    if url and watcher.prometheus is not None:
        snapshot = await watcher.prometheus.snapshot(
            url, owner.namespace, owner.name, [p.pool for p in plan.pools], now_s
        )
    remembered = watcher.memory.get(owner.uid)
    history = remembered[0] if remembered else (body.get("status") or {}).get("history")
    past: tuple[tuple[float, float], ...] = ()
    if (
        url
        and watcher.prometheus is not None
        and snapshot is not None
        and snapshot.reachable
        and needs_history(spec, plan, history)
    ):
        past = await watcher.prometheus.history(url, owner.namespace, owner.name, now_s)
    return decide_fleet(
        FleetTick(
            spec=spec,
            plan=plan,
            snapshot=snapshot,
            history=history,
            current=current,
            now_s=watcher.clock.policy_s(now_s),
            curves=curves,
            time_compression=watcher.clock.compression,
            history_rps=past,
        )
    )


def _status_patch(current: Mapping[str, Any], new: InferenceFleetStatus) -> dict[str, Any]:
    """Only the keys this operator owns that differ from what is stored (null clears one)."""
    owned_keys = {"observed_generation", "conditions", "plan", "replicas", *_WATCHED}
    wanted = new.model_dump(by_alias=True, exclude_none=True, include=owned_keys)
    patch = {
        key: value
        for key, value in wanted.items()
        if current.get(key) != value and not (value == [] and key not in current)
    }
    for key in ("forecast", "recommendation"):
        if key in current and key not in wanted:
            patch[key] = None
    return patch


async def _write_status(
    kube: Kube, owner: Owner, body: Mapping[str, Any], new: InferenceFleetStatus
) -> bool:
    patch = _status_patch(body.get("status") or {}, new)
    if patch:
        await kube.patch_status(owner, patch)
    return bool(patch)


async def _refuse(
    kube: Kube, owner: Owner, body: Mapping[str, Any], refusal: SpecRefused, now_s: float
) -> Outcome:
    """Say why in status and an Event; touch nothing that already runs."""
    current = _current_status(body)
    generation = body["metadata"].get("generation")
    conditions = set_condition(
        current.conditions,
        SIZED,
        "False",
        refusal.reason,
        str(refusal),
        generation=generation,
        now_s=now_s,
    )
    new = current.model_copy(update={"conditions": conditions, "observed_generation": generation})
    before = find(current.conditions, SIZED)
    if before is None or (before.reason, before.message) != (refusal.reason, str(refusal)):
        await kube.post_event(owner, "Warning", refusal.reason, str(refusal))
    written = await _write_status(kube, owner, body, new)
    return Outcome((), written, refusal=refusal.reason)


def _ready_condition(
    conditions: list[Condition], desired: int, ready: int, generation: int | None, now_s: float
) -> list[Condition]:
    if ready >= desired:
        return set_condition(
            conditions,
            READY,
            "True",
            "ReplicasReady",
            f"{ready}/{desired} replicas ready",
            generation=generation,
            now_s=now_s,
        )
    return set_condition(
        conditions,
        READY,
        "False",
        "ReplicasWarming",
        f"{ready}/{desired} replicas ready; the rest are starting or pending GPUs",
        generation=generation,
        now_s=now_s,
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


# What a pool owns besides its Deployment, named like it.
_POOL_COMPANIONS = (("v1", "Service"), ("policy/v1", "PodDisruptionBudget"))


async def _prune(kube: Kube, owner: Owner, kept: set[str], plan: PlanStatus) -> list[str]:
    """Delete the objects of pools this fleet no longer runs (removed, or at zero replicas)."""
    labels = {"app.kubernetes.io/instance": owner.name, "app.kubernetes.io/managed-by": MANAGED_BY}
    messages = []
    for deployment in await kube.list_labelled("apps/v1", "Deployment", owner.namespace, labels):
        meta = deployment["metadata"]
        ours = any(ref.get("uid") == owner.uid for ref in meta.get("ownerReferences", []))
        if not ours or meta["name"] in kept:
            continue
        await kube.delete("apps/v1", "Deployment", owner.namespace, meta["name"])
        for api_version, kind in _POOL_COMPANIONS:
            await kube.delete(api_version, kind, owner.namespace, meta["name"])
        messages.append(
            f"Deleted Deployment, Service and PodDisruptionBudget {meta['name']}: "
            f"its pool has no replicas in plan {plan.hash}"
        )
    return messages


async def reconcile(
    kube: Kube,
    body: Mapping[str, Any],
    *,
    now_s: float,
    plans: PlanCache,
    watcher: Watcher | None = None,
) -> Outcome:
    """One level-triggered pass over a fleet."""
    owner = _owner(body)
    watcher = watcher or Watcher()
    try:
        spec, hf_config, plan = await _plan(kube, owner, body, plans)
    except SpecRefused as refusal:
        return await _refuse(kube, owner, body, refusal, now_s)
    generation = body["metadata"].get("generation")
    url = watcher.prometheus.url_for(spec.monitoring.prometheus_url) if watcher.prometheus else None
    deployments = await _observed_deployments(kube, owner, plan)
    decision = await _watch(
        owner, body, spec, plan, plans.curves(owner.uid), watcher, url,
        _current_replicas(deployments), now_s,
    )  # fmt: skip
    replicas = decision.replicas
    for pool_name, (was, now) in decision.changed.items():
        verb = "up" if now > was else "down"
        await kube.post_event(
            owner,
            "Normal",
            "Scaled",
            f"Scaled {verb} {object_name(owner.name, pool_name)} from {was} to {now}: "
            f"{decision.reasons[pool_name]}",
        )
    applied: list[str] = []
    per_pool: list[PoolReplicas] = []
    keda_url = url if spec.scaling.mode == "keda" else None
    rendered = render_fleet(owner.name, owner.namespace, spec, plan, replicas, keda_url)
    for pool in rendered:
        for manifest in pool.all():
            desired = owned(manifest, owner)
            meta = desired["metadata"]
            if desired["kind"] == "Deployment":  # already read above for the scaling decision
                observed = deployments.get(pool.pool)
            else:
                observed = await kube.get(
                    desired["apiVersion"], desired["kind"], meta["namespace"], meta["name"]
                )
            if observed is None or drifted(desired, observed):
                observed = await kube.apply(desired)
                message = _describe_apply(desired, plan, pool.pool)
                applied.append(message)
                await kube.post_event(owner, "Normal", "Applied", message)
            if desired["kind"] == "Deployment":
                state = observed.get("status", {})
                ready = state.get("readyReplicas", 0)
                warming = max(0, state.get("replicas", 0) - ready)
                per_pool.append(PoolReplicas(pool.pool, replicas[pool.pool], ready, warming))
    kept = {pool.deployment["metadata"]["name"] for pool in rendered}
    for message in await _prune(kube, owner, kept, plan):
        applied.append(message)
        await kube.post_event(owner, "Normal", "Pruned", message)
    current = _current_status(body)
    total = sum(replicas.values())
    ready = sum(p.ready for p in per_pool)
    warming = sum(p.warming for p in per_pool)
    sized_message = (
        f"{plan.total_gpus} GPUs, ${plan.cost_per_hour}/hour: "
        + ", ".join(f"{p.pool}: {p.replicas}x TP{p.tensor_parallel} {p.gpu}" for p in plan.pools)
        + f" (plan {plan.hash})"
    )
    conditions = set_condition(
        current.conditions, SIZED, "True", "Planned", sized_message,
        generation=generation, now_s=now_s,
    )  # fmt: skip
    if spec.scaling.mode not in EXTERNALLY_SCALED:
        conditions = _ready_condition(conditions, total, ready, generation, now_s)
    conditions = set_condition(
        conditions, METRICS_AVAILABLE, *decision.metrics_condition,
        generation=generation, now_s=now_s,
    )  # fmt: skip
    recommendation = current.recommendation
    if decision.resize_condition is not None:
        conditions = set_condition(
            conditions, RESIZE_RECOMMENDED, *decision.resize_condition,
            generation=generation, now_s=now_s,
        )  # fmt: skip
        if decision.resize_condition[0] != "True":
            recommendation = None
    if decision.resize_newly_recommended and decision.snapshot is not None:
        reason = (
            decision.resize_condition[2] if decision.resize_condition else "production diverges"
        )
        recommendation = await _recommend(
            kube, owner, spec, hf_config, plan, decision.snapshot, reason
        )
    history = _history_to_write(watcher, owner.uid, body, decision, now_s)
    new = current.model_copy(
        update={
            "observed_generation": generation,
            "conditions": conditions,
            "plan": plan,
            "replicas": ReplicaStatus(desired=total, ready=ready, warming=warming),
            "forecast": decision.forecast,
            "findings": list(decision.findings),
            "history": history,
            "recommendation": recommendation,
        }
    )
    written = await _write_status(kube, owner, body, new)
    return Outcome(tuple(applied), written, plan=plan, pool_replicas=tuple(per_pool))


def _history_to_write(
    watcher: Watcher, uid: str, body: Mapping[str, Any], decision: FleetDecision, now_s: float
) -> dict[str, Any] | None:
    """Keep the newest policy memory in the operator; write it to status now and then."""
    stored = (body.get("status") or {}).get("history")
    remembered = watcher.memory.get(uid)
    last_written_s = remembered[1] if remembered else now_s
    due = stored is None or decision.changed or now_s - last_written_s >= HISTORY_PERSIST_S
    watcher.memory[uid] = (decision.history, now_s if due else last_written_s)
    return decision.history if due else stored


async def _recommend(
    kube: Kube,
    owner: Owner,
    spec: InferenceFleetSpec,
    hf_config: dict[str, Any],
    plan: PlanStatus,
    snapshot: MetricsSnapshot,
    reason: str,
) -> dict[str, Any]:
    """Step 13: re-plan from the observed workload (off the loop) and say so once."""
    try:
        recommendation = await asyncio.to_thread(
            propose_resize, snapshot, spec, hf_config, plan, reason
        )
        message = f"Re-size recommended: {reason}"
    except SizingError as err:
        recommendation = {"reason": reason, "error": str(err)}
        message = f"Re-size recommended but the observed workload cannot be planned: {err}"
    await kube.post_event(owner, "Warning", RESIZE_RECOMMENDED, message)
    return recommendation


# --- Kopf wiring -----------------------------------------------------------------------------


def _lock(memo: kopf.Memo, uid: str) -> asyncio.Lock:
    """One pass at a time per fleet: the handlers and the daemon never interleave."""
    locks: dict[str, asyncio.Lock] = memo.locks
    return locks.setdefault(uid, asyncio.Lock())


async def _reconcile_once(memo: kopf.Memo, body: Mapping[str, Any]) -> Outcome:
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    metrics: OperatorMetrics = memo.metrics
    async with _lock(memo, body["metadata"]["uid"]):
        started_s = time.monotonic()
        try:
            outcome = await reconcile(
                memo.kube, body, now_s=time.time(), plans=memo.plans, watcher=memo.watcher
            )
        except KubeError as err:
            metrics.count_error("Conflict" if isinstance(err, Conflict) else "APIError")
            raise
        finally:
            metrics.observe_reconcile(time.monotonic() - started_s)
    for message in outcome.applied:
        log.info("%s/%s: %s", namespace, name, message)
    if outcome.refusal:
        metrics.count_error(outcome.refusal)
    if outcome.plan is not None:
        metrics.set_plan(namespace, name, outcome.plan)
        for pool in outcome.pool_replicas:
            metrics.set_replicas(namespace, name, pool.pool, pool.desired, pool.ready,
                                 pool.warming)  # fmt: skip
    return outcome


def _interval_s(spec: Mapping[str, Any]) -> float:
    try:
        return parse_duration_s(spec.get("scaling", {}).get("interval", "30s"))
    except (ValueError, TypeError, AttributeError):
        return DEFAULT_INTERVAL_S


def retry_delay_s(failures: int, interval_s: float) -> float:
    """Exponential backoff from RETRY_BASE_S, never longer than the resync interval."""
    return min(interval_s, RETRY_BASE_S * 2 ** max(0, failures - 1))


# Young collections every this many allocations (CPython's default is 700).
GC_YOUNG_THRESHOLD = 10_000


def tune_gc() -> None:
    """Keep full garbage collections out of the reconcile path.

    With 200 fleets a full (generation-2) pass scans every status body, plan and policy memory
    and stalls a reconcile by 100-200 ms (p99 of 140-220 ms against a p50 of 14 ms, measured
    with scripts/bench_operator.py). What is alive after start-up (modules, schemas, Kopf's
    registry) is frozen out of collection, and young collections run 14x less often, so the
    older generations fill, and are scanned, 14x less often too. The operator's garbage is
    almost all freed by reference counting; the cycles left wait a little longer.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 10, 10)


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # The operator posts its own Events with the what and why; Kopf's per-handler log Events
    # would be writes on every restart.
    settings.posting.enabled = False
    tune_gc()
    memo.kube = Kube.from_environment()
    memo.locks = {}
    memo.plans = PlanCache()
    memo.watcher = Watcher.from_environment()
    memo.metrics = OperatorMetrics()
    port = os.environ.get(METRICS_PORT_ENV)
    if port:
        address = os.environ.get(METRICS_ADDRESS_ENV, "0.0.0.0")
        memo.metrics_server = memo.metrics.serve(int(port), address)


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    await memo.kube.close()
    if memo.get("metrics_server") is not None:
        memo.metrics_server.shutdown()
        memo.metrics_server.server_close()


@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
async def spec_changed(body: kopf.Body, memo: kopf.Memo, retry: int, **_: Any) -> None:
    """A spec edit re-plans at once instead of waiting for the next resync."""
    try:
        await _reconcile_once(memo, body)
    except (Conflict, Unavailable) as err:
        delay_s = retry_delay_s(retry + 1, DEFAULT_INTERVAL_S)
        raise kopf.TemporaryError(str(err), delay=delay_s) from err
    except KubeError as err:
        raise kopf.PermanentError(str(err)) from err


@kopf.on.event("apps", "v1", "deployments", labels={"app.kubernetes.io/managed-by": "inferfleet"})
async def owned_deployment_changed(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A Deployment deleted, edited or scaled by someone else: re-check its fleet now."""
    owners = [o for o in body["metadata"].get("ownerReferences", []) if o.get("kind") == KIND]
    for owner in owners:
        namespace = body["metadata"]["namespace"]
        fleet = await memo.kube.get(API_VERSION, KIND, namespace, owner["name"])
        if fleet is None or fleet["metadata"].get("deletionTimestamp"):
            continue
        try:
            await _reconcile_once(memo, fleet)
        except KubeError as err:  # the fleet's own daemon retries with backoff
            log.warning("%s/%s: %s", namespace, owner["name"], err)


@kopf.on.delete(GROUP, VERSION, PLURAL, optional=True)
async def forget(uid: str, namespace: str | None, name: str, memo: kopf.Memo, **_: Any) -> None:
    """Drop per-fleet memory and series; the owned objects go with the fleet (ownerReferences)."""
    memo.plans.forget(uid)
    memo.watcher.forget(uid)
    memo.locks.pop(uid, None)
    assert namespace is not None  # Kopf types it for any resource; InferenceFleet is namespaced
    memo.metrics.forget_fleet(namespace, name)


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=5.0)
async def resync(
    stopped: kopf.DaemonStopped, body: kopf.Body, spec: kopf.Spec, memo: kopf.Memo, **_: Any
) -> None:
    """Reconcile on start (create or operator restart), then every spec.scaling.interval."""
    failures = 0
    while not stopped:
        delay_s = _interval_s(spec)
        try:
            await _reconcile_once(memo, body)
            failures = 0
        except (Conflict, Unavailable) as err:
            if memo.kube.closed:
                return  # clean-up closed the client before Kopf stopped this daemon: stopping
            failures += 1
            delay_s = retry_delay_s(failures, delay_s)
            log.warning("%s: %s; retrying in %.1f s", body["metadata"]["name"], err, delay_s)
        except KubeError as err:
            log.error("%s: %s", body["metadata"]["name"], err)
        await stopped.wait(delay_s)
