"""Per-GPU memory of one vLLM replica and the KV-cache capacity left over (sizing step 6).

Two methods:
* `vllm` models what vLLM's V1 start-up profiler does, so the token capacity it predicts is the
  one the engine will log: budget = reported memory x gpu_memory_utilization, minus the weight
  shard, the PyTorch peak of one dummy forward + sampler pass, and the non-PyTorch memory;
  the rest, cut into whole blocks, is the KV cache. CUDA graphs are captured after sizing and
  come out of the (1 - utilization) headroom unless the engine is told to budget them.
* `guide` reproduces the field guide's rule of thumb (chapter 2): weights + KV + activations at
  20 % of the 16-bit weights + 5 % framework overhead, against the marketing VRAM.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sizing.encoder import encoder_items, encoder_profile_bytes, with_max_pixels
from sizing.errors import InvalidInput
from sizing.hardware import GPU
from sizing.model import ModelArch
from sizing.quantization import (
    QUANTIZATIONS,
    dtype_bytes,
    effective_format,
    kv_dtype_bytes,
    mtp_weights_bytes,
    stage_weights_bytes,
)
from sizing.units import GB, GIB

METHODS = ("vllm", "guide")

# vLLM V1 defaults for the OpenAI server: GPUs with >= 70 GiB that are not A100 get the larger
# batch (vllm/engine/arg_utils.py, `_set_default_args`); the profiler runs exactly these sizes.
_LARGE_GPU_GIB = 70.0
_DEFAULT_BATCHED_TOKENS = {True: 8192, False: 2048}
_DEFAULT_MAX_NUM_SEQS = {True: 1024, False: 256}

# The sampler's dummy pass holds, per (request x vocabulary entry): the logits in the model
# dtype, their float32 copy and the int64 indices of the top-k/top-p sort. Before 0.17 it also
# kept float32 probabilities/logprobs and more sort buffers (fit on the 0.11-0.16 logs: ~37 B).
_SAMPLER_EXTRA_BYTES = {"0.17+": 12.0, "0.10-0.16": 37.0}
# The sampler warm-up after KV allocation (`_dummy_sampler_run`) holds more per (request x
# vocabulary entry) than the profiled pass: float32 logits, probabilities, sorted values and
# their running sum, and int64 sort indices (4 x 4 + 8 B). gpt-oss-20b at utilization 0.95 died
# there asking for one more seqs x vocab x 4 B buffer past its profiled peak.
_WARMUP_SAMPLER_EXTRA_BYTES = 24.0
# The warm-up warning fires within this of the edge: the graph pool estimate is that far off
# (gpt-oss-20b: 1.30 GiB estimated, 1.84 captured).
_WARMUP_MARGIN_GIB = 1.0
# Allocator blocks and persistent input/output buffers the profiler always counts.
_ACTIVATION_BASE_GIB = 0.15
# Outside PyTorch: CUDA context growth + cuBLAS workspace at TP 1; at TP > 1 NCCL and the custom
# all-reduce buffers dominate. Figures from the 0.19 and 0.11 logs on H100.
_NON_TORCH_GIB = {
    "0.17+": {"single": 0.25, "pipeline": 0.07, "tp_base": 2.03, "tp_per_rank": 0.035},
    "0.10-0.16": {"single": 0.13, "pipeline": 0.07, "tp_base": 0.48, "tp_per_rank": 0.03},
}
# ROCm at TP > 1: RCCL's channel buffers over xGMI, the custom/quick all-reduce buffers and the
# hipBLASLt/AITER workspaces, beyond the CUDA figures above. The one ROCm V1 start-up with a KV
# figure (MiniMax-M2.5 FP8, TP 2, MI300X, 0.17) holds 1.7 GiB per GPU more non-KV memory than
# the CUDA figures give; it printed no breakdown, so that is the upper bound (the gap may sit in
# the weights instead), and taking it errs towards fewer KV tokens. TP 1 shows no gap to use.
_ROCM_TP_EXTRA_NON_TORCH_GIB = 1.7
# CUDA-graph pool for the default capture sizes: 0.19 logs 0.5-1.1 GiB for dense models on
# H100 and estimates 1.3 GiB (1.84 captured) for MoE gpt-oss, whose fused-MoE buffers are larger.
_CUDA_GRAPH_GIB = {False: 0.85, True: 1.3}
# vLLM V1's default --limit-mm-per-prompt per modality: high enough that the encoder budget,
# not the limit, decides how many dummy items the profiler encodes.
DEFAULT_MM_ITEMS_PER_PROMPT = 999
# Speculative proposers that run on the CPU (no GPU weights or KV layers of their own); the
# `*mtp` methods draft with the checkpoint's MTP modules; anything else (EAGLE, a draft model)
# brings a second checkpoint this model does not size.
_CPU_PROPOSERS = frozenset({"ngram", "suffix"})
# --mamba-cache-mode: how many state pages a sequence holds in a state layer's group (vLLM's
# MambaSpec.max_memory_usage_bytes): the current state ("none"), the last block-aligned state
# too ("align", prefix caching of hybrid models), or one per block ("all"); plus one per
# speculative token. "auto" is the release's choice: "align" with prefix caching from 0.17
# (align mode landed in early 2026), "none" before or without prefix caching.
MAMBA_CACHE_MODES = ("auto", "none", "align", "all")

# Field-guide constants (chapter 2).
GUIDE_ACTIVATION_FRACTION = 0.20  # of the 16-bit weights, whatever the weight format
GUIDE_OVERHEAD_FRACTION = 0.05  # framework overhead "on top of" the other components
GUIDE_HEADROOM_FRACTION = 0.50  # the 30-50 % headroom, upper end (the guide's 4 -> 6 GPUs)
_GUIDE_BYTES = {"none": None, "fp8": 1.0, "int8": 1.0, "int4": 0.5, "awq": 0.5, "gptq": 0.5,
                "mxfp4": 0.5, "nvfp4": 0.5, "bnb4": 0.5}  # fmt: skip


@dataclass(frozen=True)
class EngineConfig:
    """The vLLM engine arguments that move memory. None = vLLM's own default for this GPU."""

    tp: int = 1
    pp: int = 1
    dtype: str = "auto"  # auto | bfloat16 | float16 | float32
    quantization: str = "none"  # none (checkpoint as is) | fp8 | int8 | int4 | awq | gptq | ...
    kv_cache_dtype: str = "auto"
    gpu_memory_utilization: float = 0.9
    max_model_len: int | None = None  # default: the model's max_position_embeddings
    max_num_seqs: int | None = None  # default: 1024 on >= 70 GiB non-A100 GPUs, else 256
    max_num_batched_tokens: int | None = None  # default: 8192 on those GPUs, else 2048
    enforce_eager: bool = False
    expert_parallel: bool = False  # --enable-expert-parallel: experts spread whole, not sliced
    block_size: int = 16
    max_loras: int = 0
    max_lora_rank: int = 16
    lora_adapter_bytes: float | None = None  # default: rank-r buffers on every linear layer
    vllm_version: str = "0.19"  # profiler behaviour: 0.10-0.16 or 0.17+
    mm_items_per_prompt: int | None = None  # --limit-mm-per-prompt; 0 = text only
    cuda_graphs_in_budget: bool = False  # VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS=1
    mm_max_pixels: int | None = None  # --mm-processor-kwargs max_pixels (any-size towers)
    speculative_method: str | None = None  # --speculative-config method: mtp, ngram, eagle...
    num_speculative_tokens: int = 0
    enable_prefix_caching: bool = True
    mamba_cache_mode: str = "auto"  # --mamba-cache-mode (hybrid state-space models)


