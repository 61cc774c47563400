"""The chart installed by Helm's own engine (helm-python-sdk's install, not a rendering) into the
real control plane that `scripts/cluster up DIR` started, named by RAMP_TEST_CLUSTER=DIR: its
CRDs and RBAC objects are real, and the real RBAC authorizer judges the controller. There is no
container engine, so the release's Deployment runs nothing (kwok fakes its pods); `ramp
controller` runs here instead, with the rendered Deployment's flags and a token of the release's
ServiceAccount. Through a canary with an analysis step and a blue-green promotion the audit log
(DIR/audit.log, which logs service accounts' reads at Metadata) must show no request refused to
that account, and requests outside the chart's rules must be refused.

Without RAMP_TEST_CLUSTER every test here skips, saying so. Run alone with
`RAMP_TEST_CLUSTER=DIR charts/ramp/tests/run -k real`.

CRDs: the real tier's CRDs come from `kubectl apply --server-side -f crds/` before the tests, and
other tests use them at the same time. Helm refuses to adopt objects it did not create, and
adopting them would replace shared CRDs mid-run, so a release installs the chart's CRDs
(installCRDs: true) only when none of the five exists, and otherwise installs with
installCRDs: false and checks that the served CRDs are the chart's.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import chart_crds
import helm_python as helm
import pytest
import yaml
from test_chart import CHART, CRD_NAMES, free_port, granted, http_status, kubectl, ramp_binary, wait_until

INSTANCE_ID_LABEL = "argo-rollouts.argoproj.io/controller-instance-id"


def real_cluster_dir() -> Path:
    directory = os.environ.get("RAMP_TEST_CLUSTER")
    if not directory:
        pytest.skip(
            "RAMP_TEST_CLUSTER is not set: the Helm install on the real control plane did not run "
            "(scripts/cluster up DIR, then RAMP_TEST_CLUSTER=DIR charts/ramp/tests/run -k real)"
        )
    path = Path(directory)
    assert (path / "kubeconfig").is_file(), f"RAMP_TEST_CLUSTER={directory} holds no kubeconfig: scripts/cluster up {directory}"
    return path


class AuditLog:
    """The real server's audit log from where it ended when followed (JSON lines of
    audit.k8s.io/v1 Events); the Python side of crates/ramp-sim/src/audit.rs."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0

    def events(self, user: str) -> list[dict]:
        """The requests of `user` logged so far, each once (its ResponseComplete stage)."""
        with open(self.path, "rb") as log:
            log.seek(self.offset)
            lines = log.read().split(b"\n")
        events = []
        for line in lines[:-1]:  # the last one is empty, or still being written
            event = json.loads(line)
            if event.get("stage") == "ResponseComplete" and event["user"].get("username") == user:
                events.append(event)
        return events

    def settled_events(self, user: str, within: float = 5) -> list[dict]:
        """Like `events`, once the log has stopped growing for a moment: the server writes an
        event as it answers, so what a client saw may be a moment ahead of its line."""
        deadline = time.monotonic() + within
        size, quiet_since = -1, time.monotonic()
        while time.monotonic() < deadline:
            now_size = self.path.stat().st_size
            if now_size != size:
                size, quiet_since = now_size, time.monotonic()
            elif time.monotonic() - quiet_since >= 0.3:
                break
            time.sleep(0.05)
        return self.events(user)


def denied(event: dict) -> bool:
    """Refused by the authorizer (a 403 from admission says `allow`)."""
    decision = event.get("annotations", {}).get("authorization.k8s.io/decision")
    return decision == "forbid" if decision else event.get("responseStatus", {}).get("code") == 403


def refusal(event: dict) -> tuple:
    ref = event.get("objectRef", {})
    return (event["verb"], ref.get("apiGroup", ""), ref.get("resource", ""), ref.get("namespace"), ref.get("name"))


