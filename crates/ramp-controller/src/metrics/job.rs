//! The job provider: a measurement is a Kubernetes Job built from the metric's spec, owned by
//! the AnalysisRun, named and labelled as upstream. The Job's conditions give the verdict; a
//! pod that can never pull its image makes it Inconclusive. Naming and judging are pure
//! functions; only [`JobProvider`] talks to the API server.

use super::{MeasureContext, MetricProvider, MetricsError, errored, terminated};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Resource, ResourceExt};
use ramp_api::analysis::{
    AnalysisPhase, AnalysisRun, JobMetric, Measurement, Metric, MetricResult,
};
use std::collections::BTreeMap;

/// Label carrying the owning run's uid.
pub const RUN_UID_LABEL: &str = "analysisrun.argoproj.io/uid";
/// Annotations naming the owning run and metric.
pub const RUN_NAME_ANNOTATION: &str = "analysisrun.argoproj.io/name";
pub const RUN_NAMESPACE_ANNOTATION: &str = "analysisrun.argoproj.io/namespace";
pub const METRIC_NAME_ANNOTATION: &str = "analysisrun.argoproj.io/metric-name";
/// Measurement metadata keys.
pub const JOB_NAME_METADATA: &str = "job-name";
pub const JOB_NAMESPACE_METADATA: &str = "job-namespace";

const MAX_JOB_NAME: usize = 63;

/// `<runUID>.<metricName>.<n>` with n = measurements taken + errors + 1, the metric name cut so
/// the whole fits the 63 characters a pod label value (`job-name`) allows.
pub fn job_name(run_uid: &str, metric_name: &str, result: Option<&MetricResult>) -> String {
    let taken = result.map_or(0, |r| r.count.unwrap_or(0) + r.error.unwrap_or(0));
    let n = taken + 1;
    let suffix = format!(".{n}");
    let room = MAX_JOB_NAME.saturating_sub(run_uid.len() + 1 + suffix.len());
    let metric: String = metric_name.chars().take(room).collect();
    format!("{run_uid}.{metric}{suffix}")
}

/// The Job for one measurement of `metric` in `run`.
pub fn build_job(
    run: &AnalysisRun,
    metric_name: &str,
    spec: &JobMetric,
    name: &str,
) -> Result<Job, String> {
    let namespace = run.namespace().ok_or("the AnalysisRun has no namespace")?;
    let uid = run.uid().ok_or("the AnalysisRun has no uid yet")?;
    let mut labels = spec
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(RUN_UID_LABEL.to_owned(), uid.clone());
    let mut annotations = spec
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.clone())
        .unwrap_or_default();
    annotations.insert(RUN_NAME_ANNOTATION.to_owned(), run.name_any());
    annotations.insert(RUN_NAMESPACE_ANNOTATION.to_owned(), namespace.clone());
    annotations.insert(METRIC_NAME_ANNOTATION.to_owned(), metric_name.to_owned());
    let owner = OwnerReference {
        api_version: AnalysisRun::api_version(&()).into_owned(),
        kind: AnalysisRun::kind(&()).into_owned(),
        name: run.name_any(),
        uid,
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    Ok(Job {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: Some(JobSpec {
            ..spec.spec.clone()
        }),
        status: None,
    })
}

/// What a Job's state says about its measurement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobVerdict {
    Running,
    Successful,
    Failed(String),
    /// A pod can never start (bad image).
    Inconclusive(String),
}

