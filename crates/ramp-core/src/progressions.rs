//! Whole rollouts on the simulator: the exact weights written and replica counts reached.

use crate::sim::*;

#[test]
fn initial_deploy_creates_a_stable_replica_set_and_skips_steps() {
    let mut sim = Sim::new(rollout(4, vec![weight(20), pause(None)], true));
    assert!(sim.run());
    let st = sim.world.rollout.status.clone().unwrap();
    assert_eq!(st.phase.as_deref(), Some("Healthy"), "{st:?}");
    assert_eq!(st.stable_rs, st.current_pod_hash);
    assert_eq!(st.current_step_index, Some(2));
    assert_eq!(sim.replicas_by_image(), vec![("web:1".to_owned(), 4)]);
    assert_eq!(sim.weights, vec![0]);
}

#[test]
fn five_to_hundred_with_timed_pauses() {
    let steps = vec![
        weight(5),
        pause(Some(10)),
        weight(20),
        pause(Some(10)),
        weight(40),
        pause(Some(10)),
        weight(60),
        pause(Some(10)),
        weight(80),
        pause(Some(10)),
    ];
    let mut sim = Sim::new(rollout(10, steps, true));
    assert!(sim.run());
    sim.weights.clear();
    sim.set_image("web:2");
    assert!(sim.run());
    assert_eq!(sim.weights, vec![5, 20, 40, 60, 80, 100, 0]);
    let st = sim.world.rollout.status.clone().unwrap();
    assert_eq!(st.phase.as_deref(), Some("Healthy"), "{st:?}");
    assert_eq!(
        sim.replicas_by_image(),
        vec![("web:1".to_owned(), 0), ("web:2".to_owned(), 10)]
    );
}

#[test]
fn one_to_hundred_with_indefinite_pauses_and_promotions() {
    let steps = vec![
        weight(1),
        pause(None),
        weight(10),
        pause(None),
        weight(25),
        pause(None),
        weight(50),
        pause(None),
    ];
    let mut sim = Sim::new(rollout(10, steps, true));
    assert!(sim.run());
    sim.weights.clear();
    sim.set_image("web:2");
    let mut pauses = 0;
    while !sim.run() {
        pauses += 1;
        let st = sim.world.rollout.status.clone().unwrap();
        assert_eq!(st.phase.as_deref(), Some("Paused"));
        assert_eq!(st.message.as_deref(), Some("CanaryPauseStep"));
        promote(&mut sim);
    }
    assert_eq!(pauses, 4);
    assert_eq!(sim.weights, vec![1, 10, 25, 50, 100, 0]);
    // Canary pods at each step: ceil(w × 10 / 100).
    let canary_sizes: Vec<i32> = sim
        .log
        .iter()
        .filter_map(|a| match a {
            crate::Action::ScaleReplicaSet { name, to, .. }
                if name.ends_with(
                    &sim.world
                        .rollout
                        .status
                        .as_ref()
                        .unwrap()
                        .current_pod_hash
                        .clone()
                        .unwrap(),
                ) =>
            {
                Some(*to)
            }
            _ => None,
        })
        .collect();
    assert_eq!(canary_sizes, vec![1, 3, 5, 10]);
    assert!(
        sim.events
            .iter()
            .any(|e| e.starts_with("RolloutCompleted")
                && e.ends_with("Completed all 8 canary steps")),
        "{:?}",
        sim.events
    );
}

#[test]
fn abort_puts_all_traffic_on_stable_then_scales_the_canary_down_after_the_delay_then_retry_and_promote()
 {
    let steps = vec![weight(50), pause(None)];
    let mut sim = Sim::new(rollout(4, steps, true));
    assert!(sim.run());
    sim.weights.clear();
    sim.set_image("web:2");
    assert!(!sim.run());
    assert_eq!(sim.weights, vec![50]);
    sim.status_mut().abort = Some(true);
    let start = sim.world.now;
    assert!(sim.run());
    let st = sim.world.rollout.status.clone().unwrap();
    assert_eq!(st.phase.as_deref(), Some("Degraded"));
    assert_eq!(
        st.message.as_deref(),
        Some("RolloutAborted: Rollout aborted update to revision 2")
    );
    assert_eq!(sim.weights, vec![50, 0]);
    assert_eq!(
        sim.replicas_by_image(),
        vec![("web:1".to_owned(), 4), ("web:2".to_owned(), 0)]
    );
    // The canary stayed up abortScaleDownDelaySeconds (30 s) after traffic left it.
    assert!(sim.world.now.duration_since(start).as_secs() >= 30);
    let zero = sim
        .log
        .iter()
        .position(|a| matches!(a, crate::Action::SetTraffic(i) if i.canary_weight == 0))
        .unwrap();
    let down = sim
        .log
        .iter()
        .position(|a| matches!(a, crate::Action::ScaleReplicaSet { to: 0, .. }))
        .unwrap();
    assert!(zero < down);
    // Retry: steps run again from 0.
    sim.status_mut().abort = Some(false);
    assert!(!sim.run());
    assert_eq!(sim.weights, vec![50, 0, 50]);
    promote(&mut sim);
    assert!(sim.run());
    assert_eq!(sim.weights, vec![50, 0, 50, 100, 0]);
    let st = sim.world.rollout.status.clone().unwrap();
    assert_eq!(st.phase.as_deref(), Some("Healthy"), "{st:?}");
}

