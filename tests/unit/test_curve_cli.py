"""`inferfleet curve`: the JSON interface other tools read, the table, the plot, bad input."""

from __future__ import annotations

import json

import pytest

from inferfleet.cli import main
from tests.conftest import CALIBRATION

LLAMA_8B = str(CALIBRATION / "model_configs" / "meta-llama--Llama-3.1-8B-Instruct.json")
BASE = ["curve", "--model-config", LLAMA_8B, "--gpu", "H100", "--tp", "1",
        "--max-model-len", "4096", "--input-len", "512", "--output-len", "64",
        "--num-prompts", "64"]  # fmt: skip
POINT_KEYS = {"ttft_p50_ms", "ttft_p99_ms", "itl_p50_ms", "itl_p99_ms", "tpot_p50_ms",
              "output_tok_per_s", "total_tok_per_s", "request_per_s"}  # fmt: skip
BAND_KEYS = {"regime", "output_tok_per_s_p10", "output_tok_per_s_p90", "request_per_s_p10",
             "ttft_p50_ms_p10", "ttft_p50_ms_p90", "ttft_p99_ms_high", "itl_p50_ms_p10",
             "itl_p50_ms_p90", "itl_p99_ms_high"}  # fmt: skip


def run_json(capsys, *extra: str) -> list[dict]:
    assert main([*BASE, *extra, "--output", "json"]) == 0
    return json.loads(capsys.readouterr().out)["points"]


def test_concurrency_sweep_json_has_the_bench_fields(capsys):
    points = run_json(capsys, "--concurrency", "1,8,32")
    assert [p["concurrency"] for p in points] == [1, 8, 32]
    for p in points:
        assert set(p) == POINT_KEYS | BAND_KEYS | {"concurrency"}
        assert p["output_tok_per_s_p10"] <= p["output_tok_per_s_p90"]
        assert p["request_per_s_p10"] > 0 and p["ttft_p99_ms_high"] > 0
        assert p["itl_p50_ms_p10"] <= p["itl_p50_ms_p90"]
        assert p["ttft_p99_ms"] >= p["ttft_p50_ms"] > 0
        # Fixed lengths: total = output × (input + output) / output.
        assert p["total_tok_per_s"] == pytest.approx(p["output_tok_per_s"] * (512 + 64) / 64)
    assert points[2]["output_tok_per_s"] > points[0]["output_tok_per_s"] * 5
    assert points[0]["regime"] == "low" and points[2]["regime"] != "low"


def test_request_rate_sweep_json(capsys):
    points = run_json(capsys, "--request-rate", "1,4")
    assert [p["request_rate"] for p in points] == [1.0, 4.0]
    assert points[0]["request_per_s"] == pytest.approx(1.0, rel=0.5)


def test_table_and_plot(capsys, tmp_path):
    png = tmp_path / "curve.png"
    code = main([*BASE, "--concurrency", "1,4,16", "--ttft-slo-ms", "500", "--plot", str(png)])
    assert code == 0
    out = capsys.readouterr().out
    assert "TTFT P99 ms" in out and "C=16" in out and "C_max" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--concurrency", "4", "--tp", "0"], "--tp"),
        (["--concurrency", "4", "--gpu", "H900"], "unknown GPU"),
        (["--concurrency", "4", "--input-len", "5000"], "max_model_len"),
        (["--concurrency", "4", "--quantization", "int3"], "quantization"),
        (["--request-rate", "2", "--plot", "x.png"], "--plot"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, extra, message):
    assert main([*BASE, *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert len(err.splitlines()) == 1


def test_a_malformed_sweep_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*BASE, "--concurrency", "0,4"])
    assert exit_info.value.code == 2
    assert "--concurrency values must all be > 0" in capsys.readouterr().err


def test_missing_config_file_is_named(capsys, tmp_path):
    args = [*BASE, "--concurrency", "4"]
    args[args.index(LLAMA_8B)] = str(tmp_path / "nope.json")
    assert main(args) == 2
    assert "nope.json" in capsys.readouterr().err


def test_a_model_that_does_not_fit_says_so(capsys):
    seventy_b = str(CALIBRATION / "model_configs" / "meta-llama--Llama-2-70b-hf.json")
    args = [*BASE, "--concurrency", "4"]
    args[args.index(LLAMA_8B)] = seventy_b
    assert main(args) == 2
    assert "does not fit" in capsys.readouterr().err


def test_a_kv_cache_shorter_than_max_model_len_says_what_to_do(capsys):
    args = [*BASE, "--concurrency", "4", "--gpu", "L4", "--max-model-len", "131072"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "131072" in err and "lower max_model_len" in err


@pytest.mark.parametrize(
    ("content", "expected"),
    [(None, "cannot read --model-config"), ("{not json", "invalid JSON at line 1"),
     ("[1, 2]", "expected a JSON object")],
)  # fmt: skip
def test_a_bad_model_config_is_one_line_naming_the_flag(tmp_path, capsys, content, expected):
    path = tmp_path / "config.json"
    if content is not None:
        path.write_text(content)
    args = [*BASE, "--concurrency", "1"]
    args[args.index(LLAMA_8B)] = str(path)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert expected in err and len(err.strip().splitlines()) == 1
