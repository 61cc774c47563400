//! Rules across documents (templates, Services) and the quirks worth a warning.

use super::analysis::{prometheus_metric, template_lines};
use super::*;
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

// ---- references ----

fn catalog() -> TemplateCatalog {
    let mut catalog = TemplateCatalog::new();
    let spec = |value: Value| serde_json::from_value(value).expect("template spec deserializes");
    catalog.add_analysis_template(
        Some("shop"),
        "success-rate",
        spec(
            json!({"args": [{"name": "service"}, {"name": "threshold", "value": "0.95"}],
            "metrics": [prometheus_metric(json!({"interval": "1m", "count": 3}))]}),
        ),
    );
    catalog.add_analysis_template(
        Some("shop"),
        "forever",
        spec(json!({"metrics": [prometheus_metric(json!({"name": "latency", "interval": "1m"}))]})),
    );
    catalog.add_analysis_template(
        Some("shop"),
        "also-success-rate",
        spec(json!({"args": [{"name": "threshold", "value": "0.99"}], "metrics": [prometheus_metric(json!({}))]})),
    );
    catalog.add_analysis_template(
        Some("shop"),
        "composite",
        spec(json!({"templates": [{"templateName": "forever"}, {"templateName": "gone"}]})),
    );
    catalog
}

fn reference_lines(rollout: &Rollout) -> Vec<String> {
    lines(&check_references(rollout, &catalog()))
}

#[test]
fn referenced_templates_must_exist_when_templates_are_known() {
    let rollout = steps(json!([{"analysis": {"templates": [{"templateName": "missing"}]}}]));
    assert_eq!(
        reference_lines(&rollout),
        error(
            r#"spec.strategy.canary.steps[0].analysis.templates[0].templateName: AnalysisTemplate "missing" is not among the given templates"#
        )
    );
    // No ClusterAnalysisTemplate is known at all, so a cluster-scoped reference is not judged.
    let cluster = steps(
        json!([{"analysis": {"templates": [{"templateName": "missing", "clusterScope": true}]}}]),
    );
    assert_eq!(reference_lines(&cluster), Vec::<String>::new());
    // Nor is anything when no template is known.
    assert_eq!(
        lines(&check_references(&rollout, &TemplateCatalog::new())),
        Vec::<String>::new()
    );
}

#[test]
fn required_args_must_be_passed() {
    let missing = steps(json!([{"analysis": {"templates": [{"templateName": "success-rate"}]}}]));
    assert_eq!(
        reference_lines(&missing),
        error(
            r#"spec.strategy.canary.steps[0].analysis.args: argument "service" required by AnalysisTemplate "success-rate" is not passed"#
        )
    );
    let passed = steps(
        json!([{"analysis": {"templates": [{"templateName": "success-rate"}],
        "args": [{"name": "service", "value": "checkout"}]}}]),
    );
    assert_eq!(reference_lines(&passed), Vec::<String>::new());
}

#[test]
fn passed_args_no_template_declares_are_flagged() {
    let rollout = steps(
        json!([{"analysis": {"templates": [{"templateName": "success-rate"}],
        "args": [{"name": "service", "value": "checkout"}, {"name": "servce", "value": "checkout"}]}}]),
    );
    assert_eq!(
        reference_lines(&rollout),
        vec![
            r#"warning: spec.strategy.canary.steps[0].analysis.args[1]: argument "servce" is not declared by any of the templates, so it is ignored"#
        ]
    );
    // With a template that cannot be judged, nothing is known about what is declared.
    let unknown = steps(json!([{"analysis": {
        "templates": [{"templateName": "success-rate"}, {"templateName": "x", "clusterScope": true}],
        "args": [{"name": "service", "value": "checkout"}, {"name": "servce", "value": "checkout"}]}}]));
    assert_eq!(reference_lines(&unknown), Vec::<String>::new());
}

#[test]
fn merged_templates_need_unique_metric_names_and_agreeing_args() {
    let rollout = canary_with(json!({"analysis": {
        "templates": [{"templateName": "success-rate"}, {"templateName": "also-success-rate"}],
        "args": [{"name": "service", "value": "checkout"}]
    }}));
    assert_eq!(
        reference_lines(&rollout),
        vec![
            r#"error: spec.strategy.canary.analysis.templates[1].templateName: duplicate metric name "success-rate": defined by both AnalysisTemplate "success-rate" and AnalysisTemplate "also-success-rate""#,
            r#"error: spec.strategy.canary.analysis.templates[1].templateName: argument "threshold" has conflicting values: "0.95" in AnalysisTemplate "success-rate" and "0.99" in AnalysisTemplate "also-success-rate""#,
        ]
    );
}

