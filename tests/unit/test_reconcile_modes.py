"""The reconcile's pure step for advisory mode, Pending replicas and the scale-down order."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from controllers.api.conditions import DEGRADED, find
from controllers.policy.drain import DELETION_COST
from controllers.policy.monitoring.snapshot import MetricsSnapshot, PoolMetrics, Sample
from controllers.reconcile.decide import (
    Annotate,
    Apply,
    Effects,
    PostEvent,
    decide,
    with_removal_order,
)
from controllers.reconcile.observe import Observation, Planned
from tests.plans import fleet_plan, pool_plan
from tests.unit.test_pending import MESSAGE, pending_pod
from tests.unit.test_reconcile_decide import START_S, _next, _observation, _scaled_fleet


def _with_mode(planned: Planned, mode: str) -> Planned:
    scaling = planned.spec.scaling.model_copy(update={"mode": mode})
    return replace(planned, spec=planned.spec.model_copy(update={"scaling": scaling}))


def _loaded(obs: Observation, t: float, rps: float) -> Observation:
    pools = tuple(PoolMetrics(p.pool, request_rate_rps=Sample(rps, 0.0))
                  for p in (obs.planned.plan.pools if obs.planned else ()))  # fmt: skip
    snapshot = MetricsSnapshot("llm", "code-8b", t, True, pools=pools)
    return replace(obs, now_s=t, policy_now_s=t, snapshot=snapshot)


def _deployment_replicas(effects: Effects) -> list[int]:
    return [w.manifest["spec"]["replicas"] for w in effects.writes
            if isinstance(w, Apply) and w.manifest["kind"] == "Deployment"]  # fmt: skip


def _events(effects: Effects, reason: str) -> list[str]:
    return [w.message for w in effects.writes if isinstance(w, PostEvent) and w.reason == reason]


def _passes(obs: Observation, first_minute: int, minutes: int, rps: float):
    for k in range(first_minute, first_minute + minutes):
        t = float(START_S + 60 * (k + 1))
        effects = decide(_loaded(obs, t, rps))
        yield effects
        obs = _next(_loaded(obs, t, rps), effects, t)


def test_advisory_mode_says_what_it_would_do_and_never_changes_replicas():
    planned = _scaled_fleet()[0]
    obs = _observation(planned=_with_mode(planned, "predictive"))
    effects = decide(_loaded(obs, START_S, 2.0))
    obs = _next(_loaded(obs, START_S, 2.0), effects, START_S)
    running = _deployment_replicas(effects)[0]
    obs = replace(obs, planned=_with_mode(planned, "advisory"))
    advisory = []
    for k in range(10):  # ten minutes of 12x the load
        t = float(START_S + 60 * (k + 1))
        effects = decide(_loaded(obs, t, 24.0))
        advisory.append(effects)
        obs = _next(_loaded(obs, t, 24.0), effects, t)
    assert all(r == running for e in advisory for r in _deployment_replicas(e))
    assert not any(_events(e, "Scaled") for e in advisory)
    would = [m for e in advisory for m in _events(e, "WouldScale")]
    assert would and would[0].startswith(f"Would scale up code-8b-l40s from {running} to ")
    assert len(would) <= len({e.status.replicas.advised for e in advisory if e.status.replicas})
    last = advisory[-1].status.replicas
    assert last is not None and last.desired == running and (last.advised or 0) > running
    memory = advisory[-1].status.history.pools["l40s"]
    assert memory.replicas == running and memory.advised == last.advised

    obs = replace(obs, planned=_with_mode(planned, "predictive"))  # and back: it acts now
    t = float(START_S + 60 * 11)
    acting = decide(_loaded(obs, t, 24.0))
    (scaled,) = _events(acting, "Scaled")
    assert scaled.startswith(f"Scaled up code-8b-l40s from {running} to ")
    assert _deployment_replicas(acting)[0] > running
    assert acting.status.history.pools["l40s"].advised is None


L40S = pool_plan(pool="l40s", gpu="L40S", tensor_parallel=1, replicas=3, gpus=3,
                 usable_rps_per_replica="8")  # fmt: skip
L4 = pool_plan(pool="l4", gpu="L4", tensor_parallel=1, replicas=1, gpus=1,
               usable_rps_per_replica="2")  # fmt: skip


def _two_pools() -> Observation:
    planned = _with_mode(_scaled_fleet()[0], "static")  # the plan's counts: 3 L40S, 1 L4
    planned = replace(planned, plan=fleet_plan(L40S, L4))
    return _observation(planned=planned)


def _with_pods(obs: Observation, *pods: dict[str, Any], ready: int = 1) -> Observation:
    owned = dict(obs.owned)
    key = ("Deployment", "code-8b-l40s")
    owned[key] = {**owned[key], "status": {"replicas": 3, "readyReplicas": ready}}
    return replace(obs, pods=pods, owned=owned, now_s=obs.now_s + 1)


def test_replicas_pending_past_the_deadline_degrade_the_fleet_and_spill_to_the_next_pool():
    obs = _two_pools()
    first = decide(obs)
    obs = _next(obs, first, obs.now_s)
    stuck = [pending_pod(f"p{i}", "l40s", 400) for i in range(2)]
    obs = replace(obs, now_s=1_800_000_000.0)
    effects = decide(_with_pods(obs, *stuck))
    assert _deployment_replicas(effects) == [9]  # the l4 pool: 1 + 2 x 8 req/s / 2 req/s
    (warning,) = _events(effects, "ReplicasUnschedulable")
    assert "pool l40s: 2 replicas" in warning and MESSAGE in warning and "pool l4" in warning
    degraded = find(effects.status.conditions, DEGRADED)
    assert degraded is not None and degraded.status == "True"
    assert degraded.reason == "ReplicasUnschedulable"
    assert effects.status.replicas is not None and effects.status.replicas.pending == 2
    assert effects.status.pending[0].spilled_to == "l4"

    obs = _next(obs, effects, obs.now_s)
    again = decide(_with_pods(obs, *stuck))
    assert again.writes == () and again.status_patch == {}  # said once

    placed = _next(obs, again, obs.now_s)  # scheduled now, warming
    warming = decide(_with_pods(placed, ready=1))
    assert _deployment_replicas(warming) == []  # still covered while 2 L40S warm
    ready = decide(_with_pods(_next(placed, warming, placed.now_s), ready=3))
    assert _deployment_replicas(ready) == [1]  # back to the plan's one L4
    recovered = find(ready.status.conditions, DEGRADED)
    assert recovered is not None and recovered.status == "False"


def _pod(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"app.kubernetes.io/component": "l40s"}},
            "status": {"phase": "Running",
                       "conditions": [{"type": "Ready", "status": "True"}]}}  # fmt: skip


def test_a_scale_down_marks_the_least_loaded_pods_before_it_applies():
    obs = _observation(planned=_scaled_fleet()[0])
    up = decide(_loaded(obs, START_S, 20.0))
    obs = _next(_loaded(obs, START_S, 20.0), up, START_S)
    effects = None
    for effects in _passes(obs, 0, 40, 0.5):  # calm: it scales down after the stabilization
        if effects.scale_down:
            break
    assert effects is not None and effects.scale_down == ("l40s",)
    pods = (_pod("busy"), _pod("idle"))
    ordered = with_removal_order(effects, pods, {"busy": 9.0, "idle": 1.0})
    kinds = [type(w).__name__ for w in ordered.writes if isinstance(w, Annotate | Apply)]
    assert kinds[:3] == ["Annotate", "Annotate", "Apply"]
    costs = {w.name: w.annotations[DELETION_COST] for w in ordered.writes
             if isinstance(w, Annotate)}  # fmt: skip
    assert costs == {"busy": "9", "idle": "1"}


def _grace(effects: Effects) -> list[int]:
    return [w.manifest["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
            for w in effects.writes
            if isinstance(w, Apply) and w.manifest["kind"] == "Deployment"]  # fmt: skip


def _request_p99(obs: Observation, t: float, seconds: float) -> Observation:
    pools = (PoolMetrics("l40s", request_rate_rps=Sample(2.0, 0.0),
                         request_duration_p99_s=Sample(seconds, 0.0)),)  # fmt: skip
    return replace(obs, now_s=t, policy_now_s=t,
                   snapshot=MetricsSnapshot("llm", "code-8b", t, True, pools=pools))  # fmt: skip


def test_the_grace_period_follows_the_observed_request_duration_in_coarse_steps():
    obs = _observation(planned=_scaled_fleet()[0])
    first = decide(_request_p99(obs, START_S, 60.0))
    assert _grace(first) == [120]  # 5 s + 1.25 x 60 s + 15 s, next step up
    obs = _next(_request_p99(obs, START_S, 60.0), first, START_S)
    assert _grace(decide(_request_p99(obs, START_S + 30, 70.0))) == []  # within the step
    assert _grace(decide(_request_p99(obs, START_S + 30, 200.0))) == [300]  # requests need more
    advisory = replace(obs, planned=_with_mode(obs.planned, "advisory"))
    assert _grace(decide(_request_p99(advisory, START_S + 30, 200.0))) == []  # not in advisory
