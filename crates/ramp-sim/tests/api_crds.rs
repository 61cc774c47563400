//! Custom resources on the emulated API server, registered from the real upstream Argo
//! Rollouts CRDs: discovery, schema validation (422 naming the field), pruning, strict field
//! validation, status and scale subresources, server-side apply, Table output, OpenAPI v3.
#![allow(clippy::unwrap_used)] // Tests fail loudly on any unexpected error.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::core::Status;
use kube::discovery::Discovery;
use pretty_assertions::assert_eq;
use ramp_sim::compat::{self, ArgoRollouts};
use ramp_sim::{Sim, SimConfig, SimHandle};
use serde_json::{Value, json};
use std::path::Path;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn yaml(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

async fn sim_with_crds(upstream: &ArgoRollouts) -> SimHandle {
    let sim = Sim::start(SimConfig::api_only()).await.unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(sim.client());
    for file in [
        "rollout-crd.yaml",
        "analysis-template-crd.yaml",
        "analysis-run-crd.yaml",
        "cluster-analysis-template-crd.yaml",
        "experiment-crd.yaml",
    ] {
        let crd: CustomResourceDefinition =
            serde_json::from_value(yaml(&upstream.crd(file))).unwrap();
        let created = crds
            .create(&PostParams::default(), &crd)
            .await
            .unwrap_or_else(|e| panic!("create {file}: {e}"));
        let established = created
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        assert!(established, "{file} is established");
    }
    sim
}

fn rollouts(sim: &SimHandle) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Rollout"),
        "rollouts",
    );
    Api::namespaced_with(sim.client(), "default", &resource)
}

fn example_rollout(upstream: &ArgoRollouts) -> DynamicObject {
    serde_json::from_value(yaml(&upstream.example("rollout-canary.yaml"))).unwrap()
}

