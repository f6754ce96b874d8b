"""Prometheus adapter: PromQL in, a typed `MetricsSnapshot` with the age of every value out.

One reconcile sends ONE instant query per fleet (or one for all fleets): every metric family is
aggregated by `namespace, fleet, pool` and tagged with an `inferfleet_metric` label, and
`timestamp()` of each family's source series travels in the same answer, so the cost does not
grow with the number of pods. Series must carry `namespace`, `fleet` and `pool` labels (the
ServiceMonitor relabels the pod labels `app.kubernetes.io/instance` / `component` into them).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from controllers.adapters.prometheus_http import PrometheusClient, PrometheusError
from controllers.policy.monitoring.snapshot import (
    MetricsSnapshot,
    PoolMetrics,
    Sample,
    WorkloadMetrics,
)

POOL_BY = "namespace, fleet, pool"
FLEET_BY = "namespace, fleet"
TAG = "inferfleet_metric"
_AGE_PREFIX = "age:"


@dataclass(frozen=True)
class Family:
    """One snapshot field: its PromQL (with `{sel}`/`{w}`/`{ww}` slots) and the series whose
    newest sample dates it."""

    name: str
    expr: str
    age_series: str
    fleet_wide: bool = False


def _hq(q: float, hist: str, by: str, window: str = "{w}") -> str:
    return f"histogram_quantile({q}, sum by (le, {by}) (rate({hist}_bucket{{sel}}[{window}])))"


def _rate(counter: str, by: str = POOL_BY, window: str = "{w}") -> str:
    return f"sum by ({by}) (rate({counter}{{sel}}[{window}]))"


_KV = "vllm:kv_cache_usage_perc"
_KV_OLD = "vllm:gpu_cache_usage_perc"  # the name before vLLM v0.10
_TTFT = "vllm:time_to_first_token_seconds"
_ITL = "vllm:inter_token_latency_seconds"
_PROMPT = "vllm:request_prompt_tokens"
_OUTPUT = "vllm:request_generation_tokens"
_SUCCESS = "vllm:request_success_total"
_E2E = "vllm:e2e_request_latency_seconds"

FAMILIES: tuple[Family, ...] = (
    Family(
        "replicas_reporting",
        f"count by ({POOL_BY}) (vllm:num_requests_running{{sel}})",
        "vllm:num_requests_running",
    ),
    Family(
        "requests_running",
        f"sum by ({POOL_BY}) (vllm:num_requests_running{{sel}})",
        "vllm:num_requests_running",
    ),
    Family(
        "requests_waiting",
        f"sum by ({POOL_BY}) (vllm:num_requests_waiting{{sel}})",
        "vllm:num_requests_waiting",
    ),
    Family(
        "kv_cache_usage_ratio",
        f"(avg by ({POOL_BY}) ({_KV}{{sel}}) or avg by ({POOL_BY}) ({_KV_OLD}{{sel}}))",
        f'{{__name__=~"{_KV}|{_KV_OLD}"}}',
    ),
    Family("preemptions_per_s", _rate("vllm:num_preemptions_total"), "vllm:num_preemptions_total"),
    Family("request_rate_rps", _rate(_SUCCESS), _SUCCESS),
    Family("prompt_tok_per_s", _rate("vllm:prompt_tokens_total"), "vllm:prompt_tokens_total"),
    Family(
        "generation_tok_per_s",
        _rate("vllm:generation_tokens_total"),
        "vllm:generation_tokens_total",
    ),
    Family(
        "prefix_cache_hit_ratio",
        f"{_rate('vllm:prefix_cache_hits_total')} / {_rate('vllm:prefix_cache_queries_total')}",
        "vllm:prefix_cache_queries_total",
    ),
    Family("ttft_p50_s", _hq(0.5, _TTFT, POOL_BY), f"{_TTFT}_count"),
    Family("ttft_p99_s", _hq(0.99, _TTFT, POOL_BY), f"{_TTFT}_count"),
    Family("itl_p50_s", _hq(0.5, _ITL, POOL_BY), f"{_ITL}_count"),
    Family("itl_p99_s", _hq(0.99, _ITL, POOL_BY), f"{_ITL}_count"),
    # Over the workload window: it sizes the grace period, which must not follow a busy minute.
    Family("request_duration_p99_s", _hq(0.99, _E2E, POOL_BY, "{ww}"), f"{_E2E}_count"),
    Family(
        "spec_decode_acceptance_ratio",
        f"{_rate('vllm:spec_decode_num_accepted_tokens_total')}"
        f" / {_rate('vllm:spec_decode_num_draft_tokens_total')}",
        "vllm:spec_decode_num_draft_tokens_total",
    ),
    Family(
        "gpu_util_percent",
        f"avg by ({POOL_BY}) (DCGM_FI_DEV_GPU_UTIL{{sel}})",
        "DCGM_FI_DEV_GPU_UTIL",
    ),
    Family(
        "sm_active_ratio",
        f"avg by ({POOL_BY}) (DCGM_FI_PROF_SM_ACTIVE{{sel}})",
        "DCGM_FI_PROF_SM_ACTIVE",
    ),
    Family(
        "fb_used_mib", f"sum by ({POOL_BY}) (DCGM_FI_DEV_FB_USED{{sel}})", "DCGM_FI_DEV_FB_USED"
    ),
    Family(
        "fb_free_mib", f"sum by ({POOL_BY}) (DCGM_FI_DEV_FB_FREE{{sel}})", "DCGM_FI_DEV_FB_FREE"
    ),
    # Fleet-wide traffic shape, over the longer workload window `{ww}`.
    *(
        Family(f"{kind}_tokens_p{q}", _hq(q / 100, hist, FLEET_BY, "{ww}"), f"{hist}_count", True)
        for kind, hist in (("prompt", _PROMPT), ("output", _OUTPUT))
        for q in (50, 95, 99)
    ),
    Family("request_rate_rps", _rate(_SUCCESS, FLEET_BY), _SUCCESS, True),
    Family(
        "peak_request_rate_rps",
        f"max_over_time(({_rate(_SUCCESS, FLEET_BY)})[{{ww}}:{{step}}])",
        _SUCCESS,
        True,
    ),
)
# vLLM exports no adapter-hit counter yet, so that field stays missing (a unit test checks
# that every other snapshot field has exactly one family).
UNQUERIED = frozenset({"lora_adapter_hit_ratio"})


@dataclass(frozen=True)
class QueryWindows:
    """Rate window for live signals, and the longer window that characterises the workload."""

    rate: str = "5m"
    workload: str = "1d"
    peak_step: str = "1m"
    max_age_s: float = 90.0


def _selector(namespace: str | None, fleet: str | None) -> str:
    """Label matchers; values quoted as PromQL strings (a stray quote cannot end the query)."""
    matchers = []
    if namespace is not None:
        matchers.append(f"namespace={json.dumps(namespace)}")
    if fleet is not None:
        matchers.append(f"fleet={json.dumps(fleet)}")
    return ",".join(matchers)


def _with_selector(series: str, sel: str) -> str:
    """`name{sel}`, or merge `sel` into a `{__name__=~...}` matcher."""
    if not sel:
        return series
    if series.startswith("{"):
        return series[:-1] + "," + sel + "}"
    return series + "{" + sel + "}"


def snapshot_query(
    namespace: str | None = None, fleet: str | None = None, windows: QueryWindows = QueryWindows()
) -> str:
    """The one PromQL expression behind a snapshot; no namespace/fleet = every fleet."""
    sel = _selector(namespace, fleet)
    braces = "{" + sel + "}" if sel else ""
    parts = []
    for fam in FAMILIES:
        expr = (
            fam.expr.replace("{sel}", braces)
            .replace("{ww}", windows.workload)
            .replace("{w}", windows.rate)
            .replace("{step}", windows.peak_step)
        )
        scope = "fleet" if fam.fleet_wide else "pool"
        parts.append(f'label_replace({expr}, "{TAG}", "{scope}/{fam.name}", "", "")')
    by = {(fam.age_series, fam.fleet_wide) for fam in FAMILIES}
    for series, fleet_wide in sorted(by):
        group = FLEET_BY if fleet_wide else POOL_BY
        scope = "fleet" if fleet_wide else "pool"
        ts = f"max by ({group}) (timestamp({_with_selector(series, sel)}))"
        tag = json.dumps(f"{_AGE_PREFIX}{scope}/{series}")  # the series may hold quotes
        parts.append(f'label_replace({ts}, "{TAG}", {tag}, "", "")')
    return "\n or ".join(parts)


def make_client(url: str, timeout_s: float = 5.0) -> PrometheusClient:
    """A client that fails fast: one retry, a timeout, POST (the snapshot query is long)."""
    return PrometheusClient(url, timeout_s=timeout_s)


FleetKey = tuple[str, str]
# No family is negative (counts, rates, ratios, MiB) and none comes near this; a value beyond
# it is a broken exporter, and believing it would scale on nonsense.
MAX_PLAUSIBLE = 1e12


def _number(raw: object) -> float | None:
    """A sample value as Prometheus encodes it (a string); None for anything unusable."""
    if not isinstance(raw, str | int | float) or isinstance(raw, bool):
        return None
    try:
        value = float(raw)
    except (ValueError, OverflowError):
        return None
    return value if math.isfinite(value) else None


def _plausible(value: float | None) -> float | None:
    return value if value is not None and 0.0 <= value <= MAX_PLAUSIBLE else None


def _point(pair: object) -> tuple[float | None, float | None]:
    """`[timestamp, "value"]` -> (timestamp, value); (None, None) for another shape."""
    if not isinstance(pair, list | tuple) or len(pair) != 2:
        return None, None
    return _number(pair[0]), _number(pair[1])


def _labels(row: object) -> dict[str, str] | None:
    """A row's labels when they are a mapping of strings, else None (the row is skipped)."""
    metric = row.get("metric") if isinstance(row, Mapping) else None
    if not isinstance(metric, Mapping):
        return None
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in metric.items()):
        return None
    return dict(metric)


