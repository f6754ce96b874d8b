"""The closed loop end to end: replicas 40 % slower than planned, found and scaled for.

Operator, KMock API, emulator pods at `--speed-factor 0.6`, a real Prometheus and a constant
load that one planned replica should carry (6 req/s against its predicted 7 usable) but that
one real one cannot (at most 0.6 x 7). Open loop the fleet would shrink to one replica and
queue for good; closed, the SLO guard adds replicas from the observed queue, the measured
capacity keeps them, and the requests meet the SLO. About 75 s of wall time.
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

pytestmark = [requires_prometheus, pytest.mark.timeout(240)]

COMPRESSION = 60.0  # a policy minute per wall second
MINUTES = 70
DEMAND_RPS = 6.0


def test_replicas_slower_than_planned_are_measured_and_the_slo_is_met_again():
    fleet = small_fleet()
    fleet["spec"]["scaling"].update({"mode": "reactive", "minWarmReplicas": 0, "minReplicas": 1})
    with LocalHarness(speedup=1.0, time_compression=COMPRESSION, speed_factor=0.6) as harness:
        fleet["spec"]["monitoring"] = {"prometheusURL": harness.prometheus.url}
        harness.apply_fleet(fleet)
        wait_for(lambda: is_true(harness, "Ready"), "Ready=True (pods warm)", timeout_s=60)
        status = (harness.fleet(NAMESPACE, NAME) or {})["status"]
        usable = float(parse_decimal(status["plan"]["pools"][0]["usableRPSPerReplica"]))
        assert 0.6 * usable < DEMAND_RPS < usable  # one planned replica, not one real one

        config = ReplayConfig(
            model=fleet["spec"]["model"]["name"],
            prompt=Percentiles(1500, 7000, 7400),
            output=Percentiles(20, 100, 250),
            max_model_len=8192,
            ttft_slo_s=1.5,
            speedup=1.0,
            wall_s_per_minute=60 / COMPRESSION,
        )
        demand = Demand((DEMAND_RPS,) * MINUTES)
        driver = LoadDriver(demand, config, lambda: harness.pods.endpoints(NAMESPACE, NAME))
        assert driver.start().join(MINUTES * config.wall_s_per_minute + 60)
        assert driver.error is None

        status = (harness.fleet(NAMESPACE, NAME) or {})["status"]
        (capacity,) = status["capacity"]
        assert capacity.get("measuredRPS") is not None, capacity
        assert float(capacity["measuredRPS"]) < 0.85 * float(capacity["predictedRPS"]), capacity
        # More than the plan's count (the plan alone would even shrink it to one).
        assert status["replicas"]["desired"] > status["plan"]["pools"][0]["replicas"]
        scaled = [e.message for e in EventLog(NAMESPACE, NAME).poll(harness, 0)
                  if e.reason == "Scaled"]  # fmt: skip
        assert any("SLO guard" in m for m in scaled), scaled
        # The last third of the replay: served within the SLO again.
        tail = driver.stats[-MINUTES // 3 :]
        sent = sum(m.sent for m in tail)
        missed = sum(m.slo_missed + m.failed for m in tail)
        assert sent > 0 and missed <= 0.02 * sent, (missed, sent)