@dataclass(frozen=True)
class MemoryBreakdown:
    """Per GPU, GiB = 2^30, of the pipeline stage with the fewest KV tokens."""

    method: str
    weights_gib: float
    activation_gib: float
    non_torch_gib: float
    cuda_graph_gib: float
    lora_gib: float
    usable_gib: float  # gpu memory x utilization (vllm) or VRAM (guide)
    kv_cache_gib: float
    kv_cache_tokens: int  # engine-level
    max_concurrency: float  # kv_cache_tokens / max_model_len
    kv_bytes_per_token: float  # per GPU
    max_model_len: int
    fits: bool
    notes: tuple[str, ...]
    max_num_seqs: int = 0
    max_num_batched_tokens: int = 0

    @property
    def non_kv_gib(self) -> float:
        return self.weights_gib + self.activation_gib + self.non_torch_gib + self.lora_gib


def _version_family(version: str) -> str:
    try:
        major, minor = (int(part) for part in version.split(".")[:2])
    except ValueError:
        raise InvalidInput(f"vllm_version: {version!r} is not MAJOR.MINOR like 0.19") from None
    if (major, minor) < (0, 10):
        raise InvalidInput(
            f"vllm_version: {version} predates the V1 engine the vllm method models; use 0.10+"
        )
    return "0.17+" if (major, minor) >= (0, 17) else "0.10-0.16"


