"""The operator's RBAC rules cover every call the kube adapter and Kopf make, and no more."""

from __future__ import annotations

from controllers.api.v1alpha1 import GROUP, PLURAL
from controllers.reconcile.rbac import (
    POD_ACCESS_VALUE,
    READABLE_SECRETS_VALUE,
    RULES,
    cluster_role_rules,
    optional_rules,
)


def _allowed(group: str, resource: str, verb: str) -> bool:
    return any(
        group in rule.api_groups and resource in rule.resources and verb in rule.verbs
        for rule in RULES
    )


def test_rules_cover_the_adapter_and_kopf():
    needed = [
        (GROUP, PLURAL, "watch"),  # Kopf
        (GROUP, PLURAL, "patch"),  # Kopf's finalizer and last-handled annotation
        (GROUP, f"{PLURAL}/status", "patch"),  # Kube.patch_status
        ("apps", "deployments", "patch"),  # Kube.apply
        ("apps", "deployments", "create"),  # server-side apply of an absent object
        ("apps", "deployments", "list"),  # Kopf's index of owned Deployments (list, then watch)
        ("apps", "deployments", "watch"),
        ("apps", "deployments", "delete"),  # pruning
        ("", "services", "patch"),
        ("", "services", "list"),  # Kopf's index of owned Services
        ("", "services", "watch"),
        ("policy", "poddisruptionbudgets", "patch"),
        ("policy", "poddisruptionbudgets", "list"),  # Kopf's index of owned PDBs
        ("policy", "poddisruptionbudgets", "watch"),
        ("", "configmaps", "get"),  # hfConfig.configMapRef
        ("", "configmaps", "list"),  # Kopf's index of labelled calibration ConfigMaps
        ("", "configmaps", "watch"),
        ("", "events", "create"),  # Kube.post_event
        ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
    ]
    missing = [need for need in needed if not _allowed(*need)]
    assert not missing


def test_nothing_broader_than_needed():
    for rule in RULES:
        assert "*" not in rule.api_groups + rule.resources + rule.verbs
        assert rule.why
    assert not _allowed("", "configmaps", "create")
    # One named Secret (spec.model.hub.tokenSecretRef) is read; Secrets are never listed.
    assert not _allowed("", "secrets", "list") and not _allowed("", "secrets", "watch")
    # Owned objects come from the watch cache: no GET per object per pass.
    assert not _allowed("apps", "deployments", "get")


def test_the_default_grant_holds_no_pods_and_no_secrets():
    resources = {r for rule in cluster_role_rules() for r in rule["resources"]}
    assert not {"pods", "secrets"} & resources
    assert optional_rules() == {
        POD_ACCESS_VALUE: [{"apiGroups": [""], "resources": ["pods"],
                            "verbs": ["list", "watch", "patch"]}],
        READABLE_SECRETS_VALUE: [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}],
    }  # fmt: skip


def test_manifest_form():
    rules = cluster_role_rules()
    assert rules[0] == {"apiGroups": [GROUP], "resources": [PLURAL],
                        "verbs": ["get", "list", "watch", "patch"]}  # fmt: skip
    assert all(set(r) == {"apiGroups", "resources", "verbs"} for r in rules)
