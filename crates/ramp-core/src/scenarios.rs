//! Edge scenarios on the simulator: delays, adoption, history, manual pause, dynamic stable
//! scale, managed routes, restarts and the exact event sequence.

use crate::sim::*;

fn rs_spec(sim: &Sim, image: &str) -> i32 {
    sim.replicas_by_image()
        .into_iter()
        .find(|(i, _)| i == image)
        .map_or(-1, |(_, r)| r)
}

#[test]
fn the_previous_stable_stays_up_for_the_scale_down_delay_after_promotion() {
    let mut sim = Sim::new(rollout(3, vec![weight(50)], true));
    assert!(sim.run());
    sim.set_image("web:2");
    // Tick until the promotion happened.
    let mut promoted_at = None;
    for _ in 0..20 {
        sim.tick();
        let st = sim.world.rollout.status.clone().unwrap();
        if st.stable_rs == st.current_pod_hash {
            promoted_at = Some(sim.world.now);
            break;
        }
    }
    let promoted_at = promoted_at.expect("the update never promoted");
    for _ in 0..5 {
        sim.tick();
    }
    assert_eq!(
        rs_spec(&sim, "web:1"),
        3,
        "old stable scaled down before the delay"
    );
    let deadline = sim
        .world
        .replica_sets
        .iter()
        .find_map(|rs| rs.scale_down_deadline)
        .expect("no scale-down-deadline annotation");
    let delay = deadline.duration_since(promoted_at).as_secs();
    assert!(
        (29..=31).contains(&delay),
        "deadline {delay}s after promotion"
    );
    assert!(sim.run());
    assert_eq!(rs_spec(&sim, "web:1"), 0);
    assert!(sim.world.now >= deadline);
    assert!(
        sim.world
            .replica_sets
            .iter()
            .all(|rs| rs.scale_down_deadline.is_none())
    );
}

#[test]
fn an_argo_managed_rollout_is_adopted_without_restarting_pods() {
    // The ReplicaSet Argo Rollouts made: its own hash, defaulted template, full size.
    let argo_hash = "6d4b9c8f7";
    let mut template = template("web:1");
    template
        .metadata
        .as_mut()
        .unwrap()
        .labels
        .as_mut()
        .unwrap()
        .insert(
            "rollouts-pod-template-hash".to_owned(),
            argo_hash.to_owned(),
        );
    template.spec.as_mut().unwrap().restart_policy = Some("Always".to_owned());
    template.spec.as_mut().unwrap().containers[0].image_pull_policy =
        Some("IfNotPresent".to_owned());
    let mut sim = Sim::new(rollout(3, vec![weight(20), pause(None)], true));
    sim.world.replica_sets.push(crate::ReplicaSetView {
        name: format!("web-{argo_hash}"),
        pod_template_hash: Some(argo_hash.to_owned()),
        revision: Some(4),
        spec_replicas: 3,
        replicas: 3,
        ready_replicas: 3,
        available_replicas: 3,
        status_current: true,
        scale_down_deadline: None,
        created_at: None,
        template: Some(template),
        being_deleted: false,
        ephemeral_metadata: None,
        revision_history: None,
    });
    for service in &mut sim.world.services {
        service.selector_hash = Some(argo_hash.to_owned());
        service.managed_by = Some("web".to_owned());
    }
    sim.world.rollout.status = Some(ramp_api::rollout::RolloutStatus {
        current_pod_hash: Some(argo_hash.to_owned()),
        stable_rs: Some(argo_hash.to_owned()),
        current_step_index: Some(2),
        ..Default::default()
    });
    let plan = crate::plan_rollout(&sim.world);
    assert!(
        plan.actions
            .iter()
            .all(|a| matches!(a, crate::Action::SetTraffic(_))),
        "{:?}",
        plan.actions
    );
    assert_eq!(plan.status.current_pod_hash.as_deref(), Some(argo_hash));
    assert_eq!(plan.status.phase.as_deref(), Some("Healthy"));
}

