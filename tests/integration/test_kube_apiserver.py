"""The test API server narrows LIST and WATCH by label and field selectors, as a real one does.

Without it, a LIST of one fleet's Deployments returns every fleet's (O(N^2) bytes over a resync
of N fleets) and a test of the operator's reads cannot tell a narrow request from a wide one.
"""

from __future__ import annotations

import json

import httpx

from inferfleet_testing.kube.fixtures import cluster_fixture  # noqa: F401
from inferfleet_testing.kube.harness import Cluster

DEPLOYMENTS = "/apis/apps/v1/namespaces/llm/deployments"


def _deployment(name: str, **labels: str) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "llm", "labels": labels},
        "spec": {"replicas": 1},
    }


def _names(response: httpx.Response) -> list[str]:
    response.raise_for_status()
    return sorted(item["metadata"]["name"] for item in response.json()["items"])


def test_list_honours_label_and_field_selectors(cluster: Cluster):
    cluster.create(_deployment("a-0", fleet="a"))
    cluster.create(_deployment("a-1", fleet="a", pool="one"))
    cluster.create(_deployment("b-0", fleet="b"))
    get = cluster.client.get
    assert _names(get(DEPLOYMENTS)) == ["a-0", "a-1", "b-0"]
    assert _names(get(DEPLOYMENTS, params={"labelSelector": "fleet=a"})) == ["a-0", "a-1"]
    assert _names(get(DEPLOYMENTS, params={"labelSelector": "fleet=a,!pool"})) == ["a-0"]
    assert _names(get(DEPLOYMENTS, params={"labelSelector": "fleet in (b,c)"})) == ["b-0"]
    wide = get("/apis/apps/v1/deployments", params={"fieldSelector": "metadata.name=b-0"})
    assert _names(wide) == ["b-0"]


def test_a_selector_the_server_cannot_read_is_a_400_that_names_it(cluster: Cluster):
    answer = cluster.client.get(DEPLOYMENTS, params={"fieldSelector": "spec.replicas=1"})
    assert answer.status_code == 400
    assert answer.json()["reason"] == "BadRequest"
    assert "spec.replicas" in answer.json()["message"]


def test_watch_streams_only_what_the_label_selector_selects(cluster: Cluster):
    cluster.create(_deployment("a-0", fleet="a"))
    cluster.create(_deployment("b-0", fleet="b"))
    params = {"watch": "true", "labelSelector": "fleet=a"}
    with (
        httpx.Client(base_url=cluster.url, timeout=10.0) as client,
        client.stream("GET", DEPLOYMENTS, params=params) as stream,
    ):
        lines = (line for line in stream.iter_lines() if line.strip())
        first = json.loads(next(lines))
        assert (first["type"], first["object"]["metadata"]["name"]) == ("ADDED", "a-0")
        cluster.create(_deployment("b-1", fleet="b"))  # not selected: never streamed
        cluster.create(_deployment("a-1", fleet="a"))
        second = json.loads(next(lines))
        assert (second["type"], second["object"]["metadata"]["name"]) == ("ADDED", "a-1")
