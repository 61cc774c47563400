//! The status written at the end of a pass: replica counts, the Progressing clock and the
//! progress deadline, the other conditions (§2.3), and phase and message (§2.2).

use super::steps::at_waiting_step;
use super::{Ctx, Pass, after};
use crate::conditions::{self, reason};
use crate::plan::RolloutEvent;
use crate::snapshot::ReplicaSetView;
use ramp_api::rollout::{RolloutSpec, RolloutStatus, condition_type};

/// Phase and message from spec and status; `waiting` names a step Ramp cannot run yet.
pub(super) fn set_phase(spec: &RolloutSpec, status: &mut RolloutStatus, waiting: Option<&str>) {
    let (phase, mut message) = conditions::compute_phase(spec, status);
    if let Some(waiting) = waiting.filter(|_| phase == ramp_api::rollout::phase::PROGRESSING) {
        message = waiting.to_owned();
    }
    status.phase = Some(phase.to_owned());
    status.message = Some(message);
}

fn selector_string(spec: &RolloutSpec) -> Option<String> {
    let labels = spec.selector.as_ref()?.match_labels.as_ref()?;
    Some(
        labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
    )
}

pub(super) fn finish(
    ctx: &Ctx<'_>,
    pass: &mut Pass,
    old: &RolloutStatus,
    new_rs: Option<&ReplicaSetView>,
    live: &[&ReplicaSetView],
) {
    let now = ctx.now;
    let st = &mut pass.status;
    // `controllerPause` with no pause condition means "a person resumed": the pass that saw it
    // acted on it, so it must not outlive this pass (a later pause step would take it for its
    // own resume, e.g. after Argo CD's skip-current-step moved past a pause).
    if !st.has_pause_conditions() {
        st.controller_pause = None;
    }
    let total: i32 = live.iter().map(|rs| rs.replicas).sum();
    st.replicas = Some(total);
    st.updated_replicas = Some(new_rs.map_or(0, |rs| rs.replicas));
    st.ready_replicas = Some(live.iter().map(|rs| rs.ready_replicas).sum());
    st.available_replicas = Some(live.iter().map(|rs| rs.available_replicas).sum());
    st.hpa_replicas = Some(total);
    st.selector = selector_string(ctx.spec);
    let rs_name = new_rs.map_or_else(String::new, |rs| rs.name.clone());
    let promoted = st.stable_rs.is_some() && st.stable_rs == st.current_pod_hash;
    let available = st.available_replicas.unwrap_or(0);
    let updated = st.updated_replicas.unwrap_or(0);
    let fully_available = promoted && updated >= ctx.replicas && available >= ctx.replicas;
    let paused = ctx.spec.is_paused() || st.has_pause_conditions();

    if new_rs.is_some() && !pass.progress_decided && !st.is_aborted() {
        let grew = |new: Option<i32>, old: Option<i32>| new.unwrap_or(0) > old.unwrap_or(0);
        let progressed = grew(st.updated_replicas, old.updated_replicas)
            || grew(st.ready_replicas, old.ready_replicas)
            || grew(st.available_replicas, old.available_replicas)
            || st.replicas.unwrap_or(0) < old.replicas.unwrap_or(0)
            || st.current_step_index != old.current_step_index
            || st.stable_rs != old.stable_rs
            || st.current_step_hash != old.current_step_hash;
        let deadline_applies =
            !fully_available && !paused && !pass.waiting_on_delay && !at_waiting_step(ctx, st);
        if fully_available {
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
        } else if promoted
            && old
                .condition(condition_type::PROGRESSING)
                .map(|c| c.reason.as_str())
                == Some(reason::NEW_REPLICA_SET_AVAILABLE)
        {
            // A promoted rollout lost pods: the deadline clock starts again from here.
            conditions::set_condition(
                st,
                condition_type::PROGRESSING,
                Some(true),
                reason::REPLICA_SET_NOT_AVAILABLE,
                "Rollout does not have minimum availability",
                now,
            );
        } else if progressed {
            conditions::refresh_condition(
                st,
                condition_type::PROGRESSING,
                Some(true),
                reason::REPLICA_SET_UPDATED,
                &format!("ReplicaSet \"{rs_name}\" is progressing."),
                now,
            );
        } else if deadline_applies {
            let current = st.condition(condition_type::PROGRESSING).cloned();
            if let Some(current) =
                current.filter(|c| c.reason != reason::PROGRESS_DEADLINE_EXCEEDED)
            {
                let seconds = i64::from(ctx.spec.progress_deadline_seconds());
                let deadline = after(current.last_update_time.0, seconds);
                if now >= deadline {
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
                    if ctx.spec.progress_deadline_abort() && !promoted {
                        st.abort = Some(true);
                    }
                } else {
                    pass.wake(deadline);
                }
            }
        }
    }

    let st = &mut pass.status;
    let (ok, message) = if available >= ctx.replicas {
        (true, "Rollout has minimum availability")
    } else {
        (false, "Rollout does not have minimum availability")
    };
    conditions::set_condition(
        st,
        condition_type::AVAILABLE,
        Some(ok),
        reason::AVAILABLE,
        message,
        now,
    );

    let revision = new_rs.and_then(|rs| rs.revision).unwrap_or(0);
    let hash = st.current_pod_hash.clone().unwrap_or_default();
    let was_completed = old
        .condition(condition_type::COMPLETED)
        .map(|c| c.status == "True");
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
    } else {
        let message =
            format!("Rollout not completed, started update to revision {revision} ({hash})");
        conditions::set_condition(
            st,
            condition_type::COMPLETED,
            Some(false),
            reason::ROLLOUT_COMPLETED,
            &message,
            now,
        );
        if was_completed == Some(true)
            && !pass
                .events
                .iter()
                .any(|e| e.reason == "RolloutNotCompleted")
        {
            pass.events
                .push(RolloutEvent::normal("RolloutNotCompleted", message));
        }
    }

    let steps_done = st.current_step_index.is_none_or(|i| i >= ctx.step_count());
    let healthy = !paused
        && promoted
        && steps_done
        && updated == ctx.replicas
        && available >= ctx.replicas
        && st.replicas == st.updated_replicas;
    conditions::set_healthy_and_paused(st, healthy, paused, now);
    let waiting = pass.waiting_message.clone();
    set_phase(ctx.spec, &mut pass.status, waiting.as_deref());
}
