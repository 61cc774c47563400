//! AnalysisRun: one execution of a set of metrics, and the status the controller records for
//! it (per-metric results, measurements, summaries). Also the analysis phase vocabulary, which
//! Experiments share.

use super::{AnalysisFieldError, Argument, Metric};
use crate::common::{DryRun, MeasurementRetention};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// The phase of an AnalysisRun, of one of its metrics or measurements, or of an Experiment.
/// Status fields store it as a plain string (upstream's schema has no enum); read them through
/// the `phase()` accessors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AnalysisPhase {
    Pending,
    Running,
    Successful,
    Failed,
    Error,
    Inconclusive,
}

impl AnalysisPhase {
    /// Every phase, in declaration order.
    pub const ALL: [Self; 6] = [
        Self::Pending,
        Self::Running,
        Self::Successful,
        Self::Failed,
        Self::Error,
        Self::Inconclusive,
    ];

    /// The string written to status.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Running => "Running",
            Self::Successful => "Successful",
            Self::Failed => "Failed",
            Self::Error => "Error",
            Self::Inconclusive => "Inconclusive",
        }
    }

    /// Whether the phase is final.
    pub fn is_completed(self) -> bool {
        matches!(
            self,
            Self::Successful | Self::Failed | Self::Error | Self::Inconclusive
        )
    }

    /// Rank used to pick a run's overall phase from its metrics' phases; higher is worse:
    /// Failed > Error > Inconclusive > Pending > Running > Successful.
    pub fn severity(self) -> u8 {
        match self {
            Self::Successful => 0,
            Self::Running => 1,
            Self::Pending => 2,
            Self::Inconclusive => 3,
            Self::Error => 4,
            Self::Failed => 5,
        }
    }

    /// The worse of two phases.
    pub fn worse(self, other: Self) -> Self {
        if other.severity() > self.severity() {
            other
        } else {
            self
        }
    }

    /// The worst of several phases, `None` for none.
    pub fn worst(phases: impl IntoIterator<Item = Self>) -> Option<Self> {
        phases.into_iter().reduce(Self::worse)
    }

    /// Reads a status phase field: `None` for the empty string written before the first
    /// reconcile, an error for anything outside the vocabulary.
    pub fn parse_field(
        field: &'static str,
        value: &str,
    ) -> Result<Option<Self>, AnalysisFieldError> {
        if value.is_empty() {
            return Ok(None);
        }
        value
            .parse()
            .map(Some)
            .map_err(|_| AnalysisFieldError::UnknownStatus {
                field,
                value: value.to_owned(),
            })
    }
}

impl fmt::Display for AnalysisPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The string is not an analysis phase.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown analysis phase {0:?}")]
pub struct UnknownAnalysisPhase(pub String);

impl FromStr for AnalysisPhase {
    type Err = UnknownAnalysisPhase;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownAnalysisPhase(s.to_owned()))
    }
}

impl From<AnalysisPhase> for String {
    fn from(phase: AnalysisPhase) -> Self {
        phase.as_str().to_owned()
    }
}

/// What to run and how: the metrics (with arguments substituted at measurement time) and
/// run-wide settings.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "argoproj.io",
    version = "v1alpha1",
    kind = "AnalysisRun",
    namespaced,
    shortname = "ar",
    status = "AnalysisRunStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "One execution of an analysis: metrics measured until each reaches a verdict, and the run's overall phase.",
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.phase",
        description = "AnalysisRun status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp",
        description = "Time since resource was created"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisRunSpec {
    /// Argument values for the metrics' placeholders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<Argument>>,
    /// Metrics (matched by name) measured without influencing the result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<Vec<DryRun>>,
    /// How many measurements to keep per metric (matched by name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measurement_retention: Option<Vec<MeasurementRetention>>,
    /// The metrics to measure.
    pub metrics: Vec<Metric>,
    /// Set to true to stop the run: unfinished metrics end and the run completes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminate: Option<bool>,
    /// When to delete the run after it completes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_strategy: Option<TtlStrategy>,
}

impl AnalysisRunSpec {
    /// Whether someone asked the run to stop.
    pub fn terminate_requested(&self) -> bool {
        self.terminate == Some(true)
    }
}

