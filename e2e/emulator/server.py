"""The emulator's HTTP surface: what vLLM's OpenAI server and dcgm-exporter answer.

Routes: `/v1/completions` and `/v1/chat/completions` (SSE streaming or one JSON answer),
`/v1/models`, `/health` (503 until the cold start is over), `/metrics` (vLLM names),
`/dcgm/metrics` (dcgm-exporter names), and `/admin/faults` (GET/POST) to make the replica
misbehave at run time. Token timing comes from `RealTimeEngine`, which drives the sizing
simulator's engine on the wall clock.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from e2e.emulator.dcgm import DcgmExporter
from e2e.emulator.driver import RealTimeEngine, RequestStream
from e2e.emulator.faults import FaultError, FaultInjector, Faults
from e2e.emulator.tokens import PromptError, Token, message_tokens, prompt_tokens

ENGINE_KEY = web.AppKey("engine", RealTimeEngine)
STATE_KEY = web.AppKey("state", "ServerState")


@dataclass
class ServerState:
    """What the handlers share: identity, readiness clock, faults and the DCGM view."""

    model_name: str
    max_model_len: int
    vocab_size: int  # token ids at or above are out of vocabulary, as vLLM rejects them
    ready_at_s: float  # time.monotonic() when the cold start is over
    faults: FaultInjector
    dcgm: DcgmExporter

    @property
    def ready(self) -> bool:
        return time.monotonic() >= self.ready_at_s


class BadRequest(Exception):
    """A request vLLM would reject; the message says which field and why, `param` names it."""

    def __init__(
        self,
        message: str,
        param: str | None = None,
        status: int = 400,
        kind: str = "BadRequestError",
    ) -> None:
        super().__init__(message)
        self.param = param
        self.status = status
        self.kind = kind


def _error_body(
    status: int, message: str, kind: str, param: str | None = None
) -> dict[str, object]:
    # vLLM's OpenAI server answers errors in this shape, in a body or inside a 200 stream.
    return {"error": {"message": message, "type": kind, "param": param, "code": status}}


def _error(status: int, message: str, kind: str, param: str | None = None) -> web.Response:
    return web.json_response(_error_body(status, message, kind, param), status=status)


def _bad_request(err: BadRequest) -> web.Response:
    return _error(err.status, str(err), err.kind, err.param)


@dataclass(frozen=True)
class Generation:
    """A parsed completion request: how many tokens in, how many out, how to answer."""

    chat: bool
    prompt: tuple[Token, ...]
    max_tokens: int
    ignore_eos: bool
    stream: bool
    include_usage: bool

    @property
    def prompt_tokens(self) -> int:
        return len(self.prompt)


def _int_field(body: dict[str, object], key: str, default: int | None) -> int | None:
    value = body.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BadRequest(f"{key} must be a positive integer, got {value!r}", key)
    return value


def parse_generation(body: object, chat: bool, model_name: str, max_model_len: int) -> Generation:
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object", "body", kind="Bad Request")
    model = body.get("model", model_name)
    if model != model_name:
        raise BadRequest(
            f"model {model!r} is not served here; this replica serves {model_name!r}",
            "model",
            status=404,
            kind="NotFoundError",
        )
    try:
        if chat:
            prompt = message_tokens(body.get("messages"))
        else:
            if "prompt" not in body:
                raise BadRequest("prompt is required for /v1/completions", "prompt")
            prompt = prompt_tokens(body["prompt"])
    except PromptError as err:
        raise BadRequest(str(err), "messages" if chat else "prompt") from err
    if not prompt:
        raise BadRequest("the prompt is empty; give at least one token", "prompt")
    n_prompt = len(prompt)
    room = max_model_len - n_prompt
    if room < 1:
        raise BadRequest(
            f"prompt has {n_prompt} tokens; max_model_len is {max_model_len}, "
            "which leaves no room for output",
            "input_tokens",
        )
    key = "max_completion_tokens" if chat and "max_completion_tokens" in body else "max_tokens"
    max_tokens = _int_field(body, key, None) or room
    if n_prompt + max_tokens > max_model_len:
        raise BadRequest(
            f"prompt ({n_prompt} tokens) + {key} ({max_tokens}) exceeds max_model_len "
            f"{max_model_len}; lower {key}",
            key,
        )
    options = body.get("stream_options") or {}
    return Generation(
        chat=chat,
        prompt=prompt,
        max_tokens=max_tokens,
        ignore_eos=bool(body.get("ignore_eos", False)),
        stream=bool(body.get("stream", False)),
        include_usage=isinstance(options, dict) and bool(options.get("include_usage", False)),
    )


def out_of_vocabulary(prompt: tuple[Token, ...], vocab_size: int) -> str | None:
    """vLLM's message for a token id outside the vocabulary, or None when all are inside."""
    ids = [t for t in prompt if isinstance(t, int)]
    if not ids:
        return None
    worst = min(ids) if min(ids) < 0 else max(ids)
    return f"Token id {worst} is out of vocabulary" if worst < 0 or worst >= vocab_size else None


