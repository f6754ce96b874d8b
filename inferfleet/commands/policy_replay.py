"""`inferfleet policy-replay`: the operator's scaling policy driven one interval at a time.

Reads JSON lines `{"t", "requests", "input_tokens", "output_tokens"}` (requests that arrived
in (t - interval, t]) and answers each with `{"t", "replicas"}` before reading the next, so a
caller can check that the policy only ever used the past.

A line may also say what the fleet did in that interval, as the operator reads it from vLLM:
`ready` (replicas ready at its end), `waiting` (requests queued at its end, summed),
`served` (requests completed in it) and `ttft_p99_s`; absent or null is unknown. They reach the
policy as the operator's snapshot does, as a `LoadSample`, so measured capacity and the SLO
guard (with `--ttft-slo-s`) work alike. Other keys are ignored.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from typing import Any

from controllers.policy.scaling.capacity import LoadSample, SLOLimits
from controllers.policy.scaling.policy import ClosedLoop, Metrics, ScalingConfig, ScalingPolicy
from inferfleet.errors import UsageError
from inferfleet.inputs import integer, number

NAME = "policy-replay"
HELP = "feed per-interval request counts on stdin, get the policy's replicas on stdout"

# Seconds beyond this are past the year 5000: no clock (or datetime) goes there.
MAX_T_S = 10**11


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--usable-rps-per-replica", type=number, required=True, metavar="RPS")
    parser.add_argument("--cold-start-s", type=integer, required=True, metavar="S")
    parser.add_argument("--interval-s", type=integer, default=60, metavar="S")
    parser.add_argument("--min-replicas", type=integer, default=1, metavar="N")
    parser.add_argument("--max-replicas", type=integer, default=None, metavar="N")
    parser.add_argument(
        "--ttft-slo-s",
        type=number,
        default=None,
        metavar="S",
        help="TTFT P99 target: lines' ttft_p99_s above it trip the SLO guard",
    )


def config_from_args(args: argparse.Namespace) -> ScalingConfig:
    flags = [
        ("--usable-rps-per-replica", args.usable_rps_per_replica, 0.0, "> 0"),
        ("--cold-start-s", args.cold_start_s, -1, ">= 0"),
        ("--interval-s", args.interval_s, 0, "> 0"),
        ("--min-replicas", args.min_replicas, -1, ">= 0"),
    ]
    if args.ttft_slo_s is not None:
        flags.append(("--ttft-slo-s", args.ttft_slo_s, 0.0, "> 0"))
    for flag, value, must_exceed, expected in flags:
        if not value > must_exceed or not math.isfinite(value):
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
            closed_loop=ClosedLoop(limits=SLOLimits(ttft_p99_s=args.ttft_slo_s)),
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


def _seconds(record: dict[str, Any], key: str, lineno: int) -> float | None:
    value = record.get(key)
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        raise UsageError(
            f"stdin line {lineno}: {key!r} must be a non-negative number of seconds or null, "
            f"got {value!r}"
        )
    return float(value)


@dataclass(frozen=True)
class Line:
    """One stdin line, checked; None is unknown."""

    t: int
    requests: int | None
    input_tokens: int | None = None
    output_tokens: int | None = None
    ready: int | None = None
    waiting: int | None = None
    served: int | None = None
    ttft_p99_s: float | None = None

    @property
    def tokens(self) -> int | None:
        """Prompt + output tokens, when both are known."""
        if self.input_tokens is None or self.output_tokens is None:
            return None
        return self.input_tokens + self.output_tokens

    def load(self, interval_s: float) -> LoadSample | None:
        """What the fleet did, as the operator's snapshot says it; None when the line is silent
        (then the policy runs exactly as it did before these keys existed)."""
        if all(v is None for v in (self.ready, self.waiting, self.served, self.ttft_p99_s)):
            return None
        served_rps = None if self.served is None else self.served / interval_s
        share = self.served / self.requests if self.served is not None and self.requests else None

        def served_tokens(count: int | None) -> float | None:
            return None if count is None or share is None else count * share / interval_s

        return LoadSample(
            ready=self.ready,
            served_rps=served_rps,
            prompt_tok_per_s=served_tokens(self.input_tokens),
            gen_tok_per_s=served_tokens(self.output_tokens),
            waiting=None if self.waiting is None else float(self.waiting),
            ttft_p99_s=self.ttft_p99_s,
        )


def parse_line(line: str, lineno: int, last_t: int | None) -> Line:
    """One JSON line, checked; unknown keys are ignored."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise UsageError(f"stdin line {lineno}: not JSON ({err.msg})") from None
    except RecursionError:
        raise UsageError(f"stdin line {lineno}: JSON nested too deeply") from None
    if not isinstance(record, dict):
        raise UsageError(f"stdin line {lineno}: expected a JSON object with t and requests")
    t = record.get("t")
    if isinstance(t, bool) or not isinstance(t, int) or abs(t) > MAX_T_S:
        raise UsageError(
            f"stdin line {lineno}: 't' must be an integer (seconds) of magnitude at most "
            f"{MAX_T_S:.0e}, got {t!r}"
        )
    if last_t is not None and t <= last_t:
        raise UsageError(f"stdin line {lineno}: t {t} is not after the previous t {last_t}")
    if "requests" not in record:
        raise UsageError(f"stdin line {lineno}: 'requests' is missing (use null for a gap)")
    counts = {
        key: _count(record, key, lineno)
        for key in ("requests", "input_tokens", "output_tokens", "ready", "waiting", "served")
    }
    return Line(t=t, ttft_p99_s=_seconds(record, "ttft_p99_s", lineno), **counts)


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
        parsed = parse_line(line, lineno, last_t)
        last_t = t = parsed.t
        requests, tokens = parsed.requests, parsed.tokens
        # requests null: a collection gap, not zero load; the policy holds rather than shrink.
        metrics = Metrics(
            rps=None if requests is None else requests / config.interval_s,
            tok_per_s=None if tokens is None or requests is None else tokens / config.interval_s,
            load=parsed.load(config.interval_s),
        )
        current = policy.step(float(t), metrics, current).desired_replicas
        print(json.dumps({"t": t, "replicas": current}), flush=True)
    return 0
