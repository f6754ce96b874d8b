"""Build one replica's engine from a model config and a GPU: shape, step model, KV cache.

INTERIM: until sizing.model / sizing.memory land, the shape and the KV budget are derived
here from config.json fields directly (dense models only).
"""

from __future__ import annotations

from dataclasses import dataclass

from sizing.hardware import GPU, get_gpu
from sizing.performance import (
    DEFAULT_EFFICIENCY,
    Efficiency,
    ReplicaShape,
    StepTimeModel,
    build_step_model,
)
from sizing.simulator import Engine, EngineLimits
from sizing.units import GIB

# Meta-Llama-3-8B's config.json fields that matter for timing and memory.
LLAMA_3_8B_CONFIG: dict[str, object] = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
    "max_position_embeddings": 8192,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "rope_theta": 500000.0,
    "rms_norm_eps": 1e-05,
}


@dataclass(frozen=True)
class ReplicaSetup:
    gpu: GPU
    engine: Engine
    step_model: StepTimeModel
    limits: EngineLimits
    max_model_len: int
    fb_used_gib_per_gpu: float


def build_replica(
    config: dict[str, object] | None,
    gpu_name: str,
    tp: int,
    max_model_len: int | None,
    max_num_seqs: int,
    max_num_batched_tokens: int,
    gpu_memory_utilization: float,
    quantization: str | None,
    kv_cache_dtype: str,
    enforce_eager: bool,
    efficiency: Efficiency = DEFAULT_EFFICIENCY,
) -> ReplicaSetup:
    cfg = config or LLAMA_3_8B_CONFIG
    gpu = get_gpu(gpu_name)
    hidden = int(cfg["hidden_size"])
    layers = int(cfg["num_hidden_layers"])
    heads = int(cfg["num_attention_heads"])
    kv_heads = int(cfg.get("num_key_value_heads", heads))
    head_dim = int(cfg.get("head_dim", hidden // heads))
    inter = int(cfg["intermediate_size"])
    vocab = int(cfg["vocab_size"])
    attention = hidden * heads * head_dim * 2 + hidden * kv_heads * head_dim * 2
    per_layer = attention + 3 * hidden * inter
    embed = vocab * hidden * (1 if cfg.get("tie_word_embeddings") else 2)
    params = layers * per_layer + embed
    weight_bytes = 2.0 if quantization is None else 1.0
    kv_bytes = 1.0 if kv_cache_dtype.startswith("fp8") else 2.0
    kv_per_token_per_gpu = 2 * layers * kv_heads * head_dim * kv_bytes / tp
    weights_per_gpu = params * weight_bytes / tp
    shape = ReplicaShape(
        num_layers=layers,
        hidden_size=hidden,
        attention_width=heads * head_dim,
        active_params=float(layers * per_layer + vocab * hidden),
        dense_weight_bytes_per_gpu=weights_per_gpu,
        expert_weight_bytes_per_gpu=0.0,
        num_experts=0,
        experts_per_token=0,
        kv_bytes_per_token_per_gpu=kv_per_token_per_gpu,
        tp=tp,
        cuda_graphs=not enforce_eager,
        math_dtype="fp8" if quantization == "fp8" and gpu.supports("fp8") else "bf16",
    )
    step_model = build_step_model(shape, gpu, efficiency)
    max_len = max_model_len or int(cfg.get("max_position_embeddings", 8192))
    budget_gib = gpu.memory_gib_reported * gpu_memory_utilization
    overhead_gib = 2.0
    kv_gib = budget_gib - weights_per_gpu / GIB - overhead_gib
    kv_tokens = int(kv_gib * GIB / kv_per_token_per_gpu)
    limits = EngineLimits(max_num_seqs, max(max_num_batched_tokens, max_num_seqs), kv_tokens)
    engine = Engine(step_model, limits, track_tokens=True)
    return ReplicaSetup(gpu, engine, step_model, limits, max_len, budget_gib)
