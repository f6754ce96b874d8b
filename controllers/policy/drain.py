"""Graceful stop of a vLLM replica: the preStop drain and the grace period that bounds it.

When Kubernetes deletes a pod it marks it Terminating, which takes it out of the Service's
endpoints (no new connections), runs the preStop hook, then sends SIGTERM and, once
`terminationGracePeriodSeconds` (counted from the deletion) is over, SIGKILL. vLLM aborts what
it is still generating on SIGTERM, so the hook holds SIGTERM back until the replica is idle:

1. it waits `SETTLE_S` while the endpoint removal reaches kube-proxy and gateways (the replica
   keeps serving what still arrives: stopping it now would fail those requests);
2. it then reads the replica's own /metrics (`vllm:num_requests_running` + `_waiting`) once a
   second and returns after two idle readings in a row, after three failed reads (vLLM has
   gone), or at its deadline, whichever comes first.

The hook is a standard-library Python script run by the image's `python3` (every vLLM image
has it; curl or wget it may not). The grace period covers the settle time, the longest request
worth waiting for (the observed request-duration P99 with a margin, the plan's estimate before
there is data) and vLLM's own shutdown, between a floor and a cap, rounded up to a coarse
ladder: it lives in the pod template, so a new value rolls the pool, and small drifts must not.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from controllers.api.v1alpha1 import InferenceFleetSpec, PoolPlanStatus, parse_duration_s
from sizing.simulator import LoadPoint

SETTLE_S = 5  # endpoint removal reaching every proxy before the drain starts counting
SHUTDOWN_S = 15  # SIGTERM to exit: vLLM frees its engine and GPU memory
REQUEST_MARGIN = 1.25  # on top of the P99 request duration
GRACE_FLOOR_S = 30  # Kubernetes' default grace period
GRACE_CAP_S = 900  # a scale-down never holds GPUs longer than this for one request
# A new value rolls every replica of the pool, so it moves in coarse steps only.
GRACE_LADDER_S = (30, 45, 60, 90, 120, 180, 240, 300, 450, 600, 900)

DRAIN_SCRIPT = """\
import sys, time, urllib.request
port, settle_s, deadline_s = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
end = time.monotonic() + deadline_s
time.sleep(max(0.0, min(settle_s, deadline_s)))
names = {"vllm:num_requests_running", "vllm:num_requests_waiting"}
idle = failures = 0
while idle < 2 and failures < 3 and time.monotonic() < end:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read()
    except Exception:
        failures += 1
    else:
        failures = busy = 0
        for line in text.decode().splitlines():
            name, _, rest = line.partition("{")
            if name.split(" ")[0] in names:
                busy += float((rest.rpartition("}")[2].split() if rest else line.split()[1:])[0])
        idle = idle + 1 if busy == 0 else 0
    if idle < 2:
        time.sleep(1)
"""


def prestop_command(port: int, grace_s: int) -> list[str]:
    """The preStop exec command: drain within the grace period, leaving vLLM its shutdown."""
    deadline_s = max(SETTLE_S, grace_s - SHUTDOWN_S)
    return ["python3", "-c", DRAIN_SCRIPT, str(port), str(SETTLE_S), str(deadline_s)]


def planned_request_s(
    points: Sequence[LoadPoint],
    c_max: int,
    ttft_p99_s: float,
    itl_p99_s: float | None,
    output_tokens_p99: int,
) -> float:
    """The P99 request duration to plan the grace period on before production has measured
    one: the longer of the predicted P99 at the plan's operating concurrency (the curve's point
    nearest C_max) and the longest request the SLO allows (TTFT plus P99 output tokens at the
    ITL target), so the first measurement seldom needs a longer grace (a rollout)."""
    slo_s = ttft_p99_s + (itl_p99_s or 0.0) * max(0, output_tokens_p99)
    if not points:
        return slo_s
    nearest = min(points, key=lambda p: abs((p.concurrency or 0) - c_max))
    value = nearest.e2e_p99_s
    return max(slo_s, value) if math.isfinite(value) and value > 0 else slo_s


def fleet_request_s(
    spec: InferenceFleetSpec, pool: PoolPlanStatus, points: Sequence[LoadPoint]
) -> float:
    """`planned_request_s` for one pool of a fleet, from its SLO and workload."""
    slo = spec.slo
    return planned_request_s(
        points,
        pool.c_max,
        parse_duration_s(slo.ttft_p99),
        parse_duration_s(slo.itl_p99) if slo.itl_p99 else None,
        spec.workload.output_tokens.p99,
    )


def needed_grace_s(request_p99_s: float | None) -> int:
    """Seconds from deletion to SIGKILL that let a P99-long request finish (floor..cap)."""
    request_s = request_p99_s if request_p99_s is not None and math.isfinite(request_p99_s) else 0
    need = SETTLE_S + REQUEST_MARGIN * max(0.0, request_s) + SHUTDOWN_S
    return int(max(GRACE_FLOOR_S, math.ceil(min(float(GRACE_CAP_S), need))))  # inf: capped


def _step_at_least(seconds: int) -> int:
    return next((step for step in GRACE_LADDER_S if step >= seconds), GRACE_CAP_S)


def grace_period_s(request_p99_s: float | None, current_s: int | None = None) -> int:
    """The pool's terminationGracePeriodSeconds: raised as soon as requests need more (a short
    grace cuts them), lowered only when the current one is over twice the need (each change
    restarts every replica)."""
    step = _step_at_least(needed_grace_s(request_p99_s))
    if current_s is not None and step <= current_s <= 2 * step and current_s <= GRACE_CAP_S:
        return current_s
    return step


DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
_INT32_MAX = 2**31 - 1


def _ready(pod: Mapping[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or ()
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def removal_costs(
    pods: Sequence[Mapping[str, Any]], requests: Mapping[str, float]
) -> dict[str, str]:
    """`pod-deletion-cost` per pod, so a scale-down removes what loses least.

    The ReplicaSet already removes unscheduled, then not-ready (warming) pods first, and ranks
    ready pods by this cost: the fewest requests running or queued go first (their drain is the
    shortest). A warming pod gets the lowest cost too; a pod whose load is unknown is left as it
    is; a terminating one is past choosing.
    """
    costs: dict[str, str] = {}
    for pod in pods:
        meta = pod.get("metadata") or {}
        name = meta.get("name")
        if not name or meta.get("deletionTimestamp"):
            continue
        if not _ready(pod):
            costs[name] = "-1"
        elif name in requests and math.isfinite(requests[name]):
            costs[name] = str(min(_INT32_MAX, max(0, round(requests[name]))))
    return costs
