//! What the canary and blue-green planners share about one reconcile pass: its outcome, its
//! opening (preflight, the new ReplicaSet found, created or made the newest revision again),
//! scaling and garbage collection of ReplicaSets, and the Progressing (with the progress
//! deadline), Available and Completed conditions. Gates, sizes, services, steps and the rest of
//! the status stay with each strategy.

use crate::conditions::{self, reason};
use crate::hash::{pod_template_hash, same_pod_template};
use crate::plan::{Action, RolloutEvent, RolloutPlan};
use crate::preflight;
use crate::snapshot::{ReplicaSetView, Snapshot};
use crate::world::{create_new_replica_set, reuse_revision, settle};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use ramp_api::rollout::{RolloutSpec, RolloutStatus, condition_type};

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
