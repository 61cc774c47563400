//! Traffic scenarios on the simulator: a step that lowers the weight, a router someone else
//! changed, and what the status says while a step waits.

use crate::plan::Action;
use crate::sim::*;
use crate::traffic::TrafficReading;

fn rs_name(sim: &Sim, image: &str) -> String {
    sim.world
        .replica_sets
        .iter()
        .find(|rs| {
            rs.template
                .as_ref()
                .and_then(|t| t.spec.as_ref())
                .and_then(|s| s.containers[0].image.as_deref())
                == Some(image)
        })
        .map(|rs| rs.name.clone())
        .unwrap_or_default()
}

fn reported_weight(sim: &Sim) -> Option<i32> {
    sim.world
        .rollout
        .status
        .as_ref()?
        .canary
        .as_ref()?
        .weights
        .as_ref()
        .map(|w| w.canary.weight)
}

#[test]
fn a_lower_weight_is_written_before_the_canary_shrinks_and_the_update_finishes() {
    let steps = vec![weight(99), pause(Some(1)), weight(2), pause(Some(1))];
    let mut sim = Sim::new(rollout(2, steps, true));
    assert!(sim.run());
    sim.set_image("web:2");
    let log_from = sim.log.len();
    assert!(sim.run(), "the update hung");
    let st = sim.world.rollout.status.clone().unwrap();
    assert_eq!(st.stable_rs, st.current_pod_hash);
    assert_eq!(sim.weights, vec![0, 99, 2, 100, 0]);
    // Traffic and canary pods in the order they were written.
    let canary = rs_name(&sim, "web:2");
    let moves: Vec<String> = sim.log[log_from..]
        .iter()
        .filter_map(|a| match a {
            Action::SetTraffic(t) => Some(format!("weight {}", t.canary_weight)),
            Action::ScaleReplicaSet { name, to, .. } if *name == canary => {
                Some(format!("canary {to}"))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        moves,
        [
            "canary 2",
            "weight 99",
            "weight 2",
            "canary 1",
            "canary 2",
            "weight 100",
            "weight 0"
        ]
    );
}

#[test]
fn a_changed_router_is_put_back_and_the_status_says_what_is_in_force_meanwhile() {
    let mut sim = Sim::new(rollout(5, vec![weight(20), pause(None)], true));
    assert!(sim.run());
    sim.set_image("web:2");
    assert!(!sim.run());
    assert_eq!(reported_weight(&sim), Some(20));

    // Someone puts half the traffic on the one canary pod.
    sim.world.traffic_read = Some(TrafficReading {
        canary_weight: 50,
        holds_last_write: false,
    });
    let plan = crate::plan_rollout(&sim.world);
    let writes: Vec<i32> = plan
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::SetTraffic(t) => Some(t.canary_weight),
            _ => None,
        })
        .collect();
    assert_eq!(writes, [20]);
    assert!(
        plan.events
            .iter()
            .any(|e| e.message == "Traffic weight updated from 50 to 20"),
        "{:?}",
        plan.events
    );

    // With the stable unable to take its share back, the write waits, and the status reports
    // the 50 % in force rather than the 20 % Ramp wants.
    let stable = rs_name(&sim, "web:1");
    for rs in &mut sim.world.replica_sets {
        if rs.name == stable {
            rs.available_replicas = 1;
        }
    }
    let plan = crate::plan_rollout(&sim.world);
    assert!(
        !plan
            .actions
            .iter()
            .any(|a| matches!(a, Action::SetTraffic(_))),
        "{:?}",
        plan.actions
    );
    let weights = plan
        .status
        .canary
        .as_ref()
        .unwrap()
        .weights
        .clone()
        .unwrap();
    assert_eq!((weights.canary.weight, weights.stable.weight), (50, 50));
}

#[test]
fn a_changed_header_route_is_put_back_even_with_the_same_weight() {
    let mut sim = Sim::new(rollout(5, vec![weight(20), pause(None)], true));
    assert!(sim.run());
    sim.set_image("web:2");
    assert!(!sim.run());
    // Same weight, another field of Ramp's changed (a route, a subset).
    sim.world.traffic_read = Some(TrafficReading {
        canary_weight: 20,
        holds_last_write: false,
    });
    let plan = crate::plan_rollout(&sim.world);
    let intent = sim.world.traffic.clone().unwrap();
    assert_eq!(plan.actions, vec![Action::SetTraffic(intent)]);
    // A weight unchanged is no traffic event.
    assert!(
        plan.events
            .iter()
            .all(|e| e.reason != "TrafficWeightUpdated"),
        "{:?}",
        plan.events
    );
}

