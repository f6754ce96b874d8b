"""The `InferenceFleet` API (inferfleet.io/v1alpha1) as pydantic models: one typed source.

The same models validate `inferfleet plan FILE.yaml`, the operator's handler input, and generate
the CRD's openAPIV3Schema (`inferfleet crd`). Spec conventions follow the Kubernetes API:
camelCase keys, units in names or in the value (`"2s"`, `"50ms"`), no floats (decimals are
strings such as `"2.50"`), counts as integers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from croniter import CroniterBadDateError, croniter
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel

from controllers.api.engine_args import MAX_EXTRA_ARG_CHARS, MAX_EXTRA_ARGS, check_extra_args
from controllers.api.packed import FLOAT32, FLOAT64, INT32, packed_from_lists
from controllers.api.pod_overrides import ResourceOverrides, SecurityOverrides
from sizing.validate_config import MAX_TOTAL_PARAMS_B
from sizing.workload import MAX_RATE_RPS, MAX_TOKENS, MIN_RATE_RPS

GROUP = "inferfleet.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "InferenceFleet"
PLURAL = "inferencefleets"

# --- scalar types -------------------------------------------------------------------------

DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
DECIMAL_PATTERN = r"^[0-9]+(\.[0-9]+)?$"
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration_s(text: str) -> float:
    """'2s' -> 2.0, '50ms' -> 0.05, '1h30m' -> 5400.0 (Go-style durations, no negatives)."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"{text!r} is not a duration; write e.g. '2s', '500ms', '5m' or '1h30m'")
    return sum(float(num) * _UNIT_S[unit] for num, unit in _DURATION_PART.findall(text))


def parse_decimal(text: str) -> float:
    if not re.fullmatch(DECIMAL_PATTERN, text):
        raise ValueError(f"{text!r} is not a non-negative decimal string such as '2.50'")
    try:
        return float(Decimal(text))
    except InvalidOperation as err:  # pragma: no cover - the pattern already rules this out
        raise ValueError(f"{text!r} is not a decimal") from err


def _check_duration(text: str) -> str:
    parse_duration_s(text)
    return text


def _check_decimal(text: str) -> str:
    parse_decimal(text)
    return text


def _check_rate(text: str) -> str:
    value = parse_decimal(text)
    if not MIN_RATE_RPS <= value <= MAX_RATE_RPS:
        raise ValueError(
            f"{text!r} req/s must be at least {MIN_RATE_RPS:g} and at most {MAX_RATE_RPS:,.0f}"
        )
    return text


def _check_billions(text: str) -> str:
    value = parse_decimal(text)
    if not 0.0 < value <= MAX_TOTAL_PARAMS_B:
        raise ValueError(f"{text!r} billion must be above 0 and at most {MAX_TOTAL_PARAMS_B:,.0f}")
    return text


# The reconcile interval: at least a second (a fleet then costs the API server a few requests
# per second at most; 10 ms made one fleet send ~87/s), at most an hour (longer and a spec
# edit, a lost replica or a traffic change waits too long for the next look).
MIN_INTERVAL_S = 1.0
MAX_INTERVAL_S = 3600.0


def _check_interval(text: str) -> str:
    value = parse_duration_s(text)
    if not MIN_INTERVAL_S <= value <= MAX_INTERVAL_S:
        raise ValueError(
            f"{text!r} must be between {MIN_INTERVAL_S:g}s and {MAX_INTERVAL_S / 60:g}m"
        )
    return text


def check_cron(text: str) -> str:
    """Five fields croniter can parse and that fire at some point (`0 0 31 2 *` never does)."""
    fields = text.split()
    if len(fields) != 5 or not croniter.is_valid(text):
        raise ValueError(
            f"{text!r} is not a 5-field cron expression (minute hour day-of-month month "
            "day-of-week) such as '0 8 * * 1-5'"
        )
    try:
        croniter(text, 0.0).get_next(float)
    except CroniterBadDateError:
        raise ValueError(f"{text!r} never fires (no such date)") from None
    return text


PROMETHEUS_URL_PATTERN = r"^https?://[^\s/?#@]+(/[^\s?#]*)?$"


def check_prometheus_url(text: str) -> str:
    """http or https, a host, an optional path: no credentials, query or fragment."""
    parts = urlsplit(text)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.username is not None
        or parts.query
        or parts.fragment
        or not re.fullmatch(PROMETHEUS_URL_PATTERN, text)
    ):
        raise ValueError(
            f"{text!r} is not an http(s) base URL such as "
            "'http://prometheus.monitoring.svc:9090' (no credentials, query or fragment)"
        )
    try:
        parts.port  # noqa: B018 - raises on a port outside 0-65535
    except ValueError:
        raise ValueError(f"{text!r} has an invalid port") from None
    return text


def _check_fraction(text: str) -> str:
    value = parse_decimal(text)
    if not 0.0 < value <= 1.0:
        raise ValueError(f"{text!r} must be a fraction in (0, 1], e.g. '0.90'")
    return text


