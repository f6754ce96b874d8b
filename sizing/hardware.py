"""GPU catalog (step 2) and weight-loading paths for cold start.

Figures are vendor datasheet values for dense math (no 2:4 sparsity). `memory_gib_reported`
is what CUDA reports as total memory (and so what vLLM's `gpu_memory_utilization` multiplies),
read from real vLLM start-up logs where we have them, otherwise the nvidia-smi size less the
~0.45 GiB the driver keeps. Prices are indicative on-demand $/GPU-hour; every fleet overrides
them per pool with `costPerGPUHour`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from sizing.errors import InvalidInput, UnknownGPU

# Dtype keys used for `tflops`: what the tensor cores run dense.
DTYPES = ("fp32", "fp16", "bf16", "fp8", "int8", "fp4")


@dataclass(frozen=True)
class Interconnect:
    """How GPUs of one replica talk: kind, per-GPU one-direction bandwidth, domain size."""

    kind: str  # "nvlink" | "pcie" | "xgmi"
    bandwidth_gb_per_s: float  # one direction, per GPU, GB = 10^9 bytes
    domain_size: int  # GPUs that share this fabric in one node (NVLink domain)

    @property
    def is_nvlink_class(self) -> bool:
        """NVLink or AMD's Infinity Fabric: fast enough for TP above 2."""
        return self.kind in ("nvlink", "xgmi")


@dataclass(frozen=True)
class GPU:
    name: str
    vendor: str
    memory_gb: float  # marketing size, GB = 10^9
    memory_gib_reported: float  # total memory CUDA/ROCm reports, GiB = 2^30
    hbm_bandwidth_gb_per_s: float
    tflops: dict[str, float]  # dense peak per dtype
    interconnect: Interconnect
    cost_per_gpu_hour_usd: float
    aliases: tuple[str, ...] = field(default=())
    architecture: str = ""
    # CPU and GPU share one memory pool (GB10, Jetson Thor): CUDA reports the whole pool as
    # total, and vLLM reads the host's MemAvailable as free (`MemorySnapshot.measure` on
    # compute capability 8.7 / 11.0 / 12.1). It starts only if utilization x total is free then,
    # so what the OS, firmware carve-outs and the container keep is out of reach.
    unified_memory: bool = False
    host_reserved_gib: float = 0.0  # on a unified device: what the host keeps at vLLM's start

    @property
    def startable_utilization(self) -> float:
        """The highest gpu_memory_utilization vLLM can start with (1 on a discrete GPU)."""
        if not self.unified_memory:
            return 1.0
        return max(0.0, 1 - self.host_reserved_gib / self.memory_gib_reported)

    def startup_refusal(self, utilization: float) -> str | None:
        """Why vLLM refuses to start at this utilization, or None when it starts."""
        if utilization <= self.startable_utilization:
            return None
        most = math.floor(100 * self.startable_utilization) / 100
        return (
            f"{self.name} shares its {self.memory_gib_reported:.2f} GiB with the host, which "
            f"keeps ~{self.host_reserved_gib:g} GiB: vLLM refuses to start, since "
            f"{utilization * self.memory_gib_reported:.1f} GiB (utilization x total) is not "
            f"free; set gpu_memory_utilization to at most {most:.2f}"
        )

    def peak_tflops(self, dtype: str) -> float:
        """Peak dense TFLOPS for a math dtype, falling back to the widest supported one."""
        if dtype in self.tflops:
            return self.tflops[dtype]
        # FP8/FP4 weights on a GPU without those tensor cores run as 16-bit math (Marlin kernels).
        for fallback in ("bf16", "fp16"):
            if fallback in self.tflops:
                return self.tflops[fallback]
        return self.tflops["fp32"]

    def supports(self, dtype: str) -> bool:
        return dtype in self.tflops

    @property
    def ridge_point_flops_per_byte(self) -> float:
        """Arithmetic intensity above which a kernel is compute-bound on this GPU (BF16/FP16)."""
        return self.peak_tflops("bf16") * 1e12 / (self.hbm_bandwidth_gb_per_s * 1e9)


