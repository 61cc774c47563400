//! End to end on ramp-sim: the same canary walked through NGINX (a canary Ingress derived from
//! the stable one) and with no traffic router at all (weights made of replica counts), with
//! the writes asserted from the sim's request log.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod canary_support;

use canary_support::*;
use pretty_assertions::assert_eq;
use ramp_sim::LoggedRequest;
use serde_json::json;

const CANARY_WEIGHT: &str = "nginx.ingress.kubernetes.io/canary-weight";

fn summaries(writes: &[LoggedRequest]) -> Vec<String> {
    writes.iter().map(LoggedRequest::summary).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_canary_ingress_follows_every_step_weight_in_order() {
    let mut cluster = Cluster::start().await;
    cluster
        .create_services(&["web-stable", "web-canary"], "web")
        .await;
    cluster.create_ingress("web-ingress", "web-stable").await;
    cluster.start_controller();
    let canary = json!({
        "canaryService": "web-canary",
        "stableService": "web-stable",
        "scaleDownDelaySeconds": 1,
        "trafficRouting": {"nginx": {"stableIngress": "web-ingress"}},
        "steps": [
            {"setWeight": 25}, {"pause": {"duration": "1s"}},
            {"setWeight": 50}, {"pause": {"duration": "1s"}},
            {"setWeight": 75}, {"pause": {"duration": "1s"}}
        ]
    });
    cluster
        .create_rollout(rollout_manifest("web", 4, canary))
        .await;
    let v1 = cluster.wait_healthy("web", 20).await;
    let stable_rs = current_rs(&v1);
    let start = cluster.sim.request_log().len();
    cluster.set_image("web", "web:v2").await;
    let done = cluster
        .wait_rollout("web", "v2 promoted through NGINX", 30, |r| {
            let s = r.status.clone().unwrap_or_default();
            s.phase.as_deref() == Some("Healthy")
                && s.stable_rs != v1.status.as_ref().and_then(|s| s.stable_rs.clone())
                && s.replicas == Some(4)
        })
        .await;
    let canary_rs = current_rs(&done);
    let writes = controller_writes(&cluster.sim, start);

    // The canary Ingress's weight annotation, write after write.
    let weights: Vec<String> = writes
        .iter()
        .filter(|w| {
            w.resource == "ingresses" && w.name.as_deref() == Some("web-web-ingress-canary")
        })
        .filter_map(|w| {
            let body = w.body.as_ref()?;
            body["metadata"]["annotations"][CANARY_WEIGHT]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(
        weights,
        vec!["25", "50", "75", "100", "0"],
        "writes: {:#?}",
        summaries(&writes)
    );
    // The stable Ingress is never written: only the derived canary Ingress carries weights.
    assert!(
        !writes
            .iter()
            .any(|w| w.resource == "ingresses" && w.name.as_deref() == Some("web-ingress")),
        "writes: {:#?}",
        summaries(&writes)
    );
    assert_eq!(
        replica_writes(&writes),
        vec![
            (canary_rs.clone(), 0),
            (canary_rs.clone(), 1),
            (canary_rs.clone(), 2),
            (canary_rs.clone(), 3),
            (canary_rs.clone(), 4),
            (stable_rs.clone(), 0),
        ],
        "writes: {:#?}",
        summaries(&writes)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_canary_without_router_shapes_traffic_with_replica_counts() {
    let mut cluster = Cluster::start().await;
    cluster.start_controller();
    let canary = json!({
        "maxSurge": 1,
        "maxUnavailable": 0,
        "steps": [{"setWeight": 25}, {"pause": {"duration": "1s"}}, {"setWeight": 50}, {"pause": {"duration": "1s"}}]
    });
    cluster
        .create_rollout(rollout_manifest("web", 4, canary))
        .await;
    let v1 = cluster.wait_healthy("web", 20).await;
    let stable_rs = current_rs(&v1);
    let start = cluster.sim.request_log().len();
    cluster.set_image("web", "web:v2").await;
    let done = cluster
        .wait_rollout("web", "v2 promoted without a router", 30, |r| {
            let s = r.status.clone().unwrap_or_default();
            s.phase.as_deref() == Some("Healthy")
                && s.stable_rs != v1.status.as_ref().and_then(|s| s.stable_rs.clone())
                && s.replicas == Some(4)
        })
        .await;
    let canary_rs = current_rs(&done);
    let writes = controller_writes(&cluster.sim, start);
    let scales = replica_writes(&writes);
    // One pod at a time: canary up, then stable down, each step's pair held during its pause.
    assert_eq!(
        scales,
        vec![
            (canary_rs.clone(), 0),
            (canary_rs.clone(), 1),
            (stable_rs.clone(), 3),
            (canary_rs.clone(), 2),
            (stable_rs.clone(), 2),
            (canary_rs.clone(), 3),
            (stable_rs.clone(), 1),
            (canary_rs.clone(), 4),
            (stable_rs.clone(), 0),
        ]
    );
    // No Service or traffic object exists, so none is written.
    assert!(
        writes
            .iter()
            .all(|w| matches!(w.resource.as_str(), "rollouts" | "replicasets")),
        "writes: {:#?}",
        summaries(&writes)
    );
    // With maxSurge 1 and maxUnavailable 0, never more than 5 pods are asked for and never
    // fewer than 4 of them are old-or-available: replay the counts write by write.
    let mut counts = std::collections::BTreeMap::from([(stable_rs.clone(), 4i64)]);
    for (rs, replicas) in &scales {
        counts.insert(rs.clone(), *replicas);
        let total: i64 = counts.values().sum();
        assert!(
            total <= 5,
            "more than replicas + maxSurge pods asked for: {counts:?} in {scales:?}"
        );
    }
    assert_eq!(counts.get(&canary_rs), Some(&4), "{scales:?}");
    assert_eq!(counts.get(&stable_rs), Some(&0), "{scales:?}");
    // The 25 % step holds one canary pod next to three stable ones, the 50 % step two and two.
    let first_stable_scale = scales.iter().position(|(rs, _)| rs == &stable_rs).unwrap();
    assert_eq!(
        scales[..first_stable_scale].last(),
        Some(&(canary_rs.clone(), 1)),
        "{scales:?}"
    );
    assert!(scales.contains(&(stable_rs.clone(), 3)), "{scales:?}");
    assert!(scales.contains(&(stable_rs.clone(), 2)), "{scales:?}");
}
