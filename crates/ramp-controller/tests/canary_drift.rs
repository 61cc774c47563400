//! End to end: someone else changes what Ramp owns on a router object (weights, subset
//! hashes, the canary Ingress's weight) or deletes and re-creates the object. Ramp puts its
//! own fields back as its plan says, leaves every other field as the other writer left it,
//! and reports the weight in force. Hand edits are made with the admin client, as a person
//! with kubectl would.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod canary_support;

use canary_support::*;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use pretty_assertions::assert_eq;
use ramp_api::rollout::Rollout;
use ramp_sim::LoggedRequest;
use serde_json::{Value, json};

const CANARY_WEIGHT: &str = "nginx.ingress.kubernetes.io/canary-weight";

fn summaries(writes: &[LoggedRequest]) -> Vec<String> {
    writes.iter().map(LoggedRequest::summary).collect()
}

fn paused_at(rollout: &Rollout, step: i32) -> bool {
    let status = rollout.status.clone().unwrap_or_default();
    status.phase.as_deref() == Some("Paused")
        && status.current_step_index == Some(step)
        && status.has_pause_conditions()
}

/// `status.canary.weights.canary.weight`: what `kubectl argo rollouts get` shows as
/// ActualWeight.
fn reported_weight(rollout: &Rollout) -> Option<i32> {
    rollout
        .status
        .as_ref()?
        .canary
        .as_ref()?
        .weights
        .as_ref()
        .map(|w| w.canary.weight)
}

/// A canary of 5 pods that holds at 20 % until promoted.
fn held_at_twenty() -> Value {
    json!([{"setWeight": 20}, {"pause": {}}])
}

async fn read(api: &Api<DynamicObject>, name: &str) -> Value {
    serde_json::to_value(api.get(name).await.expect("object readable")).unwrap()
}

async fn json_patch(api: &Api<DynamicObject>, name: &str, ops: Value) {
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Json::<()>(serde_json::from_value(ops).unwrap()),
    )
    .await
    .expect("the hand edit");
}

/// `(stable, canary)` weights of the first HTTP route, destinations found by `key`.
fn split(vs: &Value, key: &str, stable: &str, canary: &str) -> (i64, i64) {
    let weight = |value: &str| {
        vs["spec"]["http"][0]["route"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|d| d["destination"][key] == value)
            .and_then(|d| d["weight"].as_i64())
            .unwrap_or(0)
    };
    (weight(stable), weight(canary))
}

/// Waits until VirtualService `web-vsvc` splits `want`.
async fn wait_split(cluster: &Cluster, key: &str, stable: &str, canary: &str, want: (i64, i64)) {
    let api = cluster.virtual_services();
    eventually(&format!("the VirtualService back at {want:?}"), 20, || {
        let api = api.clone();
        async move {
            let vs = read(&api, "web-vsvc").await;
            (split(&vs, key, stable, canary) == want).then_some(())
        }
    })
    .await;
}

/// Whether a write to a router object is Ramp's: its patches always carry a precondition (a
/// `test` operation, or the observed `metadata.resourceVersion` in a merge patch); the
/// test's hand edits and re-creations never do. On the real tier the request log (the audit
/// log) may list the test's own write after the controller's answer to it, so checkpoints
/// are taken before a hand edit and the edit is told apart by this.
fn by_ramp(write: &LoggedRequest) -> bool {
    match write.body.as_ref() {
        Some(Value::Array(ops)) => ops.iter().any(|op| op["op"] == "test"),
        Some(body) => write.patch_type.is_some() && !body["metadata"]["resourceVersion"].is_null(),
        None => false,
    }
}

/// The paths a JSON patch write changes (its `test` guards left out), sorted.
fn changed_paths(write: &LoggedRequest) -> Vec<String> {
    let mut paths: Vec<String> = write
        .body
        .as_ref()
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|op| op["op"] != "test")
        .map(|op| op["path"].as_str().unwrap_or_default().to_owned())
        .collect();
    paths.sort();
    paths
}