def describe(events: list[dict]) -> str:
    return "\n".join(f"{refusal(e)}: {e.get('responseStatus', {}).get('message', '')}" for e in events)


class Healthy(BaseHTTPRequestHandler):
    """The analysis' web metric: always `{"ok": true}`."""

    def do_GET(self):  # noqa: N802 (http.server's name)
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def health_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Healthy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/health"
    finally:
        server.shutdown()
        server.server_close()


def token_kubeconfig(admin: Path, token: str, namespace: str, path: Path):
    """A kubeconfig for the admin's server and CA that authenticates with `token`."""
    config = yaml.safe_load(admin.read_text())
    (cluster,) = config["clusters"]
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [cluster],
                "users": [{"name": "chart-sa", "user": {"token": token}}],
                "contexts": [{"name": "chart-sa", "context": {"cluster": cluster["name"], "user": "chart-sa", "namespace": namespace}}],
                "current-context": "chart-sa",
            }
        )
    )
    path.chmod(0o600)


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, f"{result.args}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


class Release:
    """The chart installed with Helm into a fresh namespace of the real cluster; uninstalled and
    the namespace deleted when the test ends."""

    def __init__(self, directory: Path):
        self.admin = directory / "kubeconfig"
        self.namespace = f"chart-{os.getpid()}-{secrets.token_hex(3)}"
        # The full name is the release name when it says ramp: ClusterRoles carry the namespace,
        # so they never collide with another test's.
        self.name = f"ramp-{self.namespace}"
        self.config = None
        self.installed = None

    def kubectl(self, *args, stdin=None):
        return kubectl(self.admin, "-n", self.namespace, *args, stdin=stdin)

    def install(self, values: dict) -> dict:
        ok(kubectl(self.admin, "create", "namespace", self.namespace))
        ok(kubectl(self.admin, "label", "namespace", self.namespace, "ramp.dev/test=true"))
        self.config = helm.Config(kubeconfig_path=self.admin, namespace=self.namespace)
        self.installed = self.config.install(CHART, self.name, values, namespace=self.namespace, timeout=120)
        return self.installed

    def objects(self) -> list[dict]:
        return [doc for doc in yaml.safe_load_all(self.installed["manifest"]) if doc]

    def stored(self, o: dict) -> dict:
        resource = f"{o['kind'].lower()}.{o['apiVersion'].split('/')[0]}" if "/" in o["apiVersion"] else o["kind"].lower()
        scope = ["-n", o["metadata"]["namespace"]] if "namespace" in o["metadata"] else []
        return json.loads(ok(kubectl(self.admin, "get", resource, o["metadata"]["name"], *scope, "-o", "json")))

    def close(self):
        if self.config is not None:
            try:
                if self.installed is not None:
                    self.config.uninstall(self.name, ignore_not_found=True, timeout=60)
            finally:
                self.config.close()
        # What an install that failed half-way left behind.
        kubectl(self.admin, "delete", "clusterrole,clusterrolebinding", "-l", f"app.kubernetes.io/instance={self.name}", "--ignore-not-found")
        kubectl(self.admin, "delete", "namespace", self.namespace, "--wait=false", "--ignore-not-found")


def served_argoproj_crds(admin: Path) -> dict[str, dict]:
    listed = json.loads(ok(kubectl(admin, "get", "crd", "-o", "json")))
    return {c["metadata"]["name"]: c for c in listed["items"] if c["metadata"]["name"] in CRD_NAMES}


def established(crd: dict) -> bool:
    return any(c["type"] == "Established" and c["status"] == "True" for c in crd.get("status", {}).get("conditions", []))


def rollout(release: Release, name: str) -> dict:
    return json.loads(ok(release.kubectl("get", "rollouts.argoproj.io", name, "-o", "json")))


def healthy_on_current(r: dict) -> bool:
    s = r.get("status", {})
    return (
        s.get("phase") == "Healthy"
        and s.get("observedGeneration") == str(r["metadata"]["generation"])
        and s.get("currentPodHash") is not None
        and s.get("currentPodHash") == s.get("stableRS")
        and s.get("availableReplicas") == r["spec"]["replicas"]
    )


