//! End to end on ramp-sim: the canary scenarios of the upstream e2e suite (research doc §8) that
//! no other test file covers, each named after the upstream test it mirrors and asserting what
//! upstream asserts — replica counts per revision at each stage, weights, phases, conditions —
//! from the sim's request log where the order of writes matters.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod canary_support;

use canary_support::*;
use k8s_openapi::api::apps::v1::ReplicaSet;
use kube::api::{Patch, PatchParams};
use pretty_assertions::assert_eq;
use ramp_api::rollout::{Rollout, RolloutStatus};
use ramp_sim::LoggedRequest;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const CRASH_LOOP: &str = "sim.ramp.dev/crash-loop";
const READY_AFTER: &str = "sim.ramp.dev/ready-after";
const REVISION: &str = "rollout.argoproj.io/revision";
const SCALE_DOWN_DEADLINE: &str = "scale-down-deadline";
const HASH_LABEL: &str = "rollouts-pod-template-hash";

fn summaries(writes: &[LoggedRequest]) -> Vec<String> {
    writes.iter().map(LoggedRequest::summary).collect()
}

fn status_of(rollout: &Rollout) -> RolloutStatus {
    rollout.status.clone().unwrap_or_default()
}

fn phase_is(rollout: &Rollout, phase: &str) -> bool {
    let s = status_of(rollout);
    s.phase.as_deref() == Some(phase)
        && s.observed_generation_number() == rollout.metadata.generation
}

fn paused_at(rollout: &Rollout, step: i32) -> bool {
    let s = status_of(rollout);
    phase_is(rollout, "Paused") && s.current_step_index == Some(step) && s.has_pause_conditions()
}

/// Healthy on a template other than the one hashed `old_hash`.
fn promoted_away_from(rollout: &Rollout, old_hash: &str) -> bool {
    let s = status_of(rollout);
    phase_is(rollout, "Healthy")
        && s.is_fully_promoted()
        && s.stable_rs.as_deref() != Some(old_hash)
}

fn hash_of(rs_name: &str) -> &str {
    rs_name.trim_start_matches("web-")
}

/// Like [`Cluster::wait_rollout`], but a timeout shows the status and the controller's writes
/// since `checkpoint`, which is what a failure needs to be diagnosed.
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

async fn patch_spec(cluster: &Cluster, spec: Value) {
    cluster
        .rollouts()
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": spec })),
        )
        .await
        .expect("spec patched");
}

/// Sets (or with `null`, removes) pod-template annotations: a new revision whose pods behave
/// as the `sim.ramp.dev/*` annotations say.
async fn set_template_annotations(cluster: &Cluster, annotations: Value) {
    patch_spec(
        cluster,
        json!({"template": {"metadata": {"annotations": annotations}}}),
    )
    .await;
}

async fn scale_rollout(cluster: &Cluster, replicas: i32) {
    patch_spec(cluster, json!({ "replicas": replicas })).await;
}

/// `spec.replicas` of every ReplicaSet of the rollout, by revision.
async fn replicas_by_revision(cluster: &Cluster) -> BTreeMap<String, (String, i32)> {
    cluster
        .replica_sets()
        .await
        .into_iter()
        .filter_map(|rs: ReplicaSet| {
            let revision = rs.metadata.annotations.as_ref()?.get(REVISION)?.clone();
            Some((
                revision,
                (
                    rs.metadata.name.clone().unwrap_or_default(),
                    rs.spec.replicas.unwrap_or(0),
                ),
            ))
        })
        .collect()
}

/// Waits until the ReplicaSets of the given revisions ask for the given pod counts (and every
/// other revision for none), returning revision → ReplicaSet name.
async fn wait_revision_counts(
    cluster: &Cluster,
    what: &str,
    secs: u64,
    expected: &[(&str, i32)],
) -> BTreeMap<String, String> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let now = replicas_by_revision(cluster).await;
        let matches = expected
            .iter()
            .all(|(rev, n)| now.get(*rev).is_some_and(|(_, r)| r == n))
            && now
                .iter()
                .filter(|(rev, _)| !expected.iter().any(|(e, _)| e == rev))
                .all(|(_, (_, r))| *r == 0);
        if matches {
            return now
                .into_iter()
                .map(|(rev, (name, _))| (rev, name))
                .collect();
        }
        assert!(
            Instant::now() < deadline,
            "{what}: never happened within {secs} s; ReplicaSets (revision → name, replicas): {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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

/// The phases the controller wrote, consecutive repeats folded.
fn written_phases(writes: &[LoggedRequest]) -> Vec<String> {
    let mut phases: Vec<String> = Vec::new();
    for status in rollout_status_writes(writes) {
        if let Some(phase) = status["phase"].as_str()
            && phases.last().map(String::as_str) != Some(phase)
        {
            phases.push(phase.to_owned());
        }
    }
    phases
}

/// `(status, reason)` of a condition as written.
type WrittenCondition = (String, String);

/// `(status, reason)` of condition `type_` in a written status.
fn written_condition(status: &Value, type_: &str) -> Option<WrittenCondition> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_owned(),
                c["reason"].as_str().unwrap_or_default().to_owned(),
            )
        })
}

/// `(ReplicaSet, replicas)` scale writes restricted to the named ReplicaSets.
fn scales_of(writes: &[LoggedRequest], names: &[&str]) -> Vec<(String, i64)> {
    replica_writes(writes)
        .into_iter()
        .filter(|(rs, _)| names.contains(&rs.as_str()))
        .collect()
}

/// Replays scale writes onto `start` and checks the ReplicaSets together never ask for more
/// than `max_pods`.
fn assert_never_above(start: &[(&str, i64)], scales: &[(String, i64)], max_pods: i64) {
    let mut counts: BTreeMap<String, i64> =
        start.iter().map(|(n, r)| ((*n).to_owned(), *r)).collect();
    for (rs, replicas) in scales {
        counts.insert(rs.clone(), *replicas);
        let total: i64 = counts.values().sum();
        assert!(
            total <= max_pods,
            "more than {max_pods} pods asked for: {counts:?} after {scales:?}"
        );
    }
}

/// Waits out `window` and returns the controller's writes in it other than rollout statuses.
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

// ---------------------------------------------------------------------------------------------
// Basic canary (no traffic router): replica math under maxSurge / maxUnavailable
// ---------------------------------------------------------------------------------------------

/// TestRolloutScalingWhenPaused: `spec.replicas` changed while paused at `setWeight: 25` keeps
/// the weight's ratio between canary and stable: 1 → (1, 1), 8 → (2, 6), 4 → (1, 3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_rollout_scaling_when_paused() {
    let mut cluster = Cluster::start().await;
    cluster.start_controller();
    let steps = json!({"steps": [{"setWeight": 25}, {"pause": {}}]});
    cluster
        .create_rollout(rollout_manifest("web", 1, steps))
        .await;
    cluster.wait_healthy("web", 20).await;
    let start = cluster.sim.request_log().len();
    cluster.set_image("web", "web:v2").await;
    wait_or_dump(&cluster, "paused at 25 %", 20, start, |r| paused_at(r, 1)).await;
    let revs =
        wait_revision_counts(&cluster, "1 canary, 1 stable", 10, &[("1", 1), ("2", 1)]).await;
    let (stable, canary) = (revs["1"].clone(), revs["2"].clone());

    let at_8 = cluster.sim.request_log().len();
    scale_rollout(&cluster, 8).await;
    wait_or_dump(&cluster, "8 available, still paused", 20, at_8, |r| {
        paused_at(r, 1) && status_of(r).available_replicas == Some(8)
    })
    .await;
    wait_revision_counts(&cluster, "2 canary, 6 stable", 10, &[("1", 6), ("2", 2)]).await;
    let up = scales_of(&controller_writes(&cluster.sim, at_8), &[&stable, &canary]);
    assert_eq!(
        up,
        vec![(canary.clone(), 2), (stable.clone(), 6)],
        "{:#?}",
        summaries(&controller_writes(&cluster.sim, at_8))
    );

    let at_4 = cluster.sim.request_log().len();
    scale_rollout(&cluster, 4).await;
    wait_or_dump(&cluster, "4 available, still paused", 20, at_4, |r| {
        paused_at(r, 1)
            && status_of(r).available_replicas == Some(4)
            && status_of(r).replicas == Some(4)
    })
    .await;
    wait_revision_counts(&cluster, "1 canary, 3 stable", 10, &[("1", 3), ("2", 1)]).await;
    let down = scales_of(&controller_writes(&cluster.sim, at_4), &[&stable, &canary]);
    // Scaling down to 4 (maxSurge 1, maxUnavailable 1): the canary goes to its share first,
    // the stable follows.
    assert_eq!(
        down,
        vec![
            (canary.clone(), 1),
            (stable.clone(), 4),
            (stable.clone(), 3)
        ]
    );
    // The pause was never left: the step index is 1 in every status written since the update.
    let statuses = rollout_status_writes(&controller_writes(&cluster.sim, at_8));
    assert!(
        statuses
            .iter()
            .all(|s| s["currentStepIndex"].as_i64().is_none_or(|i| i == 1)),
        "{statuses:#?}"
    );
}

