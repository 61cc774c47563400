//! The routers against an API server of either tier (ramp-sim's, or the real control plane's
//! with the real Istio CRDs): objects created through the client, the router applied, the
//! objects read back and the exact writes checked in the request log (the sim's, or the real
//! server's audit log).

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use pretty_assertions::assert_eq;
use ramp_api::rollout::{
    HeaderRoutingMatch, IstioDestinationRule, IstioTrafficRouting, IstioVirtualService,
    ManagedRoute, NginxTrafficRouting, RolloutTrafficRouting, StringMatch,
};
use ramp_controller::traffic::istio::plan_virtual_service;
use ramp_controller::traffic::{
    IstioApiVersion, ObjectName, RolloutTrafficTarget, ServiceSelectors, TrafficError,
    TrafficRouters,
};
use ramp_core::traffic::{HeaderRouteIntent, TrafficIntent};
use ramp_sim::audit::AuditLog;
use ramp_sim::testing::{eventually, istio_crd};
use ramp_sim::tier::{TestCluster, WriteLog, skip_on_real_tier, test_namespace};
use ramp_sim::{FaultError, FaultTarget, LoggedRequest, SimConfig, Verb};
use serde_json::{Value, json};
use std::time::Duration;

/// The namespace the test works in: `default` on ramp-sim, a fresh one on the real tier.
fn ns() -> &'static str {
    test_namespace()
}

/// The writes since `checkpoint` once the log settled, without those kube-controller-manager
/// makes in a namespace of the real tier on its own (a Service's endpoints, the namespace's
/// ServiceAccount and CA ConfigMap): ramp-sim's API server alone makes none.
fn writes_since(log: WriteLog<'_>, checkpoint: usize) -> Vec<LoggedRequest> {
    log.since_settled(checkpoint, Duration::from_secs(2))
        .into_iter()
        .filter(|w| {
            !matches!(
                w.resource.as_str(),
                "endpoints" | "endpointslices" | "serviceaccounts" | "configmaps" | "events"
            )
        })
        .collect()
}

async fn start_api_server(crds: Vec<CustomResourceDefinition>) -> (TestCluster, Client) {
    let cluster = TestCluster::start(SimConfig::api_only(), crds)
        .await
        .expect("cluster starts with the CRDs");
    let client = cluster.client();
    (cluster, client)
}

async fn start_with_istio() -> (TestCluster, Client) {
    let versions = ["v1alpha3", "v1beta1", "v1"];
    let crds = [
        istio_crd("virtualservices", "VirtualService", &versions),
        istio_crd("destinationrules", "DestinationRule", &versions),
    ];
    let (sim, client) = start_api_server(crds.into()).await;
    for resource in [
        IstioApiVersion::V1alpha3.virtual_service_resource(),
        IstioApiVersion::V1alpha3.destination_rule_resource(),
    ] {
        let api = Api::<DynamicObject>::namespaced_with(client.clone(), ns(), &resource);
        eventually(&format!("{} served", resource.plural), 10, || {
            let api = api.clone();
            async move { api.list(&Default::default()).await.ok().map(|_| ()) }
        })
        .await;
    }
    (sim, client)
}

fn vs_api(client: &Client) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        ns(),
        &IstioApiVersion::V1alpha3.virtual_service_resource(),
    )
}

fn dr_api(client: &Client) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        ns(),
        &IstioApiVersion::V1alpha3.destination_rule_resource(),
    )
}

async fn create_dynamic(api: &Api<DynamicObject>, resource: &ApiResource, object: Value) -> Value {
    let mut object: DynamicObject = serde_json::from_value(object).expect("valid object");
    object.types = Some(kube::api::TypeMeta {
        api_version: resource.api_version.clone(),
        kind: resource.kind.clone(),
    });
    let created = api
        .create(&PostParams::default(), &object)
        .await
        .expect("created");
    serde_json::to_value(created).expect("serializes")
}

async fn read(api: &Api<DynamicObject>, name: &str) -> Value {
    serde_json::to_value(api.get(name).await.expect("object exists")).expect("serializes")
}

