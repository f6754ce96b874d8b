"""`python -m e2e.emulator`: one emulated vLLM replica (+ its dcgm-exporter) on the wall clock.

It accepts vLLM's own server flags (`--model`, `--tensor-parallel-size`, `--max-model-len`,
`--max-num-seqs`, ...) so the operator's Deployments run it unchanged; vLLM flags it does not
model are accepted and ignored. Emulator-only flags: `--gpu`, `--model-config`, `--speedup`,
`--speed-factor`, `--startup-delay-s`, `--dcgm-port`, `--seed`, fault rates.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from e2e.emulator.dcgm import DcgmExporter
from e2e.emulator.driver import DEFAULT_ADMISSION_WINDOW_S, RealTimeEngine
from e2e.emulator.faults import FaultError, FaultInjector, Faults
from e2e.emulator.metrics import VllmMetrics
from e2e.emulator.replica import ReplicaSetup, build_replica
from e2e.emulator.server import ServerState, build_app, build_dcgm_app
from inferfleet.calibration import load_calibration
from inferfleet.engine_flags import engine_config_from_args
from inferfleet.errors import UsageError
from sizing.errors import SizingError
from sizing.performance import DEFAULT_EFFICIENCY

GPU_ENV = "INFERFLEET_EMULATOR_GPU"  # lets a Deployment that passes only vLLM's flags pick a GPU
SPEED_ENV = "INFERFLEET_EMULATOR_SPEED_FACTOR"  # and this one a speed off the prediction


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m e2e.emulator", description=__doc__)
    p.add_argument("--model", default="emulated-llama-3-8b", help="served model name")
    p.add_argument("--served-model-name", help="name clients use (default: --model)")
    p.add_argument("--model-config", type=Path, help="HF config.json (default: Llama-3-8B-like)")
    p.add_argument("--gpu", default=os.environ.get(GPU_ENV, "H100-SXM-80GB"))
    p.add_argument(
        "--calibration", type=Path, help="efficiency YAML (inferfleet bench --calibrate)"
    )
    p.add_argument("--tp", "--tensor-parallel-size", dest="tp", type=int, default=1)
    p.add_argument("--dtype", default="auto")
    p.add_argument("--pp", "--pipeline-parallel-size", dest="pp", type=int, default=1)
    p.add_argument("--quantization", default="none")
    p.add_argument("--kv-cache-dtype", default="auto")
    p.add_argument("--max-model-len", type=int, default=None)
    p.add_argument("--max-num-seqs", type=int, default=None, help="default: vLLM's for the GPU")
    p.add_argument("--max-num-batched-tokens", type=int, default=None)
    p.add_argument("--gpu-memory-utilization", type=float, default=0.9)
    p.add_argument("--enforce-eager", action="store_true")
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--dcgm-port", type=int, default=9400, help="dcgm-exporter port (0: off)")
    p.add_argument("--speedup", type=float, default=1.0, help="emulated GPU seconds per wall s")
    p.add_argument(
        "--speed-factor",
        type=float,
        default=os.environ.get(SPEED_ENV, "1.0"),
        help="the replica is this many times as fast as sizing.performance predicts (0.6: "
        "40 %% slower than planned)",
    )
    p.add_argument("--startup-delay-s", type=float, default=0.0, help="cold start (wall s)")
    p.add_argument("--mean-output-tokens", type=float, default=256.0,
                   help="mean length at which a request without ignore_eos stops")  # fmt: skip
    p.add_argument(
        "--admission-window-ms",
        type=float,
        default=DEFAULT_ADMISSION_WINDOW_S * 1000,
        help="wall ms an idle engine gathers arrivals into its first step",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--error-500-rate", type=float, default=0.0)
    p.add_argument("--error-503-rate", type=float, default=0.0)
    p.add_argument("--drop-stream-rate", type=float, default=0.0)
    p.add_argument("--slow-s", type=float, default=0.0)
    return p


def _load_config(path: Path | None) -> dict[str, object] | None:
    if path is None:
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise SystemExit(f"emulator: --model-config {path}: {err}") from err


async def serve(args: argparse.Namespace, setup: ReplicaSetup, faults: Faults) -> None:
    name = args.served_model_name or args.model
    metrics = VllmMetrics(name, setup.max_model_len)
    engine = RealTimeEngine(
        setup.engine, setup.step_model, setup.limits, metrics,
        speedup=args.speedup, seed=args.seed, mean_output_tokens=args.mean_output_tokens,
        admission_window_s=args.admission_window_ms / 1000, front_end=setup.front_end,
    )  # fmt: skip
    hostname = socket.gethostname()
    dcgm = DcgmExporter(setup.gpu, args.tp, setup.fb_used_gib_per_gpu, hostname, args.seed)
    state = ServerState(
        model_name=name,
        max_model_len=setup.max_model_len,
        vocab_size=setup.vocab_size,
        ready_at_s=time.monotonic() + args.startup_delay_s,
        faults=FaultInjector(faults, args.seed),
        dcgm=dcgm,
    )
    runners = [web.AppRunner(build_app(engine, state), access_log=None)]
    ports = [args.port]
    if args.dcgm_port:
        runners.append(web.AppRunner(build_dcgm_app(engine, state), access_log=None))
        ports.append(args.dcgm_port)
    for runner, port in zip(runners, ports, strict=True):
        await runner.setup()
        await web.TCPSite(runner, args.host, port).start()
    try:
        await asyncio.Event().wait()
    finally:
        for runner in runners:
            await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    args, _ignored_vllm_flags = build_parser().parse_known_args(argv)
    try:
        faults = Faults(
            args.error_500_rate, args.error_503_rate, args.drop_stream_rate, args.slow_s
        )
    except FaultError as err:
        raise SystemExit(f"emulator: {err}") from err
    if (
        args.speedup <= 0
        or not args.speed_factor > 0
        or args.startup_delay_s < 0
        or args.admission_window_ms < 0
    ):
        raise SystemExit(
            "emulator: --speedup and --speed-factor must be > 0, --startup-delay-s and "
            "--admission-window-ms >= 0"
        )
    engine_config = engine_config_from_args(args)
    try:
        efficiency = DEFAULT_EFFICIENCY
        if args.calibration is not None:
            efficiency = load_calibration(args.calibration)
        config = _load_config(args.model_config)
        setup = build_replica(config, args.gpu, engine_config, efficiency, args.speed_factor)
    except (SizingError, UsageError) as err:
        raise SystemExit(f"emulator: {err}") from err
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args, setup, faults))
    return 0


if __name__ == "__main__":
    sys.exit(main())
