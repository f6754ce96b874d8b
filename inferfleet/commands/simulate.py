"""`inferfleet simulate`: replay a per-minute trace through the scaling policy with cold starts.

Prints SLO-met minutes (demand <= ready capacity), replica-hours, GPU-hours and cost for the
predictive policy beside a reactive HPA-like baseline, a static peak fleet and the hindsight
oracle. The policies run through the operator's own decision function.

With `--true-capacity-factor F` the replicas really serve F x the declared rate: what they
cannot serve queues and times out, the policy sees what the operator would (ready, served,
waiting, TTFT P99) and is compared with the oracle that knows the true capacity, a simple
closed-loop rule and itself without the closed loop.

`--synthetic KIND` replays a generated adversarial trace instead of a file (spikes, steps,
zeros, a smooth cycle, a 50-minute outage) and prints the highest ask relative to the peak
need, so the forecast bounds can be seen at work.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Protocol

from controllers.api.v1alpha1 import InferenceFleet, PoolScorecard, parse_decimal, parse_duration_s
from controllers.policy.autoscale import scorecard_status
from controllers.policy.scaling.policy import ScalingConfig, config_from_spec
from controllers.policy.scaling.queue_replay import QueueScore, compare_true_capacity
from controllers.policy.scaling.replay import (
    POLICIES,
    Comparison,
    Trace,
    cold_start_intervals,
    compare,
    highest_ask,
    ready_replicas,
    replay_scorecard,
)
from controllers.policy.scaling.synthetic import KINDS, MAX_DAYS, MAX_PEAK_RPS, synthetic_trace
from inferfleet.errors import UsageError
from inferfleet.inputs import check_plot_path, integer, number
from inferfleet.manifests import load_fleet, resolve_hf_config
from inferfleet.scorecards import render_scorecard, scorecard_json
from inferfleet.tables import render_table
from inferfleet.traces import read_per_minute
from sizing.hardware import get_gpu

NAME = "simulate"
HELP = "replay a per-minute trace through the scaling policy with cold starts, vs baselines"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    trace = parser.add_mutually_exclusive_group(required=True)
    trace.add_argument(
        "--trace",
        metavar="FILE.csv",
        help="minute,requests,input_tokens_sum,output_tokens_sum[,gap,...]",
    )
    trace.add_argument(
        "--synthetic",
        choices=KINDS,
        help="a generated adversarial trace instead of a file",
    )
    parser.add_argument(
        "--days", type=float, default=7.0, metavar="D", help="--synthetic: length (default 7)"
    )
    parser.add_argument(
        "--peak-rps",
        type=float,
        default=50.0,
        metavar="RPS",
        help="--synthetic: the daily curve's peak (default 50)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, metavar="N", help="--synthetic: random seed (default 0)"
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--fleet", metavar="FLEET.yaml", help="InferenceFleet manifest")
    source.add_argument("--usable-rps-per-replica", type=number, metavar="RPS")
    parser.add_argument("--cold-start-s", type=number, required=True, metavar="S")
    parser.add_argument(
        "--policy",
        choices=POLICIES,
        default="predictive",
        help="the policy drawn by --plot (the table shows all)",
    )
    parser.add_argument(
        "--start-s",
        type=number,
        default=0.0,
        metavar="S",
        help="time of day of minute 0, seconds after local midnight",
    )
    parser.add_argument(
        "--gpus-per-replica",
        type=integer,
        default=None,
        metavar="N",
        help="default: the plan's TP x PP with --fleet, else 1",
    )
    parser.add_argument("--cost-per-gpu-hour", type=number, default=None, metavar="USD")
    parser.add_argument("--plot", metavar="FILE.png", help="demand vs ready capacity vs forecast")
    parser.add_argument("--output", choices=["text", "json"], default="text")
    parser.add_argument(
        "--true-capacity-factor",
        type=number,
        default=None,
        metavar="F",
        help="replicas really serve F x the declared rate (queue, time-outs, closed loop)",
    )


def replica_from_fleet(fleet: InferenceFleet, gpus_per_replica: int | None) -> tuple[float, int]:
    """Usable req/s and GPUs per replica: the spec's measured figure and the --gpus-per-replica
    flag when given, else what the sizing plan's first pool predicts."""
    text = fleet.spec.workload.usable_rps_per_replica
    if text is not None and gpus_per_replica is not None:
        return parse_decimal(text), gpus_per_replica
    from controllers.policy.planning import plan_spec

    plan = plan_spec(fleet.spec, resolve_hf_config(fleet.spec, None))
    option = plan.allocations[0].option
    usable = parse_decimal(text) if text is not None else option.usable_rps
    return usable, gpus_per_replica or option.gpus_per_replica


MIN_TRUE_CAPACITY_FACTOR = 0.01
DEFAULT_TTFT_SLO_S = 1.5  # without --fleet; the queue replay's TTFT is relative to it anyway