#[test]
fn promote_full_skips_remaining_steps() {
    let steps = vec![weight(10), pause(None), weight(50), pause(None)];
    let mut sim = Sim::new(rollout(10, steps, true));
    assert!(sim.run());
    sim.weights.clear();
    sim.set_image("web:2");
    assert!(!sim.run());
    sim.status_mut().promote_full = Some(true);
    assert!(sim.run());
    assert_eq!(sim.weights, vec![10, 0]);
    let st = sim.world.rollout.status.clone().unwrap();
    assert_eq!(st.phase.as_deref(), Some("Healthy"));
    assert_eq!(st.promote_full, None);
    assert_eq!(st.current_step_index, Some(4));
    assert!(
        sim.events
            .iter()
            .any(|e| e.ends_with("Full promotion requested"))
    );
}

#[test]
fn a_new_image_mid_rollout_supersedes_the_canary() {
    let steps = vec![weight(20), pause(None), weight(60), pause(None)];
    let mut sim = Sim::new(rollout(5, steps, true));
    assert!(sim.run());
    sim.weights.clear();
    sim.set_image("web:2");
    assert!(!sim.run());
    sim.set_image("web:3");
    assert!(!sim.run());
    assert_eq!(sim.weights, vec![20, 0, 20]);
    assert_eq!(
        sim.replicas_by_image(),
        vec![
            ("web:1".to_owned(), 5),
            ("web:2".to_owned(), 0),
            ("web:3".to_owned(), 1)
        ]
    );
    assert_eq!(
        sim.world
            .rollout
            .status
            .as_ref()
            .unwrap()
            .current_step_index,
        Some(1)
    );
}

#[test]
fn going_back_to_the_stable_template_is_a_fast_rollback() {
    let steps = vec![weight(20), pause(None), weight(60), pause(None)];
    let mut sim = Sim::new(rollout(5, steps, true));
    assert!(sim.run());
    sim.weights.clear();
    sim.set_image("web:2");
    assert!(!sim.run());
    sim.set_image("web:1");
    assert!(sim.run());
    assert_eq!(sim.weights, vec![20, 0]);
    assert_eq!(
        sim.replicas_by_image(),
        vec![("web:1".to_owned(), 5), ("web:2".to_owned(), 0)]
    );
    assert!(
        sim.events
            .iter()
            .any(|e| e == "SkipSteps: Rollback to stable ReplicaSets")
    );
    let st = sim.world.rollout.status.clone().unwrap();
    assert_eq!(st.phase.as_deref(), Some("Healthy"));
}

#[test]
fn basic_canary_follows_the_replica_ratio() {
    let steps = vec![weight(25), pause(None), weight(50), pause(None)];
    let mut sim = Sim::new(rollout(4, steps, false));
    assert!(sim.run());
    sim.set_image("web:2");
    assert!(!sim.run());
    assert_eq!(
        sim.replicas_by_image(),
        vec![("web:1".to_owned(), 3), ("web:2".to_owned(), 1)]
    );
    promote(&mut sim);
    assert!(!sim.run());
    assert_eq!(
        sim.replicas_by_image(),
        vec![("web:1".to_owned(), 2), ("web:2".to_owned(), 2)]
    );
    promote(&mut sim);
    assert!(sim.run());
    assert_eq!(
        sim.replicas_by_image(),
        vec![("web:1".to_owned(), 0), ("web:2".to_owned(), 4)]
    );
    assert!(sim.weights.is_empty());
}

