//! End to end, on ramp-sim and on the real control plane: a Rollout whose pod template the API
//! server would refuse in a ReplicaSet (a container without an image) goes InvalidSpec with
//! the server's wording, and the controller creates no ReplicaSet for it; setting an image
//! clears the condition and the rollout becomes Healthy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod canary_support;

use canary_support::*;
use ramp_sim::LoggedRequest;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_without_an_image_is_invalid_spec_until_it_has_one() {
    let mut cluster = Cluster::start().await;
    cluster
        .create_services(&["web-stable", "web-canary"], "web")
        .await;
    cluster.start_controller();
    let checkpoint = cluster.sim.request_log().len();
    let mut manifest = rollout_manifest(
        "web",
        2,
        json!({"canaryService": "web-canary", "stableService": "web-stable",
               "steps": [{"setWeight": 50}, {"pause": {"duration": "1s"}}]}),
    );
    manifest["spec"]["template"]["spec"]["containers"] = json!([{"name": "web"}]);
    cluster.create_rollout(manifest).await;

    let invalid = cluster
        .wait_rollout("web", "InvalidSpec condition and phase Degraded", 20, |r| {
            let status = r.status.clone().unwrap_or_default();
            status.phase.as_deref() == Some("Degraded")
                && status
                    .condition("InvalidSpec")
                    .is_some_and(|c| c.status == "True")
        })
        .await;
    let condition = invalid
        .status
        .as_ref()
        .and_then(|s| s.condition("InvalidSpec"))
        .unwrap();
    assert_eq!(
        condition.message,
        r#"The Rollout "web" is invalid: spec.template.spec.containers[0].image: Required value"#
    );
    // The status write above shows the controller has reconciled the rollout; once its writes
    // have settled, none of them touched a ReplicaSet.
    let writes = controller_writes(&cluster.sim, checkpoint);
    let replica_set_writes: Vec<String> = writes
        .iter()
        .filter(|w| w.resource == "replicasets")
        .map(LoggedRequest::summary)
        .collect();
    assert_eq!(replica_set_writes, Vec::<String>::new());
    assert!(cluster.replica_sets().await.is_empty());

    cluster.set_image("web", "web:v1").await;
    let healthy = cluster.wait_healthy("web", 30).await;
    assert!(
        healthy
            .status
            .as_ref()
            .and_then(|s| s.condition("InvalidSpec"))
            .is_none(),
        "{:#?}",
        healthy.status
    );
}
