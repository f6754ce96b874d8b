"""The local harness end to end, short: operator, KMock API, emulator pods, Prometheus, load.

One scenario (about half a minute): apply a small fleet, see it sized, its Deployment run as
emulator processes until Ready, replay a slice of the dev trace, and find the requests both
in the driver's count and in Prometheus under the fleet's labels.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from e2e.local import demo
from e2e.local.harness import LocalHarness
from e2e.local.load import Demand, LoadDriver, ReplayConfig
from e2e.local.timeline import EventLog, take_sample
from inferfleet.traces import read_per_minute
from inferfleet_testing.kube.harness import wait_for
from inferfleet_testing.prometheus import requires_prometheus
from sizing.workload import Percentiles
from tests.conftest import REPO

pytestmark = [requires_prometheus, pytest.mark.timeout(120)]

TRACE = REPO / "examples" / "traces" / "servegen_m_small.day0.per_minute.csv"
SPEEDUP = 4.0
COMPRESSION = 480.0  # a day in 3 minutes, as the demo runs it
NAMESPACE, NAME = "llm", "code-8b"


def small_fleet() -> dict[str, Any]:
    docs = yaml.safe_load_all((REPO / "examples" / "fleet-code-8b.yaml").read_text())
    fleet = copy.deepcopy(next(d for d in docs if d and d.get("kind") == "InferenceFleet"))
    fleet["spec"]["workload"]["peakRequestsPerSecond"] = "2"  # few replicas: cheap processes
    fleet["spec"]["scaling"]["interval"] = "1s"
    return fleet


def condition(harness: LocalHarness, type_: str) -> dict[str, Any] | None:
    fleet = harness.fleet(NAMESPACE, NAME) or {}
    return next(
        (c for c in (fleet.get("status") or {}).get("conditions", []) if c["type"] == type_),
        None,
    )


def is_true(harness: LocalHarness, type_: str) -> bool:
    found = condition(harness, type_)
    return found is not None and found["status"] == "True"


def scalar(harness: LocalHarness, promql: str) -> float:
    result = harness.prometheus.query(promql)
    return float(result[0]["value"][1]) if result else 0.0


def test_fleet_is_sized_runs_as_pods_serves_load_and_is_scraped():
    with LocalHarness(speedup=SPEEDUP, time_compression=COMPRESSION) as harness:
        harness.apply_fleet(small_fleet())
        wait_for(lambda: is_true(harness, "Sized"), "Sized=True")
        wait_for(lambda: is_true(harness, "Ready"), "Ready=True (pods warm)", timeout_s=60)

        fleet = harness.fleet(NAMESPACE, NAME)
        assert fleet is not None
        plan = fleet["status"]["plan"]
        running = [p for p in plan["pools"] if p["replicas"] > 0]
        sample = take_sample(harness, NAMESPACE, NAME, minute=0)
        assert {p.pool for p in sample.pools} == {p["pool"] for p in running}
        for pool in sample.pools:
            assert pool.ready == pool.desired > 0
        assert fleet["status"]["replicas"]["ready"] == sample.desired
        pods = [p for p in harness.pods.pods() if not p.terminating]
        assert len(pods) == sample.desired
        assert all(p.process.poll() is None for p in pods)
        endpoints = harness.pods.endpoints(NAMESPACE, NAME)
        assert len(endpoints) == sample.desired

        # A 40-minute slice of the evening, 5 s of wall time.
        demand = Demand.from_trace(read_per_minute(str(TRACE)), 2.0, first_minute=1200, minutes=40)
        config = ReplayConfig(
            model=fleet["spec"]["model"]["name"],
            prompt=Percentiles(1500, 7000, 7400),
            output=Percentiles(20, 100, 250),
            max_model_len=8192,
            ttft_slo_s=1.5,
            speedup=SPEEDUP,
            wall_s_per_minute=60 / COMPRESSION,
        )
        driver = LoadDriver(demand, config, lambda: harness.pods.endpoints(NAMESPACE, NAME))
        assert driver.start().join(60), "the replay did not finish"
        assert driver.error is None
        totals = driver.totals()
        assert totals.sent > 10
        assert totals.failed == 0, "a ready fleet refused or dropped requests"
        assert totals.ok == totals.sent
        assert max(driver.outstanding.values()) == 0
        assert len(driver.outstanding) >= min(2, len(endpoints)), "routing used one replica"

        labels = f'namespace="{NAMESPACE}",fleet="{NAME}",pool="{running[0]["pool"]}"'
        harness.prometheus.wait_for_series(f"vllm:num_requests_running{{{labels}}}")
        harness.prometheus.wait_for_series(f"DCGM_FI_DEV_GPU_UTIL{{{labels}}}")
        # Every request the driver saw succeed was counted by a replica and scraped.
        wait_for(
            lambda: scalar(harness, f"sum(vllm:request_success_total{{{labels}}})") == totals.ok,
            f"Prometheus to count {totals.ok} successful requests",
        )
        applied = [e for e in EventLog(NAMESPACE, NAME).poll(harness, 0) if e.reason == "Applied"]
        assert any(e.message.startswith("Applied Deployment") for e in applied)


def test_demo_runs_a_short_evening_end_to_end(tmp_path, capsys):
    """`make demo`'s entry point on two trace hours (15 s of wall time) with a prompt shift."""
    out = tmp_path / "report.png"
    argv = ["--minutes", "0.25", "--first-minute", "1140", "--trace-minutes", "120",
            "--scenario", "prompts-x3", "--shift-at", "20", "--peak-rps", "2", "--out", str(out),
            "--workdir", str(tmp_path / "work")]  # fmt: skip
    assert demo.main(argv) == 0
    printed = capsys.readouterr().out
    assert "Sized: " in printed and "replaying the day" in printed
    requests = next(line for line in printed.splitlines() if line.startswith("requests: "))
    sent, ok = (int(word) for word in requests.split()[1:5:2])
    assert sent == ok > 10
    assert "Applied Deployment code-8b-" in printed  # the Events timeline
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((tmp_path / "work" / "prompts-x3" / "pods").glob("*.log")), "no pod was started"
    assert (tmp_path / "work" / "prompts-x3" / "minutes.csv").read_text().startswith("minute,")