#[test]
fn an_invalid_spec_only_writes_status() {
    let mut bad = rollout(3, vec![weight(120)], true);
    bad.spec.replicas = Some(3);
    let sim = Sim::new(bad);
    let plan = crate::plan_rollout(&sim.world);
    assert!(plan.actions.is_empty());
    assert_eq!(plan.status.phase.as_deref(), Some("Degraded"));
    let message = plan.status.message.clone().unwrap();
    assert!(
        message.starts_with(
            "InvalidSpec: The Rollout \"web\" is invalid: spec.strategy.canary.steps[0].setWeight"
        ),
        "{message}"
    );
    assert_eq!(plan.events.len(), 1);
    // Planning again on the same invalid spec records no second event.
    let mut world = sim.world.clone();
    world.rollout.status = Some(plan.status.clone());
    assert!(crate::plan_rollout(&world).events.is_empty());
    // Once fixed, the condition goes and the rollout deploys.
    world
        .rollout
        .spec
        .strategy
        .as_mut()
        .unwrap()
        .canary
        .as_mut()
        .unwrap()
        .steps = Some(vec![weight(20)]);
    let fixed = crate::plan_rollout(&world);
    assert!(fixed.status.condition("InvalidSpec").is_none());
    assert!(matches!(
        fixed.actions.first(),
        Some(crate::Action::CreateReplicaSet { .. })
    ));
}

#[test]
fn a_missing_service_is_reported_and_nothing_is_touched() {
    let mut sim = Sim::new(rollout(3, vec![weight(20)], true));
    sim.world.services[1].exists = false;
    let plan = crate::plan_rollout(&sim.world);
    assert!(plan.actions.is_empty());
    assert_eq!(plan.status.phase.as_deref(), Some("Degraded"));
    assert!(
        plan.status
            .message
            .unwrap()
            .contains("service \"web-stable\" not found")
    );
    assert_eq!(plan.events[0].type_, crate::EventType::Warning);
}

#[test]
fn experiment_steps_wait_with_a_clear_message() {
    let experiment = ramp_api::rollout::CanaryStep {
        experiment: Some(
            serde_json::from_value(serde_json::json!({
                "duration": "10s",
                "templates": [{"name": "canary", "specRef": "canary"}]
            }))
            .expect("a valid experiment step"),
        ),
        ..Default::default()
    };
    let mut sim = Sim::new(rollout(4, vec![weight(25), experiment], true));
    assert!(sim.run());
    sim.set_image("web:2");
    sim.run();
    let st = sim.world.rollout.status.clone().unwrap();
    assert_eq!(st.current_step_index, Some(1));
    assert_eq!(st.phase.as_deref(), Some("Progressing"));
    assert_eq!(
        st.message.as_deref(),
        Some("waiting at step 2/2: experiment steps are not supported by Ramp yet")
    );
}

#[test]
fn progress_deadline_abort_returns_traffic_to_stable() {
    let mut r = rollout(2, vec![weight(50), pause(None)], true);
    r.spec.progress_deadline_seconds = Some(60);
    r.spec.progress_deadline_abort = Some(true);
    let mut sim = Sim::new(r);
    assert!(sim.run());
    sim.set_image("web:2");
    sim.start_rate = Some(0);
    assert!(sim.run());
    let st = sim.world.rollout.status.clone().unwrap();
    assert_eq!(st.abort, Some(true));
    assert_eq!(st.phase.as_deref(), Some("Degraded"), "{st:?}");
    assert!(st.message.unwrap().contains("has timed out progressing"));
    assert!(
        sim.events
            .iter()
            .any(|e| e.starts_with("ProgressDeadlineExceeded"))
    );
}

/// Argo CD's skip-current-step clears the pause and moves the index past it; the next pause
/// step must still stop the rollout (the resume was for the skipped step only).
#[test]
fn skipping_a_paused_step_does_not_skip_the_next_pause() {
    let mut sim = Sim::new(rollout(
        4,
        vec![weight(25), pause(None), weight(50), pause(None), weight(75)],
        true,
    ));
    assert!(sim.run());
    sim.set_image("web:2");
    assert!(!sim.run());
    assert_eq!(sim.status_mut().current_step_index, Some(1));
    let st = sim.status_mut();
    st.current_step_index = Some(2);
    st.pause_conditions = None;
    assert!(!sim.run(), "paused again at the next pause step");
    let st = sim.world.rollout.status.clone().unwrap();
    assert_eq!(st.current_step_index, Some(3));
    assert_eq!(
        st.pause_conditions.unwrap()[0].reason,
        ramp_api::rollout::pause_reason::CANARY_PAUSE_STEP
    );
    assert_eq!(st.controller_pause, Some(true));
}
