"""A tiny kubelet + Deployment controller: each Deployment replica becomes an emulator process.

The operator only writes Deployments; something has to play the part of the cluster so its
`Ready` condition and `status.replicas` see pods come and go. Every `poll_s` the runner lists
the inferfleet-managed Deployments from the API server and, per Deployment:

* starts emulator processes up to `spec.replicas`, each with the container's vLLM flags, the
  pool's GPU and a cold start of the plan's `coldStartSeconds` divided by the time compression;
* marks a pod ready once its `/health` answers 200 (the readiness probe);
* replaces pods of an older pod template once the new ones are ready (a rolling update);
* stops the surplus when replicas go down (not-ready pods first, then the youngest): a pod
  leaves the endpoints at once, runs the template's preStop exec hook against its own port
  (the operator's drain) and gets SIGTERM when the hook returns or its grace period ends; a
  template without a hook gets SIGTERM after `drain_s`;
* writes `status.replicas/readyReplicas/availableReplicas/updatedReplicas` back, and the ready
  pods as Prometheus file_sd targets labelled `namespace`, `fleet`, `pool`, `pod`.

Each pod runs in its own process group and is killed with it; `close()` (and atexit, for a
crash) stops them all.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from controllers.adapters.kube import object_path
from controllers.api.v1alpha1 import API_VERSION, KIND
from controllers.policy.render import MANAGED_BY, VLLM_PORT
from inferfleet_testing.emulator import HOST, REPO, free_port

DEPLOYMENTS_PATH = "/apis/apps/v1/deployments"
MANAGED_SELECTOR = f"app.kubernetes.io/managed-by={MANAGED_BY}"
FLEET_LABEL = "app.kubernetes.io/instance"
POOL_LABEL = "app.kubernetes.io/component"
STOP_GRACE_S = 3.0  # SIGTERM to SIGKILL (terminationGracePeriodSeconds)
DRAIN_S = 5.0  # out of the endpoints before SIGTERM (a preStop sleep): in-flight requests end
HEALTH_TIMEOUT_S = 0.3


@dataclass(frozen=True)
class Endpoint:
    """A ready replica as a Service would list it."""

    pod: str
    namespace: str
    fleet: str
    pool: str
    url: str


@dataclass
class Pod:
    """One emulator process standing in for one vLLM pod."""

    name: str
    namespace: str
    fleet: str
    pool: str
    template_hash: str
    port: int
    dcgm_port: int
    process: subprocess.Popen[bytes]
    started_s: float
    ready: bool = False
    prestop: tuple[str, ...] = ()  # the container's preStop exec command, if any
    grace_s: float = STOP_GRACE_S  # terminationGracePeriodSeconds
    sigterm_at_s: float | None = None  # set when the pod starts terminating
    sigkill_at_s: float | None = None  # set once SIGTERM was sent
    hook: subprocess.Popen[bytes] | None = None  # the preStop hook while it runs

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def terminating(self) -> bool:
        return self.sigterm_at_s is not None


@dataclass(frozen=True)
class PoolShape:
    """What the emulator needs from the fleet's plan for one pool."""

    gpu: str
    cold_start_s: float


@dataclass
class DeploymentState:
    pods: list[Pod] = field(default_factory=list)
    reported: dict[str, int] = field(default_factory=dict)


def template_hash(deployment: dict[str, Any]) -> str:
    """Digest of the pod template: a new one means a rollout, like pod-template-hash."""
    template = json.dumps(deployment["spec"].get("template", {}), sort_keys=True)
    return hashlib.sha256(template.encode()).hexdigest()[:10]


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)


