"""The rendered vLLM pods as a security team reads them: non-root, bounded, no secrets inline."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from controllers.api.crd import _CEL_RULES
from controllers.api.engine_args import MANAGED_FLAGS, flag_name, is_secret_flag, redact
from controllers.api.v1alpha1 import InferenceFleet, ModelSpec, describe_validation_error
from controllers.policy.planning import plan_spec, plan_status
from controllers.policy.render import (
    HF_CACHE_PATH,
    HOME_PATH,
    render_fleet,
    vllm_args,
)
from tests.conftest import REPO
from tests.plans import fleet_plan, pool_plan

_GIB = 2**30
_QUANTITY = {"Gi": _GIB, "Mi": 2**20}


def _gib(quantity: str) -> float:
    match = re.fullmatch(r"([0-9.]+)(Gi|Mi)", quantity)
    assert match, quantity
    return float(match[1]) * _QUANTITY[match[2]] / _GIB


def _example(name: str = "fleet-chat-70b.yaml") -> dict:
    return yaml.safe_load((REPO / "examples" / name).read_text())


def _fleet(**model: object) -> InferenceFleet:
    raw = _example()
    raw["spec"]["model"].update(model)
    return InferenceFleet.model_validate(raw)


def _deployment(fleet: InferenceFleet, **pool: object) -> dict:
    plan = fleet_plan(pool_plan(**{"pool": fleet.spec.pools[0].name, **pool}))
    return render_fleet("chat", "llm", fleet.spec, plan, {plan.pools[0].pool: 2})[0].deployment


def _pod(deployment: dict) -> dict:
    return deployment["spec"]["template"]["spec"]


def test_pod_runs_unprivileged_without_an_api_token():
    pod = _pod(_deployment(_fleet()))
    (container,) = pod["containers"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    ctx = container["securityContext"]
    assert ctx["allowPrivilegeEscalation"] is False and ctx["privileged"] is False
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    assert ctx["readOnlyRootFilesystem"] is True


def test_every_path_vllm_writes_is_a_bounded_empty_dir():
    pod = _pod(_deployment(_fleet(), weights_gib="70.0"))
    (container,) = pod["containers"]
    mounted = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    env = {e["name"]: e.get("value") for e in container["env"]}
    # The read-only root leaves only these: the HF cache, HOME (vLLM, Triton, FlashInfer caches
    # and config), /tmp (torch inductor) and /dev/shm.
    assert {env["HF_HOME"], env["HOME"], "/tmp", "/dev/shm"} <= set(mounted)
    assert env["HF_HOME"] == HF_CACHE_PATH and env["HOME"] == HOME_PATH
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert set(volumes) == set(mounted.values())
    for volume in volumes.values():
        assert _gib(volume["emptyDir"]["sizeLimit"]) > 0, volume
    assert volumes["dshm"]["emptyDir"]["medium"] == "Memory"


def test_model_cache_holds_the_checkpoint_a_runtime_quantization_starts_from():
    fp8 = _pod(_deployment(_fleet(), quantization="fp8", weights_gib="70.0"))
    native = _pod(_deployment(_fleet(), quantization="none", weights_gib="70.0"))

    def cache_gib(pod: dict) -> float:
        return next(
            _gib(v["emptyDir"]["sizeLimit"]) for v in pod["volumes"] if v["name"] == "model-cache"
        )

    # FP8 on the GPU was quantized at load from a 16-bit checkpoint of twice the bytes.
    assert cache_gib(native) >= 70.0
    assert cache_gib(fp8) >= 2 * 70.0
    resources = fp8["containers"][0]["resources"]
    assert _gib(resources["requests"]["ephemeral-storage"]) >= cache_gib(fp8)


@given(tp=st.sampled_from([1, 2, 4, 8]), pp=st.sampled_from([1, 2]))
def test_cpu_and_memory_are_requested_and_limited_and_cover_shared_memory(tp, pp):
    pod = _pod(_deployment(_fleet(), tensor_parallel=tp, pipeline_parallel=pp))
    resources = pod["containers"][0]["resources"]
    requests, limits = resources["requests"], resources["limits"]
    assert requests["nvidia.com/gpu"] == limits["nvidia.com/gpu"] == str(tp * pp)
    assert 0 < int(requests["cpu"]) <= int(limits["cpu"])
    assert int(requests["cpu"]) > tp * pp  # a core per GPU worker, and the front end besides
    memory = _gib(requests["memory"])
    assert memory == _gib(limits["memory"])
    shm = next(v for v in pod["volumes"] if v["name"] == "dshm")["emptyDir"]
    # tmpfs pages are charged to the container: the memory figure carries them.
    assert memory > _gib(shm["sizeLimit"]) + 4 * tp * pp


def test_planned_weights_reach_the_model_cache():
    raw = _example()
    fleet = InferenceFleet.model_validate(raw)
    status = plan_status(plan_spec(fleet.spec, fleet.spec.model.hf_config.inline))
    pool = next(p for p in status.pools if p.replicas > 0)
    assert pool.weights_gib is not None and float(pool.weights_gib) > 30  # a 70B model
    replicas = {p.pool: 1 for p in status.pools}
    deployment = next(
        r.deployment
        for r in render_fleet("chat", "llm", fleet.spec, status, replicas)
        if r.deployment["metadata"]["name"].endswith(pool.pool)
    )
    cache = next(v for v in _pod(deployment)["volumes"] if v["name"] == "model-cache")
    assert _gib(cache["emptyDir"]["sizeLimit"]) >= float(pool.weights_gib)


def test_hf_token_comes_from_the_secret_by_reference_only():
    fleet = _fleet(hub={"tokenSecretRef": {"name": "hf-gated", "key": "hf_token"}})
    deployment = _deployment(fleet)
    (container,) = _pod(deployment)["containers"]
    token = next(e for e in container["env"] if e["name"] == "HF_TOKEN")
    assert token == {
        "name": "HF_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "hf-gated", "key": "hf_token"}},
    }
    assert all(redact(arg) == arg for arg in container["args"])  # no secret flag among them
    assert "hf-gated" not in json.dumps(deployment["metadata"])


def test_without_a_token_reference_there_is_no_token_env():
    (container,) = _pod(_deployment(_fleet()))["containers"]
    assert all(e["name"] != "HF_TOKEN" for e in container["env"])


def _refusal(extra_args: list[str]) -> str:
    with pytest.raises(ValidationError) as err:
        _fleet(extraArgs=extra_args)
    return describe_validation_error(err.value, "spec.")


@pytest.mark.parametrize(
    "arg",
    ["--port=9000", "--tensor-parallel-size=8", "-tp", "--max_model_len=4096", "--MODEL", "-dp"],
)
def test_extra_args_that_override_managed_flags_are_refused_naming_the_field(arg):
    message = _refusal(["--trust-remote-code", arg, "2"])
    assert "spec.model.extraArgs" in message and "extraArgs[1]" in message
    assert "set by inferfleet" in message


def test_the_refusal_says_which_field_sets_the_flag_instead():
    assert "spec.serving.maxNumSeqs" in _refusal(["--max-num-seqs", "512"])


@pytest.mark.parametrize(
    ("args", "secret"),
    [
        (["--hf-token=hf_abcdefghijklmnop"], "hf_abcdefghijklmnop"),
        (["--api-key", "sk-live-123456"], "sk-live-123456"),
        (["--ssl-keyfile-password=hunter2"], "hunter2"),
    ],
)
def test_secret_flags_are_refused_without_echoing_the_secret(args, secret):
    message = _refusal(args)
    assert "hub.tokenSecretRef" in message
    assert secret not in message


def test_unmanaged_extra_args_pass_through_after_the_managed_ones():
    fleet = _fleet(extraArgs=["--trust-remote-code", "--served-model-name", "chat"])
    args = _pod(_deployment(fleet))["containers"][0]["args"]
    assert args[-3:] == ["--trust-remote-code", "--served-model-name", "chat"]


def test_every_flag_the_operator_renders_is_one_extra_args_may_not_set():
    raw = _example()
    raw["spec"]["model"]["lora"] = {"maxLoras": 2}
    raw["spec"]["model"]["dtype"] = "bfloat16"
    raw["spec"]["serving"] = {"enforceEager": True}
    fleet = InferenceFleet.model_validate(raw)
    for pool in (pool_plan(quantization="fp8"), pool_plan(max_num_batched_tokens=2048)):
        rendered = {flag_name(a) for a in vllm_args(fleet.spec, pool)}
        assert rendered - {None} <= MANAGED_FLAGS


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("vllm --hf-token=hf_secret123 --port 8000", "--port 8000"),
        ("args: ['--api-key', 'sk-abc', '--x']", "'--x'"),
        ("--API_KEY sk-abc", "--API_KEY"),
        ("--max-num-batched-tokens=8192 --hf-token secret123", "--max-num-batched-tokens=8192"),
    ],
)
def test_redact_hides_token_values_and_keeps_the_rest(text, kept):
    out = redact(text)
    assert "secret123" not in out and "sk-abc" not in out
    assert kept in out and "<redacted>" in out


@given(st.text(alphabet=st.characters(codec="ascii"), max_size=60))
def test_redact_is_total_and_idempotent(text):
    once = redact(text)
    assert redact(once) == once


@pytest.mark.parametrize(
    "arg",
    [
        "--hf-token=x",
        "--API-KEY",
        "-hf_token",
        "--ssl-keyfile-password=p",
        "--max-num-batched-tokens=8",
        "--tokenizer=t",
        "--trust-remote-code",
        "chat",
        "--secret-sauce",
    ],
)
def test_the_crd_refuses_exactly_the_secret_flags_the_model_refuses(arg):
    (rule,) = _CEL_RULES[ModelSpec.__name__]
    # RE2 (the API server's CEL) and Python's re agree on this pattern's syntax.
    pattern = re.search(r"matches\('(.*)'\)\)", rule["rule"])[1]
    cel_refuses = re.search(pattern, arg) is not None
    name = flag_name(arg)
    assert cel_refuses == (name is not None and is_secret_flag(name))
