//! What the canary and blue-green planners share about one reconcile pass: its outcome, its
//! opening (preflight, the new ReplicaSet found, created or made the newest revision again),
//! an update's life in the status (started, paused, resumed, aborted, retried, promoted),
//! scaling, scale-down delays and garbage collection of ReplicaSets, and the Progressing,
//! Available and Completed conditions. Gates, sizes, services and steps stay with each strategy.

use crate::conditions::{self, reason};
use crate::hash::{pod_template_hash, same_pod_template};
use crate::plan::{Action, RolloutEvent, RolloutPlan};
use crate::preflight;
use crate::snapshot::{ReplicaSetView, SCALE_DOWN_DEADLINE_ANNOTATION, Snapshot};
use crate::world::{create_new_replica_set, reuse_revision, settle};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use ramp_api::rollout::{
    PauseCondition, RolloutAnalysisRunStatus, RolloutSpec, RolloutStatus, condition_type,
    pause_reason,
};

/// The outcome of one pass.
pub(crate) struct Pass {
    pub(crate) actions: Vec<Action>,
    pub(crate) status: RolloutStatus,
    pub(crate) events: Vec<RolloutEvent>,
    pub(crate) wake_at: Option<Timestamp>,
    /// Preflight failed: only the status may be written.
    pub(crate) blocked: bool,
    /// The Progressing condition was already decided in this pass.
    pub(crate) progress_decided: bool,
    /// Waiting on something that does not count against the progress deadline (a pause, an
    /// analysis, a scale-down delay).
    pub(crate) waiting: bool,
    /// Why the rollout waits (shown as the message of a progressing phase).
    pub(crate) waiting_message: Option<String>,
    /// AnalysisRuns this pass still needs; the others are retired.
    pub(crate) wanted_runs: Vec<String>,
}

impl Pass {
    pub(crate) fn wake(&mut self, at: Timestamp) {
        self.wake_at = Some(self.wake_at.map_or(at, |w| w.min(at)));
    }
}

/// `seconds` after `now`, saturating at the end of time.
pub(crate) fn after(now: Timestamp, seconds: i64) -> Timestamp {
    now.checked_add(SignedDuration::from_secs(seconds))
        .unwrap_or(Timestamp::MAX)
}

/// Plans one reconcile by repeating `plan_pass` on the world its own actions produce until
/// nothing is left to do (so a plan is idempotent by construction).
pub(crate) fn plan_passes(
    snapshot: &Snapshot,
    max_passes: usize,
    plan_pass: fn(&Snapshot) -> Pass,
) -> RolloutPlan {
    settle(snapshot, max_passes, |world| {
        let pass = plan_pass(world);
        let plan = RolloutPlan {
            actions: pass.actions,
            status: pass.status,
            events: pass.events,
            wake_at: pass.wake_at,
        };
        (plan, pass.blocked)
    })
}

/// What a pass knows once its opening is done: the rollout's strategy and template, the live
/// ReplicaSets and the one the template asks for.
pub(crate) struct Opening<'a, S> {
    /// The status as observed, before this pass changed anything.
    pub(crate) old: RolloutStatus,
    pub(crate) strategy: &'a S,
    pub(crate) template: &'a PodTemplateSpec,
    /// ReplicaSets not being deleted.
    pub(crate) live: Vec<&'a ReplicaSetView>,
    /// The ReplicaSet of the desired template, when it exists.
    pub(crate) new_rs: Option<&'a ReplicaSetView>,
    pub(crate) new_hash: String,
    /// The new ReplicaSet's revision, or the one a created ReplicaSet gets.
    pub(crate) revision: i64,
    /// The highest revision of any ReplicaSet, deleted ones included.
    pub(crate) max_revision: i64,
}

