//! The observed world of one rollout, as the controller read it: the input of every decision.
//! Plain data built by the shell from its caches; nothing here reads a clock or the network.

use crate::traffic::{TrafficIntent, TrafficReading};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec, Service};
use k8s_openapi::jiff::Timestamp;
use ramp_api::analysis::{AnalysisRun, AnalysisTemplateSpec};
use ramp_api::rollout::{PodTemplateMetadata, Rollout};
use std::collections::BTreeMap;

/// Label carrying the pod-template hash on ReplicaSets, pods and service selectors.
pub const POD_TEMPLATE_HASH_LABEL: &str = "rollouts-pod-template-hash";
/// ReplicaSet annotation with the integer revision.
pub const REVISION_ANNOTATION: &str = "rollout.argoproj.io/revision";
/// ReplicaSet annotation listing the revisions it had before (comma-separated), written when
/// a rollback makes an old ReplicaSet the newest revision again.
pub const REVISION_HISTORY_ANNOTATION: &str = "rollout.argoproj.io/revision-history";
/// ReplicaSet annotation (RFC 3339, no prefix, as upstream) after which it is scaled to zero.
pub const SCALE_DOWN_DEADLINE_ANNOTATION: &str = "scale-down-deadline";
/// ReplicaSet annotation (JSON `{labels, annotations}`, as upstream) recording the ephemeral
/// metadata injected into its pods, so that what is no longer wanted can be removed.
pub const EPHEMERAL_METADATA_ANNOTATION: &str = "rollout.argoproj.io/ephemeral-metadata";
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
    /// AnalysisRuns owned by the rollout.
    pub analysis_runs: Vec<AnalysisRunSummary>,
    /// The analysis templates the rollout references, includes followed, as found.
    pub analysis_templates: AnalysisTemplates,
    /// What the traffic routers were last made to hold, when the controller knows it (it
    /// records each `SetTraffic` it applied). `None` after a restart: the weights in
    /// `status.canary.weights` are then taken as written and managed routes as absent.
    pub traffic: Option<TrafficIntent>,
    /// What the router objects hold, read in this reconcile. `None`: not read (no router, an
    /// object Ramp cannot interpret, or a decision test): `traffic` is then taken as in force.
    pub traffic_read: Option<TrafficReading>,
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
            analysis_templates: AnalysisTemplates::default(),
            traffic: None,
            traffic_read: None,
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
    /// Value of the `rollout.argoproj.io/revision-history` annotation.
    pub revision_history: Option<String>,
    /// `spec.replicas`.
    pub spec_replicas: i32,
    /// `status.replicas` (pods that exist).
    pub replicas: i32,
    pub ready_replicas: i32,
    pub available_replicas: i32,
    /// The ReplicaSet controller has seen the current spec (`status.observedGeneration` is
    /// `metadata.generation`): only then do the counts describe the pods the spec leaves.
    pub status_current: bool,
    /// Parsed `scale-down-deadline` annotation; an unparsable value counts as absent.
    pub scale_down_deadline: Option<Timestamp>,
    pub created_at: Option<Timestamp>,
    pub template: Option<PodTemplateSpec>,
    /// `metadata.deletionTimestamp` is set: the object is going away and is ignored.
    pub being_deleted: bool,
    /// Parsed `rollout.argoproj.io/ephemeral-metadata` annotation; unparsable counts as absent.
    pub ephemeral_metadata: Option<PodTemplateMetadata>,
}

impl ReplicaSetView {
    /// Available pods that can be sent traffic: none while the status predates the spec (a
    /// scale-down may already have removed pods the counts still include), and never more
    /// than the spec keeps.
    pub fn serving(&self) -> i32 {
        if self.status_current {
            self.available_replicas.min(self.spec_replicas).max(0)
        } else {
            0
        }
    }

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
            revision_history: annotation(REVISION_HISTORY_ANNOTATION),
            spec_replicas: rs.spec.replicas.unwrap_or(1),
            replicas: status.map_or(0, |s| s.replicas),
            ready_replicas: status.and_then(|s| s.ready_replicas).unwrap_or(0),
            available_replicas: status.and_then(|s| s.available_replicas).unwrap_or(0),
            status_current: match (meta.generation, status) {
                (_, None) => false,
                (None, Some(_)) => true,
                (Some(generation), Some(s)) => s.observed_generation.unwrap_or(0) >= generation,
            },
            scale_down_deadline: annotation(SCALE_DOWN_DEADLINE_ANNOTATION)
                .and_then(|d| d.parse().ok()),
            created_at: meta.creation_timestamp.as_ref().map(|t| t.0),
            template: rs.spec.template.clone(),
            being_deleted: meta.deletion_timestamp.is_some(),
            ephemeral_metadata: annotation(EPHEMERAL_METADATA_ANNOTATION)
                .and_then(|m| serde_json::from_str(&m).ok()),
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

impl AnalysisRunKind {
    /// Value of the `rollout-type` label upstream puts on the run.
    pub fn label(self) -> &'static str {
        match self {
            Self::Step => "Step",
            Self::Background => "Background",
            Self::PrePromotion => "PrePromotion",
            Self::PostPromotion => "PostPromotion",
        }
    }