def _nv(bw: float, domain: int = 8) -> Interconnect:
    return Interconnect("nvlink", bw, domain)


def _pcie(gen: int) -> Interconnect:
    return Interconnect("pcie", {3: 16.0, 4: 32.0, 5: 64.0}[gen], 8)


CATALOG: tuple[GPU, ...] = (
    GPU("H100-SXM-80GB", "nvidia", 80, 79.19, 3350,
        {"fp32": 67, "fp16": 989, "bf16": 989, "fp8": 1979, "int8": 1979},
        _nv(450), 3.00, ("H100", "H100-80GB", "H100-SXM", "H100-SXM5-80GB", "H100 80GB"), "hopper"),
    GPU("H100-PCIe-80GB", "nvidia", 80, 79.19, 2000,
        {"fp32": 51, "fp16": 756, "bf16": 756, "fp8": 1513, "int8": 1513},
        _pcie(5), 2.50, ("H100-PCIe", "H100-PCIE-80GB"), "hopper"),
    GPU("H100-NVL", "nvidia", 94, 93.12, 3900,
        {"fp32": 60, "fp16": 835, "bf16": 835, "fp8": 1671, "int8": 1671},
        _nv(300, domain=2), 2.80, ("H100-NVL-94GB", "H100NVL"), "hopper"),
    GPU("H200-141GB", "nvidia", 141, 139.81, 4800,
        {"fp32": 67, "fp16": 989, "bf16": 989, "fp8": 1979, "int8": 1979},
        _nv(450), 3.80, ("H200", "H200-SXM-141GB"), "hopper"),
    GPU("B200", "nvidia", 180, 178.36, 8000,
        {"fp32": 80, "fp16": 2250, "bf16": 2250, "fp8": 4500, "int8": 4500, "fp4": 9000},
        _nv(900), 5.50, ("B200-180GB", "B200-SXM"), "blackwell"),
    GPU("A100-80GB", "nvidia", 80, 79.15, 2039,
        {"fp32": 19.5, "fp16": 312, "bf16": 312, "int8": 624},
        _nv(300), 1.80, ("A100-SXM4-80GB", "A100-SXM-80GB", "A100 80GB"), "ampere"),
    GPU("A100-40GB", "nvidia", 40, 39.38, 1555,
        {"fp32": 19.5, "fp16": 312, "bf16": 312, "int8": 624},
        _nv(300), 1.30, ("A100", "A100-SXM4-40GB", "A100 40GB"), "ampere"),
    GPU("L40S", "nvidia", 48, 44.53, 864,
        {"fp32": 91.6, "fp16": 362, "bf16": 362, "fp8": 733, "int8": 733},
        _pcie(4), 1.00, ("L40S-48GB",), "ada"),
    GPU("L4", "nvidia", 24, 22.16, 300,
        {"fp32": 30.3, "fp16": 121, "bf16": 121, "fp8": 242, "int8": 242},
        _pcie(4), 0.70, ("L4-24GB",), "ada"),
    GPU("A10G", "nvidia", 24, 22.07, 600,
        {"fp32": 31.2, "fp16": 70, "bf16": 70, "int8": 140},
        _pcie(4), 1.00, ("A10G-24GB",), "ampere"),
    GPU("T4", "nvidia", 16, 14.74, 320,
        {"fp32": 8.1, "fp16": 65, "int8": 130},
        _pcie(3), 0.35, ("Tesla-T4", "T4-16GB"), "turing"),
    GPU("A6000", "nvidia", 48, 47.54, 768,
        {"fp32": 38.7, "fp16": 155, "bf16": 155, "int8": 310},
        _pcie(4), 0.80, ("RTX-A6000", "RTXA6000"), "ampere"),
    GPU("RTX4090", "nvidia", 24, 23.63, 1008,
        {"fp32": 82.6, "fp16": 165, "bf16": 165, "fp8": 330, "int8": 660},
        _pcie(4), 0.40, ("RTX-4090", "GeForce-RTX-4090"), "ada"),
    GPU("RTX3090", "nvidia", 24, 23.58, 936,
        {"fp32": 35.6, "fp16": 71, "bf16": 71, "int8": 284},
        _pcie(4), 0.25, ("RTX-3090", "GeForce-RTX-3090"), "ampere"),
    # ROCm reports MI300X's 192 GiB HBM3 as 191.98 GiB total (a vLLM issue's log); the
    # MI325X / MI355X rows assume the same 0.02 GiB held back of their 256 / 288 GiB.
    GPU("MI300X", "amd", 192, 191.98, 5300,
        {"fp32": 163, "fp16": 1307, "bf16": 1307, "fp8": 2615, "int8": 2615},
        Interconnect("xgmi", 448, 8), 2.50, ("MI300X-192GB", "AMD-MI300X"), "cdna3"),
    # Export variants of Hopper and Ampere. H20: NVIDIA H20 spec (96 GB HBM3, 4.0 TB/s,
    # 148 TFLOPS FP16/BF16 and 296 FP8/INT8 dense, NVLink 900 GB/s both directions).
    GPU("H20", "nvidia", 96, 94.97, 4000,
        {"fp32": 44, "fp16": 148, "bf16": 148, "fp8": 296, "int8": 296},
        _nv(450), 1.50, ("H20-96GB",), "hopper"),
    # H800 SXM / A800 SXM: the H100 SXM / A100 80GB silicon with NVLink cut to 400 GB/s both
    # directions (NVIDIA H800 and A800 product briefs); memory as on the H100 / A100 80GB.
    GPU("H800", "nvidia", 80, 79.19, 3350,
        {"fp32": 67, "fp16": 989, "bf16": 989, "fp8": 1979, "int8": 1979},
        _nv(200), 2.50, ("H800-SXM", "H800-80GB"), "hopper"),
    GPU("A800", "nvidia", 80, 79.15, 2039,
        {"fp32": 19.5, "fp16": 312, "bf16": 312, "int8": 624},
        _nv(200), 1.60, ("A800-SXM4-80GB", "A800-80GB"), "ampere"),
    # L20: NVIDIA L20 product brief (Ada, 48 GB GDDR6 at 864 GB/s, 119.5 TFLOPS FP16 and 239
    # FP8 dense tensor, PCIe Gen4 x16).
    GPU("L20", "nvidia", 48, 44.53, 864,
        {"fp32": 59.8, "fp16": 119.5, "bf16": 119.5, "fp8": 239, "int8": 239},
        _pcie(4), 0.90, ("L20-48GB",), "ada"),
    # Blackwell in a Grace superchip: GB200 NVL72 datasheet per GPU (186 GB HBM3e of the rack's
    # 13.4 TB, 8 TB/s, dense 2.5 PF BF16 / 5 PF FP8 / 10 PF FP4, NVLink 1.8 TB/s both ways,
    # one 72-GPU NVLink domain).
    GPU("GB200", "nvidia", 186, 184.0, 8000,
        {"fp32": 80, "fp16": 2500, "bf16": 2500, "fp8": 5000, "int8": 5000, "fp4": 10000},
        _nv(900, domain=72), 6.50, ("GB200-NVL72", "GB200-186GB"), "blackwell"),
    # Blackwell Ultra: HGX B300 spec per GPU (288 GB HBM3e, 8 TB/s, dense 2.25 PF BF16 /
    # 4.5 PF FP8 / ~13 PF FP4 from 105 PF dense FP4 per 8 GPUs; INT8 and FP64 tensor rates
    # cut, so INT8 runs as 16-bit here). GB300 NVL72: 1.1 EF dense FP4 and 360 PF FP8 per 72.
    GPU("B300", "nvidia", 288, 286.0, 8000,
        {"fp32": 75, "fp16": 2250, "bf16": 2250, "fp8": 4500, "fp4": 13125},
        _nv(900), 7.00, ("B300-SXM", "B300-288GB", "HGX-B300"), "blackwell"),
    GPU("GB300", "nvidia", 288, 286.0, 8000,
        {"fp32": 80, "fp16": 2500, "bf16": 2500, "fp8": 5000, "fp4": 15000},
        _nv(900, domain=72), 7.50, ("GB300-NVL72",), "blackwell"),
    # RTX PRO 6000 Blackwell Server Edition (GB202): 96 GB GDDR7 ECC, 1597 GB/s, 4 PFLOPS FP4
    # with sparsity (dense half of it; FP8 and BF16 half again each), PCIe Gen5, no NVLink.
    GPU("RTX-PRO-6000", "nvidia", 96, 94.97, 1597,
        {"fp32": 117, "fp16": 500, "bf16": 500, "fp8": 1000, "int8": 1000, "fp4": 2000},
        _pcie(5), 1.80, ("RTX-PRO-6000-Blackwell", "RTX-PRO-6000-Blackwell-Server-Edition",
                         "RTX-PRO-6000-BSE", "RTX-PRO-6000-96GB"), "blackwell"),
    # Unified-memory Blackwell: DGX Spark's GB10 (128 GB LPDDR5x shared with the 20-core CPU,
    # 273 GB/s, 1 PFLOP FP4 with sparsity) and Jetson AGX Thor T5000 (128 GB LPDDR5X, 273
    # GB/s, 2070 TFLOPS FP4 with sparsity); dense = half, FP8 and BF16 half again each. CUDA
    # reports the pool less the firmware's carve-outs: 121.69 GiB on a DGX Spark (field
    # reports). There, with DGX OS headless and caches dropped, 101.3-102.2 GiB is free when
    # vLLM starts, so the host keeps ~19.5 GiB: 0.83 starts, vLLM's 0.92 default never does
    # (its recipes ask for 0.85). Thor: 122.8 GiB; its host share is unmeasured here, so it
    # takes the GB10's (the same Linux-on-LPDDR5X arrangement).
    GPU("GB10", "nvidia", 128, 121.69, 273,
        {"fp32": 31, "fp16": 125, "bf16": 125, "fp8": 250, "int8": 250, "fp4": 500},
        Interconnect("pcie", 25.0, 1), 0.40, ("DGX-Spark", "GB10-128GB"), "blackwell",
        unified_memory=True, host_reserved_gib=19.5),
    GPU("Jetson-AGX-Thor", "nvidia", 128, 122.8, 273,
        {"fp32": 8, "fp16": 259, "bf16": 259, "fp8": 517, "int8": 517, "fp4": 1035},
        Interconnect("pcie", 25.0, 1), 0.30, ("Jetson-Thor", "AGX-Thor", "Thor", "T5000"),
        "blackwell", unified_memory=True, host_reserved_gib=19.5),
    # AMD Instinct: MI325X datasheet (256 GB HBM3E, 6 TB/s, MI300X's compute: 1307 TFLOPS
    # FP16 / 2615 FP8 dense); MI355X (CDNA 4; 288 GB HBM3E, 8 TB/s, dense 2.5 PF FP16 / 5 PF FP8
    # / 10 PF FP4-FP6; Infinity Fabric 7 links x 76.8 GB/s per direction).
    GPU("MI325X", "amd", 256, 255.98, 6000,
        {"fp32": 163, "fp16": 1307, "bf16": 1307, "fp8": 2615, "int8": 2615},
        Interconnect("xgmi", 448, 8), 2.90, ("MI325X-256GB", "AMD-MI325X"), "cdna3"),
    GPU("MI355X", "amd", 288, 287.98, 8000,
        {"fp32": 157, "fp16": 2516, "bf16": 2516, "fp8": 5033, "int8": 5033, "fp4": 10066},
        Interconnect("xgmi", 538, 8), 4.50, ("MI355X-288GB", "AMD-MI355X"), "cdna4"),
)  # fmt: skip