fn host_split_vs() -> Value {
    json!({
        "metadata": {"name": "rollout-vsvc", "namespace": ns()},
        "spec": {
            "hosts": ["rollout-vsvc"],
            "http": [{
                "name": "primary",
                "route": [
                    {"destination": {"host": "rollout-stable"}, "weight": 100},
                    {"destination": {"host": "rollout-canary"}, "weight": 0}
                ]
            }]
        }
    })
}

fn istio_target(istio: IstioTrafficRouting, managed: &[&str]) -> RolloutTrafficTarget {
    RolloutTrafficTarget {
        rollout: "rollout".to_owned(),
        namespace: ns().to_owned(),
        uid: "uid".to_owned(),
        canary_service: Some("rollout-canary".to_owned()),
        stable_service: Some("rollout-stable".to_owned()),
        routing: RolloutTrafficRouting {
            istio: Some(istio),
            managed_routes: Some(
                managed
                    .iter()
                    .map(|name| ManagedRoute {
                        name: name.to_string(),
                    })
                    .collect(),
            ),
            ..RolloutTrafficRouting::default()
        },
    }
}

fn host_split_routing() -> IstioTrafficRouting {
    IstioTrafficRouting {
        virtual_service: Some(IstioVirtualService {
            name: "rollout-vsvc".to_owned(),
            routes: Some(vec!["primary".to_owned()]),
            ..IstioVirtualService::default()
        }),
        ..IstioTrafficRouting::default()
    }
}

fn intent(weight: i32) -> TrafficIntent {
    TrafficIntent {
        canary_weight: weight,
        max_weight: 100,
        ..TrafficIntent::default()
    }
}

fn weights(route: &Value) -> Vec<i64> {
    route["route"]
        .as_array()
        .expect("destinations")
        .iter()
        .map(|d| d["weight"].as_i64().expect("weight"))
        .collect()
}

