"""The real Kopf operator against the KMock API server: create, edit, refuse, restart, repair."""

from __future__ import annotations

import asyncio
import copy
import json
import socket
from typing import Any

import httpx
import kopf
import pytest
import yaml

from controllers.adapters.kube import FIELD_MANAGER, Kube
from controllers.adapters.operator_metrics import OperatorMetrics
from controllers.policy.render import MANIFEST_HASH_ANNOTATION, PLAN_HASH_ANNOTATION
from controllers.reconcile.handlers import resync
from controllers.reconcile.plans import PlanCache
from controllers.reconcile.runtime import Watcher
from controllers.reconcile.timing import COALESCE_S
from inferfleet_testing.kube.apiserver import Fault
from inferfleet_testing.kube.fixtures import cluster_fixture, operator_fixture  # noqa: F401
from inferfleet_testing.kube.harness import Cluster, Operator, wait_for, wait_quiet
from tests.conftest import REPO

FLEETS = "inferfleet.io/v1alpha1"
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))


def example(name: str = "fleet-code-8b.yaml") -> dict[str, Any]:
    docs = yaml.safe_load_all((REPO / "examples" / name).read_text())
    return next(d for d in docs if d and d.get("kind") == "InferenceFleet")


def fleet_of(cluster: Cluster, obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj["metadata"]
    found = cluster.get(FLEETS, "InferenceFleet", meta["namespace"], meta["name"])
    assert found is not None
    return found


def condition(fleet: dict[str, Any], type_: str) -> dict[str, Any] | None:
    conditions = fleet.get("status", {}).get("conditions", [])
    return next((c for c in conditions if c["type"] == type_), None)


def wait_sized(cluster: Cluster, obj: dict[str, Any], status: str = "True", generation: int = 1):
    def check():
        fleet = fleet_of(cluster, obj)
        sized = condition(fleet, "Sized")
        observed = fleet.get("status", {}).get("observedGeneration")
        return fleet if sized and sized["status"] == status and observed == generation else None

    # Planning a large model takes a CPU-second or two; a loaded CI machine may need more.
    return wait_for(check, f"Sized={status} at generation {generation}", timeout_s=60)


def deployments(cluster: Cluster, fleet: str) -> dict[str, dict[str, Any]]:
    return {
        d["metadata"]["name"]: d
        for d in cluster.objects("Deployment")
        if d["metadata"]["labels"]["app.kubernetes.io/instance"] == fleet
    }


def args_of(deployment: dict[str, Any]) -> list[str]:
    return deployment["spec"]["template"]["spec"]["containers"][0]["args"]


def settle(cluster: Cluster) -> list:
    """Wait until the operator has written nothing for a second; returns the write log."""
    wait_quiet(lambda: len(cluster.writes()), "the operator to go quiet")
    return cluster.writes()


def test_create_renders_the_plan_per_pool(cluster: Cluster, operator: Operator):
    obj = example("fleet-chat-70b.yaml")
    cluster.create(obj)
    fleet = wait_sized(cluster, obj)
    plan = fleet["status"]["plan"]
    owned = deployments(cluster, "chat-70b")
    running = [p for p in plan["pools"] if p["replicas"] > 0]
    assert running, "the plan gives no pool any replica"
    assert set(owned) == {f"chat-70b-{p['pool']}" for p in running}
    for pool in running:
        deployment = owned[f"chat-70b-{pool['pool']}"]
        args = args_of(deployment)
        assert f"--tensor-parallel-size={pool['tensorParallel']}" in args
        assert f"--max-model-len={pool['maxModelLen']}" in args
        assert deployment["spec"]["replicas"] == pool["replicas"]
        gpus = pool["tensorParallel"] * pool["pipelineParallel"]
        limits = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
        assert limits["nvidia.com/gpu"] == str(gpus) and {"cpu", "memory"} <= set(limits)
        assert deployment["metadata"]["annotations"][PLAN_HASH_ANNOTATION] == plan["hash"]
        (ref,) = deployment["metadata"]["ownerReferences"]
        assert (ref["kind"], ref["uid"], ref["controller"]) == (
            "InferenceFleet", fleet["metadata"]["uid"], True
        )  # fmt: skip
    names = {o["metadata"]["name"] for kind in ("Service", "PodDisruptionBudget")
             for o in cluster.objects(kind)}  # fmt: skip
    assert names == set(owned)
    applies = [w for w in cluster.writes() if w.content_type.startswith("application/apply")]
    assert len(applies) == 3 * len(running)
    events = [e for e in cluster.objects("Event") if e["reason"] == "Applied"]
    assert any(
        f"TP{running[0]['tensorParallel']}" in e["message"] and plan["hash"] in e["message"]
        for e in events
    )
    assert fleet["status"]["replicas"]["desired"] == sum(p["replicas"] for p in running)
    assert condition(fleet, "Ready")["status"] == "False"  # no pod is ready: nothing runs here


def test_apply_is_server_side_as_inferfleet(cluster: Cluster, operator: Operator):
    obj = example()
    cluster.create(obj)
    wait_sized(cluster, obj)
    apply = next(w for w in cluster.writes() if w.path.endswith("/deployments/code-8b-l40s"))
    assert apply.method == "PATCH"
    assert apply.content_type == "application/apply-patch+yaml"
    assert apply.body["metadata"]["annotations"][MANIFEST_HASH_ANNOTATION]
    assert FIELD_MANAGER == "inferfleet"


def test_spec_edit_replans_with_observed_generation(cluster: Cluster, operator: Operator):
    obj = example()
    cluster.create(obj)
    before = wait_sized(cluster, obj)["status"]["plan"]
    cluster.merge_patch(FLEETS, "InferenceFleet", "llm", "code-8b",
                        {"spec": {"workload": {"peakRequestsPerSecond": "40"}}})  # fmt: skip
    after = wait_sized(cluster, obj, generation=2)
    plan = after["status"]["plan"]
    assert plan["hash"] != before["hash"]
    assert sum(p["replicas"] for p in plan["pools"]) > sum(p["replicas"] for p in before["pools"])
    sized = condition(after, "Sized")
    assert sized["observedGeneration"] == 2

    def deployment_follows():
        owned = deployments(cluster, "code-8b")
        return all(
            owned[f"code-8b-{p['pool']}"]["metadata"]["annotations"][PLAN_HASH_ANNOTATION]
            == plan["hash"]
            for p in plan["pools"]
            if p["replicas"] > 0
        )

    wait_for(deployment_follows, "Deployments to carry the new plan hash")


def test_invalid_spec_is_refused_and_touches_nothing(cluster: Cluster, operator: Operator):
    obj = example()
    cluster.create(obj)
    wait_sized(cluster, obj)
    before = deployments(cluster, "code-8b")
    writes_before = len(settle(cluster))
    cluster.merge_patch(FLEETS, "InferenceFleet", "llm", "code-8b",
                        {"spec": {"slo": {"ttftP99": "2 seconds"}}})  # fmt: skip
    fleet = wait_sized(cluster, obj, status="False", generation=2)
    sized = condition(fleet, "Sized")
    assert sized["reason"] == "InvalidSpec"
    assert "spec.slo.ttftP99" in sized["message"] and "2 seconds" in sized["message"]
    warning = wait_for(
        lambda: [e for e in cluster.objects("Event") if e["type"] == "Warning"], "a Warning Event"
    )
    assert warning[0]["reason"] == "InvalidSpec" and "ttftP99" in warning[0]["message"]
    new_writes = settle(cluster)[writes_before:]
    assert not [w for w in new_writes if "/deployments/" in w.path or "/services/" in w.path]
    assert deployments(cluster, "code-8b") == before
    assert fleet["status"]["plan"]  # the last good plan stays visible


def test_new_fleet_with_an_invalid_spec_creates_nothing(cluster: Cluster, operator: Operator):
    obj = example()
    obj["spec"]["workload"]["promptTokens"] = {"p50": 900, "p95": 500, "p99": 1000}
    cluster.create(obj)
    fleet = wait_sized(cluster, obj, status="False")
    assert "p50 <= p95 <= p99" in condition(fleet, "Sized")["message"]
    assert not cluster.objects("Deployment")


def test_model_that_does_not_fit(cluster: Cluster, operator: Operator):
    obj = example("fleet-chat-70b.yaml")
    obj["spec"]["model"]["quantization"] = "none"
    obj["spec"]["pools"] = [{"name": "l4", "gpu": "L4", "maxGPUs": 1}]
    cluster.create(obj)
    fleet = wait_sized(cluster, obj, status="False")
    sized = condition(fleet, "Sized")
    assert sized["reason"] == "ModelDoesNotFit"
    assert "L4" in sized["message"] and "GiB" in sized["message"]
    warning = wait_for(
        lambda: [e for e in cluster.objects("Event") if e["reason"] == "ModelDoesNotFit"],
        "a ModelDoesNotFit Event",
    )
    assert warning[0]["type"] == "Warning"
    assert not cluster.objects("Deployment")


def test_restart_writes_nothing(cluster: Cluster, operator: Operator):
    obj = example()
    cluster.create(obj)
    wait_sized(cluster, obj)
    before = settle(cluster)
    objects_before = {k: cluster.objects(k) for k in ("Deployment", "Service", "InferenceFleet")}
    operator.stop()
    restarted = Operator()
    try:
        # The resync daemon reconciles at once on resume (from the owned objects it watches).
        wait_for(lambda: restarted.reconciles() >= 1, "a reconcile after the restart")
        after = settle(cluster)
    finally:
        restarted.stop()
    assert after[len(before) :] == []
    assert {k: cluster.objects(k) for k in objects_before} == objects_before


def test_second_reconcile_of_an_unchanged_fleet_writes_nothing(cluster: Cluster):
    obj = example()
    obj["spec"]["scaling"]["interval"] = "1s"  # the shortest the API allows
    running = Operator()
    try:
        cluster.create(obj)
        wait_sized(cluster, obj)
        before = settle(cluster)
        passes = running.reconciles()
        mark = len(cluster.server.paths)
        # Several resyncs happen in a second; they write nothing, and read no owned object
        # either: those come from the watch cache, not a GET per object and a LIST per pass.
        wait_for(lambda: running.reconciles() >= passes + 3, "three more resyncs")
        assert cluster.writes()[len(before) :] == []
        owned = ("/deployments", "/services", "/poddisruptionbudgets")
        assert [p for p in cluster.server.paths[mark:] if any(k in p for k in owned)] == []
    finally:
        running.stop()


def test_deleted_deployment_is_recreated(cluster: Cluster, operator: Operator):
    obj = example()
    cluster.create(obj)
    wait_sized(cluster, obj)
    old = deployments(cluster, "code-8b")["code-8b-l40s"]
    cluster.delete("apps/v1", "Deployment", "llm", "code-8b-l40s")
    new = wait_for(
        lambda: cluster.get("apps/v1", "Deployment", "llm", "code-8b-l40s"), "the Deployment back"
    )
    assert new["metadata"]["uid"] != old["metadata"]["uid"]
    assert args_of(new) == args_of(old)


def test_hand_edited_deployment_is_put_back(cluster: Cluster, operator: Operator):
    obj = example()
    cluster.create(obj)
    wait_sized(cluster, obj)
    original = deployments(cluster, "code-8b")["code-8b-l40s"]
    edited = [*copy.deepcopy(args_of(original)), "--enforce-eager"]
    patch = {"spec": {"replicas": 99, "template": {"spec": {"containers": [
        {**original["spec"]["template"]["spec"]["containers"][0], "args": edited}]}}}}  # fmt: skip
    cluster.merge_patch("apps/v1", "Deployment", "llm", "code-8b-l40s", patch)

    def restored():
        now = cluster.get("apps/v1", "Deployment", "llm", "code-8b-l40s")
        return now["spec"]["replicas"] == original["spec"]["replicas"] and args_of(now) == (
            args_of(original)
        )

    wait_for(restored, "the hand edit to be reverted")


def test_conflict_on_status_patch_is_retried(cluster: Cluster, operator: Operator):
    fault = cluster.inject(Fault("PATCH", "/inferencefleets/code-8b/status", 409, times=2))
    obj = example()
    cluster.create(obj)
    wait_sized(cluster, obj)
    assert len(fault.hits) == 2
    statuses = [w.status for w in cluster.writes() if w.is_status]
    assert statuses[:3] == [409, 409, 200]


def test_external_scaling_never_writes_replicas(cluster: Cluster, operator: Operator):
    obj = example()
    obj["spec"]["scaling"] = {"mode": "external", "minReplicas": 1}
    cluster.create(obj)
    wait_sized(cluster, obj)
    # Another controller (KEDA, HPA) scales the Deployment; the operator must leave it so.
    cluster.merge_patch("apps/v1", "Deployment", "llm", "code-8b-l40s", {"spec": {"replicas": 7}})
    cluster.merge_patch(FLEETS, "InferenceFleet", "llm", "code-8b",
                        {"spec": {"workload": {"peakRequestsPerSecond": "30"}}})  # fmt: skip
    wait_sized(cluster, obj, generation=2)
    settle(cluster)
    applies = [w for w in cluster.writes() if "/deployments/" in w.path and w.method == "PATCH"]
    applies = [w for w in applies if w.content_type.startswith("application/apply")]
    assert applies and all("replicas" not in w.body["spec"] for w in applies)
    assert cluster.get("apps/v1", "Deployment", "llm", "code-8b-l40s")["spec"]["replicas"] == 7


def test_deleting_the_fleet_collects_its_objects(cluster: Cluster, operator: Operator):
    obj = example()
    cluster.create(obj)
    wait_sized(cluster, obj)
    assert cluster.objects("Deployment")
    cluster.delete(FLEETS, "InferenceFleet", "llm", "code-8b")
    wait_for(lambda: not cluster.objects("InferenceFleet"), "Kopf to release the fleet")
    wait_for(
        lambda: not (cluster.objects("Deployment") or cluster.objects("Service")),
        "owned objects to be garbage-collected",
    )


def test_hf_config_from_a_config_map(cluster: Cluster, operator: Operator):
    obj = example()
    config = obj["spec"]["model"]["hfConfig"].pop("inline")
    obj["spec"]["model"]["hfConfig"]["configMapRef"] = {"name": "llama-8b"}
    cluster.create(obj)
    fleet = wait_sized(cluster, obj, status="False")
    assert "ConfigMap llama-8b" in condition(fleet, "Sized")["message"]
    cluster.create({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "llama-8b", "namespace": "llm"},
                    "data": {"config.json": json.dumps(config)}})  # fmt: skip
    # Nothing watches ConfigMaps; the next spec edit (or resync) picks the config up.
    cluster.merge_patch(FLEETS, "InferenceFleet", "llm", "code-8b",
                        {"spec": {"scaling": {"interval": "1s"}}})  # fmt: skip
    wait_sized(cluster, obj, generation=2)
    assert cluster.objects("Deployment")


