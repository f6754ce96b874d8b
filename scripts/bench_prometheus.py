"""Benchmark: one reconcile's Prometheus queries for 100 fleets, against a real Prometheus.

    .venv/bin/python -m scripts.bench_prometheus [--fleets 100] [--rounds 3]

Starts Prometheus on 127.0.0.1 scraping one exposition server that holds every fleet's pods
(2 pools x 2 replicas each, vLLM + DCGM series), waits for data, then times: (a) the operator's
way, one snapshot query per fleet; (b) one query for all fleets; (c) for comparison, the same
families sent as separate queries per fleet. Prints queries per reconcile and times.
"""

from __future__ import annotations

import argparse
import statistics
import time

from controllers.adapters.prometheus import (
    QueryWindows,
    fetch_snapshot,
    fetch_snapshots,
    make_client,
    snapshot_query,
)
from inferfleet_testing.prometheus import (
    ExpositionServer,
    PrometheusServer,
    Target,
    VllmLoad,
    render_exposition,
    vllm_pod,
)

POOLS = ("h100", "l40s")
PODS_PER_POOL = 2


class CountingClient:
    """Wraps the client to count the instant queries a reconcile sends."""

    def __init__(self, client) -> None:
        self._client = client
        self.queries = 0

    def custom_query(self, query, params=None):
        self.queries += 1
        return self._client.custom_query(query, params=params)


def _pods(fleets: int):
    return [
        vllm_pod(
            {"namespace": "llm", "fleet": f"f{f:03d}", "pool": pool, "pod": f"f{f:03d}-{pool}-{i}"},
            VllmLoad(),
        )
        for f in range(fleets)
        for pool in POOLS
        for i in range(PODS_PER_POOL)
    ]


def _round(client, fleets: int, windows: QueryWindows) -> dict[str, float]:
    counting = CountingClient(client)
    now = time.time()
    per_query_s = []
    start = time.perf_counter()
    for f in range(fleets):
        t0 = time.perf_counter()
        snap = fetch_snapshot(counting, "llm", f"f{f:03d}", POOLS, now_s=now, windows=windows)
        per_query_s.append(time.perf_counter() - t0)
        assert snap.reachable and snap.pool("h100").requests_running is not None, snap.error
    per_fleet_total_s = time.perf_counter() - start

    start = time.perf_counter()
    all_fleets = fetch_snapshots(client, now_s=now, windows=windows)
    all_total_s = time.perf_counter() - start
    assert len(all_fleets) == fleets

    parts = snapshot_query("llm", "f000", windows).split("\n or ")
    start = time.perf_counter()
    for f in range(fleets):
        for part in snapshot_query("llm", f"f{f:03d}", windows).split("\n or "):
            client.custom_query(part, params={"time": f"{now:.3f}"})
    split_total_s = time.perf_counter() - start
    return {
        "queries_per_reconcile": counting.queries / fleets,
        "per_fleet_total_s": per_fleet_total_s,
        "per_query_p50_ms": 1000 * statistics.median(per_query_s),
        "per_query_max_ms": 1000 * max(per_query_s),
        "all_fleets_one_query_s": all_total_s,
        "split_queries_per_reconcile": len(parts),
        "split_total_s": split_total_s,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fleets", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup-s", type=float, default=40.0, help="data gathered first")
    args = parser.parse_args()

    pods = _pods(args.fleets)
    server = ExpositionServer(lambda elapsed_s: render_exposition(pods, elapsed_s))
    prom = PrometheusServer([Target(server.address, honor_labels=True)], scrape_interval="5s")
    try:
        prom.start()
        prom.wait_for_series("vllm:num_requests_running", count=len(pods), timeout_s=60)
        time.sleep(args.warmup_s)
        client = make_client(prom.url, timeout_s=30)
        series = int(float(prom.query("count({__name__=~'vllm:.*|DCGM_.*'})")[0]["value"][1]))
        print(f"{args.fleets} fleets, {len(pods)} pods, {series} series in Prometheus")
        for label, windows in (
            ("short windows (rate 10s, workload 30s)", QueryWindows("10s", "30s", "5s", 60.0)),
            ("production windows (rate 5m, workload 1d)", QueryWindows()),
        ):
            print(f"-- {label}")
            for r in range(args.rounds):
                result = _round(client, args.fleets, windows)
                print(
                    f"round {r + 1}: {result['queries_per_reconcile']:.0f} query/reconcile; "
                    f"{args.fleets} reconciles {result['per_fleet_total_s']:.2f}s "
                    f"(p50 {result['per_query_p50_ms']:.1f} ms, max "
                    f"{result['per_query_max_ms']:.1f} ms); all fleets in one query "
                    f"{result['all_fleets_one_query_s']:.2f}s; split into "
                    f"{result['split_queries_per_reconcile']} queries/reconcile "
                    f"{result['split_total_s']:.2f}s"
                )
    finally:
        prom.close()
        server.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
