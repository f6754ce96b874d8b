"""The scaling decision: one frozen input per interval in, one explained decision out.

`decide` is the only place replicas are chosen. The operator, `inferfleet policy-replay` and
`inferfleet simulate` all reach it through `ScalingPolicy.step`, which owns the learning state
(forecaster, ramp statistics, the stabilization window) and can be saved in `status.history`.

Predictive mode asks for the most of:
  * the current load plus the warm spare (`minWarmReplicas`: a number, or `auto` = the growth
    seen over one cold start at a high percentile of past ramps, at least one replica, the
    N+1 spare for a failure domain; the percentile is steered by the policy's own misses
    toward `targetSLOMetPercent`, see `controllers.policy.scaling.spare`);
  * the forecast upper quantile over the next cold start plus a lead margin, because a replica
    asked for now only serves after its cold start;
  * active `schedules` entries and `minReplicas`;
then clamps to [min, max] and the pool's GPU limit, and scales down only after the
stabilization window and by bounded steps. Unknown or stale metrics, and zeros that may be an
outage, never lower the count. Every forecast is first held within what history makes
plausible, and the replicas it asks for grow per interval by a bounded step
(`controllers.policy.scaling.bounds`).

Pure: time is a parameter; no clock, no I/O.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from croniter import croniter

from controllers.api.v1alpha1 import ScalingSpec, parse_duration_s
from controllers.policy.scaling.bounds import (
    DemandEnvelope,
    Envelope,
    bound_forecast,
    step_up_limit,
)
from controllers.policy.scaling.capacity import (
    CapacityEstimator,
    LoadSample,
    PerReplica,
    SLOLimits,
    rps_in_limiting_unit,
)
from controllers.policy.scaling.forecast import (
    DAY_S,
    PROFILE_BIN_S,
    Forecast,
    Forecaster,
    RampTracker,
    make_forecaster,
)
from controllers.policy.scaling.guard import GuardConfig, GuardVerdict, SLOGuard
from controllers.policy.scaling.spare import SparePercentile
from sizing.workload import MAX_RATE_RPS, MIN_RATE_RPS

Mode = Literal["predictive", "reactive", "static", "external", "keda"]
MODES: tuple[str, ...] = ("predictive", "reactive", "static", "external", "keda")
SCALE_DOWN_STEP_FRACTION = 0.2  # at most this share of the fleet leaves per interval (min 1)
# The stabilization window spans at least this many decisions, so one noisy reading (a rate
# window of few requests, an odd request mix) never shrinks the fleet on its own.
MIN_STABILIZATION_INTERVALS = 3


@dataclass(frozen=True)
class Schedule:
    """A cron-started floor: `min_replicas` for `duration_s` after each firing (policy time)."""

    cron: str
    min_replicas: int
    duration_s: float

    def __post_init__(self) -> None:
        if not croniter.is_valid(self.cron):
            raise ValueError(
                f"scaling.schedules cron {self.cron!r} is not a 5-field cron expression "
                "such as '0 8 * * 1-5'"
            )

    def active(self, now_s: float) -> bool:
        last_fire_s = croniter(self.cron, now_s + 1).get_prev(float)
        return now_s - last_fire_s < self.duration_s


@dataclass(frozen=True)
class ClosedLoop:
    """What the closed loop judges production against: the SLO, the plan's per-replica token
    rates (demand in the unit that limits), and the guard's settings."""

    limits: SLOLimits = field(default_factory=SLOLimits)
    prompt_tok_per_s_per_replica: float | None = None
    gen_tok_per_s_per_replica: float | None = None
    guard: GuardConfig = field(default_factory=GuardConfig)


