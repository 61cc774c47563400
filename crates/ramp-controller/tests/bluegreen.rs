//! End to end on ramp-sim: blue-green rollouts driven by the controller — initial deploy,
//! preview and manual promotion, abort and retry, a superseded green, fast rollback, the
//! preview-count and auto-promotion timings, full promotion, a manual pause, the
//! scale-down revision limit, and the pods' role metadata and anti-affinity — each asserted on
//! the writes the sim logged, in order.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod canary_support;

use canary_support::*;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, ListParams, Patch, PatchParams};
use pretty_assertions::assert_eq;
use ramp_api::rollout::Rollout;
use ramp_sim::LoggedRequest;
use serde_json::{Value, json};
use std::time::{Duration, Instant, SystemTime};

const ACTIVE: &str = "web-active";
const PREVIEW: &str = "web-preview";

/// A blue-green Rollout of `web:v1` with `web-active`/`web-preview` and the given strategy
/// fields merged in.
fn manifest(replicas: i32, extra: Value) -> Value {
    let mut strategy = json!({"activeService": ACTIVE, "previewService": PREVIEW});
    json_patch::merge(&mut strategy, &extra);
    json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "web", "namespace": ns()},
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "web:v1", "ports": [{"containerPort": 8080}]}]}
            },
            "strategy": {"blueGreen": strategy}
        }
    })
}

async fn cluster() -> Cluster {
    let mut cluster = Cluster::start().await;
    cluster.create_services(&[ACTIVE, PREVIEW], "web").await;
    cluster.start_controller();
    cluster
}

fn status(rollout: &Rollout) -> ramp_api::rollout::RolloutStatus {
    rollout.status.clone().unwrap_or_default()
}

fn hash_of(rs: &str) -> String {
    rs.trim_start_matches("web-").to_owned()
}

/// Paused for promotion with the preview service on the current revision.
fn paused_for_promotion(rollout: &Rollout) -> bool {
    let s = status(rollout);
    let preview = s
        .blue_green
        .as_ref()
        .and_then(|b| b.preview_selector.clone());
    s.phase.as_deref() == Some("Paused")
        && s.message.as_deref() == Some("BlueGreenPause")
        && s.pause_conditions
            .iter()
            .flatten()
            .any(|c| c.reason == "BlueGreenPause")
        && preview.is_some()
        && preview == s.current_pod_hash
        && rollout.metadata.generation == s.observed_generation_number()
}

/// Healthy with `rs` stable and selected by the active service (older pods may still be up).
fn promoted_to(rollout: &Rollout, rs: &str) -> bool {
    let s = status(rollout);
    let hash = hash_of(rs);
    s.phase.as_deref() == Some("Healthy")
        && s.stable_rs.as_deref() == Some(hash.as_str())
        && s.current_pod_hash.as_deref() == Some(hash.as_str())
        && s.blue_green
            .as_ref()
            .and_then(|b| b.active_selector.as_deref())
            == Some(hash.as_str())
        && rollout.metadata.generation == s.observed_generation_number()
}

