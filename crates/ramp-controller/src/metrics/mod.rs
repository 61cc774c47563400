//! Metric providers: they turn one metric of an AnalysisRun into a [`Measurement`] by asking
//! Prometheus, a web endpoint or a Kubernetes Job. Judging the value is `ramp-core`'s
//! condition engine; scheduling and verdicts are `ramp_core::analysis::run`.

pub mod http;
pub mod job;
pub mod jsonpath;
pub mod prometheus;
pub mod web;

pub use job::JobProvider;
pub use prometheus::PrometheusProvider;
pub use web::WebProvider;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use ramp_api::analysis::{
    AnalysisPhase, AnalysisRun, Measurement, Metric, MetricResult, ProviderKind,
};
use ramp_core::analysis::args::{self, ResolvedArgs};
use ramp_core::analysis::run::{MeasurementOutcome, MeasurementTask};
use ramp_core::analysis::{MetricValue, measurement_verdict};
use std::collections::BTreeMap;
use std::future::Future;

/// Settings the providers take from the controller's configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProviderConfig {
    /// Prometheus address for metrics that name none (upstream reads
    /// `ARGO_ROLLOUTS_PROMETHEUS_ADDRESS`).
    pub prometheus_address: Option<String>,
}

/// What a provider may know about the measurement it takes.
#[derive(Clone, Copy, Debug)]
pub struct MeasureContext<'a> {
    /// The run being measured (namespace, name and uid for Jobs and messages).
    pub run: &'a AnalysisRun,
    /// The metric's result so far (a Job's name counts the measurements taken).
    pub result: Option<&'a MetricResult>,
    /// The run's arguments with secrets resolved: providers redact messages with them.
    pub args: &'a ResolvedArgs,
    /// When the measurement starts.
    pub now: Timestamp,
}

/// Why a provider could not clean up after itself.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("analysisrun {namespace}/{run}: metric {metric:?}: {detail}")]
    Cleanup {
        namespace: String,
        run: String,
        metric: String,
        detail: String,
    },
}

/// One kind of data source. `metric` has its arguments substituted (secrets included); every
/// message a provider writes goes through `ctx.args.redact`.
pub trait MetricProvider: Send + Sync {
    /// Takes a measurement: finished, or in flight with `resumeAt` for asynchronous providers.
    fn measure(
        &self,
        metric: &Metric,
        ctx: &MeasureContext<'_>,
    ) -> impl Future<Output = Measurement> + Send;

    /// Polls an in-flight measurement.
    fn resume(
        &self,
        metric: &Metric,
        measurement: Measurement,
        ctx: &MeasureContext<'_>,
    ) -> impl Future<Output = Measurement> + Send {
        let _ = (metric, ctx);
        async move { measurement }
    }

    /// Stops an in-flight measurement because the run terminates.
    fn terminate(
        &self,
        metric: &Metric,
        measurement: Measurement,
        ctx: &MeasureContext<'_>,
    ) -> impl Future<Output = Measurement> + Send {
        let _ = (metric, ctx);
        async move { terminated(measurement, ctx.now) }
    }

    /// Cleans up after measurements dropped by retention.
    fn garbage_collect(
        &self,
        metric: &Metric,
        removed: &[Measurement],
        ctx: &MeasureContext<'_>,
    ) -> impl Future<Output = Result<(), MetricsError>> + Send {
        let _ = (metric, removed, ctx);
        async { Ok(()) }
    }

    /// Information about the metric recorded in `metricResults[].metadata`.
    fn metric_metadata(&self, metric: &Metric, args: &ResolvedArgs) -> BTreeMap<String, String> {
        let _ = (metric, args);
        BTreeMap::new()
    }
}

/// A finished measurement judged by the metric's conditions.
pub fn judged(
    metric: &Metric,
    value: &MetricValue,
    started: Timestamp,
    ctx: &MeasureContext<'_>,
) -> Measurement {
    let verdict = measurement_verdict(
        metric.success_condition.as_deref(),
        metric.failure_condition.as_deref(),
        value,
    );
    Measurement {
        phase: verdict.phase.into(),
        message: verdict.message.map(|m| ctx.args.redact(&m)),
        value: Some(ctx.args.redact(&value.to_string())),
        started_at: Some(Time(started)),
        finished_at: Some(Time(Timestamp::now().max(started))),
        ..Default::default()
    }
}

/// A finished Error measurement; the message is redacted.
pub fn errored(message: &str, started: Timestamp, ctx: &MeasureContext<'_>) -> Measurement {
    Measurement {
        phase: AnalysisPhase::Error.into(),
        message: Some(ctx.args.redact(message)),
        started_at: Some(Time(started)),
        finished_at: Some(Time(Timestamp::now().max(started))),
        ..Default::default()
    }
}

