//! The world as it would look right after an executor applied a plan, before any pod started
//! or stopped: what `plan_rollout` iterates on to reach a fixed point, and what simulators
//! build on (they then move pod counts toward the new specs).

use crate::plan::{Action, RolloutEvent, RolloutPlan};
use crate::snapshot::{
    AnalysisRunSummary, POD_TEMPLATE_HASH_LABEL, REVISION_ANNOTATION, REVISION_HISTORY_ANNOTATION,
    ReplicaSetView, SCALE_DOWN_DEADLINE_ANNOTATION, ServiceView, Snapshot,
};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::jiff::Timestamp;
use ramp_api::rollout::RolloutStatus;

/// `snapshot` after every action of `plan` succeeded and its status was written. Pod counts
/// (`replicas`, `ready`, `available`) do not grow: only the cluster's controllers do that. A
/// scaled ReplicaSet's status is stale until its controller reports again, and its available
/// pods are at most its new spec.
pub fn apply_plan(snapshot: &Snapshot, plan: &RolloutPlan) -> Snapshot {
    let mut next = snapshot.clone();
    let rollout_name = next.rollout.metadata.name.clone().unwrap_or_default();
    for action in &plan.actions {
        match action {
            Action::CreateReplicaSet {
                name,
                pod_template_hash,
                revision,
                replicas,
                template,
            } => {
                if next.replica_sets.iter().all(|rs| &rs.name != name) {
                    next.replica_sets.push(ReplicaSetView {
                        name: name.clone(),
                        pod_template_hash: Some(pod_template_hash.clone()),
                        revision: Some(*revision),
                        revision_history: None,
                        spec_replicas: *replicas,
                        replicas: 0,
                        ready_replicas: 0,
                        available_replicas: 0,
                        status_current: false,
                        scale_down_deadline: None,
                        created_at: Some(snapshot.now),
                        template: Some(template.as_ref().clone()),
                        being_deleted: false,
                        ephemeral_metadata: None,
                    });
                }
            }
            Action::ScaleReplicaSet { name, to, .. } => {
                if let Some(rs) = next.replica_sets.iter_mut().find(|rs| &rs.name == name)
                    && rs.spec_replicas != *to
                {
                    // Pods beyond a lower spec are going: none of them may take traffic, even
                    // before the ReplicaSet controller counts again.
                    rs.spec_replicas = *to;
                    rs.available_replicas = rs.available_replicas.min(*to);
                    rs.status_current = false;
                }
            }
            Action::AnnotateReplicaSet { name, key, value } => {
                if let Some(rs) = next.replica_sets.iter_mut().find(|rs| &rs.name == name) {
                    if key == SCALE_DOWN_DEADLINE_ANNOTATION {
                        rs.scale_down_deadline = value.as_deref().and_then(|v| v.parse().ok());
                    } else if key == REVISION_ANNOTATION {
                        rs.revision = value.as_deref().and_then(|v| v.parse().ok());
                    } else if key == REVISION_HISTORY_ANNOTATION {
                        rs.revision_history.clone_from(value);
                    } else if key == POD_TEMPLATE_HASH_LABEL {
                        rs.pod_template_hash = value.clone();
                    }
                }
            }
            Action::PointService {
                service,
                pod_template_hash,
            } => match next.services.iter_mut().find(|s| &s.name == service) {
                Some(s) => {
                    s.selector_hash = Some(pod_template_hash.clone());
                    s.managed_by = Some(rollout_name.clone());
                }
                None => next.services.push(ServiceView {
                    name: service.clone(),
                    exists: true,
                    selector_hash: Some(pod_template_hash.clone()),
                    managed_by: Some(rollout_name.clone()),
                }),
            },
            Action::SetTraffic(intent) => {
                // Every field Ramp owns now says what it wrote.
                next.traffic = Some(intent.clone());
                next.traffic_read = None;
            }
            Action::EvictPod { name } => {
                let pod = next.pods.iter_mut().flatten().find(|p| &p.name == name);
                if let Some(pod) = pod {
                    pod.being_deleted = true;
                    pod.available = false;
                }
            }
            Action::DeleteReplicaSet { name } => next.replica_sets.retain(|rs| &rs.name != name),
            Action::CreateAnalysisRun { run } => {
                let name = run.metadata.name.clone().unwrap_or_default();
                if next.analysis_runs.iter().all(|r| r.name != name)
                    && let Some(mut summary) = AnalysisRunSummary::from_run(run)
                {
                    summary.created_at = Some(snapshot.now);
                    next.analysis_runs.push(summary);
                }
            }
            Action::TerminateAnalysisRun { name } => {
                if let Some(run) = next.analysis_runs.iter_mut().find(|r| &r.name == name) {
                    run.terminate = true;
                }
            }
            Action::DeleteAnalysisRun { name } => next.analysis_runs.retain(|r| &r.name != name),
            Action::SetPodMetadata {
                replica_set,
                metadata,
                ..
            } => {
                if let Some(rs) = next
                    .replica_sets
                    .iter_mut()
                    .find(|rs| &rs.name == replica_set)
                {
                    rs.ephemeral_metadata = Some(metadata.clone());
                }
            }
        }
    }
    next.rollout.status = Some(plan.status.clone());
    next
}

