"""`demo-report.png`: the day on three panels sharing the hour-of-day axis.

1. demand vs the ready replicas' usable capacity (and the operator's forecast when it writes
   one): capacity under demand is where the SLO is at risk;
2. TTFT P99 per half hour of trace time vs the SLO;
3. $/hour of the replicas that hold GPUs (ready and starting) vs the static plan's.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from e2e.local.load import MinuteStats
from e2e.local.timeline import Sample


def ttft_p99_by_bucket(
    stats: Sequence[MinuteStats], bucket_minutes: int
) -> tuple[list[float], list[float]]:
    """(bucket middle in hours, TTFT P99 s) for buckets with at least one success."""
    hours, p99s = [], []
    for start in range(0, len(stats), bucket_minutes):
        values = [v for s in stats[start : start + bucket_minutes] for v in s.ttft_s]
        if values:
            hours.append((stats[start].minute + bucket_minutes / 2) / 60)
            p99s.append(float(np.percentile(values, 99)))
    return hours, p99s


def write_report(
    out: Path,
    *,
    title: str,
    samples: Sequence[Sample],
    stats: Sequence[MinuteStats],
    ttft_slo_s: float,
    shift_minute: int | None = None,
    bucket_minutes: int = 30,
) -> Path:
    # A bare Agg Figure, not pyplot: no global backend state, no display needed (CI, ssh).
    fig = Figure(figsize=(11, 9))
    FigureCanvasAgg(fig)
    demand_ax, ttft_ax, cost_ax = fig.subplots(3, 1, sharex=True)
    fig.suptitle(title)
    demand_ax.plot(
        [s.minute / 60 for s in stats], [s.demand_rps for s in stats], label="demand", lw=1
    )
    hours = [s.minute / 60 for s in samples]
    demand_ax.step(
        hours, [s.ready_capacity_rps for s in samples], where="post",
        label="ready capacity (ready replicas x usable req/s)",
    )  # fmt: skip
    demand_ax.step(
        hours, [s.desired_capacity_rps for s in samples], where="post", ls="--", lw=1,
        label="desired capacity",
    )  # fmt: skip
    forecast = [(h, s.forecast_rps) for h, s in zip(hours, samples, strict=True) if s.forecast_rps]
    if forecast:
        demand_ax.plot(*zip(*forecast, strict=True), ls="--", label="forecast next peak")
    demand_ax.set_ylabel("req/s")
    demand_ax.legend(loc="upper left", fontsize="small")

    if shift_minute is not None:
        demand_ax.annotate("prompt-length shift", (shift_minute / 60, 0), xytext=(3, 3),
                           textcoords="offset points", fontsize="small", color="grey")  # fmt: skip
    bucket_hours, p99s = ttft_p99_by_bucket(stats, bucket_minutes)
    ttft_ax.plot(bucket_hours, p99s, marker=".", label=f"TTFT P99 per {bucket_minutes} min")
    ttft_ax.axhline(ttft_slo_s, color="red", ls="--", label=f"SLO {ttft_slo_s:g} s")
    ttft_ax.set_ylabel("seconds")
    ttft_ax.legend(loc="upper left", fontsize="small")

    cost_ax.step(
        hours, [s.cost_per_hour_usd for s in samples], where="post", color="green",
        label="replicas holding GPUs",
    )  # fmt: skip
    plan_costs = [s.plan_cost_per_hour_usd for s in samples if s.plan_cost_per_hour_usd]
    if plan_costs:
        cost_ax.axhline(plan_costs[-1], color="grey", ls="--", label="the plan, all day")
    cost_ax.legend(loc="upper left", fontsize="small")
    cost_ax.set_ylabel("$/hour")
    cost_ax.set_xlabel("hour of day (trace time)")
    if stats:
        cost_ax.set_xlim(stats[0].minute / 60, (stats[-1].minute + 1) / 60)
    for ax in (demand_ax, ttft_ax, cost_ax):
        if shift_minute is not None:
            ax.axvline(shift_minute / 60, color="grey", ls=":", lw=1)
        ax.grid(alpha=0.3)
        ax.set_ylim(bottom=0)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    return out
