//! The observed world of one rollout, as the controller read it: the input of every decision.
//! Plain data built by the shell from its caches; nothing here reads a clock or the network.

use crate::traffic::TrafficIntent;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec, Service};
use k8s_openapi::jiff::Timestamp;
use ramp_api::rollout::Rollout;

/// Label carrying the pod-template hash on ReplicaSets, pods and service selectors.
pub const POD_TEMPLATE_HASH_LABEL: &str = "rollouts-pod-template-hash";
/// ReplicaSet annotation with the integer revision.
pub const REVISION_ANNOTATION: &str = "rollout.argoproj.io/revision";
/// ReplicaSet annotation (RFC 3339, no prefix, as upstream) after which it is scaled to zero.
pub const SCALE_DOWN_DEADLINE_ANNOTATION: &str = "scale-down-deadline";
/// Service annotation naming the rollout that manages its selector.
pub const MANAGED_BY_ANNOTATION: &str = "argo-rollouts.argoproj.io/managed-by-rollouts";

/// Everything `plan_rollout` may look at for one rollout.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// The Rollout as read, status included: users write `abort`, `promoteFull`,
    /// `pauseConditions` and `currentStepIndex`, and those are inputs.
    pub rollout: Rollout,
    /// ReplicaSets owned by the rollout.
    pub replica_sets: Vec<ReplicaSetView>,
    /// The services the strategy references (`canaryService`, `stableService`), found or not.
    pub services: Vec<ServiceView>,
    /// The traffic-router objects the strategy references (VirtualService, Ingress, ...).
    pub router_objects: Vec<RouterObjectView>,
    /// AnalysisRuns owned by the rollout. Filled by the analysis issue; read only to keep
    /// analysis steps from being mistaken for anything else.
    pub analysis_runs: Vec<AnalysisRunSummary>,
    /// What the traffic routers were last made to hold, when the controller knows it (it
    /// records each `SetTraffic` it applied). `None` after a restart: the weights in
    /// `status.canary.weights` are then taken as written and managed routes as absent.
    pub traffic: Option<TrafficIntent>,
    /// Pods of the rollout, when the controller lists them. Only `spec.restartAt` needs them;
    /// `None` means unknown, and a restart then waits rather than guessing.
    pub pods: Option<Vec<PodView>>,
    /// The instant of this observation.
    pub now: Timestamp,
}

impl Snapshot {
    /// A snapshot with nothing observed besides the rollout; callers fill in the rest.
    pub fn new(rollout: Rollout, now: Timestamp) -> Self {
        Self {
            rollout,
            replica_sets: Vec::new(),
            services: Vec::new(),
            router_objects: Vec::new(),
            analysis_runs: Vec::new(),
            traffic: None,
            pods: None,
            now,
        }
    }

    /// The service of that name, if the strategy references it.
    pub fn service(&self, name: &str) -> Option<&ServiceView> {
        self.services.iter().find(|s| s.name == name)
    }
}

/// What the decision needs to know about one ReplicaSet.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplicaSetView {
    pub name: String,
    /// Value of the `rollouts-pod-template-hash` label.
    pub pod_template_hash: Option<String>,
    /// Value of the `rollout.argoproj.io/revision` annotation.
    pub revision: Option<i64>,
    /// `spec.replicas`.
    pub spec_replicas: i32,
    /// `status.replicas` (pods that exist).
    pub replicas: i32,
    pub ready_replicas: i32,
    pub available_replicas: i32,
    /// Parsed `scale-down-deadline` annotation; an unparsable value counts as absent.
    pub scale_down_deadline: Option<Timestamp>,
    pub created_at: Option<Timestamp>,
    pub template: Option<PodTemplateSpec>,
    /// `metadata.deletionTimestamp` is set: the object is going away and is ignored.
    pub being_deleted: bool,
}

