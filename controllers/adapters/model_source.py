"""Resolve a model by name: its config.json (and exact weights when the Hub has them).

In order: the built-in offline catalog (shipped with the operator, see `model_catalog/`), then
the Hugging Face Hub (or its mirror). A model neither knows is `ModelConfigUnavailable`, whose
message lists what was tried. Results are cached per (name, revision, token): a resolved
model for good (a revision's files do not change under a pinned commit, and a branch moving is
not worth a request per pass), a failure for a minute, so a fleet that names a missing model
neither hammers the Hub nor waits long after its Secret or the mirror is fixed.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

from controllers.adapters.hub_settings import HubError, HubModel, HubSettings
from sizing.checkpoint import CheckpointWeights, summarize
from sizing.errors import InvalidInput, SizingError
from sizing.model import load_model_config

DEFAULT_REVISION = "main"
# A Hub repo id: [org/]name of letters, digits and . _ - (never a path, a URL or "..").
_REPO_ID = re.compile(r"^(?:[A-Za-z0-9][\w.-]*/)?[A-Za-z0-9][\w.-]*$")
FAILURE_TTL_S = 60.0
_CACHE_SIZE = 256


class ModelConfigUnavailable(Exception):
    """No source could give this model's config.json; `tried` says each source's answer."""

    reason = "ModelConfigUnavailable"

    def __init__(self, name: str, revision: str, tried: tuple[str, ...]) -> None:
        self.tried = tried
        super().__init__(
            f"spec.model.name {name!r} (revision {revision}): no config.json found; tried "
            + "; ".join(tried)
            + ". Set spec.model.hfConfig (inline or configMapRef), or give the operator Hub access"
        )


@dataclass(frozen=True)
class ResolvedModel:
    config: dict[str, Any]
    checkpoint: CheckpointWeights | None  # exact loaded weights, when safetensors were read
    origin: str  # where it came from, for the plan's explanation


class ModelCatalog:
    """The configs shipped in `controllers/adapters/model_catalog/`, looked up by repo id
    (case-insensitive, as the Hub is)."""

    def __init__(self) -> None:
        self._root = resources.files("controllers.adapters") / "model_catalog"
        index = json.loads((self._root / "INDEX.json").read_text())
        self._index: dict[str, tuple[str, dict[str, Any]]] = {
            repo.lower(): (repo, entry) for repo, entry in index.items()
        }

    def __contains__(self, name: str) -> bool:
        return name.lower() in self._index

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(sorted(repo for repo, _ in self._index.values()))

    def get(self, name: str) -> ResolvedModel | None:
        found = self._index.get(name.lower())
        if found is None:
            return None
        repo, entry = found
        config = json.loads((self._root / entry["file"]).read_text())
        return ResolvedModel(config, None, f"built-in catalog ({repo}: {entry['origin']})")


def _num_layers(config: dict[str, Any]) -> int:
    return load_model_config(config).num_layers


class ModelResolver:
    """Catalog, then Hub; cached. One per operator (or per CLI run)."""

    def __init__(
        self,
        settings: HubSettings,
        catalog: ModelCatalog | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._catalog = catalog or ModelCatalog()
        self._clock = clock
        self._cache: OrderedDict[
            tuple[str, str, str], tuple[float, ResolvedModel | ModelConfigUnavailable]
        ] = OrderedDict()
        # Fleets that name the same new model at once share one resolution.
        self._inflight: dict[tuple[str, str, str], asyncio.Task[ResolvedModel]] = {}

    def in_catalog(self, name: str, revision: str | None = None) -> bool:
        """Whether the built-in catalog answers for this model (then no token is needed)."""
        return (revision or DEFAULT_REVISION) == DEFAULT_REVISION and name in self._catalog

    async def resolve(
        self, name: str, revision: str | None = None, token: str | None = None
    ) -> ResolvedModel:
        revision = revision or DEFAULT_REVISION
        # Per token (by digest, never the token itself): a fleet is not answered with what
        # another fleet's token could read.
        key = (name.lower(), revision, hashlib.sha256((token or "").encode()).hexdigest())
        cached = self._cache.get(key)
        if cached is not None and (
            isinstance(cached[1], ResolvedModel) or self._clock() - cached[0] < FAILURE_TTL_S
        ):
            self._cache.move_to_end(key)
            if isinstance(cached[1], ModelConfigUnavailable):
                raise cached[1]
            return cached[1]
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(self._resolve(name, revision, token))
            self._inflight[key] = task
            task.add_done_callback(lambda _: self._inflight.pop(key, None))
        try:
            result: ResolvedModel | ModelConfigUnavailable = await asyncio.shield(task)
        except ModelConfigUnavailable as err:
            result = err
        self._cache[key] = (self._clock(), result)
        while len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
        if isinstance(result, ModelConfigUnavailable):
            raise result
        return result

    async def _resolve(self, name: str, revision: str, token: str | None) -> ResolvedModel:
        if not _REPO_ID.match(name) or ".." in name:
            raise ModelConfigUnavailable(
                name,
                revision,
                ("nothing: it is not a Hugging Face repo id (a local path or a URL?)",),
            )
        tried = []
        found = self._catalog.get(name) if revision == DEFAULT_REVISION else None
        if found is not None:
            return found
        tried.append(
            "the built-in catalog (not listed)"
            if revision == DEFAULT_REVISION
            else f"the built-in catalog (skipped: it holds main, not revision {revision})"
        )
        endpoint = self.settings.endpoint
        try:
            checkpoint, files = await asyncio.wait_for(
                asyncio.to_thread(self._from_hub, name, revision, token), self.settings.deadline_s
            )
        except TimeoutError:
            tried.append(f"the Hub at {endpoint}: no answer within {self.settings.deadline_s:g} s")
            raise ModelConfigUnavailable(name, revision, tuple(tried)) from None
        except HubError as err:
            tried.append(f"the Hub at {endpoint}: {err}")
            raise ModelConfigUnavailable(name, revision, tuple(tried)) from None
        how = "safetensors headers" if checkpoint else "no safetensors: weights from the config"
        return ResolvedModel(
            files.config, checkpoint, f"Hub {endpoint} ({name}@{files.commit}; {how})"
        )

    def _from_hub(
        self, name: str, revision: str, token: str | None
    ) -> tuple[CheckpointWeights | None, HubModel]:
        """Blocking (a worker thread): the Hub's files, then the header's tensors sorted."""
        from controllers.adapters.hf_hub import HubClient  # the library loads here, once

        found = HubClient(self.settings, token).read_model(name, revision)
        try:
            layers = _num_layers(found.config)
        except SizingError as err:
            raise HubError(f"config.json: {err}") from None
        if found.tensors is None:
            return None, found
        try:
            return summarize(found.tensors, layers), found
        except InvalidInput as err:
            raise HubError(f"{name}@{found.commit}: {err}") from None
