//! AnalysisTemplate, ClusterAnalysisTemplate, AnalysisRun and Experiment rules.

use super::*;
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

// ---- analysis templates and runs ----

fn template_with_metrics(metrics: Value) -> AnalysisTemplate {
    serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate",
        "metadata": {"name": "t", "namespace": "shop"},
        "spec": {"metrics": metrics}
    }))
    .expect("test template deserializes")
}

pub(super) fn prometheus_metric(extra: Value) -> Value {
    let mut metric = json!({"name": "success-rate", "provider": {"prometheus": {"address": "http://prom", "query": "up"}}});
    merge(&mut metric, &extra);
    metric
}

pub(super) fn template_lines(metrics: Value) -> Vec<String> {
    lines(&validate_analysis_template(&template_with_metrics(metrics)))
}

#[test]
fn valid_template_is_clean() {
    assert_eq!(
        template_lines(json!([prometheus_metric(
            json!({"interval": "1m", "count": 5, "failureLimit": 2})
        )])),
        Vec::<String>::new()
    );
}

#[test]
fn duplicate_metric_names_in_one_template() {
    assert_eq!(
        template_lines(json!([
            prometheus_metric(json!({})),
            prometheus_metric(json!({}))
        ])),
        error(
            r#"spec.metrics[1].name: duplicate metric name "success-rate": metric names must be unique"#
        )
    );
}

#[test]
fn metric_limits() {
    assert_eq!(
        template_lines(json!([prometheus_metric(
            json!({"failureLimit": -2, "inconclusiveLimit": -1,
            "consecutiveErrorLimit": -1, "consecutiveSuccessLimit": -1})
        )])),
        vec![
            "error: spec.metrics[0].failureLimit: -2 must be -1 (disabled) or at least 0",
            "error: spec.metrics[0].inconclusiveLimit: -1 must not be negative",
            "error: spec.metrics[0].consecutiveErrorLimit: -1 must not be negative",
            "error: spec.metrics[0].consecutiveSuccessLimit: -1 must not be negative",
        ]
    );
    assert_eq!(
        template_lines(json!([prometheus_metric(json!({"failureLimit": -1}))])),
        error(
            "spec.metrics[0].failureLimit: -1 disables the failure limit, which needs consecutiveSuccessLimit above 0 so the metric can still end"
        )
    );
}

#[test]
fn huge_limits_do_not_overflow() {
    assert_eq!(
        template_lines(json!([prometheus_metric(
            json!({"interval": "1m", "count": 5,
            "failureLimit": 2147483647, "consecutiveSuccessLimit": 2147483647})
        )])),
        error(
            "spec.metrics[0].count: 5 must be at least failureLimit + consecutiveSuccessLimit (4294967294)"
        )
    );
}

#[test]
fn count_against_limits_and_interval() {
    assert_eq!(
        template_lines(json!([prometheus_metric(
            json!({"interval": "1m", "count": 2, "failureLimit": 2,
            "consecutiveSuccessLimit": 1, "inconclusiveLimit": 3})
        )])),
        vec![
            "error: spec.metrics[0].count: 2 must be at least failureLimit + consecutiveSuccessLimit (3)",
            "error: spec.metrics[0].count: 2 must be at least inconclusiveLimit (3)",
        ]
    );
    assert_eq!(
        template_lines(json!([prometheus_metric(
            json!({"interval": "1m", "count": 2, "failureLimit": -1,
            "consecutiveSuccessLimit": 3})
        )])),
        error("spec.metrics[0].count: 2 must be at least consecutiveSuccessLimit (3)")
    );
    assert_eq!(
        template_lines(json!([prometheus_metric(json!({"count": 3}))])),
        error("spec.metrics[0].count: 3 measurements need an interval between them")
    );
}

#[test]
fn placeholders_are_not_judged_but_malformed_numbers_are() {
    assert_eq!(
        template_lines(json!([prometheus_metric(
            json!({"count": "{{args.count}}", "interval": "{{args.interval}}"})
        )])),
        Vec::<String>::new()
    );
    assert_eq!(
        template_lines(json!([prometheus_metric(json!({"failureLimit": "three"}))])),
        error(r#"spec.metrics[0].failureLimit: "three" is not an integer"#)
    );
}

#[test]
fn interval_and_initial_delay_must_parse() {
    assert_eq!(
        template_lines(json!([prometheus_metric(
            json!({"interval": "5", "initialDelay": "soon"})
        )])),
        vec![
            r#"error: spec.metrics[0].interval: "5" is not a duration: missing unit after "5" (use ns, us, ms, s, m or h)"#,
            r#"error: spec.metrics[0].initialDelay: "soon" is not a duration: a number must precede each unit"#,
        ]
    );
}

#[test]
fn exactly_one_provider() {
    assert_eq!(
        template_lines(json!([{"name": "none", "provider": {}}])),
        error("spec.metrics[0].provider: no provider specified")
    );
    assert_eq!(
        template_lines(
            json!([{"name": "two", "provider": {"prometheus": {"query": "up"}, "web": {"url": "http://x"}}}])
        ),
        error("spec.metrics[0].provider: multiple providers specified: prometheus, web")
    );
}

#[test]
fn provider_settings() {
    assert_eq!(
        template_lines(json!([
            {"name": "p", "provider": {"prometheus": {"timeout": -1}}},
            {"name": "w", "provider": {"web": {"url": "", "method": "PATCH", "body": "a", "jsonBody": {"a": 1}}}},
            {"name": "g", "provider": {"web": {"url": "http://x", "body": "a"}}},
            {"name": "j", "provider": {"job": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}}}}
        ])),
        vec![
            "error: spec.metrics[0].provider.prometheus.query: is required",
            "error: spec.metrics[0].provider.prometheus.timeout: -1 must not be negative",
            "error: spec.metrics[1].provider.web.url: is required",
            r#"error: spec.metrics[1].provider.web.method: "PATCH" is not one of GET, POST, PUT"#,
            "error: spec.metrics[1].provider.web: sets both body and jsonBody; set one",
            "error: spec.metrics[2].provider.web.method: GET requests cannot carry body or jsonBody; use POST or PUT",
            "error: spec.metrics[3].provider.job.spec.template.spec.restartPolicy: is required for a Job (Never or OnFailure)",
        ]
    );
}

