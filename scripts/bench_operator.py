"""Benchmark the operator: many fleets at once against the KMock API server.

Two measurements, because "how long until everything is sized" and "what one reconcile costs"
are different questions:

1. Burst: the real operator (`kopf run operator/main.py`, its own process) and N fleets created
   at once. Reports seconds until every fleet is `Sized=True`, the operator's CPU seconds per
   fleet over the burst, and its resident memory (current and peak).
2. Per reconcile: `controllers.reconcile.handlers.reconcile` called for each fleet in turn,
   in-process, timing the CPU of the calling thread only (the API server runs in another thread).
   Planning runs in a worker thread, so these figures are the operator's own work around it
   (validate, render, compare, apply, status); the burst's CPU per fleet includes planning. Reports
   p50/p99 for the first pass (apply everything), a resync (cached plans, reads only) and a restart
   (plans recomputed, reads only), and the writes the last two made (should be 0).

Usage: .venv/bin/python scripts/bench_operator.py [--fleets 200] [--repeat 1]
Targets (issue): p99 reconcile under 100 ms of operator time; operator RSS under 250 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from controllers.api.v1alpha1 import API_VERSION  # noqa: E402
from inferfleet_testing.kube.harness import Cluster, wait_for  # noqa: E402

PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def fleets(count: int) -> list[dict[str, Any]]:
    """`count` fleets cycling through the examples, each in its own name."""
    examples = []
    for path in sorted((REPO / "examples").glob("*.yaml")):
        docs = yaml.safe_load_all(path.read_text())
        examples += [d for d in docs if d and d.get("kind") == "InferenceFleet"]
    out = []
    for i in range(count):
        fleet = copy.deepcopy(examples[i % len(examples)])
        fleet["metadata"] = {"name": f"bench-{i:04d}", "namespace": "bench"}
        out.append(fleet)
    return out


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S  # utime + stime


def _memory_mib(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) in MiB."""
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024


def _all_sized(cluster: Cluster, names: set[str]) -> bool:
    sized = set()
    for fleet in cluster.objects("InferenceFleet"):
        conditions = fleet.get("status", {}).get("conditions", [])
        if any(c["type"] == "Sized" and c["status"] == "True" for c in conditions):
            sized.add(fleet["metadata"]["name"])
    return names <= sized


def burst(count: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as workdir:
        cluster = Cluster(Path(workdir))
        env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
        command = [sys.executable, "-m", "kopf", "run", "--standalone", "--all-namespaces",
                   str(REPO / "operator" / "main.py")]  # fmt: skip
        operator = subprocess.Popen(command, env=env, cwd=REPO, stderr=subprocess.DEVNULL)
        try:
            # Wait until the operator watches fleets before the burst.
            watch = f"GET /apis/{API_VERSION}/inferencefleets"
            wait_for(lambda: watch in cluster.server.paths, "the operator to watch", 30)
            idle_mib, _ = _memory_mib(operator.pid)
            cpu_before = _cpu_s(operator.pid)
            batch = fleets(count)
            started = time.monotonic()
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(cluster.create, batch))
            names = {f["metadata"]["name"] for f in batch}
            wait_for(lambda: _all_sized(cluster, names), f"{count} fleets Sized", 600)
            elapsed_s = time.monotonic() - started
            cpu_s = _cpu_s(operator.pid) - cpu_before
            rss_mib, peak_mib = _memory_mib(operator.pid)
        finally:
            operator.terminate()
            operator.wait(60)
            cluster.close()
    return {
        "fleets": count,
        "all_sized_s": elapsed_s,
        "operator_cpu_ms_per_fleet": 1000 * cpu_s / count,
        "operator_rss_idle_mib": idle_mib,
        "operator_rss_mib": rss_mib,
        "operator_rss_peak_mib": peak_mib,
    }


def per_reconcile(count: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as workdir:
        cluster = Cluster(Path(workdir))
        os.environ["KUBECONFIG"] = str(cluster.kubeconfig)
        try:
            for fleet in fleets(count):
                cluster.create(fleet)
            figures = asyncio.run(_passes(cluster))
        finally:
            cluster.close()
    return figures


async def _timed_pass(kube, bodies, plans) -> np.ndarray:
    """Milliseconds of this thread's CPU per reconcile call."""
    from controllers.reconcile.handlers import reconcile

    timings = []
    for body in bodies:
        before = time.thread_time()
        await reconcile(kube, body, now_s=time.time(), plans=plans)
        timings.append(time.thread_time() - before)
    return np.array(timings) * 1000


async def _passes(cluster: Cluster) -> dict[str, float]:
    """First pass (plan + apply), resync (cached plans), restart (plans recomputed)."""
    from controllers.adapters.kube import Kube
    from controllers.reconcile.handlers import tune_gc
    from controllers.reconcile.plans import PlanCache

    tune_gc()  # as the operator's start-up handler does

    kube = Kube.from_environment()
    try:
        plans = PlanCache()
        first = await _timed_pass(kube, cluster.objects("InferenceFleet"), plans)
        bodies = cluster.objects("InferenceFleet")  # now with status, as the watch delivers them
        writes_before = len(cluster.writes())
        resync = await _timed_pass(kube, bodies, plans)
        restart = await _timed_pass(kube, bodies, PlanCache())
        writes = len(cluster.writes()) - writes_before
    finally:
        await kube.close()
    figures: dict[str, float] = {}
    for name, ms in (("first", first), ("resync", resync), ("restart", restart)):
        figures[f"{name}_p50_ms"] = float(np.percentile(ms, 50))
        figures[f"{name}_p99_ms"] = float(np.percentile(ms, 99))
    figures["writes_in_resync_and_restart"] = writes
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fleets", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    for run in range(args.repeat):
        for phase in (burst, per_reconcile):
            figures = phase(args.fleets)
            print(f"run {run + 1} {phase.__name__}: "
                  + ", ".join(f"{k}={v:.1f}" for k, v in figures.items()), flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    sys.exit(main())
