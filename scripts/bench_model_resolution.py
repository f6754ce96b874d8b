"""Benchmark: resolving a DeepSeek-V3-sized checkpoint by name from a Hub over real HTTP.

    .venv/bin/python -m scripts.bench_model_resolution [--shards 163] [--rounds 3]

Serves the published DeepSeek-V3 layout (61 decoder layers, 3 dense then 58 of 256 FP8 experts
with block scales, bf16 attention and norms, the MTP layer 61) split over `--shards` safetensors
files from the loopback fake Hub, then times a cold resolution (config, index, two Range reads
per shard) and a cached one, and counts requests and bytes read. The Hub runs in its own
process, as a real one would, so the event-loop stall measured is the resolver's alone. Prints
the exact loaded weights against the parameter-count estimate, and the MTP layer left out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path

from controllers.adapters.hub_settings import HubSettings
from controllers.adapters.model_source import ModelResolver, ResolvedModel
from inferfleet_testing.checkpoints import Tensor, safetensors_header
from inferfleet_testing.fake_hub import FakeHub
from sizing.model import load_model_config, with_checkpoint
from sizing.quantization import weights_bytes

REPO = "bench/deepseek-v3"
CONFIG = Path(__file__).resolve().parents[1] / (
    "controllers/adapters/model_catalog/deepseek-ai--DeepSeek-V3.json"
)


def _linear(name: str, rows: int, cols: int) -> list[Tensor]:
    """An FP8 matrix with its 128 x 128 block scales (float32), as DeepSeek-V3 stores them."""
    return [
        (f"{name}.weight", "F8_E4M3", (rows, cols)),
        (f"{name}.weight_scale_inv", "F32", (-(-rows // 128), -(-cols // 128))),
    ]


def deepseek_tensors(cfg: dict) -> list[Tensor]:
    h, inter, moe = cfg["hidden_size"], cfg["intermediate_size"], cfg["moe_intermediate_size"]
    heads, rope, nope, v = (cfg["num_attention_heads"], cfg["qk_rope_head_dim"],
                            cfg["qk_nope_head_dim"], cfg["v_head_dim"])  # fmt: skip
    q_lora, kv_lora = cfg["q_lora_rank"], cfg["kv_lora_rank"]
    out: list[Tensor] = [("model.embed_tokens.weight", "BF16", (cfg["vocab_size"], h))]
    for i in range(cfg["num_hidden_layers"] + cfg["num_nextn_predict_layers"]):
        p = f"model.layers.{i}."
        out += _linear(p + "self_attn.q_a_proj", q_lora, h)
        out += _linear(p + "self_attn.q_b_proj", heads * (nope + rope), q_lora)
        out += _linear(p + "self_attn.kv_a_proj_with_mqa", kv_lora + rope, h)
        out += _linear(p + "self_attn.kv_b_proj", heads * (nope + v), kv_lora)
        out += _linear(p + "self_attn.o_proj", h, heads * v)
        out += [(p + "self_attn.q_a_layernorm.weight", "BF16", (q_lora,)),
                (p + "self_attn.kv_a_layernorm.weight", "BF16", (kv_lora,)),
                (p + "input_layernorm.weight", "BF16", (h,)),
                (p + "post_attention_layernorm.weight", "BF16", (h,))]  # fmt: skip
        if i < cfg["first_k_dense_replace"]:
            for proj, rows, cols in (("gate", inter, h), ("up", inter, h), ("down", h, inter)):
                out += _linear(f"{p}mlp.{proj}_proj", rows, cols)
            continue
        routed = cfg["n_routed_experts"]
        out += [(p + "mlp.gate.weight", "BF16", (routed, h)),
                (p + "mlp.gate.e_score_correction_bias", "F32", (routed,))]  # fmt: skip
        experts = [f"experts.{e}" for e in range(routed)] + ["shared_experts"]
        for expert in experts:
            for proj, rows, cols in (("gate", moe, h), ("up", moe, h), ("down", h, moe)):
                out += _linear(f"{p}mlp.{expert}.{proj}_proj", rows, cols)
    return [*out, ("model.norm.weight", "BF16", (h,)),
            ("lm_head.weight", "BF16", (cfg["vocab_size"], h))]  # fmt: skip


async def _resolve_watching_the_loop(resolver: ModelResolver) -> tuple[object, float]:
    """Resolve while a 10 ms ticker measures the event loop's longest stall: what every other
    fleet's handler would wait meanwhile."""
    task = asyncio.ensure_future(resolver.resolve(REPO))
    worst, last = 0.0, time.perf_counter()
    while not task.done():
        await asyncio.sleep(0.01)
        now = time.perf_counter()
        worst, last = max(worst, now - last - 0.01), now
    return task.result(), worst