def _key(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


_BY_KEY: dict[str, GPU] = {}
for _gpu in CATALOG:
    for _alias in (_gpu.name, *_gpu.aliases):
        _BY_KEY[_key(_alias)] = _gpu


def known_gpu_names() -> list[str]:
    return [gpu.name for gpu in CATALOG]


def custom_gpu(
    name: str,
    memory_gib: float,
    bandwidth_gb_per_s: float,
    tflops: dict[str, float],
    interconnect_kind: str,
    interconnect_gb_per_s: float,
    cost_per_gpu_hour_usd: float,
) -> GPU:
    """A GPU the catalog lacks, from its datasheet (a pool's gpuSpec); every figure checked."""
    checks = {
        "memoryGiB": memory_gib,
        "memoryBandwidthGBPerSecond": bandwidth_gb_per_s,
        "interconnect.bandwidthGBPerSecond": interconnect_gb_per_s,
        **{f"tflops.{k}": v for k, v in tflops.items()},
    }
    for field_name, value in checks.items():
        if not value > 0:
            raise InvalidInput(f"gpuSpec.{field_name} must be > 0, got {value}")
    unknown = sorted(set(tflops) - set(DTYPES))
    if unknown or not tflops:
        raise InvalidInput(f"gpuSpec.tflops: keys must be among {', '.join(DTYPES)}; got "
                           f"{', '.join(unknown) or 'none'}")  # fmt: skip
    if interconnect_kind not in ("nvlink", "pcie", "xgmi"):
        raise InvalidInput(
            f"gpuSpec.interconnect.kind must be nvlink, pcie or xgmi, got {interconnect_kind!r}"
        )
    return GPU(
        name=name,
        vendor="custom",
        memory_gb=memory_gib * 2**30 / 1e9,
        memory_gib_reported=memory_gib,
        hbm_bandwidth_gb_per_s=bandwidth_gb_per_s,
        tflops=dict(tflops),
        interconnect=Interconnect(interconnect_kind, interconnect_gb_per_s, 8),
        cost_per_gpu_hour_usd=cost_per_gpu_hour_usd,
    )


def get_gpu(name: str) -> GPU:
    """Look a GPU up by name or alias, ignoring case, spaces, dashes and underscores."""
    gpu = _BY_KEY.get(_key(name))
    if gpu is None:
        raise UnknownGPU(f"unknown GPU {name!r}; known GPUs: {', '.join(known_gpu_names())}")
    return gpu


@dataclass(frozen=True)
class StoragePath:
    """Where a replica loads its weights from on cold start (field guide, section 2.1)."""

    name: str
    bandwidth_gb_per_s: float  # effective, GB = 10^9
    fixed_overhead_s: float  # container start, engine init, CUDA-graph capture
    description: str


STORAGE_PATHS: dict[str, StoragePath] = {
    "nvme": StoragePath("nvme", 12.5, 60.0, "local NVMe (PCIe Gen4) model cache"),
    "network": StoragePath("network", 1.1, 60.0, "network-attached volume (10 GbE)"),
    "object-store": StoragePath(
        "object-store", 0.75, 90.0, "object storage (S3/GCS) with container init"
    ),
}


def cold_start_s(weights_gb: float, storage: str) -> float:
    """Seconds from scale-up to serving: fixed start-up cost plus weight transfer time."""
    try:
        path = STORAGE_PATHS[storage]
    except KeyError:
        raise InvalidInput(
            f"unknown storage path {storage!r}; expected one of {', '.join(STORAGE_PATHS)}"
        ) from None
    return path.fixed_overhead_s + weights_gb / path.bandwidth_gb_per_s