/// The controller's writes, one short line each, in order: `create web-x 0`, `scale web-x 3`,
/// `deadline web-x set|cleared`, `metadata web-x`, `revision web-x`, `web-active -> x`,
/// `pods web-x` (role metadata onto one pod). Status writes and events are left out.
fn story(writes: &[LoggedRequest]) -> Vec<String> {
    writes
        .iter()
        .filter(|w| w.succeeded())
        .filter_map(|w| {
            let name = w.name.clone().unwrap_or_default();
            let body = w.body.clone().unwrap_or(Value::Null);
            let verb = w.verb.to_string();
            match (w.resource.as_str(), w.subresource.as_deref(), verb.as_str()) {
                ("replicasets", None, "create") => Some(format!(
                    "create {name} {}",
                    body["spec"]["replicas"].as_i64().unwrap_or(-1)
                )),
                ("replicasets", None, "patch") => {
                    let annotations = &body["metadata"]["annotations"];
                    if let Some(n) = body["spec"]["replicas"].as_i64() {
                        Some(format!("scale {name} {n}"))
                    } else if annotations
                        .get("rollout.argoproj.io/ephemeral-metadata")
                        .is_some()
                    {
                        Some(format!("metadata {name}"))
                    } else if let Some(d) = annotations.get("scale-down-deadline") {
                        let what = if d.is_null() { "cleared" } else { "set" };
                        Some(format!("deadline {name} {what}"))
                    } else if annotations.get("rollout.argoproj.io/revision").is_some() {
                        Some(format!("revision {name}"))
                    } else if let Some(history) =
                        annotations.get("rollout.argoproj.io/revision-history")
                    {
                        Some(format!(
                            "revision-history {name} {}",
                            history.as_str().unwrap_or("?")
                        ))
                    } else {
                        Some(format!("patch {name} {body}"))
                    }
                }
                ("replicasets", None, "delete") => Some(format!("delete {name}")),
                ("services", None, _) => Some(format!(
                    "{name} -> {}",
                    body["spec"]["selector"]["rollouts-pod-template-hash"]
                        .as_str()
                        .unwrap_or("?")
                )),
                ("pods", None, "patch") if body["metadata"].get("labels").is_some() => {
                    let owner = name.rsplit_once('-').map_or(name.as_str(), |(rs, _)| rs);
                    Some(format!("pods {owner}"))
                }
                _ => None,
            }
        })
        .collect()
}

/// Every successful request since `checkpoint` (simulators' writes included).
fn log_since(cluster: &Cluster, checkpoint: usize) -> Vec<LoggedRequest> {
    cluster
        .sim
        .request_log()
        .since_settled(checkpoint, std::time::Duration::from_secs(2))
        .into_iter()
        .filter(LoggedRequest::succeeded)
        .collect()
}

fn is_switch(w: &LoggedRequest, service: &str) -> bool {
    w.resource == "services" && w.name.as_deref() == Some(service)
}

/// Available pods of `rs` (as its status said) when the first write to `service` since
/// `checkpoint` happened. The sim logs a request after answering it, so a status write the
/// controller had already seen can land in the log just after the switch: status writes logged
/// within 50 ms after it count too.
fn available_at_switch(cluster: &Cluster, checkpoint: usize, service: &str, rs: &str) -> i64 {
    let all = log_since(cluster, checkpoint);
    let at = position(&all, "switching the service", |w| is_switch(w, service));
    let window = all[at].time + Duration::from_millis(50);
    let mut seen: Vec<LoggedRequest> = all[..at].to_vec();
    seen.extend(
        all[at + 1..]
            .iter()
            .take_while(|w| w.time <= window)
            .filter(|w| w.resource == "replicasets" && w.subresource.is_some())
            .cloned(),
    );
    available_before(&seen, rs)
}

/// The time of the first logged write matching `pred`.
fn time_of(
    writes: &[LoggedRequest],
    what: &str,
    pred: impl Fn(&LoggedRequest) -> bool,
) -> SystemTime {
    writes[position(writes, what, pred)].time
}

/// The `scale-down-deadline` value the controller wrote onto `rs`.
fn deadline_written(writes: &[LoggedRequest], rs: &str) -> SystemTime {
    let at = writes
        .iter()
        .find_map(|w| {
            (w.resource == "replicasets" && w.name.as_deref() == Some(rs))
                .then(|| {
                    w.body.as_ref()?["metadata"]["annotations"]["scale-down-deadline"]
                        .as_str()
                        .map(str::to_owned)
                })
                .flatten()
        })
        .unwrap_or_else(|| panic!("no scale-down-deadline written on {rs}"));
    let at: k8s_openapi::jiff::Timestamp = at.parse().expect("RFC 3339 deadline");
    SystemTime::UNIX_EPOCH + Duration::from_millis(u64::try_from(at.as_millisecond()).unwrap())
}

async fn selector_of(cluster: &Cluster, service: &str) -> Option<String> {
    Api::<Service>::namespaced(cluster.client.clone(), ns())
        .get(service)
        .await
        .unwrap()
        .spec
        .and_then(|s| s.selector)
        .and_then(|s| s.get("rollouts-pod-template-hash").cloned())
}

