//! `--namespaced` and `--instance-id` on ramp-sim: a controller reconciles only the rollouts of
//! its namespace and instance, and leaves the others (and their series) alone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod canary_support;
mod ops_support;

use canary_support::{Cluster, ns, rollout_manifest};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use ramp_api::rollout::Rollout;
use ramp_controller::ops::WatchScope;
use ramp_controller::ops::scope::INSTANCE_ID_LABEL;
use serde_json::{Value, json};

use ops_support::RunningController;

fn manifest(name: &str, namespace: &str, instance: Option<&str>) -> Value {
    let mut manifest = rollout_manifest(name, 1, json!({"steps": [{"setWeight": 50}]}));
    manifest["metadata"]["namespace"] = json!(namespace);
    if let Some(id) = instance {
        manifest["metadata"]["labels"] = json!({ INSTANCE_ID_LABEL: id });
    }
    manifest
}

async fn status_of(cluster: &Cluster, namespace: &str, name: &str) -> Option<String> {
    Api::<Rollout>::namespaced(cluster.client.clone(), namespace)
        .get(name)
        .await
        .unwrap()
        .status
        .and_then(|s| s.phase)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controllers_reconcile_only_their_namespace_and_instance() {
    let cluster = Cluster::start().await;
    // Another namespace: on the real tier, one of this test's own, next to its namespace.
    let elsewhere = &format!("{}-elsewhere", ns()).replace("default-", "");
    let namespace: Namespace =
        serde_json::from_value(json!({"metadata": {"name": elsewhere}})).unwrap();
    Api::<Namespace>::all(cluster.client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap();
    for (name, namespace, instance) in [
        ("plain", ns(), None),
        ("blue", ns(), Some("blue")),
        ("remote", elsewhere, None),
    ] {
        let rollout: Rollout = serde_json::from_value(manifest(name, namespace, instance)).unwrap();
        Api::<Rollout>::namespaced(cluster.client.clone(), namespace)
            .create(&PostParams::default(), &rollout)
            .await
            .unwrap();
    }

    // The default instance, namespaced to `default`.
    let namespaced = RunningController::start_with(
        &cluster.sim,
        "namespaced",
        None,
        WatchScope {
            namespace: Some(ns().to_owned()),
            instance_id: None,
        },
    );
    cluster.wait_healthy("plain", 30).await;
    // All three existed before the controller's first list: by the time `plain` is healthy,
    // the others were seen (or filtered out) too.
    assert_eq!(status_of(&cluster, ns(), "blue").await, None);
    assert_eq!(status_of(&cluster, elsewhere, "remote").await, None);
    let body = namespaced.metrics.render();
    assert!(body.contains(&format!(
        r#"rollout_info{{namespace="{}",name="plain""#,
        ns()
    )));
    assert!(!body.contains(r#"name="blue""#) && !body.contains(r#"name="remote""#));

    // Instance `blue`, every namespace.
    let blue = RunningController::start_with(
        &cluster.sim,
        "blue",
        None,
        WatchScope {
            namespace: None,
            instance_id: Some("blue".to_owned()),
        },
    );
    cluster.wait_healthy("blue", 30).await;
    assert_eq!(status_of(&cluster, elsewhere, "remote").await, None);
    let touched_by_blue: Vec<String> = blue
        .writes
        .controller_writes()
        .into_iter()
        .map(|w| w.path)
        .filter(|p| p.contains("/rollouts/") || p.contains("/replicasets"))
        .collect();
    assert!(
        touched_by_blue
            .iter()
            .all(|p| p.contains("/rollouts/blue") || p.contains(&format!("/namespaces/{}/", ns()))),
        "{touched_by_blue:?}"
    );
    assert!(
        !touched_by_blue
            .iter()
            .any(|p| p.contains("/rollouts/plain")),
        "{touched_by_blue:?}"
    );
    assert!(
        !namespaced.writes.controller_writes().iter().any(
            |w| w.path.contains("/rollouts/blue") || w.path.contains(&format!("/{elsewhere}/"))
        ),
        "the namespaced default instance wrote to another instance's or namespace's objects"
    );
}