fn update_scaling_manifest(canary: Value) -> Value {
    rollout_manifest("web", 4, canary)
}

/// TestRolloutWithMaxSurgeScalingDuringUpdate: `maxSurge: 100%`, a canary that never becomes
/// available: 4 canary + 3 stable (7 pods), scaled to 8 → 8 + 3 (11), back to 4 → 4 + 3 (7).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_rollout_with_max_surge_scaling_during_update() {
    let mut cluster = Cluster::start().await;
    cluster.start_controller();
    cluster
        .create_rollout(update_scaling_manifest(json!({"maxSurge": "100%"})))
        .await;
    cluster.wait_healthy("web", 20).await;
    let start = cluster.sim.request_log().len();
    set_template_annotations(&cluster, json!({ CRASH_LOOP: "true" })).await;
    wait_or_dump(&cluster, "7 pods", 20, start, |r| {
        status_of(r).replicas == Some(7)
    })
    .await;
    let revs =
        wait_revision_counts(&cluster, "4 canary, 3 stable", 10, &[("1", 3), ("2", 4)]).await;
    let (stable, canary) = (revs["1"].clone(), revs["2"].clone());
    assert_eq!(
        scales_of(&controller_writes(&cluster.sim, start), &[&stable, &canary]),
        vec![
            (canary.clone(), 0),
            (canary.clone(), 4),
            (stable.clone(), 3)
        ]
    );

    let at_8 = cluster.sim.request_log().len();
    scale_rollout(&cluster, 8).await;
    wait_or_dump(&cluster, "11 pods", 20, at_8, |r| {
        status_of(r).replicas == Some(11)
    })
    .await;
    wait_revision_counts(&cluster, "8 canary, 3 stable", 10, &[("1", 3), ("2", 8)]).await;
    assert_eq!(
        scales_of(&controller_writes(&cluster.sim, at_8), &[&stable, &canary]),
        vec![(canary.clone(), 8)]
    );

    let at_4 = cluster.sim.request_log().len();
    scale_rollout(&cluster, 4).await;
    wait_or_dump(&cluster, "7 pods", 20, at_4, |r| {
        status_of(r).replicas == Some(7)
    })
    .await;
    wait_revision_counts(&cluster, "4 canary, 3 stable", 10, &[("1", 3), ("2", 4)]).await;
    assert_eq!(
        scales_of(&controller_writes(&cluster.sim, at_4), &[&stable, &canary]),
        vec![(canary.clone(), 4)]
    );
    // The three available stable pods are never touched: availability never drops below
    // replicas − maxUnavailable.
    let r = cluster.rollout("web").await;
    assert_eq!(status_of(&r).available_replicas, Some(3));
}

/// TestRolloutScalingDuringUpdate: `maxSurge: 2`, `maxUnavailable: 0`, a canary that never
/// becomes available: 2 canary + 4 stable, scaled to 8 → 6 + 4, back to 4 → 2 + 4.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_rollout_scaling_during_update() {
    let mut cluster = Cluster::start().await;
    cluster.start_controller();
    cluster
        .create_rollout(update_scaling_manifest(
            json!({"maxSurge": 2, "maxUnavailable": 0}),
        ))
        .await;
    cluster.wait_healthy("web", 20).await;
    let start = cluster.sim.request_log().len();
    set_template_annotations(&cluster, json!({ CRASH_LOOP: "true" })).await;
    wait_or_dump(&cluster, "6 pods", 20, start, |r| {
        status_of(r).replicas == Some(6)
    })
    .await;
    let revs =
        wait_revision_counts(&cluster, "2 canary, 4 stable", 10, &[("1", 4), ("2", 2)]).await;
    let (stable, canary) = (revs["1"].clone(), revs["2"].clone());
    assert_eq!(
        scales_of(&controller_writes(&cluster.sim, start), &[&stable, &canary]),
        vec![(canary.clone(), 0), (canary.clone(), 2)]
    );

    let at_8 = cluster.sim.request_log().len();
    scale_rollout(&cluster, 8).await;
    wait_or_dump(&cluster, "10 pods", 20, at_8, |r| {
        status_of(r).replicas == Some(10)
    })
    .await;
    wait_revision_counts(&cluster, "6 canary, 4 stable", 10, &[("1", 4), ("2", 6)]).await;
    assert_eq!(
        scales_of(&controller_writes(&cluster.sim, at_8), &[&stable, &canary]),
        vec![(canary.clone(), 6)]
    );

    let at_4 = cluster.sim.request_log().len();
    scale_rollout(&cluster, 4).await;
    wait_or_dump(&cluster, "6 pods", 20, at_4, |r| {
        status_of(r).replicas == Some(6)
    })
    .await;
    wait_revision_counts(&cluster, "2 canary, 4 stable", 10, &[("1", 4), ("2", 2)]).await;
    let down = scales_of(&controller_writes(&cluster.sim, at_4), &[&stable, &canary]);
    assert_eq!(down, vec![(canary.clone(), 2)]);
    // Never more than replicas + maxSurge pods, never an available stable pod removed.
    assert_never_above(&[(&stable, 4), (&canary, 6)], &down, 10);
}

fn bad_rollout(canary: Value, bad: bool) -> Value {
    let mut manifest = rollout_manifest("web", 4, canary);
    manifest["spec"]["progressDeadlineSeconds"] = json!(2);
    if bad {
        manifest["spec"]["template"]["metadata"]["annotations"] = json!({ CRASH_LOOP: "true" });
    }
    manifest
}

fn deadline_exceeded(rollout: &Rollout) -> bool {
    phase_is(rollout, "Degraded")
        && status_of(rollout)
            .condition("Progressing")
            .is_some_and(|c| c.reason == "ProgressDeadlineExceeded" && c.status == "False")
}

/// TestRolloutGoodToBadUpdate: a bad update honours `maxSurge: 1` / `maxUnavailable: 0`
/// (1 canary next to 4 stable) until the deadline degrades it; a second bad image replaces the
/// first canary (revision 2 to 0) while the stable keeps its 4 pods (revision 3 gets 1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_rollout_good_to_bad_update() {
    let mut cluster = Cluster::start().await;
    cluster.start_controller();
    cluster
        .create_rollout(bad_rollout(
            json!({"maxSurge": 1, "maxUnavailable": 0}),
            false,
        ))
        .await;
    cluster.wait_healthy("web", 20).await;
    let start = cluster.sim.request_log().len();
    set_template_annotations(&cluster, json!({ CRASH_LOOP: "true" })).await;
    wait_or_dump(
        &cluster,
        "Degraded by the deadline",
        20,
        start,
        deadline_exceeded,
    )
    .await;
    let revs = wait_revision_counts(&cluster, "1 canary, 4 stable", 5, &[("1", 4), ("2", 1)]).await;
    let (stable, bad1) = (revs["1"].clone(), revs["2"].clone());
    let first = controller_writes(&cluster.sim, start);
    assert_eq!(
        scales_of(&first, &[&stable, &bad1]),
        vec![(bad1.clone(), 0), (bad1.clone(), 1)]
    );

    let second = cluster.sim.request_log().len();
    set_template_annotations(&cluster, json!({ CRASH_LOOP: "true", "bad": "two" })).await;
    let progressing = wait_or_dump(&cluster, "Progressing on revision 3", 20, second, |r| {
        phase_is(r, "Progressing") && current_rs(r) != bad1
    })
    .await;
    let bad2 = current_rs(&progressing);
    wait_or_dump(&cluster, "Degraded again", 20, second, |r| {
        deadline_exceeded(r) && current_rs(r) == bad2
    })
    .await;
    wait_revision_counts(
        &cluster,
        "revision 1: 4, revision 2: 0, revision 3: 1",
        5,
        &[("1", 4), ("2", 0), ("3", 1)],
    )
    .await;
    let writes = controller_writes(&cluster.sim, second);
    let scales = scales_of(&writes, &[&stable, &bad1, &bad2]);
    // The first bad canary goes before the second one takes the single surge pod.
    assert_eq!(
        scales,
        vec![(bad2.clone(), 0), (bad1.clone(), 0), (bad2.clone(), 1)],
        "{:#?}",
        summaries(&writes)
    );
    assert_never_above(&[(&stable, 4), (&bad1, 1)], &scales, 5);
}

