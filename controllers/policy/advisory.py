"""`scaling.mode: advisory`: decide exactly as predictive mode would, act on nothing.

The policy runs in full (forecast, warm spare, pre-warm schedule, SLO guard, spill-over) and
its answer goes to status, the operator's metrics and "would scale" Events; the Deployments keep
the replicas they have. The policy steps from what really runs, not from its own advice, so
switching to an acting mode continues from the cluster as it is, and switching back just stops
acting.
"""

from __future__ import annotations

from controllers.api.v1alpha1 import InferenceFleetSpec

ADVISORY = "advisory"
DECIDES_AS = "predictive"


def is_advisory(spec: InferenceFleetSpec) -> bool:
    return spec.scaling.mode == ADVISORY


def policy_spec(spec: InferenceFleetSpec) -> InferenceFleetSpec:
    """The spec the scaling policy decides with: advisory decides as predictive."""
    if not is_advisory(spec):
        return spec
    scaling = spec.scaling.model_copy(update={"mode": DECIDES_AS})
    return spec.model_copy(update={"scaling": scaling})