/// An in-flight measurement ended by termination: Inconclusive, as upstream.
pub fn terminated(mut measurement: Measurement, now: Timestamp) -> Measurement {
    measurement.phase = AnalysisPhase::Inconclusive.into();
    measurement.message = Some("Metric Terminated".to_owned());
    measurement.finished_at = Some(Time(now));
    measurement.resume_at = None;
    measurement
}

/// The message of a measurement from a provider Ramp does not implement.
pub fn unsupported_message(kind: ProviderKind) -> String {
    format!("the {} provider is not supported by Ramp", kind.json_name())
}

/// All providers, dispatching on the metric's provider kind.
pub struct Providers {
    pub prometheus: PrometheusProvider,
    pub web: WebProvider,
    /// Absent when the controller has no cluster (e.g. `ramp analyze`).
    pub job: Option<JobProvider>,
}

impl Providers {
    pub fn new(config: ProviderConfig, kube: Option<kube::Client>) -> Self {
        Self {
            prometheus: PrometheusProvider::new(config.prometheus_address),
            web: WebProvider,
            job: kube.map(JobProvider::new),
        }
    }

    /// Carries out one task of `ramp_core::analysis::run::plan_measurements`: substitutes the
    /// metric's arguments (secrets included), asks the provider, and names the metric.
    pub async fn run_task(
        &self,
        task: MeasurementTask,
        run: &AnalysisRun,
        args: &ResolvedArgs,
        now: Timestamp,
    ) -> MeasurementOutcome {
        let metric_name = task.metric().to_owned();
        let result = run
            .status
            .as_ref()
            .and_then(|s| s.metric_result(&metric_name));
        let ctx = MeasureContext {
            run,
            result,
            args,
            now,
        };
        let outcome = |measurement, metric_metadata| MeasurementOutcome {
            metric: metric_name.clone(),
            measurement,
            metric_metadata,
        };
        let Some(template) = run.spec.metrics.iter().find(|m| m.name == metric_name) else {
            return outcome(
                errored(
                    &format!("metric {metric_name:?} is not in the run's spec"),
                    now,
                    &ctx,
                ),
                BTreeMap::new(),
            );
        };
        let metric = match args::substitute_metric(template, args) {
            Ok(metric) => metric,
            Err(e) => return outcome(errored(&e.to_string(), now, &ctx), BTreeMap::new()),
        };
        let kind = match metric.provider.kind() {
            Ok(kind) => kind,
            Err(e) => return outcome(errored(&e.to_string(), now, &ctx), BTreeMap::new()),
        };
        match kind {
            ProviderKind::Prometheus => {
                let metadata = self.prometheus.metric_metadata(&metric, args);
                let m = dispatch(&self.prometheus, &metric, task, &ctx).await;
                outcome(m, metadata)
            }
            ProviderKind::Web => outcome(
                dispatch(&self.web, &metric, task, &ctx).await,
                BTreeMap::new(),
            ),
            ProviderKind::Job => match &self.job {
                Some(job) => outcome(dispatch(job, &metric, task, &ctx).await, BTreeMap::new()),
                None => outcome(
                    errored(
                        "the job provider needs a Kubernetes cluster, and none is configured",
                        now,
                        &ctx,
                    ),
                    BTreeMap::new(),
                ),
            },
            other => {
                let message = unsupported_message(other);
                let measurement = match task {
                    // Nothing of ours is running: an unsupported provider never starts one.
                    MeasurementTask::Terminate { measurement, .. } => terminated(measurement, now),
                    _ => errored(&message, now, &ctx),
                };
                outcome(measurement, BTreeMap::new())
            }
        }
    }

    /// Hands measurements dropped by retention to the metric's provider.
    pub async fn garbage_collect(
        &self,
        run: &AnalysisRun,
        metric_name: &str,
        removed: &[Measurement],
        args: &ResolvedArgs,
        now: Timestamp,
    ) -> Result<(), MetricsError> {
        let Some(metric) = run.spec.metrics.iter().find(|m| m.name == metric_name) else {
            return Ok(());
        };
        let ctx = MeasureContext {
            run,
            result: None,
            args,
            now,
        };
        match (metric.provider.kind(), &self.job) {
            (Ok(ProviderKind::Job), Some(job)) => job.garbage_collect(metric, removed, &ctx).await,
            _ => Ok(()),
        }
    }
}

async fn dispatch<P: MetricProvider>(
    provider: &P,
    metric: &Metric,
    task: MeasurementTask,
    ctx: &MeasureContext<'_>,
) -> Measurement {
    match task {
        MeasurementTask::Measure { .. } => provider.measure(metric, ctx).await,
        MeasurementTask::Resume { measurement, .. } => {
            provider.resume(metric, measurement, ctx).await
        }
        MeasurementTask::Terminate { measurement, .. } => {
            provider.terminate(metric, measurement, ctx).await
        }
    }
}
