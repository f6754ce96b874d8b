"""The test API server's selectors read like a real API server's (LIST and WATCH narrow by them)."""

from __future__ import annotations

import pytest

from inferfleet_testing.kube.selectors import SelectorError, selector_match


def _obj(name: str, namespace: str = "llm", **labels: str) -> dict:
    return {"metadata": {"name": name, "namespace": namespace, "labels": labels}}


OBJECTS = [
    _obj("a", app="x", tier="gpu"),
    _obj("b", app="y"),
    _obj("c", "other", app="x"),
    _obj("d"),
]


def _names(**params: str) -> list[str]:
    match = selector_match(params)
    return [o["metadata"]["name"] for o in OBJECTS if match(o)]


@pytest.mark.parametrize(
    ("selector", "names"),
    [
        ("", ["a", "b", "c", "d"]),
        ("app=x", ["a", "c"]),
        ("app==x,tier=gpu", ["a"]),
        ("app!=x", ["b", "d"]),
        ("app in (x, y)", ["a", "b", "c"]),
        ("app notin (x),tier", []),
        ("app in (y,z),!tier", ["b"]),
        ("!app", ["d"]),
    ],
)
def test_label_selectors(selector, names):
    assert _names(labelSelector=selector) == names


def test_field_selectors_on_name_and_namespace():
    assert _names(fieldSelector="metadata.namespace=other") == ["c"]
    assert _names(fieldSelector="metadata.name!=a", labelSelector="app=x") == ["c"]


@pytest.mark.parametrize(
    ("params", "said"),
    [
        ({"labelSelector": "app in x"}, "cannot parse 'app in x'"),
        ({"labelSelector": "!app in (x)"}, "'!' goes with a bare key only"),
        ({"fieldSelector": "spec.replicas=1"}, 'field label not supported: "spec.replicas"'),
    ],
)
def test_a_selector_a_server_would_refuse_is_refused_with_the_term(params, said):
    with pytest.raises(SelectorError, match="Selector") as err:
        selector_match(params)
    assert said in str(err.value)
