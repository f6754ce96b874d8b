"""The objects each fleet owns, as the operator's watches last saw them (Kopf indexes).

A steady pass compares what it would apply with what runs; reading that with a GET per object
and a LIST per fleet costs 4 API requests per reconcile, and the watches already deliver every
change. So each owned Deployment, Service and PodDisruptionBudget is indexed under its fleet
`(namespace, name)` as it arrives, and `observe` looks the fleet up in memory.

An entry holds only what a pass reads: the spec (to compare with what it would apply), the
metadata it sets or matches (name, labels, annotations, ownerReferences) and the replica
counts of status; not the server's bookkeeping (managedFields, uid, timestamps) or the rest
of status. And it holds that as one compact JSON string, not as the parsed tree: a parsed
Deployment is about 20 KB of dicts, lists and strings in Python (its JSON about 4 KB), and an
operator watching thousands of them would keep five times their size alive between passes
that each read one fleet's two or three. A pass parses its own fleet's entries, some tens of
microseconds.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from controllers.adapters.kube import ObjectKey, Owner
from controllers.api.v1alpha1 import KIND

FleetKey = tuple[str, str]  # (namespace, fleet name)


@dataclass(frozen=True, slots=True)
class Packed:
    """One indexed object: what a pass matches on without parsing, and the rest as JSON."""

    name: str
    owner_uids: tuple[str, ...]  # of its ownerReferences: a fleet made again owns nothing old
    json: str

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> Packed:
        meta = obj.get("metadata") or {}
        return cls(
            name=meta.get("name", ""),
            owner_uids=tuple(ref.get("uid", "") for ref in meta.get("ownerReferences") or ()),
            json=json.dumps(obj, separators=(",", ":"), ensure_ascii=False),
        )

    def unpacked(self) -> dict[str, Any]:
        """A fresh parse: the caller may change it without touching the index."""
        parsed: dict[str, Any] = json.loads(self.json)
        return parsed


# What a Kopf index holds: per fleet key, the entries of every object indexed under it.
IndexStore = Mapping[FleetKey, Iterable[Packed]]
ConfigMapStore = Mapping[FleetKey, Iterable[Mapping[str, str]]]
_METADATA_KEPT = ("name", "namespace", "labels", "annotations", "ownerReferences")
_STATUS_KEPT = ("replicas", "readyReplicas")
_CONDITIONS_KEPT = ("ReplicaFailure",)
FLEET_LABEL = "app.kubernetes.io/instance"


def index_entry(body: Mapping[str, Any]) -> dict[FleetKey, Packed] | None:
    """The `@kopf.index` body for an owned object: its fleet's key -> what a pass reads.

    None for an object no fleet controls (the managed-by label alone does not make it ours).
    """
    meta = body.get("metadata") or {}
    owner = next(
        (
            ref
            for ref in meta.get("ownerReferences") or ()
            if ref.get("kind") == KIND and ref.get("controller")
        ),
        None,
    )
    if owner is None or not meta.get("namespace"):
        return None
    entry: dict[str, Any] = {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": {k: meta[k] for k in _METADATA_KEPT if k in meta},
        "spec": body.get("spec") or {},
        "status": _status_kept(body.get("status") or {}),
    }
    return {(meta["namespace"], owner["name"]): Packed.of(entry)}


def _status_kept(status: Mapping[str, Any]) -> dict[str, Any]:
    """The replica counts, and a ReplicaFailure condition (quota: the pods were never created,
    which the Pending detection reads) but no other condition."""
    kept = {k: v for k, v in status.items() if k in _STATUS_KEPT}
    failures = [
        c
        for c in status.get("conditions") or ()
        if isinstance(c, Mapping) and c.get("type") in _CONDITIONS_KEPT
    ]
    if failures:
        kept["conditions"] = failures
    return kept


def pod_index_entry(body: Mapping[str, Any]) -> dict[FleetKey, Packed] | None:
    """The `@kopf.index` body for a vLLM pod: its fleet's key (pods are the ReplicaSet's, so
    the fleet is known by the instance label) -> its metadata (without the server's
    managedFields) and status."""
    meta = body.get("metadata") or {}
    fleet = (meta.get("labels") or {}).get(FLEET_LABEL)
    if not fleet or not meta.get("namespace"):
        return None
    kept = {"metadata": {k: v for k, v in meta.items() if k != "managedFields"}}
    if "status" in body:
        kept["status"] = body["status"]
    return {(meta["namespace"], fleet): Packed.of(kept)}


def index_objects(
    objects: Iterable[Mapping[str, Any]], entry: Callable[..., Any] = index_entry
) -> dict[FleetKey, list[Any]]:
    """The same index built from listed objects (for a benchmark or a test without Kopf)."""
    index: dict[FleetKey, list[Any]] = {}
    for obj in objects:
        for key, value in (entry(obj) or {}).items():
            index.setdefault(key, []).append(value)
    return index


def config_map_entry(body: Mapping[str, Any]) -> dict[FleetKey, dict[str, str]] | None:
    """The `@kopf.index` body for a calibration ConfigMap: (namespace, name) -> its data."""
    meta = body.get("metadata") or {}
    if not meta.get("namespace") or not meta.get("name"):
        return None
    return {(meta["namespace"], meta["name"]): dict(body.get("data") or {})}


class IndexedOwned:
    """`OwnedObjects` over one index per kind (Kopf's, fed by its watches), the pods', and the
    watched calibration ConfigMaps (labelled, so the operator never caches every ConfigMap)."""

    def __init__(
        self,
        stores: Mapping[str, IndexStore],
        pods: IndexStore | None = None,
        config_maps: ConfigMapStore | None = None,
    ) -> None:
        self._stores = stores  # kind -> index
        self._pods = pods or {}
        self._config_maps = config_maps or {}

    def pods_of(self, owner: Owner) -> tuple[Mapping[str, Any], ...]:
        return tuple(p.unpacked() for p in self._pods.get((owner.namespace, owner.name), ()))

    def calibration(self, namespace: str, name: str) -> Mapping[str, str] | None:
        return next(iter(self._config_maps.get((namespace, name), ())), None)

    def owned_by(self, owner: Owner) -> dict[ObjectKey, dict[str, Any]]:
        found: dict[ObjectKey, dict[str, Any]] = {}
        key = (owner.namespace, owner.name)
        for kind, store in self._stores.items():
            for entry in store.get(key, ()):
                # A fleet deleted and created again under its name owns nothing of the old one.
                if owner.uid in entry.owner_uids:
                    found[(kind, entry.name)] = entry.unpacked()
        return found
