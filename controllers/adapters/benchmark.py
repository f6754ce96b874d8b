"""Streaming load generator for any OpenAI-compatible endpoint (a real vLLM or the emulator).

Why our own: the sizing method needs the *measured* load curve (throughput, TTFT, ITL against
concurrency or request rate) in the same shape as the predicted one, so the two can be compared
point by point and the step-time model calibrated. TTFT and every inter-token gap are taken
from SSE chunk arrival times at the client, which is what a user sees.

Closed loop (`concurrency`): that many workers each send a request, wait for its last token,
send the next. Open loop (`request_rate`): Poisson arrivals at that rate, whatever the server
does. Failures and time-outs are counted, never raised: a benchmark reports a sick server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Literal, NotRequired, TypedDict

import httpx
import numpy as np

from sizing.simulator import poisson_arrivals

# Token ids for synthetic prompts: clear of the special tokens at the bottom of common vocabs
# and below the smallest vocab we target (32k), so any Llama-family tokenizer accepts them.
_PROMPT_TOKEN_ID_RANGE = (1000, 30000)

XKey = Literal["concurrency", "request_rate"]


@dataclass(frozen=True)
class LoadSpec:
    """What each request looks like and how long to drive one load point."""

    url: str  # base URL, e.g. http://127.0.0.1:8000
    model: str
    input_len: int
    output_len: int
    endpoint: str = "/v1/completions"
    duration_s: float | None = None  # stop starting requests after this long
    num_prompts: int | None = None  # or after this many requests
    request_timeout_s: float = 600.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.duration_s is None and self.num_prompts is None:
            raise ValueError("LoadSpec needs duration_s or num_prompts to know when to stop")


@dataclass(frozen=True)
class RequestRecord:
    """One request as the client saw it; times are seconds since the load point started."""

    start_s: float
    end_s: float
    ttft_s: float | None = None
    itl_s: tuple[float, ...] = ()
    prompt_tokens: int = 0
    output_tokens: int = 0
    error: str | None = None
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and not self.timed_out


class LoadPoint(TypedDict):
    """One point of the load curve: exactly one of concurrency and request_rate, then the stats."""

    concurrency: NotRequired[float]
    request_rate: NotRequired[float]
    ttft_p50_ms: float | None
    ttft_p99_ms: float | None
    itl_p50_ms: float | None
    itl_p99_ms: float | None
    e2e_p50_ms: float | None
    output_tok_per_s: float
    total_tok_per_s: float
    request_per_s: float
    completed: int
    failed: int
    timed_out: int
    duration_s: float


@dataclass
class Recorder:
    """Collects records as they finish, so an interrupted run still has what it measured."""

    records: list[RequestRecord] = field(default_factory=list)
    started: int = 0
    on_change: Callable[[Recorder], None] | None = None

    def add(self, record: RequestRecord) -> None:
        self.records.append(record)
        if self.on_change is not None:
            self.on_change(self)


def request_body(spec: LoadSpec, rng: np.random.Generator) -> dict[str, object]:
    """An exact-length request: token ids for completions, words for chat; EOS ignored."""
    body: dict[str, object] = {
        "model": spec.model,
        "max_tokens": spec.output_len,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0.0,
    }
    # Fresh random ids per request, so a prefix cache cannot make the benchmark look faster.
    ids = rng.integers(*_PROMPT_TOKEN_ID_RANGE, size=spec.input_len).tolist()
    if spec.endpoint.rstrip("/").endswith("chat/completions"):
        body["messages"] = [{"role": "user", "content": " ".join(f"w{i}" for i in ids)}]
    else:
        body["prompt"] = ids
    return body


def _chunk_text(chunk: dict[str, object]) -> str:
    choices = chunk.get("choices") or []
    if not isinstance(choices, list) or not choices:
        return ""
    choice = choices[0]
    if not isinstance(choice, dict):
        return ""
    if "delta" in choice:
        delta = choice.get("delta")
        return str(delta.get("content") or "") if isinstance(delta, dict) else ""
    return str(choice.get("text") or "")


def _error_message(error: object) -> str:
    """The message of an OpenAI-style `error` value (an object with `message`, or a string)."""
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error)


def _http_error(status: int, body: bytes) -> str:
    """`HTTP 400: <the server's message>`, the message cut short (bodies can be pages)."""
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    message = _error_message(error) if error else body.decode("utf-8", "replace").strip()
    return f"HTTP {status}: {message[:200]}" if message else f"HTTP {status}"


class _StreamFailed(Exception):
    """The stream said something other than tokens: an in-stream error or a malformed event."""


async def send_request(
    client: httpx.AsyncClient, spec: LoadSpec, body: dict[str, object], t0: float
) -> RequestRecord:
    """Stream one request and time every content chunk; never raises for server faults.

    Success means a 200 stream that ends in `[DONE]` with at least one token. vLLM reports a
    request it cannot serve after the stream began as `data: {"error": ...}` inside the 200;
    that, an HTTP error status, a malformed event, a dropped connection and a timeout are all
    failures (a timeout counted as `timed_out`).
    """
    start = time.perf_counter() - t0
    arrivals: list[float] = []
    usage_tokens: int | None = None
    prompt_tokens = spec.input_len
    error: str | None = None
    timed_out = False
    try:
        async with asyncio.timeout(spec.request_timeout_s):
            async with client.stream("POST", spec.url.rstrip("/") + spec.endpoint, json=body) as r:
                if r.status_code != 200:
                    error = _http_error(r.status_code, await r.aread())
                else:
                    done = False
                    async for line in r.aiter_lines():
                        if not line.startswith("data:"):
                            continue
                        data = line[5:].strip()
                        if data == "[DONE]":
                            done = True
                            break
                        chunk = json.loads(data)
                        if not isinstance(chunk, dict):
                            raise _StreamFailed(f"stream event is not an object: {data[:100]}")
                        if "error" in chunk:
                            message = _error_message(chunk["error"])
                            raise _StreamFailed(f"error in stream: {message[:200]}")
                        if _chunk_text(chunk):
                            arrivals.append(time.perf_counter() - t0)
                        usage = chunk.get("usage")
                        if isinstance(usage, dict):
                            usage_tokens = int(usage.get("completion_tokens") or 0)
                            prompt_tokens = int(usage.get("prompt_tokens") or prompt_tokens)
                    if not done:
                        error = "stream ended before [DONE]"
                    elif not arrivals and not usage_tokens:
                        error = "stream finished without a token"
    except (TimeoutError, httpx.TimeoutException):
        timed_out = True
    except _StreamFailed as err:
        error = str(err)
    except (httpx.HTTPError, json.JSONDecodeError, ValueError, TypeError) as err:
        error = f"{type(err).__name__}: {err}"
    end = time.perf_counter() - t0
    return RequestRecord(
        start_s=start,
        end_s=end,
        ttft_s=arrivals[0] - start if arrivals else None,
        itl_s=tuple(float(g) for g in np.diff(arrivals)) if len(arrivals) > 1 else (),
        prompt_tokens=prompt_tokens,
        output_tokens=usage_tokens if usage_tokens is not None else len(arrivals),
        error=error,
        timed_out=timed_out,
    )


@asynccontextmanager
async def _client(spec: LoadSpec, connections: int) -> AsyncIterator[httpx.AsyncClient]:
    """A pooled client, warmed by one GET /v1/models before any request is timed.

    The first request of a fresh client pays ~0.1 s of one-off set-up in the client itself;
    left in, it would be billed to the server's first TTFT. The probe's own failure does not
    matter: the timed requests then fail and are counted.
    """
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    timeout = httpx.Timeout(spec.request_timeout_s, connect=30.0)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        with contextlib.suppress(httpx.HTTPError):
            await client.get(spec.url.rstrip("/") + "/v1/models", timeout=10.0)
        yield client


async def run_closed_loop(
    spec: LoadSpec, concurrency: int, recorder: Recorder, stop: asyncio.Event | None = None
) -> float:
    """`concurrency` workers back to back; returns the wall time of the load point in seconds."""
    rng = np.random.default_rng(spec.seed)
    stop = stop or asyncio.Event()
    async with _client(spec, concurrency) as client:
        t0 = time.perf_counter()  # after the client's set-up, which is not the server's time

        def may_start() -> bool:
            if stop.is_set():
                return False
            if spec.num_prompts is not None and recorder.started >= spec.num_prompts:
                return False
            return spec.duration_s is None or time.perf_counter() - t0 < spec.duration_s

        async def worker() -> None:
            while may_start():
                recorder.started += 1
                recorder.add(await send_request(client, spec, request_body(spec, rng), t0))

        await _until_stopped([asyncio.create_task(worker()) for _ in range(concurrency)], stop)
    return time.perf_counter() - t0


def arrival_schedule(
    rate_rps: float, num_prompts: int | None, duration_s: float | None, seed: int
) -> np.ndarray:
    """Send times from 0, the very Poisson draws `inferfleet curve --request-rate` simulates.

    Sharing the generator means a bench point and its predicted point see the same arrivals,
    so they differ only by what the server does.
    """
    if rate_rps <= 0:
        raise ValueError(f"request rate must be > 0 requests/s, got {rate_rps}")
    if num_prompts is not None:
        times = poisson_arrivals(rate_rps, num_prompts, np.random.default_rng(seed))
        times = times - times[0]
        return times if duration_s is None else times[times < duration_s]
    if duration_s is None:
        raise ValueError("an open loop needs num_prompts or duration_s to know when to stop")
    count = math.ceil(rate_rps * duration_s) + 1
    while True:
        times = poisson_arrivals(rate_rps, count, np.random.default_rng(seed))
        times = times - times[0]
        if times[-1] >= duration_s:
            return times[times < duration_s]
        count *= 2


async def run_open_loop(
    spec: LoadSpec, rate_rps: float, recorder: Recorder, stop: asyncio.Event | None = None
) -> float:
    """Poisson arrivals at `rate_rps` (seeded); returns the wall time of the load point in s."""
    schedule = arrival_schedule(rate_rps, spec.num_prompts, spec.duration_s, spec.seed)
    rng = np.random.default_rng(spec.seed)
    stop = stop or asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    connections = 1000
    async with _client(spec, connections) as client:
        t0 = time.perf_counter()  # after the client's set-up, which is not the server's time

        async def one(body: dict[str, object]) -> None:
            recorder.add(await send_request(client, spec, body, t0))

        for send_s in schedule:
            delay = float(send_s) - (time.perf_counter() - t0)
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
            if stop.is_set():
                break
            recorder.started += 1
            tasks.append(asyncio.create_task(one(request_body(spec, rng))))
        await _until_stopped(tasks, stop)
    return time.perf_counter() - t0


async def _until_stopped(tasks: list[asyncio.Task[None]], stop: asyncio.Event) -> None:
    """Wait for all tasks, or cancel the rest as soon as `stop` is set (Ctrl-C)."""
    if not tasks:
        return
    stopper = asyncio.create_task(stop.wait())
    pending: set[asyncio.Task[object]] = set(tasks)
    while pending and not stopper.done():
        _, pending = await asyncio.wait(pending | {stopper}, return_when=asyncio.FIRST_COMPLETED)
        pending.discard(stopper)
    for task in pending:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    stopper.cancel()
    for task in tasks:
        if not task.cancelled() and (error := task.exception()) is not None:
            raise error  # a bug in our client, not a server fault: keep its traceback


def _percentile_ms(values_s: list[float], q: float, time_scale: float) -> float | None:
    return float(np.percentile(values_s, q) * 1000 * time_scale) if values_s else None


def summarize(
    records: list[RequestRecord], x_key: XKey, x: float, wall_s: float, time_scale: float = 1.0
) -> LoadPoint:
    """One point of the load curve, in the shape `inferfleet curve` prints.

    Rates divide by the wall time of the load point; latency percentiles use successful
    requests only (a failed request has no meaningful TTFT), the failures are counted beside.
    `time_scale` reads an emulator run at `--speedup X` in GPU time: latencies times X, rates
    divided by X.
    """
    ok = [r for r in records if r.ok]
    ttft = [r.ttft_s for r in ok if r.ttft_s is not None]
    itl = [g for r in ok for g in r.itl_s]
    e2e = [r.end_s - r.start_s for r in ok]
    out_tokens = sum(r.output_tokens for r in ok)
    in_tokens = sum(r.prompt_tokens for r in ok)
    wall = max(wall_s, 1e-9) * time_scale
    stats: LoadPoint = {
        "ttft_p50_ms": _percentile_ms(ttft, 50, time_scale),
        "ttft_p99_ms": _percentile_ms(ttft, 99, time_scale),
        "itl_p50_ms": _percentile_ms(itl, 50, time_scale),
        "itl_p99_ms": _percentile_ms(itl, 99, time_scale),
        "e2e_p50_ms": _percentile_ms(e2e, 50, time_scale),
        "output_tok_per_s": out_tokens / wall,
        "total_tok_per_s": (out_tokens + in_tokens) / wall,
        "request_per_s": len(ok) / wall,
        "completed": len(ok),
        "failed": sum(1 for r in records if r.error is not None),
        "timed_out": sum(1 for r in records if r.timed_out),
        "duration_s": wall_s,
    }
    return {"concurrency": x, **stats} if x_key == "concurrency" else {"request_rate": x, **stats}
