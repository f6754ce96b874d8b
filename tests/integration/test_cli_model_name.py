"""`--model NAME` on plan, memory and curve: the catalog offline, a fake Hub over HTTP, errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from inferfleet.cli import main
from inferfleet_testing.checkpoints import dense_decoder_tensors, safetensors_header
from inferfleet_testing.fake_hub import FakeHub
from tests.conftest import CALIBRATION, REPO

LLAMA = "meta-llama/Llama-3.1-8B-Instruct"
LLAMA_CONFIG = str(CALIBRATION / "model_configs" / "meta-llama--Llama-3.1-8B-Instruct.json")
MEMORY = ["memory", "--gpu", "H100", "--tp", "1", "--max-model-len", "8192", "--output", "json"]


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    config = json.loads(Path(LLAMA_CONFIG).read_text())
    fake = FakeHub()
    fake.add_model("acme/llama-8b", config, {"model.safetensors": safetensors_header(
        dense_decoder_tensors(config))})  # fmt: skip
    with fake.serving():
        monkeypatch.setenv("HF_ENDPOINT", fake.url)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        yield fake


def _memory(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    assert main([*MEMORY, *argv]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def test_memory_by_name_offline_equals_the_same_config_file(
    capsys: pytest.CaptureFixture[str],
) -> None:
    by_name = _memory(capsys, "--model", LLAMA, "--offline")
    by_file = _memory(capsys, "--model-config", LLAMA_CONFIG)
    assert by_name["kv_cache_tokens"] == by_file["kv_cache_tokens"]


def test_memory_from_the_hub_counts_the_header_bytes(
    capsys: pytest.CaptureFixture[str], hub: FakeHub
) -> None:
    exact = _memory(capsys, "--model", "acme/llama-8b")
    assert exact["weights_gib"] == pytest.approx(14.99, abs=0.005)  # as vLLM 0.19 logs it
    assert exact["total_params"] == 8_030_261_248
    assert any(r.range for r in hub.requests)


def test_unknown_model_offline_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], hub: FakeHub
) -> None:
    assert main([*MEMORY, "--model", "acme/unknown", "--offline"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ModelConfigUnavailable" not in err
    assert "--model" in err and "built-in catalog (not listed)" in err and "offline" in err
    assert hub.requests == []


def test_model_and_model_config_together_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([*MEMORY, "--model", LLAMA, "--model-config", LLAMA_CONFIG])
    assert exit_.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_plan_of_a_manifest_without_hf_config_and_with_model(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    docs = list(yaml.safe_load_all((REPO / "examples" / "fleet-code-8b.yaml").read_text()))
    fleet = next(d for d in docs if d and d.get("kind") == "InferenceFleet")
    inline_path = tmp_path / "inline.yaml"
    inline_path.write_text(yaml.safe_dump(fleet))
    del fleet["spec"]["model"]["hfConfig"]
    path = tmp_path / "by-name.yaml"
    path.write_text(yaml.safe_dump(fleet))
    assert main(["plan", str(path), "--offline", "--output", "json"]) == 0
    by_name = json.loads(capsys.readouterr().out)
    assert main(["plan", str(inline_path), "--output", "json"]) == 0
    inline = json.loads(capsys.readouterr().out)
    # The catalog's config and the example's inline one plan alike; only the band's median
    # can differ in its last printed digit, so the bands are compared as numbers.
    bands = [(p.pop("usableRPSBand"), q.pop("usableRPSBand")) for p, q in zip(
        by_name["pools"], inline["pools"], strict=True)]  # fmt: skip
    assert by_name["pools"] == inline["pools"]
    for a, b in bands:
        assert a["regime"] == b["regime"]
        for q in ("p10", "p50", "p90"):
            assert float(a[q]) == pytest.approx(float(b[q]), rel=1e-3)
    assert main(["plan", str(path), "--offline"]) == 0
    assert "built-in catalog" in capsys.readouterr().out.splitlines()[0]
    assert main(["plan", str(inline_path), "--model", "acme/none", "--offline"]) == 2
    assert "acme/none" in capsys.readouterr().err


def test_curve_by_name(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["curve", "--model", LLAMA, "--offline", "--gpu", "H100", "--max-model-len", "4096",
            "--input-len", "512", "--output-len", "64", "--num-prompts", "32",
            "--concurrency", "1,8", "--output", "json"]  # fmt: skip
    assert main(argv) == 0
    points = json.loads(capsys.readouterr().out)["points"]
    assert len(points) == 2 and points[1]["output_tok_per_s"] > points[0]["output_tok_per_s"]


def test_memory_of_a_multimodal_model_with_and_without_images(
    capsys: pytest.CaptureFixture[str],
) -> None:
    gemma = ["--model", "google/gemma-3-27b-it", "--offline", "--max-num-seqs", "64"]
    images = _memory(capsys, *gemma)
    text = _memory(capsys, *gemma, "--limit-mm-per-prompt", "0")
    assert images["activation_gib"] > text["activation_gib"]
    assert images["kv_cache_tokens"] < text["kv_cache_tokens"]
    assert main([*MEMORY, *gemma, "--limit-mm-per-prompt", "-1"]) == 2
    assert "--limit-mm-per-prompt: -1 is out of range" in capsys.readouterr().err
