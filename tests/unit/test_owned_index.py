"""The owned-object cache keeps what a pass compares and counts, and little else."""

from __future__ import annotations

import copy
import json
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
    ((key, entry),) = (index_entry(served) or {}).items()
    assert key == ("llm", "chat")
    desired = owned(copy.deepcopy({k: v for k, v in served.items() if k != "status"}), OWNER)
    for bookkeeping in ("uid", "resourceVersion", "creationTimestamp", "managedFields"):
        desired["metadata"].pop(bookkeeping)
    assert not drifted(desired, entry)
    assert entry["status"] == {"replicas": 3, "readyReplicas": 2}
    assert set(entry["metadata"]) == {"name", "namespace", "labels", "annotations",
                                      "ownerReferences"}  # fmt: skip


def test_entries_of_separately_parsed_objects_share_their_keys():
    (first,) = _deployments()
    second = json.loads(json.dumps(first))
    a = next(iter((index_entry(first) or {}).values()))
    b = next(iter((index_entry(second) or {}).values()))
    key_a = next(k for k in a["spec"]["template"]["spec"] if k == "containers")
    key_b = next(k for k in b["spec"]["template"]["spec"] if k == "containers")
    assert key_a is key_b


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
    entry = next(iter((index_entry(served) or {}).values()))
    assert entry["status"]["conditions"] == [failure]
    pool = served["metadata"]["labels"][POOL_LABEL]
    five_minutes_later_s = datetime(2026, 1, 1, 0, 5, tzinfo=UTC).timestamp()
    found = waiting_replicas([], {pool: entry}, 60.0, five_minutes_later_s)
    assert found[pool].replicas == 2 and found[pool].reason == "FailedCreate"
