"""A local stand-in for the Hugging Face Hub: a real HTTP server on loopback.

It answers what `huggingface_hub` asks, as the Hub does:

* `GET /api/models/{repo}/revision/{rev}`: the repo's commit (`sha`) and files (`siblings`
  with sizes), public even for gated repos (as on the Hub);
* `HEAD`/`GET /{repo}/resolve/{rev}/{file}`, `rev` a branch or the commit: `X-Repo-Commit`,
  `ETag` and `Content-Length` for small files; a 302 to a storage path with `X-Linked-Etag` and
  `X-Linked-Size` for safetensors (the Hub sends LFS files to its CDN), where `Range: bytes=a-b`
  gets a 206. A safetensors file is its header followed by zeros, so a checkpoint of any size
  costs only its header;
* errors with the `X-Error-Code` the library reads: `RepoNotFound` (401 anonymous, 404 with a
  token), `RevisionNotFound`, `EntryNotFound`, `GatedRepo` (401 without a token, 403 with
  another one).

Every request is recorded, so tests can check what was (not) asked.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from inferfleet_testing.checkpoints import data_bytes

_INFO = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/revision/(?P<rev>[^/]+)$")
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")
_RANGE = re.compile(r"^bytes=(\d+)-(\d+)$")
# Whole-file GETs of a virtual checkpoint beyond this are refused: the sizing must use Range.
_MAX_FULL_BYTES = 2**20


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    range: str | None
    authorization: str | None


def commit_of(repo: str, revision: str) -> str:
    return hashlib.sha1(f"{repo}@{revision}".encode()).hexdigest()


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

    def _revision(self, repo: str, revision: str) -> str | None:
        """The branch a revision (a branch name or its commit) names, if the repo has it."""
        for known, branch in self.files:
            if known == repo and revision in (branch, commit_of(repo, branch)):
                return branch
        return None

    def _length(self, repo: str, branch: str, filename: str) -> int:
        stored = self.files[(repo, branch)][filename]
        if filename.endswith(".safetensors"):
            return len(stored) + data_bytes(stored)
        return len(stored)

    def _info(self, repo: str, branch: str) -> bytes:
        siblings = [
            {"rfilename": name, "size": self._length(repo, branch, name)}
            for name in self.files[(repo, branch)]
        ]
        sha = commit_of(repo, branch)
        gated = "manual" if repo in self.gated else False
        info = {"id": repo, "modelId": repo, "sha": sha, "private": False, "gated": gated}
        return json.dumps({**info, "siblings": siblings}).encode()

    @contextmanager
    def serving(self) -> Iterator[FakeHub]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # quiet test output
                pass

            def _send(
                self,
                status: int,
                body: bytes = b"",
                headers: Mapping[str, str] = {},
                head: bool = False,
            ) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def do_HEAD(self) -> None:
                self._answer(head=True)

            def do_GET(self) -> None:
                if self.path == "/_requests":  # for a hub served from another process
                    self._send(200, json.dumps(len(hub.requests)).encode())
                    return
                self._answer(head=False)

            def _error(self, status: int, code: str, message: str) -> None:
                self._send(status, message.encode(), {"X-Error-Code": code,
                                                      "X-Error-Message": message})  # fmt: skip

            def _answer(self, head: bool) -> None:
                hub.requests.append(
                    Recorded(
                        self.command,
                        self.path,
                        self.headers.get("Range"),
                        self.headers.get("Authorization"),
                    )
                )
                path = urlsplit(self.path).path
                authorization = self.headers.get("Authorization")
                authorized = authorization == f"Bearer {hub.token}"
                info = _INFO.match(path)
                storage = path.startswith("/storage/")
                match = info or _RESOLVE.match(path.removeprefix("/storage"))
                if match is None:
                    self._send(404, b"not found")
                    return
                repo, revision = match["repo"], unquote(match["rev"])
                if not any(known == repo for known, _ in hub.files):
                    status = 404 if authorized else 401
                    self._error(status, "RepoNotFound", "Repository not found")
                    return
                branch = hub._revision(repo, revision)
                if branch is None:
                    self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
                    return
                if info is not None:
                    self._send(200, hub._info(repo, branch), {"Content-Type": "application/json"})
                    return
                if repo in hub.gated and not storage and not authorized:
                    status = 403 if authorization else 401
                    self._error(status, "GatedRepo", f"Access to model {repo} is restricted")
                    return
                filename = unquote(match["file"])
                stored = hub.files[(repo, branch)].get(filename)
                if stored is None:
                    self._error(404, "EntryNotFound", f"{filename} does not exist")
                    return
                length = hub._length(repo, branch, filename)
                etag = '"' + hashlib.sha256(stored).hexdigest() + '"'
                meta = {"X-Repo-Commit": commit_of(repo, branch), "ETag": etag}
                if filename.endswith(".safetensors") and not storage:
                    prefix = (
                        ""
                        if hub.storage_host is None
                        else hub.url.replace("127.0.0.1", hub.storage_host)
                    )
                    where = f"{prefix}/storage/{repo}/resolve/{commit_of(repo, branch)}/{filename}"
                    self._send(302, headers={**meta, "Location": where, "X-Linked-Etag": etag,
                                             "X-Linked-Size": str(length)})  # fmt: skip
                    return
                wanted = _RANGE.match(self.headers.get("Range") or "")
                if wanted is None:
                    if length > _MAX_FULL_BYTES and filename.endswith(".safetensors"):
                        self._send(500, b"the fake hub serves checkpoints by Range only")
                        return
                    body = stored + bytes(length - len(stored))
                    self._send(200, body, meta, head=head)
                    return
                start, end = int(wanted[1]), min(int(wanted[2]), length - 1)
                if start >= length:
                    self._send(416, headers={"Content-Range": f"bytes */{length}"})
                    return
                piece = stored[start : end + 1]
                piece += bytes(end + 1 - start - len(piece))
                ranged = {**meta, "Content-Range": f"bytes {start}-{end}/{length}"}
                self._send(206, piece, ranged, head=head)

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
