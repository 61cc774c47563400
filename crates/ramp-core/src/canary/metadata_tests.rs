//! Canary role metadata on the simulator: `canaryMetadata` on the canary's pods while the
//! update runs, `stableMetadata` on the stable's, the switch at promotion, and the exact
//! order of the writes around it.

use crate::plan::Action;
use crate::sim::*;
use ramp_api::rollout::{CanaryStrategy, PodTemplateMetadata};
use std::collections::BTreeMap;

fn role(value: &str) -> Option<PodTemplateMetadata> {
    Some(PodTemplateMetadata {
        labels: Some(BTreeMap::from([("role".to_owned(), value.to_owned())])),
        annotations: None,
    })
}

fn strategy_mut(sim: &mut Sim) -> &mut CanaryStrategy {
    sim.world
        .rollout
        .spec
        .strategy
        .as_mut()
        .and_then(|s| s.canary.as_mut())
        .unwrap()
}

/// A 4-replica canary with `role: canary` / `role: stable` metadata, deployed at `web:1`.
fn deployed(routed: bool) -> (Sim, Vec<String>) {
    let mut sim = Sim::new(rollout(4, vec![weight(25), pause(None)], routed));
    let strategy = strategy_mut(&mut sim);
    strategy.canary_metadata = role("canary");
    strategy.stable_metadata = role("stable");
    let log = settle(&mut sim);
    (sim, log)
}

fn image_of(sim: &Sim, key: &str) -> String {
    sim.world
        .replica_sets
        .iter()
        .find(|rs| rs.name == key || rs.pod_template_hash.as_deref() == Some(key))
        .and_then(|rs| rs.template.as_ref())
        .and_then(|t| t.spec.as_ref())
        .and_then(|s| s.containers[0].image.clone())
        .unwrap_or_else(|| key.to_owned())
}

fn labels_of(metadata: &PodTemplateMetadata) -> String {
    format!("{:?}", metadata.labels.clone().unwrap_or_default())
}

/// One short line per action: ReplicaSet writes and metadata in full, the rest by kind.
fn describe(sim: &Sim, action: &Action) -> String {
    match action {
        Action::CreateReplicaSet { name, .. } => format!("create {}", image_of(sim, name)),
        Action::ScaleReplicaSet { name, from, to } => {
            format!("scale {} {from}->{to}", image_of(sim, name))
        }
        Action::AnnotateReplicaSet { name, key, value } => format!(
            "{} {key} {}",
            image_of(sim, name),
            if value.is_some() { "set" } else { "cleared" }
        ),
        Action::PointService {
            service,
            pod_template_hash,
        } => format!("{service} -> {}", image_of(sim, pod_template_hash)),
        Action::SetTraffic(intent) => format!("traffic {}", intent.canary_weight),
        Action::SetPodMetadata {
            replica_set,
            metadata,
            previous,
            ..
        } => format!(
            "metadata {} {} (was {})",
            image_of(sim, replica_set),
            labels_of(metadata),
            labels_of(previous)
        ),
        other => format!("{other:?}"),
    }
}

/// Plans, applies and describes one reconcile.
fn tick(sim: &mut Sim) -> Vec<String> {
    let plan = sim.tick();
    // Described on the world after the plan, where a created ReplicaSet has its image.
    plan.actions.iter().map(|a| describe(sim, a)).collect()
}

/// Ticks until nothing moves (a pause without duration included), describing every action.
fn settle(sim: &mut Sim) -> Vec<String> {
    sim.settle_described(tick)
}

fn s(lines: &[&str]) -> Vec<String> {
    lines.iter().map(|l| (*l).to_owned()).collect()
}

/// What the ReplicaSet of `image` was last given.
fn injected(sim: &Sim, image: &str) -> Option<PodTemplateMetadata> {
    sim.world
        .replica_sets
        .iter()
        .find(|rs| image_of(sim, &rs.name) == image)
        .and_then(|rs| rs.ephemeral_metadata.clone())
}

fn metadata_writes(actions: &[Action]) -> Vec<&Action> {
    actions
        .iter()
        .filter(|a| matches!(a, Action::SetPodMetadata { .. }))
        .collect()
}

