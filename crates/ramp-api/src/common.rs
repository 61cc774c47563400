//! Small types shared by more than one kind (Rollout, AnalysisRun, Experiment).
//! They mirror the upstream Go types of the same name field for field.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Runs the metrics whose name matches `metricName` (a Go regular expression) in dry-run mode:
/// they are measured and reported but never decide the run's phase.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DryRun {
    /// Name of the metric, or a regular expression matching metric names.
    pub metric_name: String,
}

/// How many measurements to keep in status for the metrics whose name matches `metricName`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MeasurementRetention {
    /// Name of the metric, or a regular expression matching metric names.
    pub metric_name: String,
    /// Number of measurements to retain (upstream default: 10).
    pub limit: i32,
}

/// A downward-API style reference to a field of the rollout (`metadata.labels['env']`,
/// `spec.template.metadata.labels.version`, ...).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FieldRef {
    /// Path of the field to read.
    pub field_path: String,
}

/// Labels and annotations added to the AnalysisRuns a rollout or experiment creates.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisRunMetadata {
    /// Labels added to each AnalysisRun.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Annotations added to each AnalysisRun.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}
