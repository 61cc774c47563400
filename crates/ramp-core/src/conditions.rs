//! Status conditions with upstream's reasons and messages (research doc §2.3), and the phase
//! and message derived from spec and status (§2.2) that Argo CD and the kubectl plugin read.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use ramp_api::rollout::{RolloutCondition, RolloutSpec, RolloutStatus, condition_type, phase};

/// Condition reasons, as upstream spells them.
pub mod reason {
    pub const NEW_REPLICA_SET_CREATED: &str = "NewReplicaSetCreated";
    pub const FOUND_NEW_REPLICA_SET: &str = "FoundNewReplicaSet";
    pub const REPLICA_SET_UPDATED: &str = "ReplicaSetUpdated";
    pub const NEW_REPLICA_SET_AVAILABLE: &str = "NewReplicaSetAvailable";
    pub const REPLICA_SET_NOT_AVAILABLE: &str = "ReplicaSetNotAvailable";
    pub const PROGRESS_DEADLINE_EXCEEDED: &str = "ProgressDeadlineExceeded";
    pub const ROLLOUT_ABORTED: &str = "RolloutAborted";
    pub const ROLLOUT_PAUSED: &str = "RolloutPaused";
    pub const ROLLOUT_RESUMED: &str = "RolloutResumed";
    pub const ROLLOUT_RETRY: &str = "RolloutRetry";
    pub const AVAILABLE: &str = "AvailableReason";
    pub const ROLLOUT_HEALTHY: &str = "RolloutHealthy";
    pub const ROLLOUT_COMPLETED: &str = "RolloutCompleted";
    pub const INVALID_SPEC: &str = "InvalidSpec";
}

/// `True`, `False` or `Unknown`.
pub fn status_word(value: Option<bool>) -> &'static str {
    match value {
        Some(true) => "True",
        Some(false) => "False",
        None => "Unknown",
    }
}

/// Sets a condition. Times only move when something changed, so an unchanged world yields an
/// identical status (and the executor writes nothing).
pub fn set_condition(
    status: &mut RolloutStatus,
    type_: &str,
    value: Option<bool>,
    reason: &str,
    message: &str,
    now: Timestamp,
) {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    let word = status_word(value);
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(existing) => {
            if existing.status == word && existing.reason == reason && existing.message == message {
                return;
            }
            if existing.status != word {
                existing.last_transition_time = Time(now);
            }
            existing.status = word.to_owned();
            existing.reason = reason.to_owned();
            existing.message = message.to_owned();
            existing.last_update_time = Time(now);
        }
        None => conditions.push(RolloutCondition {
            type_: type_.to_owned(),
            status: word.to_owned(),
            reason: reason.to_owned(),
            message: message.to_owned(),
            last_update_time: Time(now),
            last_transition_time: Time(now),
        }),
    }
}

/// Sets a condition and restarts its update clock even when nothing else changed: this is how
/// `ReplicaSetUpdated` pushes the progress deadline back.
pub fn refresh_condition(
    status: &mut RolloutStatus,
    type_: &str,
    value: Option<bool>,
    reason: &str,
    message: &str,
    now: Timestamp,
) {
    set_condition(status, type_, value, reason, message, now);
    if let Some(c) = status
        .conditions
        .iter_mut()
        .flatten()
        .find(|c| c.type_ == type_)
    {
        c.last_update_time = Time(now);
    }
}

pub fn remove_condition(status: &mut RolloutStatus, type_: &str) {
    if let Some(conditions) = status.conditions.as_mut() {
        conditions.retain(|c| c.type_ != type_);
        if conditions.is_empty() {
            status.conditions = None;
        }
    }
}

/// §2.2: first matching rule wins (rule 8 for blue-green, rule 9 for canary).
pub fn compute_phase(spec: &RolloutSpec, status: &RolloutStatus) -> (&'static str, String) {
    if let Some(c) = status.condition(condition_type::INVALID_SPEC) {
        return (
            phase::DEGRADED,
            format!("{}: {}", reason::INVALID_SPEC, c.message),
        );
    }
    if let Some(c) = status.conditions.iter().flatten().find(|c| {
        c.reason == reason::ROLLOUT_ABORTED || c.reason == reason::PROGRESS_DEADLINE_EXCEEDED
    }) {
        return (phase::DEGRADED, format!("{}: {}", c.reason, c.message));
    }
    if spec.is_paused() {
        return (phase::PAUSED, "manually paused".to_owned());
    }
    if let Some(first) = status.pause_conditions.iter().flatten().next() {
        return (phase::PAUSED, first.reason.clone());
    }
    if spec.restart_at.is_some() && spec.restart_at != status.restarted_at {
        return (phase::PROGRESSING, "rollout is restarting".to_owned());
    }
    let updated = status.updated_replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    if updated < spec.replicas() {
        return (
            phase::PROGRESSING,
            "more replicas need to be updated".to_owned(),
        );
    }
    if available < updated {
        return (
            phase::PROGRESSING,
            "updated replicas are still becoming available".to_owned(),
        );
    }
    if let Some(blue_green) = spec.blue_green() {
        let active = status
            .blue_green
            .as_ref()
            .and_then(|b| b.active_selector.as_ref());
        if active.is_none() || active != status.current_pod_hash.as_ref() {
            return (
                phase::PROGRESSING,
                "active service cutover pending".to_owned(),
            );
        }
        if status.stable_rs.is_none() || status.stable_rs != status.current_pod_hash {
            let message = if blue_green.post_promotion_analysis.is_some() {
                "waiting for analysis to complete"
            } else {
                "waiting for post-promotion verification to complete"
            };
            return (phase::PROGRESSING, message.to_owned());
        }
        return (phase::HEALTHY, String::new());
    }
    let routed = spec.canary().is_some_and(|c| c.traffic_routing.is_some());
    if !routed && status.replicas.unwrap_or(0) > updated {
        return (
            phase::PROGRESSING,
            "old replicas are pending termination".to_owned(),
        );
    }
    if status.stable_rs.is_none() || status.stable_rs != status.current_pod_hash {
        return (
            phase::PROGRESSING,
            "waiting for all steps to complete".to_owned(),
        );
    }
    (phase::HEALTHY, String::new())
}

/// The `Healthy` condition (created once first reached, then flipped) and the `Paused`
/// condition that mirrors any pause, as both strategies report them.
pub fn set_healthy_and_paused(st: &mut RolloutStatus, healthy: bool, paused: bool, now: Timestamp) {
    if healthy || st.condition(condition_type::HEALTHY).is_some() {
        let message = if healthy {
            "Rollout is healthy"
        } else {
            "Rollout is not healthy"
        };
        set_condition(
            st,
            condition_type::HEALTHY,
            Some(healthy),
            reason::ROLLOUT_HEALTHY,
            message,
            now,
        );
    }
    if paused {
        set_condition(
            st,
            condition_type::PAUSED,
            Some(true),
            reason::ROLLOUT_PAUSED,
            "Rollout is paused",
            now,
        );
    } else if st.condition(condition_type::PAUSED).is_some() {
        set_condition(
            st,
            condition_type::PAUSED,
            Some(false),
            reason::ROLLOUT_PAUSED,
            "Rollout is resumed",
            now,
        );
    }
}
