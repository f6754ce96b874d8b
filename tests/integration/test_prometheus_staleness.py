"""Old or vanished series are reported as stale or missing, never as zero."""

from __future__ import annotations

import time

from controllers.adapters.prometheus import QueryWindows, fetch_snapshot, make_client
from controllers.policy.monitoring.snapshot import MetricsSnapshot, metrics_condition
from inferfleet_testing.kube.harness import wait_for
from inferfleet_testing.prometheus import (
    PrometheusServer,
    Target,
    VllmLoad,
    backfill_openmetrics,
    prometheus_server,  # noqa: F401 - a fixture, used by name below
    requires_prometheus,
    serve_pods,
    vllm_pod,
)

pytestmark = requires_prometheus

LABELS = 'namespace="llm",fleet="chat",pool="h100",pod="a"'
GAUGES = {
    "vllm:num_requests_running": 3,
    "vllm:num_requests_waiting": 0,
    "vllm:kv_cache_usage_perc": 0.5,
}


def _old_gauges(end_s: int) -> str:
    """Gauges, and the request counter at 2 req/s, sampled every 15 s for 10 minutes, the last
    one at `end_s`."""
    lines = []
    times = range(end_s - 600, end_s + 1, 15)
    for name, value in GAUGES.items():
        lines.append(f"# TYPE {name} gauge")
        lines += [f"{name}{{{LABELS}}} {value} {t}" for t in times]
    lines.append("# TYPE vllm:request_success counter")
    lines += [f"vllm:request_success_total{{{LABELS}}} {2 * (t - times[0])} {t}" for t in times]
    return "\n".join(lines) + "\n# EOF\n"


def test_samples_older_than_max_age_are_stale(tmp_path):
    now_s = int(time.time())
    data_dir = tmp_path / "tsdb"
    backfill_openmetrics(_old_gauges(now_s - 120), data_dir)  # inside the 5 m lookback
    prom = PrometheusServer(data_dir=data_dir).start()
    try:
        snap = fetch_snapshot(
            make_client(prom.url), "llm", "chat", ["h100"], now_s=now_s, windows=QueryWindows()
        )
    finally:
        prom.close()
    assert "h100/requests_running" in snap.stale
    assert snap.pool("h100").requests_running is None
    status, reason, message = metrics_condition(snap, ["h100"])
    assert (status, reason) == ("False", "MetricsStale")
    assert "h100/kv_cache_usage_ratio" in message
    # A wider tolerance accepts the same data, and reports its true age.
    prom = PrometheusServer(data_dir=data_dir).start()
    try:
        lenient = fetch_snapshot(
            make_client(prom.url),
            "llm",
            "chat",
            ["h100"],
            now_s=now_s,
            windows=QueryWindows(max_age_s=300.0),
        )
    finally:
        prom.close()
    running = lenient.pool("h100").requests_running
    assert running.value == 3 and running.age_s == 120.0


def test_a_target_that_goes_away_turns_missing_not_zero(prometheus_server):  # noqa: F811
    server = serve_pods([vllm_pod({}, VllmLoad())])
    labels = {"namespace": "llm", "fleet": "chat", "pool": "h100", "pod": "a"}
    try:
        prom = prometheus_server([Target(server.address, labels)])
        client = make_client(prom.url)
        assert (
            fetch_snapshot(client, "llm", "chat", ["h100"]).pool("h100").requests_running.value == 8
        )
        server.close()  # the pod dies; Prometheus marks its series stale at the next scrape
        prom.wait_for_series('up{job="target-0"} == 0')

        def vanished() -> MetricsSnapshot | None:  # read as zero instead, it times out
            snap = fetch_snapshot(client, "llm", "chat", ["h100"])
            return snap if snap.pool("h100").requests_running is None else None

        gone = wait_for(vanished, "the series to turn missing")
        assert metrics_condition(gone, ["h100"])[:2] == ("False", "MetricsMissing")
    finally:
        server.close()  # again, if the test failed before it went away: a no-op otherwise