/// TestRolloutBadToGoodUpdate: a first deploy that never becomes available is Degraded; a
/// working template (with `setWeight: 50`) then goes all the way: revision 2 at 4, revision 1
/// at 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_rollout_bad_to_good_update() {
    let mut cluster = Cluster::start().await;
    cluster.start_controller();
    let start = cluster.sim.request_log().len();
    cluster
        .create_rollout(bad_rollout(
            json!({"maxSurge": 1, "maxUnavailable": 0, "steps": [{"setWeight": 50}]}),
            true,
        ))
        .await;
    let degraded = wait_or_dump(
        &cluster,
        "Degraded by the deadline",
        20,
        start,
        deadline_exceeded,
    )
    .await;
    let bad = current_rs(&degraded);
    let fix = cluster.sim.request_log().len();
    patch_spec(
        &cluster,
        json!({"progressDeadlineSeconds": 60, "template": {"metadata": {"annotations": { CRASH_LOOP: null }}}}),
    )
    .await;
    let done = wait_or_dump(&cluster, "Healthy on the fixed template", 30, fix, |r| {
        promoted_away_from(r, hash_of(&bad))
    })
    .await;
    let good = current_rs(&done);
    wait_revision_counts(
        &cluster,
        "revision 2: 4, revision 1: 0",
        10,
        &[("2", 4), ("1", 0)],
    )
    .await;
    let writes = controller_writes(&cluster.sim, fix);
    let scales = scales_of(&writes, &[&bad, &good]);
    // Within the budget all along (never more than 5 pods), the 50 % step held at 2 + 2.
    assert_never_above(&[(&bad, 4)], &scales, 5);
    let half = scales
        .iter()
        .position(|s| s == &(good.clone(), 2))
        .unwrap_or_else(|| panic!("{scales:?}"));
    assert!(scales[half..].contains(&(bad.clone(), 2)), "{scales:?}");
    assert_eq!(scales.last(), Some(&(bad.clone(), 0)), "{scales:?}");
    let phases = written_phases(&writes);
    assert_eq!(
        phases.last().map(String::as_str),
        Some("Healthy"),
        "{phases:?}"
    );
}

/// TestRolloutBadToBadUpdate: a crashing first deploy updated to another crashing template
/// still honours `maxSurge: 1` / `maxUnavailable: 0`: revision 2 gets 1 pod, revision 1 keeps 4.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_rollout_bad_to_bad_update() {
    let mut cluster = Cluster::start().await;
    cluster.start_controller();
    let start = cluster.sim.request_log().len();
    cluster
        .create_rollout(bad_rollout(
            json!({"maxSurge": 1, "maxUnavailable": 0}),
            true,
        ))
        .await;
    let degraded = wait_or_dump(
        &cluster,
        "Degraded by the deadline",
        20,
        start,
        deadline_exceeded,
    )
    .await;
    let bad1 = current_rs(&degraded);
    let second = cluster.sim.request_log().len();
    set_template_annotations(&cluster, json!({ CRASH_LOOP: "true", "bad": "two" })).await;
    let progressing = wait_or_dump(&cluster, "Progressing on revision 2", 20, second, |r| {
        phase_is(r, "Progressing") && current_rs(r) != bad1
    })
    .await;
    let bad2 = current_rs(&progressing);
    wait_or_dump(&cluster, "Degraded again", 20, second, |r| {
        deadline_exceeded(r) && current_rs(r) == bad2
    })
    .await;
    wait_revision_counts(
        &cluster,
        "revision 2: 1, revision 1: 4",
        5,
        &[("2", 1), ("1", 4)],
    )
    .await;
    let writes = controller_writes(&cluster.sim, second);
    assert_eq!(
        scales_of(&writes, &[&bad1, &bad2]),
        vec![(bad2.clone(), 0), (bad2.clone(), 1)],
        "{:#?}",
        summaries(&writes)
    );
}

/// TestRolloutBadToGoodSetWeightUpdate: a crashing first deploy updated to a working template
/// with `setWeight: 50` holds 2 canary and 2 stable pods.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_rollout_bad_to_good_set_weight_update() {
    let mut cluster = Cluster::start().await;
    cluster.start_controller();
    let start = cluster.sim.request_log().len();
    cluster
        .create_rollout(bad_rollout(
            json!({"maxSurge": 1, "maxUnavailable": 0, "steps": [{"setWeight": 50}, {"pause": {}}]}),
            true,
        ))
        .await;
    let degraded = wait_or_dump(
        &cluster,
        "Degraded by the deadline",
        20,
        start,
        deadline_exceeded,
    )
    .await;
    let bad = current_rs(&degraded);
    let fix = cluster.sim.request_log().len();
    set_template_annotations(&cluster, json!({ CRASH_LOOP: null })).await;
    wait_or_dump(
        &cluster,
        "Progressing on the fixed template",
        20,
        fix,
        |r| phase_is(r, "Progressing") && current_rs(r) != bad,
    )
    .await;
    let revs =
        wait_revision_counts(&cluster, "2 canary, 2 stable", 20, &[("1", 2), ("2", 2)]).await;
    let good = revs["2"].clone();
    let writes = controller_writes(&cluster.sim, fix);
    let scales = scales_of(&writes, &[&bad, &good]);
    assert_never_above(&[(&bad, 4)], &scales, 5);
    assert_eq!(
        scales,
        vec![
            (good.clone(), 0),
            (good.clone(), 1),
            (bad.clone(), 3),
            (good.clone(), 2),
            (bad.clone(), 2),
        ],
        "{:#?}",
        summaries(&writes)
    );
}

// ---------------------------------------------------------------------------------------------
// Istio: aborts, setCanaryScale, dynamicStableScale
// ---------------------------------------------------------------------------------------------

/// An Istio host-split canary with `steps` and the given strategy fields on top.
fn istio_canary(steps: Value, extra: Value) -> Value {
    istio_canary_with(steps, extra)
}

async fn vs_json(cluster: &Cluster) -> Value {
    serde_json::to_value(cluster.virtual_services().get("web-vsvc").await.unwrap()).unwrap()
}

/// The rollout's recorded router weights: (canary weight, canary hash, stable weight, stable hash).
fn recorded_weights(rollout: &Rollout) -> Option<(i32, String, i32, String)> {
    let weights = status_of(rollout).canary?.weights?;
    Some((
        weights.canary.weight,
        weights.canary.pod_template_hash.unwrap_or_default(),
        weights.stable.weight,
        weights.stable.pod_template_hash.unwrap_or_default(),
    ))
}

