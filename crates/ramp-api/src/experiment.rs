//! Experiment: runs one ReplicaSet per template side by side, optionally with AnalysisRuns over
//! them, for a duration or until its required analyses finish. Shape and defaults only; the
//! experiment controller logic lives in `ramp-core`.

use crate::analysis::{AnalysisFieldError, AnalysisPhase, Argument};
use crate::common::{AnalysisRunMetadata, DryRun, MeasurementRetention};
use crate::defaults;
use crate::duration::{self, DurationError};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Templates to run, analyses to run against them, and for how long.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "argoproj.io",
    version = "v1alpha1",
    kind = "Experiment",
    namespaced,
    shortname = "exp",
    status = "ExperimentStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "Runs pod templates side by side for a while, optionally analysing them, and reports the outcome.",
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.phase",
        description = "Experiment status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp",
        description = "Time since resource was created"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentSpec {
    /// Analyses run once the templates are available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analyses: Option<Vec<ExperimentAnalysisTemplateRef>>,
    /// Labels and annotations added to the AnalysisRuns the experiment creates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis_run_metadata: Option<AnalysisRunMetadata>,
    /// Metrics (matched by name) measured without influencing the result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<Vec<DryRun>>,
    /// How long the experiment runs once available (duration); unset means until terminated
    /// or until the required analyses complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// How many measurements to keep per metric (matched by name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measurement_retention: Option<Vec<MeasurementRetention>>,
    /// Seconds a template may take to become available before the experiment fails (default
    /// 600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline_seconds: Option<i32>,
    /// Seconds the template ReplicaSets stay up after the experiment ends (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down_delay_seconds: Option<i32>,
    /// The pod templates to run.
    pub templates: Vec<ExperimentTemplate>,
    /// Set to true to end the experiment early.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminate: Option<bool>,
}

impl ExperimentSpec {
    /// `progressDeadlineSeconds`, defaulted.
    pub fn progress_deadline_seconds(&self) -> i32 {
        self.progress_deadline_seconds
            .unwrap_or(defaults::EXPERIMENT_PROGRESS_DEADLINE_SECONDS)
    }

    /// `scaleDownDelaySeconds`, defaulted.
    pub fn scale_down_delay_seconds(&self) -> i32 {
        self.scale_down_delay_seconds
            .unwrap_or(defaults::EXPERIMENT_SCALE_DOWN_DELAY_SECONDS)
    }

    /// `duration` parsed; `None` when unset or empty (run until terminated or until the
    /// required analyses complete).
    pub fn duration(&self) -> Result<Option<Duration>, DurationError> {
        match self.duration.as_deref() {
            None | Some("") => Ok(None),
            Some(text) => duration::parse(text).map(Some),
        }
    }

    /// Whether someone asked the experiment to stop.
    pub fn terminate_requested(&self) -> bool {
        self.terminate == Some(true)
    }

    /// The analyses, empty when none are declared.
    pub fn analyses(&self) -> &[ExperimentAnalysisTemplateRef] {
        self.analyses.as_deref().unwrap_or_default()
    }
}

/// An analysis the experiment runs against its templates.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentAnalysisTemplateRef {
    /// Argument values; may use `{{templates.*}}` and `{{experiment.*}}` placeholders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<Argument>>,
    /// Whether `templateName` names a ClusterAnalysisTemplate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_scope: Option<bool>,
    /// Name of the analysis within the experiment.
    pub name: String,
    /// The experiment completes once every analysis with this flag has succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_for_completion: Option<bool>,
    /// The (Cluster)AnalysisTemplate to instantiate.
    pub template_name: String,
}

/// A pod template run as its own ReplicaSet.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentTemplate {
    /// Seconds a pod must be ready to count as available (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_ready_seconds: Option<i32>,
    /// Template name, unique within the experiment.
    pub name: String,
    /// Number of pods (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Label selector of the template's pods.
    #[schemars(schema_with = "crate::schema::atomic_label_selector")]
    pub selector: LabelSelector,
    /// Creates a Service in front of the template's pods when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ExperimentTemplateService>,
    /// The pods to run.
    #[schemars(schema_with = "crate::schema::embedded_pod_template")]
    pub template: PodTemplateSpec,
}

