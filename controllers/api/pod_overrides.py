"""What a fleet may change in the vLLM pods the operator renders: CPU/memory/disk and the user.

The plan derives requests and limits, and the pod runs non-root on a read-only root with every
capability dropped. An image may need another user, or a model more host memory than the
estimate: `pools[].resources` and `model.securityContext` override those, key by key. GPUs stay
the plan's (the layout is sized for them). Settings that give the pod privileges (root,
`privileged`, privilege escalation, added capabilities) are named by `escalations`; the
operator refuses them unless its chart allows privileged vLLM pods, because the operator, not
the fleet's author, is the one creating the pods.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"
_QUANTITY = re.compile(QUANTITY_PATTERN)
_SUFFIX = {
    "": 1.0,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
    "Pi": 2.0**50,
    "Ei": 2.0**60,
}
# Largest value accepted, in base units (cores or bytes): far above any node, so a typo such as
# "64Ei" is an error here, not a pod that never schedules.
MAX_QUANTITY = 2.0**50


def quantity_value(text: str) -> float:
    """A Kubernetes quantity ('1500m', '64Gi', '2') in base units."""
    found = _QUANTITY.fullmatch(text)
    if found is None:
        raise ValueError(f"{text!r} is not a quantity; write e.g. '8', '1500m', '64Gi'")
    number = text[: len(text) - len(found.group(2) or "")]
    return float(number) * _SUFFIX[found.group(2) or ""]


def _check_quantity(text: str) -> str:
    if not 0 < quantity_value(text) <= MAX_QUANTITY:
        raise ValueError(f"{text!r} must be above zero and at most 1Pi")
    return text


Quantity = Annotated[
    str, AfterValidator(_check_quantity), Field(json_schema_extra={"pattern": QUANTITY_PATTERN})
]
ResourceName = Literal["cpu", "memory", "ephemeral-storage"]


class _Override(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class ResourceOverrides(_Override):
    """CPU, memory and ephemeral storage for the vLLM container; GPUs are the plan's."""

    requests: dict[ResourceName, Quantity] = Field(
        default_factory=dict, description="Replace the derived requests of these resources."
    )
    limits: dict[ResourceName, Quantity] = Field(
        default_factory=dict, description="Replace the derived limits of these resources."
    )

    @model_validator(mode="after")
    def _requests_within_limits(self) -> ResourceOverrides:
        for name, request in self.requests.items():
            limit = self.limits.get(name)
            if limit is not None and quantity_value(request) > quantity_value(limit):
                raise ValueError(f"requests.{name} {request} is above limits.{name} {limit}")
        return self


class Capabilities(_Override):
    add: list[Annotated[str, Field(pattern=r"^[A-Z_]{2,32}$")]] = Field(
        default_factory=list,
        max_length=16,
        description="Capabilities to add back (all are dropped otherwise).",
    )


Id = Annotated[int, Field(ge=0, le=2**31 - 1)]


class SecurityOverrides(_Override):
    """The user and filesystem the vLLM image needs; privileges only where the chart allows."""

    run_as_user: Id | None = Field(default=None, description="UID (default 1000); 0 is root.")
    run_as_group: Id | None = Field(default=None, description="GID (default 1000).")
    fs_group: Id | None = Field(default=None, description="Group owning the volumes.")
    read_only_root_filesystem: bool | None = Field(
        default=None,
        description="false: a writable root filesystem (default true; writes go to emptyDirs).",
    )
    privileged: bool | None = None
    allow_privilege_escalation: bool | None = None
    capabilities: Capabilities | None = None

    def escalations(self) -> tuple[str, ...]:
        """The fields (paths under spec.model.securityContext) that give the pod privileges."""
        found = [
            name
            for name, value in (
                ("runAsUser", self.run_as_user),
                ("runAsGroup", self.run_as_group),
                ("fsGroup", self.fs_group),
            )
            if value == 0
        ]
        if self.privileged:
            found.append("privileged")
        if self.allow_privilege_escalation:
            found.append("allowPrivilegeEscalation")
        if self.capabilities is not None and self.capabilities.add:
            found.append("capabilities.add")
        return tuple(found)
