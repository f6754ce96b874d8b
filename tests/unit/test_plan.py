"""The 13-step plan: every example plans with a reason per step; allocation and error rules."""

from __future__ import annotations

import json
from dataclasses import replace
from functools import cache
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from controllers.adapters.model_source import ModelCatalog
from controllers.api.v1alpha1 import InferenceFleet
from controllers.policy.planning import fleet_request, plan_spec, plan_status
from inferfleet.cli import main
from sizing.curve import Capacity
from sizing.errors import ModelDoesNotFit, NoPoolFits
from sizing.hardware import get_gpu
from sizing.plan import PoolRequest, memoized, plan_fleet
from tests.conftest import REPO

EXAMPLES = sorted((REPO / "examples").glob("fleet-*.yaml"))


def load(path: Path) -> InferenceFleet:
    return InferenceFleet.model_validate(yaml.safe_load(path.read_text()))


def example_config(fleet: InferenceFleet) -> dict:
    """The inline config, or the built-in catalog's for an example that names only its model."""
    source = fleet.spec.model.hf_config
    if source is not None and source.inline is not None:
        return source.inline
    found = ModelCatalog().get(fleet.spec.model.name)
    assert found is not None, fleet.spec.model.name
    return found.config


@cache
def plan_example(name: str):
    fleet = load(REPO / "examples" / name)
    return fleet, plan_spec(fleet.spec, example_config(fleet))


@pytest.fixture(params=[p.name for p in EXAMPLES])
def planned(request):
    return plan_example(request.param)


def test_every_example_plans_all_13_steps_with_reasons(planned):
    fleet, plan = planned
    assert [s.number for s in plan.steps] == list(range(1, 14))
    assert all(s.decision and len(s.reason) > 20 for s in plan.steps)
    status = plan_status(plan)
    assert status.total_gpus == sum(p.gpus for p in status.pools) > 0
    allowed = {p.name: p for p in fleet.spec.pools}
    config = example_config(fleet)
    heads = (config.get("text_config") or config)["num_attention_heads"]
    for pool in status.pools:
        assert pool.pool in allowed
        assert heads % pool.tensor_parallel == 0
        assert pool.gpus == pool.replicas * pool.tensor_parallel * pool.pipeline_parallel
        limit = allowed[pool.pool].max_gpus
        assert limit is None or pool.gpus <= limit
        assert 1 <= pool.min_warm <= pool.replicas
        assert pool.c_max >= 1 and float(pool.usable_rps_per_replica) > 0
        assert pool.kv_cache_tokens >= pool.max_model_len


def test_plan_covers_peak_with_headroom(planned):
    fleet, plan = planned
    peak = float(fleet.spec.workload.peak_requests_per_second)
    capacity = sum(a.replicas * a.option.usable_rps for a in plan.allocations)
    assert capacity >= peak * (1 + plan.profile.headroom) - 1e-6


def test_chat_example_uses_fp8_on_hopper():
    _, plan = plan_example("fleet-chat-70b.yaml")
    assert plan.allocations[0].option.quantization == "fp8"


def test_moe_checkpoint_is_served_as_is():
    _, plan = plan_example("fleet-moe.yaml")
    assert {a.option.quantization for a in plan.allocations} == {"none"}
    assert plan_status(plan).pools[0].weight_format == "fp8"