/// Hashes written to Service `name`'s selector, in order.
fn service_hashes(writes: &[LoggedRequest], name: &str) -> Vec<String> {
    writes
        .iter()
        .filter(|w| w.resource == "services" && w.name.as_deref() == Some(name))
        .filter_map(|w| {
            w.body.as_ref()?["spec"]["selector"][HASH_LABEL]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

/// Values written for annotation `key` on ReplicaSet `rs` (`None` = removed), with their
/// index in `writes`.
fn annotation_writes(
    writes: &[LoggedRequest],
    rs: &str,
    key: &str,
) -> Vec<(usize, Option<String>)> {
    writes
        .iter()
        .enumerate()
        .filter(|(_, w)| w.resource == "replicasets" && w.name.as_deref() == Some(rs))
        .filter_map(|(i, w)| {
            let value = w.body.as_ref()?["metadata"]["annotations"].get(key)?;
            Some((i, value.as_str().map(str::to_owned)))
        })
        .collect()
}

async fn replica_set(cluster: &Cluster, name: &str) -> ReplicaSet {
    cluster
        .replica_sets()
        .await
        .into_iter()
        .find(|rs| rs.metadata.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("ReplicaSet {name} exists"))
}

fn has_annotation(rs: &ReplicaSet, key: &str) -> bool {
    rs.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(key))
}

/// Every successful request since `checkpoint`, the simulators' included.
fn full_log(cluster: &Cluster, checkpoint: usize) -> Vec<LoggedRequest> {
    cluster
        .sim
        .request_log()
        .since_settled(checkpoint, std::time::Duration::from_secs(2))
        .into_iter()
        .filter(|w| w.succeeded())
        .collect()
}

/// For each VirtualService write in `all` (the full log): the canary weight it left and the
/// available pods of ReplicaSet `rs` the sim had reported just before it.
fn weights_with_available(all: &[LoggedRequest], vs_before: &Value, rs: &str) -> Vec<(i64, i64)> {
    let weights = canary_weights(all, "web-vsvc", vs_before, "web-canary");
    let positions: Vec<usize> = all
        .iter()
        .enumerate()
        .filter(|(_, w)| w.resource == "virtualservices" && w.name.as_deref() == Some("web-vsvc"))
        .map(|(i, _)| i)
        .collect();
    weights
        .into_iter()
        .zip(positions)
        .map(|(weight, at)| (weight, available_before(&all[..at], rs)))
        .collect()
}

/// TestCanaryUnScaleDownOnAbort: with `abortScaleDownDelaySeconds: 0` an abort takes the
/// traffic back to stable and leaves the canary's pods running, with no scale-down deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_canary_un_scale_down_on_abort() {
    let cluster = istio_cluster().await;
    let canary = istio_canary(
        json!([{"setCanaryScale": {"replicas": 1}}, {"setWeight": 50}, {"pause": {}}]),
        json!({"abortScaleDownDelaySeconds": 0}),
    );
    cluster
        .create_rollout(rollout_manifest("web", 2, canary))
        .await;
    let v1 = cluster.wait_healthy("web", 20).await;
    let stable = current_rs(&v1);
    let start = cluster.sim.request_log().len();
    cluster.set_image("web", "web:v2").await;
    let paused = wait_or_dump(&cluster, "paused at 50 %", 20, start, |r| paused_at(r, 2)).await;
    let canary_rs = current_rs(&paused);
    wait_revision_counts(&cluster, "1 canary, 2 stable", 5, &[("1", 2), ("2", 1)]).await;
    let vs = vs_json(&cluster).await;
    assert_eq!(destination_weight(&vs, "web-canary"), 50);

    let abort_at = cluster.sim.request_log().len();
    cluster.patch_status("web", json!({"abort": true})).await;
    let aborted = wait_or_dump(
        &cluster,
        "aborted, Degraded, traffic on stable",
        20,
        abort_at,
        |r| phase_is(r, "Degraded") && recorded_weights(r).is_some_and(|w| w.0 == 0),
    )
    .await;
    assert_eq!(
        status_of(&aborted)
            .message
            .as_deref()
            .map(|m| m.starts_with("RolloutAborted: ")),
        Some(true)
    );
    let later = writes_during(&cluster, Duration::from_secs(2)).await;
    let writes = controller_writes(&cluster.sim, abort_at);
    assert_eq!(
        canary_weights(&writes, "web-vsvc", &vs, "web-canary"),
        vec![0],
        "{:#?}",
        summaries(&writes)
    );
    assert!(
        scales_of(&writes, &[&canary_rs, &stable]).is_empty(),
        "no ReplicaSet is scaled on abort: {:#?}",
        summaries(&writes)
    );
    assert!(
        annotation_writes(&writes, &canary_rs, SCALE_DOWN_DEADLINE).is_empty(),
        "{:#?}",
        summaries(&writes)
    );
    assert!(
        later.iter().all(|w| w.resource != "replicasets"),
        "{:#?}",
        summaries(&later)
    );
    let rs = replica_set(&cluster, &canary_rs).await;
    assert_eq!(rs.spec.replicas, Some(1));
    assert!(!has_annotation(&rs, SCALE_DOWN_DEADLINE));
    // The canary Service serves the stable pods again once the traffic has left the canary.
    assert_eq!(
        service_hashes(&writes, "web-canary"),
        vec![hash_of(&stable).to_owned()],
        "{:#?}",
        summaries(&writes)
    );
}

fn dynamic_canary(extra: Value) -> Value {
    let mut extra = extra;
    extra["dynamicStableScale"] = json!(true);
    istio_canary(
        json!([{"setWeight": 25}, {"pause": {}}, {"setWeight": 75}, {"pause": {}}]),
        extra,
    )
}

/// A 4-pod rollout whose pods become ready 1 s after they start (so a stable that grows back
/// is visibly not ready at once), paused at 25 %: 3 stable and 1 canary pod.
async fn dynamic_at_25(cluster: &Cluster, extra: Value) -> (String, String) {
    let mut manifest = rollout_manifest("web", 4, dynamic_canary(extra));
    manifest["spec"]["template"]["metadata"]["annotations"] = json!({ READY_AFTER: "1s" });
    cluster.create_rollout(manifest).await;
    let v1 = cluster.wait_healthy("web", 20).await;
    let start = cluster.sim.request_log().len();
    set_web_image(cluster, "web:v2").await;
    let paused = wait_or_dump(cluster, "paused at 25 %", 20, start, |r| paused_at(r, 1)).await;
    wait_revision_counts(cluster, "3 stable, 1 canary", 10, &[("1", 3), ("2", 1)]).await;
    (current_rs(&v1), current_rs(&paused))
}

/// Changes the image keeping the rest of the container as `rollout_manifest` wrote it (a merge
/// patch replaces the whole list), so going back to `web:v1` is exactly the first template.
async fn set_web_image(cluster: &Cluster, image: &str) {
    let container = json!({"name": "web", "image": image, "ports": [{"containerPort": 8080}]});
    patch_spec(
        cluster,
        json!({"template": {"spec": {"containers": [container]}}}),
    )
    .await;
}

/// TestCanaryDynamicStableScaleRollbackToStable: going back to the stable template mid-update
/// with dynamicStableScale scales the stable back to 4 first and moves the canary's 25 % back
/// only once all four are available; the canary's pod stays until then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_canary_dynamic_stable_scale_rollback_to_stable() {
    let cluster = istio_cluster().await;
    let (stable, canary_rs) = dynamic_at_25(&cluster, json!({})).await;
    let vs = vs_json(&cluster).await;
    assert_eq!(destination_weight(&vs, "web-canary"), 25);

    let undo = cluster.sim.request_log().len();
    set_web_image(&cluster, "web:v1").await;
    let back = wait_or_dump(&cluster, "Healthy on v1 again", 30, undo, |r| {
        phase_is(r, "Healthy")
            && status_of(r).current_pod_hash.as_deref() == Some(hash_of(&stable))
            && recorded_weights(r).is_some_and(|w| w.0 == 0)
    })
    .await;
    let revs = wait_revision_counts(
        &cluster,
        "v1 (now revision 3) at 4, v2 at 0",
        20,
        &[("3", 4), ("2", 0)],
    )
    .await;
    assert_eq!(
        revs["3"], stable,
        "the v1 ReplicaSet is reused as revision 3"
    );
    let all = full_log(&cluster, undo);
    let writes = controller_writes(&cluster.sim, undo);
    let s = summaries(&writes);
    let steps = weights_with_available(&all, &vs, &stable);
    assert_eq!(
        steps.iter().map(|w| w.0).collect::<Vec<_>>(),
        vec![0],
        "{s:#?}"
    );
    assert_eq!(
        steps[0].1, 4,
        "traffic left the canary before v1 had 4 available pods: {s:#?}"
    );
    let weight_back = position(&writes, "traffic back to v1", |w| {
        w.resource == "virtualservices"
    });
    let v2_down = position(&writes, "v2 to 0", |w| {
        w.name.as_deref() == Some(canary_rs.as_str())
            && w.body.as_ref().is_some_and(|b| b["spec"]["replicas"] == 0)
    });
    assert!(weight_back < v2_down, "{s:#?}");
    assert_eq!(
        scales_of(&writes, &[&stable, &canary_rs]),
        vec![(stable.clone(), 4), (canary_rs.clone(), 0)],
        "{s:#?}"
    );
    // The canary Service stays on v2 while it has traffic, then follows v1.
    let canary_svc = position(&writes, "canary Service to v1", |w| {
        w.resource == "services" && w.name.as_deref() == Some("web-canary")
    });
    assert!(canary_svc > weight_back, "{s:#?}");
    assert_eq!(
        service_hashes(&writes, "web-canary"),
        vec![hash_of(&stable).to_owned()],
        "{s:#?}"
    );
    let (cw, ch, sw, sh) = recorded_weights(&back).unwrap();
    assert_eq!(
        (cw, ch.as_str(), sw, sh.as_str()),
        (0, hash_of(&stable), 100, hash_of(&stable))
    );
}

