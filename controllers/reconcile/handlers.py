"""Kopf wiring for InferenceFleet: which events run a pass, one pass at a time per fleet.

A pass is `observe` (read everything into one Observation) -> `decide` (pure: Observation ->
Effects) -> `act` (write the Effects). Level-triggered: every pass recomputes from the spec and
what is observed, so a restart, a resync or a second pass over an unchanged fleet writes
nothing, and a hand-deleted or hand-edited Deployment, Service or PDB is put back. A per-fleet
daemon re-runs the pass every `spec.scaling.interval`, on the fleet's own phase of it
(`timing`); a spec edit runs it at once, a burst of changes to its owned objects runs it once
(`timing`). The fleet and what it owns are read from Kopf indexes fed by the watches, not
from the API on every pass.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import kopf

from controllers.adapters.kube import (
    Conflict,
    Kube,
    KubeClient,
    KubeError,
    OwnedObjects,
    Unavailable,
    connection_info,
)
from controllers.adapters.operator_metrics import OperatorMetrics
from controllers.adapters.owned import (
    FleetKey,
    IndexedOwned,
    Packed,
    config_map_entry,
    index_entry,
    pod_index_entry,
)
from controllers.api.v1alpha1 import (
    CALIBRATION_LABEL,
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    PlanStatus,
    PoolCapacity,
    PoolScorecard,
    parse_duration_s,
)
from controllers.policy.render import MANAGED_BY
from controllers.reconcile import log_redaction
from controllers.reconcile.act import act
from controllers.reconcile.decide import (
    PoolReplicas,
    decide,
    failed,
    replan,
    with_recommendation,
    with_removal_order,
)
from controllers.reconcile.heap import trim_periodically
from controllers.reconcile.observe import base_observation, observe
from controllers.reconcile.plans import PlanCache
from controllers.reconcile.runtime import Watcher, pod_access_from_environment
from controllers.reconcile.timing import coalesce_wait_s, next_resync_delay_s, retry_delay_s

log = logging.getLogger("inferfleet.operator")

METRICS_PORT_ENV = "INFERFLEET_METRICS_PORT"  # serve /metrics on this port when set
METRICS_ADDRESS_ENV = "INFERFLEET_METRICS_ADDRESS"  # all interfaces unless set
DEFAULT_INTERVAL_S = 30.0
CONCURRENT_PASSES_ENV = "INFERFLEET_CONCURRENT_PASSES"
# Passes in flight at once, over all fleets. A pass spends most of its time waiting on
# Prometheus and the API server, and each one in flight holds its observation, query results
# and status; unbounded, a burst (1,000 fleets created, or a restart) has hundreds in flight on
# a loaded node and the heap ends at that high-water mark. Eight keep both cores busy.
DEFAULT_CONCURRENT_PASSES = 8
KOPF_WORKER_IDLE_S = 1.0
MANAGED = {"app.kubernetes.io/managed-by": MANAGED_BY}


@dataclass(frozen=True)
class Outcome:
    """What one reconcile pass decided and wrote (`applied` is empty when nothing changed)."""

    applied: tuple[str, ...]
    status_written: bool
    plan: PlanStatus | None = None
    pool_replicas: tuple[PoolReplicas, ...] = ()
    refusal: str | None = None  # the Sized=False reason, when the spec was refused
    capacity: tuple[PoolCapacity, ...] = ()  # predicted vs measured per pool, for /metrics
    scorecard: tuple[PoolScorecard, ...] = ()  # the autoscaler's record per pool, for /metrics


async def reconcile(
    kube: KubeClient,
    body: Mapping[str, Any],
    *,
    now_s: float,
    plans: PlanCache,
    owned: OwnedObjects,
    watcher: Watcher | None = None,
) -> Outcome:
    """One level-triggered pass over a fleet: observe -> decide -> act.

    Kubernetes API errors propagate (the caller retries with backoff). Anything else that goes
    wrong while observing or deciding is the user's answer too: `Degraded=True` with the error
    and an Event, nothing that runs is touched, and the next pass tries again.
    """
    watcher = watcher or Watcher()
    base = base_observation(body, now_s, watcher)
    try:
        obs = await observe(kube, base, body, plans=plans, watcher=watcher, owned=owned)
        effects = decide(obs)
        # Without pod access there are no pods to order: the ReplicaSet controller picks.
        if effects.scale_down and obs.pods and obs.prometheus_url and watcher.prometheus:
            owner = obs.owner
            requests = await watcher.prometheus.pod_requests(
                obs.prometheus_url, owner.namespace, owner.name
            )
            effects = with_removal_order(effects, obs.pods, requests)
        if effects.replan is not None:
            recommendation = await asyncio.to_thread(replan, effects.replan)
            effects = with_recommendation(effects, obs.raw_status, recommendation)
        watcher.errors.pop(base.owner.uid, None)
    except KubeError:
        raise
    except Exception as err:
        effects = failed(base, err)
        _log_once(watcher, base.owner.uid, body, err)
    written = await act(kube, watcher, effects)
    return Outcome(
        effects.applied,
        written,
        plan=effects.plan,
        pool_replicas=effects.pool_replicas,
        refusal=effects.refusal,
        capacity=tuple(effects.status.capacity),
        scorecard=tuple(effects.status.scorecard),
    )


def _log_once(watcher: Watcher, uid: str, body: Mapping[str, Any], err: Exception) -> None:
    """The traceback once per distinct error, not on every retry."""
    text = f"{type(err).__name__}: {err}"
    if watcher.errors.get(uid) == text:
        return
    watcher.errors[uid] = text
    meta = body.get("metadata", {})
    log.error(
        "%s/%s: reconcile failed (generation %s): %s",
        meta.get("namespace"), meta.get("name"), meta.get("generation"), text,
        exc_info=err,
    )  # fmt: skip


# --- Kopf wiring -----------------------------------------------------------------------------


def _lock(memo: kopf.Memo, uid: str) -> asyncio.Lock:
    """One pass at a time per fleet: the handlers and the daemon never interleave."""
    locks: dict[str, asyncio.Lock] = memo.locks
    return locks.setdefault(uid, asyncio.Lock())


def _owned(indexes: Mapping[str, Any]) -> IndexedOwned:
    """The owned-object cache over the Kopf indexes a handler was given (by index name)."""
    return IndexedOwned(
        {
            "Deployment": indexes["owned_deployments"],
            "Service": indexes["owned_services"],
            "PodDisruptionBudget": indexes["owned_pdbs"],
        },
        pods=indexes.get("fleet_pods"),
        config_maps=indexes["calibrations"],
    )


async def _reconcile_once(
    memo: kopf.Memo, body: Mapping[str, Any], indexes: Mapping[str, Any]
) -> Outcome:
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    metrics: OperatorMetrics = memo.metrics
    # The fleet's lock first: a fleet waiting for a slot holds no other fleet's.
    async with _lock(memo, body["metadata"]["uid"]), memo.pass_slots:
        started_s = time.monotonic()
        try:
            outcome = await reconcile(
                memo.kube,
                body,
                now_s=time.time(),
                plans=memo.plans,
                owned=_owned(indexes),
                watcher=memo.watcher,
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
                                 pool.warming, pool.pending, pool.advised)  # fmt: skip
        metrics.set_capacity(namespace, name, outcome.capacity)
        metrics.set_scorecard(namespace, name, outcome.scorecard)
    return outcome


def concurrent_passes_from_environment() -> int:
    """`INFERFLEET_CONCURRENT_PASSES` (a positive integer), else the default; a bad value is
    refused at start-up rather than guessed at."""
    raw = os.environ.get(CONCURRENT_PASSES_ENV, "").strip()
    if not raw:
        return DEFAULT_CONCURRENT_PASSES
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{CONCURRENT_PASSES_ENV}={raw!r}: expected a positive integer")
    return int(raw)


def _interval_s(spec: Mapping[str, Any]) -> float:
    try:
        return parse_duration_s(spec.get("scaling", {}).get("interval", "30s"))
    except (ValueError, TypeError, AttributeError):
        return DEFAULT_INTERVAL_S


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
    # Kopf keeps a worker per watched object, holding the object as last delivered, until it
    # has been idle this long (its default: 5 s). After a wave of events (a burst, a rollout
    # of every fleet) that is thousands of parsed objects for no use: 1,000 fleets settle
    # 7-12 MiB lower with 1 s.
    settings.queueing.idle_timeout = KOPF_WORKER_IDLE_S
    log_redaction.install()
    tune_gc()
    memo.kube = Kube.from_environment()
    memo.locks = {}
    memo.pass_slots = asyncio.Semaphore(concurrent_passes_from_environment())
    memo.coalescing = {}  # (namespace, fleet) -> its pass waiting out the window
    memo.last_event_s = {}  # (namespace, fleet) -> loop time of its newest owned-object event
    memo.passes = set()  # every such pass until it ends (the loop holds tasks weakly)
    memo.plans = PlanCache()
    memo.watcher = Watcher.from_environment()
    memo.metrics = OperatorMetrics()
    memo.heap_upkeep = asyncio.create_task(trim_periodically())  # after a burst, too
    port = os.environ.get(METRICS_PORT_ENV)
    if port:
        address = os.environ.get(METRICS_ADDRESS_ENV, "0.0.0.0")
        memo.metrics_server = memo.metrics.serve(int(port), address)


@kopf.on.login()
def login(**_: Any) -> kopf.ConnectionInfo:
    """The watches log in as the operator's own client does (`Kube.from_environment`), read
    when Kopf asks (at start and after a 401), not when Kopf was imported."""
    return connection_info()


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    memo.heap_upkeep.cancel()
    for task in list(memo.passes):
        task.cancel()
    await memo.kube.close()
    if memo.get("metrics_server") is not None:
        memo.metrics_server.shutdown()
        memo.metrics_server.server_close()


# The owned-object cache: one Kopf index per kind, which Kopf hands every handler by name.
# The index functions are coroutines: Kopf runs a plain function in its thread pool, a hop per
# watch event for a few microseconds of work.
@kopf.index("apps", "v1", "deployments", labels=MANAGED)
async def owned_deployments(body: kopf.Body, **_: Any) -> dict[FleetKey, Packed] | None:
    return index_entry(body)


@kopf.index("v1", "services", labels=MANAGED)
async def owned_services(body: kopf.Body, **_: Any) -> dict[FleetKey, Packed] | None:
    return index_entry(body)


@kopf.index("policy", "v1", "poddisruptionbudgets", labels=MANAGED)
async def owned_pdbs(body: kopf.Body, **_: Any) -> dict[FleetKey, Packed] | None:
    return index_entry(body)


async def fleet_pods(body: kopf.Body, **_: Any) -> dict[FleetKey, Packed] | None:
    return pod_index_entry(body)


# Watched only where the RBAC grants pods (chart value rbac.podAccess): a watch without the grant
# would retry its 403 forever. Without it, Pending comes from the Deployments (`unready`).
if pod_access_from_environment():
    kopf.index("v1", "pods", labels=MANAGED)(fleet_pods)


# Calibrations (`spec.calibration.configMapRef`): only labelled ConfigMaps are watched, so the
# operator never caches every ConfigMap in the cluster; a change runs the naming fleets' passes
# (`calibration_changed`).
@kopf.index("v1", "configmaps", labels={CALIBRATION_LABEL: kopf.PRESENT})
async def calibrations(body: kopf.Body, **_: Any) -> dict[FleetKey, dict[str, str]] | None:
    return config_map_entry(body)


@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
async def spec_changed(body: kopf.Body, memo: kopf.Memo, retry: int, **kwargs: Any) -> None:
    """A spec edit re-plans at once instead of waiting for the next resync."""
    try:
        await _reconcile_once(memo, body, kwargs)
    except (Conflict, Unavailable) as err:
        delay_s = retry_delay_s(retry + 1, DEFAULT_INTERVAL_S)
        raise kopf.TemporaryError(str(err), delay=delay_s) from err
    except KubeError as err:
        raise kopf.PermanentError(str(err)) from err


@kopf.index(GROUP, VERSION, PLURAL)
async def fleets(body: kopf.Body, **_: Any) -> dict[FleetKey, kopf.Body]:
    """Each fleet's body as the watch last delivered it (Kopf's own object, not a copy), for
    the passes owned-object events run."""
    meta = body["metadata"]
    return {(meta["namespace"], meta["name"]): body}


def _owned_changed(memo: kopf.Memo, kind: str, body: kopf.Body, kwargs: Mapping[str, Any]) -> None:
    """An owned object deleted, edited, scaled or rolled by someone else: re-check its fleet
    soon.

    A burst of one fleet's events runs one pass: the first schedules it, each later one finds it
    waiting and moves its start back until the burst has been quiet for COALESCE_S (at most
    COALESCE_MAX_S after the first); it reads the cache then, so it sees every change. Kopf
    hands one object's events over one at a time, so the handler returns at once rather than
    wait the window out itself. No pass for what the operator's own start-up
    pass covers (the listing at start, `type` None) or for the echo of its own apply.
    """
    meta = body["metadata"]
    namespace = meta["namespace"]
    event_type = kwargs.get("type")  # ADDED, MODIFIED, DELETED; None while Kopf lists at start
    watcher: Watcher = memo.watcher
    key_of_object = (namespace, kind, meta["name"])
    if event_type == "DELETED":
        watcher.applied.pop(key_of_object, None)
    elif event_type is None or watcher.applied.get(key_of_object) == meta.get("resourceVersion"):
        return
    owners = [o for o in meta.get("ownerReferences", []) if o.get("kind") == KIND]
    for owner in owners:
        _pass_soon(memo, (namespace, owner["name"]), kwargs)


# The Kopf indexes a pass reads, by name (the handlers' keyword arguments carry them).
INDEXES = ("fleets", "owned_deployments", "owned_services", "owned_pdbs", "fleet_pods",
           "calibrations")  # fmt: skip


def _pass_soon(memo: kopf.Memo, key: tuple[str, str], kwargs: Mapping[str, Any]) -> None:
    """Run the fleet's pass once this burst of events is quiet (one pass for the burst).

    The pass keeps the indexes only: the event's own arguments hold the object as delivered
    (a parsed Deployment, ~20 KB), which a burst of them would keep alive for the window.
    """
    memo.last_event_s[key] = asyncio.get_running_loop().time()
    if key in memo.coalescing:
        return
    indexes = {name: kwargs[name] for name in INDEXES if name in kwargs}
    task = asyncio.create_task(_coalesced_pass(memo, key, indexes))
    memo.coalescing[key] = task
    memo.passes.add(task)
    task.add_done_callback(memo.passes.discard)


@kopf.on.event("apps", "v1", "deployments", labels=MANAGED)
async def owned_deployment_changed(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    _owned_changed(memo, "Deployment", body, kwargs)


@kopf.on.event("v1", "services", labels=MANAGED)
async def owned_service_changed(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    _owned_changed(memo, "Service", body, kwargs)


@kopf.on.event("policy", "v1", "poddisruptionbudgets", labels=MANAGED)
async def owned_pdb_changed(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    _owned_changed(memo, "PodDisruptionBudget", body, kwargs)


@kopf.on.event("v1", "configmaps", labels={CALIBRATION_LABEL: kopf.PRESENT})
async def calibration_changed(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    """A calibration ConfigMap created, edited or deleted: the fleets naming it re-plan now,
    not at their next resync (none at the start-up listing: every fleet's first pass reads
    the cache anyway)."""
    if kwargs.get("type") is None:
        return
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    for (fleet_namespace, fleet_name), bodies in kwargs["fleets"].items():
        fleet: Mapping[str, Any] = next(iter(bodies), {})
        ref = ((fleet.get("spec") or {}).get("calibration") or {}).get("configMapRef") or {}
        if fleet_namespace == namespace and ref.get("name") == name:
            _pass_soon(memo, (fleet_namespace, fleet_name), kwargs)


async def _coalesced_pass(
    memo: kopf.Memo, key: tuple[str, str], indexes: Mapping[str, Any]
) -> None:
    namespace, name = key
    loop = asyncio.get_running_loop()
    first_s = loop.time()
    try:
        while wait_s := coalesce_wait_s(first_s, memo.last_event_s[key], loop.time()):
            await asyncio.sleep(wait_s)
    finally:
        memo.coalescing.pop(key, None)  # an event from now on asks for a pass of its own
        memo.last_event_s.pop(key, None)
    # The fleet as the watch last delivered it: no GET (the pass itself reads the cache too).
    fleet = next(iter(indexes["fleets"].get(key, ())), None)
    if fleet is None or fleet["metadata"].get("deletionTimestamp"):
        return
    try:
        await _reconcile_once(memo, fleet, indexes)
    except KubeError as err:  # the fleet's own daemon retries with backoff
        log.warning("%s/%s: %s", namespace, name, err)


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
    stopped: kopf.DaemonStopped,
    body: kopf.Body,
    spec: kopf.Spec,
    memo: kopf.Memo,
    **kwargs: Any,
) -> None:
    """Reconcile on start (create or operator restart), then every spec.scaling.interval at
    this fleet's phase of it."""
    failures = 0
    uid = body["metadata"]["uid"]
    while not stopped:
        interval_s = _interval_s(spec)
        try:
            await _reconcile_once(memo, body, kwargs)
            failures = 0
            delay_s = next_resync_delay_s(uid, interval_s, time.time())
        except (Conflict, Unavailable) as err:
            if memo.kube.closed:
                return  # clean-up closed the client before Kopf stopped this daemon: stopping
            failures += 1
            delay_s = retry_delay_s(failures, interval_s)
            log.warning("%s: %s; retrying in %.1f s", body["metadata"]["name"], err, delay_s)
        except KubeError as err:
            log.error("%s: %s", body["metadata"]["name"], err)
            delay_s = next_resync_delay_s(uid, interval_s, time.time())
        await stopped.wait(delay_s)
