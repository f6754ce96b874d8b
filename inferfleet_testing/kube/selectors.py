"""Label and field selectors as the Kubernetes API server reads them on LIST and WATCH.

Labels: `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k` (exists) and `!k` (absent),
comma-separated and all required. Fields: `metadata.name` and `metadata.namespace` with `=`,
`==` or `!=`, which is what a real server supports for every resource; anything else is refused
the way it refuses it (HTTP 400), so a test cannot rely on a selector a cluster would reject.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

Match = Callable[[Mapping[str, Any]], bool]

_SET = re.compile(r"^\s*(!?)([\w./-]+)\s*(?:(notin|in)\s*\(([^)]*)\))?\s*$")
_EQUALITY = re.compile(r"^\s*([\w./-]+)\s*(==|!=|=)\s*([\w./-]*)\s*$")
_FIELDS = {"metadata.name": "name", "metadata.namespace": "namespace"}


class SelectorError(ValueError):
    """A selector the API server would answer with 400 Bad Request."""


def _terms(selector: str) -> list[str]:
    """Split on commas outside parentheses (`k in (a,b),x=y` is two terms)."""
    terms, depth, start = [], 0, 0
    for i, char in enumerate(selector):
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            terms.append(selector[start:i])
            start = i + 1
    terms.append(selector[start:])
    return [t for t in terms if t.strip()]


def _label_term(term: str) -> Match:
    if equality := _EQUALITY.match(term):
        key, op, value = equality.groups()
        if op == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    found = _SET.match(term)
    if found is None:
        raise SelectorError(f"labelSelector: cannot parse {term.strip()!r}")
    negated, key, op, values = found.groups()
    if op is None:
        return (lambda labels: key not in labels) if negated else (lambda labels: key in labels)
    if negated:
        raise SelectorError(f"labelSelector: {term.strip()!r}: '!' goes with a bare key only")
    allowed = {v.strip() for v in values.split(",") if v.strip()}
    if op == "in":
        return lambda labels: labels.get(key) in allowed
    return lambda labels: labels.get(key) not in allowed


def _field_term(term: str) -> Match:
    found = _EQUALITY.match(term)
    if found is None:
        raise SelectorError(f"fieldSelector: cannot parse {term.strip()!r}")
    path, op, value = found.groups()
    if path not in _FIELDS:
        raise SelectorError(
            f'fieldSelector: field label not supported: "{path}" (expected one of '
            f"{', '.join(sorted(_FIELDS))})"
        )
    key = _FIELDS[path]
    if op == "!=":
        return lambda meta: meta.get(key) != value
    return lambda meta: meta.get(key) == value


def selector_match(params: Mapping[str, str]) -> Match:
    """A predicate on whole objects for the request's `labelSelector` and `fieldSelector`."""
    labels = [_label_term(t) for t in _terms(params.get("labelSelector", ""))]
    fields = [_field_term(t) for t in _terms(params.get("fieldSelector", ""))]

    def match(obj: Mapping[str, Any]) -> bool:
        meta = obj.get("metadata") or {}
        object_labels = meta.get("labels") or {}
        return all(m(object_labels) for m in labels) and all(m(meta) for m in fields)

    return match