/// Plans one reconcile by repeating a strategy's single pass on the world its own actions
/// produce until nothing is left to do, so that planning again on the result is a no-op by
/// construction. Stops after `max_passes` (the next reconcile carries on) or at a pass that may
/// only write status (`blocked`).
pub(crate) fn settle(
    snapshot: &Snapshot,
    max_passes: usize,
    mut plan_pass: impl FnMut(&Snapshot) -> (RolloutPlan, bool),
) -> RolloutPlan {
    let mut world = snapshot.clone();
    let mut plan = RolloutPlan {
        actions: Vec::new(),
        status: snapshot.rollout.status.clone().unwrap_or_default(),
        events: Vec::new(),
        wake_at: None,
    };
    for _ in 0..max_passes {
        let (pass, blocked) = plan_pass(&world);
        let settled =
            pass.actions.is_empty() && world.rollout.status.as_ref() == Some(&pass.status);
        world = apply_plan(&world, &pass);
        plan.actions.extend(pass.actions);
        plan.events.extend(pass.events);
        plan.status = pass.status;
        plan.wake_at = pass.wake_at;
        if settled || blocked {
            break;
        }
    }
    plan
}

/// Starts a new revision: the action creating `<rollout>-<hash>` at zero replicas, the
/// `NewReplicaSetCreated` event (upstream reports it right after "RolloutUpdated") and the
/// Progressing condition that says so. Shared by both strategies.
#[allow(clippy::too_many_arguments)]
pub(crate) fn create_new_replica_set(
    rollout_name: &str,
    template: &PodTemplateSpec,
    hash: &str,
    revision: i64,
    now: Timestamp,
    actions: &mut Vec<Action>,
    events: &mut Vec<RolloutEvent>,
    status: &mut RolloutStatus,
) {
    let name = format!("{rollout_name}-{hash}");
    let mut template = template.clone();
    template
        .metadata
        .get_or_insert_with(Default::default)
        .labels
        .get_or_insert_with(Default::default)
        .insert(POD_TEMPLATE_HASH_LABEL.to_owned(), hash.to_owned());
    actions.push(Action::CreateReplicaSet {
        name: name.clone(),
        pod_template_hash: hash.to_owned(),
        revision,
        replicas: 0,
        template: Box::new(template),
    });
    let at = events
        .iter()
        .position(|e| e.reason == "RolloutUpdated")
        .map_or(events.len(), |i| i + 1);
    events.insert(
        at,
        RolloutEvent::normal(
            "NewReplicaSetCreated",
            format!("Created ReplicaSet {name} (revision {revision})"),
        ),
    );
    crate::conditions::set_condition(
        status,
        ramp_api::rollout::condition_type::PROGRESSING,
        Some(true),
        crate::conditions::reason::NEW_REPLICA_SET_CREATED,
        &format!("Created new replica set \"{name}\""),
        now,
    );
}

/// Makes an older ReplicaSet the newest revision again (a rollback to its template), keeping
/// the revisions it had in `rollout.argoproj.io/revision-history`, as upstream does (the
/// plugin's `history` reads it to show what was rolled back to).
pub(crate) fn reuse_revision(rs: &ReplicaSetView, revision: i64, actions: &mut Vec<Action>) {
    if let Some(previous) = rs.revision {
        let history = match rs.revision_history.as_deref().filter(|h| !h.is_empty()) {
            Some(history) => format!("{history},{previous}"),
            None => previous.to_string(),
        };
        actions.push(Action::AnnotateReplicaSet {
            name: rs.name.clone(),
            key: REVISION_HISTORY_ANNOTATION.to_owned(),
            value: Some(history),
        });
    }
    actions.push(Action::AnnotateReplicaSet {
        name: rs.name.clone(),
        key: REVISION_ANNOTATION.to_owned(),
        value: Some(revision.to_string()),
    });
}
