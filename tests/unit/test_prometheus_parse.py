"""The Prometheus adapter's parsing is total: any reply shape gives values, missing or an error."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controllers.adapters.allow_list import host_allowed
from controllers.adapters.prometheus import (
    FAMILIES,
    MAX_PLAUSIBLE,
    TAG,
    _build,
    _split,
)
from controllers.adapters.prometheus_http import (
    QUERY_PATH,
    QUERY_RANGE_PATH,
    PrometheusError,
    _result,
)
from controllers.adapters.prometheus_reader import PrometheusReader
from controllers.policy.monitoring.snapshot import metrics_condition
from controllers.reconcile.runtime import PROMETHEUS_ALLOWED_HOSTS_ENV, Watcher
from tests.fuzz import fuzz_settings, tally

NOW_S = 1_000_000.0
TAGS = [f"pool/{f.name}" for f in FAMILIES if not f.fleet_wide] + [
    f"age:pool/{f.age_series}" for f in FAMILIES
]
_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["NaN", "+Inf", "-Inf", "1e400", "-1", "0", "3.5", "", "x", "1e308"]),
    st.text(max_size=8),
)
_json = st.recursive(
    _scalar,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
_labels = st.fixed_dictionaries(
    {},
    optional={
        TAG: st.sampled_from(TAGS) | _scalar,
        "namespace": st.just("llm") | _scalar,
        "fleet": st.just("chat") | _scalar,
        "pool": st.just("h100") | _scalar,
    },
)
_row = st.one_of(
    _json,
    st.fixed_dictionaries(
        {"metric": _labels | _json, "value": st.tuples(_scalar, _scalar).map(list) | _json}
    ),
)


def _complete() -> list[dict]:
    """A reply with every pool family and its age: fresh, as a healthy Prometheus sends it."""
    rows = [_row_for(f"age:pool/{f.age_series}", str(NOW_S)) for f in FAMILIES]
    return rows + [_row_for(f"pool/{f.name}", "1") for f in FAMILIES if not f.fleet_wide]


@st.composite
def _reply_rows(draw: st.DrawFn) -> list:
    """A healthy reply with some rows replaced by junk, and junk rows added."""
    rows: list = _complete() if draw(st.booleans()) else []
    for _ in range(draw(st.integers(min_value=0, max_value=4))):
        if rows:
            rows[draw(st.integers(min_value=0, max_value=len(rows) - 1))] = draw(_row)
    return rows + draw(st.lists(_row, max_size=6))


@fuzz_settings
@given(rows=_reply_rows())
def test_any_rows_parse_into_plausible_values_or_nothing(rows):
    values, ages, fleets = _split(rows, NOW_S)
    for value in values.values():
        assert math.isfinite(value) and 0.0 <= value <= MAX_PLAUSIBLE
    for age in ages.values():
        assert math.isfinite(age) and age >= 0.0
    for key in fleets:
        assert all(isinstance(part, str) for part in key)
    snap = _build(("llm", "chat"), values, ages, ["h100"], NOW_S, 90.0)
    status, reason, _ = metrics_condition(snap, ["h100"])
    assert status in ("True", "False") and reason
    tally("prometheus rows", reason)


def _reply(rows: object, status: str = "success", result_type: str = "vector") -> bytes:
    return json.dumps(
        {"status": status, "data": {"resultType": result_type, "result": rows}}
    ).encode()


def _row_for(tag: str, value: str) -> dict:
    labels = {"namespace": "llm", "fleet": "chat", "pool": "h100", TAG: tag}
    return {"metric": labels, "value": [NOW_S, value]}


@pytest.mark.parametrize("bad", ["NaN", "+Inf", "-Inf", "1e400", "-3", "1e300", "many"])
def test_a_required_series_with_an_unusable_value_counts_as_missing(bad):
    rows = [_row_for(f"age:pool/{f.age_series}", str(NOW_S)) for f in FAMILIES]
    rows += [_row_for(f"pool/{f.name}", "1") for f in FAMILIES if not f.fleet_wide]
    rows = [r for r in rows if r["metric"][TAG] != "pool/request_rate_rps"]
    rows.append(_row_for("pool/request_rate_rps", bad))
    values, ages, _ = _split(rows, NOW_S)
    snap = _build(("llm", "chat"), values, ages, ["h100"], NOW_S, 90.0)
    status, reason, message = metrics_condition(snap, ["h100"])
    # Unknown, not zero: the scaler never reads a broken rate as no traffic.
    assert (status, reason) == ("False", "MetricsMissing") and "request_rate_rps" in message
    assert snap.pool("h100").request_rate_rps is None


def test_rows_without_the_tag_label_are_ignored_not_fatal():
    rows = [{"metric": {"fleet": "chat"}, "value": [NOW_S, "1"]}, {"value": [1, "2"]}, 7, None]
    assert _split(rows, NOW_S) == ({}, {}, set())


_ENVELOPES = [
    (b"not json", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (json.dumps({"status": "error", "errorType": "bad_data", "error": "SECRET"}).encode(),
     "(bad_data)"),
    (json.dumps({"status": "success", "data": []}).encode(), "no data object"),
    (_reply({"a": 1}), "no result list"),
    (_reply([], result_type="matrix"), "not a vector"),
    (json.dumps({"status": "error", "errorType": "SECRET-type"}).encode(), "status 'success'"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "says"), _ENVELOPES)
def test_an_envelope_of_another_shape_is_a_short_error_without_the_body(body, says):
    with pytest.raises(PrometheusError) as err:
        _result(QUERY_PATH, 200, body)
    assert says in str(err.value) and "SECRET" not in str(err.value)
    assert err.value.reason == "PrometheusReplyInvalid"


@pytest.mark.parametrize(("status", "reason"), [(400, "PrometheusReplyInvalid"),
                                                (302, "PrometheusReplyInvalid"),
                                                (503, "PrometheusUnreachable")])  # fmt: skip
def test_http_errors_name_the_status_code_only(status, reason):
    with pytest.raises(PrometheusError) as err:
        _result(QUERY_RANGE_PATH, status, b"<html>internal admin page: SECRET</html>")
    assert f"HTTP {status}" in str(err.value) and "SECRET" not in str(err.value)
    assert err.value.reason == reason


@fuzz_settings
@given(
    body=st.binary(max_size=64)
    | _json.map(lambda v: json.dumps(v).encode())
    | st.lists(_row, max_size=4).map(_reply)
)
def test_any_body_is_a_result_list_or_a_prometheus_error(body):
    try:
        result = _result(QUERY_PATH, 200, body)
    except PrometheusError as err:
        assert len(str(err)) < 120
        tally("prometheus replies", err.reason)
    else:
        assert isinstance(result, list)
        tally("prometheus replies", "result list")


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://prometheus.monitoring.svc:9090", True),
        ("http://thanos.monitoring.svc.cluster.local", True),
        ("http://PROMETHEUS.MONITORING.SVC.", True),
        ("http://metadata.google.internal", False),
        ("http://169.254.169.254/latest", False),
        ("http://evil.monitoring.svc.attacker.example", False),
    ],
)
def test_the_host_allow_list(url, allowed):
    patterns = ("*.monitoring.svc", "*.monitoring.svc.cluster.local")
    assert host_allowed(url, patterns) is allowed
    assert host_allowed(url, None) is True  # not configured: every host
    assert host_allowed(url, ()) is False  # configured empty: none


@pytest.mark.parametrize(
    ("env", "hosts"),
    [
        (None, None),
        ("", ()),
        (" *.monitoring.svc , thanos.example.com,", ("*.monitoring.svc", "thanos.example.com")),
    ],
)
def test_the_operator_reads_its_allow_list_from_the_environment(monkeypatch, env, hosts):
    monkeypatch.delenv(PROMETHEUS_ALLOWED_HOSTS_ENV, raising=False)
    if env is not None:
        monkeypatch.setenv(PROMETHEUS_ALLOWED_HOSTS_ENV, env)
    reader = Watcher.from_environment().prometheus
    assert isinstance(reader, PrometheusReader) and reader.allowed_hosts == hosts
