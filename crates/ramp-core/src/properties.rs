//! Property tests: random rollouts, step lists, pod start rates and user actions, run on the
//! simulator, which checks every plan for the safety rules as it applies it.

use crate::plan::Action;
use crate::replicas::set_weight_at;
use crate::sim::*;
use crate::traffic::TrafficReading;
use crate::world::apply_plan;
use proptest::prelude::*;
use ramp_api::rollout::{CanaryStep, SetCanaryScale};

fn step() -> impl Strategy<Value = CanaryStep> {
    prop_oneof![
        (0..=100i32).prop_map(weight),
        (0..30i32).prop_map(|s| pause(Some(s))),
        Just(pause(None)),
        (0..6i32).prop_map(|n| CanaryStep {
            set_canary_scale: Some(SetCanaryScale {
                replicas: Some(n),
                ..Default::default()
            }),
            ..CanaryStep::default()
        }),
        (0..150i32).prop_map(|w| CanaryStep {
            set_canary_scale: Some(SetCanaryScale {
                weight: Some(w),
                ..Default::default()
            }),
            ..CanaryStep::default()
        }),
        Just(CanaryStep {
            set_canary_scale: Some(SetCanaryScale {
                match_traffic_weight: Some(true),
                ..Default::default()
            }),
            ..CanaryStep::default()
        }),
    ]
}

#[derive(Clone, Debug)]
enum UserAction {
    Promote,
    Abort,
    Retry,
    PromoteFull,
    NewImage,
    /// The newest ReplicaSet loses all its pods (they restart at the sim's start rate).
    CanaryCrash,
}

fn user_action() -> impl Strategy<Value = UserAction> {
    prop_oneof![
        3 => Just(UserAction::Promote),
        1 => Just(UserAction::Abort),
        1 => Just(UserAction::Retry),
        1 => Just(UserAction::PromoteFull),
        1 => Just(UserAction::NewImage),
        1 => Just(UserAction::CanaryCrash),
    ]
}

/// A plan applied to the world it produced plans nothing and keeps the status.
fn assert_idempotent(sim: &Sim) {
    let plan = crate::plan_rollout(&sim.world);
    let after = apply_plan(&sim.world, &plan);
    let again = crate::plan_rollout(&after);
    assert!(
        again.actions.is_empty(),
        "second plan acted: {:?}",
        again.actions
    );
    assert_eq!(again.status, plan.status);
}

