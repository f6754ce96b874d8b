"""Start a real vLLM (the CPU build, a tiny random Llama) for contract tests.

`scripts/install-vllm.sh` (run by `make vllm`, which `make test` depends on) puts vLLM in its own
venv and writes the model; this module only starts `vllm serve` on 127.0.0.1 with a free port,
waits for /health and always stops it. Without the venv the fixture skips and says how to get
it, so a developer's plain `pytest` still runs; `make test` installs it first (and fails if the
install fails), and with CI set the repository's conftest turns any skip of this tier into a
failure.

    with run_vllm() as server:
        httpx.get(server.url + "/metrics")
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from inferfleet_testing.emulator import HOST, free_port
from inferfleet_testing.health import wait_healthy

REPO = Path(__file__).resolve().parents[1]
VENV = REPO / ".tools" / "vllm-venv"
VLLM = VENV / "bin" / "vllm"
MODEL_DIR = REPO / ".tools" / "tiny-llama"
SMALL_VOCAB_MODEL_DIR = REPO / ".tools" / "tiny-llama-small-vocab"
MODEL_NAME = "tiny-llama"
MAX_MODEL_LEN = 512
INSTALL_HINT = "run `make vllm` (scripts/install-vllm.sh)"

# TESTING.md's settings: CPU platform, 1 GiB of KV cache, the engine in the server's process
# (otherwise tokens reach the client in bursts on two cores), no hub look-ups.
SERVE_ENV = {
    "VLLM_TARGET_DEVICE": "cpu",
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
}


@dataclass(frozen=True)
class RunningVllm:
    url: str  # OpenAI API base, e.g. http://127.0.0.1:PORT
    model: str  # the served model name clients send
    max_model_len: int
    log: Path  # the server's stdout + stderr


def missing() -> str | None:
    """Why a real vLLM cannot be started here, or None when it can."""
    if not VLLM.is_file():
        return f"vLLM CPU venv missing at .tools/vllm-venv; {INSTALL_HINT}"
    if not (MODEL_DIR / "config.json").is_file():
        return f"tiny model missing at .tools/tiny-llama; {INSTALL_HINT}"
    return None


def serve_command(
    port: int, model_dir: Path = MODEL_DIR, extra_args: Sequence[str] = ()
) -> list[str]:
    return [
        str(VLLM), "serve", str(model_dir),
        "--host", HOST, "--port", str(port),
        "--served-model-name", MODEL_NAME,
        "--max-model-len", str(MAX_MODEL_LEN),
        "--dtype", "float32", "--enforce-eager",
        *extra_args,
    ]  # fmt: skip


def serve_env() -> dict[str, str]:
    return {**os.environ, **SERVE_ENV}


def wait_until_serving(
    url: str, process: subprocess.Popen[bytes], log: Path, timeout_s: float = 180.0
) -> None:
    """Until /health answers 200; a server that exits or never answers fails with its log."""
    wait_healthy(
        url, process, name="vllm serve", timeout_s=timeout_s, poll_s=0.5, request_timeout_s=2,
        output=lambda: _tail(log),
    )  # fmt: skip


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group (vLLM may start an engine process), then SIGKILL."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def _tail(log: Path, chars: int = 4000) -> str:
    return log.read_text(errors="replace")[-chars:] if log.exists() else "(no log)"


@contextmanager
def run_vllm(
    log_dir: Path, model_dir: Path = MODEL_DIR, extra_args: Sequence[str] = ()
) -> Iterator[RunningVllm]:
    """`vllm serve` on 127.0.0.1 (its own process group); yields once healthy."""
    port = free_port()
    log = log_dir / f"vllm-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            serve_command(port, model_dir, extra_args),
            cwd=REPO,
            env=serve_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://{HOST}:{port}"
    try:
        wait_until_serving(url, process, log)
        yield RunningVllm(url, MODEL_NAME, MAX_MODEL_LEN, log)
    finally:
        stop(process)


@pytest.fixture(scope="session")
def real_vllm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningVllm]:
    """One real vLLM server shared by the session (it takes 20-40 s and ~3 GB to start)."""
    reason = missing()
    if reason is not None:
        pytest.skip(reason)
    with run_vllm(tmp_path_factory.mktemp("vllm")) as server:
        yield server