def wait_rollout(release: Release, name: str, what: str, check, seconds=90):
    last = {}

    def reached():
        last["r"] = rollout(release, name)
        return check(last["r"])

    wait_until(f"rollout {name} {what}", reached, seconds, details=lambda: json.dumps(last.get("r", {}).get("status"), indent=1))
    return last["r"]


def rollout_manifest(name: str, replicas: int, strategy: dict, instance: str | None) -> dict:
    labels = {INSTANCE_ID_LABEL: instance} if instance else {}
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "web", "image": "web:v1"}]},
            },
            "strategy": strategy,
        },
    }


def set_image(release: Release, name: str, image: str):
    patch = [{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": image}]
    ok(release.kubectl("patch", "rollouts.argoproj.io", name, "--type=json", "-p", json.dumps(patch)))


def canary_with_analysis(release: Release, url: str, instance: str | None):
    """A canary whose second step is a web analysis answering ok, taken from v1 to v2."""
    template = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": "smoke"},
        "spec": {
            "args": [{"name": "url"}],
            "metrics": [
                {
                    "name": "smoke",
                    "interval": "1s",
                    "count": 2,
                    "failureLimit": 0,
                    "successCondition": "result == true",
                    "provider": {"web": {"url": "{{args.url}}", "jsonPath": "{$.ok}"}},
                }
            ],
        },
    }
    strategy = {
        "canary": {
            "steps": [
                {"setWeight": 50},
                {"analysis": {"templates": [{"templateName": "smoke"}], "args": [{"name": "url", "value": url}]}},
            ]
        }
    }
    ok(release.kubectl("create", "-f", "-", stdin=json.dumps(template)))
    ok(release.kubectl("create", "-f", "-", stdin=json.dumps(rollout_manifest("web", 2, strategy, instance))))
    wait_rollout(release, "web", "Healthy on v1", healthy_on_current)
    set_image(release, "web", "web:v2")
    v2 = wait_rollout(
        release,
        "web",
        "Healthy on v2 after its analysis",
        lambda r: healthy_on_current(r) and r["spec"]["template"]["spec"]["containers"][0]["image"] == "web:v2" and r["status"]["currentPodHash"] != "",
    )
    runs = json.loads(ok(release.kubectl("get", "analysisruns.argoproj.io", "-o", "json")))["items"]
    phases = [(run["metadata"]["name"], run.get("status", {}).get("phase")) for run in runs]
    assert phases == [(f"web-{v2['status']['currentPodHash']}-2-1", "Successful")]


def blue_green_promotion(release: Release, instance: str | None):
    """A blue-green rollout taken to v2 through a manual promotion, as the kubectl plugin does
    it: the pause conditions removed from the status."""
    for service in ("bg-active", "bg-preview"):
        ok(release.kubectl("create", "service", "clusterip", service, "--tcp=80:8080"))
        ok(release.kubectl("set", "selector", "service", service, "app=bg"))
    strategy = {"blueGreen": {"activeService": "bg-active", "previewService": "bg-preview", "autoPromotionEnabled": False, "scaleDownDelaySeconds": 1}}
    ok(release.kubectl("create", "-f", "-", stdin=json.dumps(rollout_manifest("bg", 2, strategy, instance))))
    wait_rollout(release, "bg", "Healthy on v1", healthy_on_current)
    set_image(release, "bg", "web:v2")

    def paused_on_preview(r):
        s = r.get("status", {})
        return bool(s.get("pauseConditions")) and s.get("currentPodHash") and s.get("blueGreen", {}).get("previewSelector") == s.get("currentPodHash")

    wait_rollout(release, "bg", "v2 paused for promotion", paused_on_preview)
    ok(release.kubectl("patch", "rollouts.argoproj.io", "bg", "--subresource=status", "--type=merge", "-p", '{"status": {"pauseConditions": null}}'))
    promoted = wait_rollout(release, "bg", "promoted to v2", lambda r: healthy_on_current(r) and r["status"].get("blueGreen", {}).get("activeSelector") == r["status"]["currentPodHash"])
    active = json.loads(ok(release.kubectl("get", "service", "bg-active", "-o", "json")))
    assert active["spec"]["selector"]["rollouts-pod-template-hash"] == promoted["status"]["currentPodHash"]


@pytest.mark.parametrize("namespaced", [False, True], ids=["cluster-wide", "namespaced"])
def test_helm_install_on_the_real_cluster_runs_canary_analysis_and_blue_green_without_a_denial(namespaced, health_url):
    directory = real_cluster_dir()
    admin = directory / "kubeconfig"
    audit = AuditLog(directory / "audit.log")
    served = served_argoproj_crds(admin)
    assert set(served) in (set(), CRD_NAMES), f"only some argoproj.io CRDs are installed: {sorted(served)}"
    install_crds = not served
    release = Release(directory)
    # Cluster-wide, this controller would act on every unlabelled rollout of the tests running
    # beside it: an instance id keeps it to this test's rollouts.
    instance = None if namespaced else release.namespace
    health, metrics = free_port(), free_port()
    values = {
        "installCRDs": install_crds,
        "namespaced": namespaced,
        "controller": {"instanceID": instance or "", "containerPorts": {"metrics": metrics, "healthz": health}},
    }
    # The controller's kubeconfig (it holds a token) and output.
    workdir = Path(tempfile.mkdtemp(prefix="ramp-chart-real-"))
    try:
        installed = release.install(values)
        assert installed["status"] == "deployed", installed
        objects = release.objects()

        # The release's objects are on the server as Helm rendered them.
        for o in objects:
            stored = release.stored(o)
            if "rules" in o:
                assert granted(stored["rules"]) == granted(o["rules"]), f"{o['kind']} {o['metadata']['name']}"
            if "roleRef" in o:
                assert (stored["roleRef"], stored["subjects"]) == (o["roleRef"], o["subjects"])
            assert stored["metadata"]["annotations"]["meta.helm.sh/release-name"] == release.name
        rbac = {(o["kind"], o["metadata"]["name"]) for o in objects if o["apiVersion"].startswith("rbac.")}
        if namespaced:
            assert rbac == {
                ("Role", release.name),
                ("RoleBinding", release.name),
                ("ClusterRole", f"{release.name}-cluster-templates"),
                ("ClusterRoleBinding", f"{release.name}-cluster-templates"),
                ("Role", f"{release.name}-leader-election"),
                ("RoleBinding", f"{release.name}-leader-election"),
            }
        else:
            assert rbac == {
                ("ClusterRole", release.name),
                ("ClusterRoleBinding", release.name),
                ("Role", f"{release.name}-leader-election"),
                ("RoleBinding", f"{release.name}-leader-election"),
            }
        wait_until(
            "the argoproj.io CRDs Established",
            lambda: (lambda crds: set(crds) == CRD_NAMES and all(map(established, crds.values())))(served_argoproj_crds(admin)),
            60,
        )
        crds = served_argoproj_crds(admin)
        assert bool([o for o in objects if o["kind"] == "CustomResourceDefinition"]) == install_crds
        for path in (CHART.parent.parent / "crds").glob("*.yaml"):
            chart_crd = chart_crds.chart_crd(yaml.safe_load(path.read_text()))
            crd = crds[chart_crd["metadata"]["name"]]
            assert [v["name"] for v in crd["spec"]["versions"]] == [v["name"] for v in chart_crd["spec"]["versions"]]
            assert crd["spec"]["names"]["kind"] == chart_crd["spec"]["names"]["kind"]

        # The controller, as the Deployment would run it, with a token of the release's account.
        deployment = next(o for o in objects if o["kind"] == "Deployment")
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        account = pod["serviceAccountName"]
        user = f"system:serviceaccount:{release.namespace}:{account}"
        token = ok(release.kubectl("create", "token", account, "--duration=1h")).strip()
        sa_kubeconfig = workdir / "kubeconfig"
        token_kubeconfig(admin, token, release.namespace, sa_kubeconfig)
        pod_name = f"{release.name}-0"
        env = dict(os.environ, POD_NAME=pod_name, POD_NAMESPACE=release.namespace)
        with open(workdir / "controller.log", "w+b") as log:
            controller = subprocess.Popen(
                [ramp_binary(), "controller", *container["args"], "--kubeconfig", str(sa_kubeconfig)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

            def output() -> str:
                log.seek(0)
                return log.read().decode(errors="replace")

            def report() -> str:
                events = [e for e in audit.events(user) if denied(e)]
                return f"denied so far:\n{describe(events)}\ncontroller output:\n{output()}"

            try:
                probe = container["readinessProbe"]["httpGet"]["path"]
                wait_until(
                    f"{probe} on :{health} answering 200",
                    lambda: controller.poll() is not None or http_status(f"http://127.0.0.1:{health}{probe}") == 200,
                    60,
                    details=report,
                )
                assert controller.poll() is None, report()
                lease = next(r["resourceNames"][0] for o in objects if o["kind"] == "Role" for r in o["rules"] if r.get("resourceNames"))
                holder = ok(release.kubectl("get", "lease", lease, "-o", "jsonpath={.spec.holderIdentity}"))
                assert holder.startswith(pod_name), holder

                try:
                    canary_with_analysis(release, health_url, instance)
                    blue_green_promotion(release, instance)
                except AssertionError as failed:
                    raise AssertionError(f"{failed}\n{report()}") from failed

                events = audit.settled_events(user)
                refused = [e for e in events if denied(e)]
                assert refused == [], f"the chart's rules denied:\n{describe(refused)}"
                # The log saw the account's reads: zero denials is evidence, not silence.
                reads = {(e["verb"], e.get("objectRef", {}).get("resource")) for e in events}
                assert {("list", "rollouts"), ("list", "replicasets"), ("patch", "rollouts")} <= reads, sorted(reads, key=str)

                # Outside the chart's rules, refused by the real authorizer.
                as_controller = ["--kubeconfig", str(sa_kubeconfig), "-n", release.namespace]
                probes = [
                    ["get", "secrets"],
                    ["create", "deployment", "not-ramps", "--image=x"],
                    ["delete", "service", "bg-preview"],
                ]
                expected = [
                    ("list", "", "secrets", release.namespace, None),
                    ("create", "apps", "deployments", release.namespace, None),
                    ("delete", "", "services", release.namespace, "bg-preview"),
                ]
                if namespaced:
                    probes.append(["get", "rollouts.argoproj.io", "--all-namespaces"])
                    expected.append(("list", "argoproj.io", "rollouts", None, None))
                for args in probes:
                    result = subprocess.run(["kubectl", *as_controller, *args], capture_output=True, text=True, timeout=60)
                    assert result.returncode != 0 and "forbidden" in result.stderr, f"kubectl {' '.join(args)} as {user}: {result.stderr}"
                wait_until(
                    "the probes' denials in the audit log",
                    lambda: len([e for e in audit.events(user) if denied(e)]) >= len(expected),
                    10,
                    details=report,
                )
                refused = [refusal(e) for e in audit.settled_events(user) if denied(e)]
                assert refused == expected, report()
            finally:
                controller.send_signal(signal.SIGTERM)
                grace = pod["terminationGracePeriodSeconds"]
                try:
                    code = controller.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    controller.kill()
                    controller.wait()
                    pytest.fail(f"the controller ignored SIGTERM for {grace} s:\n{output()}")
            assert code == 0, output()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        release.close()
