//! The `Rollout` kind (`argoproj.io/v1alpha1`) as Rust types, field for field with the upstream
//! CRD so that any manifest Argo Rollouts accepts deserializes here and serializes back unchanged.
//! Defaults are not stored: absent fields stay `None` and the accessors fall back to
//! `crate::defaults`. Semantic checks live in `crate::validation`, behaviour in `ramp-core`.

mod bluegreen;
mod canary;
mod status;
mod traffic;

pub use bluegreen::*;
pub use canary::*;
pub use status::*;
pub use traffic::*;

use crate::common::{AnalysisRunMetadata, DryRun, FieldRef, MeasurementRetention};
use crate::defaults;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Desired state of a Rollout: a Deployment-like pod template plus a progressive delivery
/// strategy (canary or blue-green).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[allow(
    clippy::duplicated_attributes,
    reason = "each printcolumn(...) repeats `type_`; they are distinct columns"
)]
#[kube(
    group = "argoproj.io",
    version = "v1alpha1",
    kind = "Rollout",
    namespaced,
    status = "RolloutStatus",
    derive = "PartialEq",
    shortname = "ro",
    doc = "A Deployment-like workload that rolls out new pod templates progressively (canary or blue-green).",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.HPAReplicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Desired",
        type_ = "integer",
        json_path = ".spec.replicas",
        description = "Number of desired pods"
    ),
    printcolumn(
        name = "Current",
        type_ = "integer",
        json_path = ".status.replicas",
        description = "Total number of non-terminated pods targeted by this rollout"
    ),
    printcolumn(
        name = "Up-to-date",
        type_ = "integer",
        json_path = ".status.updatedReplicas",
        description = "Total number of non-terminated pods targeted by this rollout that have the desired template spec"
    ),
    printcolumn(
        name = "Available",
        type_ = "integer",
        json_path = ".status.availableReplicas",
        description = "Total number of available pods (ready for at least minReadySeconds) targeted by this rollout"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp",
        description = "Time since resource was created"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSpec {
    /// Desired number of pods (default 1; target of the scale subresource).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Selects the rollout's pods; must match the template labels; immutable once set. May be
    /// omitted with `workloadRef` (then taken from the workload).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::immutable_label_selector")]
    pub selector: Option<LabelSelector>,
    /// Pod template; every change starts a new revision. Must be empty with `workloadRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::embedded_pod_template")]
    pub template: Option<PodTemplateSpec>,
    /// Takes the pod template from a Deployment, ReplicaSet or PodTemplate in the same namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_ref: Option<ObjectRef>,
    /// Seconds a new pod must be ready, without crashing, to count as available (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_ready_seconds: Option<i32>,
    /// Old, fully scaled-down ReplicaSets kept for rollback (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_history_limit: Option<i32>,
    /// Halts the update (no scaling for it, no step advance, no service switch) while true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
    /// Seconds without progress before the update is reported as failed (default 600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline_seconds: Option<i32>,
    /// Also abort the update when the progress deadline is exceeded (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline_abort: Option<bool>,
    /// Pods created before this instant are restarted (evicted) a few at a time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_at: Option<Time>,
    /// Rolling back to a recent revision inside this window skips steps and analysis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_window: Option<RollbackWindowSpec>,
    /// How many finished AnalysisRuns and Experiments to keep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisRunStrategy>,
    /// The deployment strategy: exactly one of `canary` or `blueGreen`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<RolloutStrategy>,
}

impl RolloutSpec {
    /// Desired pods (`spec.replicas`, default 1).
    pub fn replicas(&self) -> i32 {
        self.replicas.unwrap_or(defaults::REPLICAS)
    }

    /// Old ReplicaSets kept for rollback (`spec.revisionHistoryLimit`, default 10).
    pub fn revision_history_limit(&self) -> i32 {
        self.revision_history_limit
            .unwrap_or(defaults::REVISION_HISTORY_LIMIT)
    }

    /// Seconds without progress before `ProgressDeadlineExceeded` (default 600).
    pub fn progress_deadline_seconds(&self) -> i32 {
        self.progress_deadline_seconds
            .unwrap_or(defaults::PROGRESS_DEADLINE_SECONDS)
    }

    /// Whether an exceeded progress deadline also aborts the update (default false).
    pub fn progress_deadline_abort(&self) -> bool {
        self.progress_deadline_abort.unwrap_or(false)
    }

    /// Seconds a pod must be ready to count as available (default 0).
    pub fn min_ready_seconds(&self) -> i32 {
        self.min_ready_seconds
            .unwrap_or(defaults::MIN_READY_SECONDS)
    }

    /// Whether the rollout is manually paused (`spec.paused`).
    pub fn is_paused(&self) -> bool {
        self.paused.unwrap_or(false)
    }

    /// Successful AnalysisRuns/Experiments kept (default 5).
    pub fn successful_run_history_limit(&self) -> i32 {
        self.analysis
            .as_ref()
            .and_then(|a| a.successful_run_history_limit)
            .unwrap_or(defaults::SUCCESSFUL_RUN_HISTORY_LIMIT)
    }

    /// Failed, errored or inconclusive AnalysisRuns/Experiments kept (default 5).
    pub fn unsuccessful_run_history_limit(&self) -> i32 {
        self.analysis
            .as_ref()
            .and_then(|a| a.unsuccessful_run_history_limit)
            .unwrap_or(defaults::UNSUCCESSFUL_RUN_HISTORY_LIMIT)
    }

    /// The canary strategy, if that is the one configured.
    pub fn canary(&self) -> Option<&CanaryStrategy> {
        self.strategy.as_ref().and_then(|s| s.canary.as_ref())
    }

    /// The blue-green strategy, if that is the one configured.
    pub fn blue_green(&self) -> Option<&BlueGreenStrategy> {
        self.strategy.as_ref().and_then(|s| s.blue_green.as_ref())
    }

    /// Canary steps (empty for blue-green or a canary without steps).
    pub fn steps(&self) -> &[CanaryStep] {
        self.canary()
            .and_then(|c| c.steps.as_deref())
            .unwrap_or_default()
    }

    /// Surge and unavailability budgets in pods for this rollout's strategy.
    ///
    /// Canary resolves its own `maxSurge`/`maxUnavailable`; blue-green never surges and only
    /// uses `maxUnavailable` (to bound restarts). A rollout without a strategy has no budget
    /// beyond the minimum of one unavailable pod, like upstream's zero/zero rule.
    pub fn rollout_budget(&self) -> Result<RolloutBudget, IntOrPercentError> {
        let replicas = self.replicas();
        if let Some(canary) = self.canary() {
            canary.rollout_budget(replicas)
        } else if let Some(blue_green) = self.blue_green() {
            blue_green.rollout_budget(replicas)
        } else {
            RolloutBudget::resolve(
                &IntOrString::Int(0),
                "maxSurge",
                &IntOrString::Int(0),
                "maxUnavailable",
                replicas,
            )
        }
    }
}

/// Reference to the workload a Rollout takes its pod template from.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    /// API version of the workload (`apps/v1` or `v1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Kind of the workload: `Deployment`, `ReplicaSet` or `PodTemplate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Name of the workload (same namespace as the rollout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// How to scale the referenced Deployment down: `never` (also when unset), `onsuccess` or
    /// `progressively`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down: Option<String>,
}

