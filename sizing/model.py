"""Model architecture from a Hugging Face `config.json`: shapes, parameter counts, KV bytes.

Everything memory depends on is a shape: weights are parameter groups times bytes, the KV cache
is layers x KV heads x head size per token. We derive the parameter groups from the shapes so a
quantized checkpoint can keep embeddings and norms in 16 bit while the linear layers shrink,
and so MoE models know their active parameters.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any

from sizing.checkpoint import CheckpointWeights
from sizing.encoder import EncoderTower, encoder_tower
from sizing.errors import InvalidInput
from sizing.validate_config import check_model_config, check_params_b

# Layers whose cache is a fixed state per sequence (Mamba, gated-delta linear attention).
_STATE_LAYER_TYPES = frozenset({"mamba", "linear_attention"})
# vLLM's hybrid KV-cache manager puts layers of one cache kind into groups of equal size (the
# smallest kind's count, or the largest when all are within this factor of it) that share one
# pool of pages of one size (`vllm/v1/core/kv_cache_utils.py`).
_GROUP_SIZE_SLACK = 1.25
# Attention blocks are grown in steps of this many tokens until a page holds one state.
_BLOCK_ALIGNMENT = 16
# Keys `transformers` leaves out of a saved config.json when they equal its config class's
# default (`to_diff_dict`), for the classes whose Hub configs rely on that: what the file means.
_CLASS_DEFAULTS: dict[str, dict[str, Any]] = {
    "gemma3_text": {  # Gemma3TextConfig
        "vocab_size": 262_208, "max_position_embeddings": 131_072, "tie_word_embeddings": True,
        "hidden_size": 2304, "intermediate_size": 9216, "num_hidden_layers": 26,
        "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256,
        "sliding_window": 4096,
    },
    "qwen2": {  # Qwen2Config (Qwen2-Audio's text_config names only what differs)
        "vocab_size": 151_936, "max_position_embeddings": 32_768, "tie_word_embeddings": False,
        "hidden_size": 4096, "intermediate_size": 22_016, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": 32,
    },
}  # fmt: skip
# The text config's type when a multimodal config.json does not name it.
_TEXT_TYPES = {"gemma3": "gemma3_text"}
# Model types with learned or ALiBi positions: no rotary cos/sin cache.
_NO_ROPE_TYPES = frozenset({"opt", "gpt2", "bloom", "mpt"})
# Model types whose MLP is up -> activation -> down (two matrices), not gated (three).
_UNGATED_MLP_TYPES = frozenset(
    {"phi", "opt", "gpt2", "gpt_neox", "gptj", "falcon", "bloom", "mpt", "nemotron_h"}
)
_DTYPE_BYTES = {"float32": 4.0, "float16": 2.0, "bfloat16": 2.0}
_DTYPE_NAMES = {
    "float32": "float32",
    "fp32": "float32",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
}


@dataclass(frozen=True)
class ParamGroups:
    """Parameter counts by role, for the whole model before sharding.

    The roles matter because quantized checkpoints keep some of them in 16 bit and because
    tensor parallelism splits them differently (vocab-parallel embeddings, replicated norms).
    """

    embedding: int
    lm_head: int  # 0 when tied to the embedding
    attention: int  # all layers
    dense_mlp: int  # dense (non-MoE) MLP layers
    routed_experts: int  # all routed experts of all MoE layers
    shared_experts: int
    router: int
    norms: int
    other: int  # vision tower + projector (multimodal), biases: what the shapes leave out
    active_routed_experts: int  # experts_per_token of them, all MoE layers

    @property
    def total(self) -> int:
        return (
            self.embedding
            + self.lm_head
            + self.attention
            + self.dense_mlp
            + self.routed_experts
            + self.shared_experts
            + self.router
            + self.norms
            + self.other
        )

    @property
    def active(self) -> int:
        """Parameters one token touches: everything but the experts the router skips."""
        return self.total - self.routed_experts + self.active_routed_experts


@dataclass(frozen=True)
class ModelArch:
    name: str
    model_type: str
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    max_position_embeddings: int
    checkpoint_dtype: str  # bfloat16 | float16 | float32
    tie_word_embeddings: bool
    params: ParamGroups
    gated_mlp: bool = True
    # MoE
    num_experts: int = 0
    experts_per_token: int = 0
    moe_intermediate_size: int = 0
    num_shared_experts: int = 0
    shared_expert_intermediate_size: int = 0
    first_k_dense_replace: int = 0
    num_moe_layers: int = 0
    # MLA (DeepSeek-V2/V3, Kimi): one compressed latent per token per layer
    kv_lora_rank: int = 0
    qk_rope_head_dim: int = 0
    # Sliding-window / hybrid attention
    sliding_window: int | None = None
    layer_types: tuple[str, ...] = ()
    # Pre-quantized checkpoint: fp8 | int8 | int4 | awq | gptq | mxfp4 | nvfp4 | bnb4 | None
    checkpoint_quantization: str | None = None
    quantization_group_size: int = 128
    quantized_experts_only: bool = False  # checkpoint keeps attention/dense MLP in 16 bit
    quantization_block_scaled: bool = False  # FP8 with 2-D block scales (weight_block_size)
    has_encoder: bool = False  # a vision or audio encoder
    tower: EncoderTower | None = None  # the encoder vLLM profiles, when the config gives it
    # State layers (Mamba in Nemotron-H, gated-delta linear attention in Qwen3-Next/3.5): the
    # recurrent state's elements per sequence per layer, and the short convolution's
    mamba_state_elements: int = 0
    mamba_conv_elements: int = 0
    # Channels of that convolution: each speculative token widens its state by one tap per
    # channel (`conv_kernel - 1 + num_spec` in vLLM's state shapes)
    mamba_conv_channels: int = 0
    # The recurrent state's dtype when the config pins it (Qwen3.5's mamba_ssm_dtype float32);
    # None: the model dtype, as vLLM's mamba_ssm_cache_dtype "auto" keeps it
    ssm_state_dtype: str | None = None
    # The loaded tensors as the safetensors headers list them (None: derived from the shapes)
    checkpoint: CheckpointWeights | None = None
    partial_rotary_factor: float = 1.0  # share of head_dim that RoPE rotates
    # Multi-token-prediction modules the checkpoint carries (`num_nextn_predict_layers`,
    # `mtp_num_hidden_layers`): one decoder layer each, loaded only for MTP speculative decoding
    mtp_layers: int = 0

    @property
    def total_params(self) -> int:
        return self.params.total

    @property
    def active_params(self) -> int:
        return self.params.active

    @property
    def vision_params(self) -> int:
        return self.params.other if self.has_encoder else 0

    @property
    def rotary_dim(self) -> int:
        """Width of the rotary cos/sin cache vLLM builds (one row per position)."""
        if self.model_type in _NO_ROPE_TYPES:
            return 0
        if self.is_mla:
            return self.qk_rope_head_dim
        return int(self.head_dim * self.partial_rotary_factor)

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank > 0

    @property
    def attention_head_counts(self) -> tuple[int, int]:
        """(query heads, KV heads): tensor parallelism must divide the query heads."""
        return self.num_attention_heads, self.num_kv_heads

    @property
    def num_sliding_layers(self) -> int:
        return sum(1 for t in self.layer_types if _cache_kind(t) == "sliding")

    @property
    def num_attention_layers(self) -> int:
        """Layers that attend over the KV cache (all of them unless the config says which)."""
        if not self.layer_types:
            return self.num_layers
        return sum(1 for t in self.layer_types if _cache_kind(t) in ("full", "sliding"))

    @property
    def num_blocks(self) -> int:
        """Mixer blocks run per token: a transformer layer is two (attention, then MLP or
        MoE); a hybrid pattern (Nemotron-H) lists each Mamba, attention, MLP or MoE block as
        a layer of its own."""
        if any(t in _SINGLE_BLOCK_TYPES for t in self.layer_types):
            return self.num_layers
        return 2 * self.num_layers

    def kv_heads_per_gpu(self, tp: int) -> int:
        """KV heads each TP rank caches: split when TP divides them, replicated when TP exceeds."""
        return max(1, self.num_kv_heads // tp)

    def stage_layer_counts(self, pp: int) -> tuple[int, ...]:
        """Layers per pipeline stage as vLLM splits them: the remainder goes to the stages before
        stages, so the last stage (which also holds lm_head and the sampler) stays light."""
        if pp < 1 or pp > self.num_layers:
            raise InvalidInput(
                f"pipeline_parallel_size: {pp} must be between 1 and num_layers {self.num_layers}"
            )
        counts = [self.num_layers // pp] * pp
        for i in range(2, self.num_layers % pp + 2):
            counts[-i] += 1
        return tuple(counts)

    def kv_bytes_per_token_per_layer(self, kv_dtype_bytes: float, tp: int = 1) -> float:
        if self.is_mla:
            return (self.kv_lora_rank + self.qk_rope_head_dim) * kv_dtype_bytes
        return 2 * self.kv_heads_per_gpu(tp) * self.head_dim * kv_dtype_bytes

    def _stage_kinds(self, pp: int, extra_full_layers: int) -> list[Counter[str]]:
        """Per pipeline stage, the cached layers of each kind (full / sliding / state)."""
        kinds, start = [], 0
        for stage, count in enumerate(self.stage_layer_counts(pp)):
            found = Counter(
                kind for t in self.layer_types[start : start + count] if (kind := _cache_kind(t))
            )
            if stage == pp - 1 and extra_full_layers:
                found["full"] += extra_full_layers
            kinds.append(found)
            start += count
        return kinds

    @staticmethod
    def _group_size(sizes: list[int]) -> int:
        group = min(sizes)
        return max(sizes) if max(sizes) < group * _GROUP_SIZE_SLACK else group

    def stage_cache_groups(
        self, pp: int = 1, extra_full_layers: int = 0
    ) -> tuple[dict[str, int], ...]:
        """Per pipeline stage, how many KV-cache groups of each cache kind vLLM makes.

        One cache kind (every layer full attention) is one group of all layers. With several
        kinds (sliding + full, Mamba + attention) vLLM's hybrid manager makes groups of equal
        size g (`vllm/v1/core/kv_cache_utils.py`), ceil(n / g) per kind, sharing one pool of
        pages. `extra_full_layers` are full-attention layers the last stage also caches (the
        MTP draft layers of speculative decoding).
        """
        if len(self.layer_types) != self.num_layers:
            return tuple({"full": 1} for _ in range(pp))
        stages = []
        for kinds in self._stage_kinds(pp, extra_full_layers):
            group = self._group_size(list(kinds.values()) or [1])
            stages.append({kind: math.ceil(n / group) for kind, n in kinds.items()} or {"full": 1})
        return tuple(stages)

    def stage_cache_layers(self, pp: int = 1, extra_full_layers: int = 0) -> tuple[int, ...]:
        """Per pipeline stage, the layer slots vLLM's KV pool is divided among: group size x
        groups (`stage_cache_groups`), as every group gets the same pages. Gemma 3's 52
        sliding + 10 full layers take 70, gpt-oss's 12 + 12 take 24, and a Nemotron-H's 4
        attention + 27 Mamba layers take 32 (its MLP-only layers none).
        """
        if len(self.layer_types) != self.num_layers:
            counts = list(self.stage_layer_counts(pp))
            counts[-1] += extra_full_layers
            return tuple(counts)
        slots = []
        for kinds in self._stage_kinds(pp, extra_full_layers):
            sizes = list(kinds.values()) or [1]
            group = self._group_size(sizes)
            slots.append(group * sum(math.ceil(n / group) for n in sizes))
        return tuple(slots)

    @property
    def num_state_layers(self) -> int:
        return sum(1 for t in self.layer_types if t in _STATE_LAYER_TYPES)

    def block_tokens(
        self,
        kv_dtype_bytes: float,
        state_bytes: float,
        tp: int,
        block_size: int,
        spec_tokens: int = 0,
    ) -> int:
        """The attention block size vLLM uses: as asked, or for a model with state layers the
        smallest multiple of 16 tokens whose page holds one sequence's state of a layer."""
        state = self.state_bytes_per_sequence(state_bytes, tp, spec_tokens)
        if not self.num_state_layers or state <= 0:
            return block_size
        per_token = self.kv_bytes_per_token_per_layer(kv_dtype_bytes, tp)
        needed = _BLOCK_ALIGNMENT * math.ceil(state / (_BLOCK_ALIGNMENT * per_token))
        return max(block_size, needed)

    def state_bytes_per_sequence(
        self, value_bytes: float, tp: int = 1, spec_tokens: int = 0
    ) -> float:
        """One state layer's cache for one sequence on one TP rank: the convolution state in
        the model dtype (one more tap per speculative token), the recurrent state in its own
        dtype (`ssm_state_dtype`) when pinned."""
        ssm_bytes = _DTYPE_BYTES[self.ssm_state_dtype] if self.ssm_state_dtype else value_bytes
        conv = self.mamba_conv_elements + spec_tokens * self.mamba_conv_channels
        return (conv * value_bytes + self.mamba_state_elements * ssm_bytes) / tp

    def kv_bytes_per_token(self, kv_dtype_bytes: float, tp: int = 1, pp: int = 1) -> float:
        """KV-cache bytes one token needs on one GPU, on the stage with the most cache slots
        (`stage_cache_layers`).

        That stage has the fewest tokens for a given memory, and vLLM keeps the smallest
        stage's count engine-wide.
        """
        if tp < 1:
            raise InvalidInput(f"tensor_parallel_size: {tp} must be at least 1")
        layers = max(self.stage_cache_layers(pp))
        return layers * self.kv_bytes_per_token_per_layer(kv_dtype_bytes, tp)

    def kv_tokens(self, kv_cache_bytes: float, kv_dtype_bytes: float, tp: int = 1, pp: int = 1,
                  block_size: int = 16) -> int:  # fmt: skip
        """Engine-level token capacity of `kv_cache_bytes` per GPU, in whole blocks."""
        per_token = self.kv_bytes_per_token(kv_dtype_bytes, tp, pp)
        if kv_cache_bytes <= 0:
            return 0
        blocks = math.floor(kv_cache_bytes / (per_token * block_size))
        return blocks * block_size


