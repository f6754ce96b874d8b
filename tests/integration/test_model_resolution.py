"""Model resolution by name against a real HTTP fake Hub on loopback, and the offline catalog."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import scan_cache_dir

from controllers.adapters.hf_hub import prune_cache
from controllers.adapters.hub_settings import HubSettings
from controllers.adapters.model_source import (
    FAILURE_TTL_S,
    ModelCatalog,
    ModelConfigUnavailable,
    ModelResolver,
)
from inferfleet_testing.checkpoints import dense_decoder_tensors, safetensors_header
from inferfleet_testing.fake_hub import FakeHub, commit_of
from sizing.model import load_model_config, with_checkpoint
from sizing.quantization import weights_bytes
from tests.conftest import CALIBRATION

REPO = "acme/llama-8b-private"
CONFIG = json.loads(
    (CALIBRATION / "model_configs/meta-llama--Llama-3.1-8B-Instruct.json").read_text()
)


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "hub-cache"


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    tensors = dense_decoder_tensors(CONFIG)
    half = len(tensors) // 2
    fake = FakeHub(gated={REPO})
    fake.add_model(
        REPO,
        CONFIG,
        {
            "model-00001-of-00002.safetensors": safetensors_header(tensors[:half]),
            "model-00002-of-00002.safetensors": safetensors_header(tensors[half:]),
        },
    )
    fake.add_model("acme/bin-only", CONFIG, {})
    with fake.serving():
        yield fake


def _resolve(resolver: ModelResolver, name: str, **kwargs: str | None):  # type: ignore[no-untyped-def]
    return asyncio.run(resolver.resolve(name, **kwargs))


def test_gated_model_resolves_with_exact_weights_from_headers_only(
    hub: FakeHub, cache: Path
) -> None:
    resolver = ModelResolver(HubSettings(endpoint=hub.url, cache_dir=cache))
    found = _resolve(resolver, REPO, token=hub.token)
    assert found.config["hidden_size"] == CONFIG["hidden_size"]
    assert found.checkpoint is not None and "safetensors headers" in found.origin
    commit = commit_of(REPO, "main")
    assert f"{REPO}@{commit}" in found.origin  # pinned: every file read at one commit
    arch = with_checkpoint(load_model_config(found.config), found.checkpoint)
    assert weights_bytes(arch) == 2 * 8_030_261_248  # Llama-3.1-8B's parameters, bf16
    asked = [(r.method, r.path.split("?")[0].removeprefix(f"/{REPO}/resolve/{commit}/"))
             for r in hub.requests if not r.path.startswith("/storage/")]  # fmt: skip
    assert asked[0] == ("GET", f"/api/models/{REPO}/revision/main")
    for name in ("config.json", "model.safetensors.index.json"):
        assert ("HEAD", name) in asked and ("GET", name) in asked
    # The shards: one Range read of each header (behind the storage redirect), no weights.
    shard_reads = [r for r in hub.requests if r.path.startswith("/storage/")]
    assert len(shard_reads) == 2
    assert all(r.range is not None and int(r.range.split("-")[1]) < 2**20 for r in shard_reads)
    assert all(r.authorization == f"Bearer {hub.token}" for r in hub.requests)
    # config.json and the index are in the cache directory the settings name.
    assert sorted(p.name for p in cache.rglob("*.json")) == [
        "config.json", "model.safetensors.index.json"]  # fmt: skip


def test_the_cache_is_pruned_to_its_bound(hub: FakeHub, cache: Path) -> None:
    _resolve(ModelResolver(HubSettings(endpoint=hub.url, cache_dir=cache)), REPO, token=hub.token)
    _resolve(ModelResolver(HubSettings(endpoint=hub.url, cache_dir=cache)), "acme/bin-only")
    repos = {r.repo_id: r.size_on_disk for r in scan_cache_dir(cache).repos}
    assert set(repos) == {REPO, "acme/bin-only"}
    prune_cache(cache, max_bytes=sum(repos.values()) - 1)  # one over: the older repo goes
    assert [r.repo_id for r in scan_cache_dir(cache).repos] == ["acme/bin-only"]
    prune_cache(cache, max_bytes=0)
    assert not list(cache.rglob("*.json"))


def test_a_wrong_token_and_a_missing_repo_or_revision_are_said_plainly(
    hub: FakeHub, cache: Path
) -> None:
    resolver = ModelResolver(HubSettings(endpoint=hub.url, cache_dir=cache))
    with pytest.raises(ModelConfigUnavailable, match=r"refused \(403\): the token has no access"):
        _resolve(resolver, REPO, token="hf_someone_else")
    with pytest.raises(ModelConfigUnavailable, match=r"not found \(404\): no such repo"):
        _resolve(resolver, "acme/nothing-here", token=hub.token)
    with pytest.raises(ModelConfigUnavailable, match=r"not found \(404\): no such revision"):
        _resolve(resolver, REPO, revision="v9", token=hub.token)


def test_a_hub_that_does_not_answer_times_out_without_blocking_the_loop(cache: Path) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()  # accepts connections, never answers
    port = silent.getsockname()[1]
    resolver = ModelResolver(
        HubSettings(endpoint=f"http://127.0.0.1:{port}", timeout_s=0.5, cache_dir=cache)
    )

    async def resolve_while_ticking() -> tuple[str, int]:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.ensure_future(tick())
        try:
            await resolver.resolve("acme/slow")
        except ModelConfigUnavailable as err:
            return str(err), ticks
        finally:
            ticker.cancel()
        return "", ticks

    try:
        message, ticks = asyncio.run(resolve_while_ticking())
    finally:
        silent.close()
    assert "timed out after 0.5 s" in message
    assert ticks > 10  # the loop kept running while the Hub was waited on


def test_gated_model_without_token_names_every_source_tried(hub: FakeHub, cache: Path) -> None:
    resolver = ModelResolver(HubSettings(endpoint=hub.url, cache_dir=cache))
    with pytest.raises(ModelConfigUnavailable) as err:
        _resolve(resolver, REPO)
    message = str(err.value)
    assert "built-in catalog (not listed)" in message
    assert f"the Hub at {hub.url}" in message and "refused (401)" in message
    assert "tokenSecretRef" in message


def test_offline_mode_fails_closed_without_a_request(hub: FakeHub, cache: Path) -> None:
    resolver = ModelResolver(HubSettings(endpoint=hub.url, offline=True, cache_dir=cache))
    with pytest.raises(ModelConfigUnavailable, match="offline"):
        _resolve(resolver, REPO, token=hub.token)
    assert hub.requests == []
    # The catalog still answers offline.
    found = _resolve(resolver, "Qwen/Qwen3-8B")
    assert found.config["num_hidden_layers"] == 36 and found.checkpoint is None
    assert "built-in catalog" in found.origin and hub.requests == []


def test_repo_without_safetensors_gives_the_config_alone(hub: FakeHub, cache: Path) -> None:
    found = _resolve(ModelResolver(HubSettings(endpoint=hub.url, cache_dir=cache)), "acme/bin-only")
    assert found.checkpoint is None and "no safetensors" in found.origin


def test_failures_are_cached_for_a_while_then_retried(hub: FakeHub, cache: Path) -> None:
    now = [0.0]
    resolver = ModelResolver(HubSettings(endpoint=hub.url, cache_dir=cache), clock=lambda: now[0])
    for _ in range(3):
        with pytest.raises(ModelConfigUnavailable, match="no such repo"):
            _resolve(resolver, "acme/missing")
    assert len(hub.requests) == 1
    now[0] += FAILURE_TTL_S + 1
    with pytest.raises(ModelConfigUnavailable):
        _resolve(resolver, "acme/missing")
    assert len(hub.requests) == 2


def test_unreachable_hub_is_a_clear_error(cache: Path) -> None:
    resolver = ModelResolver(
        HubSettings(endpoint="http://127.0.0.1:9", timeout_s=2, cache_dir=cache)
    )
    with pytest.raises(ModelConfigUnavailable, match=r"cannot reach it \(ConnectError"):
        _resolve(resolver, "acme/anything")


def test_a_pinned_revision_skips_the_catalog(hub: FakeHub, cache: Path) -> None:
    resolver = ModelResolver(HubSettings(endpoint=hub.url, cache_dir=cache))
    with pytest.raises(ModelConfigUnavailable, match="holds main, not revision v2"):
        _resolve(resolver, "Qwen/Qwen3-8B", revision="v2")


def test_every_catalog_model_parses_and_is_found_whatever_the_case() -> None:
    catalog = ModelCatalog()
    assert len(catalog.names) >= 60
    for name in catalog.names:
        found = catalog.get(name.upper())
        assert found is not None, name
        arch = load_model_config(found.config, name=name)
        assert arch.total_params > 0


def test_fleets_naming_the_same_model_at_once_share_one_fetch(hub: FakeHub, cache: Path) -> None:
    resolver = ModelResolver(HubSettings(endpoint=hub.url, cache_dir=cache))

    async def many() -> list[int]:
        found = await asyncio.gather(*(resolver.resolve(REPO, token=hub.token) for _ in range(20)))
        return [f.checkpoint.stored_bytes for f in found if f.checkpoint]

    sizes = asyncio.run(many())
    assert len(sizes) == 20 and len(set(sizes)) == 1
    assert sum(r.path.endswith("config.json") for r in hub.requests if r.method == "GET") == 1


@pytest.mark.parametrize(
    "name", ["/models/llama-8b", "../etc/x", "https://host/org/model", "a/b/c"]
)
def test_a_path_or_url_is_not_sent_to_the_hub(hub: FakeHub, name: str, cache: Path) -> None:
    resolver = ModelResolver(HubSettings(endpoint=hub.url, cache_dir=cache))
    with pytest.raises(ModelConfigUnavailable, match="not a Hugging Face repo id"):
        _resolve(resolver, name)
    assert hub.requests == []


def test_catalog_shapes_reproduce_the_published_parameter_counts() -> None:
    """Every text-only entry's shapes give its model card's total within 2 %: a mistyped
    hidden size or layer count in the catalog cannot pass."""
    catalog = ModelCatalog()
    checked = 0
    for name in catalog.names:
        found = catalog.get(name)
        assert found is not None
        config = {k: v for k, v in found.config.items() if k != "total_params_b"}
        stated = found.config.get("total_params_b")
        if stated is None or "vision_config" in config or "audio_config" in config:
            continue
        derived = load_model_config(config).total_params
        assert derived == pytest.approx(stated * 1e9, rel=0.02), name
        checked += 1
    assert checked >= 50


def test_a_redirect_off_the_allow_list_is_refused_before_it_is_sent(hub: FakeHub) -> None:
    """The shards' storage redirect names another host (the same server as "localhost"): not
    followed unless that host is listed, and nothing is sent there."""
    hub.storage_host = "localhost"
    only_the_hub = HubSettings(endpoint=hub.url, allowed_hosts=())
    with pytest.raises(ModelConfigUnavailable) as err:
        _resolve(ModelResolver(only_the_hub), REPO, token=hub.token)
    assert "redirect to http://localhost" in str(err.value) and "hub.allowedHosts" in str(err.value)
    assert not [r for r in hub.requests if r.path.startswith("/storage/")]
    listed = HubSettings(endpoint=hub.url, allowed_hosts=("localhost",))
    found = _resolve(ModelResolver(listed), REPO, token=hub.token)
    assert found.checkpoint is not None
    # The token went to the Hub only, not to the storage host.
    storage = [r for r in hub.requests if r.path.startswith("/storage/")]
    assert storage and all(r.authorization is None for r in storage)