/// Judges a Job from its conditions (`Complete` → Successful, `Failed` → Failed) and, while it
/// runs, from its pods' waiting reasons.
pub fn job_verdict(job: &Job, pods: &[Pod]) -> JobVerdict {
    let conditions = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    for condition in conditions.iter().filter(|c| c.status == "True") {
        match condition.type_.as_str() {
            "Complete" => return JobVerdict::Successful,
            "Failed" => {
                let why = condition
                    .message
                    .clone()
                    .or_else(|| condition.reason.clone())
                    .unwrap_or_else(|| "job failed".to_owned());
                return JobVerdict::Failed(why);
            }
            _ => {}
        }
    }
    for pod in pods {
        let statuses = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_deref())
            .unwrap_or_default();
        for status in statuses {
            let waiting = status
                .state
                .as_ref()
                .and_then(|s| s.waiting.as_ref())
                .and_then(|w| w.reason.as_deref());
            if let Some(reason @ ("ErrImagePull" | "ImagePullBackOff" | "InvalidImageName")) =
                waiting
            {
                return JobVerdict::Inconclusive(format!(
                    "pod {} cannot start: {reason}",
                    pod.name_any()
                ));
            }
        }
    }
    JobVerdict::Running
}

/// The next poll of a running Job: `sqrt(2 × elapsed)` seconds after now, at least one.
pub fn next_poll(started: Timestamp, now: Timestamp) -> Timestamp {
    let elapsed = now.duration_since(started).as_secs_f64().max(0.0);
    let wait = (2.0 * elapsed).sqrt().max(1.0);
    now.checked_add(SignedDuration::from_secs_f64(wait))
        .unwrap_or(now)
}

/// Creates, polls and deletes measurement Jobs.
#[derive(Clone)]
pub struct JobProvider {
    client: kube::Client,
}

impl JobProvider {
    pub fn new(client: kube::Client) -> Self {
        Self { client }
    }

    fn jobs(&self, namespace: &str) -> Api<Job> {
        Api::namespaced(self.client.clone(), namespace)
    }

    async fn start(
        &self,
        metric: &Metric,
        ctx: &MeasureContext<'_>,
    ) -> Result<Measurement, String> {
        let spec = metric
            .provider
            .job
            .as_ref()
            .ok_or("the metric has no job provider")?;
        let uid = ctx.run.uid().ok_or("the AnalysisRun has no uid yet")?;
        let name = job_name(&uid, &metric.name, ctx.result);
        let job = build_job(ctx.run, &metric.name, spec, &name)?;
        let namespace = job.metadata.namespace.clone().unwrap_or_default();
        match self
            .jobs(&namespace)
            .create(&PostParams::default(), &job)
            .await
        {
            Ok(_) => {}
            // A retried reconcile finds its own Job: keep polling it.
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(e) => return Err(format!("creating job {namespace}/{name}: {e}")),
        }
        let started = ctx.now;
        Ok(Measurement {
            phase: AnalysisPhase::Running.into(),
            started_at: Some(Time(started)),
            resume_at: Some(Time(next_poll(started, started))),
            metadata: Some(BTreeMap::from([
                (JOB_NAME_METADATA.to_owned(), name),
                (JOB_NAMESPACE_METADATA.to_owned(), namespace),
            ])),
            ..Default::default()
        })
    }

    fn job_of(measurement: &Measurement) -> Option<(String, String)> {
        let metadata = measurement.metadata.as_ref()?;
        Some((
            metadata.get(JOB_NAMESPACE_METADATA)?.clone(),
            metadata.get(JOB_NAME_METADATA)?.clone(),
        ))
    }