def _config(args: argparse.Namespace) -> tuple[ScalingConfig, float, float]:
    """The scaling settings, the $ per GPU-hour and the TTFT P99 target."""
    if args.cold_start_s < 0:
        raise UsageError(f"--cold-start-s must be >= 0, got {args.cold_start_s}")
    if args.gpus_per_replica is not None and args.gpus_per_replica < 1:
        raise UsageError(f"--gpus-per-replica must be >= 1, got {args.gpus_per_replica}")
    cost = args.cost_per_gpu_hour
    ttft_slo_s = DEFAULT_TTFT_SLO_S
    try:
        if args.fleet:
            fleet = load_fleet(args.fleet)
            pool = fleet.spec.pools[0]
            if cost is None:
                cost = (
                    parse_decimal(pool.cost_per_gpu_hour)
                    if pool.cost_per_gpu_hour
                    else get_gpu(pool.gpu).cost_per_gpu_hour_usd
                )
            usable, gpus = replica_from_fleet(fleet, args.gpus_per_replica)
            ttft_slo_s = parse_duration_s(fleet.spec.slo.ttft_p99)
            config = config_from_spec(
                fleet.spec.scaling,
                usable,
                args.cold_start_s,
                gpus_per_replica=gpus,
                max_gpus=pool.max_gpus,
            )
        else:
            if args.usable_rps_per_replica is None or args.usable_rps_per_replica <= 0:
                raise UsageError(
                    f"--usable-rps-per-replica must be > 0, got {args.usable_rps_per_replica}"
                )
            config = ScalingConfig(
                usable_rps_per_replica=args.usable_rps_per_replica,
                cold_start_s=args.cold_start_s,
                gpus_per_replica=args.gpus_per_replica or 1,
            )
    except ValueError as err:
        raise UsageError(str(err)) from None
    # The trace is per minute, so the policy decides once a minute whatever the spec says.
    return (ScalingConfig(**{**config.__dict__, "interval_s": 60.0}), cost or 0.0, ttft_slo_s)


def _trace(args: argparse.Namespace) -> Trace:
    """The trace file, or the generated trace --synthetic names."""
    if args.trace is not None:
        return read_per_minute(args.trace, start_s=args.start_s)
    if not (0 < args.days <= MAX_DAYS):
        raise UsageError(f"--days must be above 0 and at most {MAX_DAYS:g}, got {args.days}")
    if not (0 < args.peak_rps <= MAX_PEAK_RPS):
        raise UsageError(
            f"--peak-rps must be above 0 and at most {MAX_PEAK_RPS:g}, got {args.peak_rps}"
        )
    trace = synthetic_trace(args.synthetic, args.days, args.peak_rps, args.seed)
    return Trace(trace.interval_s, args.start_s, trace.requests)


def _progress(policy: str, done: int, total: int) -> None:
    print(f"simulate: {policy} {done}/{total} minutes", file=sys.stderr, flush=True)


class _Scored(Protocol):
    """What both replays score a policy by (queue_replay.QueueScore, replay's scores)."""

    @property
    def slo_met_intervals(self) -> int: ...
    @property
    def scored_intervals(self) -> int: ...
    @property
    def slo_met_share(self) -> float: ...
    @property
    def replica_hours(self) -> float: ...


def _score_json(s: _Scored, gpu_hours: float, cost_usd: float, oracle_h: float) -> dict[str, Any]:
    """One policy's row of `--output json`, the same keys for either replay."""
    return {
        "sloMetMinutes": s.slo_met_intervals,
        "scoredMinutes": s.scored_intervals,
        "sloMetShare": round(s.slo_met_share, 6),
        "replicaHours": round(s.replica_hours, 3),
        "gpuHours": round(gpu_hours, 3),
        "costUSD": round(cost_usd, 2),
        "vsOracle": round(s.replica_hours / oracle_h, 4) if oracle_h else None,
    }


def run_true_capacity(
    args: argparse.Namespace, config: ScalingConfig, cost: float, ttft_slo_s: float
) -> int:
    factor = args.true_capacity_factor
    # Below 1 %, the queue replay's service times overflow (2e-309 did): no real fleet is that slow.
    if not (MIN_TRUE_CAPACITY_FACTOR <= factor < 100):
        raise UsageError(
            f"--true-capacity-factor must be at least {MIN_TRUE_CAPACITY_FACTOR} and below 100, "
            f"got {factor}"
        )
    trace = _trace(args)
    scores = compare_true_capacity(trace, config, factor, ttft_slo_s)
    oracle_h = scores["oracle (true capacity)"].replica_hours

    def gpu_hours(s: QueueScore) -> float:
        return s.replica_hours * config.gpus_per_replica

    if args.output == "json":
        out = {
            name: {
                **_score_json(s, gpu_hours(s), gpu_hours(s) * cost, oracle_h),
                "timedOutRequests": s.dropped_requests,
            }
            for name, s in scores.items()
        }
        summary = {
            "usableRPSPerReplica": config.usable_rps_per_replica,
            "trueCapacityFactor": factor,
            "ttftSLOSeconds": ttft_slo_s,
            "coldStartSeconds": config.cold_start_s,
            "policies": out,
        }
        json.dump(summary, sys.stdout, indent=2)
        print()
        return 0
    rows = [
        [
            name,
            f"{s.slo_met_intervals}/{s.scored_intervals}",
            f"{100 * s.slo_met_share:.2f}%",
            f"{s.replica_hours:.1f}",
            f"{gpu_hours(s):.1f}",
            f"${gpu_hours(s) * cost:,.2f}",
            f"{s.replica_hours / oracle_h:.3f}" if oracle_h else "-",
            f"{s.dropped_requests}",
        ]
        for name, s in scores.items()
    ]
    headers = ["policy", "SLO-met minutes", "SLO-met", "replica-hours", "GPU-hours", "cost"]
    print(
        f"replicas really serve {factor:g} x {config.usable_rps_per_replica:.3g} req/s "
        f"(TTFT SLO {ttft_slo_s:g} s)"
    )
    print(render_table([*headers, "vs true oracle", "timed out"], rows))
    return 0


