"""What a reconcile observes besides the Kubernetes objects: Prometheus, on the operator's clock.

An adapter around `controllers.prometheus`: one client per Prometheus URL, the blocking query
run off the event loop, and the operator's time compression (a demo or a test may run a day in
minutes: policy time then runs faster than the wall clock, and the PromQL windows shrink with
it, never below what a few scrapes can fill).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field

from prometheus_api_client import PrometheusConnect

from controllers.monitoring import MetricsSnapshot
from controllers.prometheus import QueryWindows, fetch_snapshot, make_client

# The shortest PromQL windows that still hold a few scrapes at a 1 s scrape interval.
MIN_RATE_WINDOW_S = 4.0
MIN_STEP_S = 1.0
MIN_MAX_AGE_S = 10.0


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


@dataclass
class PrometheusReader:
    """One client per URL; `snapshot` never raises for Prometheus trouble (it says so)."""

    default_url: str | None
    clock: OperatorClock
    _clients: dict[str, PrometheusConnect] = field(default_factory=dict)

    def url_for(self, fleet_url: str | None) -> str | None:
        return fleet_url or self.default_url

    async def snapshot(
        self, url: str, namespace: str, fleet: str, pools: Iterable[str], wall_s: float
    ) -> MetricsSnapshot:
        client = self._clients.get(url)
        if client is None:
            client = self._clients[url] = make_client(url)
        return await asyncio.to_thread(
            fetch_snapshot, client, namespace, fleet, list(pools), wall_s, self.clock.windows()
        )
