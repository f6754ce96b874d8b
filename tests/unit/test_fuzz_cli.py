"""The CLI's inputs, fuzzed: flag values, trace files, manifests and policy-replay lines end in a
result or in exit 2 with one line naming what was wrong, never a traceback or a hang."""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inferfleet.cli import main
from inferfleet.commands.policy_replay import parse_line
from inferfleet.errors import UsageError
from inferfleet.inputs import FLAG_MAX, integer, number
from inferfleet.traces import read_per_minute
from tests.fuzz import FUZZ_EXAMPLES, fuzz_settings, tally

NUMBERS = st.one_of(
    st.sampled_from(["nan", "NaN", "inf", "-inf", "1e400", "-1e400", "1e308", "0", "-0", "1_0",
                     " 7 ", "0x10", "99999999999999999999999", "1e9", "1e10", "", "1,2", "½"]),
    st.text(max_size=10),
    st.floats().map(repr),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
)  # fmt: skip


@fuzz_settings
@given(text=NUMBERS)
def test_number_flags_are_finite_and_bounded_or_refused(text):
    for parse in (number, integer):
        try:
            value = parse(text)
        except argparse.ArgumentTypeError as err:
            assert repr(text) in str(err)
            tally("flag values", "refused")
        else:
            assert math.isfinite(value) and abs(value) <= FLAG_MAX
            tally("flag values", "accepted")


def _write(data: bytes, suffix: str) -> Path:
    with tempfile.NamedTemporaryFile(suffix=suffix, delete=False) as handle:
        handle.write(data)
    return Path(handle.name)


CSV_CELLS = st.one_of(NUMBERS, st.sampled_from(["50000000", "1", "0", "3", ""]))
TRACES = st.one_of(
    st.binary(max_size=80),
    st.lists(st.lists(CSV_CELLS, min_size=4, max_size=6), max_size=6)
    .map(
        lambda rows: (
            "minute,requests,input_tokens_sum,output_tokens_sum,gap\n"
            + "\n".join(",".join(r) for r in rows)
        )
    )
    .map(str.encode),
)


@fuzz_settings
@given(data=TRACES)
def test_any_trace_file_reads_or_is_refused_in_one_line(data):
    path = _write(data, ".csv")
    try:
        trace = read_per_minute(str(path))
    except UsageError as err:
        assert "\n" not in str(err)
        tally("trace files", "refused")
    else:
        assert all(c is None or c >= 0 for c in trace.requests)
        tally("trace files", "read")
    finally:
        path.unlink()


def _run(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exit_:  # argparse's own refusals
            code = int(exit_.code or 0)
    return code, err.getvalue()


TINY_TRACE = "minute,requests,input_tokens_sum,output_tokens_sum\n0,30,3000,600\n1,60,6000,1200\n"


# A whole command per example (parse, replay every policy): a fifth of the examples keeps CI quick.
@settings(parent=fuzz_settings, max_examples=max(50, FUZZ_EXAMPLES // 5))
@given(
    flag=st.sampled_from(["--usable-rps-per-replica", "--cold-start-s", "--start-s",
                          "--cost-per-gpu-hour", "--true-capacity-factor", "--gpus-per-replica"]),
    value=NUMBERS,
)  # fmt: skip
def test_simulate_flags_end_in_a_result_or_exit_2(flag, value):
    path = _write(TINY_TRACE.encode(), ".csv")
    defaults = {"--usable-rps-per-replica": "2", "--cold-start-s": "60"}
    argv = ["simulate", "--trace", str(path), "--output", "json"]
    for name, default in {**defaults, flag: value}.items():
        argv += (
            [name, default] if not value.startswith("-") or name != flag else [f"{name}={value}"]
        )
    try:
        code, err = _run(argv)
    finally:
        path.unlink()
    assert code in (0, 2), err
    assert "Traceback" not in err
    tally("simulate flags", "ran" if code == 0 else "exit 2")


@fuzz_settings
@given(data=st.binary(max_size=120) | st.text(max_size=120).map(str.encode))
def test_any_manifest_bytes_are_planned_or_exit_2_in_one_line(data):
    path = _write(data, ".yaml")
    try:
        code, err = _run(["plan", str(path)])
    finally:
        path.unlink()
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    tally("plan manifests", "exit 2")


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(10**25), max_value=10**25)
    | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3),
    max_leaves=5,
)  # fmt: skip
REPLAY_KEYS = ["t", "requests", "input_tokens", "output_tokens", "ready", "waiting", "served",
               "ttft_p99_s"]  # fmt: skip


@fuzz_settings
@given(
    record=st.fixed_dictionaries(
        {
            "t": st.integers(min_value=-(10**12), max_value=10**12) | JSON_VALUES,
            "requests": st.integers(min_value=-1, max_value=10**6) | JSON_VALUES,
        },
        optional={
            key: st.integers(min_value=-1, max_value=10**6) | JSON_VALUES for key in REPLAY_KEYS[2:]
        },
    ),
    raw=st.text(max_size=20),
)
def test_policy_replay_lines_parse_or_are_refused_naming_the_line(record, raw):
    import json

    for line in (json.dumps(record), raw):
        try:
            parse_line(line, 3, None)
        except UsageError as err:
            assert str(err).startswith("stdin line 3:")
            tally("policy-replay lines", "refused")
        else:
            tally("policy-replay lines", "parsed")


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["curve", "--request-rate", "nan"], "--request-rate"),
        (["simulate", "--cold-start-s", "1e400"], "--cold-start-s"),
        (["simulate", "--plot", "out.bogus"], "--plot"),
    ],
)
def test_the_issue_s_cases_exit_2_naming_the_flag(argv, needle, tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_text(TINY_TRACE)
    config = tmp_path / "config.json"
    config.write_text('{"hidden_size": 64}')
    base = {
        "curve": ["--model-config", str(config), "--gpu", "H100", "--input-len", "8",
                  "--output-len", "8"],
        "simulate": ["--trace", str(trace), "--usable-rps-per-replica", "2",
                     "--cold-start-s", "60"],
    }[argv[0]]  # fmt: skip
    code, err = _run([argv[0], *base, *argv[1:]])
    assert code == 2 and needle in err and "Traceback" not in err


def test_non_utf8_files_are_one_line_naming_the_file(tmp_path):
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"name: caf\xe9\n")
    for argv in (["plan", str(bad)],
                 ["memory", "--model-config", str(bad), "--gpu", "H100", "--tp", "1"],
                 ["simulate", "--trace", str(bad), "--usable-rps-per-replica", "1",
                  "--cold-start-s", "1"]):  # fmt: skip
        code, err = _run(argv)
        assert code == 2 and "not UTF-8" in err and str(bad) in err
        assert len(err.strip().splitlines()) == 1
