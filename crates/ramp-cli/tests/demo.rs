//! `ramp demo` end to end: the binary runs the whole scenario and exits 0 only when the objects
//! show v2 promoted, and the broken v3 and the failing v4 aborted back to v2. On ramp-sim it
//! runs on its own in-process cluster, as a user runs it; on the real tier (`RAMP_TEST_CLUSTER`)
//! on the real control plane, in the test's namespace (`--kubeconfig`), where it must also leave
//! none of its objects behind. Further tests take the `--kubeconfig` path on either tier.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use assert_cmd::Command;
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use ramp_api::analysis::AnalysisTemplate;
use ramp_api::rollout::Rollout;
use ramp_sim::SimConfig;
use ramp_sim::testing::eventually;
use ramp_sim::tier::{TestCluster, real_cluster_dir};
use std::process::Output;
use std::time::{Duration, Instant};

/// The tour's time bound. The default `--timeout-seconds` (55) gives up before it, so a slow
/// run fails with the step it was waiting for rather than with this bound.
const WITHIN: Duration = Duration::from_secs(60);

/// Where a test's demo runs: on ramp-sim the demo's own in-process cluster (no cluster here);
/// on the real tier the test's namespace of the real control plane.
async fn tier() -> Option<TestCluster> {
    real_cluster_dir()?;
    // The demo installs what is missing and runs its own traffic simulator.
    Some(TestCluster::start(SimConfig::api_only(), []).await.unwrap())
}