#[tokio::test]
async fn istio_weights_header_route_and_someone_elses_edits() {
    let (sim, client) = start_with_istio().await;
    let resource = IstioApiVersion::V1alpha3.virtual_service_resource();
    let vs = vs_api(&client);
    let created = create_dynamic(&vs, &resource, host_split_vs()).await;
    let routers = TrafficRouters::new(client.clone(), IstioApiVersion::V1alpha3);
    let target = istio_target(host_split_routing(), &["canary-header"]);

    let checkpoint = sim.request_log().len();
    let writes = routers
        .apply(&target, &intent(10))
        .await
        .expect("weights applied");
    assert_eq!(writes.len(), 1);
    assert_eq!(writes[0].reason, "Updated VirtualService");
    assert_eq!(
        writes[0].summary,
        "VirtualService `rollout-vsvc` set to desiredWeight '10'"
    );
    let logged = writes_since(sim.request_log(), checkpoint);
    assert_eq!(logged.len(), 1, "exactly one write: {logged:?}");
    assert_eq!(logged[0].verb, Verb::Patch);
    assert_eq!(logged[0].resource, "virtualservices");
    assert_eq!(logged[0].patch_type.as_deref(), Some("json"));
    let version = created["metadata"]["resourceVersion"].clone();
    assert_eq!(
        logged[0].body,
        Some(json!([
            {"op": "test", "path": "/metadata/resourceVersion", "value": version},
            {"op": "test", "path": "/spec/http/0/name", "value": "primary"},
            {"op": "test", "path": "/spec/http/0/route/1/destination/host", "value": "rollout-canary"},
            {"op": "add", "path": "/spec/http/0/route/1/weight", "value": 10},
            {"op": "test", "path": "/spec/http/0/route/0/destination/host", "value": "rollout-stable"},
            {"op": "add", "path": "/spec/http/0/route/0/weight", "value": 90}
        ]))
    );
    assert_eq!(
        weights(&read(&vs, "rollout-vsvc").await["spec"]["http"][0]),
        vec![90, 10]
    );

    // Applying the same intent again writes nothing.
    let checkpoint = sim.request_log().len();
    assert!(
        routers
            .apply(&target, &intent(10))
            .await
            .expect("no-op")
            .is_empty()
    );
    assert!(writes_since(sim.request_log(), checkpoint).is_empty());

    // Someone else adds retries to the managed route, a route of their own and a top-level field.
    vs.patch(
        "rollout-vsvc",
        &PatchParams::default(),
        &Patch::Json::<()>(
            serde_json::from_value(json!([
                {"op": "add", "path": "/spec/http/0/retries", "value": {"attempts": 3, "perTryTimeout": "2s"}},
                {"op": "add", "path": "/spec/http/-", "value": {"name": "theirs", "route": [{"destination": {"host": "legacy"}}]}},
                {"op": "add", "path": "/spec/gateways", "value": ["mesh", "public"]}
            ]))
            .expect("patch"),
        ),
    )
    .await
    .expect("their edit");

    let cohort = TrafficIntent {
        header_routes: vec![HeaderRouteIntent {
            name: "canary-header".to_owned(),
            matches: vec![HeaderRoutingMatch {
                header_name: "X-Canary".to_owned(),
                header_value: StringMatch {
                    exact: Some("true".to_owned()),
                    ..StringMatch::default()
                },
            }],
        }],
        ..intent(30)
    };
    routers
        .apply(&target, &cohort)
        .await
        .expect("cohort applied");
    let after = read(&vs, "rollout-vsvc").await;
    let http = after["spec"]["http"].as_array().expect("http");
    assert_eq!(http.len(), 3);
    assert_eq!(
        http[0],
        json!({"name": "canary-header", "match": [{"headers": {"X-Canary": {"exact": "true"}}}],
               "route": [{"destination": {"host": "rollout-canary"}, "weight": 100}]})
    );
    assert_eq!(http[1]["name"], json!("primary"));
    assert_eq!(
        http[1]["retries"],
        json!({"attempts": 3, "perTryTimeout": "2s"})
    );
    assert_eq!(weights(&http[1]), vec![70, 30]);
    assert_eq!(http[2]["name"], json!("theirs"));
    assert_eq!(after["spec"]["gateways"], json!(["mesh", "public"]));

    // Back to 0 with the header route gone: only their additions remain besides ours.
    routers.apply(&target, &intent(0)).await.expect("reset");
    let done = read(&vs, "rollout-vsvc").await;
    let http = done["spec"]["http"].as_array().expect("http");
    assert_eq!(http.len(), 2);
    assert_eq!(weights(&http[0]), vec![100, 0]);
    assert_eq!(http[0]["retries"]["attempts"], json!(3));
}

#[tokio::test]
async fn the_server_refuses_a_patch_planned_on_a_stale_read() {
    let (_sim, client) = start_with_istio().await;
    let resource = IstioApiVersion::V1alpha3.virtual_service_resource();
    let vs = vs_api(&client);
    let stale = create_dynamic(&vs, &resource, host_split_vs()).await;
    let routing = host_split_routing();
    let selection = routing.virtual_service.clone().expect("vs");
    let split = ramp_controller::traffic::istio::SplitDestinations::Host {
        canary_service: "rollout-canary",
        stable_service: "rollout-stable",
    };
    let plan = plan_virtual_service(
        &stale,
        &ObjectName::new("VirtualService", ns(), "rollout-vsvc"),
        &selection,
        split,
        &[],
        &intent(50),
    )
    .expect("plan");
    // Someone inserts a route in front: the planned indexes would now hit their route.
    vs.patch(
        "rollout-vsvc",
        &PatchParams::default(),
        &Patch::Json::<()>(
            serde_json::from_value(json!([
                {"op": "add", "path": "/spec/http/0", "value": {"name": "theirs", "route": [{"destination": {"host": "legacy"}}]}}
            ]))
            .expect("patch"),
        ),
    )
    .await
    .expect("their edit");
    let refused = vs
        .patch(
            "rollout-vsvc",
            &PatchParams::default(),
            &Patch::Json::<()>(plan.patch),
        )
        .await
        .expect_err("stale patch refused");
    assert!(
        matches!(&refused, kube::Error::Api(status) if status.code == 422),
        "{refused:?}"
    );

    // The router itself re-reads and writes the right route.
    let routers = TrafficRouters::new(client.clone(), IstioApiVersion::V1alpha3);
    routers
        .apply(&istio_target(routing, &[]), &intent(50))
        .await
        .expect("applied after re-read");
    let after = read(&vs, "rollout-vsvc").await;
    assert_eq!(
        after["spec"]["http"][0]["route"],
        json!([{"destination": {"host": "legacy"}}])
    );
    assert_eq!(weights(&after["spec"]["http"][1]), vec![50, 50]);
}

