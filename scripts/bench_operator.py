"""Benchmark the operator: many fleets at once against the KMock API server and a real Prometheus.

Two measurements, because "how long until everything is sized" and "what one reconcile costs"
are different questions:

1. Burst: the real operator (`kopf run operator/main.py`, its own process) and N fleets created
   at once. Reports seconds until every fleet is `Sized=True`, the operator's CPU seconds per
   fleet over the burst, its resident memory then, and how many reconciles each fleet took
   (from the operator's own /metrics); then, over the next STEADY_S (resyncs only), its memory
   and the API requests and writes per reconcile as the API server logged them.
2. Per reconcile: `controllers.reconcile.handlers.reconcile` called for each fleet in turn,
   in-process, timing the CPU of the calling thread only (the API server runs in another thread,
   Prometheus in its own process). Planning runs in a worker thread, so these figures are the
   operator's own work around it (validate, render, compare, apply, status); the burst's CPU per
   fleet includes planning. Reports p50/p99 for the first pass (apply everything), a resync
   (cached plans, nothing changed) and a restart (plans recomputed), the API requests and writes
   per fleet of the resync as the API server logged them, and the Prometheus queries per fleet
   as Prometheus counted them (`prometheus_http_requests_total`).

Usage: .venv/bin/python scripts/bench_operator.py [--fleets 200] [--repeat 1] [--output json]
Targets (issue 13), at 1,000 fleets: p99 of a steady resync under 100 ms of operator time;
operator RSS under 250 MiB; at most 1 API write per reconcile at steady state (0 when nothing
changed); 1 Prometheus query per reconcile.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from controllers.api.v1alpha1 import API_VERSION  # noqa: E402
from inferfleet_testing.kube.harness import Cluster, wait_for  # noqa: E402
from inferfleet_testing.prometheus import PROMETHEUS, PrometheusServer, free_port  # noqa: E402

PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
TICKS_PER_S = os.sysconf("SC_CLK_TCK")
QUERY_HANDLERS = ("/api/v1/query", "/api/v1/query_range")
# After the burst the operator is watched for this long: more than one resync interval of the
# examples (30 s), so every fleet resyncs at least once at its phase of it.
STEADY_S = 40.0
QUIET_S = 10.0  # the burst is over when the operator has written nothing for this long
# The headline figures, in the order the table shows them.
HEADLINE = (
    "fleets",
    "p50_reconcile_ms",
    "p99_reconcile_ms",
    "rss_mib",
    "api_calls_per_reconcile",
    "api_writes_per_resync",
    "prometheus_queries_per_reconcile",
    "all_sized_s",
)


def fleets(count: int, prometheus_url: str | None) -> list[dict[str, Any]]:
    """`count` fleets cycling through the examples, each in its own name, all watched by the
    bench's Prometheus (an example's own prometheusURL points into a cluster)."""
    examples = []
    for path in sorted((REPO / "examples").glob("*.yaml")):
        docs = yaml.safe_load_all(path.read_text())
        examples += [d for d in docs if d and d.get("kind") == "InferenceFleet"]
    out = []
    for i in range(count):
        fleet = copy.deepcopy(examples[i % len(examples)])
        fleet["metadata"] = {"name": f"bench-{i:04d}", "namespace": "bench"}
        fleet["spec"].get("monitoring", {}).pop("prometheusURL", None)
        if prometheus_url:
            fleet["spec"].setdefault("monitoring", {})["prometheusURL"] = prometheus_url
        out.append(fleet)
    return out


@contextmanager
def prometheus() -> Iterator[str | None]:
    """A real, empty Prometheus for the operator to query (None when it is not installed)."""
    if PROMETHEUS is None:
        yield None
        return
    server = PrometheusServer()
    try:
        yield server.start().url
    finally:
        server.close()


def _metric_sum(url: str, name: str, keep: Callable[[dict[str, str]], bool]) -> float:
    """Sum of a counter's samples on a /metrics page (reading it is not a PromQL query)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and keep(sample.labels):
                total += sample.value
    return total


def prometheus_queries(url: str | None) -> float:
    """Instant and range queries Prometheus has answered so far."""
    if url is None:
        return 0.0
    return _metric_sum(url, "prometheus_http_requests_total",
                       lambda labels: labels.get("handler") in QUERY_HANDLERS)  # fmt: skip


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S  # utime + stime


