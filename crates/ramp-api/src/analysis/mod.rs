//! AnalysisTemplate and ClusterAnalysisTemplate, and the pieces every analysis kind shares:
//! arguments, metrics and their limits. Providers live in [`provider`], AnalysisRun and its
//! status in [`run`]. Only shape and defaults: measuring and judging belong to `ramp-core`.

pub mod provider;
pub mod run;

pub use provider::*;
pub use run::*;

use crate::common::{DryRun, FieldRef, MeasurementRetention};
use crate::defaults;
use crate::duration::{self, DurationError};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::ops::{Deref, DerefMut};
use std::time::Duration;

/// A field of an analysis object that cannot be read as the domain value it stands for. Metric
/// errors name the metric; provider errors are about `metrics[].provider`, whose caller knows
/// which metric that is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AnalysisFieldError {
    /// `metrics[].provider` has no member set.
    #[error("no provider specified")]
    NoProvider,
    /// `metrics[].provider` has more than one member set.
    #[error("multiple providers specified: {}", .0.join(", "))]
    MultipleProviders(Vec<&'static str>),
    /// `metrics[].provider.plugin` names more than one plugin.
    #[error("only one plugin may be configured per metric, got: {}", .0.join(", "))]
    MultiplePlugins(Vec<String>),
    /// An int-or-string or duration field still holds an `{{args.*}}` placeholder; it is only
    /// readable on a metric whose arguments have been substituted.
    #[error("metric {metric:?}: {field} {value:?} holds an unresolved argument placeholder")]
    UnresolvedPlaceholder {
        metric: String,
        field: &'static str,
        value: String,
    },
    /// An int-or-string field holds a string that is not a decimal integer.
    #[error("metric {metric:?}: {field} {value:?} is not an integer")]
    NotAnInteger {
        metric: String,
        field: &'static str,
        value: String,
    },
    /// `metrics[].count` is negative: the metric could never take a measurement.
    #[error("metric {metric:?}: count must not be negative, got {value}")]
    NegativeCount { metric: String, value: i32 },
    /// A duration field of a metric (`interval`, `initialDelay`) is not a Go duration.
    #[error("metric {metric:?}: {field}: {source}")]
    InvalidDuration {
        metric: String,
        field: &'static str,
        #[source]
        source: DurationError,
    },
    /// A status field (a phase, an experiment template's state) holds a value outside its
    /// vocabulary.
    #[error("{field}: unknown value {value:?}")]
    UnknownStatus { field: &'static str, value: String },
}

/// An input of an analysis. Without `value` or `valueFrom` it must be supplied by whoever
/// instantiates the template.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Argument {
    /// Argument name, referenced as `{{args.<name>}}`.
    pub name: String,
    /// Literal value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Where to read the value from when it is not literal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<ValueFrom>,
}

impl Argument {
    /// Whether the argument has a value or a source for one.
    pub fn is_resolved(&self) -> bool {
        self.value.is_some() || self.value_from.is_some()
    }
}

/// The source of an argument's value.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ValueFrom {
    /// A field of the owning object (resolved before the run is created).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_ref: Option<FieldRef>,
    /// A key of a Secret in the AnalysisRun's namespace, read at measurement time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeyRef>,
}

/// A key of a Secret.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Key within the Secret's data.
    pub key: String,
    /// Secret name.
    pub name: String,
}

/// Another template whose metrics and arguments are included in this one.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisTemplateRef {
    /// Whether `templateName` names a ClusterAnalysisTemplate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_scope: Option<bool>,
    /// Name of the included template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_name: Option<String>,
}

/// One measured quantity of an analysis: how to measure it, how often, and when its
/// measurements make the metric succeed or fail.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Metric {
    /// More than this many consecutive Error measurements make the metric Error (default 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_error_limit: Option<IntOrString>,
    /// This many consecutive Successful measurements make the metric Successful (default 0:
    /// disabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_success_limit: Option<IntOrString>,
    /// Number of measurements to take; unset or 0 means one, or unbounded when `interval` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<IntOrString>,
    /// Expression over `result` that marks a measurement Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_condition: Option<String>,
    /// More than this many Failed measurements make the metric Failed (default 0; -1 disables).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_limit: Option<IntOrString>,
    /// More than this many Inconclusive measurements make the metric Inconclusive (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inconclusive_limit: Option<IntOrString>,
    /// Delay before the first measurement, counted from the run's start (duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_delay: Option<String>,
    /// Time between measurements (duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Metric name, unique within the analysis.
    pub name: String,
    /// Where measurements come from.
    pub provider: MetricProvider,
    /// Expression over `result` that marks a measurement Successful.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_condition: Option<String>,
}

