"""The owned-object cache keeps what a pass compares and counts, and little else."""

from __future__ import annotations

import copy
import json
import sys
from datetime import UTC, datetime
from typing import Any

import yaml

from controllers.adapters.kube import Owner, owned
from controllers.adapters.owned import IndexedOwned, index_entry, index_objects
from controllers.api.v1alpha1 import InferenceFleet
from controllers.policy.pending import POOL_LABEL, waiting_replicas
from controllers.policy.render import drifted, render_fleet
from tests.conftest import REPO
from tests.plans import fleet_plan, pool_plan

OWNER = Owner(name="chat", namespace="llm", uid="uid-1")


def _served(manifest: dict[str, Any], k: int) -> dict[str, Any]:
    """The manifest as a watch delivers it: parsed on its own, with the server's bookkeeping."""
    served = json.loads(json.dumps(owned(manifest, OWNER)))
    served["metadata"] |= {
        "uid": f"object-{k}",
        "resourceVersion": str(100 + k),
        "creationTimestamp": "2026-01-01T00:00:00Z",
        "managedFields": [{"manager": "inferfleet", "fieldsV1": {"f:spec": {}}}],
    }
    served["status"] = {"replicas": 3, "readyReplicas": 2, "conditions": [{"type": "Available"}]}
    return served


def _deployments() -> list[dict[str, Any]]:
    docs = yaml.safe_load_all((REPO / "examples" / "fleet-code-8b.yaml").read_text())
    fleet = InferenceFleet.model_validate(
        next(d for d in docs if d and d["kind"] == "InferenceFleet")
    )
    plan = fleet_plan(pool_plan(pool=fleet.spec.pools[0].name))
    rendered = render_fleet("chat", "llm", fleet.spec, plan, {fleet.spec.pools[0].name: 3}, None)
    return [_served(pool.deployment, k) for k, pool in enumerate(rendered)]


def test_an_entry_keeps_what_a_pass_compares_and_counts():
    (served,) = _deployments()
    ((key, packed),) = (index_entry(served) or {}).items()
    assert key == ("llm", "chat")
    entry = packed.unpacked()
    desired = owned(copy.deepcopy({k: v for k, v in served.items() if k != "status"}), OWNER)
    for bookkeeping in ("uid", "resourceVersion", "creationTimestamp", "managedFields"):
        desired["metadata"].pop(bookkeeping)
    assert not drifted(desired, entry)
    assert entry["status"] == {"replicas": 3, "readyReplicas": 2}
    assert set(entry["metadata"]) == {"name", "namespace", "labels", "annotations",
                                      "ownerReferences"}  # fmt: skip


def _parsed_size(value: Any) -> int:
    """Bytes of a parsed JSON tree in this process: every dict, list, string and number."""
    size = sys.getsizeof(value)
    if isinstance(value, dict):
        size += sum(_parsed_size(k) + _parsed_size(v) for k, v in value.items())
    elif isinstance(value, list):
        size += sum(_parsed_size(v) for v in value)
    return size


def test_an_entry_holds_its_object_packed_at_a_fraction_of_the_parsed_size():
    """Thousands of Deployments stay in the cache between passes; a parsed one is a tree of
    hundreds of small objects, its packed form one string."""
    (served,) = _deployments()
    packed = next(iter((index_entry(served) or {}).values()))
    kept = packed.unpacked()
    assert _parsed_size(kept) > 3 * sys.getsizeof(packed.json)


def test_an_unpacked_entry_is_the_passs_own_copy():
    (served,) = _deployments()
    cache = IndexedOwned({"Deployment": index_objects([served])})
    key = ("Deployment", served["metadata"]["name"])
    first = cache.owned_by(OWNER)[key]
    first["spec"]["replicas"] = 99
    assert cache.owned_by(OWNER)[key]["spec"]["replicas"] == served["spec"]["replicas"]


def test_an_object_no_fleet_controls_is_not_indexed():
    (served,) = _deployments()
    served["metadata"]["ownerReferences"][0]["controller"] = False
    assert index_entry(served) is None


def test_a_fleet_created_again_under_its_name_owns_nothing_of_the_old_one():
    (served,) = _deployments()
    cache = IndexedOwned({"Deployment": index_objects([served])})
    assert list(cache.owned_by(OWNER)) == [("Deployment", served["metadata"]["name"])]
    assert cache.owned_by(Owner(name="chat", namespace="llm", uid="uid-2")) == {}


def test_an_entry_keeps_a_replica_failure_that_the_pending_detection_reads():
    """Quota: the ReplicaSet never created the pods, and only the Deployment's ReplicaFailure
    says so; the cache must keep that condition (and no other) for the detection to see it."""
    (served,) = _deployments()
    failure = {
        "type": "ReplicaFailure",
        "status": "True",
        "reason": "FailedCreate",
        "message": 'pods "chat-l40s-x" is forbidden: exceeded quota: gpu',
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }
    served["status"]["conditions"].append(failure)
    served["spec"]["replicas"] = 5  # 3 exist
    entry = next(iter((index_entry(served) or {}).values())).unpacked()
    assert entry["status"]["conditions"] == [failure]
    pool = served["metadata"]["labels"][POOL_LABEL]
    five_minutes_later_s = datetime(2026, 1, 1, 0, 5, tzinfo=UTC).timestamp()
    found = waiting_replicas([], {pool: entry}, 60.0, five_minutes_later_s)
    assert found[pool].replicas == 2 and found[pool].reason == "FailedCreate"
