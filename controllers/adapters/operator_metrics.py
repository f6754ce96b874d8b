"""The operator's own /metrics: what it planned, decided and found, per fleet and pool.

A dedicated `CollectorRegistry` per `OperatorMetrics` (no global state: tests and several
operators in one process do not collide). Fleet series carry `namespace`, `fleet` (and `pool`)
labels named like the vLLM series', so alert rules join them with `on (namespace, fleet, pool)`;
the operator's ServiceMonitor must therefore set `honorLabels: true`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily

from controllers.api.v1alpha1 import (
    Finding,
    PlanStatus,
    PoolCapacity,
    PoolScorecard,
    ScorecardWindow,
    parse_decimal,
    parse_duration_s,
)

_FLEET = ("namespace", "fleet")
_POOL = ("namespace", "fleet", "pool")
SEVERITIES = ("info", "warning", "critical")
# desired: what the Deployments ask for; advised: what the autoscaler decided (the same unless
# scaling.mode is advisory); pending: replicas no node took within the deadline.
REPLICA_STATES = ("desired", "ready", "warming", "pending", "advised")
SCORECARD_WINDOWS = ("1h", "24h", "7d")
# (metric suffix, help, the window's figure as a ratio or a count; None = not judged)
_SCORECARD: tuple[tuple[str, str, str], ...] = (
    ("slo_met_ratio", "Share (0-1) of judged intervals that met the SLO.", "slo_met_percent"),
    ("replica_hours", "Replica-hours held where demand was known.", "replica_hours"),
    ("lower_bound_replica_hours", "Demand / measured capacity per replica, in replica-hours.",
     "lower_bound_replica_hours"),
    ("over_lower_bound_ratio", "Replica-hours over their lower bound.", "over_lower_bound"),
    ("forecast_mape_ratio", "Forecast MAPE (0-1) at the cold-start horizon.",
     "forecast_mape_percent"),
    ("reactive_mape_ratio", "MAPE (0-1) of the reactive estimate (the rate, held) at the same "
     "horizon.", "reactive_mape_percent"),
    ("scale_events_per_day", "Replica count changes per day.", "scale_events_per_day"),
    ("flaps_per_day", "Changes against the one before within the stabilization window, per day.",
     "flaps_per_day"),
    ("pending_seconds", "Time fewer replicas were ready than asked for, beyond a cold start.",
     "pending_minutes"),
)  # fmt: skip


def _scorecard_value(window: ScorecardWindow, field: str) -> float | None:
    """The status figure in the metric's unit: percents as ratios, minutes as seconds."""
    text: str | None = getattr(window, field)
    if text is None:
        return None
    value = float(text)
    if field.endswith("_percent"):
        return value / 100
    if field.endswith("_minutes"):
        return value * 60
    return value


def _capacity_sources(c: PoolCapacity) -> tuple[tuple[str, str | None], ...]:
    return (("predicted", c.predicted_rps), ("measured", c.measured_rps), ("used", c.used_rps))


