"""Tests of the Ramp Helm chart with Helm's own engine (helm-python-sdk embeds Helm's Go library):
lint, renderings under the value sets users pick, the schema, and the default rendering applied
to ramp-sim with the real kubectl. Run through charts/ramp/tests/run, which provides the venv,
the `ramp` binary (RAMP_BIN) and kubectl.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

import chart_crds
import helm_python as helm
import pytest
import yaml

CHART = Path(__file__).resolve().parent.parent
REPO = CHART.parent.parent
RELEASE = "ramp"
NAMESPACE = "ramp-system"
LEASE = "argo-rollouts-controller-lock"

# Every (apiGroup, resource, verb) the controller is granted, written out independently of the
# template: a rule added to or dropped from templates/rbac.yaml must be a deliberate change here.
NAMESPACED_RULES = {
    ("argoproj.io", "rollouts", "list"),
    ("argoproj.io", "rollouts", "watch"),
    ("argoproj.io", "rollouts/status", "patch"),
    ("argoproj.io", "analysisruns", "list"),
    ("argoproj.io", "analysisruns", "watch"),
    ("argoproj.io", "analysisruns", "create"),
    ("argoproj.io", "analysisruns", "patch"),
    ("argoproj.io", "analysisruns", "delete"),
    ("argoproj.io", "analysistemplates", "get"),
    ("apps", "replicasets", "list"),
    ("apps", "replicasets", "watch"),
    ("apps", "replicasets", "create"),
    ("apps", "replicasets", "patch"),
    ("apps", "replicasets", "delete"),
    ("", "pods", "list"),
    ("", "pods", "patch"),
    ("", "pods/eviction", "create"),
    ("", "services", "list"),
    ("", "services", "watch"),
    ("", "services", "get"),
    ("", "services", "patch"),
    ("networking.k8s.io", "ingresses", "list"),
    ("networking.k8s.io", "ingresses", "watch"),
    ("networking.k8s.io", "ingresses", "get"),
    ("networking.k8s.io", "ingresses", "create"),
    ("networking.k8s.io", "ingresses", "patch"),
    ("networking.istio.io", "virtualservices", "list"),
    ("networking.istio.io", "virtualservices", "watch"),
    ("networking.istio.io", "virtualservices", "get"),
    ("networking.istio.io", "virtualservices", "patch"),
    ("networking.istio.io", "destinationrules", "list"),
    ("networking.istio.io", "destinationrules", "watch"),
    ("networking.istio.io", "destinationrules", "get"),
    ("networking.istio.io", "destinationrules", "patch"),
    ("batch", "jobs", "create"),
    ("batch", "jobs", "get"),
    ("batch", "jobs", "delete"),
    ("", "secrets", "get"),
    ("events.k8s.io", "events", "create"),
    ("events.k8s.io", "events", "patch"),
}
# Cluster-scoped, so granted by a ClusterRole even in namespaced mode.
CLUSTER_RULES = {("argoproj.io", "clusteranalysistemplates", "get")}

CRD_NAMES = {
    "rollouts.argoproj.io",
    "analysisruns.argoproj.io",
    "analysistemplates.argoproj.io",
    "clusteranalysistemplates.argoproj.io",
    "experiments.argoproj.io",
}

MONITORING = {
    "metrics": {
        "serviceMonitor": {"enabled": True, "interval": "30s", "additionalLabels": {"release": "kube-prometheus"}},
        "prometheusRule": {"enabled": True},
    }
}


# --- helpers -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def chart():
    with helm.Chart.load(CHART) as loaded:
        yield loaded


_rendered: dict[str, tuple[dict, ...]] = {}


def render(chart, values=None) -> list[dict]:
    """The objects Helm would install, in Helm's file order, CRDs first. Renderings are cached
    per value set (the CRDs make each one megabytes of YAML); callers must not mutate them."""
    key = json.dumps(values, sort_keys=True)
    if key not in _rendered:
        manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
        objects = []
        for path in sorted(manifests, key=lambda p: (not p.endswith("/crds.yaml"), p)):
            if path.endswith(".yaml"):
                objects.extend(doc for doc in yaml.load_all(manifests[path], Loader=yaml.CSafeLoader) if doc)
        _rendered[key] = tuple(objects)
    return list(_rendered[key])


def manifest_text(chart, values=None) -> str:
    return "\n---\n".join(yaml.dump(o, Dumper=yaml.CSafeDumper, sort_keys=False) for o in render(chart, values))


def only(objects, kind, name=None) -> dict:
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def kinds(objects) -> list[tuple[str, str]]:
    return sorted((o["kind"], o["metadata"]["name"]) for o in objects)


def granted(rules) -> set[tuple]:
    """The rules flattened to (group, resource, verb[, resourceName]) tuples."""
    flat = set()
    for rule in rules:
        names = rule.get("resourceNames") or [None]
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    for name in names:
                        flat.add((group, resource, verb) if name is None else (group, resource, verb, name))
    return flat


def controller_container(objects) -> dict:
    pod = only(objects, "Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return container


# --- chart metadata and CRD copies ---------------------------------------------------------


def test_lint_is_clean_for_every_value_set():
    for values in (None, {"namespaced": True}, {"installCRDs": False}, MONITORING):
        report = helm.lint(CHART, values, strict=True, namespace=NAMESPACE)
        problems = [m for m in report["messages"] if m["severity"] >= 2]
        assert report["errors"] == [] and problems == [], f"lint with {values}: {report}"


def test_app_version_is_the_workspace_version():
    cargo = tomllib.loads((REPO / "Cargo.toml").read_text())
    chart_yaml = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart_yaml["appVersion"] == cargo["workspace"]["package"]["version"]
    assert chart_yaml["apiVersion"] == "v2"


def test_image_settings_match_the_dockerfile(chart):
    dockerfile = (REPO / "Dockerfile").read_text()
    lines = [line.strip() for line in dockerfile.splitlines()]
    container = controller_container(render(chart))
    pod = only(render(chart), "Deployment")["spec"]["template"]["spec"]
    # The chart passes only flags: the image's entrypoint must be the controller.
    assert 'ENTRYPOINT ["/ramp", "controller"]' in lines
    assert container["args"][0].startswith("--") and "command" not in container
    # runAsNonRoot can only check a numeric user; the chart's must be the image's.
    user = pod["securityContext"]["runAsUser"]
    assert f"USER {user}:{pod['securityContext']['runAsGroup']}" in lines
    assert f"EXPOSE {' '.join(sorted(str(p['containerPort']) for p in container['ports']))}" in lines
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    assert f"ARG VERSION={app_version}" in lines
    assert any(line.startswith("FROM gcr.io/distroless/cc-debian12:nonroot") for line in lines)


def test_chart_crds_are_the_repository_crds_without_descriptions():
    repo_crds = sorted(p.name for p in (REPO / "crds").glob("*.yaml"))
    chart_crd_files = sorted(p.name for p in (CHART / "files" / "crds").glob("*.yaml"))
    hint = "run: charts/ramp/tests/run --sync-crds"
    assert chart_crd_files == repo_crds, hint
    for name in repo_crds:
        copy = (CHART / "files" / "crds" / name).read_text()
        assert copy == chart_crds.chart_crd_text(name), f"charts/ramp/files/crds/{name} is out of date; {hint}"


def test_only_schema_descriptions_are_dropped():
    schema = {
        "description": "a rollout",
        "type": "object",
        "properties": {
            # A field named `description` is part of the API and stays.
            "description": {"type": "string", "description": "free text"},
            "steps": {"type": "array", "items": {"type": "object", "description": "one step"}},
            "weight": {"anyOf": [{"type": "integer", "description": "n"}, {"type": "string"}], "x-kubernetes-int-or-string": True},
            "labels": {"type": "object", "additionalProperties": {"type": "string", "description": "v"}},
        },
        "required": ["steps"],
    }
    assert chart_crds.without_descriptions(schema) == {
        "type": "object",
        "properties": {
            "description": {"type": "string"},
            "steps": {"type": "array", "items": {"type": "object"}},
            "weight": {"anyOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": True},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        },
        "required": ["steps"],
    }


def test_rendered_crds_are_the_chart_crds_plus_chart_metadata(chart):
    rendered = {o["metadata"]["name"]: o for o in render(chart) if o["kind"] == "CustomResourceDefinition"}
    assert set(rendered) == CRD_NAMES
    for path in (REPO / "crds").glob("*.yaml"):
        original = yaml.load(path.read_text(), Loader=yaml.CSafeLoader)
        expected = chart_crds.chart_crd(original)
        crd = rendered[original["metadata"]["name"]]
        metadata = crd["metadata"]
        # Templating parses and re-serialises the CRD: nothing but metadata may change.
        without_metadata = {k: v for k, v in crd.items() if k != "metadata"}
        assert without_metadata == {k: v for k, v in expected.items() if k != "metadata"}, f"{path.name} changed in rendering"
        assert metadata["name"] == original["metadata"]["name"]
        assert metadata["annotations"] == {"helm.sh/resource-policy": "keep"}
        assert metadata["labels"]["app.kubernetes.io/part-of"] == "ramp"


def test_keep_crds_false_lets_uninstall_remove_them(chart):
    crds = [o for o in render(chart, {"keepCRDs": False}) if o["kind"] == "CustomResourceDefinition"]
    assert len(crds) == len(CRD_NAMES)
    assert all("helm.sh/resource-policy" not in o["metadata"].get("annotations", {}) for o in crds)


def test_install_crds_false_renders_no_crd(chart):
    objects = render(chart, {"installCRDs": False})
    assert not [o for o in objects if o["kind"] == "CustomResourceDefinition"]
    assert only(objects, "Deployment")


def test_release_fits_helms_release_secret(chart):
    # Helm keeps a release in one Secret (at most 1 MiB): the release as JSON (the rendered
    # manifest and the chart with its files, []byte fields base64-encoded as Go does), gzipped at
    # the best level, then base64-encoded.
    def file_list(files):
        return [{"name": f["name"], "data": base64.b64encode(f["data"].encode()).decode()} for f in files]

    manifests = chart.render(None, name=RELEASE, namespace=NAMESPACE, is_install=True)
    release = {
        "name": RELEASE,
        "namespace": NAMESPACE,
        "manifest": "\n---\n".join(manifests.values()),
        "chart": {
            "metadata": chart.metadata,
            "templates": file_list(chart.templates),
            "values": chart.values,
            "schema": base64.b64encode(json.dumps(chart.schema).encode()).decode(),
            "files": file_list(chart.files),
        },
        "config": {},
    }
    stored = len(base64.b64encode(gzip.compress(json.dumps(release).encode(), compresslevel=9)))
    assert stored < 0.8 * 1024 * 1024, f"the release Secret would hold {stored} bytes of at most 1 MiB"


# --- default rendering ---------------------------------------------------------------------


def test_default_rendering_has_the_expected_objects(chart):
    expected = sorted(
        [("CustomResourceDefinition", name) for name in CRD_NAMES]
        + [
            ("ClusterRole", "ramp"),
            ("ClusterRoleBinding", "ramp"),
            ("Deployment", "ramp"),
            ("PodDisruptionBudget", "ramp"),
            ("Role", "ramp-leader-election"),
            ("RoleBinding", "ramp-leader-election"),
            ("Service", "ramp-metrics"),
            ("ServiceAccount", "ramp"),
        ]
    )
    objects = render(chart)
    assert kinds(objects) == expected
    for o in objects:
        if o["kind"] not in ("CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"):
            assert o["metadata"]["namespace"] == NAMESPACE, f"{o['kind']} outside the release namespace"


def test_deployment_runs_two_leader_elected_replicas_with_the_upstream_flags(chart):
    objects = render(chart)
    deployment = only(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    container = controller_container(objects)
    assert container["image"] == "ramp:0.1.0"
    assert container["args"] == [
        "--leader-elect=true",
        "--leader-election-lease-duration=15s",
        "--leader-election-renew-deadline=10s",
        "--leader-election-retry-period=2s",
        "--metrics-addr=:8090",
        "--health-addr=:8080",
        "--log-format=text",
        "--log-level=info",
        "--qps=40",
        "--burst=80",
        "--istio-version=v1alpha3",
    ]
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container["env"]}
    assert env == {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"}
    selector = deployment["spec"]["selector"]["matchLabels"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= labels.items()


def test_deployment_is_locked_down(chart):
    objects = render(chart)
    pod = only(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "ramp"
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    context = controller_container(objects)["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    resources = controller_container(objects)["resources"]
    assert set(resources) == {"requests", "limits"}
    assert set(resources["requests"]) == {"cpu", "memory"} and set(resources["limits"]) == {"cpu", "memory"}


def test_ports_probes_and_metrics_service(chart):
    objects = render(chart)
    container = controller_container(objects)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 8090, "healthz": 8080}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "healthz"}
    service = only(objects, "Service", "ramp-metrics")
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 8090, "targetPort": "metrics", "protocol": "TCP"}]
    pod_labels = only(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_pod_disruption_budget_keeps_one_controller(chart):
    objects = render(chart)
    pdb = only(objects, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == only(objects, "Deployment")["spec"]["selector"]["matchLabels"]
    pdb = only(render(chart, {"controller": {"pdb": {"enabled": True, "minAvailable": None, "maxUnavailable": 1}}}), "PodDisruptionBudget")
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": pdb["spec"]["selector"]}
    assert not [o for o in render(chart, {"controller": {"pdb": {"enabled": False}}}) if o["kind"] == "PodDisruptionBudget"]


# --- RBAC ----------------------------------------------------------------------------------


def test_cluster_role_grants_exactly_what_the_controller_uses(chart):
    objects = render(chart)
    assert granted(only(objects, "ClusterRole")["rules"]) == NAMESPACED_RULES | CLUSTER_RULES
    binding = only(objects, "ClusterRoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "ramp"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "ramp", "namespace": NAMESPACE}]


def test_leader_election_role_covers_only_the_upstream_lease(chart):
    objects = render(chart)
    role = only(objects, "Role", "ramp-leader-election")
    assert granted(role["rules"]) == {
        ("coordination.k8s.io", "leases", "create"),
        ("coordination.k8s.io", "leases", "get", LEASE),
        ("coordination.k8s.io", "leases", "update", LEASE),
    }
    binding = only(objects, "RoleBinding", "ramp-leader-election")
    assert binding["roleRef"]["name"] == "ramp-leader-election"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "ramp", "namespace": NAMESPACE}]


def test_instance_id_selects_objects_and_names_the_lease(chart):
    objects = render(chart, {"controller": {"instanceID": "blue"}})
    assert "--instance-id=blue" in controller_container(objects)["args"]
    role = only(objects, "Role", "ramp-leader-election")
    names = {rule[3] for rule in granted(role["rules"]) if len(rule) == 4}
    assert names == {f"{LEASE}-blue"}


def test_namespaced_mode_grants_a_role_and_only_cluster_template_reads(chart):
    objects = render(chart, {"namespaced": True})
    cluster_role = only(objects, "ClusterRole")
    assert cluster_role["metadata"]["name"] == "ramp-cluster-templates"
    assert granted(cluster_role["rules"]) == CLUSTER_RULES
    assert only(objects, "ClusterRoleBinding")["roleRef"]["name"] == "ramp-cluster-templates"
    role = only(objects, "Role", "ramp")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert granted(role["rules"]) == NAMESPACED_RULES
    binding = only(objects, "RoleBinding", "ramp")
    assert binding["metadata"]["namespace"] == NAMESPACE
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "ramp"}
    assert "--namespaced" in controller_container(objects)["args"]


def test_rbac_create_false_and_existing_service_account(chart):
    objects = render(chart, {"rbac": {"create": False}, "serviceAccount": {"create": False, "name": "ops", "annotations": {}}})
    assert not [o for o in objects if o["kind"] in ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ServiceAccount")]
    assert only(objects, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "ops"


# --- monitoring ----------------------------------------------------------------------------


def test_service_monitor_scrapes_the_metrics_service(chart):
    objects = render(chart, MONITORING)
    monitor = only(objects, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus"
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "30s"}]
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    service = only(objects, "Service", "ramp-metrics")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()


def test_prometheus_rule_alerts_on_upstream_metrics(chart):
    rule = only(render(chart, MONITORING), "PrometheusRule")
    (group,) = rule["spec"]["groups"]
    alerts = {r["alert"]: r for r in group["rules"]}
    assert set(alerts) == {
        "RampRolloutAborted",
        "RampAnalysisRunFailed",
        "RampRolloutProgressDeadlineExceeded",
        "RampRolloutStuckProgressing",
    }
    assert 'rollout_info{phase="Abort"}' in alerts["RampRolloutAborted"]["expr"]
    assert 'rollout_info{phase="Timeout"}' in alerts["RampRolloutProgressDeadlineExceeded"]["expr"]
    assert 'rollout_info{phase="Progressing"}' in alerts["RampRolloutStuckProgressing"]["expr"]
    assert alerts["RampRolloutStuckProgressing"]["for"] == "30m"
    failed = alerts["RampAnalysisRunFailed"]["expr"]
    assert "analysis_run_metric_phase{" in failed and 'dry_run="false"' in failed
    for alert in alerts.values():
        assert alert["labels"]["severity"] in ("critical", "warning")
        # Prometheus templates survive Helm's templating verbatim.
        assert "{{ $labels.name }}" in alert["annotations"]["summary"] or "{{ $labels.metric }}" in alert["annotations"]["summary"]


def test_prometheus_rule_alerts_can_be_turned_off_and_extended(chart):
    values = {
        "metrics": {
            "prometheusRule": {
                "enabled": True,
                "alerts": {
                    "rolloutAborted": {"enabled": False, "for": "1m", "severity": "critical"},
                    "analysisRunFailed": {"enabled": True, "for": "1m", "severity": "critical"},
                    "progressDeadlineExceeded": {"enabled": True, "for": "1m", "severity": "warning"},
                    "rolloutStuckProgressing": {"enabled": True, "for": "2h", "severity": "info"},
                },
                "extraRules": [{"alert": "TeamRule", "expr": "vector(1)"}],
            }
        }
    }
    (group,) = only(render(chart, values), "PrometheusRule")["spec"]["groups"]
    alerts = {r["alert"]: r for r in group["rules"]}
    assert "RampRolloutAborted" not in alerts
    assert alerts["RampRolloutStuckProgressing"]["for"] == "2h"
    assert alerts["TeamRule"]["expr"] == "vector(1)"


def test_monitoring_objects_are_off_by_default(chart):
    assert not [o for o in render(chart) if o["kind"] in ("ServiceMonitor", "PrometheusRule")]


# --- values schema and guards --------------------------------------------------------------


@pytest.mark.parametrize(
    "values, complaint",
    [
        ({"controller": {"replicas": "two"}}, "/controller/replicas"),
        ({"namespaced": "yes"}, "/namespaced"),
        ({"installCRDs": 1}, "/installCRDs"),
        ({"controller": {"logFormat": "xml"}}, "/controller/logFormat"),
        ({"controller": {"leaderElection": {"leaseDuration": 15}}}, "/controller/leaderElection/leaseDuration"),
        ({"controller": {"containerPorts": {"metrics": 70000}}}, "/controller/containerPorts/metrics"),
        ({"metrics": {"prometheusRule": {"alerts": {"rolloutAborted": {"for": "soon"}}}}}, "/metrics/prometheusRule/alerts/rolloutAborted/for"),
        ({"controler": {"replicas": 1}}, "controler"),
        ({"containerSecurityContext": {"readOnlyRootFilesystm": True}}, "readOnlyRootFilesystm"),
    ],
)
def test_schema_rejects_wrong_values(chart, values, complaint):
    with pytest.raises(helm.HelmValuesError) as refused:
        chart.validate_schema(values)
    assert complaint in str(refused.value)
    with pytest.raises(helm.HelmValuesError):
        chart.render(values, name=RELEASE, namespace=NAMESPACE)


def test_schema_accepts_the_defaults_and_documents_every_value(chart):
    chart.validate_schema(None)
    schema = json.loads((CHART / "values.schema.json").read_text())

    def walk(node, path):
        if "$ref" in node:
            node = schema["definitions"][node["$ref"].rsplit("/", 1)[1]]
        assert "description" in node, f"{path} has no description"
        assert "type" in node or "anyOf" in node, f"{path} has no type"
        if node.get("type") == "object" and "properties" in node:
            assert node.get("additionalProperties") is False, f"{path} accepts unknown keys"
            for key, child in node["properties"].items():
                walk(child, f"{path}.{key}")

    for key, child in schema["properties"].items():
        walk(child, key)


def test_several_replicas_without_leader_election_are_refused(chart):
    off = {"enabled": False, "leaseDuration": "15s", "renewDeadline": "10s", "retryPeriod": "2s"}
    with pytest.raises(helm.HelmRenderError, match="leaderElection"):
        chart.render({"controller": {"leaderElection": off}}, name=RELEASE, namespace=NAMESPACE)
    objects = render(chart, {"controller": {"replicas": 1, "leaderElection": off}})
    args = controller_container(objects)["args"]
    assert "--leader-elect=false" in args
    assert not [a for a in args if a.startswith("--leader-election-")]
    assert not [o for o in objects if o["metadata"]["name"] == "ramp-leader-election"]


# --- applied to ramp-sim with the real kubectl ---------------------------------------------


def ramp_binary() -> str:
    ramp = os.environ.get("RAMP_BIN") or str(REPO / "target" / "debug" / "ramp")
    assert Path(ramp).is_file(), f"{ramp} is missing: build it (charts/ramp/tests/run does)"
    return ramp


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as refused:
        return refused.code
    except OSError:
        return None


def wait_until(what: str, check, seconds: float = 30, details=lambda: ""):
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"{what} did not happen within {seconds} s\n{details()}"
        time.sleep(0.1)


@pytest.fixture
def sim():
    """ramp-sim's API server on a free port; yields the kubeconfig path."""
    ramp = ramp_binary()
    assert shutil.which("kubectl"), "kubectl (v1.32) must be on PATH"
    workdir = Path(tempfile.mkdtemp(prefix="ramp-chart-"))
    kubeconfig = workdir / "kubeconfig"
    log = open(workdir / "sim.log", "w")
    process = subprocess.Popen(
        [ramp, "sim", "--api-only", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--kubeconfig", str(kubeconfig)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(
            "ramp sim answering /readyz",
            lambda: process.poll() is not None
            or (kubeconfig.exists() and kubectl(kubeconfig, "get", "--raw", "/readyz").returncode == 0),
            details=lambda: (workdir / "sim.log").read_text(),
        )
        assert process.poll() is None, f"ramp sim exited: {(workdir / 'sim.log').read_text()}"
        yield kubeconfig
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)


