//! The canary step machine: one snapshot in, one plan out. `plan_rollout` repeats a single
//! reconcile pass on the world its own actions would produce until nothing is left to do, so
//! a plan applied to the world it produced plans nothing (idempotence by construction).

use crate::analysis::rollout::retire_runs;
use crate::ephemeral::{RoleMetadata, ephemeral_metadata};
use crate::pass::{Pass, Target, after, collect_garbage, open_pass, plan_passes, scale_action};
use crate::plan::{Action, RolloutPlan};
use crate::replicas::{
    BasicCanaryInput, CanaryScale, Pods, WeightInputs, WrittenWeights, basic_canary_counts,
    desired_scale, traffic_routed_counts, traffic_weight_to_replicas,
};
use crate::snapshot::{ReplicaSetView, SCALE_DOWN_DEADLINE_ANNOTATION, Snapshot};
use k8s_openapi::jiff::Timestamp;
use ramp_api::rollout::{CanaryStep, CanaryStrategy, RolloutSpec, RolloutStatus};

mod restart;
mod routes;
mod status;
mod steps;

#[cfg(test)]
mod metadata_tests;

/// Passes after which planning stops even without a fixed point (the next reconcile then
/// carries on): each pass acts or advances the status, a step takes at most a few passes.
fn max_passes(snapshot: &Snapshot) -> usize {
    16 + 3 * snapshot.rollout.spec.steps().len()
}

/// Plans one reconcile of one rollout.
pub fn plan_rollout(snapshot: &Snapshot) -> RolloutPlan {
    if snapshot.rollout.spec.blue_green().is_some() {
        return crate::bluegreen::plan_rollout(snapshot);
    }
    plan_passes(snapshot, max_passes(snapshot), plan_pass)
}

/// Everything a pass knows about the rollout, computed once.
struct Ctx<'a> {
    snap: &'a Snapshot,
    spec: &'a RolloutSpec,
    strategy: &'a CanaryStrategy,
    steps: &'a [CanaryStep],
    name: String,
    now: Timestamp,
    replicas: i32,
    routed: bool,
    max_weight: i32,
}

impl Ctx<'_> {
    fn step_count(&self) -> i32 {
        i32::try_from(self.steps.len()).unwrap_or(i32::MAX)
    }

    /// `currentStepIndex` for "all steps done": absent when there are no steps.
    fn done_index(&self) -> Option<i32> {
        (!self.steps.is_empty()).then(|| self.step_count())
    }
}

fn plan_pass(snap: &Snapshot) -> Pass {
    let (mut pass, opening) = open_pass(snap, RolloutSpec::canary);
    let Some(opening) = opening else {
        return pass;
    };
    let rollout = &snap.rollout;
    let strategy = opening.strategy;
    let ctx = Ctx {
        snap,
        spec: &rollout.spec,
        strategy,
        steps: strategy.steps(),
        name: rollout.metadata.name.clone().unwrap_or_default(),
        now: snap.now,
        replicas: rollout.spec.replicas().max(0),
        routed: strategy.traffic_routing.is_some(),
        max_weight: strategy.max_traffic_weight(),
    };
    let (old, live, new_hash) = (&opening.old, &opening.live, &opening.new_hash);
    let stable_rs = old
        .stable_rs
        .as_deref()
        .and_then(|h| {
            live.iter()
                .find(|rs| rs.pod_template_hash.as_deref() == Some(h))
        })
        .copied();
    let revision = opening.revision;
    steps::observe_revision(
        &ctx,
        &mut pass,
        opening.new_rs,
        stable_rs,
        new_hash,
        revision,
    );
    let Some(new_rs) = opening.create_or_reuse(&mut pass, &ctx.name, ctx.now) else {
        status::finish(&ctx, &mut pass, old, None, live);
        return pass;
    };
    reconcile(&ctx, &mut pass, old, new_rs, stable_rs, live);
    status::finish(&ctx, &mut pass, old, Some(new_rs), live);
    pass
}