#[tokio::test]
async fn conflicts_are_retried_a_bounded_number_of_times() {
    let (cluster, client) = start_with_istio().await;
    let Some(sim) = cluster.sim() else {
        skip_on_real_tier(
            &cluster,
            "a conflict on every patch is a fault only ramp-sim injects",
        );
        return;
    };
    let resource = IstioApiVersion::V1alpha3.virtual_service_resource();
    let vs = vs_api(&client);
    create_dynamic(&vs, &resource, host_split_vs()).await;
    let routers = TrafficRouters::new(client.clone(), IstioApiVersion::V1alpha3);
    let target = istio_target(host_split_routing(), &[]);
    sim.add_error_fault(
        FaultTarget::verb_on(Verb::Patch, "virtualservices"),
        1.0,
        FaultError::Conflict,
    );
    let checkpoint = sim.request_log().len();
    let err = routers
        .apply(&target, &intent(20))
        .await
        .expect_err("always conflicting");
    assert!(
        matches!(err, TrafficError::Conflict { attempts: 5, .. }),
        "{err}"
    );
    assert_eq!(err.metric_label(), "conflict");
    assert!(err.is_transient());
    let attempts = sim
        .request_log()
        .since_settled(checkpoint, std::time::Duration::from_secs(2))
        .into_iter()
        .filter(|e| e.verb == Verb::Patch && e.resource == "virtualservices")
        .count();
    assert_eq!(attempts, 5);
    sim.clear_faults();
    routers
        .apply(&target, &intent(20))
        .await
        .expect("applied once the conflicts stop");
    assert_eq!(
        weights(&read(&vs, "rollout-vsvc").await["spec"]["http"][0]),
        vec![80, 20]
    );
}

