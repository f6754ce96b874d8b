"""The demo's live view: a redrawn block on a terminal, one line every few seconds otherwise.

Plain ANSI (cursor up + clear to end of screen), so it needs no curses and degrades to log
lines under CI or a pipe.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TextIO

from e2e.local.timeline import Sample, clock

BAR_WIDTH = 30


@dataclass(frozen=True)
class Frame:
    """Everything one redraw shows."""

    fleet: str
    minute: float  # trace minute from 00:00
    done_share: float  # of the replay
    sample: Sample
    demand_rps: float  # the trace's rate now (real time)
    sent_rps: float  # what the driver actually sent over the recent minutes (real time)
    ttft_p99_s: float | None  # over the recent minutes, GPU time
    ttft_slo_s: float
    slo_missed_share: float  # over the day so far
    wall_s: float


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def render_block(frame: Frame) -> list[str]:
    done = frame.done_share
    filled = int(done * BAR_WIDTH)
    sample = frame.sample
    conditions = " ".join(f"{t}={s}" for t, s in sample.conditions) or "no conditions yet"
    forecast = "-" if sample.forecast_rps is None else f"{sample.forecast_rps:.2f} req/s"
    lines = [
        f"inferfleet demo  {frame.fleet}  [{'#' * filled}{'-' * (BAR_WIDTH - filled)}]"
        f"  {clock(frame.minute)} ({done:.0%})  wall {frame.wall_s:.0f} s",
        f"  fleet    {conditions}",
    ]
    for pool in sample.pools:
        lines.append(
            f"  pool {pool.pool:<8} desired {pool.desired:>3}  ready {pool.ready:>3}  "
            f"capacity {pool.ready * pool.usable_rps_per_replica:6.2f} req/s"
        )
    lines += [
        f"  demand   {frame.demand_rps:6.2f} req/s   sent {frame.sent_rps:6.2f} req/s   "
        f"forecast {forecast}",
        f"  TTFT P99 {_seconds(frame.ttft_p99_s)} (SLO {frame.ttft_slo_s:.2f} s)   "
        f"SLO missed {frame.slo_missed_share:.1%}   cost ${sample.cost_per_hour_usd:.2f}/h",
    ]
    return lines


def render_line(frame: Frame) -> str:
    sample = frame.sample
    pools = " ".join(f"{p.pool} {p.ready}/{p.desired}" for p in sample.pools) or "no pools"
    return (
        f"{clock(frame.minute)}  {pools} ready/desired  demand {frame.demand_rps:.2f} req/s  "
        f"TTFT P99 {_seconds(frame.ttft_p99_s)}  SLO missed {frame.slo_missed_share:.1%}  "
        f"${sample.cost_per_hour_usd:.2f}/h"
    )


class LiveView:
    """Redraws in place on a TTY; prints a line every `line_every_s` otherwise."""

    def __init__(self, stream: TextIO, line_every_s: float = 10.0) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.line_every_s = line_every_s
        self._drawn = 0
        self._last_line_s = float("-inf")

    def show(self, frame: Frame) -> None:
        if self.tty:
            lines = render_block(frame)
            up = f"\x1b[{self._drawn}F" if self._drawn else ""
            self.stream.write(up + "\x1b[J" + "\n".join(lines) + "\n")
            self._drawn = len(lines)
        elif time.monotonic() - self._last_line_s >= self.line_every_s:
            self.stream.write(render_line(frame) + "\n")
            self._last_line_s = time.monotonic()
        self.stream.flush()

    def say(self, text: str) -> None:
        """A line that stays (above the live block on a TTY)."""
        if self.tty and self._drawn:
            self.stream.write(f"\x1b[{self._drawn}F\x1b[J")
            self._drawn = 0
        self.stream.write(text + "\n")
        self.stream.flush()
