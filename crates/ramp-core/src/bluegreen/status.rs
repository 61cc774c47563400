//! The status written at the end of a blue-green pass: selectors, counts of the active
//! ReplicaSet (research doc §2.1), the conditions (§2.3) and phase and message (§2.2 rule 8).

use super::{Ctx, Pass};
use crate::conditions;
use crate::pass::{Progress, decide_progressing, pods_progressed, set_available, set_completed};
use crate::plan::Action;
use crate::snapshot::{POD_TEMPLATE_HASH_LABEL, ReplicaSetView};
use ramp_api::rollout::{RolloutSpec, RolloutStatus};

/// Messages of §2.2 rule 8, which a more precise reason to wait may replace (the earlier rules'
/// messages about pods are kept as upstream writes them).
const CUTOVER_MESSAGES: [&str; 3] = [
    "active service cutover pending",
    "waiting for analysis to complete",
    "waiting for post-promotion verification to complete",
];

/// Phase and message from spec and status; `waiting` says what a progressing update waits on.
pub(super) fn set_phase(spec: &RolloutSpec, status: &mut RolloutStatus, waiting: Option<&str>) {
    let (phase, mut message) = conditions::compute_phase(spec, status);
    if let Some(waiting) = waiting.filter(|_| {
        phase == ramp_api::rollout::phase::PROGRESSING
            && CUTOVER_MESSAGES.contains(&message.as_str())
    }) {
        message = waiting.to_owned();
    }
    status.phase = Some(phase.to_owned());
    status.message = Some(message);
}

/// The hash a service selects once this pass's actions ran.
fn selector_after(ctx: &Ctx<'_>, pass: &Pass, service: Option<&str>) -> Option<String> {
    let service = service?;
    pass.actions
        .iter()
        .rev()
        .find_map(|a| match a {
            Action::PointService {
                service: s,
                pod_template_hash,
            } if s == service => Some(pod_template_hash.clone()),
            _ => None,
        })
        .or_else(|| ctx.observed_selector(Some(service)))
}

/// The scale subresource's selector: only the active pods, so an HPA measures those.
fn selector_string(spec: &RolloutSpec, active: Option<&str>) -> Option<String> {
    let labels = spec.selector.as_ref()?.match_labels.as_ref()?;
    let mut parts: Vec<String> = labels
        .iter()
        .filter(|(k, _)| k.as_str() != POD_TEMPLATE_HASH_LABEL)
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if let Some(active) = active {
        parts.push(format!("{POD_TEMPLATE_HASH_LABEL}={active}"));
    }
    Some(parts.join(","))
}

pub(super) fn finish(
    ctx: &Ctx<'_>,
    pass: &mut Pass,
    old: &RolloutStatus,
    new_rs: Option<&ReplicaSetView>,
    live: &[&ReplicaSetView],
) {
    let now = ctx.now;
    let active = selector_after(ctx, pass, Some(ctx.strategy.active_service.as_str()));
    let preview_service = ctx
        .strategy
        .preview_service
        .as_deref()
        .filter(|s| !s.is_empty());
    let preview = selector_after(ctx, pass, preview_service);
    let bg = pass.blue_green();
    bg.active_selector = active.clone();
    bg.preview_selector = preview.clone();
    let active_rs = live
        .iter()
        .find(|rs| active.is_some() && rs.pod_template_hash == active)
        .copied();
    let st = &mut pass.status;
    let total: i32 = live.iter().map(|rs| rs.replicas).sum();
    st.replicas = Some(total);
    st.updated_replicas = Some(new_rs.map_or(0, |rs| rs.replicas));
    match active_rs {
        Some(rs) => {
            st.ready_replicas = Some(rs.ready_replicas);
            st.available_replicas = Some(rs.available_replicas);
            st.hpa_replicas = Some(rs.replicas);
        }
        None => {
            st.ready_replicas = Some(live.iter().map(|rs| rs.ready_replicas).sum());
            st.available_replicas = Some(live.iter().map(|rs| rs.available_replicas).sum());
            st.hpa_replicas = Some(total);
        }
    }
    st.selector = selector_string(ctx.spec, active.as_deref());

    let current = st.current_pod_hash.clone();
    let promoted = st.stable_rs.is_some() && st.stable_rs == current;
    let switched = active.is_some() && active == current;
    let updated = st.updated_replicas.unwrap_or(0);
    let available = st.available_replicas.unwrap_or(0);
    let fully_available =
        promoted && switched && updated >= ctx.replicas && available >= ctx.replicas;
    let paused = ctx.spec.is_paused() || st.has_pause_conditions();
    let selectors_changed = old
        .blue_green
        .as_ref()
        .map(|b| (&b.active_selector, &b.preview_selector))
        != st
            .blue_green
            .as_ref()
            .map(|b| (&b.active_selector, &b.preview_selector));

    let progress = Progress {
        new_rs,
        promoted,
        fully_available,
        progressed: pods_progressed(st, old) || selectors_changed,
        availability_lost: false,
        deadline_applies: !paused && !pass.waiting,
    };
    decide_progressing(pass, ctx.spec, &progress, now);
    let saturated = active_rs.is_some_and(|rs| rs.available_replicas >= ctx.replicas);
    set_available(&mut pass.status, saturated, now);
    let revision = new_rs.and_then(|rs| rs.revision).unwrap_or(0);
    set_completed(pass, old, promoted, revision, now);

    let st = &mut pass.status;
    let preview_ok = preview_service.is_none() || preview == current;
    let healthy = !paused
        && promoted
        && switched
        && preview_ok
        && updated == ctx.replicas
        && available >= ctx.replicas;
    conditions::set_healthy_and_paused(st, healthy, paused, now);
    let waiting = pass.waiting_message.clone();
    set_phase(ctx.spec, &mut pass.status, waiting.as_deref());
}