#[tokio::test]
async fn subset_split_labels_subsets_before_raising_weight_and_keeps_foreign_subsets() {
    let (sim, client) = start_with_istio().await;
    let vs = vs_api(&client);
    let dr = dr_api(&client);
    create_dynamic(
        &vs,
        &IstioApiVersion::V1alpha3.virtual_service_resource(),
        json!({
            "metadata": {"name": "rollout-vsvc", "namespace": ns()},
            "spec": {"hosts": ["rollout"], "http": [{"route": [
                {"destination": {"host": "rollout", "subset": "stable"}, "weight": 100},
                {"destination": {"host": "rollout", "subset": "canary"}, "weight": 0}
            ]}]}
        }),
    )
    .await;
    create_dynamic(
        &dr,
        &IstioApiVersion::V1alpha3.destination_rule_resource(),
        json!({
            "metadata": {"name": "rollout-destrule", "namespace": ns()},
            "spec": {"host": "rollout", "subsets": [
                {"name": "canary", "labels": {"app": "rollout"}},
                {"name": "stable", "labels": {"app": "rollout"}},
                {"name": "legacy", "labels": {"version": "v0"}}
            ]}
        }),
    )
    .await;
    let routing = IstioTrafficRouting {
        virtual_service: Some(IstioVirtualService {
            name: "rollout-vsvc".to_owned(),
            ..IstioVirtualService::default()
        }),
        destination_rule: Some(IstioDestinationRule {
            name: "rollout-destrule".to_owned(),
            canary_subset_name: "canary".to_owned(),
            stable_subset_name: "stable".to_owned(),
            additional_subset_names: None,
        }),
        ..IstioTrafficRouting::default()
    };
    let mut target = istio_target(routing, &[]);
    target.canary_service = None;
    target.stable_service = None;
    let routers = TrafficRouters::new(client.clone(), IstioApiVersion::V1alpha3);
    let checkpoint = sim.request_log().len();
    let step = TrafficIntent {
        canary_hash: Some("canary-hash".to_owned()),
        stable_hash: Some("stable-hash".to_owned()),
        ..intent(20)
    };
    let writes = routers.apply(&target, &step).await.expect("applied");
    let reasons: Vec<&str> = writes.iter().map(|w| w.reason).collect();
    assert_eq!(
        reasons,
        vec!["UpdatedDestinationRule", "Updated VirtualService"]
    );
    let order: Vec<String> = writes_since(sim.request_log(), checkpoint)
        .into_iter()
        .map(|e| e.resource)
        .collect();
    assert_eq!(order, vec!["destinationrules", "virtualservices"]);
    let rule = read(&dr, "rollout-destrule").await;
    assert_eq!(
        rule["metadata"]["annotations"]["argo-rollouts.argoproj.io/managed-by-rollouts"],
        json!("rollout")
    );
    assert_eq!(
        rule["spec"]["subsets"],
        json!([
            {"name": "canary", "labels": {"app": "rollout", "rollouts-pod-template-hash": "canary-hash"}},
            {"name": "stable", "labels": {"app": "rollout", "rollouts-pod-template-hash": "stable-hash"}},
            {"name": "legacy", "labels": {"version": "v0"}}
        ])
    );
    assert_eq!(
        weights(&read(&vs, "rollout-vsvc").await["spec"]["http"][0]),
        vec![80, 20]
    );

    // Rolling back to a new canary hash at a lower weight: the weight drops first, then the
    // subset moves, so the new hash never sees the old weight.
    let checkpoint = sim.request_log().len();
    let rollback = TrafficIntent {
        canary_hash: Some("other-hash".to_owned()),
        ..step.clone()
    };
    let rollback = TrafficIntent {
        canary_weight: 0,
        ..rollback
    };
    routers.apply(&target, &rollback).await.expect("applied");
    let order: Vec<String> = writes_since(sim.request_log(), checkpoint)
        .into_iter()
        .map(|e| e.resource)
        .collect();
    assert_eq!(order, vec!["virtualservices", "destinationrules"]);
}

#[tokio::test]
async fn missing_objects_are_named_in_the_error() {
    let (_sim, client) = start_with_istio().await;
    let routers = TrafficRouters::new(client.clone(), IstioApiVersion::V1alpha3);
    let err = routers
        .apply(&istio_target(host_split_routing(), &[]), &intent(10))
        .await
        .expect_err("no VirtualService");
    assert_eq!(err.metric_label(), "not_found");
    assert_eq!(err.event_reason(), "VirtualServiceNotFound");
    assert_eq!(
        err.to_string(),
        format!(
            "VirtualService {}/rollout-vsvc not found: it is referenced by \
             spec.strategy.canary.trafficRouting.istio.virtualService(s)",
            ns()
        )
    );
    let services = ServiceSelectors::new(client);
    let err = services
        .point_at(
            ns(),
            "nope",
            "spec.strategy.canary.canaryService",
            "rollout",
            "h",
        )
        .await
        .expect_err("no Service");
    assert_eq!(
        err.to_string(),
        format!(
            "Service {}/nope not found: it is referenced by spec.strategy.canary.canaryService",
            ns()
        )
    );
    assert_eq!(err.event_reason(), "TrafficRoutingError");
}

