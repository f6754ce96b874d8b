"""`inferfleet policy-replay`: the operator's scaling policy driven one interval at a time.

Reads JSON lines `{"t", "requests", "input_tokens", "output_tokens"}` (requests that arrived
in (t - interval, t]) and answers each with `{"t", "replicas"}` before reading the next, so a
caller can check that the policy only ever used the past.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from controllers.policy.scaling.policy import Metrics, ScalingConfig, ScalingPolicy
from inferfleet.errors import UsageError

NAME = "policy-replay"
HELP = "feed per-interval request counts on stdin, get the policy's replicas on stdout"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--usable-rps-per-replica", type=float, required=True, metavar="RPS")
    parser.add_argument("--cold-start-s", type=int, required=True, metavar="S")
    parser.add_argument("--interval-s", type=int, default=60, metavar="S")
    parser.add_argument("--min-replicas", type=int, default=1, metavar="N")
    parser.add_argument("--max-replicas", type=int, default=None, metavar="N")


def config_from_args(args: argparse.Namespace) -> ScalingConfig:
    flags = [
        ("--usable-rps-per-replica", args.usable_rps_per_replica, 0.0, "> 0"),
        ("--cold-start-s", args.cold_start_s, -1, ">= 0"),
        ("--interval-s", args.interval_s, 0, "> 0"),
        ("--min-replicas", args.min_replicas, -1, ">= 0"),
    ]
    for flag, value, must_exceed, expected in flags:
        if not value > must_exceed:
            raise UsageError(f"{flag} must be {expected}, got {value}")
    if args.max_replicas is not None and args.max_replicas < max(1, args.min_replicas):
        raise UsageError(
            f"--max-replicas ({args.max_replicas}) must be >= 1 and >= --min-replicas "
            f"({args.min_replicas})"
        )
    try:
        return ScalingConfig(
            usable_rps_per_replica=args.usable_rps_per_replica,
            cold_start_s=args.cold_start_s,
            interval_s=args.interval_s,
            min_replicas=args.min_replicas,
            max_replicas=args.max_replicas,
        )
    except ValueError as err:
        raise UsageError(str(err)) from None


def _count(record: dict[str, Any], key: str, lineno: int) -> int | None:
    """A non-negative count; null is unknown, and 12.0 is 12 (tools that sum in floats)."""
    value = record.get(key)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UsageError(
            f"stdin line {lineno}: {key!r} must be a non-negative integer or null, got {value!r}"
        )
    return value


def parse_line(line: str, lineno: int, last_t: int | None) -> tuple[int, int | None, int | None]:
    """(t, requests, prompt + output tokens) from one JSON line, checked; None is unknown."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise UsageError(f"stdin line {lineno}: not JSON ({err.msg})") from None
    if not isinstance(record, dict):
        raise UsageError(f"stdin line {lineno}: expected a JSON object with t and requests")
    t = record.get("t")
    if isinstance(t, bool) or not isinstance(t, int):
        raise UsageError(f"stdin line {lineno}: 't' must be an integer (seconds), got {t!r}")
    if last_t is not None and t <= last_t:
        raise UsageError(f"stdin line {lineno}: t {t} is not after the previous t {last_t}")
    if "requests" not in record:
        raise UsageError(f"stdin line {lineno}: 'requests' is missing (use null for a gap)")
    requests = _count(record, "requests", lineno)
    tin = _count(record, "input_tokens", lineno)
    tout = _count(record, "output_tokens", lineno)
    tokens = None if tin is None or tout is None else tin + tout
    return t, requests, tokens


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    policy = ScalingPolicy(config)
    current = config.min_replicas
    last_t: int | None = None
    lineno = 0
    while line := sys.stdin.readline():
        lineno += 1
        if not line.strip():
            continue
        t, requests, tokens = parse_line(line, lineno, last_t)
        last_t = t
        # requests null: a collection gap, not zero load; the policy holds rather than shrink.
        metrics = Metrics(
            rps=None if requests is None else requests / config.interval_s,
            tok_per_s=None if tokens is None or requests is None else tokens / config.interval_s,
        )
        current = policy.step(float(t), metrics, current).desired_replicas
        print(json.dumps({"t": t, "replicas": current}), flush=True)
    return 0
