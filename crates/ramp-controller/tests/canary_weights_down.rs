//! End to end: a step that lowers the canary weight. Upstream simply writes the lower weight
//! and shrinks the canary; Ramp used to wait for the smaller canary before writing the lower
//! weight while keeping the pods the higher weight needed, and hung. Each router (Istio host
//! split, Istio subset split, NGINX) must write the lower weight first, then scale the canary
//! down, then finish the steps — asserted on the exact sequence of writes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod canary_support;

use canary_support::*;
use pretty_assertions::assert_eq;
use ramp_api::rollout::Rollout;
use ramp_sim::LoggedRequest;
use serde_json::{Value, json};

fn summaries(writes: &[LoggedRequest]) -> Vec<String> {
    writes.iter().map(LoggedRequest::summary).collect()
}

/// Up to 99 %, down to 2 %, each held for a second.
fn down_steps() -> Value {
    json!([
        {"setWeight": 99}, {"pause": {"duration": "1s"}},
        {"setWeight": 2}, {"pause": {"duration": "1s"}}
    ])
}

/// Waits until the update from `v1` is promoted and the old pods are gone.
async fn wait_promoted(cluster: &Cluster, v1: &Rollout, replicas: i32) -> Rollout {
    let old_stable = v1.status.as_ref().and_then(|s| s.stable_rs.clone());
    cluster
        .wait_rollout(
            "web",
            "the update through a lower weight fully promoted and the old pods gone",
            60,
            |r| {
                let s = r.status.clone().unwrap_or_default();
                s.phase.as_deref() == Some("Healthy")
                    && s.stable_rs.is_some()
                    && s.stable_rs != old_stable
                    && s.current_pod_hash == s.stable_rs
                    && s.replicas == Some(replicas)
            },
        )
        .await
}

fn is_scale_to(write: &LoggedRequest, rs: &str, replicas: i64) -> bool {
    write.resource == "replicasets"
        && write.name.as_deref() == Some(rs)
        && write
            .body
            .as_ref()
            .is_some_and(|b| b["spec"]["replicas"] == replicas)
}

/// The status a rollout status write carries (a merge body or a JSON patch of `/status`).
fn written_status(write: &LoggedRequest) -> Value {
    match write.body.as_ref() {
        Some(Value::Array(ops)) => ops
            .iter()
            .find(|op| op["path"] == "/status")
            .map(|op| op["value"].clone())
            .unwrap_or(Value::Null),
        Some(other) => other["status"].clone(),
        None => Value::Null,
    }
}

/// Index of the first status write of the rollout that moves past step `index` (0-based).
fn step_done_at(writes: &[LoggedRequest], index: i64) -> usize {
    position(
        writes,
        &format!("of a status past step {}", index + 1),
        |w| {
            w.resource == "rollouts"
                && w.subresource.as_deref() == Some("status")
                && written_status(w)["currentStepIndex"]
                    .as_i64()
                    .is_some_and(|i| i > index)
        },
    )
}

/// The canary weight of the first HTTP route after each write of VirtualService `name`, the
/// canary destination found by `destination.<key> == value`, with the write's index.
fn vs_weights(
    writes: &[LoggedRequest],
    name: &str,
    initial: &Value,
    key: &str,
    value: &str,
) -> Vec<(usize, i64)> {
    let mut vs = initial.clone();
    let mut weights = Vec::new();
    for (index, write) in writes.iter().enumerate() {
        if write.resource != "virtualservices" || write.name.as_deref() != Some(name) {
            continue;
        }
        let ops: Vec<Value> = serde_json::from_value(write.body.clone().unwrap()).unwrap();
        let ops: Vec<Value> = ops
            .into_iter()
            .filter(|op| !op["path"].as_str().unwrap_or("").starts_with("/metadata/"))
            .collect();
        let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops)).unwrap();
        json_patch::patch(&mut vs, &patch).expect("the logged patch applies to the replay");
        let weight = vs["spec"]["http"][0]["route"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|d| d["destination"][key] == value)
            .and_then(|d| d["weight"].as_i64())
            .unwrap_or(0);
        weights.push((index, weight));
    }
    weights
}

