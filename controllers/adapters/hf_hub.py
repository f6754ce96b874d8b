"""A model's config.json and safetensors headers from the Hugging Face Hub, or a mirror of it.

Everything goes through the `huggingface_hub` library, so a mirror that serves what it asks
for (Artifactory, a Hub proxy, `HF_ENDPOINT`) works as it does for vLLM itself:

* `model_info` pins the revision to one commit and lists the repo's files (with sizes), so
  config, index and shards are read at the same commit and missing files are not probed;
* `hf_hub_download` fetches config.json and the shard index into a bounded cache directory
  (the operator's root filesystem is read-only: the chart mounts a small emptyDir for it);
* `parse_safetensors_file_metadata` reads each shard's header by HTTP Range, never the weights.

The library is blocking: the resolver runs `read_model` in a worker thread under a deadline.
`HF_HUB_OFFLINE=1` fails before any request, so an air-gapped cluster never waits on timeouts.
`INFERFLEET_HUB_ALLOWED_HOSTS` (the chart's `hub.allowedHosts`) lists the hosts a redirect may
lead to besides the endpoint's own: the library's HTTP client checks every request, redirects
included, before it is sent, and refuses any other host or a step down from https to http.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx2
from huggingface_hub import HfApi, scan_cache_dir, set_client_factory
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import disable_progress_bars

from controllers.adapters.hub_settings import (
    ALLOWED_HOSTS_ENV,
    HostRefused,
    HubError,
    HubModel,
    HubSettings,
)
from sizing.checkpoint import TensorInfo, tensors_from_header, weight_map_files
from sizing.errors import InvalidInput

CONFIG_FILE = "config.json"
INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
# Headers fetched at once: a 160-shard checkpoint in seconds, without a burst on a mirror.
_CONCURRENT_SHARDS = 8
# config.json and the shard index are kilobytes (a 1,000-shard index a few MB): more is not one.
MAX_JSON_BYTES = 32 * 2**20


# The library shares one HTTP client per process; every request it sends passes `_check_host`
# against the settings of the resolution running in that thread (shard threads inherit them).
_ACTIVE = threading.local()


def _check_host(request: httpx2.Request) -> None:
    settings: HubSettings | None = getattr(_ACTIVE, "settings", None)
    if settings is not None and not settings.may_reach(str(request.url)):
        raise HostRefused(
            f"a redirect to {request.url.scheme}://{request.url.host}: not the Hub's host "
            f"nor on its allow-list (chart value hub.allowedHosts, {ALLOWED_HOSTS_ENV})"
        )


def _guarded_client() -> httpx2.Client:
    return httpx2.Client(
        event_hooks={"request": [_check_host]}, follow_redirects=True, timeout=None
    )


@functools.cache
def _install_host_guard() -> None:
    """Once per process (setting the factory closes the library's shared client)."""
    set_client_factory(_guarded_client)


def _as(settings: HubSettings, call: Any, *args: Any) -> Any:
    """Run `call` with the host guard reading `settings` in this thread."""
    _ACTIVE.settings = settings
    try:
        return call(*args)
    finally:
        _ACTIVE.settings = None


def _explain(err: BaseException, timeout_s: float) -> str:
    """One plain sentence per way the Hub can fail (the library's own texts are paragraphs)."""
    if isinstance(err, HostRefused):
        return str(err)
    status = getattr(getattr(err, "response", None), "status_code", None)
    if isinstance(err, RepositoryNotFoundError) and not isinstance(err, GatedRepoError):
        if status == 401:  # what the Hub answers, without a token, for missing and private
            return (
                "refused (401): no such repo, or a private one that needs a token "
                "(spec.model.hub.tokenSecretRef) that has access"
            )
        return f"not found ({status}): no such repo"
    if isinstance(err, GatedRepoError) or status in (401, 403):
        if status == 403:
            return (
                "refused (403): the token has no access to this gated or private model "
                "(accept its terms on the Hub, or use a token that has access)"
            )
        return (
            f"refused ({status}): a gated or private model needs a token "
            "(spec.model.hub.tokenSecretRef) that has access"
        )
    if isinstance(err, RevisionNotFoundError):
        return "not found (404): no such revision"
    if isinstance(err, EntryNotFoundError):
        return "not found (404): the repo has no config.json"
    if isinstance(err, OfflineModeIsEnabled):
        return "offline (HF_HUB_OFFLINE is set): the Hub was not asked"
    if isinstance(err, HfHubHTTPError):
        return f"HTTP {status}" if status else f"{type(err).__name__}"
    if isinstance(err, httpx2.TimeoutException):
        return f"timed out after {timeout_s:g} s ({type(err).__name__})"
    if isinstance(err, httpx2.HTTPError):
        return f"cannot reach it ({type(err).__name__}: {err})"
    cause = err.__cause__ or err.__context__
    if cause is not None and cause is not err:
        return _explain(cause, timeout_s)
    return f"{type(err).__name__}: {err}"


class HubClient:
    """One model's files; a fresh client per resolution (the resolver caches the results)."""

    def __init__(self, settings: HubSettings, token: str | None = None) -> None:
        if settings.offline:
            raise HubError("offline (HF_HUB_OFFLINE is set): the Hub was not asked")
        disable_progress_bars()  # a server has no terminal to draw them on
        _install_host_guard()
        self._settings = settings
        # False, not None: never a token file or variable the operator did not name.
        self._api = HfApi(
            endpoint=settings.endpoint,
            token=token or settings.default_token or False,
            library_name="inferfleet",
        )

    def read_model(self, repo: str, revision: str) -> HubModel:
        """config.json and every shard's tensors at one commit (blocking: run in a thread)."""
        found: HubModel = _as(self._settings, self._read_model, repo, revision)
        return found

    def _read_model(self, repo: str, revision: str) -> HubModel:
        timeout = self._settings.timeout_s
        try:
            info = self._api.model_info(
                repo, revision=revision, files_metadata=True, timeout=timeout
            )
            commit = info.sha or revision
            sizes = {s.rfilename: s.size for s in info.siblings or ()}
            if CONFIG_FILE not in sizes:
                raise HubError(f"{repo}@{commit}: the repo has no {CONFIG_FILE}")
            config = self._json(repo, commit, CONFIG_FILE, sizes)
            if INDEX_FILE in sizes:
                files = weight_map_files(self._json(repo, commit, INDEX_FILE, sizes))
            elif SINGLE_FILE in sizes:
                files = (SINGLE_FILE,)
            else:
                return HubModel(config, commit, None)
            with ThreadPoolExecutor(min(_CONCURRENT_SHARDS, len(files))) as pool:
                headers = list(
                    pool.map(lambda f: _as(self._settings, self._header, repo, commit, f), files)
                )
        except HubError:
            raise
        except InvalidInput as err:
            raise HubError(f"{repo}@{revision}: {err}") from None
        except Exception as err:  # the library's errors, httpx2's, OSError from the cache
            raise HubError(_explain(err, timeout)) from None
        finally:
            prune_cache(self._settings.cache_dir, self._settings.cache_max_bytes)
        return HubModel(config, commit, tuple(t for header in headers for t in header))

    def _json(
        self, repo: str, commit: str, filename: str, sizes: Mapping[str, int | None]
    ) -> dict[str, Any]:
        size = sizes.get(filename) or 0
        if size > MAX_JSON_BYTES:
            raise HubError(f"{repo}@{commit}/{filename}: {size} bytes, more than {MAX_JSON_BYTES}")
        path = self._api.hf_hub_download(
            repo,
            filename,
            revision=commit,
            cache_dir=self._settings.cache_dir,
            etag_timeout=self._settings.timeout_s,
        )
        try:
            decoded = json.loads(Path(path).read_bytes())
        except ValueError as err:
            raise HubError(f"{repo}@{commit}/{filename}: not valid JSON ({err})") from None
        if not isinstance(decoded, dict):
            raise HubError(f"{repo}@{commit}/{filename}: expected a JSON object")
        return decoded

    def _header(self, repo: str, commit: str, filename: str) -> tuple[TensorInfo, ...]:
        meta = self._api.parse_safetensors_file_metadata(
            repo, filename, revision=commit, timeout=self._settings.timeout_s
        )
        entries = {
            name: {"dtype": t.dtype, "shape": t.shape, "data_offsets": list(t.data_offsets)}
            for name, t in meta.tensors.items()
        }
        try:
            return tensors_from_header(entries)
        except InvalidInput as err:
            raise HubError(f"{repo}@{commit}/{filename}: {err}") from None


def prune_cache(cache_dir: Path, max_bytes: int) -> None:
    """Drop the least recently used repos' files until the cache fits `max_bytes` (it holds
    only JSON, so this is rarely needed; the emptyDir behind it must never fill up)."""
    try:
        info = scan_cache_dir(cache_dir)
    except Exception:  # no cache yet, or one being written: nothing to prune now
        return
    excess = info.size_on_disk - max_bytes
    for repo in sorted(info.repos, key=lambda r: r.last_accessed):
        if excess <= 0:
            break
        info.delete_revisions(*(r.commit_hash for r in repo.revisions)).execute()
        excess -= repo.size_on_disk
