//! The blue-green decision: one snapshot in, one plan out. The new ReplicaSet runs behind the
//! preview service, waits for its pause and pre-promotion analysis, takes the active service in
//! one switch, and the previous ReplicaSet leaves only after post-promotion and its delay.

use crate::analysis::rollout::{RunIdentity, Verdict, follow, retire_runs};
use crate::pass::{
    Pass, Target, abort_update, after, apply_user_requests, collect_garbage, complete_promotion,
    completed_event, enter_pause, held_for_inconclusive_run, in_scale_down_delay, open_pass,
    pause_condition, plan_passes, release_inconclusive_pause, remove_pause_condition, resumed,
    scale_action, start_update,
};
use crate::plan::{Action, RolloutEvent, RolloutPlan};
use crate::snapshot::{AnalysisRunKind, ReplicaSetView, SCALE_DOWN_DEADLINE_ANNOTATION, Snapshot};
use k8s_openapi::jiff::Timestamp;
use ramp_api::rollout::{
    AbortScaleDown, BlueGreenStatus, BlueGreenStrategy, RolloutSpec, pause_reason,
};

mod pods;
mod status;

#[cfg(test)]
mod tests;

/// Passes after which planning stops even without a fixed point (the next reconcile carries
/// on): each pass acts or advances the status, and an update needs only a handful.
const MAX_PASSES: usize = 16;

/// Plans one reconcile of a blue-green rollout, repeating single passes on the world their
/// own actions produce until nothing is left to do (so a plan is idempotent by construction).
pub fn plan_rollout(snapshot: &Snapshot) -> RolloutPlan {
    plan_passes(snapshot, MAX_PASSES, plan_pass)
}

impl Pass {
    /// Waiting on something that does not count against the progress deadline.
    fn wait(&mut self, message: String) {
        self.waiting = true;
        self.note(message);
    }

    /// Says what the update waits for; pods coming up still count against the deadline.
    fn note(&mut self, message: String) {
        if self.waiting_message.is_none() {
            self.waiting_message = Some(message);
        }
    }

    fn blue_green(&mut self) -> &mut BlueGreenStatus {
        self.status.blue_green.get_or_insert_with(Default::default)
    }
}

/// Everything a pass knows about the rollout, computed once.
struct Ctx<'a> {
    snap: &'a Snapshot,
    spec: &'a RolloutSpec,
    strategy: &'a BlueGreenStrategy,
    name: String,
    now: Timestamp,
    replicas: i32,
}

impl Ctx<'_> {
    /// The hash the named service's selector holds in the observed world.
    fn observed_selector(&self, service: Option<&str>) -> Option<String> {
        let service = self.snap.service(service?)?;
        service
            .exists
            .then(|| service.selector_hash.clone())
            .flatten()
    }

    fn service_exists(&self, service: &str) -> bool {
        self.snap.service(service).is_some_and(|s| s.exists)
    }
}

fn plan_pass(snap: &Snapshot) -> Pass {
    let (mut pass, opening) = open_pass(snap, RolloutSpec::blue_green);
    let Some(opening) = opening else {
        return pass;
    };
    let rollout = &snap.rollout;
    let ctx = Ctx {
        snap,
        spec: &rollout.spec,
        strategy: opening.strategy,
        name: rollout.metadata.name.clone().unwrap_or_default(),
        now: snap.now,
        replicas: rollout.spec.replicas().max(0),
    };
    let (old, live, new_hash) = (&opening.old, &opening.live, &opening.new_hash);
    observe_revision(
        &ctx,
        &mut pass,
        opening.new_rs,
        live,
        new_hash,
        opening.revision,
    );
    let Some(new_rs) = opening.create_or_reuse(&mut pass, &ctx.name, ctx.now) else {
        pods::inject_anti_affinity(
            ctx.strategy,
            pass.status.stable_rs.as_deref(),
            new_hash,
            &mut pass.actions,
        );
        pass.progress_decided = true;
        status::finish(&ctx, &mut pass, old, None, live);
        return pass;
    };
    reconcile(&ctx, &mut pass, new_rs, live);
    status::finish(&ctx, &mut pass, old, Some(new_rs), live);
    pass
}

