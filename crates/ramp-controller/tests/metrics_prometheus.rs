//! The Prometheus provider against an in-test HTTP server on loopback that answers like
//! Prometheus's `/api/v1/query` and `/api/v1/query_range`, and records what it was sent.

// Named so that `cargo nextest run -p ramp-controller metrics` selects these tests.
mod metrics_prometheus {

    use axum::Router;
    use axum::extract::{Form, Query, State};
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::{IntoResponse, Json, Response};
    use axum::routing::{get, post};
    use k8s_openapi::jiff::Timestamp;
    use ramp_api::analysis::{
        AnalysisPhase, AnalysisRun, AnalysisRunSpec, Argument, Authentication, Measurement, Metric,
        MetricProvider as ProviderUnion, OAuth2Config, PrometheusMetric, PrometheusRangeQueryArgs,
        SecretKeyRef, ValueFrom, WebMetricHeader,
    };
    use ramp_controller::metrics::{ProviderConfig, Providers};
    use ramp_core::analysis::args::{ResolvedArgs, resolve_args};
    use ramp_core::analysis::run::{MeasurementOutcome, MeasurementTask};
    use serde_json::{Value, json};
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    #[derive(Clone, Debug)]
    struct Seen {
        path: String,
        params: HashMap<String, String>,
        headers: HeaderMap,
    }

    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<Seen>>>);

    impl Recorder {
        fn push(&self, seen: Seen) {
            self.0.lock().expect("recorder lock").push(seen);
        }
        fn all(&self) -> Vec<Seen> {
            self.0.lock().expect("recorder lock").clone()
        }
    }

    fn vector(values: &[&str]) -> Value {
        let result: Vec<Value> = values
            .iter()
            .enumerate()
            .map(
                |(i, v)| json!({"metric": {"pod": format!("p{i}")}, "value": [1_800_000_000.0, v]}),
            )
            .collect();
        json!({"status": "success", "data": {"resultType": "vector", "result": result}})
    }

    async fn instant_query(
        State(recorder): State<Recorder>,
        headers: HeaderMap,
        Query(params): Query<HashMap<String, String>>,
    ) -> Response {
        let query = params.get("query").cloned().unwrap_or_default();
        recorder.push(Seen {
            path: "/api/v1/query".into(),
            params,
            headers,
        });
        match query.as_str() {
        "vector" => Json(vector(&["0.99", "0.97"])).into_response(),
        "empty" => Json(vector(&[])).into_response(),
        "nan" => Json(vector(&["NaN", "+Inf"])).into_response(),
        "scalar" => Json(json!({"status": "success", "data": {"resultType": "scalar", "result": [1_800_000_000.0, "0.5"]}})).into_response(),
        "string" => Json(json!({"status": "success", "data": {"resultType": "string", "result": [1_800_000_000.0, "up"]}})).into_response(),
        "slow" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Json(vector(&["1"])).into_response()
        }
        _ => (
            StatusCode::BAD_REQUEST,
            Json(json!({"status": "error", "errorType": "bad_data", "error": format!("parse error in {query:?}")})),
        )
            .into_response(),
    }
    }

    async fn range_query(
        State(recorder): State<Recorder>,
        headers: HeaderMap,
        Query(params): Query<HashMap<String, String>>,
    ) -> Response {
        recorder.push(Seen {
            path: "/api/v1/query_range".into(),
            params,
            headers,
        });
        Json(
        json!({"status": "success", "data": {"resultType": "matrix", "result": [
            {"metric": {"pod": "a"}, "values": [[1_800_000_000.0, "1"], [1_800_000_060.0, "2"]]},
            {"metric": {"pod": "b"}, "values": [[1_800_000_000.0, "3"]]}
        ]}}),
    )
    .into_response()
    }

    async fn token(
        State(recorder): State<Recorder>,
        headers: HeaderMap,
        Form(form): Form<HashMap<String, String>>,
    ) -> Response {
        recorder.push(Seen {
            path: "/token".into(),
            params: form.clone(),
            headers,
        });
        if form.get("client_secret").map(String::as_str) == Some("shh") {
            Json(json!({"access_token": "tok-123", "token_type": "bearer"})).into_response()
        } else {
            StatusCode::UNAUTHORIZED.into_response()
        }
    }

    /// Serves the fake Prometheus; returns its base URL.
    async fn serve(recorder: Recorder) -> String {
        let app = Router::new()
            .route("/api/v1/query", get(instant_query).post(instant_query))
            .route("/api/v1/query_range", get(range_query))
            .route("/token", post(token))
            .with_state(recorder);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("fake prometheus serves");
        });
        format!("http://{addr}")
    }

    fn prometheus_metric(address: Option<&str>, query: &str) -> Metric {
        Metric {
            name: "success-rate".into(),
            provider: ProviderUnion {
                prometheus: Some(PrometheusMetric {
                    address: address.map(Into::into),
                    query: Some(query.into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn run_of(metric: Metric, args: Vec<Argument>) -> AnalysisRun {
        let mut run = AnalysisRun::new(
            "web-abc-1-2",
            AnalysisRunSpec {
                metrics: vec![metric],
                args: Some(args),
                ..Default::default()
            },
        );
        run.metadata.namespace = Some("default".into());
        run.metadata.uid = Some("uid-1".into());
        run
    }

    async fn measure_with(
        providers: &Providers,
        run: &AnalysisRun,
        args: &ResolvedArgs,
    ) -> MeasurementOutcome {
        providers
            .run_task(
                MeasurementTask::Measure {
                    metric: run.spec.metrics[0].name.clone(),
                },
                run,
                args,
                Timestamp::now(),
            )
            .await
    }

    async fn measure(metric: Metric) -> Measurement {
        let run = run_of(metric, vec![]);
        let providers = Providers::new(ProviderConfig::default(), None);
        measure_with(&providers, &run, &ResolvedArgs::default())
            .await
            .measurement
    }

    fn phase(m: &Measurement) -> AnalysisPhase {
        m.phase().ok().flatten().unwrap_or(AnalysisPhase::Pending)
    }

    #[tokio::test]
    async fn vector_result_is_a_list_with_one_value_per_series() {
        let base = serve(Recorder::default()).await;
        let mut metric = prometheus_metric(Some(&base), "vector");
        metric.success_condition = Some("len(result) == 2 && all(result, # >= 0.95)".into());
        let m = measure(metric).await;
        assert_eq!(phase(&m), AnalysisPhase::Successful, "{m:?}");
        assert_eq!(m.value.as_deref(), Some("[0.99,0.97]"));
        assert!(m.finished_at.is_some());
    }

    #[tokio::test]
    async fn failing_condition_makes_a_failed_measurement() {
        let base = serve(Recorder::default()).await;
        let mut metric = prometheus_metric(Some(&base), "vector");
        metric.success_condition = Some("result[0] >= 0.995".into());
        assert_eq!(phase(&measure(metric).await), AnalysisPhase::Failed);
    }

    #[tokio::test]
    async fn scalar_result_is_a_number() {
        let base = serve(Recorder::default()).await;
        let mut metric = prometheus_metric(Some(&base), "scalar");
        metric.success_condition = Some("result == 0.5".into());
        let m = measure(metric).await;
        assert_eq!(phase(&m), AnalysisPhase::Successful, "{m:?}");
        assert_eq!(m.value.as_deref(), Some("0.5"));
    }

    #[tokio::test]
    async fn nan_and_inf_samples_are_kept() {
        let base = serve(Recorder::default()).await;
        let mut metric = prometheus_metric(Some(&base), "nan");
        metric.success_condition = Some("isNaN(result[0]) && isInf(result[1])".into());
        let m = measure(metric).await;
        assert_eq!(phase(&m), AnalysisPhase::Successful, "{m:?}");
        assert_eq!(m.value.as_deref(), Some("[NaN,+Inf]"));
    }

    #[tokio::test]
    async fn empty_vector_with_an_index_condition_is_an_error_saying_so() {
        let base = serve(Recorder::default()).await;
        let mut metric = prometheus_metric(Some(&base), "empty");
        metric.success_condition = Some("result[0] >= 0.95".into());
        let m = measure(metric).await;
        assert_eq!(phase(&m), AnalysisPhase::Error);
        assert!(
            m.message
                .as_deref()
                .is_some_and(|msg| msg.starts_with("metric result is nil or empty")),
            "{m:?}"
        );
    }

    #[tokio::test]
    async fn prometheus_error_response_is_an_error_measurement() {
        let base = serve(Recorder::default()).await;
        let m = measure(prometheus_metric(Some(&base), "sum(")).await;
        assert_eq!(phase(&m), AnalysisPhase::Error);
        let message = m.message.unwrap_or_default();
        assert!(message.contains("parse error"), "{message}");
    }

    #[tokio::test]
    async fn string_result_type_is_an_error_measurement() {
        let base = serve(Recorder::default()).await;
        let m = measure(prometheus_metric(Some(&base), "string")).await;
        assert_eq!(phase(&m), AnalysisPhase::Error, "{m:?}");
    }

    #[tokio::test]
    async fn unreachable_prometheus_is_an_error_measurement() {
        // A port nothing listens on: bind, note it, drop the listener.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let m = measure(prometheus_metric(Some(&format!("http://{addr}")), "vector")).await;
        assert_eq!(phase(&m), AnalysisPhase::Error);
        assert!(m.message.is_some_and(|msg| msg.contains(&addr.to_string())));
    }

    #[tokio::test]
    async fn timeout_gives_an_error_measurement_within_the_timeout() {
        let base = serve(Recorder::default()).await;
        let mut metric = prometheus_metric(Some(&base), "slow");
        if let Some(p) = metric.provider.prometheus.as_mut() {
            p.timeout = Some(1);
        }
        let started = std::time::Instant::now();
        let m = measure(metric).await;
        assert_eq!(phase(&m), AnalysisPhase::Error, "{m:?}");
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "the 1 s timeout was not applied: took {:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn default_address_comes_from_the_configuration() {
        let recorder = Recorder::default();
        let base = serve(recorder.clone()).await;
        let run = run_of(prometheus_metric(None, "vector"), vec![]);
        let providers = Providers::new(
            ProviderConfig {
                prometheus_address: Some(base),
            },
            None,
        );
        let outcome = measure_with(&providers, &run, &ResolvedArgs::default()).await;
        assert_eq!(phase(&outcome.measurement), AnalysisPhase::Successful);
        assert_eq!(recorder.all().len(), 1);
        assert_eq!(
            outcome
                .metric_metadata
                .get("ResolvedPrometheusQuery")
                .map(String::as_str),
            Some("vector")
        );
        let without = measure(prometheus_metric(None, "vector")).await;
        assert_eq!(phase(&without), AnalysisPhase::Error);
    }

    #[tokio::test]
    async fn headers_and_secret_args_are_sent_and_never_shown() {
        let recorder = Recorder::default();
        let base = serve(recorder.clone()).await;
        let mut metric = prometheus_metric(Some(&base), "{{args.query}}");
        if let Some(p) = metric.provider.prometheus.as_mut() {
            p.headers = Some(vec![
                WebMetricHeader {
                    key: "Authorization".into(),
                    value: "Bearer {{args.token}}".into(),
                },
                WebMetricHeader {
                    key: "X-Scope-OrgID".into(),
                    value: "tenant-1".into(),
                },
            ]);
        }
        let args = vec![
            Argument {
                name: "query".into(),
                value: Some("vector".into()),
                value_from: None,
            },
            Argument {
                name: "token".into(),
                value: None,
                value_from: Some(ValueFrom {
                    field_ref: None,
                    secret_key_ref: Some(SecretKeyRef {
                        key: "token".into(),
                        name: "prom".into(),
                    }),
                }),
            },
        ];
        let run = run_of(metric, args.clone());
        let resolved = resolve_args(&args, |_| Ok("s3cr3t-token".to_owned())).expect("resolves");
        let providers = Providers::new(ProviderConfig::default(), None);
        let outcome = measure_with(&providers, &run, &resolved).await;
        assert_eq!(phase(&outcome.measurement), AnalysisPhase::Successful);
        let seen = recorder.all();
        assert_eq!(seen.len(), 1, "one query was sent");
        assert_eq!(
            seen[0].params.get("query").map(String::as_str),
            Some("vector")
        );
        assert_eq!(
            seen[0]
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok()),
            Some("Bearer s3cr3t-token")
        );
        assert_eq!(
            seen[0]
                .headers
                .get("x-scope-orgid")
                .and_then(|v| v.to_str().ok()),
            Some("tenant-1")
        );
        let shown = format!("{:?}", outcome);
        assert!(!shown.contains("s3cr3t-token"), "{shown}");
    }

    #[tokio::test]
    async fn oauth2_client_credentials_token_is_sent_as_bearer() {
        let recorder = Recorder::default();
        let base = serve(recorder.clone()).await;
        let mut metric = prometheus_metric(Some(&base), "vector");
        let oauth = |secret: &str| Authentication {
            oauth2: Some(OAuth2Config {
                token_url: Some(format!("{base}/token")),
                client_id: Some("ramp".into()),
                client_secret: Some(secret.into()),
                scopes: Some(vec!["read".into(), "metrics".into()]),
            }),
            ..Default::default()
        };
        if let Some(p) = metric.provider.prometheus.as_mut() {
            p.authentication = Some(oauth("shh"));
        }
        let m = measure(metric.clone()).await;
        assert_eq!(phase(&m), AnalysisPhase::Successful, "{m:?}");
        let seen = recorder.all();
        let token_request = seen
            .iter()
            .find(|s| s.path == "/token")
            .expect("token requested");
        assert_eq!(
            token_request.params.get("grant_type").map(String::as_str),
            Some("client_credentials")
        );
        assert_eq!(
            token_request.params.get("client_id").map(String::as_str),
            Some("ramp")
        );
        assert_eq!(
            token_request.params.get("scope").map(String::as_str),
            Some("read metrics")
        );
        let query = seen
            .iter()
            .find(|s| s.path == "/api/v1/query")
            .expect("queried");
        assert_eq!(
            query
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok()),
            Some("Bearer tok-123")
        );

        if let Some(p) = metric.provider.prometheus.as_mut() {
            p.authentication = Some(oauth("wrong"));
        }
        let m = measure(metric).await;
        assert_eq!(phase(&m), AnalysisPhase::Error);
        assert!(m.message.is_some_and(|msg| msg.contains("401")));
    }

    #[tokio::test]
    async fn range_query_sends_evaluated_bounds_and_flattens_the_matrix() {
        let recorder = Recorder::default();
        let base = serve(recorder.clone()).await;
        let mut metric = prometheus_metric(Some(&base), "rate(x[1m])");
        if let Some(p) = metric.provider.prometheus.as_mut() {
            p.range_query = Some(PrometheusRangeQueryArgs {
                start: Some(r#"now() - duration("10m")"#.into()),
                end: Some("now()".into()),
                step: Some("1m".into()),
            });
        }
        metric.success_condition = Some("len(result) == 3 && max(result) == 3".into());
        let run = run_of(metric, vec![]);
        let providers = Providers::new(ProviderConfig::default(), None);
        let now = Timestamp::from_second(1_800_000_600).expect("valid");
        let outcome = providers
            .run_task(
                MeasurementTask::Measure {
                    metric: "success-rate".into(),
                },
                &run,
                &ResolvedArgs::default(),
                now,
            )
            .await;
        assert_eq!(
            phase(&outcome.measurement),
            AnalysisPhase::Successful,
            "{outcome:?}"
        );
        assert_eq!(outcome.measurement.value.as_deref(), Some("[1,2,3]"));
        let seen = recorder.all();
        let params = &seen[0].params;
        assert_eq!(seen[0].path, "/api/v1/query_range");
        assert_eq!(params.get("start").map(String::as_str), Some("1800000000"));
        assert_eq!(params.get("end").map(String::as_str), Some("1800000600"));
        assert_eq!(params.get("step").map(String::as_str), Some("60"));
    }

    #[tokio::test]
    async fn unsupported_providers_answer_an_error_naming_the_provider() {
        let metric = Metric {
            name: "dd".into(),
            provider: ProviderUnion {
                datadog: Some(Default::default()),
                ..Default::default()
            },
            ..Default::default()
        };
        let m = measure(metric).await;
        assert_eq!(phase(&m), AnalysisPhase::Error);
        assert_eq!(
            m.message.as_deref(),
            Some("the datadog provider is not supported by Ramp")
        );
        let metric = Metric {
            name: "nr".into(),
            provider: ProviderUnion {
                new_relic: Some(Default::default()),
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(
            measure(metric).await.message.as_deref(),
            Some("the newRelic provider is not supported by Ramp")
        );
    }

    #[tokio::test]
    async fn every_unsupported_provider_is_an_error_naming_it() {
        let cases: Vec<(&str, ProviderUnion)> = vec![
            (
                "cloudWatch",
                ProviderUnion {
                    cloud_watch: Some(Default::default()),
                    ..Default::default()
                },
            ),
            (
                "datadog",
                ProviderUnion {
                    datadog: Some(Default::default()),
                    ..Default::default()
                },
            ),
            (
                "graphite",
                ProviderUnion {
                    graphite: Some(Default::default()),
                    ..Default::default()
                },
            ),
            (
                "influxdb",
                ProviderUnion {
                    influxdb: Some(Default::default()),
                    ..Default::default()
                },
            ),
            (
                "kayenta",
                ProviderUnion {
                    kayenta: Some(Default::default()),
                    ..Default::default()
                },
            ),
            (
                "newRelic",
                ProviderUnion {
                    new_relic: Some(Default::default()),
                    ..Default::default()
                },
            ),
            (
                "skywalking",
                ProviderUnion {
                    skywalking: Some(Default::default()),
                    ..Default::default()
                },
            ),
            (
                "wavefront",
                ProviderUnion {
                    wavefront: Some(Default::default()),
                    ..Default::default()
                },
            ),
            (
                "plugin",
                ProviderUnion {
                    plugin: Some(std::collections::BTreeMap::from([(
                        "argoproj-labs/sample".to_owned(),
                        json!({}),
                    )])),
                    ..Default::default()
                },
            ),
        ];
        for (name, provider) in cases {
            let m = measure(Metric {
                name: "m".into(),
                provider,
                ..Default::default()
            })
            .await;
            assert_eq!(phase(&m), AnalysisPhase::Error, "{name}");
            assert_eq!(
                m.message,
                Some(format!("the {name} provider is not supported by Ramp")),
                "{name}"
            );
        }
    }
}