#[test]
fn a_step_waiting_for_pods_or_traffic_says_so() {
    let steps = vec![weight(40), pause(Some(1)), weight(80), pause(Some(1))];
    let mut sim = Sim::new(rollout(5, steps, true));
    assert!(sim.run());
    sim.set_image("web:2");
    sim.start_rate = Some(1);
    let mut messages = Vec::new();
    for _ in 0..40 {
        sim.tick();
        let st = sim.world.rollout.status.clone().unwrap();
        if let Some(message) = st.message.filter(|m| !m.is_empty())
            && messages.last() != Some(&message)
        {
            messages.push(message);
        }
        if st.stable_rs == st.current_pod_hash {
            break;
        }
    }
    let canary = rs_name(&sim, "web:2");
    assert!(
        messages
            .iter()
            .all(|m| m != "waiting for all steps to complete"),
        "{messages:#?}"
    );
    for expected in [
        format!(
            "waiting for step 1/4 (setWeight: 40): canary ReplicaSet {canary} at 1 of 2 pods available, canary weight 0 of 40"
        ),
        format!(
            "waiting for step 3/4 (setWeight: 80): canary ReplicaSet {canary} at 3 of 4 pods available, canary weight 40 of 80"
        ),
        format!(
            "waiting for promotion: canary ReplicaSet {canary} at 4 of 5 pods available, canary weight 80 of 100"
        ),
    ] {
        assert!(
            messages.contains(&expected),
            "{expected:?} not in {messages:#?}"
        );
    }
}

/// Runs ticks until the update settles, returning every plan's actions.
fn plans_until_settled(sim: &mut Sim) -> Vec<Vec<Action>> {
    let mut plans = Vec::new();
    for _ in 0..200 {
        let plan = sim.tick();
        let idle = plan.actions.is_empty();
        plans.push(plan.actions);
        let st = sim.world.rollout.status.clone().unwrap_or_default();
        if idle && st.stable_rs == st.current_pod_hash {
            return plans;
        }
    }
    panic!("the update never finished: {:?}", sim.weights);
}

#[test]
fn a_lower_weight_waits_until_stable_has_the_pods_for_its_larger_share() {
    // Found by `ramp bench chaos` (seed 24): with dynamicStableScale, stable at 2 of 3 pods
    // for its 40 %, the step to 10 % put 90 % on those 2 pods (a share of 2.7 pods rounded
    // down) before the third was up.
    let steps = vec![weight(60), pause(Some(1)), weight(10), pause(Some(1))];
    let mut r = rollout(3, steps, true);
    if let Some(c) = r.spec.strategy.as_mut().and_then(|s| s.canary.as_mut()) {
        c.dynamic_stable_scale = Some(true);
    }
    let mut sim = Sim::new(r);
    sim.start_rate = Some(1);
    assert!(sim.run());
    sim.set_image("web:2");
    let stable = rs_name(&sim, "web:1");
    let mut lowered_on = None;
    for _ in 0..200 {
        let available = sim
            .world
            .replica_sets
            .iter()
            .find(|rs| rs.name == stable)
            .map_or(0, |rs| rs.available_replicas);
        let plan = sim.tick();
        if plan
            .actions
            .iter()
            .any(|a| matches!(a, Action::SetTraffic(t) if t.canary_weight == 10))
        {
            lowered_on = Some(available);
        }
        let st = sim.world.rollout.status.clone().unwrap_or_default();
        if plan.actions.is_empty() && st.stable_rs == st.current_pod_hash {
            break;
        }
    }
    assert_eq!(lowered_on, Some(3), "weights {:?}", sim.weights);
    assert_eq!(sim.weights[sim.weights.len() - 4..], [60, 10, 100, 0]);
}

