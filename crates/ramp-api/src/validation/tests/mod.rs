//! One test per validation rule: a valid baseline is checked clean, then each test changes one
//! thing and expects exactly the finding that change causes.

use super::*;
use crate::analysis::{AnalysisRun, AnalysisTemplate, ClusterAnalysisTemplate};
use crate::experiment::Experiment;
use crate::rollout::Rollout;
use serde_json::{Value, json};

/// RFC 7386 merge patch, enough to derive test objects from a baseline.
pub(super) fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(key);
                } else {
                    merge(target.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}

pub(super) fn base_rollout() -> Value {
    json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "checkout", "namespace": "shop", "labels": {"team": "payments"}},
        "spec": {
            "replicas": 4,
            "selector": {"matchLabels": {"app": "checkout"}},
            "template": {
                "metadata": {"labels": {"app": "checkout"}},
                "spec": {"containers": [{"name": "app", "image": "checkout:1"}]}
            },
            "strategy": {"canary": {
                "canaryService": "checkout-canary",
                "stableService": "checkout-stable",
                "steps": [{"setWeight": 20}, {"pause": {"duration": "30s"}}, {"setWeight": 100}]
            }}
        }
    })
}

pub(super) fn rollout_with(patch: Value) -> Rollout {
    let mut value = base_rollout();
    merge(&mut value, &patch);
    serde_json::from_value(value).expect("test rollout deserializes")
}

pub(super) fn canary_with(canary: Value) -> Rollout {
    rollout_with(json!({"spec": {"strategy": {"canary": canary}}}))
}

pub(super) fn steps(steps: Value) -> Rollout {
    canary_with(json!({"steps": steps}))
}

pub(super) fn lines(problems: &[Problem]) -> Vec<String> {
    problems
        .iter()
        .map(|p| format!("{}: {p}", p.severity))
        .collect()
}

pub(super) fn rollout_lines(rollout: &Rollout) -> Vec<String> {
    lines(&validate_rollout(rollout))
}

pub(super) fn error(text: &str) -> Vec<String> {
    vec![format!("error: {text}")]
}

mod analysis;
mod pod_template;
mod references;
mod rollout;
mod routers;
