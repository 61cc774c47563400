//! Blue-green on the simulator: the exact actions of each stage, replica counts, selectors,
//! phases, and the safety rules checked on every plan (also under random user actions).

use super::plan_rollout;
use crate::plan::{Action, RolloutPlan};
use crate::sim::*;
use crate::snapshot::{AnalysisRunKind, AnalysisRunSummary, ServiceView, Snapshot};
use k8s_openapi::jiff::SignedDuration;
use proptest::prelude::*;
use ramp_api::rollout::{
    AnalysisTemplateRef, BlueGreenStrategy, RolloutAnalysis, RolloutStrategy, condition_type,
    pause_reason,
};

fn analysis() -> Option<RolloutAnalysis> {
    Some(RolloutAnalysis {
        templates: Some(vec![AnalysisTemplateRef {
            template_name: Some("smoke".to_owned()),
            cluster_scope: None,
        }]),
        ..RolloutAnalysis::default()
    })
}

fn strategy() -> BlueGreenStrategy {
    BlueGreenStrategy {
        active_service: "web-active".to_owned(),
        preview_service: Some("web-preview".to_owned()),
        ..BlueGreenStrategy::default()
    }
}

fn bg_sim(replicas: i32, strategy: BlueGreenStrategy) -> Sim {
    let mut rollout = rollout(replicas, Vec::new(), false);
    rollout.spec.strategy = Some(RolloutStrategy {
        blue_green: Some(strategy),
        ..RolloutStrategy::default()
    });
    let mut sim = Sim::new(rollout);
    sim.world.services = ["web-active", "web-preview"]
        .into_iter()
        .map(|name| ServiceView {
            exists: true,
            ..ServiceView::missing(name)
        })
        .collect();
    let smoke = serde_json::from_value(serde_json::json!({
        "metrics": [{"name": "smoke", "provider": {"web": {"url": "http://smoke"}}}]
    }))
    .expect("a valid template");
    sim.world
        .analysis_templates
        .namespaced
        .insert("smoke".to_owned(), Some(smoke));
    sim
}

/// The image behind a pod-template hash or ReplicaSet name, for readable logs.
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
        Action::SetTraffic(_) => "traffic".to_owned(),
        Action::EvictPod { name } => format!("evict {name}"),
        Action::DeleteReplicaSet { name } => format!("delete {}", image_of(sim, name)),
        Action::CreateAnalysisRun { run } => {
            format!(
                "create run {}",
                run.metadata.name.clone().unwrap_or_default()
            )
        }
        Action::TerminateAnalysisRun { name } => format!("terminate run {name}"),
        Action::DeleteAnalysisRun { name } => format!("delete run {name}"),
        Action::SetPodMetadata {
            replica_set,
            metadata,
            ..
        } => format!(
            "metadata {} {:?}",
            image_of(sim, replica_set),
            metadata.labels.clone().unwrap_or_default()
        ),
    }
}

