"""Load forecasters for predictive scaling: one small interface, a registry by name.

Every forecaster learns online from one rate per decision interval (`observe`) and answers
`forecast(now_s, horizon_s)`: the highest rate expected in (now, now + horizon], as a point and
an upper quantile. The upper quantile comes from the forecaster's own track record at the
decision horizon, so a forecaster that is often wrong asks for more headroom by itself.

Fallback order (documented in docs/scaling.md): weekly profile when two weeks are seen, daily
profile when two days are seen, else `last-value` (the highest rate of the last cold start or
so). NaN, negative and missing intervals are skipped, never averaged in. A stretch of zeros
after real load is held back from the model until it is known not to be an outage (it ends
abruptly at about the load it broke off), and no model divides by a learned value that can be
near zero: an outage in a profile bin cannot multiply a forecast.

Pure: no clock (time is a parameter), no I/O. State round-trips through `to_dict`/`from_dict`
so the operator can keep it in `status.history` across restarts.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from controllers.api.packed import FLOAT64, INT32, pack_array, unpack_array

DAY_S = 86_400
WEEK_S = 7 * DAY_S
PROFILE_BIN_S = 600  # seasonal profile resolution: 10 minutes
RECENT_WINDOW_S = 600  # last-value looks at the highest rate of the last 10 minutes
ERROR_QUANTILE = 0.95  # upper forecast = point scaled by this quantile of past misses
ERROR_HALF_LIFE_N = 2 * 1440  # forget forecast misses over about two days of minutes
# A zero interval after a level of this many requests per interval is unlikely as Poisson noise
# (e^-5 < 1 %); below it zeros are ordinary (a few requests an hour) and learned at once.
OUTAGE_MIN_LEVEL_PER_INTERVAL = 5.0
OUTAGE_MIN_S = PROFILE_BIN_S / 2  # shorter zero stretches cannot empty a profile bin
OUTAGE_MAX_S = 3600.0  # zeros for longer than this are real quiet: learned, and acted on
OUTAGE_RESUME_SHARE = 0.5  # an outage ends at no less than this share of the level before it
# Today's level vs the profile's, at most this many times either way: at a few requests a
# minute noise alone swings it several-fold; beyond, it is an outage or a bug (and the
# policy's bounds cap what is left).
RATIO_LIMIT = 8.0
HW_FACTOR_FLOOR = 0.05  # Holt-Winters divides by a seasonal factor no smaller than this


@dataclass(frozen=True)
class Forecast:
    """Highest rate expected over the horizon: a point and an upper quantile, in req/s."""

    point_rps: float
    upper_rps: float
    horizon_s: float
    method: str  # which model answered, e.g. "seasonal/daily" or "last-value"

    @property
    def learned(self) -> bool:
        """A model of the traffic's cycle answered, not the last-value fallback."""
        return self.method != LastValue.name


def _valid(rate_rps: float | None) -> bool:
    return rate_rps is not None and math.isfinite(rate_rps) and rate_rps >= 0.0


class DecayingHistogram:
    """A streaming quantile over fixed bin edges; old samples fade with a half-life.

    Compact (one float per bin) and serialisable, unlike a raw sample window.
    """

    def __init__(self, edges: np.ndarray, half_life_n: float) -> None:
        self.edges = np.asarray(edges, dtype=float)
        self.weights = np.zeros(len(self.edges) - 1)
        self.decay = 0.5 ** (1.0 / half_life_n)

    def add(self, value: float) -> None:
        self.weights *= self.decay
        i = int(np.searchsorted(self.edges, value, side="right")) - 1
        self.weights[min(max(i, 0), len(self.weights) - 1)] += 1.0

    @property
    def total(self) -> float:
        return float(self.weights.sum())

    def quantile(self, q: float) -> float | None:
        """Upper edge of the bin holding quantile q (conservative); None when empty.

        The last bin is open-ended, so it answers with its lower edge.
        """
        total = self.total
        if total <= 0.0:
            return None
        i = int(np.searchsorted(np.cumsum(self.weights), q * total, side="left"))
        i = min(i, len(self.weights) - 1)
        return float(self.edges[i if i == len(self.weights) - 1 else i + 1])

    def to_dict(self) -> dict[str, Any]:
        return {"w": pack_array(self.weights, FLOAT64)}  # exact: the weights decay in float64

    def load(self, data: dict[str, Any]) -> None:
        self.weights = unpack_array(data["w"], self.weights.shape, FLOAT64)


