"""The exact Kubernetes permissions the operator uses: one list the Helm chart renders.

Each rule names why it is needed, so a reviewer can match it to a call in
`controllers.adapters.kube` or to what Kopf itself does. Keep this in step with the adapter: a call
without a rule fails with 403 in a real cluster.

The default grants no access to Pods or Secrets. Two rules are granted only when a chart value
under `rbac` asks for them (`chart_value`): pod access (the scheduler's reason for a Pending
replica, and the scale-down order), and `get` on the Secrets named in a list (resourceNames),
for fleets whose Hub token the operator itself must read. The operator works without either.
"""

from __future__ import annotations

from dataclasses import dataclass

from controllers.api.v1alpha1 import GROUP, PLURAL

# The chart values (under `rbac`) that grant the optional rules.
POD_ACCESS_VALUE = "podAccess"
READABLE_SECRETS_VALUE = "hubTokenSecrets"


@dataclass(frozen=True)
class Rule:
    api_groups: tuple[str, ...]
    resources: tuple[str, ...]
    verbs: tuple[str, ...]
    why: str
    # The chart value under `rbac` that grants this rule; None: always granted. A boolean grants
    # it as written, a list of names grants it for those objects only (resourceNames).
    chart_value: str | None = None

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
        chart_value=POD_ACCESS_VALUE,
    ),
    Rule(
        ("",),
        ("configmaps",),
        ("get", "list", "watch"),
        "spec.model.hfConfig.configMapRef (read), and calibration ConfigMaps labelled "
        "inferfleet.io/calibration, watched into the cache (spec.calibration.configMapRef).",
    ),
    Rule(
        ("",),
        ("secrets",),
        ("get",),
        "spec.model.hub.tokenSecretRef: a Hub access token, for Secrets of the listed names only.",
        chart_value=READABLE_SECRETS_VALUE,
    ),
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
    """The rules every install grants (the ClusterRole with the chart's default values)."""
    return [rule.as_manifest() for rule in RULES if rule.chart_value is None]


def optional_rules() -> dict[str, list[dict[str, list[str]]]]:
    """The rules each chart value under `rbac` grants when it is set."""
    found: dict[str, list[dict[str, list[str]]]] = {}
    for rule in RULES:
        if rule.chart_value is not None:
            found.setdefault(rule.chart_value, []).append(rule.as_manifest())
    return found