/// The main pass once the newest ReplicaSet exists: sizes, services, traffic, steps.
fn reconcile(
    ctx: &Ctx<'_>,
    pass: &mut Pass,
    old: &RolloutStatus,
    new_rs: &ReplicaSetView,
    stable_rs: Option<&ReplicaSetView>,
    live: &[&ReplicaSetView],
) {
    let new_hash = new_rs.pod_template_hash.clone().unwrap_or_default();
    steps::apply_user_requests(ctx, pass, new_rs);
    let st = &pass.status;
    let promoted = st.stable_rs.as_deref() == Some(new_hash.as_str());
    let stable_rs = stable_rs.filter(|rs| rs.name != new_rs.name);
    let update_in_progress = !promoted && stable_rs.is_some();
    let aborted = update_in_progress && st.is_aborted();
    let promote_full = st.promote_full.unwrap_or(false);
    let others: Vec<&ReplicaSetView> = live
        .iter()
        .filter(|rs| rs.name != new_rs.name && stable_rs.is_none_or(|s| s.name != rs.name))
        .copied()
        .collect();
    let written = st
        .canary
        .as_ref()
        .and_then(|c| c.weights.as_ref())
        .map(|w| WrittenWeights {
            canary: w.canary.weight,
            stable: w.stable.weight,
        });
    let scale = desired_scale(&WeightInputs {
        strategy: ctx.strategy,
        replicas: ctx.replicas,
        promote_full,
        update_in_progress,
        aborted,
        current_step_index: st.current_step_index,
        stable_available: stable_rs.map_or(0, |rs| rs.available_replicas),
    });
    let budget = ctx
        .spec
        .rollout_budget()
        .unwrap_or(ramp_api::rollout::RolloutBudget {
            max_surge: 0,
            max_unavailable: 1,
        });
    let pods = |rs: &ReplicaSetView| Pods {
        spec: rs.spec_replicas,
        available: rs.available_replicas,
    };
    let (canary_target, stable_target) = if !update_in_progress {
        (ctx.replicas, 0)
    } else if ctx.routed {
        traffic_routed_counts(ctx.strategy, ctx.replicas, scale, aborted, written)
    } else {
        let weight = match scale {
            CanaryScale::Weight(w) => w,
            CanaryScale::Replicas(r) => traffic_weight_to_replicas(100, r, ctx.replicas.max(1)),
        };
        basic_canary_counts(&BasicCanaryInput {
            replicas: ctx.replicas,
            weight,
            max_weight: ctx.max_weight,
            budget,
            canary: Some(pods(new_rs)),
            stable: stable_rs.map(pods),
            others_spec: others.iter().map(|rs| rs.spec_replicas).sum(),
        })
    };
    // With dynamicStableScale the stable runs short; before the canary destination can move
    // from an older canary to the newest ReplicaSet, the stable must be able to take all.
    let rehash_pending = ctx.routed
        && !promoted
        && written.is_some_and(|w| w.canary > 0)
        && st
            .canary
            .as_ref()
            .and_then(|c| c.weights.as_ref())
            .and_then(|w| w.canary.pod_template_hash.as_deref())
            .is_some_and(|h| h != new_hash);
    let stable_target = if rehash_pending && ctx.strategy.dynamic_stable_scale() {
        stable_target.max(ctx.replicas)
    } else {
        stable_target
    };
    let counts_reached = new_rs.spec_replicas == canary_target
        && new_rs.available_replicas >= progress_threshold(ctx.strategy, canary_target)
        && stable_rs.is_none_or(|s| {
            if ctx.routed && ctx.strategy.dynamic_stable_scale() {
                s.spec_replicas == stable_target
            } else if ctx.routed {
                s.spec_replicas == stable_target && s.available_replicas >= stable_target
            } else {
                s.spec_replicas == stable_target && s.replicas == stable_target
            }
        })
        && (ctx.routed || others.iter().all(|rs| rs.available_replicas == 0));

    // Services and traffic.
    let routing = routes::decide(
        ctx,
        pass,
        &routes::RouteInputs {
            new_rs,
            stable_rs,
            promoted,
            aborted,
            promote_full,
            counts_reached,
            scale,
            live,
        },
    );

    // Sizes: targets first, then holds that keep pods behind traffic and delays.
    let mut targets = vec![Target {
        rs: new_rs,
        to: canary_target,
    }];
    if let Some(stable) = stable_rs {
        targets.push(Target {
            rs: stable,
            to: stable_target,
        });
    }
    // An aborted canary's scale-down deadline is set once its traffic is gone: after the
    // routing writes of this plan, never before them.
    let mut deadline_marks = Vec::new();
    if aborted {
        let held_from = pass.actions.len();
        let waiting = steps::hold_aborted_canary(ctx, pass, &mut targets[0], stable_rs, &routing);
        deadline_marks.extend(pass.actions.drain(held_from..));
        pass.waiting |= waiting;
    } else if new_rs.scale_down_deadline.is_some() {
        // A retried or promoted canary is no longer on its way out.
        pass.actions.push(Action::AnnotateReplicaSet {
            name: new_rs.name.clone(),
            key: SCALE_DOWN_DEADLINE_ANNOTATION.to_owned(),
            value: None,
        });
    }
    let mut old_budget = live.iter().map(|rs| rs.available_replicas).sum::<i32>()
        - (ctx.replicas - budget.max_unavailable);
    let mut others_sorted = others.clone();
    others_sorted.sort_by_key(|rs| rs.revision.unwrap_or(0));
    for rs in others_sorted {
        if rs.spec_replicas == 0 {
            continue;
        }
        let to = if ctx.routed {
            let (to, waiting) = steps::old_routed_target(ctx, pass, rs, &routing, old);
            pass.waiting |= waiting;
            to
        } else {
            // Unavailable pods go first; available ones only while minAvailable holds.
            let unavailable = (rs.spec_replicas - rs.available_replicas).max(0);
            let removable = (unavailable + old_budget.max(0)).min(rs.spec_replicas);
            old_budget -= (removable - unavailable).max(0);
            rs.spec_replicas - removable
        };
        targets.push(Target { rs, to });
    }
    if ctx.spec.is_paused() {
        // A manual pause halts the update: nothing is scaled for it.
        // Only a running, promoted ReplicaSet follows `replicas` (HPA); a rollout paused at
        // creation starts no pod.
        targets.retain(|t| t.rs.name == new_rs.name && promoted && t.rs.spec_replicas > 0);
    }
    for t in &mut targets {
        if ctx.routed && t.to < t.rs.spec_replicas {
            // Pods never leave before the traffic they serve.
            let floor = routing.pods_needed(ctx, t.rs);
            t.to = t.to.max(floor.min(t.rs.spec_replicas));
        }
        if ctx.routed && t.to > t.rs.spec_replicas && t.rs.replicas > t.rs.spec_replicas {
            // A scale-down still under way (the status counts pods the spec no longer keeps)
            // finishes before the ReplicaSet grows again: a status written while pods are
            // being removed can still count them as available, and traffic would follow.
            t.to = t.rs.spec_replicas;
        }
    }
    let scale_ups: Vec<Action> = targets
        .iter()
        .filter(|t| t.to > t.rs.spec_replicas)
        .map(|t| scale_action(pass, t))
        .collect();
    let scale_downs: Vec<Action> = targets
        .iter()
        .filter(|t| t.to < t.rs.spec_replicas)
        .map(|t| scale_action(pass, t))
        .collect();
    // Pods get their role's metadata before any pod is added and before traffic or a
    // Service selector moves, as upstream reconciles it ahead of services and scaling.
    let roles = RoleMetadata {
        unpromoted: ctx.strategy.canary_metadata.as_ref(),
        stable: ctx.strategy.stable_metadata.as_ref(),
    };
    let mut ordered = ephemeral_metadata(roles, pass.status.stable_rs.as_deref(), new_rs, live);
    ordered.extend(scale_ups);
    ordered.extend(routing.actions.iter().cloned());
    ordered.extend(deadline_marks);
    ordered.extend(scale_downs);
    for t in targets
        .iter()
        .filter(|t| t.to == 0 && t.rs.spec_replicas > 0 && t.rs.scale_down_deadline.is_some())
    {
        ordered.push(Action::AnnotateReplicaSet {
            name: t.rs.name.clone(),
            key: SCALE_DOWN_DEADLINE_ANNOTATION.to_owned(),
            value: None,
        });
    }
    pass.actions.extend(ordered);

    let update = steps::Update {
        hash: &new_hash,
        revision: new_rs.revision.unwrap_or(0),
        stable_hash: stable_rs.and_then(|rs| rs.pod_template_hash.as_deref()),
    };
    if !ctx.spec.is_paused() && !aborted && update_in_progress && !promote_full {
        steps::background_analysis(ctx, pass, &update);
    }
    let stepping = !ctx.spec.is_paused()
        && !aborted
        && !pass.status.is_aborted()
        && update_in_progress
        && !steps::held_for_inconclusive_run(&pass.status);
    if !stepping && update_in_progress && !aborted && !pass.status.is_aborted() {
        // Paused, not finished: the runs of the current step and the background keep going.
        steps::keep_current_runs(ctx, pass);
    }
    if stepping {
        let index = pass.status.current_step_index;
        steps::advance(ctx, pass, &routing, counts_reached, &update);
        // The counts were judged for the step that just ended; promotion waits a pass.
        if pass.status.current_step_index == index && !pass.status.is_aborted() {
            steps::promote(ctx, pass, new_rs, counts_reached, &routing);
        }
        let open = update_in_progress
            && !pass.status.is_aborted()
            && pass.status.stable_rs.as_deref() != Some(new_hash.as_str());
        if open && pass.waiting_message.is_none() {
            let targets = steps::Targets {
                new_rs,
                canary: canary_target,
                stable_rs,
                stable: stable_target,
            };
            pass.waiting_message = steps::awaited(ctx, &pass.status, &targets, &routing);
        }
    }
    restart::restart_pods(ctx, pass, live);
    // Not a ReplicaSet this pass scales.
    collect_garbage(pass, ctx.spec, live, new_rs, stable_rs, |a| match a {
        Action::ScaleReplicaSet { name, .. } => Some(name),
        _ => None,
    });
    let recorded: Vec<String> = pass
        .status
        .canary
        .iter()
        .flat_map(|c| {
            [
                &c.current_step_analysis_run_status,
                &c.current_background_analysis_run_status,
            ]
        })
        .flatten()
        .map(|r| r.name.clone())
        .collect();
    let recorded: Vec<&str> = recorded.iter().map(String::as_str).collect();
    retire_runs(
        ctx.snap,
        &pass.wanted_runs,
        update_in_progress.then_some(new_hash.as_str()),
        aborted || pass.status.is_aborted(),
        &recorded,
        &mut pass.actions,
    );
}

fn progress_threshold(strategy: &CanaryStrategy, desired: i32) -> i32 {
    match &strategy.replica_progress_threshold {
        Some(t) if t.type_ == ramp_api::rollout::progress_threshold_type::PODS => {
            t.value.min(desired)
        }
        Some(t) => {
            let pods = (i64::from(desired) * i64::from(t.value) + 99) / 100;
            i32::try_from(pods).unwrap_or(desired).min(desired)
        }
        None => desired,
    }
}
