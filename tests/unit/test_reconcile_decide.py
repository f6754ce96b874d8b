"""The reconcile's pure step: an Observation in, Effects out — no API server, no clock."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import replace
from functools import cache
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from controllers.adapters.kube import Owner
from controllers.api.conditions import DEGRADED, SIZED, find
from controllers.api.v1alpha1 import (
    InferenceFleet,
    InferenceFleetStatus,
    PoolPlanStatus,
    parse_status,
)
from controllers.policy.autoscale import pool_config
from controllers.policy.monitoring.snapshot import MetricsSnapshot, PoolMetrics, Sample
from controllers.policy.scaling.policy import ScalingPolicy
from controllers.policy.scaling.replay import Trace, replay_policy
from controllers.reconcile.decide import Apply, Delete, Effects, PostEvent, decide, failed
from controllers.reconcile.observe import Observation, Planned
from controllers.reconcile.plans import SpecRefused, plan_or_refusal
from inferfleet.commands.policy_replay import add_arguments, config_from_args
from sizing.curve import find_capacity
from sizing.plan import memoized
from tests.conftest import REPO
from tests.plans import fleet_plan, pool_plan

OWNER = Owner(name="code-8b", namespace="llm", uid="uid-1")


@cache
def _planned() -> Planned:
    doc = yaml.safe_load((REPO / "examples" / "fleet-code-8b.yaml").read_text())
    spec = InferenceFleet.model_validate(doc).spec
    hf_config = dict(spec.model.hf_config.inline or {})
    planned = plan_or_refusal(spec, hf_config, memoized(find_capacity))
    assert not isinstance(planned, SpecRefused)
    return Planned(spec, hf_config, *planned)


def _observation(**changes: Any) -> Observation:
    base = Observation(
        owner=OWNER,
        generation=1,
        now_s=1_000_000.0,
        raw_status={},
        status=InferenceFleetStatus(),
        dropped_status=(),
        planned=_planned(),
        policy_now_s=1_000_000.0,
    )
    return replace(base, **changes)


def _next(obs: Observation, effects: Effects, now_s: float) -> Observation:
    """The observation of the following pass, once `effects` were written."""
    owned = dict(obs.owned)
    for write in effects.writes:
        if isinstance(write, Apply):
            meta = write.manifest["metadata"]
            owned[(write.manifest["kind"], meta["name"])] = write.manifest
    raw = effects.status.model_dump(by_alias=True, exclude_none=True)
    return replace(
        obs,
        now_s=now_s,
        policy_now_s=now_s,
        owned=owned,
        owned_deployments=tuple(m for (kind, _), m in owned.items() if kind == "Deployment"),
        raw_status=raw,
        status=parse_status(raw)[0],
        remembered=effects.memory,
    )


def test_first_pass_applies_every_object_and_says_so():
    effects = decide(_observation())
    applied = [w.manifest["kind"] for w in effects.writes if isinstance(w, Apply)]
    assert applied == ["Deployment", "Service", "PodDisruptionBudget"]
    reasons = [w.reason for w in effects.writes if isinstance(w, PostEvent)]
    assert reasons == ["Applied"] * 3
    assert effects.status_patch["plan"]["hash"] == _planned().plan.hash
    sized = find(effects.status.conditions, SIZED)
    assert sized is not None and sized.status == "True"


def test_a_second_pass_over_what_the_first_wrote_writes_nothing():
    first = _observation()
    effects = decide(first)
    second = decide(_next(first, effects, first.now_s + 30))
    assert second.writes == ()
    assert second.status_patch == {}


def test_a_resync_of_a_predictive_fleet_writes_nothing_and_its_forecast_holds_absolute_times():
    """The forecast's times are instants, not "now + N": a pass a little later, on the same
    traffic and before the policy's next step, finds nothing to write."""
    obs = _observation(planned=_scaled_fleet()[0])
    effects = None
    for k in range(30):  # a half hour of traffic, one policy step a minute
        t = START_S + 60.0 * (k + 1) + 17  # off the profile's 10-minute grid
        pools = (PoolMetrics("l40s", request_rate_rps=Sample(REQUESTS[k] / 60, 0.0)),)
        snapshot = MetricsSnapshot("llm", "code-8b", t, True, pools=pools)
        obs = replace(obs, now_s=t, policy_now_s=t, snapshot=snapshot)
        effects = decide(obs)
        obs = _next(obs, effects, t)
    assert effects is not None and effects.status.forecast is not None
    forecast = effects.status.forecast
    assert forecast.next_peak_at is not None and forecast.next_peak_at.endswith("0:00Z")
    assert "in " not in (forecast.reason or "") and "ahead" not in (forecast.reason or "")
    for later_s in (10.0, 40.0):  # before the next step is due
        resync = decide(replace(obs, now_s=obs.now_s + later_s, policy_now_s=obs.now_s + later_s))
        assert resync.writes == ()
        assert resync.status_patch == {}