def _validate(arch: ModelArch, gpu: GPU, cfg: EngineConfig) -> None:
    if cfg.tp < 1 or cfg.pp < 1:
        raise InvalidInput(f"tp/pp: {cfg.tp}/{cfg.pp} must both be at least 1")
    if arch.num_attention_heads % cfg.tp:
        raise InvalidInput(
            f"tp: {cfg.tp} does not divide num_attention_heads {arch.num_attention_heads}"
        )
    if not 0 < cfg.gpu_memory_utilization <= 1:
        raise InvalidInput(
            f"gpu_memory_utilization: {cfg.gpu_memory_utilization} must be in (0, 1]"
        )
    for field, value in (
        ("max_model_len", cfg.max_model_len),
        ("max_num_seqs", cfg.max_num_seqs),
        ("max_num_batched_tokens", cfg.max_num_batched_tokens),
        ("block_size", cfg.block_size),
    ):
        if value is not None and value < 1:
            raise InvalidInput(f"{field}: {value} must be a positive integer")
    if cfg.mm_items_per_prompt is not None and cfg.mm_items_per_prompt < 0:
        raise InvalidInput(
            f"limit_mm_per_prompt: {cfg.mm_items_per_prompt} must be >= 0 (0 = text only)"
        )
    if cfg.max_loras < 0 or cfg.max_lora_rank < 1:
        raise InvalidInput(
            f"max_loras/max_lora_rank: {cfg.max_loras}/{cfg.max_lora_rank} must be >= 0 / >= 1"
        )
    if cfg.quantization not in QUANTIZATIONS:
        raise InvalidInput(
            f"quantization: {cfg.quantization!r} is not one of {', '.join(QUANTIZATIONS)}"
        )
    if cfg.mamba_cache_mode not in MAMBA_CACHE_MODES:
        raise InvalidInput(
            f"mamba_cache_mode: {cfg.mamba_cache_mode!r} is not one of "
            f"{', '.join(MAMBA_CACHE_MODES)}"
        )
    if cfg.mm_max_pixels is not None and cfg.mm_max_pixels < 1:
        raise InvalidInput(f"mm_processor_kwargs.max_pixels: {cfg.mm_max_pixels} must be >= 1")
    if (cfg.speculative_method is None) != (cfg.num_speculative_tokens == 0):
        raise InvalidInput(
            "speculative_config: method and num_speculative_tokens (>= 1) go together; got "
            f"method {cfg.speculative_method!r}, num_speculative_tokens "
            f"{cfg.num_speculative_tokens}"
        )
    if cfg.num_speculative_tokens < 0:
        raise InvalidInput(
            f"speculative_config.num_speculative_tokens: {cfg.num_speculative_tokens} must be >= 1"
        )


def _is_large_gpu(gpu: GPU) -> bool:
    return gpu.memory_gib_reported >= _LARGE_GPU_GIB and not gpu.name.startswith("A100")


def default_batching(gpu: GPU, cfg: EngineConfig) -> tuple[int, int]:
    """(max_num_seqs, max_num_batched_tokens) vLLM will use on this GPU."""
    large = _is_large_gpu(gpu)
    seqs = cfg.max_num_seqs or _DEFAULT_MAX_NUM_SEQS[large]
    tokens = cfg.max_num_batched_tokens or _DEFAULT_BATCHED_TOKENS[large]
    return seqs, tokens


def lora_adapter_bytes(arch: ModelArch, rank: int, value_bytes: float, all_linear: bool) -> float:
    """One adapter of rank r: A (r x in) and B (out x r) on each adapted matrix of every layer.
    vLLM preallocates slots for every linear layer; the guide's typical adapter covers the
    attention projections only."""
    h, q = arch.hidden_size, arch.num_attention_heads * arch.head_dim
    kv = arch.num_kv_heads * arch.head_dim
    per_layer = (h + q) + 2 * (h + kv) + (q + h)
    if all_linear:
        inter = arch.moe_intermediate_size if arch.is_moe else arch.intermediate_size
        per_layer += (3 if arch.gated_mlp else 2) * (h + inter)
    return arch.num_layers * rank * per_layer * value_bytes