def _get(cfg: dict[str, Any], key: str, where: str) -> Any:
    if key not in cfg or cfg[key] is None:
        raise InvalidInput(
            f"config.json: missing key {where}{key!r}", field=f"config.json:{where}{key}"
        )
    return cfg[key]


def _int(cfg: dict[str, Any], key: str, where: str, default: int | None = None) -> int:
    if default is not None and cfg.get(key) is None:
        return default
    value = _get(cfg, key, where)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInput(
            f"config.json: key {where}{key!r} must be a non-negative integer, got {value!r}",
            field=f"config.json:{where}{key}",
        )
    return value


def _fraction(cfg: dict[str, Any], key: str, where: str) -> float:
    value = cfg.get(key, 1.0)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise InvalidInput(
            f"config.json: key {where}{key!r} must be a number in (0, 1], got {value!r}",
            field=f"config.json:{where}{key}",
        )
    return float(value)


def _experts_only(qc: Any) -> bool:
    """True when the checkpoint's skip list keeps attention in 16 bit (gpt-oss, Kimi-K2):
    then only the routed experts are quantized."""
    if not isinstance(qc, dict):
        return False
    skipped = [*(qc.get("ignore") or []), *(qc.get("modules_to_not_convert") or [])]
    return any("self_attn" in str(pattern) for pattern in skipped)