@dataclass(frozen=True)
class ScalingConfig:
    """Everything the decision needs from the spec and the plan, units resolved."""

    usable_rps_per_replica: float
    cold_start_s: float
    interval_s: float = 60.0
    mode: Mode = "predictive"
    count_interval_s: float | None = None  # seconds one interval's rates count; None: interval
    min_replicas: int = 1
    max_replicas: int | None = None
    gpus_per_replica: int = 1
    max_gpus: int | None = None
    usable_tok_per_s_per_replica: float | None = None
    min_warm_replicas: int | None = None  # None = auto, from ramps
    schedules: tuple[Schedule, ...] = ()
    scale_down_stabilization_s: float = 600.0
    lead_margin_s: float | None = None  # None = one interval
    static_replicas: int | None = None  # the plan's count, for mode static
    stale_after_s: float | None = None  # None = three intervals
    forecaster: str = "seasonal"
    target_slo_met: float = 0.998  # share of intervals the ready replicas should cover
    closed_loop: ClosedLoop = ClosedLoop()
    # forecasts stay under this multiple of the learned window's peak plus its highest rise
    # over one cold start, and add at most this multiple of that rise per interval
    bound_multiple: float = 2.0

    def __post_init__(self) -> None:
        checks = [
            (
                "usableRPSPerReplica",
                MIN_RATE_RPS <= self.usable_rps_per_replica <= MAX_RATE_RPS,
                f"between {MIN_RATE_RPS:g} and {MAX_RATE_RPS:g}",
                self.usable_rps_per_replica,
            ),
            ("coldStart", self.cold_start_s >= 0, ">= 0 s", self.cold_start_s),
            ("interval", self.interval_s > 0, "> 0 s", self.interval_s),
            ("minReplicas", self.min_replicas >= 0, ">= 0", self.min_replicas),
            ("gpusPerReplica", self.gpus_per_replica >= 1, ">= 1", self.gpus_per_replica),
            (
                "targetSLOMetPercent",
                0.5 < self.target_slo_met < 1.0,
                "between 50 and 100 (exclusive)",
                100 * self.target_slo_met,
            ),
            ("boundMultiple", self.bound_multiple >= 1.0, ">= 1", self.bound_multiple),
        ]
        for name, ok, expected, value in checks:
            if not ok:
                raise ValueError(f"scaling: {name} must be {expected}, got {value}")
        if self.max_replicas is not None and self.max_replicas < self.min_replicas:
            raise ValueError(
                f"scaling.minReplicas ({self.min_replicas}) must be <= scaling.maxReplicas "
                f"({self.max_replicas})"
            )
        if self.mode not in MODES:
            raise ValueError(f"scaling.mode {self.mode!r} is not one of {', '.join(MODES)}")

    @property
    def horizon_s(self) -> float:
        """How far ahead a replica asked for now must look: its cold start plus a margin."""
        lead = self.interval_s if self.lead_margin_s is None else self.lead_margin_s
        return self.cold_start_s + lead

    @property
    def cold_start_n(self) -> int:
        """The cold start in whole intervals, rounded up."""
        return cold_start_intervals(self.cold_start_s, self.interval_s)

    @property
    def upper_limit(self) -> int | None:
        """maxReplicas and the pool's GPU budget, whichever is tighter."""
        limits = [self.max_replicas] if self.max_replicas is not None else []
        if self.max_gpus is not None:
            limits.append(self.max_gpus // self.gpus_per_replica)
        return min(limits) if limits else None

    @property
    def stabilization_s(self) -> float:
        """The scale-down window: as configured, and at least a few decisions long."""
        return max(self.scale_down_stabilization_s, MIN_STABILIZATION_INTERVALS * self.interval_s)

    @property
    def stale_limit_s(self) -> float:
        return 3 * self.interval_s if self.stale_after_s is None else self.stale_after_s


@dataclass(frozen=True)
class Metrics:
    """What the monitoring adapter measured over the last interval; None = unknown."""

    rps: float | None
    tok_per_s: float | None = None  # prompt + output tokens per second
    age_s: float = 0.0
    load: LoadSample | None = None  # what the replicas report (closed loop); None = nothing


@dataclass(frozen=True)
class TickInput:
    now_s: float
    config: ScalingConfig
    metrics: Metrics
    current_replicas: int
    forecast: Forecast | None
    ramp_growth_rps: float | None  # high-percentile growth over one cold start
    spare_note: str = ""  # which percentile, and why (from `SparePercentile.describe`)
    recent: tuple[tuple[float, int], ...] = ()  # (time, recommendation) in the window
    capacity_rps: float | None = None  # measured/blended req/s per replica; None: the plan's
    capacity_note: str = ""  # which measurement set it
    guard: GuardVerdict | None = None
    envelope: Envelope | None = None  # the learned demand bounds; None: forecasts unbounded
    quiet_since_s: float | None = None  # zeros since then after real load: maybe an outage
    forecast_note: str = ""  # how the bounds changed the forecast, if they did


@dataclass(frozen=True)
class ScalingDecision:
    desired_replicas: int
    recommended_replicas: int  # before stabilization and step limits
    reason: str
    need_now: int | None
    need_forecast: int | None
    warm_spare: int
    schedule_floor: int
    recent: tuple[tuple[float, int], ...] = field(default=(), repr=False)
    forecast_rps: float | None = None  # the forecaster's point for now + horizon (scorecard)


def cold_start_intervals(cold_start_s: float, interval_s: float) -> int:
    return math.ceil(cold_start_s / interval_s - 1e-9)


def replicas_for(rps: float, rps_per_replica: float) -> int:
    """Replicas to serve rps; a hair of tolerance so 30.0000001 / 1.0 stays 30."""
    return max(0, math.ceil(rps / rps_per_replica - 1e-9))


def rps_per_replica(
    config: ScalingConfig, metrics: Metrics, usable_rps: float | None = None
) -> float:
    """Usable req/s per replica (the plan's unless given), lowered when today's requests carry
    more tokens than the spec's per-replica token budget."""
    usable = config.usable_rps_per_replica if usable_rps is None else usable_rps
    tok = config.usable_tok_per_s_per_replica
    if tok and metrics.tok_per_s and metrics.rps:
        usable = min(usable, tok / (metrics.tok_per_s / metrics.rps))
    return usable


def warm_spare(
    config: ScalingConfig, growth_rps: float | None, per_replica: float, note: str = ""
) -> tuple[int, str]:
    if config.min_warm_replicas is not None:
        return config.min_warm_replicas, f"minWarmReplicas {config.min_warm_replicas}"
    if growth_rps is None:
        return 1, "warm spare 1 (N+1; no ramp history yet)"
    spare = max(1, replicas_for(growth_rps, per_replica))
    at = f" at {note}" if note else ""
    return spare, f"warm spare {spare} (growth {growth_rps:.3g} RPS per cold start{at}; >= N+1)"


def _clock(t_s: float) -> str:
    return time.strftime("%H:%M", time.gmtime(t_s))


def decide(tick: TickInput) -> ScalingDecision:
    """Desired replicas for this interval, with the reason."""
    cfg, m = tick.config, tick.metrics
    current = tick.current_replicas
    per_replica = rps_per_replica(cfg, m) if tick.capacity_rps is None else tick.capacity_rps
    known = m.rps is not None and math.isfinite(m.rps) and m.age_s <= cfg.stale_limit_s
    schedule_floor = max((s.min_replicas for s in cfg.schedules if s.active(tick.now_s)), default=0)
    spare, spare_why = warm_spare(cfg, tick.ramp_growth_rps, per_replica, tick.spare_note)
    need_now = replicas_for(m.rps, per_replica) if known and m.rps is not None else None
    fc = tick.forecast if cfg.mode != "reactive" else None
    need_fc = None
    if fc is not None:
        # A learned model's point already holds the rise it foresees; the warm spare covers
        # what it has missed before. The fallback's upper quantile is only published (the
        # pre-warm plan, KEDA's floor): without a model the reactive answer is the decision.
        need_fc = replicas_for(fc.point_rps if fc.learned else fc.upper_rps, per_replica)

    candidates: list[tuple[int, str]] = [(cfg.min_replicas, f"minReplicas {cfg.min_replicas}")]
    if cfg.mode == "static":
        static = cfg.static_replicas if cfg.static_replicas is not None else current
        candidates.append((static, f"static plan count {static}"))
    else:
        load = f"load {m.rps:.3g} RPS" if need_now is not None else "load unknown"
        by = (
            f"by {_clock(tick.now_s + cfg.horizon_s)} incl. {cfg.cold_start_s / 60:.3g} min "
            "cold start"
        )
        if fc is not None and fc.learned and need_fc is not None:
            base = max(need_now or 0, need_fc)
            ask = base + spare
            why = f"forecast {fc.point_rps:.3g} RPS ({fc.method}) {by}, {load}: needs {base} + "
            why += spare_why
            if tick.envelope is not None:
                step_limit = step_up_limit(
                    current,
                    (need_now or 0) + spare,
                    tick.envelope.rise_rps,
                    per_replica,
                    cfg.bound_multiple,
                )
                if ask > step_limit:
                    ask, why = (
                        step_limit,
                        f"{why}; forecast growth held to {step_limit} this interval",
                    )
            candidates.append((ask, why))
        elif need_now is not None:
            candidates.append((need_now + spare, f"{load} needs {need_now} + {spare_why}"))
        if cfg.mode != "reactive" and schedule_floor:
            candidates.append((schedule_floor, f"schedule floor {schedule_floor}"))
    guard = tick.guard if cfg.mode != "static" else None
    if guard is not None and guard.floor is not None:
        candidates.append((guard.floor, guard.reason))
    recommended, why = max(candidates, key=lambda c: c[0])
    if tick.forecast_note and why.startswith("forecast"):
        why += f" ({tick.forecast_note})"
    if tick.capacity_note:
        why += f" ({tick.capacity_note})"
    suspect = tick.quiet_since_s is not None
    if (not known or suspect) and cfg.mode != "static":
        blind = (
            f"zero requests since {_clock(tick.quiet_since_s)} after real load, maybe an outage"
            if known and tick.quiet_since_s is not None
            else f"metrics stale (age {m.age_s:.0f} s > {cfg.stale_limit_s:.0f} s)"
            if m.rps is not None and math.isfinite(m.rps)
            else "metrics unknown"
        )
        if current > recommended:
            recommended, why = current, f"{blind}: hold"
        else:
            why += f"; {blind}"

    window = (
        *tuple((t, r) for t, r in tick.recent if t > tick.now_s - cfg.stabilization_s),
        (tick.now_s, recommended),
    )
    desired = recommended
    if recommended < current and guard is not None and guard.hold:
        desired = current
        why += "; no scale-down while the SLO guard holds"
    elif recommended < current and cfg.mode != "static":
        desired = max(r for _, r in window)
        step = max(1, math.ceil(current * SCALE_DOWN_STEP_FRACTION))
        desired = min(current, max(desired, current - step))
        if desired > recommended:
            why += (
                f"; scale-down held to {desired} (stabilization "
                f"{cfg.stabilization_s / 60:.3g} min, step ≤ {step})"
            )
    limit = cfg.upper_limit
    if limit is not None and desired > limit:
        why += f"; capped at {limit} (maxReplicas / GPU limit)"
        desired = limit
    desired = max(desired, cfg.min_replicas)
    return ScalingDecision(
        desired_replicas=desired,
        recommended_replicas=recommended,
        reason=f"{why} → {desired} replicas; was {current}",
        need_now=need_now,
        need_forecast=need_fc,
        warm_spare=spare,
        schedule_floor=schedule_floor,
        recent=window,
        forecast_rps=None if fc is None else fc.point_rps,
    )


class ScalingPolicy:
    """The operator's policy with its memory: feed one interval at a time with `step`."""

    def __init__(self, config: ScalingConfig, forecaster: Forecaster | None = None) -> None:
        self.config = config
        self.forecaster = forecaster or make_forecaster(
            config.forecaster, config.interval_s, config.horizon_s
        )
        self.ramps = RampTracker(config.interval_s, config.cold_start_s)
        self.envelope = DemandEnvelope(config.interval_s, config.cold_start_s)
        self.spare = SparePercentile(config.target_slo_met, config.cold_start_n)
        self.recent: tuple[tuple[float, int], ...] = ()
        loop = config.closed_loop
        self.capacity = CapacityEstimator(
            PerReplica(
                config.usable_rps_per_replica,
                loop.prompt_tok_per_s_per_replica,
                loop.gen_tok_per_s_per_replica,
            ),
            loop.limits,
            config.interval_s if config.count_interval_s is None else config.count_interval_s,
        )
        self.guard = SLOGuard(loop.limits, loop.guard, config.stabilization_s, config.interval_s)

    def capacity_rps(self, now_s: float, metrics: Metrics) -> tuple[float | None, str]:
        """Usable req/s per replica in the unit that limits, once the closed loop knows more
        than the plan (a measurement, or the plan's token rates); None: the plan's figure."""
        estimate = self.capacity.estimate(now_s)
        loop = self.config.closed_loop
        planned_tokens = loop.prompt_tok_per_s_per_replica or loop.gen_tok_per_s_per_replica
        if estimate.measured is None and not planned_tokens:
            return None, ""
        load = metrics.load or LoadSample()
        rate, unit = rps_in_limiting_unit(
            self.capacity.current(now_s), *self.capacity.mix.smoothed(load)
        )
        rate = rps_per_replica(self.config, metrics, rate)
        if estimate.measured is None:
            return rate, f"{rate:.3g} RPS per replica planned, {unit} limit"
        return rate, (
            f"{rate:.3g} RPS per replica, {unit} limit: measured "
            f"{estimate.measured.rps:.3g} at {100 * estimate.confidence:.0f} % confidence "
            f"({estimate.saturated_samples} saturated of {estimate.samples} samples), "
            f"planned {self.config.usable_rps_per_replica:.3g}"
        )

    def step(self, now_s: float, metrics: Metrics, current_replicas: int) -> ScalingDecision:
        """Learn from the interval ending at now_s, then decide replicas from now_s on."""
        fresh = metrics.age_s <= self.config.stale_limit_s
        rate = metrics.rps if fresh else None
        load = metrics.load if fresh else None
        if load is not None:
            self.capacity.observe(now_s, load)
        per_replica, note = self.capacity_rps(now_s, metrics)
        believed = rps_per_replica(self.config, metrics) if per_replica is None else per_replica
        seen = load or LoadSample()
        planned, _ = rps_in_limiting_unit(
            self.capacity.predicted, *self.capacity.mix.smoothed(seen)
        )
        planned = rps_per_replica(self.config, metrics, planned)
        guard = self.guard.observe(now_s, load, current_replicas, rate, planned)
        learned = self.seed(now_s, rate)
        forecast, forecast_note = bound_forecast(
            self.forecaster.forecast(now_s, self.config.horizon_s),
            rate,
            self.envelope.envelope(),
            self.config.bound_multiple,
        )
        predictive = self.config.mode != "reactive" and forecast.learned
        for t_s, learned_rps in learned:
            expected_rps = max(learned_rps, forecast.point_rps) if t_s == now_s else None
            self.ramps.observe(learned_rps, expected_rps if predictive else None)
        self.spare.observe(rate, believed)
        decision = decide(
            TickInput(
                now_s=now_s,
                config=self.config,
                metrics=metrics,
                current_replicas=current_replicas,
                forecast=forecast,
                ramp_growth_rps=self.ramps.high_growth_rps(self.spare.quantile),
                spare_note=self.spare.describe(),
                recent=self.recent,
                capacity_rps=per_replica,
                capacity_note=note,
                guard=guard,
                envelope=self.envelope.envelope(),
                forecast_note=forecast_note,
                quiet_since_s=self.quiet_since_s(),
            )
        )
        self.recent = decision.recent
        self.spare.record(decision.desired_replicas)
        return decision

    def quiet_since_s(self) -> float | None:
        """Start of the zeros held back as a possible outage (None: none held)."""
        quiet = self.forecaster.quiet
        return None if quiet is None else quiet[0] - self.config.interval_s

    def seed(self, t_s: float, rate_rps: float | None) -> list[tuple[float, float]]:
        """Learn one interval's rate (also history from before the policy ran). Returns what
        was learned as demand: nothing while the rate is unknown or zeros that may be an
        outage are held back, held zeros first once they turn out real."""
        learned = self.forecaster.observe(t_s, rate_rps)
        for at_s, learned_rps in learned:
            self.envelope.observe(at_s, learned_rps)
        return learned

    def to_dict(self) -> dict[str, Any]:
        return {
            "forecast": self.forecaster.to_dict(),
            "ramps": self.ramps.to_dict(),
            "bounds": self.envelope.to_dict(),
            "spare": self.spare.to_dict(),
            "recent": [list(r) for r in self.recent],
            "capacity": self.capacity.to_dict(),
            "guard": self.guard.to_dict(),
        }

    @classmethod
    def from_dict(cls, config: ScalingConfig, data: dict[str, Any]) -> ScalingPolicy:
        """Rebuild from `to_dict` output; a ValueError says the state is unusable."""
        policy = cls(config, Forecaster.from_dict(data["forecast"]))
        try:
            policy.ramps.load(data["ramps"])
            if "spare" in data:  # state saved before the spare percentile was steered lacks it
                policy.spare.load(data["spare"])
            policy.recent = tuple((float(t), int(r)) for t, r in data["recent"])
            if "bounds" in data:
                policy.envelope.load(data["bounds"])
            else:  # state saved before the bounds: start from the forecaster's recent rates
                for t_s, rate in policy.forecaster.recent:
                    policy.envelope.observe(t_s, rate)
            if "capacity" in data:  # state saved before the closed loop lacks these
                policy.capacity.load(data["capacity"])
                policy.guard.load(data["guard"])
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"scaling policy state is not usable ({err!r}); start afresh") from err
        return policy


