//! Observed state of a Rollout (`status`), written by the controller. A few fields are also
//! written by users and tools (`abort`, `promoteFull`, `pauseConditions`, `currentStepIndex`)
//! and must be read back as inputs.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Observed state of a Rollout.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    /// Abort the current update and go back to stable; set by users, cleared by the controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<bool>,
    /// When the controller first processed the current abort.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted_at: Option<Time>,
    /// Why the rollout is paused; users clear it to resume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_conditions: Option<Vec<PauseCondition>>,
    /// True once the controller paused the rollout in this pause episode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller_pause: Option<bool>,
    /// Skip every remaining step, pause and analysis; set by users, cleared by the controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promote_full: Option<bool>,
    /// Generation of the spec last processed, as a decimal string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<String>,
    /// Pods (not terminated) across all the rollout's ReplicaSets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Pods of the newest ReplicaSet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_replicas: Option<i32>,
    /// Ready pods (blue-green: of the active ReplicaSet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// Available pods (blue-green: of the active ReplicaSet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_replicas: Option<i32>,
    /// Index of the canary step being executed; the number of steps once all are done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_step_index: Option<i32>,
    /// Bumped on a ReplicaSet name collision; feeds the pod-template hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collision_count: Option<i32>,
    /// Pod-template hash of the newest ReplicaSet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_pod_hash: Option<String>,
    /// Hash of the canary steps; a change restarts the steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_step_hash: Option<String>,
    /// Pod-template hash of the stable ReplicaSet.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "stableRS")]
    pub stable_rs: Option<String>,
    /// Latest observations of the rollout's state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<RolloutCondition>>,
    /// Canary-specific state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryStatus>,
    /// Blue-green-specific state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blue_green: Option<BlueGreenStatus>,
    /// Pods counted by the scale subresource (blue-green: of the active ReplicaSet).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "HPAReplicas"
    )]
    pub hpa_replicas: Option<i32>,
    /// Label selector (string form) of the scale subresource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Equals `spec.restartAt` once every pod is newer than it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarted_at: Option<Time>,
    /// Generation of the `workloadRef` object last observed, as a string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_observed_generation: Option<String>,
    /// `Healthy`, `Progressing`, `Paused` or `Degraded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Why the rollout is in its phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// ALB bookkeeping (single ingress).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alb: Option<AlbStatus>,
    /// ALB bookkeeping, one entry per ingress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub albs: Option<Vec<AlbStatus>>,
    /// Timing of the current or last update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<RolloutDuration>,
}

impl RolloutStatus {
    /// Whether an abort was requested and not yet retried.
    pub fn is_aborted(&self) -> bool {
        self.abort.unwrap_or(false)
    }

    /// Whether the newest ReplicaSet is also the stable one (nothing left to promote).
    pub fn is_fully_promoted(&self) -> bool {
        self.current_pod_hash.is_some() && self.current_pod_hash == self.stable_rs
    }

    /// `observedGeneration` as a number; `None` when absent or non-numeric (legacy hashes),
    /// which clients treat as "observed".
    pub fn observed_generation_number(&self) -> Option<i64> {
        self.observed_generation.as_deref()?.parse().ok()
    }

    /// The condition of the given type, if present.
    pub fn condition(&self, type_: &str) -> Option<&RolloutCondition> {
        self.conditions.iter().flatten().find(|c| c.type_ == type_)
    }

    /// Whether any pause condition is present.
    pub fn has_pause_conditions(&self) -> bool {
        self.pause_conditions
            .as_ref()
            .is_some_and(|p| !p.is_empty())
    }
}

/// `status.conditions[].type` values.
pub mod condition_type {
    /// An update is (or is not) making progress; carries the deadline clock.
    pub const PROGRESSING: &str = "Progressing";
    /// Enough pods are available.
    pub const AVAILABLE: &str = "Available";
    /// Mirrors "paused by a user or a step".
    pub const PAUSED: &str = "Paused";
    /// Fully promoted, available and observed.
    pub const HEALTHY: &str = "Healthy";
    /// The stable ReplicaSet is the newest one.
    pub const COMPLETED: &str = "Completed";
    /// A ReplicaSet failed to create or delete pods.
    pub const REPLICA_FAILURE: &str = "ReplicaFailure";
    /// The spec failed validation.
    pub const INVALID_SPEC: &str = "InvalidSpec";
}

/// `status.phase` values.
pub mod phase {
    /// Fully promoted and available.
    pub const HEALTHY: &str = "Healthy";
    /// An update or restart is under way.
    pub const PROGRESSING: &str = "Progressing";
    /// Paused by a user or a step.
    pub const PAUSED: &str = "Paused";
    /// Invalid, aborted or past its progress deadline.
    pub const DEGRADED: &str = "Degraded";
}

/// Why and since when the rollout is paused.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PauseCondition {
    /// `CanaryPauseStep`, `BlueGreenPause`, `InconclusiveAnalysisRun` or
    /// `InconclusiveExperiment`.
    pub reason: String,
    /// When the pause began (timed pauses count from here).
    pub start_time: Time,
}

