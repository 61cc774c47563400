//! End to end on ramp-sim: the operations around a canary rollout that users and tools perform
//! by patching (`spec.paused`, `spec.restartAt`, an image rolled back), a cluster that Argo
//! Rollouts ran handed over to Ramp, revision history, and the progress deadline — each asserted
//! on the writes the sim logged, not only on the end state.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod canary_support;

use canary_support::*;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use pretty_assertions::assert_eq;
use ramp_api::rollout::Rollout;
use ramp_sim::{LoggedRequest, Verb};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

fn summaries(writes: &[LoggedRequest]) -> Vec<String> {
    writes.iter().map(LoggedRequest::summary).collect()
}

/// Like [`Cluster::wait_rollout`], but a timeout shows the rollout's status and the
/// controller's writes since `checkpoint`, which is what a failure needs to be diagnosed.
async fn wait_or_dump(
    cluster: &Cluster,
    what: &str,
    secs: u64,
    checkpoint: usize,
    check: impl Fn(&Rollout) -> bool,
) -> Rollout {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let rollout = cluster.rollout("web").await;
        if check(&rollout) {
            return rollout;
        }
        if Instant::now() >= deadline {
            panic!(
                "{what}: never happened within {secs} s; status {:#}; writes {:#?}",
                serde_json::to_value(&rollout.status).unwrap(),
                summaries(&controller_writes(&cluster.sim, checkpoint))
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn status_of(rollout: &Rollout) -> ramp_api::rollout::RolloutStatus {
    rollout.status.clone().unwrap_or_default()
}

fn at_step(rollout: &Rollout, step: i32) -> bool {
    status_of(rollout).current_step_index == Some(step)
}

async fn vs_json(cluster: &Cluster) -> Value {
    serde_json::to_value(cluster.virtual_services().get("web-vsvc").await.unwrap()).unwrap()
}

async fn patch_spec(cluster: &Cluster, name: &str, spec: Value) {
    cluster
        .rollouts()
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": spec })),
        )
        .await
        .expect("spec patched");
}

/// Changes the image keeping the rest of the container as `rollout_manifest` wrote it (a merge
/// patch replaces the whole list), so going back to `web:v1` is exactly the first template.
async fn set_web_image(cluster: &Cluster, image: &str) {
    let container = json!({"name": "web", "image": image, "ports": [{"containerPort": 8080}]});
    patch_spec(
        cluster,
        "web",
        json!({"template": {"spec": {"containers": [container]}}}),
    )
    .await;
}

/// Promoted: the current template is stable and the phase says Healthy, while older
/// ReplicaSets may still wait out their scale-down delay.
fn promoted_away_from(r: &Rollout, old_hash: &str) -> bool {
    let s = status_of(r);
    s.phase.as_deref() == Some("Healthy")
        && s.current_pod_hash.is_some()
        && s.current_pod_hash == s.stable_rs
        && s.stable_rs.as_deref() != Some(old_hash)
        && s.observed_generation_number() == r.metadata.generation
}

/// Waits out `window` and returns the controller's writes in it that are not status writes.
async fn writes_during(cluster: &Cluster, window: Duration) -> Vec<LoggedRequest> {
    let checkpoint = cluster.sim.request_log().len();
    let until = Instant::now() + window;
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    controller_writes(&cluster.sim, checkpoint)
        .into_iter()
        .filter(|w| !(w.resource == "rollouts" && w.subresource.as_deref() == Some("status")))
        .collect()
}

async fn replica_set(cluster: &Cluster, name: &str) -> Option<ReplicaSet> {
    cluster
        .replica_sets()
        .await
        .into_iter()
        .find(|rs| rs.metadata.name.as_deref() == Some(name))
}

/// Waits until ReplicaSet `name` asks for `replicas` pods.
async fn wait_rs_replicas(cluster: &Cluster, name: &str, replicas: i32, secs: u64) {
    eventually(&format!("{name} at {replicas} replicas"), secs, || async {
        replica_set(cluster, name)
            .await
            .filter(|rs| rs.spec.replicas == Some(replicas))
            .map(|_| ())
    })
    .await;
}

async fn pods(cluster: &Cluster) -> Vec<Pod> {
    Api::<Pod>::namespaced(cluster.client.clone(), ns())
        .list(&ListParams::default())
        .await
        .expect("pods listed")
        .items
}

/// Waits for the rollout's events with `reason` (they are recorded asynchronously) and
/// returns their notes.
async fn events_with_reason(cluster: &Cluster, reason: &str) -> Vec<String> {
    let events = Api::<Event>::namespaced(cluster.client.clone(), ns());
    eventually(&format!("an event {reason}"), 10, || async {
        let notes: Vec<String> = events
            .list(&ListParams::default())
            .await
            .expect("events listed")
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some(reason))
            .map(|e| e.note.unwrap_or_default())
            .collect();
        (!notes.is_empty()).then_some(notes)
    })
    .await
}

/// The status a logged rollout status write carries (merge body or JSON patch of `/status`).
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

fn rollout_status_writes(writes: &[LoggedRequest]) -> Vec<Value> {
    writes
        .iter()
        .filter(|w| w.resource == "rollouts" && w.subresource.as_deref() == Some("status"))
        .map(written_status)
        .collect()
}

fn hash_of(rs_name: &str) -> &str {
    rs_name.trim_start_matches("web-")
}

// ---------------------------------------------------------------------------------------------
// 1. spec.paused
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_paused_freezes_a_timed_pause_past_its_deadline_and_resumes_at_the_same_step() {
    let cluster = istio_cluster().await;
    let steps = json!([
        {"setWeight": 25}, {"pause": {"duration": "2s"}},
        {"setWeight": 50}, {"pause": {}}
    ]);
    cluster
        .create_rollout(rollout_manifest("web", 4, istio_canary(steps)))
        .await;
    cluster.wait_healthy("web", 20).await;
    cluster.set_image("web", "web:v2").await;
    let in_pause = cluster
        .wait_rollout("web", "in the timed pause at 25 %", 20, |r| {
            at_step(r, 1) && status_of(r).has_pause_conditions()
        })
        .await;
    let canary_rs = current_rs(&in_pause);
    let pause_started = status_of(&in_pause).pause_conditions.unwrap()[0]
        .start_time
        .0;

    // `kubectl argo rollouts pause`: a merge patch of the spec.
    patch_spec(&cluster, "web", json!({"paused": true})).await;
    let paused = cluster
        .wait_rollout("web", "phase Paused, manually paused", 10, |r| {
            let s = status_of(r);
            s.phase.as_deref() == Some("Paused")
                && s.message.as_deref() == Some("manually paused")
                && s.observed_generation_number() == r.metadata.generation
        })
        .await;
    assert_eq!(status_of(&paused).current_step_index, Some(1));
    let vs_paused = vs_json(&cluster).await;
    assert_eq!(destination_weight(&vs_paused, "web-canary"), 25);

    // Stay paused well past the end of the 2 s pause step: nothing may move.
    let past_deadline = pause_started
        .checked_add(SignedDuration::from_secs(4))
        .unwrap();
    let window = Duration::try_from(past_deadline.duration_since(Timestamp::now()))
        .unwrap_or(Duration::ZERO)
        .max(Duration::from_secs(2));
    let frozen = writes_during(&cluster, window).await;
    assert!(
        frozen.is_empty(),
        "writes while manually paused: {:#?}",
        summaries(&frozen)
    );
    let still = cluster.rollout("web").await;
    let s = status_of(&still);
    assert_eq!(s.phase.as_deref(), Some("Paused"));
    assert_eq!(s.current_step_index, Some(1));
    let paused_condition = s.condition("Paused").expect("Paused condition");
    assert_eq!(paused_condition.status, "True");

    // Unpause (`promote` does this with spec.paused=false): the expired pause step ends and the
    // rollout carries on from step 1 to 50 %, then waits at the indefinite pause.
    let resume = cluster.sim.request_log().len();
    patch_spec(&cluster, "web", json!({"paused": false})).await;
    let next = cluster
        .wait_rollout(
            "web",
            "paused at the indefinite pause after 50 %",
            20,
            |r| {
                let s = status_of(r);
                at_step(r, 3) && s.has_pause_conditions() && s.phase.as_deref() == Some("Paused")
            },
        )
        .await;
    assert_eq!(status_of(&next).message.as_deref(), Some("CanaryPauseStep"));
    let writes = controller_writes(&cluster.sim, resume);
    assert_eq!(
        canary_weights(&writes, "web-vsvc", &vs_paused, "web-canary"),
        vec![50],
        "{:#?}",
        summaries(&writes)
    );
    assert_eq!(
        replica_writes(&writes),
        vec![(canary_rs, 2)],
        "{:#?}",
        summaries(&writes)
    );
    // The step indexes written after the resume: 1 (still), then 2, then 3, never back to 0.
    let indexes: Vec<i64> = rollout_status_writes(&writes)
        .iter()
        .filter_map(|s| s["currentStepIndex"].as_i64())
        .collect();
    assert!(
        indexes.windows(2).all(|w| w[0] <= w[1]) && indexes.iter().all(|i| *i >= 1),
        "{indexes:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Fast rollback
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_within_the_window_while_the_old_pods_still_run_skips_every_step() {
    let cluster = istio_cluster().await;
    let steps = json!([{"setWeight": 25}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}]);
    let mut canary = istio_canary(steps);
    // Long enough for the rollback below to find v1's pods still up.
    canary["scaleDownDelaySeconds"] = json!(6);
    let mut manifest = rollout_manifest("web", 2, canary);
    manifest["spec"]["rollbackWindow"] = json!({"revisions": 1});
    cluster.create_rollout(manifest).await;
    let v1 = cluster.wait_healthy("web", 20).await;
    let v1_rs = current_rs(&v1);
    set_web_image(&cluster, "web:v2").await;
    cluster
        .wait_rollout("web", "paused at 25 %", 20, |r| {
            at_step(r, 1) && status_of(r).has_pause_conditions()
        })
        .await;
    let promote_at = cluster.sim.request_log().len();
    cluster
        .patch_status("web", json!({"promoteFull": true}))
        .await;
    let v2 = cluster
        .wait_rollout("web", "v2 promoted", 20, |r| {
            promoted_away_from(r, hash_of(&v1_rs))
        })
        .await;
    let v2_rs = current_rs(&v2);
    assert_ne!(v1_rs, v2_rs);
    // v1 is no longer stable but waits out its scale-down delay at full size.
    let v1_now = replica_set(&cluster, &v1_rs).await.unwrap();
    assert_eq!(
        v1_now.spec.replicas,
        Some(2),
        "{:#?}",
        summaries(&controller_writes(&cluster.sim, promote_at))
    );
    assert!(
        v1_now
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key("scale-down-deadline")),
        "{:?}",
        v1_now.metadata.annotations
    );
    let vs_before = vs_json(&cluster).await;
    assert_eq!(destination_weight(&vs_before, "web-canary"), 0);

    let start = cluster.sim.request_log().len();
    set_web_image(&cluster, "web:v1").await;
    let back = cluster
        .wait_rollout("web", "v1 stable again", 20, |r| {
            let s = status_of(r);
            s.phase.as_deref() == Some("Healthy")
                && s.stable_rs.as_deref() == Some(hash_of(&v1_rs))
                && s.current_pod_hash == s.stable_rs
                && s.observed_generation_number() == r.metadata.generation
        })
        .await;
    assert_eq!(status_of(&back).current_step_index, Some(4));
    let writes = controller_writes(&cluster.sim, start);
    let s = summaries(&writes);
    // Traffic goes to v1 in one move (no 25 % / 50 % steps), then the stable Service follows
    // and canary traffic returns to 0.
    assert_eq!(
        canary_weights(&writes, "web-vsvc", &vs_before, "web-canary"),
        vec![100, 0],
        "{s:#?}"
    );
    // No pause was ever entered, and v1 needed no new pod.
    assert!(
        rollout_status_writes(&writes)
            .iter()
            .all(|st| st["pauseConditions"].is_null()),
        "{s:#?}"
    );
    assert!(
        !replica_writes(&writes).iter().any(|(rs, _)| rs == &v1_rs),
        "{s:#?}"
    );
    assert!(
        !writes
            .iter()
            .any(|w| w.resource == "replicasets" && w.verb == Verb::Create),
        "{s:#?}"
    );
    let v1_after = replica_set(&cluster, &v1_rs).await.unwrap();
    let annotations = v1_after.metadata.annotations.clone().unwrap_or_default();
    assert!(
        !annotations.contains_key("scale-down-deadline"),
        "{annotations:?}"
    );
    assert_eq!(
        annotations
            .get("rollout.argoproj.io/revision")
            .map(String::as_str),
        Some("3"),
        "the rolled-back-to ReplicaSet becomes the newest revision"
    );
    assert!(
        events_with_reason(&cluster, "SkipSteps")
            .await
            .iter()
            .any(|m| m.contains("RollbackWindow")),
        "SkipSteps event"
    );
    // v2 leaves after its own scale-down delay.
    wait_rs_replicas(&cluster, &v2_rs, 0, 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_without_a_window_walks_the_steps_again() {
    let cluster = istio_cluster().await;
    let steps = json!([{"setWeight": 25}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}]);
    let mut canary = istio_canary(steps);
    canary["scaleDownDelaySeconds"] = json!(6);
    cluster
        .create_rollout(rollout_manifest("web", 4, canary))
        .await;
    let v1 = cluster.wait_healthy("web", 20).await;
    let v1_rs = current_rs(&v1);
    set_web_image(&cluster, "web:v2").await;
    cluster
        .wait_rollout("web", "paused at 25 %", 20, |r| {
            at_step(r, 1) && status_of(r).has_pause_conditions()
        })
        .await;
    cluster
        .patch_status("web", json!({"promoteFull": true}))
        .await;
    let v2 = cluster
        .wait_rollout("web", "v2 promoted", 20, |r| {
            promoted_away_from(r, hash_of(&v1_rs))
        })
        .await;
    let v2_rs = current_rs(&v2);

    // The same rollback as above, but with no rollbackWindow: v1 is an ordinary update now.
    let vs_before = vs_json(&cluster).await;
    let start = cluster.sim.request_log().len();
    set_web_image(&cluster, "web:v1").await;
    let paused = wait_or_dump(&cluster, "v1 paused at 25 %", 20, start, |r| {
        let s = status_of(r);
        at_step(r, 1)
            && s.has_pause_conditions()
            && s.current_pod_hash.as_deref() == Some(hash_of(&v1_rs))
    })
    .await;
    let s = status_of(&paused);
    assert_eq!(s.stable_rs.as_deref(), Some(hash_of(&v2_rs)));
    let writes = controller_writes(&cluster.sim, start);
    assert_eq!(
        canary_weights(&writes, "web-vsvc", &vs_before, "web-canary"),
        vec![25],
        "{:#?}",
        summaries(&writes)
    );
    assert!(
        !writes
            .iter()
            .any(|w| w.resource == "services" && w.name.as_deref() == Some("web-stable")),
        "the stable Service stays on v2: {:#?}",
        summaries(&writes)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_to_the_stable_image_mid_update_skips_the_steps() {
    let cluster = istio_cluster().await;
    let steps = json!([{"setWeight": 25}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}]);
    cluster
        .create_rollout(rollout_manifest("web", 4, istio_canary(steps)))
        .await;
    let v1 = cluster.wait_healthy("web", 20).await;
    let v1_rs = current_rs(&v1);
    set_web_image(&cluster, "web:v2").await;
    let paused = cluster
        .wait_rollout("web", "paused at 25 %", 20, |r| {
            at_step(r, 1) && status_of(r).has_pause_conditions()
        })
        .await;
    let v2_rs = current_rs(&paused);
    let vs_before = vs_json(&cluster).await;
    assert_eq!(destination_weight(&vs_before, "web-canary"), 25);

    let start = cluster.sim.request_log().len();
    set_web_image(&cluster, "web:v1").await;
    let back = wait_or_dump(&cluster, "v1 stable again", 20, start, |r| {
        let s = status_of(r);
        s.phase.as_deref() == Some("Healthy")
            && s.current_pod_hash.as_deref() == Some(hash_of(&v1_rs))
            && s.current_pod_hash == s.stable_rs
            && s.observed_generation_number() == r.metadata.generation
    })
    .await;
    assert_eq!(current_rs(&back), v1_rs);
    assert_eq!(status_of(&back).current_step_index, Some(4));
    assert!(!status_of(&back).has_pause_conditions());
    wait_rs_replicas(&cluster, &v2_rs, 0, 20).await;
    let writes = controller_writes(&cluster.sim, start);
    let s = summaries(&writes);
    assert_eq!(
        canary_weights(&writes, "web-vsvc", &vs_before, "web-canary"),
        vec![0],
        "{s:#?}"
    );
    assert_eq!(replica_writes(&writes), vec![(v2_rs.clone(), 0)], "{s:#?}");
    let weight_back = position(&writes, "traffic back to v1", |w| {
        w.resource == "virtualservices"
    });
    let v2_down = position(&writes, "v2 scaled down", |w| {
        w.name.as_deref() == Some(v2_rs.as_str())
            && w.body.as_ref().is_some_and(|b| b["spec"]["replicas"] == 0)
    });
    assert!(weight_back < v2_down, "{s:#?}");
    assert!(
        !writes
            .iter()
            .any(|w| w.resource == "services" && w.name.as_deref() == Some("web-stable")),
        "the stable Service never left v1: {s:#?}"
    );
    assert!(
        events_with_reason(&cluster, "SkipSteps")
            .await
            .iter()
            .any(|m| m == "Rollback to stable ReplicaSets"),
        "SkipSteps event"
    );
}

// ---------------------------------------------------------------------------------------------
// 3. Adoption of what Argo Rollouts left
// ---------------------------------------------------------------------------------------------

/// A hash in upstream's alphabet that Ramp's own hashing did not produce for this template.
const ARGO_HASH: &str = "7bf9c6d84";

fn argo_template(hash: Option<&str>, defaulted: bool) -> Value {
    let mut labels = json!({"app": "web"});
    if let Some(hash) = hash {
        labels["rollouts-pod-template-hash"] = json!(hash);
    }
    let mut container =
        json!({"name": "web", "image": "web:v1", "ports": [{"containerPort": 8080}]});
    let mut spec = json!({});
    if defaulted {
        // What the API server's defaulting leaves in a ReplicaSet's template.
        container["ports"][0]["protocol"] = json!("TCP");
        container["imagePullPolicy"] = json!("IfNotPresent");
        container["terminationMessagePath"] = json!("/dev/termination-log");
        container["terminationMessagePolicy"] = json!("File");
        container["resources"] = json!({});
        spec = json!({
            "restartPolicy": "Always", "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst", "schedulerName": "default-scheduler",
            "securityContext": {}
        });
    }
    spec["containers"] = json!([container]);
    json!({"metadata": {"labels": labels}, "spec": spec})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_argo_rollouts_ran_is_adopted_without_touching_a_pod() {
    let mut cluster = Cluster::start().await;
    let client = cluster.client.clone();
    // The Services and VirtualService as Argo Rollouts left them: selectors on its hash.
    for name in ["web-stable", "web-canary"] {
        let service: Service = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": ns(),
                         "annotations": {"argo-rollouts.argoproj.io/managed-by-rollouts": "web"}},
            "spec": {"selector": {"app": "web", "rollouts-pod-template-hash": ARGO_HASH},
                     "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP", "name": "http"}]}
        }))
        .unwrap();
        Api::<Service>::namespaced(client.clone(), ns())
            .create(&PostParams::default(), &service)
            .await
            .unwrap();
    }
    cluster
        .create_virtual_service("web-vsvc", "web-stable", "web-canary")
        .await;
    let steps = json!([{"setWeight": 50}, {"pause": {"duration": "1s"}}]);
    let mut manifest = rollout_manifest("web", 3, istio_canary(steps));
    manifest["spec"]["template"] = argo_template(None, false);
    let rollout = cluster.create_rollout(manifest).await;
    let uid = rollout.metadata.uid.clone().unwrap();
    cluster
        .patch_status(
            "web",
            json!({
                "phase": "Healthy", "message": "",
                "observedGeneration": rollout.metadata.generation.unwrap().to_string(),
                "currentPodHash": ARGO_HASH, "stableRS": ARGO_HASH,
                "currentStepIndex": 2, "currentStepHash": "5c8c6dcdd5",
                "replicas": 3, "updatedReplicas": 3, "readyReplicas": 3, "availableReplicas": 3,
                "HPAReplicas": 3, "selector": "app=web",
                "canary": {"weights": {
                    "canary": {"weight": 0, "serviceName": "web-canary", "podTemplateHash": ARGO_HASH},
                    "stable": {"weight": 100, "serviceName": "web-stable", "podTemplateHash": ARGO_HASH}
                }},
                "conditions": [
                    {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
                     "message": format!("ReplicaSet \"web-{ARGO_HASH}\" has successfully progressed."),
                     "lastUpdateTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z"},
                    {"type": "Available", "status": "True", "reason": "AvailableReason",
                     "message": "Rollout has minimum availability",
                     "lastUpdateTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z"},
                    {"type": "Completed", "status": "True", "reason": "RolloutCompleted",
                     "message": "Rollout completed update to revision 1",
                     "lastUpdateTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z"},
                    {"type": "Healthy", "status": "True", "reason": "RolloutHealthy",
                     "message": "Rollout is healthy",
                     "lastUpdateTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z"}
                ]
            }),
        )
        .await;
    // Argo's ReplicaSet: its hash in name, labels and selector, revision 1, owned by the
    // Rollout, with the defaulted template a real API server stores.
    let argo_rs_name = format!("web-{ARGO_HASH}");
    let rs: ReplicaSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {
            "name": argo_rs_name, "namespace": ns(),
            "labels": {"app": "web", "rollouts-pod-template-hash": ARGO_HASH},
            "annotations": {"rollout.argoproj.io/revision": "1", "rollout.argoproj.io/desired-replicas": "3"},
            "ownerReferences": [{"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "name": "web",
                                 "uid": uid, "controller": true, "blockOwnerDeletion": true}]
        },
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web", "rollouts-pod-template-hash": ARGO_HASH}},
            "template": argo_template(Some(ARGO_HASH), true)
        }
    }))
    .unwrap();
    Api::<ReplicaSet>::namespaced(client.clone(), ns())
        .create(&PostParams::default(), &rs)
        .await
        .unwrap();
    let argo_pods: BTreeMap<String, String> = eventually("Argo's 3 pods ready", 20, || async {
        let ready: BTreeMap<String, String> = pods(&cluster)
            .await
            .into_iter()
            .filter(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .map(|p| (p.metadata.name.unwrap(), p.metadata.uid.unwrap()))
            .collect();
        let rs = replica_set(&cluster, &argo_rs_name).await?;
        let available = rs.status.and_then(|s| s.available_replicas) == Some(3);
        (ready.len() == 3 && available).then_some(ready)
    })
    .await;

    let start = cluster.sim.request_log().len();
    cluster.start_controller();
    // The controller reads the rollout and writes its view of the status (at least its own
    // conditions); the status must still say Healthy on Argo's ReplicaSet.
    eventually("the controller's first status write", 20, || async {
        let wrote = controller_writes(&cluster.sim, start)
            .iter()
            .any(|w| w.resource == "rollouts" && w.subresource.as_deref() == Some("status"));
        wrote.then_some(())
    })
    .await;
    let quiet = writes_during(&cluster, Duration::from_secs(2)).await;
    let adopted = cluster.wait_healthy("web", 10).await;
    let s = status_of(&adopted);
    assert_eq!(s.stable_rs.as_deref(), Some(ARGO_HASH));
    assert_eq!(s.current_pod_hash.as_deref(), Some(ARGO_HASH));
    let all: Vec<LoggedRequest> = cluster
        .sim
        .request_log()
        .since_settled(start, std::time::Duration::from_secs(2))
        .into_iter()
        .filter(|w| w.succeeded())
        .collect();
    let touched: Vec<String> = all
        .iter()
        .filter(|w| {
            (w.resource == "replicasets" && w.subresource.is_none())
                || (w.resource == "pods" && w.verb != Verb::Patch)
                || w.resource == "services"
                || w.resource == "virtualservices"
        })
        .map(LoggedRequest::summary)
        .collect();
    assert!(
        touched.is_empty(),
        "adoption must not create, scale or delete anything: {touched:#?}"
    );
    assert!(quiet.is_empty(), "{:#?}", summaries(&quiet));
    // Healthy throughout: no status write ever showed another phase or moved the stable.
    for written in rollout_status_writes(&all) {
        assert!(
            written["phase"].is_null() || written["phase"] == "Healthy",
            "{written:#}"
        );
        assert!(
            written["stableRS"].is_null() || written["stableRS"] == ARGO_HASH,
            "{written:#}"
        );
    }
    let pods_now: BTreeMap<String, String> = pods(&cluster)
        .await
        .into_iter()
        .map(|p| (p.metadata.name.unwrap(), p.metadata.uid.unwrap()))
        .collect();
    assert_eq!(pods_now, argo_pods, "the very same pods keep running");
    assert_eq!(cluster.replica_sets().await.len(), 1);

    // A new image after the migration is an ordinary Ramp update from Argo's ReplicaSet.
    let vs_before = vs_json(&cluster).await;
    let update = cluster.sim.request_log().len();
    cluster.set_image("web", "web:v2").await;
    let done = cluster
        .wait_rollout("web", "v2 promoted", 30, |r| {
            let s = status_of(r);
            s.phase.as_deref() == Some("Healthy")
                && s.stable_rs.as_deref() != Some(ARGO_HASH)
                && s.current_pod_hash == s.stable_rs
                && s.observed_generation_number() == r.metadata.generation
        })
        .await;
    let v2_rs = current_rs(&done);
    wait_rs_replicas(&cluster, &argo_rs_name, 0, 20).await;
    let writes = controller_writes(&cluster.sim, update);
    let s = summaries(&writes);
    assert_eq!(
        canary_weights(&writes, "web-vsvc", &vs_before, "web-canary"),
        vec![50, 100, 0],
        "{s:#?}"
    );
    let scales = replica_writes(&writes);
    assert_eq!(
        scales.first(),
        Some(&(v2_rs.clone(), 0)),
        "created at 0: {s:#?}"
    );
    assert_eq!(scales.last(), Some(&(argo_rs_name.clone(), 0)), "{s:#?}");
    let created = writes
        .iter()
        .find(|w| w.resource == "replicasets" && w.verb == Verb::Create)
        .expect("the v2 ReplicaSet is created");
    assert_eq!(
        created.body.as_ref().unwrap()["metadata"]["annotations"]["rollout.argoproj.io/revision"],
        "2",
        "revisions continue from Argo's: {s:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 4. revisionHistoryLimit
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revision_history_limit_deletes_the_oldest_scaled_down_replica_sets_only() {
    let mut cluster = Cluster::start().await;
    cluster.start_controller();
    let mut manifest = rollout_manifest("web", 1, json!({"maxSurge": 1, "maxUnavailable": 0}));
    manifest["spec"]["revisionHistoryLimit"] = json!(1);
    cluster.create_rollout(manifest).await;
    let start = cluster.sim.request_log().len();
    let mut revisions = vec![current_rs(&cluster.wait_healthy("web", 20).await)];
    for image in ["web:v2", "web:v3", "web:v4"] {
        cluster.set_image("web", image).await;
        let done = cluster
            .wait_rollout("web", &format!("{image} promoted"), 20, |r| {
                let s = status_of(r);
                s.phase.as_deref() == Some("Healthy")
                    && s.observed_generation_number() == r.metadata.generation
                    && s.current_pod_hash == s.stable_rs
                    && s.replicas == Some(1)
            })
            .await;
        revisions.push(current_rs(&done));
    }
    let expected: BTreeSet<String> = revisions[2..].iter().cloned().collect();
    eventually("only the last two ReplicaSets remain", 20, || async {
        let names: BTreeSet<String> = cluster
            .replica_sets()
            .await
            .into_iter()
            .filter_map(|rs| rs.metadata.name)
            .collect();
        (names == expected).then_some(())
    })
    .await;
    let writes = controller_writes(&cluster.sim, start);
    let s = summaries(&writes);
    let deleted: Vec<String> = writes
        .iter()
        .filter(|w| w.resource == "replicasets" && w.verb == Verb::Delete)
        .filter_map(|w| w.name.clone())
        .collect();
    assert_eq!(deleted, revisions[..2].to_vec(), "oldest first: {s:#?}");
    // Each was deleted only after it had been scaled to 0.
    for name in &deleted {
        let scaled_down = position(&writes, "scale to 0", |w| {
            w.name.as_ref() == Some(name)
                && w.body.as_ref().is_some_and(|b| b["spec"]["replicas"] == 0)
        });
        let gone = position(&writes, "delete", |w| {
            w.name.as_ref() == Some(name) && w.verb == Verb::Delete
        });
        assert!(scaled_down < gone, "{s:#?}");
    }
    // Quiet afterwards: the stable (v4) and the one kept (v3) stay.
    let later = writes_during(&cluster, Duration::from_secs(1)).await;
    assert!(
        !later.iter().any(|w| w.verb == Verb::Delete),
        "{:#?}",
        summaries(&later)
    );
}

// ---------------------------------------------------------------------------------------------
// 5. spec.restartAt
// ---------------------------------------------------------------------------------------------

fn pod_ready_in(body: &Value) -> Option<bool> {
    let status = match body {
        Value::Array(ops) => ops
            .iter()
            .find(|op| op["path"] == "/status")
            .map(|op| op["value"].clone())?,
        other => other.get("status")?.clone(),
    };
    Some(
        status["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True"),
    )
}

/// Replays the sim's log of pod writes and returns, for each eviction, how many of the
/// rollout's other pods were not ready (or already gone and not yet replaced) at that moment.
fn unavailable_at_each_eviction(log: &[LoggedRequest], initial: &BTreeSet<String>) -> Vec<usize> {
    let mut ready: BTreeMap<String, bool> = initial.iter().map(|p| (p.clone(), true)).collect();
    let mut at_eviction = Vec::new();
    for w in log.iter().filter(|w| w.resource == "pods" && w.succeeded()) {
        let name = w.name.clone().unwrap_or_default();
        match (w.verb, w.subresource.as_deref()) {
            (Verb::Create, Some("eviction")) => {
                at_eviction.push(ready.values().filter(|r| !**r).count());
                ready.remove(&name);
            }
            (Verb::Create, None) => {
                ready.insert(name, false);
            }
            (Verb::Delete, None) => {
                ready.remove(&name);
            }
            (_, Some("status")) => {
                if let Some(r) = w.body.as_ref().and_then(pod_ready_in)
                    && let Some(entry) = ready.get_mut(&name)
                {
                    *entry = r;
                }
            }
            _ => {}
        }
    }
    at_eviction
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_at_evicts_every_older_pod_one_at_a_time_then_records_restarted_at() {
    let mut cluster = Cluster::start().await;
    cluster.start_controller();
    cluster
        .create_rollout(rollout_manifest("web", 3, json!({"steps": []})))
        .await;
    let v1 = cluster.wait_healthy("web", 20).await;
    let rs_name = current_rs(&v1);
    let before: BTreeSet<String> = pods(&cluster)
        .await
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    assert_eq!(before.len(), 3);

    // `kubectl argo rollouts restart --in 1s`: a whole second ahead, so every current pod is
    // strictly older whatever the timestamps' precision.
    let restart_at = Timestamp::from_second(Timestamp::now().as_second() + 1).unwrap();
    let restart_at_text = restart_at.to_string();
    let start = cluster.sim.request_log().len();
    patch_spec(&cluster, "web", json!({"restartAt": restart_at_text})).await;
    let done = cluster
        .wait_rollout("web", "status.restartedAt recorded", 30, |r| {
            status_of(r).restarted_at.as_ref().map(|t| t.0) == Some(restart_at)
        })
        .await;
    assert_eq!(status_of(&done).restarted_at.map(|t| t.0), Some(restart_at));
    cluster.wait_healthy("web", 10).await;

    let log = cluster
        .sim
        .request_log()
        .since_settled(start, std::time::Duration::from_secs(2));
    let evicted: Vec<String> = log
        .iter()
        .filter(|w| w.subresource.as_deref() == Some("eviction") && w.succeeded())
        .filter_map(|w| w.name.clone())
        .collect();
    assert_eq!(
        evicted.iter().cloned().collect::<BTreeSet<_>>(),
        before,
        "every old pod evicted once: {evicted:?}"
    );
    assert_eq!(evicted.len(), 3, "{evicted:?}");
    // The default maxUnavailable (25 % of 3, at least 1) allows one pod down at a time: each
    // eviction waits for the previous pod's replacement to be ready.
    assert_eq!(
        unavailable_at_each_eviction(&log, &before),
        vec![0, 0, 0],
        "{:#?}",
        summaries(&log)
    );
    // Pods go only through the Eviction API; the ReplicaSet is never scaled for it.
    let writes = controller_writes(&cluster.sim, start);
    assert!(
        replica_writes(&writes).is_empty(),
        "{:#?}",
        summaries(&writes)
    );
    let after: BTreeSet<String> = pods(&cluster)
        .await
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    assert!(after.is_disjoint(&before), "{after:?}");
    assert_eq!(after.len(), 3);
    assert_eq!(current_rs(&cluster.rollout("web").await), rs_name);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_at_waits_while_a_disruption_budget_refuses_evictions() {
    let mut cluster = Cluster::start().await;
    cluster.start_controller();
    cluster
        .create_rollout(rollout_manifest("web", 2, json!({"steps": []})))
        .await;
    cluster.wait_healthy("web", 20).await;
    let pdbs = Api::<k8s_openapi::api::policy::v1::PodDisruptionBudget>::namespaced(
        cluster.client.clone(),
        ns(),
    );
    let pdb = serde_json::from_value(json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": "web", "namespace": ns()},
        "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}}
    }))
    .unwrap();
    pdbs.create(&PostParams::default(), &pdb).await.unwrap();

    let restart_at = Timestamp::from_second(Timestamp::now().as_second() + 1).unwrap();
    let start = cluster.sim.request_log().len();
    patch_spec(
        &cluster,
        "web",
        json!({"restartAt": restart_at.to_string()}),
    )
    .await;
    eventually("an eviction refused by the budget", 20, || async {
        cluster
            .sim
            .request_log()
            .since_settled(start, std::time::Duration::from_secs(2))
            .iter()
            .any(|w| w.subresource.as_deref() == Some("eviction") && w.code == 429)
            .then_some(())
    })
    .await;
    let restarting = cluster
        .wait_rollout("web", "phase Progressing, rollout is restarting", 10, |r| {
            let s = status_of(r);
            s.phase.as_deref() == Some("Progressing")
                && s.message.as_deref() == Some("rollout is restarting")
        })
        .await;
    assert!(status_of(&restarting).restarted_at.is_none());
    assert_eq!(pods(&cluster).await.len(), 2, "no pod went");

    // The budget is relaxed: the refused evictions are retried and the restart completes.
    pdbs.delete("web", &Default::default()).await.unwrap();
    cluster
        .wait_rollout("web", "status.restartedAt recorded", 30, |r| {
            status_of(r).restarted_at.as_ref().map(|t| t.0) == Some(restart_at)
        })
        .await;
    let evicted = cluster
        .sim
        .request_log()
        .since_settled(start, std::time::Duration::from_secs(2))
        .iter()
        .filter(|w| w.subresource.as_deref() == Some("eviction") && w.code == 201)
        .count();
    assert_eq!(evicted, 2);
}

// ---------------------------------------------------------------------------------------------
// 6. progressDeadlineSeconds / progressDeadlineAbort
// ---------------------------------------------------------------------------------------------

/// A rollout at 25 % canary traffic whose next step (50 %) can never get its second pod: the
/// cluster refuses every pod creation from then on.
async fn stuck_at_the_second_step(cluster: &Cluster, abort: bool) -> (String, String, Value) {
    let steps = json!([{"setWeight": 25}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}]);
    let mut manifest = rollout_manifest("web", 4, istio_canary(steps));
    manifest["spec"]["progressDeadlineSeconds"] = json!(2);
    manifest["spec"]["progressDeadlineAbort"] = json!(abort);
    cluster.create_rollout(manifest).await;
    let v1 = cluster.wait_healthy("web", 20).await;
    cluster.set_image("web", "web:v2").await;
    let at_25 = cluster
        .wait_rollout("web", "paused at 25 %", 20, |r| {
            at_step(r, 1) && status_of(r).has_pause_conditions()
        })
        .await;
    let canary_rs = current_rs(&at_25);
    let vs = vs_json(cluster).await;
    assert_eq!(destination_weight(&vs, "web-canary"), 25);
    cluster.refuse_pod_creations().await;
    // Waiting at a pause step never counts against the deadline; from the resume on, the 50 %
    // step needs a pod the sim refuses to create.
    cluster
        .patch_status("web", json!({"pauseConditions": null}))
        .await;
    (current_rs(&v1), canary_rs, vs)
}

fn deadline_exceeded(r: &Rollout) -> bool {
    let s = status_of(r);
    s.phase.as_deref() == Some("Degraded")
        && s.condition("Progressing")
            .is_some_and(|c| c.status == "False" && c.reason == "ProgressDeadlineExceeded")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_deadline_without_abort_degrades_and_leaves_traffic_alone() {
    let cluster = istio_cluster().await;
    let (stable_rs, canary_rs, vs) = stuck_at_the_second_step(&cluster, false).await;
    let start = cluster.sim.request_log().len();
    let degraded = wait_or_dump(
        &cluster,
        "ProgressDeadlineExceeded, Degraded",
        20,
        start,
        deadline_exceeded,
    )
    .await;
    let s = status_of(&degraded);
    assert_eq!(
        s.message.as_deref(),
        Some(
            format!(
                "ProgressDeadlineExceeded: ReplicaSet \"{canary_rs}\" has timed out progressing."
            )
            .as_str()
        )
    );
    assert_ne!(s.abort, Some(true));
    assert_eq!(
        s.current_step_index,
        Some(2),
        "{:#}",
        serde_json::to_value(&s).unwrap()
    );
    // Nothing is rolled back: 25 % stays on the canary, no ReplicaSet shrinks, and it stays so.
    let later = writes_during(&cluster, Duration::from_secs(2)).await;
    let writes = controller_writes(&cluster.sim, start);
    let s_all = summaries(&writes);
    assert!(
        !writes
            .iter()
            .any(|w| w.resource == "virtualservices" || w.resource == "services"),
        "{s_all:#?}"
    );
    assert!(
        !replica_writes(&writes)
            .iter()
            .any(|(rs, to)| (rs == &canary_rs && *to < 2) || rs == &stable_rs),
        "{s_all:#?}"
    );
    assert!(later.is_empty(), "{:#?}", summaries(&later));
    let still = cluster.rollout("web").await;
    assert!(deadline_exceeded(&still));
    assert_eq!(
        destination_weight(&vs_json(&cluster).await, "web-canary"),
        destination_weight(&vs, "web-canary")
    );
    assert!(
        !events_with_reason(&cluster, "ProgressDeadlineExceeded")
            .await
            .is_empty()
    );

    // Pods can be created again: progress resumes, the rollout leaves Degraded and reaches the
    // pause after 50 %.
    cluster.allow_pod_creations().await;
    cluster
        .wait_rollout("web", "paused after 50 %", 20, |r| {
            let s = status_of(r);
            at_step(r, 3) && s.phase.as_deref() == Some("Paused")
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_deadline_abort_returns_traffic_to_stable_before_removing_the_canary() {
    let cluster = istio_cluster().await;
    let (stable_rs, canary_rs, vs) = stuck_at_the_second_step(&cluster, true).await;
    let start = cluster.sim.request_log().len();
    let aborted = wait_or_dump(
        &cluster,
        "aborted by the progress deadline",
        20,
        start,
        |r| {
            let s = status_of(r);
            s.abort == Some(true)
                && s.phase.as_deref() == Some("Degraded")
                && s.condition("Progressing")
                    .is_some_and(|c| c.reason == "RolloutAborted")
        },
    )
    .await;
    let message = status_of(&aborted)
        .condition("Progressing")
        .unwrap()
        .message
        .clone();
    assert_eq!(
        message,
        format!(
            "Rollout aborted update to revision 2: ReplicaSet \"{canary_rs}\" has timed out progressing."
        )
    );
    wait_rs_replicas(&cluster, &canary_rs, 0, 20).await;
    let writes = controller_writes(&cluster.sim, start);
    let s = summaries(&writes);
    assert_eq!(
        canary_weights(&writes, "web-vsvc", &vs, "web-canary"),
        vec![0],
        "{s:#?}"
    );
    let weight_back = position(&writes, "traffic back to stable", |w| {
        w.resource == "virtualservices"
    });
    let canary_down = position(&writes, "canary scaled to 0", |w| {
        w.name.as_deref() == Some(canary_rs.as_str())
            && w.body.as_ref().is_some_and(|b| b["spec"]["replicas"] == 0)
    });
    assert!(weight_back < canary_down, "{s:#?}");
    assert!(
        !replica_writes(&writes)
            .iter()
            .any(|(rs, _)| rs == &stable_rs),
        "{s:#?}"
    );
    assert!(
        !writes
            .iter()
            .any(|w| w.resource == "services" && w.name.as_deref() == Some("web-stable")),
        "{s:#?}"
    );
    let events = events_with_reason(&cluster, "RolloutAborted").await;
    assert!(!events.is_empty());
}