/// `ramp demo` with `args`, pointed at `cluster` when there is one; the output and how long
/// it took.
async fn run_demo(cluster: Option<&TestCluster>, args: &[&str]) -> (Output, Duration) {
    let mut command = Command::cargo_bin("ramp").expect("ramp binary built");
    command
        .arg("demo")
        .args(args)
        .timeout(Duration::from_secs(90));
    if let Some(cluster) = cluster {
        command.arg("--kubeconfig").arg(cluster.kubeconfig_path());
    }
    let started = Instant::now();
    let output = tokio::task::spawn_blocking(move || command.output().expect("ramp demo runs"))
        .await
        .unwrap();
    (output, started.elapsed())
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Checks the demo succeeded within [`WITHIN`]; its standard output.
fn succeeded(output: &Output, took: Duration) -> String {
    let stdout = stdout(output);
    assert!(
        output.status.success(),
        "ramp demo failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(took < WITHIN, "took {took:?}");
    stdout
}

/// On an existing cluster: the demo said it cleaned up, and none of `kinds` named `names` is
/// left in the namespace.
async fn cleaned_up(cluster: &TestCluster, stdout: &str, objects: &[(ApiResource, &str)]) {
    assert!(
        stdout.contains("\ncleaned up: deleted Rollout demo"),
        "{stdout}"
    );
    for (resource, name) in objects {
        let api =
            Api::<DynamicObject>::namespaced_with(cluster.client(), cluster.namespace(), resource);
        assert!(
            api.get_opt(name).await.unwrap().is_none(),
            "{} {name} left behind",
            resource.kind
        );
    }
}

fn canary_objects() -> Vec<(ApiResource, &'static str)> {
    vec![
        (ApiResource::erase::<Rollout>(&()), "demo"),
        (ApiResource::erase::<Service>(&()), "demo-stable"),
        (ApiResource::erase::<Service>(&()), "demo-canary"),
        (
            ApiResource::erase::<AnalysisTemplate>(&()),
            "demo-success-rate",
        ),
        (
            ramp_controller::traffic::IstioApiVersion::V1alpha3.virtual_service_resource(),
            "demo-vsvc",
        ),
    ]
}

/// Runs `ramp demo` with `args` and checks it finished, within a minute, with the live view
/// showing the weights, the analysis passing for v2 and failing for v4, and both aborts.
async fn canary_demo(args: &[&str]) -> String {
    let cluster = tier().await;
    let (output, took) = run_demo(cluster.as_ref(), args).await;
    let stdout = succeeded(&output, took);
    for expected in [
        "canary  20 %",
        "canary  50 %",
        "canary  80 %",
        // (A first measurement may be an Error while Prometheus has too few samples.)
        "-2-1 Successful: [",
        "has timed out progressing",
        "-4-1 Failed: [",
        "Step-based analysis phase failed: Metric \"success-rate\" assessed Failed",
        "demo finished: v2 promoted to 100 %, broken v3 and failing v4 aborted, traffic on v2",
    ] {
        assert!(
            stdout.contains(expected),
            "live view never showed {expected:?}:\n{stdout}"
        );
    }
    // v3's pods never became ready (kwok honours the annotation as ramp-sim does).
    assert!(!stdout.contains("rev3 1/1"), "{stdout}");
    if let Some(cluster) = &cluster {
        cleaned_up(cluster, &stdout, &canary_objects()).await;
    }
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_promotes_v2_then_aborts_the_broken_v3_and_the_failing_v4_within_a_minute() {
    let stdout = canary_demo(&[]).await;
    // This machine has Prometheus (the test command installs it), so `auto` uses it.
    assert!(
        stdout.contains("success-rate gate: Prometheus at"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_without_prometheus_gates_on_the_web_provider() {
    let stdout = canary_demo(&["--metrics", "web"]).await;
    assert!(
        stdout.contains("success-rate gate: the web provider reads http://127.0.0.1:"),
        "{stdout}"
    );
}

/// The blue-green view's checks: preview and active on different revisions while paused, the
/// two preview pods next to v1's four, the switch, and v1 going away.
fn bluegreen_shown(stdout: &str) {
    for expected in [
        "BlueGreenPause",
        "rev1 4/4, rev2 2/2",
        "Switched selector for service 'demo-preview' from '",
        "Scaled up ReplicaSet",
        "from 2 to 4",
        "Completed blue-green update",
        "Scaled down ReplicaSet",
        "pods rev2 4/4 ",
        "demo finished: v2 previewed, promoted by hand",
    ] {
        assert!(
            stdout.contains(expected),
            "live view never showed {expected:?}:\n{stdout}"
        );
    }
    let paused_line = stdout
        .lines()
        .find(|l| {
            // A view line, not the RolloutPaused event printed under one.
            !l.trim_start().starts_with("event:")
                && l.contains("Paused")
                && l.contains("BlueGreenPause")
        })
        .expect("a paused line");
    assert!(
        paused_line.contains("active rev1") && paused_line.contains("preview rev2"),
        "{paused_line}"
    );
    // The active service moved exactly once after v1's deploy: at the promotion, to v2.
    let active_switches: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("Switched selector for service 'demo-active'"))
        .collect();
    assert_eq!(active_switches.len(), 2, "{stdout}");
    assert!(active_switches[0].contains("from ''"), "{stdout}");
    assert!(!active_switches[1].contains("from ''"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_bluegreen_previews_v2_promotes_it_and_scales_v1_down_within_a_minute() {
    let cluster = tier().await;
    let (output, took) = run_demo(cluster.as_ref(), &["bluegreen"]).await;
    let stdout = succeeded(&output, took);
    bluegreen_shown(&stdout);
    if let Some(cluster) = &cluster {
        let objects = [
            (ApiResource::erase::<Rollout>(&()), "demo"),
            (ApiResource::erase::<Service>(&()), "demo-active"),
            (ApiResource::erase::<Service>(&()), "demo-preview"),
        ];
        cleaned_up(cluster, &stdout, &objects).await;
    }
}

/// A cluster of the test's tier for the `--kubeconfig` path: on ramp-sim one without Ramp's
/// CRDs or traffic (the demo installs the first and runs the second).
async fn existing_cluster() -> TestCluster {
    let config = SimConfig {
        traffic_enabled: false,
        ..SimConfig::default()
    };
    TestCluster::start(config, []).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_on_a_cluster_installs_missing_crds_works_in_a_namespace_of_its_own_and_deletes_it() {
    let cluster = existing_cluster().await;
    let namespace = format!("{}-demo", cluster.namespace());
    let (output, took) = run_demo(Some(&cluster), &["bluegreen", "--namespace", &namespace]).await;
    let stdout = succeeded(&output, took);
    bluegreen_shown(&stdout);
    assert!(
        stdout.contains(&format!("namespace {namespace} (created for the demo)")),
        "{stdout}"
    );
    if cluster.is_real() {
        // The real tier's CRDs (Ramp's, applied as users do) are kept as they are.
        assert!(
            stdout.contains("installed no CRD (all were installed already)"),
            "{stdout}"
        );
    } else {
        assert!(stdout.contains("installed the CRDs, services"), "{stdout}");
    }
    assert!(
        stdout.contains(&format!(
            "cleaned up: deleted namespace {namespace} (created for the demo); the CRDs stay"
        )),
        "{stdout}"
    );
    let namespaces = Api::<Namespace>::all(cluster.client());
    eventually(&format!("namespace {namespace} deleted"), 30, || {
        let namespaces = namespaces.clone();
        let namespace = namespace.clone();
        async move {
            namespaces
                .get_opt(&namespace)
                .await
                .unwrap()
                .is_none()
                .then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_run_again_in_the_same_namespace_narrates_only_its_own_rollouts_events() {
    let cluster = existing_cluster().await;
    let (output, took) = run_demo(Some(&cluster), &["bluegreen"]).await;
    succeeded(&output, took);
    // The first run's events about its Rollout `demo` stay in the namespace (they expire on
    // their own); the second Rollout of that name must not show them as its own.
    let (output, took) = run_demo(Some(&cluster), &["bluegreen"]).await;
    let stdout = succeeded(&output, took);
    bluegreen_shown(&stdout);
    let v1 = stdout
        .split("\n== ")
        .find(|section| section.starts_with("v1: initial deploy"))
        .expect("a v1 section");
    assert!(!v1.contains("revision 2"), "{v1}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_on_a_cluster_refuses_a_namespace_holding_its_objects_and_leaves_them_alone() {
    let cluster = existing_cluster().await;
    let services = Api::<Service>::namespaced(cluster.client(), cluster.namespace());
    let theirs: Service = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "demo-canary", "labels": {"owner": "someone-else"}},
        "spec": {"ports": [{"port": 80}]}
    }))
    .unwrap();
    services
        .create(&PostParams::default(), &theirs)
        .await
        .unwrap();

    let (output, _) = run_demo(Some(&cluster), &[]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{}", stdout(&output));
    assert!(
        stderr.contains(&format!(
            "demo failed: namespace {} already holds Service demo-canary, one of the demo's \
             objects: delete it, or choose another namespace with --namespace",
            cluster.namespace()
        )),
        "{stderr}"
    );
    // Nothing was created, and theirs is untouched.
    let kept = services.get("demo-canary").await.unwrap();
    assert_eq!(kept.metadata.labels.unwrap()["owner"], "someone-else");
    for (resource, name) in canary_objects() {
        if name == "demo-canary" {
            continue;
        }
        let api =
            Api::<DynamicObject>::namespaced_with(cluster.client(), cluster.namespace(), &resource);
        // A kind not served (no CRDs on this sim) reads as absent too.
        assert!(
            api.get_opt(name).await.unwrap_or(None).is_none(),
            "{name} created"
        );
    }
}

#[test]
fn demo_namespace_without_a_cluster_is_refused() {
    let output = Command::cargo_bin("ramp")
        .expect("ramp binary built")
        .args(["demo", "--namespace", "elsewhere"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains("--namespace needs --kubeconfig or --context"),
        "{output:?}"
    );
}
