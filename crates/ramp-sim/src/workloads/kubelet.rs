//! The simulated kubelet: where a pod is in its life (a pure function of its behaviour and the
//! time since it started) and the `status` a real kubelet would report for that stage. The
//! loop in `mod.rs` writes the status only when the stage changes.

use std::time::Duration;

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::behaviour::{Fault, JobOutcome, PodBehaviour};

/// A stage of a pod's life, as far as the status shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodStage {
    /// Scheduled, containers being created.
    Creating,
    /// Containers running; `ready` says whether the readiness probe passes.
    Running {
        ready: bool,
    },
    /// The container keeps exiting; `restarts` so far.
    CrashLoop {
        restarts: i32,
    },
    /// The image pull failed (`backing_off`: the kubelet now waits before retrying).
    ImagePull {
        backing_off: bool,
    },
    Succeeded,
    Failed,
}

/// The stage `elapsed` after the pod started, and the time (since start) of the next change.
pub fn stage_at(
    behaviour: &PodBehaviour,
    elapsed: Duration,
    crash_interval: Duration,
    pull_backoff_delay: Duration,
) -> (PodStage, Option<Duration>) {
    let ready_after = behaviour.ready_after;
    if let Some((run_time, outcome)) = behaviour.completion {
        if elapsed >= run_time {
            let end = match outcome {
                JobOutcome::Succeed => PodStage::Succeeded,
                JobOutcome::Fail => PodStage::Failed,
            };
            return (end, None);
        }
        let starts_at = ready_after.min(run_time);
        if elapsed < starts_at {
            return (PodStage::Creating, Some(starts_at));
        }
        return (PodStage::Running { ready: true }, Some(run_time));
    }
    if elapsed < ready_after {
        return (PodStage::Creating, Some(ready_after));
    }
    let since_start = elapsed - ready_after;
    match behaviour.fault {
        Fault::None => (PodStage::Running { ready: true }, None),
        Fault::NeverReady => (PodStage::Running { ready: false }, None),
        Fault::CrashLoop => {
            let interval = crash_interval.max(Duration::from_millis(10));
            let periods = (since_start.as_nanos() / interval.as_nanos()) as u32;
            let restarts = i32::try_from(periods).unwrap_or(i32::MAX).saturating_add(1);
            let next = ready_after + interval * periods.saturating_add(1);
            (PodStage::CrashLoop { restarts }, Some(next))
        }
        Fault::ImagePull => {
            if since_start < pull_backoff_delay {
                (
                    PodStage::ImagePull { backing_off: false },
                    Some(ready_after + pull_backoff_delay),
                )
            } else {
                (PodStage::ImagePull { backing_off: true }, None)
            }
        }
    }
}

/// The stage a pod's current status shows, if the simulator wrote one.
pub fn observed_stage(pod: &Pod) -> Option<PodStage> {
    let status = pod.status.as_ref()?;
    status.start_time.as_ref()?;
    let first = status.container_statuses.as_ref().and_then(|c| c.first());
    let waiting_reason = first
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.waiting.as_ref())
        .and_then(|w| w.reason.as_deref());
    match (status.phase.as_deref(), waiting_reason) {
        (Some("Succeeded"), _) => Some(PodStage::Succeeded),
        (Some("Failed"), _) => Some(PodStage::Failed),
        (_, Some("CrashLoopBackOff")) => Some(PodStage::CrashLoop {
            restarts: first.map_or(0, |c| c.restart_count),
        }),
        (_, Some("ErrImagePull")) => Some(PodStage::ImagePull { backing_off: false }),
        (_, Some("ImagePullBackOff")) => Some(PodStage::ImagePull { backing_off: true }),
        (Some("Pending"), _) => Some(PodStage::Creating),
        (Some("Running"), _) => Some(PodStage::Running {
            ready: is_ready(pod),
        }),
        _ => None,
    }
}

/// Whether the pod's `Ready` condition is `True`.
pub fn is_ready(pod: &Pod) -> bool {
    ready_condition(pod).is_some_and(|c| c.status == "True")
}

/// When the pod last became ready, if it is ready.
pub fn ready_since(pod: &Pod) -> Option<Timestamp> {
    ready_condition(pod)
        .filter(|c| c.status == "True")
        .map(|c| {
            c.last_transition_time
                .as_ref()
                .map_or(Timestamp::UNIX_EPOCH, |t| t.0)
        })
}

