//! End to end on ramp-sim: a canary's `canaryMetadata` / `stableMetadata` on real pods — the
//! canary's pods carry the canary role and the stable's the stable role during the update,
//! and at promotion the same pods (same UIDs) switch to the stable role in place.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod canary_support;

use canary_support::*;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use ramp_api::rollout::Rollout;
use ramp_sim::LoggedRequest;
use serde_json::{Value, json};
use std::collections::BTreeMap;

const EPHEMERAL: &str = "rollout.argoproj.io/ephemeral-metadata";

fn hash_of(rs: &str) -> String {
    rs.rsplit_once('-').map(|(_, h)| h.to_owned()).unwrap()
}

fn paused_at(rollout: &Rollout, step: i32) -> bool {
    let status = rollout.status.clone().unwrap_or_default();
    status.phase.as_deref() == Some("Paused")
        && status.current_step_index == Some(step)
        && status.has_pause_conditions()
        && rollout.metadata.generation == status.observed_generation_number()
}

/// `uid -> role label` of the live pods of ReplicaSet `rs`.
async fn pod_roles(cluster: &Cluster, rs: &str) -> BTreeMap<String, Option<String>> {
    let selector = format!("rollouts-pod-template-hash={}", hash_of(rs));
    Api::<Pod>::namespaced(cluster.client.clone(), ns())
        .list(&ListParams::default().labels(&selector))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| {
            let role = p
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("role").cloned());
            (p.metadata.uid.unwrap_or_default(), role)
        })
        .collect()
}

/// Waits until `rs` runs `count` pods, all labelled `role` (`None`: unlabelled); their UIDs.
async fn wait_roles(cluster: &Cluster, rs: &str, count: usize, role: Option<&str>) -> Vec<String> {
    let what = format!("{count} pods of {rs} with role {role:?}");
    eventually(&what, 20, || async {
        let roles = pod_roles(cluster, rs).await;
        (roles.len() == count && roles.values().all(|r| r.as_deref() == role))
            .then(|| roles.into_keys().collect())
    })
    .await
}

fn is_rs_patch(w: &LoggedRequest, rs: &str) -> bool {
    w.resource == "replicasets"
        && w.subresource.is_none()
        && w.verb.as_str() == "patch"
        && w.name.as_deref() == Some(rs)
}

/// A patch of `rs` writing the ephemeral-metadata record (`role` in it, or removed).
fn is_metadata_patch(w: &LoggedRequest, rs: &str, role: Option<&str>) -> bool {
    let Some(body) = w.body.as_ref().filter(|_| is_rs_patch(w, rs)) else {
        return false;
    };
    let record = &body["metadata"]["annotations"][EPHEMERAL];
    let template_role = &body["spec"]["template"]["metadata"]["labels"]["role"];
    match role {
        Some(role) => {
            record
                .as_str()
                .and_then(|r| serde_json::from_str::<Value>(r).ok())
                .is_some_and(|r| r["labels"]["role"] == role)
                && *template_role == role
        }
        None => body["metadata"]["annotations"].get(EPHEMERAL) == Some(&Value::Null),
    }
}

fn is_scale_up(w: &LoggedRequest, rs: &str) -> bool {
    is_rs_patch(w, rs)
        && w.body
            .as_ref()
            .and_then(|b| b["spec"]["replicas"].as_i64())
            .is_some_and(|n| n > 0)
}

fn is_stable_switch(w: &LoggedRequest, rs: &str) -> bool {
    w.resource == "services"
        && w.name.as_deref() == Some("web-stable")
        && w.body.as_ref().is_some_and(|b| {
            b["spec"]["selector"]["rollouts-pod-template-hash"] == hash_of(rs).as_str()
        })
}

