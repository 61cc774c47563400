//! Cases from upstream's e2e manifests (`test/e2e/` of argo-rollouts) that Ramp used to reject
//! while upstream runs them green, rebuilt as our own small fixtures: a VirtualService with only
//! `tls` routes under a rollout that also names an HTTP route (`istio/istio-host-only-tls-split`),
//! and an analysis argument read by `fieldRef` from a label the Rollout does not carry yet
//! (`functional/rollout-rollback-window`). Each runs on either tier with both controllers
//! in-process (the shared canary fixture).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod canary_support;

use canary_support::*;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use pretty_assertions::assert_eq;
use ramp_api::analysis::{AnalysisRun, AnalysisTemplate};
use ramp_api::rollout::{IstioVirtualService, TlsRoute};
use ramp_controller::traffic::ObjectName;
use ramp_controller::traffic::istio::{SplitDestinations, plan_virtual_service};
use ramp_core::traffic::TrafficIntent;
use ramp_sim::tier::test_namespace;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

const VS: &str = "web-vsvc";
const SNI_HOST: &str = "web.example.com";

/// A VirtualService with TLS routes only, as in upstream's TLS-only host split.
fn tls_only_virtual_service(stable: i64, canary: i64) -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1alpha3", "kind": "VirtualService",
        "metadata": {"name": VS, "namespace": test_namespace()},
        "spec": {
            "hosts": [SNI_HOST],
            "tls": [{
                "match": [{"port": 3000, "sniHosts": [SNI_HOST]}],
                "route": [
                    {"destination": {"host": "web-stable"}, "weight": stable},
                    {"destination": {"host": "web-canary"}, "weight": canary}
                ]
            }]
        }
    })
}

/// The selection upstream's manifest makes: an HTTP route name, and the TLS route.
fn http_name_and_tls_route() -> IstioVirtualService {
    IstioVirtualService {
        name: VS.to_owned(),
        routes: Some(vec!["primary".to_owned()]),
        tls_routes: Some(vec![TlsRoute {
            port: Some(3000),
            sni_hosts: Some(vec![SNI_HOST.to_owned()]),
        }]),
        tcp_routes: None,
    }
}

fn tls_weights(vs: &Value) -> (i64, i64) {
    let route = &vs["spec"]["tls"][0]["route"];
    (
        route[0]["weight"].as_i64().unwrap_or(-1),
        route[1]["weight"].as_i64().unwrap_or(-1),
    )
}

#[test]
fn http_route_names_are_ignored_for_a_virtual_service_without_http_routes() {
    let vs = tls_only_virtual_service(100, 0);
    let intent = TrafficIntent {
        canary_weight: 10,
        max_weight: 100,
        ..TrafficIntent::default()
    };
    let split = SplitDestinations::Host {
        canary_service: "web-canary",
        stable_service: "web-stable",
    };
    let object = ObjectName::new("VirtualService", test_namespace(), VS);
    let plan = plan_virtual_service(
        &vs,
        &object,
        &http_name_and_tls_route(),
        split,
        &[],
        &intent,
    )
    .expect("a TLS-only VirtualService is planned");
    let mut result = vs.clone();
    json_patch::patch(&mut result, &plan.patch).expect("the patch applies");
    assert_eq!(result, tls_only_virtual_service(90, 10));
    assert_eq!(plan.desired_canary_weight, 10);

    // With nothing but an HTTP route name, there is nothing to manage: still refused.
    let http_only = IstioVirtualService {
        tls_routes: None,
        ..http_name_and_tls_route()
    };
    let err = plan_virtual_service(&vs, &object, &http_only, split, &[], &intent)
        .expect_err("no route to manage");
    assert!(
        err.to_string()
            .contains("has no HTTP route named 'primary'"),
        "{err}"
    );
}

/// Both controllers running over a fresh cluster of either tier.
async fn cluster() -> Cluster {
    let mut cluster = Cluster::start().await;
    cluster.start_controller();
    cluster
}

async fn virtual_service(cluster: &Cluster) -> Value {
    serde_json::to_value(
        cluster
            .virtual_services()
            .get(VS)
            .await
            .expect("VS readable"),
    )
    .unwrap()
}

/// Upstream's canary of two replicas over `canary`.
fn rollout(canary: Value) -> Value {
    rollout_manifest("web", 2, canary)
}

/// Upstream `TestIstioHostSplitOnlyTls`: Healthy at 100/0 on the TLS route, 90/10 paused at
/// the first step, 100/0 again on the new stable after a promotion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_only_virtual_service_under_a_rollout_naming_an_http_route_walks_every_weight() {
    let cluster = cluster().await;
    cluster
        .create_services(&["web-stable", "web-canary"], "web")
        .await;
    let vs: DynamicObject = serde_json::from_value(tls_only_virtual_service(100, 0)).unwrap();
    cluster
        .virtual_services()
        .create(&PostParams::default(), &vs)
        .await
        .expect("VirtualService created");
    let canary = json!({
        "canaryService": "web-canary",
        "stableService": "web-stable",
        "trafficRouting": {"istio": {"virtualService": {
            "name": VS,
            "routes": ["primary"],
            "tlsRoutes": [{"port": 3000, "sniHosts": [SNI_HOST]}]
        }}},
        "steps": [{"setWeight": 10}, {"pause": {}}]
    });
    cluster.create_rollout(rollout(canary)).await;
    let v1 = cluster.wait_healthy("web", 30).await;
    assert_eq!(tls_weights(&virtual_service(&cluster).await), (100, 0));

    cluster.set_image("web", "web:v2").await;
    let paused = cluster
        .wait_rollout("web", "v2 paused at the pause step", 30, |r| {
            let s = r.status.clone().unwrap_or_default();
            s.phase.as_deref() == Some("Paused") && s.current_step_index == Some(1)
        })
        .await;
    assert_eq!(tls_weights(&virtual_service(&cluster).await), (90, 10));
    let status = paused.status.clone().unwrap_or_default();
    assert_ne!(
        status.current_pod_hash,
        v1.status.clone().unwrap().stable_rs
    );

    cluster
        .rollouts()
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"pauseConditions": null}})),
        )
        .await
        .expect("promoted");
    // The old ReplicaSet stays up for the default 30 s scale-down delay, as upstream asserts.
    cluster
        .wait_rollout("web", "v2 promoted: Healthy, the canary stable", 30, |r| {
            let s = r.status.clone().unwrap_or_default();
            s.phase.as_deref() == Some("Healthy")
                && s.stable_rs.is_some()
                && s.stable_rs == status.current_pod_hash
        })
        .await;
    let cluster = &cluster;
    eventually("the TLS route back at 100/0", 20, || async move {
        (tls_weights(&virtual_service(cluster).await) == (100, 0)).then_some(())
    })
    .await;
    let vs = virtual_service(cluster).await;
    assert!(
        vs["spec"].get("http").is_none(),
        "no HTTP routes added: {vs:#}"
    );
}

