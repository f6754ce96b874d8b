"""The chart's two-replica mode, run for real: Kopf peering with ordinal priorities.

Two operator processes run the chart's HA arguments (`--peering=inferfleet --priority=<ordinal>`,
POD_ID = pod name) against the KMock API server with the chart's ClusterKopfPeering. The higher
ordinal must do the work while the other pauses, and the other must take over when it stops.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from inferfleet_testing.kube.harness import Cluster, wait_for
from tests.conftest import REPO

PEERINGS = "/apis/kopf.dev/v1/clusterkopfpeerings"
FLEETS = "inferfleet.io/v1alpha1"
PEERING_NAME = "inferfleet"  # values.yaml peering.name
RESUMED = "Resuming operations"  # Kopf's log lines when an operator resumes or pauses
PAUSED = "Pausing operations"
APPLIED = "Applied Deployment"  # the operator's log line for a write


class Replica:
    """One operator pod: `kopf run` with the chart's peering arguments, logging to a file."""

    def __init__(self, ordinal: int, kubeconfig: Path, workdir: Path) -> None:
        self.name = f"inferfleet-{ordinal}"
        self.log = workdir / f"{self.name}.log"
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "POD_ID": self.name}
        cmd = [sys.executable, "-m", "kopf", "run", "operator/main.py", "--all-namespaces",
               f"--peering={PEERING_NAME}", f"--priority={ordinal}"]  # fmt: skip
        with self.log.open("w") as out:
            self.process = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=out)

    def text(self) -> str:
        return self.log.read_text()

    def working(self) -> bool:
        """Kopf starts paused; its last pause/resume line says what it does now."""
        lines = [ln for ln in self.text().splitlines() if PAUSED in ln or RESUMED in ln]
        return bool(lines) and RESUMED in lines[-1]

    def applied(self) -> bool:
        return APPLIED in self.text()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@pytest.fixture
def cluster(tmp_path) -> Iterator[Cluster]:
    server = Cluster(tmp_path)
    server.server.declare("kopf.dev/v1/clusterkopfpeerings", "ClusterKopfPeering", namespaced=False)
    peering = {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering",
               "metadata": {"name": PEERING_NAME}}  # fmt: skip
    server.client.post(PEERINGS, json=peering).raise_for_status()
    yield server
    server.close()


def example() -> dict[str, Any]:
    docs = yaml.safe_load_all((REPO / "examples" / "fleet-code-8b.yaml").read_text())
    return next(d for d in docs if d and d.get("kind") == "InferenceFleet")


def peers(cluster: Cluster) -> set[str]:
    return set(cluster.client.get(f"{PEERINGS}/{PEERING_NAME}").json().get("status") or {})


def generation_done(cluster: Cluster, name: str, generation: int) -> bool:
    fleet = cluster.get(FLEETS, "InferenceFleet", "llm", name)
    return bool(fleet) and fleet.get("status", {}).get("observedGeneration") == generation


def test_highest_ordinal_works_and_the_other_takes_over(cluster: Cluster, tmp_path: Path):
    replicas = [Replica(ordinal, cluster.kubeconfig, tmp_path) for ordinal in (0, 1)]
    standby, active = replicas
    try:
        wait_for(lambda: peers(cluster) == {standby.name, active.name}, "both peers")
        wait_for(lambda: active.working() and not standby.working(), "one active replica")
        fleet = example()
        name = fleet["metadata"]["name"]
        cluster.create(fleet)
        wait_for(lambda: generation_done(cluster, name, 1), "the active replica to reconcile")
        # The operator logs its writes once the pass is over, after the status patch.
        wait_for(active.applied, "the active replica's write in its log")
        assert not standby.applied(), "the lower ordinal wrote while a higher one lived"

        active.stop()  # a clean stop removes its peer entry: the standby resumes at once
        wait_for(standby.working, "the standby to take over")
        patch = {"spec": {"workload": {"peakRequestsPerSecond": "40"}}}
        cluster.merge_patch(FLEETS, "InferenceFleet", "llm", name, patch)
        wait_for(lambda: generation_done(cluster, name, 2), "the standby to reconcile")
        wait_for(standby.applied, "the standby's write in its log")
    finally:
        for replica in replicas:
            replica.stop()
