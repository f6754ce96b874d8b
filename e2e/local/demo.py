"""`python -m e2e.local.demo` (`make demo`): a compressed day through the local harness.

The fleet is applied to the operator and sized; the pod runner turns its Deployments into
emulator processes; a real trace is replayed against them with the day compressed into a
few minutes, and a prompt-length shift late in the day. A live view shows replicas, demand
and TTFT; at the end come the fleet's Events as a timeline and a report figure. The demo
drives the inputs; whatever the operator does with replicas (the plan's count, or scaling)
is read back from the API, never assumed.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import itertools
import logging
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from controllers.api.v1alpha1 import KIND, InferenceFleetSpec, parse_decimal, parse_duration_s
from e2e.local.harness import LocalHarness
from e2e.local.load import Demand, LoadDriver, MinuteStats, ReplayConfig
from e2e.local.report import write_report
from e2e.local.timeline import EventLog, Sample, clock, take_sample
from e2e.local.view import Frame, LiveView
from inferfleet.errors import UsageError
from inferfleet.traces import read_per_minute
from sizing.workload import Percentiles

REPO = Path(__file__).resolve().parents[2]
DEFAULT_TRACE = REPO / "examples" / "traces" / "servegen_m_small.day0.per_minute.csv"
DEFAULT_FLEET = REPO / "examples" / "fleet-code-8b.yaml"
TICK_S = 0.25
SIZED_TIMEOUT_S = 60.0
READY_TIMEOUT_S = 120.0
RECENT_MINUTES = 30  # the live view's TTFT P99 and sent rate look back this many trace minutes


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m e2e.local.demo",
        description="Replay a compressed day of real traffic through the operator, emulated "
        "vLLM replicas and a real Prometheus, all on this machine.",
    )
    p.add_argument(
        "--minutes",
        type=float,
        default=3.0,
        help="wall-clock minutes the replayed day lasts (default 3)",
    )
    p.add_argument(
        "--trace",
        type=Path,
        default=DEFAULT_TRACE,
        help="per-minute trace CSV (minute,requests,input_tokens_sum,"
        "output_tokens_sum); default: a day of ServeGen m-small",
    )
    p.add_argument(
        "--fleet",
        type=Path,
        default=DEFAULT_FLEET,
        help="InferenceFleet manifest (default: examples/fleet-code-8b.yaml)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("demo-report.png"),
        help="report figure to write (default: demo-report.png)",
    )
    p.add_argument(
        "--peak-rps",
        type=float,
        default=None,
        help="rescale the trace so its busiest minute is this rate, and make it the fleet's "
        "workload.peakRequestsPerSecond (default: the fleet's own peak)",
    )
    p.add_argument(
        "--speedup",
        type=float,
        default=1.0,
        help="emulated GPU seconds per wall second in every replica (default 1: Prometheus "
        "then reads real rates; N sends N times the requests and rates read N times higher)",
    )
    p.add_argument("--first-minute", type=int, default=0, help="trace minute to start at")
    p.add_argument(
        "--trace-minutes",
        type=int,
        default=1440,
        help="trace minutes to replay (default 1440: a day)",
    )
    p.add_argument(
        "--scenario",
        choices=("all", *SCENARIOS),
        default="all",
        help="which change to replay: "
        + "; ".join(f"{c.name}: {c.title}" for c in SCENARIOS.values())
        + " (default all, one after the other)",
    )
    p.add_argument(
        "--shift-at",
        type=float,
        default=None,
        help="hour of the replayed day from which prompts get longer (the scenario's unless given)",
    )
    p.add_argument(
        "--prompt-shift",
        type=float,
        default=None,
        help="prompt length factor from --shift-at on (1 = none; the scenario's unless given)",
    )
    p.add_argument(
        "--speed-factor",
        type=float,
        default=None,
        help="every replica this many times as fast as the plan predicts (0.6: 40 %% slower; "
        "the scenario's unless given)",
    )
    p.add_argument(
        "--interval",
        default="1s",
        help="the fleet's spec.scaling.interval on the wall clock (default 1s)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--workdir",
        type=Path,
        help="keep pod and operator logs here (default: a temporary directory)",
    )
    return p  # fmt: skip


@dataclass(frozen=True)
class Change:
    """What a scenario changes against the plan, and from when (hour of the day)."""

    name: str
    title: str
    speed_factor: float = 1.0  # replicas this many times as fast as planned, all day
    prompt_shift: float = 1.0  # prompts this many times as long from `shift_at_h` on
    shift_at_h: float = 18.0
    # The fleet's spec.sizingQuantile for this scenario (None: the manifest's). The emulator's
    # speed is relative to the model's median, so a replica "slower than planned" needs a
    # plan sized on the median: on the default P10 the plan already allows for slow replicas.
    sizing_quantile: str | None = None


SCENARIOS = {
    c.name: c
    for c in (
        Change("prompts-x3", "prompts 3x longer from 18:00", prompt_shift=3.0),
        Change(
            "slower",
            "replicas 40 % slower than planned (plan sized on the median)",
            speed_factor=0.6,
            sizing_quantile="0.5",
        ),
        Change("prompts-x2", "prompt length doubles at 18:00", prompt_shift=2.0),
    )
}
TARGET_SLO_MISSED = 0.005  # of requests, in every scenario (the closed loop's target)


@dataclass(frozen=True)
class Scenario:
    """The validated inputs of one run."""

    change: Change
    fleet: dict[str, Any]
    spec: InferenceFleetSpec
    peak_rps: float  # the fleet's peak as applied; the trace's busiest minute
    demand: Demand
    replay: ReplayConfig
    time_compression: float  # trace seconds per wall second

    @property
    def change_minute(self) -> int:
        """The first trace minute that differs from the plan: the shift, or the start when
        the replicas are off the plan all day."""
        shifted = self.replay.shift_from_minute
        if self.change.speed_factor != 1.0 or shifted is None:
            return self.demand.first_minute
        return max(shifted, self.demand.first_minute)


def _load_fleet(path: Path) -> dict[str, Any]:
    try:
        docs = list(yaml.safe_load_all(path.read_text()))
    except OSError as err:
        raise UsageError(f"--fleet {path}: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise UsageError(f"--fleet {path}: not valid YAML ({err})") from None
    fleet = next((d for d in docs if isinstance(d, dict) and d.get("kind") == KIND), None)
    if fleet is None:
        raise UsageError(f"--fleet {path}: no document of kind {KIND}")
    return fleet


def build_scenarios(args: argparse.Namespace) -> list[Scenario]:
    """The scenarios asked for, with --shift-at, --prompt-shift and --speed-factor applied."""
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    changes = []
    for name in names:
        change = SCENARIOS[name]
        for field_name, value in (("shift_at_h", args.shift_at),
                                  ("prompt_shift", args.prompt_shift),
                                  ("speed_factor", args.speed_factor)):  # fmt: skip
            if value is not None:
                change = replace(change, **{field_name: value})
        changes.append(change)
    return [build_scenario(args, change) for change in changes]


def build_scenario(args: argparse.Namespace, change: Change) -> Scenario:
    """Check every flag, then derive the fleet as applied and the replay settings."""
    for flag, value in (("--minutes", args.minutes), ("--peak-rps", args.peak_rps),
                        ("--speedup", args.speedup), ("--prompt-shift", change.prompt_shift),
                        ("--speed-factor", change.speed_factor),
                        ("--trace-minutes", args.trace_minutes)):  # fmt: skip
        if value is not None and not value > 0:
            raise UsageError(f"{flag} must be > 0, got {value}")
    if args.first_minute < 0:
        raise UsageError(f"--first-minute must be >= 0, got {args.first_minute}")
    try:
        parse_duration_s(args.interval)
    except ValueError as err:
        raise UsageError(f"--interval: {err}") from None
    fleet = copy.deepcopy(_load_fleet(args.fleet))
    spec_doc = fleet.setdefault("spec", {})
    if args.peak_rps is not None:
        spec_doc.setdefault("workload", {})["peakRequestsPerSecond"] = f"{args.peak_rps:g}"
    spec_doc.setdefault("scaling", {})["interval"] = args.interval
    if change.sizing_quantile is not None:
        spec_doc["sizingQuantile"] = change.sizing_quantile
    fleet.setdefault("metadata", {}).setdefault("namespace", "default")
    try:
        spec = InferenceFleetSpec.model_validate(spec_doc)
    except ValueError as err:
        raise UsageError(f"--fleet {args.fleet}: {err}") from None
    peak_rps = parse_decimal(spec.workload.peak_requests_per_second)
    try:
        demand = Demand.from_trace(
            read_per_minute(str(args.trace)), peak_rps, args.first_minute, args.trace_minutes
        )
    except ValueError as err:
        raise UsageError(f"--trace {args.trace}: {err}") from None
    wall_s_per_minute = args.minutes * 60 / len(demand)
    workload = spec.workload
    shift_minute = round(change.shift_at_h * 60)
    replay = ReplayConfig(
        model=spec.model.name,
        prompt=Percentiles(workload.prompt_tokens.p50, workload.prompt_tokens.p95,
                           workload.prompt_tokens.p99),
        output=Percentiles(workload.output_tokens.p50, workload.output_tokens.p95,
                           workload.output_tokens.p99),
        max_model_len=workload.max_model_len or 8192,
        ttft_slo_s=parse_duration_s(spec.slo.ttft_p99),
        speedup=args.speedup,
        wall_s_per_minute=wall_s_per_minute,
        shift_from_minute=shift_minute if change.prompt_shift != 1 else None,
        prompt_shift_factor=change.prompt_shift,
        seed=args.seed,
    )  # fmt: skip
    return Scenario(change, fleet, spec, peak_rps, demand, replay, 60.0 / wall_s_per_minute)


def _condition(harness: LocalHarness, namespace: str, name: str, type_: str):
    fleet = harness.fleet(namespace, name) or {}
    conditions = (fleet.get("status") or {}).get("conditions", [])
    return next((c for c in conditions if c["type"] == type_), None)


def _wait_condition(
    harness: LocalHarness, namespace: str, name: str, type_: str, timeout_s: float
) -> dict[str, Any]:
    """Until the condition is True; a Sized=False (a refusal) ends the wait at once."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        harness.check()
        found = _condition(harness, namespace, name, type_)
        if found and found["status"] == "True":
            return found
        if found and type_ == "Sized" and found["status"] == "False":
            raise RuntimeError(f"the operator refused the fleet: {found['message']}")
        time.sleep(TICK_S)
    raise RuntimeError(f"{type_}=True not reached within {timeout_s:.0f} s")