#[test]
fn canary_pods_get_canary_metadata_before_they_start_and_stable_pods_keep_stable_metadata() {
    let (mut sim, log) = deployed(false);
    // An initial deploy is promoted at once: its pods are stable from the first one.
    assert_eq!(
        log,
        s(&[
            "create web:1",
            "metadata web:1 {\"role\": \"stable\"} (was {})",
            "scale web:1 0->4",
            "web-canary -> web:1",
            "web-stable -> web:1",
        ])
    );
    sim.set_image("web:2");
    // The ReplicaSet created by this reconcile gets its role before its first pod.
    assert_eq!(
        tick(&mut sim),
        s(&[
            "create web:2",
            "metadata web:2 {\"role\": \"canary\"} (was {})",
            "scale web:2 0->1",
            "scale web:1 4->3",
        ])
    );
    // Traffic follows once the canary pod is available; the pause holds the rest.
    assert_eq!(settle(&mut sim), s(&["web-canary -> web:2"]));
    assert_eq!(injected(&sim, "web:2"), role("canary"));
    assert_eq!(injected(&sim, "web:1"), role("stable"));
}

#[test]
fn promotion_gives_the_new_stable_stable_metadata_and_strips_the_old_stable() {
    let (mut sim, _) = deployed(false);
    sim.set_image("web:2");
    settle(&mut sim);
    promote(&mut sim);
    assert_eq!(
        settle(&mut sim),
        s(&[
            "scale web:2 1->2",
            "scale web:1 3->2",
            "scale web:2 2->3",
            "scale web:1 2->0",
            "scale web:2 3->4",
            "metadata web:2 {\"role\": \"stable\"} (was {\"role\": \"canary\"})",
            "metadata web:1 {} (was {\"role\": \"stable\"})",
            "web-stable -> web:2",
        ])
    );
    assert_eq!(injected(&sim, "web:2"), role("stable"));
    assert_eq!(
        injected(&sim, "web:1"),
        Some(PodTemplateMetadata::default())
    );
}

#[test]
fn metadata_in_place_needs_no_write_and_a_lost_record_is_written_again() {
    let (mut sim, _) = deployed(true);
    sim.set_image("web:2");
    settle(&mut sim);
    assert_eq!(crate::plan_rollout(&sim.world).actions, vec![]);
    let canary = sim
        .world
        .replica_sets
        .iter_mut()
        .find(|rs| rs.ephemeral_metadata == role("canary"))
        .unwrap();
    canary.ephemeral_metadata = None;
    let name = canary.name.clone();
    let hash = canary.pod_template_hash.clone().unwrap();
    assert_eq!(
        crate::plan_rollout(&sim.world).actions,
        vec![Action::SetPodMetadata {
            replica_set: name,
            pod_template_hash: hash,
            metadata: role("canary").unwrap(),
            previous: PodTemplateMetadata::default(),
        }]
    );
}

#[test]
fn changing_canary_metadata_mid_update_rewrites_it_in_place() {
    let (mut sim, _) = deployed(true);
    sim.set_image("web:2");
    settle(&mut sim);
    let mut next = role("canary-2").unwrap();
    next.annotations = Some(BTreeMap::from([("stage".to_owned(), "b".to_owned())]));
    strategy_mut(&mut sim).canary_metadata = Some(next.clone());
    sim.bump_generation();
    let before = sim.log.len();
    assert_eq!(
        settle(&mut sim),
        s(&["metadata web:2 {\"role\": \"canary-2\"} (was {\"role\": \"canary\"})"])
    );
    let Action::SetPodMetadata { metadata, .. } = &sim.log[before] else {
        panic!("{:?}", sim.log[before]);
    };
    assert_eq!(metadata, &next, "labels and annotations");
    assert_eq!(injected(&sim, "web:1"), role("stable"), "stable untouched");
}

#[test]
fn an_aborted_canary_keeps_canary_metadata_while_it_scales_down() {
    let (mut sim, _) = deployed(true);
    sim.set_image("web:2");
    settle(&mut sim);
    let before = sim.log.len();
    sim.status_mut().abort = Some(true);
    sim.run();
    let spec_of = |image: &str| {
        sim.replicas_by_image()
            .into_iter()
            .find(|(i, _)| i == image)
            .map(|(_, r)| r)
    };
    assert_eq!(spec_of("web:2"), Some(0), "the canary scaled down");
    assert_eq!(spec_of("web:1"), Some(4));
    assert_eq!(metadata_writes(&sim.log[before..]), Vec::<&Action>::new());
    assert_eq!(injected(&sim, "web:2"), role("canary"));
    assert_eq!(injected(&sim, "web:1"), role("stable"));
}
