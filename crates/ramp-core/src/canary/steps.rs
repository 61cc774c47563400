//! Step bookkeeping: noticing a new revision, honouring what users wrote into the status
//! (abort, retry, promoteFull, resume), running the current step, promotion, and the delays
//! that keep a ReplicaSet up after it stopped receiving traffic.

use super::routes::Routing;
use super::{Ctx, Pass, Target, after};
use crate::analysis::rollout::{RunIdentity, Verdict, follow};
use crate::conditions::{self, reason};
use crate::hash::steps_hash;
use crate::plan::{Action, RolloutEvent};
use crate::snapshot::AnalysisRunKind;
use crate::snapshot::{ReplicaSetView, SCALE_DOWN_DEADLINE_ANNOTATION};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use ramp_api::rollout::{
    AbortScaleDown, CanaryStatus, CanaryStep, PauseCondition, RolloutAnalysisRunStatus,
    RolloutStatus, condition_type, pause_reason,
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
    let st = &mut pass.status;
    let previous_hash = st.current_pod_hash.clone();
    if previous_hash.as_deref() != Some(new_hash) {
        st.current_pod_hash = Some(new_hash.to_owned());
        st.abort = None;
        st.aborted_at = None;
        st.promote_full = None;
        st.pause_conditions = None;
        st.controller_pause = None;
        pass.events.push(RolloutEvent::normal(
            "RolloutUpdated",
            format!("Rollout updated to revision {revision}"),
        ));
        match stable_rs {
            None => {
                st.stable_rs = Some(new_hash.to_owned());
                st.current_step_index = ctx.done_index();
                pass.events.push(RolloutEvent::normal(
                    "RolloutCompleted",
                    format!("Rollout completed update to revision {revision} ({new_hash}): Initial deploy"),
                ));
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
    } else if stable_rs.is_none() && st.stable_rs.as_deref() != Some(new_hash) {
        // The stable ReplicaSet vanished: nothing to go back to, so the newest is stable.
        st.stable_rs = Some(new_hash.to_owned());
        st.current_step_index = ctx.done_index();
    }
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

/// `status.abort`, `status.promoteFull` as users and tools write them.
pub(super) fn apply_user_requests(ctx: &Ctx<'_>, pass: &mut Pass, new_rs: &ReplicaSetView) {
    let st = &mut pass.status;
    let promoted = st.stable_rs.as_deref() == hash_of(new_rs);
    let revision = new_rs.revision.unwrap_or(0);
    if promoted {
        // Nothing left to abort or promote.
        st.abort = None;
        st.aborted_at = None;
        st.promote_full = None;
        return;
    }
    if st.promote_full == Some(true) {
        st.abort = None;
        st.aborted_at = None;
        st.current_step_index = ctx.done_index();
        st.pause_conditions = None;
        st.controller_pause = None;
    }
    if st.is_aborted() {
        if st.aborted_at.is_none() {
            let cause = st
                .condition(condition_type::PROGRESSING)
                .filter(|c| c.reason == reason::PROGRESS_DEADLINE_EXCEEDED)
                .map(|c| c.message.clone());
            enter_abort(ctx, pass, revision, cause.as_deref());
        }
    } else if st.aborted_at.is_some() {
        st.aborted_at = None;
        conditions::set_condition(
            st,
            condition_type::PROGRESSING,
            None,
            reason::ROLLOUT_RETRY,
            "Retrying Rollout after abort",
            ctx.now,
        );
        pass.progress_decided = true;
    }
}

/// Aborts the update to `revision`: steps start over, pauses are dropped, and the Progressing
/// condition and a Warning event carry the cause. Traffic goes back to stable on the next pass.
pub(super) fn enter_abort(ctx: &Ctx<'_>, pass: &mut Pass, revision: i64, cause: Option<&str>) {
    let st = &mut pass.status;
    st.abort = Some(true);
    st.aborted_at = Some(Time(ctx.now));
    st.current_step_index = (!ctx.steps.is_empty()).then_some(0);
    st.pause_conditions = None;
    st.controller_pause = None;
    let message = match cause {
        Some(cause) => format!("Rollout aborted update to revision {revision}: {cause}"),
        None => format!("Rollout aborted update to revision {revision}"),
    };
    conditions::set_condition(
        st,
        condition_type::PROGRESSING,
        Some(false),
        reason::ROLLOUT_ABORTED,
        &message,
        ctx.now,
    );
    pass.events
        .push(RolloutEvent::warning("RolloutAborted", message));
    pass.progress_decided = true;
}

/// The revision under update, for the runs that judge it.
pub(super) struct Update<'a> {
    pub hash: &'a str,
    pub revision: i64,
    pub stable_hash: Option<&'a str>,
}

fn inconclusive_pause(status: &RolloutStatus) -> bool {
    status
        .pause_conditions
        .iter()
        .flatten()
        .any(|c| c.reason == pause_reason::INCONCLUSIVE_ANALYSIS_RUN)
}

/// A pause for an Inconclusive run is being held: steps and promotion wait for a person.
pub(super) fn held_for_inconclusive_run(status: &RolloutStatus) -> bool {
    inconclusive_pause(status)
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
    let paused = inconclusive_pause(&pass.status);
    let recorded = pass.status.canary.as_mut().and_then(|c| slot(c).clone());
    if !paused
        && recorded
            .as_ref()
            .is_some_and(|r| r.status == "Inconclusive")
    {
        // A person resumed from the pause an Inconclusive run caused.
        pass.status.controller_pause = None;
    }
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
            let st = &mut pass.status;
            st.pause_conditions
                .get_or_insert_with(Vec::new)
                .push(PauseCondition {
                    reason: pause_reason::INCONCLUSIVE_ANALYSIS_RUN.to_owned(),
                    start_time: Time(ctx.now),
                });
            st.controller_pause = Some(true);
            pass.events.push(RolloutEvent::normal(
                "RolloutPaused",
                "Rollout is paused (InconclusiveAnalysisRun)",
            ));
            conditions::set_condition(
                st,
                condition_type::PROGRESSING,
                None,
                reason::ROLLOUT_PAUSED,
                "Rollout is paused",
                ctx.now,
            );
            pass.progress_decided = true;
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
    match rs.scale_down_deadline {
        None => {
            let deadline = after(ctx.now, i64::from(delay));
            annotate_deadline(pass, rs, deadline);
            target.to = rs.spec_replicas;
            true
        }
        Some(deadline) if deadline > ctx.now => {
            pass.wake(deadline);
            target.to = rs.spec_replicas;
            true
        }
        Some(_) => false,
    }
}

fn annotate_deadline(pass: &mut Pass, rs: &ReplicaSetView, deadline: Timestamp) {
    pass.actions.push(Action::AnnotateReplicaSet {
        name: rs.name.clone(),
        key: SCALE_DOWN_DEADLINE_ANNOTATION.to_owned(),
        value: Some(deadline.to_string()),
    });
    pass.wake(deadline);
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
    if let Some(deadline) = rs.scale_down_deadline {
        if deadline > ctx.now {
            pass.wake(deadline);
            return (rs.spec_replicas, true);
        }
        return (0, false);
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
    if was_stable && !ctx.strategy.dynamic_stable_scale() && delay > 0 {
        annotate_deadline(pass, rs, after(ctx.now, i64::from(delay)));
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
        counts_reached
            && (!ctx.routed
                || routing
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
    let st = &mut pass.status;
    let ours = st
        .pause_conditions
        .iter()
        .flatten()
        .find(|c| c.reason == pause_reason::CANARY_PAUSE_STEP)
        .cloned();
    let resumed = |pass: &mut Pass| {
        pass.status.controller_pause = None;
        pass.events
            .push(RolloutEvent::normal("RolloutResumed", "Rollout is resumed"));
        conditions::set_condition(
            &mut pass.status,
            condition_type::PROGRESSING,
            None,
            reason::ROLLOUT_RESUMED,
            "Rollout is resumed",
            ctx.now,
        );
        pass.progress_decided = true;
        true
    };
    match ours {
        Some(condition) => {
            let Some(seconds) = duration else {
                return false;
            };
            let end = after(condition.start_time.0, seconds);
            if ctx.now >= end {
                if let Some(list) = pass.status.pause_conditions.as_mut() {
                    list.retain(|c| c.reason != pause_reason::CANARY_PAUSE_STEP);
                }
                if pass
                    .status
                    .pause_conditions
                    .as_ref()
                    .is_some_and(Vec::is_empty)
                {
                    pass.status.pause_conditions = None;
                }
                resumed(pass)
            } else {
                pass.wake(end);
                false
            }
        }
        None if st.has_pause_conditions() => false,
        // The controller paused and a user cleared the conditions: that is a promotion.
        None if st.controller_pause == Some(true) => resumed(pass),
        None => {
            st.pause_conditions = Some(vec![PauseCondition {
                reason: pause_reason::CANARY_PAUSE_STEP.to_owned(),
                start_time: Time(ctx.now),
            }]);
            st.controller_pause = Some(true);
            pass.events.push(RolloutEvent::normal(
                "RolloutPaused",
                "Rollout is paused (CanaryPauseStep)",
            ));
            conditions::set_condition(
                st,
                condition_type::PROGRESSING,
                None,
                reason::ROLLOUT_PAUSED,
                "Rollout is paused",
                ctx.now,
            );
            pass.progress_decided = true;
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
    let st = &mut pass.status;
    st.stable_rs = Some(hash.clone());
    st.current_step_index = ctx.done_index();
    st.promote_full = None;
    st.pause_conditions = None;
    st.controller_pause = None;
    pass.events.push(RolloutEvent::normal(
        "RolloutCompleted",
        format!(
            "Rollout completed update to revision {} ({hash}): {why}",
            new_rs.revision.unwrap_or(0)
        ),
    ));
}

/// Whether the update is at a step whose waiting does not count against the deadline.
pub(super) fn at_waiting_step(ctx: &Ctx<'_>, status: &RolloutStatus) -> bool {
    status
        .current_step_index
        .and_then(|i| usize::try_from(i).ok())
        .and_then(|i| ctx.steps.get(i))
        .is_some_and(|s| s.pause.is_some() || s.analysis.is_some() || s.experiment.is_some())
}
