//! Rollout rules that can be checked from the manifest alone (upstream's InvalidSpec rules minus
//! those that need live objects): pod template (the API server's rules for a ReplicaSet's, in
//! `pod_template.rs`) and selector, counts, blue-green, analysis arguments. Canary rules are in `canary.rs`; template references in `references.rs` and
//! Service selectors in `services.rs`, because those need the other documents.

use super::canary::check_canary;
use super::pod_template::{PodOwner, check_template};
use super::selector::{is_empty as selector_is_empty, selector_matches};
use super::{FieldPath, Problems, check_dry_run, check_retention};
use crate::rollout::{
    AnalysisRunArgument, AntiAffinity, BlueGreenStrategy, RolloutAnalysis, pod_template_hash_value,
    scale_down,
};
use crate::rollout::{Rollout, RolloutSpec};
use crate::validation::Problem;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::{BTreeMap, BTreeSet};

/// Every manifest-level problem of a Rollout.
pub fn validate_rollout(rollout: &Rollout) -> Vec<Problem> {
    let mut problems = Problems::default();
    let spec_path = FieldPath::root("spec");
    let spec = &rollout.spec;
    check_pod_template(&mut problems, &spec_path, spec);
    check_counts(&mut problems, &spec_path, spec);

    let strategy_path = spec_path.child("strategy");
    let canary = spec.canary();
    let blue_green = spec.blue_green();
    match (canary, blue_green) {
        (Some(_), Some(_)) => problems.error(
            &strategy_path,
            "sets both canary and blueGreen; a rollout uses exactly one strategy",
        ),
        (None, None) => problems.error(
            &strategy_path,
            "sets neither canary nor blueGreen; a rollout needs exactly one strategy",
        ),
        _ => {}
    }
    let labels = rollout.metadata.labels.clone().unwrap_or_default();
    let annotations = rollout.metadata.annotations.clone().unwrap_or_default();
    let metadata = RolloutMetadata {
        labels: &labels,
        annotations: &annotations,
    };
    if let Some(canary) = canary {
        check_canary(
            &mut problems,
            &strategy_path.child("canary"),
            spec,
            canary,
            &metadata,
        );
    }
    if let Some(blue_green) = blue_green {
        check_blue_green(
            &mut problems,
            &strategy_path.child("blueGreen"),
            spec,
            blue_green,
            &metadata,
        );
    }
    problems.into_vec()
}

/// The rollout's own labels and annotations, which `valueFrom.fieldRef` arguments may read.
pub(super) struct RolloutMetadata<'a> {
    labels: &'a BTreeMap<String, String>,
    annotations: &'a BTreeMap<String, String>,
}

fn check_pod_template(problems: &mut Problems, spec_path: &FieldPath, spec: &RolloutSpec) {
    let selector_path = spec_path.child("selector");
    let template_path = spec_path.child("template");
    if let Some(workload) = &spec.workload_ref {
        let workload_path = spec_path.child("workloadRef");
        if spec
            .template
            .as_ref()
            .is_some_and(|t| *t != Default::default())
        {
            problems.error(&template_path, "must be empty when workloadRef is set");
        }
        if let Some(kind) = workload.kind.as_deref()
            && !["Deployment", "ReplicaSet", "PodTemplate"].contains(&kind)
        {
            problems.error(
                &workload_path.child("kind"),
                format!("{kind:?} is not a Deployment, ReplicaSet or PodTemplate"),
            );
        }
        if workload.name.as_deref().is_none_or(str::is_empty) {
            problems.error(&workload_path.child("name"), "is required");
        }
        if let Some(mode) = workload.scale_down.as_deref()
            && ![
                scale_down::NEVER,
                scale_down::ON_SUCCESS,
                scale_down::PROGRESSIVELY,
            ]
            .contains(&mode)
        {
            problems.error(
                &workload_path.child("scaleDown"),
                format!("{mode:?} is not one of never, onsuccess, progressively"),
            );
        }
        if let Some(selector) = &spec.selector
            && selector_is_empty(selector)
        {
            problems.error(
                &selector_path,
                "is empty; it would select every pod in the namespace",
            );
        }
        return;
    }
    match &spec.selector {
        None => problems.error(&selector_path, "is required"),
        Some(selector) if selector_is_empty(selector) => {
            problems.error(
                &selector_path,
                "is empty; it would select every pod in the namespace",
            );
        }
        Some(_) => {}
    }
    let Some(template) = &spec.template else {
        problems.error(&template_path, "is required (or set workloadRef)");
        return;
    };
    let labels = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    if let Some(selector) = spec.selector.as_ref().filter(|s| !selector_is_empty(s))
        && !selector_matches(selector, &labels)
    {
        problems.error(
            &selector_path,
            format!(
                "does not match the template labels {}",
                render_labels(&labels)
            ),
        );
    }
    // The rollout's ReplicaSets take this template: what their API server would refuse is
    // refused here, in its words.
    check_template(problems, &template_path, template, PodOwner::ReplicaSet);
}

