//! Checks before any decision: a Rollout that fails validation, or whose Services or router
//! objects are missing, gets an `InvalidSpec` condition and nothing in the cluster is touched.

use crate::analysis::rollout::{RunIdentity, analyses, run_spec};
use crate::plan::RolloutEvent;
use crate::snapshot::AnalysisRunKind;
use crate::snapshot::Snapshot;
use ramp_api::rollout::Rollout;
use ramp_api::validation::validate_rollout;

/// Why the rollout cannot be acted on: the condition message and the event to record.
#[derive(Clone, Debug, PartialEq)]
pub struct Blocker {
    pub message: String,
    pub event: RolloutEvent,
}

fn invalid(rollout: &Rollout, field: &str, reason: &str) -> String {
    let name = rollout.metadata.name.as_deref().unwrap_or_default();
    format!("The Rollout \"{name}\" is invalid: {field}: {reason}")
}

/// The first validation error, or the first missing or foreign reference.
pub fn blocker(snapshot: &Snapshot) -> Option<Blocker> {
    let rollout = &snapshot.rollout;
    if let Some(problem) = validate_rollout(rollout).into_iter().find(|p| p.is_error()) {
        let message = invalid(rollout, &problem.field, &problem.message);
        return Some(Blocker {
            event: RolloutEvent::warning("InvalidSpec", message.clone()),
            message,
        });
    }
    if rollout.spec.template.is_none() {
        let message = invalid(
            rollout,
            "spec.template",
            "Required value: workloadRef is not supported by Ramp yet",
        );
        return Some(Blocker {
            event: RolloutEvent::warning("InvalidSpec", message.clone()),
            message,
        });
    }
    if let Some(blocker) = analysis_blocker(snapshot) {
        return Some(blocker);
    }
    let name = rollout.metadata.name.as_deref().unwrap_or_default();
    let canary = rollout.spec.canary()?;
    for (field, service) in [
        (
            "spec.strategy.canary.canaryService",
            canary.canary_service.as_deref(),
        ),
        (
            "spec.strategy.canary.stableService",
            canary.stable_service.as_deref(),
        ),
    ] {
        let Some(service) = service.filter(|s| !s.is_empty()) else {
            continue;
        };
        let found = snapshot.service(service).filter(|s| s.exists);
        let reason = match found {
            None => format!("Invalid value: \"{service}\": service \"{service}\" not found"),
            Some(view) if view.managed_by.as_deref().is_some_and(|m| m != name) => format!(
                "Invalid value: \"{service}\": Service \"{service}\" is managed by another Rollout"
            ),
            Some(_) => continue,
        };
        let message = invalid(rollout, field, &reason);
        return Some(Blocker {
            event: RolloutEvent::warning("InvalidSpec", message.clone()),
            message,
        });
    }
    let missing = snapshot.router_objects.iter().find(|o| !o.exists)?;
    let reason = format!("{}NotFound", missing.kind);
    let message = invalid(
        rollout,
        "spec.strategy.canary.trafficRouting",
        &format!("{} \"{}\" not found", missing.kind, missing.name),
    );
    Some(Blocker {
        event: RolloutEvent::warning(&reason, message.clone()),
        message,
    })
}

/// The first analysis whose run could not be built: a template missing, templates that do
/// not merge, an argument without a value or with a `fieldRef` that does not resolve.
fn analysis_blocker(snapshot: &Snapshot) -> Option<Blocker> {
    let rollout = &snapshot.rollout;
    // Any revision will do: only the shape of the run is checked here.
    let probe = RunIdentity {
        kind: AnalysisRunKind::Background,
        hash: "0",
        revision: 0,
        step_index: None,
        stable_hash: None,
    };
    analyses(rollout).into_iter().find_map(|(field, analysis)| {
        let reason = run_spec(rollout, &snapshot.analysis_templates, &analysis, &probe).err()?;
        let message = invalid(rollout, &field, &reason);
        Some(Blocker {
            event: RolloutEvent::warning("InvalidSpec", message.clone()),
            message,
        })
    })
}