def _token_text(index: int) -> str:
    return f" t{index}"


class _Chunks:
    """Builds OpenAI-format chunks for one request (completions or chat)."""

    def __init__(self, gen: Generation, model_name: str) -> None:
        self.gen = gen
        self.model = model_name
        prefix = "chatcmpl" if gen.chat else "cmpl"
        self.id = f"{prefix}-{uuid.uuid4().hex}"
        self.created = int(time.time())

    def _envelope(self, choices: list[dict[str, object]]) -> dict[str, object]:
        kind = "chat.completion.chunk" if self.gen.chat else "text_completion"
        return {
            "id": self.id,
            "object": kind,
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }

    def token(self, text: str, finish_reason: str | None) -> dict[str, object]:
        if self.gen.chat:
            choice: dict[str, object] = {"index": 0, "delta": {"content": text}}
        else:
            choice = {"index": 0, "text": text}
        choice.update(logprobs=None, finish_reason=finish_reason)
        return self._envelope([choice])

    def role(self) -> dict[str, object]:
        delta = {"role": "assistant", "content": ""}
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}
        return self._envelope([choice])

    def usage(self, completion_tokens: int) -> dict[str, object]:
        chunk = self._envelope([])
        chunk["usage"] = self._usage(completion_tokens)
        return chunk

    def _usage(self, completion_tokens: int) -> dict[str, int]:
        return {
            "prompt_tokens": self.gen.prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": self.gen.prompt_tokens + completion_tokens,
        }

    def whole(self, text: str, completion_tokens: int, finish_reason: str) -> dict[str, object]:
        if self.gen.chat:
            message = {"role": "assistant", "content": text}
            choice: dict[str, object] = {"index": 0, "message": message}
            kind = "chat.completion"
        else:
            choice = {"index": 0, "text": text}
            kind = "text_completion"
        choice.update(logprobs=None, finish_reason=finish_reason)
        return {
            "id": self.id,
            "object": kind,
            "created": self.created,
            "model": self.model,
            "choices": [choice],
            "usage": self._usage(completion_tokens),
        }


