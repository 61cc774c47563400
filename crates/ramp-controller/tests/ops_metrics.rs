//! `/metrics`, `/healthz` and `/readyz` of a full controller on ramp-sim: upstream's series and
//! labels for a live rollout and analysis run (and their disappearance on deletion), readiness
//! through standby, leadership and shutdown, and the client's rate limit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod canary_support;
mod ops_support;

use axum::Json;
use axum::Router;
use axum::routing::get;
use canary_support::{Cluster, eventually, ns, rollout_manifest};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, PostParams};
use ramp_api::analysis::AnalysisRun;
use ramp_controller::ops::client::{ClientOptions, build_client};
use ramp_controller::ops::health::Role;
use ramp_controller::ops::leader::{Attempt, LeaderElector, LeaseConfig};
use ramp_controller::ops::metrics::Metrics;
use ramp_sim::SimConfig;
use ramp_sim::tier::TestCluster;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ops_support::{RunningController, controller_lease, http_get, serve_endpoints};

/// Scrapes until every line in `wanted` is in the exposition.
async fn scrape_until(addr: SocketAddr, what: &str, wanted: &[String]) -> String {
    eventually(what, 20, || async move {
        let (status, body) = http_get(addr, "/metrics").await;
        assert_eq!(status, 200);
        wanted
            .iter()
            .all(|line| body.lines().any(|l| l == line))
            .then_some(body)
    })
    .await
}

