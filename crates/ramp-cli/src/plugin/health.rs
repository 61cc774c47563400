//! The phase a client shows for a rollout: the controller's `status.phase`/`status.message`
//! behind the client-side checks (generation not yet observed, user resume not yet acted on)
//! that the upstream plugin, dashboard and Argo CD apply before trusting it.

use ramp_api::rollout::{Rollout, phase};

/// A rollout's phase and message as shown to the operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RolloutHealth {
    pub phase: String,
    pub message: String,
}

impl RolloutHealth {
    pub fn is_healthy(&self) -> bool {
        self.phase == phase::HEALTHY
    }

    pub fn is_degraded(&self) -> bool {
        self.phase == phase::DEGRADED
    }

    /// `Phase - message`, or the phase alone when there is no message.
    pub fn line(&self) -> String {
        if self.message.is_empty() {
            self.phase.clone()
        } else {
            format!("{} - {}", self.phase, self.message)
        }
    }
}

const WORKLOAD_GENERATION_ANNOTATION: &str = "rollout.argoproj.io/workload-generation";

fn progressing(message: &str) -> RolloutHealth {
    RolloutHealth {
        phase: phase::PROGRESSING.to_owned(),
        message: message.to_owned(),
    }
}

pub fn rollout_health(rollout: &Rollout) -> RolloutHealth {
    let Some(status) = &rollout.status else {
        return progressing("waiting for rollout spec update to be observed");
    };
    if let (Some(observed), Some(generation)) = (
        status.observed_generation_number(),
        rollout.metadata.generation,
    ) && observed != generation
    {
        return progressing("waiting for rollout spec update to be observed");
    }
    if status.controller_pause.unwrap_or(false) && !status.has_pause_conditions() {
        return progressing("waiting for rollout to unpause");
    }
    if rollout.spec.workload_ref.is_some() {
        let wanted = rollout
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(WORKLOAD_GENERATION_ANNOTATION));
        if let Some(wanted) = wanted
            && status.workload_observed_generation.as_deref() != Some(wanted.as_str())
        {
            return progressing(
                "waiting for rollout spec update to be observed for the reference workload",
            );
        }
    }
    match status.phase.as_deref() {
        Some(phase) if !phase.is_empty() => RolloutHealth {
            phase: phase.to_owned(),
            message: status.message.clone().unwrap_or_default(),
        },
        // A rollout the controller has not written a phase for yet is still on its way.
        _ => progressing("waiting for rollout spec update to be observed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ramp_api::rollout::{RolloutSpec, RolloutStatus};

    fn rollout(generation: i64, status: RolloutStatus) -> Rollout {
        let mut ro = Rollout::new("web", RolloutSpec::default());
        ro.metadata.generation = Some(generation);
        ro.status = Some(status);
        ro
    }

    #[test]
    fn trusts_the_controller_phase_once_the_generation_is_observed() {
        let ro = rollout(
            3,
            RolloutStatus {
                observed_generation: Some("3".into()),
                phase: Some("Paused".into()),
                message: Some("CanaryPauseStep".into()),
                ..Default::default()
            },
        );
        assert_eq!(rollout_health(&ro).line(), "Paused - CanaryPauseStep");
    }

    #[test]
    fn an_unobserved_generation_is_progressing() {
        let ro = rollout(
            4,
            RolloutStatus {
                observed_generation: Some("3".into()),
                phase: Some("Healthy".into()),
                ..Default::default()
            },
        );
        assert_eq!(
            rollout_health(&ro).line(),
            "Progressing - waiting for rollout spec update to be observed"
        );
    }

    #[test]
    fn a_resumed_rollout_the_controller_has_not_seen_is_progressing() {
        let ro = rollout(
            2,
            RolloutStatus {
                observed_generation: Some("2".into()),
                controller_pause: Some(true),
                phase: Some("Paused".into()),
                ..Default::default()
            },
        );
        assert_eq!(
            rollout_health(&ro).line(),
            "Progressing - waiting for rollout to unpause"
        );
    }

    #[test]
    fn a_legacy_hash_generation_counts_as_observed() {
        let ro = rollout(
            9,
            RolloutStatus {
                observed_generation: Some("7d5b6c8f9".into()),
                phase: Some("Healthy".into()),
                ..Default::default()
            },
        );
        assert!(rollout_health(&ro).is_healthy());
    }
}
