//! The Job controller's decisions: how many pods to start, and the status (counts, `Complete`
//! or `Failed` conditions, start and completion times). Pure: the loop in `mod.rs` gathers the
//! Job's pods and writes the results.

use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::kubelet;

/// What the controller wants for a Job now.
#[derive(Clone, Debug, PartialEq)]
pub struct JobPlan {
    /// Pods to create.
    pub start_pods: usize,
    /// Names of active pods to delete (the Job is finished).
    pub delete_pods: Vec<String>,
    pub status: JobStatus,
    /// When the Job's `activeDeadlineSeconds` runs out, if it has not finished before.
    pub deadline: Option<Timestamp>,
}

fn is_finished(status: Option<&JobStatus>) -> bool {
    status
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        })
}

/// Plans one Job given its pods (all owned pods, including finished ones) and the number of
/// pods created but not seen yet.
pub fn plan(job: &Job, pods: &[&Pod], pending_creates: usize, now: Timestamp) -> JobPlan {
    let spec = job.spec.as_ref();
    let completions = spec.and_then(|s| s.completions).unwrap_or(1).max(0);
    let parallelism = spec.and_then(|s| s.parallelism).unwrap_or(1).max(0);
    let backoff_limit = spec.and_then(|s| s.backoff_limit).unwrap_or(6).max(0);
    let deadline_seconds = spec.and_then(|s| s.active_deadline_seconds);
    let phase = |p: &Pod| p.status.as_ref().and_then(|s| s.phase.clone());
    let succeeded = pods
        .iter()
        .filter(|p| phase(p).as_deref() == Some("Succeeded"))
        .count();
    let failed = pods
        .iter()
        .filter(|p| phase(p).as_deref() == Some("Failed"))
        .count();
    let active: Vec<&&Pod> = pods
        .iter()
        .filter(|p| super::replicaset::is_active(p))
        .collect();
    let ready = active.iter().filter(|p| kubelet::is_ready(p)).count();
    let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);

    let previous = job.status.as_ref();
    let start_time = previous
        .and_then(|s| s.start_time.as_ref())
        .map_or(now, |t| t.0);
    let deadline =
        deadline_seconds.and_then(|s| start_time.saturating_add(SignedDuration::from_secs(s)).ok());
    let mut status = JobStatus {
        start_time: Some(Time(start_time)),
        active: Some(count(active.len() + pending_creates)),
        ready: Some(count(ready)),
        succeeded: Some(count(succeeded)),
        failed: Some(count(failed)),
        terminating: Some(0),
        conditions: previous.and_then(|s| s.conditions.clone()),
        completion_time: previous.and_then(|s| s.completion_time.clone()),
        ..JobStatus::default()
    };
    if is_finished(previous) {
        return JobPlan {
            start_pods: 0,
            delete_pods: Vec::new(),
            status,
            deadline: None,
        };
    }
    let finish =
        |status: &mut JobStatus, interim: &str, type_: &str, reason: &str, message: &str| {
            let condition = |type_: &str| JobCondition {
                type_: type_.to_string(),
                status: "True".to_string(),
                reason: Some(reason.to_string()),
                message: Some(message.to_string()),
                last_probe_time: Some(Time(now)),
                last_transition_time: Some(Time(now)),
            };
            let conditions = status.conditions.get_or_insert_with(Vec::new);
            conditions.retain(|c| c.type_ != interim && c.type_ != type_);
            conditions.push(condition(interim));
            conditions.push(condition(type_));
        };
    let names_of_active = || {
        active
            .iter()
            .filter_map(|p| p.metadata.name.clone())
            .collect::<Vec<_>>()
    };
    if count(succeeded) >= completions {
        finish(
            &mut status,
            "SuccessCriteriaMet",
            "Complete",
            "CompletionsReached",
            "Reached expected number of succeeded pods",
        );
        status.completion_time = Some(Time(now));
        status.active = Some(0);
        return JobPlan {
            start_pods: 0,
            delete_pods: names_of_active(),
            status,
            deadline: None,
        };
    }
    if count(failed) > backoff_limit {
        finish(
            &mut status,
            "FailureTarget",
            "Failed",
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
        );
        status.active = Some(0);
        return JobPlan {
            start_pods: 0,
            delete_pods: names_of_active(),
            status,
            deadline: None,
        };
    }
    if deadline.is_some_and(|d| d <= now) {
        finish(
            &mut status,
            "FailureTarget",
            "Failed",
            "DeadlineExceeded",
            "Job was active longer than specified deadline",
        );
        status.active = Some(0);
        return JobPlan {
            start_pods: 0,
            delete_pods: names_of_active(),
            status,
            deadline: None,
        };
    }
    let remaining = usize::try_from(completions)
        .unwrap_or(0)
        .saturating_sub(succeeded);
    let wanted = remaining.min(usize::try_from(parallelism).unwrap_or(0));
    let start_pods = wanted.saturating_sub(active.len() + pending_creates);
    status.active = Some(count(active.len() + pending_creates + start_pods));
    JobPlan {
        start_pods,
        delete_pods: Vec::new(),
        status,
        deadline,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::JobSpec;
    use k8s_openapi::api::core::v1::PodStatus;

    fn pod(phase: &str) -> Pod {
        Pod {
            status: Some(PodStatus {
                phase: Some(phase.to_string()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn job(backoff_limit: i32) -> Job {
        Job {
            spec: Some(JobSpec {
                backoff_limit: Some(backoff_limit),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn condition_types(plan: &JobPlan) -> Vec<String> {
        plan.status
            .conditions
            .iter()
            .flatten()
            .map(|c| c.type_.clone())
            .collect()
    }

    #[test]
    fn starts_one_pod_then_completes_when_it_succeeds() {
        let now = Timestamp::UNIX_EPOCH;
        let j = job(0);
        let p = plan(&j, &[], 0, now);
        assert_eq!(p.start_pods, 1);
        assert_eq!(p.status.active, Some(1));
        let running = pod("Running");
        assert_eq!(plan(&j, &[&running], 0, now).start_pods, 0);
        let done = pod("Succeeded");
        let p = plan(&j, &[&done], 0, now);
        assert_eq!(condition_types(&p), ["SuccessCriteriaMet", "Complete"]);
        assert_eq!(p.status.succeeded, Some(1));
        assert!(p.status.completion_time.is_some());
    }

    #[test]
    fn retries_failed_pods_up_to_the_backoff_limit() {
        let now = Timestamp::UNIX_EPOCH;
        let j = job(1);
        let failed = pod("Failed");
        let p = plan(&j, &[&failed], 0, now);
        assert_eq!(p.start_pods, 1);
        assert!(condition_types(&p).is_empty());
        let p = plan(&j, &[&failed, &failed], 0, now);
        assert_eq!(p.start_pods, 0);
        assert_eq!(condition_types(&p), ["FailureTarget", "Failed"]);
        assert_eq!(p.status.failed, Some(2));
        assert!(p.status.completion_time.is_none());
    }
}