impl ReplicaSetView {
    /// Extracts the view from a ReplicaSet as the API server returns it.
    pub fn from_replica_set(rs: &ReplicaSet) -> Self {
        let meta = &rs.metadata;
        let label = |key: &str| meta.labels.as_ref().and_then(|l| l.get(key)).cloned();
        let annotation = |key: &str| meta.annotations.as_ref().and_then(|a| a.get(key)).cloned();
        let status = rs.status.as_ref();
        Self {
            name: meta.name.clone().unwrap_or_default(),
            pod_template_hash: label(POD_TEMPLATE_HASH_LABEL),
            revision: annotation(REVISION_ANNOTATION).and_then(|r| r.parse().ok()),
            spec_replicas: rs.spec.replicas.unwrap_or(1),
            replicas: status.map_or(0, |s| s.replicas),
            ready_replicas: status.and_then(|s| s.ready_replicas).unwrap_or(0),
            available_replicas: status.and_then(|s| s.available_replicas).unwrap_or(0),
            scale_down_deadline: annotation(SCALE_DOWN_DEADLINE_ANNOTATION)
                .and_then(|d| d.parse().ok()),
            created_at: meta.creation_timestamp.as_ref().map(|t| t.0),
            template: rs.spec.template.clone(),
            being_deleted: meta.deletion_timestamp.is_some(),
        }
    }
}

/// A service referenced by the strategy.
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceView {
    pub name: String,
    pub exists: bool,
    /// The `rollouts-pod-template-hash` value in its selector.
    pub selector_hash: Option<String>,
    /// The `managed-by-rollouts` annotation.
    pub managed_by: Option<String>,
}

impl ServiceView {
    /// A referenced service that is not in the cluster.
    pub fn missing(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            exists: false,
            selector_hash: None,
            managed_by: None,
        }
    }

    /// Extracts the view from a Service as the API server returns it.
    pub fn from_service(service: &Service) -> Self {
        let meta = &service.metadata;
        Self {
            name: meta.name.clone().unwrap_or_default(),
            exists: true,
            selector_hash: service
                .spec
                .as_ref()
                .and_then(|s| s.selector.as_ref())
                .and_then(|s| s.get(POD_TEMPLATE_HASH_LABEL))
                .cloned(),
            managed_by: meta
                .annotations
                .as_ref()
                .and_then(|a| a.get(MANAGED_BY_ANNOTATION))
                .cloned(),
        }
    }
}

/// A traffic-router object referenced by the strategy.
#[derive(Clone, Debug, PartialEq)]
pub struct RouterObjectView {
    /// `VirtualService`, `DestinationRule`, `Ingress`, ...
    pub kind: String,
    pub name: String,
    pub exists: bool,
}

/// Why an AnalysisRun exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnalysisRunKind {
    Step,
    Background,
    /// Blue-green: before the active service switches.
    PrePromotion,
    /// Blue-green: after the switch, before the new ReplicaSet becomes stable.
    PostPromotion,
}

/// What the rollout needs to know about one of its AnalysisRuns.
#[derive(Clone, Debug, PartialEq)]
pub struct AnalysisRunSummary {
    pub name: String,
    pub kind: AnalysisRunKind,
    /// The step that created it (step runs only).
    pub step_index: Option<i32>,
    /// `Pending`, `Running`, `Successful`, `Failed`, `Error` or `Inconclusive`.
    pub phase: String,
}

/// What a restart (`spec.restartAt`) needs to know about one pod.
#[derive(Clone, Debug, PartialEq)]
pub struct PodView {
    pub name: String,
    /// Name of the owning ReplicaSet.
    pub replica_set: String,
    pub created_at: Option<Timestamp>,
    pub available: bool,
    /// `metadata.deletionTimestamp` is set.
    pub being_deleted: bool,
}

impl PodView {
    /// Extracts the view from a Pod; `available` is the Ready condition, which is what
    /// availability means when `minReadySeconds` is 0 (the controller may refine it).
    pub fn from_pod(pod: &Pod) -> Self {
        let meta = &pod.metadata;
        let ready = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        Self {
            name: meta.name.clone().unwrap_or_default(),
            replica_set: meta
                .owner_references
                .iter()
                .flatten()
                .find(|o| o.kind == "ReplicaSet")
                .map(|o| o.name.clone())
                .unwrap_or_default(),
            created_at: meta.creation_timestamp.as_ref().map(|t| t.0),
            available: ready,
            being_deleted: meta.deletion_timestamp.is_some(),
        }
    }
}
