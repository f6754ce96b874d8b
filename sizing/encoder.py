"""Multimodal encoders at vLLM's start-up profile: the dummy items it encodes, and their cost.

Before it sizes the KV cache, vLLM V1 (`gpu_model_runner.profile_run`) encodes as many dummy
items of the modality with the most tokens per item as its encoder budget holds — budget =
max(max_num_batched_tokens, tokens of one item), items = budget // tokens per item, at most
max_num_seqs x the per-prompt limit — keeps their outputs in the encoder cache, and only then
runs the language model's dummy pass. So the activation peak is the larger of the encoder's own
forward over all those patches and the language model's pass with the cached outputs alive.

* A vision tower with a fixed input turns `(image_size / patch_size)^2` patches per tile into
  fewer tokens (Gemma 3 pools 4096 patches to 256, Mistral 3 merges 2x2, Llama 4
  pixel-shuffles by 0.5, over the 16 tiles plus one global tile of its largest image).
* Qwen2-VL-style towers (Qwen2-VL, 2.5-VL, 3-VL, 3.5) take images of any size:
  the dummy image is the largest the image processor lets through, `max_pixels` of its
  preprocessor config (12,845,056 pixels in the Qwen2/2.5-VL releases, 16,777,216 in Qwen3-VL
  and 3.5), so 65,536 patches of 14 or 16 px merged 2x2 into 16,384 tokens.
* A Whisper-style audio encoder (Qwen2-Audio) hears 30 s: 3,000 mel frames, halved by its
  strided conv to `max_source_positions` (1,500) positions, pooled by 2 into 750 tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from sizing.errors import InvalidInput

# The image processors' max_pixels vLLM's dummy image reaches, by vision tower type (from the
# released checkpoints' preprocessor_config.json; config.json does not carry it).
_MAX_PIXELS = {"qwen2_vl": 12_845_056, "qwen2_5_vl": 12_845_056, "qwen3_vl": 16_777_216,
               "qwen3_5": 16_777_216, "qwen3_5_moe": 16_777_216}  # fmt: skip
# Tiles of vLLM's largest dummy image for towers that split images into tiles without
# `max_num_tiles` in config.json: Llama 4's processor allows max_patches 16 and adds one global
# tile (a 0.19 start-up log of Scout profiles 3 such images in an 8192-token budget).
_MAX_TILES = {"llama4": 17, "llama4_vision_model": 17}
# Audio encoders whose output is pooled by 2 after the conv (Qwen2-Audio's avg pool).
_POOLED_AUDIO = frozenset({"qwen2_audio_encoder"})


@dataclass(frozen=True)
class EncoderTower:
    hidden_size: int
    intermediate_size: int
    patches_per_item: int  # what the tower's layers run over, per image (all its tiles)
    tokens_per_item: int  # what the language model receives per image
    # Towers that take any image size: the patch side in pixels and the patch merge, so a
    # processor's max_pixels (a deployment's --mm-processor-kwargs) can resize the dummy image
    patch_size: int = 0
    merge: int = 1


def _any_size_patches(pixels: int, patch: int, merge: int) -> int:
    """Patches of the largest square image the Qwen-VL processors' smart_resize lets through
    `pixels`: each side a multiple of patch x merge (at least one such unit)."""
    unit = patch * merge
    side = max(1, math.isqrt(pixels) // unit) * unit
    return (side // patch) ** 2


def with_max_pixels(tower: EncoderTower, max_pixels: int | None) -> EncoderTower:
    """The tower as profiled when the processor is told another max_pixels; towers with a
    fixed input size ignore it, as their processors do."""
    if max_pixels is None or not tower.patch_size:
        return tower
    patches = _any_size_patches(max_pixels, tower.patch_size, tower.merge)
    return replace(tower, patches_per_item=patches, tokens_per_item=patches // tower.merge**2)


def _positive(cfg: dict[str, Any], *keys: str) -> int | None:
    for key in keys:
        value = cfg.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise InvalidInput(
                f"config.json: vision_config.{key} must be a positive number, got {value!r}",
                field=f"config.json:vision_config.{key}",
            )
        return int(value)
    return None


def vision_tower(config: dict[str, Any]) -> EncoderTower | None:
    """The tower's shape from `vision_config`, or None when the config leaves out the sizes
    (then its weights still count, through the parameter total, but not its profile pass)."""
    vc = config.get("vision_config")
    if not isinstance(vc, dict):
        return None
    hidden = _positive(vc, "hidden_size", "embed_dim", "width")
    image = _positive(vc, "image_size")
    patch = _positive(vc, "patch_size")
    merge = _positive(vc, "spatial_merge_size") or _positive(config, "spatial_merge_size") or 1
    if hidden is None or patch is None:
        return None
    intermediate = _positive(vc, "intermediate_size") or 4 * hidden
    if image is None:  # a tower for any size: the largest image its processor passes
        pixels = _positive(config, "max_pixels") or _MAX_PIXELS.get(_tower_type(config, vc))
        if pixels is None:
            return None
        patches = _any_size_patches(pixels, patch, merge)
        return EncoderTower(hidden, intermediate, patches, patches // merge**2, patch, merge)
    tiles = _positive(vc, "max_num_tiles") or _MAX_TILES.get(_tower_type(config, vc), 1)
    patches = (image // patch) ** 2 * tiles
    shuffle = vc.get("pixel_shuffle_ratio")
    reduction = merge**2
    if isinstance(shuffle, int | float) and 0 < shuffle < 1:
        reduction = round(1 / shuffle**2)
    tokens = _positive(config, "mm_tokens_per_image") or max(1, patches // reduction)
    return EncoderTower(hidden, intermediate, patches, tokens)


def _tower_type(config: dict[str, Any], vc: dict[str, Any]) -> str:
    """The model family a vision_config belongs to (Qwen2.5-VL's says qwen2_5_vl; others leave
    it to the outer model_type)."""
    return str(vc.get("model_type") or config.get("model_type") or "")


def audio_tower(config: dict[str, Any]) -> EncoderTower | None:
    """A Whisper-style audio encoder from `audio_config` (d_model, encoder_ffn_dim,
    max_source_positions), or None when it gives no sizes."""
    ac = config.get("audio_config")
    if not isinstance(ac, dict):
        return None
    hidden = _positive(ac, "d_model", "hidden_size")
    positions = _positive(ac, "max_source_positions")
    if hidden is None or positions is None:
        return None
    intermediate = _positive(ac, "encoder_ffn_dim", "intermediate_size") or 4 * hidden
    pool = 2 if ac.get("model_type") in _POOLED_AUDIO else 1
    return EncoderTower(hidden, intermediate, positions, max(1, positions // pool))


def encoder_tower(config: dict[str, Any]) -> EncoderTower | None:
    """The encoder vLLM profiles: of the vision and audio towers, the one whose item gives the
    language model the most tokens."""
    towers = [t for t in (vision_tower(config), audio_tower(config)) if t is not None]
    return max(towers, key=lambda t: t.tokens_per_item, default=None)


def encoder_items(
    tower: EncoderTower, max_num_batched_tokens: int, max_num_seqs: int, items_per_prompt: int
) -> int:
    """Dummy items the profiler encodes at once (0 when the per-prompt limit is 0)."""
    if items_per_prompt <= 0:
        return 0
    budget = max(max_num_batched_tokens, tower.tokens_per_item)
    return max(1, min(budget // tower.tokens_per_item, max_num_seqs * items_per_prompt))


def encoder_profile_bytes(
    tower: EncoderTower, items: int, lm_hidden_size: int, value_bytes: float, tp: int
) -> tuple[float, float]:
    """(the encoder forward's live set on one TP rank, the cached outputs on each rank).

    Per layer the live set is the MLP's intermediate activation plus the fused QKV, the
    attention output and the residual stream over every patch of every item (attention runs
    per image with memory-efficient kernels, so no patches^2 score matrix).
    """
    patches = items * tower.patches_per_item
    forward = patches * (
        tower.intermediate_size / tp + 3 * tower.hidden_size / tp + 2 * tower.hidden_size
    )
    cached = items * tower.tokens_per_item * lm_hidden_size
    return forward * value_bytes, cached * value_bytes