fn live_by_hash<'a>(live: &[&'a ReplicaSetView], hash: Option<&str>) -> Option<&'a ReplicaSetView> {
    let hash = hash?;
    live.iter()
        .find(|rs| rs.pod_template_hash.as_deref() == Some(hash))
        .copied()
}

/// Status changes when the desired template changes: a new update starts, or it is the
/// initial deploy, a rollback to the stable ReplicaSet, or a fast rollback.
fn observe_revision(
    ctx: &Ctx<'_>,
    pass: &mut Pass,
    new_rs: Option<&ReplicaSetView>,
    live: &[&ReplicaSetView],
    new_hash: &str,
    revision: i64,
) {
    let st = &mut pass.status;
    let stable = live_by_hash(live, st.stable_rs.as_deref());
    if st.current_pod_hash.as_deref() == Some(new_hash) {
        if stable.is_none() && st.stable_rs.as_deref() != Some(new_hash) {
            // The stable ReplicaSet vanished: nothing to go back to, so the newest is stable.
            st.stable_rs = Some(new_hash.to_owned());
        }
        return;
    }
    start_update(pass, new_hash, revision);
    let bg = pass.blue_green();
    bg.scale_up_preview_check_point = None;
    bg.pre_promotion_analysis_run_status = None;
    bg.post_promotion_analysis_run_status = None;
    let st = &mut pass.status;
    let fully_up = |rs: &ReplicaSetView| {
        rs.spec_replicas >= ctx.replicas && rs.available_replicas >= ctx.replicas
    };
    match stable {
        None => {
            st.stable_rs = Some(new_hash.to_owned());
            pass.events
                .push(completed_event(revision, new_hash, "Initial deploy"));
        }
        Some(s) if s.pod_template_hash.as_deref() == Some(new_hash) => {
            pass.events.push(RolloutEvent::normal(
                "SkipSteps",
                "Rollback to stable ReplicaSets",
            ));
        }
        // A previous ReplicaSet still up within its scale-down delay takes the active service
        // back at once: no pause, no analysis.
        Some(_) if new_rs.is_some_and(|rs| rs.scale_down_deadline.is_some() && fully_up(rs)) => {
            st.stable_rs = Some(new_hash.to_owned());
            pass.events
                .push(completed_event(revision, new_hash, "Fast rollback"));
        }
        Some(_) => {
            pass.events.push(RolloutEvent::normal(
                "RolloutNotCompleted",
                format!(
                    "Rollout not completed, started update to revision {revision} ({new_hash})"
                ),
            ));
        }
    }
}

/// Enters the aborted state once (`abortedAt` marks it), as upstream: Progressing False.
fn enter_abort(ctx: &Ctx<'_>, pass: &mut Pass, revision: i64, cause: Option<&str>) {
    pass.status.abort = Some(true);
    if pass.status.aborted_at.is_none() {
        abort_update(pass, revision, cause, ctx.now);
    }
}

/// The verdict on one promotion analysis.
#[derive(Clone, PartialEq, Eq)]
enum Gate {
    Passed,
    /// Failed or Error, with upstream's abort cause.
    Failed(String),
    Waiting,
}

