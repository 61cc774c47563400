//! A deterministic world simulator for tests: plans are applied, pods start (all at once or a
//! few per tick), time jumps to the next wake-up, and every plan is checked for the safety
//! rules as it is applied.

use crate::plan::{Action, RolloutPlan};
use crate::plan_rollout;
use crate::snapshot::{RouterObjectView, ServiceView, Snapshot};
use crate::traffic::TrafficIntent;
use crate::world::apply_plan;
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use ramp_api::rollout::{
    CanaryStep, CanaryStrategy, NginxTrafficRouting, Rollout, RolloutPause, RolloutSpec,
    RolloutStrategy, RolloutTrafficRouting,
};
use std::collections::BTreeMap;

pub fn weight(w: i32) -> CanaryStep {
    CanaryStep {
        set_weight: Some(w),
        ..CanaryStep::default()
    }
}

pub fn pause(seconds: Option<i32>) -> CanaryStep {
    CanaryStep {
        pause: Some(RolloutPause {
            duration: seconds.map(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int),
        }),
        ..CanaryStep::default()
    }
}

pub fn template(image: &str) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(BTreeMap::from([("app".to_owned(), "web".to_owned())])),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "web".to_owned(),
                image: Some(image.to_owned()),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
    }
}

/// A canary rollout `web` with canary/stable services; `routed` adds an NGINX router.
pub fn rollout(replicas: i32, steps: Vec<CanaryStep>, routed: bool) -> Rollout {
    let strategy = CanaryStrategy {
        canary_service: Some("web-canary".to_owned()),
        stable_service: Some("web-stable".to_owned()),
        steps: Some(steps),
        traffic_routing: routed.then(|| RolloutTrafficRouting {
            nginx: Some(NginxTrafficRouting {
                stable_ingress: Some("web".to_owned()),
                ..NginxTrafficRouting::default()
            }),
            ..RolloutTrafficRouting::default()
        }),
        ..CanaryStrategy::default()
    };
    let mut rollout = Rollout::new(
        "web",
        RolloutSpec {
            replicas: Some(replicas),
            selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([("app".to_owned(), "web".to_owned())])),
                ..LabelSelector::default()
            }),
            template: Some(template("web:1")),
            strategy: Some(RolloutStrategy {
                canary: Some(strategy),
                ..RolloutStrategy::default()
            }),
            ..RolloutSpec::default()
        },
    );
    rollout.metadata.namespace = Some("default".to_owned());
    rollout.metadata.generation = Some(1);
    rollout
}