def _forward_peak_bytes(arch: ModelArch, tokens: int, tp: int, value_bytes: float) -> float:
    """Largest live set of one decoder layer's forward over `tokens` tokens on one TP rank:
    the MLP's gate/up output and activation (or the fused-MoE caches for the top-k experts),
    the QKV projection, and the residual/hidden/normed hidden states."""
    h = arch.hidden_size
    qkv = (arch.num_attention_heads + 2 * arch.num_kv_heads) * arch.head_dim / tp
    if arch.is_moe:
        inter = arch.moe_intermediate_size / tp
        mlp = arch.experts_per_token * (max(2 * inter, h) + inter + h)
    else:
        inter = arch.intermediate_size / tp
        mlp = (2 if arch.gated_mlp else 1) * inter + inter
    return tokens * (max(mlp, qkv) + 3 * h) * value_bytes


def _drafts_with_mtp(cfg: EngineConfig) -> bool:
    return (cfg.speculative_method or "").lower().endswith("mtp")


def mtp_draft_layers(arch: ModelArch, cfg: EngineConfig) -> int:
    """MTP modules the drafter loads and caches KV for: all the checkpoint has (one when the
    config does not say), however many tokens each step drafts (vLLM reuses a module)."""
    return (arch.mtp_layers or 1) if _drafts_with_mtp(cfg) else 0


def mamba_cache_mode(arch: ModelArch, cfg: EngineConfig) -> str:
    """The mode vLLM runs a hybrid model's state cache in (see MAMBA_CACHE_MODES)."""
    if not arch.num_state_layers or not cfg.enable_prefix_caching:
        return "none"  # vLLM forces "none" without prefix caching
    if cfg.mamba_cache_mode != "auto":
        return cfg.mamba_cache_mode
    return "align" if _version_family(cfg.vllm_version) == "0.17+" else "none"


def _pages_per_request(kind: str, max_len: int, block: int, batched: int, arch: ModelArch,
                       mode: str, spec_tokens: int) -> int:  # fmt: skip
    """Pages one request of max_len holds in one group of this kind (vLLM's
    `max_memory_usage_bytes` of the group's spec, in pages)."""
    if kind == "state":
        held = {"none": 1, "align": 2, "all": math.ceil(max_len / block)}[mode]
        return held + spec_tokens
    if kind == "sliding" and arch.sliding_window:
        window = min(arch.sliding_window - 1 + batched, max_len)
        return math.ceil(window / block) + 1
    return math.ceil(max_len / block)


def _max_concurrency(
    arch: ModelArch, cfg: EngineConfig, stage: int, blocks: int, block: int, max_len: int,
    batched: int, spec_layers: int,
) -> float:  # fmt: skip
    """Requests of max_len the pool holds, as vLLM logs it ("Maximum concurrency"): the
    pool's pages over the pages one request needs in every group."""
    groups = arch.stage_cache_groups(cfg.pp, spec_layers)[stage]
    mode = mamba_cache_mode(arch, cfg)
    spec = cfg.num_speculative_tokens
    needed = sum(
        count * _pages_per_request(kind, max_len, block, batched, arch, mode, spec)
        for kind, count in groups.items()
    )
    return blocks * sum(groups.values()) / max(1, needed)


def _encoder_profile(
    arch: ModelArch, cfg: EngineConfig, batched: int, seqs: int, value_bytes: float
) -> tuple[float, float]:
    """(encoder forward bytes, cached encoder outputs bytes) of the multimodal profile pass.

    Without the tower's shape the outputs are bounded by the encoder budget (at least
    max_num_batched_tokens tokens of the language model's width) and the tower's own pass,
    smaller than the language model's for every tower we know the shape of, is left out.
    """
    limit = cfg.mm_items_per_prompt
    if not arch.has_encoder or limit == 0:
        return 0.0, 0.0
    if arch.tower is None:
        return 0.0, batched * arch.hidden_size * value_bytes
    tower = with_max_pixels(arch.tower, cfg.mm_max_pixels)
    items = encoder_items(tower, batched, seqs, limit or DEFAULT_MM_ITEMS_PER_PROMPT)
    return encoder_profile_bytes(tower, items, arch.hidden_size, value_bytes, cfg.tp)