def _frame(name: str, scenario: Scenario, driver: LoadDriver, sample: Sample, wall_s: float):
    minute = driver.minute_now()
    now = min(int(driver.elapsed_minutes()), len(scenario.demand) - 1)
    recent = driver.stats[max(0, now - RECENT_MINUTES) : now]  # completed minutes only
    ttfts = [v for s in recent for v in s.ttft_s]
    replay = scenario.replay
    window_wall_s = max(1, len(recent)) * replay.wall_s_per_minute
    totals = driver.totals()
    return Frame(
        fleet=name,
        minute=minute,
        done_share=driver.elapsed_minutes() / len(scenario.demand),
        sample=sample,
        demand_rps=scenario.demand.rps[now],
        sent_rps=sum(s.sent for s in recent) / (window_wall_s * replay.speedup),
        ttft_p99_s=MinuteStats(-1, 0.0, ttft_s=ttfts).ttft_p99_s,
        ttft_slo_s=replay.ttft_slo_s,
        slo_missed_share=totals.slo_missed / totals.done if totals.done else 0.0,
        wall_s=wall_s,
    )


@dataclass(frozen=True)
class Outcome:
    """What one scenario cost and how well it served, for the closing table."""

    name: str
    title: str
    done: int
    slo_missed: int
    gpu_hours: float
    change_minute: int
    first_scale_up_minute: float | None  # the first increase of desired after the change

    @property
    def missed_share(self) -> float:
        return self.slo_missed / self.done if self.done else 0.0

    @property
    def reaction(self) -> str:
        if self.first_scale_up_minute is None:
            return "no scale-up"
        return f"{self.first_scale_up_minute - self.change_minute:.0f} min"


