"""The preStop drain script as the pod runs it: a real process reading a real /metrics."""

from __future__ import annotations

import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

from controllers.policy.drain import SETTLE_S, SHUTDOWN_S, prestop_command


class _Metrics(BaseHTTPRequestHandler):
    """vLLM's /metrics with a running count that drops as requests finish."""

    busy: ClassVar[list[int]] = [3, 1, 0, 0, 0]

    def do_GET(self) -> None:
        running = self.busy.pop(0) if len(self.busy) > 1 else self.busy[0]
        body = (
            "# HELP vllm:num_requests_running Number of requests in model execution batches.\n"
            f'vllm:num_requests_running{{engine="0",model_name="m"}} {float(running)}\n'
            'vllm:num_requests_waiting{engine="0",model_name="m"} 0.0\n'
            'vllm:num_requests_waiting_by_reason{reason="capacity"} 7.0\n'
        ).encode()
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


def _run(command: list[str], port: int, deadline_s: int) -> subprocess.CompletedProcess[bytes]:
    _python, flag, script, _port, _settle, _deadline = command
    args = [sys.executable, flag, script, str(port), "0", str(deadline_s)]
    return subprocess.run(args, timeout=30, check=True, capture_output=True)


def test_the_drain_waits_until_two_idle_readings_then_returns():
    server = HTTPServer(("127.0.0.1", 0), _Metrics)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        command = prestop_command(8000, 60)
        assert command[:2] == ["python3", "-c"] and command[3:] == ["8000", str(SETTLE_S), "45"]
        _run(command, server.server_address[1], 20)
        assert _Metrics.busy == [0]  # it read 3, 1, 0, 0 and stopped (not at its deadline)
    finally:
        server.shutdown()
        server.server_close()


def test_the_drain_ends_at_once_when_vllm_is_gone_and_its_deadline_leaves_the_shutdown():
    command = prestop_command(8000, 120)
    assert int(command[-1]) == 120 - SHUTDOWN_S
    _run(command, 9, 20)  # port 9 (discard) has no listener: three failed reads, then done
