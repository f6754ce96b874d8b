"""`inferfleet curve`: predict what `vllm bench serve` would report for one replica.

Fixed prompt and output lengths (the random dataset with range ratio 0), a concurrency sweep
(`--max-concurrency`) or a request-rate sweep (Poisson arrivals), over the continuous-batching
simulator with the first-principles step-time model. JSON for other tools, a table for people,
and an optional plot of P99 TTFT/ITL against concurrency with the SLO lines and C_max.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from inferfleet.errors import UsageError
from inferfleet.inputs import check_plot_path, integer, number, positive_list
from inferfleet.models import add_model_arguments
from inferfleet.tables import render_table

if TYPE_CHECKING:
    from sizing.simulator import LoadPoint

NAME = "curve"
HELP = "predict the latency-throughput curve of one vLLM replica (like vllm bench serve)"
# `vllm bench serve` defaults we mirror.
DEFAULT_NUM_PROMPTS = 1000
DEFAULT_SEED = 0
MS_PER_S = 1000.0
SPECULATIVE_METHODS = ("mtp", "eagle", "eagle3", "ngram")


def _positive_list(kind: type[int] | type[float], flag: str) -> Callable[[str], list]:
    def parse(text: str) -> list:
        try:
            return positive_list(kind, flag, text)
        except UsageError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    model = parser.add_argument_group("model and replica (vLLM serve flags)")
    add_model_arguments(model)
    model.add_argument("--gpu", required=True, help="GPU name, e.g. H100 or L40S")
    model.add_argument("--tp", type=integer, default=1, help="tensor-parallel size")
    model.add_argument("--pp", type=integer, default=1, help="pipeline-parallel size")
    model.add_argument("--params-b", type=number, help="total parameters in billions (override)")
    model.add_argument("--dtype", default="auto", help="auto | bfloat16 | float16 | float32")
    model.add_argument(
        "--quantization", default="none", help="none (checkpoint as is) | fp8 | int8 | awq | ..."
    )
    model.add_argument("--kv-cache-dtype", default="auto", help="auto | fp8")
    model.add_argument("--max-model-len", type=integer, help="context limit (default: the model's)")
    model.add_argument("--max-num-seqs", type=integer, help="default: vLLM's for this GPU")
    model.add_argument(
        "--max-num-batched-tokens", type=integer, help="default: vLLM's for this GPU"
    )
    model.add_argument("--gpu-memory-utilization", type=number, default=0.9)
    model.add_argument("--enforce-eager", action="store_true", help="no CUDA graphs")
    model.add_argument(
        "--expert-parallel",
        action="store_true",
        help="--enable-expert-parallel: MoE experts spread whole over the TP ranks",
    )
    model.add_argument(
        "--data-parallel",
        type=integer,
        default=1,
        metavar="N",
        help="engine replicas inside one server; the load is shared, throughput is the server's",
    )
    model.add_argument(
        "--speculative",
        choices=SPECULATIVE_METHODS,
        help="speculative decoding method (not modelled yet: refused)",
    )
    model.add_argument("--num-speculative-tokens", type=integer, help="with --speculative")
    load = parser.add_argument_group("load (vllm bench serve flags)")
    load.add_argument("--input-len", type=integer, required=True, help="prompt tokens per request")
    load.add_argument("--output-len", type=integer, required=True, help="output tokens per request")
    sweep = load.add_mutually_exclusive_group(required=True)
    sweep.add_argument(
        "--concurrency", type=_positive_list(int, "--concurrency"), help="e.g. 1,8,64"
    )
    sweep.add_argument(
        "--request-rate", type=_positive_list(float, "--request-rate"), help="req/s, e.g. 2,4,8"
    )
    load.add_argument("--num-prompts", type=integer, default=DEFAULT_NUM_PROMPTS)
    load.add_argument("--seed", type=integer, default=DEFAULT_SEED, help="Poisson arrivals seed")
    out = parser.add_argument_group("output")
    out.add_argument("--output", choices=["text", "json"], default="text")
    out.add_argument(
        "--calibration",
        metavar="FILE.yaml",
        help="efficiency factors fitted by `inferfleet bench --calibrate`",
    )
    out.add_argument("--plot", metavar="FILE.png", help="draw P99 TTFT/ITL vs concurrency")
    out.add_argument("--ttft-slo-ms", type=number, help="TTFT P99 SLO line (and C_max)")
    out.add_argument("--itl-slo-ms", type=number, help="ITL P99 SLO line")


def _check_args(args: argparse.Namespace) -> None:
    if args.speculative or args.num_speculative_tokens is not None:
        raise UsageError(
            "--speculative/--num-speculative-tokens: speculative decoding is not modelled yet "
            "(acceptance rates vary by model and traffic); size without it, or measure with "
            "`inferfleet bench` and pass --calibration"
        )
    if args.data_parallel > 1 and args.expert_parallel:
        raise UsageError(
            "--data-parallel with --expert-parallel spreads experts over DP x TP ranks, which "
            "the memory model does not split yet; use --tp with --expert-parallel"
        )
    for flag in ("tp", "pp", "input_len", "output_len", "num_prompts", "data_parallel"):
        if getattr(args, flag) < 1:
            name = "--" + flag.replace("_", "-")
            raise UsageError(f"{name} must be >= 1, got {getattr(args, flag)}")
    if args.plot and args.output == "json":
        raise UsageError("--plot draws the text-mode sweep; drop --output json or --plot")
    if args.plot and not args.concurrency:
        raise UsageError("--plot needs a --concurrency sweep (C_max is a concurrency)")
    if args.plot:
        check_plot_path(args.plot)
    for flag in ("ttft_slo_ms", "itl_slo_ms"):
        value = getattr(args, flag)
        if value is not None and value <= 0:
            raise UsageError(f"--{flag.replace('_', '-')} must be > 0 ms, got {value}")


def predict_points(args: argparse.Namespace) -> list[LoadPoint]:
    """Build the replica from the flags and run the sweep."""
    import numpy as np

    from inferfleet.engine_flags import engine_config_from_args
    from inferfleet.models import load_arch
    from sizing.curve import replica_engine
    from sizing.frontend import ClientClosedLoop, engine_arrivals, front_end_of
    from sizing.hardware import get_gpu
    from sizing.memory import estimate_memory
    from sizing.performance import DEFAULT_EFFICIENCY
    from sizing.simulator import poisson_arrivals, simulate_arrivals

    arch = load_arch(args, args.params_b, "--model-config")
    gpu = get_gpu(args.gpu)
    cfg = engine_config_from_args(args)
    memory = estimate_memory(arch, gpu, cfg)
    if not memory.fits:
        raise UsageError(
            f"the model does not fit on {args.tp * args.pp} x {gpu.name} at TP {args.tp} "
            f"PP {args.pp}: {'; '.join(memory.notes)}"
        )
    if args.input_len + args.output_len > memory.max_model_len:
        raise UsageError(
            f"--input-len {args.input_len} + --output-len {args.output_len} exceeds "
            f"max_model_len {memory.max_model_len}; raise --max-model-len or shorten them"
        )
    efficiency = DEFAULT_EFFICIENCY
    if args.calibration:
        from inferfleet.calibration import load_calibration

        efficiency = load_calibration(args.calibration)
    step_model, limits = replica_engine(arch, gpu, cfg, memory, efficiency)
    # A client measures through the API server (sizing.frontend), as `vllm bench serve` does.
    # Data-parallel ranks are independent engines behind one API server that spreads the
    # load evenly: one rank is simulated with its share (of the load and of the server's
    # tokenizer), and the server's rates are N times it.
    ranks = args.data_parallel
    front_end = front_end_of(efficiency).shared_by(ranks)
    count = max(1, args.num_prompts // ranks)
    prompts = np.full(count, args.input_len)
    outputs = np.full(count, args.output_len)
    if args.concurrency:
        points = [
            ClientClosedLoop(limits, prompts, outputs, max(1, c // ranks), False, front_end).price(
                step_model
            )
            for c in args.concurrency
        ]
        return [server_point(p, ranks, c) for p, c in zip(points, args.concurrency, strict=True)]
    points = []
    for rate in args.request_rate:
        sent_s = poisson_arrivals(rate / ranks, count, np.random.default_rng(args.seed))
        arrive_s = engine_arrivals(front_end, sent_s, prompts)
        point = simulate_arrivals(
            step_model, limits, arrive_s, prompts, outputs, rate / ranks, sent_s=sent_s
        )
        points.append(server_point(point, ranks))
    return points


def server_point(point: LoadPoint, ranks: int, concurrency: int | None = None) -> LoadPoint:
    """One rank's point as the whole server reports it: rates times the ranks, the same
    latencies, the load as asked."""
    if ranks == 1:
        return point
    return replace(
        point,
        concurrency=concurrency if point.concurrency is not None else None,
        request_rate=point.request_rate * ranks if point.request_rate is not None else None,
        requests=point.requests * ranks,
        output_tok_per_s=point.output_tok_per_s * ranks,
        total_tok_per_s=point.total_tok_per_s * ranks,
        request_per_s=point.request_per_s * ranks,
        mean_running=point.mean_running * ranks,
    )


def point_json(point: LoadPoint) -> dict[str, float | int]:
    """One point in `vllm bench serve`'s units (milliseconds for latencies)."""
    load: dict[str, float | int] = (
        {"concurrency": point.concurrency}
        if point.concurrency is not None
        else {"request_rate": float(point.request_rate or 0.0)}
    )
    return {
        **load,
        "ttft_p50_ms": point.ttft_p50_s * MS_PER_S,
        "ttft_p99_ms": point.ttft_p99_s * MS_PER_S,
        "itl_p50_ms": point.itl_p50_s * MS_PER_S,
        "itl_p99_ms": point.itl_p99_s * MS_PER_S,
        "tpot_p50_ms": point.tpot_p50_s * MS_PER_S,
        "output_tok_per_s": point.output_tok_per_s,
        "total_tok_per_s": point.total_tok_per_s,
        "request_per_s": point.request_per_s,
    }