Duration = Annotated[
    str,
    AfterValidator(_check_duration),
    Field(json_schema_extra={"pattern": DURATION_PATTERN}),
]
DecimalStr = Annotated[
    str,
    AfterValidator(_check_decimal),
    Field(json_schema_extra={"pattern": DECIMAL_PATTERN}),
]
Rate = Annotated[
    str,
    AfterValidator(_check_rate),
    Field(json_schema_extra={"pattern": DECIMAL_PATTERN}),
]
Billions = Annotated[
    str,
    AfterValidator(_check_billions),
    Field(json_schema_extra={"pattern": DECIMAL_PATTERN}),
]
Interval = Annotated[
    str,
    AfterValidator(_check_interval),
    Field(json_schema_extra={"pattern": DURATION_PATTERN}),
]
Fraction = Annotated[
    str,
    AfterValidator(_check_fraction),
    Field(json_schema_extra={"pattern": DECIMAL_PATTERN}),
]

Quantization = Literal["auto", "none", "fp8", "int8", "int4", "awq", "gptq", "mxfp4", "bnb4"]
KVCacheDtype = Literal["auto", "fp8"]
ModelDtype = Literal["auto", "bfloat16", "float16", "float32"]
StoragePathName = Literal["nvme", "network", "object-store"]
ScalingMode = Literal["predictive", "reactive", "static", "external", "keda", "advisory"]
Predictability = Literal["predictable", "new"]
SizingMethod = Literal["vllm", "guide"]
Severity = Literal["info", "warning", "critical"]
# The registry in controllers.policy.scaling.forecast (a unit test keeps the two equal).
ForecasterName = Literal["seasonal", "holt-winters", "last-value"]


