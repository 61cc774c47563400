//! End to end on ramp-sim: user actions and failures around a canary rollout — abort, retry,
//! promotion, an invalid or incomplete Rollout next to a healthy one, a controller restart —
//! each asserted on the writes the sim logged, not only on the end state.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod canary_support;

use canary_support::*;
use pretty_assertions::assert_eq;
use ramp_sim::LoggedRequest;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn summaries(writes: &[LoggedRequest]) -> Vec<String> {
    writes.iter().map(LoggedRequest::summary).collect()
}

fn paused_at(rollout: &ramp_api::rollout::Rollout, step: i32) -> bool {
    let status = rollout.status.clone().unwrap_or_default();
    status.phase.as_deref() == Some("Paused")
        && status.current_step_index == Some(step)
        && status.has_pause_conditions()
}

/// Asserts the controller writes nothing for `rollout` but its status during `window`.
async fn assert_quiet_but_status(cluster: &Cluster, name: &str, window: Duration) {
    let checkpoint = cluster.sim.request_log().len();
    let until = Instant::now() + window;
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let writes: Vec<String> = summaries(&controller_writes(&cluster.sim, checkpoint))
        .into_iter()
        .filter(|w| !w.contains("rollouts/status"))
        .filter(|w| w.contains(name))
        .collect();
    assert!(writes.is_empty(), "unexpected writes: {writes:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_returns_traffic_before_pods_then_retry_and_promote_complete_the_update() {
    let cluster = istio_cluster().await;
    let steps = json!([{"setWeight": 50}, {"pause": {}}]);
    cluster
        .create_rollout(rollout_manifest("web", 2, istio_canary(steps)))
        .await;
    let v1 = cluster.wait_healthy("web", 20).await;
    let stable_rs = current_rs(&v1);
    let vs_before =
        serde_json::to_value(cluster.virtual_services().get("web-vsvc").await.unwrap()).unwrap();

    let start = cluster.sim.request_log().len();
    cluster.set_image("web", "web:v2").await;
    let paused = cluster
        .wait_rollout("web", "paused at the indefinite pause", 20, |r| {
            paused_at(r, 1)
        })
        .await;
    let canary_rs = current_rs(&paused);

    // Abort: traffic back to stable first, the canary's pods only after the abort delay.
    let abort_at = cluster.sim.request_log().len();
    cluster.patch_status("web", json!({"abort": true})).await;
    cluster
        .wait_rollout("web", "aborted, Degraded, canary scaled to 0", 20, |r| {
            let s = r.status.clone().unwrap_or_default();
            s.phase.as_deref() == Some("Degraded") && s.abort == Some(true)
        })
        .await;
    eventually(
        "canary scaled down after abortScaleDownDelaySeconds",
        20,
        || {
            let cluster = &cluster;
            let canary_rs = canary_rs.clone();
            async move {
                cluster
                    .replica_sets()
                    .await
                    .into_iter()
                    .find(|rs| rs.metadata.name.as_deref() == Some(canary_rs.as_str()))
                    .filter(|rs| rs.spec.replicas == Some(0))
                    .map(|_| ())
            }
        },
    )
    .await;
    let abort_writes = controller_writes(&cluster.sim, abort_at);
    let all_writes = controller_writes(&cluster.sim, start);
    let vs_at_abort = {
        let before_abort: Vec<LoggedRequest> = all_writes
            .iter()
            .take(all_writes.len() - abort_writes.len())
            .cloned()
            .collect();
        let mut vs = vs_before.clone();
        let replayed = canary_weights(&before_abort, "web-vsvc", &vs, "web-canary");
        assert_eq!(
            replayed,
            vec![50],
            "weights before the abort: {:#?}",
            summaries(&before_abort)
        );
        vs["spec"]["http"][0]["route"][0]["weight"] = json!(50);
        vs["spec"]["http"][0]["route"][1]["weight"] = json!(50);
        vs
    };
    assert_eq!(
        canary_weights(&abort_writes, "web-vsvc", &vs_at_abort, "web-canary"),
        vec![0]
    );
    let weight_back = position(&abort_writes, "returning traffic to stable", |w| {
        w.resource == "virtualservices"
    });
    let pods_down = position(&abort_writes, "scaling the canary down", |w| {
        w.name.as_deref() == Some(canary_rs.as_str())
            && w.body.as_ref().is_some_and(|b| b["spec"]["replicas"] == 0)
    });
    assert!(
        weight_back < pods_down,
        "writes: {:#?}",
        summaries(&abort_writes)
    );
    assert!(
        !abort_writes
            .iter()
            .any(|w| w.resource == "services" && w.name.as_deref() == Some("web-stable")),
        "the stable Service must stay on v1: {:#?}",
        summaries(&abort_writes)
    );

    // Retry (the plugin clears status.abort): the canary comes back and pauses again.
    cluster.patch_status("web", json!({"abort": false})).await;
    cluster
        .wait_rollout("web", "paused again after retry", 20, |r| paused_at(r, 1))
        .await;

    // Promote (the plugin clears the pause conditions): v2 becomes stable.
    cluster
        .patch_status("web", json!({"pauseConditions": null}))
        .await;
    let done = cluster.wait_healthy("web", 20).await;
    assert_eq!(current_rs(&done), canary_rs);
    let replicas = replica_writes(&controller_writes(&cluster.sim, start));
    assert_eq!(
        replicas,
        vec![
            (canary_rs.clone(), 0),
            (canary_rs.clone(), 1),
            (canary_rs.clone(), 0),
            (canary_rs.clone(), 1),
            (canary_rs.clone(), 2),
            (stable_rs.clone(), 0),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_rollout_is_degraded_and_untouched_while_another_rollout_progresses() {
    let mut cluster = Cluster::start().await;
    cluster
        .create_services(&["web-stable", "web-canary"], "web")
        .await;
    cluster.start_controller();
    let start = cluster.sim.request_log().len();
    let broken = json!({"canaryService": "lost-canary", "stableService": "lost-stable", "steps": [{"setWeight": 50}, {"pause": {"duration": "1s"}}]});
    cluster
        .create_rollout(rollout_manifest("lost", 2, broken))
        .await;
    let valid = json!({"canaryService": "web-canary", "stableService": "web-stable", "steps": [{"setWeight": 50}, {"pause": {"duration": "1s"}}]});
    cluster
        .create_rollout(rollout_manifest("web", 2, valid))
        .await;

    let lost = cluster
        .wait_rollout(
            "lost",
            "InvalidSpec condition and phase Degraded",
            20,
            |r| {
                let s = r.status.clone().unwrap_or_default();
                s.phase.as_deref() == Some("Degraded")
                    && s.condition("InvalidSpec")
                        .is_some_and(|c| c.status == "True")
            },
        )
        .await;
    let message = lost
        .status
        .as_ref()
        .unwrap()
        .condition("InvalidSpec")
        .unwrap()
        .message
        .clone();
    assert!(
        message.contains("stableService") || message.contains("canaryService"),
        "{message}"
    );
    assert!(message.contains("not found"), "{message}");

    cluster.wait_healthy("web", 20).await;
    cluster.set_image("web", "web:v2").await;
    cluster
        .wait_rollout("web", "v2 promoted", 20, |r| {
            let s = r.status.clone().unwrap_or_default();
            s.phase.as_deref() == Some("Healthy")
                && s.current_pod_hash == s.stable_rs
                && r.metadata.generation == s.observed_generation_number()
        })
        .await;

    // For the invalid rollout, only its status was written: no ReplicaSet, no Service.
    let lost_writes: Vec<LoggedRequest> = controller_writes(&cluster.sim, start)
        .into_iter()
        .filter(|w| {
            w.name
                .as_deref()
                .is_some_and(|n| n == "lost" || n.starts_with("lost-"))
        })
        .collect();
    assert!(!lost_writes.is_empty());
    assert!(
        lost_writes.iter().all(|w| w.resource == "rollouts"
            && (w.subresource.as_deref() == Some("status") || w.verb.to_string() == "create")),
        "writes for the invalid rollout: {:#?}",
        summaries(&lost_writes)
    );
    assert!(cluster.replica_sets().await.iter().all(|rs| {
        !rs.metadata
            .name
            .as_deref()
            .unwrap_or_default()
            .starts_with("lost-")
    }));

    // The missing Services appear: the Service watch brings the rollout back to life.
    cluster
        .create_services(&["lost-stable", "lost-canary"], "lost")
        .await;
    cluster.wait_healthy("lost", 20).await;
    cluster.stop_controller().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_restarted_mid_step_resumes_without_moving_traffic() {
    let mut cluster = istio_cluster().await;
    let steps =
        json!([{"setWeight": 30}, {"pause": {}}, {"setWeight": 60}, {"pause": {"duration": "1s"}}]);
    cluster
        .create_rollout(rollout_manifest("web", 4, istio_canary(steps)))
        .await;
    cluster.wait_healthy("web", 20).await;
    cluster.set_image("web", "web:v2").await;
    let paused = cluster
        .wait_rollout("web", "paused at 30 %", 20, |r| paused_at(r, 1))
        .await;
    let canary_rs = current_rs(&paused);

    cluster.kill_controller().await;
    let restart = cluster.sim.request_log().len();
    cluster.start_controller();
    // A fresh controller with an empty memory must find the world as it left it: it may only
    // refresh the status (pods of the paused step can still have become available between the
    // kill and the restart), never touch traffic, ReplicaSets or the step.
    assert_quiet_but_status(&cluster, "web", Duration::from_secs(2)).await;
    let still = cluster
        .wait_rollout("web", "still paused at 30 %", 5, |r| paused_at(r, 1))
        .await;
    assert_eq!(
        still
            .status
            .as_ref()
            .and_then(|s| s.pause_conditions.clone()),
        paused
            .status
            .as_ref()
            .and_then(|s| s.pause_conditions.clone()),
        "the restarted controller must not restart the pause"
    );
    let vs_now =
        serde_json::to_value(cluster.virtual_services().get("web-vsvc").await.unwrap()).unwrap();
    assert_eq!(destination_weight(&vs_now, "web-canary"), 30);

    cluster
        .patch_status("web", json!({"pauseConditions": null}))
        .await;
    let done = cluster.wait_healthy("web", 30).await;
    assert_eq!(current_rs(&done), canary_rs);
    let writes = controller_writes(&cluster.sim, restart);
    assert_eq!(
        canary_weights(&writes, "web-vsvc", &vs_now, "web-canary"),
        vec![60, 100, 0],
        "writes after the restart: {:#?}",
        summaries(&writes)
    );
}

/// A rollout paused at `setWeight: 25` (step 1 of 25/pause/50/pause), and the VirtualService
/// as it then is.
async fn paused_at_first_step(cluster: &Cluster) -> (ramp_api::rollout::Rollout, String, Value) {
    let steps = json!([{"setWeight": 25}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}]);
    cluster
        .create_rollout(rollout_manifest("web", 4, istio_canary(steps)))
        .await;
    let v1 = cluster.wait_healthy("web", 20).await;
    cluster.set_image("web", "web:v2").await;
    let paused = cluster
        .wait_rollout("web", "paused at 25 %", 20, |r| paused_at(r, 1))
        .await;
    let vs =
        serde_json::to_value(cluster.virtual_services().get("web-vsvc").await.unwrap()).unwrap();
    assert_eq!(destination_weight(&vs, "web-canary"), 25);
    (paused, current_rs(&v1), vs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_moves_exactly_one_step_and_pauses_at_the_next() {
    let cluster = istio_cluster().await;
    let (paused, _, vs) = paused_at_first_step(&cluster).await;
    let canary_rs = current_rs(&paused);
    // Someone else edits the VirtualService while the rollout waits: their fields must stay.
    let foreign = json!({"spec": {"http": [{
        "name": "primary",
        "timeout": "5s",
        "retries": {"attempts": 3, "perTryTimeout": "2s"},
        "route": vs["spec"]["http"][0]["route"].clone()
    }]}});
    cluster
        .virtual_services()
        .patch(
            "web-vsvc",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&foreign),
        )
        .await
        .expect("foreign edit");
    let start = cluster.sim.request_log().len();
    cluster
        .patch_status("web", json!({"pauseConditions": null}))
        .await;
    let next = cluster
        .wait_rollout("web", "paused at 50 %", 20, |r| paused_at(r, 3))
        .await;
    let status = next.status.clone().unwrap();
    assert_eq!(status.message.as_deref(), Some("CanaryPauseStep"));
    let writes = controller_writes(&cluster.sim, start);
    assert_eq!(
        canary_weights(&writes, "web-vsvc", &vs, "web-canary"),
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
    let edited =
        serde_json::to_value(cluster.virtual_services().get("web-vsvc").await.unwrap()).unwrap();
    assert_eq!(edited["spec"]["http"][0]["timeout"], "5s");
    assert_eq!(edited["spec"]["http"][0]["retries"]["attempts"], 3);
    assert_eq!(destination_weight(&edited, "web-canary"), 50);
    assert!(
        !writes.iter().any(|w| w.resource == "services"),
        "{:#?}",
        summaries(&writes)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_full_skips_the_remaining_steps() {
    let cluster = istio_cluster().await;
    let (paused, stable_rs, vs) = paused_at_first_step(&cluster).await;
    let canary_rs = current_rs(&paused);
    let start = cluster.sim.request_log().len();
    cluster
        .patch_status("web", json!({"promoteFull": true}))
        .await;
    let done = cluster.wait_healthy("web", 30).await;
    assert_eq!(current_rs(&done), canary_rs);
    let writes = controller_writes(&cluster.sim, start);
    // No 50 % step: the remaining steps are skipped, the stable Service moves to the new pods
    // once all four are available, and canary traffic ends at 0 (stable and canary are then
    // the same pods).
    let weights = canary_weights(&writes, "web-vsvc", &vs, "web-canary");
    assert!(
        !weights.contains(&50),
        "{weights:?}: {:#?}",
        summaries(&writes)
    );
    assert_eq!(weights.last(), Some(&0), "{:#?}", summaries(&writes));
    let before_switch = log_until(&cluster.sim, start, |w| {
        w.resource == "services" && w.name.as_deref() == Some("web-stable")
    });
    assert_eq!(available_before(&before_switch, &canary_rs), 4);
    assert_eq!(
        replica_writes(&writes),
        vec![(canary_rs, 4), (stable_rs, 0)],
        "{:#?}",
        summaries(&writes)
    );
    assert_ne!(
        done.status.unwrap().promote_full,
        Some(true),
        "promoteFull is cleared once done"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_image_mid_rollout_supersedes_the_old_canary() {
    let cluster = istio_cluster().await;
    let (paused, stable_rs, vs) = paused_at_first_step(&cluster).await;
    let v2_rs = current_rs(&paused);
    let start = cluster.sim.request_log().len();
    cluster.set_image("web", "web:v3").await;
    let v3 = cluster
        .wait_rollout("web", "paused at 25 % with the v3 canary", 20, |r| {
            paused_at(r, 1)
                && r.status
                    .as_ref()
                    .and_then(|s| s.current_pod_hash.as_deref())
                    != Some(v2_rs.trim_start_matches("web-"))
        })
        .await;
    let v3_rs = current_rs(&v3);
    let writes = controller_writes(&cluster.sim, start);
    let s = summaries(&writes);
    // v2's pods go away, v3's canary takes the 25 % step; the stable Service never leaves v1.
    let scales = replica_writes(&writes);
    assert!(scales.contains(&(v2_rs.clone(), 0)), "{s:#?}");
    assert_eq!(
        scales.iter().rfind(|(rs, _)| rs == &v3_rs),
        Some(&(v3_rs.clone(), 1)),
        "{s:#?}"
    );
    assert!(!scales.iter().any(|(rs, _)| rs == &stable_rs), "{s:#?}");
    assert!(
        !writes
            .iter()
            .any(|w| w.resource == "services" && w.name.as_deref() == Some("web-stable")),
        "{s:#?}"
    );
    let canary_service = writes
        .iter()
        .filter(|w| w.resource == "services" && w.name.as_deref() == Some("web-canary"))
        .filter_map(|w| {
            w.body.as_ref()?["spec"]["selector"]["rollouts-pod-template-hash"]
                .as_str()
                .map(str::to_owned)
        })
        .collect::<Vec<_>>();
    assert_eq!(
        canary_service,
        vec![v3_rs.trim_start_matches("web-").to_owned()],
        "{s:#?}"
    );
    // The canary Service moves to v3 only after v3's pod is available, and traffic at the
    // end of it all is 25 % again.
    let weights = canary_weights(&writes, "web-vsvc", &vs, "web-canary");
    assert_eq!(weights.last(), Some(&25), "{s:#?}");
    let before = log_until(&cluster.sim, start, |w| {
        w.resource == "services" && w.name.as_deref() == Some("web-canary")
    });
    assert!(available_before(&before, &v3_rs) >= 1, "{s:#?}");
}