#[tokio::test]
async fn service_selectors_switch_and_refuse_foreign_services() {
    let (sim, client) = start_api_server(Vec::new()).await;
    let api = Api::<Service>::namespaced(client.clone(), ns());
    for (name, annotations) in [
        ("rollout-canary", json!({})),
        (
            "theirs",
            json!({"argo-rollouts.argoproj.io/managed-by-rollouts": "other"}),
        ),
    ] {
        let service: Service = serde_json::from_value(json!({
            "metadata": {"name": name, "annotations": annotations},
            "spec": {"selector": {"app": "rollout"}, "ports": [{"port": 80}]}
        }))
        .expect("service");
        api.create(&PostParams::default(), &service)
            .await
            .expect("created");
    }
    let services = ServiceSelectors::new(client);
    let checkpoint = sim.request_log().len();
    let write = services
        .point_at(
            ns(),
            "rollout-canary",
            "spec.strategy.canary.canaryService",
            "rollout",
            "abc",
        )
        .await
        .expect("switched")
        .expect("a write");
    assert_eq!(write.reason, "SwitchService");
    let logged = writes_since(sim.request_log(), checkpoint);
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert_eq!(logged[0].verb, Verb::Patch);
    // An audit event does not say a patch's type: the real tier's log reads a strategic merge
    // patch as a merge patch.
    let strategic = if sim.is_real() { "merge" } else { "strategic" };
    assert_eq!(logged[0].patch_type.as_deref(), Some(strategic));
    let service = api.get("rollout-canary").await.expect("exists");
    assert_eq!(
        service.spec.and_then(|s| s.selector).expect("selector"),
        [("app", "rollout"), ("rollouts-pod-template-hash", "abc")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    );
    assert!(
        services
            .point_at(
                ns(),
                "rollout-canary",
                "spec.strategy.canary.canaryService",
                "rollout",
                "abc"
            )
            .await
            .expect("no-op")
            .is_none()
    );
    let err = services
        .point_at(
            ns(),
            "theirs",
            "spec.strategy.canary.stableService",
            "rollout",
            "abc",
        )
        .await
        .expect_err("foreign");
    assert!(matches!(err, TrafficError::ManagedByOtherRollout { .. }));
    services
        .release(ns(), "rollout-canary", "rollout")
        .await
        .expect("released");
    let released = api.get("rollout-canary").await.expect("exists");
    assert_eq!(
        released
            .spec
            .and_then(|s| s.selector)
            .expect("selector")
            .len(),
        1,
        "only the app label remains"
    );
}

#[tokio::test]
async fn nginx_canary_ingress_created_then_patched_keeping_others_annotations() {
    let (sim, client) = start_api_server(ramp_api::crd::all()).await;
    let rollout_resource = ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Rollout"),
        "rollouts",
    );
    let rollouts = Api::<DynamicObject>::namespaced_with(client.clone(), ns(), &rollout_resource);
    eventually("rollouts served", 10, || {
        let rollouts = rollouts.clone();
        async move { rollouts.list(&Default::default()).await.ok().map(|_| ()) }
    })
    .await;
    let rollout = create_dynamic(
        &rollouts,
        &rollout_resource,
        json!({
            "metadata": {"name": "api", "namespace": ns()},
            "spec": {
                "selector": {"matchLabels": {"app": "api"}},
                "template": {"metadata": {"labels": {"app": "api"}},
                             "spec": {"containers": [{"name": "api", "image": "nginx"}]}},
                "strategy": {"canary": {"canaryService": "api-canary", "stableService": "api-stable"}}
            }
        }),
    )
    .await;
    let uid = rollout["metadata"]["uid"].as_str().expect("uid").to_owned();
    let ingresses = Api::<Ingress>::namespaced(client.clone(), ns());
    let stable: Ingress = serde_json::from_value(json!({
        "metadata": {"name": "api", "annotations": {"kubernetes.io/ingress.class": "nginx"}},
        "spec": {"rules": [{"host": "api.example.com", "http": {"paths": [
            {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "api-stable", "port": {"number": 80}}}}
        ]}}]}
    }))
    .expect("ingress");
    let stable = ingresses
        .create(&PostParams::default(), &stable)
        .await
        .expect("created");
    let target = RolloutTrafficTarget {
        rollout: "api".to_owned(),
        namespace: ns().to_owned(),
        uid: uid.clone(),
        canary_service: Some("api-canary".to_owned()),
        stable_service: Some("api-stable".to_owned()),
        routing: RolloutTrafficRouting {
            nginx: Some(NginxTrafficRouting {
                stable_ingress: Some("api".to_owned()),
                ..NginxTrafficRouting::default()
            }),
            ..RolloutTrafficRouting::default()
        },
    };
    let routers = TrafficRouters::new(client.clone(), IstioApiVersion::default());
    let writes = routers.apply(&target, &intent(5)).await.expect("created");
    assert_eq!(writes[0].reason, "CreatingCanaryIngress");
    assert_eq!(
        writes[0].summary,
        "Creating canary ingress `api-api-canary` with weight `5`"
    );
    let canary = ingresses
        .get("api-api-canary")
        .await
        .expect("canary ingress exists");
    let owner = &canary.metadata.owner_references.as_ref().expect("owner")[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("Rollout", uid.as_str(), Some(true))
    );

    // Someone else annotates the canary Ingress; then a header cohort joins the ramp.
    ingresses
        .patch(
            "api-api-canary",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"monitoring.example.com/scrape": "true"}}}),
            ),
        )
        .await
        .expect("their annotation");
    let cohort = TrafficIntent {
        header_routes: vec![HeaderRouteIntent {
            name: "beta".to_owned(),
            matches: vec![HeaderRoutingMatch {
                header_name: "X-Canary".to_owned(),
                header_value: StringMatch {
                    exact: Some("true".to_owned()),
                    ..StringMatch::default()
                },
            }],
        }],
        ..intent(20)
    };
    let checkpoint = sim.request_log().len();
    routers.apply(&target, &cohort).await.expect("patched");
    let logged = writes_since(sim.request_log(), checkpoint);
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert_eq!(logged[0].patch_type.as_deref(), Some("merge"));
    let body = logged[0].body.clone().expect("body");
    assert_eq!(
        body["metadata"]["annotations"],
        json!({
            "nginx.ingress.kubernetes.io/canary-weight": "20",
            "nginx.ingress.kubernetes.io/canary-by-header": "X-Canary",
            "nginx.ingress.kubernetes.io/canary-by-header-value": "true"
        })
    );
    assert!(
        body.get("spec").is_none(),
        "spec unchanged, not sent: {body}"
    );
    let canary = ingresses.get("api-api-canary").await.expect("exists");
    let annotations = canary.metadata.annotations.expect("annotations");
    assert_eq!(annotations["monitoring.example.com/scrape"], "true");
    assert_eq!(
        annotations["nginx.ingress.kubernetes.io/canary-weight"],
        "20"
    );
    assert_eq!(
        annotations["nginx.ingress.kubernetes.io/canary-by-header"],
        "X-Canary"
    );
    // The user's stable Ingress is never written.
    assert!(
        sim.request_log()
            .writes_to_object("ingresses", Some(ns()), "api")
            .len()
            == 1
    );
    assert_eq!(
        ingresses
            .get("api")
            .await
            .expect("exists")
            .metadata
            .resource_version,
        stable.metadata.resource_version
    );
}

