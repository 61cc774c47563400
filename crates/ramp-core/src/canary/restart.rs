//! `spec.restartAt`: pods created before that instant are evicted a few at a time (at most
//! `max(maxUnavailable, 1)` unavailable at once), then `status.restartedAt` records it.
//! Runs only on a world that this pass does not rescale, so the two budgets never mix.

use super::{Ctx, Pass};
use crate::plan::Action;
use crate::snapshot::ReplicaSetView;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

pub(super) fn restart_pods(ctx: &Ctx<'_>, pass: &mut Pass, live: &[&ReplicaSetView]) {
    let Some(restart_at) = ctx.spec.restart_at.as_ref() else {
        return;
    };
    if pass.status.restarted_at.as_ref() == Some(restart_at) || ctx.spec.is_paused() {
        return;
    }
    if restart_at.0 > ctx.now {
        pass.wake(restart_at.0);
        return;
    }
    let Some(pods) = &ctx.snap.pods else {
        return;
    };
    let scaling = pass.actions.iter().any(|a| {
        matches!(
            a,
            Action::ScaleReplicaSet { .. } | Action::CreateReplicaSet { .. }
        )
    });
    if scaling {
        return;
    }
    let ours = |name: &str| live.iter().any(|rs| rs.name == name);
    let stale =
        |created: Option<k8s_openapi::jiff::Timestamp>| created.is_none_or(|c| c < restart_at.0);
    let mut candidates: Vec<_> = pods
        .iter()
        .filter(|p| ours(&p.replica_set) && stale(p.created_at))
        .collect();
    if candidates.is_empty() {
        pass.status.restarted_at = Some(Time(restart_at.0));
        return;
    }
    let budget = ctx
        .spec
        .rollout_budget()
        .map_or(1, |b| b.max_unavailable)
        .max(1);
    let unavailable = pods
        .iter()
        .filter(|p| ours(&p.replica_set) && (p.being_deleted || !p.available))
        .count();
    let allowed = usize::try_from(budget)
        .unwrap_or(1)
        .saturating_sub(unavailable);
    candidates.retain(|p| !p.being_deleted);
    candidates.sort_by_key(|p| p.created_at);
    for pod in candidates.into_iter().take(allowed) {
        pass.actions.push(Action::EvictPod {
            name: pod.name.clone(),
        });
    }
}
