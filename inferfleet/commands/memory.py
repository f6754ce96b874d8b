"""`inferfleet memory`: per-GPU memory and KV-cache capacity of one vLLM replica.

Other tools call this with `--output json` and read `weights_gib`, `activation_gib`,
`non_torch_gib`, `kv_cache_gib` (per GPU, GiB), `kv_cache_tokens` (engine-level, as vLLM logs
"GPU KV cache size") and `max_concurrency`. Numbers are parsed here, not by argparse, so a bad
value is one line on stderr naming the flag.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from typing import TYPE_CHECKING

from inferfleet.errors import UsageError
from inferfleet.models import add_model_arguments, load_arch
from inferfleet.tables import render_table

if TYPE_CHECKING:
    from controllers.api.engine_args import EngineExtras
    from sizing.memory import MemoryBreakdown

NAME = "memory"
HELP = "per-GPU memory breakdown and KV-cache token capacity of one vLLM replica"

_DTYPES = ("auto", "bfloat16", "float16", "float32")
_QUANTIZATIONS = ("none", "fp8", "int8", "int4", "awq", "gptq", "mxfp4", "nvfp4", "bnb4")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--gpu", required=True, help="GPU name, e.g. H100 (see the catalog)")
    parser.add_argument("--tp", required=True, metavar="N", help="tensor-parallel size")
    parser.add_argument("--pp", default="1", metavar="N", help="pipeline-parallel size")
    parser.add_argument("--params-b", metavar="FLOAT",
                        help="total parameters in billions (default: from the config)")  # fmt: skip
    parser.add_argument("--dtype", choices=_DTYPES, default="auto")
    parser.add_argument("--quantization", choices=_QUANTIZATIONS, default="none",
                        help="weight format; none = the checkpoint as it is")  # fmt: skip
    parser.add_argument("--kv-cache-dtype", choices=("auto", "fp8"), default="auto")
    parser.add_argument("--gpu-memory-utilization", default="0.9", metavar="FRACTION")
    parser.add_argument("--max-model-len", metavar="N",
                        help="default: the model's max_position_embeddings")  # fmt: skip
    parser.add_argument("--max-num-seqs", metavar="N", help="default: vLLM's for this GPU")
    parser.add_argument("--max-num-batched-tokens", metavar="N",
                        help="default: vLLM's for this GPU")  # fmt: skip
    parser.add_argument("--enforce-eager", action="store_true")
    parser.add_argument("--limit-mm-per-prompt", metavar="N",
                        help="images per prompt of a multimodal model; 0 = text only (no "
                             "encoder profile); default: vLLM's")  # fmt: skip
    parser.add_argument("--speculative-config", metavar="JSON",
                        help="vLLM's --speculative-config, e.g. '{\"method\": \"mtp\", "
                             "\"num_speculative_tokens\": 2}' (MTP modules and their KV "
                             "are counted)")  # fmt: skip
    parser.add_argument("--mm-processor-kwargs", metavar="JSON",
                        help="vLLM's --mm-processor-kwargs; its max_pixels sizes the dummy "
                             "image of any-size vision towers (Qwen-VL)")  # fmt: skip
    parser.add_argument("--mamba-cache-mode", choices=("none", "align", "all"),
                        help="state cache of hybrid state-space models (default: the "
                             "release's, align with prefix caching from 0.17)")  # fmt: skip
    parser.add_argument("--no-enable-prefix-caching", action="store_true",
                        help="prefix caching off (hybrid models keep one state page)")  # fmt: skip
    parser.add_argument("--vllm-version", metavar="X.Y",
                        help="the vLLM release whose profiler to model (0.10 or newer; "
                             "default: the release of the image the chart pins)")  # fmt: skip
    parser.add_argument("--method", choices=("vllm", "guide"), default="vllm")
    parser.add_argument("--output", choices=("text", "json"), default="text")


def _int(flag: str, raw: str | None, minimum: int = 1) -> int | None:
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise UsageError(f"{flag}: expected an integer, got {raw!r}") from None
    if value < minimum:
        raise UsageError(f"{flag}: {value} is out of range; it must be at least {minimum}")
    return value


def _float(flag: str, raw: str | None, low: float, high: float) -> float | None:
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise UsageError(f"{flag}: expected a number, got {raw!r}") from None
    if not low < value <= high:
        raise UsageError(f"{flag}: {value:g} is out of range; it must be in ({low:g}, {high:g}]")
    return value


def _extras(args: argparse.Namespace) -> EngineExtras:
    """The engine flags as extraArgs would carry them, read by the operator's own parser."""
    from controllers.api.engine_args import engine_extras

    flags = []
    for flag in ("--speculative-config", "--mm-processor-kwargs", "--mamba-cache-mode"):
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is not None:
            flags.append(f"{flag}={value}")
    try:
        return engine_extras(flags)
    except ValueError as err:  # its message names extraArgs[i]; name the flag instead
        raise UsageError(str(err).split(": ", 1)[1]) from None


