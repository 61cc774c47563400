//! End to end on ramp-sim: canary rollouts with Istio host-split traffic, the controller
//! in-process, and the exact sequence of writes read back from the sim's request log.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod canary_support;

use canary_support::*;
use pretty_assertions::assert_eq;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_host_split_walks_every_weight_in_order_and_switches_stable_last() {
    let cluster = istio_cluster().await;
    let steps = json!([
        {"setWeight": 20}, {"pause": {"duration": "1s"}},
        {"setWeight": 40}, {"pause": {"duration": "1s"}},
        {"setWeight": 60}, {"pause": {"duration": "1s"}},
        {"setWeight": 80}, {"pause": {"duration": "1s"}}
    ]);
    cluster
        .create_rollout(rollout_manifest("web", 5, istio_canary(steps)))
        .await;
    let v1 = cluster.wait_healthy("web", 20).await;
    let stable_rs = current_rs(&v1);
    let vs_before =
        serde_json::to_value(cluster.virtual_services().get("web-vsvc").await.unwrap()).unwrap();

    let checkpoint = cluster.sim.request_log().len();
    cluster.set_image("web", "web:v2").await;
    let v2 = cluster
        .wait_rollout(
            "web",
            "v2 fully promoted and the old ReplicaSet scaled down",
            40,
            |r| {
                let s = r.status.clone().unwrap_or_default();
                s.phase.as_deref() == Some("Healthy")
                    && s.stable_rs.is_some()
                    && s.stable_rs != v1.status.as_ref().and_then(|s| s.stable_rs.clone())
                    && s.replicas == Some(5)
            },
        )
        .await;
    let canary_rs = current_rs(&v2);
    let writes = controller_writes(&cluster.sim, checkpoint);
    let summaries: Vec<String> = writes.iter().map(|w| w.summary()).collect();

    // Traffic: every step's weight, in order, then all of it while the stable Service moves,
    // then back to 0 % canary once stable and canary are the same pods.
    let weights = canary_weights(&writes, "web-vsvc", &vs_before, "web-canary");
    assert_eq!(
        weights,
        vec![20, 40, 60, 80, 100, 0],
        "writes: {summaries:#?}"
    );

    // Pods: the canary is created empty and grows one pod per 20 %, the old one goes last.
    assert_eq!(
        replica_writes(&writes),
        vec![
            (canary_rs.clone(), 0),
            (canary_rs.clone(), 1),
            (canary_rs.clone(), 2),
            (canary_rs.clone(), 3),
            (canary_rs.clone(), 4),
            (canary_rs.clone(), 5),
            (stable_rs.clone(), 0),
        ],
        "writes: {summaries:#?}"
    );

    // Each weight is written only after the canary pods it needs exist and are available.
    let is_vs_write = |w: &ramp_sim::LoggedRequest, weight: i64| {
        w.resource == "virtualservices"
            && w.body.as_ref().is_some_and(|b| {
                b.as_array()
                    .into_iter()
                    .flatten()
                    .any(|op| op["path"] == "/spec/http/0/route/1/weight" && op["value"] == weight)
            })
    };
    for (weight, pods) in [(20, 1), (40, 2), (60, 3), (80, 4), (100, 5)] {
        let before = log_until(&cluster.sim, checkpoint, |w| is_vs_write(w, weight));
        let available = available_before(&before, &canary_rs);
        assert!(
            available >= pods,
            "{weight} % written with {available} available canary pods (need {pods})"
        );
    }

    // The stable Service moves once, to the new pods, after they are all available and
    // before canary traffic returns to 0; the old pods go after that.
    // The canary Service is pointed at the new pods before any weight reaches them.
    let new_hash = canary_rs.trim_start_matches("web-");
    let service_writes: Vec<(String, String)> = writes
        .iter()
        .filter(|w| w.resource == "services")
        .map(|w| {
            let hash = &w.body.as_ref().unwrap()["spec"]["selector"]["rollouts-pod-template-hash"];
            (
                w.name.clone().unwrap_or_default(),
                hash.as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let expected_services = vec![
        ("web-canary".to_owned(), new_hash.to_owned()),
        ("web-stable".to_owned(), new_hash.to_owned()),
    ];
    assert_eq!(service_writes, expected_services, "writes: {summaries:#?}");
    let canary_switch = position(&writes, "to the canary Service", |w| {
        w.resource == "services"
    });
    let first_weight = position(&writes, "of 20 % canary weight", |w| is_vs_write(w, 20));
    assert!(canary_switch < first_weight, "writes: {summaries:#?}");
    let switch = position(&writes, "to the stable Service", |w| {
        w.resource == "services" && w.name.as_deref() == Some("web-stable")
    });
    let full = position(&writes, "of 100 % canary weight", |w| is_vs_write(w, 100));
    let zero = position(&writes, "of 0 % canary weight", |w| is_vs_write(w, 0));
    let old_down = position(&writes, "scaling the old ReplicaSet down", |w| {
        w.name.as_deref() == Some(stable_rs.as_str())
            && w.body.as_ref().is_some_and(|b| b["spec"]["replicas"] == 0)
    });
    assert!(
        full < switch && switch < zero && zero < old_down,
        "writes: {summaries:#?}"
    );
    let before_switch = log_until(&cluster.sim, checkpoint, |w| {
        w.resource == "services" && w.name.as_deref() == Some("web-stable")
    });
    assert_eq!(available_before(&before_switch, &canary_rs), 5);

    // A settled rollout is left alone: no write at all for a while after it is Healthy.
    let settled = cluster.sim.request_log().len();
    cluster.wait_healthy("web", 10).await;
    let quiet_until = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while std::time::Instant::now() < quiet_until {
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let extra = controller_writes(&cluster.sim, settled);
    assert!(
        extra.is_empty(),
        "writes on a settled rollout: {:#?}",
        extra.iter().map(|w| w.summary()).collect::<Vec<_>>()
    );
}
