"""Multimodal encoders at vLLM's start-up profile: the dummy images it encodes, and their cost.

Before it sizes the KV cache, vLLM V1 (`gpu_model_runner.profile_run`) encodes as many dummy
items of the largest kind as its encoder budget holds — budget = max(max_num_batched_tokens,
tokens of one item), items = budget // tokens per item, at most max_num_seqs x the per-prompt
limit — keeps their outputs in the encoder cache, and only then runs the language model's dummy
pass. So the activation peak is the larger of the encoder's own forward over all those patches
and the language model's pass with the cached outputs alive. A vision tower turns
`(image_size / patch_size)^2` patches per tile into fewer tokens (Gemma 3 pools 4096 patches to
256, Qwen2.5-VL and Mistral 3 merge 2x2, Llama 4 pixel-shuffles by 0.5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sizing.errors import InvalidInput


@dataclass(frozen=True)
class VisionTower:
    hidden_size: int
    intermediate_size: int
    patches_per_item: int  # what the tower's layers run over, per image (all its tiles)
    tokens_per_item: int  # what the language model receives per image


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


def vision_tower(config: dict[str, Any]) -> VisionTower | None:
    """The tower's shape from `vision_config`, or None when the config leaves out the sizes
    (then its weights still count, through the parameter total, but not its profile pass)."""
    vc = config.get("vision_config")
    if not isinstance(vc, dict):
        return None
    hidden = _positive(vc, "hidden_size", "embed_dim", "width")
    image = _positive(vc, "image_size")
    patch = _positive(vc, "patch_size")
    if hidden is None or image is None or patch is None:
        return None
    intermediate = _positive(vc, "intermediate_size") or 4 * hidden
    tiles = _positive(vc, "max_num_tiles") or 1
    patches = (image // patch) ** 2 * tiles
    merge = _positive(vc, "spatial_merge_size") or _positive(config, "spatial_merge_size") or 1
    shuffle = vc.get("pixel_shuffle_ratio")
    reduction = merge**2
    if isinstance(shuffle, int | float) and 0 < shuffle < 1:
        reduction = round(1 / shuffle**2)
    tokens = _positive(config, "mm_tokens_per_image") or max(1, patches // reduction)
    return VisionTower(hidden, intermediate, patches, tokens)


def encoder_items(
    tower: VisionTower, max_num_batched_tokens: int, max_num_seqs: int, items_per_prompt: int
) -> int:
    """Dummy items the profiler encodes at once (0 when the per-prompt limit is 0)."""
    if items_per_prompt <= 0:
        return 0
    budget = max(max_num_batched_tokens, tower.tokens_per_item)
    return max(1, min(budget // tower.tokens_per_item, max_num_seqs * items_per_prompt))


def encoder_profile_bytes(
    tower: VisionTower, items: int, lm_hidden_size: int, value_bytes: float, tp: int
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
