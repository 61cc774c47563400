//! The `pods/{name}/eviction` subresource through the real kube client: discovery lists it,
//! an eviction deletes the pod, PodDisruptionBudgets (minAvailable, maxUnavailable, unhealthy
//! pods) refuse it with the real server's 429, and malformed requests fail as upstream's do.
#![allow(clippy::unwrap_used)] // Tests fail loudly on any unexpected error.

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, EvictParams, Patch, PatchParams, PostParams};
use kube::core::Status;
use pretty_assertions::assert_eq;
use ramp_sim::{Sim, SimConfig, Verb};
use serde_json::{Value, json};

const VIOLATION: &str = "Cannot evict pod as it would violate the pod's disruption budget.";

async fn sim() -> ramp_sim::SimHandle {
    Sim::start(SimConfig::api_only()).await.expect("sim starts")
}

/// A client that reports a 429 at once: kube's default client retries 429s with a backoff of
/// up to minutes, which would hide how many refusals the server answered.
async fn no_retry_client(sim: &ramp_sim::SimHandle) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(sim.kubeconfig_path()).unwrap();
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    config.default_retry = false;
    kube::Client::try_from(config).unwrap()
}

fn api_error(err: kube::Error) -> Status {
    match err {
        kube::Error::Api(status) => *status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// A ReplicaSet `web` of `replicas` (only its size matters: no workload simulator runs).
async fn replica_set(client: &kube::Client, replicas: i32) -> String {
    let rs: ReplicaSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "web"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "web:v1"}]}}}
    }))
    .unwrap();
    let created = Api::<ReplicaSet>::default_namespaced(client.clone())
        .create(&PostParams::default(), &rs)
        .await
        .unwrap();
    created.metadata.uid.unwrap()
}

/// A pod of ReplicaSet `web` in `phase`, Ready or not.
async fn pod(client: &kube::Client, name: &str, owner_uid: &str, phase: &str, ready: bool) {
    let pods = Api::<Pod>::default_namespaced(client.clone());
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "web"}, "ownerReferences": [{
            "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": owner_uid,
            "controller": true, "blockOwnerDeletion": true
        }]},
        "spec": {"containers": [{"name": "web", "image": "web:v1"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let status = json!({"status": {"phase": phase, "conditions": [
        {"type": "Ready", "status": if ready { "True" } else { "False" }}
    ]}});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

async fn budget(client: &kube::Client, name: &str, spec: Value) {
    let mut spec = spec;
    spec["selector"] = json!({"matchLabels": {"app": "web"}});
    let pdb: PodDisruptionBudget = serde_json::from_value(json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": name}, "spec": spec
    }))
    .unwrap();
    Api::<PodDisruptionBudget>::default_namespaced(client.clone())
        .create(&PostParams::default(), &pdb)
        .await
        .unwrap();
}

async fn pod_names(client: &kube::Client) -> Vec<String> {
    Api::<Pod>::default_namespaced(client.clone())
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect()
}

fn assert_refused(err: kube::Error, budget_message: &str) {
    let status = api_error(err);
    assert_eq!(
        (status.code, status.reason.as_str(), status.message.as_str()),
        (429, "TooManyRequests", VIOLATION)
    );
    let causes = status.details.map(|d| d.causes).unwrap_or_default();
    assert_eq!(causes.len(), 1, "{causes:?}");
    assert_eq!(causes[0].reason, "DisruptionBudget");
    assert_eq!(causes[0].message, budget_message);
}

#[tokio::test]
async fn discovery_lists_the_eviction_subresource_of_pods() {
    let sim = sim().await;
    let resources = sim.client().list_core_api_resources("v1").await.unwrap();
    let eviction = resources
        .resources
        .iter()
        .find(|r| r.name == "pods/eviction")
        .expect("pods/eviction in /api/v1");
    assert_eq!(eviction.kind, "Eviction");
    assert_eq!(eviction.group.as_deref(), Some("policy"));
    assert_eq!(eviction.version.as_deref(), Some("v1"));
    assert_eq!(eviction.verbs, vec!["create".to_owned()]);
    assert!(eviction.namespaced);
    let policy = sim
        .client()
        .list_api_group_resources("policy/v1")
        .await
        .unwrap();
    assert!(
        policy
            .resources
            .iter()
            .any(|r| r.name == "poddisruptionbudgets" && r.kind == "PodDisruptionBudget"),
        "{:?}",
        policy.resources
    );
}

#[tokio::test]
async fn eviction_without_a_budget_deletes_the_pod_and_is_logged() {
    let sim = sim().await;
    let client = sim.client();
    let owner = replica_set(&client, 2).await;
    pod(&client, "web-a", &owner, "Running", true).await;
    pod(&client, "web-b", &owner, "Running", true).await;
    let checkpoint = sim.request_log().len();
    let pods = Api::<Pod>::default_namespaced(client.clone());
    let status = pods.evict("web-a", &EvictParams::default()).await.unwrap();
    assert_eq!(
        status.status,
        Some(kube::core::response::StatusSummary::Success)
    );
    assert_eq!(pod_names(&client).await, vec!["web-b".to_owned()]);

    let log = sim.request_log().since(checkpoint);
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0].verb, Verb::Create);
    assert_eq!(log[0].resource, "pods");
    assert_eq!(log[0].subresource.as_deref(), Some("eviction"));
    assert_eq!(log[0].name.as_deref(), Some("web-a"));
    assert_eq!(log[0].code, 201);
    // kube's body carries only the name (no kind): the server defaults the rest.
    assert_eq!(log[0].body.as_ref().unwrap()["metadata"]["name"], "web-a");
    assert_eq!(
        sim.request_log().writes_to("pods/eviction").len(),
        1,
        "writes_to names the subresource"
    );

    // The pod is gone: a second eviction is a 404 about the pod.
    let err = api_error(
        pods.evict("web-a", &EvictParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (err.code, err.message.as_str()),
        (404, "pods \"web-a\" not found")
    );
}

