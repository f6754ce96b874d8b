"""Rendering a plan into vLLM Deployments, Services and PodDisruptionBudgets."""

from __future__ import annotations

import copy

import kubernetes_validate
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from controllers.api.v1alpha1 import (
    InferenceFleet,
    LoraSpec,
    PlanStatus,
    PlanStep,
    PoolPlanStatus,
    parse_duration_s,
)
from controllers.policy.render import (
    MANIFEST_HASH_ANNOTATION,
    PLAN_HASH_ANNOTATION,
    STARTUP_PERIOD_S,
    drifted,
    render_fleet,
    startup_failure_threshold,
)
from tests.conftest import REPO
from tests.plans import fleet_plan, pool_plan


def plan_replicas(plan):
    return {pool.pool: pool.replicas for pool in plan.pools}


def _fleet(name: str = "fleet-chat-70b.yaml") -> InferenceFleet:
    return InferenceFleet.model_validate(yaml.safe_load((REPO / "examples" / name).read_text()))


def _pool(pool: str, gpu: str, **overrides) -> PoolPlanStatus:
    values = {
        "kv_cache_dtype": "fp8",
        "tensor_parallel": 4,
        "replicas": 10,
        "min_warm": 2,
        "c_max": 48,
        "usable_rps_per_replica": "12.500",
        "gpus": 40,
        "cost_per_hour": "119.60",
        "cost_per_million_tokens": "0.4100",
        "kv_cache_tokens": 400000,
        "cold_start_seconds": 240,
    }
    return pool_plan(pool=pool, gpu=gpu, **{**values, **overrides})


def _plan(*pools: PoolPlanStatus) -> PlanStatus:
    return fleet_plan(
        *pools,
        hash="a1b2c3",
        steps=[PlanStep(step="1. Workload", decision="chat", reason="given")],
        cost_per_hour="119.60",
        cost_per_month="87308.00",
    )


def _render(fleet: InferenceFleet, plan: PlanStatus):
    spec = fleet.spec
    return render_fleet("chat-70b", "llm", spec, plan, plan_replicas(plan))


def _container(deployment):
    return deployment["spec"]["template"]["spec"]["containers"][0]


