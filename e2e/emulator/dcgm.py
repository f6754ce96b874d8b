"""A dcgm-exporter lookalike: per-GPU utilization, memory and power from the engine's state.

Names, types and labels are dcgm-exporter's (`DCGM_FI_DEV_GPU_UTIL{gpu, UUID, device,
modelName, Hostname}` ...), because the operator's DCGM queries and alerts must work unchanged
against the real exporter. Values are derived, not random: utilization from the fraction of
recent wall time the engine spent in forward steps, SM/DRAM activity from how compute- or
memory-bound those steps were, framebuffer use from the memory model (vLLM preallocates its
KV cache at start-up, so FB_USED is flat while serving, as on a real GPU).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Protocol

from sizing.hardware import GPU

MIB = 2**20

# Board power limits (W) by catalog name, from vendor datasheets; the emulator's power draw
# scales between an idle floor and this limit with activity.
BOARD_POWER_W = {
    "H100-SXM-80GB": 700.0,
    "H100-PCIe-80GB": 350.0,
    "H100-NVL": 400.0,
    "H200-141GB": 700.0,
    "B200": 1000.0,
    "A100-80GB": 400.0,
    "A100-40GB": 400.0,
    "L40S": 350.0,
    "L4": 72.0,
    "A10G": 300.0,
    "T4": 70.0,
    "A6000": 300.0,
    "RTX4090": 450.0,
    "RTX3090": 350.0,
    "MI300X": 750.0,
}
DEFAULT_BOARD_POWER_W = 400.0
IDLE_POWER_FRACTION = 0.1  # an idle datacenter GPU with a loaded model draws ~10 % of its limit
CUDA_CONTEXT_MIB = 500.0  # what a process holds before the weights load (cold start)

_FIELDS = (
    ("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %)."),
    ("DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB)."),
    ("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB)."),
    ("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W)."),
    ("DCGM_FI_PROF_SM_ACTIVE", "The ratio of cycles an SM has at least 1 warp assigned (in %)."),
    ("DCGM_FI_PROF_DRAM_ACTIVE", "Ratio of cycles the device memory interface is active "
     "sending or receiving data (in %)."),
)  # fmt: skip


@dataclass(frozen=True)
class Activity:
    """Recent activity of the replica, each a fraction of wall time in [0, 1]."""

    busy: float  # some forward step running
    compute: float  # tensor cores busy (compute-bound share of the busy time)
    memory: float  # HBM streaming (memory-bound share of the busy time)


class ActivitySource(Protocol):
    def activity(self) -> Activity: ...


class DcgmExporter:
    """The `tp` GPUs of one replica, all equally busy (tensor parallelism splits every step)."""

    def __init__(self, gpu: GPU, tp: int, fb_used_gib_per_gpu: float, hostname: str, seed: int):
        self.gpu = gpu
        self.tp = tp
        self.fb_total_mib = gpu.memory_gib_reported * 1024
        self.fb_used_mib = min(fb_used_gib_per_gpu * 1024, self.fb_total_mib)
        self.hostname = hostname
        self.power_limit_w = BOARD_POWER_W.get(gpu.name, DEFAULT_BOARD_POWER_W)
        # Stable per-run UUIDs, derived from the seed so a test can predict them.
        self.uuids = [f"GPU-{uuid.UUID(int=(seed << 16) + i + 1)}" for i in range(tp)]

    def values(self, activity: Activity, ready: bool) -> dict[str, float]:
        used = self.fb_used_mib if ready else CUDA_CONTEXT_MIB
        idle_w = IDLE_POWER_FRACTION * self.power_limit_w
        return {
            "DCGM_FI_DEV_GPU_UTIL": round(100 * activity.busy),
            "DCGM_FI_DEV_FB_FREE": round(self.fb_total_mib - used),
            "DCGM_FI_DEV_FB_USED": round(used),
            "DCGM_FI_DEV_POWER_USAGE": idle_w
            + (self.power_limit_w - idle_w) * max(activity.compute, activity.memory),
            "DCGM_FI_PROF_SM_ACTIVE": activity.compute,
            "DCGM_FI_PROF_DRAM_ACTIVE": activity.memory,
        }

    def exposition(self, source: ActivitySource, ready: bool) -> str:
        values = self.values(source.activity(), ready)
        lines: list[str] = []
        for name, doc in _FIELDS:
            lines += [f"# HELP {name} {doc}", f"# TYPE {name} gauge"]
            for i, gpu_uuid in enumerate(self.uuids):
                labels = (
                    f'gpu="{i}",UUID="{gpu_uuid}",pci_bus_id="00000000:{i + 1:02X}:00.0",'
                    f'device="nvidia{i}",modelName="{self.gpu.name}",Hostname="{self.hostname}"'
                )
                lines.append(f"{name}{{{labels}}} {values[name]:g}")
        return "\n".join(lines) + "\n"
