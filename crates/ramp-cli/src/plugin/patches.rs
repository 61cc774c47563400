//! The exact writes each command makes, as pure functions of the objects read: JSON merge
//! patches for the rollout and its status subresource (identical to the upstream plugin's, see
//! the compatibility reference §6), the JSON patch of `undo` and the edited object of
//! `set image`. No I/O here, so every body can be checked without a server.

use super::errors::PluginError;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::jiff::Timestamp;
use ramp_api::rollout::Rollout;
use serde_json::{Map, Value, json};

/// Label the controller adds to ReplicaSets and pods; stripped from a template on undo.
pub const POD_TEMPLATE_HASH_LABEL: &str = "rollouts-pod-template-hash";
/// ReplicaSet annotation holding the revision number.
pub const REVISION_ANNOTATION: &str = "rollout.argoproj.io/revision";

/// The merge patches one command sends to a rollout.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RolloutPatches {
    /// For the main resource, sent as is.
    pub spec: Option<Value>,
    /// For the `status` subresource, tried first.
    pub status: Option<Value>,
    /// Sent to the main resource instead of `status` (and `spec`) when the server has no status
    /// subresource for rollouts.
    pub unified: Option<Value>,
}

impl RolloutPatches {
    fn new(spec: Option<Value>, status: Option<Value>) -> Self {
        let unified = status.as_ref().map(|status| {
            let mut merged = Map::new();
            if let Some(Value::Object(spec_fields)) = &spec {
                merged.extend(spec_fields.clone());
            }
            if let Value::Object(status_fields) = status {
                merged.extend(status_fields.clone());
            }
            Value::Object(merged)
        });
        RolloutPatches {
            spec,
            status,
            unified,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.spec.is_none() && self.status.is_none()
    }
}

fn name_of(rollout: &Rollout) -> String {
    rollout.metadata.name.clone().unwrap_or_default()
}

fn is_step_analysis_inconclusive(rollout: &Rollout) -> bool {
    rollout
        .status
        .as_ref()
        .and_then(|s| s.canary.as_ref())
        .and_then(|c| c.current_step_analysis_run_status.as_ref())
        .is_some_and(|run| run.status == "Inconclusive")
}

/// `promote [--full]`.
///
/// Default: resume a manual pause, clear the pause conditions, or (canary without a pause
/// condition) skip the current step. `--full`: ask the controller to go straight to 100%.
/// A rollout with nothing left to promote is refused rather than patched for nothing.
pub fn promote(rollout: &Rollout, full: bool) -> Result<RolloutPatches, PluginError> {
    let name = name_of(rollout);
    let status = rollout.status.clone().unwrap_or_default();
    let manually_paused = rollout.spec.is_paused();
    let spec_patch = manually_paused.then(|| json!({"spec": {"paused": false}}));
    let fully_promoted = status.is_fully_promoted();

    if full {
        let status_patch = (!fully_promoted).then(|| json!({"status": {"promoteFull": true}}));
        if status_patch.is_none() && spec_patch.is_none() {
            return Err(PluginError::AlreadyPromoted { name });
        }
        return Ok(RolloutPatches::new(spec_patch, status_patch));
    }

    let steps = rollout.spec.steps();
    let has_pause_conditions = status.has_pause_conditions();
    let current_index = status.current_step_index.unwrap_or(0);
    let steps_len = i32::try_from(steps.len()).unwrap_or(i32::MAX);
    let status_patch = if is_step_analysis_inconclusive(rollout)
        && has_pause_conditions
        && status.controller_pause.unwrap_or(false)
    {
        Some(json!({"status": {
            "pauseConditions": null,
            "controllerPause": false,
            "currentStepIndex": current_index + 1,
        }}))
    } else if has_pause_conditions {
        Some(json!({"status": {"pauseConditions": null}}))
    } else if rollout.spec.canary().is_some() && !steps.is_empty() && !fully_promoted {
        let next = (current_index + 1).min(steps_len);
        Some(json!({"status": {"pauseConditions": null, "currentStepIndex": next}}))
    } else {
        None
    };
    if status_patch.is_none() && spec_patch.is_none() {
        if fully_promoted {
            return Err(PluginError::AlreadyPromoted { name });
        }
        return Err(PluginError::Refused {
            name,
            reason: "it is not paused and has no canary step to skip; use --full to promote it \
                     to 100%"
                .to_owned(),
        });
    }
    Ok(RolloutPatches::new(spec_patch, status_patch))
}

/// `abort`: set `status.abort`.
pub fn abort() -> RolloutPatches {
    RolloutPatches::new(None, Some(json!({"status": {"abort": true}})))
}

/// `retry rollout`: clear `status.abort`; refused when the rollout is not aborted.
pub fn retry(rollout: &Rollout) -> Result<RolloutPatches, PluginError> {
    let aborted = rollout.status.as_ref().is_some_and(|s| s.is_aborted());
    if !aborted {
        return Err(PluginError::NotAborted {
            name: name_of(rollout),
        });
    }
    Ok(RolloutPatches::new(
        None,
        Some(json!({"status": {"abort": false}})),
    ))
}

/// `pause`: set `spec.paused`.
pub fn pause() -> RolloutPatches {
    RolloutPatches::new(Some(json!({"spec": {"paused": true}})), None)
}

/// `resume`: what Argo CD's "resume" action does: clear the pause conditions (if any) and
/// `spec.paused` (if set). Refused when neither is there.
pub fn resume(rollout: &Rollout) -> Result<RolloutPatches, PluginError> {
    let has_pause_conditions = rollout
        .status
        .as_ref()
        .is_some_and(|s| s.has_pause_conditions());
    let spec = rollout
        .spec
        .is_paused()
        .then(|| json!({"spec": {"paused": false}}));
    let status = has_pause_conditions.then(|| json!({"status": {"pauseConditions": null}}));
    let patches = RolloutPatches::new(spec, status);
    if patches.is_empty() {
        return Err(PluginError::NotPaused {
            name: name_of(rollout),
        });
    }
    Ok(patches)
}

/// `restart [--in D]`: `spec.restartAt` = now + D, in UTC at whole seconds (RFC 3339).
pub fn restart(now: Timestamp, delay: std::time::Duration) -> Result<RolloutPatches, PluginError> {
    let delay = k8s_openapi::jiff::SignedDuration::try_from(delay)
        .map_err(|e| PluginError::Usage(format!("--in: {e}")))?;
    let at = now
        .checked_add(delay)
        .map_err(|e| PluginError::Usage(format!("--in: {e}")))?;
    let at = at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    Ok(RolloutPatches::new(
        Some(json!({"spec": {"restartAt": at}})),
        None,
    ))
}

/// The revision number a ReplicaSet carries, if it carries a valid one.
pub fn revision_of(replica_set: &ReplicaSet) -> Option<i64> {
    replica_set
        .metadata
        .annotations
        .as_ref()?
        .get(REVISION_ANNOTATION)?
        .parse()
        .ok()
}

/// What `undo` will do.
#[derive(Clone, Debug, PartialEq)]
pub enum UndoPlan {
    /// The rollout's template already is that revision's.
    AlreadyAt { revision: i64 },
    /// Send this JSON patch to the rollout.
    Patch { revision: i64, json_patch: Value },
}

/// `undo [--to-revision N]`: replace `spec.template` with the template of revision N (0 = the
/// previous revision), without the pod-template-hash label the controller added.
pub fn undo(
    rollout: &Rollout,
    replica_sets: &[ReplicaSet],
    to_revision: i64,
) -> Result<UndoPlan, PluginError> {
    let name = name_of(rollout);
    if rollout.spec.workload_ref.is_some() {
        return Err(PluginError::Refused {
            name,
            reason: "it takes its template from a workloadRef; undo that workload instead"
                .to_owned(),
        });
    }
    let mut revisions: Vec<(i64, &ReplicaSet)> = replica_sets
        .iter()
        .filter_map(|rs| revision_of(rs).map(|r| (r, rs)))
        .collect();
    revisions.sort_by_key(|(r, _)| *r);
    let chosen = if to_revision == 0 {
        if revisions.len() < 2 {
            return Err(PluginError::Refused {
                name,
                reason: "it has no previous revision to go back to".to_owned(),
            });
        }
        revisions.get(revisions.len() - 2).copied()
    } else {
        revisions.iter().find(|(r, _)| *r == to_revision).copied()
    };
    let Some((revision, replica_set)) = chosen else {
        return Err(PluginError::Refused {
            name,
            reason: format!("revision {to_revision} not found in its history"),
        });
    };
    let mut template: PodTemplateSpec =
        replica_set
            .spec
            .template
            .clone()
            .ok_or_else(|| PluginError::Refused {
                name: name.clone(),
                reason: format!("the ReplicaSet of revision {revision} has no pod template"),
            })?;
    if let Some(labels) = template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(POD_TEMPLATE_HASH_LABEL);
    }
    if rollout.spec.template.as_ref() == Some(&template) {
        return Ok(UndoPlan::AlreadyAt { revision });
    }
    let value = serde_json::to_value(&template).map_err(|e| PluginError::Refused {
        name,
        reason: format!("cannot encode the template of revision {revision}: {e}"),
    })?;
    Ok(UndoPlan::Patch {
        revision,
        json_patch: json!([{"op": "replace", "path": "/spec/template", "value": value}]),
    })
}