def config_from_spec(
    spec: ScalingSpec,
    usable_rps_per_replica: float,
    cold_start_s: float,
    gpus_per_replica: int = 1,
    max_gpus: int | None = None,
    static_replicas: int | None = None,
) -> ScalingConfig:
    """The decision's settings from `spec.scaling` plus the plan's per-replica figures."""
    return ScalingConfig(
        usable_rps_per_replica=usable_rps_per_replica,
        cold_start_s=cold_start_s,
        interval_s=parse_duration_s(spec.interval),
        mode="predictive" if spec.mode == "advisory" else spec.mode,  # advisory decides so
        min_replicas=spec.min_replicas,
        max_replicas=spec.max_replicas,
        gpus_per_replica=gpus_per_replica,
        max_gpus=max_gpus,
        min_warm_replicas=None if spec.min_warm_replicas == "auto" else spec.min_warm_replicas,
        schedules=tuple(
            Schedule(s.cron, s.min_replicas, parse_duration_s(s.duration)) for s in spec.schedules
        ),
        scale_down_stabilization_s=parse_duration_s(spec.scale_down_stabilization),
        static_replicas=static_replicas,
        forecaster=spec.forecaster,
        target_slo_met=spec.target_slo_met_percent / 100,
    )


@dataclass(frozen=True)
class PrewarmPlan:
    """When the next forecast peak comes and when warming must start to be ready for it.

    Both are absolute times on the profile's bin grid, so they stay put from one pass to the
    next unless the forecast itself moves (a status that says the same thing is not rewritten).
    """

    next_peak_at_s: float
    next_peak_rps: float  # upper quantile
    prewarm_at_s: float | None  # None: the current fleet already covers the peak; may be past
    prewarm_replicas: int
    reason: str


