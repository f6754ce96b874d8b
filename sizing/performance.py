"""How long one forward step of a vLLM replica takes, from first principles (guide ch. 3, 5, 6).

A step processes some decode tokens (one per running sequence, each attending to its whole
context) and some prefill tokens (chunks of prompts). Its time is the roofline of the step:

* compute: 2 FLOPs per active parameter per token, plus attention FLOPs that grow with the
  context each token attends to, at an achievable fraction of the GPU's dense peak for the math
  dtype the kernels really run (FP8 W8A8 doubles it where tensor cores support FP8; 4-bit
  weight-only formats still multiply in 16-bit);
* memory: every step streams this GPU's weights once, plus the KV cache its tokens attend to,
  at an achievable fraction of HBM bandwidth. An MoE step touches only the experts its tokens
  are routed to, so the weights it reads grow with the batch until every expert is touched;

the step takes the larger of the two (the ridge point decides which), plus what does not
overlap with either: two tensor-parallel all-reduces per layer of the activations, pipeline
hand-offs between stages, and a fixed per-step scheduler/launch cost that CUDA graphs shrink.

Every efficiency is a named field of `Efficiency`; the formulas hold no other constants.
Pipeline stages run one after the other for a step: latency is right, while the throughput
vLLM gains at high load by keeping several micro-batches in flight is not modelled.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TypeVar

import numpy as np

from sizing.errors import InvalidInput
from sizing.hardware import GPU
from sizing.model import ModelArch
from sizing.quantization import dtype_bytes, effective_format, kv_dtype_bytes, weights_bytes

# Activations travel between GPUs in 16-bit whatever the weight format.
ACTIVATION_BYTES = 2
# FLOPs per (query token, context token) pair per unit of attention width: QK^T and PV, each a
# multiply-add (2 FLOPs).
ATTENTION_FLOPS_PER_PAIR_PER_WIDTH = 4
FLOPS_PER_PARAM_PER_TOKEN = 2
ALLREDUCES_PER_LAYER = 2  # after attention and after the MLP (Megatron-style TP)
# A step's work: one step (float) or a run of decode steps (array), through the same formula.
Work = TypeVar("Work", float, np.ndarray)

# The math dtype vLLM's kernels run for each weight format, if the GPU has those tensor cores.
_NATIVE_MATH = {"fp8": "fp8", "int8": "int8", "w8a8": "int8", "mxfp4": "fp4", "nvfp4": "fp4"}


@dataclass(frozen=True)
class Efficiency:
    """Achievable fractions of datasheet peaks and fixed costs; defaults are H100-class vLLM."""

    # Share of dense peak FLOPS that large GEMMs reach (prefill MFU in the 50-60 % range).
    compute_fraction: float = 0.55
    # Share of HBM bandwidth that decode GEMVs and paged attention stream at.
    hbm_fraction: float = 0.85
    # Share of the per-GPU link bandwidth an all-reduce reaches (NCCL bus bandwidth ~360 of
    # NVLink's 450 GB/s per direction on H100).
    interconnect_fraction: float = 0.8
    # Latency of one all-reduce call (vLLM's custom all-reduce on NVLink is a few microseconds).
    allreduce_latency_s: float = 5e-6
    # Latency of one pipeline-stage hand-off (send/recv of the activations).
    pipeline_send_latency_s: float = 30e-6
    # Per-step scheduler, input preparation and kernel-launch cost with CUDA graphs captured.
    step_overhead_s: float = 1.0e-3
    # The same without CUDA graphs (--enforce-eager): every kernel is launched from Python.
    eager_step_overhead_s: float = 4.0e-3
    # Per running sequence per step: sampling, detokenising and bookkeeping on the CPU.
    per_sequence_overhead_s: float = 10e-6

    def __post_init__(self) -> None:
        for name in ("compute_fraction", "hbm_fraction", "interconnect_fraction"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise InvalidInput(f"efficiency.{name} must be in (0, 1], got {value}")
        for name in (
            "allreduce_latency_s",
            "pipeline_send_latency_s",
            "step_overhead_s",
            "eager_step_overhead_s",
            "per_sequence_overhead_s",
        ):
            if getattr(self, name) < 0:
                raise InvalidInput(f"efficiency.{name} must be >= 0, got {getattr(self, name)}")


DEFAULT_EFFICIENCY = Efficiency()


@dataclass(frozen=True)
class ReplicaShape:
    """What the step-time model needs to know about a model sharded over one replica's GPUs."""

    num_layers: int
    hidden_size: int
    attention_width: int  # num_attention_heads × head_dim
    active_params: float  # parameters one token multiplies through (all of them when dense)
    dense_weight_bytes_per_gpu: float  # read every step
    expert_weight_bytes_per_gpu: float  # MoE experts: read only when a token is routed there
    num_experts: int  # 0 for a dense model
    experts_per_token: int
    kv_bytes_per_token_per_gpu: float
    tp: int = 1
    pp: int = 1
    math_dtype: str = "bf16"
    cuda_graphs: bool = True

    def __post_init__(self) -> None:
        for name in ("num_layers", "hidden_size", "attention_width", "tp", "pp"):
            if getattr(self, name) < 1:
                raise InvalidInput(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.active_params <= 0 or self.kv_bytes_per_token_per_gpu <= 0:
            raise InvalidInput(
                f"active_params ({self.active_params}) and kv_bytes_per_token_per_gpu "
                f"({self.kv_bytes_per_token_per_gpu}) must be > 0"
            )
        if self.num_experts and not 0 < self.experts_per_token <= self.num_experts:
            raise InvalidInput(
                f"experts_per_token must be in [1, num_experts={self.num_experts}], "
                f"got {self.experts_per_token}"
            )


# Our dtype names for the catalog's tensor-core keys.
_CATALOG_DTYPE = {"bfloat16": "bf16", "float16": "fp16", "float32": "bf16"}


def math_dtype(weight_format: str, gpu: GPU, activation_dtype: str = "bf16") -> str:
    """The dtype the tensor cores multiply in: native FP8/INT8/FP4 only where the GPU has it."""
    native = _NATIVE_MATH.get(weight_format)
    if native is not None and gpu.supports(native):
        return native
    if gpu.supports(activation_dtype):
        return activation_dtype
    return "fp16" if gpu.supports("fp16") else "fp32"


def replica_shape(
    arch: ModelArch,
    gpu: GPU,
    tp: int,
    pp: int = 1,
    quantization: str = "none",
    dtype: str = "auto",
    kv_cache_dtype: str = "auto",
    cuda_graphs: bool = True,
) -> ReplicaShape:
    """What each step of this model, sharded TP x PP in this format, streams and computes.

    A step reads every layer's weights and lm_head, but only looks rows up in the embedding
    table and never touches a vision tower during text decode, so those two are left out.
    """
    wide = dtype_bytes(dtype, arch)
    params = arch.params
    total = weights_bytes(arch, quantization, dtype)
    without_experts = replace(arch, params=replace(params, routed_experts=0))
    expert_bytes = total - weights_bytes(without_experts, quantization, dtype)
    idle = params.embedding + arch.vision_params  # looked up / unused in text decode
    streamed_dense = total - expert_bytes - idle * wide
    gpus = tp * pp
    fmt = effective_format(arch, quantization)
    activation = _CATALOG_DTYPE[arch.checkpoint_dtype if dtype == "auto" else dtype]
    kv_bytes = kv_dtype_bytes(kv_cache_dtype, dtype, arch)
    kv_per_layer = arch.kv_bytes_per_token_per_layer(kv_bytes, tp)
    return ReplicaShape(
        num_layers=arch.num_layers,
        hidden_size=arch.hidden_size,
        attention_width=arch.num_attention_heads * arch.head_dim,
        active_params=params.active - idle,
        dense_weight_bytes_per_gpu=streamed_dense / gpus,
        expert_weight_bytes_per_gpu=expert_bytes / gpus,
        num_experts=arch.num_experts,
        experts_per_token=arch.experts_per_token,
        kv_bytes_per_token_per_gpu=kv_per_layer * arch.num_layers / pp,
        tp=tp,
        pp=pp,
        math_dtype=math_dtype(fmt.name if fmt else "none", gpu, activation),
        cuda_graphs=cuda_graphs,
    )


@dataclass(frozen=True)
class StepTimeModel:
    """Per-step time coefficients for one replica; `step_time_s` is pure scalar arithmetic."""

    compute_s_per_token: float
    compute_s_per_attention_pair: float
    dense_weights_s: float
    all_experts_s: float
    expert_miss_fraction: float  # 1 - experts_per_token / num_experts (1 for dense)
    memory_s_per_kv_token: float
    comm_s_per_token: float
    comm_fixed_s: float
    stages: int
    handoff_s_per_token: float
    handoff_fixed_s: float
    fixed_overhead_s: float
    per_sequence_s: float
    ridge_point_flops_per_byte: float

    def step_time_s(
        self,
        sequences: int,
        tokens: int,
        kv_tokens_read: float,
        attention_pairs: float,
    ) -> float:
        """Seconds for one step over `tokens` tokens of `sequences` sequences.

        `kv_tokens_read` is the KV-cache entries the step's attention reads (each decode reads
        its whole context; a prefill chunk reads what precedes it and itself);
        `attention_pairs` is the sum over the step's tokens of the context each one attends to.
        """
        if tokens <= 0:
            return 0.0
        return self._time(sequences, tokens, kv_tokens_read, attention_pairs, max)

    def step_times_s(
        self,
        sequences: np.ndarray,
        tokens: np.ndarray,
        kv_tokens_read: np.ndarray,
        attention_pairs: np.ndarray,
    ) -> np.ndarray:
        """`step_time_s` of many steps at once, element by element (0 where no tokens)."""
        times = self._time(sequences, tokens, kv_tokens_read, attention_pairs, np.maximum)
        return np.where(tokens > 0, times, 0.0)

    def decode_run_s(self, batch: int, kv_tokens_read: np.ndarray) -> np.ndarray:
        """Durations of consecutive decode-only steps of one batch (step j reads
        `kv_tokens_read[j]` KV entries): the offline simulator's fast path."""
        return self._time(batch, batch, kv_tokens_read, kv_tokens_read, np.maximum)

    def _time(
        self,
        sequences: Work | int,
        tokens: Work | int,
        kv_tokens_read: Work,
        attention_pairs: Work,
        roofline: Callable[[Work, Work], Work],
    ) -> Work:
        """The one formula, for a scalar step (`roofline=max`) or an array of steps."""
        compute = (
            self.compute_s_per_token * tokens + self.compute_s_per_attention_pair * attention_pairs
        )
        weights: Work | float = self.dense_weights_s
        if self.all_experts_s:
            weights += self.all_experts_s * (1.0 - self.expert_miss_fraction**tokens)
        memory = weights + self.memory_s_per_kv_token * kv_tokens_read
        stage = roofline(compute, memory) + self.comm_fixed_s + self.comm_s_per_token * tokens
        handoffs = (self.stages - 1) * (self.handoff_fixed_s + self.handoff_s_per_token * tokens)
        return (
            self.stages * stage + handoffs + self.fixed_overhead_s + self.per_sequence_s * sequences
        )

    def decode_step_s(self, batch: int, context_tokens: float) -> float:
        """One decode step of `batch` sequences that each hold `context_tokens` of context."""
        kv = batch * context_tokens
        return self.step_time_s(batch, batch, kv, kv)

    def decode_tok_per_s(self, batch: int, context_tokens: float) -> float:
        return batch / self.decode_step_s(batch, context_tokens)

    def prefill_s(self, prompt_tokens: int) -> float:
        """One whole prompt in one step (no chunking, empty batch otherwise)."""
        pairs = prompt_tokens * (prompt_tokens + 1) / 2
        return self.step_time_s(1, prompt_tokens, prompt_tokens, pairs)


def build_step_model(
    shape: ReplicaShape, gpu: GPU, efficiency: Efficiency = DEFAULT_EFFICIENCY
) -> StepTimeModel:
    """Turn a replica's shape and GPU into per-step coefficients (all per GPU, per stage)."""
    gpus = shape.tp * shape.pp
    flops_per_s = gpu.peak_tflops(shape.math_dtype) * 1e12 * efficiency.compute_fraction
    hbm_bytes_per_s = gpu.hbm_bandwidth_gb_per_s * 1e9 * efficiency.hbm_fraction
    link_bytes_per_s = gpu.interconnect.bandwidth_gb_per_s * 1e9 * efficiency.interconnect_fraction
    layers_per_stage = math.ceil(shape.num_layers / shape.pp)
    activation_bytes_per_token = shape.hidden_size * ACTIVATION_BYTES
    if shape.tp > 1:
        # Ring all-reduce: each GPU sends and receives 2 (tp - 1) / tp of the message.
        ring_factor = 2 * (shape.tp - 1) / shape.tp
        calls = ALLREDUCES_PER_LAYER * layers_per_stage
        comm_s_per_token = calls * ring_factor * activation_bytes_per_token / link_bytes_per_s
        comm_fixed_s = calls * efficiency.allreduce_latency_s
    else:
        comm_s_per_token = comm_fixed_s = 0.0
    miss = 1.0 - shape.experts_per_token / shape.num_experts if shape.num_experts else 1.0
    overhead = efficiency.step_overhead_s if shape.cuda_graphs else efficiency.eager_step_overhead_s
    return StepTimeModel(
        compute_s_per_token=FLOPS_PER_PARAM_PER_TOKEN * shape.active_params / gpus / flops_per_s,
        compute_s_per_attention_pair=ATTENTION_FLOPS_PER_PAIR_PER_WIDTH
        * shape.attention_width
        / shape.tp
        * layers_per_stage
        / flops_per_s,
        dense_weights_s=shape.dense_weight_bytes_per_gpu / hbm_bytes_per_s,
        all_experts_s=shape.expert_weight_bytes_per_gpu / hbm_bytes_per_s,
        expert_miss_fraction=miss,
        memory_s_per_kv_token=shape.kv_bytes_per_token_per_gpu / hbm_bytes_per_s,
        comm_s_per_token=comm_s_per_token,
        comm_fixed_s=comm_fixed_s,
        stages=shape.pp,
        handoff_s_per_token=activation_bytes_per_token / link_bytes_per_s,
        handoff_fixed_s=efficiency.pipeline_send_latency_s,
        fixed_overhead_s=overhead,
        per_sequence_s=efficiency.per_sequence_overhead_s,
        ridge_point_flops_per_byte=flops_per_s / hbm_bytes_per_s,
    )
