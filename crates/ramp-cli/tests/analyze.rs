//! `ramp analyze` (and `kubectl ramp analyze`) as a person runs it: the real binary measuring
//! the examples' AnalysisTemplates against a private Prometheus that scrapes the traffic
//! simulator (a healthy, a 10 % 5xx and a 20 % 5xx version) serving a cluster of either tier
//! (ramp-sim, or the test's namespace of the real control plane), web templates against a local
//! HTTP endpoint, and the exit codes, tables, JSON and error messages that come out.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../ramp-controller/tests/support_prometheus/mod.rs"]
mod support_prometheus;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, PostParams};
use ramp_sim::SimConfig;
use ramp_sim::tier::{TestCluster, test_namespace};
use regex::Regex;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};
use support_prometheus::Prometheus;

/// The namespace the services are in: `default` on ramp-sim, a fresh one on the real tier.
fn ns() -> &'static str {
    test_namespace()
}
const EXAMPLES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/analysis-templates.yaml"
);

/// One template of the examples' file, as its own YAML document.
fn example_template(name: &str) -> String {
    let text = std::fs::read_to_string(EXAMPLES).expect("examples readable");
    text.split("\n---\n")
        .find(|doc| doc.contains(&format!("\n  name: {name}\n")))
        .unwrap_or_else(|| panic!("no template {name} in {EXAMPLES}"))
        .to_owned()
}