/// Aborts a fully promoted rollout and checks the abort is ignored: the flag is cleared, the
/// phase stays Healthy, and nothing but the rollout's status is written.
async fn abort_is_ignored(cluster: &Cluster, rs: &str) {
    let at = cluster.sim.request_log().len();
    cluster.patch_status("web", json!({"abort": true})).await;
    wait_or_dump(cluster, "abort flag cleared, still Healthy", 10, at, |r| {
        phase_is(r, "Healthy") && status_of(r).abort != Some(true)
    })
    .await;
    let later = writes_during(cluster, Duration::from_secs(1)).await;
    let writes = controller_writes(&cluster.sim, at);
    assert!(
        writes.iter().all(|w| w.resource == "rollouts"),
        "only the rollout's status may be written: {:#?}",
        summaries(&writes)
    );
    assert!(later.is_empty(), "{:#?}", summaries(&later));
    let phases = written_phases(&writes);
    assert!(phases.iter().all(|p| p == "Healthy"), "{phases:?}");
    let r = replica_set(cluster, rs).await;
    assert_eq!(r.spec.replicas, Some(2));
}

/// TestIstioAbortUpdate: an abort on a fully promoted rollout is ignored — the flag is cleared,
/// the rollout stays Healthy and nothing but its status is written — before and after an update.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_istio_abort_update() {
    let cluster = istio_cluster().await;
    let canary = istio_canary(
        json!([{"setWeight": 10}, {"pause": {}}]),
        json!({"scaleDownDelaySeconds": 1}),
    );
    cluster
        .create_rollout(rollout_manifest("web", 2, canary))
        .await;
    let v1 = cluster.wait_healthy("web", 20).await;
    let v1_rs = current_rs(&v1);

    abort_is_ignored(&cluster, &v1_rs).await;

    let start = cluster.sim.request_log().len();
    cluster.set_image("web", "web:v2").await;
    wait_or_dump(&cluster, "paused at 10 %", 20, start, |r| paused_at(r, 1)).await;
    cluster
        .patch_status("web", json!({"pauseConditions": null}))
        .await;
    let v2 = wait_or_dump(&cluster, "v2 promoted", 20, start, |r| {
        promoted_away_from(r, hash_of(&v1_rs))
    })
    .await;
    let v2_rs = current_rs(&v2);
    wait_revision_counts(
        &cluster,
        "v2 at 2, v1 scaled down",
        10,
        &[("2", 2), ("1", 0)],
    )
    .await;
    // The controller's last write of the update drops v1's spent scale-down deadline; only
    // after it is the rollout at rest.
    eventually("v1's scale-down deadline removed", 10, || async {
        let rs = replica_set(&cluster, &v1_rs).await;
        (!has_annotation(&rs, SCALE_DOWN_DEADLINE)).then_some(())
    })
    .await;
    abort_is_ignored(&cluster, &v2_rs).await;
}

/// TestIstioUpdateInMiddleZeroCanaryReplicas: `setWeight: 0` then `setCanaryScale: {replicas:
/// 1}` runs one canary pod with no traffic; a new update mid-way moves that pod to revision 3
/// and pauses again, still with no traffic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_istio_update_in_middle_zero_canary_replicas() {
    let cluster = istio_cluster().await;
    let canary = istio_canary(
        json!([{"setWeight": 0}, {"setCanaryScale": {"replicas": 1}}, {"pause": {}}]),
        json!({}),
    );
    cluster
        .create_rollout(rollout_manifest("web", 2, canary))
        .await;
    let v1 = cluster.wait_healthy("web", 20).await;
    let stable = current_rs(&v1);
    let vs = vs_json(&cluster).await;
    let start = cluster.sim.request_log().len();
    cluster.set_image("web", "web:v2").await;
    let p2 = wait_or_dump(&cluster, "paused with one v2 pod", 20, start, |r| {
        paused_at(r, 2)
    })
    .await;
    let v2 = current_rs(&p2);
    wait_revision_counts(&cluster, "v2: 1, v1: 2", 10, &[("1", 2), ("2", 1)]).await;

    let again = cluster.sim.request_log().len();
    cluster.set_image("web", "web:v3").await;
    let p3 = wait_or_dump(&cluster, "paused with one v3 pod", 20, again, |r| {
        paused_at(r, 2) && current_rs(r) != v2
    })
    .await;
    let v3 = current_rs(&p3);
    wait_revision_counts(
        &cluster,
        "v3: 1, v2: 0, v1: 2",
        10,
        &[("1", 2), ("2", 0), ("3", 1)],
    )
    .await;
    let writes = controller_writes(&cluster.sim, start);
    let s = summaries(&writes);
    let weights = canary_weights(&writes, "web-vsvc", &vs, "web-canary");
    assert!(weights.iter().all(|w| *w == 0), "{weights:?}: {s:#?}");
    assert_eq!(
        scales_of(&writes, &[&stable, &v2, &v3]),
        vec![
            (v2.clone(), 0),
            (v2.clone(), 1),
            (v3.clone(), 0),
            (v3.clone(), 1),
            (v2.clone(), 0),
        ],
        "{s:#?}"
    );
}