fn render_labels(labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return "{} (spec.template.metadata.labels is empty)".to_owned();
    }
    let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{{{}}}", pairs.join(", "))
}

fn check_counts(problems: &mut Problems, spec_path: &FieldPath, spec: &RolloutSpec) {
    problems.non_negative(&spec_path.child("replicas"), spec.replicas);
    problems.non_negative(&spec_path.child("minReadySeconds"), spec.min_ready_seconds);
    problems.non_negative(
        &spec_path.child("revisionHistoryLimit"),
        spec.revision_history_limit,
    );
    problems.non_negative(
        &spec_path.child("progressDeadlineSeconds"),
        spec.progress_deadline_seconds,
    );
    if let Some(window) = &spec.rollback_window {
        problems.non_negative(
            &spec_path.child("rollbackWindow").child("revisions"),
            window.revisions,
        );
    }
    if let Some(history) = &spec.analysis {
        let path = spec_path.child("analysis");
        problems.non_negative(
            &path.child("successfulRunHistoryLimit"),
            history.successful_run_history_limit,
        );
        problems.non_negative(
            &path.child("unsuccessfulRunHistoryLimit"),
            history.unsuccessful_run_history_limit,
        );
    }
    let deadline = spec.progress_deadline_seconds();
    let min_ready = spec.min_ready_seconds();
    if deadline <= min_ready {
        problems.error(
            &spec_path.child("progressDeadlineSeconds"),
            format!("{deadline} must be greater than minReadySeconds ({min_ready})"),
        );
    }
}

/// Returns the number (pods or percent) when readable.
pub(super) fn check_int_or_percent(
    problems: &mut Problems,
    path: &FieldPath,
    value: Option<&IntOrString>,
) -> Option<i64> {
    let number = match value {
        None => return Some(25),
        Some(IntOrString::Int(n)) => i64::from(*n),
        Some(IntOrString::String(text)) => match text.trim_end_matches('%').parse::<i64>() {
            Ok(n) => {
                if !text.ends_with('%') {
                    problems.warning(
                        path,
                        format!(
                            "{text:?} is read as {n} percent, not {n} pods (any string is a percentage); write {n} for pods or \"{n}%\""
                        ),
                    );
                }
                n
            }
            Err(_) => {
                problems.error(
                    path,
                    format!("{text:?} is neither an integer nor a percentage"),
                );
                return None;
            }
        },
    };
    if number < 0 {
        problems.error(path, format!("{number} must not be negative"));
        return None;
    }
    Some(number)
}

pub(super) fn check_revision_limit(
    problems: &mut Problems,
    path: &FieldPath,
    limit: Option<i32>,
    spec: &RolloutSpec,
) {
    problems.non_negative(path, limit);
    if let Some(limit) = limit {
        let history = spec.revision_history_limit();
        if limit > history {
            problems.error(
                path,
                format!("{limit} must not exceed revisionHistoryLimit ({history})"),
            );
        }
    }
}

pub(super) fn check_anti_affinity(
    problems: &mut Problems,
    path: &FieldPath,
    anti_affinity: &AntiAffinity,
) {
    let preferred = anti_affinity
        .preferred_during_scheduling_ignored_during_execution
        .as_ref();
    let required = anti_affinity
        .required_during_scheduling_ignored_during_execution
        .is_some();
    match (preferred, required) {
        (Some(_), true) => problems.error(
            path,
            "sets both requiredDuringSchedulingIgnoredDuringExecution and preferredDuringSchedulingIgnoredDuringExecution; set exactly one",
        ),
        (None, false) => problems.error(
            path,
            "sets neither requiredDuringSchedulingIgnoredDuringExecution nor preferredDuringSchedulingIgnoredDuringExecution; set exactly one",
        ),
        _ => {}
    }
    if let Some(preferred) = preferred
        && !(1..=100).contains(&preferred.weight)
    {
        problems.error(
            &path
                .child("preferredDuringSchedulingIgnoredDuringExecution")
                .child("weight"),
            format!("{} is outside 1..100", preferred.weight),
        );
    }
}

fn check_blue_green(
    problems: &mut Problems,
    path: &FieldPath,
    spec: &RolloutSpec,
    blue_green: &BlueGreenStrategy,
    metadata: &RolloutMetadata<'_>,
) {
    if blue_green.active_service.is_empty() {
        problems.error(&path.child("activeService"), "is required");
    } else if blue_green.preview_service.as_deref() == Some(blue_green.active_service.as_str()) {
        problems.error(
            &path.child("previewService"),
            format!(
                "{:?} must differ from activeService",
                blue_green.active_service
            ),
        );
    }
    check_int_or_percent(
        problems,
        &path.child("maxUnavailable"),
        blue_green.max_unavailable.as_ref(),
    );
    problems.non_negative(
        &path.child("previewReplicaCount"),
        blue_green.preview_replica_count,
    );
    problems.non_negative(
        &path.child("autoPromotionSeconds"),
        blue_green.auto_promotion_seconds,
    );
    problems.non_negative(
        &path.child("scaleDownDelaySeconds"),
        blue_green.scale_down_delay_seconds,
    );
    problems.non_negative(
        &path.child("abortScaleDownDelaySeconds"),
        blue_green.abort_scale_down_delay_seconds,
    );
    if blue_green.auto_promotion_enabled == Some(false)
        && blue_green.auto_promotion_seconds.is_some()
    {
        problems.warning(
            &path.child("autoPromotionSeconds"),
            "has no effect while autoPromotionEnabled is false",
        );
    }
    check_revision_limit(
        problems,
        &path.child("scaleDownDelayRevisionLimit"),
        blue_green.scale_down_delay_revision_limit,
        spec,
    );
    if let Some(anti_affinity) = &blue_green.anti_affinity {
        check_anti_affinity(problems, &path.child("antiAffinity"), anti_affinity);
    }
    for (name, analysis) in [
        ("prePromotionAnalysis", &blue_green.pre_promotion_analysis),
        ("postPromotionAnalysis", &blue_green.post_promotion_analysis),
    ] {
        if let Some(analysis) = analysis {
            check_rollout_analysis(problems, &path.child(name), analysis, metadata);
        }
    }
}