/// Starts a pass: `observedGeneration`, the preflight checks (`InvalidSpec` blocks the pass)
/// and the search for the new ReplicaSet. `None` when the pass is blocked (`pass.blocked` is
/// set and its status is final), including a rollout without `strategy_of`'s strategy.
pub(crate) fn open_pass<'a, S>(
    snap: &'a Snapshot,
    strategy_of: impl FnOnce(&'a RolloutSpec) -> Option<&'a S>,
) -> (Pass, Option<Opening<'a, S>>) {
    let rollout = &snap.rollout;
    let old = rollout.status.clone().unwrap_or_default();
    let mut pass = Pass {
        actions: Vec::new(),
        status: old.clone(),
        events: Vec::new(),
        wake_at: None,
        blocked: false,
        progress_decided: false,
        waiting: false,
        waiting_message: None,
        wanted_runs: Vec::new(),
    };
    pass.status.observed_generation = rollout.metadata.generation.map(|g| g.to_string());
    if let Some(blocker) = preflight::blocker(snap) {
        let changed = old
            .condition(condition_type::INVALID_SPEC)
            .is_none_or(|c| c.message != blocker.message);
        conditions::set_condition(
            &mut pass.status,
            condition_type::INVALID_SPEC,
            Some(true),
            reason::INVALID_SPEC,
            &blocker.message,
            snap.now,
        );
        if changed {
            pass.events.push(blocker.event);
        }
        // No strategy's wait message applies to a degraded rollout.
        let (phase, message) = conditions::compute_phase(&rollout.spec, &pass.status);
        pass.status.phase = Some(phase.to_owned());
        pass.status.message = Some(message);
        pass.blocked = true;
        return (pass, None);
    }
    conditions::remove_condition(&mut pass.status, condition_type::INVALID_SPEC);
    let (Some(strategy), Some(template)) =
        (strategy_of(&rollout.spec), rollout.spec.template.as_ref())
    else {
        // Another strategy's rollout (the dispatcher never sends those): status untouched.
        pass.status = old;
        pass.blocked = true;
        return (pass, None);
    };
    let live: Vec<&ReplicaSetView> = snap
        .replica_sets
        .iter()
        .filter(|rs| !rs.being_deleted)
        .collect();
    let hash = pod_template_hash(template, old.collision_count);
    // A ReplicaSet carrying our hash is ours: its template was ours when it was created and
    // only the API server's defaulting changed it since. (Declaring a collision on a template
    // difference would risk a new ReplicaSet on every reconcile whenever the semantic
    // comparison misses a default; a real FNV collision between two templates of one
    // rollout is not worth that risk. `collisionCount` still feeds the hash when set.)
    let new_rs = live
        .iter()
        .find(|rs| rs.pod_template_hash.as_deref() == Some(hash.as_str()))
        .or_else(|| {
            live.iter()
                .filter(|rs| {
                    rs.template
                        .as_ref()
                        .is_some_and(|t| same_pod_template(template, t))
                })
                .max_by_key(|rs| rs.revision.unwrap_or(0))
        })
        .copied();
    let max_revision = snap
        .replica_sets
        .iter()
        .filter_map(|rs| rs.revision)
        .max()
        .unwrap_or(0);
    let new_hash = new_rs
        .and_then(|rs| rs.pod_template_hash.clone())
        .unwrap_or(hash);
    let revision = new_rs
        .and_then(|rs| rs.revision)
        .unwrap_or(max_revision + 1);
    let opening = Opening {
        old,
        strategy,
        template,
        live,
        new_rs,
        new_hash,
        revision,
        max_revision,
    };
    (pass, Some(opening))
}

impl<'a, S> Opening<'a, S> {
    /// Creates the new ReplicaSet when it is missing (`None`: the pass plans only that), or
    /// makes an older one the newest revision again (a rollback to its template).
    pub(crate) fn create_or_reuse(
        &self,
        pass: &mut Pass,
        rollout_name: &str,
        now: Timestamp,
    ) -> Option<&'a ReplicaSetView> {
        let Some(new_rs) = self.new_rs else {
            create_new_replica_set(
                rollout_name,
                self.template,
                &self.new_hash,
                self.revision,
                now,
                &mut pass.actions,
                &mut pass.events,
                &mut pass.status,
            );
            return None;
        };
        if new_rs.revision.is_some_and(|r| r < self.max_revision) {
            reuse_revision(new_rs, self.max_revision + 1, &mut pass.actions);
        }
        Some(new_rs)
    }
}

