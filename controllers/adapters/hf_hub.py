"""A model's config.json and safetensors headers from the Hugging Face Hub, or a mirror of it.

Files are read the way the Hub serves them: `{endpoint}/{repo}/resolve/{revision}/{file}`, with
redirects followed to the storage behind it. Weights are never downloaded: each shard's first 8
bytes give its header length, one more HTTP Range request gives the header, and the header
(parsed by `sizing.checkpoint`) gives every tensor's dtype and shape. `HF_ENDPOINT` names a
mirror, `HF_TOKEN` a default token; `HF_HUB_OFFLINE=1` makes every call fail before any
request, so an air-gapped cluster is never left waiting on timeouts.
`INFERFLEET_HUB_ALLOWED_HOSTS` (the chart's `hub.allowedHosts`) lists the hosts a redirect may
lead to besides the endpoint's own: a redirect elsewhere, or from https to http, is refused
before it is sent.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import certifi
import httpx

from controllers.adapters.allow_list import host_allowed
from sizing.checkpoint import (
    HEADER_LENGTH_BYTES,
    CheckpointWeights,
    TensorInfo,
    header_length,
    parse_header,
    summarize,
    weight_map_files,
)
from sizing.errors import InvalidInput

DEFAULT_ENDPOINT = "https://huggingface.co"
INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
# Headers fetched at once: enough to read a 160-shard checkpoint in seconds, few enough that a
# mirror does not see a burst.
_CONCURRENT_SHARDS = 8
_TRUE = {"1", "true", "yes", "on"}
# config.json and the shard index are kilobytes (a 1,000-shard index a few MB): more is not one.
MAX_JSON_BYTES = 32 * 2**20


class HubError(Exception):
    """The Hub could not answer for this model; the message says what was asked and why."""


class NotOnHub(HubError):
    """The Hub answered 404: no such repo, revision or file."""


ALLOWED_HOSTS_ENV = "INFERFLEET_HUB_ALLOWED_HOSTS"


@dataclass(frozen=True)
class HubSettings:
    endpoint: str = DEFAULT_ENDPOINT
    offline: bool = False
    default_token: str | None = None
    timeout_s: float = 10.0
    # Host patterns a redirect may lead to besides the endpoint's host; None: any host.
    allowed_hosts: tuple[str, ...] | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> HubSettings:
        env = os.environ if env is None else env
        hosts = env.get(ALLOWED_HOSTS_ENV)
        return cls(
            endpoint=(env.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/"),
            offline=env.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE,
            default_token=env.get("HF_TOKEN") or None,
            allowed_hosts=None
            if hosts is None
            else tuple(h.strip() for h in hosts.split(",") if h.strip()),
        )

    def may_reach(self, url: str) -> bool:
        """The endpoint itself, or a host on the list, never a downgrade from https."""
        endpoint = urlsplit(self.endpoint)
        target = urlsplit(url)
        if endpoint.scheme == "https" and target.scheme != "https":
            return False
        if (target.hostname or "").lower() == (endpoint.hostname or "").lower():
            return True
        return host_allowed(url, self.allowed_hosts)


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One per process: building it loads the CA bundle, a blocking tenth of a second that
    must not recur on the event loop for every resolution."""
    return ssl.create_default_context(cafile=certifi.where())


def file_url(endpoint: str, repo: str, revision: str, filename: str) -> str:
    return f"{endpoint}/{repo}/resolve/{quote(revision, safe='')}/{quote(filename)}"


