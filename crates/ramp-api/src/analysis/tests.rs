//! Tests of the analysis kinds: exact round trips of upstream manifests, the accessors' defaults
//! and errors, the phase ordering, and the schema details the derive needs help with.

use super::*;
use crate::defaults;
use kube::CustomResourceExt;
use pretty_assertions::assert_eq;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn yaml_files(dir: &Path, found: &mut Vec<PathBuf>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            yaml_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            found.push(path);
        }
    }
}

/// Every document of `kind` in the upstream `examples`, with the file it came from. Read like
/// any manifest Ramp is given, so an unquoted `{{args.x}}` (one upstream example has one) is the
/// placeholder string its author meant.
fn upstream_documents(examples: &Path, kind: &str) -> Vec<(PathBuf, Value)> {
    let mut files = Vec::new();
    yaml_files(examples, &mut files);
    files.sort();
    let mut documents = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable example");
        let parsed = crate::manifest::parse_stream(&text)
            .unwrap_or_else(|e| panic!("{}: not YAML: {e}", file.display()));
        documents.extend(
            parsed
                .documents
                .into_iter()
                .filter(|d| d.get("kind").and_then(Value::as_str) == Some(kind))
                .map(|d| (file.clone(), d)),
        );
    }
    documents
}

/// Deserializes `document` into `T` and checks that serializing it gives the same JSON back.
pub(crate) fn assert_round_trip<T: DeserializeOwned + Serialize>(origin: &str, document: &Value) {
    let typed: T = serde_json::from_value(document.clone())
        .unwrap_or_else(|e| panic!("{origin}: does not deserialize: {e}"));
    let back = serde_json::to_value(&typed).expect("serializable");
    assert_eq!(&back, document, "{origin}: round trip changed the document");
}

/// Round-trips every upstream example of `kind`; skipped when the corpus is absent.
pub(crate) fn round_trip_upstream<T: DeserializeOwned + Serialize>(kind: &str, at_least: usize) {
    let Some(upstream) = ramp_sim::compat::argo_rollouts() else {
        return;
    };
    let examples = upstream.examples();
    let documents = upstream_documents(&examples, kind);
    assert!(
        documents.len() >= at_least,
        "expected at least {at_least} {kind} documents in {}, found {}",
        examples.display(),
        documents.len()
    );
    for (file, document) in &documents {
        let name = document
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("?");
        assert_round_trip::<T>(&format!("{} {kind}/{name}", file.display()), document);
    }
}

#[test]
fn upstream_analysis_templates_round_trip_exactly() {
    round_trip_upstream::<AnalysisTemplate>("AnalysisTemplate", 6);
}

#[test]
fn upstream_cluster_analysis_templates_round_trip_exactly() {
    round_trip_upstream::<ClusterAnalysisTemplate>("ClusterAnalysisTemplate", 1);
}

#[test]
fn upstream_analysis_runs_round_trip_exactly() {
    // The examples hold no AnalysisRun today; the hand-written run below covers the kind.
    round_trip_upstream::<AnalysisRun>("AnalysisRun", 0);
}