/// The template changed: a new update to `revision` starts, and what the previous one left in
/// the status (an abort, a full promotion, a pause) goes with it.
pub(crate) fn start_update(pass: &mut Pass, new_hash: &str, revision: i64) {
    let st = &mut pass.status;
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
}

/// The `RolloutCompleted` event of the update to `revision` (`hash`), with why it completed.
pub(crate) fn completed_event(revision: i64, hash: &str, why: &str) -> RolloutEvent {
    RolloutEvent::normal(
        "RolloutCompleted",
        format!("Rollout completed update to revision {revision} ({hash}): {why}"),
    )
}

/// The new ReplicaSet (`hash`) becomes the stable one: the update to `revision` is over, so
/// are a requested full promotion and any pause.
pub(crate) fn complete_promotion(pass: &mut Pass, hash: &str, revision: i64, why: &str) {
    let st = &mut pass.status;
    st.stable_rs = Some(hash.to_owned());
    st.promote_full = None;
    st.pause_conditions = None;
    st.controller_pause = None;
    pass.events.push(completed_event(revision, hash, why));
}

/// The pause condition with `reason`, while it holds the rollout.
pub(crate) fn pause_condition<'s>(
    status: &'s RolloutStatus,
    reason: &str,
) -> Option<&'s PauseCondition> {
    status
        .pause_conditions
        .iter()
        .flatten()
        .find(|c| c.reason == reason)
}

/// The controller pauses the rollout for `reason` (`pauseConditions[]` from now on, and
/// `controllerPause` to tell its own pause from a user's), with a `RolloutPaused` event.
pub(crate) fn add_pause_condition(pass: &mut Pass, reason: &str, now: Timestamp) {
    let st = &mut pass.status;
    st.pause_conditions
        .get_or_insert_with(Vec::new)
        .push(PauseCondition {
            reason: reason.to_owned(),
            start_time: Time(now),
        });
    st.controller_pause = Some(true);
    pass.events.push(RolloutEvent::normal(
        "RolloutPaused",
        format!("Rollout is paused ({reason})"),
    ));
}

/// Enters a pause for `reason` as [`add_pause_condition`], and the Progressing condition says
/// the rollout is paused (decided for this pass).
pub(crate) fn enter_pause(pass: &mut Pass, reason: &str, now: Timestamp) {
    add_pause_condition(pass, reason, now);
    conditions::set_condition(
        &mut pass.status,
        condition_type::PROGRESSING,
        None,
        reason::ROLLOUT_PAUSED,
        "Rollout is paused",
        now,
    );
    pass.progress_decided = true;
}

/// The pause condition with `reason` ended (its time ran out); an emptied list goes.
pub(crate) fn remove_pause_condition(status: &mut RolloutStatus, reason: &str) {
    if let Some(list) = status.pause_conditions.as_mut() {
        list.retain(|c| c.reason != reason);
    }
    if status.pause_conditions.as_ref().is_some_and(Vec::is_empty) {
        status.pause_conditions = None;
    }
}

/// A pause the controller entered is over (its time ran out or a person promoted): a
/// `RolloutResumed` event, and the Progressing condition says so (decided for this pass).
/// `controllerPause` stays with the strategy: blue-green keeps it until the switch.
pub(crate) fn resumed(pass: &mut Pass, now: Timestamp) {
    pass.events
        .push(RolloutEvent::normal("RolloutResumed", "Rollout is resumed"));
    conditions::set_condition(
        &mut pass.status,
        condition_type::PROGRESSING,
        None,
        reason::ROLLOUT_RESUMED,
        "Rollout is resumed",
        now,
    );
    pass.progress_decided = true;
}

/// A pause for an Inconclusive run is being held: the update waits for a person.
pub(crate) fn held_for_inconclusive_run(status: &RolloutStatus) -> bool {
    pause_condition(status, pause_reason::INCONCLUSIVE_ANALYSIS_RUN).is_some()
}

/// The pause an Inconclusive run (`recorded`) caused is gone: a person resumed, so the
/// controller's pause is over and a fresh run decides.
pub(crate) fn release_inconclusive_pause(
    status: &mut RolloutStatus,
    recorded: Option<&RolloutAnalysisRunStatus>,
) {
    if !held_for_inconclusive_run(status) && recorded.is_some_and(|r| r.status == "Inconclusive") {
        status.controller_pause = None;
    }
}