/// Blue-green safety, action by action on the world as it was.
fn check_blue_green(world: &Snapshot, plan: &RolloutPlan) {
    let replicas = world.rollout.spec.replicas();
    let strategy = world.rollout.spec.blue_green().unwrap();
    let mut selectors: std::collections::BTreeMap<String, Option<String>> = world
        .services
        .iter()
        .map(|s| (s.name.clone(), s.selector_hash.clone()))
        .collect();
    let mut pointed = std::collections::BTreeSet::new();
    let mut specs: std::collections::BTreeMap<String, i32> = world
        .replica_sets
        .iter()
        .map(|rs| (rs.name.clone(), rs.spec_replicas))
        .collect();
    let rs_by_hash = |hash: &str| {
        world
            .replica_sets
            .iter()
            .find(|rs| rs.pod_template_hash.as_deref() == Some(hash))
    };
    for action in &plan.actions {
        match action {
            Action::PointService {
                service,
                pod_template_hash,
            } => {
                assert!(
                    pointed.insert(service.clone()),
                    "{service} switched twice in one plan: {:?}",
                    plan.actions
                );
                if *service == strategy.active_service {
                    let rs = rs_by_hash(pod_template_hash).unwrap_or_else(|| {
                        panic!(
                            "active service pointed at a new ReplicaSet: {:?}",
                            plan.actions
                        )
                    });
                    assert!(
                        rs.available_replicas >= replicas && specs[&rs.name] >= replicas,
                        "active service pointed at {} with {} available pods",
                        rs.name,
                        rs.available_replicas
                    );
                }
                if strategy.preview_service.as_deref() == Some(service.as_str()) && replicas > 0 {
                    let rs = rs_by_hash(pod_template_hash)
                        .unwrap_or_else(|| panic!("preview pointed at a new ReplicaSet"));
                    assert!(
                        rs.spec_replicas > 0 && rs.available_replicas >= rs.spec_replicas,
                        "preview service pointed at {} with {}/{} pods available",
                        rs.name,
                        rs.available_replicas,
                        rs.spec_replicas
                    );
                }
                selectors.insert(service.clone(), Some(pod_template_hash.clone()));
            }
            Action::ScaleReplicaSet { name, to, .. } => {
                // A ReplicaSet created by this very plan only grows.
                let Some(rs) = world.replica_sets.iter().find(|rs| &rs.name == name) else {
                    continue;
                };
                let active = selectors.get(&strategy.active_service).cloned().flatten();
                if *to < specs[name] {
                    assert_ne!(
                        active, rs.pod_template_hash,
                        "{name} scaled down to {to} while the active service selects it"
                    );
                    if strategy.scale_down_delay_revision_limit.is_none() {
                        assert!(
                            rs.scale_down_deadline.is_none_or(|d| d <= world.now),
                            "{name} scaled down before its scale-down deadline"
                        );
                    }
                }
                specs.insert(name.clone(), *to);
            }
            _ => {}
        }
    }
    let before = world
        .service(&strategy.active_service)
        .and_then(|s| s.selector_hash.clone());
    let after = selectors.get(&strategy.active_service).cloned().flatten();
    assert!(
        before.is_none() || after.is_some(),
        "the active service lost its selector"
    );
    if let Some(active) = after {
        let rs = world
            .replica_sets
            .iter()
            .find(|rs| rs.pod_template_hash.as_deref() == Some(active.as_str()));
        assert!(
            rs.is_some_and(|rs| specs[&rs.name] > 0 || replicas == 0),
            "the active service selects a ReplicaSet without pods"
        );
    }
}

/// One checked tick; returns the actions it applied, described.
fn tick(sim: &mut Sim) -> Vec<String> {
    let world = sim.world.clone();
    let plan = sim.tick();
    check_blue_green(&world, &plan);
    plan.actions.iter().map(|a| describe(sim, a)).collect()
}

/// Ticks until the world is idle; returns everything applied, described.
fn settle(sim: &mut Sim) -> Vec<String> {
    sim.settle_described(tick)
}

/// Jumps to the plan's wake-up and settles again.
fn wake(sim: &mut Sim) -> Vec<String> {
    let at = plan_rollout(&sim.world)
        .wake_at
        .expect("a wake-up is pending");
    assert!(at >= sim.world.now, "wake-up in the past");
    sim.world.now = at;
    settle(sim)
}

fn status(sim: &Sim) -> ramp_api::rollout::RolloutStatus {
    sim.world.rollout.status.clone().unwrap()
}

fn phase(sim: &Sim) -> (String, String) {
    let st = status(sim);
    (st.phase.unwrap(), st.message.unwrap_or_default())
}

fn selectors(sim: &Sim) -> (String, String) {
    let bg = status(sim).blue_green.unwrap();
    (
        image_of(sim, &bg.active_selector.unwrap_or_default()),
        image_of(sim, &bg.preview_selector.unwrap_or_default()),
    )
}