def gpu_hours(samples: Sequence[Sample]) -> float:
    """GPU-hours of trace time held by the ready and warming replicas."""
    return sum(a.gpus_held * (b.minute - a.minute) / 60 for a, b in itertools.pairwise(samples))


def first_scale_up(samples: Sequence[Sample], change_minute: float) -> float | None:
    """Trace minute of the first sample after `change_minute` desiring more replicas than the
    sample before it."""
    return next(
        (b.minute for a, b in itertools.pairwise(samples)
         if b.minute > change_minute and b.desired > a.desired),
        None,
    )  # fmt: skip


def outcome(scenario: Scenario, driver: LoadDriver, samples: Sequence[Sample]) -> Outcome:
    totals = driver.totals()
    change = scenario.change_minute
    return Outcome(
        scenario.change.name, scenario.change.title, totals.done, totals.slo_missed,
        gpu_hours(samples), change, first_scale_up(samples, change),
    )  # fmt: skip


def _summary(
    scenario: Scenario, driver: LoadDriver, samples: list[Sample], result: Outcome
) -> list[str]:
    totals = driver.totals()
    cost_usd = sum(
        a.cost_per_hour_usd * (b.minute - a.minute) / 60 for a, b in itertools.pairwise(samples)
    )
    ready = [s.ready for s in samples] or [0]
    return [
        f"requests: {totals.sent} sent, {totals.ok} ok, {totals.failed} failed; "
        f"TTFT P99 {totals.ttft_p99_s or 0:.2f} s vs SLO {scenario.replay.ttft_slo_s:g} s; "
        f"SLO missed by {result.missed_share:.1%} of requests ({result.slo_missed})",
        f"replicas ready: min {min(ready)}, max {max(ready)}; {result.gpu_hours:.1f} GPU-hours, "
        f"cost of the replayed day ${cost_usd:.2f}",
        f"change at {clock(result.change_minute)}; first scale-up after it: {result.reaction}",
    ]


