//! The AnalysisRun controller against ramp-sim: web metrics served by an in-test HTTP server,
//! Job metrics run by the sim's job simulator. Assertions read the runs' status, their events
//! and the sim's request log (the exact status writes).

// Named so that `cargo nextest run -p ramp-controller analysis_run` selects these tests.
mod analysis_run_controller {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use axum::Router;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::{IntoResponse, Json, Response};
    use axum::routing::get;
    use k8s_openapi::api::batch::v1::Job;
    use k8s_openapi::api::core::v1::Secret;
    use k8s_openapi::api::events::v1::Event;
    use kube::Client;
    use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
    use ramp_api::analysis::{AnalysisPhase, AnalysisRun, Measurement};
    use ramp_controller::analysis_run::{self, AnalysisRunConfig};
    use ramp_sim::testing::{Background, eventually, eventually_object};
    use ramp_sim::tier::{TestCluster, test_namespace};
    use ramp_sim::{LoggedRequest, SimConfig, Verb};
    use serde_json::{Value, json};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    /// `default` on ramp-sim, the test's own on the real tier.
    fn ns() -> &'static str {
        test_namespace()
    }
    const SECRET_TOKEN: &str = "tok-8f1c2e-secret";

    /// What the in-test metric endpoint answers: values in order (the last one repeats), or
    /// HTTP 500 when `failing`; it records when each request arrived.
    #[derive(Clone, Default)]
    struct Endpoint {
        values: Arc<Mutex<Vec<Value>>>,
        failing: bool,
        requests: Arc<Mutex<Vec<Instant>>>,
    }

    async fn answer(State(endpoint): State<Endpoint>, headers: HeaderMap) -> Response {
        endpoint.requests.lock().unwrap().push(Instant::now());
        if endpoint.failing {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
        let mut values = endpoint.values.lock().unwrap();
        let value = if values.len() > 1 {
            values.remove(0)
        } else {
            values.first().cloned().unwrap_or(Value::Null)
        };
        Json(json!({
            "value": value,
            "authorized": headers.get("x-token").is_some_and(|v| v == SECRET_TOKEN),
        }))
        .into_response()
    }

    async fn serve(endpoint: Endpoint) -> String {
        let app = Router::new()
            .route("/metric", get(answer))
            .with_state(endpoint);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}/metric")
    }

    /// A cluster (ramp-sim, or the real tier's) with Ramp's CRDs and the AnalysisRun
    /// controller running in-process.
    struct Cluster {
        sim: TestCluster,
        client: Client,
        controller: Option<Background>,
    }

    impl Cluster {
        async fn start(workloads: bool) -> Self {
            let config = SimConfig {
                workloads_enabled: workloads,
                traffic_enabled: false,
                ..SimConfig::default()
            };
            let sim = TestCluster::start(config, ramp_api::crd::all())
                .await
                .expect("cluster starts with the CRDs");
            let client = sim.client();
            let runs = AnalysisRunConfig {
                namespace: Some(ns().to_owned()),
                concurrency: 4,
                ..AnalysisRunConfig::default()
            };
            let controller_client = client.clone();
            let controller =
                Background::spawn(|shutdown| analysis_run::run(controller_client, runs, shutdown));
            Self {
                sim,
                client,
                controller: Some(controller),
            }
        }

        fn runs(&self) -> Api<AnalysisRun> {
            Api::namespaced(self.client.clone(), ns())
        }

        async fn create_run(&self, name: &str, spec: Value) -> AnalysisRun {
            let run: AnalysisRun = serde_json::from_value(json!({
                "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisRun",
                "metadata": {"name": name, "namespace": ns()},
                "spec": spec,
            }))
            .expect("run manifest");
            self.runs()
                .create(&PostParams::default(), &run)
                .await
                .expect("run created")
        }

        async fn wait_run(
            &self,
            name: &str,
            what: &str,
            secs: u64,
            check: impl Fn(&AnalysisRun) -> bool,
        ) -> AnalysisRun {
            eventually_object(&self.runs(), name, what, secs, check).await
        }

        async fn wait_phase(&self, name: &str, phase: AnalysisPhase, secs: u64) -> AnalysisRun {
            self.wait_run(name, &format!("run {name} {phase}"), secs, |r| {
                phase_of(r) == Some(phase)
            })
            .await
        }

        /// The controller's writes to the run (everything but the test's create).
        fn status_writes(&self, name: &str) -> Vec<LoggedRequest> {
            self.sim
                .request_log()
                .writes_to_object("analysisruns", Some(ns()), name)
                .into_iter()
                .filter(|w| w.verb != Verb::Create)
                .collect()
        }

        async fn events_of(&self, name: &str) -> Vec<Event> {
            Api::<Event>::namespaced(self.client.clone(), ns())
                .list(&ListParams::default())
                .await
                .expect("events listed")
                .items
                .into_iter()
                .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
                .collect()
        }
    }

    impl Drop for Cluster {
        fn drop(&mut self) {
            if let Some(controller) = self.controller.take() {
                controller.abort();
            }
        }
    }

    fn phase_of(run: &AnalysisRun) -> Option<AnalysisPhase> {
        run.status.as_ref()?.phase().ok().flatten()
    }

    fn measurements(run: &AnalysisRun, metric: &str) -> Vec<Measurement> {
        run.status
            .as_ref()
            .and_then(|s| s.metric_result(metric))
            .and_then(|r| r.measurements.clone())
            .unwrap_or_default()
    }

    fn web_metric(url: &str, extra: Value) -> Value {
        let mut metric = json!({
            "name": "value",
            "provider": {"web": {"url": url, "jsonPath": "{$.value}"}},
        });
        for (key, value) in extra.as_object().unwrap() {
            metric[key] = value.clone();
        }
        metric
    }

    #[tokio::test]
    async fn a_passing_web_metric_is_successful_after_count_with_one_write_per_round() {
        let cluster = Cluster::start(false).await;
        let endpoint = Endpoint {
            values: Arc::new(Mutex::new(vec![json!(1)])),
            ..Endpoint::default()
        };
        let url = serve(endpoint.clone()).await;
        cluster
            .create_run(
                "pass",
                json!({"metrics": [web_metric(&url, json!({
                    "interval": "1s", "count": 5, "successCondition": "result == 1",
                }))]}),
            )
            .await;
        let run = cluster
            .wait_phase("pass", AnalysisPhase::Successful, 20)
            .await;

        let taken = measurements(&run, "value");
        assert_eq!(taken.len(), 5, "{taken:#?}");
        assert!(taken.iter().all(|m| m.phase == "Successful"));
        // No drift: each measurement starts exactly one interval after the previous one.
        let starts: Vec<_> = taken
            .iter()
            .map(|m| m.started_at.as_ref().unwrap().0)
            .collect();
        for pair in starts.windows(2) {
            assert_eq!(
                pair[1].duration_since(pair[0]).as_secs(),
                1,
                "measurements not 1 s apart: {starts:?}"
            );
        }
        // And the endpoint saw them about a second apart in real time. Status times have
        // whole-second precision, so the first gap is the rest of the first measurement's
        // second. Each later one is due on a whole second, so a measurement that a busy machine
        // ran late shortens the gap after it: the bounds allow a few hundred ms of lateness
        // while still failing on a burst (gaps of a few ms) or a drift (a span well over 3 s).
        let requests = endpoint.requests.lock().unwrap().clone();
        assert_eq!(requests.len(), 5, "one request per measurement");
        assert!(requests[1] - requests[0] < Duration::from_millis(1500));
        for pair in requests[1..].windows(2) {
            let gap = pair[1] - pair[0];
            assert!(
                gap > Duration::from_millis(400) && gap < Duration::from_millis(2000),
                "requests {gap:?} apart: {requests:?}"
            );
        }
        let span = *requests.last().unwrap() - requests[1];
        assert!(
            span > Duration::from_millis(2500) && span < Duration::from_millis(4000),
            "measurements 2 to 5 at a 1 s interval took {span:?}"
        );

        // One status write per measurement round, the last one completing the run.
        let writes = cluster.status_writes("pass");
        assert_eq!(
            writes.len(),
            5,
            "{:#?}",
            writes
                .iter()
                .map(LoggedRequest::summary)
                .collect::<Vec<_>>()
        );
        assert!(writes.iter().all(|w| w.verb == Verb::Patch
            && w.patch_type.as_deref() == Some("merge")
            && w.subresource.is_none()
            && w.succeeded()));
        assert_eq!(
            writes[4].body.as_ref().unwrap()["status"]["phase"],
            "Successful"
        );
        // Nothing changes any more, so nothing more is written.
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(cluster.status_writes("pass").len(), 5);

        let reasons: Vec<_> = cluster
            .events_of("pass")
            .await
            .into_iter()
            .filter_map(|e| e.reason)
            .collect();
        assert!(
            reasons.iter().any(|r| r == "AnalysisRunSuccessful"),
            "{reasons:?}"
        );
    }

    #[tokio::test]
    async fn a_failing_value_fails_the_run_in_the_same_reconcile() {
        let cluster = Cluster::start(false).await;
        let endpoint = Endpoint {
            values: Arc::new(Mutex::new(vec![json!(50)])),
            ..Endpoint::default()
        };
        let url = serve(endpoint).await;
        cluster
            .create_run(
                "fail",
                json!({"metrics": [web_metric(&url, json!({
                    "interval": "1s", "count": 5,
                    "successCondition": "result < 10", "failureCondition": "result >= 10",
                }))]}),
            )
            .await;
        let run = cluster.wait_phase("fail", AnalysisPhase::Failed, 15).await;
        assert_eq!(measurements(&run, "value").len(), 1);
        let writes = cluster.status_writes("fail");
        assert_eq!(writes.len(), 1, "the first write already says Failed");
        assert_eq!(
            writes[0].body.as_ref().unwrap()["status"]["phase"],
            "Failed"
        );

        let events = cluster.events_of("fail").await;
        let failed = events
            .iter()
            .find(|e| e.reason.as_deref() == Some("AnalysisRunFailed"))
            .unwrap_or_else(|| panic!("no AnalysisRunFailed event in {events:#?}"));
        assert_eq!(failed.type_.as_deref(), Some("Warning"));
    }

    #[tokio::test]
    async fn errors_end_the_run_after_the_consecutive_error_limit() {
        let cluster = Cluster::start(false).await;
        let endpoint = Endpoint {
            failing: true,
            ..Endpoint::default()
        };
        let url = serve(endpoint).await;
        cluster
            .create_run(
                "errors",
                json!({"metrics": [web_metric(&url, json!({
                    "interval": "1s", "count": 5, "consecutiveErrorLimit": 1,
                    "successCondition": "result == 1",
                }))]}),
            )
            .await;
        let run = cluster.wait_phase("errors", AnalysisPhase::Error, 30).await;
        let taken = measurements(&run, "value");
        assert_eq!(taken.len(), 2, "limit 1 allows one error, not two");
        assert!(taken.iter().all(|m| m.phase == "Error"));
        assert!(
            taken[0]
                .message
                .as_deref()
                .is_some_and(|m| m.contains("500")),
            "{taken:#?}"
        );
        let result = run.status.as_ref().unwrap().metric_result("value").unwrap();
        assert_eq!(result.consecutive_error, Some(2));
    }

    #[tokio::test]
    async fn terminating_a_run_makes_it_successful() {
        let cluster = Cluster::start(false).await;
        let endpoint = Endpoint {
            values: Arc::new(Mutex::new(vec![json!(1)])),
            ..Endpoint::default()
        };
        let url = serve(endpoint).await;
        cluster
            .create_run(
                "endless",
                json!({"metrics": [web_metric(&url, json!({
                    "interval": "1s", "successCondition": "result == 1",
                }))]}),
            )
            .await;
        cluster
            .wait_run("endless", "a first measurement", 10, |r| {
                !measurements(r, "value").is_empty()
            })
            .await;
        cluster
            .runs()
            .patch(
                "endless",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"terminate": true}})),
            )
            .await
            .expect("terminate set");
        let run = cluster
            .wait_phase("endless", AnalysisPhase::Successful, 10)
            .await;
        assert_eq!(
            run.status.as_ref().unwrap().message.as_deref(),
            Some("Run Terminated")
        );
    }

    #[tokio::test]
    async fn a_malformed_run_is_an_error_and_others_are_still_served() {
        let cluster = Cluster::start(false).await;
        let endpoint = Endpoint {
            values: Arc::new(Mutex::new(vec![json!(1)])),
            ..Endpoint::default()
        };
        let url = serve(endpoint).await;
        cluster
            .create_run(
                "broken",
                json!({"metrics": [web_metric(&format!("{url}?x={{{{args.missing}}}}"), json!({
                    "successCondition": "result == 1",
                }))]}),
            )
            .await;
        cluster
            .create_run(
                "healthy",
                json!({"metrics": [web_metric(&url, json!({
                    "successCondition": "result == 1",
                }))]}),
            )
            .await;
        let broken = cluster.wait_phase("broken", AnalysisPhase::Error, 10).await;
        let message = broken.status.as_ref().unwrap().message.clone();
        assert!(
            message.as_deref().is_some_and(|m| m.contains("missing")),
            "{message:?}"
        );
        cluster
            .wait_phase("healthy", AnalysisPhase::Successful, 10)
            .await;
    }

    #[tokio::test]
    async fn secret_arguments_are_read_from_the_namespace_and_never_shown() {
        let cluster = Cluster::start(false).await;
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": "metric-creds", "namespace": ns()},
            "stringData": {"token": SECRET_TOKEN},
        }))
        .unwrap();
        Api::<Secret>::namespaced(cluster.client.clone(), ns())
            .create(&PostParams::default(), &secret)
            .await
            .expect("secret created");
        let endpoint = Endpoint {
            values: Arc::new(Mutex::new(vec![json!(1)])),
            ..Endpoint::default()
        };
        let url = serve(endpoint).await;
        cluster
            .create_run(
                "secret",
                json!({
                    "args": [{"name": "token", "valueFrom": {"secretKeyRef": {"name": "metric-creds", "key": "token"}}}],
                    "metrics": [{
                        "name": "authorized",
                        "successCondition": "result == true",
                        "provider": {"web": {
                            "url": url, "jsonPath": "{$.authorized}",
                            "headers": [{"key": "x-token", "value": "{{args.token}}"}],
                        }},
                    }],
                }),
            )
            .await;
        let run = cluster
            .wait_phase("secret", AnalysisPhase::Successful, 10)
            .await;
        let status = serde_json::to_string(&run.status).unwrap();
        assert!(!status.contains(SECRET_TOKEN), "{status}");
        for write in cluster.status_writes("secret") {
            let body = serde_json::to_string(&write.body).unwrap();
            assert!(!body.contains(SECRET_TOKEN), "{body}");
        }
        for event in cluster.events_of("secret").await {
            assert!(!event.note.unwrap_or_default().contains(SECRET_TOKEN));
        }
    }

    #[tokio::test]
    async fn a_missing_secret_is_an_error_measurement_naming_it() {
        let cluster = Cluster::start(false).await;
        cluster
            .create_run(
                "nosecret",
                json!({
                    "args": [{"name": "token", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "token"}}}],
                    "metrics": [{
                        "name": "value", "consecutiveErrorLimit": 0,
                        "successCondition": "result == 1",
                        "provider": {"web": {"url": "http://127.0.0.1:9/{{args.token}}"}},
                    }],
                }),
            )
            .await;
        let run = cluster
            .wait_phase("nosecret", AnalysisPhase::Error, 10)
            .await;
        let taken = measurements(&run, "value");
        let message = taken[0].message.clone().unwrap_or_default();
        assert!(
            message.contains("absent") && message.contains("not found"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn a_completed_run_is_deleted_after_its_ttl() {
        let cluster = Cluster::start(false).await;
        let endpoint = Endpoint {
            values: Arc::new(Mutex::new(vec![json!(1)])),
            ..Endpoint::default()
        };
        let url = serve(endpoint).await;
        cluster
            .create_run(
                "short-lived",
                json!({
                    "ttlStrategy": {"secondsAfterCompletion": 1},
                    "metrics": [web_metric(&url, json!({"successCondition": "result == 1"}))],
                }),
            )
            .await;
        // The run may be gone before a poll sees it Successful (its TTL is 1 s): the write log
        // shows the verdict and the deletion, and how far apart they were.
        let api = cluster.runs();
        eventually("the run deleted after its ttl", 15, || {
            let api = api.clone();
            async move {
                api.get_opt("short-lived")
                    .await
                    .unwrap()
                    .is_none()
                    .then_some(())
            }
        })
        .await;
        let writes = cluster.status_writes("short-lived");
        let verdict = writes
            .iter()
            .position(|w| {
                w.body
                    .as_ref()
                    .is_some_and(|b| b.to_string().contains(r#""phase":"Successful""#))
            })
            .expect("the run was written Successful");
        let deletes: Vec<usize> = (0..writes.len())
            .filter(|&i| writes[i].verb == Verb::Delete)
            .collect();
        assert_eq!(deletes.len(), 1);
        // The TTL counts from `completedAt`, which is stored to the second as every status
        // time is: the deletion follows the verdict, by up to a second.
        assert!(
            deletes[0] > verdict,
            "deleted before its verdict was written"
        );
    }

    fn job_metric(result: &str) -> Value {
        json!({
            "name": "smoke", "count": 1,
            "provider": {"job": {"spec": {
                "backoffLimit": 0,
                "template": {
                    "metadata": {"annotations": {
                        "sim.ramp.dev/job-result": result,
                        "sim.ramp.dev/job-duration": "1s",
                    }},
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "smoke", "image": "busybox"}],
                    },
                },
            }}},
        })
    }

    #[tokio::test]
    async fn job_metrics_follow_the_job_simulator() {
        let cluster = Cluster::start(true).await;
        cluster
            .create_run("job-ok", json!({"metrics": [job_metric("succeed")]}))
            .await;
        cluster
            .create_run("job-bad", json!({"metrics": [job_metric("fail")]}))
            .await;
        cluster
            .wait_phase("job-ok", AnalysisPhase::Successful, 20)
            .await;
        cluster
            .wait_phase("job-bad", AnalysisPhase::Failed, 20)
            .await;
        let jobs = Api::<Job>::namespaced(cluster.client.clone(), ns())
            .list(&ListParams::default())
            .await
            .expect("jobs listed")
            .items;
        assert_eq!(jobs.len(), 2, "one Job per run");
        for job in &jobs {
            let owner = job
                .metadata
                .owner_references
                .as_ref()
                .and_then(|o| o.first())
                .expect("Job owned by its run");
            assert_eq!(owner.kind, "AnalysisRun");
        }
    }
}
