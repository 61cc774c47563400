//! ramp-sim's fidelity, measured: each scenario runs once on the real control plane and once on
//! ramp-sim, with the same controller and the same steps, and what the two servers hold and were
//! asked to do is compared, normalised for what differs by nature (uids, resourceVersions,
//! timestamps, the namespace's name):
//! - the controller's decisions, in order: every write but status writes (creates, scales,
//!   annotations, Service selectors, VirtualService patches, AnalysisRuns);
//! - the Rollout's walk through its phases and steps, replayed from its status writes;
//! - the objects at the end: Rollout, ReplicaSets, Services, VirtualService, AnalysisRuns.
//!
//! Only meaningful with a real control plane (`RAMP_TEST_CLUSTER`); on the sim tier alone it says
//! so and passes. Differences that cannot matter to a controller are normalised away here, each
//! with its reason, and listed in crates/ramp-sim/README.md.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod canary_support;

use canary_support::*;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, ListParams};
use pretty_assertions::assert_eq;
use ramp_api::analysis::AnalysisRun;
use ramp_api::rollout::Rollout;
use ramp_sim::tier::{TestCluster, real_cluster_dir};
use ramp_sim::{LoggedRequest, SimConfig, Verb};
use serde_json::{Map, Value, json};
use std::future::Future;

/// What one run of a scenario left behind, normalised.
#[derive(Debug, PartialEq)]
struct Record {
    decisions: Vec<String>,
    walk: Vec<String>,
    objects: Value,
}

/// Runs `scenario` on the real control plane, then on ramp-sim, and compares the records.
async fn on_both_tiers<F, Fut>(scenario: F)
where
    F: Fn(Cluster) -> Fut,
    Fut: Future<Output = Cluster>,
{
    let Some(dir) = real_cluster_dir() else {
        eprintln!(
            "skipped: the differential test compares ramp-sim with a real control plane; \
             set RAMP_TEST_CLUSTER (scripts/test does on its real tier)"
        );
        return;
    };
    let config = SimConfig {
        traffic_enabled: false,
        ..SimConfig::default()
    };
    let real = TestCluster::start_real(dir, config.clone(), cluster_crds())
        .await
        .expect("real control plane reachable");
    let real = record(scenario(Cluster::on(real)).await).await;
    let sim = TestCluster::start_sim(config, cluster_crds())
        .await
        .expect("sim starts");
    let sim = record(scenario(Cluster::on(sim)).await).await;
    assert_eq!(
        sim.decisions, real.decisions,
        "decisions: sim (left), real (right)"
    );
    assert_eq!(sim.walk, real.walk, "walk: sim (left), real (right)");
    assert_eq!(
        sim.objects, real.objects,
        "objects: sim (left), real (right)"
    );
}

/// The record of a scenario that has run to its end on `cluster`.
async fn record(mut cluster: Cluster) -> Record {
    cluster.stop_controller().await;
    let writes: Vec<LoggedRequest> = controller_writes(&cluster.sim, 0)
        .into_iter()
        // The sim's log holds every namespace's writes and the CRDs'; the audit log as read
        // holds the test namespace's only.
        .filter(|w| w.namespace.as_deref() == Some(ns()))
        .collect();
    let decisions = writes
        .iter()
        .filter(|w| w.subresource.as_deref() != Some("status"))
        .map(decision)
        .collect();
    let walk = walk(&writes);
    let objects = objects(&cluster).await;
    Record {
        decisions,
        walk,
        objects,
    }
}

/// One write as a line: verb, resource, object, patch type and normalised body.
fn decision(write: &LoggedRequest) -> String {
    let mut body = write.body.clone().unwrap_or(Value::Null);
    normalise(&mut body);
    if write.verb == Verb::Create {
        // The audit log records a create's object after the server's defaulting, not as sent:
        // keep what the writer decided (the object's identity, labels, annotations, owners and
        // replicas); the objects themselves are compared whole at the end.
        body = json!({
            "metadata": {
                "labels": body["metadata"]["labels"],
                "annotations": body["metadata"]["annotations"],
                "ownerReferences": body["metadata"]["ownerReferences"],
            },
            "replicas": body["spec"]["replicas"],
        });
    }
    // Nor does it record a patch's Content-Type: a JSON patch is an array, anything else reads
    // as a merge patch there, strategic ones included.
    let patch_type = match write.patch_type.as_deref() {
        Some("strategic") => Some("merge"),
        other => other,
    };
    let resource = match &write.subresource {
        Some(sub) => format!("{}/{sub}", write.resource),
        None => write.resource.clone(),
    };
    format!(
        "{} {resource} {} {} {body}",
        write.verb,
        write.name.as_deref().unwrap_or("*"),
        patch_type.unwrap_or("-"),
    )
}

