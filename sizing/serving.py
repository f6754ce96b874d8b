"""Steps 8 and 9: KV-cache strategy and batching settings for one replica."""

from __future__ import annotations

from dataclasses import dataclass

# vLLM V1 chunks prefills into a per-step token budget. 8192 keeps long prompts moving on big
# GPUs; a tight ITL SLO wants smaller chunks so a prefill never stalls running decodes long.
DEFAULT_BATCHED_TOKENS = 8192
TIGHT_ITL_BATCHED_TOKENS = 2048
TIGHT_ITL_S = 0.05
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
) -> Batching:
    """Sequences: as many as the KV cache holds at mean length (capped); tokens: by ITL SLO."""
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
    elif itl_slo_s is not None and itl_slo_s < TIGHT_ITL_S:
        tokens = TIGHT_ITL_BATCHED_TOKENS
        tokens_why = f"ITL SLO {itl_slo_s * 1000:.0f} ms is tight: small prefill chunks"
    else:
        tokens = DEFAULT_BATCHED_TOKENS
        tokens_why = "chunked prefill with vLLM's online-serving budget"
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
    needed_concurrency: float,
) -> KVStrategy:
    """PagedAttention always; prefix caching when asked; FP8 KV when the cache is short."""
    at_max = kv_cache_tokens / max_model_len
    parts = [f"{kv_cache_tokens:,} KV tokens → {at_max:.1f} requests at max_model_len"]
    if enable_prefix_caching:
        share = f" ({prefix_share:.0%} shared prefix)" if prefix_share else ""
        parts.append(f"prefix caching on{share}")
    short = at_max < needed_concurrency
    recommend_fp8 = short and kv_cache_dtype == "auto"
    if recommend_fp8:
        parts.append(
            f"KV limits concurrency below the {needed_concurrency:.0f} needed at C_max: "
            "consider kvCacheDtype fp8 (doubles it)"
        )
    elif kv_cache_dtype == "fp8":
        parts.append("FP8 KV cache halves bytes per token")
    parts.append("no offload (online serving)")
    return KVStrategy(at_max, enable_prefix_caching, recommend_fp8, "; ".join(parts))