class ApiModel(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown keys are errors, not silence."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


# --- spec -----------------------------------------------------------------------------------


class ConfigMapKeyRef(ApiModel):
    name: str = Field(min_length=1, description="ConfigMap in the fleet's namespace.")
    key: str = Field(default="config.json", description="Key holding the config.json text.")


class SecretKeyRef(ApiModel):
    """A key of a Secret in the fleet's namespace (the kubelet reads it; the operator never)."""

    name: str = Field(
        min_length=1,
        max_length=253,
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        description="Secret in the fleet's namespace.",
    )
    key: str = Field(
        default="token",
        min_length=1,
        max_length=253,
        pattern=r"^[-._a-zA-Z0-9]+$",
        description="Key in the Secret holding the value.",
    )


class HubSpec(ApiModel):
    """How the operator reads a model from the Hugging Face Hub (or the mirror its
    HF_ENDPOINT names) when neither hfConfig nor the built-in catalog has it."""

    token_secret_ref: SecretKeyRef | None = Field(
        default=None, description="A Secret key holding a Hub access token (gated models)."
    )


CALIBRATION_LABEL = "inferfleet.io/calibration"  # the operator watches ConfigMaps with it


class CalibrationConfigMapRef(ApiModel):
    name: str = Field(
        min_length=1,
        description=f"ConfigMap in the fleet's namespace, labelled {CALIBRATION_LABEL} (the "
        "operator watches only those).",
    )
    key: str = Field(
        default="calibration.yaml", description="Key holding `inferfleet bench --calibrate` YAML."
    )


class CalibrationSource(ApiModel):
    """Measured engine efficiency the plan uses instead of the datasheet defaults."""

    config_map_ref: CalibrationConfigMapRef


class HFConfigSource(ApiModel):
    """Where the model's Hugging Face config.json comes from: inline, or a ConfigMap."""

    inline: dict[str, Any] | None = Field(
        default=None,
        description="The config.json object itself (architecture keys: hidden_size, "
        "num_hidden_layers, num_attention_heads, num_key_value_heads, ...).",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    config_map_ref: ConfigMapKeyRef | None = Field(
        default=None, description="A ConfigMap key holding config.json as text."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> HFConfigSource:
        if (self.inline is None) == (self.config_map_ref is None):
            raise ValueError("set exactly one of hfConfig.inline or hfConfig.configMapRef")
        return self


class LoraSpec(ApiModel):
    max_loras: int = Field(ge=1, le=256, description="Adapters resident on a GPU at once.")
    max_lora_rank: int = Field(default=16, ge=1, le=512, description="Largest adapter rank.")
    adapter_size_mib: int | None = Field(
        default=None,
        alias="adapterSizeMiB",
        ge=1,
        description="Size of one adapter in MiB; derived from rank and architecture if unset.",
    )


# The image the chart and the CRD default to; its tag is the vLLM release the memory model follows.
DEFAULT_VLLM_IMAGE = "vllm/vllm-openai:v0.19.0"


class ModelSpec(ApiModel):
    name: str = Field(
        min_length=1,
        description="Model to serve, as passed to vLLM --model: a Hugging Face repo id. Alone it "
        "is enough: config.json comes from the built-in catalog, else the Hub.",
    )
    revision: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*$",
        description="Hub revision (branch, tag or commit) to read; main when unset.",
    )
    hf_config: HFConfigSource | None = Field(
        default=None,
        description="The model's config.json; resolved by name (catalog, then Hub) when unset.",
    )
    hub: HubSpec = Field(default_factory=HubSpec, description="Hugging Face Hub access.")
    parameter_count: Billions | None = Field(
        default=None,
        description="Total parameters in billions, e.g. '70.6'; derived from the "
        "architecture when unset.",
    )
    dtype: ModelDtype = Field(default="auto", description="Activation/weight dtype (--dtype).")
    quantization: Quantization = Field(
        default="auto",
        description="Weight quantization; 'auto' lets the sizing choose (step 5), 'none' "
        "serves the checkpoint's precision.",
    )
    kv_cache_dtype: KVCacheDtype = Field(default="auto", description="KV-cache dtype.")
    image: str = Field(
        default=DEFAULT_VLLM_IMAGE,
        min_length=1,
        description="vLLM container image; its tag (vX.Y.Z) is the release the memory model "
        "follows unless engine.version says otherwise.",
    )
    lora: LoraSpec | None = Field(default=None, description="Multi-LoRA serving.")
    security_context: SecurityOverrides | None = Field(
        default=None,
        description="The user, group and root filesystem the image needs (default: UID/GID "
        "1000, read-only root, no capabilities). Root, privileged, privilege escalation and "
        "added capabilities are refused unless the operator's chart sets "
        "vllmPods.allowPrivileged.",
    )
    extra_args: Annotated[
        list[Annotated[str, Field(max_length=MAX_EXTRA_ARG_CHARS)]],
        AfterValidator(check_extra_args),
    ] = Field(
        default_factory=list,
        max_length=MAX_EXTRA_ARGS,
        description="Extra vLLM arguments, after the ones inferfleet sets. Flags inferfleet "
        "manages (--model, --port, --tensor-parallel-size, ...) and flags carrying a secret "
        "(--hf-token, --api-key, ...) are refused (hub.tokenSecretRef reaches the pods as "
        "HF_TOKEN). --trust-remote-code runs the model repository's Python code in the pod: "
        "use it only for repositories you trust.",
    )


class TokenPercentiles(ApiModel):
    p50: int = Field(ge=1, le=MAX_TOKENS, description="Median tokens per request.")
    p95: int = Field(ge=1, le=MAX_TOKENS, description="95th percentile tokens per request.")
    p99: int = Field(ge=1, le=MAX_TOKENS, description="99th percentile tokens per request.")

    @model_validator(mode="after")
    def _ordered(self) -> TokenPercentiles:
        if not self.p50 <= self.p95 <= self.p99:
            raise ValueError(
                f"percentiles must satisfy p50 <= p95 <= p99, got "
                f"{self.p50} / {self.p95} / {self.p99}"
            )
        return self


class WorkloadSpec(ApiModel):
    prompt_tokens: TokenPercentiles = Field(description="Prompt (input) length percentiles.")
    output_tokens: TokenPercentiles = Field(description="Output length percentiles.")
    max_model_len: int | None = Field(
        default=None,
        ge=256,
        le=MAX_TOKENS,
        description="Context limit per request (--max-model-len); default P99 prompt + "
        "P99 output rounded up to 1024.",
    )
    peak_requests_per_second: Rate = Field(description="Peak arrival rate, req/s.")
    average_requests_per_second: Rate | None = Field(
        default=None, description="Average arrival rate, req/s (for TCO at real utilization)."
    )
    predictability: Predictability = Field(
        default="new",
        description="'predictable' (stable, known traffic: 20% headroom) or 'new' "
        "(new or high-variance: 50% headroom).",
    )
    prefix_share: Fraction | None = Field(
        default=None, description="Share of prompt tokens that hit a shared prefix."
    )
    usable_rps_per_replica: Rate | None = Field(
        default=None,
        alias="usableRPSPerReplica",
        description="Measured usable req/s per replica at C_max (from `inferfleet bench`); "
        "overrides the predicted curve.",
    )


class SLOSpec(ApiModel):
    ttft_p99: Duration = Field(description="Time-to-first-token P99 target, e.g. '2s'.")
    itl_p99: Duration | None = Field(
        default=None, description="Inter-token latency P99 target, e.g. '50ms'."
    )


class Toleration(ApiModel):
    key: str | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None


class GPUInterconnectSpec(ApiModel):
    kind: Literal["nvlink", "pcie", "xgmi"] = Field(description="How the replica's GPUs talk.")
    bandwidth_gb_per_second: DecimalStr = Field(
        alias="bandwidthGBPerSecond", description="Per GPU, one direction, GB = 10^9 bytes."
    )


class GPUSpec(ApiModel):
    """A GPU the catalog does not know, described by its datasheet (dense figures)."""

    memory_gib: DecimalStr = Field(
        alias="memoryGiB", description="Total memory as the driver reports it, GiB = 2^30."
    )
    memory_bandwidth_gb_per_second: DecimalStr = Field(
        alias="memoryBandwidthGBPerSecond", description="HBM/GDDR bandwidth, GB = 10^9 bytes."
    )
    tflops: dict[Literal["fp32", "fp16", "bf16", "fp8", "int8", "fp4"], DecimalStr] = Field(
        min_length=1, description="Dense peak TFLOPS per dtype the tensor cores run natively."
    )
    interconnect: GPUInterconnectSpec


class PoolSpec(ApiModel):
    name: str = Field(
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        max_length=40,
        description="Pool name (DNS label); the Deployment is named <fleet>-<pool>.",
    )
    gpu: str = Field(min_length=1, description="GPU model, e.g. H100-SXM-80GB, L40S, MI300X.")
    gpu_spec: GPUSpec | None = Field(
        default=None,
        alias="gpuSpec",
        description="Datasheet of a GPU the catalog lacks (then `gpu` is only its name); "
        "needs costPerGPUHour.",
    )
    max_gpus: int | None = Field(
        default=None, ge=1, alias="maxGPUs", description="GPUs this fleet may use here."
    )
    cost_per_gpu_hour: DecimalStr | None = Field(
        default=None,
        alias="costPerGPUHour",
        description="$ per GPU-hour; the catalog's default when unset.",
    )
    node_selector: dict[str, str] = Field(
        default_factory=dict, description="Node labels of this GPU pool's nodes."
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, description="Tolerations for the pool's GPU node taints."
    )
    affinity: dict[str, Any] | None = Field(
        default=None,
        description="Pod affinity for the vLLM pods (corev1 Affinity).",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    storage: StoragePathName = Field(
        default="object-store", description="Where replicas load weights from (cold start)."
    )
    cold_start: Duration | None = Field(
        default=None, description="Measured scale-up-to-ready time; estimated when unset."
    )
    resources: ResourceOverrides | None = Field(
        default=None,
        description="CPU, memory and ephemeral-storage requests/limits of this pool's vLLM "
        "container, replacing the derived ones key by key (GPUs are the plan's; memory must "
        "hold /dev/shm, 2 GiB per GPU).",
    )

    @model_validator(mode="after")
    def _priced_custom_gpu(self) -> PoolSpec:
        if self.gpu_spec is not None and self.cost_per_gpu_hour is None:
            raise ValueError(f"pool {self.name}: gpuSpec needs costPerGPUHour (no catalog price)")
        return self


class ServingSpec(ApiModel):
    """vLLM engine settings; unset ones are chosen by the sizing (steps 8 and 9)."""

    gpu_memory_utilization: Fraction = Field(
        default="0.90", description="Share of GPU memory vLLM may use (--gpu-memory-utilization)."
    )
    max_num_seqs: int | None = Field(
        default=None, ge=1, le=4096, description="Running sequences per replica; sized if unset."
    )
    max_num_batched_tokens: int | None = Field(
        default=None,
        ge=64,
        description="Tokens per engine step (prefill chunk); chosen from the ITL SLO if unset.",
    )
    enable_prefix_caching: bool = Field(default=True, description="--enable-prefix-caching.")
    enforce_eager: bool = Field(
        default=False, description="Disable CUDA graphs (--enforce-eager): less memory, slower."
    )
    limit_mm_per_prompt: int | None = Field(
        default=None,
        ge=0,
        le=1000,
        alias="limitMMPerPrompt",
        description="Images per prompt of a multimodal model (--limit-mm-per-prompt); 0 serves "
        "it as text only and skips the encoder's start-up profile; vLLM's default when unset.",
    )


class ScheduleSpec(ApiModel):
    cron: Annotated[str, AfterValidator(check_cron)] = Field(
        min_length=9, description="Cron expression (5 fields), local to timezone."
    )
    min_replicas: int = Field(ge=0, description="Replica floor while this entry is active.")
    duration: Duration = Field(default="1h", description="How long the entry stays active.")


class ScalingSpec(ApiModel):
    mode: ScalingMode = Field(
        default="predictive",
        description="predictive (forecast + warm floor + reactive), reactive, static (the "
        "plan's count), external (never write replicas), keda (write a ScaledObject), advisory "
        "(decide as predictive, report what it would do, never change replicas).",
    )
    min_replicas: int = Field(default=1, ge=0, description="Replica floor of the first pool.")
    max_replicas: int | None = Field(
        default=None, ge=1, description="Replica ceiling; the plan fails NoPoolFits above it."
    )
    min_warm_replicas: Annotated[int, Field(ge=0)] | Literal["auto"] = Field(
        default="auto",
        description="Replicas kept warm for surprises: an integer, or 'auto' (from ramps).",
        json_schema_extra={"x-kubernetes-int-or-string": True},
    )
    schedules: list[ScheduleSpec] = Field(default_factory=list)
    scale_down_stabilization: Duration = Field(
        default="10m", description="How long load must stay low before replicas are removed."
    )
    forecaster: ForecasterName = Field(
        default="seasonal",
        description="Forecaster: seasonal (daily and weekly profile), holt-winters, last-value.",
    )
    target_slo_met_percent: float = Field(
        default=99.8,
        gt=50,
        lt=100,
        alias="targetSLOMetPercent",
        description="Share of intervals whose load the ready replicas should cover; "
        "minWarmReplicas 'auto' steers its ramp percentile toward it.",
    )
    interval: Interval = Field(
        default="30s", description="Reconcile/decision interval, between 1s and 60m."
    )
    pending_deadline: Duration = Field(
        default="5m",
        description="How long a replica may wait for a node before it no longer counts as "
        "coming capacity: the fleet is Degraded and its shortfall spills to the next pool.",
    )
    slo_guard_scrapes: int = Field(
        default=2,
        ge=1,
        le=100,
        alias="sloGuardScrapes",
        description="Consecutive intervals with TTFT/ITL P99 over the SLO, a queue, or KV cache "
        "over its threshold before the SLO guard adds replicas (a full queue that grew acts at "
        "its first scrape).",
    )

    @model_validator(mode="after")
    def _bounds(self) -> ScalingSpec:
        if self.max_replicas is not None and self.min_replicas > self.max_replicas:
            raise ValueError(
                f"scaling.minReplicas ({self.min_replicas}) must be <= scaling.maxReplicas "
                f"({self.max_replicas})"
            )
        return self


class MonitoringSpec(ApiModel):
    prometheus_url: Annotated[str, AfterValidator(check_prometheus_url)] | None = Field(
        default=None,
        alias="prometheusURL",
        max_length=2048,
        description="Prometheus base URL (http or https); the operator's default when unset. "
        "The operator only queries hosts its allow-list permits.",
        json_schema_extra={"pattern": PROMETHEUS_URL_PATTERN},
    )
    thresholds: dict[str, DecimalStr] = Field(
        default_factory=dict, description="Overrides of the guide's monitoring thresholds."
    )


class EngineSpec(ApiModel):
    version: str | None = Field(
        default=None,
        pattern=r"^v?\d+\.\d+(\.\d+)?([.+-][0-9A-Za-z.]+)?$",
        description="vLLM release the image runs (e.g. 0.11.0), for images whose tag does not "
        "say (latest, a digest, a private build); read from the image tag when unset.",
    )


class InferenceFleetSpec(ApiModel):
    model: ModelSpec
    engine: EngineSpec = Field(default_factory=EngineSpec)
    workload: WorkloadSpec
    slo: SLOSpec
    pools: list[PoolSpec] = Field(min_length=1, max_length=16)
    serving: ServingSpec = Field(default_factory=ServingSpec)
    scaling: ScalingSpec = Field(default_factory=ScalingSpec)
    monitoring: MonitoringSpec = Field(default_factory=MonitoringSpec)
    sizing_method: SizingMethod = Field(
        default="vllm",
        description="Memory model: 'vllm' (what vLLM's profiler does) or 'guide' (rules of thumb).",
    )
    sizing_quantile: Fraction = Field(
        default="0.10",
        alias="sizingQuantile",
        description="Quantile of the performance model's measured error that replicas are "
        "sized on: 0.10 (default) assumes the model is as optimistic as on its worst tenth of "
        "benchmarks; 0.50 sizes on the median. Between 0.10 and 0.90.",
    )
    calibration: CalibrationSource | None = Field(
        default=None,
        description="Efficiency fitted by `inferfleet bench --calibrate` on the pools' GPU, from a "
        "ConfigMap: planning then uses the measured engine (like `inferfleet plan --calibration`).",
    )

    @model_validator(mode="after")
    def _unique_pools(self) -> InferenceFleetSpec:
        names = [pool.name for pool in self.pools]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"pool names must be unique; repeated: {', '.join(dupes)}")
        return self


# Deployments, Services and PDBs are named <fleet>-<pool>; a Service name is a DNS-1035 label.
OBJECT_NAME_MAX = 63
_DNS_1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")


def object_name(fleet: str, pool: str) -> str:
    """The name of every object the operator creates for one pool."""
    return f"{fleet}-{pool}"


def check_object_names(fleet: str, pools: list[str]) -> None:
    """Every derived name a valid Service name, so no write is rejected after admission."""
    bad = [
        object_name(fleet, pool)
        for pool in pools
        if len(object_name(fleet, pool)) > OBJECT_NAME_MAX
        or not _DNS_1035_LABEL.fullmatch(object_name(fleet, pool))
    ]
    if bad:
        shown = ", ".join(f"{name!r} ({len(name)} characters)" for name in bad)
        raise ValueError(
            f"metadata.name + '-' + pools[].name names the pool's Deployment and Service, "
            f"which must be a DNS-1035 label (lower-case letter first, letters, digits, '-') "
            f"of at most {OBJECT_NAME_MAX} characters: {shown}"
        )


class ObjectMeta(BaseModel):
    """The parts of metadata inferfleet reads; the rest passes through untouched."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True)
    name: str = Field(min_length=1)
    namespace: str | None = None


class InferenceFleet(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True)
    api_version: Literal["inferfleet.io/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["InferenceFleet"]
    metadata: ObjectMeta
    spec: InferenceFleetSpec

    @model_validator(mode="after")
    def _derived_names(self) -> InferenceFleet:
        check_object_names(self.metadata.name, [pool.name for pool in self.spec.pools])
        return self


# --- status ---------------------------------------------------------------------------------


class Condition(ApiModel):
    """Shaped like metav1.Condition."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str = Field(pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
    message: str = ""
    last_transition_time: str
    observed_generation: int | None = None


class PlanStep(ApiModel):
    step: str
    decision: str
    reason: str


class UsableBand(ApiModel):
    p10: str
    p50: str
    p90: str
    regime: str = Field(description="Load regime of C_max whose residuals give the band.")


class PoolPlanStatus(ApiModel):
    pool: str
    gpu: str
    quantization: str = Field(
        description="vLLM --quantization value; 'none' serves the checkpoint as it is."
    )
    weight_format: str = Field(description="Effective weight format, e.g. bf16, fp8, awq.")
    kv_cache_dtype: str
    tensor_parallel: int
    pipeline_parallel: int
    replicas: int
    min_warm: int
    c_max: int
    usable_rps_per_replica: str = Field(alias="usableRPSPerReplica")
    usable_rps_band: UsableBand | None = Field(
        default=None,
        alias="usableRPSBand",
        description="Usable req/s per replica at the P10/P50/P90 of the model's measured error.",
    )
    gpus: int
    cost_per_hour: str
    cost_per_million_tokens: str
    max_model_len: int
    max_num_seqs: int
    max_num_batched_tokens: int
    kv_cache_tokens: int
    cold_start_seconds: int
    weights_gib: str | None = Field(
        default=None,
        alias="weightsGiB",
        description="GiB of weights one replica holds on its GPUs (sizes its model cache).",
    )


class PlanStatus(ApiModel):
    hash: str
    pools: list[PoolPlanStatus]
    standby: list[PoolPlanStatus] = Field(
        default_factory=list,
        description="Allowed pools the plan ranked after the ones it runs, in its order, with "
        "their replica shape and no replicas: where a shortfall of Pending replicas spills "
        "once the planned pools are full.",
    )
    steps: list[PlanStep]
    total_gpus: int = Field(alias="totalGPUs")
    cost_per_hour: str
    cost_per_month: str


class ReplicaStatus(ApiModel):
    desired: int = 0
    ready: int = 0
    warming: int = 0
    pending: int = Field(default=0, description="Replicas unschedulable past the deadline.")
    advised: int | None = Field(
        default=None, description="scaling.mode advisory: what the autoscaler would ask for."
    )


class PendingPool(ApiModel):
    """Replicas of one pool that the scheduler has not placed within the deadline."""

    pool: str
    replicas: int
    reason: str = Field(description="The scheduler's reason, e.g. Unschedulable, FailedCreate.")
    message: str = ""
    since: str = Field(description="When the oldest of them started waiting.")
    spilled_to: str | None = Field(default=None, description="The pool covering the shortfall.")
    spilled_replicas: int = 0


class ForecastStatus(ApiModel):
    next_peak_rps: str | None = Field(default=None, alias="nextPeakRPS")
    next_peak_at: str | None = None
    prewarm_at: str | None = None
    prewarm_replicas: int | None = None
    forecaster: str | None = None
    reason: str | None = None
    # The warm spare: the ramp percentile it is sized at, steered toward the SLO-met target by
    # the share of recent intervals (half-life a day) the ready replicas covered.
    spare_percentile: str | None = None
    recent_slo_met_percent: str | None = Field(default=None, alias="recentSLOMetPercent")
    target_slo_met_percent: str | None = Field(default=None, alias="targetSLOMetPercent")


class Finding(ApiModel):
    metric: str
    severity: Severity
    observed: str
    threshold: str
    advice: str
    pool: str | None = None


class PlanSummaryPool(ApiModel):
    pool: str
    gpu: str
    replicas: int
    tensor_parallel: int
    gpus: int


class PlanSummary(ApiModel):
    total_gpus: int = Field(alias="totalGPUs")
    cost_per_month: str
    pools: list[PlanSummaryPool]


class Recommendation(ApiModel):
    """Step 13's re-size: both plans, the difference, and the merge patch that accepts it."""

    reason: str
    basis: str | None = Field(
        default=None,
        description="Which measurements the re-plan used (observed lengths, peak, measured "
        "capacity per replica) beside what the spec said.",
    )
    error: str | None = Field(
        default=None, description="Why the observed workload cannot be planned at all."
    )
    current: PlanSummary | None = None
    proposed: PlanSummary | None = None
    gpu_delta: int | None = None
    cost_per_month_delta: str | None = None
    accept: dict[str, Any] | None = Field(
        default=None,
        description="A ready `kubectl patch --type merge` body.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )


class PoolCapacity(ApiModel):
    """What one replica of a pool serves: the plan's prediction beside production's measure."""

    pool: str
    predicted_rps: str = Field(
        alias="predictedRPS", description="Usable req/s per replica the plan predicts."
    )
    measured_rps: str | None = Field(
        default=None,
        alias="measuredRPS",
        description="Usable req/s per replica measured from vLLM's metrics (saturated and "
        "near-saturated intervals); unset until one is seen.",
    )
    predicted_tok_per_s: str | None = Field(
        default=None,
        alias="predictedTokPerS",
        description="Prompt + output tokens/s per replica the plan predicts.",
    )
    measured_tok_per_s: str | None = Field(
        default=None, alias="measuredTokPerS", description="The same, measured."
    )
    used_rps: str = Field(
        alias="usedRPS",
        description="Req/s per replica the scaling decision divides demand by: prediction and "
        "measurement blended by confidence, in the unit that limits today's requests.",
    )
    samples: int = Field(default=0, description="Informative intervals measured so far.")
    saturated_samples: int = Field(default=0, description="Of which the replicas were full.")
    confidence_percent: str = Field(default="0", description="Confidence in measuredRPS.")
    last_updated: str | None = None


# --- the scaling policy's memory (status.history), as `controllers.policy.scaling` stores it ---
# Older shapes still load: profiles written as nested lists are packed the current way, float64
# strings are read as such (`controllers.api.packed`), a ramp window of bare rates gets each
# rate as its own expectation, and parts added since (bounds, spare, capacity, guard) are
# optional.

PackedFloats = Annotated[
    str,
    BeforeValidator(lambda data: packed_from_lists(data, FLOAT32)),
    Field(description="Base64 of little-endian float32 values (float64 from older releases)."),
]
PackedInts = Annotated[
    str,
    BeforeValidator(lambda data: packed_from_lists(data, INT32)),
    Field(description="Base64 of little-endian int32 values (float64 from older releases)."),
]
PackedFloat64s = Annotated[
    str,
    BeforeValidator(lambda data: packed_from_lists(data, FLOAT64)),
    Field(description="Base64 of little-endian float64 values."),
]
Pair = Annotated[
    list[float],
    BeforeValidator(lambda item: [item, item] if isinstance(item, int | float) else item),
]
_OPAQUE = WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True})


class HistogramMemory(ApiModel):
    """A decaying histogram: one weight per bin."""

    w: PackedFloat64s


class ProfileMemory(ApiModel):
    """One seasonal profile: per bin the last cycles' levels and the cycle each was seen in."""

    values: PackedFloats
    cycles: PackedInts
    # [open bin or null, sum of its rates, how many]: the bin still being filled.
    open: Annotated[
        list[int | float | None],
        WithJsonSchema({"type": "array", "items": {"type": "number", "nullable": True}}),
    ]


class SeasonalMemory(ApiModel):
    daily: ProfileMemory
    weekly: ProfileMemory


class HoltWintersMemory(ApiModel):
    level: float | None = None
    daily: PackedFloats
    weekly: PackedFloats


class NoModelMemory(ApiModel):
    """last-value learns nothing beyond its recent rates."""


class ForecasterMemory(ApiModel):
    forecaster: ForecasterName
    interval_s: float
    error_horizon_s: float
    first_s: float | None = None
    last_s: float | None = None
    recent: list[list[float]] = Field(description="(policy s, req/s) of the last minutes.")
    pending: list[list[float]] = Field(description="Forecasts waiting to be scored.")
    errors: HistogramMemory
    quiet: list[float] | None = Field(
        default=None, description="A stretch of zeros held back: first, last, count, level."
    )
    # Which of these is the forecaster's; the CRD keeps the object as it is.
    model: Annotated[SeasonalMemory | HoltWintersMemory | NoModelMemory, _OPAQUE]


class RampMemory(ApiModel):
    window: list[Pair] = Field(description="(req/s, expected req/s) over one cold start.")
    growth: HistogramMemory


class SpareMemory(ApiModel):
    q: float = Field(description="The ramp percentile the warm spare is sized at.")
    asked: list[int]
    scored: float
    missed: float


class DecayingMeanMemory(ApiModel):
    w: float
    mean: dict[str, float]
    at: float | None = None


class CapacityMemory(ApiModel):
    saturated: DecayingMeanMemory
    loaded: DecayingMeanMemory
    samples: int
    saturated_samples: int
    last_ready: int | None = None
    mix: dict[str, list[float]] | None = Field(
        default=None, description="Decayed (requests, tokens) served, per token kind."
    )


class GuardMemory(ApiModel):
    streak: int
    missing: bool = False  # absent in state saved before it
    waiting: float | None = None
    acted_at: float | None = None


class BoundsMemory(ApiModel):
    """The demand envelope the forecast is bounded by."""

    window: list[float] = Field(description="req/s over the last cold start.")
    days: list[list[float]] = Field(description="(day, peak req/s, rise req/s) per day.")


class PolicyMemory(ApiModel):
    """The scaling policy's learned state of one pool."""

    forecast: ForecasterMemory
    ramps: RampMemory
    bounds: BoundsMemory | None = None
    spare: SpareMemory | None = None
    recent: list[list[float]] = Field(description="(policy s, replicas) decided lately.")
    capacity: CapacityMemory | None = None
    guard: GuardMemory | None = None


class ScorecardWindow(ApiModel):
    """The autoscaler's record over one rolling window; unset figures were never judged."""

    window: str = Field(description="1h, 24h or 7d.")
    covered_minutes: int = Field(description="Policy intervals seen in the window, in minutes.")
    slo_met_percent: str | None = Field(
        default=None,
        alias="sloMetPercent",
        description="Share of judged intervals with TTFT/ITL P99 within the SLO and no queue.",
    )
    replica_hours: str = Field(description="Replica-hours held where demand was known.")
    lower_bound_replica_hours: str = Field(
        description="Demand / measured capacity per replica over the same intervals: what no "
        "schedule can undercut."
    )
    over_lower_bound: str | None = Field(
        default=None, description="replicaHours / lowerBoundReplicaHours."
    )
    forecast_mape_percent: str | None = Field(
        default=None,
        alias="forecastMAPEPercent",
        description="Mean absolute percentage error of the forecast at the cold-start horizon.",
    )
    reactive_mape_percent: str | None = Field(
        default=None,
        alias="reactiveMAPEPercent",
        description="The same for the reactive estimate (the rate then, held): the baseline.",
    )
    scale_events_per_day: str | None = None
    flaps_per_day: str | None = Field(
        default=None,
        description="Scale changes against the direction of the one before within the "
        "stabilization window, per day.",
    )
    pending_minutes: str = Field(
        default="0",
        description="Time fewer replicas were ready than asked for, beyond one cold start.",
    )


class PoolScorecard(ApiModel):
    """Is the autoscaler any good on this pool: its scorecard over the last hour, day, week."""

    pool: str
    windows: list[ScorecardWindow] = Field(default_factory=list)


FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
ForecastDue = Annotated[
    list[FiniteFloat | None],
    Field(min_length=3, max_length=3),
    WithJsonSchema(
        {"type": "array", "minItems": 3, "maxItems": 3,
         "items": {"type": "number", "nullable": True}}
    ),
]  # fmt: skip


class ScorecardMemory(ApiModel):
    """The scorecard's rolling sums, so a restart keeps its record (`Scorecard.to_dict`)."""

    rings: dict[str, list[list[FiniteFloat]]] = Field(
        description="Per window (1h, 24h, 7d), one row per bucket: its index, then its sums."
    )
    due: list[ForecastDue] = Field(
        default_factory=list,
        description="(due at, forecast req/s, reactive req/s) of forecasts not judged yet.",
    )
    last_replicas: int | None = Field(default=None, ge=0)
    last_change: Annotated[list[FiniteFloat], Field(min_length=2, max_length=2)] | None = Field(
        default=None, description="(time, +1 up or -1 down) of the last scale change."
    )
    short_since: FiniteFloat | None = Field(
        default=None, description="Since when fewer replicas have been ready than asked for."
    )


class PoolMemory(ApiModel):
    """One pool's scaling-policy memory: what it last decided, when, and its learned state."""

    replicas: int | None = None
    advised: int | None = None  # scaling.mode advisory: what it would ask for
    reason: str | None = None
    stepped_at: float | None = None
    policy: PolicyMemory | None = Field(
        default=None,
        description="The policy's learned state (forecaster profile, ramps, spare, capacity).",
    )
    scorecard: ScorecardMemory | None = Field(
        default=None, description="The rolling sums status.scorecard is computed from."
    )


class ResizeMemory(ApiModel):
    """The step-13 trigger's hysteresis state (`since_s` is policy time)."""

    recommended: bool = False
    since_s: float | None = Field(default=None, alias="since_s")
    reason: str = ""


class FleetHistory(ApiModel):
    """What the policy remembers between passes, so a restart forgets nothing."""

    version: int = 1
    pools: dict[str, PoolMemory] = Field(default_factory=dict)
    watching_since: float | None = None
    resize: ResizeMemory = Field(default_factory=ResizeMemory)


class InferenceFleetStatus(ApiModel):
    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list)
    plan: PlanStatus | None = None
    replicas: ReplicaStatus | None = None
    forecast: ForecastStatus | None = None
    findings: list[Finding] = Field(default_factory=list)
    pending: list[PendingPool] = Field(
        default_factory=list, description="Pools with replicas no node would take."
    )
    recommendation: Recommendation | None = None
    capacity: list[PoolCapacity] = Field(
        default_factory=list, description="Predicted and measured capacity per pool."
    )
    scorecard: list[PoolScorecard] = Field(
        default_factory=list, description="The autoscaler's own scorecard per pool."
    )
    history: FleetHistory | None = Field(
        default=None, description="Compact traffic profile kept so a restart does not forget it."
    )


