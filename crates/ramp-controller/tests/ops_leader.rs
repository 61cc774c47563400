//! Leader election on ramp-sim: one leader among contenders, takeover within the lease
//! duration after a crash and at once after a release, a leader that loses its lease stops
//! acting, and two full controllers handing a canary over mid-rollout with never two writers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod canary_support;
mod ops_support;

use canary_support::{Cluster, eventually, ns, rollout_manifest};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, PostParams};
use ramp_controller::ops::RunError;
use ramp_controller::ops::health::Role;
use ramp_controller::ops::leader::{Attempt, LeaderElector, LeaseConfig};
use ramp_sim::SimConfig;
use ramp_sim::tier::TestCluster;
use serde_json::json;
use std::time::{Duration, Instant};

use ops_support::{RunningController, controller_lease, short_lease};

async fn lease(client: &kube::Client) -> Lease {
    Api::<Lease>::namespaced(client.clone(), ns())
        .get(&LeaseConfig::lease_name(None))
        .await
        .expect("lease readable")
}

fn holder(lease: &Lease) -> String {
    lease
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.clone())
        .unwrap_or_default()
}

fn transitions(lease: &Lease) -> i32 {
    lease
        .spec
        .as_ref()
        .and_then(|s| s.lease_transitions)
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_contenders_exactly_one_leads_and_keeps_the_lease_while_renewing() {
    let sim = TestCluster::start(SimConfig::api_only(), []).await.unwrap();
    let mut a = LeaderElector::new(sim.client(), short_lease("a")).unwrap();
    let mut b = LeaderElector::new(sim.client(), short_lease("b")).unwrap();

    // Both race for a lease that does not exist yet: the create (and then the
    // resourceVersion-guarded update) lets only one through.
    let (first, second) = tokio::join!(a.try_acquire_or_renew(), b.try_acquire_or_renew());
    let outcomes = [first.unwrap(), second.unwrap()];
    assert_eq!(
        outcomes.iter().filter(|o| **o == Attempt::Held).count(),
        1,
        "exactly one contender holds the lease: {outcomes:?}"
    );
    let (mut leader, mut standby, leader_id) = if outcomes[0] == Attempt::Held {
        (a, b, "a")
    } else {
        (b, a, "b")
    };
    assert_eq!(
        standby.try_acquire_or_renew().await.unwrap(),
        Attempt::HeldBy(leader_id.to_owned())
    );

    let holding = tokio::spawn(async move { leader.hold().await });
    let contending = tokio::spawn(async move {
        standby.acquire().await;
    });
    // Longer than the lease duration: renewals keep the standby out the whole time.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        assert!(
            !contending.is_finished(),
            "the standby took a lease that was being renewed"
        );
        assert!(!holding.is_finished(), "the leader stopped renewing");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let current = lease(&sim.client()).await;
    assert_eq!(holder(&current), leader_id);
    assert_eq!(transitions(&current), 0);
    holding.abort();
    contending.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_leader_is_replaced_once_its_lease_expires() {
    let sim = TestCluster::start(SimConfig::api_only(), []).await.unwrap();
    let mut a = LeaderElector::new(sim.client(), short_lease("a")).unwrap();
    let mut b = LeaderElector::new(sim.client(), short_lease("b")).unwrap();
    assert_eq!(a.try_acquire_or_renew().await.unwrap(), Attempt::Held);
    let holding = tokio::spawn(async move { a.hold().await });
    let contending = tokio::spawn(async move {
        b.acquire().await;
        Instant::now()
    });
    // Let a renew a few times, then crash it: no release.
    eventually("a renews the lease", 5, || {
        let client = sim.client();
        async move {
            let lease = lease(&client).await;
            let spec = lease.spec.clone().unwrap_or_default();
            (spec.renew_time != spec.acquire_time).then_some(())
        }
    })
    .await;
    holding.abort();
    let killed_at = Instant::now();

    let acquired_at = tokio::time::timeout(Duration::from_secs(10), contending)
        .await
        .expect("b acquires within 10 s of the crash")
        .unwrap();
    let waited = acquired_at.duration_since(killed_at);
    // a renewed at most one retry period before the crash, so its 2 s lease ran out between
    // 1.8 s and 2 s after it; b looks every 0.2 s.
    assert!(
        waited >= Duration::from_millis(1_500),
        "b took the lease {waited:?} after the crash, before it expired"
    );
    assert!(
        waited <= Duration::from_millis(3_000),
        "b took {waited:?} to take over a 2 s lease"
    );
    let current = lease(&sim.client()).await;
    assert_eq!(holder(&current), "b");
    assert_eq!(
        transitions(&current),
        1,
        "a takeover counts as a transition"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_lease_is_taken_over_at_once() {
    let sim = TestCluster::start(SimConfig::api_only(), []).await.unwrap();
    let mut a = LeaderElector::new(sim.client(), short_lease("a")).unwrap();
    let mut b = LeaderElector::new(sim.client(), short_lease("b")).unwrap();
    assert_eq!(a.try_acquire_or_renew().await.unwrap(), Attempt::Held);
    let contending = tokio::spawn(async move {
        b.acquire().await;
        Instant::now()
    });
    a.release().await.unwrap();
    let released_at = Instant::now();
    let released = lease(&sim.client()).await;
    // Unless b already took it (it looks every 0.2 s), the lease names no holder now.
    assert!(
        ["", "b"].contains(&holder(&released).as_str()),
        "after release the lease names {:?}",
        holder(&released)
    );
    let acquired_at = tokio::time::timeout(Duration::from_secs(10), contending)
        .await
        .expect("b acquires after the release")
        .unwrap();
    let waited = acquired_at.saturating_duration_since(released_at);
    assert!(
        waited < Duration::from_millis(1_000),
        "b waited {waited:?} for a released lease (its duration is 2 s)"
    );
    let current = lease(&sim.client()).await;
    assert_eq!(holder(&current), "b");
    assert_eq!(transitions(&current), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_lease_is_taken_stops_its_controllers_at_once() {
    let cluster = Cluster::start().await;
    let mut controller = RunningController::start(&cluster.sim, "a", Some(short_lease("a")));
    eventually("the controller leads", 10, || {
        let role = controller.health.role();
        async move { (role == Role::Leading).then_some(()) }
    })
    .await;

    // Someone else (an Argo Rollouts controller mid-migration, say) now holds the lease.
    let api = Api::<Lease>::namespaced(cluster.client.clone(), ns());
    let mut taken = lease(&cluster.client).await;
    let spec = taken.spec.as_mut().unwrap();
    spec.holder_identity = Some("argo-rollouts-7d9c_1".to_owned());
    spec.renew_time = Some(MicroTime(Timestamp::now()));
    spec.lease_duration_seconds = Some(60);
    api.replace(
        &LeaseConfig::lease_name(None),
        &PostParams::default(),
        &taken,
    )
    .await
    .unwrap();
    let taken_at = Instant::now();

    let outcome = tokio::time::timeout(Duration::from_secs(5), controller.finished())
        .await
        .expect("the controller stops within 5 s of losing its lease");
    assert!(
        matches!(outcome, Err(RunError::LeadershipLost(_))),
        "ops::run reports the lost lease: {outcome:?}"
    );
    assert!(taken_at.elapsed() < Duration::from_secs(2));
    assert_eq!(controller.health.role(), Role::Lost);
    assert_eq!(
        holder(&lease(&cluster.client).await),
        "argo-rollouts-7d9c_1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_controllers_hand_a_canary_over_mid_rollout_with_never_two_writers() {
    let cluster = Cluster::start().await;
    let mut a = RunningController::start(&cluster.sim, "a", Some(controller_lease("a")));
    let mut b = RunningController::start(&cluster.sim, "b", Some(controller_lease("b")));
    let a_leads = eventually("one of the two controllers leads", 10, || {
        let roles = (a.health.role(), b.health.role());
        async move {
            match roles {
                (Role::Leading, Role::StandingBy) => Some(true),
                (Role::StandingBy, Role::Leading) => Some(false),
                _ => None,
            }
        }
    })
    .await;
    let (leader, standby) = if a_leads {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };

    let steps = json!({"steps": [{"setWeight": 50}, {"pause": {"duration": "3s"}}]});
    cluster
        .create_rollout(rollout_manifest("web", 2, steps))
        .await;
    cluster.wait_healthy("web", 30).await;
    cluster.set_image("web", "web:v2").await;
    cluster
        .wait_rollout("web", "paused at the timed pause", 20, |r| {
            let status = r.status.clone().unwrap_or_default();
            status.current_step_index == Some(1) && status.has_pause_conditions()
        })
        .await;
    assert!(
        standby.writes.controller_writes().is_empty(),
        "the standby wrote while another led: {:?}",
        standby.writes.controller_writes()
    );

    let killed_at = leader.kill().await;
    eventually("the standby takes over", 10, || {
        let role = standby.health.role();
        async move { (role == Role::Leading).then_some(()) }
    })
    .await;
    let took_over = killed_at.elapsed();
    assert!(
        took_over <= Duration::from_millis(4_000),
        "the standby needed {took_over:?} to take over a 3 s lease"
    );

    let done = cluster.wait_healthy("web", 30).await;
    let status = done.status.clone().unwrap_or_default();
    assert_eq!(status.current_step_index, Some(2), "both steps completed");
    let template = done.spec.template.as_ref().unwrap();
    let image = &template.spec.as_ref().unwrap().containers[0].image;
    assert_eq!(image.as_deref(), Some("web:v2"));
    let replica_sets = Api::<ReplicaSet>::namespaced(cluster.client.clone(), ns())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let stable = format!("web-{}", status.stable_rs.clone().unwrap());
    for rs in &replica_sets {
        let name = rs.metadata.name.clone().unwrap_or_default();
        let replicas = rs.spec.replicas;
        let expected = if name == stable { Some(2) } else { Some(0) };
        assert_eq!(replicas, expected, "ReplicaSet {name} after the handover");
    }

    // Never two writers: the old leader's writes all precede its death, the new leader's all
    // follow it, and both did part of the work.
    let old = leader.writes.controller_writes();
    let new = standby.writes.controller_writes();
    assert!(!old.is_empty() && !new.is_empty(), "both controllers wrote");
    assert!(
        old.iter().all(|w| w.at <= killed_at),
        "the killed leader wrote after its death"
    );
    assert!(
        new.iter().all(|w| w.at > killed_at),
        "the standby wrote before the leader died: {:?}",
        new.iter()
            .filter(|w| w.at <= killed_at)
            .map(|w| format!("{} {}", w.method, w.path))
            .collect::<Vec<_>>()
    );
    assert!(
        new.iter().any(|w| w.path.ends_with("/rollouts/web/status")),
        "the new leader finished the rollout's status"
    );
    standby
        .stop()
        .await
        .expect("the new leader drains and releases the lease on its shutdown signal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_in_a_missing_namespace_is_an_error_naming_the_lease() {
    let sim = TestCluster::start(SimConfig::api_only(), []).await.unwrap();
    let config = LeaseConfig {
        namespace: "argo-rollouts".to_owned(),
        ..short_lease("a")
    };
    let mut elector = LeaderElector::new(sim.client(), config).unwrap();
    let error = elector.try_acquire_or_renew().await.unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("lease argo-rollouts/argo-rollouts-controller-lock: "),
        "{error}"
    );
    assert!(!elector.is_leading());
}