/// How many measurements a metric takes in total.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MeasurementCount {
    /// Stop after this many non-error measurements.
    Bounded(u32),
    /// Keep measuring until the run terminates.
    Unbounded,
}

impl MeasurementCount {
    /// Whether `taken` non-error measurements exhaust the count.
    pub fn is_reached(self, taken: i32) -> bool {
        match self {
            Self::Bounded(limit) => i64::from(taken) >= i64::from(limit),
            Self::Unbounded => false,
        }
    }
}

/// The four limits of a metric, defaulted and resolved to integers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetricLimits {
    /// `failureLimit`; -1 disables the failure rule.
    pub failure: i32,
    /// `inconclusiveLimit`.
    pub inconclusive: i32,
    /// `consecutiveErrorLimit`.
    pub consecutive_error: i32,
    /// `consecutiveSuccessLimit`; 0 disables the success-streak rule.
    pub consecutive_success: i32,
}

impl Metric {
    /// `failureLimit`, defaulted.
    pub fn failure_limit(&self) -> Result<i32, AnalysisFieldError> {
        self.int_field(
            "failureLimit",
            self.failure_limit.as_ref(),
            defaults::FAILURE_LIMIT,
        )
    }

    /// `inconclusiveLimit`, defaulted.
    pub fn inconclusive_limit(&self) -> Result<i32, AnalysisFieldError> {
        self.int_field(
            "inconclusiveLimit",
            self.inconclusive_limit.as_ref(),
            defaults::INCONCLUSIVE_LIMIT,
        )
    }

    /// `consecutiveErrorLimit`, defaulted.
    pub fn consecutive_error_limit(&self) -> Result<i32, AnalysisFieldError> {
        self.int_field(
            "consecutiveErrorLimit",
            self.consecutive_error_limit.as_ref(),
            defaults::CONSECUTIVE_ERROR_LIMIT,
        )
    }

    /// `consecutiveSuccessLimit`, defaulted.
    pub fn consecutive_success_limit(&self) -> Result<i32, AnalysisFieldError> {
        self.int_field(
            "consecutiveSuccessLimit",
            self.consecutive_success_limit.as_ref(),
            defaults::CONSECUTIVE_SUCCESS_LIMIT,
        )
    }

    /// All four limits at once.
    pub fn limits(&self) -> Result<MetricLimits, AnalysisFieldError> {
        Ok(MetricLimits {
            failure: self.failure_limit()?,
            inconclusive: self.inconclusive_limit()?,
            consecutive_error: self.consecutive_error_limit()?,
            consecutive_success: self.consecutive_success_limit()?,
        })
    }

    /// Whether an `interval` is set (an empty string counts as unset, as upstream).
    pub fn has_interval(&self) -> bool {
        self.interval.as_deref().is_some_and(|i| !i.is_empty())
    }

    /// `interval` as a duration; `None` when unset or empty.
    pub fn interval_duration(&self) -> Result<Option<Duration>, AnalysisFieldError> {
        self.duration_field("interval", self.interval.as_deref())
    }

    /// `initialDelay` as a duration; `None` when unset or empty.
    pub fn initial_delay_duration(&self) -> Result<Option<Duration>, AnalysisFieldError> {
        self.duration_field("initialDelay", self.initial_delay.as_deref())
    }

    fn duration_field(
        &self,
        field: &'static str,
        value: Option<&str>,
    ) -> Result<Option<Duration>, AnalysisFieldError> {
        let Some(text) = value.filter(|t| !t.is_empty()) else {
            return Ok(None);
        };
        if text.contains("{{") {
            return Err(AnalysisFieldError::UnresolvedPlaceholder {
                metric: self.name.clone(),
                field,
                value: text.to_owned(),
            });
        }
        duration::parse(text)
            .map(Some)
            .map_err(|source| AnalysisFieldError::InvalidDuration {
                metric: self.name.clone(),
                field,
                source,
            })
    }