/// A step, background or promotion analysis: its arguments and metric-name rules.
pub(super) fn check_rollout_analysis(
    problems: &mut Problems,
    path: &FieldPath,
    analysis: &RolloutAnalysis,
    metadata: &RolloutMetadata<'_>,
) {
    if let Some(args) = &analysis.args {
        check_analysis_args(problems, &path.child("args"), args, metadata);
    }
    check_dry_run(
        problems,
        &path.child("dryRun"),
        analysis.dry_run.as_deref().unwrap_or_default(),
    );
    check_retention(
        problems,
        &path.child("measurementRetention"),
        analysis
            .measurement_retention
            .as_deref()
            .unwrap_or_default(),
    );
}

/// Rollout-side analysis arguments: one source each, known hash selectors, and `metadata.*`
/// field references of a form the controller resolves.
pub(super) fn check_analysis_args(
    problems: &mut Problems,
    path: &FieldPath,
    args: &[AnalysisRunArgument],
    metadata: &RolloutMetadata<'_>,
) {
    let mut seen = BTreeSet::new();
    for (index, arg) in args.iter().enumerate() {
        let arg_path = path.index(index);
        if arg.name.is_empty() {
            problems.error(&arg_path.child("name"), "is required");
        } else if !seen.insert(arg.name.as_str()) {
            problems.error(
                &arg_path.child("name"),
                format!("{:?} is passed more than once", arg.name),
            );
        }
        if arg.value.is_some() && arg.value_from.is_some() {
            problems.error(&arg_path, "sets both value and valueFrom; set one");
        }
        let Some(from) = &arg.value_from else {
            continue;
        };
        let from_path = arg_path.child("valueFrom");
        match (&from.pod_template_hash_value, &from.field_ref) {
            (Some(_), Some(_)) => problems.error(
                &from_path,
                "sets both podTemplateHashValue and fieldRef; set one",
            ),
            (None, None) => {
                problems.error(&from_path, "sets neither podTemplateHashValue nor fieldRef")
            }
            _ => {}
        }
        if let Some(hash) = from.pod_template_hash_value.as_deref()
            && ![
                pod_template_hash_value::STABLE,
                pod_template_hash_value::LATEST,
            ]
            .contains(&hash)
        {
            problems.error(
                &from_path.child("podTemplateHashValue"),
                format!("{hash:?} is not Stable or Latest"),
            );
        }
        if let Some(field_ref) = &from.field_ref {
            check_metadata_field_ref(
                problems,
                &from_path.child("fieldRef").child("fieldPath"),
                &field_ref.field_path,
                metadata,
            );
        }
    }
}

/// `metadata.labels['k']` / `metadata.annotations['k']` must have that form. A key the
/// rollout does not carry is only a warning: upstream (the Kubernetes downward API) reads it
/// as an empty string, and its own e2e suite relies on that for a label added by a later
/// update. Other paths are resolved by the controller against the live object.
fn check_metadata_field_ref(
    problems: &mut Problems,
    path: &FieldPath,
    field_path: &str,
    metadata: &RolloutMetadata<'_>,
) {
    for (prefix, map, what) in [
        ("metadata.labels", metadata.labels, "label"),
        ("metadata.annotations", metadata.annotations, "annotation"),
    ] {
        let Some(rest) = field_path.strip_prefix(prefix) else {
            continue;
        };
        let key = rest
            .strip_prefix("['")
            .and_then(|r| r.strip_suffix("']"))
            .or_else(|| rest.strip_prefix("[\"").and_then(|r| r.strip_suffix("\"]")))
            .or_else(|| rest.strip_prefix('.'));
        match key {
            Some(key) if !map.contains_key(key) => problems.warning(
                path,
                format!(
                    "{field_path:?} refers to the {what} {key:?}, which the rollout does not have: the argument is an empty string until it does"
                ),
            ),
            Some(_) => {}
            None => problems.error(
                path,
                format!("{field_path:?} is not of the form {prefix}['<key>']"),
            ),
        }
    }
}
