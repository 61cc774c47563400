//! The real kubectl (v1.32 at /usr/bin/kubectl) against the emulated API server over TCP with
//! the kubeconfig the sim writes: applying the upstream CRDs and examples, get (Table output,
//! watch), patch, delete, wait, create namespace and raw discovery.
#![allow(clippy::unwrap_used)] // Tests fail loudly on any unexpected error.

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use ramp_sim::compat::{self, ArgoRollouts};
use ramp_sim::{Sim, SimConfig, SimHandle};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const KUBECTL: &str = "/usr/bin/kubectl";

struct Cluster {
    sim: SimHandle,
    cache: PathBuf,
}

impl Cluster {
    async fn start() -> Self {
        let sim = Sim::start(SimConfig::api_only()).await.expect("sim starts");
        let cache = sim
            .kubeconfig_path()
            .parent()
            .expect("kubeconfig dir")
            .join("kube-cache");
        Cluster { sim, cache }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(KUBECTL);
        command
            .arg("--kubeconfig")
            .arg(self.sim.kubeconfig_path())
            .arg("--cache-dir")
            .arg(&self.cache)
            .args(args)
            .env("HOME", self.cache.parent().expect("cache dir has a parent"))
            .stdin(Stdio::null())
            .kill_on_drop(true);
        command
    }

    /// Runs kubectl to completion; returns (success, stdout, stderr).
    async fn run(&self, args: &[&str]) -> (bool, String, String) {
        let output = tokio::time::timeout(Duration::from_secs(60), self.command(args).output())
            .await
            .unwrap_or_else(|_| panic!("kubectl {args:?} did not finish within 60s"))
            .expect("kubectl runs");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    async fn ok(&self, args: &[&str]) -> String {
        let (ok, stdout, stderr) = self.run(args).await;
        assert!(
            ok,
            "kubectl {args:?} failed:\nstdout: {stdout}\nstderr: {stderr}"
        );
        stdout
    }

    /// Upstream's CRDs and canary example applied, the way a user would.
    async fn with_crds_and_canary(self, upstream: &ArgoRollouts) -> Self {
        let crds = as_arg(&upstream.crds());
        self.ok(&["apply", "--server-side", "-f", &crds]).await;
        let out = self
            .ok(&[
                "apply",
                "-f",
                &as_arg(&upstream.example("rollout-canary.yaml")),
            ])
            .await;
        assert_eq!(out.trim(), "rollout.argoproj.io/rollout-canary created");
        self
    }

    fn rollouts(&self) -> Api<DynamicObject> {
        let resource = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Rollout"),
            "rollouts",
        );
        Api::namespaced_with(self.sim.client(), "default", &resource)
    }
}

fn as_arg(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

#[tokio::test]
async fn apply_crds_server_side_and_examples_client_side() {
    let Some(upstream) = compat::argo_rollouts() else {
        return;
    };
    let cluster = Cluster::start().await;
    let crds = as_arg(&upstream.crds());
    let out = cluster.ok(&["apply", "--server-side", "-f", &crds]).await;
    assert!(
        out.contains(
            "customresourcedefinition.apiextensions.k8s.io/rollouts.argoproj.io serverside-applied"
        ),
        "{out}"
    );
    let established = cluster
        .ok(&[
            "wait",
            "--for=condition=Established",
            "crd/rollouts.argoproj.io",
            "--timeout=20s",
        ])
        .await;
    assert!(established.contains("condition met"), "{established}");

    for example in [
        "rollout-canary.yaml",
        "rollout-bluegreen.yaml",
        "analysis-templates.yaml",
        "cluster-analysis-templates.yaml",
    ] {
        let (ok, stdout, stderr) = cluster
            .run(&["apply", "-f", &as_arg(&upstream.example(example))])
            .await;
        assert!(ok, "apply {example}: {stdout}\n{stderr}");
        assert!(stdout.contains("created"), "{example}: {stdout}");
    }
    // The CRD schema defaults ports[].protocol, so kubectl's three-way merge re-sends the
    // (atomic) containers list, as against a real server; the server sees a no-op.
    let before = cluster
        .ok(&[
            "get",
            "ro",
            "rollout-canary",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ])
        .await;
    let again = cluster
        .ok(&[
            "apply",
            "-f",
            &as_arg(&upstream.example("rollout-canary.yaml")),
        ])
        .await;
    assert_eq!(
        again.trim(),
        "rollout.argoproj.io/rollout-canary configured"
    );
    let after = cluster
        .ok(&[
            "get",
            "ro",
            "rollout-canary",
            "-o",
            "jsonpath={.metadata.resourceVersion} {.metadata.generation}",
        ])
        .await;
    assert_eq!(after, format!("{before} 1"), "a no-op apply writes nothing");
}

#[tokio::test]
async fn client_side_apply_of_the_big_crd_fails_like_a_real_server() {
    let Some(upstream) = compat::argo_rollouts() else {
        return;
    };
    let cluster = Cluster::start().await;
    let (ok, _, stderr) = cluster
        .run(&["apply", "-f", &as_arg(&upstream.crd("rollout-crd.yaml"))])
        .await;
    assert!(
        !ok,
        "the last-applied annotation of a 570 KB CRD is too long for a real server"
    );
    assert!(
        stderr.contains("Too long: must have at most 262144 bytes"),
        "{stderr}"
    );
}

#[tokio::test]
async fn get_rollouts_wide_prints_the_printer_columns() {
    let Some(upstream) = compat::argo_rollouts() else {
        return;
    };
    let cluster = Cluster::start().await.with_crds_and_canary(&upstream).await;
    let out = cluster.ok(&["get", "ro", "-o", "wide"]).await;
    let mut lines = out.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "DESIRED",
            "CURRENT",
            "UP-TO-DATE",
            "AVAILABLE",
            "AGE"
        ]
    );
    let row: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(&row[..2], ["rollout-canary", "5"]);
}