def band_json(points: list[LoadPoint]) -> list[dict[str, float | str]]:
    """Each point's regime and the interval its measured value is expected in (p10-p90 of
    the model's residuals on measured benchmarks in that regime); latencies' p99 get the
    high side, throughputs the low side is what a fleet should be sized on."""
    from sizing.error_bands import curve_regimes, interval

    regimes = curve_regimes(
        [p.concurrency if p.concurrency is not None else p.mean_running for p in points],
        [p.output_tok_per_s for p in points],
        [p.preemptions > 0 or p.kv_blocked_steps > 0 for p in points],
    )
    out: list[dict[str, float | str]] = []
    for p, regime in zip(points, regimes, strict=True):
        tok_low, tok_high = interval(p.output_tok_per_s, regime, "output_tok_per_s")
        ttft_low, ttft_high = interval(p.ttft_p50_s * MS_PER_S, regime, "ttft_ms")
        itl_low, itl_high = interval(p.itl_p50_s * MS_PER_S, regime, "tpot_ms")
        throughput_low = tok_low / p.output_tok_per_s if p.output_tok_per_s > 0 else 1.0
        out.append({
            "regime": regime,
            "output_tok_per_s_p10": tok_low,
            "output_tok_per_s_p90": tok_high,
            "request_per_s_p10": p.request_per_s * throughput_low,
            "ttft_p50_ms_p10": ttft_low,
            "ttft_p50_ms_p90": ttft_high,
            "ttft_p99_ms_high": interval(p.ttft_p99_s * MS_PER_S, regime, "ttft_ms")[1],
            "itl_p50_ms_p10": itl_low,
            "itl_p50_ms_p90": itl_high,
            "itl_p99_ms_high": interval(p.itl_p99_s * MS_PER_S, regime, "tpot_ms")[1],
        })  # fmt: skip
    return out


