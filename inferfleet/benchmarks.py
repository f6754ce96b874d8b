"""Reading the measured vLLM benchmark set (points.jsonl + configs/) into benchmark cases.

Each point is asked of the model the way its benchmark asked vLLM (the set's README, "How to
use it"): `max_concurrency` points as a closed loop at that concurrency over the same number
of prompts; ML.ENERGY points as a closed loop at the server's `max_num_seqs` with a saturated
queue, measured in steady state. What a source did not publish is an assumption named here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from inferfleet.errors import UsageError
from inferfleet.inputs import read_text
from sizing.accuracy import BenchmarkCase, Measured
from sizing.error_bands import regime_of
from sizing.errors import SizingError
from sizing.hardware import get_gpu
from sizing.memory import EngineConfig
from sizing.model import ModelArch, load_model_config

# The set sits beside the repository (REPO/../shared/data/benchmarks).
DEFAULT_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "benchmarks"
# ML.ENERGY publishes no input length. Assumed prompt tokens per task, chat template included:
# LMArena chat turns and GPQA-diamond questions are a few hundred tokens, Sourcegraph FIM
# prompts carry the code around the hole (the set's README). Output lengths are measured means.
ASSUMED_INPUT_LEN = {"LMArena": 400, "GPQA": 300, "Sourcegraph": 1500}
# Prompts per point where the source does not say (vllm bench serve's habit of 10 per slot).
PROMPTS_PER_SLOT = 10
_SOURCES = {"mlenergy": "ml.energy", "ix": "inferencex", "blog": "vllm-blog", "vultr": "vultr"}
_KV_BOUND_SHARE = 0.9
# The sweeps the set's README calls suspicious ("GPQA on B200 ... a 30-45 ms ITL floor at
# max_num_seqs 8-64 ... something not recorded differs in those runs"): scored, never fitted.
FLAGGED_SWEEPS = ("gpqa-Qwen3-8B-b200", "gpqa-Qwen3-14B-b200", "gpqa-Qwen3-32B-b200",
                  "gpqa-Qwen3-30B-A3B-Thinking-2507-b200", "gpqa-NVIDIA-Nemotron-Nano-12B-v2-b200",
                  "gpqa-NVIDIA-Nemotron-Nano-9B-v2-b200")  # fmt: skip
# Which statistic each published latency field is (sizing.accuracy.TTFT_STATS / TPOT_STATS).
_STAT_OF = {
    "ttft_median_ms": "median",
    "ttft_mean_ms": "mean",
    "tpot_median_ms": "tpot_median",
    "tpot_mean_ms": "tpot_mean",
    "itl_median_ms": "itl_median",
}  # a running batch below this share of max_num_seqs was KV-limited


def _source(case_id: str) -> str:
    return _SOURCES.get(case_id.split("-", 1)[0], case_id.split("-", 1)[0])


def _vllm_version(text: str) -> str:
    found = re.search(r"(\d+)\.(\d+)", text or "")
    return f"{found.group(1)}.{found.group(2)}" if found else "0.16"


def _input_len(point: dict[str, Any]) -> int:
    if point.get("input_len"):
        return round(point["input_len"])
    for marker, tokens in ASSUMED_INPUT_LEN.items():
        if marker in str(point.get("dataset")):
            return tokens
    raise UsageError(f"{point['case_id']}: no input_len and no assumption for its dataset")


def _length_spread(point: dict[str, Any]) -> float:
    """The +-share lengths vary by, where the source states one ("+/-15% variance")."""
    found = re.search(r"(?:\+/-|±)\s*(\d+(?:\.\d+)?)\s*%", str(point.get("length_distribution")))
    return float(found.group(1)) / 100 if found else 0.0


def _avg_batch(point: dict[str, Any]) -> float | None:
    found = re.search(r"avg_batch_size=([\d.]+)", str(point.get("notes")))
    return float(found.group(1)) if found else None


def _published(point: dict[str, Any], *keys: str) -> str | None:
    """The first of `keys` the source published a value for."""
    return next((k for k in keys if point.get(k) is not None), None)


def _case(
    point: dict[str, Any], arch: ModelArch, quantization: str, sweep_best: float
) -> BenchmarkCase:
    flags = point["flags"]
    dp = int(point.get("data_parallel_size") or 1)
    server_side = point["load_kind"] != "max_concurrency"
    load = round(point["effective_load"])
    # Data-parallel runs state it as "N total (M per DP rank)": the engine's is the first.
    max_num_seqs = int(str(flags["max_num_seqs"]).split()[0]) if flags.get("max_num_seqs") else None
    engine = EngineConfig(
        tp=int(point["tensor_parallel_size"]),
        pp=int(point.get("pipeline_parallel_size") or 1),
        quantization=quantization,
        kv_cache_dtype="fp8" if str(point.get("kv_cache_dtype")).startswith("fp8") else "auto",
        gpu_memory_utilization=float(flags.get("gpu_memory_utilization") or 0.9),
        max_model_len=flags.get("max_model_len"),
        max_num_seqs=max(1, max_num_seqs // dp) if max_num_seqs else None,
        max_num_batched_tokens=flags.get("max_num_batched_tokens"),
        enforce_eager=bool(flags.get("enforce_eager")),
        expert_parallel=bool(point.get("expert_parallel")),
        vllm_version=_vllm_version(point.get("vllm_version", "")),
    )
    avg_batch = _avg_batch(point)
    kv_bound = avg_batch is not None and avg_batch < _KV_BOUND_SHARE * load
    ttft_key = _published(point, "ttft_median_ms", "ttft_mean_ms")
    tpot_key = _published(point, "tpot_median_ms", "itl_median_ms", "tpot_mean_ms")
    measured = Measured(
        output_tok_per_s=float(point["output_tok_per_s"]),
        ttft_ms=float(point[ttft_key]) if ttft_key else None,
        tpot_ms=float(point[tpot_key]) if tpot_key else None,
        ttft_stat=_STAT_OF[ttft_key or "ttft_median_ms"],
        tpot_stat=_STAT_OF[tpot_key or "itl_median_ms"],
    )
    sweep_id = point.get("sweep_id") or point["case_id"]
    return BenchmarkCase(
        case_id=point["case_id"],
        sweep_id=sweep_id,
        source=_source(point["case_id"]),
        gpu=get_gpu(point["gpu_family"]).name,
        model_id=point["model_id"],
        arch=arch,
        engine=engine,
        data_parallel=dp,
        concurrency=load,
        input_len=_input_len(point),
        output_len=max(1, round(point["output_len"])),
        num_prompts=int(point.get("num_prompts") or PROMPTS_PER_SLOT * load),
        steady_state=server_side,
        measured=measured,
        regime=regime_of(load, measured.output_tok_per_s, sweep_best, kv_bound),
        confidence=point.get("confidence", "medium"),
        length_spread=_length_spread(point),
        flagged=any(f"-{name}-" in f"{sweep_id}-" for name in FLAGGED_SWEEPS),
    )


def load_cases(folder: Path = DEFAULT_DIR) -> tuple[list[BenchmarkCase], list[str]]:
    """Every point the model can be asked, and why each other one was skipped."""
    lines = read_text(folder / "points.jsonl", "benchmark points").splitlines()
    index_path = folder / "configs" / "INDEX.json"
    try:
        index = json.loads(read_text(index_path, "benchmark index"))
        points = [json.loads(line) for line in lines if line.strip()]
    except (json.JSONDecodeError, RecursionError) as err:
        raise UsageError(f"the benchmark set in {folder} is not valid JSON: {err}") from None
    if not isinstance(index, dict) or not all(isinstance(p, dict) for p in points):
        raise UsageError(
            f"the benchmark set in {folder}: INDEX.json and every points.jsonl line must be "
            "JSON objects"
        )
    best: dict[str, float] = {}
    cases, skipped = [], []
    malformed = (KeyError, TypeError, ValueError, AttributeError)
    usable = []
    for n, p in enumerate(points, start=1):
        try:
            sweep = p.get("sweep_id") or p["case_id"]
            best[sweep] = max(best.get(sweep, 0.0), float(p["output_tok_per_s"]))
        except malformed as err:
            skipped.append(f"points.jsonl line {n}: malformed ({type(err).__name__}: {err})")
        else:
            usable.append((n, p))
    archs: dict[str, ModelArch] = {}
    for n, p in usable:
        try:
            entry = index.get(p["model_id"]) or {}
            quantization = entry.get("quantization_flag") or "none"
            if p["model_config"] not in archs:
                config = json.loads(read_text(folder / p["model_config"], "model config"))
                archs[p["model_config"]] = load_model_config(config)
            sweep = p.get("sweep_id") or p["case_id"]
            cases.append(_case(p, archs[p["model_config"]], quantization, best[sweep]))
        except SizingError as err:
            skipped.append(f"{p['case_id']}: {err}")
        except malformed as err:
            skipped.append(f"points.jsonl line {n}: malformed ({type(err).__name__}: {err})")
    return cases, skipped
