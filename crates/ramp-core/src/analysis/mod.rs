//! Analysis decisions: judging measurements with the condition language, turning templates and
//! arguments into a run spec, and the AnalysisRun reconcile as a pure function. Measuring
//! itself (HTTP, Jobs) belongs to `ramp-controller`'s metric providers.

pub mod args;
pub mod condition;
pub mod rollout;
pub mod run;
pub mod value;

pub use condition::{
    ConditionError, MeasurementVerdict, check_metric_conditions, check_syntax, evaluate,
    measurement_verdict,
};
pub use run::{
    MeasurementOutcome, MeasurementTask, RunEvent, RunUpdate, plan_measurements, reconcile,
};
pub use value::MetricValue;

use ramp_api::analysis::ProviderKind;

/// Whether Ramp measures with this provider; the others are accepted in manifests, warned
/// about by `ramp lint`, and give Error measurements.
pub fn provider_supported(kind: ProviderKind) -> bool {
    matches!(
        kind,
        ProviderKind::Prometheus | ProviderKind::Web | ProviderKind::Job
    )
}