def test_a_calibration_config_map_is_watched_and_planned_with(cluster: Cluster, operator: Operator):
    """`spec.calibration` names a labelled ConfigMap holding `inferfleet bench --calibrate`
    output; the operator reads it from its watch cache and plans the measured engine as soon
    as the ConfigMap is created or edited."""
    plain = example()
    plain["spec"]["pools"] = plain["spec"]["pools"][:1]  # the L40S pool, one GPU to calibrate
    plain["spec"]["scaling"]["interval"] = "1s"  # resyncs that soon
    cluster.create(plain)
    usable = float(wait_sized(cluster, plain)["status"]["plan"]["pools"][0]["usableRPSPerReplica"])
    cluster.delete(FLEETS, "InferenceFleet", "llm", "code-8b")
    wait_for(lambda: cluster.get(FLEETS, "InferenceFleet", "llm", "code-8b") is None, "gone")

    calibrated = copy.deepcopy(plain)
    calibrated["spec"]["calibration"] = {"configMapRef": {"name": "l40s-cal"}}
    calibrated["spec"]["scaling"]["interval"] = "1h"  # no resync within the test: events only
    cluster.create(calibrated)
    fleet = wait_sized(cluster, calibrated, status="False")
    assert "ConfigMap l40s-cal" in condition(fleet, "Sized")["message"]
    assert "inferfleet.io/calibration" in condition(fleet, "Sized")["message"]
    document = {"apiVersion": "inferfleet.io/v1alpha1", "kind": "EfficiencyCalibration",
                "gpu": "L40S", "model": "meta-llama/Llama-3.1-8B-Instruct",
                "efficiency": {"compute_fraction": 0.5, "hbm_fraction": 0.7}}  # fmt: skip
    cluster.create({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "l40s-cal", "namespace": "llm",
                                 "labels": {"inferfleet.io/calibration": "l40s"}},
                    "data": {"calibration.yaml": yaml.safe_dump(document)}})  # fmt: skip

    # The watch caches it and its event runs the fleet's pass at once: no edit, no resync.
    def planned_slower():
        f = fleet_of(cluster, calibrated)
        sized = condition(f, "Sized")
        if not sized or sized["status"] != "True":
            return None
        return float(f["status"]["plan"]["pools"][0]["usableRPSPerReplica"])

    slower = wait_for(planned_slower, "Sized=True with the calibration", timeout_s=60)
    assert slower < 0.95 * usable  # a slower measured engine serves less per replica

    document["gpu"] = "H100"
    cluster.merge_patch("v1", "ConfigMap", "llm", "l40s-cal",
                        {"data": {"calibration.yaml": yaml.safe_dump(document)}})  # fmt: skip
    fleet = wait_for(
        lambda: (f := fleet_of(cluster, calibrated)) and condition(f, "Sized")["status"] == "False"
        and f,
        "a calibration for another GPU refused", timeout_s=60,
    )  # fmt: skip
    assert "measured on H100" in condition(fleet, "Sized")["message"]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_is_sized_and_deployed(path, cluster: Cluster, operator: Operator):
    obj = example(path.name)
    cluster.create(obj)
    fleet = wait_sized(cluster, obj, generation=1)
    name = obj["metadata"]["name"]
    running = [p for p in fleet["status"]["plan"]["pools"] if p["replicas"] > 0]
    assert set(deployments(cluster, name)) == {f"{name}-{p['pool']}" for p in running}


