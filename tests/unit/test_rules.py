"""The alert rules: promtool checks and unit tests, and consistency with docs and policy."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from controllers.policy.monitoring.thresholds import Thresholds
from tests.conftest import REPO

RULES = REPO / "charts" / "inferfleet" / "files" / "prometheus-rules.yaml"
PROMTOOL_TESTS = REPO / "tests" / "promtool" / "rules_test.yaml"
DOCS = REPO / "docs" / "monitoring.md"
REQUIRED = {
    "InferenceFleetResizeRecommended",
    "InferenceFleetTTFTAboveSLO",
    "InferenceFleetKVCacheSaturated",
    "InferenceFleetPreemptionsHigh",
    "InferenceFleetUtilizationTrap",
    "InferenceFleetNoHeadroom",
    "InferenceFleetMetricsMissing",
    "InferenceFleetForecastWorseThanReactive",
}
promtool = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    promtool is None, reason="promtool not installed; run `bash scripts/install-tools.sh`"
)


def _alerts() -> dict[str, dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {r["alert"]: r for g in groups for r in g["rules"] if "alert" in r}


@needs_promtool
def test_promtool_accepts_the_rules():
    result = subprocess.run(
        [promtool, "check", "rules", str(RULES)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_unit_tests_pass():
    result = subprocess.run(
        [promtool, "test", "rules", str(PROMTOOL_TESTS)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_documented_and_tested():
    alerts = _alerts()
    assert set(alerts) >= REQUIRED
    docs = DOCS.read_text()
    anchors = {h.strip().lower() for h in re.findall(r"^### (\w+)$", docs, flags=re.M)}
    tested = set(re.findall(r"alertname: (\w+)", PROMTOOL_TESTS.read_text()))
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}, name
        assert {"summary", "description", "runbook_url"} <= set(rule["annotations"]), name
        assert rule["annotations"]["runbook_url"].endswith(f"docs/monitoring.md#{name.lower()}")
        assert name.lower() in anchors, f"docs/monitoring.md has no '### {name}' runbook"
        assert name in tested, f"{name} has no promtool test"


@pytest.mark.parametrize(
    ("alert", "field", "scale"),
    [
        ("InferenceFleetKVCacheSaturated", "kv_cache_high_percent", 100),
        ("InferenceFleetPreemptionsHigh", "preemption_warning_percent", 100),
        ("InferenceFleetUtilizationTrap", "fleet_utilization_trap_percent", 100),
        ("InferenceFleetNoHeadroom", "fleet_utilization_no_headroom_percent", 100),
    ],
)
def test_rule_thresholds_match_the_policy_defaults(alert, field, scale):
    """The alerts and the operator's findings must not disagree on the guide's numbers."""
    threshold = float(re.search(r"[<>] *([0-9.]+)\s*$", _alerts()[alert]["expr"].strip())[1])
    assert threshold * scale == pytest.approx(getattr(Thresholds(), field))
