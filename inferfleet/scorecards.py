"""The autoscaler's scorecard as the CLI prints it: the rows `status.scorecard` holds."""

from __future__ import annotations

from typing import Any

from controllers.api.v1alpha1 import PoolScorecard
from inferfleet.tables import render_table

HEADERS = ["window", "minutes", "SLO met", "replica-h", "lower bound", "x bound",
           "forecast MAPE", "reactive MAPE", "events/day", "flaps/day", "Pending min"]  # fmt: skip


def scorecard_rows(card: PoolScorecard) -> list[list[str]]:
    def pct(text: str | None) -> str:
        return "-" if text is None else f"{text}%"

    return [
        [
            w.window,
            str(w.covered_minutes),
            pct(w.slo_met_percent),
            w.replica_hours,
            w.lower_bound_replica_hours,
            w.over_lower_bound or "-",
            pct(w.forecast_mape_percent),
            pct(w.reactive_mape_percent),
            w.scale_events_per_day or "-",
            w.flaps_per_day or "-",
            w.pending_minutes,
        ]
        for w in card.windows
    ]


def render_scorecard(card: PoolScorecard, title: str) -> str:
    return f"{title}\n{render_table(HEADERS, scorecard_rows(card))}"


def scorecard_json(card: PoolScorecard) -> list[dict[str, Any]]:
    return [w.model_dump(by_alias=True, exclude_none=True) for w in card.windows]
