//! The pod faults tests ask for with `sim.ramp.dev/*` annotations, checked with the same
//! assertions on whichever tier runs: ramp-sim's kubelet simulator, or the real control plane's
//! kube-controller-manager, scheduler and kwok Stages (tools/cluster/stages.yaml).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams};
use ramp_sim::SimConfig;
use ramp_sim::testing::eventually;
use ramp_sim::tier::{TestCluster, test_namespace};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

async fn cluster() -> TestCluster {
    TestCluster::start(SimConfig::default(), [])
        .await
        .expect("a cluster")
}

async fn replica_set(cluster: &TestCluster, name: &str, annotations: Value) {
    let rs: ReplicaSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": test_namespace()},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}, "annotations": annotations},
                "spec": {"containers": [{"name": "web", "image": "web:v1"}]}
            }
        }
    }))
    .unwrap();
    Api::<ReplicaSet>::namespaced(cluster.client(), test_namespace())
        .create(&PostParams::default(), &rs)
        .await
        .expect("ReplicaSet created");
}

/// The pod of `app` once `check` holds for it.
async fn pod_of(cluster: &TestCluster, app: &str, what: &str, check: impl Fn(&Pod) -> bool) -> Pod {
    let pods = Api::<Pod>::namespaced(cluster.client(), test_namespace());
    let check = &check;
    eventually(&format!("pod of {app} {what}"), 30, || {
        let pods = pods.clone();
        async move {
            pods.list(&ListParams::default().labels(&format!("app={app}")))
                .await
                .ok()?
                .items
                .into_iter()
                .find(|pod| check(pod))
        }
    })
    .await
}

fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

fn waiting_reason(pod: &Pod) -> Option<String> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()?
        .state
        .as_ref()?
        .waiting
        .as_ref()?
        .reason
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_is_ready_after_the_delay_it_asks_for() {
    let cluster = cluster().await;
    let created = Instant::now();
    replica_set(&cluster, "slow", json!({"sim.ramp.dev/ready-after": "2s"})).await;
    pod_of(&cluster, "slow", "Ready", ready).await;
    assert!(
        created.elapsed() >= Duration::from_secs(2),
        "ready after {:?}, asked for 2 s",
        created.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_ready_crash_loop_and_image_pull_failures_look_as_a_kubelet_reports_them() {
    let cluster = cluster().await;
    replica_set(&cluster, "fine", json!({})).await;
    replica_set(
        &cluster,
        "never",
        json!({"sim.ramp.dev/never-ready": "true"}),
    )
    .await;
    replica_set(
        &cluster,
        "crash",
        json!({"sim.ramp.dev/crash-loop": "true"}),
    )
    .await;
    replica_set(
        &cluster,
        "pull",
        json!({"sim.ramp.dev/image-pull-failure": "true"}),
    )
    .await;

    // A healthy pod of the same age is Ready: the others have had their chance.
    pod_of(&cluster, "fine", "Ready", ready).await;
    let never = pod_of(&cluster, "never", "Running", |p| phase(p) == "Running").await;
    assert!(!ready(&never));
    let crash = pod_of(&cluster, "crash", "in CrashLoopBackOff", |p| {
        waiting_reason(p).as_deref() == Some("CrashLoopBackOff")
    })
    .await;
    assert!(!ready(&crash));
    assert_eq!(phase(&crash), "Running");
    let pull = pod_of(&cluster, "pull", "in ImagePullBackOff", |p| {
        waiting_reason(p).as_deref() == Some("ImagePullBackOff")
    })
    .await;
    assert_eq!(phase(&pull), "Pending");
    assert!(!ready(&pull));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_succeed_or_fail_as_their_pods_are_told() {
    let cluster = cluster().await;
    let jobs = Api::<Job>::namespaced(cluster.client(), test_namespace());
    for (name, result) in [("passes", "succeed"), ("fails", "fail")] {
        let job: Job = serde_json::from_value(json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": test_namespace()},
            "spec": {
                "backoffLimit": 0,
                "template": {
                    "metadata": {"annotations": {
                        "sim.ramp.dev/job-result": result, "sim.ramp.dev/job-duration": "500ms"
                    }},
                    "spec": {"restartPolicy": "Never", "containers": [{"name": "check", "image": "check:v1"}]}
                }
            }
        }))
        .unwrap();
        jobs.create(&PostParams::default(), &job).await.unwrap();
    }
    let condition = |job: &Job, type_: &str| {
        job.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .any(|c| c.type_ == type_ && c.status == "True")
    };
    ramp_sim::testing::eventually_object(&jobs, "passes", "Job passes Complete", 30, |j| {
        condition(j, "Complete")
    })
    .await;
    let failed =
        ramp_sim::testing::eventually_object(&jobs, "fails", "Job fails Failed", 30, |j| {
            condition(j, "Failed")
        })
        .await;
    assert!(!condition(&failed, "Complete"));
}
