"""Observe: everything one pass reads, gathered into one typed `Observation`.

The spec (validated), config.json (inline, from its ConfigMap, or by model name from the
built-in catalog or the Hub, with exact weights from safetensors headers), the plan (cached,
computed off the event loop), the owned objects as the watches last saw them (`OwnedObjects`, no API
request; only a keda ScaledObject is read), the metrics snapshot, the stored status
(typed; what does not parse is named, not trusted) and the policy memory. Nothing is decided
here; `decide` gets all of it in one value, so it needs no cluster to be tested.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from pydantic import ValidationError

from controllers.adapters.kube import KubeClient, ObjectKey, OwnedObjects, Owner, Rejected
from controllers.adapters.model_source import ModelConfigUnavailable, ResolvedModel
from controllers.api.v1alpha1 import (
    CALIBRATION_LABEL,
    InferenceFleetSpec,
    InferenceFleetStatus,
    PlanStatus,
    describe_validation_error,
    parse_duration_s,
    parse_status,
)
from controllers.policy.advisory import policy_spec
from controllers.policy.autoscale import needs_history
from controllers.policy.calibration import efficiency_from_text
from controllers.policy.monitoring.snapshot import MetricsSnapshot
from controllers.policy.pending import Waiting
from controllers.policy.render import object_name
from controllers.reconcile.plans import Curves, PlanCache, SpecRefused
from controllers.reconcile.runtime import Remembered, Watcher
from controllers.reconcile.unready import unready_waiting
from sizing.checkpoint import CheckpointWeights
from sizing.errors import SizingError
from sizing.performance import Efficiency

# What a pool owns besides its Deployment, named like it.
POOL_COMPANIONS = (("v1", "Service"), ("policy/v1", "PodDisruptionBudget"))
SCALED_OBJECT = ("keda.sh/v1alpha1", "ScaledObject")


@dataclass(frozen=True)
class Planned:
    """A fleet that validated and planned."""

    spec: InferenceFleetSpec
    hf_config: dict[str, Any]
    plan: PlanStatus
    curves: Curves
    checkpoint: CheckpointWeights | None = None  # exact weights, when the Hub gave headers
    origin: str = ""  # where a model named only by name was resolved (catalog, Hub)


@dataclass(frozen=True)
class Observation:
    """One pass's inputs. `planned` is None exactly when `refusal` says why."""

    owner: Owner
    generation: int | None
    now_s: float  # wall time of the pass
    raw_status: Mapping[str, Any]  # status as stored, for the minimal patch
    status: InferenceFleetStatus  # the same, typed
    dropped_status: tuple[str, ...]  # stored status fields that did not parse
    refusal: SpecRefused | None = None
    planned: Planned | None = None
    owned: Mapping[ObjectKey, dict[str, Any] | None] = field(default_factory=dict)
    # Deployments this fleet owns (by label and ownerReference), for pruning dropped pools.
    owned_deployments: tuple[dict[str, Any], ...] = ()
    # The fleet's vLLM pods as the watch saw them (by its instance label): Pending ones and
    # the scheduler's reason, readiness and deletion cost for a scale-down's order.
    pods: tuple[Mapping[str, Any], ...] = ()
    # Without pod access: per pool, the replicas its Deployment has not made ready past the
    # deadline and the cold start (`unready`), standing in for the Pending pods.
    unready: Mapping[str, Waiting] = field(default_factory=dict)
    prometheus_url: str | None = None
    snapshot: MetricsSnapshot | None = None  # None: no Prometheus configured
    history_rps: tuple[tuple[float, float], ...] = ()  # past request rate, (policy s, req/s)
    remembered: Remembered | None = None
    policy_now_s: float = 0.0
    time_compression: float = 1.0

    @cached_property
    def policy_memory(self) -> dict[str, Any] | None:
        """The policy's memory in the shape it reads: the operator's newest copy, else the
        stored status.history (written only now and then)."""
        if self.remembered is not None:
            return self.remembered.history
        if self.status.history is None:
            return None
        return self.status.history.model_dump(by_alias=True, exclude_none=True)


def owner_of(body: Mapping[str, Any]) -> Owner:
    meta = body["metadata"]
    return Owner(name=meta["name"], namespace=meta["namespace"], uid=meta["uid"])


