//! Step bookkeeping: noticing a new revision, honouring what users wrote into the status
//! (abort, retry, promoteFull, resume), running the current step, promotion, and the delays
//! that keep a ReplicaSet up after it stopped receiving traffic.

use super::routes::Routing;
use super::{Ctx, Pass, Target, after};
use crate::analysis::rollout::{RunIdentity, Verdict, follow};
use crate::hash::steps_hash;
pub(super) use crate::pass::held_for_inconclusive_run;
use crate::pass::{
    self, abort_update, complete_promotion, completed_event, enter_pause, in_scale_down_delay,
    pause_condition, release_inconclusive_pause, remove_pause_condition, resumed, start_update,
};
use crate::plan::RolloutEvent;
use crate::snapshot::AnalysisRunKind;
use crate::snapshot::ReplicaSetView;
use ramp_api::rollout::{
    AbortScaleDown, CanaryStatus, CanaryStep, RolloutAnalysisRunStatus, RolloutStatus, pause_reason,
};

fn hash_of(rs: &ReplicaSetView) -> Option<&str> {
    rs.pod_template_hash.as_deref()
}

/// A rollback to an RS older than the stable one, with fewer than `rollbackWindow.revisions`
/// revisions created in between, skips the steps.
fn within_rollback_window(
    ctx: &Ctx<'_>,
    target: Option<&ReplicaSetView>,
    stable: &ReplicaSetView,
) -> bool {
    let window = ctx
        .spec
        .rollback_window
        .as_ref()
        .and_then(|w| w.revisions)
        .unwrap_or(0);
    let (Some(target), Some(stable_rev)) = (target.and_then(|t| t.revision), stable.revision)
    else {
        return false;
    };
    if window <= 0 || target >= stable_rev {
        return false;
    }
    let between = ctx
        .snap
        .replica_sets
        .iter()
        .filter_map(|rs| rs.revision)
        .filter(|r| *r > target && *r < stable_rev)
        .count();
    i32::try_from(between).unwrap_or(i32::MAX) < window
}

/// Status changes when the desired template or the steps change.
pub(super) fn observe_revision(
    ctx: &Ctx<'_>,
    pass: &mut Pass,
    new_rs: Option<&ReplicaSetView>,
    stable_rs: Option<&ReplicaSetView>,
    new_hash: &str,
    revision: i64,
) {
    let previous_hash = pass.status.current_pod_hash.clone();
    if previous_hash.as_deref() != Some(new_hash) {
        start_update(pass, new_hash, revision);
        let st = &mut pass.status;
        match stable_rs {
            None => {
                st.stable_rs = Some(new_hash.to_owned());
                st.current_step_index = ctx.done_index();
                pass.events
                    .push(completed_event(revision, new_hash, "Initial deploy"));
            }
            Some(stable) if hash_of(stable) == Some(new_hash) => {
                st.current_step_index = ctx.done_index();
                pass.events.push(RolloutEvent::normal(
                    "SkipSteps",
                    "Rollback to stable ReplicaSets",
                ));
            }
            Some(stable) if within_rollback_window(ctx, new_rs, stable) => {
                st.current_step_index = ctx.done_index();
                pass.events.push(RolloutEvent::normal(
                    "SkipSteps",
                    "Rollback to stable ReplicaSets within RollbackWindow",
                ));
            }
            Some(_) => {
                st.current_step_index = (!ctx.steps.is_empty()).then_some(0);
                pass.events.push(RolloutEvent::normal(
                    "RolloutNotCompleted",
                    format!(
                        "Rollout not completed, started update to revision {revision} ({new_hash})"
                    ),
                ));
            }
        }
    } else if stable_rs.is_none() && pass.status.stable_rs.as_deref() != Some(new_hash) {
        // The stable ReplicaSet vanished: nothing to go back to, so the newest is stable.
        pass.status.stable_rs = Some(new_hash.to_owned());
        pass.status.current_step_index = ctx.done_index();
    }
    let st = &mut pass.status;
    let hash = steps_hash(ctx.steps);
    if st.current_step_hash.as_deref() != Some(hash.as_str()) {
        if st.current_step_hash.is_some() && previous_hash.as_deref() == Some(new_hash) {
            let promoted = st.stable_rs.as_deref() == Some(new_hash);
            st.current_step_index = if promoted {
                ctx.done_index()
            } else {
                (!ctx.steps.is_empty()).then_some(0)
            };
        }
        st.current_step_hash = Some(hash);
    }
    st.current_step_index = match (ctx.steps.is_empty(), st.current_step_index) {
        (true, _) => None,
        (false, None) => Some(0),
        (false, Some(i)) => Some(i.clamp(0, ctx.step_count())),
    };
}