/// TestIstioAbortUpdateDeleteAllCanaryPods: 5 replicas, `setCanaryScale` 2 then 4: after an
/// abort the stable has its 5 pods, the canary keeps its 4 but carries a scale-down deadline
/// (the default `abortScaleDownDelaySeconds`), and traffic is back on stable first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_istio_abort_update_delete_all_canary_pods() {
    let cluster = istio_cluster().await;
    let canary = istio_canary(
        json!([
            {"setCanaryScale": {"replicas": 2}}, {"setWeight": 20}, {"pause": {}},
            {"setCanaryScale": {"replicas": 4}}, {"setWeight": 40}, {"pause": {}}
        ]),
        json!({}),
    );
    cluster
        .create_rollout(rollout_manifest("web", 5, canary))
        .await;
    let v1 = cluster.wait_healthy("web", 20).await;
    let stable = current_rs(&v1);
    let start = cluster.sim.request_log().len();
    cluster.set_image("web", "web:v2").await;
    let p = wait_or_dump(&cluster, "paused at 20 %", 20, start, |r| paused_at(r, 2)).await;
    let canary_rs = current_rs(&p);
    wait_revision_counts(&cluster, "2 canary pods", 10, &[("1", 5), ("2", 2)]).await;
    cluster
        .patch_status("web", json!({"pauseConditions": null}))
        .await;
    wait_or_dump(&cluster, "paused at 40 %", 20, start, |r| paused_at(r, 5)).await;
    wait_revision_counts(&cluster, "4 canary pods", 10, &[("1", 5), ("2", 4)]).await;
    let vs = vs_json(&cluster).await;
    assert_eq!(destination_weight(&vs, "web-canary"), 40);

    let abort_at = cluster.sim.request_log().len();
    cluster.patch_status("web", json!({"abort": true})).await;
    wait_or_dump(&cluster, "aborted, Degraded", 20, abort_at, |r| {
        phase_is(r, "Degraded")
    })
    .await;
    let rs = eventually("the canary's scale-down deadline", 10, || {
        let cluster = &cluster;
        let canary_rs = canary_rs.clone();
        async move {
            Some(replica_set(cluster, &canary_rs).await)
                .filter(|rs| has_annotation(rs, SCALE_DOWN_DEADLINE))
        }
    })
    .await;
    assert_eq!(rs.spec.replicas, Some(4));
    wait_revision_counts(
        &cluster,
        "stable 5, canary still 4",
        1,
        &[("1", 5), ("2", 4)],
    )
    .await;
    let writes = controller_writes(&cluster.sim, abort_at);
    let s = summaries(&writes);
    assert_eq!(
        canary_weights(&writes, "web-vsvc", &vs, "web-canary"),
        vec![0],
        "{s:#?}"
    );
    // The deadline is the default abort delay (30 s) from the abort: no pod goes meanwhile.
    let (deadline_at, deadline) = annotation_writes(&writes, &canary_rs, SCALE_DOWN_DEADLINE)
        .into_iter()
        .find_map(|(i, v)| Some((i, v?)))
        .unwrap_or_else(|| panic!("{s:#?}"));
    let deadline: k8s_openapi::jiff::Timestamp = deadline.parse().expect("RFC 3339 deadline");
    let written = k8s_openapi::jiff::Timestamp::try_from(writes[deadline_at].time).unwrap();
    let delay = deadline.duration_since(written).as_secs();
    assert!(
        (28..=31).contains(&delay),
        "deadline {deadline} written at {written}"
    );
    assert!(
        scales_of(&writes, &[&stable, &canary_rs]).is_empty(),
        "{s:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// setCanaryScale end to end (NGINX, as upstream runs it)
// ---------------------------------------------------------------------------------------------

const CANARY_WEIGHT: &str = "nginx.ingress.kubernetes.io/canary-weight";

/// TestCanarySetCanaryScale: 4 replicas; a leading pause runs no canary pod, `setCanaryScale:
/// {weight: 25}` one, a later `setWeight: 50` keeps it pinned at one, `{replicas: 3}` three,
/// `matchTrafficWeight` back to the weight's two, and promotion four new next to the four old
/// ones the scale-down delay keeps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_canary_set_canary_scale() {
    let mut cluster = Cluster::start().await;
    cluster
        .create_services(&["web-stable", "web-canary"], "web")
        .await;
    cluster.create_ingress("web-ingress", "web-stable").await;
    cluster.start_controller();
    let canary = json!({
        "canaryService": "web-canary",
        "stableService": "web-stable",
        "scaleDownDelaySeconds": 30,
        "trafficRouting": {"nginx": {"stableIngress": "web-ingress"}},
        "steps": [
            {"pause": {}},
            {"setCanaryScale": {"weight": 25}}, {"pause": {}},
            {"setWeight": 50}, {"pause": {}},
            {"setCanaryScale": {"replicas": 3}}, {"pause": {}},
            {"setCanaryScale": {"matchTrafficWeight": true}}, {"pause": {}}
        ]
    });
    cluster
        .create_rollout(rollout_manifest("web", 4, canary))
        .await;
    let v1 = cluster.wait_healthy("web", 20).await;
    let stable = current_rs(&v1);
    let start = cluster.sim.request_log().len();
    cluster.set_image("web", "web:v2").await;
    let expected = [(0, 0), (2, 1), (4, 1), (6, 3), (8, 2)];
    let mut canary_rs = String::new();
    for (i, (step, pods)) in expected.into_iter().enumerate() {
        if i > 0 {
            cluster
                .patch_status("web", json!({"pauseConditions": null}))
                .await;
        }
        let paused = wait_or_dump(
            &cluster,
            &format!("paused at step {step}"),
            20,
            start,
            |r| paused_at(r, step),
        )
        .await;
        canary_rs = current_rs(&paused);
        wait_revision_counts(
            &cluster,
            &format!("{pods} canary, 4 stable at step {step}"),
            10,
            &[("1", 4), ("2", pods)],
        )
        .await;
    }
    cluster
        .patch_status("web", json!({"pauseConditions": null}))
        .await;
    wait_or_dump(&cluster, "v2 promoted", 20, start, |r| {
        promoted_away_from(r, hash_of(&stable))
    })
    .await;
    wait_revision_counts(
        &cluster,
        "4 new, 4 old kept by the delay",
        10,
        &[("1", 4), ("2", 4)],
    )
    .await;
    let writes = controller_writes(&cluster.sim, start);
    let s = summaries(&writes);
    assert_eq!(
        scales_of(&writes, &[&stable, &canary_rs]),
        vec![
            (canary_rs.clone(), 0),
            (canary_rs.clone(), 1),
            (canary_rs.clone(), 3),
            (canary_rs.clone(), 2),
            (canary_rs.clone(), 4),
        ],
        "{s:#?}"
    );
    let weights: Vec<String> = writes
        .iter()
        .filter(|w| {
            w.resource == "ingresses" && w.name.as_deref() == Some("web-web-ingress-canary")
        })
        .filter_map(|w| {
            w.body.as_ref()?["metadata"]["annotations"][CANARY_WEIGHT]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(weights, vec!["50", "100", "0"], "{s:#?}");
}

// ---------------------------------------------------------------------------------------------
// Progress deadline next to pauses and scale-down delays
// ---------------------------------------------------------------------------------------------

fn no_deadline_exceeded(writes: &[LoggedRequest]) {
    for status in rollout_status_writes(writes) {
        assert_ne!(status["phase"], "Degraded", "{status:#}");
        assert_ne!(
            written_condition(&status, "Progressing").map(|c| c.1),
            Some("ProgressDeadlineExceeded".to_owned()),
            "{status:#}"
        );
    }
}

/// TestCanaryScaleDownDelayWithProgressDeadline: an old ReplicaSet waiting out a scale-down
/// delay longer than `progressDeadlineSeconds` never makes the rollout Degraded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_canary_scale_down_delay_with_progress_deadline() {
    let cluster = istio_cluster().await;
    let canary = istio_canary(
        json!([{"setWeight": 50}, {"pause": {"duration": "1s"}}]),
        json!({"scaleDownDelaySeconds": 5}),
    );
    let mut manifest = rollout_manifest("web", 2, canary);
    manifest["spec"]["progressDeadlineSeconds"] = json!(2);
    cluster.create_rollout(manifest).await;
    let v1 = cluster.wait_healthy("web", 20).await;
    let stable = current_rs(&v1);
    let start = cluster.sim.request_log().len();
    cluster.set_image("web", "web:v2").await;
    let done = wait_or_dump(&cluster, "v2 promoted", 20, start, |r| {
        promoted_away_from(r, hash_of(&stable))
    })
    .await;
    let canary_rs = current_rs(&done);
    wait_revision_counts(
        &cluster,
        "old ReplicaSet scaled down after the delay",
        15,
        &[("2", 2), ("1", 0)],
    )
    .await;
    let r = cluster.rollout("web").await;
    assert!(phase_is(&r, "Healthy"), "{:#?}", r.status);
    let writes = controller_writes(&cluster.sim, start);
    let s = summaries(&writes);
    no_deadline_exceeded(&writes);
    // The delay really outlasted the deadline: the old pods went 5 s after the stable switch.
    let switch = position(&writes, "stable Service to v2", |w| {
        w.resource == "services" && w.name.as_deref() == Some("web-stable")
    });
    let down = position(&writes, "old ReplicaSet to 0", |w| {
        w.name.as_deref() == Some(stable.as_str())
            && w.body.as_ref().is_some_and(|b| b["spec"]["replicas"] == 0)
    });
    let waited = writes[down]
        .time
        .duration_since(writes[switch].time)
        .unwrap();
    assert!(waited >= Duration::from_millis(4500), "{waited:?}: {s:#?}");
    assert_eq!(
        scales_of(&writes, &[&stable, &canary_rs]),
        vec![
            (canary_rs.clone(), 0),
            (canary_rs.clone(), 1),
            (canary_rs.clone(), 2),
            (stable.clone(), 0),
        ],
        "{s:#?}"
    );
}

/// TestRolloutPauseDurationGreaterThanProgressDeadlineSeconds: a timed pause longer than
/// `progressDeadlineSeconds` is Paused, never Degraded, and the update ends Healthy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_rollout_pause_duration_greater_than_progress_deadline_seconds() {
    let mut cluster = Cluster::start().await;
    cluster.start_controller();
    let canary =
        json!({"steps": [{"setWeight": 32}, {"pause": {"duration": "4s"}}, {"setWeight": 67}]});
    let mut manifest = rollout_manifest("web", 3, canary);
    // Condition times are kept to the second, so a deadline of 2 s can run out after 1 s:
    // still far shorter than the pause.
    manifest["spec"]["progressDeadlineSeconds"] = json!(2);
    cluster.create_rollout(manifest).await;
    let v1 = cluster.wait_healthy("web", 20).await;
    let stable = current_rs(&v1);
    let start = cluster.sim.request_log().len();
    cluster.set_image("web", "web:v2").await;
    wait_or_dump(&cluster, "v2 Healthy", 20, start, |r| {
        promoted_away_from(r, hash_of(&stable)) && status_of(r).replicas == Some(3)
    })
    .await;
    let writes = controller_writes(&cluster.sim, start);
    no_deadline_exceeded(&writes);
    let phases = written_phases(&writes);
    assert!(phases.contains(&"Paused".to_owned()), "{phases:?}");
    assert_eq!(
        phases.last().map(String::as_str),
        Some("Healthy"),
        "{phases:?}"
    );
    // The pause really lasted longer than the deadline could.
    let statuses: Vec<(&LoggedRequest, Value)> = writes
        .iter()
        .filter(|w| w.resource == "rollouts" && w.subresource.as_deref() == Some("status"))
        .map(|w| (w, written_status(w)))
        .collect();
    let paused_from = statuses
        .iter()
        .find(|(_, s)| s["phase"] == "Paused")
        .unwrap()
        .0
        .time;
    let paused_until = statuses
        .iter()
        .skip_while(|(_, s)| s["phase"] != "Paused")
        .find(|(_, s)| s["phase"] != "Paused")
        .unwrap()
        .0
        .time;
    // (A pause's start time is kept to the second too: 4 s can be a little over 3.)
    assert!(
        paused_until.duration_since(paused_from).unwrap() >= Duration::from_millis(2900),
        "{phases:?}"
    );
}

