//! The AnalysisRun controller end to end with a real Prometheus: ramp-sim's traffic simulator
//! serves Istio metrics for a VirtualService split between a stable and a canary version, a
//! private Prometheus scrapes them every second, and a run built from the examples'
//! `success-rate` AnalysisTemplate judges the canary.

mod support_prometheus;

// Named so that `cargo nextest run -p ramp-controller analysis_run` selects these tests.
mod analysis_run_prometheus {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::support_prometheus::{Prometheus, ScrapeTarget, config_yaml, ensure_prometheus};
    use k8s_openapi::api::apps::v1::ReplicaSet;
    use k8s_openapi::api::core::v1::Service;
    use kube::Client;
    use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
    use ramp_api::analysis::{AnalysisPhase, AnalysisRun};
    use ramp_controller::analysis_run::{self, AnalysisRunConfig};
    use ramp_sim::SimConfig;
    use ramp_sim::testing::{Background, eventually, istio_crd};
    use ramp_sim::tier::{TestCluster, test_namespace};
    use serde_json::json;
    use std::time::Duration;

    /// `default` on ramp-sim, the test's own on the real tier.
    fn ns() -> &'static str {
        test_namespace()
    }
    const TEMPLATES: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/analysis-templates.yaml"
    );

    #[test]
    fn scrape_targets_keep_host_and_path() {
        assert_eq!(
            ScrapeTarget::parse("http://127.0.0.1:9464/metrics").unwrap(),
            ScrapeTarget {
                host_port: "127.0.0.1:9464".into(),
                metrics_path: "/metrics".into()
            }
        );
        assert_eq!(
            ScrapeTarget::parse("http://127.0.0.1:80")
                .unwrap()
                .metrics_path,
            "/metrics"
        );
        assert!(ScrapeTarget::parse("https://x/metrics").is_err());
        assert!(ScrapeTarget::parse("http:///metrics").is_err());
    }

    #[test]
    fn the_generated_configuration_scrapes_every_target_at_the_interval() {
        let yaml = config_yaml(
            &[
                ScrapeTarget::parse("http://127.0.0.1:1/metrics").unwrap(),
                ScrapeTarget::parse("http://127.0.0.1:2/other").unwrap(),
            ],
            Duration::from_secs(1),
        );
        assert!(yaml.contains("scrape_interval: 1000ms"), "{yaml}");
        assert!(
            yaml.contains("targets: [\"127.0.0.1:1\"]") && yaml.contains("\"/metrics\""),
            "{yaml}"
        );
        assert!(
            yaml.contains("targets: [\"127.0.0.1:2\"]") && yaml.contains("\"/other\""),
            "{yaml}"
        );
    }

    #[tokio::test]
    async fn the_harness_starts_a_private_prometheus_and_stops_it() {
        ensure_prometheus().expect("prometheus available");
        let prometheus = Prometheus::start(&[], Duration::from_secs(1))
            .await
            .expect("prometheus starts");
        let url = prometheus.url().to_owned();
        let result = prometheus
            .query("vector(42)")
            .await
            .expect("query answered");
        assert_eq!(result[0]["value"][1], "42");
        drop(prometheus);
        let gone = reqwest_get(&format!("{url}/-/ready")).await;
        assert!(gone.is_err(), "prometheus still answers after drop");
    }

    async fn reqwest_get(url: &str) -> Result<(), String> {
        prometheus_http_query::reqwest::get(url)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn replica_set(hash: &str, error_rate: &str) -> ReplicaSet {
        serde_json::from_value(json!({
            "metadata": {"name": format!("web-{hash}"), "namespace": ns()},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "web", "rollouts-pod-template-hash": hash}},
                "template": {
                    "metadata": {
                        "labels": {"app": "web", "rollouts-pod-template-hash": hash},
                        "annotations": {"sim.ramp.dev/error-rate": error_rate},
                    },
                    "spec": {"containers": [{"name": "web", "image": "web"}]},
                },
            },
        }))
        .unwrap()
    }

    fn service(name: &str, hash: &str) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": ns()},
            "spec": {
                "selector": {"app": "web", "rollouts-pod-template-hash": hash},
                "ports": [{"port": 80}],
            },
        }))
        .unwrap()
    }

    /// Stable and canary versions behind a 50/50 VirtualService, with the canary answering
    /// `canary_error_rate` of its requests with 500.
    async fn start_cluster(canary_error_rate: &str) -> (TestCluster, Client) {
        let mut crds = ramp_api::crd::all();
        crds.push(istio_crd("virtualservices", "VirtualService", &["v1beta1"]));
        let sim = TestCluster::start(SimConfig::default(), crds)
            .await
            .expect("cluster starts with the CRDs");
        let client = sim.client();
        let post = PostParams::default();
        let services = Api::<Service>::namespaced(client.clone(), ns());
        services
            .create(&post, &service("web-stable", "aaa"))
            .await
            .unwrap();
        services
            .create(&post, &service("web-canary", "bbb"))
            .await
            .unwrap();
        let replica_sets = Api::<ReplicaSet>::namespaced(client.clone(), ns());
        replica_sets
            .create(&post, &replica_set("aaa", "0"))
            .await
            .unwrap();
        replica_sets
            .create(&post, &replica_set("bbb", canary_error_rate))
            .await
            .unwrap();
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
            "networking.istio.io",
            "v1beta1",
            "VirtualService",
        ));
        let virtual_service: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
            "metadata": {"name": "web", "namespace": ns()},
            "spec": {"hosts": ["web"], "http": [{"route": [
                {"destination": {"host": "web-stable"}, "weight": 50},
                {"destination": {"host": "web-canary"}, "weight": 50},
            ]}]},
        }))
        .unwrap();
        Api::<DynamicObject>::namespaced_with(client.clone(), ns(), &resource)
            .create(&post, &virtual_service)
            .await
            .expect("VirtualService created");
        (sim, client)
    }

    /// The examples' `success-rate` template as a run for the canary service, at a 1 s
    /// interval so the test takes seconds.
    fn success_rate_run(prometheus: &str) -> AnalysisRun {
        let text = std::fs::read_to_string(TEMPLATES).expect("examples readable");
        let stream = ramp_api::manifest::parse_stream(&text).expect("examples parse");
        let template = stream
            .documents
            .into_iter()
            .find(|d| d["metadata"]["name"] == "success-rate")
            .expect("success-rate template in the examples");
        let mut spec = template["spec"].clone();
        for arg in spec["args"].as_array_mut().unwrap() {
            let value = match arg["name"].as_str().unwrap() {
                "service-name" => "web-canary",
                "prometheus-address" => prometheus,
                "namespace" => ns(),
                _ => continue,
            };
            arg["value"] = json!(value);
        }
        let metric = &mut spec["metrics"][0];
        metric["interval"] = json!("1s");
        metric["count"] = json!(3);
        serde_json::from_value(json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisRun",
            "metadata": {"name": "canary-success-rate", "namespace": ns()},
            "spec": spec,
        }))
        .expect("run from the template")
    }

    /// Runs the success-rate analysis of a canary with the given error rate to completion.
    async fn analyse_canary(canary_error_rate: &str) -> AnalysisRun {
        let (sim, client) = start_cluster(canary_error_rate).await;
        let metrics_url = sim
            .metrics_url()
            .expect("traffic simulator exports metrics");
        let prometheus = Prometheus::start(&[metrics_url], Duration::from_secs(1))
            .await
            .expect("prometheus starts");
        // The rate needs two scrapes of canary traffic before the first measurement.
        let canary_rate = "sum(rate(istio_requests_total{reporter=\"destination\",destination_service_name=\"web-canary\"}[30s])) > 0";
        eventually("canary traffic rate in prometheus", 30, || async {
            prometheus
                .query(canary_rate)
                .await
                .ok()
                .filter(|r| r.as_array().is_some_and(|a| !a.is_empty()))
        })
        .await;

        let config = AnalysisRunConfig {
            namespace: Some(ns().to_owned()),
            ..AnalysisRunConfig::default()
        };
        let controller_client = client.clone();
        let controller =
            Background::spawn(|shutdown| analysis_run::run(controller_client, config, shutdown));
        let runs = Api::<AnalysisRun>::namespaced(client.clone(), ns());
        runs.create(&PostParams::default(), &success_rate_run(prometheus.url()))
            .await
            .expect("run created");
        let run = eventually("the run completes", 30, || {
            let runs = runs.clone();
            async move {
                runs.get("canary-success-rate")
                    .await
                    .ok()
                    .filter(AnalysisRun::is_completed)
            }
        })
        .await;
        controller.abort();
        run
    }

    fn values(run: &AnalysisRun) -> Vec<String> {
        run.status
            .as_ref()
            .and_then(|s| s.metric_result("success-rate"))
            .and_then(|r| r.measurements.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|m| m.value.unwrap_or_default())
            .collect()
    }

    #[tokio::test]
    async fn a_healthy_canary_passes_the_success_rate_gate() {
        let run = analyse_canary("0").await;
        let status = run.status.as_ref().unwrap();
        assert_eq!(
            status.phase().unwrap(),
            Some(AnalysisPhase::Successful),
            "{status:#?}"
        );
        let values = values(&run);
        assert_eq!(values.len(), 3, "{values:?}");
        assert!(values.iter().all(|v| v == "[1]"), "{values:?}");
    }

    #[tokio::test]
    async fn a_canary_with_ten_percent_5xx_fails_the_success_rate_gate() {
        let run = analyse_canary("0.1").await;
        let status = run.status.as_ref().unwrap();
        assert_eq!(
            status.phase().unwrap(),
            Some(AnalysisPhase::Failed),
            "{status:#?}"
        );
        // failureLimit 1: the second failed measurement fails the run.
        let values = values(&run);
        assert_eq!(values.len(), 2, "{values:?}");
        for value in &values {
            let share: f64 = value
                .trim_matches(|c| c == '[' || c == ']')
                .parse()
                .unwrap_or_else(|_| panic!("not a one-element vector: {value}"));
            assert!((share - 0.9).abs() < 0.02, "success rate {share}");
        }
    }
}
