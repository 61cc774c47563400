//! What a CustomResourceDefinition must look like to be accepted, checked with the same
//! assertions on ramp-sim and on the real kube-apiserver (the real tier found that the sim took
//! CRDs the real server refuses).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, PostParams};
use ramp_sim::SimConfig;
use ramp_sim::tier::{TestCluster, test_namespace};
use serde_json::{Value, json};

/// A CRD of a group of this test's own (the real tier's cluster is shared) whose schema's root
/// `metadata` is `metadata`.
fn crd(metadata: Value) -> CustomResourceDefinition {
    let group = format!("{}.tests.ramp.dev", test_namespace());
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("widgets.{group}")},
        "spec": {
            "group": group, "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "metadata": metadata,
                        "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
                    }
                }}
            }]
        }
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_may_only_say_the_root_metadata_is_an_object() {
    let cluster = TestCluster::start(SimConfig::api_only(), []).await.unwrap();
    let crds = Api::<CustomResourceDefinition>::all(cluster.client());

    let described = crd(json!({"type": "object", "description": "Standard object metadata."}));
    let refused = crds
        .create(&PostParams::default(), &described)
        .await
        .expect_err("a described root metadata is refused");
    let kube::Error::Api(status) = refused else {
        panic!("not an API error: {refused}");
    };
    assert_eq!(status.code, 422, "{status:?}");
    assert!(
        status.message.contains(
            "properties[metadata]: Forbidden: must not specify anything other than name and \
             generateName, but metadata is implicitly specified"
        ),
        "{}",
        status.message
    );

    let plain = crd(json!({"type": "object"}));
    let created = crds
        .create(&PostParams::default(), &plain)
        .await
        .expect("`type: object` alone is accepted");
    crds.delete(
        created.metadata.name.as_deref().unwrap(),
        &DeleteParams::default(),
    )
    .await
    .unwrap();
}