#[tokio::test]
async fn min_available_budget_allows_evictions_down_to_its_floor_only() {
    let sim = sim().await;
    let client = no_retry_client(&sim).await;
    let owner = replica_set(&client, 3).await;
    for name in ["web-a", "web-b", "web-c"] {
        pod(&client, name, &owner, "Running", true).await;
    }
    budget(&client, "web-pdb", json!({"minAvailable": 2})).await;
    let pods = Api::<Pod>::default_namespaced(client.clone());
    pods.evict("web-a", &EvictParams::default()).await.unwrap();
    let err = pods
        .evict("web-b", &EvictParams::default())
        .await
        .unwrap_err();
    assert_refused(
        err,
        "The disruption budget web-pdb needs 2 healthy pods and has 2 currently",
    );
    assert_eq!(
        pod_names(&client).await,
        vec!["web-b".to_owned(), "web-c".to_owned()]
    );
    // The refusal is logged with its code, so a test can see the controller was told no.
    let refused = sim
        .request_log()
        .filter(|e| e.subresource.as_deref() == Some("eviction") && e.code == 429);
    assert_eq!(refused.len(), 1);

    // A replacement pod becoming Ready makes room again.
    pod(&client, "web-d", &owner, "Running", true).await;
    pods.evict("web-b", &EvictParams::default()).await.unwrap();
}

#[tokio::test]
async fn max_unavailable_budget_counts_the_owning_replica_set_size() {
    let sim = sim().await;
    let client = no_retry_client(&sim).await;
    let owner = replica_set(&client, 4).await;
    for name in ["web-a", "web-b", "web-c", "web-d"] {
        pod(&client, name, &owner, "Running", true).await;
    }
    // 25 % of the ReplicaSet's 4 replicas: one pod may be down at a time.
    budget(&client, "web-pdb", json!({"maxUnavailable": "25%"})).await;
    let pods = Api::<Pod>::default_namespaced(client.clone());
    pods.evict("web-a", &EvictParams::default()).await.unwrap();
    let err = pods
        .evict("web-b", &EvictParams::default())
        .await
        .unwrap_err();
    assert_refused(
        err,
        "The disruption budget web-pdb needs 3 healthy pods and has 3 currently",
    );
}

