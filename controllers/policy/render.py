"""Plan to Kubernetes manifests: one vLLM Deployment, Service and PodDisruptionBudget per pool.

Pure: takes the validated spec, the plan as it appears in status and the desired replica count
per pool, and returns plain dicts ready for server-side apply. It never sees the sizing
dataclasses, so the operator can re-render from `status.plan` alone, and it adds no
ownerReferences (the kube adapter knows the owner's uid; rendering does not).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from controllers.api.pod_overrides import ResourceOverrides, SecurityOverrides, quantity_value
from controllers.api.v1alpha1 import (
    InferenceFleetSpec,
    PlanStatus,
    PoolPlanStatus,
    object_name,
    parse_duration_s,
)
from controllers.policy.drain import GRACE_FLOOR_S, prestop_command
from sizing.hardware import get_gpu
from sizing.quantization import FORMATS

VLLM_PORT = 8000
HF_CACHE_PATH = "/models/huggingface"
PLAN_HASH_ANNOTATION = "inferfleet.io/plan-hash"
MANIFEST_HASH_ANNOTATION = "inferfleet.io/manifest-hash"
MANAGED_BY = "inferfleet"
STARTUP_PERIOD_S = 10
# Cold-start estimates are rough: the startup probe allows twice the plan's figure, at least 5 min.
STARTUP_MARGIN = 2.0
STARTUP_FLOOR_S = 300
_GPU_RESOURCE = {"nvidia": "nvidia.com/gpu", "amd": "amd.com/gpu"}
# Modes in which another controller (HPA on metrics, KEDA, a person) owns `replicas`.
EXTERNALLY_SCALED = {"external", "keda"}
# KEDA scales each pool on vLLM's own queue: waiting requests per replica, and running ones
# against the C_max the plan found (with the same margin the plan keeps below it).
KEDA_WAITING_PER_REPLICA = 2
KEDA_RUNNING_SHARE_OF_C_MAX = 0.8
KEDA_POLLING_INTERVAL_S = 15
KEDA_LATENCY_WINDOW = "2m"  # the P99 latency triggers' rate window


@dataclass(frozen=True)
class PoolObjects:
    """The manifests for one pool, in apply order."""

    pool: str
    deployment: dict[str, Any]
    service: dict[str, Any]
    pod_disruption_budget: dict[str, Any]
    scaled_object: dict[str, Any] | None = None  # keda mode only

    def all(self) -> tuple[dict[str, Any], ...]:
        extra = (self.scaled_object,) if self.scaled_object is not None else ()
        return (self.deployment, self.service, self.pod_disruption_budget, *extra)


def selector_labels(fleet: str, pool: str) -> dict[str, str]:
    """The immutable subset used in selectors (a Deployment's selector can never change)."""
    return {
        "app.kubernetes.io/name": "vllm",
        "app.kubernetes.io/instance": fleet,
        "app.kubernetes.io/component": pool,
    }


def labels(fleet: str, pool: str) -> dict[str, str]:
    return {
        **selector_labels(fleet, pool),
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/part-of": "inferfleet",
    }


def gpu_resource_name(gpu: str) -> str:
    return _GPU_RESOURCE[get_gpu(gpu).vendor]


def startup_failure_threshold(cold_start_s: int) -> int:
    """Probe attempts so that threshold × period covers the cold start with margin."""
    budget_s = max(STARTUP_FLOOR_S, cold_start_s * STARTUP_MARGIN)
    return math.ceil(budget_s / STARTUP_PERIOD_S)


def vllm_args(spec: InferenceFleetSpec, pool: PoolPlanStatus) -> list[str]:
    """The vLLM server flags for one pool, from the plan (layout, limits) and the spec."""
    model = spec.model
    serving = spec.serving
    args = [
        f"--model={model.name}",
        f"--port={VLLM_PORT}",
        f"--tensor-parallel-size={pool.tensor_parallel}",
        f"--pipeline-parallel-size={pool.pipeline_parallel}",
        f"--max-model-len={pool.max_model_len}",
        f"--gpu-memory-utilization={serving.gpu_memory_utilization}",
        f"--max-num-seqs={pool.max_num_seqs}",
    ]
    if model.revision:
        args.append(f"--revision={model.revision}")
    if pool.max_num_batched_tokens:
        args.append(f"--max-num-batched-tokens={pool.max_num_batched_tokens}")
    if model.dtype != "auto":
        args.append(f"--dtype={model.dtype}")
    if pool.quantization != "none":
        args.append(f"--quantization={pool.quantization}")
    args.append(f"--kv-cache-dtype={pool.kv_cache_dtype}")
    args.append(
        "--enable-prefix-caching" if serving.enable_prefix_caching else "--no-enable-prefix-caching"
    )
    if serving.enforce_eager:
        args.append("--enforce-eager")
    if serving.limit_mm_per_prompt is not None:
        args.append(f'--limit-mm-per-prompt={{"image": {serving.limit_mm_per_prompt}}}')
    if model.lora is not None:
        args += [
            "--enable-lora",
            f"--max-loras={model.lora.max_loras}",
            f"--max-lora-rank={model.lora.max_lora_rank}",
        ]
    return args + list(model.extra_args)


def _pod_spec(spec: InferenceFleetSpec, pool: PoolPlanStatus) -> dict[str, Any]:
    pool_spec = next(p for p in spec.pools if p.name == pool.pool)
    gpus = pool.tensor_parallel * pool.pipeline_parallel
    health = {"path": "/health", "port": "http"}
    volumes, mounts = _writable_volumes(pool)
    container = {
        "name": "vllm",
        "image": spec.model.image,
        "args": vllm_args(spec, pool),
        "env": _env(spec),
        "ports": [{"name": "http", "containerPort": VLLM_PORT, "protocol": "TCP"}],
        "resources": _resources(pool, gpus, pool_spec.resources),
        "volumeMounts": mounts,
        "securityContext": _container_security_context(spec.model.security_context),
        "startupProbe": {
            "httpGet": health,
            "periodSeconds": STARTUP_PERIOD_S,
            "failureThreshold": startup_failure_threshold(pool.cold_start_seconds),
        },
        "readinessProbe": {"httpGet": health, "periodSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {"httpGet": health, "periodSeconds": 10, "failureThreshold": 6},
    }
    pod: dict[str, Any] = {
        "containers": [container],
        "volumes": volumes,
        **_pod_hardening(spec.model.security_context),
    }
    if pool_spec.node_selector:
        pod["nodeSelector"] = dict(pool_spec.node_selector)
    if pool_spec.tolerations:
        pod["tolerations"] = [
            t.model_dump(by_alias=True, exclude_none=True) for t in pool_spec.tolerations
        ]
    if pool_spec.affinity:
        pod["affinity"] = dict(pool_spec.affinity)
    return pod


# --- pod hardening --------------------------------------------------------------------------
# vLLM runs as an unprivileged user on a read-only root filesystem; everything it writes goes
# to bounded emptyDirs: the model download, HOME (its compile, Triton and FlashInfer caches,
# its config), /tmp (torch inductor) and /dev/shm (NCCL and the engine's shared-memory queues).
RUN_AS_UID = 1000
HOME_PATH = "/home/vllm"
HOME_GIB = 8
TMP_GIB = 4
# /dev/shm is tmpfs: it counts against the container's memory, so the memory figures add it.
SHM_GIB_PER_GPU = 2
# Host memory: the API server and engine-core processes, plus one worker process per GPU
# (torch + the CUDA runtime's host side), plus /dev/shm.
MEMORY_BASE_GIB = 8
MEMORY_PER_GPU_GIB = 6
# CPU: the API server (tokenising, streaming) and the engine core's busy loop, one core per GPU
# worker; the limit leaves room for tokenising bursts (throttling there shows up as TTFT).
CPU_BASE = 2
CPU_PER_GPU = 1
CPU_LIMIT_FACTOR = 2
# The model download: the checkpoint is at most 16 bits per weight, runtime quantization
# shrinks it on the GPU by 16 / bits; a margin for tokenizer files and format overheads.
CHECKPOINT_BITS = 16
MODEL_CACHE_MARGIN = 1.25
MODEL_CACHE_EXTRA_GIB = 2


def _pod_hardening(security: SecurityOverrides | None) -> dict[str, Any]:
    """No API token (vLLM never talks to the API server), no Service env vars, non-root
    unless the fleet names user 0 (which the operator allows only where its chart does)."""
    given = security or SecurityOverrides()
    user = RUN_AS_UID if given.run_as_user is None else given.run_as_user
    group = RUN_AS_UID if given.run_as_group is None else given.run_as_group
    return {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": user != 0,
            "runAsUser": user,
            "runAsGroup": group,
            "fsGroup": group if given.fs_group is None else given.fs_group,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }


def _container_security_context(security: SecurityOverrides | None) -> dict[str, Any]:
    given = security or SecurityOverrides()
    capabilities: dict[str, Any] = {"drop": ["ALL"]}
    if given.capabilities is not None and given.capabilities.add:
        capabilities["add"] = list(given.capabilities.add)
    return {
        "runAsNonRoot": given.run_as_user != 0,
        "allowPrivilegeEscalation": bool(given.allow_privilege_escalation),
        "privileged": bool(given.privileged),
        "readOnlyRootFilesystem": given.read_only_root_filesystem is not False,
        "capabilities": capabilities,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _env(spec: InferenceFleetSpec) -> list[dict[str, Any]]:
    """Where vLLM writes, and the HF token by reference: its value never enters the manifest."""
    env: list[dict[str, Any]] = [
        {"name": "HF_HOME", "value": HF_CACHE_PATH},
        {"name": "HOME", "value": HOME_PATH},
        # getpass.getuser() (torch inductor's cache path) needs a name the image's passwd
        # lacks for an arbitrary uid.
        {"name": "USER", "value": "vllm"},
        {"name": "VLLM_NO_USAGE_STATS", "value": "1"},
    ]
    ref = spec.model.hub.token_secret_ref
    if ref is not None:
        env.append(
            {
                "name": "HF_TOKEN",
                "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}},
            }
        )
    return env


def _gib(value: float) -> str:
    return f"{math.ceil(value)}Gi"


def shm_gib(gpus: int) -> int:
    return SHM_GIB_PER_GPU * gpus


def model_cache_gib(pool: PoolPlanStatus) -> float | None:
    """Room for one replica's checkpoint download, from the plan's weights; None if unknown."""
    if pool.weights_gib is None:
        return None
    weights_gib = float(pool.weights_gib)
    fmt = FORMATS.get(pool.quantization)
    expansion = CHECKPOINT_BITS / fmt.bits if fmt is not None else 1.0
    return weights_gib * expansion * MODEL_CACHE_MARGIN + MODEL_CACHE_EXTRA_GIB


def _writable_volumes(pool: PoolPlanStatus) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    gpus = pool.tensor_parallel * pool.pipeline_parallel
    cache_gib = model_cache_gib(pool)
    cache = {"sizeLimit": _gib(cache_gib)} if cache_gib is not None else {}
    sizes = (
        ("model-cache", HF_CACHE_PATH, cache),
        ("home", HOME_PATH, {"sizeLimit": _gib(HOME_GIB)}),
        ("tmp", "/tmp", {"sizeLimit": _gib(TMP_GIB)}),
        ("dshm", "/dev/shm", {"medium": "Memory", "sizeLimit": _gib(shm_gib(gpus))}),
    )
    volumes = [{"name": name, "emptyDir": empty_dir} for name, _, empty_dir in sizes]
    mounts = [{"name": name, "mountPath": path} for name, path, _ in sizes]
    return volumes, mounts


def _resources(
    pool: PoolPlanStatus, gpus: int, override: ResourceOverrides | None
) -> dict[str, Any]:
    """GPUs from the layout; CPU and memory from its process count, so the pod is never
    BestEffort; ephemeral storage for the emptyDirs, so it lands on a node with the disk.
    The pool's overrides replace these key by key; where that leaves a request above its
    limit (which the API refuses), the derived side moves to the overridden one."""
    gpu_resource = gpu_resource_name(pool.gpu)
    memory = _gib(MEMORY_BASE_GIB + MEMORY_PER_GPU_GIB * gpus + shm_gib(gpus))
    cpu = CPU_BASE + CPU_PER_GPU * gpus
    disk_gib = HOME_GIB + TMP_GIB + (model_cache_gib(pool) or 0.0)
    requests = {gpu_resource: str(gpus), "cpu": str(cpu), "memory": memory,
                "ephemeral-storage": _gib(disk_gib)}  # fmt: skip
    limits = {gpu_resource: str(gpus), "cpu": str(cpu * CPU_LIMIT_FACTOR), "memory": memory}
    if override is not None:
        requests |= {str(name): value for name, value in override.requests.items()}
        limits |= {str(name): value for name, value in override.limits.items()}
        for name in requests.keys() & limits.keys():
            if quantity_value(requests[name]) > quantity_value(limits[name]):
                if name in override.requests:
                    limits[name] = requests[name]
                else:
                    requests[name] = limits[name]
    return {"requests": requests, "limits": limits}


def _graceful_stop(pod: dict[str, Any], grace_s: int) -> dict[str, Any]:
    """Drain before SIGTERM (see `controllers.policy.drain`), within the grace period."""
    pod["terminationGracePeriodSeconds"] = grace_s
    container = pod["containers"][0]
    container["lifecycle"] = {"preStop": {"exec": {"command": prestop_command(VLLM_PORT, grace_s)}}}
    return pod


def manifest_hash(manifest: Mapping[str, Any]) -> str:
    """Short digest of a manifest's content: equal digests mean nothing to apply."""
    canonical = json.dumps(manifest, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _stamped(manifest: dict[str, Any]) -> dict[str, Any]:
    manifest["metadata"]["annotations"][MANIFEST_HASH_ANNOTATION] = manifest_hash(manifest)
    return manifest


def _metadata(fleet: str, namespace: str, pool: str, plan_hash: str) -> dict[str, Any]:
    return {
        "name": object_name(fleet, pool),
        "namespace": namespace,
        "labels": labels(fleet, pool),
        "annotations": {PLAN_HASH_ANNOTATION: plan_hash},
    }


def scaled_object(
    fleet: str,
    namespace: str,
    spec: InferenceFleetSpec,
    plan: PlanStatus,
    pool: PoolPlanStatus,
    floor: int,
    prometheus_url: str,
) -> dict[str, Any]:
    """KEDA owns replicas; inferfleet keeps the forecast floor in `minReplicaCount`.

    The two autoscalers cooperate instead of fighting: KEDA reacts to the queue within seconds,
    and inferfleet's pre-warm floor makes sure replicas are already warm before a known peak.
    The triggers are the SLO guard's signals: the queue, running requests against the plan's
    concurrency, and TTFT (and ITL) P99 against the SLO as a `Value` metric, so the HPA sizes
    by the latency ratio as the guard does (HPA takes the highest proposal, and never goes
    below the floor).
    """
    where = f'namespace="{namespace}",fleet="{fleet}",pool="{pool.pool}"'
    pool_spec = next((p for p in spec.pools if p.name == pool.pool), None)
    gpus = pool.tensor_parallel * pool.pipeline_parallel
    limits = [spec.scaling.max_replicas] if spec.scaling.max_replicas else []
    if pool_spec is not None and pool_spec.max_gpus:
        limits.append(pool_spec.max_gpus // gpus)
    ceiling = max(floor, min(limits) if limits else 2 * max(pool.replicas, floor))
    running_target = max(1, int(pool.c_max * KEDA_RUNNING_SHARE_OF_C_MAX))
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": _metadata(fleet, namespace, pool.pool, plan.hash),
        "spec": {
            "scaleTargetRef": {"name": object_name(fleet, pool.pool)},
            "minReplicaCount": floor,
            "maxReplicaCount": ceiling,
            "pollingInterval": KEDA_POLLING_INTERVAL_S,
            "cooldownPeriod": int(parse_duration_s(spec.scaling.scale_down_stabilization)),
            "triggers": [
                {
                    "type": "prometheus",
                    "name": "vllm-waiting",
                    "metadata": {
                        "serverAddress": prometheus_url,
                        "query": f"sum(vllm:num_requests_waiting{{{where}}})",
                        "threshold": str(KEDA_WAITING_PER_REPLICA),
                    },
                },
                {
                    "type": "prometheus",
                    "name": "vllm-running",
                    "metadata": {
                        "serverAddress": prometheus_url,
                        "query": f"sum(vllm:num_requests_running{{{where}}})",
                        "threshold": str(running_target),
                    },
                },
                *(
                    _latency_trigger(name, histogram, where, slo, prometheus_url)
                    for name, histogram, slo in (
                        ("vllm-ttft-p99", "vllm:time_to_first_token_seconds", spec.slo.ttft_p99),
                        ("vllm-itl-p99", "vllm:inter_token_latency_seconds", spec.slo.itl_p99),
                    )
                    if slo is not None
                ),
            ],
        },
    }


def _latency_trigger(
    name: str, histogram: str, where: str, slo: str, prometheus_url: str
) -> dict[str, Any]:
    """A P99 latency against its SLO: as a `Value` metric the HPA scales by their ratio."""
    query = (
        f"histogram_quantile(0.99, sum by (le) (rate({histogram}_bucket{{{where}}}"
        f"[{KEDA_LATENCY_WINDOW}])))"
    )
    return {
        "type": "prometheus",
        "name": name,
        "metricType": "Value",
        "metadata": {
            "serverAddress": prometheus_url,
            "query": query,
            "threshold": f"{parse_duration_s(slo):g}",
        },
    }


def render_pool(
    fleet: str,
    namespace: str,
    spec: InferenceFleetSpec,
    plan: PlanStatus,
    pool: PoolPlanStatus,
    replicas: int,
    prometheus_url: str | None = None,
    grace_s: int = GRACE_FLOOR_S,
) -> PoolObjects:
    selector = selector_labels(fleet, pool.pool)
    deployment_spec: dict[str, Any] = {
        "selector": {"matchLabels": selector},
        # Surge one replica at a time: GPUs are scarce, and a new replica warms before an old
        # one goes away.
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
        },
        "template": {
            "metadata": {"labels": labels(fleet, pool.pool)},
            "spec": _graceful_stop(_pod_spec(spec, pool), grace_s),
        },
    }
    if spec.scaling.mode not in EXTERNALLY_SCALED:
        deployment_spec = {"replicas": replicas, **deployment_spec}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(fleet, namespace, pool.pool, plan.hash),
        "spec": deployment_spec,
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(fleet, namespace, pool.pool, plan.hash),
        "spec": {
            "selector": selector,
            "ports": [{"name": "http", "port": VLLM_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }
    pdb = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(fleet, namespace, pool.pool, plan.hash),
        # The plan keeps an N+1 spare, so one voluntary eviction at a time never drops capacity.
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector}},
    }
    keda = None
    if spec.scaling.mode == "keda" and prometheus_url:
        keda = _stamped(scaled_object(fleet, namespace, spec, plan, pool, replicas, prometheus_url))
    return PoolObjects(pool.pool, _stamped(deployment), _stamped(service), _stamped(pdb), keda)


def render_fleet(
    fleet: str,
    namespace: str,
    spec: InferenceFleetSpec,
    plan: PlanStatus,
    replicas: Mapping[str, int],
    prometheus_url: str | None = None,
    grace_s: Mapping[str, int] | None = None,
) -> list[PoolObjects]:
    """Manifests for every pool the plan gives replicas; pools at zero get none.

    In keda mode `replicas` is the forecast floor each pool's ScaledObject keeps (it needs the
    Prometheus the triggers query; without one no ScaledObject is rendered). `grace_s` is each
    pool's terminationGracePeriodSeconds (`controllers.policy.drain.grace_period_s`).
    """
    graces = grace_s or {}
    return [
        render_pool(
            fleet,
            namespace,
            spec,
            plan,
            pool,
            replicas[pool.pool],
            prometheus_url,
            graces.get(pool.pool, GRACE_FLOOR_S),
        )
        for pool in plan.pools
        if pool.replicas > 0
    ]


def drifted(desired: Any, observed: Any) -> bool:
    """True when `observed` lacks or changes anything `desired` sets.

    Fields the API server or other controllers add (defaults, status, other managers' fields)
    are ignored: only what the operator owns is compared, so an unchanged fleet writes nothing
    while a hand edit of an owned field is put back.
    """
    if isinstance(desired, Mapping):
        if not isinstance(observed, Mapping):
            return True
        return any(key not in observed or drifted(v, observed[key]) for key, v in desired.items())
    if isinstance(desired, list):
        if not isinstance(observed, list) or len(desired) != len(observed):
            return True
        return any(drifted(d, o) for d, o in zip(desired, observed, strict=True))
    return desired != observed
