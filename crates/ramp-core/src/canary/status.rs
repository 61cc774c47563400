//! The status written at the end of a pass: replica counts, the Progressing clock and the
//! progress deadline, the other conditions (§2.3), and phase and message (§2.2).

use super::steps::at_waiting_step;
use super::{Ctx, Pass};
use crate::conditions::{self, reason};
use crate::pass::{Progress, decide_progressing, pods_progressed, set_available, set_completed};
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
    let promoted = st.stable_rs.is_some() && st.stable_rs == st.current_pod_hash;
    let available = st.available_replicas.unwrap_or(0);
    let updated = st.updated_replicas.unwrap_or(0);
    let fully_available = promoted && updated >= ctx.replicas && available >= ctx.replicas;
    let paused = ctx.spec.is_paused() || st.has_pause_conditions();

    let progress = Progress {
        new_rs,
        promoted,
        fully_available,
        progressed: pods_progressed(st, old)
            || st.current_step_index != old.current_step_index
            || st.current_step_hash != old.current_step_hash,
        availability_lost: promoted
            && old
                .condition(condition_type::PROGRESSING)
                .map(|c| c.reason.as_str())
                == Some(reason::NEW_REPLICA_SET_AVAILABLE),
        deadline_applies: !fully_available && !paused && !pass.waiting && !at_waiting_step(ctx, st),
    };
    decide_progressing(pass, ctx.spec, &progress, now);
    set_available(&mut pass.status, available >= ctx.replicas, now);
    let revision = new_rs.and_then(|rs| rs.revision).unwrap_or(0);
    set_completed(pass, old, promoted, revision, now);

    let st = &mut pass.status;
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
