"""Start emulators as real subprocesses for tests: free port, wait for /health, always stop.

Other suites (Prometheus scrape tests, operator tests) use this too:

    with run_emulator(speedup=20) as emu:
        httpx.get(emu.url + "/metrics")

or the `emulator` pytest fixture (import it into the test module or a conftest).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from inferfleet_testing.health import wait_healthy

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"


def free_port() -> int:
    """A port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class RunningEmulator:
    url: str  # vLLM API base, e.g. http://127.0.0.1:PORT
    dcgm_url: str  # dcgm-exporter base; metrics at dcgm_url + "/metrics"
    model: str
    speedup: float
    process: subprocess.Popen[bytes]

    def set_faults(self, **faults: float) -> dict[str, float]:
        """Replace the running emulator's faults (see e2e.emulator.faults.Faults)."""
        response = httpx.post(self.url + "/admin/faults", json=faults, timeout=5)
        response.raise_for_status()
        return response.json()


def _wait_healthy(url: str, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    def stderr_tail() -> str:
        return process.stderr.read().decode()[-2000:] if process.stderr else ""

    wait_healthy(
        url, process, name="emulator", timeout_s=timeout_s, poll_s=0.05, request_timeout_s=1,
        output=stderr_tail,
    )  # fmt: skip


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
    if process.stderr:
        process.stderr.close()


@contextmanager
def run_emulator(
    *,
    model: str = "emulated-llama-3-8b",
    gpu: str = "H100-SXM-80GB",
    tp: int = 1,
    speedup: float = 1.0,
    startup_delay_s: float = 0.0,
    extra_args: Sequence[str] = (),
    wait_ready: bool = True,
    ready_timeout_s: float = 60.0,
) -> Iterator[RunningEmulator]:
    """An emulator process on 127.0.0.1; yields once healthy (unless `wait_ready=False`)."""
    port, dcgm_port = free_port(), free_port()
    command = [
        sys.executable, "-m", "e2e.emulator",
        "--model", model, "--gpu", gpu, "--tp", str(tp),
        "--host", HOST, "--port", str(port), "--dcgm-port", str(dcgm_port),
        "--speedup", str(speedup), "--startup-delay-s", str(startup_delay_s),
        *extra_args,
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://{HOST}:{port}"
    try:
        if wait_ready:
            _wait_healthy(url, process, ready_timeout_s + startup_delay_s)
        else:
            _wait_listening(port, process, ready_timeout_s)
        yield RunningEmulator(url, f"http://{HOST}:{dcgm_port}", model, speedup, process)
    finally:
        _stop(process)


def _wait_listening(port: int, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"emulator exited with {process.returncode}")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            if sock.connect_ex((HOST, port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"emulator not listening on {HOST}:{port} after {timeout_s} s")


@pytest.fixture(scope="module")
def emulator() -> Iterator[RunningEmulator]:
    """One healthy emulator (Llama-3-8B on an H100, 10x speedup) shared by a test module.

    Shared because starting one costs a second or more; a test that sets faults must clear
    them (`emu.set_faults()`), and counters are cumulative across the module's tests.
    """
    with run_emulator(speedup=10.0) as emu:
        yield emu
