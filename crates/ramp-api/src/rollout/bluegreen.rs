//! The blue-green strategy (`spec.strategy.blueGreen`): a preview ReplicaSet comes up next to
//! the active one and the active service is switched to it at promotion.

use super::{
    AbortScaleDown, AntiAffinity, IntOrPercentError, PodTemplateMetadata, RolloutAnalysis,
    RolloutBudget,
};
use crate::defaults;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Blue-green: new pods are brought up behind the preview service, then swapped into the
/// active service.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlueGreenStrategy {
    /// Service carrying production traffic; switched to the new pods at promotion.
    pub active_service: String,
    /// Service pointed at the new pods as soon as they exist, for testing before promotion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_service: Option<String>,
    /// Pods run for the preview before promotion (default: all `replicas`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_replica_count: Option<i32>,
    /// Promote as soon as the new pods are ready; false waits for a manual promote (default
    /// true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_promotion_enabled: Option<bool>,
    /// With auto-promotion, seconds to wait once the new pods are ready (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_promotion_seconds: Option<i32>,
    /// Pods allowed to be unavailable while restarting: a count, or any string as a percentage
    /// rounded down (default 25%).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<IntOrString>,
    /// Seconds the previous active ReplicaSet stays up after the switch (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down_delay_seconds: Option<i32>,
    /// Old ReplicaSets allowed to wait out a scale-down delay (default unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down_delay_revision_limit: Option<i32>,
    /// Seconds the preview ReplicaSet stays up after an abort; 0 keeps it (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_scale_down_delay_seconds: Option<i32>,
    /// Analysis that must succeed before the switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_promotion_analysis: Option<RolloutAnalysis>,
    /// Analysis that must succeed after the switch for the new pods to become stable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_promotion_analysis: Option<RolloutAnalysis>,
    /// Keeps new pods off nodes running the active pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anti_affinity: Option<AntiAffinity>,
    /// Metadata applied to pods while they are the preview.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_metadata: Option<PodTemplateMetadata>,
    /// Metadata applied to pods while they are active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_metadata: Option<PodTemplateMetadata>,
}

impl BlueGreenStrategy {
    /// Whether promotion happens without a manual promote (default true).
    pub fn auto_promotion_enabled(&self) -> bool {
        self.auto_promotion_enabled
            .unwrap_or(defaults::AUTO_PROMOTION_ENABLED)
    }

    /// Seconds to wait before an automatic promotion (default 0).
    pub fn auto_promotion_seconds(&self) -> i32 {
        self.auto_promotion_seconds
            .unwrap_or(defaults::AUTO_PROMOTION_SECONDS)
    }

    /// Seconds the previous active ReplicaSet stays up after the switch (default 30).
    pub fn scale_down_delay_seconds(&self) -> i32 {
        self.scale_down_delay_seconds
            .unwrap_or(defaults::SCALE_DOWN_DELAY_SECONDS)
    }

    /// What happens to the preview ReplicaSet after an abort: kept 30 s by default, forever
    /// with `abortScaleDownDelaySeconds: 0`.
    pub fn abort_scale_down(&self) -> AbortScaleDown {
        AbortScaleDown::from_field(self.abort_scale_down_delay_seconds)
    }

    /// `maxUnavailable` as configured, or the default 25%.
    pub fn max_unavailable(&self) -> IntOrString {
        self.max_unavailable
            .clone()
            .unwrap_or_else(|| IntOrString::String(defaults::MAX_UNAVAILABLE.to_owned()))
    }

    /// Budgets in pods against `replicas`: blue-green never surges, so only `maxUnavailable`
    /// counts (and becomes at least one pod).
    pub fn rollout_budget(&self, replicas: i32) -> Result<RolloutBudget, IntOrPercentError> {
        RolloutBudget::resolve(
            &IntOrString::Int(0),
            "maxSurge",
            &self.max_unavailable(),
            "maxUnavailable",
            replicas,
        )
    }
}
