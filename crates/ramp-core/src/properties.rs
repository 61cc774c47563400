//! Property tests: random rollouts, step lists, pod start rates and user actions, run on the
//! simulator, which checks every plan for the safety rules as it applies it.

use crate::plan::Action;
use crate::sim::*;
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