def parse_status(raw: object) -> tuple[InferenceFleetStatus, tuple[str, ...]]:
    """The stored status as typed models, and the fields that had to be dropped.

    Never raises: a field that does not parse (hand-edited, written by an older release, cut
    short) is dropped and named, so the caller starts that part afresh and can say so.
    """
    if not isinstance(raw, Mapping):
        return InferenceFleetStatus(), (("status",) if raw not in (None, {}) else ())
    try:
        return InferenceFleetStatus.model_validate(raw), ()
    except ValidationError:
        pass
    kept: dict[str, Any] = {}
    dropped: list[str] = []
    for key, value in raw.items():
        try:
            InferenceFleetStatus.model_validate({key: value})
        except ValidationError:
            dropped.append(str(key))
        else:
            kept[key] = value
    return InferenceFleetStatus.model_validate(kept), tuple(dropped)


# --- validation helpers ---------------------------------------------------------------------


def describe_validation_error(err: ValidationError, prefix: str = "") -> str:
    """One readable line per problem: `spec.slo.ttftP99: '2 s' is not a duration; ...`."""
    lines = []
    for problem in err.errors():
        loc = ".".join(str(part) for part in problem["loc"] if part != "__root__")
        where = f"{prefix}{loc}" if loc else prefix.rstrip(".") or "(root)"
        msg = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "missing":
            msg = "required field is missing"
        elif problem["type"] == "extra_forbidden":
            msg = "unknown field (check spelling and camelCase)"
        lines.append(f"{where}: {msg}")
    return "; ".join(lines)