/// A run as the controller leaves it after a few measurements, touching every status field and
/// several providers.
const SAMPLE_ANALYSIS_RUN: &str = r#"{
    "apiVersion": "argoproj.io/v1alpha1",
    "kind": "AnalysisRun",
    "metadata": {"name": "guestbook-6c5c8d6f9b-3", "namespace": "default"},
    "spec": {
        "args": [
            {"name": "service-name", "value": "guestbook-canary"},
            {"name": "api-token", "valueFrom": {"secretKeyRef": {"name": "token", "key": "api"}}},
            {"name": "env", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['env']"}}}
        ],
        "dryRun": [{"metricName": "latency.*"}],
        "measurementRetention": [{"metricName": "success-rate", "limit": 20}],
        "terminate": false,
        "ttlStrategy": {"secondsAfterCompletion": 600, "secondsAfterFailure": 60, "secondsAfterSuccess": 30},
        "metrics": [
            {
                "name": "success-rate",
                "interval": "1m",
                "initialDelay": "30s",
                "count": "{{args.count}}",
                "failureLimit": 2,
                "inconclusiveLimit": "1",
                "consecutiveErrorLimit": 5,
                "consecutiveSuccessLimit": 0,
                "successCondition": "result[0] >= 0.95",
                "failureCondition": "result[0] < 0.5",
                "provider": {"prometheus": {
                    "address": "http://prometheus:9090",
                    "query": "sum(rate(x[5m]))",
                    "timeout": 20,
                    "insecure": true,
                    "headers": [{"key": "X-Scope-OrgID", "value": "tenant"}],
                    "rangeQuery": {"start": "now() - duration(\"5m\")", "end": "now()", "step": "1m"},
                    "authentication": {
                        "sigv4": {"region": "eu-west-1", "profile": "p", "roleArn": "arn:aws:iam::1:role/r"},
                        "oauth2": {"tokenUrl": "https://t", "clientId": "c", "clientSecret": "s", "scopes": ["a", "b"]},
                        "basicAuth": {"username": "u", "password": "p"}
                    }
                }}
            },
            {
                "name": "web",
                "provider": {"web": {
                    "url": "https://example.invalid/{{args.service-name}}",
                    "method": "POST",
                    "jsonBody": {"service": "{{args.service-name}}", "nested": {"list": [1, 2.5, true, null]}},
                    "jsonPath": "{$.data.ok}",
                    "timeoutSeconds": 5,
                    "headers": [{"key": "Authorization", "value": "Bearer {{args.api-token}}"}]
                }}
            },
            {
                "name": "job",
                "provider": {"job": {
                    "metadata": {"labels": {"team": "a"}, "annotations": {"note": "b"}},
                    "spec": {
                        "backoffLimit": 1,
                        "template": {"spec": {
                            "restartPolicy": "Never",
                            "containers": [{"name": "check", "image": "busybox", "command": ["sh", "-c", "true"]}]
                        }}
                    }
                }}
            },
            {
                "name": "kayenta",
                "provider": {"kayenta": {
                    "address": "http://kayenta", "application": "app", "canaryConfigName": "cfg",
                    "metricsAccountName": "m", "configurationAccountName": "c", "storageAccountName": "s",
                    "lookback": true,
                    "threshold": {"pass": 90, "marginal": 75},
                    "scopes": [{
                        "name": "default",
                        "controlScope": {"scope": "app=stable", "region": "eu", "step": 60, "start": "2024-01-01T00:00:00Z", "end": "2024-01-01T01:00:00Z"},
                        "experimentScope": {"scope": "app=canary", "region": "eu", "step": 60}
                    }]
                }}
            },
            {
                "name": "datadog",
                "provider": {"datadog": {
                    "apiVersion": "v2", "aggregator": "percentile", "interval": "10m", "requestTimeout": "5s",
                    "queries": {"a": "sum:requests.error{*}", "b": "sum:requests{*}"}, "formula": "a/b",
                    "secretRef": {"name": "dd", "namespaced": true}
                }}
            },
            {
                "name": "cloudwatch",
                "provider": {"cloudWatch": {
                    "interval": "15m",
                    "metricDataQueries": [
                        {"id": "rate", "expression": "errors / requests", "label": "ratio", "returnData": true, "period": "300"},
                        {"id": "errors", "returnData": false, "metricStat": {
                            "metric": {"namespace": "AWS/ApplicationELB", "metricName": "HTTPCode_Target_5XX_Count",
                                       "dimensions": [{"name": "LoadBalancer", "value": "lb"}]},
                            "period": 300, "stat": "Sum", "unit": "Count"
                        }}
                    ]
                }}
            },
            {"name": "newrelic", "provider": {"newRelic": {"profile": "nr", "query": "SELECT 1", "timeout": 3}}},
            {"name": "wavefront", "provider": {"wavefront": {"address": "w.example", "query": "ts(x)"}}},
            {"name": "graphite", "provider": {"graphite": {"address": "http://g", "query": "target"}}},
            {"name": "influxdb", "provider": {"influxdb": {"profile": "i", "query": "from(bucket: \"b\")"}}},
            {"name": "skywalking", "provider": {"skywalking": {"address": "http://s", "query": "q", "interval": "5m"}}},
            {"name": "plugin", "provider": {"plugin": {"argoproj-labs/sample": {"address": "http://p", "nested": {"k": [1]}}}}}
        ]
    },
    "status": {
        "phase": "Running",
        "message": "still measuring",
        "startedAt": "2024-05-01T10:00:00Z",
        "completedAt": "2024-05-01T10:10:00Z",
        "runSummary": {"count": 12, "successful": 10, "failed": 1, "inconclusive": 0, "error": 1},
        "dryRunSummary": {"count": 0},
        "metricResults": [{
            "name": "success-rate",
            "phase": "Running",
            "message": "",
            "count": 2, "successful": 1, "failed": 1, "inconclusive": 0, "error": 1,
            "consecutiveError": 0, "consecutiveSuccess": 1,
            "dryRun": false,
            "metadata": {"ResolvedPrometheusQuery": "sum(rate(x[5m]))"},
            "measurements": [
                {"phase": "Successful", "value": "[0.99]", "startedAt": "2024-05-01T10:00:30Z", "finishedAt": "2024-05-01T10:00:31Z"},
                {"phase": "Error", "message": "connection refused", "startedAt": "2024-05-01T10:01:31Z", "finishedAt": "2024-05-01T10:01:31Z"},
                {"phase": "Running", "startedAt": "2024-05-01T10:02:31Z", "resumeAt": "2024-05-01T10:02:41Z",
                 "metadata": {"job-name": "abc.job.1", "job-namespace": "default"}}
            ]
        }]
    }
}"#;