def _split(
    rows: Iterable[Any], now_s: float
) -> tuple[dict[tuple, float], dict[tuple, float], set[FleetKey]]:
    """Rows -> values and ages keyed by (namespace, fleet, pool|'', tag), and the fleets seen.

    Total: a row of another shape (no tag, labels or value that are not strings, NaN, a value
    no family can have) is skipped, so what it would have said shows up as missing.
    """
    values: dict[tuple, float] = {}
    ages: dict[tuple, float] = {}
    fleets: set[FleetKey] = set()
    for row in rows:
        labels = _labels(row)
        tag = labels.get(TAG) if labels is not None else None
        if labels is None or tag is None:
            continue
        key_base = (labels.get("namespace", ""), labels.get("fleet", ""), labels.get("pool", ""))
        _, value = _point(row.get("value"))
        if tag.startswith(_AGE_PREFIX):
            if value is not None:
                ages[(*key_base, tag.removeprefix(_AGE_PREFIX))] = max(0.0, now_s - value)
            continue
        if not key_base[1]:
            continue  # a series without the fleet label belongs to no fleet
        fleets.add(key_base[:2])
        if (plausible := _plausible(value)) is not None:
            values[(*key_base, tag)] = plausible
    return values, ages, fleets


def _build(
    key: FleetKey,
    values: Mapping[tuple, float],
    ages: Mapping[tuple, float],
    pools: Iterable[str],
    now_s: float,
    max_age_s: float,
) -> MetricsSnapshot:
    ns, fleet = key
    missing: list[str] = []
    stale: list[str] = []

    def sample(pool: str, fam: Family, label: str) -> Sample | None:
        scope = "fleet" if fam.fleet_wide else "pool"
        value = values.get((ns, fleet, pool, f"{scope}/{fam.name}"))
        age = ages.get((ns, fleet, pool, f"{scope}/{fam.age_series}"))
        if value is None or age is None:
            missing.append(f"{label}/{fam.name}")
            return None
        if age > max_age_s:
            stale.append(f"{label}/{fam.name}")
            return None
        return Sample(value=value, age_s=age)

    pool_metrics = []
    for pool in sorted(pools):
        found = {fam.name: sample(pool, fam, pool) for fam in FAMILIES if not fam.fleet_wide}
        pool_metrics.append(PoolMetrics(pool=pool, **found))
    workload = WorkloadMetrics(
        **{fam.name: sample("", fam, "workload") for fam in FAMILIES if fam.fleet_wide}
    )
    return MetricsSnapshot(
        namespace=ns,
        fleet=fleet,
        queried_at_s=now_s,
        reachable=True,
        pools=tuple(pool_metrics),
        workload=workload,
        missing=tuple(missing),
        stale=tuple(stale),
    )


