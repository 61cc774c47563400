//! Every example of research doc §4.4, one test per row, named after it.

use super::*;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use ramp_api::rollout::{RolloutTrafficRouting, SetCanaryScale};

fn budget(replicas: i32, surge: IntOrString, unavailable: IntOrString) -> RolloutBudget {
    let strategy = CanaryStrategy {
        max_surge: Some(surge),
        max_unavailable: Some(unavailable),
        ..CanaryStrategy::default()
    };
    strategy.rollout_budget(replicas).unwrap()
}

fn n(v: i32) -> IntOrString {
    IntOrString::Int(v)
}

fn pct(v: &str) -> IntOrString {
    IntOrString::String(v.to_owned())
}

fn pods(spec: i32, available: i32) -> Option<Pods> {
    Some(Pods { spec, available })
}

fn basic(
    replicas: i32,
    weight: i32,
    budget: RolloutBudget,
    stable: Option<Pods>,
    canary: Option<Pods>,
    others_spec: i32,
) -> (i32, i32) {
    basic_canary_counts(&BasicCanaryInput {
        replicas,
        weight,
        max_weight: 100,
        budget,
        canary,
        stable,
        others_spec,
    })
}

#[test]
fn row01_r10_w20_surge2_unavail0() {
    assert_eq!(
        basic(10, 20, budget(10, n(2), n(0)), pods(10, 10), pods(0, 0), 0),
        (2, 10)
    );
}

#[test]
fn row02_r10_w20_surge20pct_canary_ready_shrinks_stable() {
    let b = budget(10, pct("20%"), n(0));
    assert_eq!(basic(10, 20, b, pods(10, 10), pods(2, 2), 0), (2, 8));
}

#[test]
fn row03_r10_w30_surge_limited() {
    assert_eq!(
        basic(10, 30, budget(10, n(2), n(0)), pods(10, 10), pods(0, 0), 0),
        (2, 10)
    );
}

#[test]
fn row04_r10_w20_unavailable_limited() {
    assert_eq!(
        basic(10, 20, budget(10, n(0), n(2)), pods(10, 10), pods(0, 0), 0),
        (0, 8)
    );
}

#[test]
fn row05_r10_w50_surge2_unavail1() {
    assert_eq!(
        basic(10, 50, budget(10, n(2), n(1)), pods(10, 10), pods(0, 0), 0),
        (2, 9)
    );
}

#[test]
fn row06_r10_w0_canary_removed() {
    assert_eq!(
        basic(10, 0, budget(10, n(1), n(1)), pods(10, 10), pods(1, 1), 0),
        (0, 10)
    );
}

#[test]
fn row07_r10_w100_stable_removed() {
    assert_eq!(
        basic(10, 100, budget(10, n(1), n(1)), pods(1, 1), pods(10, 10), 0),
        (10, 0)
    );
}

#[test]
fn row08_r1_w20_never_zero_canary() {
    assert_eq!(
        basic(1, 20, budget(1, n(1), n(0)), pods(1, 1), pods(0, 0), 0),
        (1, 1)
    );
}

#[test]
fn row09_r1_w49_no_surge_rounds_down() {
    assert_eq!(
        basic(1, 49, budget(1, n(0), n(1)), pods(1, 1), pods(0, 0), 0),
        (0, 1)
    );
}

#[test]
fn row10_r1_w51_first_shrink_stable() {
    assert_eq!(
        basic(1, 51, budget(1, n(0), n(1)), pods(1, 1), pods(0, 0), 0),
        (0, 0)
    );
}

#[test]
fn row11_r10_w30_older_replica_set_drains_first() {
    assert_eq!(
        basic(10, 30, budget(10, n(1), n(0)), pods(1, 1), pods(0, 0), 3),
        (1, 7)
    );
}

#[test]
fn row12_r10_w30_stable_partly_available() {
    assert_eq!(
        basic(10, 30, budget(10, n(0), n(3)), pods(8, 5), pods(4, 4), 0),
        (3, 7)
    );
}

#[test]
fn row13_r10_w5_two_passes() {
    let b = budget(10, n(0), n(1));
    assert_eq!(basic(10, 5, b, pods(10, 10), pods(0, 0), 0), (0, 9));
    assert_eq!(basic(10, 5, b, pods(9, 9), pods(0, 0), 0), (1, 9));
}

#[test]
fn row14_r10_w10_both_zero_percent_forces_one_unavailable() {
    let b = budget(10, pct("0%"), pct("0%"));
    assert_eq!(b.max_unavailable, 1);
    assert_eq!(basic(10, 10, b, pods(10, 10), pods(0, 0), 0), (0, 9));
}