impl ExperimentTemplate {
    /// `replicas`, defaulted.
    pub fn replicas(&self) -> i32 {
        self.replicas
            .unwrap_or(defaults::EXPERIMENT_TEMPLATE_REPLICAS)
    }

    /// `minReadySeconds`, defaulted.
    pub fn min_ready_seconds(&self) -> i32 {
        self.min_ready_seconds
            .unwrap_or(defaults::MIN_READY_SECONDS)
    }
}

/// The Service created for a template.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentTemplateService {
    /// Service name (defaults to the template's ReplicaSet name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// What the controller has observed of the experiment.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentStatus {
    /// One entry per analysis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis_runs: Option<Vec<ExperimentAnalysisRunStatus>>,
    /// When every template first became available; the duration counts from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_at: Option<Time>,
    /// Conditions (`Progressing`, `Running`, `Completed`, `InvalidSpec`, `ReplicaFailure`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<ExperimentCondition>>,
    /// Why the experiment is in its phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Overall phase (see [`AnalysisPhase`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// One entry per template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_statuses: Option<Vec<ExperimentTemplateStatus>>,
}

impl ExperimentStatus {
    /// `status.phase`, `None` when unset or empty.
    pub fn phase(&self) -> Result<Option<AnalysisPhase>, AnalysisFieldError> {
        AnalysisPhase::parse_field("status.phase", self.phase.as_deref().unwrap_or_default())
    }
}

impl Experiment {
    /// Whether the experiment has reached a final phase (an unreadable phase counts as not
    /// final).
    pub fn is_completed(&self) -> bool {
        self.status
            .as_ref()
            .and_then(|s| s.phase().ok().flatten())
            .is_some_and(AnalysisPhase::is_completed)
    }
}

/// The AnalysisRun created for one of the experiment's analyses.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentAnalysisRunStatus {
    /// Name of the AnalysisRun object.
    pub analysis_run: String,
    /// Message of the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Analysis name (from `spec.analyses[].name`).
    pub name: String,
    /// Phase of the run (see [`AnalysisPhase`]).
    pub phase: String,
}

impl ExperimentAnalysisRunStatus {
    /// The run's phase.
    pub fn phase(&self) -> Result<Option<AnalysisPhase>, AnalysisFieldError> {
        AnalysisPhase::parse_field("status.analysisRuns[].phase", &self.phase)
    }
}

/// A condition of an experiment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentCondition {
    /// When `status` last changed.
    pub last_transition_time: Time,
    /// When the condition was last written.
    pub last_update_time: Time,
    /// Human-readable detail.
    pub message: String,
    /// Machine-readable cause.
    pub reason: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// Condition type.
    #[serde(rename = "type")]
    pub type_: String,
}

/// The state of one template's ReplicaSet.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentTemplateStatus {
    /// Available pods.
    pub available_replicas: i32,
    /// Hash collisions seen when naming the ReplicaSet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collision_count: Option<i32>,
    /// When `status` last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    /// Human-readable detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Template name.
    pub name: String,
    /// Pod template hash of the template's ReplicaSet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_template_hash: Option<String>,
    /// Ready pods.
    pub ready_replicas: i32,
    /// Pods.
    pub replicas: i32,
    /// Name of the template's Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// Template state (see [`TemplateStatusCode`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Pods running the current template.
    pub updated_replicas: i32,
}

impl ExperimentTemplateStatus {
    /// `status`, `None` when unset or empty.
    pub fn status_code(&self) -> Result<Option<TemplateStatusCode>, AnalysisFieldError> {
        match self.status.as_deref() {
            None | Some("") => Ok(None),
            Some(s) => s
                .parse()
                .map(Some)
                .map_err(|_| AnalysisFieldError::UnknownStatus {
                    field: "status.templateStatuses[].status",
                    value: s.to_owned(),
                }),
        }
    }
}

