//! End to end on ramp-sim: going back to an earlier revision whose pods are gone. Within the
//! rollback window the steps are skipped, but traffic still waits for the old revision's pods
//! to be available again: no weight reaches a ReplicaSet before its pods can serve it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod canary_support;

use canary_support::*;
use pretty_assertions::assert_eq;
use ramp_sim::LoggedRequest;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_within_the_window_to_scaled_down_pods_waits_for_them_before_any_traffic() {
    let mut cluster = Cluster::start().await;
    cluster
        .create_services(&["web-stable", "web-canary"], "web")
        .await;
    cluster
        .create_virtual_service("web-vsvc", "web-stable", "web-canary")
        .await;
    cluster.start_controller();
    let mut manifest = rollout_manifest(
        "web",
        3,
        json!({
            "canaryService": "web-canary",
            "stableService": "web-stable",
            "scaleDownDelaySeconds": 1,
            "trafficRouting": {"istio": {"virtualService": {"name": "web-vsvc", "routes": ["primary"]}}},
            "steps": [{"setWeight": 20}, {"pause": {"duration": "1s"}}, {"setWeight": 60}]
        }),
    );
    manifest["spec"]["rollbackWindow"] = json!({"revisions": 1});
    cluster.create_rollout(manifest).await;
    let v1 = cluster.wait_healthy("web", 20).await;
    let v1_rs = current_rs(&v1);
    cluster.set_image("web", "web:v2").await;
    eventually("v2 stable and v1's pods gone", 30, || async {
        let r = cluster.rollout("web").await;
        let s = r.status.clone()?;
        let v1_gone = cluster.replica_sets().await.iter().any(|rs| {
            rs.metadata.name.as_deref() == Some(v1_rs.as_str())
                && rs.spec.replicas == Some(0)
                && rs.status.as_ref().is_some_and(|s| s.replicas == 0)
        });
        (s.phase.as_deref() == Some("Healthy")
            && s.stable_rs != v1.status.clone()?.stable_rs
            && v1_gone)
            .then_some(())
    })
    .await;
    let vs_before =
        serde_json::to_value(cluster.virtual_services().get("web-vsvc").await.unwrap()).unwrap();

    let checkpoint = cluster.sim.request_log().len();
    // Back to v1's exact template, as `kubectl argo rollouts undo` writes it.
    let template = serde_json::to_value(v1.spec.template.clone().unwrap()).unwrap();
    cluster
        .rollouts()
        .patch(
            "web",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Json::<()>(
                serde_json::from_value(json!([
                    {"op": "replace", "path": "/spec/template", "value": template}
                ]))
                .unwrap(),
            ),
        )
        .await
        .unwrap();
    let back = cluster
        .wait_rollout("web", "back on v1", 30, |r| {
            let s = r.status.clone().unwrap_or_default();
            s.phase.as_deref() == Some("Healthy")
                && s.stable_rs.as_deref() == Some(v1_rs.trim_start_matches("web-"))
                && s.replicas == Some(3)
        })
        .await;
    assert_eq!(current_rs(&back), v1_rs, "the old ReplicaSet is reused");
    let writes = controller_writes(&cluster.sim, checkpoint);
    let summaries: Vec<String> = writes.iter().map(LoggedRequest::summary).collect();
    let weights = canary_weights(&writes, "web-vsvc", &vs_before, "web-canary");
    assert_eq!(weights.last(), Some(&0), "{summaries:#?}");
    assert!(
        !writes
            .iter()
            .any(|w| w.resource == "replicasets" && w.verb == ramp_sim::Verb::Create),
        "the old ReplicaSet is scaled up again, not recreated: {summaries:#?}"
    );
    // Every canary weight written was servable by v1's available pods at that moment.
    let all: Vec<LoggedRequest> = cluster
        .sim
        .request_log()
        .since_settled(checkpoint, std::time::Duration::from_secs(2))
        .into_iter()
        .filter(|w| w.succeeded())
        .collect();
    for (i, w) in all.iter().enumerate() {
        if w.resource != "virtualservices" {
            continue;
        }
        let weight = w
            .body
            .as_ref()
            .and_then(|b| b.as_array().cloned())
            .into_iter()
            .flatten()
            .find(|op| op["path"] == "/spec/http/0/route/1/weight")
            .and_then(|op| op["value"].as_i64());
        let Some(weight) = weight else { continue };
        let available = available_before(&all[..i], &v1_rs);
        assert!(
            weight * 3 <= available * 100 || weight == 0,
            "{weight} % written with {available} available v1 pods:\n{summaries:#?}"
        );
    }
}