/// `status.abort` and `status.promoteFull` as users and tools write them. A promoted update has
/// nothing left to abort or promote. A full promotion takes back an abort and drops the pause
/// conditions (`skip` drops what else the strategy skips). A set `abort` aborts the update once
/// (`abort` enters the strategy's aborted state, with the progress deadline's message as the
/// cause when running out of it is why); a cleared one after an abort retries the update.
pub(crate) fn apply_user_requests(
    pass: &mut Pass,
    promoted: bool,
    now: Timestamp,
    skip: impl FnOnce(&mut RolloutStatus),
    abort: impl FnOnce(&mut Pass, Option<&str>),
) {
    let st = &mut pass.status;
    if promoted {
        st.abort = None;
        st.aborted_at = None;
        st.promote_full = None;
        return;
    }
    if st.promote_full == Some(true) {
        st.abort = None;
        st.aborted_at = None;
        st.pause_conditions = None;
        skip(st);
    }
    if st.is_aborted() {
        if st.aborted_at.is_none() {
            let cause = st
                .condition(condition_type::PROGRESSING)
                .filter(|c| c.reason == reason::PROGRESS_DEADLINE_EXCEEDED)
                .map(|c| c.message.clone());
            abort(pass, cause.as_deref());
        }
    } else if st.aborted_at.is_some() {
        retry_after_abort(pass, now);
    }
}

/// Aborts the update to `revision` now (`abortedAt`): its pause goes, Progressing turns False
/// with `RolloutAborted` and the `cause`, and a Warning event says the same.
pub(crate) fn abort_update(pass: &mut Pass, revision: i64, cause: Option<&str>, now: Timestamp) {
    let st = &mut pass.status;
    st.abort = Some(true);
    st.aborted_at = Some(Time(now));
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
        now,
    );
    pass.events
        .push(RolloutEvent::warning("RolloutAborted", message));
    pass.progress_decided = true;
}

/// A user cleared `status.abort` after an abort: the update is tried again.
fn retry_after_abort(pass: &mut Pass, now: Timestamp) {
    pass.status.aborted_at = None;
    conditions::set_condition(
        &mut pass.status,
        condition_type::PROGRESSING,
        None,
        reason::ROLLOUT_RETRY,
        "Retrying Rollout after abort",
        now,
    );
    pass.progress_decided = true;
}

/// Whether the pods moved since the observed status: more updated, ready or available pods,
/// fewer pods in all, or a new stable ReplicaSet. Each strategy adds its own measures.
pub(crate) fn pods_progressed(status: &RolloutStatus, old: &RolloutStatus) -> bool {
    let grew = |new: Option<i32>, old: Option<i32>| new.unwrap_or(0) > old.unwrap_or(0);
    grew(status.updated_replicas, old.updated_replicas)
        || grew(status.ready_replicas, old.ready_replicas)
        || grew(status.available_replicas, old.available_replicas)
        || status.replicas.unwrap_or(0) < old.replicas.unwrap_or(0)
        || status.stable_rs != old.stable_rs
}

/// What the end of a pass knows for the Progressing condition.
pub(crate) struct Progress<'a> {
    pub(crate) new_rs: Option<&'a ReplicaSetView>,
    pub(crate) promoted: bool,
    /// Promoted, and every pod of the new ReplicaSet available (and serving).
    pub(crate) fully_available: bool,
    /// Something moved in this pass.
    pub(crate) progressed: bool,
    /// A promoted rollout lost pods after it had completed: the deadline clock restarts.
    pub(crate) availability_lost: bool,
    /// Nothing the deadline waits out (a pause, an analysis, a delay) holds the rollout.
    pub(crate) deadline_applies: bool,
}