/// `workloadRef.scaleDown` values upstream understands (the CRD accepts any string).
pub mod scale_down {
    /// Leave the referenced Deployment alone (same as unset).
    pub const NEVER: &str = "never";
    /// Scale the Deployment to zero once the rollout's first revision is healthy.
    pub const ON_SUCCESS: &str = "onsuccess";
    /// Scale the Deployment down as rollout pods become available.
    pub const PROGRESSIVELY: &str = "progressively";
}

/// Fast-track window for rollbacks.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RollbackWindowSpec {
    /// Rolling back to one of this many previous revisions skips steps and analysis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revisions: Option<i32>,
}

/// History limits for the AnalysisRuns and Experiments a rollout creates.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisRunStrategy {
    /// Successful runs and experiments kept, besides the current ones (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub successful_run_history_limit: Option<i32>,
    /// Failed, errored and inconclusive runs and experiments kept (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsuccessful_run_history_limit: Option<i32>,
}

/// The deployment strategy; exactly one member must be set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStrategy {
    /// Blue-green: a preview ReplicaSet is brought up next to the active one, then swapped in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blue_green: Option<BlueGreenStrategy>,
    /// Canary: traffic and pods shift to the new version step by step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryStrategy>,
}

/// Labels and annotations applied to pods only while they play a role (canary, stable,
/// preview, active); patched onto running pods in place.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodTemplateMetadata {
    /// Labels added to the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Annotations added to the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// Keeps new pods off nodes that run stable pods; exactly one member must be set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AntiAffinity {
    /// Soft anti-affinity with the given weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_during_scheduling_ignored_during_execution:
        Option<PreferredDuringSchedulingIgnoredDuringExecution>,
    /// Hard anti-affinity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_during_scheduling_ignored_during_execution:
        Option<RequiredDuringSchedulingIgnoredDuringExecution>,
}