#[test]
fn unbounded_metrics_only_in_background_analysis() {
    let step = steps(json!([{"analysis": {"templates": [{"templateName": "forever"}]}}]));
    assert_eq!(
        reference_lines(&step),
        error(
            r#"spec.strategy.canary.steps[0].analysis.templates[0].templateName: metric "latency" of AnalysisTemplate "forever" has an interval but no count, so it never ends; only background analysis may run indefinitely"#
        )
    );
    let background = canary_with(json!({"analysis": {"templates": [{"templateName": "forever"}]}}));
    assert_eq!(reference_lines(&background), Vec::<String>::new());
    let post = rollout_with(json!({"spec": {"strategy": {"canary": null, "blueGreen": {
        "activeService": "web", "postPromotionAnalysis": {"templates": [{"templateName": "forever"}]}}}}}));
    assert_eq!(
        reference_lines(&post),
        error(
            r#"spec.strategy.blueGreen.postPromotionAnalysis.templates[0].templateName: metric "latency" of AnalysisTemplate "forever" has an interval but no count, so it never ends; only background analysis may run indefinitely"#
        )
    );
}

#[test]
fn included_templates_are_resolved() {
    let rollout = canary_with(json!({"analysis": {"templates": [{"templateName": "composite"}]}}));
    assert_eq!(
        reference_lines(&rollout),
        error(
            r#"spec.strategy.canary.analysis.templates[0].templateName: AnalysisTemplate "composite" includes AnalysisTemplate "gone", which is not among the given templates"#
        )
    );
    let template: AnalysisTemplate = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate", "metadata": {"name": "x", "namespace": "shop"},
        "spec": {"templates": [{"templateName": "nope"}]}
    }))
    .expect("deserializes");
    assert_eq!(
        lines(&check_template_includes(
            Some("shop"),
            &template.spec,
            &catalog()
        )),
        error(
            r#"spec.templates[0].templateName: AnalysisTemplate "nope" is not among the given templates"#
        )
    );
}

#[test]
fn include_cycles_are_reported() {
    let mut catalog = TemplateCatalog::new();
    let spec = |value: Value| serde_json::from_value(value).expect("deserializes");
    catalog.add_analysis_template(
        None,
        "a",
        spec(json!({"templates": [{"templateName": "b"}]})),
    );
    catalog.add_analysis_template(
        None,
        "b",
        spec(json!({"templates": [{"templateName": "a"}]})),
    );
    let mut rollout = base_rollout();
    merge(
        &mut rollout,
        &json!({"metadata": {"namespace": null},
        "spec": {"strategy": {"canary": {"analysis": {"templates": [{"templateName": "a"}]}}}}}),
    );
    let rollout: Rollout = serde_json::from_value(rollout).expect("deserializes");
    assert_eq!(
        lines(&check_references(&rollout, &catalog)),
        error(
            r#"spec.strategy.canary.analysis.templates[0].templateName: templates include each other in a cycle: AnalysisTemplate "a" -> AnalysisTemplate "b" -> AnalysisTemplate "a""#
        )
    );
}

#[test]
fn experiment_analyses_are_checked_against_templates() {
    let experiment: Experiment = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Experiment", "metadata": {"name": "e", "namespace": "shop"},
        "spec": {"templates": [], "analyses": [
            {"name": "a", "templateName": "success-rate"},
            {"name": "b", "templateName": "nowhere"}
        ]}
    }))
    .expect("deserializes");
    assert_eq!(
        lines(&check_experiment_references(&experiment, &catalog())),
        vec![
            r#"error: spec.analyses[0].args: argument "service" required by AnalysisTemplate "success-rate" is not passed"#,
            r#"error: spec.analyses[1].templateName: AnalysisTemplate "nowhere" is not among the given templates"#,
        ]
    );
}

// ---- quirks worth a warning, metric-name rules, services ----

#[test]
fn string_budgets_without_a_percent_sign_are_percentages() {
    let rollout = canary_with(json!({"maxSurge": "3", "maxUnavailable": "10%"}));
    assert_eq!(
        rollout_lines(&rollout),
        vec![
            r#"warning: spec.strategy.canary.maxSurge: "3" is read as 3 percent, not 3 pods (any string is a percentage); write 3 for pods or "3%""#
        ]
    );
}

