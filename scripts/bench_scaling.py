"""Predictive scaling on the shared traces: SLO-met minutes and replica-hours vs the oracle.

One set of defaults for every trace (no per-trace tuning): cold start 300 s, usable req/s per
replica = the trace's P99 one-minute rate / 30. Run: `.venv/bin/python scripts/bench_scaling.py`.

`--true-capacity 0.6,1.0,1.6` instead replays a fleet whose replicas really serve those
multiples of the declared rate (a queue, time-outs; `controllers.policy.scaling.queue_replay`)
and compares the policy with the oracle that knows the true capacity and a simple closed-loop
rule.

`--adversarial` replays the generated traces of `simulate --synthetic` (spikes, steps, zeros,
a smooth cycle, a 50-minute outage; three days at 1,700 req/s peak) and prints each policy's
highest ask relative to the peak need so far: what the forecast bounds are for.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from controllers.policy.scaling.policy import ScalingConfig
from controllers.policy.scaling.queue_replay import compare_true_capacity
from controllers.policy.scaling.replay import (
    Trace,
    cold_start_intervals,
    compare,
    highest_ask,
    needed_replicas,
    oracle_replicas,
    ready_replicas,
)
from controllers.policy.scaling.synthetic import KINDS, synthetic_trace
from inferfleet.tables import render_table
from inferfleet.traces import read_hourly_column, read_per_minute

TRACES = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "traces"
PER_MINUTE = {
    "servegen m_small": "servegen_m_small.per_minute_uniform.csv",
    "servegen deepseek_r1": "servegen_deepseek_r1.per_minute_uniform.csv",
    "servegen mm_image": "servegen_mm_image.per_minute_uniform.csv",
    "burstgpt all": "burstgpt1.per_minute_uniform.csv",
    "azure2023 code": "azure2023_code.per_minute.csv",
    "azure2023 conv": "azure2023_conv.per_minute.csv",
}


def load_traces(folder: Path) -> dict[str, Trace]:
    traces = {name: read_per_minute(str(folder / file)) for name, file in PER_MINUTE.items()}
    traces["burstgpt conversation"] = read_hourly_column(
        str(folder / "burstgpt1_hourly.csv"), "conversation"
    )
    return traces


def synthetic_week_cycle(peak_per_min: float, days: int = 14, seed: int = 0) -> Trace:
    """Not a real trace: Poisson minutes around a smooth weekday/weekend daily curve.

    A stand-in for the minute-level, multi-week traffic the shared traces lack (theirs is
    10-minute or hourly counts spread evenly, or one hour long): what a forecaster can learn.
    """
    minute = np.arange(days * 1440)
    daily = 0.2 + 0.8 * (0.5 - 0.5 * np.cos(2 * np.pi * ((minute % 1440) / 1440 - 0.1))) ** 2
    weekend = np.where((minute // 1440) % 7 >= 5, 0.6, 1.0)
    counts = np.random.default_rng(seed).poisson(peak_per_min * daily * weekend)
    return Trace(60.0, 0.0, tuple(int(c) for c in counts))


def p99_rps(trace: Trace) -> float:
    known = [c for c in trace.requests if c is not None]
    return float(np.percentile(known, 99)) / trace.interval_s


def hindsight_spare_ratio(trace: Trace, config: ScalingConfig, target: float) -> str:
    """A yardstick: the cheapest `current need + k` fleet (k chosen in hindsight, HPA-like)
    that meets the SLO target, as a ratio to the oracle. Policies that cannot see the future
    steps of a trace are unlikely to beat it by much."""
    need = needed_replicas(trace, config.usable_rps_per_replica)
    lag_n = cold_start_intervals(config.cold_start_s, trace.interval_s)
    oracle_h = sum(oracle_replicas(need, lag_n, config.min_replicas)[1:])
    for k in range(1, 60):
        asked = [need[1] + k] + [max(config.min_replicas, n + k) for n in need[:-1]]
        asked[1] = asked[0]
        ready = ready_replicas(asked, lag_n)
        met = [ready[j] >= need[j] for j, c in enumerate(trace.requests) if j and c is not None]
        if sum(met) >= target * len(met):
            return f"{sum(asked[1:]) / oracle_h:.3f} (k={k})"
    return "-"


TTFT_SLO_S = 1.5  # the replay's synthetic TTFT is relative to it; any value gives the same


def true_capacity_table(traces: dict[str, Trace], cold_start_s: float, factors: str) -> str:
    """Policy vs the true-capacity oracle and the simple closed-loop rule, per factor."""
    rows = []
    for name, trace in traces.items():
        config = ScalingConfig(
            usable_rps_per_replica=p99_rps(trace) / 30, cold_start_s=cold_start_s
        )
        for factor in (float(f) for f in factors.split(",")):
            print(f"{name} x{factor:g}", file=sys.stderr, flush=True)
            s = compare_true_capacity(trace, config, factor, TTFT_SLO_S)
            pol, rule, blind = s["predictive"], s["simple rule"], s["predictive, open loop"]
            oracle_h = s["oracle (true capacity)"].replica_hours
            rows.append(
                [
                    name,
                    f"{factor:g}",
                    f"{100 * pol.slo_met_share:.2f}",
                    f"{pol.replica_hours / oracle_h:.3f}",
                    f"{100 * rule.slo_met_share:.2f}",
                    f"{rule.replica_hours / oracle_h:.3f}",
                    f"{100 * blind.slo_met_share:.2f}",
                    f"{blind.replica_hours / oracle_h:.3f}",
                    f"{100 * pol.dropped_requests / max(1, pol.requests):.3f}",
                ]
            )
    headers = ["trace", "true x", "SLO-met %", "ratio", "rule SLO-met %", "rule ratio"]
    headers += ["open-loop SLO-met %", "open-loop ratio", "timed out %"]
    return render_table(headers, rows)


def adversarial_table(cold_start_s: float) -> str:
    """Per generated trace, predictive and reactive: SLO-met %, replica-hours / the oracle's,
    and the highest ask / the peak need so far."""
    rows = []
    for kind in KINDS:
        trace = synthetic_trace(kind, days=3, peak_rps=1700, seed=1)
        usable = p99_rps(trace) / 30
        print(f"synthetic {kind}", file=sys.stderr, flush=True)
        result = compare(
            trace, ScalingConfig(usable_rps_per_replica=usable, cold_start_s=cold_start_s)
        )
        oracle_h = result.scores["oracle"].replica_hours
        row = [kind]
        for mode in ("predictive", "reactive"):
            s = result.scores[mode]
            ask = highest_ask(trace, result.asked[mode][1:], usable)
            row += [
                f"{100 * s.slo_met_share:.2f}",
                f"{s.replica_hours / oracle_h:.3f}",
                f"{ask.ratio:.2f} ({ask.replicas}/{ask.peak_need})",
            ]
        rows.append(row)
    headers = ["trace", "SLO-met %", "ratio", "highest ask / peak need"]
    headers += ["reactive SLO-met %", "reactive ratio", "reactive highest ask / peak need"]
    return render_table(headers, rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--traces", type=Path, default=TRACES, help="folder of trace files")
    parser.add_argument("--cold-start-s", type=float, default=300.0)
    parser.add_argument(
        "--true-capacity", metavar="F,F,..", help="true/declared capacity factors to replay"
    )
    parser.add_argument("--only", metavar="TEXT", help="only traces whose name holds TEXT")
    parser.add_argument(
        "--adversarial", action="store_true", help="the generated traces of simulate --synthetic"
    )
    args = parser.parse_args()
    if args.adversarial:
        print(adversarial_table(args.cold_start_s))
        return 0
    rows = []
    traces = load_traces(args.traces)
    traces["synthetic 50 req/s peak"] = synthetic_week_cycle(3000, seed=1)
    traces["synthetic 5 req/s peak"] = synthetic_week_cycle(300, seed=2)
    if args.only:
        traces = {name: trace for name, trace in traces.items() if args.only in name}
    if args.true_capacity:
        print(true_capacity_table(traces, args.cold_start_s, args.true_capacity))
        return 0
    for name, trace in traces.items():
        config = ScalingConfig(
            usable_rps_per_replica=p99_rps(trace) / 30, cold_start_s=args.cold_start_s
        )
        print(f"{name}: {len(trace.requests)} minutes", file=sys.stderr, flush=True)
        result = compare(trace, config)
        s = result.scores
        oracle_h = s["oracle"].replica_hours
        ask = highest_ask(trace, result.asked["predictive"][1:], config.usable_rps_per_replica)
        rows.append(
            [
                name,
                f"{100 * s['predictive'].slo_met_share:.2f}",
                f"{s['predictive'].replica_hours:.0f}",
                f"{oracle_h:.0f}",
                f"{s['predictive'].replica_hours / oracle_h:.3f}",
                f"{100 * s['reactive'].slo_met_share:.2f}",
                f"{s['reactive'].replica_hours / oracle_h:.3f}",
                f"{s['static'].replica_hours / oracle_h:.3f}",
                hindsight_spare_ratio(trace, config, 0.995),
                f"{ask.ratio:.2f}",
            ]
        )
    print(
        render_table(
            [
                "trace",
                "SLO-met %",
                "replica-h",
                "oracle replica-h",
                "ratio",
                "reactive SLO-met %",
                "reactive ratio",
                "static ratio",
                "hindsight need+k ratio @99.5%",
                "highest ask / peak need",
            ],
            rows,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
