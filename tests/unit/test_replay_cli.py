"""`inferfleet simulate` end to end in-process: table, JSON, fleet manifest, plot, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from controllers.policy.planning import plan_spec
from inferfleet.cli import main
from inferfleet.manifests import load_fleet
from tests.conftest import REPO


def write_trace(path: Path, counts: list[int | None], flags: bool = False) -> Path:
    head = "minute,requests,input_tokens_sum,output_tokens_sum" + (
        ",gap,suspect_partial" if flags else ""
    )
    rows = [head]
    for m, c in enumerate(counts):
        gap = c is None
        cells = [str(m), "0" if gap else str(c), "", ""]
        if flags:
            cells += ["1" if gap else "0", "0"]
        rows.append(",".join(cells))
    path.write_text("\n".join(rows) + "\n")
    return path


# A morning ramp with a step the oracle sees coming and a reactive policy does not.
COUNTS = [600] * 30 + [1800] * 30 + [3600] * 40 + [1200] * 20


def test_json_figures_for_every_policy(tmp_path, capsys):
    trace = write_trace(tmp_path / "t.csv", COUNTS)
    rc = main(
        [
            "simulate",
            "--trace",
            str(trace),
            "--usable-rps-per-replica",
            "2",
            "--cold-start-s",
            "300",
            "--output",
            "json",
            "--cost-per-gpu-hour",
            "2.5",
        ]
    )
    assert rc == 0
    out = json.loads(capsys.readouterr().out)["policies"]
    assert set(out) == {"predictive", "reactive", "static", "oracle"}
    assert out["oracle"]["sloMetShare"] == 1.0 == out["static"]["sloMetShare"]
    assert out["oracle"]["replicaHours"] < out["predictive"]["replicaHours"]
    assert out["predictive"]["sloMetShare"] >= out["reactive"]["sloMetShare"]
    assert out["predictive"]["costUSD"] == pytest.approx(
        2.5 * out["predictive"]["gpuHours"], abs=0.01
    )
    assert out["oracle"]["scoredMinutes"] == len(COUNTS) - 1


def test_gap_minutes_are_not_scored(tmp_path, capsys):
    trace = write_trace(tmp_path / "t.csv", [600] * 20 + [None] * 5 + [600] * 20, flags=True)
    main(
        [
            "simulate",
            "--trace",
            str(trace),
            "--usable-rps-per-replica",
            "2",
            "--cold-start-s",
            "300",
            "--output",
            "json",
        ]
    )
    out = json.loads(capsys.readouterr().out)["policies"]
    assert out["oracle"]["scoredMinutes"] == 44 - 5


def test_fleet_manifest_and_plot(tmp_path, capsys):
    fleet = yaml.safe_load((REPO / "examples" / "fleet-code-8b.yaml").read_text())
    fleet["spec"]["workload"]["usableRPSPerReplica"] = "2.5"
    manifest = tmp_path / "fleet.yaml"
    manifest.write_text(yaml.safe_dump(fleet))
    trace = write_trace(tmp_path / "t.csv", COUNTS)
    png = tmp_path / "plot.png"
    rc = main(
        [
            "simulate",
            "--trace",
            str(trace),
            "--fleet",
            str(manifest),
            "--cold-start-s",
            "240",
            "--plot",
            str(png),
        ]
    )
    assert rc == 0
    table = capsys.readouterr().out
    assert "oracle" in table and "SLO-met" in table
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fleet_without_usable_rps_takes_the_plans_figure(tmp_path, capsys):
    trace = write_trace(tmp_path / "t.csv", COUNTS)
    example = REPO / "examples" / "fleet-code-8b.yaml"
    args = ["simulate", "--trace", str(trace), "--fleet", str(example), "--cold-start-s", "240"]
    assert main([*args, "--output", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    fleet = load_fleet(str(example))
    planned = plan_spec(fleet.spec, fleet.spec.model.hf_config.inline)
    assert report["usableRPSPerReplica"] == pytest.approx(planned.allocations[0].option.usable_rps)


def test_fleet_gpus_per_replica_come_from_the_plan_unless_given(tmp_path, capsys):
    trace = write_trace(tmp_path / "t.csv", COUNTS)
    example = REPO / "examples" / "fleet-moe.yaml"
    args = ["simulate", "--trace", str(trace), "--fleet", str(example), "--cold-start-s", "240"]
    assert main([*args, "--output", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    fleet = load_fleet(str(example))
    planned = plan_spec(fleet.spec, fleet.spec.model.hf_config.inline).allocations[0].option
    assert report["gpusPerReplica"] == planned.gpus_per_replica > 1
    oracle = report["policies"]["oracle"]
    assert oracle["gpuHours"] == pytest.approx(
        oracle["replicaHours"] * planned.gpus_per_replica, abs=0.01
    )
    assert main([*args, "--gpus-per-replica", "3", "--output", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["gpusPerReplica"] == 3


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("minute,requests\n0,5\n", "missing column(s) input_tokens_sum, output_tokens_sum"),
        (
            "minute,requests,input_tokens_sum,output_tokens_sum\n0,lots,,\n",
            "line 2: requests 'lots' is not a number",
        ),
        (
            "minute,requests,input_tokens_sum,output_tokens_sum\n0,-4,,\n",
            "line 2: requests '-4' must be a count from 0",
        ),
        (
            "minute,requests,input_tokens_sum,output_tokens_sum\n0,1e400,,\n",
            "'1e400' must be a count",
        ),
        ("minute,requests,input_tokens_sum,output_tokens_sum\n0,nan,,\n", "'nan' must be a count"),
        (
            "minute,requests,input_tokens_sum,output_tokens_sum\n0,5,1,1\n50000000,5,1,1\n",
            "a trace may span at most",
        ),
    ],
)
def test_bad_trace_is_one_line_and_exit_2(tmp_path, capsys, content, message):
    trace = tmp_path / "bad.csv"
    trace.write_text(content)
    rc = main(
        [
            "simulate",
            "--trace",
            str(trace),
            "--usable-rps-per-replica",
            "2",
            "--cold-start-s",
            "300",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1


def _true_capacity(tmp_path: Path, capsys: pytest.CaptureFixture[str], factor: str) -> dict:
    trace = write_trace(tmp_path / "t.csv", COUNTS * 3)
    args = ["simulate", "--trace", str(trace), "--usable-rps-per-replica", "2"]
    args += ["--cold-start-s", "300", "--output", "json", "--true-capacity-factor", factor]
    assert main(args) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("factor", ["0.6", "1.6"])
def test_a_fleet_off_its_declared_capacity_is_caught_by_the_closed_loop(tmp_path, capsys, factor):
    out = _true_capacity(tmp_path, capsys, factor)
    p = out["policies"]
    assert out["trueCapacityFactor"] == float(factor)
    assert p["oracle (true capacity)"]["sloMetShare"] == 1.0
    assert p["oracle (true capacity)"]["timedOutRequests"] == 0
    closed, blind = p["predictive"], p["predictive, open loop"]
    if factor == "0.6":  # blind to the shortfall it queues and drops; the closed loop does not
        assert blind["timedOutRequests"] > 0 == closed["timedOutRequests"]
        assert closed["sloMetShare"] > blind["sloMetShare"] + 0.2
    else:  # blind to the headroom it pays for it; the closed loop measures it and shrinks
        assert closed["replicaHours"] < blind["replicaHours"]


def test_a_bad_capacity_factor_is_named(tmp_path, capsys):
    trace = write_trace(tmp_path / "t.csv", COUNTS)
    args = ["simulate", "--trace", str(trace), "--usable-rps-per-replica", "2"]
    args += ["--cold-start-s", "300", "--true-capacity-factor", "0"]
    assert main(args) == 2
    assert "--true-capacity-factor must be above 0" in capsys.readouterr().err


def test_simulate_prints_the_predictive_policys_scorecard(tmp_path, capsys):
    trace = write_trace(tmp_path / "t.csv", COUNTS)
    args = ["simulate", "--trace", str(trace), "--usable-rps-per-replica", "2",
            "--cold-start-s", "300"]  # fmt: skip
    assert main([*args, "--output", "json"]) == 0
    found = json.loads(capsys.readouterr().out)
    hour, day, week = found["scorecard"]
    assert [w["window"] for w in (hour, day, week)] == ["1h", "24h", "7d"]
    scored = found["policies"]["predictive"]
    # Two hours of trace: the day's window holds all of it and agrees with the replay's score.
    assert day["coveredMinutes"] == scored["scoredMinutes"] == len(COUNTS) - 1
    assert float(day["sloMetPercent"]) == pytest.approx(100 * scored["sloMetShare"], abs=0.01)
    assert float(day["replicaHours"]) == pytest.approx(scored["replicaHours"], abs=0.1)
    # The lower bound is demand / capacity: below the oracle, which also pays for cold starts.
    assert float(day["lowerBoundReplicaHours"]) <= found["policies"]["oracle"]["replicaHours"]
    assert hour["coveredMinutes"] <= 61 < day["coveredMinutes"]
    assert "forecastMAPEPercent" in day and "reactiveMAPEPercent" in day
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "scorecard" in text and "forecast MAPE" in text and "24h" in text