def write_minutes(path: Path, stats: Sequence[MinuteStats], samples: Sequence[Sample]) -> None:
    """Per trace minute: the traffic, what missed the SLO, and the replicas then (to see why)."""
    rows = ["minute,clock,demand_rps,sent,ok,failed,slo_missed,ttft_p99_s,desired,ready"]
    at = 0
    for s in stats:
        while at + 1 < len(samples) and samples[at + 1].minute <= s.minute:
            at += 1
        fleet = samples[at] if samples else None
        p99 = s.ttft_p99_s
        rows.append(
            f"{s.minute},{clock(s.minute)},{s.demand_rps:.3f},{s.sent},{s.ok},{s.failed},"
            f"{s.slo_missed},{'' if p99 is None else f'{p99:.3f}'},"
            f"{fleet.desired if fleet else ''},{fleet.ready if fleet else ''}"
        )
    path.write_text("\n".join(rows) + "\n")


def closing_table(outcomes: Sequence[Outcome]) -> list[str]:
    """One row per scenario against the target share of requests missing the SLO."""
    rows = [
        f"{'scenario':<12} {'SLO missed':>14} {'GPU-hours':>10} {'change→scale-up':>16}  "
        f"target ≤ {TARGET_SLO_MISSED:.1%}"
    ]
    for o in outcomes:
        verdict = "met" if o.missed_share <= TARGET_SLO_MISSED else "MISSED"
        rows.append(
            f"{o.name:<12} {o.missed_share:>7.2%} ({o.slo_missed:>4}) {o.gpu_hours:>10.1f} "
            f"{o.reaction:>16}  {verdict}  ({o.title})"
        )
    return rows


@contextlib.contextmanager
def _logs_to(path: Path) -> Iterator[None]:
    """Operator and Kopf logs go to a file while the demo runs: the terminal is the view's."""
    root = logging.getLogger()
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    consoles = (sys.stdout, sys.stderr)
    level, kept = root.level, [h for h in root.handlers if getattr(h, "stream", None) in consoles]
    for other in kept:  # a console handler would draw over the live view
        root.removeHandler(other)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()
        root.setLevel(level)
        for other in kept:
            root.addHandler(other)


def _verdict(status: dict[str, Any]) -> list[str]:
    """The operator's own judgement at the end of the day, when it writes one."""
    lines = [
        f"finding: {f.get('severity')} {f.get('metric')} {f.get('observed')} "
        f"(threshold {f.get('threshold')}): {f.get('advice')}"
        for f in status.get("findings", [])
    ]
    if status.get("recommendation"):
        lines.append(f"recommendation: {status['recommendation']}")
    return lines