#[test]
fn a_fresh_rollout_adopts_a_matching_replica_set_instead_of_creating_one() {
    let mut sim = Sim::new(rollout(2, vec![], false));
    let mut template = template("web:1");
    template
        .metadata
        .as_mut()
        .unwrap()
        .labels
        .as_mut()
        .unwrap()
        .insert("rollouts-pod-template-hash".to_owned(), "abc".to_owned());
    sim.world.replica_sets.push(crate::ReplicaSetView {
        name: "web-abc".to_owned(),
        pod_template_hash: Some("abc".to_owned()),
        revision: Some(1),
        spec_replicas: 2,
        replicas: 2,
        ready_replicas: 2,
        available_replicas: 2,
        status_current: true,
        scale_down_deadline: None,
        created_at: None,
        template: Some(template),
        being_deleted: false,
        ephemeral_metadata: None,
        revision_history: None,
    });
    assert!(sim.run());
    assert!(
        !sim.log.iter().any(|a| matches!(
            a,
            crate::Action::CreateReplicaSet { .. } | crate::Action::ScaleReplicaSet { .. }
        )),
        "{:?}",
        sim.log
    );
    assert_eq!(
        sim.world
            .rollout
            .status
            .as_ref()
            .unwrap()
            .stable_rs
            .as_deref(),
        Some("abc")
    );
}

#[test]
fn old_replica_sets_beyond_the_history_limit_are_deleted() {
    let mut r = rollout(1, vec![], false);
    r.spec.revision_history_limit = Some(1);
    let mut sim = Sim::new(r);
    for image in ["web:1", "web:2", "web:3", "web:4"] {
        sim.set_image(image);
        assert!(sim.run());
    }
    let names: Vec<(String, i32)> = sim.replicas_by_image();
    assert_eq!(
        names,
        vec![("web:3".to_owned(), 0), ("web:4".to_owned(), 1)]
    );
    assert_eq!(
        sim.log
            .iter()
            .filter(|a| matches!(a, crate::Action::DeleteReplicaSet { .. }))
            .count(),
        2
    );
}

#[test]
fn spec_paused_halts_the_update() {
    let mut sim = Sim::new(rollout(4, vec![weight(25), pause(None), weight(50)], true));
    assert!(sim.run());
    sim.set_image("web:2");
    assert!(!sim.run());
    sim.world.rollout.spec.paused = Some(true);
    sim.status_mut().pause_conditions = None;
    let plan = crate::plan_rollout(&sim.world);
    assert!(plan.actions.is_empty(), "{:?}", plan.actions);
    assert_eq!(plan.status.phase.as_deref(), Some("Paused"));
    assert_eq!(plan.status.message.as_deref(), Some("manually paused"));
    sim.world.rollout.spec.paused = Some(false);
    assert!(sim.run());
    assert_eq!(sim.weights, vec![0, 25, 50, 100, 0]);
}

#[test]
fn basic_canary_abort_scales_the_canary_down_at_once() {
    let mut sim = Sim::new(rollout(4, vec![weight(50), pause(None)], false));
    assert!(sim.run());
    sim.set_image("web:2");
    assert!(!sim.run());
    assert_eq!(rs_spec(&sim, "web:2"), 2);
    let start = sim.world.now;
    sim.status_mut().abort = Some(true);
    assert!(sim.run());
    assert_eq!(rs_spec(&sim, "web:2"), 0);
    assert_eq!(rs_spec(&sim, "web:1"), 4);
    assert!(sim.world.now.duration_since(start).as_secs() < 10);
    let canary_service = sim
        .world
        .services
        .iter()
        .find(|s| s.name == "web-canary")
        .unwrap();
    let stable_hash = sim.world.rollout.status.as_ref().unwrap().stable_rs.clone();
    assert_eq!(canary_service.selector_hash, stable_hash);
}

#[test]
fn dynamic_stable_scale_shrinks_stable_as_traffic_leaves_and_restores_it_on_abort() {
    let mut r = rollout(
        4,
        vec![weight(25), pause(None), weight(75), pause(None)],
        true,
    );
    r.spec
        .strategy
        .as_mut()
        .unwrap()
        .canary
        .as_mut()
        .unwrap()
        .dynamic_stable_scale = Some(true);
    let mut sim = Sim::new(r);
    assert!(sim.run());
    sim.set_image("web:2");
    assert!(!sim.run());
    assert_eq!((rs_spec(&sim, "web:2"), rs_spec(&sim, "web:1")), (1, 3));
    promote(&mut sim);
    assert!(!sim.run());
    assert_eq!((rs_spec(&sim, "web:2"), rs_spec(&sim, "web:1")), (3, 1));
    sim.status_mut().abort = Some(true);
    sim.start_rate = Some(1);
    assert!(sim.run());
    assert_eq!((rs_spec(&sim, "web:2"), rs_spec(&sim, "web:1")), (0, 4));
    // Traffic stepped back through the setWeight values, never up.
    assert_eq!(sim.weights, vec![0, 25, 75, 25, 0]);
}

