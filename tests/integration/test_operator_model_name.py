"""The operator sizes a fleet that names only its model: from a local fake Hub (real HTTP, a
token Secret), from the built-in catalog offline, and refuses an unknown model alone."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controllers.adapters.hub_settings import CACHE_ENV
from inferfleet_testing.checkpoints import dense_decoder_tensors, safetensors_header
from inferfleet_testing.fake_hub import FakeHub
from inferfleet_testing.kube.fixtures import cluster_fixture  # noqa: F401
from inferfleet_testing.kube.harness import Cluster, Operator
from tests.integration.test_operator import condition, deployments, example, wait_sized

PRIVATE = "acme/code-llama-8b"
CATALOGUED = "meta-llama/Llama-3.1-8B-Instruct"


def by_name(name: str, fleet: str = "code-8b", **model: Any) -> dict[str, Any]:
    obj = example()
    del obj["spec"]["model"]["hfConfig"]
    obj["spec"]["model"].update(name=name, **model)
    obj["metadata"]["name"] = fleet
    return obj


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    config = example()["spec"]["model"]["hfConfig"]["inline"]
    fake = FakeHub(gated={PRIVATE})
    fake.add_model(PRIVATE, config, {"model.safetensors": safetensors_header(
        dense_decoder_tensors(config))})  # fmt: skip
    with fake.serving():
        yield fake


def _operator(
    monkeypatch: pytest.MonkeyPatch, hub: FakeHub, offline: bool, cache: Path
) -> Operator:
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv(CACHE_ENV, str(cache))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    if offline:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return Operator()


def test_model_name_alone_against_the_hub_with_a_token_secret(
    cluster: Cluster, hub: FakeHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    operator = _operator(monkeypatch, hub, offline=False, cache=tmp_path)
    try:
        obj = by_name(PRIVATE, hub={"tokenSecretRef": {"name": "hf", "key": "token"}})
        cluster.create(obj)
        fleet = wait_sized(cluster, obj, status="False")
        assert "Secret hf, key token: not found" in condition(fleet, "Sized")["message"]
        token = base64.b64encode(hub.token.encode()).decode()
        cluster.create({"apiVersion": "v1", "kind": "Secret",
                        "metadata": {"name": "hf", "namespace": "llm"},
                        "data": {"token": token}})  # fmt: skip
        cluster.merge_patch("inferfleet.io/v1alpha1", "InferenceFleet", "llm", "code-8b",
                            {"spec": {"scaling": {"interval": "1s"}}})  # fmt: skip
        fleet = wait_sized(cluster, obj, generation=2)
        assert deployments(cluster, "code-8b")
        message = condition(fleet, "Sized")["message"]
        assert f"config.json from the Hub {hub.url}" in message and "safetensors headers" in message
        # The weights were read from the header by Range, with the token.
        reads = [r for r in hub.requests if r.path.startswith("/storage/")]
        assert reads and all(r.range for r in reads)
        assert all(r.authorization == f"Bearer {hub.token}" for r in hub.requests)
        # Compared with the same model from inline config: one plan, same pools.
        inline = example()
        inline["metadata"]["name"] = "inline-8b"
        cluster.create(inline)
        twin = wait_sized(cluster, inline)
        assert [p["gpu"] for p in twin["status"]["plan"]["pools"]] == [
            p["gpu"] for p in fleet["status"]["plan"]["pools"]
        ]
    finally:
        operator.stop()


def test_offline_the_catalog_sizes_and_an_unknown_model_is_refused_alone(
    cluster: Cluster, hub: FakeHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    operator = _operator(monkeypatch, hub, offline=True, cache=tmp_path)
    try:
        known = by_name(CATALOGUED)
        cluster.create(known)
        sized = condition(wait_sized(cluster, known), "Sized")
        assert f"config.json from the built-in catalog ({CATALOGUED}" in sized["message"]
        running = deployments(cluster, "code-8b")
        assert running
        unknown = by_name("acme/never-published", fleet="mystery")
        cluster.create(unknown)
        fleet = wait_sized(cluster, unknown, status="False")
        sized = condition(fleet, "Sized")
        assert sized["reason"] == "ModelConfigUnavailable"
        assert "built-in catalog (not listed)" in sized["message"]
        assert "offline" in sized["message"]
        assert not deployments(cluster, "mystery")
        # The running fleet renamed to the unknown model: refused, its replicas untouched.
        cluster.merge_patch("inferfleet.io/v1alpha1", "InferenceFleet", "llm", "code-8b",
                            {"spec": {"model": {"name": "acme/never-published"}}})  # fmt: skip
        fleet = wait_sized(cluster, known, status="False", generation=2)
        assert condition(fleet, "Sized")["reason"] == "ModelConfigUnavailable"
        assert fleet["status"]["plan"]  # the last good plan stays visible
        assert deployments(cluster, "code-8b") == running
        assert hub.requests == []  # offline: the Hub was never asked
    finally:
        operator.stop()
