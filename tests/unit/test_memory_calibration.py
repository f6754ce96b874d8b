"""The `vllm` memory method against real vLLM V1 start-up logs (the calibration folder).

Targets: KV-cache token capacity within a median 3 % and a maximum 10 % absolute error on every
usable case; every start-up that failed for lack of KV memory is predicted to fail. The cases
and the reasons for excluding the others live in scripts/calibration_report.py, which prints the
same comparison as a table.
"""

from __future__ import annotations

import importlib.util
import statistics
import sys
from types import ModuleType

import pytest

from tests.conftest import CALIBRATION, REPO


def _report() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "calibration_report", REPO / "scripts" / "calibration_report.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


report = _report()
CASES, EXCLUDED = report.load_cases(CALIBRATION)
RESULTS = report.evaluate(CASES)


def test_enough_cases_are_usable() -> None:
    assert len(RESULTS) >= 52
    # 38 shared, 7 from the repository's supplement (Gemma 2 2B / 9B / 27B, Gemma 3 12B / 27B,
    # Llama 4 Scout, Qwen1.5-MoE), which also holds the ROCm MiniMax-M2.5 case.
    assert sum(r.case.case_id.startswith("llmd-v0.19") for r in RESULTS) == 45
    assert all(why for _, why in EXCLUDED)


def test_kv_token_capacity_median_and_max_error() -> None:
    errors = [abs(r.error) for r in RESULTS]
    assert statistics.median(errors) <= 0.03
    worst = max(RESULTS, key=lambda r: abs(r.error))
    assert abs(worst.error) <= 0.10, f"{worst.case.case_id}: {worst.error:+.1%}"


@pytest.mark.parametrize(
    "row",
    report.error_table(RESULTS, report.release) + report.error_table(RESULTS, report.gpu_family),
    ids=lambda row: row[0],
)
def test_each_release_and_gpu_family_within_target(row) -> None:
    """The issue's targets hold per vLLM release and per GPU family, not only overall."""
    name, _, median_pct, max_pct = row
    assert median_pct <= 3.0 and max_pct <= 10.0, name


@pytest.mark.parametrize("result", RESULTS, ids=lambda r: r.case.case_id)
def test_each_case_within_ten_percent(result) -> None:
    assert abs(result.error) <= 0.10


def test_weights_match_the_logged_shard() -> None:
    """Within 2 %, except MXFP4 at TP 2 whose kernel padding we only approximate (5 %) and
    Gemma 3, whose load logs ~0.4-0.5 GiB beyond its tensors (unexplained; 3 %)."""
    for r in RESULTS:
        logged = r.case.logged["weights_gib"]
        if logged is None:
            continue
        tolerance = 0.05 if r.case.arch.checkpoint_quantization == "mxfp4" else 0.02
        if r.case.arch.model_type == "gemma3_text":
            tolerance = 0.03
        assert r.predicted.weights_gib == pytest.approx(logged, rel=tolerance), r.case.case_id


def test_max_concurrency_follows_the_pages_of_every_kv_group() -> None:
    """The logged "Maximum concurrency" is the pool's pages over one max_model_len request's
    pages in every KV-cache group: with the tokens right it is right too, within 0.2 points
    of the token error, for the hybrid Gemma 2/3 and Llama 4 groups as well. (At these logs'
    8k max_model_len a sliding or chunked group needs as many pages as a full one, so the
    window term is checked only by the unit tests.)"""
    checked = 0
    for r in RESULTS:
        lg = r.case.logged
        if (
            not lg["max_concurrency"]
            or lg["max_concurrency_at_tokens"] != r.predicted.max_model_len
        ):
            continue
        error = r.predicted.max_concurrency / lg["max_concurrency"] - 1
        assert error == pytest.approx(r.error, abs=0.002), r.case.case_id
        checked += 1
    assert checked >= 45


def test_memory_failures_are_predicted() -> None:
    failed = report.failed_starts(CALIBRATION)
    assert len(failed) >= 2
    for case_id, memory in failed:
        assert report.predicts_failure(memory), case_id


def _logged_warmup_spare_gib(result) -> float:
    """GiB left for the sampler warm-up after KV and the captured graphs, from the log's own
    figures: what the warning estimates."""
    lg, engine = result.case.logged, result.case.engine
    total = lg["gpu_memory_gib_reported_per_gpu"]
    free = total - lg["weights_gib"] - lg["kv_cache_gib"] - lg["non_torch_gib"]
    seqs = min(result.predicted.max_num_seqs, result.predicted.max_num_batched_tokens)
    value_bytes = 4 if engine.dtype == "float32" else 2
    sampler = seqs * result.case.arch.vocab_size * (value_bytes + 24) / 2**30  # warm-up buffers
    return free - (lg["cuda_graph_gib_actual"] or 0.0) - sampler


def test_warmup_warning_catches_every_logged_warmup_failure() -> None:
    """0.19 starts that sized their KV cache and then died in the sampler warm-up get the
    warning; starts that came up with more than 1.5 GiB to spare (by their logged figures) do
    not. Within that of the edge the graph pool's estimate decides, so a warning there is
    advisory (Gemma 3 12B / 27B and Llama 4 Scout came up with 0.3-0.6 GiB to spare)."""
    checked = 0
    for r in RESULTS:
        if not r.case.case_id.startswith("llmd-v0.19"):
            continue
        warned = any("warm-up" in note for note in r.predicted.notes)
        if r.case.logged["startup_succeeded"] is False:
            assert warned, r.case.case_id
        elif _logged_warmup_spare_gib(r) > 1.5:
            assert not warned, r.case.case_id
            checked += 1
    assert checked >= 25
