"""A scale-down under load, played with real processes: does any request fail?

Two emulator replicas (vLLM's API and /metrics) serve a closed-loop load that a Service would
spread over its endpoints. One replica is then removed the way Kubernetes removes a pod: it
leaves the endpoints (no new requests reach it; those in flight go on), its preStop hook runs
— the very command the operator renders, only the port is the emulator's — and then it gets
SIGTERM, on which it exits at once with whatever it was still generating. Without a hook the
SIGTERM comes right after the endpoint removal. Used by the integration test and by
`scripts/bench_scale_down.py`.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import threading
import time
from dataclasses import dataclass

import httpx
import numpy as np
import yaml

from controllers.adapters.benchmark import LoadSpec, RequestRecord, request_body, send_request
from controllers.api.v1alpha1 import InferenceFleet
from controllers.policy.drain import fleet_request_s, grace_period_s
from controllers.policy.render import render_fleet
from controllers.reconcile.plans import SpecRefused, plan_or_refusal
from inferfleet_testing.emulator import REPO, RunningEmulator, run_emulator
from sizing.curve import find_capacity
from sizing.plan import memoized

MODEL = "emulated-llama-3-8b"
CONCURRENCY = 16
OUTPUT_TOKENS = (32, 512)  # drawn per request, so requests end at different times
INPUT_TOKENS = 256
BEFORE_S = 2.0  # load on both replicas before the removal (then until the leaving one is busy)
AFTER_S = 2.0  # load on the one left once the removed one has exited


def rendered_stop(example: str = "fleet-code-8b.yaml") -> tuple[list[str], int]:
    """The preStop command and grace period of the first pool the operator renders for one of
    `examples/` before any traffic (the grace from the plan's estimate, as `decide` has it)."""
    doc = yaml.safe_load((REPO / "examples" / example).read_text())
    spec = InferenceFleet.model_validate(doc).spec
    source = spec.model.hf_config
    if source is None or not source.inline:
        raise ValueError(f"{example}: the scale-down harness needs an inline hfConfig")
    planned = plan_or_refusal(spec, dict(source.inline), memoized(find_capacity))
    if isinstance(planned, SpecRefused):
        raise ValueError(f"{example}: {planned}")
    plan, curves = planned
    graces = {
        p.pool: grace_period_s(fleet_request_s(spec, p, curves.get(p.pool, ()))) for p in plan.pools
    }
    replicas = {p.pool: 2 for p in plan.pools}
    first, *_ = render_fleet("fleet", "ns", spec, plan, replicas, grace_s=graces)
    pod = first.deployment["spec"]["template"]["spec"]
    command = pod["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
    return list(command), int(pod["terminationGracePeriodSeconds"])


@dataclass(frozen=True)
class ScaleDownResult:
    sent: int
    failed: int
    in_flight_at_removal: float  # requests running or waiting on the removed replica
    hook_s: float | None  # how long the preStop hook ran (None: no hook)
    errors: tuple[str, ...]  # the first few failures, for the message


class _Load:
    """CONCURRENCY clients, each sending one streamed request after another to the next
    endpoint in turn (the Service's round robin), on their own event loop thread."""

    def __init__(self, endpoints: list[str]) -> None:
        self.endpoints = endpoints  # replaced whole when the Service's endpoints change
        self.records: list[RequestRecord] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _worker(self, client: httpx.AsyncClient, worker: int, t0: float) -> None:
        rng = np.random.default_rng(worker)
        turn = worker
        while not self._stop.is_set():
            url = self.endpoints[turn % len(self.endpoints)]
            turn += 1
            output = int(rng.integers(*OUTPUT_TOKENS))
            spec = LoadSpec(url, MODEL, INPUT_TOKENS, output, num_prompts=1,
                            request_timeout_s=60.0)  # fmt: skip
            self.records.append(await send_request(client, spec, request_body(spec, rng), t0))

    async def _main(self) -> None:
        limits = httpx.Limits(max_connections=2 * CONCURRENCY)
        async with httpx.AsyncClient(timeout=60.0, limits=limits) as client:
            t0 = time.perf_counter()
            await asyncio.gather(*(self._worker(client, w, t0) for w in range(CONCURRENCY)))

    def __enter__(self) -> _Load:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(120)


def _busy(emu: RunningEmulator) -> float:
    text = httpx.get(emu.url + "/metrics", timeout=5).text
    names = ("vllm:num_requests_running", "vllm:num_requests_waiting")
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.split("{")[0] in names
    )


def _run_hook(command: list[str], emu: RunningEmulator, grace_s: int) -> float:
    """The rendered preStop exec command against the emulator's port, bounded by the grace
    period as the kubelet bounds it."""
    port = emu.url.rsplit(":", 1)[1]
    python, flag, script, _port, *rest = command
    started = time.monotonic()
    subprocess.run([python, flag, script, port, *rest], timeout=grace_s, check=True)
    return time.monotonic() - started


def scale_down_under_load(
    prestop: list[str] | None, grace_s: int, speedup: float = 1.0
) -> ScaleDownResult:
    """Serve, remove one replica (with `prestop` as its hook, or none), count failures."""
    with (
        run_emulator(model=MODEL, speedup=speedup) as staying,
        run_emulator(model=MODEL, speedup=speedup) as leaving,
    ):
        with _Load([staying.url, leaving.url]) as load:
            time.sleep(BEFORE_S)
            deadline = time.monotonic() + 10
            while (in_flight := _busy(leaving)) == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            load.endpoints = [staying.url]  # Terminating: out of the Service's endpoints
            hook_s = None if prestop is None else _run_hook(prestop, leaving, grace_s)
            leaving.process.send_signal(signal.SIGTERM)
            leaving.process.wait(timeout=10)
            time.sleep(AFTER_S)
        failed = [r for r in load.records if not r.ok]
        return ScaleDownResult(
            sent=len(load.records),
            failed=len(failed),
            in_flight_at_removal=in_flight,
            hook_s=hook_s,
            errors=tuple(str(r.error or "timed out") for r in failed[:3]),
        )
