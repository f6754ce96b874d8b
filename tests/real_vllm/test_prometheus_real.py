"""The Prometheus adapter end to end on real parts: a real Prometheus scraping a real vLLM.

The target carries the labels the chart's PodMonitor attaches (namespace, fleet, pool, pod). A
known batch of requests (30-token prompts, 8 output tokens) goes through; the snapshot must
hold every value vLLM can give on a CPU and name as missing exactly the ones it cannot (GPU
counters come from dcgm-exporter; speculative decoding is off), so a renamed vLLM metric shows
up here as one more missing value.
"""

from __future__ import annotations

import time

import httpx
import pytest

from controllers.adapters.prometheus import QueryWindows, fetch_snapshot, make_client
from controllers.policy.monitoring.snapshot import metrics_condition
from inferfleet_testing.prometheus import PrometheusServer, Target, requires_prometheus
from inferfleet_testing.real_vllm import RunningVllm

pytestmark = requires_prometheus

REQUESTS = 12
PROMPT_TOKENS = 30
OUTPUT_TOKENS = 8
WINDOWS = QueryWindows(rate="30s", workload="2m", peak_step="1s", max_age_s=10.0)
NOT_ON_CPU = {
    "h100/gpu_util_percent", "h100/sm_active_ratio", "h100/fb_used_mib", "h100/fb_free_mib",
    "h100/spec_decode_acceptance_ratio",
}  # fmt: skip


@pytest.fixture(scope="module")
def prometheus(real_vllm: RunningVllm):
    labels = {"namespace": "llm", "fleet": "tiny", "pool": "h100", "pod": "tiny-0"}
    prom = PrometheusServer([Target(real_vllm.url.removeprefix("http://"), labels)]).start()
    try:
        prom.wait_for_series('vllm:num_requests_running{fleet="tiny"}')
        for i in range(REQUESTS):
            prompt = list(range(1000 + i * PROMPT_TOKENS, 1000 + (i + 1) * PROMPT_TOKENS))
            body = {"model": real_vllm.model, "prompt": prompt, "max_tokens": OUTPUT_TOKENS,
                    "ignore_eos": True}  # fmt: skip
            httpx.post(real_vllm.url + "/v1/completions", json=body, timeout=60).raise_for_status()
        served = 'sum(vllm:request_success_total{fleet="tiny"})'
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            answer = prom.query(served)
            if answer and float(answer[0]["value"][1]) >= REQUESTS:
                break
            time.sleep(0.5)
        time.sleep(2)  # one more scrape, so rates see the last requests
        yield prom
    finally:
        prom.close()


def test_snapshot_of_a_real_vllm(prometheus: PrometheusServer):
    snap = fetch_snapshot(make_client(prometheus.url), "llm", "tiny", ["h100"], windows=WINDOWS)
    assert metrics_condition(snap, ["h100"])[:2] == ("True", "MetricsFresh")
    assert set(snap.missing) - {"h100/lora_adapter_hit_ratio"} == NOT_ON_CPU
    assert not snap.stale
    m = snap.pool("h100")
    assert m.replicas_reporting.value == 1
    assert m.requests_running.value == 0 and m.requests_waiting.value == 0
    assert 0.0 <= m.kv_cache_usage_ratio.value <= 1.0
    assert m.request_rate_rps.value > 0 and m.preemptions_per_s.value == 0
    assert m.prompt_tok_per_s.value > 0 and m.generation_tok_per_s.value > 0
    # rate() extrapolates, so the token ratio matches the request shape only roughly.
    ratio = m.prompt_tok_per_s.value / m.generation_tok_per_s.value
    assert ratio == pytest.approx(PROMPT_TOKENS / OUTPUT_TOKENS, rel=0.3)
    assert 0.0 <= m.prefix_cache_hit_ratio.value <= 1.0
    assert 0 < m.ttft_p50_s.value <= m.ttft_p99_s.value
    assert 0 < m.itl_p50_s.value <= m.itl_p99_s.value
    # vLLM's 1-2-5 token buckets put 30-token prompts in (20, 50] and 8 outputs in (5, 10].
    w = snap.workload
    assert 20 < w.prompt_tokens_p50.value <= 50 and 20 < w.prompt_tokens_p99.value <= 50
    assert 5 < w.output_tokens_p50.value <= 10 and 5 < w.output_tokens_p99.value <= 10
    assert w.request_rate_rps.value > 0 and w.peak_request_rate_rps.value > 0
