"""`inferfleet bench`: measure an endpoint's load curve, in the shape `inferfleet curve` predicts.

Each value of `--concurrency` (closed loop) or `--request-rate` (Poisson open loop) is one load
point, driven for `--num-prompts` requests or `--duration-s` seconds. Ctrl-C prints what was
measured so far and exits 130; failed and timed-out requests are counted, never fatal.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from inferfleet.errors import UsageError
from inferfleet.inputs import check_plot_path, integer, number, positive_list
from inferfleet.tables import render_table

if TYPE_CHECKING:
    from controllers.adapters.benchmark import LoadPoint, LoadSpec, Recorder, XKey
    from inferfleet.calibration import Predictor

NAME = "bench"
HELP = "measure TTFT, ITL and throughput of an OpenAI-compatible endpoint (vLLM or the emulator)"
EXIT_INTERRUPTED = 130


def _check_url(text: str) -> None:
    """A base URL the client can send to: http(s), a host, a valid port, no spaces or query."""
    from urllib.parse import urlsplit

    expected = "a base URL like http://host:8000"
    try:
        url = urlsplit(text)
        port = url.port  # parsing the port is what may fail
    except ValueError as err:
        raise UsageError(f"--url must be {expected}, got {text!r} ({err})") from err
    if url.scheme not in ("http", "https"):
        raise UsageError(f"--url must start with http:// or https://, got {text!r}")
    if not url.hostname or any(c.isspace() for c in text):
        raise UsageError(f"--url needs a host and no spaces ({expected}), got {text!r}")
    if port == 0:
        raise UsageError(f"--url port must be 1-65535, got {text!r}")
    if url.query or url.fragment:
        raise UsageError(f"--url must be {expected} without ?query or #fragment, got {text!r}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url", required=True, help="base URL of the server, e.g. http://host:8000"
    )
    parser.add_argument("--model", required=True, help="served model name sent in each request")
    parser.add_argument(
        "--input-len", type=integer, required=True, help="prompt tokens per request"
    )
    parser.add_argument(
        "--output-len", type=integer, required=True, help="output tokens per request"
    )
    load = parser.add_mutually_exclusive_group(required=True)
    load.add_argument("--concurrency", help="closed loop: requests in flight, e.g. 1,8,64")
    load.add_argument("--request-rate", help="open loop: Poisson arrivals per second, e.g. 2,4,8")
    parser.add_argument("--num-prompts", type=integer, help="requests per load point")
    parser.add_argument("--duration-s", type=number, help="seconds per load point")
    parser.add_argument(
        "--endpoint",
        default="/v1/completions",
        help="API path: /v1/completions (token-id prompts) or /v1/chat/completions",
    )
    parser.add_argument("--request-timeout-s", type=number, default=600.0)
    parser.add_argument(
        "--time-scale",
        type=number,
        default=1.0,
        help="the emulator's --speedup: request rates, durations and results are then all in "
        "emulated GPU time (the wall clock runs this many times faster)",
    )
    parser.add_argument("--seed", type=integer, default=0)
    parser.add_argument("--output", choices=["text", "json"], default="text")
    parser.add_argument("--plot", metavar="FILE.png", help="draw TTFT/ITL P99 and throughput")
    cal = parser.add_argument_group(
        "calibration: fit the step-time model's efficiency to the measured --concurrency curve"
    )
    cal.add_argument("--calibrate", action="store_true", help="fit and write --calibration-out")
    cal.add_argument("--calibration-out", metavar="FILE.yaml", help="where to write the fit")
    cal.add_argument("--model-config", metavar="PATH", help="the served model's config.json")
    cal.add_argument("--gpu", help="GPU of the measured replica, e.g. H100 or L4")
    cal.add_argument("--tp", type=integer, default=1)
    cal.add_argument("--pp", type=integer, default=1)
    cal.add_argument("--dtype", default="auto")
    cal.add_argument("--quantization", default="none")
    cal.add_argument("--kv-cache-dtype", default="auto")
    cal.add_argument("--max-model-len", type=integer)
    cal.add_argument("--max-num-seqs", type=integer)
    cal.add_argument("--max-num-batched-tokens", type=integer)
    cal.add_argument("--gpu-memory-utilization", type=number, default=0.9)
    cal.add_argument("--enforce-eager", action="store_true")


@dataclass(frozen=True)
class BenchPlan:
    x_key: XKey
    xs: tuple[float, ...]
    spec: LoadSpec
    time_scale: float


def plan_from_args(args: argparse.Namespace) -> BenchPlan:
    for flag, value in (("--input-len", args.input_len), ("--output-len", args.output_len)):
        if value < 1:
            raise UsageError(f"{flag} must be >= 1 token, got {value}")
    if args.num_prompts is None and args.duration_s is None:
        raise UsageError("give --num-prompts N or --duration-s S to say how long each point runs")
    if args.num_prompts is not None and args.num_prompts < 1:
        raise UsageError(f"--num-prompts must be >= 1, got {args.num_prompts}")
    if args.duration_s is not None and args.duration_s <= 0:
        raise UsageError(f"--duration-s must be > 0 seconds, got {args.duration_s}")
    if args.time_scale <= 0:
        raise UsageError(f"--time-scale must be > 0, got {args.time_scale}")
    _check_url(args.url)
    x_key: XKey
    if args.concurrency is not None:
        x_key, xs = "concurrency", positive_list(int, "--concurrency", args.concurrency)
    else:
        x_key, xs = "request_rate", positive_list(float, "--request-rate", args.request_rate)
    from controllers.adapters.benchmark import LoadSpec

    spec = LoadSpec(
        url=args.url,
        model=args.model,
        input_len=args.input_len,
        output_len=args.output_len,
        endpoint=args.endpoint,
        duration_s=None if args.duration_s is None else args.duration_s / args.time_scale,
        num_prompts=args.num_prompts,
        request_timeout_s=args.request_timeout_s,
        seed=args.seed,
    )
    return BenchPlan(x_key, tuple(xs), spec, args.time_scale)


@dataclass
class _Progress:
    """A one-line progress bar on stderr, only when stderr is a terminal."""

    label: str
    total: int | None
    duration_s: float | None
    started_at: float = field(default_factory=time.perf_counter)
    enabled: bool = field(default_factory=sys.stderr.isatty)

    def __call__(self, recorder: Recorder) -> None:
        if not self.enabled:
            return
        done = len(recorder.records)
        if self.total is not None:
            frac = done / self.total
        else:
            frac = (time.perf_counter() - self.started_at) / (self.duration_s or 1.0)
        frac = min(max(frac, 0.0), 1.0)
        bar = "#" * int(30 * frac)
        failed = sum(1 for r in recorder.records if not r.ok)
        sys.stderr.write(f"\r{self.label} [{bar:<30}] {done} done, {failed} failed")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


async def measure(plan: BenchPlan, stop: asyncio.Event) -> tuple[list[LoadPoint], bool]:
    """Every load point in turn; returns the points and whether Ctrl-C cut the run short."""
    from controllers.adapters.benchmark import Recorder, run_closed_loop, run_open_loop, summarize

    points: list[LoadPoint] = []
    for x in plan.xs:
        progress = _Progress(f"{plan.x_key}={x:g}", plan.spec.num_prompts, plan.spec.duration_s)
        recorder = Recorder(on_change=progress)
        if plan.x_key == "concurrency":
            wall_s = await run_closed_loop(plan.spec, int(x), recorder, stop)
        else:
            wall_s = await run_open_loop(plan.spec, x * plan.time_scale, recorder, stop)
        progress.close()
        if recorder.records:
            points.append(summarize(recorder.records, plan.x_key, x, wall_s, plan.time_scale))
        if stop.is_set():
            return points, True
    return points, False


async def _measure_until_interrupted(plan: BenchPlan) -> tuple[list[LoadPoint], bool]:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, stop.set)
    try:
        return await measure(plan, stop)
    finally:
        loop.remove_signal_handler(signal.SIGINT)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{float(value):.1f}"


def format_points(points: list[LoadPoint], x_key: XKey) -> str:
    header = [x_key, "TTFT P50 ms", "TTFT P99 ms", "ITL P50 ms", "ITL P99 ms",
              "out tok/s", "total tok/s", "req/s", "failed", "timed out"]  # fmt: skip
    rows = [
        [
            f"{float(p[x_key]):g}",
            _ms(p["ttft_p50_ms"]),
            _ms(p["ttft_p99_ms"]),
            _ms(p["itl_p50_ms"]),
            _ms(p["itl_p99_ms"]),
            f"{float(p['output_tok_per_s']):.1f}",
            f"{float(p['total_tok_per_s']):.1f}",
            f"{float(p['request_per_s']):.2f}",
            str(p["failed"]),
            str(p["timed_out"]),
        ]
        for p in points
    ]
    return render_table(header, rows)


def plot_points(points: list[LoadPoint], x_key: XKey, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [float(p[x_key]) for p in points]
    fig, (lat, thr) = plt.subplots(1, 2, figsize=(11, 4))
    key: Literal["ttft_p99_ms", "itl_p99_ms"]
    for key, label in (("ttft_p99_ms", "TTFT P99"), ("itl_p99_ms", "ITL P99")):
        ys = [float("nan") if p[key] is None else p[key] for p in points]
        lat.plot(xs, ys, "o-", label=label)
    lat.set_xlabel(x_key.replace("_", " "))
    lat.set_ylabel("ms")
    lat.set_yscale("log")
    lat.legend()
    thr.plot(xs, [p["output_tok_per_s"] for p in points], "o-", label="output tok/s")
    thr.set_xlabel(x_key.replace("_", " "))
    thr.set_ylabel("tokens/s")
    thr.legend()
    fig.suptitle("measured load curve")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def calibration_predictor(args: argparse.Namespace) -> Predictor:
    """Check the --calibrate flags and build the replica model before any load is sent."""
    missing = [
        flag
        for flag, value in (
            ("--calibration-out", args.calibration_out),
            ("--model-config", args.model_config),
            ("--gpu", args.gpu),
            ("--concurrency", args.concurrency),
        )
        if not value
    ]
    if missing:
        raise UsageError(f"--calibrate needs {', '.join(missing)} (closed-loop points only)")
    from inferfleet.calibration import simulator_predictor
    from inferfleet.engine_flags import engine_config_from_args
    from inferfleet.manifests import load_json_file
    from sizing.hardware import get_gpu
    from sizing.memory import estimate_memory
    from sizing.model import load_model_config

    arch = load_model_config(load_json_file(args.model_config, "--model-config"))
    gpu = get_gpu(args.gpu)
    cfg = engine_config_from_args(args)
    memory = estimate_memory(arch, gpu, cfg)
    if not memory.fits:
        raise UsageError(f"the model does not fit on {gpu.name}: {'; '.join(memory.notes)}")
    return simulator_predictor(arch, gpu, cfg, memory, args.input_len, args.output_len)


def calibrate(args: argparse.Namespace, predict: Predictor, points: list[LoadPoint]) -> str:
    """Fit the efficiency to the measured points, write the YAML, say how good the fit is."""
    from inferfleet.calibration import (
        MeasuredPoint,
        calibration_document,
        fit_efficiency,
        write_calibration,
    )

    def seconds(ms: float | None) -> float | None:
        return None if ms is None else float(ms) / 1000

    measured = [
        MeasuredPoint(
            concurrency=int(p["concurrency"]),
            num_prompts=int(p["completed"]),
            ttft_p50_s=seconds(p["ttft_p50_ms"]),
            itl_p50_s=seconds(p["itl_p50_ms"]),
            output_tok_per_s=float(p["output_tok_per_s"]),
        )
        for p in points
        if p["completed"]
    ]
    fit = fit_efficiency(predict, measured)
    document = calibration_document(fit, args.gpu, args.model, len(measured))
    write_calibration(args.calibration_out, document)
    e = fit.efficiency
    return (
        f"calibration written to {args.calibration_out}: compute_fraction "
        f"{e.compute_fraction:.3f}, hbm_fraction {e.hbm_fraction:.3f}, step_overhead_s "
        f"{e.step_overhead_s:.4f} (RMS log error {fit.rms_log_error_before:.3f} -> "
        f"{fit.rms_log_error_after:.3f})"
    )


def run(args: argparse.Namespace) -> int:
    if args.plot:
        check_plot_path(args.plot)
    plan = plan_from_args(args)
    predict = calibration_predictor(args) if args.calibrate else None
    try:
        points, interrupted = asyncio.run(_measure_until_interrupted(plan))
    except KeyboardInterrupt:  # Ctrl-C before the first load point started
        points, interrupted = [], True
    if args.output == "json":
        json.dump({"points": points}, sys.stdout, indent=2)
        print()
    else:
        print(format_points(points, plan.x_key))
    if args.plot and points:
        plot_points(points, plan.x_key, args.plot)
    if interrupted:
        print("inferfleet bench: interrupted; printed the points measured so far", file=sys.stderr)
        return EXIT_INTERRUPTED
    if predict is not None:
        print(f"inferfleet bench: {calibrate(args, predict, points)}", file=sys.stderr)
    return 0
