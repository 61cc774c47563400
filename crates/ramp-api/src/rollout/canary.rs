//! The canary strategy (`spec.strategy.canary`) and its steps. Traffic routing lives in
//! `traffic.rs`; what the steps do is decided in `ramp-core`.

use super::{
    AbortScaleDown, AnalysisRunArgument, AntiAffinity, IntOrPercentError, PodTemplateMetadata,
    RolloutAnalysis, RolloutAnalysisBackground, RolloutBudget, RolloutTrafficRouting,
};
use crate::common::{AnalysisRunMetadata, DryRun};
use crate::defaults;
use crate::duration::DurationError;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Canary: the new ReplicaSet grows and takes traffic step by step while the stable one serves
/// the rest.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStrategy {
    /// Service the controller points at the canary pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_service: Option<String>,
    /// Service the controller points at the stable pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_service: Option<String>,
    /// Ordered steps of an update; none means a plain rolling update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<CanaryStep>>,
    /// Weight-based traffic splitting through a mesh, ingress or plugin; without it the split
    /// follows the replica ratio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_routing: Option<RolloutTrafficRouting>,
    /// Pods allowed above `replicas` during an update: a count, or any string as a percentage
    /// rounded up (default 25%).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_surge: Option<IntOrString>,
    /// Pods allowed to be unavailable during an update: a count, or any string as a percentage
    /// rounded down (default 25%).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<IntOrString>,
    /// Background analysis running for the whole update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<RolloutAnalysisBackground>,
    /// Keeps canary pods off nodes running stable pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anti_affinity: Option<AntiAffinity>,
    /// Metadata applied to pods while they are canary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_metadata: Option<PodTemplateMetadata>,
    /// Metadata applied to pods while they are stable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_metadata: Option<PodTemplateMetadata>,
    /// Seconds the previous stable ReplicaSet stays up after promotion (traffic routing only;
    /// default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down_delay_seconds: Option<i32>,
    /// Old ReplicaSets allowed to wait out a scale-down delay (default unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down_delay_revision_limit: Option<i32>,
    /// Seconds the canary ReplicaSet stays up after an abort; 0 keeps it (traffic routing only;
    /// default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_scale_down_delay_seconds: Option<i32>,
    /// Scale the stable ReplicaSet down as canary weight rises (traffic routing only; default
    /// false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dynamic_stable_scale: Option<bool>,
    /// Two services that alternate between stable and canary instead of swapping selectors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ping_pong: Option<PingPongSpec>,
    /// Floor for any non-zero canary or stable pod count (traffic routing only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_pods_per_replica_set: Option<i32>,
    /// Share of the desired canary pods that must be available for a step to complete
    /// (default: all of them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_progress_threshold: Option<ReplicaProgressThreshold>,
}

impl CanaryStrategy {
    /// `maxSurge` as configured, or the default 25%.
    pub fn max_surge(&self) -> IntOrString {
        self.max_surge
            .clone()
            .unwrap_or_else(|| IntOrString::String(defaults::MAX_SURGE.to_owned()))
    }

    /// `maxUnavailable` as configured, or the default 25%.
    pub fn max_unavailable(&self) -> IntOrString {
        self.max_unavailable
            .clone()
            .unwrap_or_else(|| IntOrString::String(defaults::MAX_UNAVAILABLE.to_owned()))
    }

    /// `maxSurge`/`maxUnavailable` resolved in pods against `replicas`.
    pub fn rollout_budget(&self, replicas: i32) -> Result<RolloutBudget, IntOrPercentError> {
        RolloutBudget::resolve(
            &self.max_surge(),
            "maxSurge",
            &self.max_unavailable(),
            "maxUnavailable",
            replicas,
        )
    }

    /// Seconds the previous stable ReplicaSet stays up after promotion: 30 by default with
    /// traffic routing; a basic canary never delays (0), whatever is configured.
    pub fn scale_down_delay_seconds(&self) -> i32 {
        if self.traffic_routing.is_none() {
            return 0;
        }
        self.scale_down_delay_seconds
            .unwrap_or(defaults::SCALE_DOWN_DELAY_SECONDS)
    }

