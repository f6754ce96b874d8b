"""pytest fixtures `cluster` (a fresh API server per test) and `operator` (Kopf against it).

Import `cluster_fixture, operator_fixture` into a test module to use them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from inferfleet_testing.kube.harness import Cluster, Operator


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
