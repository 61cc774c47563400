//! Experiment rules checkable from the manifest: templates (names, selectors, counts, and the
//! API server's rules for the pod template of the ReplicaSet each becomes), the
//! duration, and the shape of its analyses. Template references are in `references.rs`.

use super::pod_template::{PodOwner, check_template};
use super::selector::{is_empty as selector_is_empty, selector_matches};
use super::{FieldPath, Problem, Problems, check_dry_run, check_retention};
use crate::analysis::Argument;
use crate::duration;
use crate::experiment::Experiment;
use std::collections::BTreeSet;

pub fn validate_experiment(experiment: &Experiment) -> Vec<Problem> {
    let mut problems = Problems::default();
    let spec_path = FieldPath::root("spec");
    let spec = &experiment.spec;
    if let Some(text) = spec.duration.as_deref().filter(|d| !d.is_empty())
        && let Err(err) = duration::parse(text)
    {
        problems.error(&spec_path.child("duration"), err.to_string());
    }
    problems.non_negative(
        &spec_path.child("progressDeadlineSeconds"),
        spec.progress_deadline_seconds,
    );
    problems.non_negative(
        &spec_path.child("scaleDownDelaySeconds"),
        spec.scale_down_delay_seconds,
    );

    check_dry_run(
        &mut problems,
        &spec_path.child("dryRun"),
        spec.dry_run.as_deref().unwrap_or_default(),
    );
    check_retention(
        &mut problems,
        &spec_path.child("measurementRetention"),
        spec.measurement_retention.as_deref().unwrap_or_default(),
    );
    let templates_path = spec_path.child("templates");
    if spec.templates.is_empty() {
        problems.error(&templates_path, "at least one template is required");
    }
    let mut names = BTreeSet::new();
    for (index, template) in spec.templates.iter().enumerate() {
        let path = templates_path.index(index);
        if template.name.is_empty() {
            problems.error(&path.child("name"), "is required");
        } else if !names.insert(template.name.as_str()) {
            problems.error(
                &path.child("name"),
                format!("{:?} is used by more than one template", template.name),
            );
        }
        problems.non_negative(&path.child("replicas"), template.replicas);
        problems.non_negative(&path.child("minReadySeconds"), template.min_ready_seconds);
        let labels = template
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        if selector_is_empty(&template.selector) {
            problems.error(
                &path.child("selector"),
                "is empty; it would select every pod in the namespace",
            );
        } else if !selector_matches(&template.selector, &labels) {
            let rendered: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            problems.error(
                &path.child("selector"),
                format!(
                    "does not match the template labels {{{}}}",
                    rendered.join(", ")
                ),
            );
        }
        // Each template becomes a ReplicaSet: the API server's rules for its template apply.
        check_template(
            &mut problems,
            &path.child("template"),
            &template.template,
            PodOwner::ReplicaSet,
        );
    }

    let mut analysis_names = BTreeSet::new();
    for (index, analysis) in spec.analyses().iter().enumerate() {
        let path = spec_path.child("analyses").index(index);
        if analysis.name.is_empty() {
            problems.error(&path.child("name"), "is required");
        } else if !analysis_names.insert(analysis.name.as_str()) {
            problems.error(
                &path.child("name"),
                format!("{:?} is used by more than one analysis", analysis.name),
            );
        }
        if analysis.template_name.is_empty() {
            problems.error(&path.child("templateName"), "is required");
        }
        check_passed_args(
            &mut problems,
            &path.child("args"),
            analysis.args.as_deref().unwrap_or_default(),
        );
    }
    problems.into_vec()
}

/// Arguments an experiment passes to a template: named once each, one source each.
fn check_passed_args(problems: &mut Problems, path: &FieldPath, args: &[Argument]) {
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
    }
}
