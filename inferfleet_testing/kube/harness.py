"""Run the API server and the real Kopf operator in threads; drive them like kubectl would.

Each runs on its own event loop in its own thread (TESTING.md: KMock and Kopf each want a loop
they own), so tests are plain synchronous functions that talk HTTP to the server and wait for
conditions with a timeout instead of sleeping.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import httpx
import kmock
import kopf
import yaml

from controllers.adapters.kube import object_path
from controllers.adapters.owned import (
    FLEET_LABEL,
    IndexedOwned,
    config_map_entry,
    index_objects,
    pod_index_entry,
)
from controllers.api.crd import SHORT_NAME
from controllers.api.v1alpha1 import CALIBRATION_LABEL, GROUP, KIND, PLURAL, VERSION
from inferfleet_testing.kube.apiserver import ApiServer, Fault, Write

T = TypeVar("T")
START_TIMEOUT_S = 10.0
# A snapshot waits its turn on a loop that may be serving a 1,000-fleet burst.
SNAPSHOT_TIMEOUT_S = 60.0

# What the operator and Kopf touch; Kopf discovers them before it watches.
RESOURCES = (
    ("apps/v1/deployments", "Deployment", True),
    ("v1/services", "Service", False),
    ("v1/pods", "Pod", True),
    ("policy/v1/poddisruptionbudgets", "PodDisruptionBudget", True),
    ("v1/configmaps", "ConfigMap", False),
    ("v1/secrets", "Secret", False),
    ("v1/events", "Event", False),
    ("v1/namespaces", "Namespace", False),
    # KEDA's CRD, as a cluster with KEDA installed serves it (scaling.mode keda).
    ("keda.sh/v1alpha1/scaledobjects", "ScaledObject", True),
)


class _LoopThread:
    """An event loop running in a daemon thread, for coroutines submitted from the test."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float = START_TIMEOUT_S) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(START_TIMEOUT_S)
        self.loop.close()


