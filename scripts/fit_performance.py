"""Fit the step-time model's few global efficiencies on the measured vLLM benchmark set.

    python scripts/fit_performance.py [--hold-out source|model|gpu] [--evaluations N]

Minimises the mean absolute log error of output tok/s, TPOT and TTFT over every other point
of each sweep (the rest are for scoring), starting from the current defaults. With
--hold-out it fits once per group with that group left out and scores the group it did not
see: the estimate of how the model does on sources, models or GPUs it was not fitted on.
The sweeps the benchmark README calls suspicious (GPQA on B200 with a 30-45 ms ITL floor)
are left out of every fit but kept in the scores.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, replace

import numpy as np

from inferfleet.benchmarks import load_cases
from inferfleet.calibration import nelder_mead
from sizing.accuracy import METRICS, BenchmarkCase, Scored, error_table, score
from sizing.performance import DEFAULT_EFFICIENCY, Efficiency

# (field, kind): fractions are searched as logits, the rest as logs.
FITTED = (
    ("compute_fraction", "fraction"),
    ("hbm_fraction", "fraction"),
    ("expert_hbm_fraction", "fraction"),
    ("attention_hbm_fraction", "fraction"),
    ("block_fp8_expert_speed", "fraction"),
    ("roofline_overlap", "fraction"),
    ("routing_skew", "log"),
    ("allreduce_latency_s", "log"),
    ("step_overhead_s", "log"),
    ("eager_launch_s_per_layer", "log"),
    ("per_sequence_overhead_s", "log"),
)
SUSPICIOUS = ("gpqa-Qwen3-8B-b200", "gpqa-Qwen3-14B-b200", "gpqa-Qwen3-32B-b200",
              "gpqa-Qwen3-30B-A3B-Thinking-2507-b200", "gpqa-NVIDIA-Nemotron-Nano-12B-v2-b200",
              "gpqa-NVIDIA-Nemotron-Nano-9B-v2-b200")  # fmt: skip


def to_search(e: Efficiency) -> np.ndarray:
    values = []
    for name, kind in FITTED:
        v = getattr(e, name)
        values.append(math.log(v / (1 - v + 1e-9)) if kind == "fraction" else math.log(v))
    return np.array(values)


def from_search(x: np.ndarray, base: Efficiency) -> Efficiency:
    changes = {}
    for (name, kind), v in zip(FITTED, x, strict=True):
        changes[name] = min(1.0, 1 / (1 + math.exp(-v))) if kind == "fraction" else math.exp(v)
    return replace(base, **changes)


def misfit(scored: list[Scored]) -> float:
    errors = []
    for s in scored:
        for metric in METRICS:
            measured = getattr(s.case.measured, metric)
            predicted = getattr(s.predicted, metric)
            if measured and predicted > 0:
                errors.append(abs(math.log(predicted / measured)))
    return float(np.mean(errors))


def fit(cases: list[BenchmarkCase], start: Efficiency, evaluations: int) -> Efficiency:
    def objective(x: np.ndarray) -> float:
        scored, _ = score(cases, from_search(x, start))
        return misfit(scored)

    best, value, used = nelder_mead(objective, to_search(start), evaluations, 1e-4)
    print(f"fit: misfit {objective(to_search(start)):.4f} -> {value:.4f} in {used} runs",
          file=sys.stderr)  # fmt: skip
    return from_search(best, start)


def summary(scored: list[Scored]) -> dict[str, dict[str, float]]:
    out = {}
    for metric in METRICS:
        stats = error_table(scored, "all", metric).get("all")
        if stats:
            out[metric] = {"n": stats.count, "median": round(stats.median_pct, 1),
                           "p90": round(stats.p90_pct, 1)}  # fmt: skip
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hold-out", choices=["source", "model", "gpu"])
    parser.add_argument("--evaluations", type=int, default=200)
    args = parser.parse_args()
    cases, _ = load_cases()
    fittable = [c for c in cases if not any(s in c.sweep_id for s in SUSPICIOUS)]
    if not args.hold_out:
        train = [c for i, c in enumerate(fittable) if i % 2 == 0]
        fitted = fit(train, DEFAULT_EFFICIENCY, args.evaluations)
        print(json.dumps({k: v for k, v in asdict(fitted).items()
                          if k in dict(FITTED)}, indent=1))  # fmt: skip
        return 0
    key = {"source": lambda c: c.source, "model": lambda c: c.model_id, "gpu": lambda c: c.gpu}
    group_of = key[args.hold_out]
    held_out_scored = []
    for group in sorted({group_of(c) for c in cases}):
        train = [c for c in fittable if group_of(c) != group][::2]
        fitted = fit(train, DEFAULT_EFFICIENCY, args.evaluations)
        scored, _ = score([c for c in cases if group_of(c) == group], fitted)
        held_out_scored += scored
        print(group, json.dumps(summary(scored)))
    print("held out, all groups:", json.dumps(summary(held_out_scored)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
