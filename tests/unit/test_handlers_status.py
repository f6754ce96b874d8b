"""The pure parts of the handlers: status diffing, backoff, the plan cache."""

from __future__ import annotations

import asyncio

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from controllers.api.conditions import set_condition
from controllers.api.v1alpha1 import InferenceFleet, InferenceFleetStatus, ReplicaStatus
from controllers.reconcile.decide import status_patch
from controllers.reconcile.plans import PlanCache, SpecRefused
from controllers.reconcile.timing import RETRY_BASE_S, retry_delay_s
from tests.conftest import REPO


def _spec():
    doc = yaml.safe_load((REPO / "examples" / "fleet-code-8b.yaml").read_text())
    return InferenceFleet.model_validate(doc).spec


def test_status_patch_holds_only_what_changed():
    conditions = set_condition([], "Sized", "True", "Planned", "ok", generation=1, now_s=0)
    status = InferenceFleetStatus(
        observed_generation=1, conditions=conditions, replicas=ReplicaStatus(desired=3)
    )
    stored = status.model_dump(by_alias=True, exclude_none=True)
    assert status_patch(stored, status) == {}
    newer = status.model_copy(update={"observed_generation": 2})
    assert status_patch(stored, newer) == {"observedGeneration": 2}
    # Findings that went away are cleared; an empty list is not written where there was none.
    assert status_patch({**stored, "findings": [{"metric": "x"}]}, status) == {"findings": []}
    # A forecast or recommendation the new status no longer has is removed (merge-patch null).
    assert status_patch({**stored, "recommendation": {"a": 1}}, status) == {"recommendation": None}


@given(st.integers(min_value=1, max_value=50), st.floats(min_value=1, max_value=3600))
def test_backoff_grows_and_is_capped_by_the_interval(failures, interval_s):
    delay = retry_delay_s(failures, interval_s)
    assert delay >= RETRY_BASE_S or delay == interval_s
    assert delay <= interval_s
    assert retry_delay_s(failures + 1, interval_s) >= delay


def test_plan_cache_reuses_until_the_spec_changes():
    spec = _spec()
    config = dict(spec.model.hf_config.inline)
    cache = PlanCache()
    first = asyncio.run(cache.plan_with_curves("uid-1", spec, config))[0]
    assert asyncio.run(cache.plan_with_curves("uid-1", spec, config))[0] is first
    tighter = spec.model_copy(
        update={"scaling": spec.scaling.model_copy(update={"max_replicas": 1})}
    )
    with pytest.raises(SpecRefused) as refused:
        asyncio.run(cache.plan_with_curves("uid-1", tighter, config))
    assert refused.value.reason in {"InvalidSpec", "NoPoolFits", "ModelDoesNotFit"}
    assert "maxReplicas" in str(refused.value)


def test_fleets_with_the_same_spec_share_one_plan_until_the_last_goes():
    spec = _spec()
    config = dict(spec.model.hf_config.inline)
    cache = PlanCache()

    async def plans() -> list:
        return list(await asyncio.gather(*(cache.plan_with_curves(u, spec, config) for u in "abc")))

    first, second, third = asyncio.run(plans())
    assert first[0] is second[0] is third[0]  # planned once, though asked at once
    for uid in "ab":
        cache.forget(uid)
    assert asyncio.run(cache.plan_with_curves("c", spec, config))[0] is first[0]
    cache.forget("c")
    assert asyncio.run(cache.plan_with_curves("d", spec, config))[0] is not first[0]
