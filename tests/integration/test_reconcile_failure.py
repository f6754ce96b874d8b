"""A pass that fails for any reason but the API server's ends in Degraded, touching nothing.

The pass runs in-process against the KMock API server through the real Kubernetes adapter; the
failure comes from a metrics source whose snapshot raises, as a bug in an adapter would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import yaml

from controllers.adapters.kube import Kube
from controllers.api.v1alpha1 import API_VERSION
from controllers.policy.monitoring.snapshot import MetricsSnapshot
from controllers.reconcile.handlers import reconcile
from controllers.reconcile.plans import PlanCache
from controllers.reconcile.runtime import Watcher
from inferfleet_testing.kube.fixtures import cluster_fixture  # noqa: F401
from inferfleet_testing.kube.harness import Cluster
from tests.conftest import REPO


class BrokenMetrics:
    """A MetricsSource with a bug: every snapshot raises."""

    def url_for(self, fleet_url: str | None) -> str | None:
        return "http://127.0.0.1:9"

    def allowed(self, url: str) -> bool:
        return True

    async def snapshot(
        self, url: str, namespace: str, fleet: str, pools: Iterable[str], wall_s: float
    ) -> MetricsSnapshot:
        raise RuntimeError("snapshot exploded")

    async def history(
        self, url: str, namespace: str, fleet: str, wall_s: float
    ) -> tuple[tuple[float, float], ...]:
        return ()


def _fleet(cluster: Cluster) -> dict[str, Any]:
    docs = yaml.safe_load_all((REPO / "examples" / "fleet-code-8b.yaml").read_text())
    created = cluster.create(next(d for d in docs if d and d.get("kind") == "InferenceFleet"))
    meta = created["metadata"]
    found = cluster.get(API_VERSION, "InferenceFleet", meta["namespace"], meta["name"])
    assert found is not None
    return found


def _pass(cluster: Cluster, watcher: Watcher, plans: PlanCache) -> dict[str, Any]:
    fleet = _fleet_now(cluster)

    async def run() -> None:
        kube = Kube.from_environment()
        try:
            await reconcile(
                kube, fleet, now_s=1_000_000.0, plans=plans, owned=cluster.owned(), watcher=watcher
            )
        finally:
            await kube.close()

    asyncio.run(run())
    return _fleet_now(cluster)


def _fleet_now(cluster: Cluster) -> dict[str, Any]:
    (fleet,) = cluster.objects("InferenceFleet")
    return fleet


def _condition(fleet: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in fleet["status"]["conditions"] if c["type"] == type_), None)


def _warnings(cluster: Cluster) -> list[str]:
    return [e["reason"] for e in cluster.objects("Event") if e["type"] == "Warning"]


def test_a_failing_pass_is_degraded_says_so_once_and_recovers(cluster: Cluster):
    _fleet(cluster)
    plans = PlanCache()
    broken = Watcher(prometheus=BrokenMetrics())
    fleet = _pass(cluster, broken, plans)
    degraded = _condition(fleet, "Degraded")
    assert degraded is not None and degraded["status"] == "True"
    assert degraded["reason"] == "ReconcileFailed" and "snapshot exploded" in degraded["message"]
    assert fleet["status"]["observedGeneration"] == fleet["metadata"]["generation"]
    assert cluster.objects("Deployment") == []  # nothing was applied
    assert _warnings(cluster) == ["ReconcileFailed"]
    _pass(cluster, broken, plans)
    assert _warnings(cluster) == ["ReconcileFailed"]  # the same failure is not said twice
    fleet = _pass(cluster, Watcher(), plans)
    recovered = _condition(fleet, "Degraded")
    assert recovered is not None and recovered["status"] == "False"
    assert len(cluster.objects("Deployment")) == 1
