"""`inferfleet plan` on bad input: one line on stderr naming the problem, exit code 2."""

from pathlib import Path

import pytest

from inferfleet.cli import main
from tests.conftest import REPO

EXAMPLE = REPO / "examples" / "fleet-chat-70b.yaml"


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_missing_file(capsys, tmp_path):
    code, out, err = run(capsys, "plan", str(tmp_path / "nope.yaml"))
    assert code == 2
    assert "cannot read" in err and "nope.yaml" in err
    assert out == ""


def test_malformed_yaml_names_the_line(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: inferfleet.io/v1alpha1\nkind: InferenceFleet\nspec: [1,\n")
    code, _, err = run(capsys, "plan", str(bad))
    assert code == 2
    assert "invalid YAML at line" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("ttftP99: 2s", "ttftP99: 2 seconds", "spec.slo.ttftP99: '2 seconds' is not a duration"),
        ("maxGPUs: 64", "maxGPUs: 0", "spec.pools.0.maxGPUs"),
        ("p50: 1000, p95: 3500", "p50: 5000, p95: 3500", "p50 <= p95 <= p99"),
        ("gpu: H200-141GB", "gpu: H200-141GB\n      gpuCount: 2", "gpuCount: unknown field"),
        ('peakRequestsPerSecond: "120"', "peakRequestsPerSecond: 120.5", "peakRequestsPerSecond"),
    ],
)
def test_invalid_field_is_named(capsys, tmp_path, old, new, expected):
    text = EXAMPLE.read_text()
    assert old in text
    bad = tmp_path / "fleet.yaml"
    bad.write_text(text.replace(old, new, 1))
    code, out, err = run(capsys, "plan", str(bad))
    assert code == 2, err
    assert expected in err
    assert out == ""


def test_config_map_ref_needs_local_config(capsys, tmp_path):
    text = Path(EXAMPLE).read_text()
    start = text.index("    hfConfig:")
    end = text.index("    parameterCount:")
    ref = "    hfConfig:\n      configMapRef: {name: llama-70b-config}\n"
    bad = tmp_path / "fleet.yaml"
    bad.write_text(text[:start] + ref + text[end:])
    code, _, err = run(capsys, "plan", str(bad))
    assert code == 2
    assert "--hf-config" in err and "llama-70b-config" in err


def test_not_a_fleet(capsys, tmp_path):
    other = tmp_path / "cm.yaml"
    other.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    code, _, err = run(capsys, "plan", str(other))
    assert code == 2
    assert "no document with kind: InferenceFleet" in err
