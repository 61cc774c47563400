//! A custom resource served at several versions with the `None` conversion strategy, as
//! Istio's CRDs are (v1alpha3, v1beta1, v1): whatever version an object was written at, every
//! read, watch event, write response and patch base is presented at the version of the
//! request's URL, and a body naming another version is refused with the real server's words.
//! Each test runs with the storage version first among the served ones and with it last.
#![allow(clippy::unwrap_used)] // Tests fail loudly on any unexpected error.

use futures::{Stream, StreamExt};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
    WatchEvent, WatchParams,
};
use kube::core::Status;
use pretty_assertions::assert_eq;
use ramp_sim::testing::{istio_crd, start_with_crds};
use ramp_sim::{SimConfig, SimHandle};
use serde_json::{Value, json};
use std::time::Duration;

const GROUP: &str = "networking.istio.io";
const SERVED: [&str; 3] = ["v1alpha3", "v1beta1", "v1"];
/// Storage at the first served version (what `istio_crd` makes) and at the last one.
const STORAGE: [&str; 2] = ["v1alpha3", "v1"];

fn api_version(version: &str) -> String {
    format!("{GROUP}/{version}")
}

async fn sim_storing_at(storage: &str) -> SimHandle {
    let mut crd = istio_crd("virtualservices", "VirtualService", &SERVED);
    for version in &mut crd.spec.versions {
        version.storage = version.name == storage;
    }
    let sim = start_with_crds(SimConfig::api_only(), [crd]).await.unwrap();
    let crd = Api::<CustomResourceDefinition>::all(sim.client())
        .get("virtualservices.networking.istio.io")
        .await
        .unwrap();
    let stored = crd
        .status
        .and_then(|s| s.stored_versions)
        .unwrap_or_default();
    assert_eq!(stored, vec![storage.to_owned()], "storedVersions");
    sim
}

fn at(sim: &SimHandle, version: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk(GROUP, version, "VirtualService");
    Api::namespaced_with(sim.client(), "default", &ApiResource::from_gvk(&gvk))
}

/// A VirtualService sending `canary`% of `web`'s traffic to the canary, written at `version`.
fn virtual_service(version: &str, canary: i64) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": api_version(version), "kind": "VirtualService",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"hosts": ["web"], "http": [{"name": "primary", "route": [
            {"destination": {"host": "web-stable"}, "weight": 100 - canary},
            {"destination": {"host": "web-canary"}, "weight": canary},
        ]}]},
    }))
    .unwrap()
}

/// Creates `web` at v1beta1 (10 % canary) and checks the answer is at v1beta1.
async fn create_at_v1beta1(sim: &SimHandle) -> DynamicObject {
    let created = at(sim, "v1beta1")
        .create(
            &PostParams {
                field_manager: Some("author".to_owned()),
                ..PostParams::default()
            },
            &virtual_service("v1beta1", 10),
        )
        .await
        .unwrap();
    assert_eq!(served_version(&created), api_version("v1beta1"));
    created
}

fn served_version(object: &DynamicObject) -> String {
    object
        .types
        .as_ref()
        .map(|t| t.api_version.clone())
        .unwrap_or_default()
}

fn weights(object: &DynamicObject) -> Vec<i64> {
    object.data["spec"]["http"][0]["route"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["weight"].as_i64().unwrap())
        .collect()
}

fn rv(object: &DynamicObject) -> String {
    object.metadata.resource_version.clone().unwrap()
}