fn ready_condition(pod: &Pod) -> Option<&PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
}

/// A stable, per-pod address in 10.244.0.0/16, derived from the uid so it survives restarts.
pub fn pod_ip(uid: &str) -> String {
    let hash = uid.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    format!("10.244.{}.{}", (hash >> 8) & 0xff, (hash & 0xff).max(2))
}

/// The status a kubelet reports for `stage`. Transition times of conditions whose value does
/// not change are kept from `previous`.
pub fn status_for(
    pod: &Pod,
    stage: PodStage,
    started: Timestamp,
    now: Timestamp,
    previous: Option<&PodStatus>,
) -> PodStatus {
    let (phase, containers_ready) = match stage {
        PodStage::Creating | PodStage::ImagePull { .. } => ("Pending", false),
        PodStage::Running { ready } => ("Running", ready),
        PodStage::CrashLoop { .. } => ("Running", false),
        PodStage::Succeeded => ("Succeeded", false),
        PodStage::Failed => ("Failed", false),
    };
    let condition = |type_: &str, ok: bool, reason: Option<&str>| {
        let status = if ok { "True" } else { "False" };
        let kept = previous
            .and_then(|p| p.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == type_))
            .filter(|c| c.status == status)
            .and_then(|c| c.last_transition_time.clone());
        PodCondition {
            type_: type_.to_string(),
            status: status.to_string(),
            last_transition_time: Some(kept.unwrap_or(Time(now))),
            reason: reason.map(str::to_string),
            ..PodCondition::default()
        }
    };
    let not_ready_reason = match stage {
        PodStage::Succeeded | PodStage::Failed => Some("PodCompleted"),
        _ if containers_ready => None,
        _ => Some("ContainersNotReady"),
    };
    let conditions = vec![
        condition(
            "PodReadyToStartContainers",
            !matches!(stage, PodStage::Creating),
            None,
        ),
        condition("Initialized", true, None),
        condition("Ready", containers_ready, not_ready_reason),
        condition("ContainersReady", containers_ready, not_ready_reason),
        condition("PodScheduled", true, None),
    ];
    let ip = pod_ip(pod.metadata.uid.as_deref().unwrap_or_default());
    let containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or_default();
    let container_statuses = containers
        .iter()
        .map(|c| {
            let image = c.image.clone().unwrap_or_default();
            let waiting = |reason: &str, message: String| ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(reason.to_string()),
                    message: Some(message),
                }),
                ..ContainerState::default()
            };
            let terminated = |code: i32, reason: &str| ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: code,
                    reason: Some(reason.to_string()),
                    started_at: Some(Time(started)),
                    finished_at: Some(Time(now)),
                    ..ContainerStateTerminated::default()
                }),
                ..ContainerState::default()
            };
            let running = ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(Time(started)),
                }),
                ..ContainerState::default()
            };
            let (state, last_state, restart_count, ready) = match stage {
                PodStage::Creating => (waiting("ContainerCreating", String::new()), None, 0, false),
                PodStage::Running { ready } => (running, None, 0, ready),
                PodStage::CrashLoop { restarts } => (
                    waiting(
                        "CrashLoopBackOff",
                        format!("back-off restarting failed container {}", c.name),
                    ),
                    Some(terminated(1, "Error")),
                    restarts,
                    false,
                ),
                PodStage::ImagePull { backing_off } => {
                    let reason = if backing_off {
                        "ImagePullBackOff"
                    } else {
                        "ErrImagePull"
                    };
                    (
                        waiting(reason, format!("failed to pull image {image:?}: not found")),
                        None,
                        0,
                        false,
                    )
                }
                PodStage::Succeeded => (terminated(0, "Completed"), None, 0, false),
                PodStage::Failed => (terminated(1, "Error"), None, 0, false),
            };
            let pulled = !matches!(stage, PodStage::Creating | PodStage::ImagePull { .. });
            let image_id = if pulled {
                format!("sim.ramp.dev/{image}")
            } else {
                String::new()
            };
            ContainerStatus {
                name: c.name.clone(),
                image,
                image_id,
                container_id: pulled.then(|| {
                    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
                    format!("sim://{uid}-{}", c.name)
                }),
                ready,
                started: Some(matches!(stage, PodStage::Running { .. })),
                restart_count,
                state: Some(state),
                last_state: last_state.or_else(|| Some(ContainerState::default())),
                ..ContainerStatus::default()
            }
        })
        .collect();
    PodStatus {
        phase: Some(phase.to_string()),
        conditions: Some(conditions),
        host_ip: Some("10.0.0.1".to_string()),
        host_ips: None,
        pod_ip: Some(ip.clone()),
        pod_ips: Some(vec![PodIP { ip }]),
        start_time: Some(Time(started)),
        container_statuses: Some(container_statuses),
        qos_class: Some("BestEffort".to_string()),
        ..PodStatus::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn behaviour(fault: Fault) -> PodBehaviour {
        PodBehaviour {
            ready_after: Duration::from_secs(2),
            fault,
            completion: None,
        }
    }
    const CRASH: Duration = Duration::from_secs(1);
    const PULL: Duration = Duration::from_secs(1);

    #[test]
    fn healthy_pod_becomes_ready_at_its_delay() {
        let b = behaviour(Fault::None);
        assert_eq!(
            stage_at(&b, Duration::from_millis(1999), CRASH, PULL),
            (PodStage::Creating, Some(Duration::from_secs(2)))
        );
        assert_eq!(
            stage_at(&b, Duration::from_secs(2), CRASH, PULL),
            (PodStage::Running { ready: true }, None)
        );
        let unready = behaviour(Fault::NeverReady);
        assert_eq!(
            stage_at(&unready, Duration::from_secs(60), CRASH, PULL),
            (PodStage::Running { ready: false }, None)
        );
    }

    #[test]
    fn crash_loop_restarts_once_per_interval() {
        let b = behaviour(Fault::CrashLoop);
        assert_eq!(
            stage_at(&b, Duration::from_secs(2), CRASH, PULL),
            (
                PodStage::CrashLoop { restarts: 1 },
                Some(Duration::from_secs(3))
            )
        );
        assert_eq!(
            stage_at(&b, Duration::from_millis(4500), CRASH, PULL),
            (
                PodStage::CrashLoop { restarts: 3 },
                Some(Duration::from_secs(5))
            )
        );
    }

    #[test]
    fn image_pull_failure_backs_off() {
        let b = behaviour(Fault::ImagePull);
        assert_eq!(
            stage_at(&b, Duration::from_secs(2), CRASH, PULL),
            (
                PodStage::ImagePull { backing_off: false },
                Some(Duration::from_secs(3))
            )
        );
        assert_eq!(
            stage_at(&b, Duration::from_secs(3), CRASH, PULL),
            (PodStage::ImagePull { backing_off: true }, None)
        );
    }

    #[test]
    fn job_pod_runs_then_ends_with_its_outcome() {
        let b = PodBehaviour {
            ready_after: Duration::from_millis(200),
            fault: Fault::None,
            completion: Some((Duration::from_secs(1), JobOutcome::Fail)),
        };
        assert_eq!(
            stage_at(&b, Duration::from_millis(500), CRASH, PULL),
            (
                PodStage::Running { ready: true },
                Some(Duration::from_secs(1))
            )
        );
        assert_eq!(
            stage_at(&b, Duration::from_secs(1), CRASH, PULL),
            (PodStage::Failed, None)
        );
    }

    #[test]
    fn written_status_reads_back_as_the_same_stage() {
        let mut pod = Pod::default();
        pod.metadata.uid = Some("u-1".to_string());
        pod.spec = Some(k8s_openapi::api::core::v1::PodSpec {
            containers: vec![k8s_openapi::api::core::v1::Container {
                name: "app".to_string(),
                image: Some("app:1".to_string()),
                ..Default::default()
            }],
            ..Default::default()
        });
        let now = Timestamp::UNIX_EPOCH;
        for stage in [
            PodStage::Creating,
            PodStage::Running { ready: true },
            PodStage::Running { ready: false },
            PodStage::CrashLoop { restarts: 4 },
            PodStage::ImagePull { backing_off: false },
            PodStage::ImagePull { backing_off: true },
            PodStage::Succeeded,
            PodStage::Failed,
        ] {
            pod.status = Some(status_for(&pod, stage, now, now, None));
            assert_eq!(observed_stage(&pod), Some(stage));
        }
    }
}
