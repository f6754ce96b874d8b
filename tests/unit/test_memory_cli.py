"""`inferfleet memory`: the JSON contract other tools read, the table, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from inferfleet.cli import main
from tests.conftest import CALIBRATION

LLAMA8B = str(CALIBRATION / "model_configs" / "meta-llama--Llama-3.1-8B-Instruct.json")
GPT_OSS = str(CALIBRATION / "model_configs" / "openai--gpt-oss-20b.json")
CONTRACT = ("weights_gib", "activation_gib", "non_torch_gib", "kv_cache_gib", "kv_cache_tokens",
            "max_concurrency")  # fmt: skip


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    assert main(["memory", *argv, "--output", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_json_contract(capsys: pytest.CaptureFixture[str]) -> None:
    out = _json(capsys, "--model-config", LLAMA8B, "--gpu", "H100", "--tp", "1",
                "--gpu-memory-utilization", "0.95", "--max-model-len", "8192")  # fmt: skip
    assert set(CONTRACT) <= set(out)
    assert out["max_concurrency"] == pytest.approx(out["kv_cache_tokens"] / 8192)
    # vLLM 0.19 logged 476,016 tokens for exactly this start-up.
    assert out["kv_cache_tokens"] == pytest.approx(476_016, rel=0.01)
    assert out["weights_gib"] + out["activation_gib"] + out["non_torch_gib"] + out[
        "kv_cache_gib"
    ] == pytest.approx(79.19 * 0.95)


def test_tp_pp_quantization_and_kv_dtype_flags(capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--model-config", LLAMA8B, "--gpu", "H100", "--max-model-len", "8192"]
    one = _json(capsys, *base, "--tp", "1")
    two = _json(capsys, *base, "--tp", "2")
    fp8 = _json(capsys, *base, "--tp", "1", "--quantization", "fp8", "--kv-cache-dtype", "fp8")
    pp = _json(capsys, *base, "--tp", "1", "--pp", "2", "--enforce-eager")
    assert two["weights_gib"] == pytest.approx(one["weights_gib"] / 2, rel=0.01)
    assert two["kv_cache_tokens"] > 2 * one["kv_cache_tokens"]
    assert fp8["weights_gib"] < 0.6 * one["weights_gib"]
    assert fp8["kv_cache_tokens"] > 2 * one["kv_cache_tokens"]
    assert pp["cuda_graph_gib"] == 0 and pp["pp"] == 2


def test_guide_method_and_params_override(capsys: pytest.CaptureFixture[str]) -> None:
    out = _json(capsys, "--model-config", LLAMA8B, "--gpu", "H100", "--tp", "1",
                "--method", "guide", "--params-b", "8", "--max-model-len", "8192")  # fmt: skip
    assert out["method"] == "guide"
    assert out["weights_gib"] == pytest.approx(16e9 / 2**30)
    assert out["activation_gib"] == pytest.approx(0.2 * out["weights_gib"])


def test_readable_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["memory", "--model-config", GPT_OSS, "--gpu", "H100", "--tp", "2"]) == 0
    text = capsys.readouterr().out
    assert "TP 2" in text and "KV cache" in text and "tokens per replica" in text
    assert "max concurrency at 131,072 tokens" in text


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--gpu", "H999", "--tp", "1"], "unknown GPU 'H999'; known GPUs: H100-SXM-80GB"),
        (["--gpu", "H100", "--tp", "two"], "--tp: expected an integer, got 'two'"),
        (["--gpu", "H100", "--tp", "0"], "--tp: 0 is out of range"),
        (["--gpu", "H100", "--tp", "3"], "tp: 3 does not divide num_attention_heads 32"),
        (["--gpu", "H100", "--tp", "1", "--gpu-memory-utilization", "1.5"],
         "--gpu-memory-utilization: 1.5 is out of range"),
        (["--gpu", "L4", "--tp", "1", "--max-model-len", "4096", "--params-b", "70"],
         "GiB per GPU before any KV cache"),
        (["--gpu", "H100", "--tp", "1", "--gpu-memory-utilization", "0.25"],
         "less than one request of max_model_len 131072"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    assert main(["memory", "--model-config", LLAMA8B, *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err


def test_bad_config_files(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "config.json"
    broken.write_text('{"hidden_size": 4096,\n}')
    assert main(["memory", "--model-config", str(broken), "--gpu", "H100", "--tp", "1"]) == 2
    assert "invalid JSON at line 2" in capsys.readouterr().err
    broken.write_text('{"hidden_size": 4096}')
    assert main(["memory", "--model-config", str(broken), "--gpu", "H100", "--tp", "1"]) == 2
    assert "config.json: missing key 'num_hidden_layers'" in capsys.readouterr().err
    missing = str(tmp_path / "nope.json")
    assert main(["memory", "--model-config", missing, "--gpu", "H100", "--tp", "1"]) == 2
    assert "cannot read config.json" in capsys.readouterr().err


def test_console_script_prints_no_traceback() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "inferfleet.cli", "memory", "--model-config", LLAMA8B,
         "--gpu", "nope", "--tp", "1"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("spelling", "name"),
    [
        ("RTX-PRO-6000", "RTX-PRO-6000"),
        ("rtx pro 6000", "RTX-PRO-6000"),
        ("GB10", "GB10"),
        ("Jetson-AGX-Thor", "Jetson-AGX-Thor"),
        ("jetson agx thor", "Jetson-AGX-Thor"),
        ("MI300X", "MI300X"),
        ("mi325x", "MI325X"),
        ("MI-355X", "MI355X"),
        ("H20", "H20"),
        ("gb200", "GB200"),
        ("B300", "B300"),
    ],
)
def test_gpu_accepts_every_name_the_catalog_promises(
    capsys: pytest.CaptureFixture[str], spelling: str, name: str
) -> None:
    """Case, dashes and spaces ignored; the unified-memory devices are sized at a utilization
    their host leaves room for."""
    out = _json(capsys, "--model-config", LLAMA8B, "--gpu", spelling, "--tp", "1",
                "--max-model-len", "8192", "--gpu-memory-utilization", "0.8")  # fmt: skip
    assert out["gpu"] == name and out["kv_cache_tokens"] > 8192


def test_engine_extras_flags(capsys: pytest.CaptureFixture[str]) -> None:
    """--speculative-config / --mm-processor-kwargs / --mamba-cache-mode reach the model the
    way extraArgs do: Qwen3.5-9B's MTP layer costs weights and tokens, a hybrid's "all" mode
    lowers the requests of max_model_len the pool holds."""
    base = ["--model", "Qwen/Qwen3.5-9B", "--offline", "--gpu", "H100", "--tp", "1",
            "--max-model-len", "32768"]  # fmt: skip
    plain = _json(capsys, *base)
    mtp = _json(capsys, *base, "--speculative-config",
                '{"method": "qwen3_5_mtp", "num_speculative_tokens": 2}')  # fmt: skip
    every = _json(capsys, *base, "--mamba-cache-mode", "all")
    assert mtp["weights_gib"] > plain["weights_gib"]
    assert mtp["kv_cache_tokens"] < plain["kv_cache_tokens"]
    assert every["max_concurrency"] < plain["max_concurrency"]


@pytest.mark.parametrize(
    ("flag", "value", "words"),
    [
        ("--speculative-config", "{mtp}", "--speculative-config must be a JSON object"),
        ("--mm-processor-kwargs", '{"max_pixels": -1}', "max_pixels must be an integer"),
    ],
)
def test_bad_engine_extras_flag_is_one_line(
    capsys: pytest.CaptureFixture[str], flag: str, value: str, words: str
) -> None:
    argv = ["memory", "--model-config", LLAMA8B, "--gpu", "H100", "--tp", "1", flag, value]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err and "extraArgs" not in err