fn api_error(err: kube::Error) -> Status {
    match err {
        kube::Error::Api(status) => *status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

async fn next_event<S>(stream: &mut S, what: &str) -> WatchEvent<DynamicObject>
where
    S: Stream<Item = kube::Result<WatchEvent<DynamicObject>>> + Unpin,
{
    tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .unwrap_or_else(|_| panic!("{what}: no watch event within 5 s"))
        .unwrap_or_else(|| panic!("{what}: the watch ended"))
        .unwrap()
}

/// The type, apiVersion and canary weight of a watch event.
fn describe(event: &WatchEvent<DynamicObject>) -> (String, String, i64) {
    let (kind, object) = match event {
        WatchEvent::Added(o) => ("ADDED", o),
        WatchEvent::Modified(o) => ("MODIFIED", o),
        WatchEvent::Deleted(o) => ("DELETED", o),
        other => panic!("unexpected watch event {other:?}"),
    };
    (kind.to_owned(), served_version(object), weights(object)[1])
}

#[tokio::test]
async fn reads_present_the_object_at_the_requested_version() {
    for storage in STORAGE {
        let sim = sim_storing_at(storage).await;
        let created = create_at_v1beta1(&sim).await;
        for version in SERVED {
            let read = at(&sim, version).get("web").await.unwrap();
            assert_eq!(served_version(&read), api_version(version), "get {version}");
            assert_eq!(read.data["spec"], created.data["spec"], "get {version}");
            assert_eq!(rv(&read), rv(&created), "get {version}");

            let list = at(&sim, version)
                .list(&ListParams::default())
                .await
                .unwrap();
            assert_eq!(
                list.types.api_version,
                api_version(version),
                "list {version}"
            );
            assert_eq!(list.items.len(), 1, "list {version}");
            assert_eq!(served_version(&list.items[0]), api_version(version));
            assert_eq!(list.items[0].data["spec"], created.data["spec"]);
        }

        // `kubectl get -o yaml` at v1alpha3 asks for a Table with the objects in it.
        let table = sim
            .client()
            .request_text(
                axum::http::Request::get(
                    "/apis/networking.istio.io/v1alpha3/namespaces/default/virtualservices?includeObject=Object",
                )
                .header("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
                .body(Vec::new())
                .unwrap(),
            )
            .await
            .unwrap();
        let table: Value = serde_json::from_str(&table).unwrap();
        assert_eq!(table["kind"], "Table");
        let row = &table["rows"][0]["object"];
        assert_eq!(row["apiVersion"], api_version("v1alpha3"), "Table row");
        assert_eq!(row["spec"], created.data["spec"], "Table row");
    }
}

#[tokio::test]
async fn watches_emit_every_change_at_the_watched_version() {
    for storage in STORAGE {
        let sim = sim_storing_at(storage).await;
        let from = sim.resource_version().to_string();
        let mut alpha = at(&sim, "v1alpha3")
            .watch(&WatchParams::default(), &from)
            .await
            .unwrap()
            .boxed();
        let mut ga = at(&sim, "v1")
            .watch(&WatchParams::default(), &from)
            .await
            .unwrap()
            .boxed();

        // Written at v1beta1, then patched at v1alpha3, then replaced at v1.
        create_at_v1beta1(&sim).await;
        at(&sim, "v1alpha3")
            .patch(
                "web",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"http": [{"name": "primary", "route": [
                    {"destination": {"host": "web-stable"}, "weight": 80},
                    {"destination": {"host": "web-canary"}, "weight": 20},
                ]}]}})),
            )
            .await
            .unwrap();
        let mut object = at(&sim, "v1").get("web").await.unwrap();
        object.data["spec"]["http"][0]["route"][1]["weight"] = json!(30);
        object.data["spec"]["http"][0]["route"][0]["weight"] = json!(70);
        at(&sim, "v1")
            .replace("web", &PostParams::default(), &object)
            .await
            .unwrap();

        for (version, stream) in [("v1alpha3", &mut alpha), ("v1", &mut ga)] {
            let mut seen = Vec::new();
            for n in 0..3 {
                seen.push(describe(
                    &next_event(stream, &format!("event {n} at {version}")).await,
                ));
            }
            let version = api_version(version);
            assert_eq!(
                seen,
                vec![
                    ("ADDED".to_owned(), version.clone(), 10),
                    ("MODIFIED".to_owned(), version.clone(), 20),
                    ("MODIFIED".to_owned(), version.clone(), 30),
                ],
                "storage {storage}"
            );
        }

        // A watch without a version starts with the current state, at its own version.
        let mut fresh = at(&sim, "v1alpha3")
            .watch(&WatchParams::default(), "0")
            .await
            .unwrap()
            .boxed();
        assert_eq!(
            describe(&next_event(&mut fresh, "initial event at v1alpha3").await),
            ("ADDED".to_owned(), api_version("v1alpha3"), 30)
        );
    }
}

