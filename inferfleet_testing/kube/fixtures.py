"""pytest fixtures `cluster` (a fresh API server per test) and `operator` (Kopf against it).

Import `cluster_fixture, operator_fixture` into a test module to use them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes.config import kube_config

from inferfleet_testing.kube.harness import Cluster, Operator


@pytest.fixture(name="cluster")
def cluster_fixture(tmp_path, monkeypatch) -> Iterator[Cluster]:
    server = Cluster(tmp_path)
    # Both clients read the kubeconfig: the adapter via $KUBECONFIG, Kopf's login via the
    # official client's default location, which it reads once at import.
    monkeypatch.setenv("KUBECONFIG", str(server.kubeconfig))
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(server.kubeconfig))
    yield server
    server.close()


@pytest.fixture(name="operator")
def operator_fixture(cluster: Cluster) -> Iterator[Operator]:
    running = Operator()
    yield running
    running.stop()