pub fn t0() -> Timestamp {
    Timestamp::from_second(1_800_000_000).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// The world of one rollout and what happened to it.
pub struct Sim {
    pub world: Snapshot,
    /// Canary weights in the order they were written.
    pub weights: Vec<i32>,
    /// Every action applied, in order.
    pub log: Vec<Action>,
    pub events: Vec<String>,
    /// Pods that start per tick and RS (`None`: all at once).
    pub start_rate: Option<i32>,
}

impl Sim {
    pub fn new(rollout: Rollout) -> Self {
        let routed = rollout
            .spec
            .canary()
            .is_some_and(|c| c.traffic_routing.is_some());
        Self {
            world: Snapshot {
                rollout,
                replica_sets: Vec::new(),
                services: vec![
                    ServiceView::missing("web-canary"),
                    ServiceView::missing("web-stable"),
                ]
                .into_iter()
                .map(|s| ServiceView { exists: true, ..s })
                .collect(),
                router_objects: if routed {
                    vec![RouterObjectView {
                        kind: "Ingress".to_owned(),
                        name: "web".to_owned(),
                        exists: true,
                    }]
                } else {
                    Vec::new()
                },
                analysis_runs: Vec::new(),
                analysis_templates: Default::default(),
                traffic: None,
                traffic_read: None,
                pods: None,
                now: t0(),
            },
            weights: Vec::new(),
            log: Vec::new(),
            events: Vec::new(),
            start_rate: None,
        }
    }

    /// Changes the pod template (a new revision), as `kubectl set image` would.
    pub fn set_image(&mut self, image: &str) {
        self.world.rollout.spec.template = Some(template(image));
        self.bump_generation();
    }

    pub fn bump_generation(&mut self) {
        self.world.rollout.metadata.generation =
            Some(self.world.rollout.metadata.generation.unwrap_or(1) + 1);
    }

    pub fn status_mut(&mut self) -> &mut ramp_api::rollout::RolloutStatus {
        self.world
            .rollout
            .status
            .get_or_insert_with(Default::default)
    }

    /// Runs `tick` (one planned and applied pass, described) until a pass neither acts nor
    /// changes the status; returns every description. Panics if that never happens.
    pub fn settle_described(
        &mut self,
        mut tick: impl FnMut(&mut Sim) -> Vec<String>,
    ) -> Vec<String> {
        let mut log = Vec::new();
        for _ in 0..50 {
            let before = self.world.rollout.status.clone();
            let actions = tick(self);
            let idle = actions.is_empty() && self.world.rollout.status == before;
            log.extend(actions);
            if idle {
                return log;
            }
        }
        panic!("never settled: {:?}", self.world.rollout.status);
    }

    /// Plans, checks and applies once, then lets pods start and stop.
    pub fn tick(&mut self) -> RolloutPlan {
        let plan = plan_rollout(&self.world);
        check_safety(&self.world, &plan);
        for action in &plan.actions {
            if let Action::SetTraffic(intent) = action
                && self.weights.last() != Some(&intent.canary_weight)
            {
                self.weights.push(intent.canary_weight);
            }
        }
        self.log.extend(plan.actions.iter().cloned());
        self.events.extend(
            plan.events
                .iter()
                .map(|e| format!("{}: {}", e.reason, e.message)),
        );
        self.world = apply_plan(&self.world, &plan);
        // Idempotence: the world this plan produced needs nothing more.
        let again = plan_rollout(&self.world);
        assert!(
            again.actions.is_empty(),
            "planning again acted: {:?}\nafter {:?}",
            again.actions,
            plan.actions
        );
        assert_eq!(
            again.status, plan.status,
            "planning again changed the status"
        );
        self.sync_pods();
        for rs in &mut self.world.replica_sets {
            let step = self.start_rate.unwrap_or(i32::MAX);
            let next = if rs.spec_replicas > rs.replicas {
                rs.replicas.saturating_add(step).min(rs.spec_replicas)
            } else {
                rs.spec_replicas
            };
            rs.replicas = next;
            rs.ready_replicas = next;
            rs.available_replicas = next;
            rs.status_current = true;
        }
        self.world.now = self
            .world
            .now
            .checked_add(SignedDuration::from_secs(1))
            .unwrap_or(self.world.now);
        plan
    }

    /// Ticks until nothing moves and no wake-up is pending, jumping over waits. Returns
    /// false if it stopped at an indefinite wait (a pause without duration).
    pub fn run(&mut self) -> bool {
        for _ in 0..400 {
            let before = self.world.rollout.status.clone();
            let plan = self.tick();
            let idle = plan.actions.is_empty() && Some(&plan.status) == before.as_ref();
            if !idle {
                continue;
            }
            match plan.wake_at {
                Some(at) if at > self.world.now => self.world.now = at,
                Some(_) => {}
                None => return !plan.status.has_pause_conditions(),
            }
        }
        panic!(
            "the rollout never settled; last status: {:?}",
            self.world.rollout.status
        );
    }

    /// When pods are modelled: evicted pods go, and each ReplicaSet gets new, available pods
    /// up to its size (created now), so `restartAt` can be followed pod by pod.
    fn sync_pods(&mut self) {
        let now = self.world.now;
        let Some(pods) = self.world.pods.as_mut() else {
            return;
        };
        pods.retain(|p| !p.being_deleted);
        for rs in &self.world.replica_sets {
            let mut own: Vec<usize> = (0..pods.len())
                .filter(|i| pods[*i].replica_set == rs.name)
                .collect();
            while own.len() > usize::try_from(rs.spec_replicas).unwrap_or(0) {
                let i = own.pop().unwrap();
                pods.remove(i);
            }
            for n in own.len()..usize::try_from(rs.spec_replicas).unwrap_or(0) {
                pods.push(crate::PodView {
                    name: format!("{}-{}-{n}", rs.name, now.as_second()),
                    replica_set: rs.name.clone(),
                    created_at: Some(now),
                    available: true,
                    being_deleted: false,
                });
            }
        }
    }

    pub fn replicas_by_image(&self) -> Vec<(String, i32)> {
        self.world
            .replica_sets
            .iter()
            .map(|rs| {
                let image = rs
                    .template
                    .as_ref()
                    .and_then(|t| t.spec.as_ref())
                    .and_then(|s| s.containers[0].image.clone())
                    .unwrap_or_default();
                (image, rs.spec_replicas)
            })
            .collect()
    }
}

/// Safety rules every plan must obey, checked action by action on the world as it was:
/// traffic only goes to pods that are available for it (a share of `n` pods rounded up, and
/// none of the pods an earlier action of the plan scaled away), and pods only leave once no
/// traffic needs them.
pub fn check_safety(world: &Snapshot, plan: &RolloutPlan) {
    let replicas = world.rollout.spec.replicas();
    let mut still_available: BTreeMap<String, i32> = world
        .replica_sets
        .iter()
        .map(|rs| (rs.name.clone(), rs.available_replicas))
        .collect();
    let available = |still: &BTreeMap<String, i32>, hash: Option<&str>| {
        world
            .replica_sets
            .iter()
            .find(|rs| hash.is_some() && rs.pod_template_hash.as_deref() == hash)
            .and_then(|rs| still.get(&rs.name).copied())
            .unwrap_or(0)
    };
    // What the routers hold as read (someone else may have changed them), not Ramp's memory.
    let mut traffic: Option<TrafficIntent> = crate::traffic::in_force(world).map(|(t, _)| t);
    // A basic canary never runs more pods than `replicas + maxSurge` (pods of older
    // ReplicaSets drain first), checked on the specs as the plan leaves them.
    if let Some(canary) = world
        .rollout
        .spec
        .canary()
        .filter(|c| c.traffic_routing.is_none())
        && let Ok(budget) = canary.rollout_budget(replicas)
    {
        let before: i32 = world.replica_sets.iter().map(|rs| rs.spec_replicas).sum();
        let after: i32 = apply_plan(world, plan)
            .replica_sets
            .iter()
            .map(|rs| rs.spec_replicas)
            .sum();
        assert!(
            after <= (replicas + budget.max_surge).max(before),
            "basic canary runs {after} pods, more than {replicas} + {} surge",
            budget.max_surge
        );
    }
    let mut specs: BTreeMap<String, i32> = world
        .replica_sets
        .iter()
        .map(|rs| (rs.name.clone(), rs.spec_replicas))
        .collect();
    for action in &plan.actions {
        match action {
            Action::SetTraffic(intent) => {
                let need = |w: i32| {
                    crate::replicas::traffic_weight_to_replicas(replicas, w, intent.max_weight)
                };
                let stable = available(&still_available, intent.stable_hash.as_deref());
                let canary = available(&still_available, intent.canary_hash.as_deref());
                if intent.canary_hash != intent.stable_hash {
                    assert!(
                        stable >= need(intent.stable_weight()),
                        "stable share {} on {stable} available pods: {intent:?}",
                        intent.stable_weight()
                    );
                    let raised = traffic.as_ref().is_none_or(|t| {
                        intent.canary_weight > t.canary_weight
                            || t.canary_hash != intent.canary_hash
                    });
                    // `setCanaryScale` sizes the canary apart from its weight on purpose.
                    let pinned = world
                        .rollout
                        .spec
                        .steps()
                        .iter()
                        .any(|s| s.set_canary_scale.is_some());
                    if raised && intent.canary_weight > 0 && !pinned {
                        assert!(
                            canary >= need(intent.canary_weight),
                            "canary share {} on {canary} available pods",
                            intent.canary_weight
                        );
                    }
                }
                traffic = Some(intent.clone());
            }
            Action::ScaleReplicaSet { name, to, .. } => {
                let rs = world.replica_sets.iter().find(|rs| &rs.name == name);
                let hash = rs.and_then(|rs| rs.pod_template_hash.as_deref());
                if let (Some(t), Some(from)) = (&traffic, specs.get(name)) {
                    let mut w = 0;
                    if t.canary_hash.as_deref() == hash {
                        w += t.canary_weight;
                    }
                    if t.stable_hash.as_deref() == hash {
                        w += t.stable_weight();
                    }
                    let needed =
                        crate::replicas::traffic_weight_to_replicas(replicas, w, t.max_weight);
                    if to < from {
                        assert!(
                            *to >= needed.min(*from),
                            "{name} scaled to {to} while it carries {w}% ({needed} pods)"
                        );
                    }
                }
                let canary = world.rollout.spec.canary();
                let routed = canary.is_some_and(|c| c.traffic_routing.is_some());
                let dynamic = canary.is_some_and(|c| c.dynamic_stable_scale());
                let status = world.rollout.status.clone().unwrap_or_default();
                let is_stable = hash.is_some() && status.stable_rs.as_deref() == hash;
                let is_canary = hash.is_some() && status.current_pod_hash.as_deref() == hash;
                if routed
                    && !dynamic
                    && status.is_aborted()
                    && is_canary
                    && to < specs.get(name).unwrap_or(&0)
                {
                    // An abort puts 100 % on stable before any canary pod goes.
                    let on_canary = traffic
                        .as_ref()
                        .is_some_and(|t| t.canary_hash.as_deref() == hash && t.canary_weight > 0);
                    assert!(
                        !on_canary,
                        "canary {name} scaled down while it still has traffic: {traffic:?}"
                    );
                }
                if routed && !dynamic && is_stable && !status.is_fully_promoted() {
                    assert!(
                        *to >= replicas,
                        "stable {name} scaled to {to} during an update"
                    );
                }
                specs.insert(name.clone(), *to);
                if let Some(left) = still_available.get_mut(name) {
                    *left = (*left).min(*to);
                }
            }
            _ => {}
        }
    }
}

/// What `kubectl argo rollouts promote` does: clear the pause conditions.
pub fn promote(sim: &mut Sim) {
    let st = sim.status_mut();
    st.pause_conditions = None;
}
