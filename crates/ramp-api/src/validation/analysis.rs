//! AnalysisTemplate, ClusterAnalysisTemplate and AnalysisRun rules: the metric rules upstream
//! applies when a run starts (limits, count, interval, provider), argument shape, and provider
//! settings that can be judged without contacting the provider. Values that still hold an
//! `{{args.*}}` placeholder are skipped: only a run knows them.

use super::pod_template::{PodOwner, check_pod_spec};
use super::{FieldPath, Problem, Problems, check_dry_run, check_retention, has_placeholder};
use crate::analysis::{
    AnalysisFieldError, AnalysisRun, AnalysisTemplate, AnalysisTemplateSpec, Argument,
    ClusterAnalysisTemplate, Metric, MetricProvider,
};
use crate::duration;
use std::collections::BTreeSet;

pub fn validate_analysis_template(template: &AnalysisTemplate) -> Vec<Problem> {
    let mut problems = Problems::default();
    check_template_spec(&mut problems, &FieldPath::root("spec"), &template.spec);
    problems.into_vec()
}

pub fn validate_cluster_analysis_template(template: &ClusterAnalysisTemplate) -> Vec<Problem> {
    let mut problems = Problems::default();
    check_template_spec(&mut problems, &FieldPath::root("spec"), &template.spec);
    problems.into_vec()
}

pub fn validate_analysis_run(run: &AnalysisRun) -> Vec<Problem> {
    let mut problems = Problems::default();
    let spec_path = FieldPath::root("spec");
    let spec = &run.spec;
    if spec.metrics.is_empty() {
        problems.error(
            &spec_path.child("metrics"),
            "at least one metric is required",
        );
    }
    check_metrics(&mut problems, &spec_path.child("metrics"), &spec.metrics);
    let args = spec.args.as_deref().unwrap_or_default();
    check_args(&mut problems, &spec_path.child("args"), args);
    // A run's arguments were resolved when it was created; one without a value can never be.
    for (index, arg) in args.iter().enumerate() {
        if !arg.is_resolved() {
            problems.error(
                &spec_path.child("args").index(index),
                format!(
                    "argument {:?} has neither value nor valueFrom, so it can never be resolved",
                    arg.name
                ),
            );
        }
    }
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
    if let Some(ttl) = &spec.ttl_strategy {
        let ttl_path = spec_path.child("ttlStrategy");
        problems.non_negative(
            &ttl_path.child("secondsAfterCompletion"),
            ttl.seconds_after_completion,
        );
        problems.non_negative(
            &ttl_path.child("secondsAfterFailure"),
            ttl.seconds_after_failure,
        );
        problems.non_negative(
            &ttl_path.child("secondsAfterSuccess"),
            ttl.seconds_after_success,
        );
    }
    problems.into_vec()
}

fn check_template_spec(problems: &mut Problems, path: &FieldPath, spec: &AnalysisTemplateSpec) {
    let includes = spec.templates.as_ref().is_some_and(|t| !t.is_empty());
    if spec.metrics().is_empty() && !includes {
        problems.error(
            &path.child("metrics"),
            "at least one metric is required (or include other templates with spec.templates)",
        );
    }
    check_metrics(problems, &path.child("metrics"), spec.metrics());
    check_args(problems, &path.child("args"), spec.args());
    check_dry_run(
        problems,
        &path.child("dryRun"),
        spec.dry_run.as_deref().unwrap_or_default(),
    );
    check_retention(
        problems,
        &path.child("measurementRetention"),
        spec.measurement_retention.as_deref().unwrap_or_default(),
    );
    for (index, include) in spec.templates.iter().flatten().enumerate() {
        if include.template_name.as_deref().is_none_or(str::is_empty) {
            problems.error(
                &path.child("templates").index(index).child("templateName"),
                "is required",
            );
        }
    }
}

fn check_metrics(problems: &mut Problems, path: &FieldPath, metrics: &[Metric]) {
    let mut seen = BTreeSet::new();
    for (index, metric) in metrics.iter().enumerate() {
        let metric_path = path.index(index);
        if metric.name.is_empty() {
            problems.error(&metric_path.child("name"), "is required");
        } else if !seen.insert(metric.name.as_str()) {
            problems.error(
                &metric_path.child("name"),
                format!(
                    "duplicate metric name {:?}: metric names must be unique",
                    metric.name
                ),
            );
        }
        check_metric(problems, &metric_path, metric);
    }
}

/// Reads one int-or-string limit; placeholders are unknown (`None`), malformed strings are
/// reported.
fn limit(
    problems: &mut Problems,
    path: &FieldPath,
    value: Result<i32, AnalysisFieldError>,
) -> Option<i32> {
    match value {
        Ok(number) => Some(number),
        Err(AnalysisFieldError::UnresolvedPlaceholder { .. }) => None,
        Err(AnalysisFieldError::NotAnInteger { value, .. }) => {
            problems.error(path, format!("{value:?} is not an integer"));
            None
        }
        Err(other) => {
            problems.error(path, other.to_string());
            None
        }
    }
}