/// The `rev` query parameter of each request the in-test endpoint answered (`ok: true`).
#[derive(Clone, Default)]
struct Requests(Arc<Mutex<Vec<Option<String>>>>);

async fn recording_endpoint(requests: Requests) -> String {
    async fn answer(
        axum::extract::State(requests): axum::extract::State<Requests>,
        axum::extract::Query(query): axum::extract::Query<
            std::collections::BTreeMap<String, String>,
        >,
    ) -> axum::Json<Value> {
        requests.0.lock().unwrap().push(query.get("rev").cloned());
        axum::Json(json!({"ok": true}))
    }
    let app = axum::Router::new()
        .route("/health", axum::routing::get(answer))
        .with_state(requests);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{address}/health")
}

/// Upstream `TestRollbackAnalysisWithinWindow`'s manifest: a step analysis passes
/// `metadata.labels['rev']`, which the Rollout only gets with a later update; the template
/// declares `rev` with a default. The argument is an empty string (it overrides the default),
/// the analysis runs and the update completes; once the label exists, its value is passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_argument_from_a_label_the_rollout_lacks_is_empty_and_the_analysis_runs() {
    let requests = Requests::default();
    let url = recording_endpoint(requests.clone()).await;
    let cluster = cluster().await;
    let template: AnalysisTemplate = serde_json::from_value(json!({
                "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate",
                "metadata": {"name": "check", "namespace": test_namespace()},
                "spec": {
                    "args": [{"name": "url"}, {"name": "rev", "value": "notset"}],
                    "metrics": [{
                        "name": "check",
                        "successCondition": "result == true",
                        "provider": {"web": {"url": "{{args.url}}?rev={{args.rev}}", "jsonPath": "{$.ok}"}}
                    }]
                }
    }))
    .unwrap();
    Api::<AnalysisTemplate>::namespaced(cluster.client.clone(), test_namespace())
        .create(&PostParams::default(), &template)
        .await
        .expect("template created");
    let canary = json!({
        "steps": [
            {"setWeight": 50},
            {"analysis": {
                "templates": [{"templateName": "check"}],
                "args": [
                    {"name": "url", "value": url},
                    {"name": "rev", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['rev']"}}}
                ]
            }}
        ]
    });
    cluster.create_rollout(rollout(canary)).await;
    cluster.wait_healthy("web", 30).await;

    let runs = Api::<AnalysisRun>::namespaced(cluster.client.clone(), test_namespace());
    let rev_of = |run: &AnalysisRun| {
        run.spec
            .args
            .iter()
            .flatten()
            .find(|a| a.name == "rev")
            .and_then(|a| a.value.clone())
    };
    cluster.set_image("web", "web:v2").await;
    let v2 = cluster.wait_healthy("web", 30).await;
    let status = v2.status.clone().unwrap();
    assert!(status.condition("InvalidSpec").is_none(), "{status:#?}");
    let listed = runs.list(&Default::default()).await.expect("runs listed");
    assert_eq!(listed.items.len(), 1, "{:#?}", listed.items);
    assert_eq!(rev_of(&listed.items[0]), Some(String::new()));
    assert_eq!(
        listed.items[0].status.as_ref().map(|s| s.phase.clone()),
        Some("Successful".to_owned())
    );
    assert_eq!(
        requests.0.lock().unwrap().clone(),
        vec![Some(String::new())]
    );

    // The update that adds the label, as upstream's next step does.
    let update = json!({
        "metadata": {"labels": {"rev": "three"}},
        "spec": {"template": {"spec": {"containers": [{"name": "web", "image": "web:v3"}]}}}
    });
    cluster
        .rollouts()
        .patch("web", &PatchParams::default(), &Patch::Merge(&update))
        .await
        .expect("rollout patched");
    cluster
        .wait_rollout("web", "v3 promoted", 30, |r| {
            let s = r.status.clone().unwrap_or_default();
            s.phase.as_deref() == Some("Healthy")
                && s.observed_generation_number() == r.metadata.generation
                && s.stable_rs != status.stable_rs
                && s.current_pod_hash == s.stable_rs
        })
        .await;
    let mut revs: Vec<Option<String>> = runs
        .list(&Default::default())
        .await
        .expect("runs listed")
        .items
        .iter()
        .map(rev_of)
        .collect();
    revs.sort();
    assert_eq!(revs, vec![Some(String::new()), Some("three".to_owned())]);
}