#[test]
fn template_needs_metrics_and_well_formed_args() {
    let template: ClusterAnalysisTemplate = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "ClusterAnalysisTemplate", "metadata": {"name": "c"},
        "spec": {"args": [
            {"name": "a"}, {"name": "a", "value": "1", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
            {"name": "b", "valueFrom": {}}
        ], "dryRun": [{"metricName": ""}], "measurementRetention": [{"metricName": "x", "limit": -1}]}
    }))
    .expect("deserializes");
    assert_eq!(
        lines(&validate_cluster_analysis_template(&template)),
        vec![
            "error: spec.metrics: at least one metric is required (or include other templates with spec.templates)",
            r#"error: spec.args[1].name: "a" is declared more than once"#,
            "error: spec.args[1]: sets both value and valueFrom; set one",
            "error: spec.args[2].valueFrom: sets neither secretKeyRef nor fieldRef",
            "error: spec.dryRun[0].metricName: is required",
            "error: spec.measurementRetention[0].limit: -1 must not be negative",
        ]
    );
}

#[test]
fn analysis_run_args_must_be_resolved() {
    let run: AnalysisRun = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisRun", "metadata": {"name": "r"},
        "spec": {"metrics": [prometheus_metric(json!({}))], "args": [{"name": "service"}],
                 "ttlStrategy": {"secondsAfterCompletion": -5}}
    }))
    .expect("deserializes");
    assert_eq!(
        lines(&validate_analysis_run(&run)),
        vec![
            r#"error: spec.args[0]: argument "service" has neither value nor valueFrom, so it can never be resolved"#,
            "error: spec.ttlStrategy.secondsAfterCompletion: -5 must not be negative",
        ]
    );
}

// ---- experiments ----

#[test]
fn experiment_rules() {
    let experiment: Experiment = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Experiment", "metadata": {"name": "e"},
        "spec": {
            "duration": "forever",
            "templates": [
                {"name": "a", "selector": {"matchLabels": {"app": "a"}},
                 "template": {"metadata": {"labels": {"app": "b"}}, "spec": {"containers": [{"name": "c"}]}}},
                {"name": "a", "replicas": -1, "selector": {"matchLabels": {"app": "a"}},
                 "template": {"metadata": {"labels": {"app": "a"}}, "spec": {"containers": []}}}
            ],
            "analyses": [{"name": "x", "templateName": ""}]
        }
    }))
    .expect("deserializes");
    assert_eq!(
        lines(&validate_experiment(&experiment)),
        vec![
            r#"error: spec.duration: "forever" is not a duration: a number must precede each unit"#,
            "error: spec.templates[0].selector: does not match the template labels {app=b}",
            "error: spec.templates[0].template.spec.containers[0].image: Required value",
            r#"error: spec.templates[1].name: "a" is used by more than one template"#,
            "error: spec.templates[1].replicas: -1 must not be negative",
            "error: spec.templates[1].template.spec.containers: Required value",
            "error: spec.analyses[0].templateName: is required",
        ]
    );
}

#[test]
fn a_failure_condition_alone_passes_nan_and_is_warned_about() {
    let template = |conditions: Value| -> AnalysisTemplate {
        let mut metric = json!({"name": "success-rate", "interval": "1m",
            "provider": {"prometheus": {"address": "http://prometheus:9090", "query": "q"}}});
        merge(&mut metric, &conditions);
        serde_json::from_value(json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate",
            "metadata": {"name": "t"}, "spec": {"metrics": [metric]}
        }))
        .expect("template deserializes")
    };
    assert_eq!(
        lines(&validate_analysis_template(&template(
            json!({"failureCondition": "result[0] < 0.95"})
        ))),
        vec![
            "warning: spec.metrics[0].failureCondition: is the only condition, so a measurement passes whenever it is not true: a NaN result (e.g. a ratio over no traffic) passes and the rollout promotes, as upstream; add a successCondition (e.g. `result[0] >= 0.95`) to require a real value"
        ]
    );
    let both = template(
        json!({"failureCondition": "result[0] < 0.95", "successCondition": "result[0] >= 0.95"}),
    );
    assert_eq!(
        lines(&validate_analysis_template(&both)),
        Vec::<String>::new()
    );
}