/// Soft anti-affinity against stable pods.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreferredDuringSchedulingIgnoredDuringExecution {
    /// Scheduler weight of the term, 1..=100.
    pub weight: i32,
}

/// Hard anti-affinity against stable pods (an empty object).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RequiredDuringSchedulingIgnoredDuringExecution {}

/// AnalysisRun the rollout creates from one or more templates (step, background, pre- or
/// post-promotion analysis).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutAnalysis {
    /// Templates merged into the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub templates: Option<Vec<AnalysisTemplateRef>>,
    /// Values for the templates' arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<AnalysisRunArgument>>,
    /// Metrics (by name regex) that run without affecting the result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<Vec<DryRun>>,
    /// How many measurements to keep per metric (by name regex; default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measurement_retention: Option<Vec<MeasurementRetention>>,
    /// Extra labels and annotations on the created AnalysisRun.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis_run_metadata: Option<AnalysisRunMetadata>,
}

/// Background analysis: a [`RolloutAnalysis`] running for the whole update.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutAnalysisBackground {
    /// Templates merged into the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub templates: Option<Vec<AnalysisTemplateRef>>,
    /// Values for the templates' arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<AnalysisRunArgument>>,
    /// Metrics (by name regex) that run without affecting the result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<Vec<DryRun>>,
    /// How many measurements to keep per metric (by name regex; default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measurement_retention: Option<Vec<MeasurementRetention>>,
    /// Extra labels and annotations on the created AnalysisRun.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis_run_metadata: Option<AnalysisRunMetadata>,
    /// Step index from which the background run starts (default: from the first step).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starting_step: Option<i32>,
}

impl RolloutAnalysisBackground {
    /// The analysis part, without the starting step.
    pub fn analysis(&self) -> RolloutAnalysis {
        RolloutAnalysis {
            templates: self.templates.clone(),
            args: self.args.clone(),
            dry_run: self.dry_run.clone(),
            measurement_retention: self.measurement_retention.clone(),
            analysis_run_metadata: self.analysis_run_metadata.clone(),
        }
    }
}

/// An AnalysisTemplate (or ClusterAnalysisTemplate) used by a rollout analysis.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisTemplateRef {
    /// Name of the template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_name: Option<String>,
    /// True: the name refers to a ClusterAnalysisTemplate (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_scope: Option<bool>,
}

impl AnalysisTemplateRef {
    /// Whether the reference is to a ClusterAnalysisTemplate.
    pub fn is_cluster_scoped(&self) -> bool {
        self.cluster_scope.unwrap_or(false)
    }
}

/// A value passed to an analysis template argument: literal, or read from the rollout.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisRunArgument {
    /// Name of the template argument.
    pub name: String,
    /// Literal value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Where to read the value from when not literal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<ArgumentValueFrom>,
}

/// Source of a rollout-side argument value.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArgumentValueFrom {
    /// Pod-template hash of the `Stable` or `Latest` ReplicaSet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_template_hash_value: Option<String>,
    /// A field of the rollout (`metadata.labels['x']`, `spec.template...`, `status...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_ref: Option<FieldRef>,
}