fn sample_analysis_run() -> Value {
    serde_json::from_str(SAMPLE_ANALYSIS_RUN).expect("sample is JSON")
}

#[test]
fn hand_written_analysis_run_with_every_provider_round_trips_exactly() {
    let run = sample_analysis_run();
    assert_round_trip::<AnalysisRun>("sample AnalysisRun", &run);
    let typed: AnalysisRun = serde_json::from_value(run).expect("valid run");
    let kinds: Vec<&str> = typed
        .spec
        .metrics
        .iter()
        .map(|m| m.provider.kind_name().expect("one provider per metric"))
        .collect();
    assert_eq!(
        kinds,
        [
            "prometheus",
            "web",
            "job",
            "kayenta",
            "datadog",
            "cloudWatch",
            "newRelic",
            "wavefront",
            "graphite",
            "influxdb",
            "skywalking",
            "plugin"
        ]
    );
}

#[test]
fn run_status_accessors_read_phases_and_measurements() {
    let run: AnalysisRun = serde_json::from_value(sample_analysis_run()).expect("valid run");
    let status = run.status.as_ref().expect("status");
    assert_eq!(status.phase(), Ok(Some(AnalysisPhase::Running)));
    assert!(!run.is_completed());
    let result = status
        .metric_result("success-rate")
        .expect("result for success-rate");
    assert_eq!(result.phase(), Ok(Some(AnalysisPhase::Running)));
    let last = result.last_measurement().expect("measurements");
    assert!(last.is_in_flight());
    assert_eq!(last.phase(), Ok(Some(AnalysisPhase::Running)));
    assert!(status.metric_result("absent").is_none());
    assert!(!run.spec.terminate_requested());
}

#[test]
fn empty_phase_is_unset_and_unknown_phase_is_an_error() {
    let mut status = AnalysisRunStatus::default();
    assert_eq!(status.phase(), Ok(None));
    status.phase = "Paused".into();
    assert_eq!(
        status.phase(),
        Err(AnalysisFieldError::UnknownStatus {
            field: "status.phase",
            value: "Paused".into()
        })
    );
    status.phase = AnalysisPhase::Failed.into();
    assert_eq!(status.phase(), Ok(Some(AnalysisPhase::Failed)));
}

#[test]
fn phases_parse_from_their_own_rendering() {
    for phase in AnalysisPhase::ALL {
        assert_eq!(phase.to_string().parse::<AnalysisPhase>(), Ok(phase));
    }
    assert!("successful".parse::<AnalysisPhase>().is_err());
}