#[test]
fn row15_r4_w100_stable_unavailable() {
    assert_eq!(
        basic(4, 100, budget(4, n(1), n(0)), pods(4, 1), pods(0, 0), 0),
        (1, 4)
    );
}

#[test]
fn row16_r4_abort_reducing_weight() {
    let b = budget(4, n(1), n(0));
    assert_eq!(basic(4, 0, b, pods(0, 0), pods(4, 4), 0), (4, 1));
    assert_eq!(basic(4, 0, b, pods(1, 1), pods(4, 4), 0), (3, 1));
}

fn promote_full_weight(steps: Vec<CanaryStep>) -> i32 {
    let strategy = CanaryStrategy {
        steps: Some(steps),
        ..CanaryStrategy::default()
    };
    let input = WeightInputs {
        strategy: &strategy,
        replicas: 4,
        promote_full: true,
        update_in_progress: true,
        aborted: false,
        current_step_index: Some(0),
        stable_available: 4,
    };
    match desired_scale(&input) {
        CanaryScale::Weight(w) => w,
        CanaryScale::Replicas(r) => panic!("unexpected replicas {r}"),
    }
}

fn weight_step(w: i32) -> CanaryStep {
    CanaryStep {
        set_weight: Some(w),
        ..CanaryStep::default()
    }
}

#[test]
fn row17_r4_promote_full_ignores_weight() {
    let w = promote_full_weight(vec![weight_step(1)]);
    assert_eq!(w, 100);
    assert_eq!(
        basic(4, w, budget(4, n(4), n(4)), pods(4, 4), pods(0, 0), 0),
        (4, 0)
    );
}

#[test]
fn row18_r4_promote_full_still_surge_bound() {
    let w = promote_full_weight(vec![weight_step(1)]);
    assert_eq!(
        basic(4, w, budget(4, n(3), n(0)), pods(4, 4), pods(0, 0), 0),
        (3, 4)
    );
}

fn routed(extra: impl FnOnce(&mut CanaryStrategy)) -> CanaryStrategy {
    let mut strategy = CanaryStrategy {
        traffic_routing: Some(RolloutTrafficRouting::default()),
        ..CanaryStrategy::default()
    };
    extra(&mut strategy);
    strategy
}

fn scale_step(scale: SetCanaryScale) -> CanaryStep {
    CanaryStep {
        set_canary_scale: Some(scale),
        ..CanaryStep::default()
    }
}

fn inputs(strategy: &CanaryStrategy, replicas: i32, aborted: bool) -> WeightInputs<'_> {
    WeightInputs {
        strategy,
        replicas,
        promote_full: false,
        update_in_progress: true,
        aborted,
        current_step_index: Some(0),
        stable_available: replicas,
    }
}

fn routed_counts(
    strategy: &CanaryStrategy,
    replicas: i32,
    aborted: bool,
    written: Option<WrittenWeights>,
) -> (i32, i32) {
    let scale = desired_scale(&inputs(strategy, replicas, aborted));
    traffic_routed_counts(strategy, replicas, scale, aborted, written)
}

#[test]
fn row19_tr_set_canary_scale_replicas_9() {
    let s = routed(|s| {
        s.steps = Some(vec![scale_step(SetCanaryScale {
            replicas: Some(9),
            ..Default::default()
        })]);
    });
    assert_eq!(routed_counts(&s, 1, false, None), (9, 1));
}

#[test]
fn row20_tr_set_canary_scale_weight_200() {
    let s = routed(|s| {
        s.steps = Some(vec![scale_step(SetCanaryScale {
            weight: Some(200),
            ..Default::default()
        })]);
    });
    assert_eq!(routed_counts(&s, 4, false, None), (8, 4));
}

#[test]
fn row21_tr_w20_match_traffic_weight() {
    let s = routed(|s| {
        s.steps = Some(vec![
            weight_step(20),
            scale_step(SetCanaryScale {
                match_traffic_weight: Some(true),
                ..Default::default()
            }),
        ]);
    });
    let mut input = inputs(&s, 10, false);
    input.current_step_index = Some(1);
    let scale = desired_scale(&input);
    assert_eq!(traffic_routed_counts(&s, 10, scale, false, None), (2, 10));
}

#[test]
fn row22_tr_w5_min_pods_per_replica_set_2() {
    let s = routed(|s| {
        s.steps = Some(vec![weight_step(5)]);
        s.min_pods_per_replica_set = Some(2);
    });
    assert_eq!(routed_counts(&s, 10, false, None), (2, 10));
}