def _sse(payload: dict[str, object] | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


async def _stream_error(request: web.Request, error: dict[str, object]) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    await response.write(_sse(error))
    await response.write(_sse("[DONE]"))
    await response.write_eof()
    return response


async def _serve_stream(
    request: web.Request, stream: RequestStream, chunks: _Chunks, drop: bool
) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    if chunks.gen.chat:
        await response.write(_sse(chunks.role()))
    emitted = 0
    async for event in stream.tokens():
        emitted += 1
        await response.write(_sse(chunks.token(_token_text(emitted), event.finish_reason)))
        if drop:
            # A pod killed mid-response: the connection goes away without [DONE].
            stream.abort()
            if request.transport is not None:
                request.transport.close()
            return response
    if chunks.gen.include_usage:
        await response.write(_sse(chunks.usage(emitted)))
    await response.write(_sse("[DONE]"))
    await response.write_eof()
    return response


def _generation_handler(chat: bool) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        state = request.app[STATE_KEY]
        engine = request.app[ENGINE_KEY]
        if not state.ready:
            return _error(503, "model is still loading", "ServiceUnavailableError")
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return _error(400, "request body is not valid JSON", "Bad Request", "body")
        try:
            gen = parse_generation(body, chat, state.model_name, state.max_model_len)
        except BadRequest as err:
            return _bad_request(err)
        if (unknown := out_of_vocabulary(gen.prompt, state.vocab_size)) is not None:
            # vLLM checks token ids once the stream has begun: a streaming client gets a 200
            # whose only event is the error; a plain request gets a 400.
            if gen.stream:
                return await _stream_error(request, _error_body(400, unknown, "BadRequestError"))
            return _error(400, unknown, "BadRequestError")
        verdict = state.faults.verdict()
        if verdict.delay_s > 0:
            await asyncio.sleep(verdict.delay_s)
        if verdict.status is not None:
            return _error(verdict.status, "injected fault", "InternalServerError")
        await engine.through_front_end(len(gen.prompt))
        stream = engine.submit(gen.prompt, gen.max_tokens, gen.ignore_eos)
        chunks = _Chunks(gen, state.model_name)
        try:
            if gen.stream:
                return await _serve_stream(request, stream, chunks, verdict.drop_stream)
            texts: list[str] = []
            reason = "length"
            async for event in stream.tokens():
                texts.append(_token_text(len(texts) + 1))
                reason = event.finish_reason or reason
            return web.json_response(chunks.whole("".join(texts), len(texts), reason))
        finally:
            # Client went away (or we dropped it): free the engine's slot, as vLLM aborts.
            stream.abort()

    return handle


async def _health(request: web.Request) -> web.Response:
    if request.app[STATE_KEY].ready:
        return web.Response(status=200)
    return web.Response(status=503, text="model is still loading")


async def _models(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    card = {
        "id": state.model_name,
        "object": "model",
        "created": int(time.time()),
        "owned_by": "vllm",
        "root": state.model_name,
        "parent": None,
        "max_model_len": state.max_model_len,
    }
    return web.json_response({"object": "list", "data": [card]})


async def _metrics(request: web.Request) -> web.Response:
    body = request.app[ENGINE_KEY].metrics.exposition()
    return web.Response(body=body, content_type="text/plain", charset="utf-8")


async def _dcgm_metrics(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    text = state.dcgm.exposition(request.app[ENGINE_KEY], ready=state.ready)
    return web.Response(text=text, content_type="text/plain", charset="utf-8")


async def _get_faults(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE_KEY].faults.faults.to_mapping())


async def _set_faults(request: web.Request) -> web.Response:
    try:
        faults = Faults.from_mapping(await request.json())
    except (json.JSONDecodeError, FaultError) as err:
        return _error(400, f"bad faults: {err}", "BadRequestError", "body")
    request.app[STATE_KEY].faults.faults = faults
    return web.json_response(faults.to_mapping())


def build_app(engine: RealTimeEngine, state: ServerState) -> web.Application:
    app = web.Application()
    app[ENGINE_KEY] = engine
    app[STATE_KEY] = state
    app.router.add_post("/v1/completions", _generation_handler(chat=False))
    app.router.add_post("/v1/chat/completions", _generation_handler(chat=True))
    app.router.add_get("/v1/models", _models)
    app.router.add_get("/health", _health)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/dcgm/metrics", _dcgm_metrics)
    app.router.add_get("/admin/faults", _get_faults)
    app.router.add_post("/admin/faults", _set_faults)

    async def engine_loop(app: web.Application):  # aiohttp cleanup context
        task = asyncio.create_task(engine.run())
        yield
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    app.cleanup_ctx.append(engine_loop)
    return app


def build_dcgm_app(engine: RealTimeEngine, state: ServerState) -> web.Application:
    """dcgm-exporter on its own port, serving its metrics at /metrics as the real one does."""
    app = web.Application()
    app[ENGINE_KEY] = engine
    app[STATE_KEY] = state
    app.router.add_get("/metrics", _dcgm_metrics)
    return app