    async fn poll(&self, mut measurement: Measurement, ctx: &MeasureContext<'_>) -> Measurement {
        let now = Timestamp::now().max(ctx.now);
        let Some((namespace, name)) = Self::job_of(&measurement) else {
            return errored("the measurement does not name its job", now, ctx);
        };
        let job = match self.jobs(&namespace).get_opt(&name).await {
            Ok(Some(job)) => job,
            Ok(None) => {
                return finish(
                    measurement,
                    AnalysisPhase::Error,
                    Some(format!("job {namespace}/{name} not found")),
                    now,
                );
            }
            Err(e) => {
                return finish(
                    measurement,
                    AnalysisPhase::Error,
                    Some(format!("reading job {namespace}/{name}: {e}")),
                    now,
                );
            }
        };
        let pods = match job.uid() {
            Some(uid) => Api::<Pod>::namespaced(self.client.clone(), &namespace)
                .list(&ListParams::default())
                .await
                .map(|list| {
                    list.items
                        .into_iter()
                        .filter(|p| p.owner_references().iter().any(|o| o.uid == uid))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default(),
            None => Vec::new(),
        };
        match job_verdict(&job, &pods) {
            JobVerdict::Successful => finish(measurement, AnalysisPhase::Successful, None, now),
            JobVerdict::Failed(why) => finish(
                measurement,
                AnalysisPhase::Failed,
                Some(ctx.args.redact(&why)),
                now,
            ),
            JobVerdict::Inconclusive(why) => {
                finish(measurement, AnalysisPhase::Inconclusive, Some(why), now)
            }
            JobVerdict::Running => {
                let started = measurement.started_at.as_ref().map_or(now, |t| t.0);
                measurement.resume_at = Some(Time(next_poll(started, now)));
                measurement
            }
        }
    }

    async fn delete(&self, namespace: &str, name: &str) -> Result<(), String> {
        match self
            .jobs(namespace)
            .delete(name, &DeleteParams::background())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(e) => Err(format!("deleting job {namespace}/{name}: {e}")),
        }
    }
}

fn finish(
    mut measurement: Measurement,
    phase: AnalysisPhase,
    message: Option<String>,
    now: Timestamp,
) -> Measurement {
    measurement.phase = phase.into();
    measurement.message = message;
    measurement.finished_at = Some(Time(now));
    measurement.resume_at = None;
    measurement
}

impl MetricProvider for JobProvider {
    async fn measure(&self, metric: &Metric, ctx: &MeasureContext<'_>) -> Measurement {
        match self.start(metric, ctx).await {
            Ok(measurement) => measurement,
            Err(message) => errored(&message, ctx.now, ctx),
        }
    }

    async fn resume(
        &self,
        _metric: &Metric,
        measurement: Measurement,
        ctx: &MeasureContext<'_>,
    ) -> Measurement {
        self.poll(measurement, ctx).await
    }

    async fn terminate(
        &self,
        _metric: &Metric,
        measurement: Measurement,
        ctx: &MeasureContext<'_>,
    ) -> Measurement {
        let now = Timestamp::now().max(ctx.now);
        if let Some((namespace, name)) = Self::job_of(&measurement)
            && let Err(message) = self.delete(&namespace, &name).await
        {
            // The Job outlives the measurement; owner references still collect it with the run.
            tracing::warn!(job = %name, namespace = %namespace, "{message}");
        }
        terminated(measurement, now)
    }