def _estimate_vllm(arch: ModelArch, gpu: GPU, cfg: EngineConfig, max_len: int) -> MemoryBreakdown:
    family = _version_family(cfg.vllm_version)
    value_bytes = dtype_bytes(cfg.dtype, arch)
    kv_bytes = kv_dtype_bytes(cfg.kv_cache_dtype, cfg.dtype, arch)
    seqs, batched = default_batching(gpu, cfg)
    budget_gib = gpu.memory_gib_reported * cfg.gpu_memory_utilization
    # Every stage also holds the rotary cos/sin cache: one row per position, model dtype.
    rope = arch.max_position_embeddings * arch.rotary_dim * value_bytes
    stage_weights = [
        w + rope for w in stage_weights_bytes(arch, cfg.quantization, cfg.dtype, cfg.tp, cfg.pp)
    ]
    spec_layers = mtp_draft_layers(arch, cfg)
    if spec_layers:  # the drafter runs with the last stage, which holds lm_head
        stage_weights[-1] += mtp_weights_bytes(arch, cfg.quantization, cfg.dtype, cfg.tp)

    forward = _forward_peak_bytes(arch, batched, cfg.tp, value_bytes)
    if cfg.pp > 1:  # intermediate tensors sent between stages: hidden + residual
        forward += 2 * batched * arch.hidden_size * value_bytes
    sampler_reqs = min(seqs, batched)
    sampler = sampler_reqs * arch.vocab_size * (value_bytes + _SAMPLER_EXTRA_BYTES[family])
    nt = _NON_TORCH_GIB[family]
    if cfg.tp > 1:
        non_torch = nt["tp_base"] + nt["tp_per_rank"] * cfg.tp
        if gpu.vendor == "amd":
            non_torch += _ROCM_TP_EXTRA_NON_TORCH_GIB
    else:
        non_torch = nt["pipeline"] if cfg.pp > 1 else nt["single"]
    cuda_graph = 0.0 if cfg.enforce_eager else _CUDA_GRAPH_GIB[arch.is_moe]
    lora = 0.0
    if cfg.max_loras:
        adapter = cfg.lora_adapter_bytes or lora_adapter_bytes(
            arch, cfg.max_lora_rank, value_bytes, all_linear=True
        )
        lora = cfg.max_loras * adapter / max(1, cfg.tp) / GIB

    encoder_forward, encoder_cached = _encoder_profile(arch, cfg, batched, seqs, value_bytes)
    best: MemoryBreakdown | None = None
    cache_slots = arch.stage_cache_layers(cfg.pp, spec_layers)
    # Mamba state is kept in the model dtype (vLLM's mamba_ssm_cache_dtype "auto").
    block = arch.block_tokens(
        kv_bytes, value_bytes, cfg.tp, cfg.block_size, cfg.num_speculative_tokens
    )
    for stage, (weights_b, slots) in enumerate(zip(stage_weights, cache_slots, strict=True)):
        last = stage == cfg.pp - 1
        peak = max(forward, sampler if last else 0.0)
        if stage == 0:  # the encoder and its cached outputs live with the embedding
            peak = max(encoder_forward, peak + encoder_cached)
        activation = peak / GIB + _ACTIVATION_BASE_GIB
        weights = weights_b / GIB
        graphs_in = cuda_graph if cfg.cuda_graphs_in_budget else 0.0
        kv_gib = budget_gib - weights - activation - non_torch - lora - graphs_in
        per_token = slots * arch.kv_bytes_per_token_per_layer(kv_bytes, cfg.tp)
        blocks = math.floor(max(0.0, kv_gib) * GIB / (per_token * block))
        tokens = blocks * block
        stage_result = MemoryBreakdown(
            method="vllm",
            weights_gib=weights,
            activation_gib=activation,
            non_torch_gib=non_torch,
            cuda_graph_gib=cuda_graph,
            lora_gib=lora,
            usable_gib=budget_gib,
            kv_cache_gib=kv_gib,
            kv_cache_tokens=tokens,
            max_concurrency=_max_concurrency(
                arch, cfg, stage, blocks, block, max_len, batched, spec_layers
            ),
            kv_bytes_per_token=per_token,
            max_model_len=max_len,
            fits=kv_gib > 0,
            notes=(),
            max_num_seqs=seqs,
            max_num_batched_tokens=batched,
        )
        if best is None or (tokens, kv_gib) < (best.kv_cache_tokens, best.kv_cache_gib):
            best = stage_result
    assert best is not None
    extra = max(_WARMUP_SAMPLER_EXTRA_BYTES, _SAMPLER_EXTRA_BYTES[family])
    warmup_sampler = sampler_reqs * arch.vocab_size * (value_bytes + extra) / GIB
    return _with_notes(best, cfg, gpu, budget_gib, cuda_graph, warmup_sampler)