#[tokio::test]
async fn a_json_patch_applies_to_the_object_at_the_requested_version() {
    for storage in STORAGE {
        let sim = sim_storing_at(storage).await;
        create_at_v1beta1(&sim).await;
        let ops: json_patch::Patch = serde_json::from_value(json!([
            {"op": "test", "path": "/apiVersion", "value": api_version("v1alpha3")},
            {"op": "test", "path": "/spec/http/0/route/1/weight", "value": 10},
            {"op": "replace", "path": "/spec/http/0/route/0/weight", "value": 50},
            {"op": "replace", "path": "/spec/http/0/route/1/weight", "value": 50},
        ]))
        .unwrap();
        let patched = at(&sim, "v1alpha3")
            .patch("web", &PatchParams::default(), &Patch::Json::<()>(ops))
            .await
            .unwrap_or_else(|e| panic!("JSON patch at v1alpha3 (storage {storage}): {e}"));
        assert_eq!(served_version(&patched), api_version("v1alpha3"));
        assert_eq!(weights(&patched), vec![50, 50]);
        let read = at(&sim, "v1beta1").get("web").await.unwrap();
        assert_eq!(served_version(&read), api_version("v1beta1"));
        assert_eq!(weights(&read), vec![50, 50]);

        // The patch base is the object at the URL's version, not the one it was written at.
        let written_version: json_patch::Patch = serde_json::from_value(json!([
            {"op": "test", "path": "/apiVersion", "value": api_version("v1beta1")},
            {"op": "replace", "path": "/spec/http/0/route/1/weight", "value": 0},
        ]))
        .unwrap();
        let status = api_error(
            at(&sim, "v1alpha3")
                .patch(
                    "web",
                    &PatchParams::default(),
                    &Patch::Json::<()>(written_version),
                )
                .await
                .unwrap_err(),
        );
        assert_eq!(status.code, 422, "{status:?}");
        assert!(
            status.message.contains("testing value /apiVersion failed"),
            "{status:?}"
        );
    }
}

