"""Compare the `vllm` memory method with real vLLM start-up logs, case by case.

Usage: python scripts/calibration_report.py [CALIBRATION_DIR]
(default: ../shared/data/calibration next to the repository; plus the repository's own
supplement of real logs the shared set lacks, tests/data/calibration/).

Prints, per usable case: predicted vs logged weights, activation peak, non-torch memory and KV
tokens, and the KV-token error; then the excluded cases with the reason, and the median / max
absolute error. `tests/unit/test_memory_calibration.py` asserts the targets on the same cases.
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sizing.hardware import get_gpu
from sizing.memory import EngineConfig, MemoryBreakdown, estimate_memory
from sizing.model import ModelArch, load_model_config
from sizing.units import GIB

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "calibration"
# Real start-up logs the shared set lacks, in its schema (see its README).
SUPPLEMENT_DIR = Path(__file__).resolve().parents[1] / "tests" / "data" / "calibration"
# GPU names as the logs print them -> our catalog.
# Longer names first: "L40S" before "L4", "RTX PRO 6000" before "A6000".
_GPU_WORDS = (
    ("H200", "H200"), ("H100", "H100"), ("A100", "A100-80GB"), ("L40S", "L40S"), ("L4", "L4"),
    ("T4", "T4"), ("4090", "RTX4090"), ("3090", "RTX3090"), ("RTX PRO 6000", "RTX-PRO-6000"),
    ("A6000", "A6000"), ("MI300X", "MI300X"), ("MI325X", "MI325X"), ("MI355X", "MI355X"),
    ("GB10", "GB10"), ("Thor", "Jetson-AGX-Thor"),
)  # fmt: skip


@dataclass(frozen=True)
class Case:
    case_id: str
    model: str
    gpu: str
    tp: int
    pp: int
    arch: ModelArch
    engine: EngineConfig
    logged: dict
    logged_tokens: int  # logged, or derived from the logged KV GiB when only that was printed
    tokens_derived: bool


@dataclass(frozen=True)
class Result:
    case: Case
    predicted: MemoryBreakdown

    @property
    def error(self) -> float:
        """Relative error of the predicted KV-token capacity."""
        return self.predicted.kv_cache_tokens / self.case.logged_tokens - 1


def _version(raw: str) -> tuple[int, int] | None:
    match = re.match(r"~?(\d+)\.(\d+)", raw or "")
    return (int(match[1]), int(match[2])) if match else None


def _flag(flags: str | None, name: str) -> int | None:
    match = re.search(rf"--{name}[ =](\d+)", flags or "")
    return int(match[1]) if match else None


def exclusion(case: dict, root: Path) -> str | None:
    """Why a case cannot check the V1 model, or None when it can."""
    version = _version(case["vllm_version"])
    if case["engine"] != "V1" or version is None or version < (0, 10):
        return f"V0 engine or before 0.10 ({case['vllm_version'][:12]}): other profiler"
    if case["case_id"].startswith(("unsloth-", "selfllm-")):
        return "Unsloth-managed vLLM: its own LoRA buffers and utilization"
    if case["gpu_memory_utilization"] is None or "unknown" in (case["gpu"] or "").lower():
        return "GPU or gpu_memory_utilization not stated"
    if "decode-context-parallel" in (case["other_flags"] or ""):
        return "decode context parallelism (not modelled)"
    if case["kv_tokens"] is None and case["kv_cache_gib"] is None:
        return "no KV figure logged"
    if _memory_failure(case, root):
        return "failed start for lack of KV memory: checked as a predicted failure instead"
    figures = [case[k] for k in ("weights_gib", "activation_peak_gib", "non_torch_gib")]
    if None not in figures and case["kv_cache_gib"] is not None:
        budget = case["gpu_memory_utilization"] * case["gpu_memory_gib_reported_per_gpu"]
        gap = budget - sum(figures) - case["kv_cache_gib"]
        if abs(gap) > 0.15:
            return (
                f"logged figures do not add up at the stated utilization "
                f"(off by {gap:+.2f} GiB): a transcription slip"
            )
    if "config-format=mistral" in (case["other_flags"] or ""):
        return (
            "Mistral-format loading on 0.11: activation peak 2.12 GiB, not the ~5.6 GiB every "
            "other 0.10-0.16 case shows; unexplained, so not used to judge the model"
        )
    return None


def _memory_failure(case: dict, root: Path) -> bool:
    """A FAILED start whose KV cache could not hold one max_model_len request (others failed
    later, e.g. in warm-up, and their sizing figures are still good)."""
    if "FAILED" not in case["case_id"]:
        return False
    kv = case["kv_cache_gib"]
    if kv is None or kv <= 0:
        return True
    tokens = case["kv_tokens"]
    if tokens is None:  # only GiB logged: convert with the model's own bytes per token
        arch = load_model_config(json.loads((root / case["model_config"]).read_text()))
        per_token = arch.kv_bytes_per_token(2.0, case["tensor_parallel_size"])
        tokens = int(kv * GIB // per_token)
    return tokens < (case["max_model_len"] or 0)


def _gpu_name(raw: str) -> str:
    for word, name in _GPU_WORDS:
        if word in raw:
            return name
    raise ValueError(f"no catalog GPU for {raw!r}")


def build_case(case: dict, root: Path) -> Case:
    config = json.loads((root / case["model_config"]).read_text())
    arch = load_model_config(config, name=case["model_id"])
    quant = case["quantization"] or ""
    dtype = (case["dtype"] or "auto").split()[0]
    engine = EngineConfig(
        tp=case["tensor_parallel_size"],
        pp=case["pipeline_parallel_size"] or 1,
        dtype=dtype if dtype in ("bfloat16", "float16", "float32") else "auto",
        quantization="fp8" if "runtime" in quant else "none",
        kv_cache_dtype=case["kv_cache_dtype"] or "auto",
        gpu_memory_utilization=case["gpu_memory_utilization"],
        max_model_len=case["max_model_len"],
        max_num_batched_tokens=_flag(case["other_flags"], "max-num-batched-tokens"),
        block_size=case["block_size"] or 16,
        vllm_version="{}.{}".format(*_version(case["vllm_version"])),
    )
    predicted_shape = estimate_memory(arch, get_gpu(_gpu_name(case["gpu"])), engine)
    tokens = case["kv_tokens"]
    derived = tokens is None
    if derived:
        tokens = int(case["kv_cache_gib"] * GIB // predicted_shape.kv_bytes_per_token)
    return Case(
        case_id=case["case_id"],
        model=case["model_id"],
        gpu=_gpu_name(case["gpu"]),
        tp=engine.tp,
        pp=engine.pp,
        arch=arch,
        engine=engine,
        logged=case,
        logged_tokens=tokens,
        tokens_derived=derived,
    )


def load_cases(
    root: Path = DEFAULT_DIR, supplement: Path | None = SUPPLEMENT_DIR
) -> tuple[list[Case], list[tuple[str, str]]]:
    """(usable cases, [(excluded case id, why)]) of the shared set and the supplement."""
    usable, excluded = [], []
    for folder in (root, supplement):
        if folder is None:
            continue
        for case in json.loads((folder / "vllm_startup_memory.json").read_text()):
            why = exclusion(case, folder)
            if why:
                excluded.append((case["case_id"], why))
            else:
                usable.append(build_case(case, folder))
    return usable, excluded


def failed_starts(root: Path = DEFAULT_DIR) -> list[tuple[str, MemoryBreakdown]]:
    """V1 start-ups that failed for memory, with our prediction (which should say so)."""
    raw = json.loads((root / "vllm_startup_memory.json").read_text())
    out = []
    for case in raw:
        version = _version(case["vllm_version"])
        if case["engine"] != "V1" or version < (0, 10) or not _memory_failure(case, root):
            continue
        config = json.loads((root / case["model_config"]).read_text())
        arch = load_model_config(config, name=case["model_id"])
        engine = EngineConfig(
            gpu_memory_utilization=case["gpu_memory_utilization"],
            max_model_len=case["max_model_len"],
            max_num_batched_tokens=_flag(case["other_flags"], "max-num-batched-tokens"),
            block_size=case["block_size"] or 16,
            vllm_version="{}.{}".format(*version),
        )
        out.append(
            (case["case_id"], estimate_memory(arch, get_gpu(_gpu_name(case["gpu"])), engine))
        )
    return out


def predicts_failure(memory: MemoryBreakdown) -> bool:
    """vLLM refuses to start without room for one request of max_model_len."""
    return not memory.fits or memory.kv_cache_tokens < memory.max_model_len


def evaluate(cases: list[Case]) -> list[Result]:
    return [
        Result(case, estimate_memory(case.arch, get_gpu(case.gpu), case.engine)) for case in cases
    ]


def release(result: Result) -> str:
    return result.case.engine.vllm_version


def gpu_family(result: Result) -> str:
    gpu = get_gpu(result.case.gpu)
    return gpu.architecture or gpu.vendor


def gpu_name(result: Result) -> str:
    return result.case.gpu


def error_table(
    results: list[Result], *keys: Callable[[Result], str]
) -> list[tuple[str, int, float, float]]:
    """(group, cases, median |error| %, max |error| %) per distinct value of the keys."""
    groups: dict[str, list[float]] = {}
    for r in results:
        groups.setdefault(" / ".join(key(r) for key in keys), []).append(100 * abs(r.error))
    return [
        (name, len(errs), statistics.median(errs), max(errs))
        for name, errs in sorted(groups.items())
    ]


def _fmt(value: float | None) -> str:
    return "   -  " if value is None else f"{value:6.2f}"


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else DEFAULT_DIR
    cases, excluded = load_cases(root)
    results = evaluate(cases)
    print(f"{'case':58} {'gpu':9} tp pp   weights(p/l)   activ(p/l)   nontorch(p/l) "
          f"{'kv tokens pred':>14} {'logged':>10}  err%")  # fmt: skip
    for r in results:
        c, p, lg = r.case, r.predicted, r.case.logged
        mark = "*" if c.tokens_derived else " "
        print(
            f"{c.case_id[:58]:58} {c.gpu:9} {c.tp:2} {c.pp:2} "
            f"{p.weights_gib:6.2f}/{_fmt(lg['weights_gib'])} "
            f"{p.activation_gib:5.2f}/{_fmt(lg['activation_peak_gib'])} "
            f"{p.non_torch_gib:5.2f}/{_fmt(lg['non_torch_gib'])} "
            f"{p.kv_cache_tokens:14d} {c.logged_tokens:10d}{mark} {100 * r.error:+6.2f}"
        )
    errors = [abs(r.error) for r in results]
    median, worst = 100 * statistics.median(errors), 100 * max(errors)
    print(f"\n{len(results)} usable cases: median |error| {median:.2f} %, max {worst:.2f} %"
          "  (* = logged tokens derived from logged KV GiB)")  # fmt: skip
    for title, keys in (
        ("vLLM release", (release,)),
        ("GPU family", (gpu_family,)),
        ("release / GPU", (release, gpu_name)),
    ):
        print(f"\nKV-token error by {title}:")
        print(f"  {'group':44} {'cases':>5} {'median %':>9} {'max %':>7}")
        for name, count, med, top in error_table(results, *keys):
            print(f"  {name:44} {count:5d} {med:9.2f} {top:7.2f}")
    print("\nfailed start-ups (we should predict failure):")
    for case_id, memory in failed_starts(root):
        print(f"  {case_id[:60]:60} predicted failure: {predicts_failure(memory)} "
              f"(KV {memory.kv_cache_gib:.2f} GiB, {memory.kv_cache_tokens} tokens "
              f"for max_model_len {memory.max_model_len})")  # fmt: skip
    print(f"\n{len(excluded)} excluded:")
    for case_id, why in excluded:
        print(f"  {case_id[:60]:60} {why}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