/// `status.abort`, `status.promoteFull` as users and tools write them; a full promotion skips
/// the remaining steps.
pub(super) fn apply_user_requests(ctx: &Ctx<'_>, pass: &mut Pass, new_rs: &ReplicaSetView) {
    let promoted = pass.status.stable_rs.as_deref() == hash_of(new_rs);
    let revision = new_rs.revision.unwrap_or(0);
    pass::apply_user_requests(
        pass,
        promoted,
        ctx.now,
        |st| {
            st.current_step_index = ctx.done_index();
            st.controller_pause = None;
        },
        |pass, cause| enter_abort(ctx, pass, revision, cause),
    );
}

/// Aborts the update to `revision`: steps start over, pauses are dropped, and the Progressing
/// condition and a Warning event carry the cause. Traffic goes back to stable on the next pass.
fn enter_abort(ctx: &Ctx<'_>, pass: &mut Pass, revision: i64, cause: Option<&str>) {
    pass.status.current_step_index = (!ctx.steps.is_empty()).then_some(0);
    abort_update(pass, revision, cause, ctx.now);
}

/// The revision under update, for the runs that judge it.
pub(super) struct Update<'a> {
    pub hash: &'a str,
    pub revision: i64,
    pub stable_hash: Option<&'a str>,
}

/// Follows the run of one analysis and acts on its verdict: Failed/Error aborts, Inconclusive
/// pauses. Returns the verdict and records the run in the status slot `slot` selects.
fn follow_analysis(
    ctx: &Ctx<'_>,
    pass: &mut Pass,
    analysis: &ramp_api::rollout::RolloutAnalysis,
    id: &RunIdentity<'_>,
    slot: fn(&mut CanaryStatus) -> &mut Option<RolloutAnalysisRunStatus>,
) -> Option<Verdict> {
    let paused = held_for_inconclusive_run(&pass.status);
    let recorded = pass.status.canary.as_mut().and_then(|c| slot(c).clone());
    release_inconclusive_pause(&mut pass.status, recorded.as_ref());
    let followed = match follow(
        ctx.snap,
        analysis,
        id,
        recorded.as_ref(),
        paused,
        &mut pass.actions,
    ) {
        Ok(followed) => followed,
        Err(reason) => {
            // Preflight builds every run first, so this is a template that changed since.
            pass.waiting_message = Some(format!("cannot create the AnalysisRun: {reason}"));
            return None;
        }
    };
    pass.wanted_runs.push(followed.status.name.clone());
    *slot(pass.status.canary.get_or_insert_with(Default::default)) = Some(followed.status.clone());
    match &followed.verdict {
        Verdict::Failed(cause) => enter_abort(ctx, pass, id.revision, Some(cause)),
        Verdict::Inconclusive if !paused => {
            enter_pause(pass, pause_reason::INCONCLUSIVE_ANALYSIS_RUN, ctx.now);
        }
        Verdict::Running => {
            pass.waiting_message = Some(format!(
                "waiting for AnalysisRun {} ({})",
                followed.status.name, followed.status.status
            ));
        }
        Verdict::Inconclusive | Verdict::Successful => {}
    }
    Some(followed.verdict)
}

/// Background analysis (`spec.strategy.canary.analysis`): one run for the whole update from
/// `startingStep` on.
pub(super) fn background_analysis(ctx: &Ctx<'_>, pass: &mut Pass, update: &Update<'_>) {
    let Some(background) = &ctx.strategy.analysis else {
        return;
    };
    let starting = background.starting_step.unwrap_or(0);
    let index = pass.status.current_step_index.unwrap_or(ctx.step_count());
    if index < starting {
        return;
    }
    let id = RunIdentity {
        kind: AnalysisRunKind::Background,
        hash: update.hash,
        revision: update.revision,
        step_index: None,
        stable_hash: update.stable_hash,
    };
    follow_analysis(ctx, pass, &background.analysis(), &id, |c| {
        &mut c.current_background_analysis_run_status
    });
}