def _serve(hub: FakeHub, url: multiprocessing.Queue, stop: multiprocessing.Event) -> None:
    with hub.serving():
        url.put(hub.url)
        stop.wait()


def _request_count(url: str) -> int:
    with urllib.request.urlopen(f"{url}/_requests", timeout=10) as response:
        return int(json.loads(response.read()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=163)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    cfg = json.loads(CONFIG.read_text())
    tensors = deepseek_tensors(cfg)
    per_shard = -(-len(tensors) // args.shards)
    shards = {
        f"model-{i + 1:05d}-of-{args.shards:06d}.safetensors": safetensors_header(
            tensors[i * per_shard : (i + 1) * per_shard]
        )
        for i in range(args.shards)
        if tensors[i * per_shard : (i + 1) * per_shard]
    }
    hub = FakeHub()
    hub.add_model(REPO, cfg, shards)
    cold, warm, stalls = [], [], []
    urls: multiprocessing.Queue = multiprocessing.Queue()
    stop = multiprocessing.Event()
    scratch = tempfile.TemporaryDirectory(prefix="bench-hub-")
    server = multiprocessing.Process(target=_serve, args=(hub, urls, stop), daemon=True)
    server.start()
    try:
        url = urls.get(timeout=60)
        for _ in range(args.rounds):
            cache = Path(scratch.name) / f"round-{len(cold)}"  # cold: an empty cache too
            resolver = ModelResolver(HubSettings(endpoint=url, timeout_s=60, cache_dir=cache))
            before = _request_count(url)
            start = time.perf_counter()
            found, stall = asyncio.run(_resolve_watching_the_loop(resolver))
            cold.append(time.perf_counter() - start)
            stalls.append(stall)
            requests = _request_count(url) - before
            start = time.perf_counter()
            asyncio.run(resolver.resolve(REPO))
            warm.append(time.perf_counter() - start)
    finally:
        stop.set()
        server.join(timeout=10)
        scratch.cleanup()
    assert isinstance(found, ResolvedModel) and found.checkpoint is not None
    header_bytes = sum(len(h) for h in shards.values())
    arch = load_model_config(cfg)
    exact = with_checkpoint(arch, found.checkpoint)
    print(
        f"{len(tensors):,} tensors in {len(shards)} shards, headers {header_bytes / 2**20:.1f} MiB"
    )
    print(f"cold resolution: median {statistics.median(cold):.2f} s over {args.rounds} "
          f"(min {min(cold):.2f}, max {max(cold):.2f}); {requests} requests")  # fmt: skip
    print(f"longest event-loop stall while resolving: median {1000 * statistics.median(stalls):.0f}"
          f" ms (max {1000 * max(stalls):.0f} ms)")  # fmt: skip
    print(f"cached: median {1000 * statistics.median(warm):.2f} ms, no request")
    print(f"weights loaded: {weights_bytes(exact) / 2**30:.1f} GiB from the headers, "
          f"{weights_bytes(arch) / 2**30:.1f} GiB from the parameter count; MTP layer stored "
          f"but not loaded: {found.checkpoint.skipped_bytes / 2**30:.1f} GiB")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