/// Labels of ReplicaSet `rs`'s pod template and its recorded ephemeral metadata.
async fn template_of(cluster: &Cluster, rs: &str) -> (Value, Option<String>) {
    let replica_set = cluster
        .replica_sets()
        .await
        .into_iter()
        .find(|r| r.metadata.name.as_deref() == Some(rs))
        .unwrap();
    let record = replica_set
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(EPHEMERAL).cloned());
    let template = serde_json::to_value(replica_set.spec.template.unwrap()).unwrap();
    (template["metadata"]["labels"].clone(), record)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_and_stable_pods_carry_their_role_and_promotion_relabels_them_in_place() {
    let mut cluster = Cluster::start().await;
    cluster
        .create_services(&["web-stable", "web-canary"], "web")
        .await;
    cluster.start_controller();
    let canary = json!({
        "canaryService": "web-canary",
        "stableService": "web-stable",
        "canaryMetadata": {"labels": {"role": "canary"}},
        "stableMetadata": {"labels": {"role": "stable"}},
        "steps": [{"setWeight": 50}, {"pause": {}}]
    });
    cluster
        .create_rollout(rollout_manifest("web", 2, canary))
        .await;
    let v1 = current_rs(&cluster.wait_healthy("web", 20).await);
    let v1_pods = wait_roles(&cluster, &v1, 2, Some("stable")).await;

    // The update: the canary's ReplicaSet gets its role before its first pod exists.
    let update_at = cluster.sim.request_log().len();
    cluster.set_image("web", "web:v2").await;
    let paused = cluster
        .wait_rollout("web", "paused at the indefinite pause", 20, |r| {
            paused_at(r, 1)
        })
        .await;
    let v2 = current_rs(&paused);
    assert_ne!(v2, v1);
    let canary_pods = wait_roles(&cluster, &v2, 1, Some("canary")).await;
    let stable_pods = wait_roles(&cluster, &v1, 1, Some("stable")).await;
    assert!(
        stable_pods.iter().all(|uid| v1_pods.contains(uid)),
        "the stable's pods were never replaced"
    );
    let writes = controller_writes(&cluster.sim, update_at);
    let created = position(&writes, "creating the canary ReplicaSet", |w| {
        w.resource == "replicasets" && w.verb.as_str() == "create" && w.name.as_deref() == Some(&v2)
    });
    let labelled = position(&writes, "giving the canary its role", |w| {
        is_metadata_patch(w, &v2, Some("canary"))
    });
    let scaled = position(&writes, "scaling the canary up", |w| is_scale_up(w, &v2));
    assert!(
        created < labelled && labelled < scaled,
        "create {created}, metadata {labelled}, scale-up {scaled}: {:#?}",
        writes
            .iter()
            .map(LoggedRequest::summary)
            .collect::<Vec<_>>()
    );
    assert!(
        !writes.iter().any(|w| is_rs_patch(w, &v1)
            && w.body
                .as_ref()
                .is_some_and(|b| b["metadata"]["annotations"].get(EPHEMERAL).is_some())),
        "the stable's metadata was already in place"
    );
    assert_eq!(template_of(&cluster, &v2).await.0["role"], "canary");

    // Promotion: the canary's running pods become stable in place; the old stable's go.
    let promote_at = cluster.sim.request_log().len();
    cluster
        .patch_status("web", json!({"pauseConditions": null}))
        .await;
    cluster.wait_healthy("web", 20).await;
    let promoted_pods = wait_roles(&cluster, &v2, 2, Some("stable")).await;
    assert!(
        canary_pods.iter().all(|uid| promoted_pods.contains(uid)),
        "the canary pod {canary_pods:?} was relabelled in place, not replaced: {promoted_pods:?}"
    );
    let old_pods = pod_roles(&cluster, &v1).await;
    assert!(
        old_pods.values().all(Option::is_none),
        "the old stable's remaining pods lost the role: {old_pods:?}"
    );
    let writes = controller_writes(&cluster.sim, promote_at);
    let relabelled = position(&writes, "giving the new stable the stable role", |w| {
        is_metadata_patch(w, &v2, Some("stable"))
    });
    let stripped = position(&writes, "stripping the old stable's role", |w| {
        is_metadata_patch(w, &v1, None)
    });
    assert!(
        relabelled < stripped,
        "the role reaches the new stable before it leaves the old one (a Service selecting \
         role=stable keeps endpoints)"
    );
    let switched = position(&writes, "pointing web-stable at the new stable", |w| {
        is_stable_switch(w, &v2)
    });
    assert!(
        relabelled < switched,
        "the new stable is labelled before the stable Service moves to it: {:#?}",
        writes
            .iter()
            .map(LoggedRequest::summary)
            .collect::<Vec<_>>()
    );
    let (v2_labels, v2_record) = template_of(&cluster, &v2).await;
    assert_eq!(v2_labels["role"], "stable");
    assert_eq!(
        serde_json::from_str::<Value>(&v2_record.unwrap()).unwrap(),
        json!({"labels": {"role": "stable"}})
    );
    let (v1_labels, v1_record) = template_of(&cluster, &v1).await;
    assert_eq!(v1_labels.get("role"), None, "{v1_labels}");
    assert_eq!(v1_record, None);
    cluster.stop_controller().await;
}