def c_max_of(points: list[LoadPoint], ttft_slo_ms: float | None, itl_slo_ms: float | None):
    """The highest swept concurrency within the SLOs (None without a TTFT SLO or a pass)."""
    if ttft_slo_ms is None:
        return None
    passing = [
        p.concurrency
        for p in points
        if p.concurrency is not None
        and p.ttft_p99_s * MS_PER_S <= ttft_slo_ms
        and (itl_slo_ms is None or p.itl_p99_s * MS_PER_S <= itl_slo_ms)
    ]
    return max(passing, default=None)


def format_table(points: list[LoadPoint]) -> str:
    header = ["load", "TTFT P50 ms", "TTFT P99 ms", "ITL P50 ms", "ITL P99 ms",
              "out tok/s", "total tok/s", "req/s", "batch", "preempt"]  # fmt: skip
    rows = []
    for p in points:
        load = f"C={p.concurrency}" if p.concurrency is not None else f"{p.request_rate:g} req/s"
        rows.append([
            load, f"{p.ttft_p50_s * MS_PER_S:.1f}", f"{p.ttft_p99_s * MS_PER_S:.1f}",
            f"{p.itl_p50_s * MS_PER_S:.2f}", f"{p.itl_p99_s * MS_PER_S:.2f}",
            f"{p.output_tok_per_s:,.0f}", f"{p.total_tok_per_s:,.0f}",
            f"{p.request_per_s:.2f}", f"{p.mean_batch_size:.1f}", str(p.preemptions),
        ])  # fmt: skip
    return render_table(header, rows)