#[test]
fn metric_name_rules_must_be_regular_expressions() {
    let rollout = steps(json!([{"analysis": {"templates": [{"templateName": "t"}],
        "dryRun": [{"metricName": "*"}], "measurementRetention": [{"metricName": "ok.*", "limit": 5}]}}]));
    assert_eq!(
        rollout_lines(&rollout),
        error(
            r#"spec.strategy.canary.steps[0].analysis.dryRun[0].metricName: "*" is not a valid regular expression: repetition operator missing expression"#
        )
    );
}

#[test]
fn dry_run_rules_must_match_a_merged_metric() {
    let rollout = canary_with(json!({"analysis": {
        "templates": [{"templateName": "success-rate"}],
        "args": [{"name": "service", "value": "checkout"}],
        "dryRun": [{"metricName": "success.*"}, {"metricName": "latency"}]
    }}));
    assert_eq!(
        reference_lines(&rollout),
        error(
            r#"spec.strategy.canary.analysis.dryRun[1].metricName: "latency" matches none of the metrics (success-rate), which makes the AnalysisRun fail"#
        )
    );
}

#[test]
fn nil_helpers_that_ignore_their_argument_are_flagged() {
    assert_eq!(
        template_lines(json!([prometheus_metric(json!({
            "successCondition": "default(result[0], 0) < 0.05 && default(result, 1) > 0",
            "failureCondition": "isNil(result.value) || my.default(x)"
        }))])),
        vec![
            r#"warning: spec.metrics[0].successCondition: default(result[0], ...) tests `result` as a whole, not "result[0]": upstream's default() ignores its first argument"#,
            r#"warning: spec.metrics[0].failureCondition: isNil(result.value) tests `result` as a whole, not "result.value": upstream's isNil() ignores its first argument"#,
        ]
    );
}

#[test]
fn named_services_must_select_the_template_labels() {
    let mut services = ServiceCatalog::new();
    services.add_service(
        Some("shop"),
        "checkout-canary",
        [("app", "checkout"), ("rollouts-pod-template-hash", "abc")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    );
    services.add_service(
        Some("shop"),
        "checkout-stable",
        [("app", "checkout"), ("tier", "web")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    );
    let rollout = rollout_with(json!({}));
    assert_eq!(
        lines(&check_services(&rollout, &services)),
        error(
            r#"spec.strategy.canary.stableService: Service "checkout-stable" selects tier=web, which the pod template labels {app=checkout} do not carry, so it would never reach the rollout's pods"#
        )
    );
    // A Service in another namespace is not the one the rollout names.
    let elsewhere = rollout_with(json!({"metadata": {"namespace": "other"}}));
    assert_eq!(
        lines(&check_services(&elsewhere, &services)),
        Vec::<String>::new()
    );
}

#[test]
fn documents_without_a_namespace_match_any_namespace() {
    let reference = json!({"spec": {"strategy": {"canary": {"analysis": {"templates": [{"templateName": "forever"}]}}}}});
    // The templates are in "shop"; a rollout naming no namespace may be applied there.
    let mut unnamespaced = base_rollout();
    merge(&mut unnamespaced, &json!({"metadata": {"namespace": null}}));
    merge(&mut unnamespaced, &reference);
    let unnamespaced: Rollout = serde_json::from_value(unnamespaced).expect("deserializes");
    assert_eq!(
        lines(&check_references(&unnamespaced, &catalog())),
        Vec::<String>::new()
    );
    // A rollout in another namespace cannot use them.
    let elsewhere = rollout_with(json!({"metadata": {"namespace": "other"}}));
    let mut elsewhere = serde_json::to_value(elsewhere).expect("serializes");
    merge(&mut elsewhere, &reference);
    let elsewhere: Rollout = serde_json::from_value(elsewhere).expect("deserializes");
    assert_eq!(
        lines(&check_references(&elsewhere, &catalog())),
        error(
            r#"spec.strategy.canary.analysis.templates[0].templateName: AnalysisTemplate "forever" is not among the given templates"#
        )
    );
    // And a template naming no namespace serves every rollout.
    let mut open = TemplateCatalog::new();
    open.add_analysis_template(
        None,
        "forever",
        serde_json::from_value(json!({"metrics": [prometheus_metric(json!({}))]}))
            .expect("deserializes"),
    );
    assert_eq!(
        lines(&check_references(&elsewhere, &open)),
        Vec::<String>::new()
    );
}
