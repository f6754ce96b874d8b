"""Step 6: tensor- and pipeline-parallel degree.

The lowest TP that fits, because more replicas at lower TP give more aggregate throughput
(guide 5.1). TP must split the attention heads evenly, and above TP 2 it needs an NVLink-class
fabric: on PCIe the all-reduce eats a quarter of every step at TP 4 (guide 5.6). PP only when
the model cannot fit inside one NVLink domain, and it costs a pipeline bubble.
"""

from __future__ import annotations

from dataclasses import dataclass

from sizing.hardware import GPU

TP_DEGREES = (1, 2, 4, 8)
PP_DEGREES = (1, 2, 4)
# All-reduce share of step time by fabric and TP degree, from the guide's figure 5.6.
ALLREDUCE_OVERHEAD = {
    "nvlink": {1: 0.0, 2: 0.02, 4: 0.05, 8: 0.09},
    "xgmi": {1: 0.0, 2: 0.03, 4: 0.06, 8: 0.10},
    "pcie": {1: 0.0, 2: 0.08, 4: 0.25, 8: 0.38},
}
MAX_TP_WITHOUT_NVLINK = 2


@dataclass(frozen=True)
class TPCheck:
    tp: int
    allowed: bool
    why: str


def check_tp(tp: int, num_attention_heads: int, num_kv_heads: int, gpu: GPU) -> TPCheck:
    """Can vLLM shard this model at this TP on this GPU's fabric? Say why not."""
    if num_attention_heads % tp:
        return TPCheck(tp, False, f"TP {tp} does not divide {num_attention_heads} attention heads")
    if num_kv_heads % tp and tp % num_kv_heads:
        return TPCheck(
            tp, False, f"TP {tp} neither divides nor is a multiple of {num_kv_heads} KV heads"
        )
    fabric = gpu.interconnect
    if tp > fabric.domain_size:
        return TPCheck(
            tp, False, f"TP {tp} exceeds the {fabric.domain_size}-GPU {fabric.kind} domain"
        )
    if tp > MAX_TP_WITHOUT_NVLINK and not fabric.is_nvlink_class:
        return TPCheck(tp, False, f"TP {tp} on {fabric.kind} needs NVLink (guide: TP > 2)")
    note = ""
    if tp > num_kv_heads:
        note = f"; KV heads replicated {tp // num_kv_heads}x"
    return TPCheck(tp, True, f"TP {tp} splits {num_attention_heads} heads evenly{note}")


def allreduce_overhead(tp: int, fabric_kind: str) -> float:
    table = ALLREDUCE_OVERHEAD.get(fabric_kind, ALLREDUCE_OVERHEAD["pcie"])
    return table.get(tp, table[max(table)])


def pipeline_bubble(pp: int, micro_batches: int) -> float:
    """Idle fraction of a pipeline: (PP - 1) / (m + PP - 1)."""
    if pp < 1 or micro_batches < 1:
        raise ValueError("pp and micro_batches must be >= 1")
    return (pp - 1) / (micro_batches + pp - 1)


def parallel_candidates(
    num_attention_heads: int, num_kv_heads: int, gpu: GPU, max_gpus: int | None
) -> tuple[list[tuple[int, int]], list[str]]:
    """(tp, pp) pairs to try, lowest GPU count first, and why the others were ruled out."""
    candidates: list[tuple[int, int]] = []
    rejected: list[str] = []
    for pp in PP_DEGREES:
        for tp in TP_DEGREES:
            check = check_tp(tp, num_attention_heads, num_kv_heads, gpu)
            if not check.allowed:
                if pp == 1:
                    rejected.append(check.why)
                continue
            if max_gpus is not None and tp * pp > max_gpus:
                if pp == 1:
                    rejected.append(f"TP {tp} × PP {pp} exceeds the pool's {max_gpus} GPUs")
                continue
            candidates.append((tp, pp))
    candidates.sort(key=lambda c: (c[0] * c[1], c[1]))
    return candidates, rejected