/// `valueFrom.podTemplateHashValue` values upstream understands.
pub mod pod_template_hash_value {
    /// Hash of the stable ReplicaSet.
    pub const STABLE: &str = "Stable";
    /// Hash of the newest (canary/preview) ReplicaSet.
    pub const LATEST: &str = "Latest";
}

/// What happens to the canary/preview ReplicaSet once an update is aborted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbortScaleDown {
    /// Scale it down after this many seconds (0 = at once).
    AfterSeconds(i32),
    /// Never scale it down (`abortScaleDownDelaySeconds: 0`).
    Never,
}

impl AbortScaleDown {
    /// Reads `abortScaleDownDelaySeconds` of a strategy where it applies (default 30).
    fn from_field(seconds: Option<i32>) -> Self {
        match seconds {
            Some(0) => Self::Never,
            Some(seconds) => Self::AfterSeconds(seconds),
            None => Self::AfterSeconds(defaults::ABORT_SCALE_DOWN_DELAY_SECONDS),
        }
    }
}

/// A surge or unavailability field that could not be turned into a pod count.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: invalid value {value:?}: {reason}")]
pub struct IntOrPercentError {
    /// JSON path of the field relative to the strategy (`maxSurge`, `maxUnavailable`).
    pub field: &'static str,
    /// The value as written.
    pub value: String,
    /// Why it was rejected.
    pub reason: String,
}

/// Resolves an int-or-string against `total`, the way upstream does it: an integer is a pod
/// count; **any** string is a percentage, with or without a `%` sign (`"3"` means 3 %), rounded
/// up or down as asked.
pub fn scaled_int_or_percent(
    value: &IntOrString,
    field: &'static str,
    total: i32,
    round_up: bool,
) -> Result<i32, IntOrPercentError> {
    match value {
        IntOrString::Int(count) => Ok(*count),
        IntOrString::String(text) => {
            let digits = text.replace('%', "");
            let percent: i64 = digits.parse().map_err(|_| IntOrPercentError {
                field,
                value: text.clone(),
                reason: "not an integer or a percentage".to_owned(),
            })?;
            let scaled =
                percent
                    .checked_mul(i64::from(total))
                    .ok_or_else(|| IntOrPercentError {
                        field,
                        value: text.clone(),
                        reason: "percentage too large".to_owned(),
                    })?;
            let pods = if round_up {
                scaled.div_euclid(100) + i64::from(scaled.rem_euclid(100) != 0)
            } else {
                scaled.div_euclid(100)
            };
            i32::try_from(pods).map_err(|_| IntOrPercentError {
                field,
                value: text.clone(),
                reason: format!("{pods} pods does not fit in an int32"),
            })
        }
    }
}

/// How far an update may stray from `replicas`, in pods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RolloutBudget {
    /// Pods allowed above `replicas` (surge percentages round up).
    pub max_surge: i32,
    /// Pods allowed to be unavailable (percentages round down; capped at `replicas`).
    pub max_unavailable: i32,
}

impl RolloutBudget {
    /// Resolves both budgets against `replicas`. If both come out as zero, one pod may be
    /// unavailable so the update can move at all; the result never exceeds `replicas`
    /// (and is zero for a rollout scaled to zero).
    pub fn resolve(
        max_surge: &IntOrString,
        surge_field: &'static str,
        max_unavailable: &IntOrString,
        unavailable_field: &'static str,
        replicas: i32,
    ) -> Result<Self, IntOrPercentError> {
        let surge = scaled_int_or_percent(max_surge, surge_field, replicas, true)?;
        let mut unavailable =
            scaled_int_or_percent(max_unavailable, unavailable_field, replicas, false)?;
        if surge == 0 && unavailable == 0 {
            unavailable = 1;
        }
        Ok(Self {
            max_surge: surge,
            max_unavailable: unavailable.min(replicas.max(0)),
        })
    }
}

#[cfg(test)]
mod tests;
