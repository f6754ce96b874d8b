"""Prometheus fault modes over real HTTP: every one is MetricsAvailable=False with a reason,
no body is echoed, no redirect is followed, and a host off the allow-list is never asked.

The server is a loopback HTTP server that answers what each case needs (a real Prometheus
cannot be made to send a malformed reply); the client and parser are the operator's own.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from controllers.adapters.prometheus_http import MAX_REPLY_BYTES
from controllers.adapters.prometheus_reader import OperatorClock, PrometheusReader
from controllers.policy.monitoring.snapshot import metrics_condition

BODY_MARK = "INTERNAL-ADMIN-PAGE"


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Server:
    url: str
    reply: Reply
    paths: list[str]


@pytest.fixture
def server() -> Iterator[Server]:
    state = Server("", Reply(), [])

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            state.paths.append(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            self.send_response(state.reply.status)
            for key, value in state.reply.headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(state.reply.body)))
            self.end_headers()
            self.wfile.write(state.reply.body)

        do_GET = do_POST = _answer

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()


def _snapshot(reader: PrometheusReader, url: str):
    snap = asyncio.run(reader.snapshot(url, "llm", "chat", ["h100"], time.time()))
    return snap, metrics_condition(snap, ["h100"])


def _reader(**kwargs) -> PrometheusReader:
    return PrometheusReader(None, OperatorClock(time.time()), **kwargs)


def _vector(rows: object) -> bytes:
    return json.dumps(
        {"status": "success", "data": {"resultType": "vector", "result": rows}}
    ).encode()


FAULTS = {
    "status error": (Reply(body=json.dumps({"status": "error", "errorType": "bad_data",
                                            "error": BODY_MARK}).encode()),
                     "PrometheusReplyInvalid"),
    "non-list result": (Reply(body=_vector({"rows": BODY_MARK})), "PrometheusReplyInvalid"),
    "not json": (Reply(body=f"<html>{BODY_MARK}</html>".encode()), "PrometheusReplyInvalid"),
    "http 500": (Reply(500, f"panic: {BODY_MARK}".encode()), "PrometheusUnreachable"),
    "http 401": (Reply(401, BODY_MARK.encode()), "PrometheusReplyInvalid"),
    "rows without labels": (Reply(body=_vector([{"value": [1, "2"]}, {"metric": {}}, 3])),
                            "MetricsMissing"),
    "nan and huge values": (Reply(body=_vector([
        {"metric": {"inferfleet_metric": "pool/requests_running", "namespace": "llm",
                    "fleet": "chat", "pool": "h100"}, "value": [1, "NaN"]},
        {"metric": {"inferfleet_metric": "pool/requests_waiting", "namespace": "llm",
                    "fleet": "chat", "pool": "h100"}, "value": [1, "1e400"]},
    ])), "MetricsMissing"),
}  # fmt: skip


@pytest.mark.parametrize("fault", FAULTS)
def test_each_fault_is_metrics_unavailable_with_a_reason_and_no_body(server: Server, fault: str):
    server.reply, reason = FAULTS[fault]
    snap, (status, got_reason, message) = _snapshot(_reader(), server.url)
    assert (status, got_reason) == ("False", reason)
    assert BODY_MARK not in message and BODY_MARK not in (snap.error or "")
    assert all(p.pool != "h100" or p.requests_running is None for p in snap.pools)


def test_a_redirect_is_not_followed(server: Server):
    server.reply = Reply(302, b"", {"Location": f"{server.url}/elsewhere"})
    _, (status, reason, message) = _snapshot(_reader(), server.url)
    assert (status, reason) == ("False", "PrometheusReplyInvalid") and "302" in message
    assert server.paths == ["/api/v1/query"]  # never /elsewhere


def test_an_oversized_reply_is_refused(server: Server):
    server.reply = Reply(body=b" " * (MAX_REPLY_BYTES + 1))
    _, (status, reason, message) = _snapshot(_reader(), server.url)
    assert (status, reason) == ("False", "PrometheusReplyInvalid") and "MiB" in message


def test_a_host_off_the_allow_list_is_never_queried(server: Server):
    reader = _reader(allowed_hosts=("*.monitoring.svc",))
    _, (status, reason, message) = _snapshot(reader, server.url)
    assert (status, reason) == ("False", "PrometheusNotAllowed")
    assert "allow-list" in message
    assert asyncio.run(reader.history(server.url, "llm", "chat", time.time())) == ()
    assert server.paths == []
    allowed = _reader(allowed_hosts=("127.0.0.1",))
    server.reply = Reply(body=_vector([]))
    _, (_, reason, _) = _snapshot(allowed, server.url)
    assert reason == "MetricsMissing" and server.paths == ["/api/v1/query"]


def test_the_default_url_is_always_allowed(server: Server):
    reader = PrometheusReader(server.url, OperatorClock(time.time()), allowed_hosts=())
    assert reader.allowed(server.url) and not reader.allowed("http://10.0.0.1:9090")
