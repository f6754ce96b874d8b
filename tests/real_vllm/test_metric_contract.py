"""Every vLLM series our PromQL reads exists in a real vLLM's scrape, with the labels it uses.

A renamed metric is the most common way an LLM autoscaler breaks silently: the query returns
nothing and the scaler goes blind. The names come from the PromQL we ship (the adapter's
snapshot query, the alert rules, the dashboard), not from a list kept beside them.
"""

from __future__ import annotations

import subprocess

import httpx
import pytest
import yaml

from inferfleet_testing.real_vllm import RunningVllm
from tests.real_vllm.scrape import (
    REPO,
    Family,
    grouping_labels,
    matchers,
    promql_sources,
    sample_names,
    scrape,
    vllm_names,
)

# Read by our PromQL but legitimately absent from this server; each with why.
ABSENT_HERE = {
    # The pre-v0.10 name of kv_cache_usage_perc, kept as the adapter's `or` fallback.
    "vllm:gpu_cache_usage_perc": "old name",
    # Exported only when speculative decoding is configured (the tiny model has no draft).
    "vllm:spec_decode_num_accepted_tokens_total": "spec decode off",
    "vllm:spec_decode_num_draft_tokens_total": "spec decode off",
}


@pytest.fixture(scope="module")
def real_families(real_vllm: RunningVllm) -> dict[str, Family]:
    """The scrape after a few finished requests, so every request histogram has samples."""
    for max_tokens in (1, 4):
        body = {"model": real_vllm.model, "prompt": [1001, 1002, 1003], "max_tokens": max_tokens}
        httpx.post(real_vllm.url + "/v1/completions", json=body, timeout=60).raise_for_status()
    return scrape(real_vllm.url)


def pod_monitor_labels() -> set[str]:
    """Labels the chart's PodMonitor attaches to every vLLM series it scrapes."""
    helm = REPO / ".tools" / "bin" / "helm"
    if not helm.is_file():
        pytest.skip("helm missing; run `make tools`")
    out = subprocess.run(
        [str(helm), "template", "x", str(REPO / "charts" / "inferfleet"),
         "--api-versions", "monitoring.coreos.com/v1/PodMonitor"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    (monitor,) = [d for d in yaml.safe_load_all(out) if d and d["kind"] == "PodMonitor"]
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    return {r["targetLabel"] for r in endpoint["relabelings"]}


SOURCES = promql_sources()
CASES = [(where, expr) for where, exprs in SOURCES.items() for expr in exprs if vllm_names(expr)]


def test_every_source_reads_vllm_series():
    """The parse below would pass on nothing; it must find the names in each source."""
    assert {where for where, _ in CASES} == set(SOURCES)
    assert len({n for _, expr in CASES for n in vllm_names(expr)}) >= 10


@pytest.mark.parametrize(
    ("where", "expr"), CASES, ids=[f"{w}-{i}" for i, (w, _) in enumerate(CASES)]
)
def test_names_exist_in_a_real_scrape(where: str, expr: str, real_families: dict[str, Family]):
    missing = vllm_names(expr) - sample_names(real_families) - set(ABSENT_HERE)
    assert not missing, f"{where} reads {sorted(missing)}, which real vLLM does not export"


def test_names_we_allow_to_be_absent_are_really_absent(real_families: dict[str, Family]):
    """If vLLM starts exporting one of them here, the allowance has outlived its reason."""
    assert not set(ABSENT_HERE) & sample_names(real_families)


@pytest.mark.parametrize(
    ("where", "expr"), CASES, ids=[f"{w}-{i}" for i, (w, _) in enumerate(CASES)]
)
def test_labels_exist_on_the_series_or_come_from_the_pod_monitor(
    where: str, expr: str, real_families: dict[str, Family]
):
    on_series = {"le"} | {label for fam in real_families.values() for label in fam.labels}
    used = grouping_labels(expr) | {label for label, _ in matchers(expr)}
    unknown = used - on_series - pod_monitor_labels()
    assert not unknown, f"{where} uses labels {sorted(unknown)} that no scraped series carries"


@pytest.mark.parametrize(
    ("where", "expr"), CASES, ids=[f"{w}-{i}" for i, (w, _) in enumerate(CASES)]
)
def test_histograms_read_have_real_buckets(where: str, expr: str, real_families: dict[str, Family]):
    """Each `_bucket` series read is a histogram here, ends in +Inf, and any `le` picked is a
    boundary vLLM really exports (a rounded boundary matches no series)."""
    bounds = {b for fam in real_families.values() for b in fam.buckets}
    for name in vllm_names(expr):
        if name.endswith("_bucket"):
            fam = real_families[name.removesuffix("_bucket")]
            assert fam.type == "histogram" and fam.buckets[-1] == float("inf"), name
    for label, value in matchers(expr):
        if label == "le":
            assert float(value) in bounds, f"{where}: le={value} is not a vLLM bucket boundary"


def test_the_labels_vllm_puts_on_the_series_we_read(real_families: dict[str, Family]):
    """model_name and engine on every family our PromQL reads; finished_reason on the success
    counter (the adapter sums over it, the emulator must export it). Not on every family: in
    0.32 `vllm:cache_config_info` has no model_name and `vllm:admission_rejections` no engine."""
    read = {n for _, expr in CASES for n in vllm_names(expr)}
    families_read = [f for f in real_families.values() if f.samples & read]
    assert len(families_read) >= 10
    assert all({"model_name", "engine"} <= fam.labels for fam in families_read)
    assert "finished_reason" in real_families["vllm:request_success"].labels
