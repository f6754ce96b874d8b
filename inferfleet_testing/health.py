"""Wait for a server process started by a test until its /health answers 200."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

import httpx


def wait_healthy(
    url: str,
    process: subprocess.Popen[bytes],
    *,
    name: str,
    timeout_s: float,
    poll_s: float,
    request_timeout_s: float,
    output: Callable[[], str],
) -> None:
    """Until `url`/health answers 200. A process that exits, or never answers in time, fails
    with `output()` (the end of its log or stderr), so the test says why the server died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{output()}")
        try:
            if httpx.get(url + "/health", timeout=request_timeout_s).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(poll_s)
    raise TimeoutError(f"{name} at {url} not healthy after {timeout_s} s:\n{output()}")
