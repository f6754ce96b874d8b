"""The adversarial trace generator and `inferfleet simulate --synthetic` (bounds at work)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from controllers.policy.scaling.synthetic import (
    KINDS,
    OUTAGE_MINUTES,
    OUTAGE_START_MINUTE,
    synthetic_trace,
)
from inferfleet.cli import main


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_is_seeded_sized_and_shaped(kind):
    a = synthetic_trace(kind, days=2, peak_rps=50, seed=3)
    assert a == synthetic_trace(kind, days=2, peak_rps=50, seed=3)
    assert a != synthetic_trace(kind, days=2, peak_rps=50, seed=4)
    counts = np.array(a.requests)
    assert len(counts) == 2 * 1440 and a.interval_s == 60.0 and counts.min() >= 0
    smooth = np.array(synthetic_trace("sinusoid", days=2, peak_rps=50, seed=3).requests)
    zeros = int((counts == 0).sum())
    if kind == "spike":
        assert counts.max() > 2 * smooth.max()
    elif kind == "step":
        assert np.abs(counts - smooth).max() > 0.5 * smooth.max()
    elif kind == "zeros":
        assert zeros >= 5
    elif kind == "outage":
        assert zeros == OUTAGE_MINUTES
        assert counts[OUTAGE_START_MINUTE + OUTAGE_MINUTES] > 0.5 * counts[OUTAGE_START_MINUTE - 1]
    else:
        assert zeros == 0 and 0.9 * 50 * 60 < counts.max() < 1.2 * 50 * 60


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("nope", 1, 1), "kind 'nope' is unknown; choose one of spike"),
        (("spike", 0, 1), "days must be above 0"),
        (("spike", 1, -2), "peak must be above 0"),
    ],
)
def test_bad_generator_arguments_are_named(args, message):
    with pytest.raises(ValueError, match=message):
        synthetic_trace(*args)


SIMULATE = ["simulate", "--usable-rps-per-replica", "1.7", "--cold-start-s", "300"]


def test_simulate_outage_shows_the_bounded_ask(capsys):
    args = [*SIMULATE, "--synthetic", "outage", "--days", "2.5", "--peak-rps", "50"]
    assert main([*args, "--seed", "1", "--output", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    ask = out["highestAsk"]
    assert ask["peakNeedSoFar"] >= 1 and ask["ratio"] <= 2.5  # unbounded: thousands
    assert out["policies"]["predictive"]["scoredMinutes"] == int(2.5 * 1440) - 1
    assert main([*args, "--seed", "1"]) == 0
    assert "predictive's highest ask:" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--synthetic", "wave"], "invalid choice: 'wave'"),
        (["--synthetic", "spike", "--days", "0"], "--days must be above 0"),
        (["--synthetic", "spike", "--peak-rps", "nan"], "--peak-rps must be above 0"),
        (["--synthetic", "spike", "--trace", "x.csv"], "not allowed with argument"),
    ],
)
def test_bad_synthetic_flags_exit_2_with_the_flag_named(capsys, flags, message):
    try:
        rc = main([*SIMULATE, *flags])
    except SystemExit as exit_:  # argparse's own errors
        rc = int(exit_.code or 0)
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err
