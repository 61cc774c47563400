//! The API server's validation of the pod specs of built-in workloads: a Pod's spec, and a
//! ReplicaSet's or Deployment's template (selector against its labels, then the template as
//! `ramp_api::validation` checks it, the same rules `ramp lint` and the controller apply).
//! Refusals are the real server's 422 Invalid, one cause per field. Run after defaulting, as
//! the real server runs it. Other kinds (StatefulSets, Jobs...) are not validated.

use super::status::Cause;
use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use ramp_api::validation::{
    FieldPath, Problem, selector_matches, validate_pod_spec, validate_replica_set_template,
};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// The causes of a refusal of `object`, a built-in of `group`/`plural`; empty when valid or not
/// a validated kind. A spec whose shape does not decode is left alone (the real server would
/// have refused it while decoding, which is not emulated here).
pub fn causes(group: &str, plural: &str, object: &Value) -> Vec<Cause> {
    let problems = match (group, plural) {
        ("", "pods") => decode::<PodSpec>(object.get("spec"))
            .map(|spec| validate_pod_spec(&spec, &FieldPath::root("spec")))
            .unwrap_or_default(),
        ("apps", "replicasets" | "deployments") => workload_template(object),
        _ => Vec::new(),
    };
    problems
        .into_iter()
        .filter(Problem::is_error)
        .map(|problem| Cause {
            reason: reason(&problem.message).to_owned(),
            message: problem.message,
            field: problem.field,
        })
        .collect()
}

fn workload_template(object: &Value) -> Vec<Problem> {
    let spec = object.get("spec");
    let Some(template) = decode::<PodTemplateSpec>(spec.and_then(|s| s.get("template"))) else {
        return Vec::new();
    };
    let path = FieldPath::root("spec").child("template");
    let mut problems = Vec::new();
    let labels = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    if let Some(selector) = decode::<LabelSelector>(spec.and_then(|s| s.get("selector")))
        && (selector
            .match_labels
            .as_ref()
            .is_some_and(|m| !m.is_empty())
            || selector
                .match_expressions
                .as_ref()
                .is_some_and(|e| !e.is_empty()))
        && !selector_matches(&selector, &labels)
    {
        let rendered = serde_json::to_string(&labels).unwrap_or_default();
        problems.push(Problem::error(
            path.child("metadata").child("labels"),
            format!("Invalid value: {rendered}: `selector` does not match template `labels`"),
        ));
    }
    problems.extend(validate_replica_set_template(&template, &path));
    problems
}

fn decode<T: DeserializeOwned>(value: Option<&Value>) -> Option<T> {
    serde_json::from_value(value?.clone()).ok()
}

/// The cause's reason, from the error type the message starts with (`field.ErrorType`).
fn reason(message: &str) -> &'static str {
    [
        ("Required value", "FieldValueRequired"),
        ("Invalid value", "FieldValueInvalid"),
        ("Duplicate value", "FieldValueDuplicate"),
        ("Not found", "FieldValueNotFound"),
        ("Unsupported value", "FieldValueNotSupported"),
        ("Forbidden", "FieldValueForbidden"),
    ]
    .into_iter()
    .find(|(prefix, _)| message.starts_with(prefix))
    .map_or("FieldValueInvalid", |(_, reason)| reason)
}
