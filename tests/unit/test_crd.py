"""The generated CRD: committed copy in sync, structural, and accepting exactly our manifests."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import pytest
import yaml

from controllers.api.crd import CRD_NAME, SchemaError, _structural, build_crd
from inferfleet.cli import main
from inferfleet.commands.crd import crd_yaml
from tests.conftest import REPO

COMMITTED = REPO / "crds" / f"{CRD_NAME}.yaml"
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))


def _schema() -> dict[str, Any]:
    return build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def _walk(node: Any, path: str = ""):
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}[{i}]")


def test_committed_crd_matches_the_models():
    assert COMMITTED.read_text() == crd_yaml(), (
        "crds/ drifted from the API models; regenerate: inferfleet crd --output-dir crds"
    )


def test_cli_prints_the_same_yaml(capsys):
    assert main(["crd"]) == 0
    assert capsys.readouterr().out == crd_yaml()


def test_schema_is_structural():
    """No $ref/anyOf/oneOf/allOf, every property typed (or int-or-string), no null defaults."""
    schema = _schema()
    for path, node in _walk(schema):
        if not path.endswith("/properties") and "type" not in node and path.count("/") > 0:
            parent = path.rsplit("/", 1)[0]
            if parent.endswith("/properties") or path.endswith("/items"):
                assert node.get("x-kubernetes-int-or-string"), f"{path} has no type"
        for banned in ("$ref", "anyOf", "oneOf", "allOf", "title", "const"):
            assert banned not in node or path.endswith("/properties"), f"{path} has {banned}"
        if "default" in node and not path.endswith("/properties"):
            assert node["default"] is not None, f"{path} has a null default"


def test_names_scope_subresource_and_columns():
    crd = build_crd()
    spec = crd["spec"]
    assert crd["metadata"]["name"] == "inferencefleets.inferfleet.io"
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["shortNames"] == ["ifleet"]
    version = spec["versions"][0]
    assert version["name"] == "v1alpha1" and version["storage"] and version["served"]
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert list(columns) == ["Model", "GPU", "TP", "Desired", "Ready", "Sized", "Age"]
    assert columns["Sized"] == '.status.conditions[?(@.type=="Sized")].status'


def test_field_constraints_reach_the_schema():
    spec = _schema()["properties"]["spec"]["properties"]
    scaling = spec["scaling"]
    assert scaling["properties"]["minWarmReplicas"] == {
        "x-kubernetes-int-or-string": True,
        "description": scaling["properties"]["minWarmReplicas"]["description"],
    }
    rules = " ".join(r["rule"] for r in scaling["x-kubernetes-validations"])
    assert "self.minReplicas <= self.maxReplicas" in rules
    assert (
        "has(self.inline) != has(self.configMapRef)"
        in (spec["model"]["properties"]["hfConfig"]["x-kubernetes-validations"][0]["rule"])
    )
    prompt = spec["workload"]["properties"]["promptTokens"]
    assert "self.p50 <= self.p95" in prompt["x-kubernetes-validations"][0]["rule"]
    assert spec["pools"]["x-kubernetes-list-type"] == "map"
    assert spec["pools"]["x-kubernetes-list-map-keys"] == ["name"]
    assert spec["pools"]["maxItems"] == 16
    assert spec["slo"]["properties"]["ttftP99"]["pattern"].startswith("^([0-9]+")
    inline = spec["model"]["properties"]["hfConfig"]["properties"]["inline"]
    assert inline["x-kubernetes-preserve-unknown-fields"] is True
    assert spec["slo"]["properties"]["ttftP99"]["description"]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_validates_against_the_schema(path):
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d and d["kind"] == "InferenceFleet"]
    assert docs, f"{path.name} holds no InferenceFleet"
    for doc in docs:
        jsonschema.validate(doc, _schema())


def _example() -> dict[str, Any]:
    return yaml.safe_load((REPO / "examples" / "fleet-code-8b.yaml").read_text())


@pytest.mark.parametrize(
    ("where", "value"),
    [
        (("spec", "slo", "ttftP99"), "2 seconds"),
        (("spec", "model", "quantization"), "fp3"),
        (("spec", "workload", "peakRequestsPerSecond"), "-1"),
        (("spec", "scaling", "minReplicas"), -1),
        (("spec", "pools"), []),
    ],
)
def test_schema_rejects_bad_fields(where, value):
    doc = copy.deepcopy(_example())
    node = doc
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, _schema())


def test_unions_other_than_optional_are_refused():
    with pytest.raises(SchemaError, match=r"spec\.x: union"):
        _structural({"anyOf": [{"type": "integer"}, {"type": "string"}]}, {}, "spec.x")
