"""Fields the operator depends on are checked at admission, with the field and the reason."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from controllers.api.v1alpha1 import (
    ForecasterName,
    InferenceFleet,
    describe_validation_error,
)
from controllers.policy.scaling.forecast import FORECASTERS
from tests.conftest import REPO

EXAMPLE = yaml.safe_load((REPO / "examples" / "fleet-code-8b.yaml").read_text())


def _fleet(edit: dict[str, Any], *path: str) -> dict[str, Any]:
    doc = copy.deepcopy(EXAMPLE)
    node = doc
    for key in path:
        node = node.setdefault(key, {})
    node.update(edit)
    return doc


def _refusal(doc: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        InferenceFleet.model_validate(doc)
    return describe_validation_error(caught.value)


@pytest.mark.parametrize("interval", ["0s", "10ms", "999ms", "2h"])
def test_interval_outside_one_second_to_an_hour_is_refused(interval: str) -> None:
    message = _refusal(_fleet({"interval": interval}, "spec", "scaling"))
    assert message.startswith("spec.scaling.interval:")
    assert "between 1s and 60m" in message


@pytest.mark.parametrize("interval", ["1s", "30s", "1h"])
def test_interval_inside_the_bounds_is_kept(interval: str) -> None:
    fleet = InferenceFleet.model_validate(_fleet({"interval": interval}, "spec", "scaling"))
    assert fleet.spec.scaling.interval == interval


@pytest.mark.parametrize(
    ("cron", "why"),
    [
        ("99 * * * *", "not a 5-field cron"),
        ("0 8 * * 1-5 2030", "not a 5-field cron"),
        ("*/0 * * * *", "not a 5-field cron"),
        ("0 0 31 2 *", "never fires"),
    ],
)
def test_cron_is_parsed_at_admission(cron: str, why: str) -> None:
    schedule = {"cron": cron, "minReplicas": 2}
    message = _refusal(_fleet({"schedules": [schedule]}, "spec", "scaling"))
    assert message.startswith("spec.scaling.schedules.0.cron:")
    assert why in message


def test_misspelled_forecaster_lists_the_choices() -> None:
    message = _refusal(_fleet({"forecaster": "seasnal"}, "spec", "scaling"))
    assert message.startswith("spec.scaling.forecaster:")
    assert "'seasonal'" in message and "'holt-winters'" in message


def test_forecaster_enum_is_the_registry() -> None:
    assert set(ForecasterName.__args__) == set(FORECASTERS)


def test_derived_object_name_over_63_characters_is_shown() -> None:
    doc = _fleet({"name": "a" * 40}, "metadata")
    doc["spec"]["pools"][0]["name"] = "p" * 23
    message = _refusal(doc)
    derived = "a" * 40 + "-" + "p" * 23
    assert f"'{derived}' (64 characters)" in message
    assert f"'{'a' * 40}-l4'" not in message  # the pool that fits is not blamed


@pytest.mark.parametrize("name", ["1fleet", "my.fleet"])
def test_fleet_name_must_start_a_service_name(name: str) -> None:
    message = _refusal(_fleet({"name": name}, "metadata"))
    assert "DNS-1035" in message and f"'{name}-l40s'" in message


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "gopher://prometheus:9090",
        "http://user:secret@prometheus:9090",
        "http://prometheus:99999",
        "http://prometheus:9090/?q=1",
        "http:///api",
        "prometheus:9090",
    ],
)
def test_prometheus_url_must_be_a_plain_http_base(url: str) -> None:
    message = _refusal(_fleet({"prometheusURL": url}, "spec", "monitoring"))
    assert message.startswith("spec.monitoring.prometheusURL:")


@pytest.mark.parametrize(
    "url", ["http://prometheus.monitoring.svc:9090", "https://prom.example.com/prometheus"]
)
def test_prometheus_http_and_https_urls_are_kept(url: str) -> None:
    fleet = InferenceFleet.model_validate(_fleet({"prometheusURL": url}, "spec", "monitoring"))
    assert fleet.spec.monitoring.prometheus_url == url


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("averageRequestsPerSecond", "0"),
        ("peakRequestsPerSecond", "0"),
        ("peakRequestsPerSecond", "1" + "0" * 400),
        ("usableRPSPerReplica", "0.000"),
    ],
)
def test_rates_must_be_positive_and_bounded(field: str, value: str) -> None:
    message = _refusal(_fleet({field: value}, "spec", "workload"))
    assert message.startswith(f"spec.workload.{field}:")


def test_parameter_count_must_be_finite() -> None:
    message = _refusal(_fleet({"parameterCount": "1" + "0" * 400}, "spec", "model"))
    assert message.startswith("spec.model.parameterCount:")