def _modelopt_format(qc: dict[str, Any]) -> tuple[str, int]:
    """NVIDIA ModelOpt checkpoints name their algorithm, at the top or under `quantization`."""
    nested = qc.get("quantization")
    inner: dict[str, Any] = nested if isinstance(nested, dict) else {}
    algo = str(qc.get("quant_algo") or inner.get("quant_algo") or "").upper()
    if algo.startswith("FP8"):
        return "fp8", 128
    if algo == "NVFP4":
        return "nvfp4", 16
    if algo == "MXFP4":
        return "mxfp4", 32
    raise InvalidInput(
        f"config.json: quantization_config.quant_algo {algo!r} (modelopt) is not one of "
        "FP8, NVFP4, MXFP4"
    )


def _compressed_tensors_format(qc: dict[str, Any]) -> tuple[str, int]:
    groups = qc.get("config_groups") or {}
    weights = next(iter(groups.values())).get("weights", {}) if groups else {}
    bits = int(weights.get("num_bits", 8))
    kind = str(weights.get("type", "int"))
    group = int(weights.get("group_size") or 128)
    if bits <= 4:
        # nvfp4-pack-quantized: FP4 values with an FP8 scale per 16.
        return ("nvfp4", 16) if kind == "float" else ("int4", group)
    return ("fp8" if kind == "float" else "int8"), group