class PodRunner:
    """Reconciles emulator processes against Deployments on a background thread."""

    def __init__(
        self,
        api_url: str,
        workdir: Path,
        *,
        speedup: float,
        time_compression: float,
        speed_factor: float = 1.0,
        poll_s: float = 0.25,
        drain_s: float = DRAIN_S,
    ) -> None:
        if speedup <= 0 or time_compression <= 0 or speed_factor <= 0:
            raise ValueError(
                f"speedup ({speedup}), time_compression ({time_compression}) and speed_factor "
                f"({speed_factor}) must be > 0"
            )
        self.speedup = speedup
        self.speed_factor = speed_factor
        self.time_compression = time_compression
        self.poll_s = poll_s
        self.drain_s = drain_s
        self.targets_file = workdir / "targets.json"
        self._logs = workdir / "pods"
        self._logs.mkdir(parents=True, exist_ok=True)
        self._write_targets([])
        self._api = httpx.Client(base_url=api_url, timeout=5.0)
        self._health = httpx.Client(timeout=HEALTH_TIMEOUT_S)
        self._deployments: dict[tuple[str, str], DeploymentState] = {}
        self._serial = itertools.count()
        # Replaced whole at the end of each pass, so readers on other threads need no lock.
        self._endpoints: tuple[Endpoint, ...] = ()
        self._pods: tuple[Pod, ...] = ()
        self._stop = threading.Event()
        self.errors: list[BaseException] = []
        self.started_total = 0
        self.stopped_total = 0
        atexit.register(self.kill_all)
        self._thread = threading.Thread(target=self._main, name="pod-runner", daemon=True)
        self._thread.start()

    # --- what others read --------------------------------------------------------------------

    def endpoints(self, namespace: str, fleet: str) -> tuple[Endpoint, ...]:
        """The fleet's ready replicas across all its pools (what a gateway would route to)."""
        return tuple(e for e in self._endpoints if (e.namespace, e.fleet) == (namespace, fleet))

    def check(self) -> None:
        """Raise if the loop died (a bug): the pods it left would never change again."""
        if not self._thread.is_alive() and not self._stop.is_set():
            raise RuntimeError(f"the pod runner stopped: {self.errors[-1:]!r}")

    def pods(self) -> tuple[Pod, ...]:
        """Every pod the runner knows, terminating ones included, as of the last pass."""
        return self._pods

    # --- the loop ------------------------------------------------------------------------------

    def _main(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync()
            except httpx.HTTPError as err:  # the API server is going away or busy: try again
                self.errors.append(err)
                del self.errors[:-10]
            except BaseException as err:  # a bug here must not leave processes running
                self.errors.append(err)
                self.kill_all()
                raise
            self._stop.wait(self.poll_s)

    def sync(self) -> None:
        """One pass: list Deployments, converge pods, probe, report status and targets."""
        listed = self._api.get(DEPLOYMENTS_PATH, params={"labelSelector": MANAGED_SELECTOR})
        listed.raise_for_status()
        seen: dict[tuple[str, str], dict[str, Any]] = {}
        for deployment in listed.json().get("items", []):
            meta = deployment["metadata"]
            managed = meta.get("labels", {}).get("app.kubernetes.io/managed-by") == MANAGED_BY
            if meta.get("deletionTimestamp") or not managed:  # the selector, checked again
                continue
            key = (meta["namespace"], meta["name"])
            seen[key] = deployment
            self._converge(deployment, self._deployments.setdefault(key, DeploymentState()))
        for key in set(self._deployments) - set(seen):
            for pod in self._deployments[key].pods:
                self._begin_stop(pod)
        self._reap()
        # Endpoints and pods first, status last: whoever sees a Deployment report its replicas
        # ready (the operator, a test) then finds them among the endpoints too.
        self._publish()
        for key, deployment in seen.items():
            self._report(deployment, self._deployments[key])

    def _converge(self, deployment: dict[str, Any], state: DeploymentState) -> None:
        wanted = deployment["spec"].get("replicas")
        wanted = 1 if wanted is None else int(wanted)
        current_hash = template_hash(deployment)
        for pod in state.pods:
            if not pod.terminating and pod.process.poll() is not None:
                self._begin_stop(pod, drain_s=0.0)  # it crashed: a new one replaces it below
            elif not pod.ready and not pod.terminating:
                pod.ready = self._healthy(pod)
        live = [p for p in state.pods if not p.terminating]
        current = [p for p in live if p.template_hash == current_hash]
        old = [p for p in live if p.template_hash != current_hash]
        shape = self._pool_shape(deployment) if len(current) < wanted else None
        while shape is not None and len(current) < wanted:
            current.append(self._start(deployment, current_hash, shape))
            state.pods.append(current[-1])
        if sum(p.ready for p in current) >= wanted or wanted == 0:
            for pod in old:  # the new template serves: the old pods may go
                self._begin_stop(pod)
        surplus = len(current) - wanted
        if surplus > 0:
            # Not-ready pods first (they serve nothing), then the youngest.
            by_value = sorted(current, key=lambda p: (p.ready, -p.started_s))
            for pod in by_value[:surplus]:
                self._begin_stop(pod)

    def _pool_shape(self, deployment: dict[str, Any]) -> PoolShape | None:
        """GPU and cold start of the Deployment's pool, from its fleet's `status.plan`."""
        meta = deployment["metadata"]
        owner = next((o for o in meta.get("ownerReferences", []) if o.get("kind") == KIND), None)
        if owner is None:
            return None
        response = self._api.get(object_path(API_VERSION, KIND, meta["namespace"], owner["name"]))
        if response.status_code == 404:
            return None
        response.raise_for_status()
        plan = (response.json().get("status") or {}).get("plan") or {}
        pool = meta["labels"].get(POOL_LABEL)
        layout = next((p for p in plan.get("pools", []) if p.get("pool") == pool), None)
        if layout is None:
            return None
        return PoolShape(gpu=layout["gpu"], cold_start_s=float(layout["coldStartSeconds"]))

    def _start(self, deployment: dict[str, Any], template: str, shape: PoolShape) -> Pod:
        meta = deployment["metadata"]
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        name = f"{meta['name']}-{template[:5]}-{next(self._serial)}"
        port, dcgm_port = free_port(), free_port()
        # The container's vLLM flags first; argparse keeps the last value, so ours win.
        command = [
            sys.executable, "-m", "e2e.emulator", *container.get("args", []),
            "--gpu", shape.gpu, "--host", HOST, "--port", str(port),
            "--dcgm-port", str(dcgm_port), "--speedup", repr(self.speedup),
            "--speed-factor", repr(self.speed_factor),
            "--startup-delay-s", repr(shape.cold_start_s / self.time_compression),
            "--seed", str(self.started_total),
        ]  # fmt: skip
        with (self._logs / f"{name}.log").open("wb") as log:
            process = subprocess.Popen(
                command,
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, killed as one
            )
        self.started_total += 1
        labels = meta["labels"]
        hook = ((container.get("lifecycle") or {}).get("preStop") or {}).get("exec") or {}
        pod_spec = deployment["spec"]["template"]["spec"]
        return Pod(
            name=name,
            namespace=meta["namespace"],
            fleet=labels[FLEET_LABEL],
            pool=labels[POOL_LABEL],
            template_hash=template,
            port=port,
            dcgm_port=dcgm_port,
            process=process,
            started_s=time.monotonic(),
            prestop=tuple(hook.get("command") or ()),
            grace_s=float(pod_spec.get("terminationGracePeriodSeconds", STOP_GRACE_S)),
        )

    def _healthy(self, pod: Pod) -> bool:
        if pod.process.poll() is not None:
            return False
        try:
            return self._health.get(pod.url + "/health").status_code == 200
        except httpx.HTTPError:
            return False

    def _begin_stop(self, pod: Pod, drain_s: float | None = None) -> None:
        """Leave the endpoints now (this pass publishes it); SIGTERM once drained: when the
        preStop hook returns (at the latest at the grace period's end), else after drain_s."""
        if pod.terminating:
            return
        pod.ready = False
        now = time.monotonic()
        if drain_s is None and pod.prestop:
            pod.hook = self._run_hook(pod)
            pod.sigterm_at_s = now + pod.grace_s
        else:
            pod.sigterm_at_s = now + (self.drain_s if drain_s is None else drain_s)
        self._signal_due(pod)

    def _run_hook(self, pod: Pod) -> subprocess.Popen[bytes]:
        """The hook as the kubelet runs it in the container: vLLM's port there is ours here."""
        command = list(pod.prestop)
        command[command.index(str(VLLM_PORT))] = str(pod.port)
        with (self._logs / f"{pod.name}.prestop.log").open("wb") as log:
            return subprocess.Popen(command, cwd=REPO, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip

    def _signal_due(self, pod: Pod) -> None:
        now = time.monotonic()
        assert pod.sigterm_at_s is not None
        drained = pod.hook is not None and pod.hook.poll() is not None
        if pod.sigkill_at_s is None and (now >= pod.sigterm_at_s or drained):
            if pod.hook is not None and pod.hook.poll() is None:
                _signal_group(pod.hook, signal.SIGKILL)  # its grace is over
            _signal_group(pod.process, signal.SIGTERM)
            pod.sigkill_at_s = now + STOP_GRACE_S
        elif pod.sigkill_at_s is not None and now > pod.sigkill_at_s:
            _signal_group(pod.process, signal.SIGKILL)

    def _reap(self) -> None:
        """Signal terminating pods when due; forget those that exited."""
        for state in self._deployments.values():
            for pod in list(state.pods):
                if not pod.terminating:
                    continue
                if pod.process.poll() is None:
                    self._signal_due(pod)
                if pod.process.poll() is not None:
                    state.pods.remove(pod)
                    self.stopped_total += 1

    def _report(self, deployment: dict[str, Any], state: DeploymentState) -> None:
        """Deployment status as the controller manager would write it."""
        live = [p for p in state.pods if not p.terminating]
        current_hash = template_hash(deployment)
        ready = sum(p.ready for p in live)
        status = {
            "observedGeneration": deployment["metadata"].get("generation", 1),
            "replicas": len(live),
            "updatedReplicas": sum(p.template_hash == current_hash for p in live),
            "readyReplicas": ready,
            "availableReplicas": ready,
        }
        observed = deployment.get("status") or {}
        if all(observed.get(k) == v for k, v in status.items()):
            return
        meta = deployment["metadata"]
        response = self._api.patch(
            object_path("apps/v1", "Deployment", meta["namespace"], meta["name"]) + "/status",
            json={"status": status},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        response.raise_for_status()

    def _publish(self) -> None:
        self._pods = tuple(p for state in self._deployments.values() for p in state.pods)
        ready = [p for p in self._pods if p.ready]
        endpoints = tuple(Endpoint(p.name, p.namespace, p.fleet, p.pool, p.url) for p in ready)
        if endpoints != self._endpoints:
            self._write_targets(ready)
        self._endpoints = endpoints

    def _write_targets(self, ready: list[Pod]) -> None:
        """file_sd targets, replaced atomically so Prometheus never reads half a file."""
        groups = [
            {
                "targets": [f"{HOST}:{port}"],
                "labels": {
                    "namespace": p.namespace,
                    "fleet": p.fleet,
                    "pool": p.pool,
                    "pod": p.name,
                    "container": container,
                },
            }
            for p in ready
            for port, container in ((p.port, "vllm"), (p.dcgm_port, "dcgm-exporter"))
        ]
        partial = self.targets_file.with_suffix(".tmp")
        partial.write_text(json.dumps(groups, indent=1))
        partial.replace(self.targets_file)

    # --- shutdown --------------------------------------------------------------------------------

    def kill_all(self) -> None:
        """SIGKILL every pod's process group (atexit and error path; idempotent)."""
        for state in list(self._deployments.values()):
            for pod in state.pods:
                for process in (pod.hook, pod.process):
                    if process is not None and process.poll() is None:
                        _signal_group(process, signal.SIGKILL)
                        process.wait(timeout=5)

    def close(self) -> None:
        """Stop the loop, then every pod: SIGTERM, a grace period, SIGKILL."""
        self._stop.set()
        self._thread.join(timeout=10)
        pods = [p for state in self._deployments.values() for p in state.pods]
        for pod in pods:
            pod.sigterm_at_s = pod.sigkill_at_s = None  # stop now: nothing routes to them
            if pod.hook is not None and pod.hook.poll() is None:
                _signal_group(pod.hook, signal.SIGKILL)
                pod.hook.wait(timeout=5)
            pod.hook = None
            self._begin_stop(pod, drain_s=0.0)
        deadline = time.monotonic() + STOP_GRACE_S
        for pod in pods:
            try:
                pod.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(pod.process, signal.SIGKILL)
                pod.process.wait(timeout=5)
        self._deployments.clear()
        self._pods = self._endpoints = ()
        self._api.close()
        self._health.close()
        atexit.unregister(self.kill_all)

    def __enter__(self) -> PodRunner:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