async def _hub_token(
    kube: KubeClient, owner: Owner, spec: InferenceFleetSpec, readable: frozenset[str] | None
) -> str | None:
    """The fleet's own Hub token (spec.model.hub.tokenSecretRef), read only from a Secret the
    chart lets the operator read; None: the operator's own token, if it has one."""
    ref = spec.model.hub.token_secret_ref
    if ref is None:
        return None
    where = f"spec.model.hub.tokenSecretRef: Secret {ref.name}"
    forbidden = SpecRefused(
        ModelConfigUnavailable.reason,
        f"{where}: the operator may not read it, and the model is not in the built-in catalog. "
        f"Add {ref.name} to the chart value rbac.hubTokenSecrets, set spec.model.hfConfig, or "
        "give the operator its own Hub token (chart value hub.tokenSecret) and drop the "
        "reference (the vLLM pods get the token from the kubelet either way)",
    )
    if readable is not None and ref.name not in readable:
        raise forbidden
    try:
        token = await kube.read_secret_key(owner.namespace, ref.name, ref.key)
    except Rejected as err:
        if err.status == 403:
            raise forbidden from None
        raise
    if token is None:
        raise SpecRefused(
            "InvalidSpec", f"{where}, key {ref.key}: not found in namespace {owner.namespace}"
        )
    return token


async def _by_name(
    kube: KubeClient, owner: Owner, spec: InferenceFleetSpec, watcher: Watcher
) -> ResolvedModel:
    """config.json and the checkpoint's weights from the catalog or the Hub; a model no source
    has is refused with ModelConfigUnavailable (this fleet only; nothing running is touched).
    The token Secret is read only when the Hub is asked."""
    models = watcher.models
    token = None
    if not models.in_catalog(spec.model.name, spec.model.revision):
        token = await _hub_token(kube, owner, spec, watcher.readable_secrets)
    try:
        return await models.resolve(spec.model.name, spec.model.revision, token)
    except ModelConfigUnavailable as err:
        raise SpecRefused(err.reason, str(err)) from None


async def _hf_config(kube: KubeClient, owner: Owner, spec: InferenceFleetSpec) -> dict[str, Any]:
    source = spec.model.hf_config
    assert source is not None  # the caller resolves by name otherwise
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


def calibration_of(
    owned: OwnedObjects, owner: Owner, spec: InferenceFleetSpec
) -> Efficiency | None:
    """The efficiency `spec.calibration` names, from the watched calibration ConfigMaps."""
    if spec.calibration is None:
        return None
    ref = spec.calibration.config_map_ref
    where = f"spec.calibration.configMapRef: ConfigMap {ref.name}, key {ref.key}"
    data = owned.calibration(owner.namespace, ref.name)
    if data is None:
        raise SpecRefused(
            "InvalidSpec",
            f"{where}: no ConfigMap of that name labelled {CALIBRATION_LABEL} in namespace "
            f"{owner.namespace}",
        )
    if ref.key not in data:
        raise SpecRefused("InvalidSpec", f"{where}: the ConfigMap has no such key")
    try:
        efficiency, gpu = efficiency_from_text(data[ref.key], where)
    except (ValueError, SizingError) as err:
        raise SpecRefused("InvalidSpec", str(err)) from None
    gpus = sorted({pool.gpu for pool in spec.pools})
    if gpu is not None and gpu.lower() not in {g.lower() for g in gpus}:
        raise SpecRefused(
            "InvalidSpec",
            f"{where}: measured on {gpu}, but the fleet's pools use {', '.join(gpus)} (a "
            "calibration holds for the GPU it was measured on)",
        )
    return efficiency


async def _planned(
    kube: KubeClient,
    owner: Owner,
    body: Mapping[str, Any],
    plans: PlanCache,
    watcher: Watcher,
    owned: OwnedObjects,
) -> Planned:
    try:
        spec = InferenceFleetSpec.model_validate(body.get("spec") or {})
    except ValidationError as err:
        raise SpecRefused("InvalidSpec", describe_validation_error(err, "spec.")) from None
    security = spec.model.security_context
    escalations = security.escalations() if security is not None else ()
    if escalations and not watcher.allow_privileged_pods:
        fields = ", ".join(f"spec.model.securityContext.{name}" for name in escalations)
        raise SpecRefused(
            "InvalidSpec",
            f"{fields}: gives the vLLM pods root or privileges, which this operator does not "
            "create (its chart value vllmPods.allowPrivileged is false)",
        )
    if spec.model.hf_config is not None:
        hf_config, checkpoint, origin = await _hf_config(kube, owner, spec), None, ""
    else:
        found = await _by_name(kube, owner, spec, watcher)
        hf_config, checkpoint, origin = found.config, found.checkpoint, found.origin
    efficiency = calibration_of(owned, owner, spec)
    plan, curves = await plans.plan_with_curves(owner.uid, spec, hf_config, checkpoint, efficiency)
    return Planned(spec, hf_config, plan, curves, checkpoint, origin)


