"""The closed loop end to end: replicas slower than planned, found and scaled for.

Operator, KMock API, emulator pods at `--speed-factor 0.6`, a real Prometheus and a
constant load, on a clock of one policy minute per wall second:

Both fleets are sized on the model's median (`sizingQuantile: 0.5`), so the emulator at 0.6x
is 40 % slower than the plan itself (on the default P10 the plan already allows for that).

* 40 % slower: a load one planned replica should carry (6 req/s against its predicted 7) but
  one real one cannot. Open loop the fleet would shrink to one replica and queue for good;
  closed, the SLO guard adds replicas from the observed queue, the measured capacity keeps
  them, and from one cold start plus two scrapes after the guard's first action on, the
  requests meet the SLO.
* light load on slow replicas: no saturated sample, so the estimate stays the prediction.
"""

from __future__ import annotations

import pytest

from controllers.api.v1alpha1 import parse_decimal
from e2e.local.harness import LocalHarness
from e2e.local.load import Demand, LoadDriver, ReplayConfig
from e2e.local.timeline import EventLog
from inferfleet_testing.kube.harness import wait_for
from inferfleet_testing.prometheus import requires_prometheus
from sizing.workload import Percentiles
from tests.integration.test_e2e_local import NAME, NAMESPACE, is_true, small_fleet

pytestmark = [requires_prometheus, pytest.mark.timeout(300)]

COMPRESSION = 60.0  # a policy minute per wall second
SCRAPE_MINUTES = 1.0  # the harness scrapes every wall second: one policy minute


def replay_config(fleet: dict) -> ReplayConfig:
    return ReplayConfig(
        model=fleet["spec"]["model"]["name"],
        prompt=Percentiles(1500, 7000, 7400),
        output=Percentiles(20, 100, 250),
        max_model_len=8192,
        ttft_slo_s=1.5,
        speedup=1.0,
        wall_s_per_minute=60 / COMPRESSION,
    )


def start(harness: LocalHarness, fleet: dict) -> dict:
    fleet["spec"]["monitoring"] = {"prometheusURL": harness.prometheus.url}
    harness.apply_fleet(fleet)
    wait_for(lambda: is_true(harness, "Ready"), "Ready=True (pods warm)", timeout_s=90)
    return (harness.fleet(NAMESPACE, NAME) or {})["status"]


def replay(harness: LocalHarness, driver: LoadDriver) -> EventLog:
    """Run the load to its end, polling Events as the demo does."""
    events = EventLog(NAMESPACE, NAME)
    driver.start()
    while not driver.join(0.25):
        harness.check()
        events.poll(harness, driver.elapsed_minutes())
    assert driver.error is None
    events.poll(harness, driver.elapsed_minutes())
    return events


def test_replicas_slower_than_planned_meet_the_slo_within_a_cold_start_and_two_scrapes():
    minutes, demand_rps = 70, 6.0
    fleet = small_fleet()
    fleet["spec"]["scaling"].update({"mode": "reactive", "minWarmReplicas": 0, "minReplicas": 1})
    fleet["spec"]["sizingQuantile"] = "0.5"
    with LocalHarness(speedup=1.0, time_compression=COMPRESSION, speed_factor=0.6) as harness:
        status = start(harness, fleet)
        layout = status["plan"]["pools"][0]
        usable = float(parse_decimal(layout["usableRPSPerReplica"]))
        assert 0.6 * usable < demand_rps < usable  # one planned replica, not one real one
        cold_start_minutes = float(layout["coldStartSeconds"]) / 60
        config = replay_config(fleet)
        driver = LoadDriver(Demand((demand_rps,) * minutes), config,
                            lambda: harness.pods.endpoints(NAMESPACE, NAME))  # fmt: skip
        events = replay(harness, driver)

        status = (harness.fleet(NAMESPACE, NAME) or {})["status"]
        (capacity,) = status["capacity"]
        assert capacity.get("measuredRPS") is not None, capacity
        assert float(capacity["measuredRPS"]) < 0.85 * float(capacity["predictedRPS"]), capacity
        assert status["replicas"]["desired"] > status["plan"]["pools"][0]["replicas"]
        # Driven by what was observed: the guard (queue, latency) or the measured capacity,
        # whichever the pass saw first (on a loaded machine the measurement can come first).
        ups = [e for e in events.seen if e.reason == "Scaled" and e.message.startswith("Scaled up")
               and ("SLO guard" in e.message or "limit: measured" in e.message)]  # fmt: skip
        assert ups, [e.message for e in events.seen]
        # From one cold start plus two scrapes after that first closed-loop action (a minute
        # more for the poll), the requests meet the SLO again.
        met_from = ups[0].minute + cold_start_minutes + 2 * SCRAPE_MINUTES + 1
        assert met_from < minutes - 10, (met_from, minutes)
        after = driver.stats[int(met_from) + 1 :]
        sent = sum(m.sent for m in after)
        missed = sum(m.slo_missed for m in after)
        assert sent > 100 and missed <= 0.02 * sent, (missed, sent, met_from)


def test_without_saturated_samples_the_estimate_stays_the_prediction():
    minutes, demand_rps = 40, 0.5
    fleet = small_fleet()
    fleet["spec"]["scaling"].update({"mode": "reactive", "minWarmReplicas": 0, "minReplicas": 1})
    fleet["spec"]["sizingQuantile"] = "0.5"
    with LocalHarness(speedup=1.0, time_compression=COMPRESSION, speed_factor=0.6) as harness:
        start(harness, fleet)
        driver = LoadDriver(Demand((demand_rps,) * minutes), replay_config(fleet),
                            lambda: harness.pods.endpoints(NAMESPACE, NAME))  # fmt: skip
        replay(harness, driver)
        status = (harness.fleet(NAMESPACE, NAME) or {})["status"]
        (capacity,) = status["capacity"]
        assert capacity["saturatedSamples"] == 0, capacity
        assert capacity.get("measuredRPS") is None, capacity  # light load tells little
        assert status["replicas"]["desired"] == 1  # what the prediction asks for 0.5 req/s
        (card,) = status["scorecard"]
        day = next(w for w in card["windows"] if w["window"] == "24h")
        # Written with the policy memory (every few minutes of wall time), so it lags the run.
        assert day["coveredMinutes"] > 0 and float(day["sloMetPercent"]) > 90, day
