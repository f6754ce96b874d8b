"""Mutated fleet specs through the API model, the planner and the renderer: each one is
accepted and rendered, or refused with a message naming a field; nothing raises anything else.

Mutations start from the shipped examples and hit what broke before: numbers at and beyond
their edges ('0', '1e400', NaN, 2^63), wrong types, deleted and unknown keys, and the model's
config.json (zero heads, head_dim 0, more heads than hidden_size, bad layer lists and
quantization_config).
"""

from __future__ import annotations

import copy
from typing import Any

import yaml
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from controllers.adapters.model_source import ModelCatalog
from controllers.api.v1alpha1 import InferenceFleet, describe_validation_error
from controllers.policy.planning import plan_spec, plan_status
from controllers.policy.render import render_fleet
from sizing.curve import find_capacity
from sizing.errors import SizingError
from sizing.plan import memoized
from tests.conftest import REPO
from tests.fuzz import FUZZ_EXAMPLES, fuzz_settings, tally


def _example(name: str) -> dict[str, Any]:
    docs = yaml.safe_load_all((REPO / "examples" / name).read_text())
    return next(d for d in docs if d and d.get("kind") == "InferenceFleet")


# The 8B example plans in tens of milliseconds; the larger ones join in `make fuzz`'s long run.
BASES = [_example("fleet-code-8b.yaml")]
if FUZZ_EXAMPLES > 500:
    BASES += [_example("fleet-chat-70b.yaml"), _example("fleet-moe.yaml")]
CATALOG = ModelCatalog()
CAPACITY = memoized(find_capacity)


def _leaves(node: Any, path: tuple = ()) -> list[tuple]:
    if isinstance(node, dict):
        return [path] + [leaf for k, v in node.items() for leaf in _leaves(v, (*path, k))]
    if isinstance(node, list):
        return [path] + [leaf for i, v in enumerate(node) for leaf in _leaves(v, (*path, i))]
    return [path]


EDGES = st.one_of(
    st.sampled_from(
        [0, -1, 1, 2, 3, 7, 64, 2**31, 2**63, 10**30, 0.5, 1e308, float("nan"), float("inf"),
         "0", "-1", "1", "0.0", "1e400", "nan", "inf", "", "99999999", "10ms", "0s", "1h",
         "* * * * *", "61 25 * * *", None, True, False, [], {}, [0], [5], {"x": 1}]
    ),
    st.integers(min_value=-10, max_value=10**7),
    st.text(max_size=12),
)  # fmt: skip
CONFIG_KEYS = [
    "num_key_value_heads", "head_dim", "num_attention_heads", "hidden_size",
    "num_hidden_layers", "intermediate_size", "vocab_size", "max_position_embeddings",
    "mlp_only_layers", "layer_types", "quantization_config", "num_experts",
    "num_experts_per_tok", "torch_dtype", "sliding_window", "kv_lora_rank", "moe_intermediate_size",
]  # fmt: skip


def _get(node: Any, *keys: str) -> Any:
    for key in keys:
        node = node.get(key) if isinstance(node, dict) else None
    return node


@st.composite
def mutated_fleet(draw: st.DrawFn) -> dict[str, Any]:
    doc = copy.deepcopy(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        op = draw(st.sampled_from(["set", "set", "config", "delete", "extra"]))
        if op == "config":
            inline = _get(doc, "spec", "model", "hfConfig", "inline")
            if isinstance(inline, dict):
                inline[draw(st.sampled_from(CONFIG_KEYS))] = draw(EDGES)
            continue
        path = draw(st.sampled_from(_leaves(doc)[1:]))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        if op == "set":
            parent[path[-1]] = draw(EDGES)
        elif op == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif op == "extra" and isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=8))] = draw(EDGES)
    return doc


@fuzz_settings
@given(doc=mutated_fleet())
def test_any_mutated_spec_is_planned_or_refused_with_a_field_named(doc):
    try:
        fleet = InferenceFleet.model_validate(doc)
    except ValidationError as err:
        message = describe_validation_error(err, "spec.")
        assert message and ": " in message  # `field: what was expected`
        tally("spec", "refused by the API model")
        return
    source = fleet.spec.model.hf_config
    if source is None:  # resolved by name: the operator asks the catalog, then the Hub
        found = CATALOG.get(fleet.spec.model.name)
        if found is None:
            tally("spec", "named a model outside the catalog (the Hub would be asked)")
            return
        inline = found.config
    else:
        inline = source.inline
    assert inline is not None
    try:
        plan = plan_status(plan_spec(fleet.spec, inline, CAPACITY))
    except SizingError as err:
        assert str(err)
        tally("spec", "refused by the planner (SizingError)")
        return
    replicas = {pool.pool: pool.replicas for pool in plan.pools}
    for objects in render_fleet(fleet.metadata.name, "llm", fleet.spec, plan, replicas):
        assert objects.deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    tally("spec", "planned and rendered")
