"""The HTTP side of the Prometheus adapter: two API paths, bounded replies, short errors.

The URL comes from a fleet's spec, so the operator treats the server as untrusted: it only
POSTs PromQL to the two query endpoints, follows no redirect (one could point anywhere), reads
at most `MAX_REPLY_BYTES`, and an error says what went wrong in a few words and the status
code, never the reply's body (which would otherwise be copied into status and Events).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

QUERY_PATH = "/api/v1/query"
QUERY_RANGE_PATH = "/api/v1/query_range"
ALLOWED_PATHS = frozenset({QUERY_PATH, QUERY_RANGE_PATH})
RESULT_TYPE = {QUERY_PATH: "vector", QUERY_RANGE_PATH: "matrix"}
MAX_REPLY_BYTES = 32 * 2**20
# Prometheus's own errorType vocabulary: the only part of an error reply worth repeating.
ERROR_TYPES = frozenset(
    {"bad_data", "timeout", "canceled", "execution", "internal", "unavailable", "not_found"}
)


class PrometheusError(Exception):
    """A failed query; the message is short and carries nothing the server wrote freely."""

    def __init__(self, message: str, reason: str = "PrometheusUnreachable") -> None:
        super().__init__(message)
        self.reason = reason


class ReplyInvalid(PrometheusError):
    def __init__(self, message: str) -> None:
        super().__init__(message, "PrometheusReplyInvalid")


@dataclass
class PrometheusClient:
    """Instant and range queries against one Prometheus base URL."""

    url: str
    timeout_s: float = 5.0
    session: requests.Session = field(default_factory=requests.Session)

    def __post_init__(self) -> None:
        self.url = self.url.rstrip("/")
        # One retry of a refused connection, none of a slow answer (the pass has a budget).
        self.session.mount("http://", HTTPAdapter(max_retries=Retry(total=1, backoff_factor=0)))
        self.session.mount("https://", HTTPAdapter(max_retries=Retry(total=1, backoff_factor=0)))

    def custom_query(self, query: str, params: Mapping[str, str] | None = None) -> list[Any]:
        """The instant vector's rows as Prometheus sent them (rows are checked by the caller)."""
        return self._post(QUERY_PATH, {"query": query, **(params or {})})

    def custom_query_range(
        self, query: str, start_time: datetime, end_time: datetime, step: str
    ) -> list[Any]:
        data = {
            "query": query,
            "start": f"{start_time.timestamp():.3f}",
            "end": f"{end_time.timestamp():.3f}",
            "step": step,
        }
        return self._post(QUERY_RANGE_PATH, data)

    def _post(self, path: str, data: Mapping[str, str]) -> list[Any]:
        if path not in ALLOWED_PATHS:  # pragma: no cover - the two callers above
            raise PrometheusError(f"path {path} is not a query endpoint")
        try:
            with self.session.post(
                self.url + path,
                data=dict(data),
                timeout=self.timeout_s,
                allow_redirects=False,
                stream=True,
            ) as response:
                body = _read_bounded(response)
                status = response.status_code
        except requests.RequestException as err:
            raise PrometheusError(f"{type(err).__name__} on POST {path}") from None
        return _result(path, status, body)


def _read_bounded(response: requests.Response) -> bytes:
    chunks, size = [], 0
    for chunk in response.iter_content(64 * 1024):
        size += len(chunk)
        if size > MAX_REPLY_BYTES:
            raise ReplyInvalid(f"reply larger than {MAX_REPLY_BYTES // 2**20} MiB")
        chunks.append(chunk)
    return b"".join(chunks)


def _error_type(body: bytes) -> str:
    try:
        found = json.loads(body).get("errorType")
    except (ValueError, AttributeError, RecursionError):
        return ""
    return f" ({found})" if found in ERROR_TYPES else ""


def _result(path: str, status: int, body: bytes) -> list[Any]:
    """The `data.result` list of a success reply; anything else is a short error."""
    if 300 <= status < 400:
        raise ReplyInvalid(f"HTTP {status} redirect from {path} (redirects are not followed)")
    if not 200 <= status < 300:
        kind = ReplyInvalid if 400 <= status < 500 else PrometheusError
        raise kind(f"HTTP {status} from {path}{_error_type(body)}")
    try:
        reply = json.loads(body)
    except (ValueError, RecursionError):
        raise ReplyInvalid(f"reply from {path} is not JSON") from None
    if not isinstance(reply, dict):
        raise ReplyInvalid(f"reply from {path} is not a JSON object")
    if reply.get("status") != "success":
        raise ReplyInvalid(f"{path} answered without status 'success'{_error_type(body)}")
    data = reply.get("data")
    if not isinstance(data, dict):
        raise ReplyInvalid(f"reply from {path} has no data object")
    expected = RESULT_TYPE[path]
    if data.get("resultType") != expected:
        raise ReplyInvalid(f"reply from {path} is not a {expected}")
    result = data.get("result")
    if not isinstance(result, list):
        raise ReplyInvalid(f"reply from {path} has no result list")
    return result