    /// `count` as written (0 when unset).
    pub fn count(&self) -> Result<i32, AnalysisFieldError> {
        self.int_field("count", self.count.as_ref(), 0)
    }

    /// The number of measurements the metric takes: `count` when positive; otherwise one
    /// measurement without `interval`, and no limit with one.
    pub fn effective_count(&self) -> Result<MeasurementCount, AnalysisFieldError> {
        let count = self.count()?;
        match u32::try_from(count) {
            Ok(0) if self.has_interval() => Ok(MeasurementCount::Unbounded),
            Ok(0) => Ok(MeasurementCount::Bounded(1)),
            Ok(n) => Ok(MeasurementCount::Bounded(n)),
            Err(_) => Err(AnalysisFieldError::NegativeCount {
                metric: self.name.clone(),
                value: count,
            }),
        }
    }

    fn int_field(
        &self,
        field: &'static str,
        value: Option<&IntOrString>,
        default: i32,
    ) -> Result<i32, AnalysisFieldError> {
        match value {
            None => Ok(default),
            Some(IntOrString::Int(n)) => Ok(*n),
            // Go's Atoi accepts no surrounding blanks either, so neither does this.
            Some(IntOrString::String(s)) => s.parse().map_err(|_| {
                if s.contains("{{") {
                    AnalysisFieldError::UnresolvedPlaceholder {
                        metric: self.name.clone(),
                        field,
                        value: s.clone(),
                    }
                } else {
                    AnalysisFieldError::NotAnInteger {
                        metric: self.name.clone(),
                        field,
                        value: s.clone(),
                    }
                }
            }),
        }
    }
}

/// The content of an AnalysisTemplate or ClusterAnalysisTemplate: metrics, their arguments and
/// the templates it includes.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "argoproj.io",
    version = "v1alpha1",
    kind = "AnalysisTemplate",
    namespaced,
    shortname = "at",
    derive = "PartialEq",
    derive = "Default",
    doc = "A reusable, namespaced recipe for analysing a rollout: metrics, arguments and included templates.",
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp",
        description = "Time since resource was created"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisTemplateSpec {
    /// Inputs of the template; those without a value must be supplied by the caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<Argument>>,
    /// Metrics (matched by name) measured without influencing the result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<Vec<DryRun>>,
    /// How many measurements to keep per metric (matched by name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measurement_retention: Option<Vec<MeasurementRetention>>,
    /// The metrics to measure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Vec<Metric>>,
    /// Other templates whose metrics and arguments are included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub templates: Option<Vec<AnalysisTemplateRef>>,
}

impl AnalysisTemplateSpec {
    /// The template's own metrics (not those of included templates).
    pub fn metrics(&self) -> &[Metric] {
        self.metrics.as_deref().unwrap_or_default()
    }

    /// The template's declared arguments.
    pub fn args(&self) -> &[Argument] {
        self.args.as_deref().unwrap_or_default()
    }
}

/// The content of a ClusterAnalysisTemplate: the same fields, and the same schema, as an
/// AnalysisTemplate's spec. A distinct type only because each kind needs its own spec type.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "argoproj.io",
    version = "v1alpha1",
    kind = "ClusterAnalysisTemplate",
    shortname = "cat",
    derive = "PartialEq",
    derive = "Default",
    doc = "A reusable, cluster-wide recipe for analysing a rollout: metrics, arguments and included templates.",
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp",
        description = "Time since resource was created"
    )
)]
#[serde(transparent)]
pub struct ClusterAnalysisTemplateSpec(pub AnalysisTemplateSpec);

impl Deref for ClusterAnalysisTemplateSpec {
    type Target = AnalysisTemplateSpec;

    fn deref(&self) -> &AnalysisTemplateSpec {
        &self.0
    }
}

impl DerefMut for ClusterAnalysisTemplateSpec {
    fn deref_mut(&mut self) -> &mut AnalysisTemplateSpec {
        &mut self.0
    }
}

impl From<AnalysisTemplateSpec> for ClusterAnalysisTemplateSpec {
    fn from(spec: AnalysisTemplateSpec) -> Self {
        Self(spec)
    }
}

#[cfg(test)]
pub(crate) mod tests;