#[test]
fn row23_tr_aborted_set_canary_scale_honoured_only_without_abort_delay() {
    let steps = vec![scale_step(SetCanaryScale {
        replicas: Some(1),
        ..Default::default()
    })];
    let keep = routed(|s| {
        s.steps = Some(steps.clone());
        s.abort_scale_down_delay_seconds = Some(0);
    });
    assert_eq!(routed_counts(&keep, 1, true, None), (1, 1));
    let delayed = routed(|s| {
        s.steps = Some(steps.clone());
        s.abort_scale_down_delay_seconds = Some(30);
    });
    assert_eq!(routed_counts(&delayed, 1, true, None), (0, 1));
}

fn dynamic(steps: Vec<CanaryStep>) -> CanaryStrategy {
    routed(|s| {
        s.steps = Some(steps);
        s.dynamic_stable_scale = Some(true);
    })
}

#[test]
fn row24_tr_dynamic_w10_router_10_90() {
    let s = dynamic(vec![weight_step(10)]);
    let written = Some(WrittenWeights {
        canary: 10,
        stable: 90,
    });
    assert_eq!(routed_counts(&s, 10, false, written), (1, 9));
}

#[test]
fn row25_tr_dynamic_w20_stable_waits_for_traffic() {
    let s = dynamic(vec![weight_step(20)]);
    let written = Some(WrittenWeights {
        canary: 10,
        stable: 90,
    });
    assert_eq!(routed_counts(&s, 10, false, written), (2, 9));
}

#[test]
fn row26_tr_dynamic_aborted_canary_kept_while_it_has_traffic() {
    let s = dynamic(vec![weight_step(20)]);
    let written = Some(WrittenWeights {
        canary: 20,
        stable: 80,
    });
    assert_eq!(routed_counts(&s, 10, true, written), (2, 10));
}

#[test]
fn ideal_split_examples() {
    assert_eq!(approximate_weighted_counts(3, 50, 100, 0), (2, 1));
    assert_eq!(approximate_weighted_counts(3, 10, 100, 1), (1, 3));
    assert_eq!(approximate_weighted_counts(2, 99, 100, 0), (1, 1));
    assert_eq!(approximate_weighted_counts(2, 99, 100, 1), (2, 1));
    assert_eq!(approximate_weighted_counts(10, 24, 100, 1), (3, 8));
    assert_eq!(approximate_weighted_counts(10, 15, 100, 0), (2, 8));
    assert_eq!(approximate_weighted_counts(10, 99, 100, 1), (10, 1));
}

#[test]
fn traffic_weight_to_replicas_rounds_up() {
    assert_eq!(traffic_weight_to_replicas(10, 25, 100), 3);
    assert_eq!(traffic_weight_to_replicas(10, 33, 100), 4);
    assert_eq!(traffic_weight_to_replicas(10, 99, 100), 10);
}

#[test]
fn a_leading_pause_keeps_weight_zero_and_past_the_end_is_max() {
    let pause = CanaryStep {
        pause: Some(Default::default()),
        ..CanaryStep::default()
    };
    let s = CanaryStrategy {
        steps: Some(vec![pause, weight_step(30)]),
        ..CanaryStrategy::default()
    };
    let mut input = inputs(&s, 10, false);
    assert_eq!(desired_scale(&input), CanaryScale::Weight(0));
    input.current_step_index = Some(1);
    assert_eq!(desired_scale(&input), CanaryScale::Weight(30));
    input.current_step_index = Some(2);
    assert_eq!(desired_scale(&input), CanaryScale::Weight(100));
}

#[test]
fn e2e_set_canary_scale_sequence_on_four_replicas() {
    let pause = CanaryStep {
        pause: Some(Default::default()),
        ..CanaryStep::default()
    };
    let s = routed(|s| {
        s.steps = Some(vec![
            pause.clone(),
            scale_step(SetCanaryScale {
                weight: Some(25),
                ..Default::default()
            }),
            weight_step(50),
            scale_step(SetCanaryScale {
                replicas: Some(3),
                ..Default::default()
            }),
            scale_step(SetCanaryScale {
                match_traffic_weight: Some(true),
                ..Default::default()
            }),
        ]);
    });
    let counts: Vec<(i32, i32)> = (0..5)
        .map(|i| {
            let mut input = inputs(&s, 4, false);
            input.current_step_index = Some(i);
            traffic_routed_counts(&s, 4, desired_scale(&input), false, None)
        })
        .collect();
    assert_eq!(counts, vec![(0, 4), (1, 4), (1, 4), (3, 4), (2, 4)]);
}

/// Upstream's TestRolloutScalingDuringUpdate after scaling 8 → 4: the canary never became
/// available, the stable's 4 available pods are all needed (maxUnavailable 0), so the excess
/// over replicas + maxSurge comes off the canary.
#[test]
fn scaled_down_mid_update_with_an_unavailable_canary_stays_within_the_surge() {
    assert_eq!(
        basic(4, 100, budget(4, n(2), n(0)), pods(4, 4), pods(6, 0), 0),
        (2, 4)
    );
}
