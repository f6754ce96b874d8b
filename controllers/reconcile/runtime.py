"""What the operator holds beyond Kubernetes: its Prometheus reader, its clock, policy memory,
and the model resolver with its cache."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from controllers.adapters.hub_settings import HubSettings
from controllers.adapters.model_source import ModelResolver
from controllers.adapters.prometheus_reader import MetricsSource, OperatorClock, PrometheusReader

PROMETHEUS_URL_ENV = "INFERFLEET_PROMETHEUS_URL"
# Comma-separated host patterns a fleet's prometheusURL may name (`*.monitoring.svc`); unset
# allows every host, an empty value only the default URL.
PROMETHEUS_ALLOWED_HOSTS_ENV = "INFERFLEET_PROMETHEUS_ALLOWED_HOSTS"
TIME_COMPRESSION_ENV = "INFERFLEET_TIME_COMPRESSION"
# What the chart's RBAC grants beyond the operator's own objects (chart values rbac.podAccess
# and rbac.hubTokenSecrets). Unset: everything (a local run with a broad kubeconfig); the chart
# always sets both.
POD_ACCESS_ENV = "INFERFLEET_POD_ACCESS"
READABLE_SECRETS_ENV = "INFERFLEET_READABLE_SECRETS"  # comma-separated Secret names
# Chart value vllmPods.allowPrivileged: whether a fleet may ask for root or privileges in its
# vLLM pods (model.securityContext). Unset: no.
ALLOW_PRIVILEGED_ENV = "INFERFLEET_ALLOW_PRIVILEGED_PODS"
_OFF = frozenset({"false", "0", "no", "off"})


def pod_access_from_environment() -> bool:
    """Whether the operator may list, watch and patch pods (it then caches its vLLM pods)."""
    return os.environ.get(POD_ACCESS_ENV, "true").strip().lower() not in _OFF


def privileged_pods_from_environment() -> bool:
    return os.environ.get(ALLOW_PRIVILEGED_ENV, "false").strip().lower() not in _OFF


def readable_secrets_from_environment() -> frozenset[str] | None:
    """The Secret names the operator may read; None: any."""
    names = os.environ.get(READABLE_SECRETS_ENV)
    if names is None:
        return None
    return frozenset(n.strip() for n in names.split(",") if n.strip())


@dataclass(frozen=True)
class Remembered:
    """A fleet's newest policy memory and the wall time it was last written to status."""

    history: dict[str, Any]
    written_s: float


def share_unchanged(new: Any, stored: Any) -> Any:
    """`new`, with every string and list equal to the same part of `stored` replaced by
    stored's own object.

    The policy memory kept here and the fleet's `status.history` in the watch's copy of the
    fleet are mostly the same learned profiles (kilobytes of packed floats each, changed only
    when a bin closes); sharing them keeps one copy in memory, not two. Neither side is ever
    changed in place (the policy rebuilds its memory every pass, Kopf replaces bodies whole).
    """
    if isinstance(new, Mapping):
        if not isinstance(stored, Mapping):
            return new
        return {key: share_unchanged(value, stored.get(key)) for key, value in new.items()}
    if isinstance(new, str | list) and type(stored) is type(new) and stored == new:
        return stored
    return new


@dataclass
class Watcher:
    """The operator's view beyond Kubernetes: Prometheus, its clock, and policy memory.

    Policy memory changes every pass but is written to status only now and then (see
    `decide.HISTORY_PERSIST_S`); between writes the newest copy lives here.
    """

    prometheus: MetricsSource | None = None
    clock: OperatorClock = field(default_factory=lambda: OperatorClock(time.time()))
    memory: dict[str, Remembered] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # uid -> the last failure, logged once
    # (namespace, kind, name) -> resourceVersion of the operator's own last apply: the watch
    # event that echoes it needs no pass.
    applied: dict[tuple[str, str, str], str] = field(default_factory=dict)
    # Models named without hfConfig: the built-in catalog, then the Hub (HF_ENDPOINT, offline).
    models: ModelResolver = field(default_factory=lambda: ModelResolver(HubSettings.from_env()))
    pod_access: bool = True  # False: no pod cache; Pending is read from the Deployments
    readable_secrets: frozenset[str] | None = None  # None: any Secret (no chart restriction)
    allow_privileged_pods: bool = False  # model.securityContext may ask for root or privileges
    # (fleet uid, pool) -> when each replica its Deployment asks for beyond the ready ones was
    # first seen missing (oldest first); only kept without pod access.
    unready_since: dict[tuple[str, str], list[float]] = field(default_factory=dict)

    @classmethod
    def from_environment(cls) -> Watcher:
        compression = float(os.environ.get(TIME_COMPRESSION_ENV, "1") or 1)
        clock = OperatorClock(time.time(), compression)
        url = os.environ.get(PROMETHEUS_URL_ENV) or None
        hosts = os.environ.get(PROMETHEUS_ALLOWED_HOSTS_ENV)
        allowed = None if hosts is None else tuple(h.strip() for h in hosts.split(",") if h.strip())
        return cls(
            PrometheusReader(url, clock, allowed),
            clock,
            models=ModelResolver(HubSettings.from_env()),
            pod_access=pod_access_from_environment(),
            readable_secrets=readable_secrets_from_environment(),
            allow_privileged_pods=privileged_pods_from_environment(),
        )

    def forget(self, uid: str) -> None:
        self.memory.pop(uid, None)
        self.errors.pop(uid, None)
        for key in [k for k in self.unready_since if k[0] == uid]:
            del self.unready_since[key]