def run(args: argparse.Namespace) -> int:
    from controllers.policy.planning import DEFAULT_VLLM_RELEASE
    from sizing.errors import ModelDoesNotFit
    from sizing.hardware import get_gpu
    from sizing.memory import EngineConfig, estimate_memory

    gpu = get_gpu(args.gpu)
    params_b = _float("--params-b", args.params_b, 0.0, 1e5)
    arch = load_arch(args, params_b)
    extras = _extras(args)
    engine = EngineConfig(
        tp=_int("--tp", args.tp) or 1,
        pp=_int("--pp", args.pp) or 1,
        dtype=args.dtype,
        quantization=args.quantization,
        kv_cache_dtype=args.kv_cache_dtype,
        gpu_memory_utilization=_float(
            "--gpu-memory-utilization", args.gpu_memory_utilization, 0.0, 1.0
        )
        or 0.9,
        max_model_len=_int("--max-model-len", args.max_model_len),
        max_num_seqs=_int("--max-num-seqs", args.max_num_seqs),
        max_num_batched_tokens=_int("--max-num-batched-tokens", args.max_num_batched_tokens),
        enforce_eager=args.enforce_eager,
        mm_items_per_prompt=_int("--limit-mm-per-prompt", args.limit_mm_per_prompt, minimum=0),
        vllm_version=args.vllm_version or DEFAULT_VLLM_RELEASE,
        mm_max_pixels=extras.mm_max_pixels,
        speculative_method=extras.speculative_method,
        num_speculative_tokens=extras.num_speculative_tokens,
        enable_prefix_caching=not args.no_enable_prefix_caching,
        mamba_cache_mode=extras.mamba_cache_mode,
    )
    memory = estimate_memory(arch, gpu, engine, method=args.method)
    if not memory.fits:
        raise ModelDoesNotFit(memory.notes[0])
    if args.method == "vllm" and memory.kv_cache_tokens < memory.max_model_len:
        raise ModelDoesNotFit(
            f"KV cache holds {memory.kv_cache_tokens} tokens per replica, less than one "
            f"request of max_model_len {memory.max_model_len}: vLLM would not start; lower "
            "--max-model-len or add GPUs"
        )
    if args.output == "json":
        payload = {
            **asdict(memory),
            "notes": list(memory.notes),
            "gpu": gpu.name,
            "tp": engine.tp,
            "pp": engine.pp,
            "quantization": engine.quantization,
            "total_params": arch.total_params,
            "active_params": arch.active_params,
        }
        json.dump(payload, sys.stdout, indent=2)
        print()
        return 0
    print(format_breakdown(memory, gpu.name, engine.tp, engine.pp))
    return 0


def format_breakdown(m: MemoryBreakdown, gpu_name: str, tp: int, pp: int) -> str:
    """An aligned per-GPU table, then the replica-level capacity and any notes."""
    rows = [
        ["weights", f"{m.weights_gib:.2f}"],
        ["activation peak", f"{m.activation_gib:.2f}"],
        ["non-torch" if m.method == "vllm" else "framework overhead", f"{m.non_torch_gib:.2f}"],
        ["LoRA", f"{m.lora_gib:.2f}"],
        ["KV cache", f"{m.kv_cache_gib:.2f}"],
        ["usable", f"{m.usable_gib:.2f}"],
        ["CUDA graphs (from headroom)", f"{m.cuda_graph_gib:.2f}"],
    ]
    lines = [
        f"{gpu_name} x {tp * pp} (TP {tp}, PP {pp}), method {m.method}: per GPU, GiB",
        render_table(["component", "GiB"], rows),
        "",
        f"KV cache: {m.kv_cache_tokens:,} tokens per replica "
        f"({m.kv_bytes_per_token:,.0f} bytes per token per GPU)",
        f"max concurrency at {m.max_model_len:,} tokens per request: {m.max_concurrency:.2f}x",
    ]
    lines += [f"note: {note}" for note in m.notes]
    return "\n".join(lines)
