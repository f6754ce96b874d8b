"""A fleet's overrides of the vLLM container's resources and security context: validated, merged
key by key over what the plan derives, and privileges named so the operator can refuse them."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from controllers.api.pod_overrides import SecurityOverrides, quantity_value
from controllers.api.v1alpha1 import InferenceFleet, describe_validation_error
from controllers.policy.render import render_fleet
from tests.conftest import REPO
from tests.plans import fleet_plan, pool_plan


def _fleet(pool: dict | None = None, **model: object) -> InferenceFleet:
    raw = yaml.safe_load((REPO / "examples" / "fleet-chat-70b.yaml").read_text())
    raw["spec"]["model"].update(model)
    raw["spec"]["pools"][0].update(pool or {})
    return InferenceFleet.model_validate(raw)


def _pod(fleet: InferenceFleet) -> dict:
    plan = fleet_plan(pool_plan(pool=fleet.spec.pools[0].name, tensor_parallel=2))
    rendered = render_fleet("chat", "llm", fleet.spec, plan, {plan.pools[0].pool: 1})
    return rendered[0].deployment["spec"]["template"]["spec"]


def test_quantities_read_as_kubernetes_reads_them():
    assert quantity_value("1500m") == 1.5
    assert quantity_value("64Gi") == 64 * 2**30
    assert quantity_value("1G") == 1e9  # GB, not GiB
    with pytest.raises(ValueError, match="not a quantity"):
        quantity_value("64 GiB")


def test_resource_overrides_replace_the_derived_values_key_by_key():
    derived = _pod(_fleet())["containers"][0]["resources"]
    pod = _pod(_fleet({"resources": {"requests": {"memory": "96Gi"}, "limits": {"cpu": "32"}}}))
    resources = pod["containers"][0]["resources"]
    assert resources["requests"]["memory"] == "96Gi"
    assert resources["limits"]["memory"] == "96Gi"  # raised: a limit may not be under its request
    assert resources["limits"]["cpu"] == "32"
    assert resources["requests"]["cpu"] == derived["requests"]["cpu"]
    gpu = next(k for k in derived["limits"] if k not in ("cpu", "memory"))
    assert resources["limits"][gpu] == derived["limits"][gpu]  # GPUs stay the plan's


def test_a_limit_below_the_derived_request_brings_the_request_down():
    pod = _pod(_fleet({"resources": {"limits": {"cpu": "1"}}}))
    resources = pod["containers"][0]["resources"]
    assert resources["requests"]["cpu"] == resources["limits"]["cpu"] == "1"


@pytest.mark.parametrize(
    ("resources", "field"),
    [
        ({"requests": {"nvidia.com/gpu": "1"}}, "spec.pools.0.resources.requests"),
        ({"requests": {"cpu": "9"}, "limits": {"cpu": "8"}}, "spec.pools.0.resources"),
        ({"limits": {"memory": "64 GiB"}}, "spec.pools.0.resources.limits.memory"),
        ({"limits": {"memory": "0"}}, "spec.pools.0.resources.limits.memory"),
    ],
)
def test_bad_resource_overrides_are_refused_with_the_field_named(resources, field):
    with pytest.raises(ValidationError) as err:
        _fleet({"resources": resources})
    assert field in describe_validation_error(err.value, "")


def test_the_user_and_the_root_filesystem_can_change_without_privileges():
    security = {"runAsUser": 2000, "runAsGroup": 3000, "readOnlyRootFilesystem": False}
    fleet = _fleet(securityContext=security)
    assert fleet.spec.model.security_context is not None
    assert fleet.spec.model.security_context.escalations() == ()
    pod = _pod(fleet)
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsUser"] == 2000
    assert pod["securityContext"]["runAsGroup"] == pod["securityContext"]["fsGroup"] == 3000
    assert container["securityContext"]["readOnlyRootFilesystem"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["securityContext"]["privileged"] is False


def test_root_is_rendered_as_root_when_asked():
    pod = _pod(_fleet(securityContext={"runAsUser": 0}))
    assert pod["securityContext"]["runAsUser"] == 0
    assert pod["securityContext"]["runAsNonRoot"] is False
    assert pod["containers"][0]["securityContext"]["runAsNonRoot"] is False


@given(
    user=st.none() | st.integers(0, 3),
    privileged=st.none() | st.booleans(),
    escalation=st.none() | st.booleans(),
    added=st.lists(st.sampled_from(["NET_ADMIN", "SYS_PTRACE"]), max_size=2),
)
def test_every_privilege_is_named_and_nothing_else(user, privileged, escalation, added):
    security = SecurityOverrides.model_validate({
        "runAsUser": user, "privileged": privileged, "allowPrivilegeEscalation": escalation,
        "capabilities": {"add": added},
    })  # fmt: skip
    expected = (
        (["runAsUser"] if user == 0 else [])
        + (["privileged"] if privileged else [])
        + (["allowPrivilegeEscalation"] if escalation else [])
        + (["capabilities.add"] if added else [])
    )
    assert list(security.escalations()) == expected
