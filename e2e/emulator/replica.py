"""Build one replica's engine exactly as `inferfleet curve` does: same model, memory, limits.

The emulator and the offline curve must agree by construction, so both go through
`sizing.model.load_model_config`, `sizing.memory.estimate_memory` and
`sizing.curve.replica_engine`; the only thing added here is what a GPU's framebuffer holds.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from sizing.curve import replica_engine
from sizing.errors import ModelDoesNotFit
from sizing.frontend import FrontEnd, front_end_of
from sizing.hardware import GPU, get_gpu
from sizing.memory import EngineConfig, MemoryBreakdown, estimate_memory
from sizing.model import load_model_config
from sizing.performance import DEFAULT_EFFICIENCY, Efficiency, StepTimeModel
from sizing.simulator import Engine, EngineLimits

# Meta-Llama-3-8B's config.json (the fields the sizing model reads): the default model.
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
    memory: MemoryBreakdown
    vocab_size: int
    # The API server before the engine, as `inferfleet curve` prices a client's loop with it.
    front_end: FrontEnd

    @property
    def max_model_len(self) -> int:
        return self.memory.max_model_len

    @property
    def fb_used_gib_per_gpu(self) -> float:
        """What nvidia-smi shows once vLLM is up: its whole budget is allocated at start-up."""
        m = self.memory
        return (
            m.weights_gib
            + m.activation_gib
            + m.non_torch_gib
            + m.cuda_graph_gib
            + m.lora_gib
            + m.kv_cache_gib
        )


def at_speed(step_model: StepTimeModel, speed_factor: float) -> StepTimeModel:
    """The same replica `speed_factor` times as fast as `sizing.performance` predicts: every
    time coefficient divided by it (the step formula is linear in them), so a test can run a
    fleet whose real capacity is not the planned one."""
    if not speed_factor > 0:
        raise ValueError(f"speed factor must be > 0, got {speed_factor}")
    seconds = {
        f.name: getattr(step_model, f.name) / speed_factor
        for f in fields(step_model)
        if f.name.endswith("_s") or "_s_per_" in f.name
    }
    return replace(step_model, **seconds)


def build_replica(
    config: dict[str, object] | None,
    gpu_name: str,
    engine_config: EngineConfig,
    efficiency: Efficiency = DEFAULT_EFFICIENCY,
    speed_factor: float = 1.0,
) -> ReplicaSetup:
    """The engine of one replica; raises a SizingError (with the numbers) if it cannot start."""
    arch = load_model_config(config or LLAMA_3_8B_CONFIG)
    gpu = get_gpu(gpu_name)
    memory = estimate_memory(arch, gpu, engine_config)
    if not memory.fits:
        raise ModelDoesNotFit("; ".join(memory.notes) or f"the model does not fit on {gpu.name}")
    step_model, limits = replica_engine(arch, gpu, engine_config, memory, efficiency)
    if speed_factor != 1.0:
        step_model = at_speed(step_model, speed_factor)
    engine = Engine(step_model, limits, track_tokens=True)
    front_end = front_end_of(efficiency)  # CPU-side: the speed factor is the GPU's
    return ReplicaSetup(gpu, engine, step_model, limits, memory, arch.vocab_size, front_end)
