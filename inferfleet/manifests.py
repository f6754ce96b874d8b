"""Reading InferenceFleet manifests from disk with errors that point at the line or field."""

from __future__ import annotations

import json
from typing import Any

import yaml
from pydantic import ValidationError

from controllers.api.v1alpha1 import InferenceFleet, InferenceFleetSpec, describe_validation_error
from inferfleet.errors import UsageError
from inferfleet.inputs import read_text


def load_yaml_documents(path: str) -> list[Any]:
    text = read_text(path, "manifest")
    try:
        return [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = " ".join(str(getattr(err, "problem", None) or err).split())  # one line
        raise UsageError(f"{path}: invalid YAML{where}: {problem}") from None


def load_fleet(path: str) -> InferenceFleet:
    """The first InferenceFleet in a YAML file, validated with the API models."""
    docs = load_yaml_documents(path)
    fleets = [d for d in docs if isinstance(d, dict) and d.get("kind") == "InferenceFleet"]
    if not fleets:
        raise UsageError(f"{path}: no document with kind: InferenceFleet")
    try:
        return InferenceFleet.model_validate(fleets[0])
    except ValidationError as err:
        raise UsageError(f"{path}: {describe_validation_error(err)}") from None


def load_json_file(path: str, what: str) -> dict[str, Any]:
    text = read_text(path, what)
    try:
        data = json.loads(text)
    except RecursionError:
        raise UsageError(f"{what} {path}: JSON nested too deeply") from None
    except json.JSONDecodeError as err:
        raise UsageError(
            f"{what} {path}: invalid JSON at line {err.lineno}, column {err.colno}: {err.msg}"
        ) from None
    if not isinstance(data, dict):
        raise UsageError(f"{what} {path}: expected a JSON object")
    return data


def resolve_hf_config(spec: InferenceFleetSpec, override_path: str | None) -> dict[str, Any]:
    """Inline config, or a local file standing in for the ConfigMap the cluster would hold."""
    if override_path:
        return load_json_file(override_path, "config.json")
    source = spec.model.hf_config
    if source is None:
        raise UsageError(
            "spec.model.hfConfig is unset: the model is resolved by name (the caller's job)"
        )
    if source.inline is not None:
        return dict(source.inline)
    ref = source.config_map_ref
    assert ref is not None
    raise UsageError(
        f"spec.model.hfConfig.configMapRef points at ConfigMap {ref.name} (key {ref.key}), "
        "which only exists in the cluster; pass --hf-config PATH to plan offline"
    )