/// While the steps are held (a manual pause, an Inconclusive run), the run of the current
/// step and the background run stay wanted: pausing is not moving past them.
pub(super) fn keep_current_runs(ctx: &Ctx<'_>, pass: &mut Pass) {
    let Some(canary) = pass.status.canary.as_ref() else {
        return;
    };
    let index = pass.status.current_step_index;
    let step_run = canary
        .current_step_analysis_run_status
        .as_ref()
        .filter(|recorded| {
            ctx.snap
                .analysis_runs
                .iter()
                .any(|r| r.name == recorded.name && r.step_index == index)
        });
    let names: Vec<String> = step_run
        .into_iter()
        .chain(canary.current_background_analysis_run_status.as_ref())
        .map(|r| r.name.clone())
        .collect();
    pass.wanted_runs.extend(names);
}

/// An `analysis` step: complete once its run is Successful.
fn analysis_step(
    ctx: &Ctx<'_>,
    pass: &mut Pass,
    analysis: &ramp_api::rollout::RolloutAnalysis,
    index: i32,
    update: &Update<'_>,
) -> bool {
    let id = RunIdentity {
        kind: AnalysisRunKind::Step,
        hash: update.hash,
        revision: update.revision,
        step_index: Some(index),
        stable_hash: update.stable_hash,
    };
    let verdict = follow_analysis(ctx, pass, analysis, &id, |c| {
        &mut c.current_step_analysis_run_status
    });
    if verdict == Some(Verdict::Successful) {
        if let Some(canary) = pass.status.canary.as_mut() {
            canary.current_step_analysis_run_status = None;
        }
        return true;
    }
    false
}

/// After an abort the canary stays up `abortScaleDownDelaySeconds` once traffic left it and
/// the stable can take everything; `0` keeps it. Returns whether a delay is being waited out.
pub(super) fn hold_aborted_canary(
    ctx: &Ctx<'_>,
    pass: &mut Pass,
    target: &mut Target<'_>,
    stable_rs: Option<&ReplicaSetView>,
    routing: &Routing,
) -> bool {
    let rs = target.rs;
    if target.to >= rs.spec_replicas || !ctx.routed {
        return false;
    }
    if ctx.strategy.dynamic_stable_scale() && ctx.strategy.abort_scale_down_delay_seconds.is_none()
    {
        return false;
    }
    let delay = match ctx.strategy.abort_scale_down() {
        AbortScaleDown::AfterSeconds(seconds) => seconds,
        AbortScaleDown::Never => -1,
    };
    let traffic_gone = !routing.references(rs);
    let stable_ready = stable_rs.is_some_and(|s| s.available_replicas >= ctx.replicas);
    if delay < 0 || !traffic_gone || !stable_ready {
        target.to = rs.spec_replicas;
        return false;
    }
    if delay == 0 {
        return false;
    }
    let delayed = in_scale_down_delay(pass, rs, i64::from(delay), ctx.now);
    if delayed {
        target.to = rs.spec_replicas;
    }
    delayed
}

/// Target size of an older ReplicaSet with traffic routing: kept while anything routes to
/// it, kept `scaleDownDelaySeconds` after it stopped being the stable, else removed.
pub(super) fn old_routed_target(
    ctx: &Ctx<'_>,
    pass: &mut Pass,
    rs: &ReplicaSetView,
    routing: &Routing,
    old: &RolloutStatus,
) -> (i32, bool) {
    if routing.references(rs) {
        return (rs.spec_replicas, false);
    }
    let hash = hash_of(rs);
    let stable_service = ctx
        .strategy
        .stable_service
        .as_deref()
        .and_then(|s| ctx.snap.service(s))
        .and_then(|s| s.selector_hash.as_deref());
    let written_stable = old
        .canary
        .as_ref()
        .and_then(|c| c.weights.as_ref())
        .and_then(|w| w.stable.pod_template_hash.as_deref());
    let was_stable = hash.is_some() && (stable_service == hash || written_stable == hash);
    let delay = ctx.strategy.scale_down_delay_seconds();
    // A delay already running is waited out; a new one starts only for the replaced stable.
    let delays = rs.scale_down_deadline.is_some()
        || (was_stable && !ctx.strategy.dynamic_stable_scale() && delay > 0);
    if delays && in_scale_down_delay(pass, rs, i64::from(delay), ctx.now) {
        return (rs.spec_replicas, true);
    }
    (0, false)
}

