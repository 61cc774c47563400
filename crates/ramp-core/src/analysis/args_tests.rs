use super::*;
use ramp_api::analysis::{MetricProvider, PrometheusMetric, WebMetric, WebMetricHeader};
use serde_json::json;

fn arg(name: &str, value: Option<&str>) -> Argument {
    Argument {
        name: name.into(),
        value: value.map(Into::into),
        value_from: None,
    }
}

fn secret_arg(name: &str, secret: &str, key: &str) -> Argument {
    Argument {
        name: name.into(),
        value: None,
        value_from: Some(ValueFrom {
            field_ref: None,
            secret_key_ref: Some(SecretKeyRef {
                key: key.into(),
                name: secret.into(),
            }),
        }),
    }
}

fn prometheus_metric(name: &str, query: &str) -> Metric {
    Metric {
        name: name.into(),
        provider: MetricProvider {
            prometheus: Some(PrometheusMetric {
                query: Some(query.into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn template(metrics: Vec<Metric>, args: Vec<Argument>) -> AnalysisTemplateSpec {
    AnalysisTemplateSpec {
        args: Some(args),
        metrics: Some(metrics),
        ..Default::default()
    }
}

fn no_secrets(_: &SecretKeyRef) -> Result<String, String> {
    Err("no secrets in this test".into())
}

#[test]
fn merging_unions_metrics_and_args_of_all_templates() {
    let a = template(
        vec![prometheus_metric("success-rate", "q1")],
        vec![arg("service", None)],
    );
    let b = template(
        vec![prometheus_metric("latency", "q2")],
        vec![arg("service", None), arg("threshold", Some("500"))],
    );
    let spec = merge_templates(
        &[
            NamedTemplate {
                display_name: "AnalysisTemplate/a",
                spec: &a,
            },
            NamedTemplate {
                display_name: "ClusterAnalysisTemplate/b",
                spec: &b,
            },
        ],
        &[arg("service", Some("web")), arg("undeclared", Some("x"))],
        &[],
        &[],
    )
    .expect("templates merge");
    let names: Vec<_> = spec.metrics.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["success-rate", "latency"]);
    assert_eq!(
        spec.args,
        Some(vec![
            arg("service", Some("web")),
            arg("threshold", Some("500"))
        ]),
        "incoming args set declared args only; undeclared ones are dropped"
    );
}

#[test]
fn merging_rejects_duplicate_metric_names_naming_both_templates() {
    let a = template(vec![prometheus_metric("m", "q1")], vec![]);
    let b = template(vec![prometheus_metric("m", "q2")], vec![]);
    let error = merge_templates(
        &[
            NamedTemplate {
                display_name: "AnalysisTemplate/a",
                spec: &a,
            },
            NamedTemplate {
                display_name: "AnalysisTemplate/b",
                spec: &b,
            },
        ],
        &[],
        &[],
        &[],
    );
    assert_eq!(
        error,
        Err(ArgsError::DuplicateMetric {
            metric: "m".into(),
            first: "AnalysisTemplate/a".into(),
            second: "AnalysisTemplate/b".into()
        })
    );
}

#[test]
fn merging_rejects_one_argument_with_two_different_values() {
    let a = template(
        vec![prometheus_metric("m1", "q")],
        vec![arg("x", Some("1"))],
    );
    let b = template(
        vec![prometheus_metric("m2", "q")],
        vec![arg("x", Some("2"))],
    );
    let same = template(
        vec![prometheus_metric("m3", "q")],
        vec![arg("x", Some("1"))],
    );
    let named = |spec| NamedTemplate {
        display_name: "t",
        spec,
    };
    assert!(matches!(
        merge_templates(&[named(&a), named(&b)], &[], &[], &[]),
        Err(ArgsError::ConflictingArgument { name, .. }) if name == "x"
    ));
    assert!(merge_templates(&[named(&a), named(&same)], &[], &[], &[]).is_ok());
}

#[test]
fn merging_reports_an_argument_nobody_supplied() {
    let a = template(
        vec![prometheus_metric("m", "q")],
        vec![arg("service", None)],
    );
    let error = merge_templates(
        &[NamedTemplate {
            display_name: "t",
            spec: &a,
        }],
        &[],
        &[],
        &[],
    );
    assert_eq!(
        error.map_err(|e| e.to_string()),
        Err("args.service was not resolved".to_owned())
    );
}

#[test]
fn merging_unions_dry_run_and_retention_rules_with_the_callers() {
    let mut a = template(vec![prometheus_metric("m", "q")], vec![]);
    a.dry_run = Some(vec![DryRun {
        metric_name: "m".into(),
    }]);
    a.measurement_retention = Some(vec![MeasurementRetention {
        metric_name: "m".into(),
        limit: 3,
    }]);
    let spec = merge_templates(
        &[NamedTemplate {
            display_name: "t",
            spec: &a,
        }],
        &[],
        &[
            DryRun {
                metric_name: "m".into(),
            },
            DryRun {
                metric_name: ".*".into(),
            },
        ],
        &[MeasurementRetention {
            metric_name: ".*".into(),
            limit: 20,
        }],
    )
    .expect("merges");
    assert_eq!(spec.dry_run.map(|r| r.len()), Some(2));
    assert_eq!(spec.measurement_retention.map(|r| r.len()), Some(2));
}

#[test]
fn substitution_replaces_placeholders_with_tolerant_spacing_and_json_escaping() {
    let metric = prometheus_metric(
        "m",
        r#"sum(rate(x{service="{{args.service}}", ns="{{ args.ns }}"}[5m]))"#,
    );
    let args = resolve_args(
        &[arg("service", Some(r#"we"b\1"#)), arg("ns", Some("prod"))],
        no_secrets,
    )
    .expect("resolves");
    let substituted = substitute_metric(&metric, &args).expect("substitutes");
    let query = substituted
        .provider
        .prometheus
        .and_then(|p| p.query)
        .unwrap_or_default();
    assert_eq!(query, r#"sum(rate(x{service="we"b\1", ns="prod"}[5m]))"#);
}

#[test]
fn substitution_reaches_int_or_string_fields_and_conditions() {
    let mut metric = prometheus_metric("m", "q");
    metric.count = Some(
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("{{args.count}}".into()),
    );
    metric.interval = Some("{{args.interval}}".into());
    metric.success_condition = Some(r#"result == "{{args.success-condition}}""#.into());
    let args = resolve_args(
        &[
            arg("count", Some("5")),
            arg("interval", Some("30s")),
            arg("success-condition", Some("true")),
        ],
        no_secrets,
    )
    .expect("resolves");
    let substituted = substitute_metric(&metric, &args).expect("substitutes");
    assert_eq!(substituted.count(), Ok(5));
    assert_eq!(
        substituted.interval_duration(),
        Ok(Some(std::time::Duration::from_secs(30)))
    );
    assert_eq!(
        substituted.success_condition.as_deref(),
        Some(r#"result == "true""#)
    );
}

#[test]
fn unknown_placeholders_are_errors_naming_the_metric_and_tag() {
    let metric = prometheus_metric("m", "x{a=\"{{args.missing}}\"}");
    let error = substitute_metric(&metric, &ResolvedArgs::default());
    assert_eq!(
        error.map_err(|e| e.to_string()),
        Err(r#"metric "m": failed to resolve {{args.missing}}"#.to_owned())
    );
    let metric = prometheus_metric("m", "{{templates.x.podTemplateHash}}");
    assert!(matches!(
        substitute_metric(&metric, &ResolvedArgs::default()),
        Err(ArgsError::UnknownPlaceholder { .. })
    ));
    // In a metric's JSON an unclosed tag runs into the closing braces of the objects around it;
    // it still fails, as an unknown placeholder.
    let metric = prometheus_metric("m", "x{{args.open");
    assert!(matches!(
        substitute_metric(&metric, &ResolvedArgs::default()),
        Err(ArgsError::UnknownPlaceholder { .. })
    ));
    assert!(matches!(
        substitute_plain("value", "x{{args.open", &ResolvedArgs::default()),
        Err(ArgsError::UnterminatedPlaceholder { .. })
    ));
}

#[test]
fn secret_arguments_are_read_through_the_reader_and_redacted() {
    let args = [
        arg("user", Some("ramp")),
        secret_arg("token", "creds", "api-token"),
    ];
    let resolved = resolve_args(&args, |secret| {
        assert_eq!(
            (secret.name.as_str(), secret.key.as_str()),
            ("creds", "api-token")
        );
        Ok("s3cr3t".to_owned())
    })
    .expect("resolves");
    assert_eq!(resolved.get("token"), Some("s3cr3t"));
    assert!(resolved.is_secret("token"));
    assert!(!resolved.is_secret("user"));
    assert_eq!(
        resolved.redact("Authorization: Bearer s3cr3t for ramp"),
        "Authorization: Bearer ***** for ramp"
    );

    let for_validation = resolve_args(&args, redacted_secret).expect("resolves");
    assert_eq!(for_validation.get("token"), Some(REDACTED));
}

#[test]
fn a_secret_that_cannot_be_read_is_an_error_without_a_value() {
    let error = resolve_args(&[secret_arg("token", "creds", "k")], |_| {
        Err("secret \"creds\" not found".to_owned())
    });
    assert_eq!(
        error.map_err(|e| e.to_string()),
        Err(r#"args.token: reading secret "creds" key "k": secret "creds" not found"#.to_owned())
    );
}

#[test]
fn secret_values_never_appear_in_substitution_errors() {
    let mut metric = Metric {
        name: "web".into(),
        provider: MetricProvider {
            web: Some(WebMetric {
                url: "http://x".into(),
                headers: Some(vec![WebMetricHeader {
                    key: "Authorization".into(),
                    value: "Bearer {{args.token}}".into(),
                }]),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    metric.count = Some(
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("{{args.token}}".into()),
    );
    let resolved = resolve_args(&[secret_arg("token", "s", "k")], |_| {
        Ok("hunter2".to_owned())
    })
    .expect("resolves");
    // The substituted `count` is not an integer: the error surfaces when it is read, and
    // substitution itself never echoes the value.
    let substituted = substitute_metric(&metric, &resolved).expect("substitutes");
    let error = substituted
        .count()
        .map_err(|e| resolved.redact(&e.to_string()));
    assert!(error.is_err_and(|e| !e.contains("hunter2")));
    let unresolved = substitute_metric(&prometheus_metric("m", "{{args.nope}}"), &resolved)
        .map_err(|e| e.to_string());
    assert!(unresolved.is_err_and(|e| !e.contains("hunter2")));
}

#[test]
fn an_argument_without_value_or_secret_is_unresolved() {
    let field_only = Argument {
        name: "env".into(),
        value: None,
        value_from: Some(ValueFrom {
            field_ref: Some(ramp_api::common::FieldRef {
                field_path: "metadata.labels['env']".into(),
            }),
            secret_key_ref: None,
        }),
    };
    assert_eq!(
        resolve_args(&[field_only], no_secrets),
        Err(ArgsError::Unresolved { name: "env".into() })
    );
}

#[test]
fn dry_run_rules_are_unanchored_regexes_that_must_match_something() {
    let metrics = [
        prometheus_metric("success-rate", "q"),
        prometheus_metric("latency", "q"),
    ];
    let rule = |p: &str| DryRun {
        metric_name: p.into(),
    };
    assert_eq!(
        dry_run_metrics(&metrics, &[rule("rate")]),
        Ok(BTreeSet::from(["success-rate".to_owned()]))
    );
    assert_eq!(
        dry_run_metrics(&metrics, &[rule(".*")]).map(|s| s.len()),
        Ok(2)
    );
    assert!(matches!(
        dry_run_metrics(&metrics, &[rule("nothing")]),
        Err(ArgsError::DryRunMatchesNothing { .. })
    ));
    assert!(matches!(
        dry_run_metrics(&metrics, &[rule("*")]),
        Err(ArgsError::InvalidPattern { .. })
    ));
}

#[test]
fn retention_uses_the_first_matching_rule_else_ten() {
    let metrics = [prometheus_metric("a", "q"), prometheus_metric("b", "q")];
    let limits = retention_limits(
        &metrics,
        &[MeasurementRetention {
            metric_name: "^a$".into(),
            limit: 3,
        }],
    )
    .expect("valid rules");
    assert_eq!(limits.get("a"), Some(&3));
    assert_eq!(limits.get("b"), Some(&10));
    let zero = retention_limits(
        &metrics,
        &[MeasurementRetention {
            metric_name: ".*".into(),
            limit: 0,
        }],
    )
    .expect("valid rules");
    assert_eq!(zero.get("a"), Some(&10), "a zero limit keeps the default");
}

#[test]
fn field_refs_read_labels_annotations_and_nested_fields() {
    let rollout = json!({
        "metadata": {"name": "web", "labels": {"app.kubernetes.io/name": "web"}},
        "spec": {"replicas": 3, "template": {"metadata": {"labels": {"version": "v2"}}}}
    });
    assert_eq!(
        field_ref_value(&rollout, "metadata.labels['app.kubernetes.io/name']"),
        Some("web".into())
    );
    assert_eq!(
        field_ref_value(&rollout, "spec.template.metadata.labels.version"),
        Some("v2".into())
    );
    assert_eq!(field_ref_value(&rollout, "spec.replicas"), Some("3".into()));
    assert_eq!(field_ref_value(&rollout, "metadata.missing"), None);
}

#[test]
fn field_refs_to_a_label_or_annotation_the_rollout_lacks_read_as_empty() {
    let rollout = json!({"metadata": {"name": "window", "labels": {"app": "window"}}});
    assert_eq!(
        field_ref_value(&rollout, "metadata.labels['rev']"),
        Some(String::new())
    );
    assert_eq!(
        field_ref_value(&rollout, "metadata.annotations['owner']"),
        Some(String::new()),
        "no annotations map at all"
    );
    assert_eq!(
        field_ref_value(&rollout, "metadata.labels['app']"),
        Some("window".into())
    );
    assert_eq!(field_ref_value(&rollout, "spec.template.missing"), None);
}

fn included(name: &str, includes: &[&str], metric: &str) -> IncludedTemplate {
    IncludedTemplate {
        display_name: format!("AnalysisTemplate/{name}"),
        spec: AnalysisTemplateSpec {
            metrics: Some(vec![prometheus_metric(metric, "q")]),
            templates: Some(
                includes
                    .iter()
                    .map(|i| ramp_api::analysis::AnalysisTemplateRef {
                        cluster_scope: None,
                        template_name: Some((*i).into()),
                    })
                    .collect(),
            ),
            ..Default::default()
        },
    }
}

#[test]
fn includes_are_followed_once_each_before_their_includer() {
    let store = [
        included("base", &[], "m-base"),
        included("mid", &["base"], "m-mid"),
    ];
    let lookup = |r: &ramp_api::analysis::AnalysisTemplateRef| {
        store
            .iter()
            .find(|t| {
                Some(t.display_name.trim_start_matches("AnalysisTemplate/"))
                    == r.template_name.as_deref()
            })
            .cloned()
    };
    let flat = flatten_templates(vec![included("top", &["mid", "base"], "m-top")], lookup)
        .expect("flattens");
    let names: Vec<_> = flat.iter().map(|t| t.display_name.as_str()).collect();
    assert_eq!(
        names,
        [
            "AnalysisTemplate/base",
            "AnalysisTemplate/mid",
            "AnalysisTemplate/top"
        ]
    );
}

#[test]
fn missing_and_cyclic_includes_are_errors() {
    let missing = flatten_templates(vec![included("top", &["nope"], "m")], |_| None);
    assert_eq!(
        missing.map_err(|e| e.to_string()),
        Err(r#"AnalysisTemplate "nope" not found (included by AnalysisTemplate/top)"#.to_owned())
    );
    let a = included("a", &["b"], "ma");
    let b = included("b", &["a"], "mb");
    let store = [a.clone(), b];
    let cyclic = flatten_templates(vec![a], |r| {
        store
            .iter()
            .find(|t| {
                Some(t.display_name.trim_start_matches("AnalysisTemplate/"))
                    == r.template_name.as_deref()
            })
            .cloned()
    });
    assert!(
        matches!(cyclic, Err(ArgsError::TemplateCycle { .. })),
        "{cyclic:?}"
    );
}