def plot(
    points: list[LoadPoint],
    path: str,
    ttft_slo_ms: float | None,
    itl_slo_ms: float | None,
    c_max: int | None,
) -> None:
    """P99 TTFT and ITL against concurrency, SLO lines dashed, C_max marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conc = [p.concurrency for p in points]
    fig, (ttft_ax, itl_ax) = plt.subplots(2, 1, sharex=True, figsize=(7, 6))
    ttft_ax.plot(conc, [p.ttft_p99_s * MS_PER_S for p in points], "o-", label="TTFT P99")
    ttft_ax.plot(conc, [p.ttft_p50_s * MS_PER_S for p in points], ".--", label="TTFT P50")
    itl_ax.plot(conc, [p.itl_p99_s * MS_PER_S for p in points], "o-", label="ITL P99")
    for ax, slo, name in ((ttft_ax, ttft_slo_ms, "TTFT"), (itl_ax, itl_slo_ms, "ITL")):
        if slo is not None:
            ax.axhline(slo, color="red", linestyle="--", label=f"{name} SLO {slo:g} ms")
        if c_max is not None:
            ax.axvline(c_max, color="purple", linestyle=":", label=f"C_max {c_max}")
        ax.set_ylabel(f"{name} (ms)")
        ax.set_xscale("log", base=2)
        ax.set_xticks(conc, [str(c) for c in conc])
        ax.minorticks_off()
        ax.legend()
        ax.grid(True, alpha=0.3)
    itl_ax.set_xlabel("concurrency")
    ttft_ax.set_title("Predicted latency vs concurrency (one replica)")
    fig.tight_layout()
    try:
        fig.savefig(path)
    except OSError as err:
        raise UsageError(f"--plot: cannot write {path!r}: {err}") from None
    finally:
        plt.close(fig)


def run(args: argparse.Namespace) -> int:
    _check_args(args)
    points = predict_points(args)
    if args.output == "json":
        bands = band_json(points)
        rows = [{**point_json(p), **b} for p, b in zip(points, bands, strict=True)]
        json.dump({"points": rows}, sys.stdout, indent=2)
        print()
        return 0
    print(format_table(points))
    c_max = c_max_of(points, args.ttft_slo_ms, args.itl_slo_ms)
    if args.ttft_slo_ms is not None and args.concurrency:
        within = f"C_max {c_max}" if c_max is not None else "no swept concurrency"
        print(f"{within} meets TTFT P99 <= {args.ttft_slo_ms:g} ms"
              + (f" and ITL P99 <= {args.itl_slo_ms:g} ms" if args.itl_slo_ms else ""))  # fmt: skip
    if args.plot:
        plot(points, args.plot, args.ttft_slo_ms, args.itl_slo_ms, c_max)
        print(f"plot written to {args.plot}")
    return 0