class HubClient:
    """One model's files; a fresh client per resolution (the operator caches the results)."""

    def __init__(self, settings: HubSettings, token: str | None = None) -> None:
        if settings.offline:
            raise HubError("offline (HF_HUB_OFFLINE is set): the Hub was not asked")
        self._settings = settings
        token = token or settings.default_token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.AsyncClient(
            timeout=settings.timeout_s,
            follow_redirects=True,
            headers=headers,
            verify=tls_context(),
            event_hooks={"request": [self._check_host]},  # every redirect's request too
        )

    async def _check_host(self, request: httpx.Request) -> None:
        if not self._settings.may_reach(str(request.url)):
            raise HubError(
                f"a redirect to {request.url.scheme}://{request.url.host}: not the Hub's host "
                f"nor on its allow-list (chart value hub.allowedHosts, {ALLOWED_HOSTS_ENV})"
            )

    async def __aenter__(self) -> HubClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._http.aclose()

    async def _get(
        self, repo: str, revision: str, filename: str, span: tuple[int, int] | None = None
    ) -> bytes:
        url = file_url(self._settings.endpoint, repo, revision, filename)
        headers = {"Range": f"bytes={span[0]}-{span[1]}"} if span else {}
        try:
            async with self._http.stream("GET", url, headers=headers) as response:
                status = response.status_code
                if status == 404:
                    raise NotOnHub(f"{url}: not found (404)")
                if status in (401, 403):
                    raise HubError(
                        f"{url}: refused ({status}): a gated or private model needs a token "
                        "(spec.model.hub.tokenSecretRef) that has access"
                    )
                if status not in (200, 206):
                    raise HubError(f"{url}: HTTP {status}")
                wanted = None if span is None else span[1] - span[0] + 1
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if wanted is not None and len(body) >= wanted:
                        break  # a server that ignored Range: stop reading the weights
                    if wanted is None and len(body) > MAX_JSON_BYTES:
                        raise HubError(f"{url}: larger than {MAX_JSON_BYTES} bytes")
        except httpx.HTTPError as err:
            raise HubError(f"{url}: {type(err).__name__}: {err}") from None
        if span is not None and status == 200:
            return bytes(body[span[0] : span[1] + 1])
        return bytes(body)

    async def _json(self, repo: str, revision: str, filename: str) -> dict[str, Any]:
        raw = await self._get(repo, revision, filename)
        try:
            decoded = json.loads(raw)
        except ValueError as err:
            raise HubError(f"{repo}@{revision}/{filename}: not valid JSON ({err})") from None
        if not isinstance(decoded, dict):
            raise HubError(f"{repo}@{revision}/{filename}: expected a JSON object")
        return decoded

    async def config(self, repo: str, revision: str) -> dict[str, Any]:
        return await self._json(repo, revision, "config.json")

    async def _header(self, repo: str, revision: str, filename: str) -> tuple[TensorInfo, ...]:
        prefix = await self._get(repo, revision, filename, (0, HEADER_LENGTH_BYTES - 1))
        try:
            length = header_length(prefix)
            raw = await self._get(
                repo, revision, filename, (HEADER_LENGTH_BYTES, HEADER_LENGTH_BYTES + length - 1)
            )
            if len(raw) < length:
                raise InvalidInput(f"safetensors: header cut short at {len(raw)} of {length} bytes")
            # A shard's header parses in a few ms: on the loop (threads would contend for the
            # GIL with it, which stalls it more than the parsing does).
            return parse_header(raw)
        except InvalidInput as err:
            raise HubError(f"{repo}@{revision}/{filename}: {err}") from None

    async def checkpoint(
        self, repo: str, revision: str, num_layers: int
    ) -> CheckpointWeights | None:
        """The loaded weights from every shard's header; None when the repo has no safetensors
        (e.g. only .bin or GGUF files): then the sizing counts parameters instead."""
        try:
            files = weight_map_files(await self._json(repo, revision, INDEX_FILE))
        except NotOnHub:
            files = (SINGLE_FILE,)
        except InvalidInput as err:
            raise HubError(f"{repo}@{revision}/{INDEX_FILE}: {err}") from None
        gate = asyncio.Semaphore(_CONCURRENT_SHARDS)

        async def one(filename: str) -> tuple[TensorInfo, ...]:
            async with gate:
                return await self._header(repo, revision, filename)

        try:
            headers = await asyncio.gather(*(one(f) for f in files))
        except NotOnHub:
            if files == (SINGLE_FILE,):
                return None
            raise
        tensors = [t for header in headers for t in header]
        try:  # a second or two for 100k tensors: one worker thread, off the loop
            return await asyncio.to_thread(summarize, tensors, num_layers)
        except InvalidInput as err:
            raise HubError(f"{repo}@{revision}: {err}") from None