/// TestCanaryProgressDeadlineExceededWithPause: pods slower than the deadline make the first
/// deploy and the update Degraded; once they are available the rollout pauses at the pause step
/// (1 canary, 3 stable), and after promotion it is Degraded again until the new pods are ready,
/// then Healthy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_canary_progress_deadline_exceeded_with_pause() {
    let mut cluster = Cluster::start().await;
    cluster.start_controller();
    let canary = json!({"steps": [{"setWeight": 20}, {"pause": {}}]});
    let mut manifest = rollout_manifest("web", 3, canary);
    manifest["spec"]["progressDeadlineSeconds"] = json!(1);
    manifest["spec"]["template"]["metadata"]["annotations"] = json!({ READY_AFTER: "2s" });
    let created = cluster.sim.request_log().len();
    cluster.create_rollout(manifest).await;
    let v1 = cluster.wait_healthy("web", 20).await;
    let stable = current_rs(&v1);
    let phases = written_phases(&controller_writes(&cluster.sim, created));
    let degraded = phases.iter().position(|p| p == "Degraded");
    assert!(degraded.is_some(), "{phases:?}");
    assert_eq!(
        phases.last().map(String::as_str),
        Some("Healthy"),
        "{phases:?}"
    );

    let update = cluster.sim.request_log().len();
    cluster.set_image("web", "web:v2").await;
    wait_or_dump(&cluster, "paused at the pause step", 20, update, |r| {
        paused_at(r, 1)
    })
    .await;
    let revs = wait_revision_counts(&cluster, "1 canary, 3 stable", 5, &[("1", 3), ("2", 1)]).await;
    let canary_rs = revs["2"].clone();
    let phases = written_phases(&controller_writes(&cluster.sim, update));
    let degraded = phases.iter().position(|p| p == "Degraded");
    let paused = phases.iter().position(|p| p == "Paused");
    assert!(degraded.is_some() && degraded < paused, "{phases:?}");
    let r = cluster.rollout("web").await;
    assert_eq!(
        status_of(&r)
            .condition("Paused")
            .map(|c| (c.status.as_str(), c.reason.as_str())),
        Some(("True", "RolloutPaused"))
    );

    let promote = cluster.sim.request_log().len();
    cluster
        .patch_status("web", json!({"pauseConditions": null}))
        .await;
    wait_or_dump(&cluster, "v2 Healthy", 20, promote, |r| {
        promoted_away_from(r, hash_of(&stable)) && status_of(r).replicas == Some(3)
    })
    .await;
    let writes = controller_writes(&cluster.sim, promote);
    let phases = written_phases(&writes);
    let degraded = phases.iter().position(|p| p == "Degraded");
    assert!(degraded.is_some(), "{phases:?}");
    assert_eq!(
        phases.last().map(String::as_str),
        Some("Healthy"),
        "{phases:?}"
    );
    assert_eq!(
        scales_of(&writes, &[&stable, &canary_rs]).last(),
        Some(&(stable.clone(), 0)),
        "{:#?}",
        summaries(&writes)
    );
}

// ---------------------------------------------------------------------------------------------
// Spec and replicas at once; the conditions `kubectl wait` relies on
// ---------------------------------------------------------------------------------------------

/// TestSpecAndReplicaChangeSameTime: a new template and new `replicas` in one patch reach
/// desired/current/updated/ready/available = 4/4/4/4/4, the old revision scaled to 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_spec_and_replica_change_same_time() {
    let mut cluster = Cluster::start().await;
    cluster.start_controller();
    let canary = json!({"steps": [{"setWeight": 50}, {"pause": {"duration": "1s"}}]});
    cluster
        .create_rollout(rollout_manifest("web", 2, canary))
        .await;
    let v1 = cluster.wait_healthy("web", 20).await;
    let stable = current_rs(&v1);
    let start = cluster.sim.request_log().len();
    let container = json!({"name": "web", "image": "web:v2", "ports": [{"containerPort": 8080}]});
    patch_spec(
        &cluster,
        json!({"replicas": 4, "template": {"spec": {"containers": [container]}}}),
    )
    .await;
    let done = wait_or_dump(&cluster, "4/4/4/4/4 on v2", 30, start, |r| {
        let s = status_of(r);
        promoted_away_from(r, hash_of(&stable))
            && r.spec.replicas() == 4
            && s.replicas == Some(4)
            && s.updated_replicas == Some(4)
            && s.ready_replicas == Some(4)
            && s.available_replicas == Some(4)
    })
    .await;
    let canary_rs = current_rs(&done);
    wait_revision_counts(&cluster, "v2 at 4, v1 at 0", 5, &[("2", 4), ("1", 0)]).await;
    let writes = controller_writes(&cluster.sim, start);
    let scales = scales_of(&writes, &[&stable, &canary_rs]);
    // Within 4 + maxSurge (25 % → 1) all along. The two old pods already are the stable half of
    // the 50 % step at 4 replicas, so only the canary grows to 2 before the rest moves over.
    assert_never_above(&[(&stable, 2)], &scales, 5);
    assert_eq!(
        scales,
        vec![
            (canary_rs.clone(), 0),
            (canary_rs.clone(), 2),
            (canary_rs.clone(), 3),
            (stable.clone(), 1),
            (canary_rs.clone(), 4),
            (stable.clone(), 0),
        ],
        "{:#?}",
        summaries(&writes)
    );
}