fn counts(sim: &Sim) -> Vec<(String, i32)> {
    sim.replicas_by_image()
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

fn pair(a: &str, b: &str) -> (String, String) {
    (a.to_owned(), b.to_owned())
}

/// Name of the newest ReplicaSet's pre- or post-promotion run (`attempt` "" or ".1", ...).
fn run_name(sim: &Sim, infix: &str, attempt: &str) -> String {
    let hash = status(sim).current_pod_hash.unwrap();
    format!("web-{hash}-2-{infix}{attempt}")
}

/// What the analysis controller would report for the newest ReplicaSet.
fn set_run(sim: &mut Sim, kind: AnalysisRunKind, attempt: &str, phase: &str) {
    let hash = status(sim).current_pod_hash.unwrap();
    let infix = if kind == AnalysisRunKind::PrePromotion {
        "pre"
    } else {
        "post"
    };
    let name = format!("web-{hash}-2-{infix}{attempt}");
    sim.world.analysis_runs.retain(|r| r.name != name);
    sim.world.analysis_runs.push(AnalysisRunSummary {
        name,
        kind,
        step_index: None,
        phase: phase.to_owned(),
        pod_template_hash: Some(hash.clone()),
        revision: Some(2),
        terminate: false,
        message: None,
        created_at: None,
    });
}

fn deploy_v1(sim: &mut Sim) {
    let log = settle(sim);
    assert_eq!(
        log,
        s(&[
            "create web:1",
            "scale web:1 0->3",
            "web-preview -> web:1",
            "web-active -> web:1",
        ])
    );
    assert_eq!(phase(sim), pair("Healthy", ""));
    assert_eq!(selectors(sim), pair("web:1", "web:1"));
    let st = status(sim);
    assert_eq!(st.stable_rs, st.current_pod_hash);
    assert!(st.selector.unwrap().ends_with(&st.stable_rs.unwrap()));
}

#[test]
fn runbook_flow_with_analysis_manual_promotion_and_delayed_scale_down() {
    let mut sim = bg_sim(
        3,
        BlueGreenStrategy {
            auto_promotion_enabled: Some(false),
            pre_promotion_analysis: analysis(),
            post_promotion_analysis: analysis(),
            ..strategy()
        },
    );
    deploy_v1(&mut sim);
    sim.set_image("web:2");
    let log = settle(&mut sim);
    let pre = run_name(&sim, "pre", "");
    assert_eq!(
        log,
        vec![
            "create web:2".to_owned(),
            "scale web:2 0->3".to_owned(),
            "web-preview -> web:2".to_owned(),
            format!("create run {pre}"),
        ]
    );
    // Preview up: paused for promotion, and the pre-promotion run is awaited.
    let st = status(&sim);
    assert_eq!(phase(&sim), pair("Paused", pause_reason::BLUE_GREEN_PAUSE));
    assert_eq!(st.controller_pause, Some(true));
    assert_eq!(selectors(&sim), pair("web:1", "web:2"));
    assert_eq!(st.available_replicas, Some(3), "counts are the active ones");
    assert_eq!(
        counts(&sim),
        vec![("web:1".to_owned(), 3), ("web:2".to_owned(), 3)]
    );
    set_run(&mut sim, AnalysisRunKind::PrePromotion, "", "Running");
    assert!(settle(&mut sim).is_empty());
    set_run(&mut sim, AnalysisRunKind::PrePromotion, "", "Successful");
    assert!(settle(&mut sim).is_empty());
    assert_eq!(
        phase(&sim).0,
        "Paused",
        "still waits for the manual promote"
    );
    promote(&mut sim);
    let log = settle(&mut sim);
    let post = run_name(&sim, "post", "");
    assert_eq!(
        log,
        vec![
            "web-active -> web:2".to_owned(),
            format!("create run {post}")
        ]
    );
    assert_eq!(
        phase(&sim),
        pair(
            "Progressing",
            &format!("post-promotion AnalysisRun {post} is Pending")
        )
    );
    assert_ne!(status(&sim).stable_rs, status(&sim).current_pod_hash);
    set_run(&mut sim, AnalysisRunKind::PostPromotion, "", "Successful");
    let log = settle(&mut sim);
    assert_eq!(log, s(&["web:1 scale-down-deadline set"]));
    assert_eq!(phase(&sim), pair("Healthy", ""));
    let st = status(&sim);
    assert_eq!(st.stable_rs, st.current_pod_hash);
    assert_eq!(
        counts(&sim),
        vec![("web:1".to_owned(), 3), ("web:2".to_owned(), 3)]
    );
    // 30 s (the default delay) later blue goes.
    let before = sim.world.now;
    let at = plan_rollout(&sim.world).wake_at.unwrap();
    let delay = at.duration_since(before);
    assert!(
        delay <= SignedDuration::from_secs(30) && delay >= SignedDuration::from_secs(28),
        "{delay:?}"
    );
    let log = wake(&mut sim);
    assert_eq!(
        log,
        s(&["scale web:1 3->0", "web:1 scale-down-deadline cleared"])
    );
    assert_eq!(
        counts(&sim),
        vec![("web:1".to_owned(), 0), ("web:2".to_owned(), 3)]
    );
    assert_eq!(phase(&sim), pair("Healthy", ""));
}

#[test]
fn pre_promotion_failure_aborts_and_a_retry_promotes() {
    let mut sim = bg_sim(
        2,
        BlueGreenStrategy {
            pre_promotion_analysis: analysis(),
            abort_scale_down_delay_seconds: Some(0),
            ..strategy()
        },
    );
    settle(&mut sim);
    sim.set_image("web:2");
    settle(&mut sim);
    let pre = run_name(&sim, "pre", "");
    assert_eq!(
        phase(&sim),
        pair(
            "Progressing",
            &format!("pre-promotion AnalysisRun {pre} is Pending")
        )
    );
    set_run(&mut sim, AnalysisRunKind::PrePromotion, "", "Failed");
    assert_eq!(
        settle(&mut sim),
        vec![format!("terminate run {pre}")],
        "abortScaleDownDelaySeconds 0 keeps green; the failed run is retired"
    );
    let (p, message) = phase(&sim);
    assert_eq!(p, "Degraded");
    assert!(message.starts_with("RolloutAborted: Rollout aborted update to revision 2"));
    assert_eq!(selectors(&sim), pair("web:1", "web:2"));
    // Retry: the failed run is spent, a fresh one decides.
    sim.status_mut().abort = Some(false);
    assert_eq!(settle(&mut sim), vec![format!("create run {pre}.1")]);
    assert_eq!(
        phase(&sim),
        pair(
            "Progressing",
            &format!("pre-promotion AnalysisRun {pre}.1 is Pending")
        )
    );
    set_run(&mut sim, AnalysisRunKind::PrePromotion, ".1", "Successful");
    let log = settle(&mut sim);
    assert_eq!(
        log,
        s(&["web-active -> web:2", "web:1 scale-down-deadline set"])
    );
    assert_eq!(phase(&sim), pair("Healthy", ""));
    wake(&mut sim);
    assert_eq!(
        counts(&sim),
        vec![("web:1".to_owned(), 0), ("web:2".to_owned(), 2)]
    );
}

#[test]
fn post_promotion_failure_switches_back_to_blue() {
    let mut sim = bg_sim(
        2,
        BlueGreenStrategy {
            post_promotion_analysis: analysis(),
            ..strategy()
        },
    );
    settle(&mut sim);
    sim.set_image("web:2");
    let log = settle(&mut sim);
    let post = run_name(&sim, "post", "");
    assert_eq!(
        log,
        vec![
            "create web:2".to_owned(),
            "scale web:2 0->2".to_owned(),
            "web-preview -> web:2".to_owned(),
            "web-active -> web:2".to_owned(),
            format!("create run {post}"),
        ]
    );
    assert_eq!(phase(&sim).0, "Progressing");
    set_run(&mut sim, AnalysisRunKind::PostPromotion, "", "Error");
    let log = settle(&mut sim);
    assert_eq!(
        log,
        vec![
            "web-active -> web:1".to_owned(),
            "web:2 scale-down-deadline set".to_owned(),
            format!("terminate run {post}"),
        ]
    );
    assert_eq!(phase(&sim).0, "Degraded");
    assert_eq!(selectors(&sim), pair("web:1", "web:2"));
    assert_ne!(status(&sim).stable_rs, status(&sim).current_pod_hash);
    let log = wake(&mut sim);
    assert_eq!(
        log,
        s(&["scale web:2 2->0", "web:2 scale-down-deadline cleared"])
    );
    assert_eq!(
        counts(&sim),
        vec![("web:1".to_owned(), 2), ("web:2".to_owned(), 0)]
    );
    assert_eq!(selectors(&sim), pair("web:1", "web:2"));
}

#[test]
fn a_new_revision_while_paused_supersedes_the_previous_green() {
    let mut sim = bg_sim(
        2,
        BlueGreenStrategy {
            auto_promotion_enabled: Some(false),
            ..strategy()
        },
    );
    settle(&mut sim);
    sim.set_image("web:2");
    settle(&mut sim);
    assert_eq!(phase(&sim).0, "Paused");
    sim.set_image("web:3");
    let log = settle(&mut sim);
    assert_eq!(
        log,
        s(&[
            "create web:3",
            "web:2 scale-down-deadline set",
            "scale web:3 0->2",
            "web-preview -> web:3",
        ])
    );
    assert_eq!(phase(&sim), pair("Paused", pause_reason::BLUE_GREEN_PAUSE));
    assert_eq!(selectors(&sim), pair("web:1", "web:3"));
    wake(&mut sim);
    assert_eq!(
        counts(&sim),
        vec![
            ("web:1".to_owned(), 2),
            ("web:2".to_owned(), 0),
            ("web:3".to_owned(), 2)
        ]
    );
    promote(&mut sim);
    let log = settle(&mut sim);
    assert_eq!(
        log,
        s(&["web-active -> web:3", "web:1 scale-down-deadline set"])
    );
    assert_eq!(phase(&sim), pair("Healthy", ""));
}

#[test]
fn fast_rollback_to_a_previous_replica_set_still_up() {
    let mut sim = bg_sim(
        2,
        BlueGreenStrategy {
            auto_promotion_enabled: Some(false),
            pre_promotion_analysis: analysis(),
            ..strategy()
        },
    );
    settle(&mut sim);
    sim.set_image("web:2");
    settle(&mut sim);
    set_run(&mut sim, AnalysisRunKind::PrePromotion, "", "Successful");
    promote(&mut sim);
    let log = settle(&mut sim);
    assert_eq!(
        log,
        s(&["web-active -> web:2", "web:1 scale-down-deadline set"])
    );
    // Back to web:1 within its delay: no pause, no analysis, one switch.
    sim.set_image("web:1");
    let plan = plan_rollout(&sim.world);
    assert!(
        plan.events
            .iter()
            .any(|e| e.message.ends_with("Fast rollback")),
        "{:?}",
        plan.events
    );
    let log = settle(&mut sim);
    assert_eq!(
        log,
        s(&[
            "web:1 rollout.argoproj.io/revision-history set",
            "web:1 rollout.argoproj.io/revision set",
            "web:1 scale-down-deadline cleared",
            "web-preview -> web:1",
            "web-active -> web:1",
            "web:2 scale-down-deadline set",
        ])
    );
    assert_eq!(phase(&sim), pair("Healthy", ""));
    assert_eq!(selectors(&sim), pair("web:1", "web:1"));
    let web1 = sim
        .world
        .replica_sets
        .iter()
        .find(|rs| image_of(&sim, &rs.name) == "web:1");
    assert_eq!(
        web1.and_then(|rs| rs.revision_history.clone()).as_deref(),
        Some("1"),
        "the revision it had is kept"
    );
    assert!(status(&sim).pause_conditions.is_none());
}

/// Upstream's "kitchen sink": previewReplicaCount and autoPromotionSeconds, counts at every
/// stage, and no promotion before the timer.
#[test]
fn preview_replica_count_and_auto_promotion_seconds() {
    let mut sim = bg_sim(
        3,
        BlueGreenStrategy {
            preview_replica_count: Some(1),
            auto_promotion_seconds: Some(20),
            scale_down_delay_seconds: Some(10),
            ..strategy()
        },
    );
    settle(&mut sim);
    sim.set_image("web:2");
    let paused_at = sim.world.now;
    let log = settle(&mut sim);
    assert_eq!(
        log,
        s(&["create web:2", "scale web:2 0->1", "web-preview -> web:2"])
    );
    assert_eq!(phase(&sim), pair("Paused", pause_reason::BLUE_GREEN_PAUSE));
    assert_eq!(
        counts(&sim),
        vec![("web:1".to_owned(), 3), ("web:2".to_owned(), 1)]
    );
    let pause_start = status(&sim).pause_conditions.unwrap()[0].start_time.0;
    let wake_at = plan_rollout(&sim.world).wake_at.unwrap();
    assert_eq!(wake_at, pause_start + SignedDuration::from_secs(20));
    // One second before the timer nothing moves.
    sim.world.now = wake_at - SignedDuration::from_secs(1);
    assert!(settle(&mut sim).is_empty());
    assert_eq!(phase(&sim).0, "Paused");
    sim.world.now = wake_at;
    let log = tick(&mut sim);
    assert_eq!(log, s(&["scale web:2 1->3"]));
    let st = status(&sim);
    assert_eq!(
        st.blue_green.as_ref().unwrap().scale_up_preview_check_point,
        Some(true)
    );
    assert_eq!(
        selectors(&sim),
        pair("web:1", "web:2"),
        "switch waits for 3 pods"
    );
    let log = settle(&mut sim);
    assert_eq!(
        log,
        s(&["web-active -> web:2", "web:1 scale-down-deadline set"])
    );
    assert_eq!(
        counts(&sim),
        vec![("web:1".to_owned(), 3), ("web:2".to_owned(), 3)]
    );
    let log = wake(&mut sim);
    assert_eq!(
        log,
        s(&["scale web:1 3->0", "web:1 scale-down-deadline cleared"])
    );
    assert_eq!(
        counts(&sim),
        vec![("web:1".to_owned(), 0), ("web:2".to_owned(), 3)]
    );
    assert_eq!(phase(&sim), pair("Healthy", ""));
    assert!(sim.world.now > paused_at);
}

#[test]
fn scale_down_delay_revision_limit_keeps_only_the_newest_previous() {
    let mut sim = bg_sim(
        1,
        BlueGreenStrategy {
            scale_down_delay_seconds: Some(86_400),
            scale_down_delay_revision_limit: Some(1),
            ..strategy()
        },
    );
    settle(&mut sim);
    sim.set_image("web:2");
    settle(&mut sim);
    sim.set_image("web:3");
    let log = settle(&mut sim);
    assert!(log.contains(&"scale web:1 1->0".to_owned()), "{log:?}");
    assert_eq!(
        counts(&sim),
        vec![
            ("web:1".to_owned(), 0),
            ("web:2".to_owned(), 1),
            ("web:3".to_owned(), 1)
        ]
    );
}

#[test]
fn promote_full_skips_pause_and_analysis() {
    let mut sim = bg_sim(
        2,
        BlueGreenStrategy {
            auto_promotion_enabled: Some(false),
            pre_promotion_analysis: analysis(),
            post_promotion_analysis: analysis(),
            preview_replica_count: Some(1),
            ..strategy()
        },
    );
    settle(&mut sim);
    sim.set_image("web:2");
    settle(&mut sim);
    assert_eq!(phase(&sim).0, "Paused");
    sim.status_mut().promote_full = Some(true);
    let pre = run_name(&sim, "pre", "");
    let log = settle(&mut sim);
    assert_eq!(
        log,
        vec![
            "scale web:2 1->2".to_owned(),
            format!("terminate run {pre}"),
            "web-active -> web:2".to_owned(),
            "web:1 scale-down-deadline set".to_owned(),
        ],
        "the running pre-promotion run is retired"
    );
    assert_eq!(phase(&sim), pair("Healthy", ""));
    assert_eq!(status(&sim).promote_full, None);
}

#[test]
fn manual_abort_keeps_blue_active_and_scales_green_down_after_the_delay() {
    let mut sim = bg_sim(
        2,
        BlueGreenStrategy {
            auto_promotion_enabled: Some(false),
            ..strategy()
        },
    );
    settle(&mut sim);
    sim.set_image("web:2");
    settle(&mut sim);
    sim.status_mut().abort = Some(true);
    let log = settle(&mut sim);
    assert_eq!(log, s(&["web:2 scale-down-deadline set"]));
    assert_eq!(phase(&sim).0, "Degraded");
    let log = wake(&mut sim);
    assert_eq!(
        log,
        s(&["scale web:2 2->0", "web:2 scale-down-deadline cleared"])
    );
    assert_eq!(selectors(&sim), pair("web:1", "web:2"));
    // Retry: green comes back and pauses again.
    sim.status_mut().abort = Some(false);
    let log = settle(&mut sim);
    assert_eq!(log, s(&["scale web:2 0->2"]));
    assert_eq!(phase(&sim).0, "Paused");
}

#[test]
fn the_active_service_waits_for_every_pod_of_the_first_revision() {
    let mut sim = bg_sim(3, strategy());
    sim.start_rate = Some(1);
    let log = tick(&mut sim);
    assert_eq!(log, s(&["create web:1", "scale web:1 0->3"]));
    assert_eq!(
        phase(&sim),
        pair("Progressing", "more replicas need to be updated")
    );
    assert!(tick(&mut sim).is_empty());
    assert!(tick(&mut sim).is_empty());
    assert_eq!(
        tick(&mut sim),
        s(&["web-preview -> web:1", "web-active -> web:1"])
    );
    assert_eq!(phase(&sim), pair("Healthy", ""));
}

#[derive(Clone, Debug)]
enum UserAction {
    Promote,
    Abort,
    Retry,
    PromoteFull,
    NewImage,
    PreRun(&'static str),
    PostRun(&'static str),
    Wait,
}

fn user_action() -> impl Strategy<Value = UserAction> {
    prop_oneof![
        2 => Just(UserAction::Promote),
        1 => Just(UserAction::Abort),
        1 => Just(UserAction::Retry),
        1 => Just(UserAction::PromoteFull),
        1 => Just(UserAction::NewImage),
        1 => prop_oneof![Just("Successful"), Just("Failed"), Just("Running")].prop_map(UserAction::PreRun),
        1 => prop_oneof![Just("Successful"), Just("Error")].prop_map(UserAction::PostRun),
        2 => Just(UserAction::Wait),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Whatever users and analyses do: every plan keeps the active service on fully available
    /// pods and switches each service at most once (checked per action), planning again on
    /// its own result does nothing (checked by `Sim::tick`), and the settled status matches
    /// the services.
    #[test]
    fn blue_green_stays_safe_and_idempotent(
        replicas in 1..5i32,
        preview in proptest::option::of(0..5i32),
        manual in any::<bool>(),
        pre in any::<bool>(),
        post in any::<bool>(),
        start_rate in proptest::option::of(1..3i32),
        actions in proptest::collection::vec(user_action(), 0..8),
    ) {
        let mut sim = bg_sim(replicas, BlueGreenStrategy {
            preview_replica_count: preview,
            auto_promotion_enabled: Some(!manual),
            pre_promotion_analysis: if pre { analysis() } else { None },
            post_promotion_analysis: if post { analysis() } else { None },
            ..strategy()
        });
        sim.start_rate = start_rate;
        settle(&mut sim);
        sim.set_image("web:2");
        let mut image = 2;
        let mut attempt = 0;
        for action in actions {
            settle(&mut sim);
            match action {
                UserAction::Promote => promote(&mut sim),
                UserAction::Abort => sim.status_mut().abort = Some(true),
                UserAction::Retry => sim.status_mut().abort = Some(false),
                UserAction::PromoteFull => sim.status_mut().promote_full = Some(true),
                UserAction::NewImage => {
                    image += 1;
                    sim.set_image(&format!("web:{image}"));
                }
                UserAction::PreRun(phase) => {
                    attempt += 1;
                    set_run(&mut sim, AnalysisRunKind::PrePromotion, &format!(".{attempt}"), phase);
                }
                // Post-promotion runs exist only once the switch happened.
                UserAction::PostRun(phase) => {
                    let st = status(&sim);
                    let switched = st.blue_green.and_then(|b| b.active_selector) == st.current_pod_hash;
                    if !switched {
                        continue;
                    }
                    attempt += 1;
                    set_run(&mut sim, AnalysisRunKind::PostPromotion, &format!(".{attempt}"), phase);
                }
                UserAction::Wait => {
                    if let Some(at) = plan_rollout(&sim.world).wake_at {
                        sim.world.now = sim.world.now.max(at);
                    }
                }
            }
        }
        settle(&mut sim);
        let st = status(&sim);
        let active = st.blue_green.as_ref().and_then(|b| b.active_selector.clone());
        prop_assert!(active.is_some(), "the active service selects nothing: {st:?}");
        let rs = sim
            .world
            .replica_sets
            .iter()
            .find(|rs| rs.pod_template_hash == active)
            .unwrap();
        prop_assert!(rs.available_replicas >= replicas, "active on {rs:?}");
        // The status reports what the services really select, and Healthy means switched.
        let in_world = sim.world.service("web-active").and_then(|s| s.selector_hash.clone());
        prop_assert_eq!(&active, &in_world);
        let (phase, message) = phase(&sim);
        prop_assert!(phase != "Progressing" || !message.is_empty());
        if phase == "Healthy" {
            prop_assert_eq!(&active, &st.current_pod_hash);
            prop_assert_eq!(&st.stable_rs, &st.current_pod_hash);
        }
    }
}

#[test]
fn green_pods_that_never_start_exceed_the_progress_deadline_with_blue_still_active() {
    let mut sim = bg_sim(2, strategy());
    settle(&mut sim);
    sim.world.rollout.spec.progress_deadline_seconds = Some(60);
    sim.start_rate = Some(0);
    sim.set_image("web:2");
    settle(&mut sim);
    assert_eq!(
        phase(&sim),
        pair("Progressing", "more replicas need to be updated")
    );
    let updated_at = status(&sim)
        .condition("Progressing")
        .unwrap()
        .last_update_time
        .0;
    let at = plan_rollout(&sim.world).wake_at.unwrap();
    assert_eq!(at, updated_at + SignedDuration::from_secs(60));
    assert!(wake(&mut sim).is_empty());
    let (p, message) = phase(&sim);
    assert_eq!(p, "Degraded");
    assert!(
        message.starts_with("ProgressDeadlineExceeded: "),
        "{message}"
    );
    assert_eq!(
        selectors(&sim),
        pair("web:1", "web:1"),
        "the preview service waits for green's pods too"
    );
    assert_eq!(status(&sim).abort, None, "progressDeadlineAbort is off");
}

#[test]
fn phase_rule_eight_reports_the_cutover_and_the_verification() {
    let mut sim = bg_sim(1, strategy());
    settle(&mut sim);
    let spec = sim.world.rollout.spec.clone();
    let mut st = status(&sim);
    assert_eq!(
        crate::conditions::compute_phase(&spec, &st),
        ("Healthy", String::new())
    );
    st.current_pod_hash = Some("next".to_owned());
    st.updated_replicas = Some(1);
    assert_eq!(
        crate::conditions::compute_phase(&spec, &st).1,
        "active service cutover pending"
    );
    st.blue_green.as_mut().unwrap().active_selector = Some("next".to_owned());
    assert_eq!(
        crate::conditions::compute_phase(&spec, &st).1,
        "waiting for post-promotion verification to complete"
    );
    let mut spec = spec;
    if let Some(bg) = spec.strategy.as_mut().and_then(|s| s.blue_green.as_mut()) {
        bg.post_promotion_analysis = analysis();
    }
    assert_eq!(
        crate::conditions::compute_phase(&spec, &st).1,
        "waiting for analysis to complete"
    );
}

#[test]
fn an_inconclusive_pre_promotion_run_pauses_until_promoted_then_a_fresh_run_decides() {
    let mut sim = bg_sim(
        2,
        BlueGreenStrategy {
            pre_promotion_analysis: analysis(),
            ..strategy()
        },
    );
    settle(&mut sim);
    sim.set_image("web:2");
    settle(&mut sim);
    let pre = run_name(&sim, "pre", "");
    set_run(&mut sim, AnalysisRunKind::PrePromotion, "", "Inconclusive");
    assert!(settle(&mut sim).is_empty());
    assert_eq!(
        phase(&sim),
        pair("Paused", pause_reason::INCONCLUSIVE_ANALYSIS_RUN)
    );
    // As every pause: Progressing is Unknown/RolloutPaused (upstream derives it from the pause
    // conditions, whatever the strategy), so the progress deadline does not run out meanwhile.
    let progressing = status(&sim)
        .condition(condition_type::PROGRESSING)
        .cloned()
        .unwrap();
    assert_eq!(
        (progressing.status.as_str(), progressing.reason.as_str()),
        ("Unknown", "RolloutPaused")
    );
    assert_eq!(selectors(&sim), pair("web:1", "web:2"), "no switch");
    promote(&mut sim);
    assert_eq!(
        settle(&mut sim),
        vec![
            format!("terminate run {pre}"),
            format!("create run {pre}.1")
        ]
    );
    set_run(&mut sim, AnalysisRunKind::PrePromotion, ".1", "Successful");
    let log = settle(&mut sim);
    assert_eq!(log[0], "web-active -> web:2", "{log:?}");
    assert_eq!(phase(&sim), pair("Healthy", ""));
}

#[test]
fn role_metadata_is_set_before_pods_start_and_moves_with_the_promotion() {
    let labels = |role: &str| {
        Some(ramp_api::rollout::PodTemplateMetadata {
            labels: Some([("role".to_owned(), role.to_owned())].into()),
            annotations: None,
        })
    };
    let mut sim = bg_sim(
        2,
        BlueGreenStrategy {
            auto_promotion_enabled: Some(false),
            active_metadata: labels("active"),
            preview_metadata: labels("preview"),
            anti_affinity: Some(ramp_api::rollout::AntiAffinity {
                required_during_scheduling_ignored_during_execution: Some(
                    ramp_api::rollout::RequiredDuringSchedulingIgnoredDuringExecution {},
                ),
                ..Default::default()
            }),
            scale_down_delay_seconds: Some(0),
            ..strategy()
        },
    );
    assert_eq!(
        settle(&mut sim),
        s(&[
            "create web:1",
            "metadata web:1 {\"role\": \"active\"}",
            "scale web:1 0->2",
            "web-preview -> web:1",
            "web-active -> web:1",
        ])
    );
    let v1 = status(&sim).stable_rs.unwrap();
    sim.set_image("web:2");
    let plan = plan_rollout(&sim.world);
    let Some(Action::CreateReplicaSet { template, .. }) = plan.actions.first() else {
        panic!("{:?}", plan.actions);
    };
    let affinity = serde_json::to_value(&template.spec.as_ref().unwrap().affinity).unwrap();
    assert_eq!(
        affinity["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]["labelSelector"]
            ["matchExpressions"][0]["values"],
        serde_json::json!([v1])
    );
    assert_eq!(
        settle(&mut sim),
        s(&[
            "create web:2",
            "metadata web:2 {\"role\": \"preview\"}",
            "scale web:2 0->2",
            "web-preview -> web:2",
        ])
    );
    promote(&mut sim);
    assert_eq!(
        settle(&mut sim),
        s(&[
            "web-active -> web:2",
            "metadata web:2 {\"role\": \"active\"}",
            "metadata web:1 {}",
            "scale web:1 2->0",
        ])
    );
    assert_eq!(phase(&sim), pair("Healthy", ""));
}