/// `pauseConditions[].reason` values.
pub mod pause_reason {
    /// A canary `pause` step.
    pub const CANARY_PAUSE_STEP: &str = "CanaryPauseStep";
    /// Blue-green waiting for promotion.
    pub const BLUE_GREEN_PAUSE: &str = "BlueGreenPause";
    /// An AnalysisRun ended Inconclusive.
    pub const INCONCLUSIVE_ANALYSIS_RUN: &str = "InconclusiveAnalysisRun";
    /// An Experiment ended Inconclusive.
    pub const INCONCLUSIVE_EXPERIMENT: &str = "InconclusiveExperiment";
}

/// One observation of the rollout's state (`Progressing`, `Available`, `Healthy`, ...).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutCondition {
    /// Condition type.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// Machine-readable cause of the last transition.
    pub reason: String,
    /// Human-readable details.
    pub message: String,
    /// Last time the condition was refreshed.
    pub last_update_time: Time,
    /// Last time the status changed.
    pub last_transition_time: Time,
}

/// Canary-specific state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStatus {
    /// The AnalysisRun of the current analysis step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_step_analysis_run_status: Option<RolloutAnalysisRunStatus>,
    /// The background AnalysisRun.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_background_analysis_run_status: Option<RolloutAnalysisRunStatus>,
    /// Name of the Experiment of the current experiment step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_experiment: Option<String>,
    /// Weights last written to the traffic router.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<TrafficWeights>,
    /// Which ping-pong service fronts stable: `ping` or `pong`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_ping_pong: Option<String>,
    /// State of the step plugins run so far in this update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_plugin_statuses: Option<Vec<StepPluginStatus>>,
}

/// Weights last written to the traffic router.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrafficWeights {
    /// The canary destination.
    pub canary: WeightDestination,
    /// The stable destination.
    pub stable: WeightDestination,
    /// Experiment destinations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional: Option<Vec<WeightDestination>>,
    /// Whether the router confirmed the weights (ALB verification).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<bool>,
}

/// A weighted destination of the traffic router.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WeightDestination {
    /// Traffic weight.
    pub weight: i32,
    /// Service receiving it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// Pod-template hash behind the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_template_hash: Option<String>,
}

/// Name and phase of an AnalysisRun the rollout waits on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutAnalysisRunStatus {
    /// Name of the AnalysisRun.
    pub name: String,
    /// Its phase (`Pending`, `Running`, `Successful`, `Failed`, `Error`, `Inconclusive`).
    pub status: String,
    /// Its message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// State of one step-plugin invocation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepPluginStatus {
    /// Index of the step.
    pub index: i32,
    /// Name of the plugin.
    pub name: String,
    /// `Run`, `Terminate` or `Abort`.
    pub operation: String,
    /// `Running`, `Successful`, `Failed` or `Error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Message from the plugin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the operation started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When the status last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<Time>,
    /// When the operation finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    /// Delay before the plugin is called again (a Go duration string).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<String>,
    /// Times the plugin was called for this step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executions: Option<i32>,
    /// Whether the plugin is disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    /// Free-form state kept by the plugin between calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::preserve_unknown_object")]
    pub status: Option<serde_json::Value>,
}

/// Blue-green-specific state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlueGreenStatus {
    /// Pod-template hash in the preview service's selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_selector: Option<String>,
    /// Pod-template hash in the active service's selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_selector: Option<String>,
    /// Latch: the preview may now scale to full size (with `previewReplicaCount`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_up_preview_check_point: Option<bool>,
    /// The pre-promotion AnalysisRun.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_promotion_analysis_run_status: Option<RolloutAnalysisRunStatus>,
    /// The post-promotion AnalysisRun.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_promotion_analysis_run_status: Option<RolloutAnalysisRunStatus>,
}

/// AWS resources behind an ALB ingress.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlbStatus {
    /// The load balancer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<AwsResourceRef>,
    /// Target group of the canary service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_target_group: Option<AwsResourceRef>,
    /// Target group of the stable service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_target_group: Option<AwsResourceRef>,
    /// The ingress these belong to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<String>,
}

/// Identifies an AWS resource.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AwsResourceRef {
    /// Resource name.
    pub name: String,
    /// Amazon Resource Name.
    pub arn: String,
    /// Full name (as used in CloudWatch dimensions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_name: Option<String>,
}

/// Timing of the current or last update.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutDuration {
    /// When the update started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_started_at: Option<Time>,
    /// When the current manual pause started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manual_pause_started_at: Option<Time>,
    /// Seconds spent manually paused during the update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_manual_pause_duration_seconds: Option<i64>,
    /// When the update finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    /// How it finished: `Promoted`, `FastPromoted`, `Aborted`, `Superseded`, `RolledBack` or
    /// `FastRolledBack`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_status: Option<String>,
}