def run(args: argparse.Namespace) -> int:
    scenarios = build_scenarios(args)
    outcomes = []
    view = LiveView(sys.stdout)
    for number, scenario in enumerate(scenarios, 1):
        view.say(f"--- scenario {number}/{len(scenarios)}: {scenario.change.name} "
                 f"({scenario.change.title})")  # fmt: skip
        out = args.out
        if len(scenarios) > 1:
            out = out.with_name(f"{out.stem}-{scenario.change.name}{out.suffix}")
        result = run_one(args, scenario, view, out)
        if result is None:
            return 1
        outcomes.append(result)
    view.say("")
    for line in closing_table(outcomes):
        view.say(line)
    return 0


def run_one(
    args: argparse.Namespace, scenario: Scenario, view: LiveView, out_path: Path
) -> Outcome | None:
    """One scenario through a fresh stack; its Outcome, or None when the run failed."""
    meta = scenario.fleet["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    workdir_tmp = None if args.workdir else tempfile.TemporaryDirectory(prefix="inferfleet-demo-")
    workdir = args.workdir / scenario.change.name if args.workdir else Path(workdir_tmp.name)  # type: ignore[union-attr]
    workdir.mkdir(parents=True, exist_ok=True)
    view.say(
        f"inferfleet demo: {len(scenario.demand)} trace minutes in {args.minutes:g} wall minutes "
        f"({scenario.time_compression:.0f}x), emulators at {args.speedup:g}x, replicas at "
        f"{scenario.change.speed_factor:g}x the planned speed, peak {scenario.peak_rps:g} req/s"
    )
    started_s = time.monotonic()
    samples: list[Sample] = []
    events = EventLog(namespace, name)
    driver: LoadDriver | None = None
    try:
        with (
            _logs_to(workdir / "operator.log"),
            LocalHarness(
                speedup=args.speedup,
                time_compression=scenario.time_compression,
                speed_factor=scenario.change.speed_factor,
                workdir=workdir,
            ) as harness,
        ):
            fleet = copy.deepcopy(scenario.fleet)
            fleet["spec"].setdefault("monitoring", {})["prometheusURL"] = harness.prometheus.url
            harness.apply_fleet(fleet)
            sized = _wait_condition(harness, namespace, name, "Sized", SIZED_TIMEOUT_S)
            view.say(f"Sized: {sized['message']}")
            _wait_condition(harness, namespace, name, "Ready", READY_TIMEOUT_S)
            view.say(f"Ready after {time.monotonic() - started_s:.1f} s; replaying the day")
            driver = LoadDriver(
                scenario.demand, scenario.replay, lambda: harness.pods.endpoints(namespace, name)
            ).start()
            while True:
                finished = driver.join(TICK_S)
                harness.check()
                minute = driver.minute_now()
                samples.append(take_sample(harness, namespace, name, minute))
                events.poll(harness, minute)
                view.show(_frame(name, scenario, driver, samples[-1], time.monotonic() - started_s))
                if finished:
                    break
            if driver.error is not None:
                raise driver.error
            final_status = (harness.fleet(namespace, name) or {}).get("status") or {}
    except RuntimeError as err:
        view.say(f"demo failed: {err}")
        return None
    finally:
        if driver is not None:
            driver.stop()
        if workdir_tmp is not None:
            workdir_tmp.cleanup()
    view.say(f"day replayed in {time.monotonic() - started_s:.0f} s wall")
    result = outcome(scenario, driver, samples)
    if args.workdir:
        write_minutes(workdir / "minutes.csv", driver.stats, samples)
    for line in _summary(scenario, driver, samples, result):
        view.say(line)
    for line in _verdict(final_status):
        view.say(line)
    view.say("events:")
    for event in events.seen:
        view.say(f"  {clock(event.minute)}  {event.type:<7} {event.reason:<16} {event.message}")
    out = write_report(
        out_path,
        title=f"inferfleet demo: {name} on {args.trace.name}",
        samples=samples,
        stats=driver.stats,
        ttft_slo_s=scenario.replay.ttft_slo_s,
        shift_minute=scenario.replay.shift_from_minute,
    )
    view.say(f"report: {out}")
    return result if driver.totals().ok > 0 else None


@contextlib.contextmanager
def _termination_interrupts() -> Iterator[None]:
    """SIGTERM and SIGHUP unwind like Ctrl-C, so every process started is stopped.

    Python's default for SIGTERM is to die without running `finally` blocks, which would leave
    the emulators (each in its own session) and Prometheus running.
    """

    def interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with _termination_interrupts():
            return run(args)
    except UsageError as err:
        print(f"python -m e2e.local.demo: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; everything started was stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
