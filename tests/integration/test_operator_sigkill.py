"""SIGKILL the real operator process mid-work, restart it, and it converges as if never killed.

The operator runs as the image runs it (`kopf run operator/main.py` in its own process) against
the KMock API server; it is killed with SIGKILL (no handler, no clean-up, a write possibly
half-sent) at several points of its first passes over a few fleets, and started again each time.
After the last start it must reach what an operator that was never killed reaches: every fleet
Sized at its generation, the same owned objects with the same specs, none missing and none extra,
no Event repeated, and Kopf's own bookkeeping finished (no handler left to retry).
"""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from inferfleet_testing.kube.harness import Cluster, wait_for, wait_quiet
from tests.conftest import REPO

pytestmark = pytest.mark.timeout(600)

FLEETS = "inferfleet.io/v1alpha1"
OWNED = ("Deployment", "Service", "PodDisruptionBudget")
# Kill points: after this many writes of the run that is killed (an unkilled run makes about
# 33: owned objects, status patches, Events), so early, mid-way and late in the first passes.
KILL_AFTER_WRITES = (1, 7, 16)
IDENTITY = ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields")


def fleets() -> list[dict[str, Any]]:
    """The example fleets: 3 models, 1-3 pools each, one of them slow to plan (a 70B)."""
    made = []
    for path in sorted((REPO / "examples").glob("fleet-*.yaml")):
        docs = yaml.safe_load_all(path.read_text())
        made.append(next(d for d in docs if d and d.get("kind") == "InferenceFleet"))
    return made


class OperatorProcess:
    """`kopf run operator/main.py` against `cluster` in a process of its own."""

    def __init__(self, cluster: Cluster, log: Path, env: dict[str, str] | None = None) -> None:
        env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig), **(env or {})}
        command = [sys.executable, "-m", "kopf", "run", "--standalone", "--all-namespaces",
                   str(REPO / "operator" / "main.py")]  # fmt: skip
        self._log = log.open("ab")
        self.process = subprocess.Popen(
            command, env=env, cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT
        )

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self._log.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


def _conditions(fleet: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in fleet.get("status", {}).get("conditions", [])}


def converged(cluster: Cluster, names: set[str]) -> bool:
    """Every fleet Sized at its generation, and Kopf has no handler in progress on it."""
    done = set()
    for fleet in cluster.objects("InferenceFleet"):
        meta, status = fleet["metadata"], fleet.get("status", {})
        in_progress = [a for a in meta.get("annotations", {}) if "kopf.zalando.org/" in a
                       and a != "kopf.zalando.org/last-handled-configuration"]  # fmt: skip
        if (
            _conditions(fleet).get("Sized") == "True"
            and status.get("observedGeneration") == meta["generation"]
            and not in_progress
        ):
            done.add(meta["name"])
    return names <= done


def owned_state(cluster: Cluster) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Every owned object by (kind, namespace, name), without what the server assigns."""
    state = {}
    for kind in OWNED:
        for obj in cluster.objects(kind):
            meta = obj["metadata"]
            key = (kind, meta["namespace"], meta["name"])
            assert key not in state, f"{key} twice"
            kept = copy.deepcopy(obj)
            for field in IDENTITY:
                kept["metadata"].pop(field, None)
            for owner in kept["metadata"].get("ownerReferences", []):
                owner.pop("uid")
            state[key] = kept
    return state


def run_to_convergence(cluster: Cluster, log: Path, kills: tuple[int, ...]) -> list[int]:
    """Create the fleets, kill the operator after each count in `kills` of its own writes
    (starting it again each time), then let a last start converge. Returns the writes seen
    at each kill."""
    batch = fleets()
    names = {f["metadata"]["name"] for f in batch}
    operator = OperatorProcess(cluster, log)
    for fleet in batch:
        cluster.create(fleet)
    killed_at = []
    try:
        for after in kills:
            target = len(cluster.writes()) + after
            wait_for(lambda n=target: len(cluster.writes()) >= n,
                     f"{after} writes by the operator", timeout_s=60, poll_s=0.002)  # fmt: skip
            operator.kill()
            killed_at.append(len(cluster.writes()) - target + after)
            assert not converged(cluster, names), "killed too late: the work was already done"
            operator = OperatorProcess(cluster, log)
        wait_for(lambda: converged(cluster, names), "every fleet Sized", timeout_s=90)
        wait_quiet(lambda: len(cluster.writes()), "the operator to stop writing")
    except AssertionError as err:
        raise AssertionError(f"{err}\noperator log:\n{log.read_text()[-4000:]}") from err
    finally:
        operator.stop()
    return killed_at


def events(cluster: Cluster) -> Counter[tuple[str, str]]:
    return Counter((e["involvedObject"]["name"], e["reason"]) for e in cluster.objects("Event"))


def converge_in_a_fresh_cluster(
    workdir: Path, kills: tuple[int, ...]
) -> tuple[list[int], dict[tuple[str, str, str], dict[str, Any]], Counter[tuple[str, str]]]:
    """`run_to_convergence` in a cluster of its own: the writes at each kill, the owned
    objects, the Events by (fleet, reason)."""
    workdir.mkdir()
    cluster = Cluster(workdir)
    try:
        killed_at = run_to_convergence(cluster, workdir / "operator.log", kills)
        for fleet in cluster.objects("InferenceFleet"):
            assert fleet["status"]["observedGeneration"] == 1
        return killed_at, owned_state(cluster), events(cluster)
    finally:
        cluster.close()


def test_sigkill_mid_reconcile_then_restart_converges_to_the_unkilled_state(tmp_path: Path):
    _, expected, expected_events = converge_in_a_fresh_cluster(tmp_path / "reference", kills=())
    killed_at, got, got_events = converge_in_a_fresh_cluster(
        tmp_path / "killed", kills=KILL_AFTER_WRITES
    )
    assert len(killed_at) == len(KILL_AFTER_WRITES)
    assert sorted(set(expected) - set(got)) == [], "lost"
    assert sorted(set(got) - set(expected)) == [], "extra"
    for key, obj in expected.items():
        assert got[key] == obj, key
    # Events are at most once: a kill between an apply and its Event loses that Event (the
    # restarted pass finds nothing to apply), but none is ever repeated.
    assert got_events - expected_events == Counter()