/// The value of the sample `series` (name and labels exactly), if present.
fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn metric_server() -> String {
    let app = Router::new().route("/value", get(|| async { Json(json!({"value": 1})) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/value")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_describe_live_rollouts_and_runs_and_forget_deleted_ones() {
    let cluster = Cluster::start().await;
    let controller = RunningController::start(&cluster.sim, "a", None);
    let addr = serve_endpoints(controller.metrics.clone(), controller.health.clone()).await;

    let steps = json!({"steps": [{"setWeight": 50}, {"pause": {}}]});
    cluster
        .create_rollout(rollout_manifest("web", 2, steps))
        .await;
    cluster.wait_healthy("web", 30).await;
    cluster.set_image("web", "web:v2").await;
    let paused = cluster
        .wait_rollout("web", "paused at the indefinite pause", 20, |r| {
            let status = r.status.clone().unwrap_or_default();
            status.phase.as_deref() == Some("Paused")
                && status.current_step_index == Some(1)
                && status.available_replicas == Some(2)
        })
        .await;
    let status = paused.status.clone().unwrap();
    let web = &format!(r#"namespace="{}",name="web""#, ns());
    let wanted = vec![
        r#"argo_rollouts_controller_info{version="test"} 1"#.to_owned(),
        format!(r#"rollout_info{{{web},strategy="canary",traffic_router="",phase="Paused"}} 1"#),
        format!("rollout_info_replicas_desired{{{web}}} 2"),
        format!(
            "rollout_info_replicas_available{{{web}}} {}",
            status.available_replicas.unwrap()
        ),
        format!(
            "rollout_info_replicas_updated{{{web}}} {}",
            status.updated_replicas.unwrap()
        ),
        format!(
            "rollout_info_replicas_unavailable{{{web}}} {}",
            status.replicas.unwrap() - status.available_replicas.unwrap()
        ),
        format!(r#"rollout_phase{{{web},strategy="canary",phase="Paused"}} 1"#),
        format!(r#"rollout_phase{{{web},strategy="canary",phase="Completed"}} 0"#),
        format!(r#"rollout_events_total{{{web},type="Normal",reason="NewReplicaSetCreated"}} 2"#),
    ];
    let body = scrape_until(addr, "the paused rollout's series", &wanted).await;
    assert_eq!(status.updated_replicas, Some(1), "half the pods are canary");
    let reconciles = sample(
        &body,
        &format!(r#"rollout_reconcile_bucket{{{web},le="+Inf"}}"#),
    )
    .expect("rollout_reconcile histogram for web");
    assert_eq!(
        sample(&body, &format!("rollout_reconcile_count{{{web}}}")),
        Some(reconciles)
    );
    assert!(reconciles >= 2.0, "reconciled {reconciles} times");
    assert!(
        sample(
            &body,
            r#"controller_clientset_k8s_request_total{kind="rollouts/status",verb="patch",status_code="200"}"#
        )
        .is_some_and(|n| n >= 2.0),
        "status writes counted:\n{body}"
    );
    assert!(
        sample(
            &body,
            r#"ramp_reconcile_duration_seconds_count{controller="rollout",result="success"}"#
        )
        .is_some_and(|n| n >= reconciles),
        "Ramp's reconcile histogram covers every rollout reconcile"
    );
    assert!(body.contains("# TYPE rollout_reconcile histogram"));
    // One spec change (the new image) since the controller started: one reaction, well
    // under a second on the sim.
    assert_eq!(
        sample(&body, "ramp_reaction_seconds_count"),
        Some(1.0),
        "{body}"
    );
    let reaction = sample(&body, "ramp_reaction_seconds_sum").unwrap();
    assert!(
        reaction > 0.0 && reaction < 5.0,
        "reaction took {reaction} s"
    );

    // An analysis run, measured against a local endpoint.
    let url = metric_server().await;
    let runs = Api::<AnalysisRun>::namespaced(cluster.client.clone(), ns());
    let run: AnalysisRun = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisRun",
        "metadata": {"name": "check", "namespace": ns()},
        "spec": {"metrics": [{
            "name": "probe",
            "successCondition": "result == 1",
            "provider": {"web": {"url": url, "jsonPath": "{$.value}"}}
        }]}
    }))
    .unwrap();
    runs.create(&PostParams::default(), &run).await.unwrap();
    let check = &format!(r#"namespace="{}",name="check""#, ns());
    let probe = format!(r#"{check},metric="probe",type="Web""#);
    let wanted = vec![
        format!(r#"analysis_run_info{{{check},phase="Successful"}} 1"#),
        format!(r#"analysis_run_phase{{{check},phase="Successful"}} 1"#),
        format!(r#"analysis_run_phase{{{check},phase="Running"}} 0"#),
        format!("analysis_run_metric_type{{{probe}}} 1"),
        format!(r#"analysis_run_metric_phase{{{probe},dry_run="false",phase="Successful"}} 1"#),
        format!(r#"analysis_run_metric_phase{{{probe},dry_run="false",phase="Failed"}} 0"#),
    ];
    scrape_until(addr, "the successful run's series", &wanted).await;
    // The reconcile that wrote the verdict is counted when it returns, a moment after the write.
    let body = eventually("analysis_run_reconcile for check", 10, || async move {
        let (_, body) = http_get(addr, "/metrics").await;
        sample(&body, &format!("analysis_run_reconcile_count{{{check}}}")).map(|_| body)
    })
    .await;

    for controller in ["rollout", "analysisrun"] {
        let remembered = sample(
            &body,
            &format!(r#"ramp_remembered_objects{{controller="{controller}"}}"#),
        );
        assert_eq!(remembered, Some(1.0), "{controller} memory:\n{body}");
    }

    // Deleted objects take every series of theirs, and the controllers' memory of them, along.
    cluster
        .rollouts()
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    runs.delete("check", &DeleteParams::default())
        .await
        .unwrap();
    eventually(
        "no series left for the deleted objects",
        20,
        || async move {
            let (_, body) = http_get(addr, "/metrics").await;
            let forgotten = ["rollout", "analysisrun"].iter().all(|controller| {
                let series = format!(r#"ramp_remembered_objects{{controller="{controller}"}}"#);
                sample(&body, &series) == Some(0.0)
            });
            (forgotten && !body.contains(r#"name="web""#) && !body.contains(r#"name="check""#))
                .then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_standby_leadership_and_shutdown() {
    let cluster = Cluster::start().await;
    // Another replica leads first.
    let mut other = LeaderElector::new(cluster.client.clone(), controller_lease("other")).unwrap();
    assert_eq!(other.try_acquire_or_renew().await.unwrap(), Attempt::Held);
    let (step_down, stepped_down) = tokio::sync::oneshot::channel::<()>();
    let other_task = tokio::spawn(async move {
        tokio::select! {
            _ = stepped_down => other.release().await.unwrap(),
            lost = other.hold() => panic!("the other replica lost its lease: {lost}"),
        }
    });

    let mut controller = RunningController::start(&cluster.sim, "a", Some(controller_lease("a")));
    let addr = serve_endpoints(controller.metrics.clone(), controller.health.clone()).await;
    assert_eq!(http_get(addr, "/healthz").await, (200, "ok".to_owned()));
    let body = eventually("ready while standing by", 10, || async move {
        let (status, body) = http_get(addr, "/readyz").await;
        (status == 200).then_some(body)
    })
    .await;
    assert!(body.contains("standing by"), "{body}");
    assert_eq!(controller.health.role(), Role::StandingBy);
    assert!(controller.writes.controller_writes().is_empty());

    let _ = step_down.send(());
    other_task.await.unwrap();
    let body = eventually(
        "ready as the leader with synced caches",
        10,
        || async move {
            let (status, body) = http_get(addr, "/readyz").await;
            (status == 200 && body.contains("leading")).then_some(body)
        },
    )
    .await;
    assert!(controller.metrics.caches_synced(), "{body}");

    controller.stop().await.unwrap();
    let (status, body) = http_get(addr, "/readyz").await;
    assert_eq!(status, 503);
    assert!(body.contains("shutting down"), "{body}");
    assert_eq!(http_get(addr, "/healthz").await.0, 200);
    let lease = Api::<Lease>::namespaced(cluster.client.clone(), ns())
        .get(&LeaseConfig::lease_name(None))
        .await
        .unwrap();
    let spec = lease.spec.unwrap();
    assert_eq!(
        spec.holder_identity.as_deref(),
        Some(""),
        "released on shutdown"
    );
    assert_eq!(spec.lease_transitions, Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_spaces_requests_beyond_the_burst_at_the_qps() {
    let cluster = TestCluster::start(SimConfig::api_only(), []).await.unwrap();
    let metrics = Arc::new(Metrics::new("test"));
    let client = build_client(
        cluster.client_config(),
        &ClientOptions {
            qps: 5.0,
            burst: 2,
            metrics: Some(metrics.clone()),
        },
    )
    .unwrap();
    let namespaces = Api::<Namespace>::all(client);
    let started = Instant::now();
    for _ in 0..7 {
        namespaces.get("default").await.unwrap();
    }
    let took = started.elapsed();
    // Two from the burst, then five at 5 per second.
    assert!(
        took >= Duration::from_millis(900),
        "7 requests at qps 5 / burst 2 took only {took:?}"
    );
    assert!(metrics.render().lines().any(|l| l
        == r#"controller_clientset_k8s_request_total{kind="namespaces",verb="get",status_code="200"} 7"#));
}