/// `set image CONTAINER=IMAGE`: the rollout with the image of every container named
/// `container` (or of all of them for `*`) replaced, across init, regular and ephemeral
/// containers.
pub fn set_image(rollout: &Rollout, container: &str, image: &str) -> Result<Rollout, PluginError> {
    let name = name_of(rollout);
    let mut updated = rollout.clone();
    let Some(pod_spec) = updated.spec.template.as_mut().and_then(|t| t.spec.as_mut()) else {
        return Err(PluginError::Refused {
            name,
            reason: "it has no pod template of its own (workloadRef is not supported by set \
                     image yet)"
                .to_owned(),
        });
    };
    let matches = |candidate: &str| container == "*" || candidate == container;
    let mut changed = 0;
    for c in pod_spec.init_containers.iter_mut().flatten() {
        if matches(&c.name) {
            c.image = Some(image.to_owned());
            changed += 1;
        }
    }
    for c in pod_spec.containers.iter_mut() {
        if matches(&c.name) {
            c.image = Some(image.to_owned());
            changed += 1;
        }
    }
    for c in pod_spec.ephemeral_containers.iter_mut().flatten() {
        if matches(&c.name) {
            c.image = Some(image.to_owned());
            changed += 1;
        }
    }
    if changed == 0 {
        return Err(PluginError::Refused {
            name,
            reason: format!("it has no container named \"{container}\""),
        });
    }
    Ok(updated)
}

/// Splits `CONTAINER=IMAGE`.
pub fn parse_container_image(arg: &str) -> Result<(&str, &str), PluginError> {
    match arg.split_once('=') {
        Some((container, image)) if !container.is_empty() && !image.is_empty() => {
            Ok((container, image))
        }
        _ => Err(PluginError::Usage(format!(
            "expected CONTAINER=IMAGE, got \"{arg}\""
        ))),
    }
}