/// TestKubectlWaitForPaused (run on a canary): `kubectl wait --for=condition=Paused` needs the
/// `Paused` condition True (reason `RolloutPaused`) while paused, and False after promotion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_kubectl_wait_for_paused() {
    let mut cluster = Cluster::start().await;
    cluster.start_controller();
    cluster
        .create_rollout(rollout_manifest(
            "web",
            1,
            json!({"steps": [{"pause": {}}]}),
        ))
        .await;
    let v1 = cluster.wait_healthy("web", 20).await;
    let stable = current_rs(&v1);
    assert_eq!(status_of(&v1).condition("Paused"), None, "never paused yet");
    let start = cluster.sim.request_log().len();
    cluster.set_image("web", "web:v2").await;
    let paused = wait_or_dump(&cluster, "Paused=True", 20, start, |r| {
        status_of(r)
            .condition("Paused")
            .is_some_and(|c| c.status == "True")
    })
    .await;
    assert!(paused_at(&paused, 0), "{:#?}", paused.status);
    assert_eq!(
        status_of(&paused)
            .condition("Paused")
            .map(|c| c.reason.clone()),
        Some("RolloutPaused".to_owned())
    );
    // The stable pods still serve everything: the old revision is untouched.
    wait_revision_counts(&cluster, "v1 still at 1", 1, &[("1", 1), ("2", 0)]).await;

    cluster
        .patch_status("web", json!({"pauseConditions": null}))
        .await;
    let done = wait_or_dump(&cluster, "Paused=False and Healthy", 20, start, |r| {
        promoted_away_from(r, hash_of(&stable))
            && status_of(r)
                .condition("Paused")
                .is_some_and(|c| c.status == "False")
    })
    .await;
    assert_eq!(
        status_of(&done)
            .condition("Paused")
            .map(|c| c.reason.clone()),
        Some("RolloutPaused".to_owned())
    );
    wait_revision_counts(&cluster, "v2 at 1, v1 at 0", 5, &[("2", 1), ("1", 0)]).await;
}

/// TestKubectlWaitForCompleted (run on a canary): the `Completed` condition is False while an
/// update is in flight and True once it is promoted; `Healthy` follows the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_kubectl_wait_for_completed() {
    let mut cluster = Cluster::start().await;
    cluster.start_controller();
    let mut manifest = rollout_manifest("web", 1, json!({}));
    manifest["spec"]["template"]["metadata"]["annotations"] = json!({ READY_AFTER: "1s" });
    cluster.create_rollout(manifest).await;
    let v1 = cluster.wait_healthy("web", 20).await;
    let stable = current_rs(&v1);
    let s = status_of(&v1);
    assert_eq!(
        s.condition("Completed").map(|c| c.status.as_str()),
        Some("True")
    );
    assert_eq!(
        s.condition("Healthy").map(|c| c.status.as_str()),
        Some("True")
    );
    let start = cluster.sim.request_log().len();
    cluster.set_image("web", "web:v2").await;
    wait_or_dump(&cluster, "v2 promoted", 20, start, |r| {
        promoted_away_from(r, hash_of(&stable)) && status_of(r).replicas == Some(1)
    })
    .await;
    let statuses = rollout_status_writes(&controller_writes(&cluster.sim, start));
    let states: Vec<(String, Option<WrittenCondition>, Option<WrittenCondition>)> = statuses
        .iter()
        .map(|s| {
            (
                s["phase"].as_str().unwrap_or_default().to_owned(),
                written_condition(s, "Completed"),
                written_condition(s, "Healthy"),
            )
        })
        .collect();
    let in_flight = states
        .iter()
        .position(|(phase, completed, healthy)| {
            phase == "Progressing"
                && completed.as_ref().map(|c| c.0.as_str()) == Some("False")
                && healthy.as_ref().map(|c| c.0.as_str()) == Some("False")
        })
        .unwrap_or_else(|| {
            panic!("no Completed=False, Healthy=False while progressing: {states:#?}")
        });
    let finished = states
        .iter()
        .rposition(|(phase, completed, healthy)| {
            phase == "Healthy"
                && completed.as_ref() == Some(&("True".to_owned(), "RolloutCompleted".to_owned()))
                && healthy.as_ref() == Some(&("True".to_owned(), "RolloutHealthy".to_owned()))
        })
        .unwrap_or_else(|| panic!("no Completed=True, Healthy=True at the end: {states:#?}"));
    assert!(in_flight < finished, "{states:#?}");
    assert_eq!(
        states[in_flight].1.as_ref().map(|c| c.1.as_str()),
        Some("RolloutCompleted")
    );
}

/// TestCanaryDynamicStableScaleAbortScaleDownDelay: dynamicStableScale with an explicit
/// `abortScaleDownDelaySeconds` does not deadlock on abort: the weight steps back only as far
/// as the available stable pods can serve, the canary keeps its pods and gets its scale-down
/// deadline only once the weight is 0, and is scaled down after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_canary_dynamic_stable_scale_abort_scale_down_delay() {
    let cluster = istio_cluster().await;
    let (stable, canary_rs) =
        dynamic_at_25(&cluster, json!({"abortScaleDownDelaySeconds": 1})).await;
    let promote = cluster.sim.request_log().len();
    cluster
        .patch_status("web", json!({"pauseConditions": null}))
        .await;
    wait_or_dump(&cluster, "paused at 75 %", 20, promote, |r| paused_at(r, 3)).await;
    wait_revision_counts(&cluster, "1 stable, 3 canary", 10, &[("1", 1), ("2", 3)]).await;
    let vs = vs_json(&cluster).await;
    assert_eq!(destination_weight(&vs, "web-canary"), 75);

    let abort_at = cluster.sim.request_log().len();
    cluster.patch_status("web", json!({"abort": true})).await;
    let done = wait_or_dump(
        &cluster,
        "canary drained after the abort",
        30,
        abort_at,
        |r| phase_is(r, "Degraded") && recorded_weights(r).is_some_and(|w| w.0 == 0),
    )
    .await;
    wait_revision_counts(&cluster, "4 stable, 0 canary", 20, &[("1", 4), ("2", 0)]).await;
    let all = full_log(&cluster, abort_at);
    let writes = controller_writes(&cluster.sim, abort_at);
    let s = summaries(&writes);
    // Weights only go down, and each one only once the stable can serve the rest.
    let steps = weights_with_available(&all, &vs, &stable);
    assert!(!steps.is_empty(), "{s:#?}");
    assert_eq!(steps.last().map(|w| w.0), Some(0), "{steps:?}: {s:#?}");
    let mut last = 75;
    for (weight, available) in &steps {
        assert!(*weight <= last, "weights went up: {steps:?}");
        last = *weight;
        assert!(
            *available >= (100 - weight) * 4 / 100,
            "canary weight {weight} written with {available} stable pods available: {steps:?}"
        );
    }
    // The scale-down deadline comes only after the last weight write (0), the scale-down only
    // after the deadline.
    let last_weight = writes
        .iter()
        .rposition(|w| w.resource == "virtualservices")
        .unwrap();
    let deadlines = annotation_writes(&writes, &canary_rs, SCALE_DOWN_DEADLINE);
    let first_deadline = deadlines
        .iter()
        .find(|(_, v)| v.is_some())
        .map(|(i, _)| *i)
        .unwrap_or_else(|| panic!("no scale-down deadline on the canary: {s:#?}"));
    assert!(first_deadline > last_weight, "{s:#?}");
    let canary_down = position(&writes, "canary to 0", |w| {
        w.name.as_deref() == Some(canary_rs.as_str())
            && w.body.as_ref().is_some_and(|b| b["spec"]["replicas"] == 0)
    });
    assert!(canary_down > first_deadline, "{s:#?}");
    // No canary pod goes while the weight still sends traffic to it.
    for (rs, replicas) in scales_of(&writes[..last_weight], &[&canary_rs]) {
        assert!(
            replicas >= 3,
            "{rs} scaled to {replicas} before traffic left it: {s:#?}"
        );
    }
    let (cw, _, sw, sh) = recorded_weights(&done).unwrap();
    assert_eq!((cw, sw, sh.as_str()), (0, 100, hash_of(&stable)));
    assert_eq!(
        service_hashes(&writes, "web-canary")
            .last()
            .map(String::as_str),
        Some(hash_of(&stable)),
        "{s:#?}"
    );
}