#[test]
fn only_verdict_phases_are_completed() {
    let completed: Vec<_> = AnalysisPhase::ALL
        .into_iter()
        .filter(|p| p.is_completed())
        .collect();
    assert_eq!(
        completed,
        [
            AnalysisPhase::Successful,
            AnalysisPhase::Failed,
            AnalysisPhase::Error,
            AnalysisPhase::Inconclusive
        ]
    );
}

#[test]
fn worst_phase_follows_failed_error_inconclusive_pending_running_successful() {
    use AnalysisPhase::*;
    let worst_first = [Failed, Error, Inconclusive, Pending, Running, Successful];
    for (i, worse) in worst_first.iter().enumerate() {
        for better in &worst_first[i + 1..] {
            assert_eq!(worse.worse(*better), *worse, "{worse} vs {better}");
            assert_eq!(better.worse(*worse), *worse, "{better} vs {worse}");
        }
    }
    assert_eq!(
        AnalysisPhase::worst([Successful, Inconclusive, Running, Error]),
        Some(Error)
    );
    assert_eq!(AnalysisPhase::worst([Successful, Running]), Some(Running));
    assert_eq!(AnalysisPhase::worst([]), None);
}

fn metric(fields: Value) -> Metric {
    let mut doc = json!({"name": "m", "provider": {"prometheus": {"query": "up"}}});
    if let (Some(doc), Some(fields)) = (doc.as_object_mut(), fields.as_object()) {
        doc.extend(fields.clone());
    }
    serde_json::from_value(doc).expect("valid metric")
}

#[test]
fn limits_default_when_unset() {
    assert_eq!(
        metric(json!({})).limits(),
        Ok(MetricLimits {
            failure: defaults::FAILURE_LIMIT,
            inconclusive: defaults::INCONCLUSIVE_LIMIT,
            consecutive_error: 4,
            consecutive_success: defaults::CONSECUTIVE_SUCCESS_LIMIT,
        })
    );
}

#[test]
fn limits_read_integers_and_numeric_strings() {
    let m = metric(json!({
        "failureLimit": -1, "inconclusiveLimit": "3", "consecutiveErrorLimit": "0", "consecutiveSuccessLimit": 2
    }));
    assert_eq!(
        m.limits(),
        Ok(MetricLimits {
            failure: -1,
            inconclusive: 3,
            consecutive_error: 0,
            consecutive_success: 2
        })
    );
}

#[test]
fn templated_limit_is_an_unresolved_placeholder_error() {
    let m = metric(json!({"failureLimit": "{{ args.limit }}"}));
    assert_eq!(
        m.failure_limit(),
        Err(AnalysisFieldError::UnresolvedPlaceholder {
            metric: "m".into(),
            field: "failureLimit",
            value: "{{ args.limit }}".into()
        })
    );
    let message = m.limits().expect_err("placeholder").to_string();
    assert!(
        message.contains("\"m\"") && message.contains("failureLimit"),
        "{message}"
    );
}

#[test]
fn non_numeric_limit_is_an_error_naming_the_field() {
    let m = metric(json!({"consecutiveErrorLimit": "50%"}));
    assert_eq!(
        m.consecutive_error_limit(),
        Err(AnalysisFieldError::NotAnInteger {
            metric: "m".into(),
            field: "consecutiveErrorLimit",
            value: "50%".into()
        })
    );
}

#[test]
fn effective_count_is_one_without_interval_and_unbounded_with_one() {
    assert_eq!(
        metric(json!({})).effective_count(),
        Ok(MeasurementCount::Bounded(1))
    );
    assert_eq!(
        metric(json!({"count": 0})).effective_count(),
        Ok(MeasurementCount::Bounded(1))
    );
    assert_eq!(
        metric(json!({"interval": "1m"})).effective_count(),
        Ok(MeasurementCount::Unbounded)
    );
    assert_eq!(
        metric(json!({"interval": "1m", "count": "0"})).effective_count(),
        Ok(MeasurementCount::Unbounded)
    );
    // An empty interval is no interval.
    assert_eq!(
        metric(json!({"interval": ""})).effective_count(),
        Ok(MeasurementCount::Bounded(1))
    );
    assert_eq!(
        metric(json!({"interval": "1m", "count": 5})).effective_count(),
        Ok(MeasurementCount::Bounded(5))
    );
    assert_eq!(
        metric(json!({"count": "3"})).effective_count(),
        Ok(MeasurementCount::Bounded(3))
    );
}

