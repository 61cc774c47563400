//! The job provider against ramp-sim: the Job is created from the metric with upstream's name,
//! labels, annotations and owner; the sim's job simulator completes it per the
//! `sim.ramp.dev/job-result` annotation; terminate deletes it; retention garbage-collects it.

// Named so that `cargo nextest run -p ramp-controller metrics` selects these tests.
mod metrics_job {

    use k8s_openapi::api::batch::v1::{Job, JobSpec};
    use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use k8s_openapi::jiff::Timestamp;
    use kube::api::PostParams;
    use kube::{Api, Client, ResourceExt};
    use ramp_api::analysis::{
        AnalysisPhase, AnalysisRun, AnalysisRunSpec, JobMetric, JobMetricMetadata, Measurement,
        Metric, MetricProvider as ProviderUnion, MetricResult,
    };
    use ramp_controller::metrics::job::{
        JOB_NAME_METADATA, METRIC_NAME_ANNOTATION, RUN_NAME_ANNOTATION, RUN_UID_LABEL,
    };
    use ramp_controller::metrics::{ProviderConfig, Providers};
    use ramp_core::analysis::args::ResolvedArgs;
    use ramp_core::analysis::run::MeasurementTask;
    use ramp_sim::SimConfig;
    use ramp_sim::tier::{TestCluster, test_namespace};
    use std::collections::BTreeMap;
    use std::future::Future;
    use std::time::{Duration, Instant};

