"""The Helm chart, rendered by the real `helm` binary and checked against real schemas.

Every value set renders manifests that pass the Kubernetes OpenAPI schemas (kubernetes-validate,
strict: unknown fields fail), the RBAC equals `controllers.reconcile.rbac`, the CRD is the
generated one, PromQL in the rules and the dashboard parses (promtool), and bad values fail at
render time.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from prometheus_client.exposition import generate_latest

from controllers.adapters.operator_metrics import OperatorMetrics
from controllers.policy.render import labels as vllm_pod_labels
from controllers.reconcile.rbac import cluster_role_rules
from e2e.emulator.metrics import VllmMetrics
from tests.conftest import REPO

CHART = REPO / "charts" / "inferfleet"
HELM = shutil.which("helm") or shutil.which("helm", path=str(REPO / ".tools" / "bin"))
PROMTOOL = shutil.which("promtool")
KUBE_VERSION = "1.35.0"  # the kubectl/helm the tools step installs speak 1.35
pytestmark = pytest.mark.skipif(
    HELM is None, reason="helm not found; run `bash scripts/install-tools.sh` (make test does)"
)

PROMETHEUS_OPERATOR_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
PEERING_RULES = {
    "cluster": {"apiGroups": ["kopf.dev"], "resources": ["clusterkopfpeerings"],
                "verbs": ["get", "list", "watch", "patch"]},
    "namespaced": {"apiGroups": ["kopf.dev"], "resources": ["kopfpeerings"],
                   "verbs": ["get", "list", "watch", "patch"]},
}  # fmt: skip
ALL_OFF = {
    "metrics": {"service": {"enabled": False}, "serviceMonitor": {"enabled": False}},
    "vllmPodMonitor": {"enabled": False},
    "prometheusRule": {"enabled": False},
    "dashboard": {"enabled": False},
}
VALUE_SETS: dict[str, dict[str, Any]] = {
    "default": {},
    "namespaced": {"namespaced": True, "watchNamespaces": ["llm", "team-b"]},
    "namespaced-release-ns": {"namespaced": True},
    "all-off": ALL_OFF,
    "ha-peering": {"replicaCount": 2},
    "ha-namespaced": {"replicaCount": 3, "namespaced": True},
}
RELEASE_NS = "inferfleet-system"


def helm(*args: str, values: Mapping[str, Any] | None = None) -> subprocess.CompletedProcess:
    cmd = [str(HELM), *args]
    stdin = None
    if values is not None:
        cmd += ["--values", "-"]
        stdin = yaml.safe_dump(dict(values))
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=60, check=False)


def render(values: Mapping[str, Any], prometheus_operator: bool = True) -> list[dict[str, Any]]:
    """`helm template`; `prometheus_operator` says whether the cluster serves its kinds."""
    apis = [f"--api-versions=monitoring.coreos.com/v1/{k}" for k in PROMETHEUS_OPERATOR_KINDS]
    done = helm("template", "inferfleet", str(CHART), "--namespace", RELEASE_NS,
                "--kube-version", KUBE_VERSION, "--include-crds",
                *(apis if prometheus_operator else []), values=values)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.fixture(scope="module", params=sorted(VALUE_SETS))
def rendered(request) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(VALUE_SETS[request.param])


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def operator_workload(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (workload,) = of_kind(docs, "Deployment") + of_kind(docs, "StatefulSet")
    return workload


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_helm_lint(name):
    done = helm("lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION,
                values=VALUE_SETS[name])  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_builtin_kinds_pass_kubernetes_schemas(rendered):
    _, docs = rendered
    checked = 0
    for doc in docs:
        if doc["apiVersion"].startswith(("monitoring.coreos.com/", "kopf.dev/")):
            continue
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        checked += 1
    assert checked >= 5


def test_prometheus_operator_resources_are_well_formed(rendered):
    """No schema ships for these CRs in a package here; check what Prometheus Operator needs."""
    _, docs = rendered
    for doc in docs:
        if doc["kind"] not in PROMETHEUS_OPERATOR_KINDS:
            continue
        assert doc["apiVersion"] == "monitoring.coreos.com/v1"
        assert doc["metadata"]["namespace"] == RELEASE_NS
        spec = doc["spec"]
        if doc["kind"] == "PrometheusRule":
            assert spec["groups"] and all(g["rules"] for g in spec["groups"])
        else:
            endpoints = spec.get("endpoints") or spec["podMetricsEndpoints"]
            assert all(e["port"] and e["path"] == "/metrics" for e in endpoints)


def test_kopf_peerings_match_their_crds(rendered):
    name, docs = rendered
    crds = {c["spec"]["names"]["kind"]: c for c in of_kind(docs, "CustomResourceDefinition")}
    peerings = [d for d in docs if d["apiVersion"] == "kopf.dev/v1"]
    for peering in peerings:
        version = crds[peering["kind"]]["spec"]["versions"][0]
        jsonschema.validate(peering, version["schema"]["openAPIV3Schema"])
    expected = {"ha-peering": 1, "ha-namespaced": 1}.get(name, 0)
    assert len(peerings) == expected


def test_operator_pod_is_locked_down(rendered):
    _, docs = rendered
    pod = operator_workload(docs)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert sc["seccompProfile"]["type"] == "RuntimeDefault"
    assert {"cpu", "memory"} <= container["resources"]["requests"].keys()
    assert {"cpu", "memory"} <= container["resources"]["limits"].keys()
    (tmp,) = [v for v in pod["volumes"] if v["name"] == "tmp"]
    assert "emptyDir" in tmp
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert "--liveness=http://0.0.0.0:8080/healthz" in container["args"]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"health": 8080, "metrics": 9090}
    env = {
        e["name"]: e["value"] if "value" in e else e["valueFrom"]["fieldRef"]
        for e in container["env"]
    }
    assert env["INFERFLEET_PROMETHEUS_URL"].startswith("http")
    assert env["INFERFLEET_METRICS_PORT"] == "9090"
    assert env["POD_ID"] == {"fieldPath": "metadata.name"}  # Kopf's peer identity


def env_of(values: dict[str, Any]) -> dict[str, Any]:
    """The operator container's environment as `values` render it."""
    (container,) = operator_workload(render(values))["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e["value"] if "value" in e else e["valueFrom"] for e in container["env"]}


def test_hub_values_reach_the_operator_environment():
    assert not {"HF_ENDPOINT", "HF_HUB_OFFLINE", "HF_TOKEN"} & env_of({}).keys()
    env = env_of({"hub": {"endpoint": "https://hub.internal", "offline": True,
                          "tokenSecret": {"name": "hf", "key": "tok"}}})  # fmt: skip
    assert env["HF_ENDPOINT"] == "https://hub.internal" and env["HF_HUB_OFFLINE"] == "1"
    assert env["HF_TOKEN"] == {"secretKeyRef": {"name": "hf", "key": "tok"}}


def test_the_bound_on_passes_in_flight_reaches_the_operator_environment():
    assert env_of({})["INFERFLEET_CONCURRENT_PASSES"] == "8"
    assert env_of({"concurrentPasses": 3})["INFERFLEET_CONCURRENT_PASSES"] == "3"


@pytest.mark.parametrize("limit_mib", [None, 200])
def test_the_hub_cache_is_a_bounded_emptydir_the_operator_prunes_below_its_limit(limit_mib):
    values = {} if limit_mib is None else {"hub": {"cache": {"sizeLimitMiB": limit_mib}}}
    pod = operator_workload(render(values))["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "hub-cache"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "hub-cache"]
    # The library writes under HF_HOME and the cache dir: both on the writable emptyDir.
    for key in ("HF_HOME", "INFERFLEET_HUB_CACHE_DIR"):
        assert Path(env[key]).is_relative_to(mount["mountPath"])
    limit = limit_mib or 64
    assert volume["emptyDir"]["sizeLimit"] == f"{limit}Mi"
    assert 0 < float(env["INFERFLEET_HUB_CACHE_MAX_MIB"]) < limit


def test_one_replica_is_standalone_and_never_overlaps():
    workload = operator_workload(render({}))
    assert workload["kind"] == "Deployment"
    assert workload["spec"]["replicas"] == 1
    assert workload["spec"]["strategy"]["type"] == "Recreate"
    args = workload["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--standalone" in args
    assert not any(a.startswith(("--peering", "--priority")) for a in args)


def test_replicas_peer_with_distinct_priorities():
    """Kopf pauses every peer of equal priority, so each replica takes its ordinal as priority."""
    docs = render({"replicaCount": 2})
    workload = operator_workload(docs)
    assert workload["kind"] == "StatefulSet"
    assert workload["spec"]["replicas"] == 2
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    assert "--peering=inferfleet" in container["args"]
    assert "--priority=$(POD_INDEX)" in container["args"]
    assert "--standalone" not in container["args"]
    (index,) = [e for e in container["env"] if e["name"] == "POD_INDEX"]
    assert index["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.labels['apps.kubernetes.io/pod-index']"
    )
    (peering,) = of_kind(docs, "ClusterKopfPeering")
    assert peering["metadata"]["name"] == "inferfleet"
    (headless,) = [s for s in of_kind(docs, "Service") if s["spec"].get("clusterIP") == "None"]
    assert workload["spec"]["serviceName"] == headless["metadata"]["name"]


def test_cluster_wide_rbac_is_exactly_the_operators_rules():
    docs = render({})
    (role,) = of_kind(docs, "ClusterRole")
    assert role["rules"] == cluster_role_rules()
    assert not of_kind(docs, "Role")
    (binding,) = of_kind(docs, "ClusterRoleBinding")
    (account,) = of_kind(docs, "ServiceAccount")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": RELEASE_NS}
    ]
    args = operator_workload(docs)["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--all-namespaces" in args


def test_peering_adds_only_kopfs_peering_rule():
    (role,) = of_kind(render({"replicaCount": 2}), "ClusterRole")
    assert role["rules"] == [*cluster_role_rules(), PEERING_RULES["cluster"]]


def test_namespaced_mode_grants_nothing_cluster_wide():
    docs = render({"namespaced": True, "watchNamespaces": ["llm", "team-b"], "replicaCount": 2})
    assert not of_kind(docs, "ClusterRole")
    assert not of_kind(docs, "ClusterRoleBinding")
    roles = {r["metadata"]["namespace"]: r for r in of_kind(docs, "Role")}
    bindings = {b["metadata"]["namespace"]: b for b in of_kind(docs, "RoleBinding")}
    assert set(roles) == set(bindings) == {"llm", "team-b"}
    cluster_scoped = {"customresourcedefinitions", "namespaces"}
    namespaced_rules = [r for r in cluster_role_rules() if not cluster_scoped & {*r["resources"]}]
    for role in roles.values():
        assert role["rules"] == [*namespaced_rules, PEERING_RULES["namespaced"]]
    args = operator_workload(docs)["spec"]["template"]["spec"]["containers"][0]["args"]
    assert [a for a in args if a.startswith("--namespace")] == [
        "--namespace=llm",
        "--namespace=team-b",
    ]
    assert "--all-namespaces" not in args
    assert {p["metadata"]["namespace"] for p in of_kind(docs, "KopfPeering")} == {"llm", "team-b"}


POD_RULE = {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch", "patch"]}


@pytest.mark.parametrize("namespaced", [False, True])
def test_default_rbac_grants_no_pods_and_no_secrets(namespaced: bool):
    docs = render({"namespaced": namespaced})
    roles = of_kind(docs, "Role" if namespaced else "ClusterRole")
    assert roles
    for role in roles:
        assert not {"pods", "secrets"} & {r for rule in role["rules"] for r in rule["resources"]}
    env = _operator_env({"namespaced": namespaced})
    assert env["INFERFLEET_POD_ACCESS"] == "false" and env["INFERFLEET_READABLE_SECRETS"] == ""
    assert env["INFERFLEET_ALLOW_PRIVILEGED_PODS"] == "false"
    assert env["INFERFLEET_HUB_ALLOWED_HOSTS"] == "hf.co,*.hf.co,*.huggingface.co"


@pytest.mark.parametrize("namespaced", [False, True])
def test_the_rbac_values_grant_exactly_the_narrow_rules(namespaced: bool):
    grants = {"podAccess": True, "hubTokenSecrets": ["hf-token", "team-b.hf"]}
    values = {"namespaced": namespaced, "watchNamespaces": ["llm"], "rbac": grants}
    docs = render(values)
    (role,) = of_kind(docs, "Role" if namespaced else "ClusterRole")
    (default,) = of_kind(render({"namespaced": namespaced, "watchNamespaces": ["llm"]}),
                         "Role" if namespaced else "ClusterRole")  # fmt: skip
    added = [rule for rule in role["rules"] if rule not in default["rules"]]
    secret_rule = {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"],
                   "resourceNames": ["hf-token", "team-b.hf"]}  # fmt: skip
    assert len(added) == 2 and POD_RULE in added and secret_rule in added
    assert len(role["rules"]) == len(default["rules"]) + 2
    env = _operator_env(values)
    assert env["INFERFLEET_POD_ACCESS"] == "true"
    assert env["INFERFLEET_READABLE_SECRETS"] == "hf-token,team-b.hf"
    # One grant alone: pods without Secrets.
    (pods_only,) = of_kind(render({**values, "rbac": {"podAccess": True, "hubTokenSecrets": []}}),
                           "Role" if namespaced else "ClusterRole")  # fmt: skip
    assert [r for r in pods_only["rules"] if r not in default["rules"]] == [POD_RULE]


def test_namespaced_mode_defaults_to_the_release_namespace():
    docs = render({"namespaced": True})
    assert [r["metadata"]["namespace"] for r in of_kind(docs, "Role")] == [RELEASE_NS]


def test_toggles_switch_the_optional_parts_off():
    kinds = {d["kind"] for d in render(ALL_OFF)}
    assert not kinds & {*PROMETHEUS_OPERATOR_KINDS, "ConfigMap", "Service"}
    assert {"Deployment", "ServiceAccount", "ClusterRole", "ClusterRoleBinding"} <= kinds
    defaults = {d["kind"] for d in render({})}
    assert {*PROMETHEUS_OPERATOR_KINDS, "ConfigMap", "Service"} <= defaults


def test_without_prometheus_operator_its_kinds_are_left_out_and_notes_say_so():
    """A bare cluster (kind, a fresh EKS) must install; NOTES tell what was skipped and why."""
    kinds = {d["kind"] for d in render({}, prometheus_operator=False)}
    assert not kinds & PROMETHEUS_OPERATOR_KINDS
    assert {"Deployment", "ConfigMap", "Service"} <= kinds
    done = helm("install", "inferfleet", str(CHART), "--dry-run=client", "--namespace", RELEASE_NS)
    assert done.returncode == 0, done.stderr
    notes = done.stdout.split("NOTES:", 1)[1]
    assert "NOT installed: the ServiceMonitor, PodMonitor and PrometheusRule" in notes
    assert "kubectl get ifleet" in notes
    assert "kubectl -n llm describe ifleet chat-70b" in notes


def test_metrics_service_and_servicemonitor_meet_on_the_metrics_port():
    docs = render({})
    (service,) = of_kind(docs, "Service")
    (monitor,) = of_kind(docs, "ServiceMonitor")
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}
    ]
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    pod_labels = operator_workload(docs)["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_vllm_podmonitor_selects_operator_pods_and_maps_fleet_and_pool():
    """The relabeling is what makes the operator's `namespace, fleet, pool` queries work."""
    (monitor,) = of_kind(render({}), "PodMonitor")
    pod = vllm_pod_labels("chat-70b", "h100")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod.items()
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == "http"  # the port name controllers.policy.render gives vLLM
    mapping = {r["targetLabel"]: r["sourceLabels"] for r in endpoint["relabelings"]}

    def meta(label: str) -> list[str]:
        return ["__meta_kubernetes_pod_label_" + label.replace(".", "_").replace("/", "_")]

    assert mapping["fleet"] == meta("app.kubernetes.io/instance")
    assert mapping["pool"] == meta("app.kubernetes.io/component")
    assert mapping["namespace"] == ["__meta_kubernetes_namespace"]
    assert pod["app.kubernetes.io/instance"] == "chat-70b"
    assert pod["app.kubernetes.io/component"] == "h100"


def test_prometheus_rule_is_the_shipped_rules_file():
    (rule,) = of_kind(render({}), "PrometheusRule")
    shipped = yaml.safe_load((CHART / "files" / "prometheus-rules.yaml").read_text())
    assert rule["spec"] == shipped


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed; run install-tools.sh")
def test_rule_and_dashboard_promql_parses(tmp_path):
    docs = render({})
    (rule,) = of_kind(docs, "PrometheusRule")
    (dashboard_map,) = of_kind(docs, "ConfigMap")
    dashboard = json.loads(dashboard_map["data"]["inferfleet.json"])
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    # Grafana substitutes $namespace/$fleet before Prometheus sees the query.
    as_rules = [
        {
            "record": f"dashboard:expr_{i}",
            "expr": e.replace("$namespace", "llm").replace("$fleet", "f"),
        }
        for i, e in enumerate(exprs)
    ]
    files = {
        "rules.yaml": rule["spec"],
        "dashboard.yaml": {"groups": [{"name": "d", "rules": as_rules}]},
    }
    for name, content in files.items():
        (tmp_path / name).write_text(yaml.safe_dump(content))
    done = subprocess.run([PROMTOOL, "check", "rules", *(str(tmp_path / n) for n in files)],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_dashboard_covers_the_fleet_view():
    (dashboard_map,) = of_kind(render({}), "ConfigMap")
    assert dashboard_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(dashboard_map["data"]["inferfleet.json"])
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    for series in ("inferfleet_pool_replicas", "inferfleet_fleet_forecast_rps",
                   "vllm:request_success_total", "vllm:time_to_first_token_seconds_bucket",
                   "inferfleet_fleet_slo_ttft_p99_seconds", "vllm:inter_token_latency_seconds",
                   "vllm:kv_cache_usage_perc", "DCGM_FI_DEV_GPU_UTIL",
                   "inferfleet_pool_cost_per_hour_usd"):  # fmt: skip
        assert series in exprs, series
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "namespace", "fleet"} <= variables


def exported_series() -> set[str]:
    """Series names the operator and (the emulator of) vLLM really export."""
    names: set[str] = set()
    for family in OperatorMetrics().registry.collect():
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
        names |= {family.name + s for s in suffixes.get(family.type, ("",))}
    text = generate_latest(VllmMetrics("m", max_model_len=4096).registry).decode()
    names |= {ln.split("{")[0].split()[0] for ln in text.splitlines() if ln and ln[0] != "#"}
    return names


def test_dashboard_queries_only_series_that_exist():
    """A renamed metric is how dashboards silently go blank; check every name against code."""
    (dashboard_map,) = of_kind(render({}), "ConfigMap")
    dashboard = json.loads(dashboard_map["data"]["inferfleet.json"])
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    used = set(re.findall(r"\b(?:inferfleet_[a-z0-9_]+|vllm:[a-z0-9_]+)", exprs))
    assert len(used) >= 8
    assert used <= exported_series(), used - exported_series()


def test_chart_crd_is_the_generated_crd():
    name = "inferencefleets.inferfleet.io.yaml"
    assert (CHART / "crds" / name).read_bytes() == (REPO / "crds" / name).read_bytes(), (
        "chart CRD drifted from crds/; run `python scripts/sync_chart.py`"
    )


def test_sync_script_reports_no_drift():
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "sync_chart.py"), "--check"],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("example", sorted((REPO / "examples").glob("fleet-*.yaml")), ids=str)
def test_examples_validate_against_the_chart_crd(example: Path):
    crd = yaml.safe_load((CHART / "crds" / "inferencefleets.inferfleet.io.yaml").read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["storage"]]
    for doc in yaml.safe_load_all(example.read_text()):
        assert doc["apiVersion"] == f"{crd['spec']['group']}/{version['name']}"
        jsonschema.validate(doc, version["schema"]["openAPIV3Schema"])


BAD_VALUES = [
    ({"replicaCount": 0}, "replicaCount"),
    ({"image": {"pullPolicy": "Sometimes"}}, "pullPolicy"),
    ({"prometheus": {"url": "prometheus:9090"}}, "url"),
    ({"replicaCont": 2}, "replicaCont"),
    ({"namespaced": "yes"}, "namespaced"),
    ({"watchNamespaces": ["Not_A_Namespace"]}, "watchNamespaces"),
    ({"resources": {"limits": {"memory": "lots"}}}, "memory"),
    ({"metrics": {"port": 70000}}, "port"),
    ({"concurrentPasses": 0}, "concurrentPasses"),
    (
        {"prometheus": {"url": "http://p:9090", "allowedNamespaces": ["Bad_NS"]}},
        "allowedNamespaces",
    ),
]


@pytest.mark.parametrize(("values", "field"), BAD_VALUES, ids=[f for _, f in BAD_VALUES])
def test_schema_rejects_bad_values(values, field):
    done = helm("template", "inferfleet", str(CHART), values=values)
    assert done.returncode != 0
    assert "values don't meet the specifications of the schema" in done.stderr, done.stderr
    assert field in done.stderr, done.stderr


def test_clusters_older_than_the_pod_index_label_are_refused():
    done = helm("template", "inferfleet", str(CHART), "--kube-version", "1.27.9")
    assert done.returncode != 0
    assert "kubeVersion" in done.stderr and ">=1.28.0-0" in done.stderr, done.stderr


def test_servicemonitor_without_its_service_fails_clearly():
    done = helm("template", "inferfleet", str(CHART),
                values={"metrics": {"service": {"enabled": False}}})  # fmt: skip
    assert done.returncode != 0
    assert "metrics.serviceMonitor.enabled needs metrics.service.enabled" in done.stderr


def _operator_env(values: Mapping[str, Any]) -> dict[str, str]:
    container = operator_workload(render(values))["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


def test_prometheus_allow_list_reaches_the_operator():
    default = _operator_env({})["INFERFLEET_PROMETHEUS_ALLOWED_HOSTS"].split(",")
    assert default == ["*.monitoring.svc", "*.monitoring.svc.cluster.local"]
    env = _operator_env(
        {"prometheus": {"url": "http://p.obs.svc:9090", "allowedHosts": ["thanos.example.com"],
                        "allowedNamespaces": []}}
    )  # fmt: skip
    assert env["INFERFLEET_PROMETHEUS_ALLOWED_HOSTS"] == "thanos.example.com"
    closed = {"prometheus": {"url": "http://p.obs.svc:9090", "allowedNamespaces": []}}
    assert _operator_env(closed)["INFERFLEET_PROMETHEUS_ALLOWED_HOSTS"] == ""