def test_a_hand_edited_deployment_is_put_back():
    first = _observation()
    effects = decide(first)
    obs = _next(first, effects, first.now_s + 30)
    key = next(k for k in obs.owned if k[0] == "Deployment")
    edited = json.loads(json.dumps(obs.owned[key]))
    edited["spec"]["template"]["spec"]["containers"][0]["image"] = "someone/else:latest"
    again = decide(replace(obs, owned={**obs.owned, key: edited}))
    assert [w.manifest["kind"] for w in again.writes if isinstance(w, Apply)] == ["Deployment"]


def test_a_pool_the_plan_dropped_is_pruned_with_its_companions():
    stale = {"metadata": {"name": "code-8b-old", "ownerReferences": [{"uid": OWNER.uid}]}}
    effects = decide(_observation(owned_deployments=(stale,)))
    deleted = [(w.kind, w.name) for w in effects.writes if isinstance(w, Delete)]
    assert deleted == [
        ("Deployment", "code-8b-old"),
        ("Service", "code-8b-old"),
        ("PodDisruptionBudget", "code-8b-old"),
    ]
    assert any(isinstance(w, PostEvent) and w.reason == "Pruned" for w in effects.writes)


def test_a_refused_spec_touches_nothing_and_warns_once():
    refused = _observation(planned=None, refusal=SpecRefused("InvalidSpec", "spec.slo: bad"))
    effects = decide(refused)
    assert not any(isinstance(w, (Apply, Delete)) for w in effects.writes)
    assert [w.reason for w in effects.writes if isinstance(w, PostEvent)] == ["InvalidSpec"]
    assert effects.status_patch["observedGeneration"] == 1
    again = decide(_next(refused, effects, refused.now_s + 30))
    assert again.writes == () and again.status_patch == {}


def test_a_failed_pass_is_degraded_once_and_clears_on_the_next_good_one():
    obs = _observation()
    effects = failed(obs, RuntimeError("boom"))
    degraded = find(effects.status.conditions, DEGRADED)
    assert degraded is not None and degraded.status == "True" and "boom" in degraded.message
    assert [w.reason for w in effects.writes if isinstance(w, PostEvent)] == ["ReconcileFailed"]
    assert not any(isinstance(w, (Apply, Delete)) for w in effects.writes)
    retried = _next(obs, effects, obs.now_s + 1)
    assert failed(retried, RuntimeError("boom")).writes == ()  # said once, not on every retry
    recovered = find(decide(retried).status.conditions, DEGRADED)
    assert recovered is not None and recovered.status == "False"


def test_stored_history_that_does_not_parse_is_started_afresh_with_an_event():
    raw = {"history": {"version": 1, "pools": {"a": {"replicas": "many"}}}}
    status, dropped = parse_status(raw)
    assert dropped == ("history",) and status.history is None
    effects = decide(_observation(raw_status=raw, status=status, dropped_status=dropped))
    events = [w for w in effects.writes if isinstance(w, PostEvent)]
    assert events[0].reason == "StatusReset" and "status.history" in events[0].message
    assert effects.status.history is not None  # a fresh, typed one


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=30,
)
_status_keys = st.sampled_from(
    [
        "conditions",
        "plan",
        "replicas",
        "forecast",
        "findings",
        "history",
        "recommendation",
        "capacity",
        "scorecard",
        "pending",
    ]
)


@given(st.one_of(_json, st.dictionaries(_status_keys, _json, max_size=5)))
def test_any_stored_status_parses_to_a_typed_state_or_a_fresh_one(raw):
    status, dropped = parse_status(raw)
    assert isinstance(status, InferenceFleetStatus)
    kept = status.model_dump(by_alias=True, exclude_none=True)
    fresh = InferenceFleetStatus().model_dump(by_alias=True, exclude_none=True)
    assert all(kept.get(key) == fresh.get(key) for key in dropped)  # dropped = started afresh
    assert InferenceFleetStatus.model_validate(kept) == status  # what is kept round-trips


# --- one scaling function behind the operator, policy-replay and simulate ---------------------