def prewarm_plan(
    forecaster: Forecaster,
    config: ScalingConfig,
    now_s: float,
    current_replicas: int,
    lookahead_s: float = DAY_S,
    envelope: Envelope | None = None,
) -> PrewarmPlan:
    """The next day's peak and the pre-warm time (for `status.forecast`).

    Warming starts one cold start plus the lead margin before the start of the first 10-minute
    bin whose forecast needs more than the current fleet, so the replicas are ready when it
    begins. Bins are those of the profile (multiples of its resolution since the epoch), the
    current one first; times are bin starts. A pre-warm time already past means warming is due.
    With the policy's `envelope`, forecasts are bounded as the decision bounds them.
    """
    lead_s = config.horizon_s
    per_replica = config.usable_rps_per_replica

    def forecast(horizon_s: float) -> Forecast:
        answer = forecaster.forecast(now_s, horizon_s)
        if envelope is None:
            return answer
        return bound_forecast(answer, forecaster.level_rps(), envelope, config.bound_multiple)[0]

    peak = forecast(lookahead_s)
    peak_replicas = replicas_for(peak.upper_rps, per_replica)
    limit = config.upper_limit
    if limit is not None:
        peak_replicas = min(peak_replicas, limit)
    bin_s = float(PROFILE_BIN_S)
    bin_start_s = math.floor(now_s / bin_s) * bin_s
    peak_at_s = bin_start_s
    first_short_s: float | None = None
    while bin_start_s + bin_s - now_s <= lookahead_s:
        upto = forecast(bin_start_s + bin_s - now_s)  # up to this bin's end
        peak_at_s = bin_start_s
        if first_short_s is None and replicas_for(upto.upper_rps, per_replica) > current_replicas:
            first_short_s = bin_start_s
        if upto.point_rps >= peak.point_rps:
            break
        bin_start_s += bin_s
    peak_text = f"next peak {peak.upper_rps:.3g} RPS ({peak.method}) from {_clock(peak_at_s)}"
    if first_short_s is None:
        prewarm_at_s = None
        reason = f"{peak_text}; {current_replicas} replicas already cover it"
    else:
        prewarm_at_s = first_short_s - lead_s
        reason = (
            f"{peak_text} needs {peak_replicas} replicas; warming due from "
            f"{_clock(prewarm_at_s)} (cold start and margin, {lead_s / 60:.3g} min, before "
            f"{_clock(first_short_s)})"
        )
    return PrewarmPlan(peak_at_s, peak.upper_rps, prewarm_at_s, peak_replicas, reason)