def _quantization(qc: Any) -> tuple[str | None, int]:
    """Map a `quantization_config` to our format name and its group size."""
    if not qc:
        return None, 128
    if not isinstance(qc, dict):
        raise InvalidInput(f"config.json: 'quantization_config' must be an object, got {qc!r}")
    method = str(qc.get("quant_method", "")).lower()
    group = int(qc.get("group_size") or 128)
    if method in ("fp8", "fbgemm_fp8"):
        return "fp8", group
    if method in ("awq", "gptq", "mxfp4"):
        bits = int(qc.get("bits", 4))
        if method == "gptq" and bits == 8:
            return "int8", group
        return method, group
    if method == "bitsandbytes":
        return ("int8" if qc.get("load_in_8bit") else "bnb4"), 64
    if method == "compressed-tensors":
        return _compressed_tensors_format(qc)
    if method in ("modelopt", "modelopt_fp4"):
        return _modelopt_format(qc)
    raise InvalidInput(
        f"config.json: quantization_config.quant_method {method!r} is not one of fp8, awq, "
        "gptq, mxfp4, bitsandbytes, compressed-tensors, modelopt"
    )


def _block_scaled(qc: Any) -> bool:
    """FP8 with 2-D block scales (DeepSeek-style `weight_block_size`, or a block strategy)."""
    if not isinstance(qc, dict):
        return False
    if qc.get("weight_block_size"):
        return True
    groups = qc.get("config_groups") or {}
    return any(str((g.get("weights") or {}).get("strategy")) == "block" for g in groups.values())