REQUESTS = [60 * (10 + (k % 17) * ((k // 20) % 5)) for k in range(90)]
START_S = 1_700_006_400  # a Wednesday, 00:00 UTC
CLI_ARGS = ["--usable-rps-per-replica", "2.0", "--cold-start-s", "120"]
CLI_ARGS += ["--min-replicas", "1", "--max-replicas", "16"]


def _scaled_fleet() -> tuple[Planned, PoolPlanStatus]:
    """A predictive one-pool fleet (16 L40S at most) whose policy the CLI flags above match."""
    planned = _planned()
    scaling = planned.spec.scaling.model_copy(
        update={"mode": "predictive", "min_replicas": 1, "max_replicas": 16, "interval": "60s"}
    )
    spec = planned.spec.model_copy(update={"scaling": scaling})
    pool = pool_plan(pool="l40s", usable_rps_per_replica="2.0", cold_start_seconds=120)
    pool = pool.model_copy(update={"tensor_parallel": 1, "gpus": 4})
    return Planned(spec, planned.hf_config, fleet_plan(pool), {}), pool


def _operator_replicas() -> list[int]:
    """The operator's decide, pass after pass, each fed the memory the last one kept."""
    obs = _observation(planned=_scaled_fleet()[0])
    out = []
    for k, requests in enumerate(REQUESTS):
        t = float(START_S + 60 * (k + 1))
        pools = (PoolMetrics("l40s", request_rate_rps=Sample(requests / 60, 0.0)),)
        snapshot = MetricsSnapshot("llm", "code-8b", t, True, pools=pools)
        obs = replace(obs, now_s=t, policy_now_s=t, snapshot=snapshot)
        effects = decide(obs)
        assert effects.status.replicas is not None
        out.append(effects.status.replicas.desired)
        obs = _next(obs, effects, t)
    return out


def test_one_tick_gives_the_same_replicas_in_the_operator_policy_replay_and_simulate():
    planned, pool = _scaled_fleet()
    config = pool_config(planned.spec, pool, primary=True)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    from_flags = config_from_args(parser.parse_args(CLI_ARGS))
    # The same policy settings (the pool's 16-GPU cap is the CLI's --max-replicas 16; the
    # closed loop's SLO and per-replica token rates come from the spec, which the CLI lacks,
    # and matter only once the lines carry what the replicas report).
    assert (
        replace(config, max_gpus=None, static_replicas=None, closed_loop=from_flags.closed_loop)
        == from_flags
    )
    trace = Trace(start_s=START_S, interval_s=60, requests=tuple(REQUESTS))
    _, decisions = replay_policy(trace, ScalingPolicy(config))
    simulated = [d.desired_replicas for d in decisions]
    lines = "".join(
        json.dumps({"t": START_S + 60 * (k + 1), "requests": r}) + "\n"
        for k, r in enumerate(REQUESTS)
    )
    done = subprocess.run(
        [sys.executable, "-m", "inferfleet", "policy-replay", *CLI_ARGS],
        input=lines, capture_output=True, text=True, cwd=REPO, timeout=120, check=True,
    )  # fmt: skip
    replayed = [json.loads(line)["replicas"] for line in done.stdout.splitlines()]
    assert replayed == simulated
    assert _operator_replicas() == simulated
    assert max(simulated) > min(simulated)  # the trace makes the policy move


# --- the closed loop in the operator ----------------------------------------------------------


def _fleet_at(speed: float, passes: int, demand_rps: float = 12.0) -> list[Effects]:
    """Passes over a fleet whose replicas serve `speed` x the planned 2 req/s, queueing the
    rest: what vLLM's metrics would show. A replica asked for is ready two passes later (the
    pool's 120 s cold start at 60 s a pass); one removed goes at once."""
    obs = _observation(planned=_scaled_fleet()[0])
    out = []
    asked = [6]
    waiting = 0.0
    for k in range(passes):
        ready = min(asked[-3:])
        t = float(START_S + 60 * (k + 1))
        capacity = ready * 2.0 * speed
        waiting = max(0.0, waiting + 60 * (demand_rps - capacity))
        pool = PoolMetrics(
            "l40s",
            replicas_reporting=Sample(ready, 0.0),
            request_rate_rps=Sample(min(demand_rps + waiting / 60, capacity), 0.0),
            requests_waiting=Sample(waiting, 0.0),
            ttft_p99_s=Sample(4.0 if waiting else 0.5, 0.0),
        )
        snapshot = MetricsSnapshot("llm", "code-8b", t, True, pools=(pool,))
        obs = replace(obs, now_s=t, policy_now_s=t, snapshot=snapshot)
        effects = decide(obs)
        out.append(effects)
        assert effects.status.replicas is not None
        asked.append(effects.status.replicas.desired)
        obs = _next(obs, effects, t)
    return out


def _events(effects: list[Effects], reason: str) -> list[str]:
    return [w.message for e in effects for w in e.writes if isinstance(w, PostEvent)
            and w.reason == reason]  # fmt: skip


def test_slower_replicas_are_measured_said_once_and_scaled_for_at_once():
    passes = _fleet_at(speed=0.6, passes=30)
    last = passes[-1].status
    assert last.replicas is not None and last.replicas.desired >= 10  # 12 req/s at 1.2 each
    (capacity,) = last.capacity
    assert capacity.predicted_rps == "2" and capacity.measured_rps is not None
    assert float(capacity.measured_rps) == pytest.approx(1.2, rel=0.1)
    assert capacity.saturated_samples >= 1 and float(capacity.confidence_percent) >= 50
    diverges = _events(passes, "CapacityDiverges")
    assert len(diverges) == 1 and "against 2 predicted" in diverges[0]
    scaled = _events(passes, "Scaled")
    assert any("SLO guard" in m and "TTFT P99 4 s > SLO 1.5 s" in m for m in scaled)


def test_replicas_as_fast_as_planned_are_not_news():
    passes = _fleet_at(speed=1.0, passes=30, demand_rps=6.0)
    assert _events(passes, "CapacityDiverges") == []
    assert not any("SLO guard" in m for m in _events(passes, "Scaled"))


OBSERVED = [  # (requests = served, ready, waiting, TTFT P99 s) per minute: a queue, then calm
    (600 + 30 * (k % 5), 4 + k // 12, 3000.0 if 8 <= k < 20 else 0.0, 3.0 if 8 <= k < 20 else 0.4)
    for k in range(60)
]


def test_what_the_replicas_report_moves_the_operator_and_policy_replay_alike():
    """The closed loop behind both: the operator's snapshot and policy-replay's optional keys
    reach the same `LoadSample`, so the same observations give the same replicas."""
    obs = _observation(planned=_scaled_fleet()[0])
    operator = []
    for k, (count, ready, waiting, ttft) in enumerate(OBSERVED):
        t = float(START_S + 60 * (k + 1))
        pool = PoolMetrics(
            "l40s",
            replicas_reporting=Sample(ready, 0.0),
            request_rate_rps=Sample(count / 60, 0.0),
            requests_waiting=Sample(waiting, 0.0),
            ttft_p99_s=Sample(ttft, 0.0),
        )
        snapshot = MetricsSnapshot("llm", "code-8b", t, True, pools=(pool,))
        obs = replace(obs, now_s=t, policy_now_s=t, snapshot=snapshot)
        effects = decide(obs)
        assert effects.status.replicas is not None
        operator.append(effects.status.replicas.desired)
        obs = _next(obs, effects, t)
    lines = "".join(
        json.dumps({"t": START_S + 60 * (k + 1), "requests": count, "served": count,
                    "ready": ready, "waiting": int(waiting), "ttft_p99_s": ttft}) + "\n"
        for k, (count, ready, waiting, ttft) in enumerate(OBSERVED)
    )  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "inferfleet", "policy-replay", *CLI_ARGS, "--ttft-slo-s", "1.5"],
        input=lines, capture_output=True, text=True, cwd=REPO, timeout=120, check=True,
    )  # fmt: skip
    replayed = [json.loads(line)["replicas"] for line in done.stdout.splitlines()]
    assert replayed == operator
    plain = _replay_plain()
    assert max(operator) > max(plain)  # the queue moved them both


def _replay_plain() -> list[int]:
    lines = "".join(
        json.dumps({"t": START_S + 60 * (k + 1), "requests": count}) + "\n"
        for k, (count, *_rest) in enumerate(OBSERVED)
    )
    done = subprocess.run(
        [sys.executable, "-m", "inferfleet", "policy-replay", *CLI_ARGS],
        input=lines, capture_output=True, text=True, cwd=REPO, timeout=120, check=True,
    )  # fmt: skip
    return [json.loads(line)["replicas"] for line in done.stdout.splitlines()]


def test_under_time_compression_an_interval_still_counts_its_wall_seconds_of_requests():
    """Policy time runs faster, but the rates read are per wall second: the request mix and
    the capacity samples count what one wall interval served, not what the policy's did."""
    planned, pool = _scaled_fleet()
    plain = pool_config(planned.spec, pool, primary=True)
    compressed = pool_config(planned.spec, pool, primary=True, time_compression=60.0)
    assert compressed.interval_s == 60.0 * plain.interval_s
    assert compressed.count_interval_s == plain.interval_s and plain.count_interval_s is None
    assert ScalingPolicy(compressed).capacity.interval_s == plain.interval_s