#[tokio::test]
async fn several_virtual_services_across_namespaces_at_v1beta1() {
    let (sim, client) = start_with_istio().await;
    let mesh = MadeNamespace::create(&sim, "mesh").await;
    let mesh = mesh.name.as_str();
    // The real tier's audit log is read a namespace at a time.
    let mesh_log = sim
        .real_dir()
        .map(|dir| AuditLog::follow(&dir.join("audit.log"), mesh));
    let version = IstioApiVersion::V1beta1;
    let resource = version.virtual_service_resource();
    let local = Api::<DynamicObject>::namespaced_with(client.clone(), ns(), &resource);
    let remote = Api::<DynamicObject>::namespaced_with(client.clone(), mesh, &resource);
    create_dynamic(&local, &resource, host_split_vs()).await;
    let mut gateway = host_split_vs();
    gateway["metadata"] = json!({"name": "edge", "namespace": mesh});
    gateway["spec"]["http"][0]["name"] = json!("edge-route");
    create_dynamic(&remote, &resource, gateway).await;
    let routing = IstioTrafficRouting {
        virtual_services: Some(vec![
            IstioVirtualService {
                name: "rollout-vsvc".to_owned(),
                ..IstioVirtualService::default()
            },
            IstioVirtualService {
                name: format!("edge.{mesh}"),
                routes: Some(vec!["edge-route".to_owned()]),
                ..IstioVirtualService::default()
            },
        ]),
        ..IstioTrafficRouting::default()
    };
    let routers = TrafficRouters::new(client.clone(), version);
    let checkpoint = sim.request_log().len();
    let mesh_checkpoint = mesh_log.as_ref().map_or(0, AuditLog::len);
    let writes = routers
        .apply(&istio_target(routing, &[]), &intent(40))
        .await
        .expect("applied");
    let written: Vec<String> = writes.iter().map(|w| w.object.to_string()).collect();
    assert_eq!(
        written,
        vec![
            format!("VirtualService {}/rollout-vsvc", ns()),
            format!("VirtualService {mesh}/edge")
        ]
    );
    let mut logged = writes_since(sim.request_log(), checkpoint);
    if let Some(mesh_log) = &mesh_log {
        logged.extend(writes_since(WriteLog::Audit(mesh_log), mesh_checkpoint));
    }
    assert_eq!(logged.len(), 2, "{logged:?}");
    for entry in logged {
        assert_eq!(
            (entry.group.as_str(), entry.version.as_str()),
            ("networking.istio.io", "v1beta1")
        );
    }
    assert_eq!(
        weights(&read(&local, "rollout-vsvc").await["spec"]["http"][0]),
        vec![60, 40]
    );
    assert_eq!(
        weights(&read(&remote, "edge").await["spec"]["http"][0]),
        vec![60, 40]
    );
}