/// The state of an experiment template.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TemplateStatusCode {
    Progressing,
    Running,
    Successful,
    Failed,
    Error,
}

impl TemplateStatusCode {
    /// Every state, in declaration order.
    pub const ALL: [Self; 5] = [
        Self::Progressing,
        Self::Running,
        Self::Successful,
        Self::Failed,
        Self::Error,
    ];

    /// The string written to status.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Progressing => "Progressing",
            Self::Running => "Running",
            Self::Successful => "Successful",
            Self::Failed => "Failed",
            Self::Error => "Error",
        }
    }

    /// Whether the template has finished (successfully or not).
    pub fn is_completed(self) -> bool {
        matches!(self, Self::Successful | Self::Failed | Self::Error)
    }
}

impl fmt::Display for TemplateStatusCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The string is not a template status.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown experiment template status {0:?}")]
pub struct UnknownTemplateStatus(pub String);

impl FromStr for TemplateStatusCode {
    type Err = UnknownTemplateStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownTemplateStatus(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::tests::{assert_round_trip, round_trip_upstream};
    use kube::CustomResourceExt;
    use pretty_assertions::assert_eq;
    use serde_json::Value;

    #[test]
    fn upstream_experiments_round_trip_exactly() {
        round_trip_upstream::<Experiment>("Experiment", 1);
    }

    const SAMPLE_EXPERIMENT: &str = r#"{
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Experiment",
        "metadata": {"name": "guestbook-6c5c8d6f9b-3-1", "namespace": "default"},
        "spec": {
            "duration": "5m",
            "progressDeadlineSeconds": 300,
            "scaleDownDelaySeconds": 10,
            "terminate": false,
            "dryRun": [{"metricName": "latency"}],
            "measurementRetention": [{"metricName": "latency", "limit": 5}],
            "analysisRunMetadata": {"labels": {"team": "a"}, "annotations": {"note": "b"}},
            "templates": [{
                "name": "canary",
                "replicas": 2,
                "minReadySeconds": 5,
                "selector": {"matchLabels": {"app": "guestbook"},
                             "matchExpressions": [{"key": "tier", "operator": "In", "values": ["web"]}]},
                "service": {"name": "canary-preview"},
                "template": {
                    "metadata": {"labels": {"app": "guestbook", "tier": "web"}},
                    "spec": {"containers": [{"name": "guestbook", "image": "guestbook:v2",
                                             "ports": [{"containerPort": 8080}]}]}
                }
            }],
            "analyses": [{
                "name": "smoke",
                "templateName": "smoke-test",
                "clusterScope": true,
                "requiredForCompletion": true,
                "args": [{"name": "hash", "value": "{{templates.canary.podTemplateHash}}"}]
            }]
        },
        "status": {
            "phase": "Running",
            "message": "templates available",
            "availableAt": "2024-05-01T10:00:00Z",
            "templateStatuses": [{
                "name": "canary", "replicas": 2, "updatedReplicas": 2, "readyReplicas": 2,
                "availableReplicas": 2, "collisionCount": 1, "status": "Running", "message": "",
                "lastTransitionTime": "2024-05-01T10:00:00Z", "serviceName": "canary-preview",
                "podTemplateHash": "6c5c8d6f9b"
            }],
            "analysisRuns": [{"name": "smoke", "analysisRun": "guestbook-6c5c8d6f9b-3-1-smoke",
                              "phase": "Successful", "message": "done"}],
            "conditions": [{"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
                            "message": "Experiment is running", "lastTransitionTime": "2024-05-01T10:00:00Z",
                            "lastUpdateTime": "2024-05-01T10:00:01Z"}]
        }
    }"#;