#[tokio::test]
async fn a_merge_patch_applies_at_the_requested_version_and_a_no_op_writes_nothing() {
    for storage in STORAGE {
        let sim = sim_storing_at(storage).await;
        let created = create_at_v1beta1(&sim).await;
        let patch =
            json!({"metadata": {"labels": {"canary": "on"}}, "spec": {"gateways": ["mesh"]}});
        let patched = at(&sim, "v1alpha3")
            .patch("web", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap_or_else(|e| panic!("merge patch at v1alpha3 (storage {storage}): {e}"));
        assert_eq!(served_version(&patched), api_version("v1alpha3"));
        assert_eq!(patched.data["spec"]["gateways"], json!(["mesh"]));
        assert_eq!(patched.data["spec"]["http"], created.data["spec"]["http"]);
        assert_eq!(patched.metadata.labels.as_ref().unwrap()["canary"], "on");
        assert_ne!(rv(&patched), rv(&created));

        // The same change again, at yet another version, changes nothing and stores nothing.
        let again = at(&sim, "v1")
            .patch("web", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
        assert_eq!(served_version(&again), api_version("v1"));
        assert_eq!(rv(&again), rv(&patched), "a no-op patch at v1 was stored");
    }
}

#[tokio::test]
async fn server_side_apply_works_at_every_version_and_refuses_another_version_in_the_body() {
    for storage in STORAGE {
        let sim = sim_storing_at(storage).await;
        create_at_v1beta1(&sim).await;
        let applied = at(&sim, "v1alpha3")
            .patch(
                "web",
                &PatchParams::apply("ramp").force(),
                &Patch::Apply(virtual_service("v1alpha3", 40)),
            )
            .await
            .unwrap_or_else(|e| panic!("apply at v1alpha3 (storage {storage}): {e}"));
        assert_eq!(served_version(&applied), api_version("v1alpha3"));
        assert_eq!(weights(&applied), vec![60, 40]);
        let entries = managers(&applied);
        assert!(
            entries.contains(&(
                "ramp".to_owned(),
                "Apply".to_owned(),
                api_version("v1alpha3")
            )),
            "{entries:?}"
        );

        // The same manager applying at v1 keeps one Apply entry, now at v1.
        let applied = at(&sim, "v1")
            .patch(
                "web",
                &PatchParams::apply("ramp"),
                &Patch::Apply(virtual_service("v1", 45)),
            )
            .await
            .unwrap();
        assert_eq!(served_version(&applied), api_version("v1"));
        assert_eq!(weights(&applied), vec![55, 45]);
        let applies: Vec<_> = managers(&applied)
            .into_iter()
            .filter(|(manager, operation, _)| manager == "ramp" && operation == "Apply")
            .collect();
        assert_eq!(
            applies,
            vec![("ramp".to_owned(), "Apply".to_owned(), api_version("v1"))]
        );

        let status = api_error(
            at(&sim, "v1alpha3")
                .patch(
                    "web",
                    &PatchParams::apply("ramp"),
                    &Patch::Apply(virtual_service("v1beta1", 50)),
                )
                .await
                .unwrap_err(),
        );
        assert_eq!(status.code, 400, "{status:?}");
        assert_eq!(
            status.message,
            "Incorrect version specified in apply patch. Specified patch version: networking.istio.io/v1beta1, expected: networking.istio.io/v1alpha3"
        );

        // Apply creates a missing object at any version.
        let mut other = virtual_service("v1", 5);
        other.metadata.name = Some("api".to_owned());
        let created = at(&sim, "v1")
            .patch("api", &PatchParams::apply("ramp"), &Patch::Apply(other))
            .await
            .unwrap();
        assert_eq!(served_version(&created), api_version("v1"));
        let read = at(&sim, "v1alpha3").get("api").await.unwrap();
        assert_eq!(served_version(&read), api_version("v1alpha3"));
        assert_eq!(weights(&read), vec![95, 5]);
    }
}

#[tokio::test]
async fn an_update_at_another_version_works_and_a_stale_or_mismatched_body_is_refused() {
    for storage in STORAGE {
        let sim = sim_storing_at(storage).await;
        let created = create_at_v1beta1(&sim).await;
        let mut object = at(&sim, "v1").get("web").await.unwrap();
        object.data["spec"]["http"][0]["route"][0]["weight"] = json!(75);
        object.data["spec"]["http"][0]["route"][1]["weight"] = json!(25);
        let replaced = at(&sim, "v1")
            .replace("web", &PostParams::default(), &object)
            .await
            .unwrap_or_else(|e| panic!("update at v1 (storage {storage}): {e}"));
        assert_eq!(served_version(&replaced), api_version("v1"));
        assert_eq!(weights(&replaced), vec![75, 25]);
        assert_ne!(rv(&replaced), rv(&created));
        let read = at(&sim, "v1beta1").get("web").await.unwrap();
        assert_eq!(served_version(&read), api_version("v1beta1"));
        assert_eq!(weights(&read), vec![75, 25]);

        // The object as read at v1beta1, sent to v1: the body's version is not the URL's.
        let status = api_error(
            at(&sim, "v1")
                .replace("web", &PostParams::default(), &read)
                .await
                .unwrap_err(),
        );
        assert_eq!(status.code, 400, "{status:?}");
        assert_eq!(
            status.message,
            "the API version in the data (networking.istio.io/v1beta1) does not match the expected API version (networking.istio.io/v1)"
        );
        let status = api_error(
            at(&sim, "v1alpha3")
                .create(&PostParams::default(), &virtual_service("v1", 0))
                .await
                .unwrap_err(),
        );
        assert_eq!(status.code, 400, "{status:?}");
        assert_eq!(
            status.message,
            "the API version in the data (networking.istio.io/v1) does not match the expected API version (networking.istio.io/v1alpha3)"
        );

        // The first read again, at its own version but with its old resourceVersion.
        let status = api_error(
            at(&sim, "v1")
                .replace("web", &PostParams::default(), &object)
                .await
                .unwrap_err(),
        );
        assert_eq!(status.code, 409, "{status:?}");
        assert_eq!(
            status.message,
            "Operation cannot be fulfilled on virtualservices.networking.istio.io \"web\": the object has been modified; please apply your changes to the latest version and try again"
        );
    }
}

#[tokio::test]
async fn moving_the_storage_version_keeps_objects_at_every_version_and_lists_both() {
    let sim = sim_storing_at("v1alpha3").await;
    create_at_v1beta1(&sim).await;
    let crds = Api::<CustomResourceDefinition>::all(sim.client());
    let name = "virtualservices.networking.istio.io";
    let mut crd = crds.get(name).await.unwrap();
    for version in &mut crd.spec.versions {
        version.storage = version.name == "v1";
    }
    let crd = crds
        .replace(name, &PostParams::default(), &crd)
        .await
        .unwrap();
    let stored = crd
        .status
        .and_then(|s| s.stored_versions)
        .unwrap_or_default();
    // Objects written before may still be stored at v1alpha3, so both stay listed.
    assert_eq!(stored, vec!["v1alpha3".to_owned(), "v1".to_owned()]);

    let patch = Patch::Merge(json!({"spec": {"gateways": ["mesh"]}}));
    let patched = at(&sim, "v1beta1")
        .patch("web", &PatchParams::default(), &patch)
        .await
        .unwrap();
    assert_eq!(served_version(&patched), api_version("v1beta1"));
    for version in SERVED {
        let read = at(&sim, version).get("web").await.unwrap();
        assert_eq!(served_version(&read), api_version(version));
        assert_eq!(read.data["spec"]["gateways"], json!(["mesh"]));
        assert_eq!(weights(&read), vec![90, 10]);
    }
}

/// (manager, operation, apiVersion) of each managedFields entry, in order.
fn managers(object: &DynamicObject) -> Vec<(String, String, String)> {
    object
        .metadata
        .managed_fields
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|e| {
            (
                e.manager.unwrap_or_default(),
                e.operation.unwrap_or_default(),
                e.api_version.unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test]
async fn managed_fields_record_the_version_of_each_request() {
    for storage in STORAGE {
        let sim = sim_storing_at(storage).await;
        create_at_v1beta1(&sim).await;
        let ramp = PatchParams {
            field_manager: Some("ramp".to_owned()),
            ..PatchParams::default()
        };
        at(&sim, "v1alpha3")
            .patch(
                "web",
                &ramp,
                &Patch::Merge(json!({"spec": {"gateways": ["mesh"]}})),
            )
            .await
            .unwrap();
        let patched = at(&sim, "v1")
            .patch(
                "web",
                &ramp,
                &Patch::Merge(json!({"spec": {"exportTo": ["."]}})),
            )
            .await
            .unwrap();
        // Update entries are kept per manager and version (Apply entries per manager only),
        // and every read shows them as recorded, whatever its own version.
        let expected = vec![
            (
                "author".to_owned(),
                "Update".to_owned(),
                api_version("v1beta1"),
            ),
            (
                "ramp".to_owned(),
                "Update".to_owned(),
                api_version("v1alpha3"),
            ),
            ("ramp".to_owned(), "Update".to_owned(), api_version("v1")),
        ];
        assert_eq!(managers(&patched), expected, "storage {storage}");
        let read = at(&sim, "v1beta1").get("web").await.unwrap();
        assert_eq!(managers(&read), expected);
        let fields: Vec<Value> = read
            .metadata
            .managed_fields
            .unwrap()
            .into_iter()
            .map(|e| e.fields_v1.map(|f| f.0).unwrap_or(Value::Null))
            .collect();
        assert_eq!(fields[1], json!({"f:spec": {"f:gateways": {}}}));
        assert_eq!(fields[2], json!({"f:spec": {"f:exportTo": {}}}));
    }
}