/// An Istio host-split canary of 5 pods paused at 20 %.
async fn host_split_paused_at_twenty() -> Cluster {
    let cluster = istio_cluster().await;
    cluster
        .create_rollout(rollout_manifest("web", 5, istio_canary(held_at_twenty())))
        .await;
    cluster.wait_healthy("web", 20).await;
    cluster.set_image("web", "web:v2").await;
    cluster
        .wait_rollout("web", "paused at 20 %", 20, |r| {
            paused_at(r, 1) && reported_weight(r) == Some(20)
        })
        .await;
    cluster
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_edit_of_the_weights_is_put_back_and_the_editors_other_fields_kept() {
    let cluster = host_split_paused_at_twenty().await;
    let vs = cluster.virtual_services();
    assert_eq!(
        split(
            &read(&vs, "web-vsvc").await,
            "host",
            "web-stable",
            "web-canary"
        ),
        (80, 20)
    );

    // The hand edit: half the traffic to the one canary pod, and a timeout of its own.
    let start = cluster.sim.request_log().len();
    json_patch(
        &vs,
        "web-vsvc",
        json!([
            {"op": "replace", "path": "/spec/http/0/route/0/weight", "value": 50},
            {"op": "replace", "path": "/spec/http/0/route/1/weight", "value": 50},
            {"op": "add", "path": "/spec/http/0/timeout", "value": "7s"}
        ]),
    )
    .await;
    wait_split(&cluster, "host", "web-stable", "web-canary", (80, 20)).await;
    let writes = controller_writes(&cluster.sim, start);
    let s = summaries(&writes);

    // One write, of the two weights only; no pod moved; the step is still held.
    let vs_writes: Vec<&LoggedRequest> = writes
        .iter()
        .filter(|w| w.resource == "virtualservices" && by_ramp(w))
        .collect();
    assert_eq!(vs_writes.len(), 1, "{s:#?}");
    assert_eq!(
        changed_paths(vs_writes[0]),
        vec![
            "/spec/http/0/route/0/weight".to_owned(),
            "/spec/http/0/route/1/weight".to_owned()
        ],
        "{s:#?}"
    );
    assert!(writes.iter().all(|w| w.resource != "replicasets"), "{s:#?}");
    let after = read(&vs, "web-vsvc").await;
    assert_eq!(after["spec"]["http"][0]["timeout"], "7s");
    assert_eq!(
        after["spec"]["http"][0]["retries"],
        json!({"attempts": 3, "perTryTimeout": "2s"})
    );
    let rollout = cluster.rollout("web").await;
    assert!(paused_at(&rollout, 1), "{:?}", rollout.status);
    assert_eq!(reported_weight(&rollout), Some(20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_of_fields_ramp_does_not_own_is_left_alone() {
    let cluster = host_split_paused_at_twenty().await;
    let vs = cluster.virtual_services();
    let start = cluster.sim.request_log().len();
    json_patch(
        &vs,
        "web-vsvc",
        json!([
            {"op": "add", "path": "/spec/http/0/timeout", "value": "7s"},
            {"op": "replace", "path": "/spec/http/0/retries/attempts", "value": 9}
        ]),
    )
    .await;
    // A spec change the controller must observe: once it has, it has read the edited
    // VirtualService too (each reconcile reads the router objects afresh).
    let generation = cluster
        .rollouts()
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"revisionHistoryLimit": 3}})),
        )
        .await
        .expect("spec changed")
        .metadata
        .generation;
    cluster
        .wait_rollout("web", "the spec change observed", 20, |r| {
            r.status
                .as_ref()
                .is_some_and(|s| s.observed_generation_number() == generation)
        })
        .await;
    let writes = controller_writes(&cluster.sim, start);
    let s = summaries(&writes);
    // The test's own edit is the only write to the VirtualService.
    assert_eq!(
        writes
            .iter()
            .filter(|w| w.resource == "virtualservices")
            .count(),
        1,
        "{s:#?}"
    );
    let after = read(&vs, "web-vsvc").await;
    assert_eq!(after["spec"]["http"][0]["timeout"], "7s");
    assert_eq!(after["spec"]["http"][0]["retries"]["attempts"], 9);
    assert_eq!(split(&after, "host", "web-stable", "web-canary"), (80, 20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_virtual_service_deleted_and_recreated_at_zero_gets_the_step_weight_back() {
    let cluster = host_split_paused_at_twenty().await;
    let vs = cluster.virtual_services();
    vs.delete("web-vsvc", &DeleteParams::default())
        .await
        .expect("VirtualService deleted");
    cluster
        .wait_rollout("web", "Degraded without its VirtualService", 20, |r| {
            r.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Degraded")
        })
        .await;
    // Re-applied as it is in Git: everything to stable.
    let start = cluster.sim.request_log().len();
    cluster
        .create_virtual_service("web-vsvc", "web-stable", "web-canary")
        .await;
    wait_split(&cluster, "host", "web-stable", "web-canary", (80, 20)).await;
    let rollout = cluster
        .wait_rollout("web", "paused at 20 % again", 20, |r| paused_at(r, 1))
        .await;
    assert_eq!(reported_weight(&rollout), Some(20));
    let writes = controller_writes(&cluster.sim, start);
    let s = summaries(&writes);
    let vs_writes: Vec<&LoggedRequest> = writes
        .iter()
        .filter(|w| w.resource == "virtualservices" && by_ramp(w))
        .collect();
    assert_eq!(vs_writes.len(), 1, "{s:#?}");
    assert!(writes.iter().all(|w| w.resource != "replicasets"), "{s:#?}");
}

fn subset_hash(rule: &Value, subset: &str) -> String {
    rule["spec"]["subsets"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["name"] == subset)
        .and_then(|s| s["labels"]["rollouts-pod-template-hash"].as_str())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_edit_of_the_subsets_and_weights_is_put_back_subset_split() {
    let mut cluster = Cluster::start().await;
    cluster.create_subset_split_objects().await;
    let rules = cluster.destination_rules();
    cluster.start_controller();
    let canary = json!({
        "trafficRouting": {"istio": {
            "virtualService": {"name": "web-vsvc", "routes": ["primary"]},
            "destinationRule": {"name": "web-destrule", "canarySubsetName": "canary", "stableSubsetName": "stable"}
        }},
        "steps": held_at_twenty()
    });
    cluster
        .create_rollout(rollout_manifest("web", 5, canary))
        .await;
    let v1 = cluster.wait_healthy("web", 20).await;
    let stable_hash = v1.status.clone().unwrap().stable_rs.unwrap();
    cluster.set_image("web", "web:v2").await;
    let paused = cluster
        .wait_rollout("web", "paused at 20 %", 20, |r| {
            paused_at(r, 1) && reported_weight(r) == Some(20)
        })
        .await;
    let canary_hash = paused.status.clone().unwrap().current_pod_hash.unwrap();
    let rule = read(&rules, "web-destrule").await;
    assert_eq!(subset_hash(&rule, "canary"), canary_hash);

    // The hand edit: the canary subset pointed at the stable pods with a traffic policy of its
    // own, and the weights at 50/50.
    let start = cluster.sim.request_log().len();
    json_patch(
        &rules,
        "web-destrule",
        json!([
            {"op": "replace", "path": "/spec/subsets/1/labels/rollouts-pod-template-hash", "value": stable_hash},
            {"op": "add", "path": "/spec/subsets/1/trafficPolicy", "value": {"loadBalancer": {"simple": "LEAST_REQUEST"}}}
        ]),
    )
    .await;
    json_patch(
        &cluster.virtual_services(),
        "web-vsvc",
        json!([
            {"op": "replace", "path": "/spec/http/0/route/0/weight", "value": 50},
            {"op": "replace", "path": "/spec/http/0/route/1/weight", "value": 50}
        ]),
    )
    .await;
    wait_split(&cluster, "subset", "stable", "canary", (80, 20)).await;
    eventually("the canary subset back on the canary pods", 20, || {
        let rules = rules.clone();
        let canary_hash = canary_hash.clone();
        async move {
            let rule = read(&rules, "web-destrule").await;
            (subset_hash(&rule, "canary") == canary_hash).then_some(())
        }
    })
    .await;
    let writes = controller_writes(&cluster.sim, start);
    let s = summaries(&writes);
    // Only the hash label and the weights are written back; the policy stays.
    for write in writes
        .iter()
        .filter(|w| w.resource == "destinationrules" && by_ramp(w))
    {
        assert_eq!(
            changed_paths(write),
            vec!["/spec/subsets/1/labels/rollouts-pod-template-hash".to_owned()],
            "{s:#?}"
        );
    }
    for write in writes
        .iter()
        .filter(|w| w.resource == "virtualservices" && by_ramp(w))
    {
        assert!(
            changed_paths(write).iter().all(|p| p.ends_with("/weight")),
            "{s:#?}"
        );
    }
    assert!(writes.iter().all(|w| w.resource != "replicasets"), "{s:#?}");
    let rule = read(&rules, "web-destrule").await;
    assert_eq!(
        rule["spec"]["subsets"][1]["trafficPolicy"],
        json!({"loadBalancer": {"simple": "LEAST_REQUEST"}})
    );
    assert_eq!(subset_hash(&rule, "stable"), stable_hash);
    assert_eq!(reported_weight(&cluster.rollout("web").await), Some(20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_edit_of_the_canary_ingress_weight_is_put_back_and_other_annotations_kept() {
    let mut cluster = Cluster::start().await;
    cluster
        .create_services(&["web-stable", "web-canary"], "web")
        .await;
    cluster.create_ingress("web-ingress", "web-stable").await;
    cluster.start_controller();
    let canary = json!({
        "canaryService": "web-canary",
        "stableService": "web-stable",
        "trafficRouting": {"nginx": {"stableIngress": "web-ingress"}},
        "steps": held_at_twenty()
    });
    cluster
        .create_rollout(rollout_manifest("web", 5, canary))
        .await;
    cluster.wait_healthy("web", 20).await;
    cluster.set_image("web", "web:v2").await;
    cluster
        .wait_rollout("web", "paused at 20 %", 20, |r| {
            paused_at(r, 1) && reported_weight(r) == Some(20)
        })
        .await;
    let ingresses = Api::<Ingress>::namespaced(cluster.client.clone(), ns());
    let canary_ingress = "web-web-ingress-canary";
    let start = cluster.sim.request_log().len();
    ingresses
        .patch(
            canary_ingress,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {
                CANARY_WEIGHT: "50",
                "example.com/owner": "team-web"
            }}})),
        )
        .await
        .expect("the hand edit");
    let annotations = |ingress: &Ingress| ingress.metadata.annotations.clone().unwrap_or_default();
    eventually("the canary weight back at 20", 20, || {
        let ingresses = ingresses.clone();
        async move {
            let ingress = ingresses.get(canary_ingress).await.ok()?;
            (annotations(&ingress).get(CANARY_WEIGHT).map(String::as_str) == Some("20"))
                .then_some(())
        }
    })
    .await;
    let writes = controller_writes(&cluster.sim, start);
    let s = summaries(&writes);
    let ingress_writes: Vec<&LoggedRequest> = writes
        .iter()
        .filter(|w| w.resource == "ingresses" && by_ramp(w))
        .collect();
    assert_eq!(ingress_writes.len(), 1, "{s:#?}");
    assert_eq!(
        ingress_writes[0].body.as_ref().unwrap()["metadata"]["annotations"],
        json!({CANARY_WEIGHT: "20"}),
        "{s:#?}"
    );
    assert!(writes.iter().all(|w| w.resource != "replicasets"), "{s:#?}");
    let ingress = ingresses.get(canary_ingress).await.unwrap();
    assert_eq!(
        annotations(&ingress)
            .get("example.com/owner")
            .map(String::as_str),
        Some("team-web")
    );
    assert_eq!(reported_weight(&cluster.rollout("web").await), Some(20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_edit_during_a_manual_pause_is_put_back_too() {
    let cluster = host_split_paused_at_twenty().await;
    let generation = cluster
        .rollouts()
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"paused": true}})),
        )
        .await
        .expect("paused")
        .metadata
        .generation;
    cluster
        .wait_rollout("web", "the manual pause observed", 20, |r| {
            r.status
                .as_ref()
                .is_some_and(|s| s.observed_generation_number() == generation)
        })
        .await;
    let start = cluster.sim.request_log().len();
    json_patch(
        &cluster.virtual_services(),
        "web-vsvc",
        json!([
            {"op": "replace", "path": "/spec/http/0/route/0/weight", "value": 0},
            {"op": "replace", "path": "/spec/http/0/route/1/weight", "value": 100}
        ]),
    )
    .await;
    wait_split(&cluster, "host", "web-stable", "web-canary", (80, 20)).await;
    let writes = controller_writes(&cluster.sim, start);
    assert!(
        writes.iter().all(|w| w.resource != "replicasets"),
        "{:#?}",
        summaries(&writes)
    );
    assert_eq!(reported_weight(&cluster.rollout("web").await), Some(20));
}
