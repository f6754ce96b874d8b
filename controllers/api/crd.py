"""The InferenceFleet CustomResourceDefinition, generated from the pydantic models in `api`.

Why generate: the models validate in the CLI and the operator; deriving the CRD from them keeps
`kubectl apply` validation, `kubectl explain` and the operator in agreement. Kubernetes needs a
*structural* schema (every node typed, no `$ref`, `anyOf` only beside int-or-string), so the
pydantic JSON Schema is rewritten here, and cross-field rules the models check in Python are
restated as CEL `x-kubernetes-validations` so the API server rejects the same manifests.
Pure: no I/O.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from controllers.api.engine_args import SECRET_FLAG
from controllers.api.v1alpha1 import (
    GROUP,
    KIND,
    OBJECT_NAME_MAX,
    PLURAL,
    VERSION,
    HFConfigSource,
    InferenceFleetSpec,
    InferenceFleetStatus,
    ModelSpec,
    ScalingSpec,
    TokenPercentiles,
)

SHORT_NAME = "ifleet"
CRD_NAME = f"{PLURAL}.{GROUP}"

# Keywords a structural schema may carry through unchanged.
_KEPT = {
    "type",
    "description",
    "enum",
    "pattern",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "required",
    "format",
    "nullable",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-int-or-string",
}

# Cross-field rules of the models, as CEL for the API server. Keyed by the model's $defs name.
_CEL_RULES: dict[str, list[dict[str, str]]] = {
    ScalingSpec.__name__: [
        {
            "rule": "!has(self.maxReplicas) || !has(self.minReplicas)"
            " || self.minReplicas <= self.maxReplicas",
            "message": "scaling.minReplicas must be <= scaling.maxReplicas",
        },
        {
            "rule": "!has(self.minWarmReplicas) || (type(self.minWarmReplicas) == int"
            " ? int(self.minWarmReplicas) >= 0 : self.minWarmReplicas == 'auto')",
            "message": "scaling.minWarmReplicas must be a non-negative integer or 'auto'",
        },
    ],
    # The API server refuses a secret in extraArgs before it is stored (etcd, Kopf's
    # last-handled annotation): `engine_args.check_extra_args` says the same in Python.
    ModelSpec.__name__: [
        {
            "rule": "!has(self.extraArgs) || self.extraArgs.all(a, !a.matches("
            f"'(?i)^{SECRET_FLAG}(=|$)'))",
            "message": "model.extraArgs must not carry a secret (--hf-token, --api-key, ...); "
            "use model.hub.tokenSecretRef",
        }
    ],
    HFConfigSource.__name__: [
        {
            "rule": "has(self.inline) != has(self.configMapRef)",
            "message": "set exactly one of hfConfig.inline or hfConfig.configMapRef",
        }
    ],
    TokenPercentiles.__name__: [
        {
            "rule": "self.p50 <= self.p95 && self.p95 <= self.p99",
            "message": "percentiles must satisfy p50 <= p95 <= p99",
        }
    ],
}

# Rules that need metadata.name (only the schema root may read it): `check_object_names`.
_ROOT_RULES = [
    {
        "rule": f"self.spec.pools.all(p, size(self.metadata.name) + 1 + size(p.name)"
        f" <= {OBJECT_NAME_MAX})",
        "message": f"metadata.name + '-' + pools[].name names the pool's Deployment and "
        f"Service and must be at most {OBJECT_NAME_MAX} characters",
    },
    {
        "rule": "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",
        "message": "metadata.name must be a DNS-1035 label (lower-case letter first, letters, "
        "digits, '-'): it starts the names of the Services",
    },
]

# Lists whose items are keyed by a field: the API server then rejects duplicates and
# server-side apply merges per item instead of replacing the list.
_LIST_MAP_KEYS = {("InferenceFleetSpec", "pools"): ["name"]}


class SchemaError(ValueError):
    """The models use a JSON Schema construct the generator cannot express structurally."""


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    ref = node.get("$ref")
    if ref is None:
        return node, None
    name = ref.rsplit("/", 1)[-1]
    merged = {**defs[name], **{k: v for k, v in node.items() if k != "$ref"}}
    return merged, name


def _without_null(node: dict[str, Any]) -> dict[str, Any]:
    """`X | None` becomes X: optional fields are simply omitted in Kubernetes objects."""
    options = node.get("anyOf")
    if options is None:
        return node
    kept = [o for o in options if o.get("type") != "null"]
    rest = {k: v for k, v in node.items() if k != "anyOf"}
    if len(kept) == 1:
        inner = dict(kept[0])
        # The outer node's description/default/extras win over the inner option's.
        return {**inner, **rest}
    return {**rest, "anyOf": kept}


def _structural(node: dict[str, Any], defs: dict[str, Any], where: str) -> dict[str, Any]:
    node, def_name = _resolve(_without_null(node), defs)
    node = _without_null(node)
    out: dict[str, Any] = {}
    if node.get("x-kubernetes-int-or-string"):
        # Types live in the int-or-string marker; the CEL rule of the owner checks the values.
        out["x-kubernetes-int-or-string"] = True
        if "description" in node:
            out["description"] = node["description"]
        return out
    if "anyOf" in node or "oneOf" in node or "allOf" in node:
        raise SchemaError(f"{where}: union types cannot be written as a structural schema")
    if "const" in node:
        out["enum"] = [node["const"]]
    for key, value in node.items():
        if key in _KEPT:
            out[key] = value
    if "default" in node and node["default"] is not None:
        out["default"] = node["default"]
    if node.get("type") == "object" or "properties" in node:
        out["type"] = "object"
        props = node.get("properties", {})
        if props:
            out["properties"] = {
                key: _structural(sub, defs, f"{where}.{key}") for key, sub in props.items()
            }
            for key, sub in out["properties"].items():
                list_keys = _LIST_MAP_KEYS.get((def_name or "", key))
                if list_keys:
                    sub["x-kubernetes-list-type"] = "map"
                    sub["x-kubernetes-list-map-keys"] = list_keys
        extra = node.get("additionalProperties")
        if isinstance(extra, dict) and not node.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = _structural(extra, defs, f"{where}.*")
        if (
            not props
            and extra in (None, True)
            and "x-kubernetes-preserve-unknown-fields" not in out
        ):
            out["x-kubernetes-preserve-unknown-fields"] = True
    if node.get("type") == "array":
        out["items"] = _structural(node["items"], defs, f"{where}[]")
    if def_name in _CEL_RULES:
        out["x-kubernetes-validations"] = _CEL_RULES[def_name]
    if "type" not in out:
        raise SchemaError(f"{where}: no type (Kubernetes needs one on every schema node)")
    return out


def model_schema(model: type[BaseModel], where: str) -> dict[str, Any]:
    """The model's JSON Schema (camelCase aliases) rewritten as a structural OpenAPI v3 schema."""
    schema = model.model_json_schema(by_alias=True, mode="validation")
    defs = schema.pop("$defs", {})
    defs[model.__name__] = schema
    return _structural({"$ref": f"#/$defs/{model.__name__}"}, defs, where)