# log(actual max / forecast max), in bins of 0.02. Misses beyond 2x land in the open last bin,
# so the upper forecast is at most twice the point: bigger bursts are the warm spare's job,
# and one early burst must not double-and-more the fleet for days.
_ERROR_EDGES = np.concatenate(([-50.0], np.linspace(-1.0, math.log(2.0), 86), [50.0]))


class Forecaster(ABC):
    """One interval's rate in, the horizon's highest expected rate out."""

    name: ClassVar[str]

    def __init__(self, interval_s: float = 60.0, error_horizon_s: float = 360.0) -> None:
        if interval_s <= 0 or error_horizon_s <= 0:
            raise ValueError(
                f"interval_s ({interval_s}) and error_horizon_s ({error_horizon_s}) must be > 0"
            )
        self.interval_s = interval_s
        self.error_horizon_s = error_horizon_s
        self.recent: deque[tuple[float, float]] = deque()
        self.errors = DecayingHistogram(_ERROR_EDGES, ERROR_HALF_LIFE_N)
        # open checks of our own forecasts: [due_s, forecast max, observed max so far]
        self.pending: deque[list[float]] = deque()
        self.first_s: float | None = None
        self.last_s: float | None = None
        # a zero stretch held back from the model: [first_s, last_s, intervals, level before]
        self.quiet: list[float] | None = None

    # --- the interface ---------------------------------------------------------------------

    def observe(self, t_s: float, rate_rps: float | None) -> list[tuple[float, float]]:
        """Learn the mean rate of the interval ending at t_s; missing or NaN is skipped.

        Returns the intervals learned now, in order, for the policy's other statistics: this
        one; none while zeros are held back; held zeros first once they turn out real.
        """
        if not _valid(rate_rps) or (self.last_s is not None and t_s <= self.last_s):
            return []
        assert rate_rps is not None
        if rate_rps == 0.0 and self._hold_zero(t_s):
            self._remember(t_s, 0.0)
            assert self.quiet is not None
            if self.quiet[1] - self.quiet[0] + self.interval_s <= OUTAGE_MAX_S:
                return []
            return self._learn_quiet()  # quiet for hours: real, whatever follows
        late = [] if self._outage_ended(rate_rps) else self._learn_quiet()
        self._score_pending(t_s, rate_rps)
        self._remember(t_s, rate_rps)
        self._learn(t_s, rate_rps)
        point, _ = self._point(t_s, self.error_horizon_s)
        self.pending.append([t_s + self.error_horizon_s, point, 0.0])
        return [*late, (t_s, rate_rps)]

    def _remember(self, t_s: float, rate_rps: float) -> None:
        if self.first_s is None:
            self.first_s = t_s
        self.last_s = t_s
        self.recent.append((t_s, rate_rps))
        while self.recent and self.recent[0][0] <= t_s - RECENT_WINDOW_S:
            self.recent.popleft()

    def _hold_zero(self, t_s: float) -> bool:
        """Hold this zero back from the model? Opens or extends a quiet stretch."""
        if self.quiet is None:
            level = self.level_rps()
            if level * self.interval_s < OUTAGE_MIN_LEVEL_PER_INTERVAL:
                return False
            self.quiet = [t_s, t_s, 1.0, level]
            return True
        self.quiet[1], self.quiet[2] = t_s, self.quiet[2] + 1
        return True

    def _outage_ended(self, rate_rps: float) -> bool:
        """Load is back after held zeros: abruptly, at about the level it broke off, after a
        stretch long enough to empty a profile bin? Then it was an outage, and is forgotten."""
        if self.quiet is None:
            return False
        first_s, last_s, _, level = self.quiet
        long_enough = last_s - first_s + self.interval_s >= OUTAGE_MIN_S
        if long_enough and rate_rps >= OUTAGE_RESUME_SHARE * level:
            self.quiet = None
            return True
        return False

    def _learn_quiet(self) -> list[tuple[float, float]]:
        """Feed the held zeros (if any) to the model in order, evenly spaced one an interval."""
        if self.quiet is None:
            return []
        first_s, last_s, count, _ = self.quiet
        self.quiet = None
        n = int(count)
        step = (last_s - first_s) / (n - 1) if n > 1 else 0.0
        zeros = [(first_s + i * step, 0.0) for i in range(n)]
        for t_s, rate_rps in zeros:
            self._learn(t_s, rate_rps)
        return zeros

    def forecast(self, now_s: float, horizon_s: float) -> Forecast:
        """Highest rate expected in (now, now + horizon]; zeros before any observation."""
        point, method = self._point(now_s, horizon_s)
        point = max(point, 0.0)
        return Forecast(point, self._upper(point), horizon_s, method)

    @abstractmethod
    def _learn(self, t_s: float, rate_rps: float) -> None: ...

    @abstractmethod
    def _model_point(self, now_s: float, horizon_s: float) -> tuple[float, str] | None:
        """The model's own answer, or None when its history is too short."""

    # --- shared machinery ------------------------------------------------------------------

    def _point(self, now_s: float, horizon_s: float) -> tuple[float, str]:
        answer = self._model_point(now_s, horizon_s)
        if answer is not None:
            return answer
        return self.recent_max_rps(), "last-value"

    def recent_max_rps(self) -> float:
        return max((r for _, r in self.recent), default=0.0)

    def level_rps(self) -> float:
        """Current level: the mean of the last few intervals (smooths per-minute noise)."""
        tail = [r for _, r in list(self.recent)[-3:]]
        return sum(tail) / len(tail) if tail else 0.0

    def _floor_rps(self) -> float:
        """One request per interval: keeps error ratios finite when the load is near zero."""
        return 1.0 / self.interval_s

    def _score_pending(self, t_s: float, rate_rps: float) -> None:
        floor = self._floor_rps()
        for check in self.pending:
            if check[0] >= t_s:
                check[2] = max(check[2], rate_rps)
        while self.pending and self.pending[0][0] <= t_s:
            _, predicted, actual = self.pending.popleft()
            self.errors.add(math.log((actual + floor) / (predicted + floor)))

    def _upper(self, point_rps: float) -> float:
        q = self.errors.quantile(ERROR_QUANTILE)
        if q is None:
            return 2.0 * point_rps  # no track record yet: assume we could be off by 2x
        floor = self._floor_rps()
        return max(point_rps, (point_rps + floor) * math.exp(q) - floor)

    def to_dict(self) -> dict[str, Any]:
        return {
            "forecaster": self.name,
            "intervalS": self.interval_s,
            "errorHorizonS": self.error_horizon_s,
            "firstS": self.first_s,
            "lastS": self.last_s,
            "recent": [[t, r] for t, r in self.recent],
            "pending": [list(p) for p in self.pending],
            "errors": self.errors.to_dict(),
            "model": self._model_dict(),
            "quiet": self.quiet,
        }

    def _model_dict(self) -> dict[str, Any]:
        return {}

    def _load_model(self, data: dict[str, Any]) -> None:
        return None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Forecaster:
        """Rebuild any registered forecaster from `to_dict` output (name inside)."""
        try:
            kind = FORECASTERS[data["forecaster"]]
            fc = kind(interval_s=data["intervalS"], error_horizon_s=data["errorHorizonS"])
            # Unset figures may be left out (a typed status drops nulls).
            fc.first_s, fc.last_s = data.get("firstS"), data.get("lastS")
            fc.recent = deque((float(t), float(r)) for t, r in data["recent"])
            fc.pending = deque([float(v) for v in p] for p in data["pending"])
            fc.errors.load(data["errors"])
            fc._load_model(data["model"])
            quiet = data.get("quiet")  # state saved before outages were held lacks it
            fc.quiet = None if quiet is None else [float(v) for v in quiet]
            if fc.quiet is not None and len(fc.quiet) != 4:
                raise ValueError(f"quiet stretch {quiet!r} is not [first, last, n, level]")
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"forecaster state is not usable ({err!r}); start afresh") from err
        return fc