/// Waits until `rs` is at `replicas`; at 0, also until its scale-down deadline is cleared,
/// the write that follows the scale-down (a loaded machine may answer it a moment later).
async fn wait_scaled_to(cluster: &Cluster, rs: &str, replicas: i32, secs: u64) {
    eventually(&format!("{rs} scaled to {replicas}"), secs, || async move {
        cluster
            .replica_sets()
            .await
            .into_iter()
            .find(|r| r.metadata.name.as_deref() == Some(rs))
            .filter(|r| r.spec.replicas == Some(replicas))
            .filter(|r| {
                replicas != 0
                    || !r
                        .metadata
                        .annotations
                        .as_ref()
                        .is_some_and(|a| a.contains_key("scale-down-deadline"))
            })
            .map(|_| ())
    })
    .await;
}

async fn set_paused(cluster: &Cluster, paused: bool) {
    cluster
        .rollouts()
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"paused": paused}})),
        )
        .await
        .expect("spec.paused patched");
}

/// v1 deployed and Healthy; returns its ReplicaSet.
async fn deploy_v1(cluster: &Cluster, replicas: i32, strategy: Value) -> String {
    cluster.create_rollout(manifest(replicas, strategy)).await;
    current_rs(&cluster.wait_healthy("web", 20).await)
}

/// v2 up behind the preview service and paused for promotion; returns v2's ReplicaSet.
async fn preview_v2(cluster: &Cluster) -> String {
    cluster.set_image("web", "web:v2").await;
    let paused = cluster
        .wait_rollout("web", "v2 paused for promotion", 20, paused_for_promotion)
        .await;
    current_rs(&paused)
}