/// Follows the pre- or post-promotion run of the new ReplicaSet (created when missing) and
/// records it in the status. An Inconclusive run pauses the rollout (`InconclusiveAnalysisRun`)
/// until a person promotes; a fresh run then decides.
fn analysis_gate(
    ctx: &Ctx<'_>,
    pass: &mut Pass,
    kind: AnalysisRunKind,
    new_rs: &ReplicaSetView,
) -> Gate {
    let pre = kind == AnalysisRunKind::PrePromotion;
    let (label, analysis) = if pre {
        (
            "pre-promotion",
            ctx.strategy.pre_promotion_analysis.as_ref(),
        )
    } else {
        (
            "post-promotion",
            ctx.strategy.post_promotion_analysis.as_ref(),
        )
    };
    let Some(analysis) = analysis else {
        return Gate::Passed;
    };
    let bg = pass.status.blue_green.clone().unwrap_or_default();
    let recorded = if pre {
        bg.pre_promotion_analysis_run_status
    } else {
        bg.post_promotion_analysis_run_status
    };
    release_inconclusive_pause(&mut pass.status, recorded.as_ref());
    let paused = held_for_inconclusive_run(&pass.status);
    let stable_hash = pass.status.stable_rs.clone();
    let id = RunIdentity {
        kind,
        hash: new_rs.pod_template_hash.as_deref().unwrap_or_default(),
        revision: new_rs.revision.unwrap_or(0),
        step_index: None,
        stable_hash: stable_hash.as_deref(),
    };
    let followed = match follow(
        ctx.snap,
        analysis,
        &id,
        recorded.as_ref(),
        paused,
        &mut pass.actions,
    ) {
        Ok(followed) => followed,
        Err(reason) => {
            pass.wait(format!("cannot create the {label} AnalysisRun: {reason}"));
            return Gate::Waiting;
        }
    };
    pass.wanted_runs.push(followed.status.name.clone());
    let name = followed.status.name.clone();
    let phase = followed.status.status.clone();
    let slot = if pre {
        &mut pass.blue_green().pre_promotion_analysis_run_status
    } else {
        &mut pass.blue_green().post_promotion_analysis_run_status
    };
    *slot = Some(followed.status);
    match followed.verdict {
        Verdict::Successful => Gate::Passed,
        Verdict::Failed(cause) => Gate::Failed(cause),
        Verdict::Inconclusive => {
            if !paused {
                enter_pause(pass, pause_reason::INCONCLUSIVE_ANALYSIS_RUN, ctx.now);
            }
            pass.wait(format!("{label} AnalysisRun {name} is Inconclusive"));
            Gate::Waiting
        }
        Verdict::Running => {
            pass.wait(format!("{label} AnalysisRun {name} is {phase}"));
            Gate::Waiting
        }
    }
}

/// The `BlueGreenPause` before promotion: added once the preview is ready, removed by a user
/// (promote) or after `autoPromotionSeconds`. Returns whether the pause is over.
fn promotion_pause(ctx: &Ctx<'_>, pass: &mut Pass, preview_ready: bool) -> bool {
    let auto = ctx.strategy.auto_promotion_enabled();
    let seconds = i64::from(ctx.strategy.auto_promotion_seconds().max(0));
    if auto && seconds == 0 {
        return true;
    }
    let st = &pass.status;
    let ours = pause_condition(st, pause_reason::BLUE_GREEN_PAUSE).cloned();
    match ours {
        Some(condition) if auto => {
            let end = after(condition.start_time.0, seconds);
            if ctx.now < end {
                pass.wake(end);
                return false;
            }
            remove_pause_condition(&mut pass.status, pause_reason::BLUE_GREEN_PAUSE);
            resumed(pass, ctx.now);
            true
        }
        Some(_) => false,
        None if st.has_pause_conditions() => false,
        // The controller paused and the conditions are gone: promoted (by a user or the
        // timer). `controllerPause` stays set until the switch, so the pause is not re-entered.
        None if st.controller_pause == Some(true) => true,
        None if !preview_ready => false,
        None => {
            enter_pause(pass, pause_reason::BLUE_GREEN_PAUSE, ctx.now);
            if auto {
                pass.wake(after(ctx.now, seconds));
            }
            false
        }
    }
}