def _with_notes(
    result: MemoryBreakdown,
    cfg: EngineConfig,
    gpu: GPU,
    budget_gib: float,
    cuda_graph: float,
    warmup_sampler: float,
) -> MemoryBreakdown:
    notes = []
    if not result.fits:
        need = result.non_kv_gib
        notes.append(
            f"does not fit: needs {need:.2f} GiB per GPU before any KV cache, "
            f"{budget_gib:.2f} GiB usable ({gpu.memory_gib_reported:.2f} GiB x "
            f"{cfg.gpu_memory_utilization:g}); raise tp/pp or quantize"
        )
    elif result.kv_cache_tokens < result.max_model_len:
        notes.append(
            f"KV cache holds {result.kv_cache_tokens} tokens, less than one request of "
            f"max_model_len {result.max_model_len}: vLLM refuses to start"
        )
    # After the KV cache is allocated, the CUDA graphs and then the sampler warm-up must fit in
    # what is left: the (1 - utilization) headroom plus the activation peak the budget reserved
    # (freed after profiling), less graphs already budgeted.
    headroom = gpu.memory_gib_reported * (1 - cfg.gpu_memory_utilization)
    graphs_after = 0.0 if cfg.cuda_graphs_in_budget else cuda_graph
    spare = headroom + result.activation_gib - graphs_after - warmup_sampler
    if result.method == "vllm" and result.fits and spare < _WARMUP_MARGIN_GIB:
        notes.append(
            f"CUDA graphs (~{graphs_after:.2f} GiB) plus the sampler warm-up "
            f"(~{warmup_sampler:.2f} GiB) leave {spare:.2f} GiB of the "
            f"{headroom + result.activation_gib:.2f} GiB free after KV sizing: start-up can fail "
            "in warm-up; lower gpu_memory_utilization or max_num_seqs, or enforce eager"
        )
    method = (cfg.speculative_method or "").lower()
    if method and not _drafts_with_mtp(cfg) and method not in _CPU_PROPOSERS:
        notes.append(
            f"speculative method {cfg.speculative_method!r} loads a separate draft model whose "
            "weights and KV cache are not counted here"
        )
    fits = result.fits
    refusal = gpu.startup_refusal(cfg.gpu_memory_utilization)
    if refusal:
        fits = False  # vLLM's start-up check refuses before it loads anything
        notes.append(refusal)
    return MemoryBreakdown(**{**result.__dict__, "fits": fits, "notes": tuple(notes)})


def _guide_weights_bytes(arch: ModelArch, quantization: str) -> tuple[float, float]:
    """(weights in this format, the same weights in 16 bit): params x bytes, nothing more."""
    wide = 2.0 * arch.total_params
    fmt = effective_format(arch, quantization)
    per_param = _GUIDE_BYTES[fmt.name] if fmt else None
    return (wide if per_param is None else per_param * arch.total_params), wide


