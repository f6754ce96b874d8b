"""What the operator knows of the Hub before it asks it anything: settings, errors, answers.

Apart from `hf_hub` on purpose: the operator builds its settings at start, while the
`huggingface_hub` library and its HTTP stack (~7 MiB resident) load only when a fleet first
names a model that neither its spec, a ConfigMap nor the built-in catalog describes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from controllers.adapters.allow_list import host_allowed
from sizing.checkpoint import TensorInfo

DEFAULT_ENDPOINT = "https://huggingface.co"
CACHE_ENV = "INFERFLEET_HUB_CACHE_DIR"
CACHE_MAX_ENV = "INFERFLEET_HUB_CACHE_MAX_MIB"
ALLOWED_HOSTS_ENV = "INFERFLEET_HUB_ALLOWED_HOSTS"
_TRUE = {"1", "true", "yes", "on"}


class HubError(Exception):
    """The Hub could not answer for this model; the message says what was asked and why."""


class HostRefused(HubError):
    """A request (a redirect, mostly) would have left the Hub's host and its allow-list."""


@dataclass(frozen=True)
class HubSettings:
    endpoint: str = DEFAULT_ENDPOINT
    offline: bool = False
    default_token: str | None = None
    timeout_s: float = 10.0  # per request; the whole resolution has `deadline_s`
    deadline_s: float = 120.0
    # Where hf_hub_download keeps config.json and the index, and how large that may grow.
    # Named, not probed: tempfile.gettempdir() raises where no temporary directory is writable
    # (a read-only container without /tmp), which an offline run never needs.
    cache_dir: Path = Path(os.environ.get("TMPDIR") or "/tmp") / "inferfleet-hub"
    cache_max_bytes: int = 32 * 2**20
    # Host patterns a redirect may lead to besides the endpoint's host; None: any host.
    allowed_hosts: tuple[str, ...] | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> HubSettings:
        env = os.environ if env is None else env
        defaults = cls()
        hosts = env.get(ALLOWED_HOSTS_ENV)
        return cls(
            endpoint=(env.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/"),
            offline=env.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE,
            default_token=env.get("HF_TOKEN") or None,
            cache_dir=Path(env.get(CACHE_ENV) or defaults.cache_dir),
            cache_max_bytes=int(float(env.get(CACHE_MAX_ENV) or 32) * 2**20),
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


@dataclass(frozen=True)
class HubModel:
    config: dict[str, Any]
    commit: str  # the revision the files were read at
    tensors: tuple[TensorInfo, ...] | None  # None: the repo has no safetensors