def _cache_kind(layer_type: str) -> str | None:
    """full / sliding / state, or None for layers without a cache (MLP-only, MoE-only)."""
    if layer_type in _STATE_LAYER_TYPES:
        return "state"
    if "attention" not in layer_type:
        return None
    local = any(word in layer_type for word in ("sliding", "local", "chunked"))
    return "sliding" if local else "full"


def _mamba_mixer_params(cfg: dict[str, Any], hidden: int) -> int:
    """One Mamba-2 mixer: in_proj (x, z, B, C and dt), the causal conv, out_proj, and the
    per-head A, D and dt bias plus the gated norm. Linear like attention, so counted with it."""
    heads = int(cfg.get("mamba_num_heads") or 0)
    inner = heads * int(cfg.get("mamba_head_dim") or 0)
    bc = 2 * int(cfg.get("n_groups") or 1) * int(cfg.get("ssm_state_size") or 0)
    kernel = int(cfg.get("conv_kernel") or 4)
    return (
        hidden * (2 * inner + bc + heads)
        + (inner + bc) * kernel
        + inner * hidden
        + 3 * heads
        + inner
    )


def _mamba_conv_channels(cfg: dict[str, Any]) -> int:
    """Channels of a Mamba-2 causal convolution: x, B and C."""
    inner = int(cfg.get("mamba_num_heads") or 0) * int(cfg.get("mamba_head_dim") or 0)
    groups = int(cfg.get("n_groups") or cfg.get("mamba_n_groups") or 1)
    return inner + 2 * groups * int(cfg.get("ssm_state_size") or 0) if inner else 0


def _mamba_conv_elements(cfg: dict[str, Any]) -> int:
    """The causal convolution's last kernel-1 inputs over x, B and C: per layer per sequence."""
    return _mamba_conv_channels(cfg) * max(0, int(cfg.get("conv_kernel") or 4) - 1)


def _mamba_state_elements(cfg: dict[str, Any]) -> int:
    """Per layer per sequence: the SSM state (heads x head_dim x state) a decode reads and
    writes (the short convolution state is left out: a few kernel taps)."""
    heads = int(cfg.get("mamba_num_heads") or 0)
    return heads * int(cfg.get("mamba_head_dim") or 0) * int(cfg.get("ssm_state_size") or 0)


def _gated_delta_shape(cfg: dict[str, Any]) -> tuple[int, int, int, int, int]:
    """(key heads, value heads, key head dim, value head dim, conv kernel) of a gated-delta
    layer (Qwen3-Next, Qwen3.5); zeros when the config has none."""
    return (
        int(cfg.get("linear_num_key_heads") or 0),
        int(cfg.get("linear_num_value_heads") or 0),
        int(cfg.get("linear_key_head_dim") or 0),
        int(cfg.get("linear_value_head_dim") or 0),
        int(cfg.get("linear_conv_kernel_dim") or 4),
    )


def _gated_delta_params(cfg: dict[str, Any], hidden: int) -> int:
    """One gated-delta mixer: the fused q/k/v/z projection, the b/a (beta, decay) projection,
    the depthwise conv over q, k and v, per-value-head A and dt bias, the gated norm, and
    out_proj. Linear like attention, so counted with it."""
    k_heads, v_heads, k_dim, v_dim, kernel = _gated_delta_shape(cfg)
    key, value = k_heads * k_dim, v_heads * v_dim
    conv = 2 * key + value
    return (
        hidden * (2 * key + 2 * value)
        + hidden * 2 * v_heads
        + conv * kernel
        + (2 * v_heads + v_dim + value * hidden)
    )