#[test]
fn effective_count_rejects_negative_and_templated_counts() {
    assert_eq!(
        metric(json!({"count": -2})).effective_count(),
        Err(AnalysisFieldError::NegativeCount {
            metric: "m".into(),
            value: -2
        })
    );
    assert!(matches!(
        metric(json!({"count": "{{args.n}}"})).effective_count(),
        Err(AnalysisFieldError::UnresolvedPlaceholder { field: "count", .. })
    ));
}

#[test]
fn durations_parse_and_report_the_metric_and_field() {
    let m = metric(json!({"interval": "1m30s", "initialDelay": ""}));
    assert_eq!(m.interval_duration(), Ok(Some(Duration::from_secs(90))));
    assert_eq!(m.initial_delay_duration(), Ok(None));
    assert_eq!(metric(json!({})).interval_duration(), Ok(None));

    let bad = metric(json!({"initialDelay": "5x"}));
    let err = bad.initial_delay_duration().expect_err("not a duration");
    assert!(
        matches!(&err, AnalysisFieldError::InvalidDuration { metric, field: "initialDelay", .. } if metric == "m"),
        "{err:?}"
    );
    assert!(err.to_string().contains("initialDelay"), "{err}");

    assert!(matches!(
        metric(json!({"interval": "{{args.every}}"})).interval_duration(),
        Err(AnalysisFieldError::UnresolvedPlaceholder {
            field: "interval",
            ..
        })
    ));
}

#[test]
fn measurement_count_is_reached_only_when_bounded() {
    assert!(!MeasurementCount::Bounded(3).is_reached(2));
    assert!(MeasurementCount::Bounded(3).is_reached(3));
    assert!(!MeasurementCount::Unbounded.is_reached(i32::MAX));
}

#[test]
fn provider_kind_requires_exactly_one_member() {
    assert_eq!(
        MetricProvider::default().kind_name(),
        Err(AnalysisFieldError::NoProvider)
    );
    let both = MetricProvider {
        prometheus: Some(PrometheusMetric::default()),
        web: Some(WebMetric {
            url: "http://x".into(),
            ..WebMetric::default()
        }),
        ..MetricProvider::default()
    };
    assert_eq!(
        both.kind_name(),
        Err(AnalysisFieldError::MultipleProviders(vec![
            "prometheus",
            "web"
        ]))
    );
    let new_relic = MetricProvider {
        new_relic: Some(NewRelicMetric {
            query: "SELECT 1".into(),
            ..NewRelicMetric::default()
        }),
        ..MetricProvider::default()
    };
    assert_eq!(new_relic.kind(), Ok(ProviderKind::NewRelic));
    assert_eq!(new_relic.kind_name(), Ok("newRelic"));
}

#[test]
fn empty_plugin_map_is_no_provider_and_two_plugins_are_an_error() {
    let empty: MetricProvider = serde_json::from_value(json!({"plugin": {}})).expect("valid");
    assert_eq!(empty.kind(), Err(AnalysisFieldError::NoProvider));
    assert_eq!(empty.plugin(), Ok(None));

    let one: MetricProvider =
        serde_json::from_value(json!({"plugin": {"acme/metrics": {"q": 1}}})).expect("valid");
    assert_eq!(one.kind_name(), Ok("plugin"));
    assert_eq!(one.plugin(), Ok(Some(("acme/metrics", &json!({"q": 1})))));

    let two: MetricProvider =
        serde_json::from_value(json!({"plugin": {"a/x": {}, "b/y": {}}})).expect("valid");
    assert_eq!(
        two.plugin(),
        Err(AnalysisFieldError::MultiplePlugins(vec![
            "a/x".into(),
            "b/y".into()
        ]))
    );
}

