"""Which vLLM release the memory model follows: spec.engine.version, else the image tag."""

from __future__ import annotations

import pytest
import yaml

from controllers.api.v1alpha1 import DEFAULT_VLLM_IMAGE, InferenceFleet
from controllers.policy.planning import (
    DEFAULT_VLLM_RELEASE,
    engine_release,
    fleet_request,
    release_of_image,
)
from sizing.errors import InvalidInput
from tests.conftest import REPO


@pytest.mark.parametrize(
    ("image", "release"),
    [
        ("vllm/vllm-openai:v0.11.0", "0.11"),
        ("vllm/vllm-openai:0.10.1.1", "0.10"),
        ("registry.local:5000/ml/vllm:v0.19.0-cu130@sha256:0abc", "0.19"),
        ("vllm/vllm-openai:latest", None),
        ("vllm/vllm-openai@sha256:0abc", None),
        ("registry.local:5000/vllm", None),
        ("vllm/vllm-openai:nightly-2025-11-02", None),
    ],
)
def test_release_from_the_image_tag(image: str, release: str | None) -> None:
    assert release_of_image(image) == release


def _fleet(model: dict | None = None, **spec: object) -> InferenceFleet:
    raw = yaml.safe_load((REPO / "examples" / "fleet-code-8b.yaml").read_text())
    raw["spec"]["model"].update(model or {})
    raw["spec"].update(spec)
    return InferenceFleet.model_validate(raw)


def test_the_spec_picks_the_release_the_plan_models() -> None:
    assert release_of_image(DEFAULT_VLLM_IMAGE) == DEFAULT_VLLM_RELEASE
    assert engine_release(_fleet().spec) == DEFAULT_VLLM_RELEASE
    assert engine_release(_fleet({"image": "vllm/vllm-openai:v0.11.2"}).spec) == "0.11"
    assert engine_release(_fleet({"image": "acme/vllm:prod"}).spec) == DEFAULT_VLLM_RELEASE
    pinned = _fleet({"image": "acme/vllm:prod"}, engine={"version": "0.12.0"})
    assert engine_release(pinned.spec) == "0.12"
    request = fleet_request(pinned.spec, pinned.spec.model.hf_config.inline or {})
    assert request.engine.vllm_version == "0.12"


def test_a_v0_release_is_refused_for_the_vllm_method_only() -> None:
    old = _fleet({"image": "vllm/vllm-openai:v0.8.5"})
    with pytest.raises(InvalidInput, match=r"spec\.model\.image .*0\.8 predates the V1 engine"):
        engine_release(old.spec)
    guide = _fleet({"image": "vllm/vllm-openai:v0.8.5"}, sizingMethod="guide")
    assert engine_release(guide.spec) == "0.8"


def test_extra_args_that_move_memory_reach_the_plan() -> None:
    """A fleet's extraArgs carry vLLM's own flags: the plan's engine sees the speculative
    config, the processor's max_pixels and the state-cache mode, and prefix caching comes from
    spec.serving; a malformed one is refused by the API model, naming the argument."""
    fleet = _fleet({"extraArgs": [
        '--speculative-config={"method": "mtp", "num_speculative_tokens": 2}',
        "--mm-processor-kwargs", '{"max_pixels": 1003520}', "--mamba-cache-mode=all",
    ]}, serving={"enablePrefixCaching": False})  # fmt: skip
    engine = fleet_request(fleet.spec, fleet.spec.model.hf_config.inline or {}).engine
    assert (engine.speculative_method, engine.num_speculative_tokens) == ("mtp", 2)
    assert (engine.mm_max_pixels, engine.mamba_cache_mode) == (1_003_520, "all")
    assert engine.enable_prefix_caching is False
    with pytest.raises(ValueError, match=r"extraArgs\[0\]: --speculative-config must be a JSON"):
        _fleet({"extraArgs": ["--speculative-config", "{mtp"]})