    /// What happens to the canary ReplicaSet after an abort: with traffic routing it is kept
    /// 30 s by default (`0` keeps it forever); a basic canary scales it down at once.
    pub fn abort_scale_down(&self) -> AbortScaleDown {
        if self.traffic_routing.is_none() {
            return AbortScaleDown::AfterSeconds(0);
        }
        AbortScaleDown::from_field(self.abort_scale_down_delay_seconds)
    }

    /// Whether the stable ReplicaSet shrinks as the canary weight grows.
    pub fn dynamic_stable_scale(&self) -> bool {
        self.dynamic_stable_scale.unwrap_or(false)
    }

    /// Steps of an update (empty when none are configured).
    pub fn steps(&self) -> &[CanaryStep] {
        self.steps.as_deref().unwrap_or_default()
    }

    /// Denominator of every traffic weight (default 100).
    pub fn max_traffic_weight(&self) -> i32 {
        self.traffic_routing.as_ref().map_or(
            defaults::MAX_TRAFFIC_WEIGHT,
            RolloutTrafficRouting::max_traffic_weight,
        )
    }

    /// Floor for non-zero canary/stable pod counts (0 = no floor).
    pub fn min_pods_per_replica_set(&self) -> i32 {
        self.min_pods_per_replica_set.unwrap_or(0)
    }
}

/// The ping and pong services of a ping-pong canary.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PingPongSpec {
    /// Name of the ping service.
    pub ping_service: String,
    /// Name of the pong service.
    pub pong_service: String,
}

/// How many desired canary pods must be available before a step may complete.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaProgressThreshold {
    /// `Percent` (of the desired canary pods) or `Pods` (an absolute count).
    #[serde(rename = "type")]
    pub type_: String,
    /// The threshold in the unit given by `type`.
    pub value: i32,
}

/// `replicaProgressThreshold.type` values upstream understands.
pub mod progress_threshold_type {
    /// `value` is a percentage of the desired canary pods.
    pub const PERCENT: &str = "Percent";
    /// `value` is a number of pods.
    pub const PODS: &str = "Pods";
}

/// One step of a canary update. Exactly one kind should be set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStep {
    /// Desired canary traffic weight (0..=maxTrafficWeight).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_weight: Option<i32>,
    /// Pause the update, for a duration or until promoted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<RolloutPause>,
    /// Run an Experiment and wait for it to succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment: Option<RolloutExperimentStep>,
    /// Run an AnalysisRun and wait for it to succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<RolloutAnalysis>,
    /// Size the canary independently of its traffic weight (traffic routing only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_canary_scale: Option<SetCanaryScale>,
    /// Send requests matching headers to the canary through a managed route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_header_route: Option<SetHeaderRoute>,
    /// Mirror matching requests to the canary through a managed route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_mirror_route: Option<SetMirrorRoute>,
    /// Run a step plugin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<PluginStep>,
}

/// A pause step.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutPause {
    /// How long to pause: seconds as an integer or a string (`30`, `"30"`), or a duration
    /// (`"30s"`, `"5m"`, `"1h"`). Absent: pause until promoted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<IntOrString>,
}

impl RolloutPause {
    /// How long to pause, or `None` to wait for a promotion. A malformed duration is an error
    /// (upstream treats it as an invalid spec).
    pub fn parsed_duration(&self) -> Option<Result<Duration, DurationError>> {
        self.duration
            .as_ref()
            .map(crate::duration::from_int_or_string)
    }
}

/// An experiment step: runs temporary ReplicaSets (and analyses) next to the rollout's.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutExperimentStep {
    /// ReplicaSets to run, cloned from the canary or stable template.
    pub templates: Vec<RolloutExperimentTemplate>,
    /// How long the experiment runs (e.g. `1h`); absent = until its required analyses finish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// AnalysisRuns run by the experiment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analyses: Option<Vec<RolloutExperimentStepAnalysisTemplateRef>>,
    /// Metrics (by name regex) that run without affecting the result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<Vec<DryRun>>,
    /// Extra labels and annotations on the experiment's AnalysisRuns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis_run_metadata: Option<AnalysisRunMetadata>,
    /// Seconds before the experiment's ReplicaSets are scaled down once it ends (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down_delay_seconds: Option<i32>,
}

