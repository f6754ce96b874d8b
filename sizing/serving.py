"""Steps 8 and 9: KV-cache strategy and batching settings for one replica."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

# vLLM V1 chunks prefills into a per-step token budget. 8192 keeps long prompts moving on big
# GPUs; under an ITL SLO a running decode waits for the whole step, so the chunk must be small
# enough that one step of it stays inside the SLO (with a margin for the decodes beside it).
BATCHED_TOKEN_CHOICES = (8192, 4096, 2048, 1024, 512)
ITL_SHARE_FOR_PREFILL = 0.8
MAX_NUM_SEQS_CAP = 256
MIN_NUM_SEQS = 8


@dataclass(frozen=True)
class Batching:
    max_num_seqs: int
    max_num_batched_tokens: int
    reason: str


def choose_batching(
    kv_cache_tokens: int,
    mean_request_tokens: float,
    max_model_len: int,
    itl_slo_s: float | None,
    max_num_seqs: int | None,
    max_num_batched_tokens: int | None,
    prefill_step_s: Callable[[int], float],
) -> Batching:
    """Sequences: as many as the KV cache holds at mean length (capped); tokens: by ITL SLO.

    `prefill_step_s(n)` is the duration of one engine step that prefills n prompt tokens.
    """
    if max_num_seqs is not None:
        seqs, seqs_why = max_num_seqs, "as set"
    else:
        fit = int(kv_cache_tokens // max(mean_request_tokens, 1.0))
        seqs = max(MIN_NUM_SEQS, min(MAX_NUM_SEQS_CAP, fit))
        seqs_why = (
            f"KV holds {fit} requests of mean {mean_request_tokens:.0f} tokens, "
            f"kept in [{MIN_NUM_SEQS}, {MAX_NUM_SEQS_CAP}]"
        )
    if max_num_batched_tokens is not None:
        tokens, tokens_why = max_num_batched_tokens, "as set"
    elif itl_slo_s is None:
        tokens = BATCHED_TOKEN_CHOICES[0]
        tokens_why = "no ITL SLO: vLLM's online-serving chunk budget"
    else:
        budget_s = ITL_SHARE_FOR_PREFILL * itl_slo_s
        fitting = [n for n in BATCHED_TOKEN_CHOICES if prefill_step_s(n) <= budget_s]
        tokens = fitting[0] if fitting else BATCHED_TOKEN_CHOICES[-1]
        tokens_why = (
            f"a {tokens}-token prefill step takes {prefill_step_s(tokens) * 1000:.0f} ms, "
            f"{'within' if fitting else 'still above'} {ITL_SHARE_FOR_PREFILL:.0%} of the "
            f"{itl_slo_s * 1000:.0f} ms ITL SLO"
        )
    tokens = max(tokens, seqs)
    reason = (
        f"continuous batching with chunked prefill; max_num_seqs {seqs} ({seqs_why}); "
        f"max_num_batched_tokens {tokens} ({tokens_why}); max_model_len {max_model_len}"
    )
    return Batching(seqs, tokens, reason)


@dataclass(frozen=True)
class KVStrategy:
    max_concurrency_at_max_len: float
    prefix_caching: bool
    recommend_fp8_kv: bool
    reason: str


def choose_kv_strategy(
    kv_cache_tokens: int,
    max_model_len: int,
    kv_cache_dtype: str,
    enable_prefix_caching: bool,
    prefix_share: float | None,
    *,
    kv_limits_c_max: bool,
) -> KVStrategy:
    """PagedAttention always; prefix caching when asked; FP8 KV when the cache caps C_max."""
    at_max = kv_cache_tokens / max_model_len
    parts = [f"{kv_cache_tokens:,} KV tokens → {at_max:.1f} requests at max_model_len"]
    if enable_prefix_caching:
        share = f" ({prefix_share:.0%} shared prefix)" if prefix_share else ""
        parts.append(f"prefix caching on{share}")
    recommend_fp8 = kv_limits_c_max and kv_cache_dtype == "auto"
    if recommend_fp8:
        parts.append("the KV cache is what caps C_max: kvCacheDtype fp8 would double it")
    elif kv_cache_dtype == "fp8":
        parts.append("FP8 KV cache halves bytes per token")
    parts.append("no offload (online serving)")
    return KVStrategy(at_max, enable_prefix_caching, recommend_fp8, "; ".join(parts))