#[test]
fn full_weight_waits_for_a_canary_scaled_down_then_up_in_one_reconcile() {
    // Found by `ramp bench chaos` (seed 2): the last step lowered the weight, the canary went
    // from 2 pods to 1 and, in the same reconcile, back to 2 for the promotion; the plan still
    // counted the pod being removed as available and put 100 % on one pod.
    let steps = vec![weight(99), pause(Some(1)), weight(10)];
    let mut sim = Sim::new(rollout(2, steps, true));
    assert!(sim.run());
    sim.set_image("web:2");
    let canary = rs_name(&sim, "web:2");
    let plans = plans_until_settled(&mut sim);
    for actions in &plans {
        let scales_canary = actions
            .iter()
            .any(|a| matches!(a, Action::ScaleReplicaSet { name, .. } if *name == canary));
        let full = actions
            .iter()
            .any(|a| matches!(a, Action::SetTraffic(t) if t.canary_weight == 100));
        assert!(!(scales_canary && full), "one plan: {actions:?}");
    }
    assert_eq!(sim.weights[sim.weights.len() - 4..], [99, 10, 100, 0]);
}

#[test]
fn the_canary_service_stays_on_the_canary_when_the_recorded_hash_is_older_than_its_selector() {
    // Found by `ramp bench chaos` (seed 210): a reconcile switched the canary Service to the
    // new pods and failed before writing its status; the next one, with no memory of its last
    // router write, took the canary's hash from that stale status, saw the stable unable to
    // take the whole share, and "held" the canary Service on the stable hash: the canary's
    // 25 % went to a stable sized for 75 %.
    let mut r = rollout(4, vec![weight(25), pause(None)], true);
    if let Some(c) = r.spec.strategy.as_mut().and_then(|s| s.canary.as_mut()) {
        c.dynamic_stable_scale = Some(true);
    }
    let mut sim = Sim::new(r);
    assert!(sim.run());
    sim.set_image("web:2");
    assert!(!sim.run());
    assert_eq!(reported_weight(&sim), Some(25));
    let stable = sim.world.rollout.status.clone().unwrap().stable_rs.unwrap();
    // The controller restarted (no memory of its writes) and the status still names the
    // stable as the canary's hash.
    sim.world.traffic = None;
    sim.world.traffic_read = Some(TrafficReading {
        canary_weight: 25,
        holds_last_write: true,
    });
    if let Some(weights) = sim
        .status_mut()
        .canary
        .as_mut()
        .and_then(|c| c.weights.as_mut())
    {
        weights.canary.pod_template_hash = Some(stable.clone());
    }
    let plan = sim.tick();
    let back_on_stable = plan.actions.iter().any(|a| {
        matches!(a, Action::PointService { service, pod_template_hash }
            if service == "web-canary" && *pod_template_hash == stable)
    });
    assert!(!back_on_stable, "{:?}", plan.actions);
}

#[test]
fn a_canary_shrunk_for_a_lower_weight_grows_again_only_once_the_shrinking_is_counted() {
    // Found by `ramp bench chaos` (seed 237): 10 % then 60 %; the canary went from 3 pods to 1
    // and at once back to 3. The ReplicaSet controller's status, written while it removed two
    // pods, still counted 3 available for the new spec, and 60 % followed onto the one pod left.
    let steps = vec![weight(60), weight(10), pause(None), weight(60), pause(None)];
    let mut sim = Sim::new(rollout(5, steps, true));
    assert!(sim.run());
    sim.set_image("web:2");
    assert!(!sim.run());
    assert_eq!(reported_weight(&sim), Some(10));
    let canary = rs_name(&sim, "web:2");
    // The canary was shrunk to 1 for 10 %; its status still counts the 3 pods being removed.
    let rs = |sim: &mut Sim| {
        sim.world
            .replica_sets
            .iter_mut()
            .find(|rs| rs.name == canary)
            .expect("canary")
            .clone()
    };
    assert_eq!(rs(&mut sim).spec_replicas, 1);
    for view in &mut sim.world.replica_sets {
        if view.name == canary {
            view.replicas = 3;
            view.available_replicas = 3;
        }
    }
    promote(&mut sim);
    let plan = sim.tick();
    let grows = |actions: &[Action]| {
        actions.iter().any(|a| {
            matches!(a, Action::ScaleReplicaSet { name, from, to } if *name == canary && to > from)
        })
    };
    assert!(!grows(&plan.actions), "{:?}", plan.actions);
    // Once the status counts only the pod kept, the canary grows for 60 %.
    for view in &mut sim.world.replica_sets {
        if view.name == canary {
            view.replicas = 1;
            view.available_replicas = 1;
        }
    }
    let plan = sim.tick();
    assert!(grows(&plan.actions), "{:?}", plan.actions);
}