/// Garbage collection of completed runs; the outcome-specific values take precedence.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TtlStrategy {
    /// Seconds after completion, whatever the outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds_after_completion: Option<i32>,
    /// Seconds after completion when the run did not succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds_after_failure: Option<i32>,
    /// Seconds after completion when the run succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds_after_success: Option<i32>,
}

/// What the controller has measured and concluded so far.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisRunStatus {
    /// When the run reached a completed phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,
    /// Per-outcome tally of the dry-run metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run_summary: Option<RunSummary>,
    /// Why the run is in its phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// One entry per metric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_results: Option<Vec<MetricResult>>,
    /// Overall phase (see [`AnalysisPhase`]); empty before the first reconcile.
    pub phase: String,
    /// Per-outcome tally of the metrics that count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_summary: Option<RunSummary>,
    /// When the controller first picked the run up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
}

impl AnalysisRunStatus {
    /// `status.phase`, `None` before the first reconcile.
    pub fn phase(&self) -> Result<Option<AnalysisPhase>, AnalysisFieldError> {
        AnalysisPhase::parse_field("status.phase", &self.phase)
    }

    /// The result of the named metric.
    pub fn metric_result(&self, name: &str) -> Option<&MetricResult> {
        self.metric_results
            .as_deref()
            .unwrap_or_default()
            .iter()
            .find(|r| r.name == name)
    }
}

impl AnalysisRun {
    /// Whether the run has reached a final phase (an unreadable phase counts as not final).
    pub fn is_completed(&self) -> bool {
        self.status
            .as_ref()
            .and_then(|s| s.phase().ok().flatten())
            .is_some_and(AnalysisPhase::is_completed)
    }
}

/// Number of metrics per outcome.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    /// Number of metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<i32>,
    /// Metrics that ended in Error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<i32>,
    /// Metrics that ended Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<i32>,
    /// Metrics that ended Inconclusive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inconclusive: Option<i32>,
    /// Metrics that succeeded or have not failed yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub successful: Option<i32>,
}

/// Everything recorded about one metric of a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricResult {
    /// Error measurements in a row (reset by any other outcome).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_error: Option<i32>,
    /// Successful measurements in a row (reset by any other outcome).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_success: Option<i32>,
    /// Non-error measurements taken (successful + failed + inconclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<i32>,
    /// Whether the metric runs in dry-run mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
    /// Error measurements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<i32>,
    /// Failed measurements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<i32>,
    /// Inconclusive measurements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inconclusive: Option<i32>,
    /// The most recent measurements, oldest first, trimmed to the retention limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measurements: Option<Vec<Measurement>>,
    /// Why the metric is in its phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Provider information about the metric (e.g. the resolved query).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Metric name.
    pub name: String,
    /// Phase of the metric (see [`AnalysisPhase`]).
    pub phase: String,
    /// Successful measurements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub successful: Option<i32>,
}

impl MetricResult {
    /// The metric's phase.
    pub fn phase(&self) -> Result<Option<AnalysisPhase>, AnalysisFieldError> {
        AnalysisPhase::parse_field("status.metricResults[].phase", &self.phase)
    }

    /// The latest measurement, if any.
    pub fn last_measurement(&self) -> Option<&Measurement> {
        self.measurements.as_deref().and_then(<[Measurement]>::last)
    }
}

/// One measurement of a metric.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Measurement {
    /// When the measurement completed; unset while it is in flight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    /// Detail, typically the error of an Error measurement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Provider bookkeeping (job name, external execution id, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Outcome of the measurement (see [`AnalysisPhase`]).
    pub phase: String,
    /// When to poll an in-flight measurement again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_at: Option<Time>,
    /// When the measurement started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// The measured value, rendered as a string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

impl Measurement {
    /// The measurement's phase.
    pub fn phase(&self) -> Result<Option<AnalysisPhase>, AnalysisFieldError> {
        AnalysisPhase::parse_field("status.metricResults[].measurements[].phase", &self.phase)
    }

    /// Whether the provider is still working on it.
    pub fn is_in_flight(&self) -> bool {
        self.finished_at.is_none()
    }
}
