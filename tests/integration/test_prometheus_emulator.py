"""The adapter on what the vLLM/DCGM emulator exports, through a real Prometheus.

Two emulated replicas form one pool; a known batch of requests (300-token prompts, 50 output
tokens) goes through them. The snapshot must find both replicas, all required series fresh,
and token percentiles inside the histogram buckets those lengths fall in.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from controllers.adapters.prometheus import QueryWindows, fetch_snapshot, make_client
from controllers.policy.monitoring.snapshot import metrics_condition
from inferfleet_testing.emulator import run_emulator
from inferfleet_testing.prometheus import PrometheusServer, Target, requires_prometheus

pytestmark = requires_prometheus

REQUESTS = 40
PROMPT_TOKENS = 300
OUTPUT_TOKENS = 50
WINDOWS = QueryWindows(rate="30s", workload="2m", peak_step="1s", max_age_s=10.0)


def _complete(url: str) -> None:
    body = {
        "model": "emulated-llama-3-8b",
        "prompt": list(range(PROMPT_TOKENS)),
        "max_tokens": OUTPUT_TOKENS,
        "ignore_eos": True,
    }
    httpx.post(f"{url}/v1/completions", json=body, timeout=60).raise_for_status()


@pytest.fixture(scope="module")
def pool():
    with run_emulator(speedup=20.0) as first, run_emulator(speedup=20.0) as second:
        targets = []
        for i, emu in enumerate((first, second)):
            labels = {"namespace": "llm", "fleet": "emu", "pool": "h100", "pod": f"emu-{i}"}
            targets.append(Target(emu.url.removeprefix("http://"), labels))
            targets.append(Target(emu.dcgm_url.removeprefix("http://"), labels))
        prom = PrometheusServer(targets).start()
        try:
            prom.wait_for_series('vllm:num_requests_running{fleet="emu"}', count=2)
            with ThreadPoolExecutor(8) as workers:
                urls = [(first, second)[i % 2].url for i in range(REQUESTS)]
                list(workers.map(_complete, urls))
            # Until both replicas were scraped after their last request.
            served = f'sum(vllm:request_success_total{{fleet="emu"}}) == {REQUESTS}'
            prom.wait_for_series(served)
            yield prom
        finally:
            prom.close()


def test_snapshot_of_emulated_replicas(pool):
    snap = fetch_snapshot(make_client(pool.url), "llm", "emu", ["h100"], windows=WINDOWS)
    assert metrics_condition(snap, ["h100"])[:2] == ("True", "MetricsFresh")
    metrics = snap.pool("h100")
    assert metrics.replicas_reporting.value == 2
    assert 0.0 <= metrics.kv_cache_usage_ratio.value <= 1.0
    assert metrics.request_rate_rps.value > 0
    assert metrics.ttft_p99_s.value > 0
    assert metrics.fb_used_mib.value > 0 and metrics.fb_free_mib.value > 0
    assert 0.0 <= metrics.gpu_util_percent.value <= 100.0
    # All prompts are 300 tokens and outputs 50: vLLM's 1-2-5 buckets put them in (200, 500]
    # and (20, 50], and the quantiles must stay inside those buckets.
    w = snap.workload
    assert 200 < w.prompt_tokens_p50.value <= 500 and 200 < w.prompt_tokens_p99.value <= 500
    assert 20 < w.output_tokens_p50.value <= 50 and 20 < w.output_tokens_p99.value <= 50
    served = pool.query('sum(vllm:request_success_total{fleet="emu"})')
    assert float(served[0]["value"][1]) == REQUESTS