    pub fn from_label(label: &str) -> Option<Self> {
        [
            Self::Step,
            Self::Background,
            Self::PrePromotion,
            Self::PostPromotion,
        ]
        .into_iter()
        .find(|k| k.label() == label)
    }
}

/// Label naming why a run exists (`rollout-type`).
pub const ROLLOUT_TYPE_LABEL: &str = "rollout-type";
/// Label with the index of the step that created a step run.
pub const STEP_INDEX_LABEL: &str = "step-index";

/// What the rollout needs to know about one of its AnalysisRuns.
#[derive(Clone, Debug, PartialEq)]
pub struct AnalysisRunSummary {
    pub name: String,
    pub kind: AnalysisRunKind,
    /// The step that created it (step runs only).
    pub step_index: Option<i32>,
    /// `Pending`, `Running`, `Successful`, `Failed`, `Error` or `Inconclusive`.
    pub phase: String,
    /// Value of the `rollouts-pod-template-hash` label: the pods it judges.
    pub pod_template_hash: Option<String>,
    /// The `rollout.argoproj.io/revision` annotation: the update it judges (a rollback to the
    /// same pods is a new revision and is judged afresh).
    pub revision: Option<i64>,
    /// `spec.terminate`: the rollout is done with it (moved on, aborted, or acted on its
    /// verdict), so it never gates anything again.
    pub terminate: bool,
    /// `status.message`.
    pub message: Option<String>,
    pub created_at: Option<Timestamp>,
}

impl AnalysisRunSummary {
    /// Extracts the summary from a run the rollout created; `None` for a run without the
    /// `rollout-type` label (not one of a rollout's).
    pub fn from_run(run: &AnalysisRun) -> Option<Self> {
        let meta = &run.metadata;
        let label = |key: &str| meta.labels.as_ref().and_then(|l| l.get(key)).cloned();
        let kind = AnalysisRunKind::from_label(&label(ROLLOUT_TYPE_LABEL)?)?;
        let phase = run
            .status
            .as_ref()
            .map(|s| s.phase.clone())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "Pending".to_owned());
        Some(Self {
            name: meta.name.clone().unwrap_or_default(),
            kind,
            step_index: label(STEP_INDEX_LABEL).and_then(|i| i.parse().ok()),
            phase,
            pod_template_hash: label(POD_TEMPLATE_HASH_LABEL),
            revision: meta
                .annotations
                .as_ref()
                .and_then(|a| a.get(REVISION_ANNOTATION))
                .and_then(|r| r.parse().ok()),
            terminate: run.spec.terminate == Some(true),
            message: run.status.as_ref().and_then(|s| s.message.clone()),
            created_at: meta.creation_timestamp.as_ref().map(|t| t.0),
        })
    }

    /// The run ended (a terminated run may still be finishing its last measurement).
    pub fn is_completed(&self) -> bool {
        matches!(
            self.phase.as_str(),
            "Successful" | "Failed" | "Error" | "Inconclusive"
        )
    }
}

/// The AnalysisTemplates (in the rollout's namespace) and ClusterAnalysisTemplates the rollout
/// references, following their `templates[]` includes, as the controller found them: `None`
/// is a template looked up and not found. A name absent from the map was never looked up and
/// counts as not found too.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AnalysisTemplates {
    pub namespaced: BTreeMap<String, Option<AnalysisTemplateSpec>>,
    pub cluster: BTreeMap<String, Option<AnalysisTemplateSpec>>,
}

impl AnalysisTemplates {
    pub fn get(&self, cluster_scope: bool, name: &str) -> Option<&AnalysisTemplateSpec> {
        let scope = if cluster_scope {
            &self.cluster
        } else {
            &self.namespaced
        };
        scope.get(name).and_then(Option::as_ref)
    }
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
