//! The plan: what the executor must do for one rollout, in order, and the status to write
//! last. Data only; `ramp-controller` turns each action into API calls.

use crate::traffic::TrafficIntent;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::jiff::Timestamp;
use ramp_api::analysis::AnalysisRun;
use ramp_api::rollout::{PodTemplateMetadata, RolloutStatus};

/// One step of a plan. The executor runs them in the order given: the order is the safety
/// argument (pods before traffic on the way up, traffic before pods on the way down).
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Create `<rollout>-<hash>` owned by the rollout. The template already carries the hash
    /// label; the executor adds it to the selector and writes the revision annotation.
    CreateReplicaSet {
        name: String,
        pod_template_hash: String,
        revision: i64,
        replicas: i32,
        template: Box<PodTemplateSpec>,
    },
    /// Set `spec.replicas`.
    ScaleReplicaSet { name: String, from: i32, to: i32 },
    /// Set (`Some`) or remove (`None`) one annotation of a ReplicaSet.
    AnnotateReplicaSet {
        name: String,
        key: String,
        value: Option<String>,
    },
    /// Point the service's `rollouts-pod-template-hash` selector at a revision (and mark it
    /// managed by this rollout).
    PointService {
        service: String,
        pod_template_hash: String,
    },
    /// Make every configured traffic router match this intent.
    SetTraffic(TrafficIntent),
    /// Evict a pod (Eviction API, so PodDisruptionBudgets apply; a refused eviction is
    /// retried on a later reconcile) for `spec.restartAt`.
    EvictPod { name: String },
    /// Delete a scaled-down ReplicaSet beyond `revisionHistoryLimit`.
    DeleteReplicaSet { name: String },
    /// Create an AnalysisRun: name, labels, annotations and spec are complete; the executor
    /// adds the namespace and the rollout as controlling owner.
    CreateAnalysisRun { run: Box<AnalysisRun> },
    /// Set `spec.terminate` on a run the rollout is done with.
    TerminateAnalysisRun { name: String },
    /// Delete a finished run beyond the analysis history limits.
    DeleteAnalysisRun { name: String },
    /// Give the pods of a ReplicaSet exactly `metadata` as ephemeral metadata (a role's
    /// labels and annotations): written into its pod template and onto its existing pods in
    /// place, keys of `previous` (what was injected before) that `metadata` lacks removed, and
    /// `metadata` recorded in the `rollout.argoproj.io/ephemeral-metadata` annotation.
    SetPodMetadata {
        replica_set: String,
        pod_template_hash: String,
        metadata: PodTemplateMetadata,
        previous: PodTemplateMetadata,
    },
}

/// Kubernetes event type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

/// An event to record on the Rollout, with upstream's reason names.
#[derive(Clone, Debug, PartialEq)]
pub struct RolloutEvent {
    pub type_: EventType,
    pub reason: String,
    pub message: String,
}

impl RolloutEvent {
    pub fn normal(reason: &str, message: impl Into<String>) -> Self {
        Self {
            type_: EventType::Normal,
            reason: reason.to_owned(),
            message: message.into(),
        }
    }

    pub fn warning(reason: &str, message: impl Into<String>) -> Self {
        Self {
            type_: EventType::Warning,
            reason: reason.to_owned(),
            message: message.into(),
        }
    }
}

/// Everything one reconcile of one rollout must do.
#[derive(Clone, Debug, PartialEq)]
pub struct RolloutPlan {
    /// Cluster changes, in execution order.
    pub actions: Vec<Action>,
    /// The complete status to write after the actions succeeded.
    pub status: RolloutStatus,
    /// Events to record.
    pub events: Vec<RolloutEvent>,
    /// When to look again even if nothing changes (a pause or a delay ends, the progress
    /// deadline passes). `None`: only a change in the world matters.
    pub wake_at: Option<Timestamp>,
}