def kubectl(kubeconfig, *args, stdin=None):
    return subprocess.run(
        ["kubectl", "--kubeconfig", str(kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("values", [None, {"namespaced": True}], ids=["default", "namespaced"])
def test_the_rendering_is_accepted_by_the_api_server(chart, sim, values):
    objects = render(chart, values)
    created = kubectl(sim, "create", "namespace", NAMESPACE)
    assert created.returncode == 0, created.stderr
    applied = kubectl(sim, "apply", "--server-side", "--field-manager=helm", "-f", "-", stdin=manifest_text(chart, values))
    assert applied.returncode == 0, f"kubectl apply failed:\n{applied.stdout}\n{applied.stderr}"
    assert applied.stderr.strip() == "", f"warnings from the API server:\n{applied.stderr}"
    for o in objects:
        resource = f"{o['kind'].lower()}.{o['apiVersion'].split('/')[0]}" if "/" in o["apiVersion"] else o["kind"].lower()
        scope = ["-n", o["metadata"]["namespace"]] if "namespace" in o["metadata"] else []
        got = kubectl(sim, "get", resource, o["metadata"]["name"], *scope, "-o", "json")
        assert got.returncode == 0, f"{o['kind']} {o['metadata']['name']} not stored: {got.stderr}"
        stored = json.loads(got.stdout)
        assert stored["metadata"]["labels"] == o["metadata"]["labels"], f"{o['kind']} {o['metadata']['name']} labels"
    # The CRDs are served once applied: the API the controller watches exists.
    served = kubectl(sim, "api-resources", "--api-group=argoproj.io", "-o", "name")
    assert served.returncode == 0, served.stderr
    assert set(served.stdout.split()) == CRD_NAMES


def test_every_flag_the_chart_can_pass_is_a_flag_of_ramp_controller(chart):
    helped = subprocess.run([ramp_binary(), "controller", "--help"], capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0, helped.stderr
    known = set(re.findall(r"(--[a-z][a-z-]*)", helped.stdout))
    everything = {
        "namespaced": True,
        "controller": {
            "instanceID": "blue",
            "prometheusAddress": "http://prometheus:9090",
            "logFormat": "json",
            "logLevel": "debug",
        },
    }
    leader_off = {"controller": {"replicas": 1, "leaderElection": {"enabled": False, "leaseDuration": "15s", "renewDeadline": "10s", "retryPeriod": "2s"}}}
    for values in (None, everything, leader_off):
        for arg in controller_container(render(chart, values))["args"]:
            flag = arg.split("=", 1)[0]
            assert flag in known, f"the chart passes {arg}, which `ramp controller` does not know"


def test_the_deployments_command_line_runs_the_controller(chart, sim):
    """The container's flags, env and probes, run as the image would run them (`/ramp controller`
    plus the rendered args) against ramp-sim: the flags parse, /readyz and /healthz answer on the
    health port, /metrics on the metrics port, the upstream Lease is taken in POD_NAMESPACE and
    released on SIGTERM within the pod's grace period."""
    health, metrics = free_port(), free_port()
    values = {"controller": {"containerPorts": {"metrics": metrics, "healthz": health}}}
    assert kubectl(sim, "create", "namespace", NAMESPACE).returncode == 0
    applied = kubectl(sim, "apply", "--server-side", "-f", "-", stdin=manifest_text(chart, values))
    assert applied.returncode == 0, applied.stderr
    objects = render(chart, values)
    container = controller_container(objects)
    env = dict(os.environ, POD_NAME="ramp-0", POD_NAMESPACE=NAMESPACE)
    with tempfile.TemporaryFile() as log:
        controller = subprocess.Popen(
            [ramp_binary(), "controller", *container["args"], "--kubeconfig", str(sim)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

        def output() -> str:
            log.seek(0)
            return log.read().decode(errors="replace")

        try:
            probe = container["readinessProbe"]["httpGet"]["path"]
            wait_until(
                f"{probe} on :{health} answering 200",
                lambda: controller.poll() is not None or http_status(f"http://127.0.0.1:{health}{probe}") == 200,
                details=lambda: f"controller output:\n{output()}",
            )
            assert controller.poll() is None, output()
            assert http_status(f"http://127.0.0.1:{health}{container['livenessProbe']['httpGet']['path']}") == 200
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5) as response:
                assert response.status == 200
            holder = kubectl(sim, "get", "lease", LEASE, "-n", NAMESPACE, "-o", "jsonpath={.spec.holderIdentity}")
            assert holder.returncode == 0, holder.stderr
            assert holder.stdout.startswith("ramp-0"), holder.stdout
        finally:
            controller.send_signal(signal.SIGTERM)
            grace = only(objects, "Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
            try:
                code = controller.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                controller.kill()
                controller.wait()
                pytest.fail(f"the controller ignored SIGTERM for {grace} s:\n{output()}")
        assert code == 0, output()
    released = kubectl(sim, "get", "lease", LEASE, "-n", NAMESPACE, "-o", "jsonpath={.spec.holderIdentity}")
    assert released.returncode == 0 and released.stdout == "", f"lease still held: {released.stdout}"