fn assert_weights_add_up(sim: &Sim) {
    let max = sim
        .world
        .rollout
        .spec
        .canary()
        .map_or(100, |c| c.max_traffic_weight());
    for action in &sim.log {
        if let Action::SetTraffic(intent) = action {
            assert!((0..=max).contains(&intent.canary_weight));
            assert_eq!(intent.canary_weight + intent.stable_weight(), max);
        }
    }
    if let Some(w) = sim
        .world
        .rollout
        .status
        .as_ref()
        .and_then(|s| s.canary.as_ref())
        .and_then(|c| c.weights.as_ref())
    {
        assert_eq!(w.canary.weight + w.stable.weight, max);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_rollouts_stay_safe(
        replicas in 1..8i32,
        steps in proptest::collection::vec(step(), 0..5),
        routed in any::<bool>(),
        dynamic in any::<bool>(),
        fine_weights in any::<bool>(),
        surge in 0..3i32,
        unavailable in 0..3i32,
        start_rate in 1..3i32,
        actions in proptest::collection::vec(user_action(), 1..6),
    ) {
        // setCanaryScale needs a traffic router (validation rejects it otherwise).
        let steps: Vec<CanaryStep> =
            steps.into_iter().filter(|s| routed || s.set_canary_scale.is_none()).collect();
        let mut r = rollout(replicas, steps, routed);
        if routed
            && dynamic
            && let Some(c) = r.spec.strategy.as_mut().and_then(|s| s.canary.as_mut())
        {
            c.dynamic_stable_scale = Some(true);
        }
        if let Some(c) = r.spec.strategy.as_mut().and_then(|s| s.canary.as_mut()) {
            use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
            if !routed && (surge > 0 || unavailable > 0) {
                c.max_surge = Some(IntOrString::Int(surge));
                c.max_unavailable = Some(IntOrString::Int(unavailable));
            }
            // NGINX accepts another denominator; weights up to 100 stay valid.
            if let (true, Some(t)) = (fine_weights, c.traffic_routing.as_mut()) {
                t.max_traffic_weight = Some(1000);
            }
        }
        let mut sim = Sim::new(r);
        sim.start_rate = Some(start_rate);
        sim.run();
        // The initial deploy always creates and scales a ReplicaSet.
        let created = sim.log.iter().any(|a| matches!(a, Action::CreateReplicaSet { .. }));
        prop_assert!(created, "no ReplicaSet was created");
        let mut image = 1;
        for action in actions {
            match action {
                UserAction::Promote => sim.status_mut().pause_conditions = None,
                UserAction::Abort => sim.status_mut().abort = Some(true),
                UserAction::Retry => sim.status_mut().abort = Some(false),
                UserAction::PromoteFull => sim.status_mut().promote_full = Some(true),
                UserAction::NewImage => {
                    image += 1;
                    sim.set_image(&format!("web:{image}"));
                }
                UserAction::CanaryCrash => {
                    if let Some(rs) = sim.world.replica_sets.iter_mut().max_by_key(|rs| rs.revision) {
                        rs.replicas = 0;
                        rs.ready_replicas = 0;
                        rs.available_replicas = 0;
                    }
                }
            }
            assert_idempotent(&sim);
            sim.run();
            assert_idempotent(&sim);
            assert_weights_add_up(&sim);
            let st = sim.world.rollout.status.clone().unwrap_or_default();
            if st.is_aborted() && routed {
                // An abort ends with everything on stable.
                let w = st.canary.as_ref().and_then(|c| c.weights.as_ref()).map_or(0, |w| w.canary.weight);
                prop_assert_eq!(w, 0);
            }
        }
    }
}

/// Weights in any order, up and down, with timed pauses between them.
fn walk_step() -> impl Strategy<Value = CanaryStep> {
    prop_oneof![
        3 => (0..=100i32).prop_map(weight),
        1 => (0..4i32).prop_map(|s| pause(Some(s))),
    ]
}

/// The canary weights an update through `steps` writes: each step's weight in order, all of it
/// before promotion, none once canary and stable are the same pods (repeats dropped, and the
/// weight already in force at the start).
fn expected_weights(steps: &[CanaryStep], start: i32, max: i32) -> Vec<i32> {
    let mut expected: Vec<i32> = Vec::new();
    let wanted = steps.iter().filter_map(|s| s.set_weight).chain([max, 0]);
    for w in wanted {
        if expected.last().copied().unwrap_or(start) != w {
            expected.push(w);
        }
    }
    expected
}

/// Ticks an update to its end, checking after every plan that a step past a `setWeight` is
/// only reached with that weight in force; `drift` (tick, weight) makes someone else put
/// `weight` on the canary before that tick. Returns false if it never finished.
fn walk_to_the_end(sim: &mut Sim, steps: &[CanaryStep], drift: Option<(usize, i32)>) -> bool {
    for tick in 0..600 {
        if let Some((at, w)) = drift
            && at == tick
            && sim.world.traffic.is_some()
        {
            sim.world.traffic_read = Some(TrafficReading {
                canary_weight: w,
                holds_last_write: false,
            });
        }
        let drifted = sim.world.traffic_read.is_some();
        let before = sim.world.rollout.status.clone();
        let plan = sim.tick();
        let st = sim.world.rollout.status.clone().unwrap_or_default();
        let promoted = st.stable_rs.is_some() && st.stable_rs == st.current_pod_hash;
        let index = st.current_step_index.unwrap_or(0);
        let in_force = sim.world.traffic.as_ref().map_or(0, |t| t.canary_weight);
        if drifted {
            // Put back at once (the stable is whole, so nothing holds the write back), and the
            // status says what is in force.
            let rewritten = plan
                .actions
                .iter()
                .any(|a| matches!(a, Action::SetTraffic(_)));
            assert!(
                rewritten,
                "a changed router was left as it was: {:?}",
                plan.actions
            );
        }
        let reported = st
            .canary
            .as_ref()
            .and_then(|c| c.weights.as_ref())
            .map(|w| w.canary.weight);
        if sim.world.traffic.is_some() {
            assert_eq!(reported, Some(in_force), "status reports another weight");
        }
        if !promoted
            && let Some(i) = usize::try_from(index).ok().filter(|i| *i > 0)
            && steps.get(i).is_some_and(|s| s.pause.is_some())
        {
            assert_eq!(
                in_force,
                set_weight_at(steps, i - 1),
                "step {i} reached without the weight of the steps before it in force"
            );
        }
        if promoted && st.phase.as_deref() == Some("Healthy") {
            return true;
        }
        let idle = plan.actions.is_empty() && Some(&plan.status) == before.as_ref();
        if idle {
            match plan.wake_at {
                Some(at) if at > sim.world.now => sim.world.now = at,
                Some(_) => {}
                None => return false,
            }
        }
    }
    false
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Weights that go down as well as up: every step's weight is written in order, traffic
    /// leaves the canary before its pods (checked by the simulator on every plan), a step is
    /// done only once its weight is in force, and the update always finishes.
    #[test]
    fn weights_up_and_down_are_walked_in_order_and_finish(
        replicas in 1..8i32,
        steps in proptest::collection::vec(walk_step(), 1..7),
        dynamic in any::<bool>(),
        start_rate in 1..3i32,
    ) {
        let mut r = rollout(replicas, steps.clone(), true);
        if dynamic && let Some(c) = r.spec.strategy.as_mut().and_then(|s| s.canary.as_mut()) {
            c.dynamic_stable_scale = Some(true);
        }
        let mut sim = Sim::new(r);
        sim.start_rate = Some(start_rate);
        sim.run();
        let start = sim.weights.last().copied().unwrap_or(0);
        let written = sim.weights.len();
        sim.set_image("web:2");
        prop_assert!(walk_to_the_end(&mut sim, &steps, None), "the update never finished");
        let expected = expected_weights(&steps, start, 100);
        prop_assert_eq!(&sim.weights[written..], expected.as_slice());
    }

    /// Someone else changes the canary's weight at any moment of an update: Ramp writes its
    /// own weight back in the next plan, reports the weight in force, and still finishes with
    /// every step's weight in order.
    #[test]
    fn a_weight_changed_by_someone_else_is_put_back_and_the_update_finishes(
        replicas in 1..8i32,
        steps in proptest::collection::vec(walk_step(), 1..6),
        at in 0..12usize,
        foreign in 0..=100i32,
    ) {
        let mut sim = Sim::new(rollout(replicas, steps.clone(), true));
        sim.run();
        sim.set_image("web:2");
        prop_assert!(
            walk_to_the_end(&mut sim, &steps, Some((at, foreign))),
            "the update never finished"
        );
    }
}
