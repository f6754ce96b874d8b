"""A scrape of a vLLM-shaped /metrics, and the metric references in our PromQL."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from controllers.adapters.prometheus import snapshot_query

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "charts" / "inferfleet" / "files" / "prometheus-rules.yaml"
DASHBOARD = REPO / "charts" / "inferfleet" / "files" / "dashboard.json"

# A vLLM series name anywhere in an expression (inside `{__name__=~"a|b"}` too).
_VLLM_NAME = re.compile(r"vllm:[A-Za-z0-9_:]*[A-Za-z0-9_]")
_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
_SELECTOR = re.compile(r'(?:vllm:[A-Za-z0-9_:]*)?\{(?:[^{}"]|"(?:[^"\\]|\\.)*")*\}')
_MATCHER = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Family:
    """One metric family of a scrape: its type, its label names, its histogram boundaries."""

    name: str
    type: str
    labels: frozenset[str]
    buckets: tuple[float, ...]  # `le` values, ascending, +Inf last; () for non-histograms
    samples: frozenset[str]  # sample names (`x_total`, `x_bucket`, ...)


def families(exposition: str, prefix: str = "vllm:") -> dict[str, Family]:
    found: dict[str, Family] = {}
    for fam in text_string_to_metric_families(exposition):
        if not fam.name.startswith(prefix):
            continue
        labels = {k for s in fam.samples for k in s.labels if k not in ("le", "quantile")}
        buckets = sorted({float(s.labels["le"]) for s in fam.samples if "le" in s.labels})
        found[fam.name] = Family(
            name=fam.name,
            type=fam.type,
            labels=frozenset(labels),
            buckets=tuple(buckets),
            samples=frozenset(s.name for s in fam.samples),
        )
    return found


def scrape(url: str) -> dict[str, Family]:
    answer = httpx.get(url + "/metrics", timeout=10)
    answer.raise_for_status()
    return families(answer.text)


def sample_names(found: dict[str, Family]) -> set[str]:
    return {name for fam in found.values() for name in fam.samples}


def _walk_exprs(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield value
            else:
                yield from _walk_exprs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk_exprs(item)


def promql_sources() -> dict[str, list[str]]:
    """Every PromQL expression we ship, by where it lives."""
    return {
        "adapter": [snapshot_query(), snapshot_query("ns", "fleet")],
        "alert rules": list(_walk_exprs(yaml.safe_load(RULES.read_text()))),
        "dashboard": list(_walk_exprs(json.loads(DASHBOARD.read_text()))),
    }


def vllm_names(expr: str) -> set[str]:
    return set(_VLLM_NAME.findall(expr))


def _argument(expr: str, start: int) -> str:
    """The parenthesised argument that begins at or after `start` (balanced)."""
    open_at = expr.index("(", start)
    depth = 0
    for i in range(open_at, len(expr)):
        depth += {"(": 1, ")": -1}.get(expr[i], 0)
        if depth == 0:
            return expr[open_at + 1 : i]
    raise ValueError(f"unbalanced parentheses in {expr!r}")


def grouping_labels(expr: str) -> set[str]:
    """Labels of `by (...)` / `without (...)` whose aggregated argument reads vLLM series."""
    labels: set[str] = set()
    for group in _GROUPING.finditer(expr):
        if vllm_names(_argument(expr, group.end())):
            labels |= {label.strip() for label in group.group(1).split(",")} - {""}
    return labels


def matchers(expr: str) -> set[tuple[str, str]]:
    """(label, value) of each matcher on a vLLM series (`vllm:x{...}`, `{__name__=~"vllm:.."}`)."""
    found: set[tuple[str, str]] = set()
    for selector in _SELECTOR.findall(expr):
        if vllm_names(selector):
            found |= {(k, v) for k, v in _MATCHER.findall(selector) if k != "__name__"}
    return found