/// The Rollouts' `(phase, step)` after each status write, replayed, without repeats: the walk
/// through the strategy, whatever the number of writes the pods' timing asked for.
fn walk(writes: &[LoggedRequest]) -> Vec<String> {
    let mut statuses: Map<String, Value> = Map::new();
    let mut walk: Vec<String> = Vec::new();
    for write in writes
        .iter()
        .filter(|w| w.resource == "rollouts" && w.subresource.as_deref() == Some("status"))
    {
        let name = write.name.clone().unwrap_or_default();
        let status = statuses.entry(name.clone()).or_insert_with(|| json!({}));
        match &write.body {
            Some(Value::Array(ops)) => {
                if let Some(op) = ops.iter().find(|op| op["path"] == "/status") {
                    *status = json!({"status": op["value"]});
                }
            }
            Some(body) => json_patch::merge(status, body),
            None => {}
        }
        let s = &status["status"];
        let line = format!(
            "{name}: {} step {} abort {}",
            s["phase"].as_str().unwrap_or("-"),
            s["currentStepIndex"],
            s["abort"].as_bool().unwrap_or(false)
        );
        if walk.last() != Some(&line) {
            walk.push(line);
        }
    }
    walk
}

/// The namespace's Rollouts, ReplicaSets, Services, VirtualServices and AnalysisRuns, keyed by
/// kind and name, normalised.
async fn objects(cluster: &Cluster) -> Value {
    let client = cluster.client.clone();
    let mut all = Map::new();
    for (kind, items) in [
        (
            "Rollout",
            listed(Api::<Rollout>::namespaced(client.clone(), ns())).await,
        ),
        (
            "ReplicaSet",
            listed(Api::<ReplicaSet>::namespaced(client.clone(), ns())).await,
        ),
        (
            "Service",
            listed(Api::<Service>::namespaced(client.clone(), ns())).await,
        ),
        ("VirtualService", listed(cluster.virtual_services()).await),
        (
            "AnalysisRun",
            listed(Api::<AnalysisRun>::namespaced(client, ns())).await,
        ),
    ] {
        for mut item in items {
            let name = item["metadata"]["name"].as_str().unwrap_or("?").to_owned();
            normalise(&mut item);
            all.insert(format!("{kind}/{name}"), item);
        }
    }
    Value::Object(all)
}

async fn listed<K>(api: Api<K>) -> Vec<Value>
where
    K: Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    api.list(&ListParams::default())
        .await
        .expect("objects listed")
        .items
        .iter()
        .map(|o| serde_json::to_value(o).expect("object serialises"))
        .collect()
}