def _estimate_guide(arch: ModelArch, gpu: GPU, cfg: EngineConfig, max_len: int) -> MemoryBreakdown:
    gpus = cfg.tp * cfg.pp
    weights_b, wide_b = _guide_weights_bytes(arch, cfg.quantization)
    kv_bytes = kv_dtype_bytes(cfg.kv_cache_dtype, cfg.dtype, arch)
    weights = weights_b / gpus / GIB
    activation = GUIDE_ACTIVATION_FRACTION * wide_b / gpus / GIB
    lora = 0.0
    if cfg.max_loras:
        adapter = cfg.lora_adapter_bytes or lora_adapter_bytes(
            arch, cfg.max_lora_rank, 2.0, all_linear=False
        )
        lora = cfg.max_loras * adapter / gpus / GIB
    vram = gpu.memory_gb * GB / GIB
    # Overhead is 5 % on top of everything else, so the rest can use VRAM / 1.05.
    kv_gib = vram / (1 + GUIDE_OVERHEAD_FRACTION) - weights - activation - lora
    overhead = GUIDE_OVERHEAD_FRACTION * (weights + activation + lora + max(0.0, kv_gib))
    per_token = arch.kv_bytes_per_token(kv_bytes, cfg.tp, cfg.pp)
    tokens = int(max(0.0, kv_gib) * GIB // per_token)
    result = MemoryBreakdown(
        method="guide",
        weights_gib=weights,
        activation_gib=activation,
        non_torch_gib=overhead,
        cuda_graph_gib=0.0,
        lora_gib=lora,
        usable_gib=vram,
        kv_cache_gib=kv_gib,
        kv_cache_tokens=tokens,
        max_concurrency=tokens / max_len,
        kv_bytes_per_token=per_token,
        max_model_len=max_len,
        fits=kv_gib > 0,
        notes=(),
    )
    return _with_notes(result, cfg, gpu, vram, 0.0, 0.0)


def estimate_memory(
    arch: ModelArch, gpu: GPU, cfg: EngineConfig, method: str = "vllm"
) -> MemoryBreakdown:
    """Per-GPU memory split and engine-level KV capacity. Never raises for a model that does
    not fit: `fits` is False and a note says how much is needed, so the planner can try more
    GPUs."""
    if method not in METHODS:
        raise InvalidInput(f"sizingMethod: {method!r} is not one of {', '.join(METHODS)}")
    _validate(arch, gpu, cfg)
    max_len = cfg.max_model_len or arch.max_position_embeddings
    if method == "guide":
        return _estimate_guide(arch, gpu, cfg, max_len)
    return _estimate_vllm(arch, gpu, cfg, max_len)


@dataclass(frozen=True)
class GuideFloor:
    """The guide's minimum GPU count (section 2.6), in GB = 10^9 as the guide writes them."""

    weights_gb: float
    kv_gb: float
    activations_gb: float
    overhead_gb: float
    lora_gb: float
    total_gb: float
    min_gpus: int
    min_gpus_with_headroom: int


def guide_min_gpus(
    arch: ModelArch,
    gpu: GPU,
    quantization: str = "none",
    kv_cache_dtype: str = "auto",
    context_tokens: int = 8192,
    concurrency: int = 1,
    max_loras: int = 0,
    lora_rank: int = 16,
    lora_adapter_bytes_each: float | None = None,
    headroom_fraction: float = GUIDE_HEADROOM_FRACTION,
) -> GuideFloor:
    """ceil(total / GPU VRAM) and the same with headroom: the floor before any throughput math.

    KV = concurrency x context x 2 x layers x KV heads x head_dim x bytes. (The guide's own
    example writes 0.26 MB per token for Llama-3-70B; the formula gives 0.33 MB. We use the
    formula; the GPU counts of the example hold either way.)
    """
    if context_tokens < 1 or concurrency < 0:
        raise InvalidInput(
            f"context_tokens/concurrency: {context_tokens}/{concurrency} must be >= 1 / >= 0"
        )
    if not 0 <= headroom_fraction <= 2:
        raise InvalidInput(f"headroom_fraction: {headroom_fraction} must be between 0 and 2")
    weights_b, wide_b = _guide_weights_bytes(arch, quantization)
    kv_per_token = arch.kv_bytes_per_token(kv_dtype_bytes(kv_cache_dtype, "auto", arch))
    kv_b = concurrency * context_tokens * kv_per_token
    activations_b = GUIDE_ACTIVATION_FRACTION * wide_b
    adapter = lora_adapter_bytes_each or lora_adapter_bytes(arch, lora_rank, 2.0, all_linear=False)
    lora_b = max_loras * adapter
    overhead_b = GUIDE_OVERHEAD_FRACTION * (weights_b + kv_b + activations_b + lora_b)
    total_b = weights_b + kv_b + activations_b + lora_b + overhead_b
    vram_b = gpu.memory_gb * GB
    return GuideFloor(
        weights_gb=weights_b / GB,
        kv_gb=kv_b / GB,
        activations_gb=activations_b / GB,
        overhead_gb=overhead_b / GB,
        lora_gb=lora_b / GB,
        total_gb=total_b / GB,
        min_gpus=max(1, math.ceil(total_b / vram_b)),
        min_gpus_with_headroom=max(1, math.ceil(total_b * (1 + headroom_fraction) / vram_b)),
    )