    async fn garbage_collect(
        &self,
        metric: &Metric,
        removed: &[Measurement],
        ctx: &MeasureContext<'_>,
    ) -> Result<(), MetricsError> {
        let mut failures = Vec::new();
        for (namespace, name) in removed.iter().filter_map(Self::job_of) {
            if let Err(message) = self.delete(&namespace, &name).await {
                failures.push(message);
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(MetricsError::Cleanup {
                namespace: ctx.run.namespace().unwrap_or_default(),
                run: ctx.run.name_any(),
                metric: metric.name.clone(),
                detail: failures.join("; "),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateWaiting, ContainerStatus, PodStatus,
    };
    use ramp_api::analysis::{AnalysisRunSpec, JobMetricMetadata};

    fn run() -> AnalysisRun {
        let mut run = AnalysisRun::new("web-6d4f-2-1", AnalysisRunSpec::default());
        run.metadata.namespace = Some("prod".into());
        run.metadata.uid = Some("0b6fbd0a-8b43-4c4e-a8c9-7c0c5a3b0f11".into());
        run
    }

    #[test]
    fn job_names_count_measurements_and_errors_and_fit_63_characters() {
        let uid = "0b6fbd0a-8b43-4c4e-a8c9-7c0c5a3b0f11";
        assert_eq!(job_name(uid, "smoke", None), format!("{uid}.smoke.1"));
        let result = MetricResult {
            count: Some(2),
            error: Some(1),
            ..Default::default()
        };
        assert_eq!(
            job_name(uid, "smoke", Some(&result)),
            format!("{uid}.smoke.4")
        );
        let long = job_name(uid, &"m".repeat(80), None);
        assert_eq!(long.len(), 63);
        assert!(long.ends_with(".1"));
    }

    #[test]
    fn built_job_is_owned_labelled_and_annotated_like_upstream() {
        let spec = JobMetric {
            metadata: Some(JobMetricMetadata {
                labels: Some(BTreeMap::from([("team".into(), "web".into())])),
                annotations: Some(BTreeMap::from([("note".into(), "x".into())])),
            }),
            spec: JobSpec {
                backoff_limit: Some(0),
                ..Default::default()
            },
        };
        let job = build_job(&run(), "smoke", &spec, "n").expect("builds");
        let labels = job.metadata.labels.unwrap_or_default();
        assert_eq!(labels.get("team").map(String::as_str), Some("web"));
        assert_eq!(
            labels.get(RUN_UID_LABEL).map(String::as_str),
            Some("0b6fbd0a-8b43-4c4e-a8c9-7c0c5a3b0f11")
        );
        let annotations = job.metadata.annotations.unwrap_or_default();
        assert_eq!(
            annotations.get(RUN_NAME_ANNOTATION).map(String::as_str),
            Some("web-6d4f-2-1")
        );
        assert_eq!(
            annotations
                .get(RUN_NAMESPACE_ANNOTATION)
                .map(String::as_str),
            Some("prod")
        );
        assert_eq!(
            annotations.get(METRIC_NAME_ANNOTATION).map(String::as_str),
            Some("smoke")
        );
        assert_eq!(annotations.get("note").map(String::as_str), Some("x"));
        let owner = job.metadata.owner_references.unwrap_or_default();
        assert_eq!(owner.len(), 1);
        assert_eq!(owner[0].kind, "AnalysisRun");
        assert_eq!(owner[0].api_version, "argoproj.io/v1alpha1");
        assert_eq!(owner[0].controller, Some(true));
        assert_eq!(job.metadata.namespace.as_deref(), Some("prod"));
        assert_eq!(job.spec.and_then(|s| s.backoff_limit), Some(0));
    }

    fn job_with(condition: &str) -> Job {
        Job {
            status: Some(JobStatus {
                conditions: Some(vec![JobCondition {
                    type_: condition.into(),
                    status: "True".into(),
                    message: Some("BackoffLimitExceeded".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn verdict_follows_job_conditions_and_image_pull_failures() {
        assert_eq!(
            job_verdict(&job_with("Complete"), &[]),
            JobVerdict::Successful
        );
        assert_eq!(
            job_verdict(&job_with("Failed"), &[]),
            JobVerdict::Failed("BackoffLimitExceeded".into())
        );
        assert_eq!(job_verdict(&Job::default(), &[]), JobVerdict::Running);
        let stuck = Pod {
            status: Some(PodStatus {
                container_statuses: Some(vec![ContainerStatus {
                    state: Some(ContainerState {
                        waiting: Some(ContainerStateWaiting {
                            reason: Some("ImagePullBackOff".into()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(matches!(
            job_verdict(&Job::default(), &[stuck]),
            JobVerdict::Inconclusive(_)
        ));
    }

    #[test]
    fn polls_back_off_with_the_square_root_of_twice_the_elapsed_time() {
        let start = Timestamp::from_second(1_800_000_000).expect("valid");
        let at = |s: i64| {
            start
                .checked_add(SignedDuration::from_secs(s))
                .expect("valid")
        };
        assert_eq!(next_poll(start, start), at(1));
        assert_eq!(next_poll(start, at(8)), at(12));
        assert_eq!(next_poll(start, at(50)), at(60));
    }
}