fn describe(step: &CanaryStep) -> String {
    if let Some(w) = step.set_weight {
        format!("setWeight: {w}")
    } else if let Some(p) = &step.pause {
        match &p.duration {
            Some(d) => format!(
                "pause: {}",
                serde_json::to_string(d)
                    .unwrap_or_default()
                    .trim_matches('"')
            ),
            None => "pause".to_owned(),
        }
    } else if step.set_canary_scale.is_some() {
        "setCanaryScale".to_owned()
    } else if step.set_header_route.is_some() {
        "setHeaderRoute".to_owned()
    } else if step.set_mirror_route.is_some() {
        "setMirrorRoute".to_owned()
    } else if step.analysis.is_some() {
        "analysis".to_owned()
    } else if step.experiment.is_some() {
        "experiment".to_owned()
    } else {
        "step".to_owned()
    }
}

/// Runs the current step and moves to the next one when it is complete. One step per pass;
/// `plan_rollout` runs passes until nothing moves.
pub(super) fn advance(
    ctx: &Ctx<'_>,
    pass: &mut Pass,
    routing: &Routing,
    counts_reached: bool,
    update: &Update<'_>,
) {
    let Some(index) = pass.status.current_step_index else {
        return;
    };
    let Some(step) = usize::try_from(index).ok().and_then(|i| ctx.steps.get(i)) else {
        return;
    };
    let n = ctx.step_count();
    // Upstream reports the step as completed before the resume it causes.
    let events_before = pass.events.len();
    let complete = if let Some(pause) = &step.pause {
        pause_step(ctx, pass, pause)
    } else if step.set_canary_scale.is_some() {
        counts_reached
    } else if let Some(weight) = step.set_weight {
        // Done only once the routers hold the weight: a write held back (or undone by
        // someone else and not yet redone) keeps the step open.
        counts_reached
            && (!ctx.routed
                || routing.in_sync
                    && routing
                        .intent_after
                        .as_ref()
                        .is_some_and(|i| i.canary_weight == weight)
                    && (weight == 0 || routing.canary_on_newest))
    } else if let Some(analysis) = step.analysis.as_ref().filter(|_| step.experiment.is_none()) {
        analysis_step(ctx, pass, analysis, index, update)
    } else if step.experiment.is_some() || step.plugin.is_some() {
        let kind = if step.experiment.is_some() {
            "experiment"
        } else {
            "plugin"
        };
        pass.waiting_message = Some(format!(
            "waiting at step {}/{n}: {kind} steps are not supported by Ramp yet",
            index + 1
        ));
        false
    } else if step.set_header_route.is_some() || step.set_mirror_route.is_some() {
        !ctx.routed || routing.in_sync
    } else {
        true
    };
    if complete {
        pass.events.insert(
            events_before,
            RolloutEvent::normal(
                "RolloutStepCompleted",
                format!(
                    "Rollout step {}/{n} completed ({})",
                    index + 1,
                    describe(step)
                ),
            ),
        );
        pass.status.current_step_index = Some(index + 1);
    }
}

/// A pause step: enter (add the condition), wait (duration or promotion), or finish.
fn pause_step(ctx: &Ctx<'_>, pass: &mut Pass, pause: &ramp_api::rollout::RolloutPause) -> bool {
    let duration = pause
        .parsed_duration()
        .and_then(Result::ok)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let st = &pass.status;
    let ours = pause_condition(st, pause_reason::CANARY_PAUSE_STEP).cloned();
    // The pause episode ends here for a canary: a later pause step starts its own.
    let resume = |pass: &mut Pass| {
        pass.status.controller_pause = None;
        resumed(pass, ctx.now);
        true
    };
    match ours {
        Some(condition) => {
            let Some(seconds) = duration else {
                return false;
            };
            let end = after(condition.start_time.0, seconds);
            if ctx.now >= end {
                remove_pause_condition(&mut pass.status, pause_reason::CANARY_PAUSE_STEP);
                resume(pass)
            } else {
                pass.wake(end);
                false
            }
        }
        None if st.has_pause_conditions() => false,
        // The controller paused and a user cleared the conditions: that is a promotion.
        None if st.controller_pause == Some(true) => resume(pass),
        None => {
            enter_pause(pass, pause_reason::CANARY_PAUSE_STEP, ctx.now);
            if let Some(seconds) = duration {
                pass.wake(after(ctx.now, seconds));
            }
            false
        }
    }
}

