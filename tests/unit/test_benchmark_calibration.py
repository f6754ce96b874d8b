"""Calibration: the fit recovers known efficiency factors; the YAML loader explains bad files."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from inferfleet.calibration import (
    MeasuredPoint,
    calibration_document,
    fit_efficiency,
    load_calibration,
    rms_log_error,
    simulator_predictor,
    write_calibration,
)
from inferfleet.errors import UsageError
from sizing.errors import SizingError
from sizing.hardware import get_gpu
from sizing.memory import EngineConfig, estimate_memory
from sizing.model import load_model_config
from sizing.performance import DEFAULT_EFFICIENCY, build_step_model, replica_shape
from tests.conftest import CALIBRATION

LLAMA_3_8B = CALIBRATION / "model_configs" / "meta-llama--Meta-Llama-3-8B.json"


@pytest.fixture(scope="module")
def predict():
    arch = load_model_config(json.loads(LLAMA_3_8B.read_text()))
    gpu, cfg = get_gpu("L4"), EngineConfig()
    return simulator_predictor(arch, gpu, cfg, estimate_memory(arch, gpu, cfg), 512, 64)


def _measure(predict, efficiency, loads=((1, 4), (8, 16), (32, 64))) -> list[MeasuredPoint]:
    points = []
    for concurrency, prompts in loads:
        p = predict(efficiency, concurrency, prompts)
        points.append(
            MeasuredPoint(concurrency, prompts, p.ttft_p50_s, p.itl_p50_s, p.output_tok_per_s)
        )
    return points


@pytest.mark.parametrize(
    ("compute", "hbm", "overhead_s"), [(0.4, 0.6, 0.003), (0.7, 0.9, 0.0002), (0.3, 0.5, 0.008)]
)
def test_fit_recovers_the_efficiency_that_produced_the_curve(predict, compute, hbm, overhead_s):
    truth = replace(
        DEFAULT_EFFICIENCY, compute_fraction=compute, hbm_fraction=hbm, step_overhead_s=overhead_s
    )
    fit = fit_efficiency(predict, _measure(predict, truth))
    assert fit.rms_log_error_before > 0.05
    assert fit.rms_log_error_after < 0.01
    assert fit.efficiency.compute_fraction == pytest.approx(compute, rel=0.05)
    # Weight-bound decode steps time weights / HBM + the step's fixed costs as one sum, whose
    # split such a curve does not identify (the fit can trade a higher HBM fraction for a
    # larger step overhead): what it must recover is the decode step itself.
    for batch in (1, 32):
        fitted_s = _decode_step_s(fit.efficiency, batch)
        assert fitted_s == pytest.approx(_decode_step_s(truth, batch), rel=0.03)


def _decode_step_s(efficiency, batch: int, context_tokens: int = 540) -> float:
    arch = load_model_config(json.loads(LLAMA_3_8B.read_text()))
    gpu = get_gpu("L4")
    return build_step_model(replica_shape(arch, gpu, 1), gpu, efficiency).decode_step_s(
        batch, context_tokens
    )


def test_a_curve_the_defaults_already_explain_stays_at_the_defaults(predict):
    measured = _measure(predict, DEFAULT_EFFICIENCY)
    assert rms_log_error(predict, DEFAULT_EFFICIENCY, measured) == pytest.approx(0, abs=1e-9)
    fit = fit_efficiency(predict, measured)
    assert fit.rms_log_error_after <= 1e-9
    for name in ("compute_fraction", "hbm_fraction", "step_overhead_s"):
        assert getattr(fit.efficiency, name) == pytest.approx(getattr(DEFAULT_EFFICIENCY, name))


def test_written_calibration_loads_back_as_the_fitted_efficiency(predict, tmp_path):
    truth = replace(DEFAULT_EFFICIENCY, compute_fraction=0.45, hbm_fraction=0.7)
    fit = fit_efficiency(predict, _measure(predict, truth))
    path = tmp_path / "cal.yaml"
    write_calibration(path, calibration_document(fit, "L4", "llama", 3))
    assert load_calibration(path) == fit.efficiency


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("kind: Other\n", "kind: EfficiencyCalibration"),
        ("kind: EfficiencyCalibration\n", "efficiency must map"),
        ("kind: EfficiencyCalibration\nefficiency: {speed: 1}\n", "unknown efficiency field"),
        ("kind: EfficiencyCalibration\nefficiency: {hbm_fraction: x}\n", "must be a number"),
        ("kind: [\n", "not readable YAML"),
    ],
)
def test_bad_calibration_files_name_the_file_and_the_field(tmp_path, text, needle):
    path = tmp_path / "cal.yaml"
    path.write_text(text)
    with pytest.raises(UsageError) as info:
        load_calibration(path)
    assert needle in str(info.value) and "cal.yaml" in str(info.value)


def test_out_of_range_efficiency_is_refused_by_the_model_itself(tmp_path):
    path = tmp_path / "cal.yaml"
    path.write_text("kind: EfficiencyCalibration\nefficiency: {hbm_fraction: 1.5}\n")
    with pytest.raises(SizingError, match="hbm_fraction"):
        load_calibration(path)


def test_missing_calibration_file_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="No such file"):
        load_calibration(tmp_path / "nope.yaml")