/// The main pass once the newest ReplicaSet exists: gates, services, sizes.
fn reconcile(ctx: &Ctx<'_>, pass: &mut Pass, new_rs: &ReplicaSetView, live: &[&ReplicaSetView]) {
    let new_hash = new_rs.pod_template_hash.clone().unwrap_or_default();
    let revision = new_rs.revision.unwrap_or(0);
    let promoted_at_start = pass.status.stable_rs.as_deref() == Some(new_hash.as_str());
    // A full promotion keeps `controllerPause` like any promotion: it ends with the switch.
    apply_user_requests(
        pass,
        promoted_at_start,
        ctx.now,
        |_| {},
        |pass, cause| enter_abort(ctx, pass, revision, cause),
    );
    let active_service = ctx.strategy.active_service.as_str();
    let preview_service = ctx
        .strategy
        .preview_service
        .as_deref()
        .filter(|s| !s.is_empty());
    let observed_active = ctx.observed_selector(Some(active_service));
    let stable_rs =
        live_by_hash(live, pass.status.stable_rs.as_deref()).filter(|rs| rs.name != new_rs.name);
    let manual_pause = ctx.spec.is_paused();
    let fully_available =
        |rs: &ReplicaSetView| rs.spec_replicas >= ctx.replicas && rs.serving() >= ctx.replicas;
    let promote_full = pass.status.promote_full == Some(true);
    let new_is_active = observed_active.as_deref() == Some(new_hash.as_str());

    // Gates of an update in progress.
    let mut promoted = promoted_at_start;
    let mut aborted = !promoted && pass.status.is_aborted();
    let preview_count = ctx
        .strategy
        .preview_replica_count
        .map(|p| p.clamp(0, ctx.replicas));
    let checkpoint = pass
        .status
        .blue_green
        .as_ref()
        .and_then(|b| b.scale_up_preview_check_point)
        == Some(true);
    let preview_size = match preview_count {
        Some(p) if !checkpoint && !promote_full => p,
        _ => ctx.replicas,
    };
    let mut switch_allowed = promoted;
    if !promoted && !aborted && !manual_pause {
        if new_is_active {
            // Switched: post-promotion verification decides whether it stays.
            let gate = if ctx.strategy.post_promotion_analysis.is_some() && !promote_full {
                analysis_gate(ctx, pass, AnalysisRunKind::PostPromotion, new_rs)
            } else {
                Gate::Passed
            };
            match gate {
                Gate::Passed => {
                    promote(pass, &new_hash, revision, promote_full);
                    promoted = true;
                    switch_allowed = true;
                }
                Gate::Failed(cause) => {
                    enter_abort(ctx, pass, revision, Some(&cause));
                    aborted = true;
                }
                Gate::Waiting => {}
            }
        } else {
            let preview_ready =
                new_rs.spec_replicas == preview_size && new_rs.available_replicas >= preview_size;
            let pause_done = promote_full || promotion_pause(ctx, pass, preview_ready);
            let pre = if ctx.strategy.pre_promotion_analysis.is_some() && !promote_full {
                if preview_ready {
                    analysis_gate(ctx, pass, AnalysisRunKind::PrePromotion, new_rs)
                } else {
                    Gate::Waiting
                }
            } else {
                Gate::Passed
            };
            if let Gate::Failed(cause) = &pre {
                enter_abort(ctx, pass, revision, Some(cause));
                aborted = true;
            } else if pause_done && pre == Gate::Passed {
                if preview_count.is_some() && !checkpoint && preview_ready {
                    pass.blue_green().scale_up_preview_check_point = Some(true);
                }
                switch_allowed = true;
                if !fully_available(new_rs) || new_rs.spec_replicas != ctx.replicas {
                    pass.note("waiting for the new ReplicaSet to be fully available".to_owned());
                }
            } else if !pause_done && !pass.status.has_pause_conditions() {
                pass.note("waiting for the preview ReplicaSet to be available".to_owned());
            }
        }
    }
    let preview_size = if pass
        .status
        .blue_green
        .as_ref()
        .and_then(|b| b.scale_up_preview_check_point)
        == Some(true)
        || promote_full
    {
        ctx.replicas
    } else {
        preview_size
    };

    // Services: one write per service, and only to pods that are all available.
    let mut active_target = observed_active.clone();
    let exact = new_rs.spec_replicas == ctx.replicas && fully_available(new_rs);
    if !ctx.service_exists(active_service) {
        pass.wait(format!(
            "waiting for the active service {active_service} to exist"
        ));
    } else if aborted {
        if new_is_active {
            // Back to the previous ReplicaSet, but never to pods that are not all there.
            match stable_rs.filter(|rs| fully_available(rs)) {
                Some(stable) => active_target = stable.pod_template_hash.clone(),
                None => pass.wait("waiting for the stable ReplicaSet to be available".to_owned()),
            }
        }
    } else if switch_allowed && !new_is_active && !manual_pause && exact {
        active_target = Some(new_hash.clone());
        // The pause episode ends with the switch.
        pass.status.controller_pause = None;
    }
    let mut service_actions = Vec::new();
    // The preview moves first: production follows what testers could already reach.
    if let Some(preview) = preview_service.filter(|s| ctx.service_exists(s)) {
        let observed = ctx.observed_selector(Some(preview));
        if observed.as_deref() != Some(new_hash.as_str()) && preview_pods_ready(ctx, new_rs) {
            switch_service(
                pass,
                &mut service_actions,
                preview,
                observed.as_deref(),
                &new_hash,
            );
        }
    }
    if active_target != observed_active
        && let Some(target) = &active_target
    {
        switch_service(
            pass,
            &mut service_actions,
            active_service,
            observed_active.as_deref(),
            target,
        );
    }

    // Sizes.
    let mut targets = Vec::new();
    let new_to = if promoted {
        ctx.replicas
    } else if aborted {
        let serving = new_is_active || active_target.as_deref() == Some(new_hash.as_str());
        aborted_preview_size(ctx, pass, new_rs, serving)
    } else {
        preview_size
    };
    targets.push(Target {
        rs: new_rs,
        to: new_to,
    });
    if !aborted && new_rs.scale_down_deadline.is_some() {
        // A retried, promoted or rolled-back ReplicaSet is no longer on its way out.
        pass.actions.push(Action::AnnotateReplicaSet {
            name: new_rs.name.clone(),
            key: SCALE_DOWN_DEADLINE_ANNOTATION.to_owned(),
            value: None,
        });
    }
    let mut delayed: Vec<&ReplicaSetView> = Vec::new();
    let mut others: Vec<&ReplicaSetView> = live
        .iter()
        .filter(|rs| rs.name != new_rs.name)
        .copied()
        .collect();
    others.sort_by_key(|rs| std::cmp::Reverse(rs.revision.unwrap_or(0)));
    for rs in others {
        let hash = rs.pod_template_hash.as_deref();
        let serving = hash.is_some()
            && (hash == observed_active.as_deref() || hash == active_target.as_deref());
        let is_stable = !promoted && stable_rs.is_some_and(|s| s.name == rs.name);
        if is_stable {
            // The way back stays at full size until the update is promoted.
            if rs.spec_replicas < ctx.replicas {
                targets.push(Target {
                    rs,
                    to: ctx.replicas,
                });
            }
            continue;
        }
        if serving || rs.spec_replicas == 0 {
            continue;
        }
        let delay = i64::from(ctx.strategy.scale_down_delay_seconds().max(0));
        // Without a delay, only a deadline already written is waited out.
        let delays = delay > 0 || rs.scale_down_deadline.is_some();
        if delays && in_scale_down_delay(pass, rs, delay, ctx.now) {
            delayed.push(rs);
        } else {
            targets.push(Target { rs, to: 0 });
        }
    }
    if let Some(limit) = ctx.strategy.scale_down_delay_revision_limit {
        // Only the newest `limit` previous ReplicaSets may wait out their delay.
        let keep = usize::try_from(limit.max(0)).unwrap_or(0);
        for rs in delayed.into_iter().skip(keep) {
            targets.push(Target { rs, to: 0 });
        }
    }
    if manual_pause {
        // A manual pause halts the update; only a promoted ReplicaSet follows `replicas`.
        targets.retain(|t| promoted && t.rs.name == new_rs.name && t.rs.spec_replicas > 0);
    }
    // Pods get their role's metadata before any pod is added.
    let roles = crate::ephemeral::RoleMetadata {
        unpromoted: ctx.strategy.preview_metadata.as_ref(),
        stable: ctx.strategy.active_metadata.as_ref(),
    };
    let mut ordered =
        crate::ephemeral::ephemeral_metadata(roles, pass.status.stable_rs.as_deref(), new_rs, live);
    let ups: Vec<Action> = targets
        .iter()
        .filter(|t| t.to > t.rs.spec_replicas)
        .map(|t| scale_action(pass, t))
        .collect();
    ordered.extend(ups);
    ordered.extend(service_actions);
    let downs: Vec<&Target<'_>> = targets
        .iter()
        .filter(|t| t.to < t.rs.spec_replicas)
        .collect();
    for t in &downs {
        ordered.push(scale_action(pass, t));
    }
    for t in downs
        .iter()
        .filter(|t| t.to == 0 && t.rs.scale_down_deadline.is_some())
    {
        ordered.push(Action::AnnotateReplicaSet {
            name: t.rs.name.clone(),
            key: SCALE_DOWN_DEADLINE_ANNOTATION.to_owned(),
            value: None,
        });
    }
    // Deadline annotations were pushed before; keep them ahead of the rest.
    pass.actions.extend(ordered);
    // Not a ReplicaSet this pass scales or annotates.
    collect_garbage(pass, ctx.spec, live, new_rs, stable_rs, |a| match a {
        Action::ScaleReplicaSet { name, .. } | Action::AnnotateReplicaSet { name, .. } => {
            Some(name)
        }
        _ => None,
    });
    // A run measures the services and pods as this plan leaves them: create it after them.
    let (created, others): (Vec<Action>, Vec<Action>) = pass
        .actions
        .drain(..)
        .partition(|a| matches!(a, Action::CreateAnalysisRun { .. }));
    pass.actions = others;
    pass.actions.extend(created);
    let recorded: Vec<String> = pass
        .status
        .blue_green
        .iter()
        .flat_map(|b| {
            [
                &b.pre_promotion_analysis_run_status,
                &b.post_promotion_analysis_run_status,
            ]
        })
        .flatten()
        .map(|r| r.name.clone())
        .collect();
    let recorded: Vec<&str> = recorded.iter().map(String::as_str).collect();
    let updating = !promoted && pass.status.stable_rs.as_deref() != Some(new_hash.as_str());
    if manual_pause && updating && !aborted {
        // Paused is not moved past: the promotion runs keep measuring.
        pass.wanted_runs
            .extend(recorded.iter().map(|r| (*r).to_owned()));
    }
    retire_runs(
        ctx.snap,
        &pass.wanted_runs,
        updating.then_some(new_hash.as_str()),
        updating && (aborted || pass.status.is_aborted()),
        &recorded,
        &mut pass.actions,
    );
}