/// The Progressing condition, unless this pass already decided it or the update is aborted:
/// available, found (adoption), availability lost, progressing, or the progress deadline.
pub(crate) fn decide_progressing(
    pass: &mut Pass,
    spec: &RolloutSpec,
    progress: &Progress<'_>,
    now: Timestamp,
) {
    let Some(new_rs) = progress.new_rs else {
        return;
    };
    if pass.progress_decided || pass.status.is_aborted() {
        return;
    }
    let rs_name = new_rs.name.as_str();
    let st = &mut pass.status;
    if progress.fully_available {
        conditions::set_condition(
            st,
            condition_type::PROGRESSING,
            Some(true),
            reason::NEW_REPLICA_SET_AVAILABLE,
            &format!("ReplicaSet \"{rs_name}\" has successfully progressed."),
            now,
        );
    } else if st.condition(condition_type::PROGRESSING).is_none() {
        // First sight of a rollout whose ReplicaSet already existed (adoption).
        conditions::set_condition(
            st,
            condition_type::PROGRESSING,
            Some(true),
            reason::FOUND_NEW_REPLICA_SET,
            &format!("Found new replica set \"{rs_name}\""),
            now,
        );
    } else if progress.availability_lost {
        conditions::set_condition(
            st,
            condition_type::PROGRESSING,
            Some(true),
            reason::REPLICA_SET_NOT_AVAILABLE,
            "Rollout does not have minimum availability",
            now,
        );
    } else if progress.progressed {
        conditions::refresh_condition(
            st,
            condition_type::PROGRESSING,
            Some(true),
            reason::REPLICA_SET_UPDATED,
            &format!("ReplicaSet \"{rs_name}\" is progressing."),
            now,
        );
    } else if progress.deadline_applies {
        check_progress_deadline(pass, spec, rs_name, progress.promoted, now);
    }
}

/// The progress deadline of an update that made no progress this pass: `Progressing` turns
/// `False` with `ProgressDeadlineExceeded` once `progressDeadlineSeconds` passed since the
/// condition last changed (and the update aborts with `progressDeadlineAbort`); until then the
/// pass wakes at the deadline. Once exceeded, it stays so until something progresses.
fn check_progress_deadline(
    pass: &mut Pass,
    spec: &RolloutSpec,
    rs_name: &str,
    promoted: bool,
    now: Timestamp,
) {
    let st = &mut pass.status;
    let current = st.condition(condition_type::PROGRESSING).cloned();
    let Some(current) = current.filter(|c| c.reason != reason::PROGRESS_DEADLINE_EXCEEDED) else {
        return;
    };
    let seconds = i64::from(spec.progress_deadline_seconds());
    let deadline = after(current.last_update_time.0, seconds);
    if now < deadline {
        pass.wake(deadline);
        return;
    }
    let message = format!("ReplicaSet \"{rs_name}\" has timed out progressing.");
    conditions::set_condition(
        st,
        condition_type::PROGRESSING,
        Some(false),
        reason::PROGRESS_DEADLINE_EXCEEDED,
        &message,
        now,
    );
    pass.events.push(RolloutEvent::warning(
        reason::PROGRESS_DEADLINE_EXCEEDED,
        message,
    ));
    if spec.progress_deadline_abort() && !promoted {
        st.abort = Some(true);
    }
}

/// The Available condition: whether the pods that serve have minimum availability.
pub(crate) fn set_available(status: &mut RolloutStatus, ok: bool, now: Timestamp) {
    let message = if ok {
        "Rollout has minimum availability"
    } else {
        "Rollout does not have minimum availability"
    };
    conditions::set_condition(
        status,
        condition_type::AVAILABLE,
        Some(ok),
        reason::AVAILABLE,
        message,
        now,
    );
}

/// The Completed condition for the new ReplicaSet's `revision`, and `RolloutNotCompleted` when a
/// completed rollout starts an update (unless the pass already said so).
pub(crate) fn set_completed(
    pass: &mut Pass,
    old: &RolloutStatus,
    promoted: bool,
    revision: i64,
    now: Timestamp,
) {
    let st = &mut pass.status;
    let hash = st.current_pod_hash.clone().unwrap_or_default();
    if promoted {
        let message = format!("Rollout completed update to revision {revision} ({hash})");
        conditions::set_condition(
            st,
            condition_type::COMPLETED,
            Some(true),
            reason::ROLLOUT_COMPLETED,
            &message,
            now,
        );
        return;
    }
    let message = format!("Rollout not completed, started update to revision {revision} ({hash})");
    conditions::set_condition(
        st,
        condition_type::COMPLETED,
        Some(false),
        reason::ROLLOUT_COMPLETED,
        &message,
        now,
    );
    let was_completed = old
        .condition(condition_type::COMPLETED)
        .is_some_and(|c| c.status == "True");
    if was_completed
        && !pass
            .events
            .iter()
            .any(|e| e.reason == "RolloutNotCompleted")
    {
        pass.events
            .push(RolloutEvent::normal("RolloutNotCompleted", message));
    }
}