def _printer_columns() -> list[dict[str, Any]]:
    first_pool = ".status.plan.pools[0]"
    return [
        {"name": "Model", "type": "string", "jsonPath": ".spec.model.name"},
        {"name": "GPU", "type": "string", "jsonPath": f"{first_pool}.gpu"},
        {"name": "TP", "type": "integer", "jsonPath": f"{first_pool}.tensorParallel"},
        {"name": "Desired", "type": "integer", "jsonPath": ".status.replicas.desired"},
        {"name": "Ready", "type": "integer", "jsonPath": ".status.replicas.ready"},
        {
            "name": "Sized",
            "type": "string",
            "jsonPath": '.status.conditions[?(@.type=="Sized")].status',
        },
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]


def build_crd() -> dict[str, Any]:
    """The complete `apiextensions.k8s.io/v1` CRD object for InferenceFleet."""
    spec_schema = model_schema(InferenceFleetSpec, "spec")
    spec_schema["description"] = "What to serve, for which traffic and SLO, on which GPU pools."
    status_schema = model_schema(InferenceFleetStatus, "status")
    status_schema["description"] = "What the operator decided and observed; written by it only."
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": KIND.lower(),
                "shortNames": [SHORT_NAME],
                "categories": ["inferfleet"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": _printer_columns(),
                    "schema": {
                        "openAPIV3Schema": {
                            "description": "A fleet of vLLM replicas sized, run and scaled "
                            "by inferfleet for one model.",
                            "type": "object",
                            "required": ["spec"],
                            "x-kubernetes-validations": _ROOT_RULES,
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": status_schema,
                            },
                        }
                    },
                }
            ],
        },
    }
