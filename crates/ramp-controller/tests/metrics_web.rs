//! The web provider against an in-test HTTP server on loopback: JSON and non-JSON answers,
//! jsonPath, methods and bodies, headers (with secrets), non-2xx answers and timeouts.

// Named so that `cargo nextest run -p ramp-controller metrics` selects these tests.
mod metrics_web {

    use axum::Router;
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{HeaderMap, Method, StatusCode, Uri};
    use axum::response::{IntoResponse, Response};
    use axum::routing::any;
    use k8s_openapi::jiff::Timestamp;
    use ramp_api::analysis::{
        AnalysisPhase, AnalysisRun, AnalysisRunSpec, Argument, Measurement, Metric,
        MetricProvider as ProviderUnion, SecretKeyRef, ValueFrom, WebMetric, WebMetricHeader,
    };
    use ramp_controller::metrics::{ProviderConfig, Providers};
    use ramp_core::analysis::args::{ResolvedArgs, resolve_args};
    use ramp_core::analysis::run::MeasurementTask;
    use serde_json::json;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    #[derive(Clone, Debug)]
    struct Seen {
        method: Method,
        path: String,
        headers: HeaderMap,
        body: Vec<u8>,
    }

    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<Seen>>>);

    impl Recorder {
        fn all(&self) -> Vec<Seen> {
            self.0.lock().expect("recorder lock").clone()
        }
    }

    async fn answer(
        State(recorder): State<Recorder>,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        recorder.0.lock().expect("recorder lock").push(Seen {
            method,
            path: uri.path().to_owned(),
            headers,
            body: body.to_vec(),
        });
        match uri.path() {
        "/status" => (
            [("content-type", "application/json")],
            json!({"data": {"ok": true, "successPercent": 0.97, "rates": [0.9, 0.99]}, "major": "1"})
                .to_string(),
        )
            .into_response(),
        "/text" => "healthy".into_response(),
        "/number" => "42".into_response(),
        "/broken" => (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response(),
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            "late".into_response()
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
    }

    async fn serve(recorder: Recorder) -> String {
        let app = Router::new()
            .route("/{*path}", any(answer))
            .with_state(recorder);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("fake endpoint serves");
        });
        format!("http://{addr}")
    }

    fn web_metric(web: WebMetric) -> Metric {
        Metric {
            name: "web".into(),
            provider: ProviderUnion {
                web: Some(web),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    async fn measure_with_args(
        metric: Metric,
        args: Vec<Argument>,
        resolved: &ResolvedArgs,
    ) -> Measurement {
        let mut run = AnalysisRun::new(
            "web-run",
            AnalysisRunSpec {
                metrics: vec![metric],
                args: Some(args),
                ..Default::default()
            },
        );
        run.metadata.namespace = Some("default".into());
        Providers::new(ProviderConfig::default(), None)
            .run_task(
                MeasurementTask::Measure {
                    metric: "web".into(),
                },
                &run,
                resolved,
                Timestamp::now(),
            )
            .await
            .measurement
    }

    async fn measure(metric: Metric) -> Measurement {
        measure_with_args(metric, vec![], &ResolvedArgs::default()).await
    }

    fn phase(m: &Measurement) -> AnalysisPhase {
        m.phase().ok().flatten().unwrap_or(AnalysisPhase::Pending)
    }

    #[tokio::test]
    async fn json_path_selects_the_result_for_conditions() {
        let base = serve(Recorder::default()).await;
        let mut metric = web_metric(WebMetric {
            url: format!("{base}/status"),
            json_path: Some("{$.data}".into()),
            ..Default::default()
        });
        metric.success_condition = Some("result.ok && result.successPercent >= 0.90".into());
        let m = measure(metric).await;
        assert_eq!(phase(&m), AnalysisPhase::Successful, "{m:?}");
        assert_eq!(
            m.value.as_deref(),
            Some(r#"{"ok":true,"rates":[0.9,0.99],"successPercent":0.97}"#)
        );

        let mut metric = web_metric(WebMetric {
            url: format!("{base}/status"),
            json_path: Some("{$.data.rates[1]}".into()),
            ..Default::default()
        });
        metric.success_condition = Some("result >= 0.95".into());
        let m = measure(metric).await;
        assert_eq!(phase(&m), AnalysisPhase::Successful, "{m:?}");
        assert_eq!(m.value.as_deref(), Some("0.99"));
    }

    #[tokio::test]
    async fn default_json_path_is_the_whole_document() {
        let base = serve(Recorder::default()).await;
        let mut metric = web_metric(WebMetric {
            url: format!("{base}/status"),
            ..Default::default()
        });
        metric.success_condition = Some("result.major == '1'".into());
        assert_eq!(phase(&measure(metric).await), AnalysisPhase::Successful);
    }

    #[tokio::test]
    async fn non_json_body_is_a_string_result() {
        let base = serve(Recorder::default()).await;
        let mut metric = web_metric(WebMetric {
            url: format!("{base}/text"),
            ..Default::default()
        });
        metric.success_condition = Some("result == 'healthy'".into());
        let m = measure(metric).await;
        assert_eq!(phase(&m), AnalysisPhase::Successful, "{m:?}");
        assert_eq!(m.value.as_deref(), Some("healthy"));
    }

    #[tokio::test]
    async fn missing_json_path_member_is_an_error() {
        let base = serve(Recorder::default()).await;
        let m = measure(web_metric(WebMetric {
            url: format!("{base}/status"),
            json_path: Some("{$.data.missing}".into()),
            ..Default::default()
        }))
        .await;
        assert_eq!(phase(&m), AnalysisPhase::Error);
        assert!(
            m.message
                .is_some_and(|msg| msg.contains("missing is not found"))
        );
    }

    #[tokio::test]
    async fn non_2xx_answer_is_an_error_with_the_code() {
        let base = serve(Recorder::default()).await;
        let m = measure(web_metric(WebMetric {
            url: format!("{base}/broken"),
            ..Default::default()
        }))
        .await;
        assert_eq!(phase(&m), AnalysisPhase::Error);
        assert_eq!(
            m.message.as_deref(),
            Some("received non 2xx response code: 500")
        );
    }

    #[tokio::test]
    async fn timeout_seconds_bounds_the_request() {
        let base = serve(Recorder::default()).await;
        let started = std::time::Instant::now();
        let m = measure(web_metric(WebMetric {
            url: format!("{base}/slow"),
            timeout_seconds: Some(1),
            ..Default::default()
        }))
        .await;
        assert_eq!(phase(&m), AnalysisPhase::Error, "{m:?}");
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "timeoutSeconds was not applied: took {:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn post_with_json_body_sets_content_type_and_secret_headers() {
        let recorder = Recorder::default();
        let base = serve(recorder.clone()).await;
        let metric = web_metric(WebMetric {
            url: format!("{base}/number"),
            method: Some("POST".into()),
            json_body: Some(json!({"service": "{{args.service}}"})),
            headers: Some(vec![WebMetricHeader {
                key: "X-Api-Key".into(),
                value: "{{args.api-key}}".into(),
            }]),
            ..Default::default()
        });
        let args = vec![
            Argument {
                name: "service".into(),
                value: Some("checkout".into()),
                value_from: None,
            },
            Argument {
                name: "api-key".into(),
                value: None,
                value_from: Some(ValueFrom {
                    field_ref: None,
                    secret_key_ref: Some(SecretKeyRef {
                        key: "key".into(),
                        name: "web-creds".into(),
                    }),
                }),
            },
        ];
        let resolved = resolve_args(&args, |_| Ok("k-987".to_owned())).expect("resolves");
        let m = measure_with_args(metric, args, &resolved).await;
        assert_eq!(phase(&m), AnalysisPhase::Successful, "{m:?}");
        assert_eq!(m.value.as_deref(), Some("42"));
        let seen = recorder.all();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].method, Method::POST);
        assert_eq!(seen[0].path, "/number");
        assert_eq!(
            seen[0]
                .headers
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/json")
        );
        assert_eq!(
            seen[0]
                .headers
                .get("x-api-key")
                .and_then(|v| v.to_str().ok()),
            Some("k-987")
        );
        let body: serde_json::Value = serde_json::from_slice(&seen[0].body).expect("JSON body");
        assert_eq!(body, json!({"service": "checkout"}));
    }

    #[tokio::test]
    async fn put_with_string_body_is_sent_as_is() {
        let recorder = Recorder::default();
        let base = serve(recorder.clone()).await;
        let m = measure(web_metric(WebMetric {
            url: format!("{base}/text"),
            method: Some("PUT".into()),
            body: Some("ping".into()),
            ..Default::default()
        }))
        .await;
        assert_eq!(phase(&m), AnalysisPhase::Successful);
        let seen = recorder.all();
        assert_eq!(seen[0].method, Method::PUT);
        assert_eq!(seen[0].body, b"ping");
    }

    #[tokio::test]
    async fn a_body_with_get_or_an_unknown_method_is_an_error_before_any_request() {
        let recorder = Recorder::default();
        let base = serve(recorder.clone()).await;
        let m = measure(web_metric(WebMetric {
            url: format!("{base}/text"),
            body: Some("ping".into()),
            ..Default::default()
        }))
        .await;
        assert_eq!(phase(&m), AnalysisPhase::Error);
        let m = measure(web_metric(WebMetric {
            url: format!("{base}/text"),
            method: Some("DELETE".into()),
            ..Default::default()
        }))
        .await;
        assert_eq!(phase(&m), AnalysisPhase::Error);
        assert!(recorder.all().is_empty(), "no request was sent");
    }

    #[tokio::test]
    async fn a_secret_echoed_in_a_result_is_redacted_in_status() {
        let base = serve(Recorder::default()).await;
        // The text endpoint answers "healthy"; make that the secret to see the value redacted.
        let args = vec![Argument {
            name: "word".into(),
            value: None,
            value_from: Some(ValueFrom {
                field_ref: None,
                secret_key_ref: Some(SecretKeyRef {
                    key: "k".into(),
                    name: "s".into(),
                }),
            }),
        }];
        let resolved = resolve_args(&args, |_| Ok("healthy".to_owned())).expect("resolves");
        let mut metric = web_metric(WebMetric {
            url: format!("{base}/text"),
            ..Default::default()
        });
        metric.success_condition = Some("result == '{{args.word}}'".into());
        let m = measure_with_args(metric, args, &resolved).await;
        assert_eq!(phase(&m), AnalysisPhase::Successful, "{m:?}");
        assert_eq!(m.value.as_deref(), Some("*****"));
    }

    #[tokio::test]
    async fn basic_auth_is_sent_as_an_authorization_header() {
        let recorder = Recorder::default();
        let base = serve(recorder.clone()).await;
        let m = measure(web_metric(WebMetric {
            url: format!("{base}/text"),
            authentication: Some(ramp_api::analysis::Authentication {
                basic_auth: Some(ramp_api::analysis::BasicAuth {
                    username: Some("user".into()),
                    password: Some("pass".into()),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }))
        .await;
        assert_eq!(phase(&m), AnalysisPhase::Successful, "{m:?}");
        let seen = recorder.all();
        assert_eq!(
            seen[0]
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok()),
            Some("Basic dXNlcjpwYXNz")
        );
    }
}