    /// `default` on ramp-sim, the test's own on the real tier.
    fn ns() -> &'static str {
        test_namespace()
    }

    async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(value) = check().await {
                return value;
            }
            assert!(Instant::now() < deadline, "{what} never happened");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn start() -> (TestCluster, Client) {
        let config = SimConfig {
            traffic_enabled: false,
            ..SimConfig::default()
        };
        let sim = TestCluster::start(config, ramp_api::crd::all())
            .await
            .expect("cluster starts with the CRDs");
        let client = sim.client();
        let runs = Api::<AnalysisRun>::namespaced(client.clone(), ns());
        eventually("AnalysisRuns served", || {
            let runs = runs.clone();
            async move { runs.list(&Default::default()).await.ok().map(|_| ()) }
        })
        .await;
        (sim, client)
    }

    fn job_metric(name: &str, result: &str) -> Metric {
        Metric {
            name: name.into(),
            provider: ProviderUnion {
                job: Some(JobMetric {
                    metadata: Some(JobMetricMetadata {
                        labels: Some(BTreeMap::from([("team".into(), "web".into())])),
                        annotations: Some(BTreeMap::from([(
                            "team.example.com/owner".into(),
                            "web".into(),
                        )])),
                    }),
                    spec: JobSpec {
                        backoff_limit: Some(0),
                        template: PodTemplateSpec {
                            // The pods, not the Job, say how they end: the Job controller
                            // copies only the template's annotations onto them.
                            metadata: Some(ObjectMeta {
                                annotations: Some(BTreeMap::from([
                                    ("sim.ramp.dev/job-result".into(), result.into()),
                                    ("sim.ramp.dev/job-duration".into(), "200ms".into()),
                                ])),
                                ..Default::default()
                            }),
                            spec: Some(PodSpec {
                                restart_policy: Some("Never".into()),
                                containers: vec![Container {
                                    name: "check".into(),
                                    image: Some("busybox".into()),
                                    command: Some(vec!["true".into()]),
                                    ..Default::default()
                                }],
                                ..Default::default()
                            }),
                        },
                        ..Default::default()
                    },
                }),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    async fn create_run(client: &Client, name: &str, metric: Metric) -> AnalysisRun {
        let run = AnalysisRun::new(
            name,
            AnalysisRunSpec {
                metrics: vec![metric],
                ..Default::default()
            },
        );
        Api::<AnalysisRun>::namespaced(client.clone(), ns())
            .create(&PostParams::default(), &run)
            .await
            .expect("run created")
    }

    fn phase(m: &Measurement) -> AnalysisPhase {
        m.phase().ok().flatten().unwrap_or(AnalysisPhase::Pending)
    }

    /// Measures, then resumes the in-flight measurement until it finishes.
    async fn measure_to_completion(
        providers: &Providers,
        run: &AnalysisRun,
        metric: &str,
    ) -> Measurement {
        let args = ResolvedArgs::default();
        let started = providers
            .run_task(
                MeasurementTask::Measure {
                    metric: metric.into(),
                },
                run,
                &args,
                Timestamp::now(),
            )
            .await
            .measurement;
        assert_eq!(phase(&started), AnalysisPhase::Running, "{started:?}");
        assert!(started.finished_at.is_none());
        assert!(started.resume_at.is_some());
        let mut current = started;
        let deadline = Instant::now() + Duration::from_secs(15);
        while current.finished_at.is_none() {
            assert!(
                Instant::now() < deadline,
                "the job measurement never finished: {current:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
            current = providers
                .run_task(
                    MeasurementTask::Resume {
                        metric: metric.into(),
                        measurement: current.clone(),
                    },
                    run,
                    &args,
                    Timestamp::now(),
                )
                .await
                .measurement;
        }
        current
    }

    #[tokio::test]
    async fn a_succeeding_job_is_a_successful_measurement_and_is_built_like_upstream() {
        let (_sim, client) = start().await;
        let run = create_run(&client, "web-1-ok", job_metric("smoke", "succeed")).await;
        let providers = Providers::new(ProviderConfig::default(), Some(client.clone()));
        let done = measure_to_completion(&providers, &run, "smoke").await;
        assert_eq!(phase(&done), AnalysisPhase::Successful, "{done:?}");

        let uid = run.uid().expect("run has a uid");
        let job_name = done
            .metadata
            .as_ref()
            .and_then(|m| m.get(JOB_NAME_METADATA))
            .cloned()
            .expect("measurement names its job");
        assert_eq!(job_name, format!("{uid}.smoke.1"));
        let job = Api::<Job>::namespaced(client.clone(), ns())
            .get(&job_name)
            .await
            .expect("job exists");
        assert_eq!(job.labels().get(RUN_UID_LABEL), Some(&uid));
        assert_eq!(job.labels().get("team").map(String::as_str), Some("web"));
        assert_eq!(
            job.annotations()
                .get(RUN_NAME_ANNOTATION)
                .map(String::as_str),
            Some("web-1-ok")
        );
        assert_eq!(
            job.annotations()
                .get(METRIC_NAME_ANNOTATION)
                .map(String::as_str),
            Some("smoke")
        );
        let owner = job.owner_references();
        assert_eq!(owner.len(), 1);
        assert_eq!(
            (owner[0].kind.as_str(), owner[0].uid.as_str()),
            ("AnalysisRun", uid.as_str())
        );
    }

    #[tokio::test]
    async fn a_failing_job_is_a_failed_measurement() {
        let (_sim, client) = start().await;
        let run = create_run(&client, "web-1-bad", job_metric("smoke", "fail")).await;
        let providers = Providers::new(ProviderConfig::default(), Some(client));
        let done = measure_to_completion(&providers, &run, "smoke").await;
        assert_eq!(phase(&done), AnalysisPhase::Failed, "{done:?}");
    }

    #[tokio::test]
    async fn the_next_job_name_counts_previous_measurements() {
        let (_sim, client) = start().await;
        let mut run = create_run(&client, "web-1-count", job_metric("smoke", "succeed")).await;
        run.status = Some(ramp_api::analysis::AnalysisRunStatus {
            metric_results: Some(vec![MetricResult {
                name: "smoke".into(),
                phase: "Running".into(),
                count: Some(1),
                error: Some(1),
                ..Default::default()
            }]),
            ..Default::default()
        });
        let providers = Providers::new(ProviderConfig::default(), Some(client));
        let started = providers
            .run_task(
                MeasurementTask::Measure {
                    metric: "smoke".into(),
                },
                &run,
                &ResolvedArgs::default(),
                Timestamp::now(),
            )
            .await
            .measurement;
        let name = started
            .metadata
            .and_then(|m| m.get(JOB_NAME_METADATA).cloned())
            .unwrap_or_default();
        assert!(name.ends_with(".smoke.3"), "{name}");
    }

    #[tokio::test]
    async fn terminate_deletes_the_job_and_ends_the_measurement_inconclusive() {
        let (_sim, client) = start().await;
        let mut metric = job_metric("long", "succeed");
        if let Some(annotations) = metric
            .provider
            .job
            .as_mut()
            .and_then(|j| j.spec.template.metadata.as_mut())
            .and_then(|m| m.annotations.as_mut())
        {
            annotations.insert("sim.ramp.dev/job-duration".into(), "1h".into());
        }
        let run = create_run(&client, "web-1-term", metric).await;
        let providers = Providers::new(ProviderConfig::default(), Some(client.clone()));
        let args = ResolvedArgs::default();
        let started = providers
            .run_task(
                MeasurementTask::Measure {
                    metric: "long".into(),
                },
                &run,
                &args,
                Timestamp::now(),
            )
            .await
            .measurement;
        let job_name = started
            .metadata
            .as_ref()
            .and_then(|m| m.get(JOB_NAME_METADATA))
            .cloned()
            .expect("job named");
        let jobs = Api::<Job>::namespaced(client.clone(), ns());
        assert!(jobs.get_opt(&job_name).await.expect("get").is_some());
        let ended = providers
            .run_task(
                MeasurementTask::Terminate {
                    metric: "long".into(),
                    measurement: started,
                },
                &run,
                &args,
                Timestamp::now(),
            )
            .await
            .measurement;
        assert_eq!(phase(&ended), AnalysisPhase::Inconclusive);
        assert_eq!(ended.message.as_deref(), Some("Metric Terminated"));
        assert!(ended.finished_at.is_some());
        eventually("the job is deleted", || {
            let jobs = jobs.clone();
            let name = job_name.clone();
            async move {
                match jobs.get_opt(&name).await {
                    Ok(None) => Some(()),
                    _ => None,
                }
            }
        })
        .await;
    }

    #[tokio::test]
    async fn garbage_collection_deletes_the_jobs_of_trimmed_measurements() {
        let (_sim, client) = start().await;
        let run = create_run(&client, "web-1-gc", job_metric("smoke", "succeed")).await;
        let providers = Providers::new(ProviderConfig::default(), Some(client.clone()));
        let done = measure_to_completion(&providers, &run, "smoke").await;
        let job_name = done
            .metadata
            .as_ref()
            .and_then(|m| m.get(JOB_NAME_METADATA))
            .cloned()
            .expect("job named");
        providers
            .garbage_collect(
                &run,
                "smoke",
                &[done],
                &ResolvedArgs::default(),
                Timestamp::now(),
            )
            .await
            .expect("collected");
        let jobs = Api::<Job>::namespaced(client, ns());
        eventually("the trimmed measurement's job is deleted", || {
            let jobs = jobs.clone();
            let name = job_name.clone();
            async move {
                match jobs.get_opt(&name).await {
                    Ok(None) => Some(()),
                    _ => None,
                }
            }
        })
        .await;
    }
}
