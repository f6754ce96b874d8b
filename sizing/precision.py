"""Step 5: choose the weight precision before parallelism, because it moves the memory floor.

FP8 is the guide's default where the tensor cores run it (Hopper, Ada, Blackwell, MI300X);
elsewhere 16-bit first, then INT8 and 4-bit AWQ only when the model would not fit otherwise,
since each step down costs quality on some tasks (guide chapter 4).
"""

from __future__ import annotations

from dataclasses import dataclass

from sizing.errors import InvalidInput
from sizing.hardware import GPU

# Architectures that can run each runtime weight format at all (vLLM kernels).
_MIN_ARCH = {
    "fp8": {
        "ampere",
        "ada",
        "hopper",
        "blackwell",
        "cdna3",
        "cdna4",
    },  # Ampere: weight-only (Marlin)
    "mxfp4": {"ampere", "ada", "hopper", "blackwell", "cdna3", "cdna4"},
    "nvfp4": {"ampere", "ada", "hopper", "blackwell"},  # before Blackwell: FP4 Marlin, weight-only
    "int8": {"turing", "ampere", "ada", "hopper", "blackwell", "cdna3", "cdna4"},
}

CAVEATS = {
    "none": "no quality change: the checkpoint's own precision",
    "fp8": "near-lossless on most tasks (typically under 1 % on evals); verify on your own evals",
    "int8": "small loss with W8A8 SmoothQuant-style checkpoints; check long-context accuracy",
    "int4": "4-bit weights: 1-3 % loss typical, more on code, math and reasoning; run evals",
    "awq": "4-bit AWQ: good quality for 4-bit, still check code/math/reasoning evals",
    "gptq": "4-bit GPTQ: quality depends on calibration data; run evals before production",
    "mxfp4": "MXFP4 microscaling 4-bit: native on Blackwell, emulated elsewhere; run evals",
    "nvfp4": "NVFP4 4-bit (FP8 scale per 16): native on Blackwell only; run evals",
    "bnb4": "bitsandbytes NF4: convenient but slowest kernels; for memory, not throughput",
}


@dataclass(frozen=True)
class PrecisionChoice:
    options: tuple[str, ...]  # to try in order; the first that fits wins
    reason: str


def choose_precision(
    requested: str, checkpoint_quantization: str | None, gpu: GPU
) -> PrecisionChoice:
    """Ordered weight formats to try on this GPU. 'none' means the checkpoint as it is."""
    if requested not in ("auto", *CAVEATS):
        raise InvalidInput(
            f"model.quantization: {requested!r} is not one of auto, {', '.join(CAVEATS)}"
        )
    if requested != "auto":
        allowed = _MIN_ARCH.get(requested)
        if allowed is not None and gpu.architecture not in allowed:
            raise InvalidInput(
                f"model.quantization: {requested} is not supported on {gpu.name} "
                f"({gpu.architecture}); choose none, int8 or a 4-bit format"
            )
        return PrecisionChoice((requested,), f"{requested} as set: {CAVEATS[requested]}")
    if checkpoint_quantization:
        return PrecisionChoice(
            ("none",),
            f"checkpoint is already {checkpoint_quantization}: serve it as is "
            f"({CAVEATS.get(checkpoint_quantization, 'pre-quantized')})",
        )
    if gpu.supports("fp8"):
        return PrecisionChoice(
            ("fp8", "awq"),
            f"FP8 tensor cores on {gpu.name}: FP8 weights halve the floor ({CAVEATS['fp8']}); "
            "4-bit AWQ only if FP8 does not fit",
        )
    fallbacks = ("none", "int8", "awq") if gpu.supports("int8") else ("none", "awq")
    return PrecisionChoice(
        fallbacks,
        f"no FP8 tensor cores on {gpu.name}: 16-bit first, then "
        f"{' then '.join(fallbacks[1:])} only if needed to fit",
    )
