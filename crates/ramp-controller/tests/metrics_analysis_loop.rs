//! The analysis loop end to end without a cluster: `ramp_core`'s plan and reconcile around the
//! real Prometheus provider talking to an in-test Prometheus on loopback. Time is driven by
//! the run's own `wake_at`, so the schedule is exercised without waiting for it.

// Named so that `cargo nextest run -p ramp-controller metrics` selects these tests.
mod metrics_analysis_loop {
    use axum::Router;
    use axum::extract::{Query, State};
    use axum::response::Json;
    use axum::routing::get;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    use k8s_openapi::jiff::Timestamp;
    use ramp_api::analysis::{
        AnalysisPhase, AnalysisRun, AnalysisRunSpec, AnalysisRunStatus, Argument, Metric,
        MetricProvider as ProviderUnion, PrometheusMetric,
    };
    use ramp_controller::metrics::{ProviderConfig, Providers};
    use ramp_core::analysis::args::{redacted_secret, resolve_args};
    use ramp_core::analysis::run::{RunUpdate, plan_measurements, reconcile};
    use serde_json::{Value, json};
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    /// Per-query answers, consumed in order; the last one repeats.
    #[derive(Clone, Default)]
    struct Script(Arc<Mutex<HashMap<String, Vec<String>>>>);

    async fn query(
        State(script): State<Script>,
        Query(params): Query<HashMap<String, String>>,
    ) -> Json<Value> {
        let query = params.get("query").cloned().unwrap_or_default();
        let mut answers = script.0.lock().expect("script lock");
        let queue = answers.entry(query).or_default();
        let value = if queue.len() > 1 {
            queue.remove(0)
        } else {
            queue.first().cloned().unwrap_or_else(|| "NaN".into())
        };
        Json(
            json!({"status": "success", "data": {"resultType": "vector", "result": [
                {"metric": {}, "value": [1_800_000_000.0, value]}
            ]}}),
        )
    }

