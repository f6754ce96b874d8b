"""metav1.Condition bookkeeping for status.conditions, generic over condition types.

Pure: the caller passes `now`. The rule that matters is Kubernetes': lastTransitionTime moves only
when a condition's status changes, so a resync that learns nothing new writes nothing new.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Literal

from controllers.api.engine_args import redact
from controllers.api.v1alpha1 import Condition

Status = Literal["True", "False", "Unknown"]

SIZED = "Sized"
READY = "Ready"
METRICS_AVAILABLE = "MetricsAvailable"
RESIZE_RECOMMENDED = "ResizeRecommended"
DEGRADED = "Degraded"


def timestamp(now_s: float) -> str:
    """RFC 3339 in UTC with seconds precision, as the API server writes times."""
    return datetime.fromtimestamp(now_s, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def find(conditions: Sequence[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)


def is_true(conditions: Sequence[Condition], type_: str) -> bool:
    found = find(conditions, type_)
    return found is not None and found.status == "True"


def set_condition(
    conditions: Sequence[Condition],
    type_: str,
    status: Status,
    reason: str,
    message: str,
    *,
    generation: int | None,
    now_s: float,
) -> list[Condition]:
    """The list with `type_` set; other conditions and their order are kept. A secret flag's
    value in the message (an exception may quote the spec) is redacted."""
    old = find(conditions, type_)
    since = (
        old.last_transition_time if old is not None and old.status == status else timestamp(now_s)
    )
    new = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=redact(message),
        last_transition_time=since,
        observed_generation=generation,
    )
    if old is None:
        return [*conditions, new]
    return [new if c.type == type_ else c for c in conditions]