def test_deployment_per_pool_with_planned_layout():
    fleet = _fleet()
    plan = _plan(_pool("h100", "H100-SXM-80GB"), _pool("h200", "H200-141GB", tensor_parallel=2))
    rendered = _render(fleet, plan)
    assert [p.deployment["metadata"]["name"] for p in rendered] == [
        "chat-70b-h100",
        "chat-70b-h200",
    ]
    h100, h200 = (p.deployment for p in rendered)
    assert h100["spec"]["replicas"] == 10
    args = _container(h100)["args"]
    assert "--model=meta-llama/Llama-3.1-70B-Instruct" in args
    assert "--tensor-parallel-size=4" in args and "--pipeline-parallel-size=1" in args
    assert "--quantization=fp8" in args and "--kv-cache-dtype=fp8" in args
    assert "--max-model-len=8192" in args and "--max-num-seqs=64" in args
    assert "--max-num-batched-tokens=8192" in args
    assert _container(h100)["resources"]["limits"]["nvidia.com/gpu"] == "4"
    assert _container(h200)["resources"]["limits"]["nvidia.com/gpu"] == "2"
    pod = h100["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "8Gi"}} in pod["volumes"]
    assert h100["metadata"]["annotations"][PLAN_HASH_ANNOTATION] == "a1b2c3"
    assert h100["metadata"]["labels"] == {
        "app.kubernetes.io/name": "vllm",
        "app.kubernetes.io/instance": "chat-70b",
        "app.kubernetes.io/component": "h100",
        "app.kubernetes.io/managed-by": "inferfleet",
        "app.kubernetes.io/part-of": "inferfleet",
    }


def test_checkpoint_precision_gets_no_quantization_flag():
    plan = _plan(_pool("h100", "H100-SXM-80GB", quantization="none", tensor_parallel=1))
    deployment = _render(_fleet(), plan)[0].deployment
    assert not any(a.startswith("--quantization") for a in _container(deployment)["args"])


def test_amd_gpus_request_the_amd_resource():
    plan = _plan(_pool("mi300x", "MI300X", tensor_parallel=8))
    fleet = _fleet()
    spec = fleet.spec.model_copy(
        update={"pools": [fleet.spec.pools[0].model_copy(update={"name": "mi300x"})]}
    )
    objs = render_fleet("moe", "llm", spec, plan, {"mi300x": 3})
    limits = _container(objs[0].deployment)["resources"]["limits"]
    assert limits["amd.com/gpu"] == "8" and "nvidia.com/gpu" not in limits


def test_lora_and_pools_at_zero():
    fleet = _fleet()
    spec = fleet.spec.model_copy(
        update={"model": fleet.spec.model.model_copy(update={"lora": LoraSpec(max_loras=4)})}
    )
    plan = _plan(_pool("h100", "H100-SXM-80GB"), _pool("h200", "H200-141GB", replicas=0))
    rendered = render_fleet("chat-70b", "llm", spec, plan, plan_replicas(plan))
    assert [p.pool for p in rendered] == ["h100"]
    args = _container(rendered[0].deployment)["args"]
    assert {"--enable-lora", "--max-loras=4", "--max-lora-rank=16"} <= set(args)


def test_external_scaling_never_sets_replicas():
    fleet = _fleet()
    spec = fleet.spec.model_copy(
        update={"scaling": fleet.spec.scaling.model_copy(update={"mode": "external"})}
    )
    plan = _plan(_pool("h100", "H100-SXM-80GB"))
    deployment = render_fleet("chat-70b", "llm", spec, plan, {"h100": 10})[0].deployment
    assert "replicas" not in deployment["spec"]


def test_service_and_pdb_select_the_pool_pods():
    pool = _render(_fleet(), _plan(_pool("h100", "H100-SXM-80GB")))[0]
    pod_labels = pool.deployment["spec"]["template"]["metadata"]["labels"]
    assert pool.service["spec"]["ports"] == [
        {"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}
    ]
    for selector in (pool.service["spec"]["selector"],
                     pool.pod_disruption_budget["spec"]["selector"]["matchLabels"]):  # fmt: skip
        assert selector.items() <= pod_labels.items()
    assert pool.pod_disruption_budget["spec"]["maxUnavailable"] == 1


@pytest.mark.parametrize("example", sorted(p.name for p in (REPO / "examples").glob("*.yaml")))
def test_manifests_are_valid_kubernetes_objects(example):
    fleet = _fleet(example)
    plan = _plan(*(_pool(p.name, p.gpu) for p in fleet.spec.pools))
    for pool in render_fleet("f", "ns", fleet.spec, plan, plan_replicas(plan)):
        for obj in pool.all():
            kubernetes_validate.validate(obj, "1.32", strict=True)


def test_manifest_hash_tracks_content():
    plan = _plan(_pool("h100", "H100-SXM-80GB"))
    a = _render(_fleet(), plan)[0].deployment
    b = _render(_fleet(), plan.model_copy(update={"hash": "ffffff"}))[0].deployment
    assert a == _render(_fleet(), plan)[0].deployment
    assert (
        a["metadata"]["annotations"][MANIFEST_HASH_ANNOTATION]
        != (b["metadata"]["annotations"][MANIFEST_HASH_ANNOTATION])
    )


@given(st.integers(min_value=0, max_value=7200))
def test_startup_probe_covers_the_cold_start_with_margin(cold_start_s):
    threshold = startup_failure_threshold(cold_start_s)
    assert threshold * STARTUP_PERIOD_S >= 1.5 * cold_start_s
    assert threshold * STARTUP_PERIOD_S >= 300


def test_drift_ignores_server_added_fields_but_not_edits():
    desired = _render(_fleet(), _plan(_pool("h100", "H100-SXM-80GB")))[0].deployment
    observed = copy.deepcopy(desired)
    observed["metadata"]["uid"] = "u-1"
    observed["spec"]["progressDeadlineSeconds"] = 600
    observed["status"] = {"readyReplicas": 3}
    assert not drifted(desired, observed)
    edited = copy.deepcopy(observed)
    edited["spec"]["replicas"] = 3
    assert drifted(desired, edited)
    edited = copy.deepcopy(observed)
    _container(edited)["args"].append("--enforce-eager")
    assert drifted(desired, edited)


def test_keda_mode_hands_replicas_to_a_scaled_object_with_the_forecast_floor():
    fleet = _fleet()
    spec = fleet.spec.model_copy(
        update={"scaling": fleet.spec.scaling.model_copy(update={"mode": "keda"})}
    )
    plan = _plan(_pool("h100", "H100-SXM-80GB"))
    (pool,) = render_fleet("chat-70b", "llm", spec, plan, {"h100": 5}, "http://prom:9090")
    assert "replicas" not in pool.deployment["spec"]
    scaled = pool.scaled_object
    assert scaled is not None and scaled in pool.all()
    assert scaled["spec"]["scaleTargetRef"]["name"] == pool.deployment["metadata"]["name"]
    assert scaled["spec"]["minReplicaCount"] == 5
    assert scaled["spec"]["maxReplicaCount"] >= 5
    queries = [t["metadata"]["query"] for t in scaled["spec"]["triggers"]]
    assert all('fleet="chat-70b",pool="h100"' in q for q in queries)
    assert {t["metadata"]["serverAddress"] for t in scaled["spec"]["triggers"]} == {
        "http://prom:9090"
    }
    # The SLO guard's latency signals too, as Values against the SLO (scaled by their ratio).
    latency = {t["name"]: t for t in scaled["spec"]["triggers"] if t.get("metricType") == "Value"}
    ttft = latency["vllm-ttft-p99"]["metadata"]
    assert float(ttft["threshold"]) == parse_duration_s(spec.slo.ttft_p99)
    assert "vllm:time_to_first_token_seconds_bucket" in ttft["query"]
    assert ("vllm-itl-p99" in latency) == (spec.slo.itl_p99 is not None)
    # Without a Prometheus to query, no ScaledObject (KEDA would have nothing to scale on).
    (bare,) = render_fleet("chat-70b", "llm", spec, plan, {"h100": 5})
    assert bare.scaled_object is None


def test_a_pinned_revision_and_the_image_limit_reach_vllm():
    fleet = _fleet()
    spec = fleet.spec.model_copy(
        update={
            "model": fleet.spec.model.model_copy(update={"revision": "v1.1"}),
            "serving": fleet.spec.serving.model_copy(update={"limit_mm_per_prompt": 0}),
        }
    )
    plan = _plan(_pool("h100", "H100-SXM-80GB"))
    args = _container(render_fleet("chat-70b", "llm", spec, plan, plan_replicas(plan))[0]
                      .deployment)["args"]  # fmt: skip
    assert "--revision=v1.1" in args and '--limit-mm-per-prompt={"image": 0}' in args
    plain = _container(_render(_fleet(), plan)[0].deployment)["args"]
    assert not [a for a in plain if a.startswith(("--revision", "--limit-mm"))]