/// Replaces what differs between any two runs by nature: the namespace's name, uids,
/// resourceVersions, timestamps, allocated Service addresses; drops managedFields (each server's field-manager bookkeeping).
fn normalise(value: &mut Value) {
    match value {
        Value::Object(fields) => {
            fields.remove("managedFields");
            for (key, field) in fields.iter_mut() {
                match key.as_str() {
                    "uid" | "resourceVersion" if field.is_string() => *field = json!("<id>"),
                    // Allocated by each server: random on the real one, in order on the sim.
                    "clusterIP" if field != "None" => *field = json!("<ip>"),
                    "clusterIPs" => *field = json!(["<ip>"]),
                    _ => normalise(field),
                }
            }
            // A JSON patch's `test` of the resourceVersion it was computed against.
            if fields.get("path").and_then(Value::as_str) == Some("/metadata/resourceVersion") {
                fields.insert("value".into(), json!("<id>"));
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalise),
        Value::String(text) => {
            if is_timestamp(text) {
                *text = "<time>".into();
            } else if text.contains(ns()) {
                *text = text.replace(ns(), "<ns>");
            }
        }
        _ => {}
    }
}

/// An RFC 3339 time as the API writes them (`2026-12-07T21:03:04Z`, fractions allowed).
fn is_timestamp(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() >= 20
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && bytes[10] == b'T'
        && bytes[13] == b':'
        && bytes[16] == b':'
        && text.ends_with('Z')
        && bytes[..4].iter().all(u8::is_ascii_digit)
}

fn paused_at(rollout: &Rollout, step: i32) -> bool {
    let status = rollout.status.clone().unwrap_or_default();
    status.phase.as_deref() == Some("Paused")
        && status.current_step_index == Some(step)
        && status.has_pause_conditions()
}

/// An Istio canary through its steps, an abort, a retry and a promotion.
async fn istio_canary_abort_retry_promote(mut cluster: Cluster) -> Cluster {
    cluster.create_istio_objects().await;
    cluster.start_controller();
    let steps =
        json!([{"setWeight": 25}, {"pause": {}}, {"setWeight": 50}, {"pause": {"duration": "1s"}}]);
    cluster
        .create_rollout(rollout_manifest("web", 4, istio_canary(steps)))
        .await;
    cluster.wait_healthy("web", 30).await;
    cluster.set_image("web", "web:v2").await;
    let paused = cluster
        .wait_rollout("web", "paused at 25 %", 30, |r| paused_at(r, 1))
        .await;
    let canary_rs = current_rs(&paused);
    cluster.patch_status("web", json!({"abort": true})).await;
    eventually("aborted, canary scaled to 0", 30, || {
        let cluster = &cluster;
        let canary_rs = canary_rs.clone();
        async move {
            let rollout = cluster.rollout("web").await;
            let aborted = rollout
                .status
                .as_ref()
                .is_some_and(|s| s.phase.as_deref() == Some("Degraded") && s.abort == Some(true));
            let scaled_down = cluster.replica_sets().await.into_iter().any(|rs| {
                rs.metadata.name.as_deref() == Some(canary_rs.as_str())
                    && rs.spec.replicas == Some(0)
                    && rs.status.as_ref().is_some_and(|s| s.replicas == 0)
            });
            (aborted && scaled_down).then_some(())
        }
    })
    .await;
    cluster.patch_status("web", json!({"abort": false})).await;
    cluster
        .wait_rollout("web", "paused again after retry", 30, |r| paused_at(r, 1))
        .await;
    cluster
        .patch_status("web", json!({"pauseConditions": null}))
        .await;
    cluster.wait_healthy("web", 30).await;
    wait_old_scaled_down(&cluster, "web").await;
    cluster
}

/// A blue-green rollout with a preview, promoted by hand.
async fn blue_green_preview_promote(mut cluster: Cluster) -> Cluster {
    cluster
        .create_services(&["web-active", "web-preview"], "web")
        .await;
    cluster.start_controller();
    let mut manifest = rollout_manifest("web", 3, json!({}));
    manifest["spec"]["strategy"] = json!({"blueGreen": {
        "activeService": "web-active", "previewService": "web-preview",
        "autoPromotionEnabled": false, "scaleDownDelaySeconds": 1
    }});
    cluster.create_rollout(manifest).await;
    cluster.wait_healthy("web", 30).await;
    cluster.set_image("web", "web:v2").await;
    cluster
        .wait_rollout("web", "paused for promotion", 30, |r| {
            let s = r.status.clone().unwrap_or_default();
            let preview = s
                .blue_green
                .as_ref()
                .and_then(|b| b.preview_selector.clone());
            s.phase.as_deref() == Some("Paused")
                && s.has_pause_conditions()
                && preview.is_some()
                && preview == s.current_pod_hash
        })
        .await;
    cluster
        .patch_status("web", json!({"pauseConditions": null}))
        .await;
    cluster.wait_healthy("web", 30).await;
    wait_old_scaled_down(&cluster, "web").await;
    cluster
}

/// A canary without a traffic router (the split by replica counts, with surge), gated by an
/// analysis step against the in-test endpoint at `url` (one for both tiers: it is part of the
/// steps, and so of their hash): the AnalysisRun is compared too.
async fn replica_canary_with_analysis(mut cluster: Cluster, url: String) -> Cluster {
    cluster.start_controller();
    cluster.create_smoke_template().await;
    let canary = json!({
        "maxSurge": 1, "maxUnavailable": 0,
        "steps": [
            {"setWeight": 40},
            {"analysis": {"templates": [{"templateName": "smoke"}], "args": [{"name": "url", "value": url}]}},
            {"setWeight": 80},
            {"pause": {"duration": "1s"}}
        ]
    });
    cluster
        .create_rollout(rollout_manifest("web", 5, canary))
        .await;
    cluster.wait_healthy("web", 30).await;
    cluster.set_image("web", "web:v2").await;
    cluster.wait_healthy("web", 60).await;
    wait_old_scaled_down(&cluster, "web").await;
    cluster
}

/// Waits until only the current ReplicaSet of `name` has pods.
async fn wait_old_scaled_down(cluster: &Cluster, name: &str) {
    let current = current_rs(&cluster.rollout(name).await);
    eventually("older ReplicaSets scaled to 0", 30, || {
        let cluster = &cluster;
        let current = current.clone();
        async move {
            cluster
                .replica_sets()
                .await
                .into_iter()
                .filter(|rs| rs.metadata.name.as_deref() != Some(current.as_str()))
                .all(|rs| {
                    rs.spec.replicas == Some(0)
                        && rs.status.as_ref().is_some_and(|s| s.replicas == 0)
                })
                .then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_istio_canary_with_abort_retry_and_promotion_is_the_same_on_both_tiers() {
    on_both_tiers(istio_canary_abort_retry_promote).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blue_green_promotion_is_the_same_on_both_tiers() {
    on_both_tiers(blue_green_preview_promote).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_canary_gated_by_analysis_is_the_same_on_both_tiers() {
    let url = health_endpoint(Health::new(true)).await;
    on_both_tiers(|cluster| replica_canary_with_analysis(cluster, url.clone())).await;
}