class LabelledGauge:
    """A labelled gauge held as one dict (label values -> value), exposed at each scrape.

    prometheus_client's own Gauge keeps an object per label set (its dict, lock and value
    holder, ~0.6 KiB each); at ~36 series a fleet that was ~20 MiB of the operator at 1,000
    fleets. The reconcile loop writes, the /metrics thread reads a copy (`dict.copy` holds the
    interpreter lock), so neither sees a half-written series.
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: tuple[str, ...],
        registry: CollectorRegistry,
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._labelnames = labelnames
        self._values: dict[tuple[str, ...], float] = {}
        registry.register(self)

    def set(self, labels: tuple[str, ...], value: float) -> None:
        self._values[labels] = float(value)

    def remove(self, *labels: str) -> None:
        self._values.pop(labels, None)

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(self._name, self._documentation, labels=self._labelnames)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(self._name, self._documentation, labels=self._labelnames)
        for labels, value in self._values.copy().items():
            family.add_metric(labels, value)
        yield family


class OperatorMetrics:
    """Gauges set from plans and decisions; call `forget_fleet` when a fleet is deleted."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._pools: dict[tuple[str, str], set[str]] = {}  # label sets to remove on change
        r = self.registry
        self.replicas = LabelledGauge(
            "inferfleet_pool_replicas",
            "Replicas per pool by state (desired, ready, warming, pending, advised).",
            (*_POOL, "state"),
            registry=r,
        )
        self.planned_gpus = LabelledGauge(
            "inferfleet_pool_planned_gpus",
            "GPUs the sizing plan uses in this pool.",
            _POOL,
            registry=r,
        )
        self.cost_per_hour = LabelledGauge(
            "inferfleet_pool_cost_per_hour_usd",
            "Planned $ per hour of this pool.",
            _POOL,
            registry=r,
        )
        self.c_max = LabelledGauge(
            "inferfleet_pool_c_max",
            "Planned concurrency per replica at the SLO knee (C_max).",
            _POOL,
            registry=r,
        )
        self.usable_rps = LabelledGauge(
            "inferfleet_pool_usable_rps_per_replica",
            "Planned usable requests/s of one replica at C_max.",
            _POOL,
            registry=r,
        )
        self.capacity_rps = LabelledGauge(
            "inferfleet_capacity_rps_per_replica",
            "Usable requests/s of one replica: predicted by the plan, measured from vLLM's "
            "metrics, and used (what scaling divides demand by).",
            (*_POOL, "source"),
            registry=r,
        )
        self.capacity_confidence = LabelledGauge(
            "inferfleet_capacity_confidence_ratio",
            "Confidence (0-1) in the measured capacity per replica.",
            _POOL,
            registry=r,
        )
        self.capacity_samples = LabelledGauge(
            "inferfleet_capacity_samples",
            "Intervals the capacity was measured from, by kind (informative, saturated).",
            (*_POOL, "kind"),
            registry=r,
        )
        self.scorecard = {
            suffix: LabelledGauge(
                f"inferfleet_scorecard_{suffix}",
                f"The autoscaler's scorecard over a rolling window: {text}",
                (*_POOL, "window"),
                registry=r,
            )
            for suffix, text, _ in _SCORECARD
        }
        self.forecast_rps = LabelledGauge(
            "inferfleet_fleet_forecast_rps",
            "Forecast peak requests/s of the fleet.",
            _FLEET,
            registry=r,
        )
        self.ttft_slo = LabelledGauge(
            "inferfleet_fleet_slo_ttft_p99_seconds",
            "The fleet's TTFT P99 target (spec.slo.ttftP99).",
            _FLEET,
            registry=r,
        )
        self.findings = LabelledGauge(
            "inferfleet_fleet_findings",
            "Monitoring findings of the last reconcile by severity.",
            (*_FLEET, "severity"),
            registry=r,
        )
        self.resize_recommended = LabelledGauge(
            "inferfleet_resize_recommended",
            "1 while the step-13 trigger recommends re-sizing the fleet.",
            _FLEET,
            registry=r,
        )
        self.reconcile_duration = Histogram(
            "inferfleet_reconcile_duration_seconds",
            "Time one reconcile took, end to end.",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=r,
        )
        self.errors = Counter(
            "inferfleet_reconcile_errors",
            "Reconcile errors by condition reason.",
            ("reason",),
            registry=r,
        )

    def set_plan(self, namespace: str, fleet: str, plan: PlanStatus) -> None:
        """Per-pool plan figures; pools no longer in the plan are dropped."""
        self._drop_pools(namespace, fleet, keep={p.pool for p in plan.pools})
        self._pools[(namespace, fleet)].update(p.pool for p in plan.pools)
        for p in plan.pools:
            labels = (namespace, fleet, p.pool)
            self.planned_gpus.set(labels, p.gpus)
            self.cost_per_hour.set(labels, parse_decimal(p.cost_per_hour))
            self.c_max.set(labels, p.c_max)
            self.usable_rps.set(labels, parse_decimal(p.usable_rps_per_replica))

    def set_replicas(
        self,
        namespace: str,
        fleet: str,
        pool: str,
        desired: int,
        ready: int,
        warming: int,
        pending: int = 0,
        advised: int | None = None,
    ) -> None:
        self._pools.setdefault((namespace, fleet), set()).add(pool)
        values = (desired, ready, warming, pending, desired if advised is None else advised)
        for state, value in zip(REPLICA_STATES, values, strict=True):
            self.replicas.set((namespace, fleet, pool, state), value)

    def set_capacity(self, namespace: str, fleet: str, capacity: Iterable[PoolCapacity]) -> None:
        """Predicted, measured (absent until measured) and used req/s per replica per pool."""
        for c in capacity:
            labels = (namespace, fleet, c.pool)
            self._pools.setdefault((namespace, fleet), set()).add(c.pool)
            for source, value in _capacity_sources(c):
                if value is None:
                    self.capacity_rps.remove(*labels, source)
                else:
                    self.capacity_rps.set((*labels, source), parse_decimal(value))
            self.capacity_confidence.set(labels, float(c.confidence_percent) / 100)
            self.capacity_samples.set((*labels, "informative"), c.samples)
            self.capacity_samples.set((*labels, "saturated"), c.saturated_samples)

    def set_scorecard(
        self, namespace: str, fleet: str, scorecards: Iterable[PoolScorecard]
    ) -> None:
        """Each pool's scorecard per window; a figure not judged yet is absent, not zero."""
        for card in scorecards:
            self._pools.setdefault((namespace, fleet), set()).add(card.pool)
            for window in card.windows:
                labels = (namespace, fleet, card.pool, window.window)
                for suffix, _, field in _SCORECARD:
                    value = _scorecard_value(window, field)
                    if value is None:
                        self.scorecard[suffix].remove(*labels)
                    else:
                        self.scorecard[suffix].set(labels, value)

    def set_slo(self, namespace: str, fleet: str, ttft_p99: str) -> None:
        """`ttft_p99` as written in the spec ('2s'); the TTFT alert compares against it."""
        self.ttft_slo.set((namespace, fleet), parse_duration_s(ttft_p99))

    def set_forecast(self, namespace: str, fleet: str, peak_rps: float) -> None:
        self.forecast_rps.set((namespace, fleet), peak_rps)

    def set_findings(self, namespace: str, fleet: str, findings: Iterable[Finding]) -> None:
        """Counts per severity, zeros included, so a cleared finding shows as 0, not absent."""
        counts = dict.fromkeys(SEVERITIES, 0)
        for finding in findings:
            counts[finding.severity] += 1
        for severity, count in counts.items():
            self.findings.set((namespace, fleet, severity), count)

    def set_resize_recommended(self, namespace: str, fleet: str, recommended: bool) -> None:
        self.resize_recommended.set((namespace, fleet), 1 if recommended else 0)

    def observe_reconcile(self, duration_s: float) -> None:
        self.reconcile_duration.observe(duration_s)

    def count_error(self, reason: str) -> None:
        """`reason` is the condition reason (e.g. PrometheusUnreachable), a small fixed set."""
        self.errors.labels(reason).inc()

    def forget_fleet(self, namespace: str, fleet: str) -> None:
        """Remove every series of a deleted fleet, so dashboards do not show ghosts."""
        self._drop_pools(namespace, fleet, keep=set())
        del self._pools[(namespace, fleet)]
        for gauge in (self.forecast_rps, self.ttft_slo, self.resize_recommended):
            gauge.remove(namespace, fleet)
        for severity in SEVERITIES:
            self.findings.remove(namespace, fleet, severity)

    def _drop_pools(self, namespace: str, fleet: str, keep: set[str]) -> None:
        known = self._pools.setdefault((namespace, fleet), set())
        for pool in known - keep:
            labels = (namespace, fleet, pool)
            for gauge in (self.planned_gpus, self.cost_per_hour, self.c_max, self.usable_rps):
                gauge.remove(*labels)
            for state in REPLICA_STATES:
                self.replicas.remove(*labels, state)
            for source in ("predicted", "measured", "used"):
                self.capacity_rps.remove(*labels, source)
            self.capacity_confidence.remove(*labels)
            for kind in ("informative", "saturated"):
                self.capacity_samples.remove(*labels, kind)
            for gauge in self.scorecard.values():
                for window in SCORECARD_WINDOWS:
                    gauge.remove(*labels, window)
        known &= keep

    def exposition(self) -> bytes:
        """The text format, as `/metrics` serves it."""
        return generate_latest(self.registry)

    def serve(self, port: int, address: str = "0.0.0.0") -> WSGIServer:
        """Serve /metrics in a daemon thread; `shutdown()` the returned server to stop."""
        server, _thread = start_http_server(port, addr=address, registry=self.registry)
        return server
