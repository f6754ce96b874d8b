"""What a reconcile observes besides the Kubernetes objects: Prometheus, on the operator's clock.

An adapter around `controllers.adapters.prometheus`: one client per Prometheus URL, the blocking
query run off the event loop, and the operator's time compression (a demo or a test may run a day in
minutes: policy time then runs faster than the wall clock, and the PromQL windows shrink with
it, never below what a few scrapes can fill).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from controllers.adapters.allow_list import host_allowed
from controllers.adapters.prometheus import (
    QueryWindows,
    fetch_snapshot,
    make_client,
    pod_requests,
    request_rate_history,
    unavailable,
)
from controllers.adapters.prometheus_http import PrometheusClient, PrometheusError
from controllers.policy.monitoring.snapshot import MetricsSnapshot

# The shortest PromQL windows that still hold a few scrapes at a 1 s scrape interval.
MIN_RATE_WINDOW_S = 4.0
MIN_STEP_S = 1.0
MIN_MAX_AGE_S = 10.0
# How much past traffic seeds a forecaster that has no memory: two weekly cycles at 5 minutes.
HISTORY_SPAN_S = 14 * 86_400.0
HISTORY_STEP_S = 300.0


def _seconds(value: float) -> str:
    return f"{max(1, round(value))}s"


@dataclass(frozen=True)
class OperatorClock:
    """Policy time from wall time: `start + (wall - start) * compression`."""

    start_wall_s: float
    compression: float = 1.0

    def policy_s(self, wall_s: float) -> float:
        return self.start_wall_s + (wall_s - self.start_wall_s) * self.compression

    def windows(self) -> QueryWindows:
        """The production windows (5 m rates, 1 d workload) on this clock."""
        if self.compression == 1.0:
            return QueryWindows()
        c = self.compression
        return QueryWindows(
            rate=_seconds(max(MIN_RATE_WINDOW_S, 300.0 / c)),
            workload=_seconds(max(4 * MIN_RATE_WINDOW_S, 86_400.0 / c)),
            peak_step=_seconds(max(MIN_STEP_S, 60.0 / c)),
            max_age_s=max(MIN_MAX_AGE_S, 90.0 / c),
        )


class MetricsSource(Protocol):
    """What a reconcile reads from Prometheus: a snapshot per pass, past traffic now and then."""

    def url_for(self, fleet_url: str | None) -> str | None: ...

    def allowed(self, url: str) -> bool: ...

    async def snapshot(
        self, url: str, namespace: str, fleet: str, pools: Iterable[str], wall_s: float
    ) -> MetricsSnapshot: ...

    async def history(
        self, url: str, namespace: str, fleet: str, wall_s: float
    ) -> tuple[tuple[float, float], ...]: ...

    async def pod_requests(self, url: str, namespace: str, fleet: str) -> dict[str, float]: ...


@dataclass
class PrometheusReader:
    """One client per URL; `snapshot` never raises for Prometheus trouble (it says so).

    A fleet's `prometheusURL` is queried only when its host matches `allowed_hosts` (the
    chart's `prometheus.allowedHosts` and `allowedNamespaces`): the operator POSTs from inside
    the cluster, so an open URL would let any fleet author probe internal services. The
    default URL is always allowed; None (no allow-list configured) allows every host.
    """

    default_url: str | None
    clock: OperatorClock
    allowed_hosts: tuple[str, ...] | None = None
    _clients: dict[str, PrometheusClient] = field(default_factory=dict)

    def url_for(self, fleet_url: str | None) -> str | None:
        return fleet_url or self.default_url

    def allowed(self, url: str) -> bool:
        return url == self.default_url or host_allowed(url, self.allowed_hosts)

    def _client(self, url: str) -> PrometheusClient:
        client = self._clients.get(url)
        if client is None:
            client = self._clients[url] = make_client(url)
        return client

    async def history(
        self, url: str, namespace: str, fleet: str, wall_s: float
    ) -> tuple[tuple[float, float], ...]:
        """The fleet's request rate over the last two weeks (policy time), empty on trouble."""
        if not self.allowed(url):
            return ()
        c = self.clock.compression
        start_s = wall_s - HISTORY_SPAN_S / c
        step_s = max(MIN_STEP_S, HISTORY_STEP_S / c)
        window = self.clock.windows().rate
        try:
            found = await asyncio.to_thread(
                request_rate_history, self._client(url), namespace, fleet, start_s, wall_s,
                step_s, window,
            )  # fmt: skip
        except PrometheusError:
            return ()  # learn from live traffic instead
        return tuple(
            (self.clock.policy_s(t_s), rps)
            for t_s, rps in zip(found.timestamps_s, found.rps, strict=True)
        )

    async def pod_requests(self, url: str, namespace: str, fleet: str) -> dict[str, float]:
        """Requests in flight per pod; empty on trouble (the scale-down order is then the
        ReplicaSet's own)."""
        if not self.allowed(url):
            return {}
        try:
            return await asyncio.to_thread(pod_requests, self._client(url), namespace, fleet)
        except PrometheusError:
            return {}

    async def snapshot(
        self, url: str, namespace: str, fleet: str, pools: Iterable[str], wall_s: float
    ) -> MetricsSnapshot:
        if not self.allowed(url):
            refusal = PrometheusError(
                f"host of {url!r} is not in the operator's Prometheus allow-list "
                "(chart values prometheus.allowedHosts / allowedNamespaces)",
                "PrometheusNotAllowed",
            )
            return unavailable(namespace, fleet, wall_s, refusal)
        return await asyncio.to_thread(
            fetch_snapshot,
            self._client(url),
            namespace,
            fleet,
            list(pools),
            wall_s,
            self.clock.windows(),
        )
