"""pytest fixtures `cluster` (a fresh API server per test), `operator` (Kopf against it) and
`recorded` (every request the operator makes of the API server).

Import `cluster_fixture, operator_fixture, recorded_fixture` into a test module to use them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from inferfleet_testing.kube.apiserver import ApiServer
from inferfleet_testing.kube.harness import Cluster, Operator

TEST_CLIENT_AGENT = "python-httpx/"  # the harness's client; the operator uses aiohttp


@pytest.fixture(name="cluster")
def cluster_fixture(tmp_path, monkeypatch) -> Iterator[Cluster]:
    server = Cluster(tmp_path)
    # Both the adapter and Kopf's login (the operator's own handler) read $KUBECONFIG.
    monkeypatch.setenv("KUBECONFIG", str(server.kubeconfig))
    yield server
    server.close()


@pytest.fixture(name="operator")
def operator_fixture(cluster: Cluster) -> Iterator[Operator]:
    running = Operator()
    yield running
    running.stop()


@pytest.fixture(name="recorded")
def recorded_fixture(monkeypatch) -> list[tuple[str, str, dict[str, str]]]:
    """(method, path, query) of each request of the operator (Kopf and the aiohttp adapter, in
    this process or another), not of the test's httpx client, to servers started after it."""
    calls: list[tuple[str, str, dict[str, str]]] = []
    handle = ApiServer._handle

    async def recording(self, request):
        if not request.headers.get("User-Agent", "").startswith(TEST_CLIENT_AGENT):
            method = str(request.method.value).upper()
            calls.append((method, request.url.path, dict(request.url.query)))
        return await handle(self, request)

    monkeypatch.setattr(ApiServer, "_handle", recording)
    return calls