fn check_metric(problems: &mut Problems, path: &FieldPath, metric: &Metric) {
    let failure = limit(
        problems,
        &path.child("failureLimit"),
        metric.failure_limit(),
    );
    let inconclusive = limit(
        problems,
        &path.child("inconclusiveLimit"),
        metric.inconclusive_limit(),
    );
    let consecutive_error = limit(
        problems,
        &path.child("consecutiveErrorLimit"),
        metric.consecutive_error_limit(),
    );
    let consecutive_success = limit(
        problems,
        &path.child("consecutiveSuccessLimit"),
        metric.consecutive_success_limit(),
    );
    let count = limit(problems, &path.child("count"), metric.count());

    if let Some(value) = failure.filter(|v| *v < -1) {
        problems.error(
            &path.child("failureLimit"),
            format!("{value} must be -1 (disabled) or at least 0"),
        );
    }
    if let Some(value) = inconclusive.filter(|v| *v < 0) {
        problems.error(
            &path.child("inconclusiveLimit"),
            format!("{value} must not be negative"),
        );
    }
    if let Some(value) = consecutive_error.filter(|v| *v < 0) {
        problems.error(
            &path.child("consecutiveErrorLimit"),
            format!("{value} must not be negative"),
        );
    }
    if let Some(value) = consecutive_success.filter(|v| *v < 0) {
        problems.error(
            &path.child("consecutiveSuccessLimit"),
            format!("{value} must not be negative"),
        );
    }
    if failure == Some(-1) && consecutive_success == Some(0) {
        problems.error(
            &path.child("failureLimit"),
            "-1 disables the failure limit, which needs consecutiveSuccessLimit above 0 so the metric can still end",
        );
    }
    if let Some(count) = count {
        let count_path = path.child("count");
        if count < 0 {
            problems.error(&count_path, format!("{count} must not be negative"));
        }
        if count > 0 {
            if let (Some(failure), Some(success)) = (failure, consecutive_success) {
                // Widened: both limits come from the manifest and may be near i32::MAX.
                let needed = i64::from(failure) + i64::from(success);
                if failure >= 0 && success >= 0 && i64::from(count) < needed {
                    problems.error(
                        &count_path,
                        format!(
                            "{count} must be at least failureLimit + consecutiveSuccessLimit ({needed})"
                        ),
                    );
                } else if failure == -1 && count < success {
                    problems.error(
                        &count_path,
                        format!("{count} must be at least consecutiveSuccessLimit ({success})"),
                    );
                }
            }
            if let Some(inconclusive) = inconclusive.filter(|i| count < *i) {
                problems.error(
                    &count_path,
                    format!("{count} must be at least inconclusiveLimit ({inconclusive})"),
                );
            }
        }
        if count > 1 && !metric.has_interval() {
            problems.error(
                &count_path,
                format!("{count} measurements need an interval between them"),
            );
        }
    }
    for (field, value) in [
        ("interval", &metric.interval),
        ("initialDelay", &metric.initial_delay),
    ] {
        if let Some(text) = value
            .as_deref()
            .filter(|t| !t.is_empty() && !has_placeholder(t))
            && let Err(err) = duration::parse(text)
        {
            problems.error(&path.child(field), err.to_string());
        }
    }
    for (field, condition) in [
        ("successCondition", &metric.success_condition),
        ("failureCondition", &metric.failure_condition),
    ] {
        if let Some(condition) = condition {
            check_nil_helpers(problems, &path.child(field), condition);
        }
    }
    if metric.failure_condition.is_some() && metric.success_condition.is_none() {
        // Upstream's rule, kept: without a successCondition a measurement passes unless the
        // failureCondition is true, and every comparison with NaN is false.
        problems.warning(
            &path.child("failureCondition"),
            "is the only condition, so a measurement passes whenever it is not true: a NaN result (e.g. a ratio over no traffic) passes and the rollout promotes, as upstream; add a successCondition (e.g. `result[0] >= 0.95`) to require a real value",
        );
    }
    check_provider(problems, &path.child("provider"), &metric.provider);
}

/// Upstream's `default(x, d)` and `isNil(x)` ignore `x` and always test `result` itself, so
/// `default(result[0], 0)` does not do what it says. Warn wherever the argument is not `result`.
fn check_nil_helpers(problems: &mut Problems, path: &FieldPath, condition: &str) {
    for helper in ["default", "isNil"] {
        let call = format!("{helper}(");
        let mut rest = condition;
        while let Some(at) = rest.find(&call) {
            let preceded_by_name = rest[..at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.');
            let after = &rest[at + call.len()..];
            rest = after;
            if preceded_by_name {
                continue;
            }
            let argument = first_argument(after);
            if argument != "result" {
                let shown = if helper == "default" {
                    format!("default({argument}, ...)")
                } else {
                    format!("isNil({argument})")
                };
                problems.warning(
                    path,
                    format!(
                        "{shown} tests `result` as a whole, not {argument:?}: upstream's {helper}() ignores its first argument"
                    ),
                );
            }
        }
    }
}

/// The text of a call's first argument, given what follows its opening parenthesis.
fn first_argument(after_paren: &str) -> &str {
    let mut depth = 0usize;
    for (index, c) in after_paren.char_indices() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' if depth == 0 => return after_paren[..index].trim(),
            ')' | ']' | '}' => depth -= 1,
            ',' if depth == 0 => return after_paren[..index].trim(),
            _ => {}
        }
    }
    after_paren.trim()
}