class Cluster:
    """KMock-based API server on 127.0.0.1 with a kubeconfig pointing at it."""

    def __init__(self, workdir: Path) -> None:
        self._loop = _LoopThread("kmock-apiserver")
        self.server = ApiServer()
        for path, kind, status in RESOURCES:
            self.server.declare(path, kind, status=status, namespaced=kind != "Namespace")
        self.server.declare(f"{GROUP}/{VERSION}/{PLURAL}", KIND, status=True,
                            short_names=(SHORT_NAME,))  # fmt: skip
        self.server.declare(
            "apiextensions.k8s.io/v1/customresourcedefinitions",
            "CustomResourceDefinition",
            namespaced=False,
        )
        self._http_server = kmock.Server(self.server)
        self._loop.run(self._enter())
        self.url = str(self._http_server.url).rstrip("/")
        self.kubeconfig = workdir / "kubeconfig"
        self.kubeconfig.write_text(yaml.safe_dump(self._kubeconfig()))
        self.client = httpx.Client(base_url=self.url, timeout=10.0)

    async def _enter(self) -> None:
        await self.server.__aenter__()
        await self._http_server.__aenter__()

    async def _exit(self) -> None:
        await self._http_server.__aexit__(None, None, None)
        await self.server.__aexit__(None, None, None)

    def close(self) -> None:
        self.client.close()
        self._loop.run(self._exit())
        self._loop.close()

    def _kubeconfig(self) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "kmock", "cluster": {"server": self.url}}],
            "users": [{"name": "test", "user": {"token": "test-token"}}],
            "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "test"}}],
            "current-context": "kmock",
        }

    # --- like kubectl -----------------------------------------------------------------------

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        response = self.client.post(
            object_path(obj["apiVersion"], obj["kind"], meta["namespace"]), json=obj
        )
        response.raise_for_status()
        return response.json()

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict | None:
        response = self.client.get(object_path(api_version, kind, namespace, name))
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return response.json()

    def merge_patch(
        self, api_version: str, kind: str, namespace: str, name: str, patch: dict[str, Any]
    ) -> dict[str, Any]:
        response = self.client.patch(
            object_path(api_version, kind, namespace, name),
            json=patch,
            headers={"Content-Type": "application/merge-patch+json"},
        )
        response.raise_for_status()
        return response.json()

    def patch_status(
        self, api_version: str, kind: str, namespace: str, name: str, status: dict[str, Any]
    ) -> None:
        """Merge-patch the status subresource, as the object's own controller would."""
        response = self.client.patch(
            object_path(api_version, kind, namespace, name) + "/status",
            json={"status": status},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        response.raise_for_status()

    def mark_deployments_ready(self) -> int:
        """What the Deployment controller reports once every pod is up (KMock runs no
        controllers, so without this every replica stays not ready). Returns how many
        Deployments it changed."""
        changed = 0
        for deployment in self.objects("Deployment"):
            meta, want = deployment["metadata"], deployment["spec"].get("replicas", 1)
            status = deployment.get("status") or {}
            if status.get("replicas") == want and status.get("readyReplicas") == want:
                continue
            ready = {"replicas": want, "readyReplicas": want, "availableReplicas": want}
            self.patch_status("apps/v1", "Deployment", meta["namespace"], meta["name"], ready)
            changed += 1
        return changed

    def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        self.client.delete(object_path(api_version, kind, namespace, name)).raise_for_status()

    def objects(self, kind: str) -> list[dict[str, Any]]:
        """Live objects of `kind`. Only those are copied, on the server's loop under its lock,
        so a poll stays cheap however many other objects the operator has written."""
        return self._loop.run(self._snapshot(kind), SNAPSHOT_TIMEOUT_S)

    async def _snapshot(self, kind: str) -> list[dict[str, Any]]:
        async with self.server._lock:
            return self.server.snapshot(kind)

    def names_where(self, kind: str, check: Callable[[dict[str, Any]], bool]) -> set[str]:
        """Names of the live objects of `kind` that pass `check`, read in place on the server's
        loop: nothing is copied, so a poll over 1,000 fleets (each with its status.history)
        does not hold the server up for seconds."""
        return self._loop.run(self._names_where(kind, check), SNAPSHOT_TIMEOUT_S)

    async def _names_where(self, kind: str, check: Callable[[dict[str, Any]], bool]) -> set[str]:
        async with self.server._lock:
            return self.server.names_where(kind, check)

    def owned(self) -> IndexedOwned:
        """The operator's owned-object cache as its watches would hold it now (for a pass run
        without Kopf)."""
        kinds = ("Deployment", "Service", "PodDisruptionBudget")
        pods = index_objects(self.objects("Pod"), pod_index_entry)
        labelled = [
            c
            for c in self.objects("ConfigMap")
            if CALIBRATION_LABEL in (c["metadata"].get("labels") or {})
        ]
        calibrations = index_objects(labelled, config_map_entry)
        return IndexedOwned(
            {kind: index_objects(self.objects(kind)) for kind in kinds}, pods, calibrations
        )

    def writes(self) -> list[Write]:
        return list(self.server.writes)

    def inject(self, fault: Fault) -> Fault:
        self.server.faults.append(fault)
        return fault


# What a test waits for takes well under a second here, alone; on a 2-core CI machine whose
# cores the suite's own processes saturate it can take many times that. A deadline costs time
# only when the test fails, so it is generous.
WAIT_TIMEOUT_S = 60.0


def wait_for(
    check: Callable[[], T | None],
    what: str,
    timeout_s: float = WAIT_TIMEOUT_S,
    poll_s: float = 0.02,
) -> T:
    """Poll `check` until it returns something truthy; fail with `what` after the timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(poll_s)


def wait_quiet(
    count: Callable[[], int], what: str, quiet_s: float = 1.0, timeout_s: float = WAIT_TIMEOUT_S
) -> int:
    """Until `count()` has not moved for `quiet_s` of wall time; returns it. Timed, not a
    number of polls: on a loaded machine a pass can pause longer than a few polls between two
    of its writes, and a short quiet would end inside it."""
    last = [count()]
    since = [time.monotonic()]

    def quiet() -> bool:
        n, now = count(), time.monotonic()
        if n != last[0]:
            last[0], since[0] = n, now
        return now - since[0] >= quiet_s

    wait_for(quiet, what, timeout_s)
    return last[0]


def create_example_and_wait_for_deployments(
    cluster: Cluster, example: Path, logs: Callable[[], str], timeout_s: float = 60.0
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Create the InferenceFleet of `example` and wait until an operator running elsewhere
    (a process, a container) has applied its vLLM Deployments; a timeout shows `logs()`."""
    docs = yaml.safe_load_all(example.read_text())
    fleet = next(d for d in docs if d and d.get("kind") == "InferenceFleet")
    cluster.create(fleet)
    name = fleet["metadata"]["name"]

    def fleet_deployments() -> list[dict[str, Any]]:
        found = cluster.objects("Deployment")
        return [d for d in found if d["metadata"]["labels"].get(FLEET_LABEL) == name]

    try:
        deployments = wait_for(fleet_deployments, f"{name}'s vLLM Deployments", timeout_s)
    except AssertionError as err:
        raise AssertionError(f"{err}; operator log:\n{logs()}") from err
    return fleet, deployments


class Operator:
    """The real Kopf operator with `controllers.reconcile` handlers registered, in its own
    thread."""

    def __init__(self) -> None:
        import controllers.reconcile.handlers  # noqa: F401  (registers the handlers with Kopf)

        self._stop = threading.Event()
        self._ready = threading.Event()
        self.memo = kopf.Memo()  # what the start-up handler puts there: the operator's state
        self.errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._main, name="kopf-operator", daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S):
            raise AssertionError(f"the operator did not start: {self.errors}")

    def _main(self) -> None:
        try:
            asyncio.run(
                kopf.operator(
                    clusterwide=True,
                    standalone=True,
                    stop_flag=self._stop,
                    ready_flag=self._ready,
                    memo=self.memo,
                )
            )
        except BaseException as err:  # reported by stop(), not lost in the thread
            self.errors.append(err)

    def reconciles(self) -> int:
        """Passes run so far, as the operator's own /metrics counts them."""
        metrics = self.memo.get("metrics")
        if metrics is None:
            return 0
        count = metrics.registry.get_sample_value("inferfleet_reconcile_duration_seconds_count")
        return int(count or 0)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        assert not self._thread.is_alive(), "the operator did not stop within 30 s"
        assert not self.errors, f"the operator failed: {self.errors!r}"