async def _owned(
    kube: KubeClient,
    seen: Mapping[ObjectKey, dict[str, Any]],
    owner: Owner,
    planned: Planned,
    keda_url: str | None,
) -> dict[ObjectKey, dict[str, Any] | None]:
    """Each pool's objects as seen (None: absent); a ScaledObject is read, as it is not
    watched (KEDA may not be installed)."""
    found: dict[ObjectKey, dict[str, Any] | None] = {}
    for pool in planned.plan.pools:
        name = object_name(owner.name, pool.pool)
        found[("Deployment", name)] = seen.get(("Deployment", name))
        if pool.replicas <= 0:
            continue
        for _, kind in POOL_COMPANIONS:
            found[(kind, name)] = seen.get((kind, name))
        if planned.spec.scaling.mode == "keda" and keda_url:
            api_version, kind = SCALED_OBJECT
            found[(kind, name)] = await kube.get(api_version, kind, owner.namespace, name)
    return found


def _unready(
    watcher: Watcher,
    owner: Owner,
    planned: Planned,
    owned: Mapping[ObjectKey, dict[str, Any] | None],
    now_s: float,
) -> dict[str, Waiting]:
    """The pools' replicas not ready past the deadline, by the clocks the watcher keeps; a
    standby pool's too, while it covers a shortfall."""
    pools = (*planned.plan.pools, *planned.plan.standby)
    deployments = {
        p.pool: owned.get(("Deployment", object_name(owner.name, p.pool))) for p in pools
    }
    since = {p.pool: watcher.unready_since.get((owner.uid, p.pool), ()) for p in pools}
    deadline_s = parse_duration_s(planned.spec.scaling.pending_deadline)
    clocks, waiting = unready_waiting(pools, deployments, since, deadline_s, now_s)
    for pool in pools:
        key = (owner.uid, pool.pool)
        if pool.pool in clocks:
            watcher.unready_since[key] = clocks[pool.pool]
        else:
            watcher.unready_since.pop(key, None)
    return waiting


def base_observation(body: Mapping[str, Any], now_s: float, watcher: Watcher) -> Observation:
    """What is known without reading anything: the fleet, its stored status, the memory."""
    owner = owner_of(body)
    raw_status = body.get("status") or {}
    status, dropped = parse_status(raw_status)
    return Observation(
        owner=owner,
        generation=body["metadata"].get("generation"),
        now_s=now_s,
        raw_status=raw_status if isinstance(raw_status, Mapping) else {},
        status=status,
        dropped_status=dropped,
        remembered=watcher.memory.get(owner.uid),
        policy_now_s=watcher.clock.policy_s(now_s),
        time_compression=watcher.clock.compression,
    )


async def observe(
    kube: KubeClient,
    base: Observation,
    body: Mapping[str, Any],
    *,
    plans: PlanCache,
    watcher: Watcher,
    owned: OwnedObjects,
) -> Observation:
    """Read everything one pass needs on top of `base` (see `base_observation`).

    Raises only for Kubernetes API trouble (KubeError).
    """
    owner, now_s = base.owner, base.now_s
    try:
        planned = await _planned(kube, owner, body, plans, watcher, owned)
    except SpecRefused as refusal:
        return replace(base, refusal=refusal)
    prometheus = watcher.prometheus
    url = prometheus.url_for(planned.spec.monitoring.prometheus_url) if prometheus else None
    # KEDA queries the URL from inside the cluster too: only an allowed one goes there.
    keda_url = None
    if planned.spec.scaling.mode == "keda" and url and prometheus and prometheus.allowed(url):
        keda_url = url
    seen = owned.owned_by(owner)
    pools_owned = await _owned(kube, seen, owner, planned, keda_url)
    owned_deployments = tuple(obj for (kind, _), obj in seen.items() if kind == "Deployment")
    snapshot = None
    history_rps: tuple[tuple[float, float], ...] = ()
    if url and prometheus is not None:
        pools = [p.pool for p in planned.plan.pools]
        snapshot = await prometheus.snapshot(url, owner.namespace, owner.name, pools, now_s)
        deciding = policy_spec(planned.spec)
        if snapshot.reachable and needs_history(deciding, planned.plan, base.policy_memory):
            history_rps = await prometheus.history(url, owner.namespace, owner.name, now_s)
    return replace(
        base,
        planned=planned,
        owned=pools_owned,
        owned_deployments=owned_deployments,
        pods=owned.pods_of(owner),
        unready={} if watcher.pod_access else _unready(watcher, owner, planned, pools_owned, now_s),
        prometheus_url=url,
        snapshot=snapshot,
        history_rps=history_rps,
    )
