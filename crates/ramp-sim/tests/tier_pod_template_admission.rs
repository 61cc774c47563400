//! What the API server refuses in a pod spec or template, checked with the same assertions on
//! ramp-sim and on the real kube-apiserver: a ReplicaSet whose container has no image (which
//! could never create a pod), a Deployment whose template breaks several rules, a Pod with an
//! unknown restart policy. The expected messages are the real server's, word for word.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use kube::core::Status;
use ramp_sim::SimConfig;
use ramp_sim::tier::TestCluster;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::fmt::Debug;

/// Creates `object` and returns the refusal; panics if it was accepted.
async fn refusal<K>(api: &Api<K>, object: Value) -> Status
where
    K: kube::Resource + Clone + DeserializeOwned + serde::Serialize + Debug,
{
    let typed: K = serde_json::from_value(object).unwrap();
    match api.create(&PostParams::default(), &typed).await {
        Err(kube::Error::Api(status)) => *status,
        Err(other) => panic!("not an API error: {other}"),
        Ok(created) => panic!("accepted: {created:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_set_without_an_image_is_invalid() {
    let cluster = TestCluster::start(SimConfig::api_only(), []).await.unwrap();
    let replica_sets = Api::<ReplicaSet>::namespaced(cluster.client(), cluster.namespace());
    let status = refusal(
        &replica_sets,
        json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "no-image"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                             "spec": {"containers": [{"name": "app"}]}}
            }
        }),
    )
    .await;
    assert_eq!(status.code, 422, "{status:?}");
    assert_eq!(status.reason, "Invalid");
    assert_eq!(
        status.message,
        r#"ReplicaSet.apps "no-image" is invalid: spec.template.spec.containers[0].image: Required value"#
    );
    assert!(
        replica_sets.get_opt("no-image").await.unwrap().is_none(),
        "nothing was stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_template_is_checked_against_its_selector_volumes_and_restart_policy() {
    let cluster = TestCluster::start(SimConfig::api_only(), []).await.unwrap();
    let deployments = Api::<Deployment>::namespaced(cluster.client(), cluster.namespace());
    let status = refusal(
        &deployments,
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {
                "selector": {"matchLabels": {"app": "a"}},
                "template": {"metadata": {"labels": {"app": "b"}}, "spec": {
                    "restartPolicy": "OnFailure",
                    "containers": [{"name": "app", "image": "x",
                                    "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]
                }}
            }
        }),
    )
    .await;
    assert_eq!(status.code, 422, "{status:?}");
    assert_eq!(
        status.message,
        r#"Deployment.apps "d" is invalid: [spec.template.metadata.labels: Invalid value: {"app":"b"}: `selector` does not match template `labels`, spec.template.spec.containers[0].volumeMounts[0].name: Not found: "data", spec.template.spec.restartPolicy: Unsupported value: "OnFailure": supported values: "Always"]"#
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_may_not_restart_sometimes_nor_lack_an_image() {
    let cluster = TestCluster::start(SimConfig::api_only(), []).await.unwrap();
    let pods = Api::<Pod>::namespaced(cluster.client(), cluster.namespace());
    let status = refusal(
        &pods,
        json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"restartPolicy": "Sometimes", "containers": [{"name": "app"}]}
        }),
    )
    .await;
    assert_eq!(status.code, 422, "{status:?}");
    assert_eq!(
        status.message,
        r#"Pod "p" is invalid: [spec.containers[0].image: Required value, spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"]"#
    );
}
