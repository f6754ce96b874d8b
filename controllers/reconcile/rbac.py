"""The exact Kubernetes permissions the operator uses: one list the Helm chart renders.

Each rule names why it is needed, so a reviewer can match it to a call in
`controllers.adapters.kube` or to what Kopf itself does. Keep this in step with the adapter: a call
without a rule fails with 403 in a real cluster.
"""

from __future__ import annotations

from dataclasses import dataclass

from controllers.api.v1alpha1 import GROUP, PLURAL


@dataclass(frozen=True)
class Rule:
    api_groups: tuple[str, ...]
    resources: tuple[str, ...]
    verbs: tuple[str, ...]
    why: str

    def as_manifest(self) -> dict[str, list[str]]:
        """The rule as it appears in a ClusterRole's `rules` list."""
        return {
            "apiGroups": list(self.api_groups),
            "resources": list(self.resources),
            "verbs": list(self.verbs),
        }


RULES: tuple[Rule, ...] = (
    Rule(
        (GROUP,),
        (PLURAL,),
        ("get", "list", "watch", "patch"),
        "Kopf watches fleets and records its handler state in annotations.",
    ),
    Rule((GROUP,), (f"{PLURAL}/status",), ("get", "patch"), "The operator writes fleet status."),
    Rule(
        ("apps",),
        ("deployments",),
        ("list", "watch", "create", "patch", "delete"),
        "vLLM replicas per pool: watched into the operator's cache (to compare, and to see hand "
        "edits), server-side apply (a patch that creates when absent, so both verbs), prune "
        "pools the plan dropped.",
    ),
    Rule(
        ("",),
        ("services",),
        ("list", "watch", "create", "patch", "delete"),
        "One Service per pool in front of its replicas, watched into the operator's cache.",
    ),
    Rule(
        ("policy",),
        ("poddisruptionbudgets",),
        ("list", "watch", "create", "patch", "delete"),
        "One PodDisruptionBudget per pool (the plan's N+1 spare), watched into the cache.",
    ),
    Rule(
        ("keda.sh",),
        ("scaledobjects",),
        ("get", "create", "patch"),
        "scaling.mode keda: one ScaledObject per pool carrying the forecast floor.",
    ),
    Rule(
        ("",),
        ("pods",),
        ("list", "watch", "patch"),
        "The fleet's vLLM pods, watched into the cache: replicas Pending past the deadline and "
        "the scheduler's reason; a scale-down marks the least loaded with pod-deletion-cost.",
    ),
    Rule(
        ("",),
        ("configmaps",),
        ("get", "list", "watch"),
        "spec.model.hfConfig.configMapRef (read), and calibration ConfigMaps labelled "
        "inferfleet.io/calibration, watched into the cache (spec.calibration.configMapRef).",
    ),
    Rule(("",), ("secrets",), ("get",), "spec.model.hub.tokenSecretRef: a Hub access token."),
    Rule(
        ("", "events.k8s.io"),
        ("events",),
        ("create", "patch"),
        "An Event for every change and every rejected spec (Kopf posts some too).",
    ),
    Rule(
        ("apiextensions.k8s.io",),
        ("customresourcedefinitions",),
        ("list", "watch"),
        "Kopf scans CRDs to learn which resources exist.",
    ),
    Rule(
        ("",),
        ("namespaces",),
        ("list", "watch"),
        "Kopf serves fleets in all namespaces and follows namespaces as they come and go.",
    ),
)


def cluster_role_rules() -> list[dict[str, list[str]]]:
    """The rules list for the operator's ClusterRole."""
    return [rule.as_manifest() for rule in RULES]