/// Whether the preview service may select the new ReplicaSet: every pod it was asked for is
/// available, so testers never reach a revision that is still starting.
fn preview_pods_ready(ctx: &Ctx<'_>, rs: &ReplicaSetView) -> bool {
    ctx.replicas == 0 || (rs.spec_replicas > 0 && rs.available_replicas >= rs.spec_replicas)
}

/// Size of the aborted preview ReplicaSet: kept while it serves and then for
/// `abortScaleDownDelaySeconds` (forever with 0), then none.
fn aborted_preview_size(ctx: &Ctx<'_>, pass: &mut Pass, rs: &ReplicaSetView, serving: bool) -> i32 {
    if serving || rs.spec_replicas == 0 {
        return rs.spec_replicas;
    }
    match ctx.strategy.abort_scale_down() {
        AbortScaleDown::Never => rs.spec_replicas,
        AbortScaleDown::AfterSeconds(seconds) if seconds <= 0 => 0,
        AbortScaleDown::AfterSeconds(seconds) => {
            if in_scale_down_delay(pass, rs, i64::from(seconds), ctx.now) {
                pass.waiting = true;
                rs.spec_replicas
            } else {
                0
            }
        }
    }
}

fn switch_service(
    pass: &mut Pass,
    actions: &mut Vec<Action>,
    service: &str,
    from: Option<&str>,
    to: &str,
) {
    actions.push(Action::PointService {
        service: service.to_owned(),
        pod_template_hash: to.to_owned(),
    });
    pass.events.push(RolloutEvent::normal(
        "SwitchService",
        format!(
            "Switched selector for service '{service}' from '{}' to '{to}'",
            from.unwrap_or_default()
        ),
    ));
}

/// The new ReplicaSet took the active service and passed verification: it is stable.
fn promote(pass: &mut Pass, new_hash: &str, revision: i64, promote_full: bool) {
    let why = if promote_full {
        "Full promotion requested"
    } else {
        "Completed blue-green update"
    };
    complete_promotion(pass, new_hash, revision, why);
}