def _gated_delta_state(cfg: dict[str, Any]) -> tuple[int, int, int]:
    """(recurrent state, conv state, conv channels) elements per layer per sequence, as vLLM
    allocates them (`MambaStateShapeCalculator.gated_delta_net_state_shape`): value heads x key
    dim x value dim, and (kernel - 1) taps over the q, k and v channels."""
    k_heads, v_heads, k_dim, v_dim, kernel = _gated_delta_shape(cfg)
    channels = 2 * k_heads * k_dim + v_heads * v_dim
    return v_heads * k_dim * v_dim, (kernel - 1) * channels, channels


def _layer_types(cfg: dict[str, Any], layers: int) -> tuple[str, ...]:
    """Each layer's kind: `layer_types` when the config lists them; else from Nemotron-H's
    pattern, Qwen3-Next's `full_attention_interval` (every n-th layer full, the rest
    gated-delta), or Llama 4's `no_rope_layers` with `attention_chunk_size` (RoPE layers attend
    within their chunk, the NoPE ones over everything)."""
    listed = tuple(str(t) for t in cfg.get("layer_types") or ())
    if listed:
        return listed
    pattern = str(cfg.get("hybrid_override_pattern", ""))
    if pattern:
        return tuple(_HYBRID_LAYER_CODES.get(code, "mlp") for code in pattern)
    interval = cfg.get("full_attention_interval")
    if isinstance(interval, int) and interval > 0 and _gated_delta_shape(cfg)[1]:
        return tuple(
            "full_attention" if (i + 1) % interval == 0 else "linear_attention"
            for i in range(layers)
        )
    no_rope = cfg.get("no_rope_layers")
    if cfg.get("attention_chunk_size") and isinstance(no_rope, list) and len(no_rope) == layers:
        return tuple("chunked_attention" if flag else "full_attention" for flag in no_rope)
    return ()


# Nemotron-H's hybrid_override_pattern: one character per layer.
_HYBRID_LAYER_CODES = {"*": "full_attention", "M": "mamba", "E": "moe", "-": "mlp"}
# Layer types that are one block each (a pattern of single mixers, not attention + MLP).
_SINGLE_BLOCK_TYPES = ("mamba", "moe", "mlp")


def _dtype(cfg: dict[str, Any], outer: dict[str, Any]) -> str:
    raw = cfg.get("torch_dtype") or cfg.get("dtype") or outer.get("torch_dtype") or "bfloat16"
    name = _DTYPE_NAMES.get(str(raw).lower())
    if name is None:
        raise InvalidInput(
            f"config.json: 'torch_dtype' {raw!r} is not one of bfloat16, float16, float32"
        )
    return name