def fetch_snapshots(
    client: PrometheusClient,
    now_s: float | None = None,
    windows: QueryWindows = QueryWindows(),
    namespace: str | None = None,
    fleet: str | None = None,
    expected_pools: Mapping[FleetKey, Iterable[str]] | None = None,
) -> dict[FleetKey, MetricsSnapshot]:
    """One query; a snapshot per fleet found (and per fleet in `expected_pools`, even if
    Prometheus has nothing on it, so absence shows up as `missing`)."""
    now_s = time.time() if now_s is None else now_s
    query = snapshot_query(namespace, fleet, windows)
    rows = client.custom_query(query, params={"time": f"{now_s:.3f}"})
    values, ages, fleets = _split(rows, now_s)
    expected = dict(expected_pools or {})
    pools_by_fleet: dict[FleetKey, set[str]] = {key: set(p) for key, p in expected.items()}
    for ns, fl, pool, tag in values:
        if pool and tag.startswith("pool/"):
            pools_by_fleet.setdefault((ns, fl), set()).add(pool)
    for key in fleets:
        pools_by_fleet.setdefault(key, set())
    return {
        key: _build(key, values, ages, pools, now_s, windows.max_age_s)
        for key, pools in pools_by_fleet.items()
    }


def fetch_snapshot(
    client: PrometheusClient,
    namespace: str,
    fleet: str,
    pools: Iterable[str],
    now_s: float | None = None,
    windows: QueryWindows = QueryWindows(),
) -> MetricsSnapshot:
    """The reconcile's call: one query scoped to this fleet; never raises for Prometheus
    trouble (no answer, an error, a reply of another shape): the snapshot says which."""
    now_s = time.time() if now_s is None else now_s
    key = (namespace, fleet)
    try:
        found = fetch_snapshots(client, now_s, windows, namespace, fleet, {key: pools})
    except PrometheusError as err:
        return unavailable(namespace, fleet, now_s, err)
    return found[key]


