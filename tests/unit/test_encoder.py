"""sizing.encoder: the multimodal profile pass vLLM runs before it sizes the KV cache."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sizing.encoder import (
    EncoderTower,
    encoder_items,
    encoder_profile_bytes,
    encoder_tower,
    vision_tower,
)
from sizing.errors import InvalidInput
from sizing.hardware import get_gpu
from sizing.memory import EngineConfig, estimate_memory
from sizing.model import load_model_config
from tests.conftest import REPO

CATALOG = REPO / "controllers" / "adapters" / "model_catalog"


def _catalog(name: str) -> dict:
    return json.loads((CATALOG / f"{name}.json").read_text())


@pytest.mark.parametrize(
    ("name", "patches", "tokens"),
    [
        ("google--gemma-3-27b-it", 64 * 64, 256),  # SigLIP 896/14, pooled to 256 tokens
        # pixel shuffle 0.5 over 16 tiles + a global one: 3 images fill 8192 tokens, as the
        # 0.19 start-up log of Scout says it profiles
        ("meta-llama--Llama-4-Scout-17B-16E-Instruct", 24 * 24 * 17, 144 * 17),
        ("mistralai--Mistral-Small-3.1-24B-Instruct-2503", 110 * 110, 3025),  # 2x2 merge
        ("meta-llama--Llama-3.2-11B-Vision", 40 * 40 * 4, 6400),  # 4 tiles, cross-attention
    ],
)
def test_tower_shapes_from_real_configs(name: str, patches: int, tokens: int) -> None:
    tower = vision_tower(_catalog(name))
    assert tower is not None
    assert (tower.patches_per_item, tower.tokens_per_item) == (patches, tokens)


def test_a_config_without_sizes_has_no_tower_shape() -> None:
    assert vision_tower({"vision_config": {"model_type": "qwen2_5_vl", "depth": 32}}) is None
    assert vision_tower({"hidden_size": 8}) is None
    with pytest.raises(InvalidInput, match=r"vision_config\.patch_size"):
        vision_tower({"vision_config": {"hidden_size": 8, "image_size": 8, "patch_size": -1}})


def test_items_follow_the_encoder_budget_and_the_limits() -> None:
    tower = EncoderTower(1152, 4304, 4096, 256)
    assert encoder_items(tower, 8192, 1024, 999) == 32
    assert encoder_items(tower, 2048, 4, 2) == 8  # max_num_seqs x per-prompt limit
    assert encoder_items(tower, 100, 1024, 999) == 1  # one item even above the budget
    assert encoder_items(tower, 8192, 1024, 0) == 0


@given(batched=st.integers(64, 65536), tokens=st.integers(1, 20000))
def test_cached_outputs_fill_between_half_and_all_of_the_budget(batched: int, tokens: int) -> None:
    tower = EncoderTower(1024, 4096, 4 * tokens, tokens)
    items = encoder_items(tower, batched, 10**6, 10**6)
    _, cached = encoder_profile_bytes(tower, items, 5120, 2.0, 1)
    budget = max(batched, tokens) * 5120 * 2.0
    assert budget / 2 < cached <= budget


def test_gemma3_profiles_its_encoder_and_text_only_does_not() -> None:
    arch = load_model_config(_catalog("google--gemma-3-27b-it"))
    gpu = get_gpu("H100")

    def memory(**kwargs: int) -> tuple[float, int]:
        m = estimate_memory(arch, gpu, EngineConfig(max_model_len=8192, **kwargs))
        return m.activation_gib, m.kv_cache_tokens

    # Default max_num_seqs: the sampler over 262k vocabulary entries is the larger pass; the
    # 32 images' outputs (8192 tokens x hidden 5376 x 2 bytes) stay alive on top of it.
    (images, images_kv), (text, text_kv) = memory(), memory(mm_items_per_prompt=0)
    assert images - text == pytest.approx(8192 * 5376 * 2 / 2**30, rel=1e-6)
    assert images_kv < text_kv
    # A small sampler pass: SigLIP over 32 x 4096 patches is the peak.
    (images, _), (text, _) = memory(max_num_seqs=64), memory(max_num_seqs=64, mm_items_per_prompt=0)
    assert images - text > 1.0
    with pytest.raises(InvalidInput, match="limit_mm_per_prompt"):
        memory(mm_items_per_prompt=-1)


@pytest.mark.parametrize(
    ("name", "hidden", "patches", "tokens"),
    [
        # The processor's max_pixels 12,845,056 / 14^2 patches, merged 2x2.
        ("unsloth--qwen2.5-vl-7b-instruct-unsloth-bnb-4bit", 1280, 65536, 16384),
        # 16,777,216 / 16^2, merged 2x2.
        ("Qwen--Qwen3.5-9B", 1152, 65536, 16384),
        # 30 s of audio: 1,500 positions after the conv, pooled by 2.
        ("Qwen--Qwen2-Audio-7B-Instruct", 1280, 1500, 750),
    ],
)
def test_any_size_towers_and_audio_encoders_from_real_configs(
    name: str, hidden: int, patches: int, tokens: int
) -> None:
    tower = encoder_tower(_catalog(name))
    assert tower is not None
    assert (tower.hidden_size, tower.patches_per_item, tower.tokens_per_item) == (
        hidden, patches, tokens)  # fmt: skip


def test_the_profiled_modality_is_the_one_with_the_most_tokens_per_item() -> None:
    gemma = _catalog("google--gemma-3-27b-it")  # SigLIP: 256 tokens per image
    config = {**_catalog("Qwen--Qwen2-Audio-7B-Instruct"), "vision_config": gemma["vision_config"],
              "mm_tokens_per_image": gemma["mm_tokens_per_image"]}  # fmt: skip
    tower = encoder_tower(config)
    assert tower is not None and tower.tokens_per_item == 750  # audio's 750 over vision's 256
    assert encoder_tower({"audio_config": {"d_model": 1280}}) is None


def test_the_audio_encoder_pass_is_in_the_activation_peak() -> None:
    """Qwen2-Audio at a small batch: the encoder's forward over its dummy clips outweighs the
    language model's pass, so dropping the audio limit to 0 frees memory for KV."""
    arch = load_model_config(_catalog("Qwen--Qwen2-Audio-7B-Instruct"))
    gpu = get_gpu("L40S")
    with_audio = estimate_memory(arch, gpu, EngineConfig(max_model_len=8192))
    text_only = estimate_memory(arch, gpu, EngineConfig(max_model_len=8192, mm_items_per_prompt=0))
    assert with_audio.activation_gib > text_only.activation_gib
    assert with_audio.kv_cache_tokens < text_only.kv_cache_tokens