#[test]
fn header_routes_exist_during_the_update_and_go_at_promotion() {
    use ramp_api::rollout::{
        HeaderRoutingMatch, IstioTrafficRouting, IstioVirtualService, ManagedRoute,
        RolloutTrafficRouting, SetHeaderRoute, StringMatch,
    };
    let header = ramp_api::rollout::CanaryStep {
        set_header_route: Some(SetHeaderRoute {
            name: Some("canary-header".to_owned()),
            r#match: Some(vec![HeaderRoutingMatch {
                header_name: "x-canary".to_owned(),
                header_value: StringMatch {
                    exact: Some("yes".to_owned()),
                    ..Default::default()
                },
            }]),
        }),
        ..Default::default()
    };
    let mut r = rollout(2, vec![weight(0), header, pause(None), weight(50)], true);
    r.spec
        .strategy
        .as_mut()
        .unwrap()
        .canary
        .as_mut()
        .unwrap()
        .traffic_routing = Some(RolloutTrafficRouting {
        istio: Some(IstioTrafficRouting {
            virtual_service: Some(IstioVirtualService {
                name: "web".to_owned(),
                routes: Some(vec!["primary".to_owned()]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        managed_routes: Some(vec![ManagedRoute {
            name: "canary-header".to_owned(),
        }]),
        ..Default::default()
    });
    let mut sim = Sim::new(r);
    sim.world.router_objects[0].kind = "VirtualService".to_owned();
    assert!(sim.run());
    sim.set_image("web:2");
    assert!(!sim.run());
    let traffic = sim.world.traffic.clone().unwrap();
    assert_eq!(traffic.canary_weight, 0);
    assert_eq!(traffic.header_routes.len(), 1);
    assert_eq!(traffic.header_routes[0].name, "canary-header");
    promote(&mut sim);
    assert!(sim.run());
    let traffic = sim.world.traffic.clone().unwrap();
    assert!(traffic.header_routes.is_empty());
    assert_eq!(sim.weights, vec![0, 50, 100, 0]);
}

#[test]
fn a_controller_restart_mid_step_moves_no_traffic() {
    let mut sim = Sim::new(rollout(4, vec![weight(25), pause(None), weight(50)], true));
    assert!(sim.run());
    sim.set_image("web:2");
    assert!(!sim.run());
    sim.world.traffic = None;
    let plan = crate::plan_rollout(&sim.world);
    assert!(plan.actions.is_empty(), "{:?}", plan.actions);
    assert_eq!(Some(&plan.status), sim.world.rollout.status.as_ref());
}

#[test]
fn events_of_an_update_with_a_timed_pause() {
    let mut sim = Sim::new(rollout(1, vec![weight(50), pause(Some(3))], false));
    assert!(sim.run());
    sim.events.clear();
    sim.set_image("web:2");
    assert!(sim.run());
    let reasons: Vec<&str> = sim
        .events
        .iter()
        .map(|e| e.split(':').next().unwrap())
        .collect();
    eprintln!("{:#?}", sim.events);
    assert_eq!(
        reasons,
        vec![
            "RolloutUpdated",
            "NewReplicaSetCreated",
            "RolloutNotCompleted",
            "ScalingReplicaSet",
            "SwitchService",
            "RolloutStepCompleted",
            "RolloutPaused",
            "RolloutStepCompleted",
            "RolloutResumed",
            "ScalingReplicaSet",
            "RolloutCompleted",
            "SwitchService",
        ]
    );
    assert!(
        sim.events.contains(
            &"RolloutStepCompleted: Rollout step 1/2 completed (setWeight: 50)".to_owned()
        ),
        "{:?}",
        sim.events
    );
    let hash = sim
        .world
        .rollout
        .status
        .as_ref()
        .unwrap()
        .current_pod_hash
        .clone()
        .unwrap();
    let completed = format!(
        "RolloutCompleted: Rollout completed update to revision 2 ({hash}): Completed all 2 canary steps"
    );
    assert!(sim.events.contains(&completed), "{:?}", sim.events);
}

#[test]
fn rolling_back_within_the_rollback_window_skips_the_steps() {
    let mut r = rollout(2, vec![weight(50), pause(None)], true);
    r.spec.rollback_window = Some(ramp_api::rollout::RollbackWindowSpec { revisions: Some(1) });
    let mut sim = Sim::new(r);
    assert!(sim.run());
    sim.set_image("web:2");
    assert!(!sim.run());
    promote(&mut sim);
    assert!(sim.run());
    sim.weights.clear();
    // Back to web:1, the revision right before the stable one: no steps, no pause.
    sim.set_image("web:1");
    assert!(sim.run());
    assert!(
        sim.events
            .iter()
            .any(|e| e == "SkipSteps: Rollback to stable ReplicaSets within RollbackWindow")
    );
    assert_eq!(sim.weights, vec![100, 0]);
    assert_eq!(rs_spec(&sim, "web:1"), 2);
    let web1 = sim
        .world
        .replica_sets
        .iter()
        .find(|rs| {
            rs.name.ends_with(
                &sim.world
                    .rollout
                    .status
                    .as_ref()
                    .unwrap()
                    .stable_rs
                    .clone()
                    .unwrap(),
            )
        })
        .unwrap();
    assert_eq!(
        web1.revision,
        Some(3),
        "the rolled-back-to ReplicaSet becomes the newest revision"
    );
}

#[test]
fn rolling_back_outside_the_window_runs_the_steps() {
    let mut sim = Sim::new(rollout(2, vec![weight(50), pause(None)], true));
    assert!(sim.run());
    sim.set_image("web:2");
    assert!(!sim.run());
    promote(&mut sim);
    assert!(sim.run());
    sim.set_image("web:1");
    assert!(!sim.run(), "the pause step must run again");
}

#[test]
fn restart_at_evicts_old_pods_within_the_unavailability_budget() {
    let mut sim = Sim::new(rollout(4, vec![weight(50)], true));
    sim.world.pods = Some(Vec::new());
    assert!(sim.run());
    let restart = sim.world.now;
    sim.world.now = sim
        .world
        .now
        .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(5))
        .unwrap();
    sim.world.rollout.spec.restart_at = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        restart,
    ));
    let plan = crate::plan_rollout(&sim.world);
    // maxUnavailable 25 % of 4 = 1 pod at a time.
    let evictions = plan
        .actions
        .iter()
        .filter(|a| matches!(a, crate::Action::EvictPod { .. }))
        .count();
    assert_eq!(evictions, 1, "{:?}", plan.actions);
    assert_eq!(plan.status.phase.as_deref(), Some("Progressing"));
    assert_eq!(
        plan.status.message.as_deref(),
        Some("rollout is restarting")
    );
    assert!(sim.run());
    let st = sim.world.rollout.status.clone().unwrap();
    assert_eq!(st.restarted_at.map(|t| t.0), Some(restart));
    assert_eq!(st.phase.as_deref(), Some("Healthy"));
    assert_eq!(
        sim.log
            .iter()
            .filter(|a| matches!(a, crate::Action::EvictPod { .. }))
            .count(),
        4
    );
    assert!(
        sim.world
            .pods
            .as_ref()
            .unwrap()
            .iter()
            .all(|p| p.created_at.unwrap() >= restart)
    );
}

#[test]
fn set_canary_scale_sizes_the_canary_apart_from_its_weight() {
    use ramp_api::rollout::{CanaryStep, SetCanaryScale};
    let scale = |s: SetCanaryScale| CanaryStep {
        set_canary_scale: Some(s),
        ..Default::default()
    };
    let steps = vec![
        pause(None),
        scale(SetCanaryScale {
            weight: Some(25),
            ..Default::default()
        }),
        pause(None),
        weight(50),
        pause(None),
        scale(SetCanaryScale {
            replicas: Some(3),
            ..Default::default()
        }),
        pause(None),
        scale(SetCanaryScale {
            match_traffic_weight: Some(true),
            ..Default::default()
        }),
        pause(None),
    ];
    let mut sim = Sim::new(rollout(4, steps, true));
    assert!(sim.run());
    sim.set_image("web:2");
    let mut sizes = Vec::new();
    while !sim.run() {
        sizes.push((rs_spec(&sim, "web:2"), rs_spec(&sim, "web:1")));
        promote(&mut sim);
    }
    assert_eq!(sizes, vec![(0, 4), (1, 4), (1, 4), (3, 4), (2, 4)]);
    assert_eq!(sim.weights, vec![0, 50, 100, 0]);
    // Promoted: the old stable waits out scaleDownDelaySeconds, then goes.
    assert_eq!((rs_spec(&sim, "web:2"), rs_spec(&sim, "web:1")), (4, 0));
}

#[test]
fn mirror_and_header_routes_follow_managed_route_order_and_removal() {
    use ramp_api::rollout::{
        CanaryStep, HeaderRoutingMatch, IstioTrafficRouting, IstioVirtualService, ManagedRoute,
        RolloutTrafficRouting, RouteMatch, SetHeaderRoute, SetMirrorRoute, StringMatch,
    };
    let exact = |v: &str| StringMatch {
        exact: Some(v.to_owned()),
        ..Default::default()
    };
    let header = |matches: Option<Vec<HeaderRoutingMatch>>| CanaryStep {
        set_header_route: Some(SetHeaderRoute {
            name: Some("by-header".to_owned()),
            r#match: matches,
        }),
        ..Default::default()
    };
    let mirror = CanaryStep {
        set_mirror_route: Some(SetMirrorRoute {
            name: "mirror".to_owned(),
            r#match: Some(vec![RouteMatch {
                method: Some(exact("GET")),
                ..Default::default()
            }]),
            percentage: Some(35),
        }),
        ..Default::default()
    };
    let steps = vec![
        weight(10),
        mirror,
        header(Some(vec![HeaderRoutingMatch {
            header_name: "x-v".to_owned(),
            header_value: exact("2"),
        }])),
        pause(None),
        header(None),
        pause(None),
    ];
    let mut r = rollout(2, steps, true);
    r.spec
        .strategy
        .as_mut()
        .unwrap()
        .canary
        .as_mut()
        .unwrap()
        .traffic_routing = Some(RolloutTrafficRouting {
        istio: Some(IstioTrafficRouting {
            virtual_service: Some(IstioVirtualService {
                name: "web".to_owned(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        managed_routes: Some(vec![
            ManagedRoute {
                name: "by-header".to_owned(),
            },
            ManagedRoute {
                name: "mirror".to_owned(),
            },
        ]),
        ..Default::default()
    });
    let mut sim = Sim::new(r);
    sim.world.router_objects[0].kind = "VirtualService".to_owned();
    assert!(sim.run());
    sim.set_image("web:2");
    assert!(!sim.run());
    let traffic = sim.world.traffic.clone().unwrap();
    assert_eq!(
        traffic
            .header_routes
            .iter()
            .map(|h| h.name.as_str())
            .collect::<Vec<_>>(),
        vec!["by-header"]
    );
    assert_eq!(traffic.mirror_routes.len(), 1);
    assert_eq!(traffic.mirror_routes[0].percentage, 35);
    promote(&mut sim);
    assert!(!sim.run());
    let traffic = sim.world.traffic.clone().unwrap();
    assert!(
        traffic.header_routes.is_empty(),
        "a header route without match is removed"
    );
    assert_eq!(traffic.mirror_routes.len(), 1);
    promote(&mut sim);
    assert!(sim.run());
    let traffic = sim.world.traffic.clone().unwrap();
    assert!(traffic.mirror_routes.is_empty() && traffic.header_routes.is_empty());
}

#[test]
fn a_new_image_mid_rollout_with_dynamic_stable_scale_moves_traffic_only_to_the_newest() {
    // Found by the property test: the old canary kept its share while the newest revision's
    // steps ran, and received 100 % at "promotion".
    let mut r = rollout(4, vec![weight(25), pause(None)], true);
    r.spec
        .strategy
        .as_mut()
        .unwrap()
        .canary
        .as_mut()
        .unwrap()
        .dynamic_stable_scale = Some(true);
    let mut sim = Sim::new(r);
    sim.start_rate = Some(1);
    assert!(sim.run());
    sim.set_image("web:2");
    assert!(!sim.run());
    sim.set_image("web:3");
    assert!(!sim.run());
    let traffic = sim.world.traffic.clone().unwrap();
    let newest = sim
        .world
        .rollout
        .status
        .as_ref()
        .unwrap()
        .current_pod_hash
        .clone();
    assert_eq!((traffic.canary_weight, traffic.canary_hash), (25, newest));
    assert_eq!(rs_spec(&sim, "web:2"), 0);
    promote(&mut sim);
    assert!(sim.run());
    assert_eq!(sim.weights, vec![0, 25, 0, 25, 100, 0]);
}