/// A namespace besides the test's: `name` on ramp-sim; on the real tier, which other tests
/// share, the test's namespace with `-name` after it, deleted with the test.
struct MadeNamespace {
    name: String,
    kubeconfig: Option<std::path::PathBuf>,
}

impl MadeNamespace {
    async fn create(cluster: &TestCluster, name: &str) -> Self {
        let name = if cluster.is_real() {
            format!("{}-{name}", ns())
        } else {
            name.to_owned()
        };
        let namespace: k8s_openapi::api::core::v1::Namespace =
            serde_json::from_value(json!({"metadata": {"name": name}})).expect("namespace");
        Api::<k8s_openapi::api::core::v1::Namespace>::all(cluster.client())
            .create(&PostParams::default(), &namespace)
            .await
            .expect("namespace created");
        MadeNamespace {
            name,
            kubeconfig: cluster
                .is_real()
                .then(|| cluster.kubeconfig_path().to_path_buf()),
        }
    }
}

impl Drop for MadeNamespace {
    fn drop(&mut self) {
        // As `TestCluster` deletes the test's own: kubectl outlives the process.
        if let Some(kubeconfig) = &self.kubeconfig {
            let _ = std::process::Command::new("kubectl")
                .arg("--kubeconfig")
                .arg(kubeconfig)
                .args(["delete", "namespace", &self.name, "--wait=false"])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn();
        }
    }
}

#[tokio::test]
async fn a_missing_stable_ingress_is_named() {
    let (sim, client) = start_api_server(Vec::new()).await;
    let routers = TrafficRouters::new(client, IstioApiVersion::default());
    let target = RolloutTrafficTarget {
        rollout: "api".to_owned(),
        namespace: ns().to_owned(),
        uid: "u".to_owned(),
        canary_service: Some("api-canary".to_owned()),
        stable_service: Some("api-stable".to_owned()),
        routing: RolloutTrafficRouting {
            nginx: Some(NginxTrafficRouting {
                stable_ingresses: Some(vec!["web".to_owned()]),
                ..NginxTrafficRouting::default()
            }),
            ..RolloutTrafficRouting::default()
        },
    };
    let err = routers
        .apply(&target, &intent(5))
        .await
        .expect_err("no stable ingress");
    assert_eq!(
        err.to_string(),
        format!(
            "Ingress {}/web not found: it is referenced by \
             spec.strategy.canary.trafficRouting.nginx.stableIngress(es)",
            ns()
        )
    );
    assert!(sim.request_log().writes_to("ingresses").is_empty());
}