/// One ReplicaSet of an experiment step.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutExperimentTemplate {
    /// Name of the template, unique within the experiment.
    pub name: String,
    /// Which pod template to clone: `canary` or `stable`.
    pub spec_ref: String,
    /// Pods to run (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Labels and annotations added to the template's pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<PodTemplateMetadata>,
    /// Selector of the template's pods (merged with the template labels).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::atomic_label_selector")]
    pub selector: Option<LabelSelector>,
    /// Traffic weight routed to the template (traffic routing only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i32>,
    /// Creates a Service for the template's pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<TemplateService>,
}

/// `experiment.templates[].specRef` values.
pub mod spec_ref {
    /// Clone the canary (new) pod template.
    pub const CANARY: &str = "canary";
    /// Clone the stable pod template.
    pub const STABLE: &str = "stable";
}

/// Service created for an experiment template.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateService {
    /// Service name (default: the template's ReplicaSet name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// An analysis run by an experiment step.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutExperimentStepAnalysisTemplateRef {
    /// Name of the analysis within the experiment.
    pub name: String,
    /// AnalysisTemplate (or ClusterAnalysisTemplate) to run.
    pub template_name: String,
    /// True: `templateName` is a ClusterAnalysisTemplate (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_scope: Option<bool>,
    /// Values for the template's arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<AnalysisRunArgument>>,
    /// The experiment completes once this analysis does (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_for_completion: Option<bool>,
}

/// Sets the canary size independently of the traffic weight; one member should be set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SetCanaryScale {
    /// Canary pods as a percentage of `replicas` (may exceed 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i32>,
    /// Canary pods as an absolute count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Go back to sizing the canary from its traffic weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_traffic_weight: Option<bool>,
}

/// Routes requests with matching headers to the canary; no `match` removes the route.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SetHeaderRoute {
    /// Managed route to write (must be listed in `trafficRouting.managedRoutes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Header conditions, all of which must hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#match: Option<Vec<HeaderRoutingMatch>>,
}

/// One header condition of a header route.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeaderRoutingMatch {
    /// Header name.
    pub header_name: String,
    /// How the header value must match.
    pub header_value: StringMatch,
}

/// A string condition; exactly one member should be set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StringMatch {
    /// The value equals this string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    /// The value starts with this string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// The value matches this regular expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

/// Mirrors matching requests to the canary; no `match` removes the route.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SetMirrorRoute {
    /// Managed route to write (must be listed in `trafficRouting.managedRoutes`).
    pub name: String,
    /// Request conditions: any block may match, all fields within a block must.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#match: Option<Vec<RouteMatch>>,
    /// Share of matching requests mirrored (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage: Option<i32>,
}

impl RolloutExperimentStep {
    /// How long the experiment runs, or `None` to run until its required analyses finish.
    pub fn parsed_duration(&self) -> Option<Result<Duration, DurationError>> {
        self.duration.as_deref().map(crate::duration::parse)
    }
}

impl SetMirrorRoute {
    /// Share of matching requests mirrored (default 100).
    pub fn percentage(&self) -> i32 {
        self.percentage.unwrap_or(defaults::MIRROR_PERCENTAGE)
    }
}

/// One block of request conditions of a mirror route.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteMatch {
    /// HTTP method condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<StringMatch>,
    /// URI path condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<StringMatch>,
    /// Header conditions by header name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, StringMatch>>,
}

/// A step executed by a step plugin.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PluginStep {
    /// Name of the plugin as configured for the controller.
    pub name: String,
    /// Free-form configuration handed to the plugin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::preserve_unknown_object")]
    pub config: Option<serde_json::Value>,
}