#[tokio::test]
async fn get_watch_prints_changes_as_they_happen() {
    let Some(upstream) = compat::argo_rollouts() else {
        return;
    };
    let cluster = Cluster::start().await.with_crds_and_canary(&upstream).await;
    let mut child = cluster
        .command(&["get", "rollouts", "-w"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut read_line = async || {
        tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("kubectl printed a line within 20s")
            .expect("kubectl output is readable")
            .expect("kubectl is still running")
    };
    let header = read_line().await;
    assert!(header.starts_with("NAME"), "{header}");
    let first = read_line().await;
    assert!(first.starts_with("rollout-canary"), "{first}");
    cluster
        .rollouts()
        .patch(
            "rollout-canary",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 2}})),
        )
        .await
        .unwrap();
    let changed = read_line().await;
    let cells: Vec<&str> = changed.split_whitespace().collect();
    assert_eq!(&cells[..2], ["rollout-canary", "2"], "{changed}");
    child.kill().await.unwrap();
}

#[tokio::test]
async fn patch_merge_and_json_then_delete() {
    let Some(upstream) = compat::argo_rollouts() else {
        return;
    };
    let cluster = Cluster::start().await.with_crds_and_canary(&upstream).await;
    let out = cluster
        .ok(&[
            "patch",
            "ro",
            "rollout-canary",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"replicas":2}}"#,
        ])
        .await;
    assert_eq!(out.trim(), "rollout.argoproj.io/rollout-canary patched");
    let out = cluster
        .ok(&[
            "patch",
            "ro",
            "rollout-canary",
            "--type",
            "json",
            "-p",
            r#"[{"op":"replace","path":"/spec/replicas","value":3}]"#,
        ])
        .await;
    assert_eq!(out.trim(), "rollout.argoproj.io/rollout-canary patched");
    let replicas = cluster
        .ok(&[
            "get",
            "ro",
            "rollout-canary",
            "-o",
            "jsonpath={.spec.replicas}",
        ])
        .await;
    assert_eq!(replicas, "3");
    let log = cluster.sim.request_log().writes_to("rollouts");
    let types: Vec<String> = log.iter().filter_map(|e| e.patch_type.clone()).collect();
    assert_eq!(types, ["merge", "json"]);

    let out = cluster.ok(&["delete", "ro", "rollout-canary"]).await;
    assert_eq!(out.trim(), "rollout.argoproj.io \"rollout-canary\" deleted");
    let (ok, _, stderr) = cluster.run(&["get", "ro", "rollout-canary"]).await;
    assert!(!ok);
    assert!(
        stderr.contains("rollouts.argoproj.io \"rollout-canary\" not found"),
        "{stderr}"
    );
}