    fn sample() -> Value {
        serde_json::from_str(SAMPLE_EXPERIMENT).expect("sample is JSON")
    }

    #[test]
    fn hand_written_experiment_with_status_round_trips_exactly() {
        assert_round_trip::<Experiment>("sample Experiment", &sample());
    }

    #[test]
    fn accessors_read_phases_and_template_states() {
        let experiment: Experiment = serde_json::from_value(sample()).expect("valid experiment");
        let status = experiment.status.as_ref().expect("status");
        assert_eq!(status.phase(), Ok(Some(AnalysisPhase::Running)));
        assert!(!experiment.is_completed());
        let templates = status.template_statuses.as_deref().unwrap_or_default();
        assert_eq!(
            templates[0].status_code(),
            Ok(Some(TemplateStatusCode::Running))
        );
        let runs = status.analysis_runs.as_deref().unwrap_or_default();
        assert_eq!(runs[0].phase(), Ok(Some(AnalysisPhase::Successful)));
        assert_eq!(experiment.spec.progress_deadline_seconds(), 300);
        assert_eq!(experiment.spec.scale_down_delay_seconds(), 10);
        assert_eq!(
            experiment.spec.duration(),
            Ok(Some(Duration::from_secs(300)))
        );
        assert_eq!(experiment.spec.templates[0].replicas(), 2);
        assert_eq!(experiment.spec.analyses()[0].template_name, "smoke-test");
    }

    #[test]
    fn unset_fields_fall_back_to_defaults() {
        let spec = ExperimentSpec::default();
        assert_eq!(spec.progress_deadline_seconds(), 600);
        assert_eq!(spec.scale_down_delay_seconds(), 30);
        assert!(!spec.terminate_requested());
        assert_eq!(spec.duration(), Ok(None));
        let bad = ExperimentSpec {
            duration: Some("soon".into()),
            ..ExperimentSpec::default()
        };
        assert!(bad.duration().is_err());
        let template = ExperimentTemplate::default();
        assert_eq!((template.replicas(), template.min_ready_seconds()), (1, 0));
        assert_eq!(ExperimentStatus::default().phase(), Ok(None));
    }

    #[test]
    fn template_status_codes_parse_and_reject_unknown_values() {
        for code in TemplateStatusCode::ALL {
            assert_eq!(code.as_str().parse::<TemplateStatusCode>(), Ok(code));
        }
        let status = ExperimentTemplateStatus {
            status: Some("Paused".into()),
            ..Default::default()
        };
        assert!(matches!(
            status.status_code(),
            Err(AnalysisFieldError::UnknownStatus {
                field: "status.templateStatuses[].status",
                ..
            })
        ));
        assert!(TemplateStatusCode::Failed.is_completed());
        assert!(!TemplateStatusCode::Progressing.is_completed());
    }

    #[test]
    fn template_selector_is_atomic_like_upstream() {
        let crd = serde_json::to_value(Experiment::crd()).expect("CRD serializes");
        let selector = crd
            .pointer("/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/templates/items/properties/selector")
            .expect("selector schema");
        assert_eq!(selector["x-kubernetes-map-type"], "atomic");
        let expressions = &selector["properties"]["matchExpressions"];
        assert_eq!(expressions["x-kubernetes-list-type"], "atomic");
        assert_eq!(
            expressions["items"]["properties"]["values"]["x-kubernetes-list-type"],
            "atomic"
        );
    }

    #[test]
    fn crd_names_and_columns_match_upstream() {
        let crd = Experiment::crd();
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.names.short_names, Some(vec!["exp".to_owned()]));
        let columns: Vec<(String, String, String)> = crd.spec.versions[0]
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| (c.name.clone(), c.type_.clone(), c.json_path.clone()))
            .collect();
        assert_eq!(
            columns,
            [
                ("Status".into(), "string".into(), ".status.phase".into()),
                (
                    "Age".into(),
                    "date".into(),
                    ".metadata.creationTimestamp".into()
                )
            ]
        );
    }
}
