"""A local stand-in for the Hugging Face Hub: a real HTTP server on loopback.

It serves `/{repo}/resolve/{revision}/{file}` like the Hub: JSON files directly, safetensors
files by a 302 to a storage path (as the Hub redirects LFS files to its CDN), honouring
`Range: bytes=a-b` with 206. A safetensors file is its header followed by zeros, so a
checkpoint of any size costs only its header. Gated repos answer 401 without the right Bearer
token. Every request is recorded, so tests can check what was (not) asked.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

from inferfleet_testing.checkpoints import data_bytes

_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")
_RANGE = re.compile(r"^bytes=(\d+)-(\d+)$")
# Whole-file GETs of a virtual checkpoint beyond this are refused: the sizing must use Range.
_MAX_FULL_BYTES = 2**20


@dataclass(frozen=True)
class Recorded:
    path: str
    range: str | None
    authorization: str | None


@dataclass
class FakeHub:
    """Files per (repo, revision); `gated` repos need `token`."""

    files: dict[tuple[str, str], dict[str, bytes]] = field(default_factory=dict)
    gated: set[str] = field(default_factory=set)
    token: str = "hf_test_token"
    requests: list[Recorded] = field(default_factory=list)
    url: str = ""
    # The host name shard redirects name (the same server): None keeps them on the Hub's host.
    storage_host: str | None = None

    def add_model(
        self,
        repo: str,
        config: Mapping[str, Any],
        shards: Mapping[str, bytes],
        revision: str = "main",
    ) -> None:
        """A repo with config.json and safetensors shards (each a header from
        `inferfleet_testing.checkpoints.safetensors_header`); an index when there are several."""
        files = {"config.json": json.dumps(config).encode()}
        files.update(shards)
        if len(shards) > 1:
            weight_map = {}
            for name, header in shards.items():
                length = int.from_bytes(header[:8], "little")
                for tensor in json.loads(header[8 : 8 + length]):
                    if tensor != "__metadata__":
                        weight_map[tensor] = name
            files["model.safetensors.index.json"] = json.dumps({"weight_map": weight_map}).encode()
        self.files[(repo, revision)] = files

    def _body(self, repo: str, revision: str, filename: str) -> tuple[bytes, int] | None:
        """(stored bytes, virtual length) of one file."""
        stored = self.files.get((repo, revision), {}).get(filename)
        if stored is None:
            return None
        if filename.endswith(".safetensors"):
            return stored, len(stored) + data_bytes(stored)
        return stored, len(stored)

    @contextmanager
    def serving(self) -> Iterator[FakeHub]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # quiet test output
                pass

            def _send(
                self, status: int, body: bytes = b"", headers: Mapping[str, str] = {}
            ) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path == "/_requests":  # for a hub served from another process
                    self._send(200, json.dumps(len(hub.requests)).encode())
                    return
                hub.requests.append(
                    Recorded(
                        self.path, self.headers.get("Range"), self.headers.get("Authorization")
                    )
                )
                storage = self.path.startswith("/storage/")
                match = _RESOLVE.match(self.path.removeprefix("/storage"))
                if match is None:
                    self._send(404, b"not found")
                    return
                repo, revision = match["repo"], unquote(match["rev"])
                filename = unquote(match["file"])
                authorized = self.headers.get("Authorization") == f"Bearer {hub.token}"
                if repo in hub.gated and not storage and not authorized:
                    self._send(401, b"gated repo: token required")
                    return
                found = hub._body(repo, revision, filename)
                if found is None:
                    self._send(404, b"entry not found")
                    return
                if filename.endswith(".safetensors") and not storage:
                    where = (
                        ""
                        if hub.storage_host is None
                        else hub.url.replace("127.0.0.1", hub.storage_host)
                    )
                    self._send(302, headers={"Location": f"{where}/storage{self.path}"})
                    return
                stored, length = found
                wanted = _RANGE.match(self.headers.get("Range") or "")
                if wanted is None:
                    if length > _MAX_FULL_BYTES and filename.endswith(".safetensors"):
                        self._send(500, b"the fake hub serves checkpoints by Range only")
                        return
                    self._send(200, stored + bytes(length - len(stored)))
                    return
                start, end = int(wanted[1]), min(int(wanted[2]), length - 1)
                if start >= length:
                    self._send(416, headers={"Content-Range": f"bytes */{length}"})
                    return
                piece = stored[start : end + 1]
                piece += bytes(end + 1 - start - len(piece))
                self._send(206, piece, {"Content-Range": f"bytes {start}-{end}/{length}"})

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