    async fn serve(script: Script) -> String {
        let app = Router::new()
            .route("/api/v1/query", get(query))
            .with_state(script);
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

    fn gate(name: &str, query: &str, condition: &str, count: i32) -> Metric {
        Metric {
            name: name.into(),
            interval: Some("10s".into()),
            count: Some(IntOrString::Int(count)),
            success_condition: Some(condition.into()),
            provider: ProviderUnion {
                prometheus: Some(PrometheusMetric {
                    query: Some(query.into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    /// Runs plan → measure → reconcile until the run completes, jumping to each `wake_at`.
    async fn drive(run: &mut AnalysisRun, providers: &Providers) -> Vec<RunUpdate> {
        let args = resolve_args(
            run.spec.args.as_deref().unwrap_or_default(),
            redacted_secret,
        )
        .expect("args resolve");
        let mut now = Timestamp::from_second(1_800_000_000).expect("valid");
        let mut updates = Vec::new();
        for _ in 0..50 {
            let tasks = plan_measurements(&run.spec, run.status.as_ref(), now);
            let mut outcomes = Vec::new();
            for task in tasks {
                outcomes.push(providers.run_task(task, run, &args, now).await);
            }
            let update = reconcile(&run.spec, run.status.as_ref(), now, outcomes);
            run.status = Some(update.status.clone());
            let next = update.wake_at;
            updates.push(update);
            match next {
                Some(at) => now = at.max(now),
                None => break,
            }
        }
        updates
    }

    fn phase(status: &AnalysisRunStatus) -> Option<AnalysisPhase> {
        status.phase().ok().flatten()
    }

    #[tokio::test]
    async fn healthy_gates_pass_every_measurement_and_the_run_succeeds() {
        let script = Script::default();
        script.0.lock().expect("lock").extend([
            (
                "success_rate{service=\"web\"}".to_owned(),
                vec!["0.999".to_owned()],
            ),
            ("p95_latency".to_owned(), vec!["0.2".to_owned()]),
        ]);
        let base = serve(script).await;
        let mut run = AnalysisRun::new(
            "web-1",
            AnalysisRunSpec {
                metrics: vec![
                    gate(
                        "success-rate",
                        "success_rate{service=\"{{args.service}}\"}",
                        "result[0] >= 0.995",
                        3,
                    ),
                    gate("latency", "p95_latency", "result[0] <= 0.5", 3),
                ],
                args: Some(vec![Argument {
                    name: "service".into(),
                    value: Some("web".into()),
                    value_from: None,
                }]),
                ..Default::default()
            },
        );
        let providers = Providers::new(
            ProviderConfig {
                prometheus_address: Some(base),
            },
            None,
        );
        let updates = drive(&mut run, &providers).await;
        let last = updates.last().expect("at least one reconcile");
        assert_eq!(
            phase(&last.status),
            Some(AnalysisPhase::Successful),
            "{:?}",
            last.status
        );
        for name in ["success-rate", "latency"] {
            let result = last.status.metric_result(name).expect("metric result");
            assert_eq!(result.count, Some(3), "{name}");
            assert_eq!(result.successful, Some(3), "{name}");
        }
        assert_eq!(updates.len(), 3, "three scheduled reconciles, 10 s apart");
        assert_eq!(
            last.status
                .metric_result("success-rate")
                .and_then(|r| r.metadata.clone())
                .and_then(|m| m.get("ResolvedPrometheusQuery").cloned()),
            Some("success_rate{service=\"web\"}".to_owned())
        );
    }

    #[tokio::test]
    async fn a_breaking_gate_fails_the_run_on_the_bad_sample_and_stops_the_others() {
        let script = Script::default();
        script.0.lock().expect("lock").extend([
            (
                "error_rate".to_owned(),
                vec!["0.01".to_owned(), "0.01".to_owned(), "0.10".to_owned()],
            ),
            ("p95_latency".to_owned(), vec!["0.2".to_owned()]),
        ]);
        let base = serve(script).await;
        let mut error_gate = gate("error-rate", "error_rate", "result[0] <= 0.05", 0);
        error_gate.failure_limit = Some(IntOrString::Int(0));
        let mut run = AnalysisRun::new(
            "web-2",
            AnalysisRunSpec {
                metrics: vec![
                    error_gate,
                    gate("latency", "p95_latency", "result[0] <= 0.5", 0),
                ],
                ..Default::default()
            },
        );
        let providers = Providers::new(
            ProviderConfig {
                prometheus_address: Some(base),
            },
            None,
        );
        let updates = drive(&mut run, &providers).await;
        let last = updates.last().expect("reconciled");
        assert_eq!(phase(&last.status), Some(AnalysisPhase::Failed));
        assert_eq!(
            updates.len(),
            3,
            "failed on the third sample, in the same reconcile"
        );
        assert_eq!(
            last.status.message.as_deref(),
            Some(r#"Metric "error-rate" assessed Failed due to failed (1) > failureLimit (0)"#)
        );
        let latency = last
            .status
            .metric_result("latency")
            .expect("latency result");
        assert_eq!(
            latency.phase, "Successful",
            "fail-fast ends the unbounded gate"
        );
        let reasons: Vec<_> = last.events.iter().map(|e| e.reason.as_str()).collect();
        assert_eq!(
            reasons,
            ["MetricFailed", "MetricSuccessful", "AnalysisRunFailed"]
        );
    }

    #[tokio::test]
    async fn an_unreachable_prometheus_errors_the_run_after_five_errors() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let mut run = AnalysisRun::new(
            "web-3",
            AnalysisRunSpec {
                metrics: vec![gate("success-rate", "up", "result[0] >= 0.995", 3)],
                ..Default::default()
            },
        );
        let providers = Providers::new(
            ProviderConfig {
                prometheus_address: Some(format!("http://{addr}")),
            },
            None,
        );
        let updates = drive(&mut run, &providers).await;
        let last = updates.last().expect("reconciled");
        assert_eq!(phase(&last.status), Some(AnalysisPhase::Error));
        let result = last.status.metric_result("success-rate").expect("result");
        assert_eq!(result.error, Some(5));
        assert_eq!(result.count, None, "errors never count");
        assert_eq!(
            updates.len(),
            5,
            "retried every 10 s until consecutiveErrorLimit"
        );
        let message = last.status.message.clone().unwrap_or_default();
        assert!(
            message.starts_with(r#"Metric "success-rate" assessed Error due to consecutiveErrors (5) > consecutiveErrorLimit (4)"#),
            "{message}"
        );
    }
}
