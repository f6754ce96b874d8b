"""The chart's RBAC file is controllers.reconcile.rbac split by scope: no helm to catch drift."""

from __future__ import annotations

import yaml

from controllers.reconcile.rbac import RULES, cluster_role_rules, optional_rules
from tests.conftest import REPO

RULES_FILE = REPO / "charts" / "inferfleet" / "files" / "rbac-rules.yaml"
KUBERNETES_VERBS = {
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
}
CLUSTER_SCOPED = {"customresourcedefinitions", "namespaces"}


def chart_rules() -> dict[str, list[dict[str, list[str]]]]:
    return yaml.safe_load(RULES_FILE.read_text())


def test_chart_rules_are_the_operators_rules():
    rules = chart_rules()
    assert sorted(rules) == ["cluster", "namespaced", "optional"]
    merged = rules["namespaced"] + rules["cluster"]
    drifted = "charts/inferfleet/files/rbac-rules.yaml drifted; run `python scripts/sync_chart.py`"
    assert sorted(map(repr, merged)) == sorted(map(repr, cluster_role_rules())), drifted
    assert rules["optional"] == optional_rules(), drifted


def test_cluster_scoped_resources_are_never_in_a_namespaced_role():
    rules = chart_rules()
    for rule in rules["namespaced"] + [r for rs in rules["optional"].values() for r in rs]:
        assert not CLUSTER_SCOPED & set(rule["resources"]), rule
    for rule in rules["cluster"]:
        assert set(rule["resources"]) <= CLUSTER_SCOPED, rule


def test_every_rule_is_explained_and_uses_real_verbs():
    for rule in RULES:
        assert rule.why.strip()
        assert rule.verbs and set(rule.verbs) <= KUBERNETES_VERBS, rule
        assert "*" not in rule.resources and "*" not in rule.api_groups