async fn promote(cluster: &Cluster) {
    cluster
        .patch_status("web", json!({"pauseConditions": null}))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_deploy_makes_the_first_revision_active_directly() {
    let cluster = cluster().await;
    let start = cluster.sim.request_log().len();
    let blue = deploy_v1(&cluster, 3, json!({"autoPromotionEnabled": false})).await;
    let hash = hash_of(&blue);
    let writes = log_since(&cluster, start);
    // No pause and no preview stage: the only revision takes both services once its three pods
    // are available, one write per service.
    assert_eq!(
        story(&writes),
        vec![
            format!("create {blue} 0"),
            format!("scale {blue} 3"),
            format!("{PREVIEW} -> {hash}"),
            format!("{ACTIVE} -> {hash}"),
        ]
    );
    assert_eq!(available_at_switch(&cluster, start, ACTIVE, &blue), 3);
    let rollout = cluster.rollout("web").await;
    let s = status(&rollout);
    assert_eq!(s.phase.as_deref(), Some("Healthy"));
    assert!(!s.has_pause_conditions());
    let bg = s.blue_green.unwrap();
    assert_eq!(bg.active_selector.as_deref(), Some(hash.as_str()));
    assert_eq!(bg.preview_selector.as_deref(), Some(hash.as_str()));
    assert_eq!(s.stable_rs.as_deref(), Some(hash.as_str()));
    assert_eq!(
        selector_of(&cluster, ACTIVE).await.as_deref(),
        Some(hash.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_promotion_switches_active_once_and_blue_leaves_after_the_delay() {
    let cluster = cluster().await;
    let strategy = json!({"autoPromotionEnabled": false, "scaleDownDelaySeconds": 2});
    let blue = deploy_v1(&cluster, 3, strategy).await;
    let start = cluster.sim.request_log().len();
    let green = preview_v2(&cluster).await;
    let (blue_hash, green_hash) = (hash_of(&blue), hash_of(&green));

    // Preview: green comes up next to blue; the preview service moves only when all three
    // green pods are available; the active service does not move.
    let writes = log_since(&cluster, start);
    assert_eq!(
        story(&writes),
        vec![
            format!("create {green} 0"),
            format!("scale {green} 3"),
            format!("{PREVIEW} -> {green_hash}"),
        ]
    );
    assert_eq!(available_at_switch(&cluster, start, PREVIEW, &green), 3);
    let paused = cluster.rollout("web").await;
    let bg = status(&paused).blue_green.unwrap();
    assert_eq!(bg.active_selector.as_deref(), Some(blue_hash.as_str()));
    assert_eq!(
        selector_of(&cluster, ACTIVE).await.as_deref(),
        Some(blue_hash.as_str())
    );

    // Promote as the plugin does: the active service switches in one write, then blue gets
    // its deadline and goes only once the deadline has passed.
    let promote_at = cluster.sim.request_log().len();
    promote(&cluster).await;
    cluster.wait_healthy("web", 20).await;
    wait_scaled_to(&cluster, &blue, 0, 20).await;
    let writes = log_since(&cluster, promote_at);
    assert_eq!(
        story(&writes),
        vec![
            format!("{ACTIVE} -> {green_hash}"),
            format!("deadline {blue} set"),
            format!("scale {blue} 0"),
            format!("deadline {blue} cleared"),
        ]
    );
    assert_eq!(available_at_switch(&cluster, start, ACTIVE, &green), 3);
    let switched = time_of(&writes, "active switch", |w| is_switch(w, ACTIVE));
    let deadline = deadline_written(&writes, &blue);
    let scaled = time_of(&writes, "blue scaled down", |w| {
        w.name.as_deref() == Some(blue.as_str())
            && w.body.as_ref().is_some_and(|b| b["spec"]["replicas"] == 0)
    });
    let delay = deadline.duration_since(switched).unwrap_or_default();
    assert!(
        delay >= Duration::from_millis(1_500) && delay <= Duration::from_secs(3),
        "deadline {delay:?} after the switch"
    );
    // The deadline has second precision in the annotation; allow for the truncation.
    assert!(
        scaled + Duration::from_secs(1) >= deadline,
        "blue scaled down before its deadline"
    );
    let done = cluster.rollout("web").await;
    assert_eq!(
        status(&done).stable_rs.as_deref(),
        Some(green_hash.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_while_paused_keeps_blue_active_and_retry_then_promote_completes() {
    let cluster = cluster().await;
    let strategy = json!({
        "autoPromotionEnabled": false,
        "scaleDownDelaySeconds": 2,
        "abortScaleDownDelaySeconds": 1
    });
    let blue = deploy_v1(&cluster, 2, strategy).await;
    let green = preview_v2(&cluster).await;
    let (blue_hash, green_hash) = (hash_of(&blue), hash_of(&green));

    let abort_at = cluster.sim.request_log().len();
    cluster.patch_status("web", json!({"abort": true})).await;
    let aborted = cluster
        .wait_rollout("web", "aborted and Degraded", 20, |r| {
            let s = status(r);
            s.phase.as_deref() == Some("Degraded") && s.abort == Some(true)
        })
        .await;
    assert!(
        status(&aborted)
            .message
            .unwrap_or_default()
            .starts_with("RolloutAborted: Rollout aborted update to revision 2"),
    );
    wait_scaled_to(&cluster, &green, 0, 20).await;
    // Neither service moved: active on blue, preview on green; green leaves after its delay.
    assert_eq!(
        story(&log_since(&cluster, abort_at)),
        vec![
            format!("deadline {green} set"),
            format!("scale {green} 0"),
            format!("deadline {green} cleared"),
        ]
    );
    assert_eq!(
        selector_of(&cluster, ACTIVE).await.as_deref(),
        Some(blue_hash.as_str())
    );
    assert_eq!(
        selector_of(&cluster, PREVIEW).await.as_deref(),
        Some(green_hash.as_str())
    );
    let still = cluster.rollout("web").await;
    assert_eq!(status(&still).phase.as_deref(), Some("Degraded"));

    // Retry as the plugin does: green comes back and pauses again; promote completes.
    let retry_at = cluster.sim.request_log().len();
    cluster.patch_status("web", json!({"abort": false})).await;
    cluster
        .wait_rollout(
            "web",
            "paused again after the retry",
            20,
            paused_for_promotion,
        )
        .await;
    promote(&cluster).await;
    let done = cluster.wait_healthy("web", 20).await;
    assert_eq!(current_rs(&done), green);
    wait_scaled_to(&cluster, &blue, 0, 20).await;
    let writes = log_since(&cluster, retry_at);
    assert_eq!(
        story(&writes),
        vec![
            format!("scale {green} 2"),
            format!("{ACTIVE} -> {green_hash}"),
            format!("deadline {blue} set"),
            format!("scale {blue} 0"),
            format!("deadline {blue} cleared"),
        ]
    );
    assert_eq!(available_at_switch(&cluster, retry_at, ACTIVE, &green), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_revision_while_paused_supersedes_the_previous_green() {
    let cluster = cluster().await;
    let strategy = json!({"autoPromotionEnabled": false, "scaleDownDelaySeconds": 2});
    let blue = deploy_v1(&cluster, 2, strategy).await;
    let v2 = preview_v2(&cluster).await;
    let start = cluster.sim.request_log().len();
    cluster.set_image("web", "web:v3").await;
    let paused = cluster
        .wait_rollout("web", "v3 paused for promotion", 20, |r| {
            paused_for_promotion(r) && current_rs(r) != v2
        })
        .await;
    let v3 = current_rs(&paused);
    wait_scaled_to(&cluster, &v2, 0, 20).await;
    let writes = log_since(&cluster, start);
    let story = story(&writes);
    // v3 comes up and takes the preview service once available; v2 leaves (after its delay);
    // blue and the active service are untouched.
    assert_eq!(
        story,
        vec![
            format!("create {v3} 0"),
            format!("deadline {v2} set"),
            format!("scale {v3} 2"),
            format!("{PREVIEW} -> {}", hash_of(&v3)),
            format!("scale {v2} 0"),
            format!("deadline {v2} cleared"),
        ]
    );
    assert_eq!(available_at_switch(&cluster, start, PREVIEW, &v3), 2);
    assert_eq!(
        selector_of(&cluster, ACTIVE).await.as_deref(),
        Some(hash_of(&blue).as_str())
    );
    let s = status(&cluster.rollout("web").await);
    assert_eq!(s.stable_rs, Some(hash_of(&blue)));
    assert_eq!(s.phase.as_deref(), Some("Paused"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn going_back_to_a_revision_still_scaled_up_switches_at_once() {
    let cluster = cluster().await;
    let strategy = json!({"autoPromotionEnabled": false, "scaleDownDelaySeconds": 20});
    let v1 = deploy_v1(&cluster, 2, strategy).await;
    let v2 = preview_v2(&cluster).await;
    promote(&cluster).await;
    cluster
        .wait_rollout("web", "v2 promoted", 20, |r| promoted_to(r, &v2))
        .await;
    eventually("v1 carries a scale-down deadline", 20, || async {
        cluster
            .replica_sets()
            .await
            .into_iter()
            .find(|r| r.metadata.name.as_deref() == Some(v1.as_str()))
            .filter(|r| {
                r.metadata
                    .annotations
                    .as_ref()
                    .is_some_and(|a| a.contains_key("scale-down-deadline"))
            })
            .map(|_| ())
    })
    .await;

    // Back to v1 while its pods are still up: no new ReplicaSet, no pause, no preview stage.
    let start = cluster.sim.request_log().len();
    let began = Instant::now();
    // The whole container as v1 had it (a merge patch replaces the list).
    let v1_containers = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "web", "image": "web:v1", "ports": [{"containerPort": 8080}]}
    ]}}}});
    cluster
        .rollouts()
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(&v1_containers),
        )
        .await
        .expect("back to v1");
    let back = cluster
        .wait_rollout("web", "v1 active and stable again", 10, |r| {
            promoted_to(r, &v1)
        })
        .await;
    assert_eq!(status(&back).phase.as_deref(), Some("Healthy"));
    assert!(began.elapsed() < Duration::from_secs(10));
    let writes = log_since(&cluster, start);
    let v1_hash = hash_of(&v1);
    assert_eq!(
        story(&writes),
        vec![
            format!("revision-history {v1} 1"),
            format!("revision {v1}"),
            format!("deadline {v1} cleared"),
            format!("{PREVIEW} -> {v1_hash}"),
            format!("{ACTIVE} -> {v1_hash}"),
            format!("deadline {v2} set"),
        ]
    );
    let paused_ever = writes
        .iter()
        .filter(|w| w.resource == "rollouts" && w.subresource.as_deref() == Some("status"))
        .any(|w| {
            w.body.as_ref().is_some_and(|b| {
                b["status"]["pauseConditions"].is_array() || b["status"]["phase"] == "Paused"
            })
        });
    assert!(
        !paused_ever,
        "a fast rollback never pauses: {:#?}",
        story(&writes)
    );
    let rs = cluster.replica_sets().await;
    let v1_rs = rs
        .iter()
        .find(|r| r.metadata.name.as_deref() == Some(v1.as_str()))
        .unwrap();
    assert_eq!(
        v1_rs.metadata.annotations.as_ref().unwrap()["rollout.argoproj.io/revision"],
        "3"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kitchen_sink_preview_count_and_auto_promotion_seconds() {
    let cluster = cluster().await;
    let strategy = json!({
        "previewReplicaCount": 1,
        "autoPromotionSeconds": 2,
        "scaleDownDelaySeconds": 2
    });
    let blue = deploy_v1(&cluster, 3, strategy).await;
    let start = cluster.sim.request_log().len();
    cluster.set_image("web", "web:v2").await;
    let paused = cluster
        .wait_rollout("web", "one preview pod, paused", 20, paused_for_promotion)
        .await;
    let green = current_rs(&paused);
    let s = status(&paused);
    assert_eq!(s.updated_replicas, Some(1));
    assert_eq!(s.available_replicas, Some(3), "the active pods are counted");
    let pause_start = s.pause_conditions.unwrap()[0].start_time.0;
    cluster.wait_healthy("web", 20).await;
    wait_scaled_to(&cluster, &blue, 0, 20).await;
    let writes = log_since(&cluster, start);
    let green_hash = hash_of(&green);
    // Replica counts at every stage: v1 3 / v2 1 (preview), v1 3 / v2 3 (promoted by the
    // timer, checkpoint), active switched, v1 0 after its delay.
    assert_eq!(
        story(&writes),
        vec![
            format!("create {green} 0"),
            format!("scale {green} 1"),
            format!("{PREVIEW} -> {green_hash}"),
            format!("scale {green} 3"),
            format!("{ACTIVE} -> {green_hash}"),
            format!("deadline {blue} set"),
            format!("scale {blue} 0"),
            format!("deadline {blue} cleared"),
        ]
    );
    assert_eq!(available_at_switch(&cluster, start, PREVIEW, &green), 1);
    assert_eq!(available_at_switch(&cluster, start, ACTIVE, &green), 3);
    // No early promotion: the full scale-up waits for autoPromotionSeconds.
    let scale_up = time_of(&writes, "green scaled to 3", |w| {
        w.name.as_deref() == Some(green.as_str())
            && w.body.as_ref().is_some_and(|b| b["spec"]["replicas"] == 3)
    });
    let pause_start = SystemTime::UNIX_EPOCH
        + Duration::from_millis(u64::try_from(pause_start.as_millisecond()).unwrap());
    let waited = scale_up.duration_since(pause_start).unwrap_or_default();
    assert!(
        waited >= Duration::from_millis(1_500),
        "promoted after {waited:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_full_skips_the_pause_and_spec_paused_halts_then_resumes() {
    let cluster = cluster().await;
    let strategy = json!({
        "autoPromotionEnabled": false,
        "previewReplicaCount": 1,
        "scaleDownDelaySeconds": 1
    });
    let blue = deploy_v1(&cluster, 2, strategy).await;
    let v2 = preview_v2(&cluster).await;

    // promoteFull: straight to full size and the switch; the flag is cleared afterwards.
    let full_at = cluster.sim.request_log().len();
    cluster
        .patch_status("web", json!({"promoteFull": true}))
        .await;
    let done = cluster.wait_healthy("web", 20).await;
    assert_eq!(current_rs(&done), v2);
    assert_ne!(status(&done).promote_full, Some(true));
    wait_scaled_to(&cluster, &blue, 0, 20).await;
    assert_eq!(
        story(&log_since(&cluster, full_at)),
        vec![
            format!("scale {v2} 2"),
            format!("{ACTIVE} -> {}", hash_of(&v2)),
            format!("deadline {blue} set"),
            format!("scale {blue} 0"),
            format!("deadline {blue} cleared"),
        ]
    );
    assert_eq!(available_at_switch(&cluster, full_at, ACTIVE, &v2), 2);

    // spec.paused: the new revision's ReplicaSet exists but nothing grows or switches.
    set_paused(&cluster, true).await;
    let pause_at = cluster.sim.request_log().len();
    cluster.set_image("web", "web:v3").await;
    let paused = cluster
        .wait_rollout("web", "manually paused on v3", 20, |r| {
            let s = status(r);
            s.phase.as_deref() == Some("Paused")
                && s.message.as_deref() == Some("manually paused")
                && r.metadata.generation == s.observed_generation_number()
        })
        .await;
    let v3 = current_rs(&paused);
    let quiet_until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < quiet_until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        story(&log_since(&cluster, pause_at)),
        vec![format!("create {v3} 0")]
    );

    // Resume: the update continues to its promotion pause.
    set_paused(&cluster, false).await;
    cluster
        .wait_rollout("web", "v3 paused for promotion after resume", 20, |r| {
            paused_for_promotion(r) && current_rs(r) == v3
        })
        .await;
    assert_eq!(selector_of(&cluster, ACTIVE).await, Some(hash_of(&v2)));
}

/// Labels of the pods of ReplicaSet `rs` (`rollouts-pod-template-hash` selected).
async fn pod_roles(cluster: &Cluster, rs: &str) -> Vec<Option<String>> {
    let pods = Api::<Pod>::namespaced(cluster.client.clone(), ns())
        .list(&ListParams::default().labels(&format!("rollouts-pod-template-hash={}", hash_of(rs))))
        .await
        .unwrap();
    pods.items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| {
            p.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("role").cloned())
        })
        .collect()
}

async fn wait_roles(cluster: &Cluster, rs: &str, count: usize, role: Option<&str>) {
    let what = format!("{count} pods of {rs} with role {role:?}");
    eventually(&what, 20, || async {
        let roles = pod_roles(cluster, rs).await;
        (roles.len() == count && roles.iter().all(|r| r.as_deref() == role)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_carry_their_roles_metadata_and_green_avoids_blues_nodes() {
    let cluster = cluster().await;
    let strategy = json!({
        "autoPromotionEnabled": false,
        "scaleDownDelaySeconds": 10,
        "activeMetadata": {"labels": {"role": "active"}},
        "previewMetadata": {"labels": {"role": "preview"}, "annotations": {"stage": "preview"}},
        "antiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": {"weight": 60}}
    });
    let start = cluster.sim.request_log().len();
    let blue = deploy_v1(&cluster, 2, strategy).await;
    wait_roles(&cluster, &blue, 2, Some("active")).await;
    // The template gets the role before the first pod exists.
    assert_eq!(
        story(&log_since(&cluster, start))[..3],
        [
            format!("create {blue} 0"),
            format!("metadata {blue}"),
            format!("scale {blue} 2"),
        ]
    );

    let preview_at = cluster.sim.request_log().len();
    let green = preview_v2(&cluster).await;
    wait_roles(&cluster, &green, 2, Some("preview")).await;
    wait_roles(&cluster, &blue, 2, Some("active")).await;
    assert_eq!(
        story(&log_since(&cluster, preview_at)),
        vec![
            format!("create {green} 0"),
            format!("metadata {green}"),
            format!("scale {green} 2"),
            format!("{PREVIEW} -> {}", hash_of(&green)),
        ]
    );
    let replica_sets = cluster.replica_sets().await;
    let green_rs = replica_sets
        .iter()
        .find(|r| r.metadata.name.as_deref() == Some(green.as_str()))
        .unwrap();
    let template = serde_json::to_value(green_rs.spec.template.clone().unwrap()).unwrap();
    assert_eq!(
        template["spec"]["affinity"],
        json!({"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
            "weight": 60,
            "podAffinityTerm": {
                "labelSelector": {"matchExpressions": [{
                    "key": "rollouts-pod-template-hash", "operator": "In", "values": [hash_of(&blue)]
                }]},
                "topologyKey": "kubernetes.io/hostname"
            }
        }]}})
    );
    assert_eq!(template["metadata"]["labels"]["role"], "preview");
    assert_eq!(template["metadata"]["annotations"]["stage"], "preview");
    let blue_rs = replica_sets
        .iter()
        .find(|r| r.metadata.name.as_deref() == Some(blue.as_str()))
        .unwrap();
    let blue_template = serde_json::to_value(blue_rs.spec.template.clone().unwrap()).unwrap();
    assert_eq!(
        blue_template["spec"]["affinity"],
        Value::Null,
        "v1 had no previous revision"
    );

    // Promotion: green's running pods become active in place (same pods, relabelled), and
    // blue's pods lose the role while they wait out the delay.
    let green_pods_before = pod_names(&cluster, &green).await;
    let promote_at = cluster.sim.request_log().len();
    promote(&cluster).await;
    cluster
        .wait_rollout("web", "green promoted", 20, |r| promoted_to(r, &green))
        .await;
    wait_roles(&cluster, &green, 2, Some("active")).await;
    wait_roles(&cluster, &blue, 2, None).await;
    assert_eq!(
        pod_names(&cluster, &green).await,
        green_pods_before,
        "no pod restarted"
    );
    let story = story(&log_since(&cluster, promote_at));
    let switch = story.iter().position(|l| l.starts_with(ACTIVE)).unwrap();
    let relabel = story
        .iter()
        .position(|l| *l == format!("metadata {green}"))
        .unwrap();
    assert!(
        switch < relabel,
        "green is labelled active after the switch: {story:#?}"
    );
    assert!(story.contains(&format!("metadata {blue}")), "{story:#?}");
    let green_pod = Api::<Pod>::namespaced(cluster.client.clone(), ns())
        .get(&green_pods_before[0])
        .await
        .unwrap();
    let annotations = green_pod.metadata.annotations.unwrap_or_default();
    assert!(
        !annotations.contains_key("stage"),
        "preview annotation removed: {annotations:?}"
    );
}

async fn pod_names(cluster: &Cluster, rs: &str) -> Vec<String> {
    let pods = Api::<Pod>::namespaced(cluster.client.clone(), ns())
        .list(&ListParams::default().labels(&format!("rollouts-pod-template-hash={}", hash_of(rs))))
        .await
        .unwrap();
    let mut names: Vec<String> = pods
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_newest_previous_revisions_wait_out_their_delay() {
    let cluster = cluster().await;
    let strategy = json!({"scaleDownDelaySeconds": 30, "scaleDownDelayRevisionLimit": 1});
    let v1 = deploy_v1(&cluster, 1, strategy).await;
    cluster.set_image("web", "web:v2").await;
    let v2 = current_rs(
        &cluster
            .wait_rollout("web", "v2 promoted automatically", 20, |r| {
                r.status.as_ref().and_then(|s| s.stable_rs.as_deref()) != Some(&hash_of(&v1))
                    && promoted_to(r, &current_rs(r))
            })
            .await,
    );
    let start = cluster.sim.request_log().len();
    cluster.set_image("web", "web:v3").await;
    let v3 = current_rs(
        &cluster
            .wait_rollout("web", "v3 promoted automatically", 20, |r| {
                r.status.as_ref().and_then(|s| s.stable_rs.as_deref()) != Some(&hash_of(&v2))
                    && promoted_to(r, &current_rs(r))
            })
            .await,
    );
    wait_scaled_to(&cluster, &v1, 0, 10).await;
    // v2 (just switched out) waits its 30 s; v1 is beyond the limit of one and goes now,
    // long before its own deadline.
    let writes = log_since(&cluster, start);
    assert_eq!(
        story(&writes),
        vec![
            format!("create {v3} 0"),
            format!("scale {v3} 1"),
            format!("{PREVIEW} -> {}", hash_of(&v3)),
            format!("{ACTIVE} -> {}", hash_of(&v3)),
            format!("deadline {v2} set"),
            format!("scale {v1} 0"),
            format!("deadline {v1} cleared"),
        ]
    );
    let v2_now = cluster
        .replica_sets()
        .await
        .into_iter()
        .find(|r| r.metadata.name.as_deref() == Some(v2.as_str()))
        .unwrap();
    let v2_annotations = v2_now.metadata.annotations.clone().unwrap_or_default();
    assert!(
        v2_annotations.contains_key("scale-down-deadline"),
        "v2 keeps its deadline: {v2_annotations:?}"
    );
    assert_eq!(
        v2_now.spec.replicas,
        Some(1),
        "v2 still up for the fast way back"
    );
}
