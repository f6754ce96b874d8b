"""The emulator's /metrics and DCGM endpoints use vLLM's and dcgm-exporter's exact names."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from inferfleet_testing.emulator import emulator as emulator  # noqa: PLC0414 (re-exported fixture)
from inferfleet_testing.emulator import run_emulator

# name -> type, as vLLM V1 exposes them (counters without their `_total` suffix here, the way
# the text parser names counter families).
VLLM_FAMILIES = {
    "vllm:num_requests_running": "gauge",
    "vllm:num_requests_waiting": "gauge",
    "vllm:kv_cache_usage_perc": "gauge",
    "vllm:prefix_cache_queries": "counter",
    "vllm:prefix_cache_hits": "counter",
    "vllm:num_preemptions": "counter",
    "vllm:prompt_tokens": "counter",
    "vllm:generation_tokens": "counter",
    "vllm:request_success": "counter",
    "vllm:time_to_first_token_seconds": "histogram",
    "vllm:inter_token_latency_seconds": "histogram",
    "vllm:e2e_request_latency_seconds": "histogram",
    "vllm:request_prompt_tokens": "histogram",
    "vllm:request_generation_tokens": "histogram",
}
# vLLM's own boundaries (vllm/v1/metrics/loggers.py).
TTFT_LE = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
           7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0]  # fmt: skip
ITL_LE = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
          10.0, 20.0, 40.0, 80.0]  # fmt: skip
DCGM_FIELDS = [
    "DCGM_FI_DEV_GPU_UTIL",
    "DCGM_FI_DEV_FB_USED",
    "DCGM_FI_DEV_FB_FREE",
    "DCGM_FI_PROF_SM_ACTIVE",
    "DCGM_FI_PROF_DRAM_ACTIVE",
    "DCGM_FI_DEV_POWER_USAGE",
]


def _families(url: str) -> dict[str, object]:
    text = httpx.get(url, timeout=5).text
    return {f.name: f for f in text_string_to_metric_families(text)}


def _value(families, family: str, sample: str, **labels: str) -> float:
    for s in families[family].samples:
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    raise KeyError(f"{sample}{labels}")


def _complete(emu, prompt_tokens: int, max_tokens: int) -> None:
    body = {
        "model": emu.model,
        "prompt": list(range(1000, 1000 + prompt_tokens)),
        "max_tokens": max_tokens,
        "ignore_eos": True,
    }
    assert httpx.post(emu.url + "/v1/completions", json=body, timeout=30).status_code == 200


def test_vllm_families_have_the_real_names_types_labels_and_buckets(emulator):
    families = _families(emulator.url + "/metrics")
    assert {name: families[name].type for name in VLLM_FAMILIES} == VLLM_FAMILIES
    for name in VLLM_FAMILIES:
        for s in families[name].samples:
            assert s.labels["model_name"] == emulator.model
            assert s.labels["engine"] == "0"
    buckets = {
        name: [
            float(s.labels["le"])
            for s in families[name].samples
            if s.name.endswith("_bucket") and s.labels["le"] != "+Inf"
        ]
        for name in ("vllm:time_to_first_token_seconds", "vllm:inter_token_latency_seconds")
    }
    assert buckets["vllm:time_to_first_token_seconds"] == TTFT_LE
    assert buckets["vllm:inter_token_latency_seconds"] == ITL_LE
    reasons = {s.labels["finished_reason"] for s in families["vllm:request_success"].samples}
    assert {"stop", "length", "abort"} <= reasons


def test_counters_and_histograms_follow_the_requests_served(emulator):
    samples = (
        ("vllm:prompt_tokens", "vllm:prompt_tokens_total", {}),
        ("vllm:generation_tokens", "vllm:generation_tokens_total", {}),
        ("vllm:request_success", "vllm:request_success_total", {"finished_reason": "length"}),
        ("vllm:time_to_first_token_seconds", "vllm:time_to_first_token_seconds_count", {}),
        ("vllm:inter_token_latency_seconds", "vllm:inter_token_latency_seconds_count", {}),
        ("vllm:inter_token_latency_seconds", "vllm:inter_token_latency_seconds_sum", {}),
        ("vllm:request_generation_tokens", "vllm:request_generation_tokens_sum", {}),
    )

    def read() -> list[float]:
        f = _families(emulator.url + "/metrics")
        return [_value(f, family, sample, **labels) for family, sample, labels in samples]

    before = read()
    for _ in range(3):
        _complete(emulator, prompt_tokens=100, max_tokens=10)
    prompt, generated, length_ok, ttft_n, itl_n, itl_sum, gen_sum = (
        after - b for after, b in zip(read(), before, strict=True)
    )
    assert (prompt, generated, length_ok, ttft_n, itl_n, gen_sum) == (300, 30, 3, 3, 27, 30)
    # Latencies are in emulated GPU seconds: an 8B decode step on an H100 takes a few ms.
    assert 0.002 < itl_sum / 27 < 0.05
    f = _families(emulator.url + "/metrics")
    assert _value(f, "vllm:num_requests_running", "vllm:num_requests_running") == 0
    assert _value(f, "vllm:kv_cache_usage_perc", "vllm:kv_cache_usage_perc") == 0


def test_dcgm_endpoint_has_exporter_names_and_one_series_per_gpu():
    with run_emulator(tp=2, speedup=10.0) as emu:
        for url in (emu.dcgm_url + "/metrics", emu.url + "/dcgm/metrics"):
            families = _families(url)
            for field in DCGM_FIELDS:
                samples = families[field].samples
                assert families[field].type == "gauge"
                assert [s.labels["gpu"] for s in samples] == ["0", "1"]
                for s in samples:
                    assert s.labels["modelName"] == "H100-SXM-80GB"
                    assert s.labels["UUID"].startswith("GPU-")
                    assert s.labels["Hostname"]
        f = _families(emu.dcgm_url + "/metrics")
        used = _value(f, "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_USED", gpu="0")
        free = _value(f, "DCGM_FI_DEV_FB_FREE", "DCGM_FI_DEV_FB_FREE", gpu="0")
        # vLLM preallocates its budget (0.9 of the card) plus CUDA graphs and NCCL buffers.
        assert abs((used + free) - 79.19 * 1024) <= 2
        assert 0.85 < used / (used + free) < 0.95


def test_dcgm_utilization_rises_with_load_and_falls_when_idle():
    with run_emulator(gpu="L4", speedup=10.0) as emu:
        idle = _families(emu.dcgm_url + "/metrics")
        assert _value(idle, "DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_GPU_UTIL") == 0
        _complete(emu, prompt_tokens=200, max_tokens=40)  # ~2.5 s of L4 time, 0.25 s wall
        busy = _families(emu.dcgm_url + "/metrics")
        util = _value(busy, "DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_GPU_UTIL")
        dram = _value(busy, "DCGM_FI_PROF_DRAM_ACTIVE", "DCGM_FI_PROF_DRAM_ACTIVE")
        sm = _value(busy, "DCGM_FI_PROF_SM_ACTIVE", "DCGM_FI_PROF_SM_ACTIVE")
        power = _value(busy, "DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_POWER_USAGE")
        idle_power = _value(idle, "DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_POWER_USAGE")
        assert util > 0
        assert dram > sm  # decode on an L4 is memory-bound
        assert power > idle_power


def test_prefix_cache_hits_count_a_shared_prompt_prefix(emulator):
    def read() -> tuple[float, float]:
        f = _families(emulator.url + "/metrics")
        return (
            _value(f, "vllm:prefix_cache_queries", "vllm:prefix_cache_queries_total"),
            _value(f, "vllm:prefix_cache_hits", "vllm:prefix_cache_hits_total"),
        )

    shared = list(range(5000, 5064))  # four 16-token blocks
    queries0, hits0 = read()
    for tail in (7, 8):
        body = {"model": emulator.model, "prompt": [*shared, tail], "max_tokens": 1}
        assert (
            httpx.post(emulator.url + "/v1/completions", json=body, timeout=30).status_code == 200
        )
    queries, hits = read()
    assert (queries - queries0, hits - hits0) == (130, 64)