/// The order every router must follow for `down_steps`, given each weight write's index:
/// 99 % after the canary is whole, 2 % before the canary shrinks, the 2 % step counted done
/// only after its write, and the way back up to 100 % only once the canary is whole again.
fn assert_down_order(
    writes: &[LoggedRequest],
    weights: &[(usize, i64)],
    canary_rs: &str,
    stable_rs: &str,
    full: i64,
    small: i64,
) {
    let s = summaries(writes);
    assert_eq!(
        weights.iter().map(|(_, w)| *w).collect::<Vec<_>>(),
        vec![99, 2, 100, 0],
        "{s:#?}"
    );
    assert_eq!(
        replica_writes(writes),
        vec![
            (canary_rs.to_owned(), 0),
            (canary_rs.to_owned(), full),
            (canary_rs.to_owned(), small),
            (canary_rs.to_owned(), full),
            (stable_rs.to_owned(), 0),
        ],
        "{s:#?}"
    );
    let at = |weight: i64| weights.iter().find(|(_, w)| *w == weight).unwrap().0;
    let scale = |to: i64, after: usize| {
        writes
            .iter()
            .enumerate()
            .skip(after)
            .find(|(_, w)| is_scale_to(w, canary_rs, to))
            .map(|(i, _)| i)
            .unwrap_or_else(|| panic!("no scale of the canary to {to} after #{after}: {s:#?}"))
    };
    let grown = scale(full, 0);
    assert!(grown < at(99), "99 % before the canary grew: {s:#?}");
    let shrunk = scale(small, at(99));
    // Traffic leaves the canary before its pods do.
    assert!(
        at(2) < shrunk,
        "canary shrank before its traffic left: {s:#?}"
    );
    // The 2 % step (index 2) is done only once 2 % was written.
    assert!(at(2) < step_done_at(writes, 2), "{s:#?}");
    let regrown = scale(full, shrunk);
    assert!(
        regrown < at(100),
        "100 % before the canary grew back: {s:#?}"
    );
    let old_down = position(writes, "scaling the old ReplicaSet down", |w| {
        is_scale_to(w, stable_rs, 0)
    });
    assert!(at(0) < old_down, "{s:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_host_split_lowers_the_weight_before_the_canary_shrinks_and_finishes() {
    let cluster = istio_cluster().await;
    cluster
        .create_rollout(rollout_manifest("web", 2, istio_canary(down_steps())))
        .await;
    let v1 = cluster.wait_healthy("web", 20).await;
    let stable_rs = current_rs(&v1);
    let vs_before =
        serde_json::to_value(cluster.virtual_services().get("web-vsvc").await.unwrap()).unwrap();
    let start = cluster.sim.request_log().len();
    cluster.set_image("web", "web:v2").await;
    let v2 = wait_promoted(&cluster, &v1, 2).await;
    let canary_rs = current_rs(&v2);
    let writes = controller_writes(&cluster.sim, start);
    let weights = vs_weights(&writes, "web-vsvc", &vs_before, "host", "web-canary");
    // 2 pods: 99 % needs both, 2 % one.
    assert_down_order(&writes, &weights, &canary_rs, &stable_rs, 2, 1);
    assert_invariants_hold(&cluster.sim);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_subset_split_lowers_the_weight_before_the_canary_shrinks_and_finishes() {
    let mut cluster = Cluster::start().await;
    cluster.create_subset_split_objects().await;
    cluster.start_controller();
    let canary = json!({
        "scaleDownDelaySeconds": 1,
        "trafficRouting": {"istio": {
            "virtualService": {"name": "web-vsvc", "routes": ["primary"]},
            "destinationRule": {"name": "web-destrule", "canarySubsetName": "canary", "stableSubsetName": "stable"}
        }},
        "steps": down_steps()
    });
    cluster
        .create_rollout(rollout_manifest("web", 5, canary))
        .await;
    let v1 = cluster.wait_healthy("web", 20).await;
    let stable_rs = current_rs(&v1);
    let vs_before =
        serde_json::to_value(cluster.virtual_services().get("web-vsvc").await.unwrap()).unwrap();
    let start = cluster.sim.request_log().len();
    cluster.set_image("web", "web:v2").await;
    let v2 = wait_promoted(&cluster, &v1, 5).await;
    let canary_rs = current_rs(&v2);
    let writes = controller_writes(&cluster.sim, start);
    let weights = vs_weights(&writes, "web-vsvc", &vs_before, "subset", "canary");
    // 5 pods: 99 % needs all five, 2 % one.
    assert_down_order(&writes, &weights, &canary_rs, &stable_rs, 5, 1);
    assert_invariants_hold(&cluster.sim);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_lowers_the_canary_weight_annotation_before_the_canary_shrinks_and_finishes() {
    let mut cluster = Cluster::start().await;
    cluster
        .create_services(&["web-stable", "web-canary"], "web")
        .await;
    cluster.create_ingress("web-ingress", "web-stable").await;
    cluster.start_controller();
    let canary = json!({
        "canaryService": "web-canary",
        "stableService": "web-stable",
        "scaleDownDelaySeconds": 1,
        "trafficRouting": {"nginx": {"stableIngress": "web-ingress"}},
        "steps": down_steps()
    });
    cluster
        .create_rollout(rollout_manifest("web", 5, canary))
        .await;
    let v1 = cluster.wait_healthy("web", 20).await;
    let stable_rs = current_rs(&v1);
    let start = cluster.sim.request_log().len();
    cluster.set_image("web", "web:v2").await;
    let v2 = wait_promoted(&cluster, &v1, 5).await;
    let canary_rs = current_rs(&v2);
    let writes = controller_writes(&cluster.sim, start);
    let weights: Vec<(usize, i64)> = writes
        .iter()
        .enumerate()
        .filter(|(_, w)| {
            w.resource == "ingresses" && w.name.as_deref() == Some("web-web-ingress-canary")
        })
        .filter_map(|(i, w)| {
            let weight = w.body.as_ref()?["metadata"]["annotations"]
                ["nginx.ingress.kubernetes.io/canary-weight"]
                .as_str()?
                .parse()
                .ok()?;
            Some((i, weight))
        })
        .collect();
    assert_down_order(&writes, &weights, &canary_rs, &stable_rs, 5, 1);
    assert_invariants_hold(&cluster.sim);
}