def run(args: argparse.Namespace) -> int:
    if args.plot:
        check_plot_path(args.plot)
    config, cost, ttft_slo_s = _config(args)
    if args.true_capacity_factor is not None:
        if args.plot:
            raise UsageError("--plot draws the declared-capacity replay; drop it or the factor")
        return run_true_capacity(args, config, cost, ttft_slo_s)
    trace = _trace(args)
    long_run = len(trace.requests) > 5000
    result = compare(trace, config, cost, _progress if long_run else None)
    oracle_h = result.scores["oracle"].replica_hours
    ask = highest_ask(trace, result.asked["predictive"][1:], config.usable_rps_per_replica)
    card = predictive_scorecard(trace, result, config)
    if args.output == "json":
        out = {
            name: _score_json(s, s.gpu_hours, s.cost_usd, oracle_h)
            for name, s in result.scores.items()
        }
        json.dump(
            {
                "usableRPSPerReplica": config.usable_rps_per_replica,
                "coldStartSeconds": config.cold_start_s,
                "gpusPerReplica": config.gpus_per_replica,
                "policies": out,
                "highestAsk": {
                    "replicas": ask.replicas,
                    "minute": ask.interval,
                    "peakNeedSoFar": ask.peak_need,
                    "ratio": round(ask.ratio, 4),
                },
                "scorecard": scorecard_json(card),
            },
            sys.stdout,
            indent=2,
        )
        print()
    else:
        rows = [
            [
                name,
                f"{s.slo_met_intervals}/{s.scored_intervals}",
                f"{100 * s.slo_met_share:.2f}%",
                f"{s.replica_hours:.1f}",
                f"{s.gpu_hours:.1f}",
                f"${s.cost_usd:,.2f}",
                f"{s.replica_hours / oracle_h:.3f}" if oracle_h else "-",
            ]
            for name, s in result.scores.items()
        ]
        print(
            render_table(
                [
                    "policy",
                    "SLO-met minutes",
                    "SLO-met",
                    "replica-hours",
                    "GPU-hours",
                    "cost",
                    "vs oracle",
                ],
                rows,
            )
        )
        print(
            f"predictive's highest ask: {ask.replicas} replicas at minute {ask.interval}, "
            f"{ask.ratio:.2f} x the peak need so far ({ask.peak_need})"
        )
        print()
        print(
            render_scorecard(card, "predictive policy's scorecard (as status.scorecard shows it):")
        )
    if args.plot:
        plot(result, config, args.policy, args.plot)
    return 0


def predictive_scorecard(trace: Trace, result: Comparison, config: ScalingConfig) -> PoolScorecard:
    """The scorecard the operator would show for the predictive schedule, at the trace's end."""
    card = replay_scorecard(trace, result.asked["predictive"], result.decisions, config)
    end_s = trace.start_s + len(trace.requests) * trace.interval_s
    return scorecard_status("replay", card, end_s)


def plot(result: Comparison, config: ScalingConfig, policy: str, path: str) -> None:
    """Demand, the policy's ready capacity and (predictive) the forecast, in req/s."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    usable = config.usable_rps_per_replica
    lag_n = cold_start_intervals(config.cold_start_s, 60.0)
    ready = ready_replicas(result.asked[policy], lag_n)
    hours = [k / 60 for k in range(len(result.need))]
    fig, ax = plt.subplots(figsize=(12, 4.5))
    ax.plot(hours, [n * usable for n in result.need], lw=0.8, label="demand (as replicas x usable)")
    ax.step(
        hours, [r * usable for r in ready], lw=0.8, where="post", label=f"{policy} ready capacity"
    )
    if policy == "predictive":
        fc = [0.0] + [(d.need_forecast or 0) * usable for d in result.decisions[:-1]]
        ax.plot(hours, fc, lw=0.6, alpha=0.7, label="forecast need (upper)")
    ax.set_xlabel("hours since trace start")
    ax.set_ylabel("req/s")
    ax.legend(loc="upper left")
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=110)
    except OSError as err:
        raise UsageError(f"cannot write plot {path}: {err.strerror}") from None
    finally:
        plt.close(fig)