fn api_error(err: kube::Error) -> Status {
    match err {
        kube::Error::Api(status) => *status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

async fn raw_get(sim: &SimHandle, path: &str, accept: &str) -> (String, Value) {
    let mut stream = tokio::net::TcpStream::connect(sim.addr()).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: sim\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8(response).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.lines().next().unwrap_or_default().to_owned();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
    out
}

#[tokio::test]
async fn crds_are_discovered_with_names_and_subresources() {
    let Some(upstream) = compat::argo_rollouts() else {
        return;
    };
    let sim = sim_with_crds(&upstream).await;
    let discovery = Discovery::new(sim.client()).run().await.unwrap();
    let group = discovery
        .get("argoproj.io")
        .expect("argoproj.io discovered");
    let kinds: Vec<String> = group
        .recommended_resources()
        .into_iter()
        .map(|(ar, _)| ar.kind)
        .collect();
    for kind in [
        "Rollout",
        "AnalysisTemplate",
        "ClusterAnalysisTemplate",
        "AnalysisRun",
        "Experiment",
    ] {
        assert!(
            kinds.contains(&kind.to_owned()),
            "{kind} missing from {kinds:?}"
        );
    }
    let (status, list) = raw_get(&sim, "/apis/argoproj.io/v1alpha1", "application/json").await;
    assert!(status.contains("200"), "{status}");
    let rollout = list["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "rollouts")
        .unwrap()
        .clone();
    assert_eq!(rollout["shortNames"], json!(["ro"]));
    assert_eq!(rollout["namespaced"], json!(true));
    let names: Vec<&str> = list["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert!(
        names.contains(&"rollouts/status") && names.contains(&"rollouts/scale"),
        "{names:?}"
    );
    let cluster = list["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "clusteranalysistemplates")
        .unwrap();
    assert_eq!(cluster["namespaced"], json!(false));
}

#[tokio::test]
async fn an_upstream_example_rollout_is_accepted_and_defaults_server_fields() {
    let Some(upstream) = compat::argo_rollouts() else {
        return;
    };
    let sim = sim_with_crds(&upstream).await;
    let api = rollouts(&sim);
    let created = api
        .create(&PostParams::default(), &example_rollout(&upstream))
        .await
        .unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    assert_eq!(
        created.data.get("status"),
        None,
        "status is dropped on create with a status subresource"
    );
    assert_eq!(
        created.data["spec"]["strategy"]["canary"]["steps"][0]["setWeight"],
        json!(20)
    );

    let patched = api
        .patch_status("rollout-canary", &PatchParams::default(), &Patch::Merge(json!({"status": {"HPAReplicas": 4, "selector": "app=rollout-canary", "phase": "Progressing"}})))
        .await
        .unwrap();
    assert_eq!(patched.metadata.generation, Some(1));
    assert_eq!(patched.data["status"]["phase"], json!("Progressing"));

    let scale = api.get_scale("rollout-canary").await.unwrap();
    assert_eq!(scale.spec.and_then(|s| s.replicas), Some(5));
    assert_eq!(
        scale.status.as_ref().map(|s| s.replicas),
        Some(4),
        "status.replicas reads .status.HPAReplicas"
    );
    assert_eq!(
        scale.status.and_then(|s| s.selector),
        Some("app=rollout-canary".to_owned())
    );

    let spec = api
        .patch(
            "rollout-canary",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    assert_eq!(spec.metadata.generation, Some(2));
    assert_eq!(
        spec.data["status"]["phase"],
        json!("Progressing"),
        "main-resource writes keep status"
    );
}

#[tokio::test]
async fn invalid_rollouts_get_422_naming_the_field() {
    let Some(upstream) = compat::argo_rollouts() else {
        return;
    };
    let sim = sim_with_crds(&upstream).await;
    let api = rollouts(&sim);
    let mut rollout = example_rollout(&upstream);
    rollout.data["spec"]["replicas"] = json!("five");
    let err = api_error(
        api.create(&PostParams::default(), &rollout)
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (422, "Invalid"));
    assert!(
        err.message
            .starts_with("Rollout.argoproj.io \"rollout-canary\" is invalid: "),
        "{}",
        err.message
    );
    assert!(err.message.contains("spec.replicas"), "{}", err.message);
    let causes = err.details.map(|d| d.causes).unwrap_or_default();
    assert!(
        causes.iter().any(|c| c.field == "spec.replicas"),
        "{causes:?}"
    );
}

#[tokio::test]
async fn unknown_fields_are_pruned_or_rejected_when_strict() {
    let Some(upstream) = compat::argo_rollouts() else {
        return;
    };
    let sim = sim_with_crds(&upstream).await;
    let api = rollouts(&sim);
    let mut rollout = example_rollout(&upstream);
    rollout.data["spec"]["bogusField"] = json!(1);
    let created = api.create(&PostParams::default(), &rollout).await.unwrap();
    assert_eq!(
        created.data["spec"].get("bogusField"),
        None,
        "unknown fields are pruned"
    );
    let stored = api.get("rollout-canary").await.unwrap();
    assert_eq!(stored.data["spec"].get("bogusField"), None);

    let strict = PatchParams {
        field_validation: Some(kube::api::ValidationDirective::Strict),
        ..PatchParams::default()
    };
    let err = api_error(
        api.patch(
            "rollout-canary",
            &strict,
            &Patch::Merge(json!({"spec": {"bogusField": 2}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.code, 400);
    assert_eq!(
        err.message,
        "strict decoding error: unknown field \"spec.bogusField\""
    );
}

#[tokio::test]
async fn server_side_apply_creates_updates_and_reports_conflicts() {
    let Some(upstream) = compat::argo_rollouts() else {
        return;
    };
    let sim = sim_with_crds(&upstream).await;
    let api = rollouts(&sim);
    let rollout = example_rollout(&upstream);
    let first = api
        .patch(
            "rollout-canary",
            &PatchParams::apply("gitops"),
            &Patch::Apply(&rollout),
        )
        .await
        .unwrap();
    assert_eq!(first.metadata.generation, Some(1));
    let managers: Vec<String> = first
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert_eq!(managers, ["gitops"]);

    let other = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "metadata": {"name": "rollout-canary"}, "spec": {"replicas": 9}});
    let err = api_error(
        api.patch(
            "rollout-canary",
            &PatchParams::apply("ramp"),
            &Patch::Apply(&other),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
    assert!(err.message.contains("spec.replicas"), "{}", err.message);
    let forced = api
        .patch(
            "rollout-canary",
            &PatchParams::apply("ramp").force(),
            &Patch::Apply(&other),
        )
        .await
        .unwrap();
    assert_eq!(forced.data["spec"]["replicas"], json!(9));
    assert_eq!(forced.metadata.generation, Some(2));
}

#[tokio::test]
async fn strategic_merge_is_refused_for_custom_resources() {
    let Some(upstream) = compat::argo_rollouts() else {
        return;
    };
    let sim = sim_with_crds(&upstream).await;
    let api = rollouts(&sim);
    api.create(&PostParams::default(), &example_rollout(&upstream))
        .await
        .unwrap();
    let err = api_error(
        api.patch(
            "rollout-canary",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"replicas": 1}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.code, 415, "{}", err.message);
}

#[tokio::test]
async fn table_output_uses_the_crd_printer_columns() {
    let Some(upstream) = compat::argo_rollouts() else {
        return;
    };
    let sim = sim_with_crds(&upstream).await;
    rollouts(&sim)
        .create(&PostParams::default(), &example_rollout(&upstream))
        .await
        .unwrap();
    let (status, table) = raw_get(
        &sim,
        "/apis/argoproj.io/v1alpha1/namespaces/default/rollouts?limit=500",
        "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
    )
    .await;
    assert!(status.contains("200"), "{status}");
    assert_eq!(table["kind"], json!("Table"));
    let columns: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(
        columns,
        [
            "Name",
            "Desired",
            "Current",
            "Up-to-date",
            "Available",
            "Age"
        ]
    );
    let cells = &table["rows"][0]["cells"];
    assert_eq!(cells[0], json!("rollout-canary"));
    assert_eq!(cells[1], json!(5));
    assert_eq!(
        table["rows"][0]["object"]["kind"],
        json!("PartialObjectMetadata")
    );
}

#[tokio::test]
async fn openapi_v3_lists_crd_operations_with_field_validation() {
    let Some(upstream) = compat::argo_rollouts() else {
        return;
    };
    let sim = sim_with_crds(&upstream).await;
    let (_, index) = raw_get(&sim, "/openapi/v3", "application/json").await;
    let url = index["paths"]["apis/argoproj.io/v1alpha1"]["serverRelativeURL"]
        .as_str()
        .expect("argoproj.io in the index")
        .to_owned();
    let (status, doc) = raw_get(&sim, &url, "application/json").await;
    assert!(status.contains("200"), "{status}");
    let patch =
        &doc["paths"]["/apis/argoproj.io/v1alpha1/namespaces/{namespace}/rollouts/{name}"]["patch"];
    assert_eq!(
        patch["x-kubernetes-group-version-kind"]["kind"],
        json!("Rollout")
    );
    let params: Vec<&str> = patch["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(params.contains(&"fieldValidation"), "{params:?}");
}

#[tokio::test]
async fn deleting_a_crd_stops_serving_its_resource() {
    let Some(upstream) = compat::argo_rollouts() else {
        return;
    };
    let sim = sim_with_crds(&upstream).await;
    rollouts(&sim)
        .create(&PostParams::default(), &example_rollout(&upstream))
        .await
        .unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(sim.client());
    crds.delete("rollouts.argoproj.io", &DeleteParams::default())
        .await
        .unwrap();
    let (status, _) = raw_get(
        &sim,
        "/apis/argoproj.io/v1alpha1/namespaces/default/rollouts",
        "application/json",
    )
    .await;
    assert!(status.contains("404"), "{status}");
    // Re-registering serves an empty resource again.
    let crd: CustomResourceDefinition =
        serde_json::from_value(yaml(&upstream.crd("rollout-crd.yaml"))).unwrap();
    crds.create(&PostParams::default(), &crd).await.unwrap();
    let list = rollouts(&sim).list(&Default::default()).await.unwrap();
    assert!(list.items.is_empty());
}

#[tokio::test]
async fn unknown_fields_produce_a_warning_header_by_default() {
    let Some(upstream) = compat::argo_rollouts() else {
        return;
    };
    let sim = sim_with_crds(&upstream).await;
    let mut rollout = serde_json::to_value(example_rollout(&upstream)).unwrap();
    rollout["spec"]["bogusField"] = json!(true);
    let body = rollout.to_string();
    let mut stream = tokio::net::TcpStream::connect(sim.addr()).await.unwrap();
    let request = format!(
        "POST /apis/argoproj.io/v1alpha1/namespaces/default/rollouts HTTP/1.1\r\nHost: sim\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response);
    let head = text
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 201"), "{head}");
    assert!(
        head.contains(r#"warning: 299 - "unknown field \"spec.bogusfield\"""#),
        "{head}"
    );
}