def test_pool_dropped_from_the_spec_is_pruned(cluster: Cluster, operator: Operator):
    obj = example()
    cluster.create(obj)
    wait_sized(cluster, obj)
    before = set(deployments(cluster, "code-8b"))
    assert before == {"code-8b-l40s"}
    only_h100 = {"spec": {"pools": [{"name": "h100", "gpu": "H100-SXM-80GB", "maxGPUs": 8}]}}
    cluster.merge_patch(FLEETS, "InferenceFleet", "llm", "code-8b", only_h100)
    wait_sized(cluster, obj, generation=2)
    wait_for(lambda: set(deployments(cluster, "code-8b")) == {"code-8b-h100"}, "only h100")
    assert {s["metadata"]["name"] for s in cluster.objects("Service")} == {"code-8b-h100"}
    pruned = [e for e in cluster.objects("Event") if e["reason"] == "Pruned"]
    assert pruned and "code-8b-l40s" in pruned[0]["message"]


def test_operator_metrics_show_the_plan(cluster: Cluster, monkeypatch):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("INFERFLEET_METRICS_PORT", str(port))
    monkeypatch.setenv("INFERFLEET_METRICS_ADDRESS", "127.0.0.1")
    running = Operator()
    try:
        obj = example()
        cluster.create(obj)
        plan = wait_sized(cluster, obj)["status"]["plan"]
        pool = plan["pools"][0]

        def scraped():
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            wanted = (f'inferfleet_pool_planned_gpus{{fleet="code-8b",namespace="llm",'
                      f'pool="{pool["pool"]}"}} {float(pool["gpus"])}')  # fmt: skip
            return text if wanted in text else None

        text = wait_for(scraped, "the plan in /metrics")
        assert "inferfleet_reconcile_duration_seconds_count" in text
    finally:
        running.stop()