/// `ramp analyze` with `args`, `stdin` on standard input; run off the async runtime so the
/// in-process sim and HTTP servers keep serving meanwhile.
async fn analyze(args: &[&str], stdin: &str) -> Output {
    let mut cmd = assert_cmd::Command::cargo_bin("ramp").expect("ramp built");
    cmd.arg("analyze")
        .args(args)
        .env_remove("ARGO_ROLLOUTS_PROMETHEUS_ADDRESS")
        .write_stdin(stdin.to_owned())
        .timeout(Duration::from_secs(120));
    tokio::task::spawn_blocking(move || cmd.output().expect("ramp runs"))
        .await
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn code(output: &Output) -> i32 {
    output.status.code().expect("exited with a code")
}

/// The table row of a measurement: metric, number, an RFC 3339 UTC time, phase, value.
fn row(metric: &str, number: usize, phase: &str, value: &str) -> Regex {
    Regex::new(&format!(
        r"(?m)^{}\s+{number}\s+\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\dZ\s+{phase}\s+{}(\s|$)",
        regex::escape(metric),
        regex::escape(value)
    ))
    .unwrap()
}

/// Whether the table has a row for the metric's `number`th measurement.
fn has_row(text: &str, metric: &str, number: usize) -> bool {
    Regex::new(&format!(r"(?m)^{}\s+{number}\s", regex::escape(metric)))
        .unwrap()
        .is_match(text)
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

/// The traffic simulator serving steady traffic to three Services — `web-healthy` (no errors),
/// `web-faulty` (10 % 5xx) and `web-flaky` (20 % 5xx) — with a private Prometheus scraping its
/// Istio metrics every second, ready once every Service has a request rate.
struct Traffic {
    _cluster: TestCluster,
    prometheus: Prometheus,
}

async fn start_traffic() -> Traffic {
    let cluster = TestCluster::start(SimConfig::default(), [])
        .await
        .expect("cluster starts");
    let client = cluster.client();
    let post = PostParams::default();
    let services = Api::<Service>::namespaced(client.clone(), ns());
    let replica_sets = Api::<ReplicaSet>::namespaced(client, ns());
    for (name, hash, error_rate) in [
        ("web-healthy", "aaa", "0"),
        ("web-faulty", "bbb", "0.1"),
        ("web-flaky", "ccc", "0.2"),
    ] {
        services.create(&post, &service(name, hash)).await.unwrap();
        replica_sets
            .create(&post, &replica_set(hash, error_rate))
            .await
            .unwrap();
    }
    let metrics_url = cluster
        .metrics_url()
        .expect("traffic simulator exports metrics");
    let prometheus = Prometheus::start(&[metrics_url], Duration::from_secs(1))
        .await
        .expect("prometheus starts");
    // A rate needs two scrapes; the examples' queries read 30 s windows.
    let deadline = Instant::now() + Duration::from_secs(30);
    let ready = "count(sum by (destination_service_name) (rate(istio_requests_total{reporter=\"destination\"}[30s])) > 0) == 3";
    loop {
        let result = prometheus.query(ready).await.unwrap_or(Value::Null);
        if result.as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the three services never had a request rate in prometheus within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Traffic {
        _cluster: cluster,
        prometheus,
    }
}

/// Arguments of the examples' Istio templates for one service of the test's namespace (the
/// examples default theirs to `default`).
fn istio_args(traffic: &Traffic, service: &str) -> Vec<String> {
    vec![
        "--arg".into(),
        format!("service-name={service}"),
        "--arg".into(),
        format!("namespace={}", ns()),
        "--arg".into(),
        format!("prometheus-address={}", traffic.prometheus.url()),
    ]
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_service_passes_the_examples_success_rate_gate() {
    let traffic = start_traffic().await;
    let mut args = vec!["-f".to_owned(), "-".to_owned(), "--once".to_owned()];
    args.extend(istio_args(&traffic, "web-healthy"));
    let output = analyze(&strs(&args), &example_template("success-rate")).await;
    let text = stdout(&output);
    assert_eq!(code(&output), 0, "{text}{}", stderr(&output));
    let header = Regex::new(r"^METRIC\s+#\s+TIME\s+PHASE\s+VALUE\s+MESSAGE\n").unwrap();
    assert!(header.is_match(&text), "{text}");
    assert!(
        row("success-rate", 1, "Successful", "[1]").is_match(&text),
        "{text}"
    );
    assert!(!has_row(&text, "success-rate", 2), "one row: {text}");
    assert!(
        text.contains("\nMetric success-rate: Successful\n"),
        "{text}"
    );
    assert!(text.ends_with("Result: Successful\n"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_percent_5xx_fails_the_examples_error_rate_gate() {
    let traffic = start_traffic().await;
    let mut args = vec!["-f".to_owned(), "-".to_owned(), "--once".to_owned()];
    args.extend(istio_args(&traffic, "web-faulty"));
    let output = analyze(&strs(&args), &example_template("error-rate")).await;
    let text = stdout(&output);
    assert_eq!(code(&output), 1, "{text}{}", stderr(&output));
    let failed = Regex::new(r"(?m)^error-rate\s+1\s+\S+Z\s+Failed\s+\[(0\.\d+)\]").unwrap();
    let share: f64 = failed
        .captures(&text)
        .unwrap_or_else(|| panic!("no Failed row: {text}"))[1]
        .parse()
        .unwrap();
    assert!((share - 0.1).abs() < 0.03, "error rate {share}: {text}");
    assert!(
        text.contains("Result: Failed: Metric \"error-rate\" assessed Failed due to failed (1) > failureLimit (0)"),
        "{text}"
    );
}

/// The examples' success-rate gate on its own schedule, shortened to three measurements a
/// second apart: all three are taken, a second apart, and the failure limit of 1 turns the
/// second failure of the faulty service into the verdict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schedule_runs_in_real_time_and_the_failure_limit_decides() {
    let traffic = start_traffic().await;
    let template = example_template("success-rate").replace("interval: 10s", "interval: 1s");
    let mut args = vec!["-f".to_owned(), "-".to_owned()];
    args.extend(istio_args(&traffic, "web-faulty"));
    let output = analyze(&strs(&args), &template).await;
    let text = stdout(&output);
    assert_eq!(code(&output), 1, "{text}{}", stderr(&output));
    let mut times = Vec::new();
    for number in 1..=2 {
        let failed = Regex::new(&format!(
            r"(?m)^success-rate\s+{number}\s+(\S+Z)\s+Failed\s+\[0\.(8|9)\d*\]"
        ))
        .unwrap();
        let captures = failed
            .captures(&text)
            .unwrap_or_else(|| panic!("no Failed row {number}: {text}"));
        times.push(captures[1].parse::<k8s_openapi::jiff::Timestamp>().unwrap());
    }
    assert!(!has_row(&text, "success-rate", 3), "{text}");
    // Times are whole seconds: the second measurement is due one interval after the first.
    assert_eq!(
        times[1].duration_since(times[0]),
        k8s_openapi::jiff::SignedDuration::from_secs(1),
        "{text}"
    );
    assert!(
        text.contains("Result: Failed: Metric \"success-rate\" assessed Failed due to failed (2) > failureLimit (1)"),
        "{text}"
    );

    // The healthy service passes all three.
    let mut args = vec!["-f".to_owned(), "-".to_owned()];
    args.extend(istio_args(&traffic, "web-healthy"));
    let output = analyze(&strs(&args), &template).await;
    let text = stdout(&output);
    assert_eq!(code(&output), 0, "{text}{}", stderr(&output));
    for number in 1..=3 {
        assert!(
            row("success-rate", number, "Successful", "[1]").is_match(&text),
            "{text}"
        );
    }
}

/// A gate that neither passes nor fails the 20 % 5xx service: Inconclusive, exit 3, in JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_between_the_conditions_is_inconclusive() {
    let traffic = start_traffic().await;
    let template = example_template("success-rate").replace(
        "successCondition: result[0] >= 0.95",
        "successCondition: result[0] >= 0.95\n    failureCondition: result[0] < 0.5",
    );
    assert!(template.contains("failureCondition"), "{template}");
    let mut args = vec![
        "-f".to_owned(),
        "-".to_owned(),
        "--once".to_owned(),
        "-o".to_owned(),
        "json".to_owned(),
    ];
    args.extend(istio_args(&traffic, "web-flaky"));
    let output = analyze(&strs(&args), &template).await;
    assert_eq!(code(&output), 3, "{}{}", stdout(&output), stderr(&output));
    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON on stdout");
    assert_eq!(report["phase"], "Inconclusive", "{report:#}");
    assert_eq!(report["interrupted"], false);
    let metric = &report["metrics"][0];
    assert_eq!(metric["name"], "success-rate");
    assert_eq!(metric["provider"], "prometheus");
    assert_eq!(metric["phase"], "Inconclusive");
    let measurements = metric["measurements"].as_array().unwrap();
    assert_eq!(measurements.len(), 1, "{report:#}");
    assert_eq!(measurements[0]["phase"], "Inconclusive");
    assert_eq!(measurements[0]["number"], 1);
    let value: Vec<f64> = serde_json::from_str(measurements[0]["value"].as_str().unwrap()).unwrap();
    assert!((value[0] - 0.8).abs() < 0.04, "{report:#}");
}

/// A free loopback port nothing listens on.
fn dead_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_prometheus_gives_error_measurements_and_exit_2() {
    let address = dead_address();
    let args = [
        "-f",
        "-",
        "--once",
        "--arg",
        "service-name=web",
        "--arg",
        &format!("prometheus-address={address}"),
    ];
    let output = analyze(&args, &example_template("latency-p95")).await;
    let text = stdout(&output);
    assert_eq!(code(&output), 2, "{text}{}", stderr(&output));
    let error_row = Regex::new(&format!(
        r"(?m)^latency-p95\s+1\s+\S+Z\s+Error\s+-\s+Prometheus query .*{}",
        regex::escape(&address)
    ))
    .unwrap();
    assert!(error_row.is_match(&text), "{text}");
    assert!(
        text.contains("Result: Error: Metric \"latency-p95\" assessed Error due to consecutiveErrors (1) > consecutiveErrorLimit (0)"),
        "{text}"
    );

    // On its own schedule the metric stops at its consecutiveErrorLimit, without waiting for
    // the interval.
    let template = example_template("latency-p95").replace(
        "    provider:",
        "    consecutiveErrorLimit: 0\n    provider:",
    );
    let without_once: Vec<&str> = args.iter().copied().filter(|a| *a != "--once").collect();
    let started = Instant::now();
    let output = analyze(&without_once, &template).await;
    let text = stdout(&output);
    assert_eq!(code(&output), 2, "{text}{}", stderr(&output));
    assert!(error_row.is_match(&text), "{text}");
    assert!(!has_row(&text, "latency-p95", 2), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_missing_argument_is_named_with_the_flag_to_pass() {
    let output = analyze(&["-f", "-", "--once"], &example_template("success-rate")).await;
    assert_eq!(code(&output), 2);
    assert_eq!(stdout(&output), "");
    assert_eq!(
        stderr(&output),
        "error: missing argument \"service-name\" (declared by <stdin>: AnalysisTemplate/success-rate): pass --arg service-name=VALUE\n"
    );

    let output = analyze(
        &[
            "-f",
            "-",
            "--arg",
            "service-name=web",
            "--arg",
            "servce=typo",
        ],
        &example_template("success-rate"),
    )
    .await;
    assert_eq!(code(&output), 2);
    let err = stderr(&output);
    assert!(
        err.starts_with("error: --arg servce: no template declares an argument \"servce\" (declared: namespace, prometheus-address, service-name)"),
        "{err}"
    );
}

#[tokio::test]
async fn a_metric_without_any_prometheus_address_is_named() {
    let template = "\
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: no-address
spec:
  metrics:
  - name: up
    successCondition: result[0] == 1
    provider:
      prometheus:
        query: vector(1)
";
    let output = analyze(&["-f", "-", "--once"], template).await;
    assert_eq!(code(&output), 2, "{}", stdout(&output));
    assert_eq!(
        stderr(&output),
        "error: <stdin>: AnalysisTemplate/no-address: metric \"up\": no Prometheus address: set provider.prometheus.address, or pass --prometheus URL\n"
    );
}

/// `--prometheus` serves metrics without an address; `--watch -o json` prints each
/// measurement as one JSON line when it is taken, then the result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_prints_each_measurement_as_it_arrives() {
    let prometheus = Prometheus::start(&[], Duration::from_secs(1))
        .await
        .expect("prometheus starts");
    let template = "\
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: constant
spec:
  metrics:
  - name: answer
    interval: 1s
    count: 3
    successCondition: result == 42
    provider:
      prometheus:
        query: scalar(vector(42))
";
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("ramp"))
        .args([
            "analyze",
            "-f",
            "-",
            "--watch",
            "-o",
            "json",
            "--prometheus",
        ])
        .arg(prometheus.url())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ramp starts");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(template.as_bytes())
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map(|line| (Instant::now(), line.unwrap()))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{lines:?}");
    assert_eq!(
        lines.len(),
        4,
        "three measurements and the result: {lines:?}"
    );
    for (number, (_, line)) in lines[..3].iter().enumerate() {
        let measurement: Value = serde_json::from_str(line).unwrap();
        assert_eq!(measurement["metric"], "answer", "{line}");
        assert_eq!(measurement["number"], number + 1, "{line}");
        assert_eq!(measurement["phase"], "Successful", "{line}");
        assert_eq!(measurement["value"], "42", "{line}");
    }
    let first_at = lines[0].0;
    let last_at = lines[2].0;
    assert!(
        last_at.duration_since(first_at) >= Duration::from_secs(1),
        "the first measurement was printed {:?} before the third; it should come as soon as it is taken",
        last_at.duration_since(first_at)
    );
    let result: Value = serde_json::from_str(&lines[3].1).unwrap();
    assert_eq!(result["phase"], "Successful");
    assert_eq!(
        result["metrics"][0]["measurements"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
}

/// A local JSON endpoint for web metrics: `/health` answers `{"data": {"ok": true,
/// "successPercent": 0.97}}` to `Authorization: Bearer s3cr3t` and 401 otherwise; `/down`
/// answers `{"ok": false}`, `/message` `{"message": "It worked!"}`.
async fn web_endpoint() -> (String, tokio::task::JoinHandle<()>) {
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::get;
    let app = axum::Router::new()
        .route(
            "/health",
            get(|headers: HeaderMap| async move {
                let authorised = headers
                    .get("authorization")
                    .is_some_and(|v| v == "Bearer s3cr3t");
                if authorised {
                    (
                        StatusCode::OK,
                        axum::Json(json!({"data": {"ok": true, "successPercent": 0.97}})),
                    )
                } else {
                    (StatusCode::UNAUTHORIZED, axum::Json(json!({})))
                }
            }),
        )
        .route("/down", get(|| async { axum::Json(json!({"ok": false})) }))
        .route(
            "/message",
            get(|| async { axum::Json(json!({"message": "It worked!"})) }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (url, server)
}

fn web_template(url: &str) -> String {
    format!(
        "\
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: web-health
spec:
  args:
  - name: base-url
    value: {url}
  - name: api-token
    valueFrom:
      secretKeyRef:
        name: health-api
        key: token
  metrics:
  - name: health
    successCondition: result.ok && result.successPercent >= 0.90
    provider:
      web:
        url: \"{{{{args.base-url}}}}/health\"
        headers:
        - key: Authorization
          value: \"Bearer {{{{args.api-token}}}}\"
        jsonPath: \"{{$.data}}\"
"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_template_measures_a_json_endpoint_with_a_secret_from_the_command_line() {
    let (url, _server) = web_endpoint().await;
    let template = web_template(&url);
    let output = analyze(&["-f", "-", "--arg", "api-token=s3cr3t"], &template).await;
    let text = stdout(&output);
    assert_eq!(code(&output), 0, "{text}{}", stderr(&output));
    assert!(
        row(
            "health",
            1,
            "Successful",
            r#"{"ok":true,"successPercent":0.97}"#
        )
        .is_match(&text),
        "{text}"
    );
    assert!(text.ends_with("Result: Successful\n"), "{text}");

    // Without a cluster the Secret cannot be read: the argument must come from --arg.
    let output = analyze(&["-f", "-"], &template).await;
    assert_eq!(code(&output), 2, "{}", stdout(&output));
    assert_eq!(
        stderr(&output),
        "error: <stdin>: AnalysisTemplate/web-health: argument \"api-token\" reads key \"token\" of Secret \"health-api\", which needs a cluster: pass --arg api-token=VALUE\n"
    );

    // A wrong token is an Error measurement whose message never shows the value.
    let output = analyze(
        &["-f", "-", "--once", "--arg", "api-token=wrong-token"],
        &template,
    )
    .await;
    let text = stdout(&output);
    assert_eq!(code(&output), 2, "{text}");
    assert!(
        row("health", 1, "Error", "-").is_match(&text)
            && text.contains("received non 2xx response code: 401"),
        "{text}"
    );
    assert!(!text.contains("wrong-token"), "{text}");
}

/// Two documents, one including the other, merged as a run would be: the job metric cannot be
/// measured without a cluster and says so, the web metric is measured anyway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_metric_reports_that_it_needs_a_cluster_and_the_others_still_run() {
    let (url, _server) = web_endpoint().await;
    let template = format!(
        "\
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: checks
spec:
  templates:
  - templateName: smoke-job
  metrics:
  - name: down
    successCondition: result == true
    provider:
      web:
        url: {url}/down
        jsonPath: \"{{$.ok}}\"
---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: smoke-job
spec:
  metrics:
  - name: smoke
    provider:
      job:
        spec:
          backoffLimit: 0
          template:
            spec:
              restartPolicy: Never
              containers:
              - name: smoke
                image: busybox
                command: [\"true\"]
"
    );
    let output = analyze(&["-f", "-"], &template).await;
    let text = stdout(&output);
    assert_eq!(
        code(&output),
        1,
        "the web metric fails: {text}{}",
        stderr(&output)
    );
    assert!(row("down", 1, "Failed", "false").is_match(&text), "{text}");
    assert!(
        row("smoke", 1, "Error", "-").is_match(&text)
            && text.contains("job provider needs a Kubernetes cluster"),
        "{text}"
    );
    // Included templates come first, as in a run.
    assert!(
        text.find("Metric smoke: Error").unwrap() < text.find("Metric down: Failed").unwrap(),
        "{text}"
    );
    assert!(
        text.contains(
            "Result: Failed: Metric \"down\" assessed Failed due to failed (1) > failureLimit (0)"
        ),
        "{text}"
    );

    // With a passing web metric the job metric's Error is the verdict.
    let passing = template.replace("result == true", "result == false");
    let output = analyze(&["-f", "-"], &passing).await;
    let text = stdout(&output);
    assert_eq!(code(&output), 2, "{text}");
    assert!(text.contains("Result: Error: Metric \"smoke\" assessed Error due to: the job provider needs a Kubernetes cluster"), "{text}");
}

#[tokio::test]
async fn a_malformed_manifest_names_the_file_object_and_field() {
    let dir = std::env::temp_dir().join(format!("ramp-analyze-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("broken.yaml");
    std::fs::write(
        &file,
        "\
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: broken
spec:
  metrics:
  - name: m
    count: many
    provider:
      web:
        url: http://127.0.0.1:1/
",
    )
    .unwrap();
    let path = file.display().to_string();
    let output = analyze(&["-f", &path], "").await;
    assert_eq!(code(&output), 2);
    let err = stderr(&output);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!("error: {path}: AnalysisTemplate/broken: "))
            && err.contains("count")
            && err.contains("\"many\""),
        "{err}"
    );

    std::fs::write(
        &file,
        "kind: AnalysisTemplate\nmetadata:\n  name: shapeless\nspec:\n  metrics:\n    name: m\n",
    )
    .unwrap();
    let output = analyze(&["-f", &path], "").await;
    assert_eq!(code(&output), 2);
    let err = stderr(&output);
    assert!(
        err.starts_with(&format!(
            "error: {path}: AnalysisTemplate/shapeless: spec.metrics: invalid type: map"
        )),
        "{err}"
    );

    std::fs::write(&file, "kind: Rollout\nmetadata:\n  name: web\n").unwrap();
    let output = analyze(&["-f", &path], "").await;
    assert_eq!(code(&output), 2);
    assert_eq!(
        stderr(&output),
        format!(
            "error: {path}: no AnalysisTemplate, ClusterAnalysisTemplate or AnalysisRun found (documents seen: {path}: Rollout/web)\n"
        )
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The real `kubectl` finds the plugin on the PATH and `kubectl ramp analyze` is `ramp
/// analyze`: help, an AnalysisRun manifest measured once, and the exit code passed through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_ramp_analyze_runs_through_the_real_kubectl() {
    let kubectl = std::path::Path::new("/usr/bin/kubectl");
    assert!(kubectl.exists(), "kubectl is installed on every machine");
    let plugin = assert_cmd::cargo::cargo_bin("kubectl-ramp");
    let path = format!(
        "{}:{}",
        plugin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let kubectl_ramp = |args: &[&str], stdin: &str| {
        let mut cmd = assert_cmd::Command::new(kubectl);
        cmd.arg("ramp")
            .args(args)
            .env("PATH", &path)
            .write_stdin(stdin.to_owned())
            .timeout(Duration::from_secs(60));
        async move {
            tokio::task::spawn_blocking(move || cmd.output().unwrap())
                .await
                .unwrap()
        }
    };

    let help = kubectl_ramp(&["analyze", "--help"], "").await;
    assert_eq!(code(&help), 0, "{}", stderr(&help));
    let text = stdout(&help);
    assert!(text.contains("Usage: kubectl ramp analyze"), "{text}");
    assert!(text.contains("--once"), "{text}");
    assert!(text.contains("0 Successful, 1 Failed, 2 Error"), "{text}");

    let (url, _server) = web_endpoint().await;
    let run = |path: &str, condition: &str| {
        format!(
            "\
apiVersion: argoproj.io/v1alpha1
kind: AnalysisRun
metadata:
  name: verify
spec:
  metrics:
  - name: health
    successCondition: {condition}
    provider:
      web:
        url: {url}{path}
        jsonPath: \"{{$.ok}}\"
"
        )
    };
    let output = kubectl_ramp(
        &["analyze", "-f", "-", "--once"],
        &run("/down", "result == false"),
    )
    .await;
    let text = stdout(&output);
    assert_eq!(code(&output), 0, "{text}{}", stderr(&output));
    assert!(
        row("health", 1, "Successful", "false").is_match(&text),
        "{text}"
    );

    let output = kubectl_ramp(
        &["analyze", "-f", "-", "--once"],
        &run("/down", "result == true"),
    )
    .await;
    assert_eq!(code(&output), 1, "{}", stdout(&output));
}

/// Upstream's example of a web metric whose URL comes from a Secret, read in place: the
/// Rollout and the Secret beside the template are skipped, the URL comes from `--arg`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_secret_example_runs_with_the_url_from_the_command_line() {
    let Some(upstream) = ramp_sim::compat::argo_rollouts() else {
        return;
    };
    let example = upstream.example("rollout-secret.yaml");
    let example = example.to_string_lossy();
    let (url, _server) = web_endpoint().await;
    let secret_url = format!("secret-url={url}/message");
    let output = analyze(&["-f", &example, "--arg", &secret_url, "--once"], "").await;
    let text = stdout(&output);
    assert_eq!(code(&output), 0, "{text}{}", stderr(&output));
    assert!(
        row("webmetric", 1, "Successful", "It worked!").is_match(&text),
        "{text}"
    );
    let notes = stderr(&output);
    assert!(
        notes.contains("note: skipping ") && notes.contains("Rollout/rollout-secret"),
        "{notes}"
    );
    assert!(notes.contains("Secret/example-secret"), "{notes}");

    let output = analyze(&["-f", &example, "--once"], "").await;
    assert_eq!(code(&output), 2);
    assert!(
        stderr(&output).ends_with(&format!(
            "error: {example}: AnalysisTemplate/analysis-secret: argument \"secret-url\" reads key \"secretUrl\" of Secret \"example-secret\", which needs a cluster: pass --arg secret-url=VALUE\n"
        )),
        "{}",
        stderr(&output)
    );
}

/// `kubectl get analysistemplates -o yaml` prints a List; its items are analysed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubectl_list_of_templates_is_analysed_item_by_item() {
    let (url, _server) = web_endpoint().await;
    let list = json!({
        "apiVersion": "v1",
        "kind": "List",
        "items": [{
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "AnalysisTemplate",
            "metadata": {"name": "message", "namespace": "default", "resourceVersion": "7"},
            "spec": {"metrics": [{
                "name": "message",
                "successCondition": "result == 'It worked!'",
                "provider": {"web": {"url": format!("{url}/message"), "jsonPath": "{$.message}"}},
            }]},
        }],
    });
    let output = analyze(&["-f", "-", "--once"], &list.to_string()).await;
    let text = stdout(&output);
    assert_eq!(code(&output), 0, "{text}{}", stderr(&output));
    assert!(
        row("message", 1, "Successful", "It worked!").is_match(&text),
        "{text}"
    );
}

fn message_template(url: &str, schedule: &str) -> String {
    format!(
        "\
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: message
spec:
  metrics:
  - name: message
{schedule}    successCondition: result == 'It worked!'
    provider:
      web:
        url: {url}/message
        jsonPath: \"{{$.message}}\"
"
    )
}

/// `initialDelay` is waited for in real time by default and skipped by `--once`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_initial_delay_is_honoured_unless_once() {
    let (url, _server) = web_endpoint().await;
    let template = message_template(&url, "    initialDelay: 5s\n");
    let started = Instant::now();
    let output = analyze(&["-f", "-"], &template).await;
    let waited = started.elapsed();
    assert_eq!(code(&output), 0, "{}", stdout(&output));
    // Run start is recorded in whole seconds, so the delay ends up to 1 s early.
    assert!(
        waited >= Duration::from_secs(4),
        "measured after {waited:?}"
    );

    let started = Instant::now();
    let output = analyze(&["-f", "-", "--once"], &template).await;
    let waited = started.elapsed();
    assert_eq!(code(&output), 0, "{}", stdout(&output));
    assert!(waited < Duration::from_secs(4), "measured after {waited:?}");
    assert!(
        row("message", 1, "Successful", "It worked!").is_match(&stdout(&output)),
        "{}",
        stdout(&output)
    );
}

/// Ctrl-C stops a long schedule: the measurements so far, "interrupted", exit 130.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupt_prints_what_was_measured_and_exits_130() {
    let (url, _server) = web_endpoint().await;
    let template = message_template(&url, "    interval: 1s\n    count: 60\n");
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("ramp"))
        .args(["analyze", "-f", "-", "--watch"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ramp starts");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(template.as_bytes())
        .unwrap();
    let pid = child.id().to_string();
    let stdout = child.stdout.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            // Interrupt once the second measurement is on screen.
            if line.starts_with("message") && line.contains("  2  ") {
                let status = std::process::Command::new("kill")
                    .args(["-INT", &pid])
                    .status()
                    .unwrap();
                assert!(status.success());
            }
            lines.push(line);
        }
        lines
    })
    .await
    .unwrap();
    let status = child.wait().unwrap();
    let text = lines.join("\n");
    assert_eq!(status.code(), Some(130), "{text}");
    assert!(
        row("message", 2, "Successful", "It worked!").is_match(&text),
        "{text}"
    );
    assert!(!has_row(&text, "message", 10), "{text}");
    assert!(
        text.ends_with("Result: interrupted before the analysis completed"),
        "{text}"
    );
}

/// Ctrl-C while a measurement is waiting on a slow endpoint stops at once, not after the
/// request's timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupt_does_not_wait_for_a_slow_measurement() {
    let (arrived, mut arrivals) = tokio::sync::mpsc::unbounded_channel::<()>();
    let app = axum::Router::new().route(
        "/slow",
        axum::routing::get(move || {
            let arrived = arrived.clone();
            async move {
                let _ = arrived.send(());
                tokio::time::sleep(Duration::from_secs(60)).await;
                axum::Json(json!({"ok": true}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let _server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let template = format!(
        "\
kind: AnalysisRun
metadata:
  name: slow
spec:
  metrics:
  - name: slow
    provider:
      web:
        url: {url}/slow
        timeoutSeconds: 50
"
    );
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("ramp"))
        .args(["analyze", "-f", "-", "--once"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ramp starts");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(template.as_bytes())
        .unwrap();
    tokio::time::timeout(Duration::from_secs(20), arrivals.recv())
        .await
        .expect("the measurement reached the endpoint within 20 s");
    let interrupted_at = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(
        interrupted_at.elapsed() < Duration::from_secs(10),
        "exited {:?} after the interrupt",
        interrupted_at.elapsed()
    );
    assert_eq!(output.status.code(), Some(130), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(!has_row(&text, "slow", 1), "{text}");
    assert!(
        text.ends_with("Metric slow: Pending\nResult: interrupted before the analysis completed\n"),
        "{text}"
    );
}
