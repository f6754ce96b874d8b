"""How long one forward step of a vLLM replica takes, from first principles (guide ch. 3, 5, 6).

A step processes some decode tokens (one per running sequence, each attending to its whole
context) and some prefill tokens (chunks of prompts). Per GPU and pipeline stage:

* compute: 2 FLOPs per active parameter per token plus attention FLOPs that grow with the
  context, at an achievable fraction of the dense peak of the math dtype the kernels really
  run (FP8 W8A8 where tensor cores have FP8, FP4 only on Blackwell; weight-only formats multiply
  in 16 bit). GEMM efficiency falls as the per-GPU shard of a layer narrows under TP; routed
  experts run as grouped GEMMs over many small matrices, at their own (lower) fraction, and
  expert-parallel MoE waits for the rank the router sends the most tokens to;
* memory: the dense weights once per step; MoE experts only as tokens reach them, through
  grouped-GEMM kernels that stream less well than dense GEMVs; the KV cache every token
  attends to (a sliding-window layer reads at most its window) at paged attention's bandwidth;
  the recurrent state of state-space layers, read and written once per sequence;
* the two overlap imperfectly: the step takes the larger plus a share of the smaller;
* plus what overlaps with neither: an all-reduce after every mixer block under TP (a latency
  per call, higher over PCIe, and the message over the link), pipeline hand-offs, a per-step
  scheduler/launch cost that CUDA graphs shrink up to their largest captured batch (beyond it,
  or with --enforce-eager, every layer's kernels are launched one by one), a floor per layer
  per mixer block (each kernel takes microseconds however small the batch; an MoE layer runs
  more of them),
  and a per-sequence cost for sampling, detokenising and bookkeeping on the CPU.

Every efficiency is a named field of `Efficiency`; the defaults are fitted on measured vLLM
benchmarks (docs/performance-model.md) and the formulas hold no other constants. Pipeline
stages run one after the other for a step: latency is right, while the throughput vLLM gains
at high load by keeping several micro-batches in flight is not modelled.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any, TypeVar

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
# Megatron-style TP all-reduces after every mixer block: after attention and after the MLP of
# a transformer layer, after each Mamba, attention, MLP or MoE block of a hybrid pattern.
ALLREDUCES_PER_BLOCK = 1
# A step's work: one step (float) or a run of decode steps (array), through the same formula.
Work = TypeVar("Work", float, np.ndarray)

# The math dtype vLLM's kernels run for each weight format, if the GPU has those tensor cores.
_NATIVE_MATH = {"fp8": "fp8", "int8": "int8", "w8a8": "int8", "mxfp4": "fp4", "nvfp4": "fp4"}


# Fractions in (0, 1]; every other Efficiency field is a non-negative time or count.
_FRACTIONS = (
    "compute_fraction",
    "expert_compute_fraction",
    "hbm_fraction",
    "expert_hbm_fraction",
    "attention_hbm_fraction",
    "blackwell_attention_hbm_fraction",
    "interconnect_fraction",
    "roofline_overlap",
)


@dataclass(frozen=True)
class Efficiency:
    """Achievable fractions of datasheet peaks and fixed costs of vLLM's engine."""

    # Share of dense peak FLOPS that large, wide GEMMs reach (prefill MFU).
    compute_fraction: float = 0.57
    # The same for routed experts' grouped GEMMs: many small per-expert matrices, each fed only
    # the tokens routed to it, keep far fewer tensor cores busy than one dense GEMM.
    expert_compute_fraction: float = 0.10
    # Tokens per expert at which a grouped GEMM's efficiency is half its well-fed value: each
    # expert a step touches costs about this many tokens' compute however few reach it
    # (kernel tiles padded, weights multiplied for a handful of rows), so MoE prefill runs
    # near expert_compute_fraction while small batches pay per expert touched.
    expert_gemm_half_tokens: float = 3.3
    # Per-GPU output width (columns of a layer's shard) at which GEMM efficiency is halved:
    # narrow shards under high TP keep fewer tensor-core tiles busy.
    gemm_half_width: float = 256.0
    # Share of HBM bandwidth dense weight GEMVs stream at.
    hbm_fraction: float = 0.99
    # The same for MoE expert weights (grouped GEMMs over few tokens per expert).
    expert_hbm_fraction: float = 0.82
    # The same for paged-attention KV reads and state-space state ...
    attention_hbm_fraction: float = 0.6
    # ... and on Blackwell, whose attention kernels in the measured vLLM releases reach a
    # smaller share of its higher bandwidth (decode at large batch is no faster than Hopper's).
    blackwell_attention_hbm_fraction: float = 0.25
    # Block-scaled FP8 (2-D scales) expert kernels: share of the plain FP8 kernel's speed.
    block_fp8_expert_speed: float = 0.62
    # Expert parallel: relative excess of the busiest rank's routed tokens, at one token per
    # rank (it shrinks as the square root of the tokens, as for random routing).
    routing_skew: float = 1.0
    # Share of the smaller of compute and memory time that does not overlap with the larger.
    roofline_overlap: float = 0.2
    # Share of the per-GPU link bandwidth an all-reduce reaches.
    interconnect_fraction: float = 0.8
    # Latency of one all-reduce call over NVLink/Infinity Fabric (custom all-reduce): a fixed
    # part, and a part per peer GPU (each rank exchanges with every other one) ...
    allreduce_latency_s: float = 5.2e-6
    allreduce_peer_latency_s: float = 9.6e-6
    # ... and over PCIe (NCCL through the host bridge: tens of microseconds).
    pcie_allreduce_latency_s: float = 30e-6
    # Latency of one pipeline-stage hand-off (send/recv of the activations).
    pipeline_send_latency_s: float = 30e-6
    # Per-step scheduler, input preparation and graph-replay cost with CUDA graphs.
    step_overhead_s: float = 2.8e-3
    # Without a captured graph: kernel launches from Python, per layer of the stage.
    eager_launch_s_per_layer: float = 60e-6
    # Largest batch (tokens) vLLM captures CUDA graphs for; larger steps run eagerly.
    cuda_graph_max_tokens: int = 512
    # Per block (attention, MLP, MoE or Mamba mixer; a transformer layer has two) per step:
    # its kernels each take microseconds however small the batch, even from a CUDA graph.
    block_latency_s: float = 13e-6
    # Per MoE layer on top: routing, token sort, grouped GEMMs over every local expert, combine.
    moe_layer_latency_s: float = 1.3e-6
    # Per running sequence per step: sampling, detokenising and bookkeeping on the CPU.
    per_sequence_overhead_s: float = 10e-6
    # The API server in front of the engine (sizing.frontend), as a client-side benchmark
    # sees it: a latency per request that overlaps everything else, and tokenising prompts
    # one after another.
    request_latency_s: float = 0.3
    tokenize_s_per_token: float = 5e-6

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _FRACTIONS or f.name == "block_fp8_expert_speed":
                if not 0 < value <= 1:
                    raise InvalidInput(f"efficiency.{f.name} must be in (0, 1], got {value}")
            elif value < 0:
                raise InvalidInput(f"efficiency.{f.name} must be >= 0, got {value}")


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
    kv_bytes_per_token_per_gpu: float  # over the layers that attend over the whole context
    tp: int = 1
    pp: int = 1
    math_dtype: str = "bf16"
    cuda_graphs: bool = True
    active_expert_params: float = 0.0  # of active_params: the routed experts' share
    expert_parallel: bool = False  # experts spread whole over the TP ranks, not sliced
    block_scaled_experts: bool = False  # block-FP8 expert kernels
    gemm_width_per_gpu: float = 0.0  # the narrowest per-GPU GEMM shard (0: not narrowed)
    sliding_kv_bytes_per_token_per_gpu: float = 0.0  # sliding-window layers' KV per token
    sliding_window: int = 0
    state_bytes_per_sequence_per_gpu: float = 0.0  # state-space layers' recurrent state
    num_moe_layers: int = 0  # layers with routed experts
    num_blocks: int = 0  # mixer blocks per token (a transformer layer has two)
    # Layers that attend (0: every layer), and how many of them over a sliding window only.
    num_attention_layers: int = 0
    num_sliding_layers: int = 0

    def __post_init__(self) -> None:
        for name in ("num_layers", "hidden_size", "attention_width", "tp", "pp"):
            if getattr(self, name) < 1:
                raise InvalidInput(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.active_params <= 0 or self.kv_bytes_per_token_per_gpu < 0:
            raise InvalidInput(
                f"active_params ({self.active_params}) must be > 0 and "
                f"kv_bytes_per_token_per_gpu ({self.kv_bytes_per_token_per_gpu}) >= 0"
            )
        if not 0 <= self.num_sliding_layers <= (self.num_attention_layers or self.num_layers):
            raise InvalidInput(
                f"num_sliding_layers ({self.num_sliding_layers}) must be within the attention "
                f"layers ({self.num_attention_layers or self.num_layers})"
            )
        if self.kv_bytes_per_token_per_gpu + self.sliding_kv_bytes_per_token_per_gpu <= 0:
            raise InvalidInput("a model needs some KV cache per token: no attention layer")
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
    expert_parallel: bool = False,
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
    sliding = arch.num_sliding_layers if arch.sliding_window else 0
    full = arch.num_attention_layers - sliding
    # The GEMMs holding most FLOPs: expert slices (moe_intermediate / tp; whole under EP), or
    # the dense MLP's column shards.
    if arch.is_moe:
        gemm_width = arch.moe_intermediate_size / (1 if expert_parallel else tp)
    else:
        gemm_width = arch.intermediate_size / tp
    state = arch.num_state_layers * arch.state_bytes_per_sequence(wide, tp)
    return ReplicaShape(
        num_layers=arch.num_layers,
        hidden_size=arch.hidden_size,
        attention_width=arch.num_attention_heads * arch.head_dim,
        active_params=params.active - idle,
        dense_weight_bytes_per_gpu=streamed_dense / gpus,
        expert_weight_bytes_per_gpu=expert_bytes / gpus,
        num_experts=arch.num_experts,
        experts_per_token=arch.experts_per_token,
        kv_bytes_per_token_per_gpu=kv_per_layer * full / pp,
        tp=tp,
        pp=pp,
        math_dtype=math_dtype(fmt.name if fmt else "none", gpu, activation),
        cuda_graphs=cuda_graphs,
        active_expert_params=float(params.active_routed_experts),
        expert_parallel=expert_parallel and arch.is_moe and tp > 1,
        block_scaled_experts=arch.quantization_block_scaled and fmt is not None,
        gemm_width_per_gpu=gemm_width,
        sliding_kv_bytes_per_token_per_gpu=kv_per_layer * sliding / pp,
        sliding_window=arch.sliding_window or 0,
        state_bytes_per_sequence_per_gpu=2 * state / pp,  # read and written back
        num_moe_layers=arch.num_moe_layers if arch.is_moe else 0,
        num_blocks=arch.num_blocks,
        num_attention_layers=arch.num_attention_layers,
        num_sliding_layers=sliding,
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
    # Expert parallel: the busiest rank's excess expert compute is this times
    # expert_compute_s_per_token / sqrt(tokens).
    expert_compute_s_per_token: float = 0.0
    routing_skew: float = 0.0
    # Compute of all experts' underfilled tiles, paid in the share of experts a step touches.
    expert_tile_s: float = 0.0

    sliding_s_per_kv_token: float = 0.0
    sliding_window: int = 0
    # Sliding-window layers' attention FLOPs: each token attends to at most the window.
    sliding_compute_s_per_pair: float = 0.0
    state_s_per_sequence: float = 0.0
    roofline_overlap: float = 0.0
    eager_overhead_s: float = 0.0  # extra per step beyond the largest captured graph
    graph_max_tokens: int = 1 << 30

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
        return float(self._time(sequences, tokens, kv_tokens_read, attention_pairs, max, min))

    def step_times_s(
        self,
        sequences: np.ndarray,
        tokens: np.ndarray,
        kv_tokens_read: np.ndarray,
        attention_pairs: np.ndarray,
    ) -> np.ndarray:
        """`step_time_s` of many steps at once, element by element (0 where no tokens)."""
        times = self._time(
            sequences, tokens, kv_tokens_read, attention_pairs, np.maximum, np.minimum
        )
        return np.where(tokens > 0, times, 0.0)

    def decode_run_s(self, batch: int, kv_tokens_read: np.ndarray) -> np.ndarray:
        """Durations of consecutive decode-only steps of one batch (step j reads
        `kv_tokens_read[j]` KV entries): the offline simulator's fast path."""
        batches = np.full(len(kv_tokens_read), batch)
        return self._time(batches, batches, kv_tokens_read, kv_tokens_read, np.maximum, np.minimum)

    def _time(
        self,
        sequences: Work | int,
        tokens: Work | int,
        kv_tokens_read: Work,
        attention_pairs: Work,
        larger: Callable[..., Any],
        smaller: Callable[..., Any],
    ) -> Work:
        """The one formula, for a scalar step (max/min) or an array of steps (numpy's)."""
        compute = (
            self.compute_s_per_token * tokens + self.compute_s_per_attention_pair * attention_pairs
        )
        if self.sliding_compute_s_per_pair:
            windowed = smaller(attention_pairs, tokens * self.sliding_window)
            compute = compute + self.sliding_compute_s_per_pair * windowed
        if self.routing_skew:
            busiest = self.routing_skew * larger(tokens, 1) ** 0.5  # excess over the mean
            compute = compute + self.expert_compute_s_per_token * busiest
        weights: Work | float = self.dense_weights_s
        if self.all_experts_s:
            touched = 1.0 - self.expert_miss_fraction**tokens
            weights = weights + self.all_experts_s * touched
            compute = compute + self.expert_tile_s * touched
        memory = weights + self.memory_s_per_kv_token * kv_tokens_read
        if self.sliding_s_per_kv_token:
            window = smaller(kv_tokens_read, sequences * self.sliding_window)
            memory = memory + self.sliding_s_per_kv_token * window
        memory = memory + self.state_s_per_sequence * sequences
        gpu = larger(compute, memory) + self.roofline_overlap * smaller(compute, memory)
        stage = gpu + self.comm_fixed_s + self.comm_s_per_token * tokens
        handoffs = (self.stages - 1) * (self.handoff_fixed_s + self.handoff_s_per_token * tokens)
        overhead = self.fixed_overhead_s + self.eager_overhead_s * (tokens > self.graph_max_tokens)
        return self.stages * stage + handoffs + overhead + self.per_sequence_s * sequences

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


def _gemm_narrowing(shape: ReplicaShape, efficiency: Efficiency) -> float:
    """The share of a wide GEMM's efficiency that narrow per-GPU shards keep (1: not narrowed)."""
    width = shape.gemm_width_per_gpu
    if width <= 0:
        return 1.0
    return width / (width + efficiency.gemm_half_width)


def build_step_model(
    shape: ReplicaShape, gpu: GPU, efficiency: Efficiency = DEFAULT_EFFICIENCY
) -> StepTimeModel:
    """Turn a replica's shape and GPU into per-step coefficients (all per GPU, per stage)."""
    gpus = shape.tp * shape.pp
    peak_flops_per_s = gpu.peak_tflops(shape.math_dtype) * 1e12
    narrowing = _gemm_narrowing(shape, efficiency)
    flops_per_s = peak_flops_per_s * efficiency.compute_fraction * narrowing
    expert_flops_per_s = peak_flops_per_s * efficiency.expert_compute_fraction * narrowing
    attention_flops_per_s = peak_flops_per_s * efficiency.compute_fraction
    hbm = gpu.hbm_bandwidth_gb_per_s * 1e9
    hbm_bytes_per_s = hbm * efficiency.hbm_fraction
    block_speed = efficiency.block_fp8_expert_speed if shape.block_scaled_experts else 1.0
    expert_bytes_per_s = hbm * efficiency.expert_hbm_fraction * block_speed
    attention_bytes_per_s = hbm * (
        efficiency.blackwell_attention_hbm_fraction
        if gpu.architecture == "blackwell"
        else efficiency.attention_hbm_fraction
    )
    link_bytes_per_s = gpu.interconnect.bandwidth_gb_per_s * 1e9 * efficiency.interconnect_fraction
    layers_per_stage = math.ceil(shape.num_layers / shape.pp)
    activation_bytes_per_token = shape.hidden_size * ACTIVATION_BYTES
    if shape.tp > 1:
        # Ring all-reduce: each GPU sends and receives 2 (tp - 1) / tp of the message.
        ring_factor = 2 * (shape.tp - 1) / shape.tp
        blocks = shape.num_blocks or 2 * shape.num_layers
        calls = ALLREDUCES_PER_BLOCK * math.ceil(blocks / shape.pp)
        comm_s_per_token = calls * ring_factor * activation_bytes_per_token / link_bytes_per_s
        latency = (
            efficiency.allreduce_latency_s + efficiency.allreduce_peer_latency_s * (shape.tp - 1)
            if gpu.interconnect.is_nvlink_class
            else efficiency.pcie_allreduce_latency_s
        )
        comm_fixed_s = calls * latency
    else:
        comm_s_per_token = comm_fixed_s = 0.0
    miss = 1.0 - shape.experts_per_token / shape.num_experts if shape.num_experts else 1.0
    expert_compute = (
        FLOPS_PER_PARAM_PER_TOKEN * shape.active_expert_params / gpus / expert_flops_per_s
    )
    expert_compute /= block_speed
    dense_compute = (
        FLOPS_PER_PARAM_PER_TOKEN * (shape.active_params - shape.active_expert_params) / gpus
    ) / flops_per_s
    # Under EP the busiest of tp ranks gets ~sqrt(tp / (tokens x k)) more than its share.
    skew = (
        efficiency.routing_skew * math.sqrt(shape.tp / shape.experts_per_token)
        if shape.expert_parallel
        else 0.0
    )
    eager = efficiency.eager_launch_s_per_layer * layers_per_stage * shape.pp
    kernel_floors = (
        efficiency.block_latency_s * (shape.num_blocks or 2 * shape.num_layers)
        + efficiency.moe_layer_latency_s * shape.num_moe_layers
    )
    # Attention FLOPs per (token, context token) pair per attending layer of a stage.
    pair_s_per_layer = (
        ATTENTION_FLOPS_PER_PAIR_PER_WIDTH
        * shape.attention_width
        / shape.tp
        / attention_flops_per_s
    )
    attending = (shape.num_attention_layers or shape.num_layers) / shape.pp
    sliding = shape.num_sliding_layers / shape.pp if shape.sliding_window else 0.0
    return StepTimeModel(
        compute_s_per_token=dense_compute + expert_compute,
        compute_s_per_attention_pair=pair_s_per_layer * (attending - sliding),
        sliding_compute_s_per_pair=pair_s_per_layer * sliding,
        dense_weights_s=shape.dense_weight_bytes_per_gpu / hbm_bytes_per_s,
        all_experts_s=shape.expert_weight_bytes_per_gpu / expert_bytes_per_s,
        expert_miss_fraction=miss,
        memory_s_per_kv_token=shape.kv_bytes_per_token_per_gpu / attention_bytes_per_s,
        comm_s_per_token=comm_s_per_token,
        comm_fixed_s=comm_fixed_s,
        stages=shape.pp,
        handoff_s_per_token=activation_bytes_per_token / link_bytes_per_s,
        handoff_fixed_s=efficiency.pipeline_send_latency_s,
        fixed_overhead_s=efficiency.step_overhead_s
        + kernel_floors
        + (0.0 if shape.cuda_graphs else eager),
        per_sequence_s=efficiency.per_sequence_overhead_s,
        ridge_point_flops_per_byte=flops_per_s / hbm_bytes_per_s,
        expert_compute_s_per_token=expert_compute,
        routing_skew=skew,
        expert_tile_s=expert_compute
        * efficiency.expert_gemm_half_tokens
        * (shape.num_experts / shape.experts_per_token if shape.num_experts else 0.0),
        sliding_s_per_kv_token=shape.sliding_kv_bytes_per_token_per_gpu / attention_bytes_per_s,
        sliding_window=shape.sliding_window,
        state_s_per_sequence=shape.state_bytes_per_sequence_per_gpu / attention_bytes_per_s,
        roofline_overlap=efficiency.roofline_overlap,
        eager_overhead_s=eager if shape.cuda_graphs else 0.0,
        graph_max_tokens=efficiency.cuda_graph_max_tokens,
    )
