"""An efficiency calibration document (`inferfleet bench --calibrate` output) read back.

The same YAML reaches planning two ways: `inferfleet plan --calibration FILE` and, in the
cluster, a ConfigMap key that `spec.calibration.configMapRef` names. Both read it here, so the
operator and the CLI plan the same fleet the same way. Pure: the caller reads the text.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

import yaml

from sizing.performance import DEFAULT_EFFICIENCY, Efficiency

API_VERSION = "inferfleet.io/v1alpha1"
KIND = "EfficiencyCalibration"


def efficiency_from_document(document: object, where: str) -> Efficiency:
    """Validate a parsed calibration document; a ValueError names `where` and the field.

    Fields the document does not list keep their defaults; `Efficiency` checks the ranges
    itself (a SizingError naming the field).
    """
    if not isinstance(document, dict) or document.get("kind") != KIND:
        raise ValueError(f"{where}: expected a YAML mapping with kind: {KIND}")
    values = document.get("efficiency")
    if not isinstance(values, dict) or not values:
        raise ValueError(f"{where}: efficiency must map Efficiency fields to numbers")
    known = {f.name for f in fields(Efficiency)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{where}: unknown efficiency field(s) {unknown}; known: {sorted(known)}")
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{where}: efficiency.{name} must be a number, got {value!r}")
    numbers: dict[str, Any] = {k: float(v) for k, v in values.items()}
    return replace(DEFAULT_EFFICIENCY, **numbers)


def efficiency_from_text(text: str, where: str) -> tuple[Efficiency, str | None]:
    """The efficiency in a calibration YAML text, and the GPU it was measured on (if named)."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ValueError(f"{where}: not readable YAML ({err})") from None
    efficiency = efficiency_from_document(document, where)
    gpu = document.get("gpu") if isinstance(document, dict) else None
    return efficiency, str(gpu) if gpu is not None else None
