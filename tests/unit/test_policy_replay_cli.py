"""`inferfleet policy-replay` through a real pipe: one line in, one answer out, in lockstep."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

ARGS = ["--usable-rps-per-replica", "2.0", "--cold-start-s", "300", "--max-replicas", "40"]


def start() -> subprocess.Popen[str]:
    return start_with()


def start_with(*flags: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "inferfleet", "policy-replay", *ARGS, *flags],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )


def lines(n: int) -> list[dict[str, object]]:
    return [
        {
            "t": 60 * (k + 1),
            "requests": 600 + 60 * (k % 9) * (k % 4),
            "input_tokens": None if k % 3 else 1000 * k,
            "output_tokens": None if k % 3 else 50 * k,
        }
        for k in range(n)
    ]


def test_answers_each_line_before_the_next_is_written():
    with start() as proc:
        assert proc.stdin is not None and proc.stdout is not None
        answers = []
        for record in lines(30):
            proc.stdin.write(json.dumps(record) + "\n")
            proc.stdin.flush()
            answer = json.loads(proc.stdout.readline())  # blocks until the policy has answered
            assert answer["t"] == record["t"]
            assert 1 <= answer["replicas"] <= 40
            answers.append(answer["replicas"])
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0
    assert answers[0] >= 5  # 10 req/s at 2 req/s per replica, before any spare
    # Only the past is used: a shorter run gives the same answers for its prefix.
    short = subprocess.run(
        [sys.executable, "-m", "inferfleet", "policy-replay", *ARGS],
        input="".join(json.dumps(r) + "\n" for r in lines(12)),
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=True,
    )
    assert [json.loads(x)["replicas"] for x in short.stdout.splitlines()] == answers[:12]


def test_a_null_count_is_a_gap_that_holds_and_whole_floats_are_counts():
    records = [
        '{"t": 60, "requests": 600}',
        '{"t": 120, "requests": 600.0}',
        '{"t": 180, "requests": null}',
        '{"t": 240, "requests": null, "input_tokens": 5, "output_tokens": 5}',
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "inferfleet", "policy-replay", *ARGS],
        input="\n".join(records) + "\n",
        capture_output=True,
        check=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    replicas = [json.loads(x)["replicas"] for x in proc.stdout.splitlines()]
    assert len(replicas) == 4 and replicas[2] >= replicas[1] and replicas[3] >= replicas[1]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("not json", "stdin line 2: not JSON"),
        ('{"t": 120, "requests": -1}', "'requests' must be a non-negative integer"),
        ('{"t": 60, "requests": 5}', "t 60 is not after the previous t 60"),
        ('{"t": 120.5, "requests": 5}', "'t' must be an integer"),
        ('{"t": 120, "requests": 5, "input_tokens": "many"}', "'input_tokens' must be"),
        ('{"t": 120, "requests": 2.5}', "'requests' must be a non-negative integer or null"),
        ('{"t": 120}', "'requests' is missing (use null for a gap)"),
        ('{"t": 120, "requests": 5, "ready": -1}', "'ready' must be a non-negative integer"),
        ('{"t": 120, "requests": 5, "waiting": 1.5}', "'waiting' must be a non-negative integer"),
        ('{"t": 120, "requests": 5, "served": "all"}', "'served' must be a non-negative integer"),
        ('{"t": 120, "requests": 5, "ttft_p99_s": -0.1}', "'ttft_p99_s' must be a non-negative"),
        ('{"t": 120, "requests": 5, "ttft_p99_s": true}', "'ttft_p99_s' must be a non-negative"),
    ],
)
def test_a_bad_line_is_one_clear_error_and_exit_2(bad, message):
    proc = subprocess.run(
        [sys.executable, "-m", "inferfleet", "policy-replay", *ARGS],
        input='{"t": 60, "requests": 5}\n' + bad + "\n",
        capture_output=True,
        check=False,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stdout.count("\n") == 1  # the good first line was answered
    assert len(proc.stderr.strip().splitlines()) == 1 and message in proc.stderr


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--usable-rps-per-replica", "0", "--cold-start-s", "300"],
            "--usable-rps-per-replica must be > 0, got 0.0",
        ),
        (["--usable-rps-per-replica", "1", "--cold-start-s", "-5"], "--cold-start-s must be >= 0"),
        (
            [
                "--usable-rps-per-replica",
                "1",
                "--cold-start-s",
                "300",
                "--min-replicas",
                "3",
                "--max-replicas",
                "2",
            ],
            "--max-replicas (2) must be >= 1 and >= --min-replicas (3)",
        ),
    ],
)
def test_bad_flags_are_named(flags, message, capsys):
    from inferfleet.cli import main

    assert main(["policy-replay", *flags]) == 2
    assert message in capsys.readouterr().err


def _replay(records: list[dict[str, object]], *flags: str) -> list[int]:
    proc = subprocess.run(
        [sys.executable, "-m", "inferfleet", "policy-replay", *ARGS, *flags],
        input="".join(json.dumps(r) + "\n" for r in records),
        capture_output=True,
        check=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    return [json.loads(x)["replicas"] for x in proc.stdout.splitlines()]


def test_what_the_fleet_did_is_optional_and_unknown_keys_are_ignored():
    old = lines(40)
    silent = [
        {**r, "ready": None, "waiting": None, "served": None, "ttft_p99_s": None, "zone": "b"}
        for r in old
    ]
    assert _replay(silent, "--ttft-slo-s", "1.5") == _replay(old)


def test_a_fleet_that_misses_the_slo_gets_more_replicas_than_the_plan_alone_gives():
    """10 req/s at a declared 2 req/s per replica: the plan says 5 (+ spare). The replicas
    really serve 1.2 req/s each, and queue what they cannot, so the SLO guard and the
    measured capacity must find the 9 it takes, in lockstep with the answers."""
    with start_with("--ttft-slo-s", "1.5") as proc:
        assert proc.stdin is not None and proc.stdout is not None
        ready, answers = 5, []
        for k in range(40):
            capacity = ready * 1.2 * 60
            full = capacity < 600
            record = {"t": 60 * (k + 1), "requests": 600, "ready": ready,
                      "served": round(min(600, capacity)), "waiting": 100 if full else 0,
                      "ttft_p99_s": 4.0 if full else 0.6}  # fmt: skip
            proc.stdin.write(json.dumps(record) + "\n")
            proc.stdin.flush()
            answers.append(json.loads(proc.stdout.readline())["replicas"])
            ready = answers[-1]  # warm at once: this tests the reaction, not the cold start
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0
    plain = _replay([{"t": 60 * (k + 1), "requests": 600} for k in range(40)])
    assert plain[-1] < 9 <= answers[-1] <= 14
    assert answers[1] >= 9  # the second scrape over the SLO acts at once


def test_a_bad_slo_flag_is_named(capsys):
    from inferfleet.cli import main

    assert main(["policy-replay", *ARGS, "--ttft-slo-s", "0"]) == 2
    assert "--ttft-slo-s must be > 0, got 0.0" in capsys.readouterr().err