def _memory_mib(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) in MiB."""
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024


def _sized(fleet: dict[str, Any]) -> bool:
    conditions = fleet.get("status", {}).get("conditions", [])
    return any(c["type"] == "Sized" and c["status"] == "True" for c in conditions)


def _all_sized(cluster: Cluster, names: set[str]) -> bool:
    return names <= cluster.names_where("InferenceFleet", _sized)


def burst(count: int, prometheus_url: str | None) -> dict[str, float]:
    metrics_port = free_port()
    with tempfile.TemporaryDirectory() as workdir:
        cluster = Cluster(Path(workdir))
        env = {
            **os.environ,
            "KUBECONFIG": str(cluster.kubeconfig),
            "INFERFLEET_METRICS_PORT": str(metrics_port),
            "INFERFLEET_METRICS_ADDRESS": "127.0.0.1",
        }
        command = [sys.executable, "-m", "kopf", "run", "--standalone", "--all-namespaces",
                   str(REPO / "operator" / "main.py")]  # fmt: skip
        operator = subprocess.Popen(command, env=env, cwd=REPO, stderr=subprocess.DEVNULL)
        try:
            # Wait until the operator watches fleets before the burst.
            watch = f"GET /apis/{API_VERSION}/inferencefleets"
            wait_for(lambda: watch in cluster.server.paths, "the operator to watch", 30)
            idle_mib, _ = _memory_mib(operator.pid)
            cpu_before = _cpu_s(operator.pid)
            batch = fleets(count, prometheus_url)
            started = time.monotonic()
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(cluster.create, batch))
            names = {f["metadata"]["name"] for f in batch}
            wait_for(lambda: _all_sized(cluster, names), f"{count} fleets Sized", 900, poll_s=1.0)
            elapsed_s = time.monotonic() - started
            cpu_s = _cpu_s(operator.pid) - cpu_before
            rss_mib, peak_mib = _memory_mib(operator.pid)
            metrics_url = f"http://127.0.0.1:{metrics_port}"
            reconciles = _reconciles(metrics_url)
            # Sized is not the end: Kopf may still be working off the burst's events. Then the
            # replicas come up, as a cluster's Deployment controller would report them (KMock
            # has none): a steady state is one whose pods are ready, not a fleet of Pending.
            _wait_quiet(cluster, 600)
            while cluster.mark_deployments_ready():
                _wait_quiet(cluster, 600)
            settled_s = time.monotonic() - started
            reconciles_settled = _reconciles(metrics_url)
            # Steady state: resyncs only, as the API server sees them.
            requests_before, writes_before = len(cluster.server.paths), len(cluster.writes())
            time.sleep(STEADY_S)
            steady = _reconciles(metrics_url) - reconciles_settled
            steady_requests = len(cluster.server.paths) - requests_before
            steady_writes = len(cluster.writes()) - writes_before
            steady_mib, peak_mib = _memory_mib(operator.pid)
        finally:
            stop(operator)
            cluster.close()
    return {
        "all_sized_s": elapsed_s,
        "burst_settled_s": settled_s,
        "operator_cpu_ms_per_fleet": 1000 * cpu_s / count,
        "burst_reconciles_per_fleet": reconciles / count,
        "rss_idle_mib": idle_mib,
        "rss_mib": rss_mib,
        "rss_steady_mib": steady_mib,
        "rss_peak_mib": peak_mib,
        "steady_reconciles_per_fleet": steady / count,
        "operator_api_calls_per_reconcile": steady_requests / max(steady, 1),
        "operator_api_writes_per_reconcile": steady_writes / max(steady, 1),
    }


def stop(operator: subprocess.Popen, timeout_s: float = 60.0) -> None:
    """SIGTERM, then SIGKILL if it is still stopping its daemons after `timeout_s` (on a busy
    machine 1,000 of them may take longer; the figures are taken by then)."""
    operator.terminate()
    try:
        operator.wait(timeout_s)
    except subprocess.TimeoutExpired:
        operator.kill()
        operator.wait()


def _wait_quiet(cluster: Cluster, timeout_s: float) -> None:
    seen = {"writes": -1, "since": time.monotonic()}

    def quiet() -> bool:
        writes = len(cluster.writes())
        if writes != seen["writes"]:
            seen.update(writes=writes, since=time.monotonic())
        return time.monotonic() - seen["since"] >= QUIET_S

    wait_for(quiet, f"the operator to write nothing for {QUIET_S:g} s", timeout_s, poll_s=1.0)


def _reconciles(metrics_url: str) -> float:
    """Passes the operator has run, from its own /metrics."""
    return _metric_sum(metrics_url, "inferfleet_reconcile_duration_seconds_count", lambda _: True)


def per_reconcile(count: int, prometheus_url: str | None) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as workdir:
        cluster = Cluster(Path(workdir))
        os.environ["KUBECONFIG"] = str(cluster.kubeconfig)
        try:
            for fleet in fleets(count, prometheus_url):
                cluster.create(fleet)
            figures = asyncio.run(_passes(cluster, prometheus_url))
        finally:
            cluster.close()
    return figures


async def _timed_pass(kube, cluster: Cluster, plans, watcher) -> np.ndarray:
    """Milliseconds of this thread's CPU per reconcile call, over the fleets as they are now
    (with status, as the watch delivers them) and the owned objects as the operator's watches
    would hold them (built before the pass, untimed: Kopf keeps them between passes)."""
    from controllers.reconcile.handlers import reconcile

    owned = cluster.owned()
    timings = []
    for body in cluster.objects("InferenceFleet"):
        before = time.thread_time()
        await reconcile(kube, body, now_s=time.time(), plans=plans, owned=owned, watcher=watcher)
        timings.append(time.thread_time() - before)
    return np.array(timings) * 1000


async def _passes(cluster: Cluster, prometheus_url: str | None) -> dict[str, float]:
    """First pass (plan + apply), resync (cached plans), restart (plans recomputed)."""
    from controllers.adapters.kube import Kube
    from controllers.adapters.prometheus_reader import OperatorClock, PrometheusReader
    from controllers.reconcile.handlers import tune_gc
    from controllers.reconcile.plans import PlanCache
    from controllers.reconcile.runtime import Watcher

    tune_gc()  # as the operator's start-up handler does

    clock = OperatorClock(time.time())
    watcher = Watcher(PrometheusReader(prometheus_url, clock), clock)
    kube = Kube.from_environment()
    count = len(cluster.objects("InferenceFleet"))
    try:
        plans = PlanCache()
        first = await _timed_pass(kube, cluster, plans, watcher)
        writes_before, requests_before = len(cluster.writes()), len(cluster.server.paths)
        queries_before = prometheus_queries(prometheus_url)
        resync = await _timed_pass(kube, cluster, plans, watcher)
        resync_requests = len(cluster.server.paths) - requests_before
        resync_writes = len(cluster.writes()) - writes_before
        resync_queries = prometheus_queries(prometheus_url) - queries_before
        writes_before = len(cluster.writes())
        restart = await _timed_pass(kube, cluster, PlanCache(), watcher)
        restart_writes = len(cluster.writes()) - writes_before
    finally:
        await kube.close()
    figures: dict[str, float] = {
        "p50_reconcile_ms": float(np.percentile(resync, 50)),
        "p99_reconcile_ms": float(np.percentile(resync, 99)),
        "api_calls_per_reconcile": resync_requests / count,
        "api_writes_per_resync": resync_writes / count,
        "prometheus_queries_per_reconcile": resync_queries / count if prometheus_url else None,
        "api_writes_per_restart": restart_writes / count,
    }
    for name, ms in (("first", first), ("restart", restart)):
        figures[f"{name}_p50_ms"] = float(np.percentile(ms, 50))
        figures[f"{name}_p99_ms"] = float(np.percentile(ms, 99))
    return figures


def run_once(count: int) -> dict[str, Any]:
    with prometheus() as url:
        figures: dict[str, Any] = {"fleets": count}
        figures |= per_reconcile(count, url)
        figures |= burst(count, url)
    return figures


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of each figure over the runs, and every run as measured."""
    keys = list(runs[0])
    merged = {
        key: (statistics.median(v) if None not in (v := [run[key] for run in runs]) else None)
        for key in keys
    }
    return {**merged, "runs": runs} if len(runs) > 1 else merged


def table(figures: dict[str, Any]) -> str:
    order = [*HEADLINE, *(k for k in figures if k not in HEADLINE and k != "runs")]
    width = max(len(k) for k in order)
    lines = []
    for key in order:
        value = figures.get(key)
        shown = "n/a" if value is None else f"{value:.2f}" if isinstance(value, float) else value
        lines.append(f"{key:<{width}}  {shown}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fleets", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--output", choices=("table", "json"), default="table")
    args = parser.parse_args()
    if args.fleets < 1 or args.repeat < 1:
        parser.error("--fleets and --repeat: expected a whole number of at least 1")
    runs = []
    for run in range(args.repeat):
        runs.append(run_once(args.fleets))
        if args.output == "table":
            print(f"run {run + 1}:\n{table(runs[-1])}\n", flush=True)
    figures = summary(runs)
    if args.output == "json":
        print(json.dumps(figures, sort_keys=False))
    elif args.repeat > 1:
        print(f"median of {args.repeat} runs:\n{table(figures)}")
    return 0


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    sys.exit(main())
