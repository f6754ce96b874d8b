"""History for the forecaster: 14 days backfilled with promtool, read by the range query."""

from __future__ import annotations

import math
import time

import pytest

from controllers.adapters.prometheus import make_client, request_rate_history
from inferfleet_testing.prometheus import (
    PrometheusServer,
    backfill_openmetrics,
    daily_cycle_openmetrics,
    requires_prometheus,
)

pytestmark = requires_prometheus

DAY_S = 86400
STEP_S = 60


def daily_rps(t_s: float) -> float:
    """10 req/s at night, 50 at the afternoon peak: a plain daily cycle."""
    return 30.0 - 20.0 * math.cos(2 * math.pi * (t_s % DAY_S) / DAY_S)


@pytest.fixture(scope="module")
def prom_with_history(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tsdb")
    # Block boundaries are 2 h apart; start on a day boundary in the recent past.
    end_s = (int(time.time()) // DAY_S) * DAY_S
    start_s = end_s - 14 * DAY_S
    labels = {"namespace": "llm", "fleet": "chat", "pool": "h100", "pod": "a"}
    backfill_openmetrics(daily_cycle_openmetrics(labels, start_s, 14, STEP_S, daily_rps), data_dir)
    prom = PrometheusServer(data_dir=data_dir).start()
    try:
        yield prom, start_s, end_s
    finally:
        prom.close()


def test_fourteen_days_of_daily_cycle_come_back_at_the_step(prom_with_history):
    prom, start_s, end_s = prom_with_history
    history = request_rate_history(
        make_client(prom.url, timeout_s=30), "llm", "chat", start_s + 3600, end_s, step_s=3600
    )
    assert len(history.rps) == 14 * 24
    assert history.timestamps_s[0] == start_s + 3600
    # rate() over 5 min averages the last five 1-min increments: within 0.5 req/s of the cycle.
    for t_s, rps in zip(history.timestamps_s, history.rps, strict=True):
        assert rps == pytest.approx(daily_rps(t_s), abs=0.5)
    assert max(history.rps) == pytest.approx(50.0, abs=0.5)
    assert min(history.rps) == pytest.approx(10.0, abs=0.5)