def test_the_resync_daemon_ends_once_clean_up_closed_the_client(cluster: Cluster):
    """Kopf may run the clean-up (which closes the API client) before it tells a daemon to
    stop; the daemon must end then, not retry a closed client until Kopf gives up on it."""

    class NeverStopped:
        def __bool__(self) -> bool:
            return False

        async def wait(self, timeout: float | None = None) -> bool:
            await asyncio.sleep(timeout or 0)
            return False

    obj = cluster.create(example())

    async def run() -> None:
        memo = kopf.Memo(
            kube=Kube.from_environment(), locks={}, pass_slots=asyncio.Semaphore(1),
            plans=PlanCache(), watcher=Watcher(),
            metrics=OperatorMetrics(),
        )  # fmt: skip
        await memo.kube.close()
        indexes = {
            "owned_deployments": {},
            "owned_services": {},
            "owned_pdbs": {},
            "fleet_pods": {},
            "calibrations": {},
        }  # as Kopf's
        await asyncio.wait_for(
            resync(NeverStopped(), obj, obj["spec"], memo, **indexes), timeout=10
        )

    asyncio.run(run())


def test_a_burst_of_owned_deployment_events_runs_one_pass(cluster: Cluster):
    """A rollout or a scaler sends several events for one fleet's Deployment in a moment; the
    operator runs one pass for them, not one each."""
    obj = example()
    obj["spec"]["scaling"]["interval"] = "1h"  # no resync in the window: only events run passes
    running = Operator()
    try:
        cluster.create(obj)
        wait_sized(cluster, obj)
        settle(cluster)
        # Past any pass an event of the creation could still run: none for a while.
        passes = wait_quiet(running.reconciles, "no pass for a while", quiet_s=3 * COALESCE_S)
        for k in range(5):  # edits the operator does not own: each is an event, none a drift
            edit = {"metadata": {"annotations": {"example.com/edit": str(k)}}}
            cluster.merge_patch("apps/v1", "Deployment", "llm", "code-8b-l40s", edit)
        wait_for(lambda: running.reconciles() > passes, "a pass for the edits")
        # Long enough for a second pass to have shown up.
        after = wait_quiet(running.reconciles, "the passes to stop", quiet_s=3 * COALESCE_S)
        assert after == passes + 1
    finally:
        running.stop()