/// A ReplicaSet's desired size as decided in this pass.
pub(crate) struct Target<'a> {
    pub(crate) rs: &'a ReplicaSetView,
    pub(crate) to: i32,
}

/// The action that gives `t.rs` its size, with upstream's `ScalingReplicaSet` event.
pub(crate) fn scale_action(pass: &mut Pass, t: &Target<'_>) -> Action {
    let direction = if t.to > t.rs.spec_replicas {
        "up"
    } else {
        "down"
    };
    let revision = t.rs.revision.unwrap_or(0);
    pass.events.push(RolloutEvent::normal(
        "ScalingReplicaSet",
        format!(
            "Scaled {direction} ReplicaSet {} (revision {revision}) from {} to {}",
            t.rs.name, t.rs.spec_replicas, t.to
        ),
    ));
    Action::ScaleReplicaSet {
        name: t.rs.name.clone(),
        from: t.rs.spec_replicas,
        to: t.to,
    }
}

/// Writes the time `rs` may be scaled down at onto it, and wakes the pass then.
fn annotate_deadline(pass: &mut Pass, rs: &ReplicaSetView, deadline: Timestamp) {
    pass.actions.push(Action::AnnotateReplicaSet {
        name: rs.name.clone(),
        key: SCALE_DOWN_DEADLINE_ANNOTATION.to_owned(),
        value: Some(deadline.to_string()),
    });
    pass.wake(deadline);
}

/// Whether `rs` is still within its scale-down delay: its deadline (written `seconds` from now
/// the first time) has not passed. The pass wakes at the deadline.
pub(crate) fn in_scale_down_delay(
    pass: &mut Pass,
    rs: &ReplicaSetView,
    seconds: i64,
    now: Timestamp,
) -> bool {
    match rs.scale_down_deadline {
        None => {
            annotate_deadline(pass, rs, after(now, seconds));
            true
        }
        Some(deadline) if deadline > now => {
            pass.wake(deadline);
            true
        }
        Some(_) => false,
    }
}

/// Deletes the oldest fully scaled-down ReplicaSets beyond `revisionHistoryLimit`: never the
/// new or the stable one, nor one that an action already planned in this pass is about
/// (`touches` names the ReplicaSet an action is about, if it counts).
pub(crate) fn collect_garbage(
    pass: &mut Pass,
    spec: &RolloutSpec,
    live: &[&ReplicaSetView],
    new_rs: &ReplicaSetView,
    stable_rs: Option<&ReplicaSetView>,
    touches: fn(&Action) -> Option<&String>,
) {
    let touched = |name: &str| {
        pass.actions
            .iter()
            .any(|a| touches(a).is_some_and(|n| n == name))
    };
    let mut idle: Vec<&ReplicaSetView> = live
        .iter()
        .filter(|rs| rs.name != new_rs.name && stable_rs.is_none_or(|s| s.name != rs.name))
        .filter(|rs| rs.spec_replicas == 0 && rs.replicas == 0 && rs.scale_down_deadline.is_none())
        .filter(|rs| !touched(&rs.name))
        .copied()
        .collect();
    let limit = usize::try_from(spec.revision_history_limit().max(0)).unwrap_or(0);
    if idle.len() <= limit {
        return;
    }
    idle.sort_by_key(|rs| rs.revision.unwrap_or(0));
    let excess = idle.len() - limit;
    for rs in idle.into_iter().take(excess) {
        pass.actions.push(Action::DeleteReplicaSet {
            name: rs.name.clone(),
        });
    }
}