def test_plan_cli_json_matches_status_shape(capsys):
    assert main(["plan", str(REPO / "examples/fleet-code-8b.yaml"), "--output", "json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert {"hash", "pools", "steps", "totalGPUs", "costPerHour", "costPerMonth"} <= set(status)
    assert len(status["steps"]) == 13
    assert {"usableRPSPerReplica", "cMax", "tensorParallel", "minWarm"} <= set(status["pools"][0])


def test_plan_cli_text_and_what_if(capsys):
    assert main(["plan", str(REPO / "examples/fleet-code-8b.yaml"), "--what-if"]) == 0
    out = capsys.readouterr().out
    assert "13. Validate in production" in out
    assert "What if" in out and "l4" in out and "l40s" in out


# --- allocation rules with a fixed per-replica capacity (fast, deterministic) -----------------


def fixed_capacity(usable_rps: float):
    def capacity(arch, gpu, cfg, memory, prompt, output, ttft_slo_s, itl_slo_s) -> Capacity:
        return Capacity(
            c_max=32, usable_rps=usable_rps, ttft_p99_s=ttft_slo_s * 0.9, itl_p99_s=0.02,
            output_tok_per_s=1000.0, littles_law_rps=usable_rps * 1.2, littles_law_gap=1.2,
            knee_concurrency=24, limited_by="ttft", points=(),
        )  # fmt: skip

    return capacity


@pytest.fixture(scope="module")
def chat_request():
    fleet = load(REPO / "examples/fleet-chat-70b.yaml")
    return fleet_request(fleet.spec, fleet.spec.model.hf_config.inline)


def test_spill_to_next_pool_when_cheapest_is_full(chat_request):
    # Same capacity per replica: H200 at TP1 costs less per token than H100 at TP2.
    h100, h200 = chat_request.pools
    request = replace(chat_request, pools=(h100, replace(h200, max_gpus=4)))
    plan = plan_fleet(request, fixed_capacity(10.0))
    assert [a.option.pool.name for a in plan.allocations] == ["h200", "h100"]
    assert plan.allocations[0].gpus == 4
    capacity = sum(a.replicas * a.option.usable_rps for a in plan.allocations)
    assert capacity >= 120 * 1.2


def test_no_pool_fits_names_the_capacity(chat_request):
    request = replace(chat_request, pools=tuple(replace(p, max_gpus=2) for p in chat_request.pools))
    with pytest.raises(NoPoolFits, match=r"needs 144\.0"):
        plan_fleet(request, fixed_capacity(10.0))


def test_model_does_not_fit_names_gib(chat_request):
    t4 = PoolRequest("t4", get_gpu("T4"), max_gpus=2)
    with pytest.raises(ModelDoesNotFit, match=r"GiB/GPU"):
        plan_fleet(replace(chat_request, pools=(t4,), quantization="none"), fixed_capacity(1.0))


def test_a_unified_memory_pool_above_what_its_host_leaves_is_refused_with_the_fix(chat_request):
    """vLLM would refuse to start on a GB10 at utilization 0.9: the plan says so, and what to
    set, instead of trying layouts."""
    gb10 = PoolRequest("spark", get_gpu("GB10"), max_gpus=8)
    request = replace(chat_request, pools=(gb10,))
    assert request.engine.gpu_memory_utilization == 0.9
    with pytest.raises(ModelDoesNotFit, match=r"refuses to start.*at most 0\.83"):
        plan_fleet(request, fixed_capacity(10.0))
    lowered = replace(request, engine=replace(request.engine, gpu_memory_utilization=0.8))
    assert plan_fleet(lowered, fixed_capacity(200.0)).total_gpus > 0


def test_max_replicas_is_respected(chat_request):
    with pytest.raises(NoPoolFits, match="maxReplicas"):
        plan_fleet(replace(chat_request, max_replicas=3), fixed_capacity(10.0))


@settings(max_examples=25, deadline=None)
@given(peak=st.floats(1, 400), extra=st.floats(0, 400), usable=st.floats(1, 40))
def test_more_peak_never_needs_fewer_gpus(chat_request, peak, extra, usable):
    def sized(rps: float) -> int:
        workload = replace(chat_request.workload, peak_rps=rps, average_rps=None)
        request = replace(
            chat_request, workload=workload, pools=chat_request.pools[:1], max_replicas=None
        )
        request = replace(request, pools=(replace(request.pools[0], max_gpus=None),))
        return plan_fleet(request, fixed_capacity(usable)).total_gpus

    assert sized(peak + extra) >= sized(peak)


def test_memoized_capacity_simulates_each_configuration_once(chat_request):
    calls = []
    inner = fixed_capacity(10.0)

    def counting(*args):
        calls.append(args[1].name)
        return inner(*args)

    capacity_fn = memoized(counting)
    first = plan_fleet(chat_request, capacity_fn)
    again = plan_fleet(chat_request, capacity_fn)
    assert first.fingerprint() == again.fingerprint()
    assert sorted(calls) == ["H100-SXM-80GB", "H200-141GB"]


def test_calibration_file_changes_the_plan(tmp_path, capsys):
    """Step 10: a slower measured engine means less usable req/s and more GPUs."""
    calibration = tmp_path / "cal.yaml"
    calibration.write_text(
        "apiVersion: inferfleet.io/v1alpha1\nkind: EfficiencyCalibration\ngpu: L40S\n"
        "model: meta-llama/Llama-3.1-8B-Instruct\nefficiency:\n  compute_fraction: 0.2\n"
    )
    example = str(REPO / "examples/fleet-code-8b.yaml")
    assert main(["plan", example, "--output", "json"]) == 0
    default = json.loads(capsys.readouterr().out)
    assert main(["plan", example, "--output", "json", "--calibration", str(calibration)]) == 0
    slower = json.loads(capsys.readouterr().out)
    assert float(slower["pools"][0]["usableRPSPerReplica"]) < float(
        default["pools"][0]["usableRPSPerReplica"]
    )
    assert slower["totalGPUs"] > default["totalGPUs"]


def _with_custom_gpu(gpu_spec: dict | None, price: str | None = "1.10") -> dict:
    doc = yaml.safe_load((REPO / "examples" / "fleet-code-8b.yaml").read_text())
    pool = {"name": "acme", "gpu": "Acme-X1", "maxGPUs": 16, "storage": "network"}
    if gpu_spec is not None:
        pool["gpuSpec"] = gpu_spec
    if price is not None:
        pool["costPerGPUHour"] = price
    doc["spec"]["pools"] = [pool]
    return doc


ACME = {"memoryGiB": "44.5", "memoryBandwidthGBPerSecond": "864",
        "tflops": {"bf16": "362", "fp8": "733"},
        "interconnect": {"kind": "pcie", "bandwidthGBPerSecond": "32"}}  # fmt: skip


def test_a_pool_can_describe_a_gpu_the_catalog_lacks():
    fleet = InferenceFleet.model_validate(_with_custom_gpu(ACME))
    plan = plan_spec(fleet.spec, fleet.spec.model.hf_config.inline)
    (allocation,) = plan.allocations
    assert allocation.option.pool.gpu.name == "Acme-X1"
    assert allocation.option.pool.price_usd == pytest.approx(1.10)
    # An L40S by its datasheet: the same replica as the catalog's L40S pool.
    l40s = plan_example("fleet-code-8b.yaml")[1].options[0]
    assert allocation.option.engine.tp == l40s.engine.tp
    assert allocation.option.capacity.c_max == pytest.approx(l40s.capacity.c_max, rel=0.5)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (_with_custom_gpu(None), "unknown GPU 'Acme-X1'"),
        (_with_custom_gpu(ACME, price=None), "costPerGPUHour"),
        (_with_custom_gpu({**ACME, "tflops": {"bf17": "1"}}), "tflops"),
        (_with_custom_gpu({**ACME, "memoryGiB": "0"}), "memoryGiB"),
    ],
)
def test_a_bad_or_missing_gpu_description_is_named(doc, message):
    from sizing.errors import SizingError

    with pytest.raises((ValueError, SizingError), match=message):
        fleet = InferenceFleet.model_validate(doc)
        plan_spec(fleet.spec, fleet.spec.model.hf_config.inline)