class LastValue(Forecaster):
    """The highest rate of the last few minutes: needs no history, never wrong for long."""

    name = "last-value"

    def _learn(self, t_s: float, rate_rps: float) -> None:
        return None

    def _model_point(self, now_s: float, horizon_s: float) -> tuple[float, str] | None:
        return None


# Profiles are held in the dtype they are stored in (`controllers.api.packed`): float32, a rate
# to 7 significant digits, more than any decision uses.
PROFILE_DTYPE = np.float32


class SeasonalProfile:
    """Per-bin robust levels for one period (day or week): median of the last `depth` cycles.

    A bin's value for one cycle is the mean of the rates seen in it; gaps leave it missing.
    """

    def __init__(self, period_s: int, depth: int) -> None:
        self.period_s = period_s
        self.depth = depth
        self.values = np.full((period_s // PROFILE_BIN_S, depth), np.nan, dtype=PROFILE_DTYPE)
        self.cycle_of_bin = np.full(period_s // PROFILE_BIN_S, -1, dtype=np.int32)
        self.medians = np.full(period_s // PROFILE_BIN_S, math.nan)
        self.filled = np.zeros(period_s // PROFILE_BIN_S, dtype=np.int64)
        self.cycles = 0
        self.sum_rps = 0.0
        self.count = 0
        self.open_bin: int | None = None  # absolute bin index (t // PROFILE_BIN_S)

    def add(self, t_s: float, rate_rps: float) -> None:
        abs_bin = int((t_s - 1e-9) // PROFILE_BIN_S)  # the interval ending at t_s
        if self.open_bin is not None and abs_bin != self.open_bin:
            self._close()
        self.open_bin = abs_bin
        self.sum_rps += rate_rps
        self.count += 1

    def _close(self) -> None:
        assert self.open_bin is not None
        b = self.open_bin % len(self.cycle_of_bin)
        cycle = self.open_bin * PROFILE_BIN_S // self.period_s
        if self.cycle_of_bin[b] != cycle:
            self.values[b] = np.roll(self.values[b], 1)
            self.values[b, 0] = np.nan
            self.cycle_of_bin[b] = cycle
        self.values[b, 0] = self.sum_rps / self.count
        self.sum_rps, self.count, self.open_bin = 0.0, 0, None
        self._refresh(b)

    def _refresh(self, b: int | None = None) -> None:
        """Cache the medians and the trusted cycle count; they change only when a bin closes."""
        rows = range(len(self.medians)) if b is None else (b,)
        for i in rows:
            known = self.values[i][~np.isnan(self.values[i])]
            self.medians[i] = float(np.median(known)) if known.size else math.nan
            self.filled[i] = known.size
        self.cycles = int(np.median(self.filled))

    def cycles_seen(self) -> int:
        """Cycles with data in most bins: the profile is trusted from two on."""
        return self.cycles

    def level(self, t_s: float) -> float | None:
        median = self.medians[int(t_s // PROFILE_BIN_S) % len(self.medians)]
        return None if math.isnan(median) else float(median)

    def to_dict(self) -> dict[str, Any]:
        return {
            "values": pack_array(self.values),
            "cycles": pack_array(self.cycle_of_bin, INT32),
            "open": [self.open_bin, self.sum_rps, self.count],
        }

    def load(self, data: dict[str, Any]) -> None:
        self.values = unpack_array(data["values"], self.values.shape)
        self.cycle_of_bin = unpack_array(data["cycles"], self.cycle_of_bin.shape, INT32)
        self.open_bin, self.sum_rps, self.count = data["open"]
        self._refresh()


class Seasonal(Forecaster):
    """Hour-of-day x day-of-week profile (10-minute bins, medians of past cycles).

    The forecast scales the profile's target by how today compares with it now: profile(target)
    x level / profile(now), that ratio held within 1/8 .. 8 (`RATIO_LIMIT`), so a profile bin
    near zero (an outage learned before outages were held back, a quiet day) cannot multiply
    it. Medians make one outage or one burst day harmless; the current level keeps a slow
    trend (growth, a holiday) from being ignored.
    """

    name = "seasonal"

    def __init__(self, interval_s: float = 60.0, error_horizon_s: float = 360.0) -> None:
        super().__init__(interval_s, error_horizon_s)
        self.daily = SeasonalProfile(DAY_S, depth=7)
        self.weekly = SeasonalProfile(WEEK_S, depth=3)

    def _learn(self, t_s: float, rate_rps: float) -> None:
        self.daily.add(t_s, rate_rps)
        self.weekly.add(t_s, rate_rps)

    def _model_point(self, now_s: float, horizon_s: float) -> tuple[float, str] | None:
        for profile, label in ((self.weekly, "weekly"), (self.daily, "daily")):
            if profile.cycles_seen() >= 2:
                point = _scaled_profile_max(
                    profile, now_s, horizon_s, self.level_rps(), self._floor_rps()
                )
                if point is not None:
                    return point, f"seasonal/{label}"
        return None

    def _model_dict(self) -> dict[str, Any]:
        return {"daily": self.daily.to_dict(), "weekly": self.weekly.to_dict()}

    def _load_model(self, data: dict[str, Any]) -> None:
        self.daily.load(data["daily"])
        self.weekly.load(data["weekly"])


def _scaled_profile_max(
    profile: SeasonalProfile, now_s: float, horizon_s: float, level_rps: float, floor_rps: float
) -> float | None:
    base = profile.level(now_s - 1e-9)
    if base is None:
        return None
    # level / base, but never dividing by less than level / RATIO_LIMIT: a near-zero base
    # gives the limit, not a runaway
    scaled = level_rps + floor_rps
    ratio = max(1.0 / RATIO_LIMIT, scaled / max(base + floor_rps, scaled / RATIO_LIMIT))
    best = 0.0
    t = now_s
    while t < now_s + horizon_s:
        t = min(t + PROFILE_BIN_S, now_s + horizon_s)
        target = profile.level(t - 1e-9)
        if target is None:
            return None
        best = max(best, (target + floor_rps) * ratio)
    return max(best - floor_rps, level_rps)


class HoltWinters(Forecaster):
    """Exponential smoothing with a level and daily and weekly seasonal factors (multiplicative).

    Factors live in 10-minute bins, so the state stays small; weekly factors are used once two
    weeks are seen, daily ones once two days are. Learning divides by factors no smaller than
    `HW_FACTOR_FLOOR`, so a bin an outage pulled toward zero cannot blow the level up.
    """

    name = "holt-winters"
    ALPHA = 0.3  # level
    GAMMA = 0.1  # seasonal factors

    def __init__(self, interval_s: float = 60.0, error_horizon_s: float = 360.0) -> None:
        super().__init__(interval_s, error_horizon_s)
        self.level: float | None = None
        self.daily = np.ones(DAY_S // PROFILE_BIN_S, dtype=PROFILE_DTYPE)
        self.weekly = np.ones(WEEK_S // PROFILE_BIN_S, dtype=PROFILE_DTYPE)

    def _factor(self, t_s: float) -> float:
        return float(
            self.daily[int(t_s // PROFILE_BIN_S) % len(self.daily)]
            * self.weekly[int(t_s // PROFILE_BIN_S) % len(self.weekly)]
        )

    def _seen_s(self) -> float:
        return 0.0 if self.first_s is None or self.last_s is None else self.last_s - self.first_s

    def _learn(self, t_s: float, rate_rps: float) -> None:
        floor = self._floor_rps()
        t_mid = t_s - self.interval_s / 2
        factor = self._factor(t_mid)
        if self.level is None:
            self.level = rate_rps
            return
        deseasoned = (rate_rps + floor) / max(factor, HW_FACTOR_FLOOR)
        self.level = self.ALPHA * deseasoned + (1 - self.ALPHA) * self.level
        ratio = (rate_rps + floor) / (self.level + floor)
        d = int(t_mid // PROFILE_BIN_S) % len(self.daily)
        w = int(t_mid // PROFILE_BIN_S) % len(self.weekly)
        weekly_share = self.weekly[w]
        self.daily[d] = (1 - self.GAMMA) * self.daily[d] + self.GAMMA * ratio / max(
            weekly_share, HW_FACTOR_FLOOR
        )
        if self._seen_s() >= WEEK_S:
            self.weekly[w] = (1 - self.GAMMA) * weekly_share + self.GAMMA * ratio / max(
                self.daily[d], HW_FACTOR_FLOOR
            )

    def _model_point(self, now_s: float, horizon_s: float) -> tuple[float, str] | None:
        seen_s = self._seen_s()
        if self.level is None or seen_s < 2 * DAY_S:
            return None
        label = "weekly" if seen_s >= 2 * WEEK_S else "daily"
        best, t = 0.0, now_s
        while t < now_s + horizon_s:
            t = min(t + PROFILE_BIN_S, now_s + horizon_s)
            best = max(best, self.level * self._factor(t - 1e-9))
        return max(best - self._floor_rps(), 0.0), f"holt-winters/{label}"

    def _model_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "daily": pack_array(self.daily),
            "weekly": pack_array(self.weekly),
        }

    def _load_model(self, data: dict[str, Any]) -> None:
        self.level = data.get("level")
        self.daily = unpack_array(data["daily"], self.daily.shape)
        self.weekly = unpack_array(data["weekly"], self.weekly.shape)


FORECASTERS: dict[str, type[Forecaster]] = {
    cls.name: cls for cls in (Seasonal, HoltWinters, LastValue)
}


def make_forecaster(name: str, interval_s: float, error_horizon_s: float) -> Forecaster:
    """The forecaster registered under `name` (spec.scaling.forecaster)."""
    try:
        kind = FORECASTERS[name]
    except KeyError:
        raise ValueError(
            f"scaling.forecaster {name!r} is unknown; choose one of {', '.join(FORECASTERS)}"
        ) from None
    return kind(interval_s=interval_s, error_horizon_s=error_horizon_s)


class RampTracker:
    """How fast load grows over one cold start: the input to `minWarmReplicas: auto`.

    For each interval, the growth is the highest rate over the next cold start minus what was
    expected then (req/s, zero when load falls short of it): the rate now, or, when the policy
    has a learned forecast, the larger of that and the forecast, so a daily rise the forecast
    foresees is not paid for twice. A decaying histogram keeps it; the policy asks for the
    percentile its SLO-met target calls for (`controllers.policy.scaling.spare`).
    """

    def __init__(self, interval_s: float, cold_start_s: float, half_life_n: float = 7 * 1440):
        self.window_n = max(1, math.ceil(cold_start_s / interval_s))
        self.window: deque[tuple[float, float]] = deque()  # (rate, expected)
        edges = np.concatenate(([0.0], np.logspace(-4, 7, 12 * 11 + 1)))
        self.growth = DecayingHistogram(edges, half_life_n)

    def observe(self, rate_rps: float | None, expected_rps: float | None = None) -> None:
        """One interval's rate, and what the policy expected over the next cold start."""
        if not _valid(rate_rps):
            return
        assert rate_rps is not None
        self.window.append((rate_rps, rate_rps if expected_rps is None else expected_rps))
        if len(self.window) > self.window_n:
            _, expected = self.window.popleft()
            self.growth.add(max(0.0, max(rate for rate, _ in self.window) - expected))

    def high_growth_rps(self, quantile: float) -> float | None:
        """Growth over one cold start at this quantile; None until one cold start is seen."""
        return self.growth.quantile(quantile)

    def to_dict(self) -> dict[str, Any]:
        return {"window": [list(w) for w in self.window], "growth": self.growth.to_dict()}

    def load(self, data: dict[str, Any]) -> None:
        self.window = deque((float(rate), float(expected)) for rate, expected in data["window"])
        self.growth.load(data["growth"])