#[tokio::test]
async fn unhealthy_and_pending_pods_follow_the_upstream_rules() {
    let sim = sim().await;
    let client = no_retry_client(&sim).await;
    let owner = replica_set(&client, 3).await;
    pod(&client, "web-a", &owner, "Running", true).await;
    pod(&client, "web-b", &owner, "Running", false).await;
    pod(&client, "web-c", &owner, "Pending", false).await;
    budget(&client, "web-pdb", json!({"minAvailable": 2})).await;
    let pods = Api::<Pod>::default_namespaced(client.clone());
    // Running but not Ready, with the budget already short: IfHealthyBudget refuses.
    let err = pods
        .evict("web-b", &EvictParams::default())
        .await
        .unwrap_err();
    assert_refused(
        err,
        "The disruption budget web-pdb needs 2 healthy pods and has 1 currently",
    );
    // A pending pod never counts against a budget.
    pods.evict("web-c", &EvictParams::default()).await.unwrap();
    // AlwaysAllow lets unhealthy pods go whatever the budget.
    Api::<PodDisruptionBudget>::default_namespaced(client.clone())
        .patch(
            "web-pdb",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"unhealthyPodEvictionPolicy": "AlwaysAllow"}})),
        )
        .await
        .unwrap();
    pods.evict("web-b", &EvictParams::default()).await.unwrap();
    assert_eq!(pod_names(&client).await, vec!["web-a".to_owned()]);
}

#[tokio::test]
async fn two_budgets_for_one_pod_are_an_error_as_upstream() {
    let sim = sim().await;
    let client = sim.client();
    let owner = replica_set(&client, 1).await;
    pod(&client, "web-a", &owner, "Running", true).await;
    budget(&client, "one", json!({"minAvailable": 0})).await;
    budget(&client, "two", json!({"minAvailable": 0})).await;
    let err = api_error(
        Api::<Pod>::default_namespaced(client.clone())
            .evict("web-a", &EvictParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 500);
    assert_eq!(
        err.message,
        "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
    );
}

#[tokio::test]
async fn malformed_evictions_are_rejected() {
    let sim = sim().await;
    let client = sim.client();
    let owner = replica_set(&client, 1).await;
    pod(&client, "web-a", &owner, "Running", true).await;
    let base = "/api/v1/namespaces/default/pods/web-a/eviction";

    let mismatched = axum::http::Request::post(base)
        .header("content-type", "application/json")
        .body(
            serde_json::to_vec(&json!({"apiVersion": "policy/v1", "kind": "Eviction",
                "metadata": {"name": "web-b", "namespace": "default"}}))
            .unwrap(),
        )
        .unwrap();
    let err = api_error(client.request::<Status>(mismatched).await.unwrap_err());
    assert_eq!(
        (err.code, err.message.as_str()),
        (400, "name in URL does not match name in Eviction object")
    );

    let read = axum::http::Request::get(base).body(Vec::new()).unwrap();
    let err = api_error(client.request::<Status>(read).await.unwrap_err());
    assert_eq!(err.code, 405);

    // A uid precondition that does not hold is a conflict; the pod stays.
    let stale = axum::http::Request::post(base)
        .header("content-type", "application/json")
        .body(
            serde_json::to_vec(&json!({"apiVersion": "policy/v1", "kind": "Eviction",
                "metadata": {"name": "web-a"},
                "deleteOptions": {"preconditions": {"uid": "not-the-uid"}}}))
            .unwrap(),
        )
        .unwrap();
    let err = api_error(client.request::<Status>(stale).await.unwrap_err());
    assert_eq!(err.code, 409);
    assert!(
        err.message.contains("Precondition failed: UID"),
        "{}",
        err.message
    );
    assert_eq!(pod_names(&client).await, vec!["web-a".to_owned()]);
}
