"""Rebuild the operator's offline model catalog from the project's shared model configs.

Usage: python scripts/build_model_catalog.py [SHARED_DATA_DIR]
(default: ../shared/data next to the repository).

Copies every `config.json` of the calibration set (`calibration/model_configs/`) and of the
benchmark set (`benchmarks/configs/`, with its INDEX notes) into
`controllers/adapters/model_catalog/`, keyed by Hugging Face repo id, plus the entries written by
hand in `EXTRA` below. `INDEX.json` records where each config came from; the catalog's README
says who published them. Run it when the shared sets gain models; commit the result.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "controllers" / "adapters" / "model_catalog"
DEFAULT_SHARED = REPO.parent / "shared" / "data"
# Files of the shared sets whose name is not a real repo id.
SKIP = {"Qwen--Qwen2.5-7B_4-bit_variant_exact_repo_unknown.json"}

# Architectures the shared sets lack, from the values their authors publish in config.json
# (the keys the sizing reads; tokenizer ids, RoPE scaling and norms left out).
_DEEPSEEK_V3 = {
    "architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3",
    "hidden_size": 7168, "intermediate_size": 18432, "moe_intermediate_size": 2048,
    "num_hidden_layers": 61, "num_attention_heads": 128, "num_key_value_heads": 128,
    "q_lora_rank": 1536, "kv_lora_rank": 512, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64,
    "v_head_dim": 128, "n_routed_experts": 256, "n_shared_experts": 1, "num_experts_per_tok": 8,
    "first_k_dense_replace": 3, "num_nextn_predict_layers": 1, "vocab_size": 129280,
    "max_position_embeddings": 163840, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
    "quantization_config": {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                            "weight_block_size": [128, 128]},
    "total_params_b": 671.0,
}  # fmt: skip
_MIXTRAL = {
    "architectures": ["MixtralForCausalLM"], "model_type": "mixtral", "hidden_size": 4096,
    "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
    "num_key_value_heads": 8, "num_local_experts": 8, "num_experts_per_tok": 2,
    "vocab_size": 32000, "max_position_embeddings": 32768, "tie_word_embeddings": False,
    "torch_dtype": "bfloat16", "total_params_b": 46.7,
}  # fmt: skip


def _dense(
    arch: str,
    model_type: str,
    hidden: int,
    inter: int,
    layers: int,
    heads: int,
    vocab: int,
    context: int,
    total_b: float,
) -> dict[str, object]:
    """A dense GQA decoder with 8 KV heads, untied, bf16: the Llama 3.1 / Qwen2.5 families."""
    return {
        "architectures": [arch],
        "model_type": model_type,
        "hidden_size": hidden,
        "intermediate_size": inter,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": 8,
        "head_dim": hidden // heads,
        "vocab_size": vocab,
        "max_position_embeddings": context,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "total_params_b": total_b,
    }


_LLAMA31_70B = _dense("LlamaForCausalLM", "llama", 8192, 28672, 80, 64, 128256, 131072, 70.6)
_LLAMA31_405B = _dense("LlamaForCausalLM", "llama", 16384, 53248, 126, 128, 128256, 131072, 405.9)
_QWEN25_72B = _dense("Qwen2ForCausalLM", "qwen2", 8192, 29568, 80, 64, 152064, 32768, 72.7)
_QWEN25_32B = _dense("Qwen2ForCausalLM", "qwen2", 5120, 27648, 64, 40, 152064, 32768, 32.8)
_MIXTRAL_8X22B = {**_MIXTRAL, "hidden_size": 6144, "intermediate_size": 16384,
                  "num_hidden_layers": 56, "num_attention_heads": 48, "vocab_size": 32768,
                  "max_position_embeddings": 65536, "total_params_b": 140.6}  # fmt: skip
_PUBLISHED = "the values of the checkpoint's published config.json (sizing keys only)"
# Gated-delta hybrids: 3 of every 4 layers linear attention (a recurrent state per sequence).
_QWEN3_NEXT = {
    "architectures": ["Qwen3NextForCausalLM"], "model_type": "qwen3_next", "hidden_size": 2048,
    "intermediate_size": 5120, "num_hidden_layers": 48, "num_attention_heads": 16,
    "num_key_value_heads": 2, "head_dim": 256, "full_attention_interval": 4,
    "linear_conv_kernel_dim": 4, "linear_key_head_dim": 128, "linear_num_key_heads": 16,
    "linear_num_value_heads": 32, "linear_value_head_dim": 128, "num_experts": 512,
    "num_experts_per_tok": 10, "moe_intermediate_size": 512,
    "shared_expert_intermediate_size": 512, "decoder_sparse_step": 1, "mlp_only_layers": [],
    "partial_rotary_factor": 0.25, "vocab_size": 151936, "max_position_embeddings": 262144,
    "tie_word_embeddings": False, "torch_dtype": "bfloat16", "total_params_b": 80.0,
}  # fmt: skip
_QWEN35_9B = {
    "architectures": ["Qwen3_5ForConditionalGeneration"], "model_type": "qwen3_5",
    "text_config": {
        "model_type": "qwen3_5_text", "attn_output_gate": True, "full_attention_interval": 4,
        "head_dim": 256, "hidden_size": 4096, "intermediate_size": 12288,
        "layer_types": (["linear_attention"] * 3 + ["full_attention"]) * 8,
        "linear_conv_kernel_dim": 4, "linear_key_head_dim": 128, "linear_num_key_heads": 16,
        "linear_num_value_heads": 32, "linear_value_head_dim": 128, "num_attention_heads": 16,
        "num_key_value_heads": 4, "num_hidden_layers": 32, "vocab_size": 248320,
        "mamba_ssm_dtype": "float32", "mtp_num_hidden_layers": 1,
        "partial_rotary_factor": 0.25, "max_position_embeddings": 262144,
        "tie_word_embeddings": False, "dtype": "bfloat16",
    },
    "vision_config": {"depth": 27, "hidden_size": 1152, "intermediate_size": 4304,
                      "num_heads": 16, "out_hidden_size": 4096, "patch_size": 16,
                      "spatial_merge_size": 2, "temporal_patch_size": 2},
    "tie_word_embeddings": False, "total_params_b": 9.41,
}  # fmt: skip
# MoE with a shared expert (sigmoid-gated) beside 60 routed ones.
_QWEN15_MOE = {
    "architectures": ["Qwen2MoeForCausalLM"], "model_type": "qwen2_moe", "hidden_size": 2048,
    "intermediate_size": 5632, "moe_intermediate_size": 1408,
    "shared_expert_intermediate_size": 5632, "num_experts": 60, "num_experts_per_tok": 4,
    "decoder_sparse_step": 1, "num_hidden_layers": 24, "num_attention_heads": 16,
    "num_key_value_heads": 16, "vocab_size": 151936, "max_position_embeddings": 8192,
    "tie_word_embeddings": False, "torch_dtype": "bfloat16", "use_sliding_window": False,
    "total_params_b": 14.3,
}  # fmt: skip
# Whisper-style audio encoder; the text config leaves Qwen2Config's defaults out.
_QWEN2_AUDIO = {
    "architectures": ["Qwen2AudioForConditionalGeneration"], "model_type": "qwen2_audio",
    "audio_config": {"model_type": "qwen2_audio_encoder", "num_mel_bins": 128,
                     "encoder_layers": 32, "encoder_attention_heads": 20,
                     "encoder_ffn_dim": 5120, "d_model": 1280, "max_source_positions": 1500},
    "text_config": {"model_type": "qwen2", "intermediate_size": 11008,
                    "max_position_embeddings": 8192, "vocab_size": 156032,
                    "torch_dtype": "bfloat16"},
    "vocab_size": 156032, "total_params_b": 8.4,
}  # fmt: skip
EXTRA = {
    "deepseek-ai/DeepSeek-V3": (_DEEPSEEK_V3, _PUBLISHED + "; 671B without the MTP layer"),
    "deepseek-ai/DeepSeek-R1": (_DEEPSEEK_V3, _PUBLISHED + "; the DeepSeek-V3 architecture"),
    "mistralai/Mixtral-8x7B-Instruct-v0.1": (_MIXTRAL, _PUBLISHED),
    "mistralai/Mixtral-8x22B-Instruct-v0.1": (_MIXTRAL_8X22B, _PUBLISHED),
    "meta-llama/Llama-3.1-70B-Instruct": (_LLAMA31_70B, _PUBLISHED),
    "meta-llama/Llama-3.1-405B-Instruct": (_LLAMA31_405B, _PUBLISHED),
    "Qwen/Qwen2.5-72B-Instruct": (_QWEN25_72B, _PUBLISHED),
    "Qwen/Qwen2.5-32B-Instruct": (_QWEN25_32B, _PUBLISHED),
    "Qwen/Qwen3-Next-80B-A3B-Instruct": (_QWEN3_NEXT, _PUBLISHED + "; 80B total (model card)"),
    "Qwen/Qwen3-Next-80B-A3B-Thinking": (_QWEN3_NEXT, _PUBLISHED + "; the Instruct architecture"),
    "Qwen/Qwen3.5-9B": (
        _QWEN35_9B,
        _PUBLISHED + "; total 9.41B: the index's 19,306,216,416 bf16 bytes (9.65B) less the "
        "~0.24B MTP layer vLLM does not load",
    ),
    "Qwen/Qwen2-Audio-7B-Instruct": (_QWEN2_AUDIO, _PUBLISHED + "; 8.4B total (model card)"),
    "Qwen/Qwen1.5-MoE-A2.7B": (_QWEN15_MOE, _PUBLISHED + "; 14.3B total (model card)"),
}

# 16-bit releases whose quantized sibling is in the sets: the same config less its quantization.
UNQUANTIZED = {
    "meta-llama/Llama-3.3-70B-Instruct": "RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic",
    "Qwen/Qwen3-235B-A22B": "Qwen/Qwen3-235B-A22B-FP8",
    "Qwen/Qwen3-30B-A3B": "Qwen/Qwen3-30B-A3B-Instruct-2507",
}

# The vision towers' sizes the shared configs leave out (the profiler's encoder pass needs
# them), as the checkpoints publish them in vision_config.
_SIGLIP_GEMMA3 = {"hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 27,
                  "num_attention_heads": 16, "image_size": 896, "patch_size": 14}  # fmt: skip
_LLAMA4_VISION = {"hidden_size": 1408, "intermediate_size": 5632, "num_hidden_layers": 34,
                  "num_attention_heads": 16, "image_size": 336, "patch_size": 14,
                  "pixel_shuffle_ratio": 0.5}  # fmt: skip
_PIXTRAL = {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24,
            "num_attention_heads": 16, "image_size": 1540, "patch_size": 14}  # fmt: skip
# Qwen2.5-VL's tower: the dummy image is sized by the processor's max_pixels (sizing.encoder).
_QWEN25_VL = {"spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 112}
VISION = {
    "Qwen/Qwen2.5-VL-72B-Instruct": (_QWEN25_VL, {}),
    "unsloth/qwen2.5-vl-7b-instruct-unsloth-bnb-4bit": (
        {**_QWEN25_VL, "intermediate_size": 3420}, {}),
    "google/gemma-3-12b-it": (_SIGLIP_GEMMA3, {}),
    "google/gemma-3-27b-it": (_SIGLIP_GEMMA3, {}),
    "meta-llama/Llama-4-Scout-17B-16E-Instruct": (_LLAMA4_VISION, {}),
    "meta-llama/Llama-4-Maverick-17B-128E-Instruct-FP8": (_LLAMA4_VISION, {}),
    "mistralai/Mistral-Small-3.1-24B-Instruct-2503": (_PIXTRAL, {"spatial_merge_size": 2}),
    "mistralai/Mistral-Small-3.2-24B-Instruct-2506": (_PIXTRAL, {"spatial_merge_size": 2}),
    "RedHatAI/Mistral-Small-3.1-24B-Instruct-2503-quantized.w8a8": (
        _PIXTRAL, {"spatial_merge_size": 2}),
    "meta-llama/Llama-3.2-11B-Vision": ({"hidden_size": 1280, "intermediate_size": 5120,
        "num_hidden_layers": 32, "num_global_layers": 8, "num_attention_heads": 16,
        "image_size": 560, "patch_size": 14, "max_num_tiles": 4}, {}),
}  # fmt: skip


def _repo_id(file: Path) -> str:
    return file.stem.replace("--", "/", 1)


def build(shared: Path) -> dict[str, dict[str, object]]:
    index: dict[str, dict[str, object]] = {}
    configs: dict[str, dict[str, object]] = {}
    bench_index = json.loads((shared / "benchmarks" / "configs" / "INDEX.json").read_text())
    for folder, origin in (
        (shared / "calibration" / "model_configs", "calibration set: the published config.json"),
        (shared / "benchmarks" / "configs", "benchmark set"),
    ):
        for file in sorted(folder.glob("*--*.json")):
            repo_id = _repo_id(file)
            if file.name in SKIP or repo_id.lower() in {k.lower() for k in index}:
                continue
            note = bench_index.get(repo_id, {})
            verbatim = note.get("verbatim", True)
            configs[repo_id] = json.loads(file.read_text())
            index[repo_id] = {
                "file": file.name,
                "origin": origin if not note else f"{origin}: {note.get('origin')}",
                "verbatim": verbatim,
                **({"note": note["note"]} if note.get("note") else {}),
            }
    for repo_id, (config, origin) in EXTRA.items():
        configs[repo_id] = config
        index[repo_id] = {"file": repo_id.replace("/", "--") + ".json", "origin": origin,
                          "verbatim": False}  # fmt: skip
    for repo_id, sibling in UNQUANTIZED.items():
        configs[repo_id] = {k: v for k, v in configs[sibling].items() if k != "quantization_config"}
        index[repo_id] = {"file": repo_id.replace("/", "--") + ".json", "verbatim": False,
                          "origin": f"{sibling} without its quantization_config"}  # fmt: skip
    for repo_id, (vision, top) in VISION.items():
        config = configs[repo_id]
        config["vision_config"] = {**config["vision_config"], **vision}
        config.update(top)
        index[repo_id]["origin"] = f"{index[repo_id]['origin']}; vision_config sizes added"
    for repo_id, entry in index.items():
        config = configs[repo_id]
        entry["total_params_b"] = config.get("total_params_b")
        (OUT / str(entry["file"])).write_text(json.dumps(config, indent=2) + "\n")
    return index


def main() -> int:
    shared = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_SHARED
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*--*.json"):
        old.unlink()
    index = build(shared)
    (OUT / "INDEX.json").write_text(json.dumps(dict(sorted(index.items())), indent=2) + "\n")
    print(f"{len(index)} models in {OUT.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