def unavailable(namespace: str, fleet: str, now_s: float, err: PrometheusError) -> MetricsSnapshot:
    return MetricsSnapshot(
        namespace=namespace,
        fleet=fleet,
        queried_at_s=now_s,
        reachable=False,
        error=str(err)[:300],
        fault=err.reason,
    )


def pod_requests(client: PrometheusClient, namespace: str, fleet: str) -> dict[str, float]:
    """Requests each of the fleet's pods is running or queueing now, by pod name (a
    scale-down removes the least loaded first); a row of another shape is left out."""
    sel = _selector(namespace, fleet)
    query = (
        f"sum by (pod) (vllm:num_requests_running{{{sel}}})"
        f" + sum by (pod) (vllm:num_requests_waiting{{{sel}}})"
    )
    found: dict[str, float] = {}
    for row in client.custom_query(query):
        labels = _labels(row)
        pod = labels.get("pod") if labels is not None else None
        _, value = _point(row.get("value")) if pod else (None, None)
        if pod and (plausible := _plausible(value)) is not None:
            found[pod] = plausible
    return found


@dataclass(frozen=True)
class RateHistory:
    """Request rate of one fleet at a fixed step; gaps (no data) are simply absent."""

    timestamps_s: tuple[float, ...]
    rps: tuple[float, ...]


def request_rate_history(
    client: PrometheusClient,
    namespace: str,
    fleet: str,
    start_s: float,
    end_s: float,
    step_s: float,
    rate_window: str = "5m",
) -> RateHistory:
    """Fleet request rate over [start_s, end_s] (e.g. 14 days at 5 min) for the forecaster."""
    sel = _selector(namespace, fleet)
    query = f"sum by ({FLEET_BY}) (rate({_SUCCESS}{{{sel}}}[{rate_window}]))"
    rows = client.custom_query_range(
        query,
        start_time=datetime.fromtimestamp(start_s, tz=UTC),
        end_time=datetime.fromtimestamp(end_s, tz=UTC),
        step=f"{step_s:g}s",
    )
    points: list[tuple[float, float]] = []
    for row in rows:
        pairs = row.get("values") if isinstance(row, Mapping) else None
        for ts, raw in map(_point, pairs if isinstance(pairs, list) else ()):
            if ts is not None and (value := _plausible(raw)) is not None:
                points.append((ts, value))
    points.sort()
    return RateHistory(timestamps_s=tuple(ts for ts, _ in points), rps=tuple(v for _, v in points))