#[tokio::test]
async fn wait_for_a_condition_set_through_the_status_subresource() {
    let Some(upstream) = compat::argo_rollouts() else {
        return;
    };
    let cluster = Cluster::start().await.with_crds_and_canary(&upstream).await;
    let waiter = cluster
        .command(&[
            "wait",
            "--for=condition=Available",
            "ro/rollout-canary",
            "--timeout=30s",
        ])
        .output();
    let waiter = tokio::spawn(waiter);
    let status = json!({"status": {"conditions": [{
        "type": "Available", "status": "True", "reason": "AvailableReason", "message": "Rollout has minimum availability",
        "lastTransitionTime": "2026-01-01T00:00:00Z", "lastUpdateTime": "2026-01-01T00:00:00Z",
    }]}});
    cluster
        .rollouts()
        .patch_status(
            "rollout-canary",
            &PatchParams::default(),
            &Patch::Merge(status),
        )
        .await
        .unwrap();
    let output = waiter.await.unwrap().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        stdout.trim(),
        "rollout.argoproj.io/rollout-canary condition met"
    );
}

#[tokio::test]
async fn create_namespace_and_raw_discovery() {
    let cluster = Cluster::start().await;
    let out = cluster.ok(&["create", "ns", "team-a"]).await;
    assert_eq!(out.trim(), "namespace/team-a created");
    let namespaces = cluster.ok(&["get", "ns"]).await;
    assert!(
        namespaces
            .lines()
            .any(|l| l.starts_with("team-a") && l.contains("Active")),
        "{namespaces}"
    );
    let raw = cluster.ok(&["get", "--raw", "/apis"]).await;
    let groups: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(groups["kind"], json!("APIGroupList"));
    let version = cluster.ok(&["version", "-o", "json"]).await;
    assert!(version.contains("\"serverVersion\""), "{version}");
}

#[tokio::test]
async fn apply_and_reapply_a_builtin_workload() {
    let cluster = Cluster::start().await;
    let dir = cluster.cache.parent().unwrap().join("manifests");
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = |image: &str| {
        format!(
            "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata:\n  name: web\n  labels:\n    app: web\nspec:\n  replicas: 2\n  selector:\n    matchLabels:\n      app: web\n  template:\n    metadata:\n      labels:\n        app: web\n    spec:\n      containers:\n      - name: app\n        image: {image}\n        ports:\n        - containerPort: 8080\n"
        )
    };
    let path = dir.join("rs.yaml");
    std::fs::write(&path, manifest("app:1")).unwrap();
    let path = path.to_str().unwrap();
    assert_eq!(
        cluster.ok(&["apply", "-f", path]).await.trim(),
        "replicaset.apps/web created"
    );
    std::fs::write(path, manifest("app:2")).unwrap();
    assert_eq!(
        cluster.ok(&["apply", "-f", path]).await.trim(),
        "replicaset.apps/web configured"
    );
    let image = cluster
        .ok(&[
            "get",
            "rs",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ])
        .await;
    assert_eq!(image, "app:2");
    let generation = cluster
        .ok(&["get", "rs", "web", "-o", "jsonpath={.metadata.generation}"])
        .await;
    assert_eq!(generation, "2");
}

#[tokio::test]
async fn a_replicaset_applied_with_kubectl_gets_ready_pods() {
    let config = SimConfig {
        traffic_enabled: false,
        ..SimConfig::default()
    };
    let sim = Sim::start(config).await.expect("sim starts");
    let cache = sim
        .kubeconfig_path()
        .parent()
        .expect("kubeconfig dir")
        .join("kube-cache");
    let cluster = Cluster { sim, cache };
    let manifest = cluster.cache.parent().unwrap().join("web-rs.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata:\n  name: web\nspec:\n  replicas: 3\n  selector:\n    matchLabels:\n      app: web\n  template:\n    metadata:\n      labels:\n        app: web\n    spec:\n      containers:\n      - name: app\n        image: app:1\n",
    )
    .unwrap();
    cluster
        .ok(&["apply", "-f", manifest.to_str().unwrap()])
        .await;
    let out = cluster
        .ok(&[
            "wait",
            "--for=jsonpath={.status.readyReplicas}=3",
            "rs/web",
            "--timeout=30s",
        ])
        .await;
    assert_eq!(out.trim(), "replicaset.apps/web condition met");
    let pods = cluster
        .ok(&[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[*].status.phase}",
        ])
        .await;
    assert_eq!(
        pods.split_whitespace().collect::<Vec<_>>(),
        ["Running", "Running", "Running"]
    );
    let out = cluster.ok(&["delete", "rs", "web"]).await;
    assert_eq!(out.trim(), "replicaset.apps \"web\" deleted");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left = cluster
            .ok(&["get", "pods", "-l", "app=web", "-o", "name"])
            .await;
        if left.trim().is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "pods were not garbage-collected: {left}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