def load_model_config(
    config: dict[str, Any], params_b: float | None = None, name: str = ""
) -> ModelArch:
    """Parse a Hugging Face config.json (already decoded) into a ModelArch.

    `params_b` (billions) overrides the checkpoint's total parameter count; otherwise the
    config's `total_params_b` is used, else the count derived from the shapes (see
    `_reconcile` for how a stated total that differs is spread).
    """
    if not isinstance(config, dict):
        raise InvalidInput("config.json: the top level must be a JSON object", field="config.json")
    check_model_config(config)
    text = config.get("text_config") or config.get("llm_config")
    where = "text_config." if text else ""
    cfg: dict[str, Any] = {**text} if isinstance(text, dict) else config
    text_type = cfg.get("model_type") or _TEXT_TYPES.get(str(config.get("model_type")), "")
    defaults = _CLASS_DEFAULTS.get(str(text_type), {})
    cfg = {**{k: v for k, v in defaults.items() if k not in config}, **cfg}

    hidden = _int(cfg, "hidden_size", where)
    layers = _int(cfg, "num_hidden_layers", where)
    heads = _int(cfg, "num_attention_heads", where)
    vocab = _int(cfg, "vocab_size", where)
    if min(hidden, layers, heads, vocab) == 0:
        raise InvalidInput(
            f"config.json: hidden_size {hidden}, num_hidden_layers {layers}, "
            f"num_attention_heads {heads} and vocab_size {vocab} must all be positive"
        )
    kv_heads = _int(cfg, "num_key_value_heads", where, default=heads)
    head_dim = _int(cfg, "head_dim", where, default=hidden // heads)
    max_pos = _int(cfg, "max_position_embeddings", where, default=2048)
    model_type = str(cfg.get("model_type") or config.get("model_type") or "")
    gated = model_type not in _UNGATED_MLP_TYPES
    mlp_mats = 3 if gated else 2

    num_experts = _int(cfg, "num_local_experts", where, default=0) or _int(
        cfg, "num_experts", where, default=0
    ) or _int(cfg, "n_routed_experts", where, default=0)  # fmt: skip
    inter = _int(cfg, "intermediate_size", where, default=0)
    if inter == 0 and not num_experts:
        raise InvalidInput(f"config.json: missing key {where}'intermediate_size'")
    top_k = _int(cfg, "num_experts_per_tok", where, default=0) if num_experts else 0
    if num_experts and top_k == 0:
        raise InvalidInput(f"config.json: MoE model needs {where}'num_experts_per_tok'")
    moe_inter = _int(cfg, "moe_intermediate_size", where, default=inter) if num_experts else 0
    n_shared = _int(cfg, "n_shared_experts", where, default=0)
    shared_inter = _int(cfg, "shared_expert_intermediate_size", where, default=0) or _int(
        cfg, "moe_shared_expert_intermediate_size", where, default=0
    )
    if n_shared and not shared_inter:
        shared_inter = n_shared * moe_inter
    first_dense = _int(cfg, "first_k_dense_replace", where, default=0)
    mlp_only = set(cfg.get("mlp_only_layers") or [])
    step = _int(cfg, "decoder_sparse_step", where, default=1) or 1
    moe_layers = 0
    if num_experts:
        moe_layers = sum(
            1
            for i in range(layers)
            if i >= first_dense and i not in mlp_only and (i + 1) % step == 0
        )

    kv_lora = _int(cfg, "kv_lora_rank", where, default=0)
    rope_dim = _int(cfg, "qk_rope_head_dim", where, default=0)
    if kv_lora:
        q_lora = _int(cfg, "q_lora_rank", where, default=0)
        nope = _int(cfg, "qk_nope_head_dim", where, default=head_dim)
        v_dim = _int(cfg, "v_head_dim", where, default=head_dim)
        q_dim = heads * (nope + rope_dim)
        q_params = hidden * q_dim if not q_lora else hidden * q_lora + q_lora * q_dim + q_lora
        attn_per_layer = (
            q_params
            + hidden * (kv_lora + rope_dim)
            + kv_lora * heads * (nope + v_dim)
            + kv_lora
            + heads * v_dim * hidden
        )
    else:
        attn_per_layer = 2 * hidden * heads * head_dim + 2 * hidden * kv_heads * head_dim
        if cfg.get("attn_output_gate") or model_type == "qwen3_next":
            attn_per_layer += hidden * heads * head_dim  # q_proj also gives the output gate

    tied = bool(cfg.get("tie_word_embeddings", config.get("tie_word_embeddings", False)))
    embedding = vocab * hidden
    layer_types = _layer_types(cfg, layers)
    # Layers counted by what they hold: every layer has attention and an MLP (MoE from
    # first_k_dense_replace on), unless a Nemotron-H pattern says which layer is which.
    attention_params = layers * attn_per_layer
    dense_layers = layers - moe_layers
    if "mamba" in layer_types:
        moe_layers = layer_types.count("moe") if num_experts else 0
        dense_layers = layer_types.count("mlp")
        attention_params = layer_types.count("full_attention") * attn_per_layer
        attention_params += layer_types.count("mamba") * _mamba_mixer_params(cfg, hidden)
    elif "linear_attention" in layer_types:
        attention_params = layer_types.count("full_attention") * attn_per_layer
        attention_params += layer_types.count("linear_attention") * _gated_delta_params(cfg, hidden)
    active_experts = moe_layers * top_k * mlp_mats * hidden * moe_inter
    derived = ParamGroups(
        embedding=embedding,
        lm_head=0 if tied else embedding,
        attention=attention_params,
        dense_mlp=dense_layers * mlp_mats * hidden * inter,
        routed_experts=moe_layers * num_experts * mlp_mats * hidden * moe_inter,
        shared_experts=moe_layers * mlp_mats * hidden * shared_inter,
        router=moe_layers * hidden * num_experts,
        norms=(2 * layers + 1) * hidden,
        other=0,
        active_routed_experts=active_experts,
    )
    given_b = params_b if params_b is not None else config.get("total_params_b")
    params = derived
    if given_b is not None:
        stated_b = check_params_b(given_b, "params_b")
        params = _reconcile(derived, round(stated_b * 1e9), _has_encoder(config))

    sliding = cfg.get("sliding_window")
    if cfg.get("use_sliding_window") is False:
        sliding = None
    if sliding is None and "chunked_attention" in layer_types:
        sliding = cfg.get("attention_chunk_size")  # a chunk bounds what a token attends to
    quant, group = _quantization(config.get("quantization_config"))
    return ModelArch(
        name=name or str(config.get("_name_or_path") or model_type),
        model_type=model_type,
        hidden_size=hidden,
        intermediate_size=inter,
        num_layers=layers,
        num_attention_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        vocab_size=vocab,
        max_position_embeddings=max_pos,
        checkpoint_dtype=_dtype(cfg, config),
        tie_word_embeddings=tied,
        params=params,
        gated_mlp=gated,
        num_experts=num_experts,
        experts_per_token=top_k,
        moe_intermediate_size=moe_inter,
        num_shared_experts=n_shared or (1 if shared_inter else 0),
        shared_expert_intermediate_size=shared_inter,
        first_k_dense_replace=first_dense,
        num_moe_layers=moe_layers,
        kv_lora_rank=kv_lora,
        qk_rope_head_dim=rope_dim,
        sliding_window=int(sliding) if isinstance(sliding, int) and sliding > 0 else None,
        layer_types=layer_types,
        checkpoint_quantization=quant,
        quantization_group_size=group,
        quantized_experts_only=num_experts > 0 and _experts_only(config.get("quantization_config")),
        quantization_block_scaled=_block_scaled(config.get("quantization_config")),
        has_encoder=_has_encoder(config),
        tower=encoder_tower(config),
        mamba_state_elements=_mamba_state_elements(cfg) or _gated_delta_state(cfg)[0],
        mamba_conv_elements=_mamba_conv_elements(cfg) or _gated_delta_state(cfg)[1],
        mamba_conv_channels=_mamba_conv_channels(cfg) or _gated_delta_state(cfg)[2],
        ssm_state_dtype=_DTYPE_NAMES.get(str(cfg.get("mamba_ssm_dtype") or "").lower()),
        partial_rotary_factor=_fraction(cfg, "partial_rotary_factor", where),
        mtp_layers=_int(cfg, "num_nextn_predict_layers", where, default=0)
        or _int(cfg, "mtp_num_hidden_layers", where, default=0),
    )


def _has_encoder(config: dict[str, Any]) -> bool:
    return bool(config.get("vision_config") or config.get("audio_config"))


def _reconcile(derived: ParamGroups, total: int, multimodal: bool) -> ParamGroups:
    """Honour a stated total count. For a multimodal model the extra parameters are the
    vision tower; otherwise the gap (biases, extra heads, rounding) scales the per-layer
    weights, active experts included, so MoE active counts stay in proportion."""
    gap = total - derived.total
    if multimodal and gap >= 0:
        return ParamGroups(**{**derived.__dict__, "other": derived.other + gap})
    layer_params = (
        derived.attention + derived.dense_mlp + derived.routed_experts + derived.shared_experts
    )
    scale = max(0.0, 1 + gap / layer_params)
    return ParamGroups(
        **{
            **derived.__dict__,
            "attention": round(derived.attention * scale),
            "dense_mlp": round(derived.dense_mlp * scale),
            "routed_experts": round(derived.routed_experts * scale),
            "shared_experts": round(derived.shared_experts * scale),
            "active_routed_experts": round(derived.active_routed_experts * scale),
        }
    )


def with_checkpoint(
    arch: ModelArch, weights: CheckpointWeights, keep_params: bool = False
) -> ModelArch:
    """The same model with its weights counted from the safetensors headers.

    When nothing is packed below 16 bit the headers also give the exact parameter count: the
    encoder's elements become the vision parameters and the rest spreads over the layers as a
    stated total does. `keep_params` keeps a count the user stated; the bytes still come from
    the headers.
    """
    if weights.num_layers != arch.num_layers:
        raise InvalidInput(
            f"safetensors: summarized for {weights.num_layers} decoder layers, the config has "
            f"{arch.num_layers}"
        )
    params = arch.params
    encoder = weights.encoder[0]
    if not weights.packed and not keep_params:
        text_only = replace(params, other=0)
        params = replace(
            _reconcile(text_only, weights.float_elements - encoder, multimodal=False), other=encoder
        )
    return replace(
        arch, params=params, checkpoint=weights, has_encoder=arch.has_encoder or encoder > 0
    )
