//! Semantic validation of the `argoproj.io/v1alpha1` kinds: the rules a schema cannot express
//! (cross-field constraints, duration syntax, references between documents). Each entry point
//! returns every problem it finds, with the field path it is about; it never stops at the first.
//! No I/O: callers (the `ramp lint` CLI, the controller) decide where the objects come from.

mod analysis;
mod canary;
mod experiment;
mod pod_template;
mod references;
mod rollout;
mod routers;
mod selector;
mod services;

pub use analysis::{
    validate_analysis_run, validate_analysis_template, validate_cluster_analysis_template,
};
pub use experiment::validate_experiment;
pub use pod_template::{PodOwner, validate_pod_spec, validate_replica_set_template};
pub use references::{
    DEFAULT_NAMESPACE, TemplateCatalog, check_experiment_references, check_references,
    check_template_includes,
};
pub use rollout::validate_rollout;
pub use routers::{RouterObjects, check_router_objects};
pub use selector::selector_matches;
pub use services::{ServiceCatalog, check_services};

use crate::common::{DryRun, MeasurementRetention};
use serde::Serialize;
use std::fmt;

/// How bad a problem is: errors make the object invalid, warnings point at something that is
/// accepted but will not behave as the author probably expects (or is not implemented yet).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One finding about one object: the field it is about and why it is wrong.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub severity: Severity,
    /// Dotted JSON path from the object root, e.g. `spec.strategy.canary.steps[2].setWeight`.
    pub field: String,
    pub message: String,
}

impl Problem {
    pub fn error(field: impl fmt::Display, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            field: field.to_string(),
            message: message.into(),
        }
    }

    pub fn warning(field: impl fmt::Display, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            field: field.to_string(),
            message: message.into(),
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// A field path being built while walking an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldPath(String);

impl FieldPath {
    pub fn root(name: &str) -> Self {
        Self(name.to_owned())
    }

    pub fn child(&self, name: &str) -> Self {
        Self(format!("{}.{name}", self.0))
    }

    pub fn index(&self, index: usize) -> Self {
        Self(format!("{}[{index}]", self.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The problems found so far while validating one object.
#[derive(Debug, Default)]
pub(crate) struct Problems(Vec<Problem>);

impl Problems {
    pub(crate) fn error(&mut self, field: &FieldPath, message: impl Into<String>) {
        self.0.push(Problem::error(field, message));
    }

    pub(crate) fn warning(&mut self, field: &FieldPath, message: impl Into<String>) {
        self.0.push(Problem::warning(field, message));
    }

    pub(crate) fn extend(&mut self, problems: impl IntoIterator<Item = Problem>) {
        self.0.extend(problems);
    }

    pub(crate) fn into_vec(self) -> Vec<Problem> {
        self.0
    }

    /// Rejects a negative integer field.
    pub(crate) fn non_negative(&mut self, field: &FieldPath, value: Option<i32>) {
        if let Some(value) = value.filter(|v| *v < 0) {
            self.error(field, format!("{value} must not be negative"));
        }
    }
}

/// Whether a string still holds an `{{args.*}}`-style placeholder: such values are only known
/// once an AnalysisRun substitutes its arguments, so they cannot be judged from the manifest.
pub(crate) fn has_placeholder(value: &str) -> bool {
    value.contains("{{")
}

/// Objects of one kind by name, each with the namespace its manifest names (if any). A lookup
/// matches across namespaces only where one side names none (see `same_namespace`).
#[derive(Clone, Debug)]
pub(crate) struct ByName<T>(std::collections::BTreeMap<String, Vec<(Option<String>, T)>>);

impl<T> Default for ByName<T> {
    fn default() -> Self {
        Self(std::collections::BTreeMap::new())
    }
}

impl<T> ByName<T> {
    pub(crate) fn insert(&mut self, namespace: Option<&str>, name: &str, value: T) {
        self.0
            .entry(name.to_owned())
            .or_default()
            .push((namespace.map(str::to_owned), value));
    }

    /// The first object with this name in a compatible namespace, with its own namespace.
    pub(crate) fn find(&self, namespace: Option<&str>, name: &str) -> Option<(Option<&str>, &T)> {
        self.0.get(name)?.iter().find_map(|(own, value)| {
            references::same_namespace(own.as_deref(), namespace).then_some((own.as_deref(), value))
        })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Compiles a metric-name rule (`dryRun[].metricName`, `measurementRetention[].metricName`):
/// upstream matches them as Go regular expressions, unanchored, which this syntax follows.
pub(crate) fn metric_name_pattern(pattern: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(pattern).map_err(|err| {
        // The syntax error's last line says what is wrong; the lines before repeat the pattern.
        let text = err.to_string();
        let reason = text
            .lines()
            .last()
            .unwrap_or_default()
            .trim_start_matches("error: ")
            .to_owned();
        format!("{pattern:?} is not a valid regular expression: {reason}")
    })
}

pub(crate) fn check_dry_run(problems: &mut Problems, path: &FieldPath, rules: &[DryRun]) {
    for (index, rule) in rules.iter().enumerate() {
        let name_path = path.index(index).child("metricName");
        if rule.metric_name.is_empty() {
            problems.error(&name_path, "is required");
        } else if let Err(message) = metric_name_pattern(&rule.metric_name) {
            problems.error(&name_path, message);
        }
    }
}

pub(crate) fn check_retention(
    problems: &mut Problems,
    path: &FieldPath,
    rules: &[MeasurementRetention],
) {
    for (index, rule) in rules.iter().enumerate() {
        let rule_path = path.index(index);
        if rule.metric_name.is_empty() {
            problems.error(&rule_path.child("metricName"), "is required");
        } else if let Err(message) = metric_name_pattern(&rule.metric_name) {
            problems.error(&rule_path.child("metricName"), message);
        }
        if rule.limit < 0 {
            problems.error(
                &rule_path.child("limit"),
                format!("{} must not be negative", rule.limit),
            );
        }
    }
}

#[cfg(test)]
mod tests;