#[test]
fn provider_accessors_fall_back_to_defaults() {
    let web = WebMetric {
        url: "http://x".into(),
        ..WebMetric::default()
    };
    assert_eq!(
        (web.method(), web.json_path(), web.timeout_seconds()),
        ("GET", "{$}", 10)
    );
    assert_eq!(PrometheusMetric::default().timeout_seconds(), 30);
    let dd = DatadogMetric::default();
    assert_eq!(
        (dd.api_version(), dd.interval(), dd.request_timeout()),
        (DatadogApiVersion::V1, "5m", "10s")
    );
    let nr = NewRelicMetric::default();
    assert_eq!((nr.profile(), nr.timeout_seconds()), ("newrelic", 5));
    assert_eq!(InfluxdbMetric::default().profile(), "influxdb");
    assert_eq!(CloudWatchMetric::default().interval(), "5m");
}

fn spec_schema(
    crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> Value {
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .expect("CRD has a schema");
    serde_json::to_value(schema).expect("schema serializes")["properties"]["spec"].clone()
}

#[test]
fn cluster_template_spec_schema_is_the_template_spec_schema() {
    // Only the descriptions of the two spec types themselves may differ.
    let mut namespaced = spec_schema(&AnalysisTemplate::crd());
    let mut cluster = spec_schema(&ClusterAnalysisTemplate::crd());
    for spec in [&mut namespaced, &mut cluster] {
        if let Some(spec) = spec.as_object_mut() {
            spec.remove("description");
        }
    }
    assert!(
        namespaced["properties"]["metrics"].is_object(),
        "{namespaced}"
    );
    assert_eq!(cluster, namespaced);
}

#[test]
fn datadog_schema_has_upstream_enums_and_defaults_without_null() {
    let spec = spec_schema(&AnalysisTemplate::crd());
    let datadog = &spec["properties"]["metrics"]["items"]["properties"]["provider"]["properties"]["datadog"]
        ["properties"];
    assert_eq!(datadog["apiVersion"]["enum"], json!(["v1", "v2"]));
    assert_eq!(datadog["apiVersion"]["default"], json!("v1"));
    assert_eq!(
        datadog["aggregator"]["enum"],
        json!([
            "avg",
            "min",
            "max",
            "sum",
            "last",
            "percentile",
            "mean",
            "l2norm",
            "area"
        ])
    );
    assert_eq!(datadog["interval"]["default"], json!("5m"));
    assert_eq!(datadog["requestTimeout"]["default"], json!("10s"));
}

#[test]
fn free_form_fields_preserve_unknown_fields() {
    let spec = spec_schema(&AnalysisTemplate::crd());
    let provider = &spec["properties"]["metrics"]["items"]["properties"]["provider"]["properties"];
    for free_form in [
        &provider["plugin"],
        &provider["web"]["properties"]["jsonBody"],
    ] {
        assert_eq!(free_form["type"], json!("object"), "{free_form}");
        assert_eq!(
            free_form["x-kubernetes-preserve-unknown-fields"],
            json!(true),
            "{free_form}"
        );
    }
}

#[test]
fn crd_names_and_columns_match_upstream() {
    let at = AnalysisTemplate::crd();
    assert_eq!(at.spec.scope, "Namespaced");
    assert_eq!(at.spec.names.short_names, Some(vec!["at".to_owned()]));
    let cat = ClusterAnalysisTemplate::crd();
    assert_eq!(cat.spec.scope, "Cluster");
    assert_eq!(cat.spec.names.short_names, Some(vec!["cat".to_owned()]));
    let ar = AnalysisRun::crd();
    assert_eq!(ar.spec.names.short_names, Some(vec!["ar".to_owned()]));
    let columns: Vec<(String, String)> = ar.spec.versions[0]
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| (c.name.clone(), c.json_path.clone()))
        .collect();
    assert_eq!(
        columns,
        [
            ("Status".to_owned(), ".status.phase".to_owned()),
            ("Age".to_owned(), ".metadata.creationTimestamp".to_owned())
        ]
    );
}