/// Makes the newest ReplicaSet stable once every step ran (or a full promotion was asked)
/// and the pods and traffic are where the last step wants them.
pub(super) fn promote(
    ctx: &Ctx<'_>,
    pass: &mut Pass,
    new_rs: &ReplicaSetView,
    counts_reached: bool,
    routing: &Routing,
) {
    let st = &pass.status;
    let promote_full = st.promote_full == Some(true);
    let steps_done = st.current_step_index.is_none_or(|i| i >= ctx.step_count());
    if !(steps_done || promote_full) || !counts_reached {
        return;
    }
    if new_rs.spec_replicas != ctx.replicas || new_rs.available_replicas < ctx.replicas {
        return;
    }
    let at_max = routing
        .intent_after
        .as_ref()
        .is_some_and(|i| i.canary_weight == ctx.max_weight)
        && routing.canary_on_newest;
    if ctx.routed && !promote_full && !at_max {
        return;
    }
    let Some(hash) = new_rs.pod_template_hash.clone() else {
        return;
    };
    let why = if promote_full {
        "Full promotion requested".to_owned()
    } else {
        format!("Completed all {} canary steps", ctx.steps.len())
    };
    pass.status.current_step_index = ctx.done_index();
    complete_promotion(pass, &hash, new_rs.revision.unwrap_or(0), &why);
}

/// Whether the update is at a step whose waiting does not count against the deadline.
pub(super) fn at_waiting_step(ctx: &Ctx<'_>, status: &RolloutStatus) -> bool {
    status
        .current_step_index
        .and_then(|i| usize::try_from(i).ok())
        .and_then(|i| ctx.steps.get(i))
        .is_some_and(|s| s.pause.is_some() || s.analysis.is_some() || s.experiment.is_some())
}

/// The sizes a pass aims at, for [`awaited`].
pub(super) struct Targets<'a> {
    pub new_rs: &'a ReplicaSetView,
    pub canary: i32,
    pub stable_rs: Option<&'a ReplicaSetView>,
    pub stable: i32,
}

/// What a step that moves pods or traffic (or the promotion after the last step) still waits
/// for, in the words of the status message. Upstream says "waiting for all steps to complete"
/// whatever the step; this names the pods or the traffic share not there yet.
pub(super) fn awaited(
    ctx: &Ctx<'_>,
    status: &RolloutStatus,
    targets: &Targets<'_>,
    routing: &Routing,
) -> Option<String> {
    let n = ctx.step_count();
    let index = status.current_step_index.unwrap_or(n);
    let step = usize::try_from(index).ok().and_then(|i| ctx.steps.get(i));
    let (waiting_for, wanted_weight) = match step {
        Some(step) if step.set_weight.is_some() || step.set_canary_scale.is_some() => (
            format!("step {}/{n} ({})", index + 1, describe(step)),
            usize::try_from(index)
                .ok()
                .map(|i| crate::replicas::set_weight_at(ctx.steps, i)),
        ),
        Some(_) => return None,
        None => ("promotion".to_owned(), Some(ctx.max_weight)),
    };
    let mut parts = Vec::new();
    let rs = targets.new_rs;
    if rs.spec_replicas != targets.canary {
        parts.push(format!(
            "canary ReplicaSet {} scaling from {} to {} pods",
            rs.name, rs.spec_replicas, targets.canary
        ));
    } else if rs.available_replicas < targets.canary {
        parts.push(format!(
            "canary ReplicaSet {} at {} of {} pods available",
            rs.name, rs.available_replicas, targets.canary
        ));
    }
    if let Some(stable) = targets.stable_rs
        && ctx.routed
        && stable.available_replicas < targets.stable
    {
        parts.push(format!(
            "stable ReplicaSet {} at {} of {} pods available",
            stable.name, stable.available_replicas, targets.stable
        ));
    }
    let held = routing.intent_after.as_ref().map(|i| i.canary_weight);
    if ctx.routed
        && let Some(wanted) = wanted_weight
        && (held != Some(wanted) || !routing.in_sync)
    {
        parts.push(format!("canary weight {} of {wanted}", held.unwrap_or(0)));
    }
    (!parts.is_empty()).then(|| format!("waiting for {waiting_for}: {}", parts.join(", ")))
}