fn check_provider(problems: &mut Problems, path: &FieldPath, provider: &MetricProvider) {
    if let Err(err) = provider.kind() {
        problems.error(path, err.to_string());
    }
    if let Err(err) = provider.plugin() {
        problems.error(&path.child("plugin"), err.to_string());
    }
    if let Some(prometheus) = &provider.prometheus {
        let prometheus_path = path.child("prometheus");
        if prometheus
            .query
            .as_deref()
            .is_none_or(|q| q.trim().is_empty())
        {
            problems.error(&prometheus_path.child("query"), "is required");
        }
        if let Some(timeout) = prometheus.timeout.filter(|t| *t < 0) {
            problems.error(
                &prometheus_path.child("timeout"),
                format!("{timeout} must not be negative"),
            );
        }
        if let Some(step) = prometheus
            .range_query
            .as_ref()
            .and_then(|r| r.step.as_deref())
            .filter(|s| !s.is_empty() && !has_placeholder(s))
            && let Err(err) = duration::parse(step)
        {
            problems.error(
                &prometheus_path.child("rangeQuery").child("step"),
                err.to_string(),
            );
        }
    }
    if let Some(web) = &provider.web {
        let web_path = path.child("web");
        if web.url.trim().is_empty() {
            problems.error(&web_path.child("url"), "is required");
        }
        let method = web.method();
        if !has_placeholder(method) && !["GET", "POST", "PUT"].contains(&method) {
            problems.error(
                &web_path.child("method"),
                format!("{method:?} is not one of GET, POST, PUT"),
            );
        }
        let has_body = web.body.is_some();
        let has_json_body = web.json_body.is_some();
        if has_body && has_json_body {
            problems.error(&web_path, "sets both body and jsonBody; set one");
        }
        if (has_body || has_json_body) && method == "GET" {
            problems.error(
                &web_path.child("method"),
                "GET requests cannot carry body or jsonBody; use POST or PUT",
            );
        }
        if let Some(timeout) = web.timeout_seconds.filter(|t| *t < 0) {
            problems.error(
                &web_path.child("timeoutSeconds"),
                format!("{timeout} must not be negative"),
            );
        }
    }
    if let Some(job) = &provider.job {
        let pod_path = path
            .child("job")
            .child("spec")
            .child("template")
            .child("spec");
        match job.spec.template.spec.as_ref() {
            None => problems.error(&pod_path, "is required"),
            Some(pod) => {
                // The API server's pod rules; the restart policy a Job needs is checked here.
                check_pod_spec(problems, &pod_path, pod, PodOwner::Job);
                match pod.restart_policy.as_deref() {
                    Some("Never" | "OnFailure") => {}
                    Some(other) => problems.error(
                        &pod_path.child("restartPolicy"),
                        format!("{other:?} is not allowed for a Job; use Never or OnFailure"),
                    ),
                    None => problems.error(
                        &pod_path.child("restartPolicy"),
                        "is required for a Job (Never or OnFailure)",
                    ),
                }
            }
        }
    }
}

fn check_args(problems: &mut Problems, path: &FieldPath, args: &[Argument]) {
    let mut seen = BTreeSet::new();
    for (index, arg) in args.iter().enumerate() {
        let arg_path = path.index(index);
        if arg.name.is_empty() {
            problems.error(&arg_path.child("name"), "is required");
        } else if !seen.insert(arg.name.as_str()) {
            problems.error(
                &arg_path.child("name"),
                format!("{:?} is declared more than once", arg.name),
            );
        }
        if arg.value.is_some() && arg.value_from.is_some() {
            problems.error(&arg_path, "sets both value and valueFrom; set one");
        }
        if let Some(from) = &arg.value_from {
            let from_path = arg_path.child("valueFrom");
            match (&from.secret_key_ref, &from.field_ref) {
                (Some(_), Some(_)) => {
                    problems.error(&from_path, "sets both secretKeyRef and fieldRef; set one")
                }
                (None, None) => {
                    problems.error(&from_path, "sets neither secretKeyRef nor fieldRef")
                }
                _ => {}
            }
            if let Some(secret) = &from.secret_key_ref {
                if secret.name.is_empty() {
                    problems.error(
                        &from_path.child("secretKeyRef").child("name"),
                        "is required",
                    );
                }
                if secret.key.is_empty() {
                    problems.error(&from_path.child("secretKeyRef").child("key"), "is required");
                }
            }
        }
    }
}
