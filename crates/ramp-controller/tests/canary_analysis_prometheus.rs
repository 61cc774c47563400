//! End to end on ramp-sim with a real Prometheus: canary steps gated by the examples'
//! AnalysisTemplates (Istio metric names) while the sim's traffic simulator serves the mesh
//! metrics and a private Prometheus scrapes them every second. Pod behaviour (errors, latency)
//! comes from the new version's pod-template annotations; assertions read the request log.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod canary_support;
mod support_prometheus;

use canary_support::*;
use kube::api::{Api, Patch, PatchParams, PostParams};
use pretty_assertions::assert_eq;
use ramp_api::analysis::{AnalysisRun, AnalysisTemplate, Measurement};
use ramp_api::rollout::Rollout;
use ramp_sim::traffic::TrafficConfig;
use ramp_sim::{LoggedRequest, SimConfig, Verb};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use support_prometheus::Prometheus;

const TEMPLATES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/analysis-templates.yaml"
);
const VS: &str = "web-vsvc";
const CANARY_SERVICE: &str = "web-canary";
/// Measurements wait for Prometheus to hold two scrapes of the canary's fresh traffic, as
/// `rate()` needs; a first query before that answers an empty vector (an Error measurement,
/// retried only 10 s later).
const INITIAL_DELAY: &str = "4s";
/// Metric interval of every template in these tests.
const INTERVAL: Duration = Duration::from_secs(1);

/// The examples' template `name` at a 1 s interval, `initialDelay` [`INITIAL_DELAY`] and the
/// given fields merged into its metric.
fn example_template(name: &str, metric: Value) -> Value {
    let text = std::fs::read_to_string(TEMPLATES).expect("examples readable");
    let stream = ramp_api::manifest::parse_stream(&text).expect("examples parse");
    let mut template = stream
        .documents
        .into_iter()
        .find(|d| d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("template {name} in the examples"));
    template["metadata"]["namespace"] = json!(ns());
    query_test_namespace(&mut template);
    let first = &mut template["spec"]["metrics"][0];
    first["interval"] = json!("1s");
    first["initialDelay"] = json!(INITIAL_DELAY);
    json_patch::merge(first, &metric);
    template
}

async fn create_template(cluster: &Cluster, template: Value) {
    let template: AnalysisTemplate = serde_json::from_value(template).expect("template");
    Api::<AnalysisTemplate>::namespaced(cluster.client.clone(), ns())
        .create(&PostParams::default(), &template)
        .await
        .expect("template created");
}

/// An analysis step running `templates` against the canary service at `prometheus`.
fn analysis_step(templates: &[&str], prometheus: &str) -> Value {
    let templates: Vec<Value> = templates
        .iter()
        .map(|t| json!({ "templateName": t }))
        .collect();
    json!({"analysis": {
        "templates": templates,
        "args": [
            {"name": "service-name", "value": CANARY_SERVICE},
            {"name": "prometheus-address", "value": prometheus}
        ]
    }})
}

fn canary_strategy(steps: Vec<Value>) -> Value {
    json!({
        "canaryService": CANARY_SERVICE,
        "stableService": "web-stable",
        "scaleDownDelaySeconds": 1,
        "trafficRouting": {"istio": {"virtualService": {"name": VS, "routes": ["primary"]}}},
        "steps": steps
    })
}

/// A sim with traffic (500 requests/s into the VirtualService, so a 3 % error share shows
/// within a tick), a Prometheus scraping it, and both controllers.
async fn start_cluster() -> (Cluster, Prometheus) {
    let mut cluster = Cluster::start_with(SimConfig {
        traffic: TrafficConfig {
            rps: 500.0,
            ..TrafficConfig::default()
        },
        ..SimConfig::default()
    })
    .await;
    let metrics = cluster.sim.metrics_url().expect("traffic metrics served");
    let prometheus = Prometheus::start(&[metrics], Duration::from_secs(1))
        .await
        .expect("prometheus starts");
    cluster
        .create_services(&["web-stable", CANARY_SERVICE], "web")
        .await;
    cluster
        .create_virtual_service(VS, "web-stable", CANARY_SERVICE)
        .await;
    cluster.start_controller();
    (cluster, prometheus)
}

/// Waits for the first scrape: a fresh Prometheus applies its targets only after a few
/// seconds, and until then every query answers an empty vector.
async fn wait_scraping(prometheus: &Prometheus) {
    eventually("prometheus scrapes the sim", 20, || async {
        prometheus
            .query("up == 1")
            .await
            .ok()
            .filter(|r| r.as_array().is_some_and(|a| !a.is_empty()))
    })
    .await;
}

/// Creates the rollout at `web:v1` and waits until it is Healthy and Prometheus scrapes the
/// sim; returns the VirtualService as it stands then, to replay later writes onto.
async fn deploy(cluster: &Cluster, prometheus: &Prometheus, steps: Vec<Value>) -> Value {
    cluster
        .create_rollout(rollout_manifest("web", 2, canary_strategy(steps)))
        .await;
    cluster.wait_healthy("web", 20).await;
    wait_scraping(prometheus).await;
    serde_json::to_value(cluster.virtual_services().get(VS).await.unwrap()).unwrap()
}

/// Rolls out `web:v2` whose pods behave as the `sim.ramp.dev/*` annotations say.
async fn update(cluster: &Cluster, behaviour: Value) {
    let patch = json!({"spec": {"template": {
        "metadata": {"annotations": behaviour},
        "spec": {"containers": [{"name": "web", "image": "web:v2", "ports": [{"containerPort": 8080}]}]}
    }}});
    cluster
        .rollouts()
        .patch("web", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("update applied");
}

async fn get_run(cluster: &Cluster, name: &str) -> AnalysisRun {
    Api::<AnalysisRun>::namespaced(cluster.client.clone(), ns())
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("AnalysisRun {name}: {e}"))
}

fn run_phase(run: &AnalysisRun) -> String {
    run.status
        .as_ref()
        .map(|s| s.phase.clone())
        .unwrap_or_default()
}

fn metric_phase(run: &AnalysisRun, metric: &str) -> String {
    run.status
        .as_ref()
        .and_then(|s| s.metric_result(metric))
        .map(|m| m.phase.clone())
        .unwrap_or_default()
}

fn measurements(run: &AnalysisRun, metric: &str) -> Vec<Measurement> {
    run.status
        .as_ref()
        .and_then(|s| s.metric_result(metric))
        .and_then(|m| m.measurements.clone())
        .unwrap_or_default()
}

fn phases(measurements: &[Measurement]) -> Vec<&str> {
    measurements.iter().map(|m| m.phase.as_str()).collect()
}

/// The single number of a one-element vector result such as `[0.9]`.
fn scalar(measurement: &Measurement) -> f64 {
    let value = measurement.value.as_deref().unwrap_or_default();
    value
        .trim_matches(|c| c == '[' || c == ']')
        .parse()
        .unwrap_or_else(|_| panic!("not a one-element vector: {value:?}"))
}

fn system_time(t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(u64::try_from(t.0.as_millisecond()).unwrap())
}

fn started(measurement: &Measurement) -> SystemTime {
    system_time(measurement.started_at.as_ref().expect("startedAt"))
}

fn completed(run: &AnalysisRun) -> SystemTime {
    system_time(
        run.status
            .as_ref()
            .and_then(|s| s.completed_at.as_ref())
            .expect("completedAt"),
    )
}

/// A canary weight written to the VirtualService: the weight, when, and the write's index
/// in the writes it was read from.
type WeightWrite = (i64, SystemTime, usize);

fn weight_history(writes: &[LoggedRequest], vs_before: &Value) -> Vec<WeightWrite> {
    let weights = canary_weights(writes, VS, vs_before, CANARY_SERVICE);
    let vs_writes = writes
        .iter()
        .enumerate()
        .filter(|(_, w)| w.resource == "virtualservices" && w.name.as_deref() == Some(VS))
        .map(|(index, w)| (w.time, index));
    weights
        .into_iter()
        .zip(vs_writes)
        .map(|(weight, (time, index))| (weight, time, index))
        .collect()
}

fn weights(writes: &[WeightWrite]) -> Vec<i64> {
    writes.iter().map(|(w, _, _)| *w).collect()
}

/// The first write of `weight`.
fn first_write(writes: &[WeightWrite], weight: i64) -> (SystemTime, usize) {
    writes
        .iter()
        .find(|(w, _, _)| *w == weight)
        .map(|(_, time, index)| (*time, *index))
        .unwrap_or_else(|| panic!("weight {weight} never written: {:?}", weights(writes)))
}

fn written_at(writes: &[WeightWrite], weight: i64) -> SystemTime {
    first_write(writes, weight).0
}

/// Index of the AnalysisRun controller's status write that gave run `name` its `phase`.
fn verdict_write(writes: &[LoggedRequest], name: &str, phase: &str) -> usize {
    position(writes, &format!("recording {name} {phase}"), |w| {
        w.resource == "analysisruns"
            && w.name.as_deref() == Some(name)
            && w.body
                .as_ref()
                .is_some_and(|b| b["status"]["phase"] == phase)
    })
}

/// Runs the Rollout controller created, in order, with when.
fn runs_created(writes: &[LoggedRequest]) -> Vec<(String, SystemTime)> {
    writes
        .iter()
        .filter(|w| w.resource == "analysisruns" && w.verb == Verb::Create)
        .map(|w| {
            let name = w
                .name
                .clone()
                .or_else(|| {
                    w.body
                        .as_ref()
                        .and_then(|b| b["metadata"]["name"].as_str().map(str::to_owned))
                })
                .unwrap_or_default();
            (name, w.time)
        })
        .collect()
}

fn names(created: &[(String, SystemTime)]) -> Vec<&str> {
    created.iter().map(|(n, _)| n.as_str()).collect()
}

fn current_hash(rollout: &Rollout) -> String {
    rollout
        .status
        .as_ref()
        .and_then(|s| s.current_pod_hash.clone())
        .expect("currentPodHash")
}

async fn wait_aborted(cluster: &Cluster, secs: u64) -> Rollout {
    cluster
        .wait_rollout("web", "rollout aborted by the analysis", secs, |r| {
            let s = r.status.clone().unwrap_or_default();
            s.abort == Some(true) && s.phase.as_deref() == Some("Degraded")
        })
        .await
}

/// Waits until the VirtualService writes since `checkpoint` put exactly `expected` canary
/// weights; returns the writes since `checkpoint` and those weights.
async fn wait_weights(
    cluster: &Cluster,
    checkpoint: usize,
    vs_before: &Value,
    expected: &[i64],
) -> (Vec<LoggedRequest>, Vec<WeightWrite>) {
    let what = format!("canary weights {expected:?} written");
    eventually(&what, 10, || async {
        let writes = controller_writes(&cluster.sim, checkpoint);
        let history = weight_history(&writes, vs_before);
        (weights(&history) == expected).then_some((writes, history))
    })
    .await
}

fn elapsed(from: SystemTime, to: SystemTime) -> Duration {
    to.duration_since(from)
        .unwrap_or_else(|e| panic!("{to:?} is {:?} before {from:?}", e.duration()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_canary_passes_the_success_rate_and_p95_gates_at_every_step_and_is_promoted() {
    let (cluster, prometheus) = start_cluster().await;
    create_template(
        &cluster,
        example_template("success-rate", json!({"count": 2})),
    )
    .await;
    create_template(
        &cluster,
        example_template("latency-p95", json!({"count": 2})),
    )
    .await;
    let gate = analysis_step(&["success-rate", "latency-p95"], prometheus.url());
    let vs_before = deploy(
        &cluster,
        &prometheus,
        vec![
            json!({"setWeight": 20}),
            gate.clone(),
            json!({"setWeight": 50}),
            gate,
        ],
    )
    .await;
    let checkpoint = cluster.sim.request_log().len();
    update(&cluster, json!({"sim.ramp.dev/error-rate": "0"})).await;
    let promoted = cluster.wait_healthy("web", 35).await;
    let hash = current_hash(&promoted);

    let writes = controller_writes(&cluster.sim, checkpoint);
    let weight_writes = weight_history(&writes, &vs_before);
    assert_eq!(weights(&weight_writes), vec![20, 50, 100, 0]);
    let created = runs_created(&writes);
    let first = format!("web-{hash}-2-1");
    let second = format!("web-{hash}-2-3");
    assert_eq!(names(&created), vec![first.as_str(), second.as_str()]);

    // Each run starts once its step's weight is on the router, and the next weight waits
    // for its verdict.
    for ((name, created_at), (weight, next)) in created.iter().zip([(20, 50), (50, 100)]) {
        let run = get_run(&cluster, name).await;
        assert_eq!(run_phase(&run), "Successful", "{name}: {:#?}", run.status);
        assert!(
            written_at(&weight_writes, weight) <= *created_at,
            "{name} before {weight} %"
        );
        let verdict = verdict_write(&writes, name, "Successful");
        let (next_written, next_index) = first_write(&weight_writes, next);
        assert!(
            verdict < next_index,
            "{next} % written before {name} was Successful"
        );
        assert!(completed(&run) <= next_written);
        let success = measurements(&run, "success-rate");
        let p95 = measurements(&run, "latency-p95");
        assert_eq!(
            phases(&success),
            vec!["Successful"; 2],
            "{name}: {success:#?}"
        );
        assert_eq!(phases(&p95), vec!["Successful"; 2], "{name}: {p95:#?}");
        assert!(success.iter().all(|m| scalar(m) >= 0.95), "{success:#?}");
        assert!(p95.iter().all(|m| scalar(m) <= 500.0), "{p95:#?}");
        eprintln!(
            "{name}: success rates {:?}, p95 {:?} ms; {next} % written {:?} after the verdict",
            success.iter().map(scalar).collect::<Vec<_>>(),
            p95.iter().map(scalar).collect::<Vec<_>>(),
            elapsed(writes[verdict].time, next_written)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_answering_ten_percent_5xx_is_aborted_with_all_traffic_on_stable_in_time() {
    let (cluster, prometheus) = start_cluster().await;
    let template = example_template("success-rate", json!({"count": 3}));
    let failure_limit = template["spec"]["metrics"][0]["failureLimit"]
        .as_u64()
        .expect("the example sets failureLimit");
    create_template(&cluster, template).await;
    let vs_before = deploy(
        &cluster,
        &prometheus,
        vec![
            json!({"setWeight": 20}),
            analysis_step(&["success-rate"], prometheus.url()),
            json!({"setWeight": 50}),
        ],
    )
    .await;
    let checkpoint = cluster.sim.request_log().len();
    update(&cluster, json!({"sim.ramp.dev/error-rate": "0.1"})).await;
    let aborted = wait_aborted(&cluster, 30).await;
    let hash = current_hash(&aborted);
    let name = format!("web-{hash}-2-1");
    let message = aborted.status.clone().unwrap().message.unwrap_or_default();
    assert!(
        message.contains(&format!(
            "Step-based analysis phase failed: Metric \"success-rate\" assessed Failed due to \
             failed ({}) > failureLimit ({failure_limit})",
            failure_limit + 1
        )),
        "{message}"
    );
    let (writes, weight_writes) = wait_weights(&cluster, checkpoint, &vs_before, &[20, 0]).await;

    let run = get_run(&cluster, &name).await;
    assert_eq!(run_phase(&run), "Failed", "{:#?}", run.status);
    let samples = measurements(&run, "success-rate");
    assert_eq!(
        phases(&samples),
        vec!["Failed"; usize::try_from(failure_limit).unwrap() + 1],
        "{samples:#?}"
    );
    for sample in &samples {
        let share = scalar(sample);
        assert!((share - 0.9).abs() < 0.02, "success rate {share}");
    }
    // From the first bad sample to 100 % stable: the failure limit's further samples, then one
    // reaction. startedAt has second precision, so this may overstate by up to a second.
    let first_bad = started(&samples[0]);
    let back_to_stable = written_at(&weight_writes, 0);
    let reaction = elapsed(first_bad, back_to_stable);
    let budget = INTERVAL * u32::try_from(failure_limit + 1).unwrap() + Duration::from_secs(3);
    assert!(
        reaction <= budget,
        "stable got all traffic {reaction:?} after the first bad sample (budget {budget:?})"
    );
    // The failed verdict itself is acted on in one event-driven reconcile.
    let verdict = verdict_write(&writes, &name, "Failed");
    let after_verdict = elapsed(writes[verdict].time, back_to_stable);
    assert!(
        after_verdict < Duration::from_secs(3),
        "stable got all traffic {after_verdict:?} after the run failed"
    );
    eprintln!(
        "{name}: first bad sample to 100 % stable {reaction:?} (budget {budget:?}); \
         Failed verdict written to 100 % stable {after_verdict:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_with_a_p95_of_800_ms_is_aborted_by_the_latency_gate_while_errors_pass() {
    let (cluster, prometheus) = start_cluster().await;
    create_template(
        &cluster,
        example_template("error-rate", json!({"count": 3})),
    )
    .await;
    create_template(
        &cluster,
        example_template("latency-p95", json!({"count": 3})),
    )
    .await;
    let vs_before = deploy(
        &cluster,
        &prometheus,
        vec![
            json!({"setWeight": 20}),
            analysis_step(&["error-rate", "latency-p95"], prometheus.url()),
            json!({"setWeight": 50}),
        ],
    )
    .await;
    let checkpoint = cluster.sim.request_log().len();
    // A few 5xx, under the 5 % gate: with none at all the error query has no 5xx series to
    // divide and answers an empty vector.
    update(
        &cluster,
        json!({
            "sim.ramp.dev/error-rate": "0.03",
            "sim.ramp.dev/latency-ms": "300",
            "sim.ramp.dev/latency-p95-ms": "800"
        }),
    )
    .await;
    let aborted = wait_aborted(&cluster, 30).await;
    let hash = current_hash(&aborted);
    let message = aborted.status.clone().unwrap().message.unwrap_or_default();
    assert!(
        message.contains("Metric \"latency-p95\" assessed Failed"),
        "{message}"
    );
    wait_weights(&cluster, checkpoint, &vs_before, &[20, 0]).await;

    let run = get_run(&cluster, &format!("web-{hash}-2-1")).await;
    assert_eq!(run_phase(&run), "Failed", "{:#?}", run.status);
    let latency = measurements(&run, "latency-p95");
    let errors = measurements(&run, "error-rate");
    assert_eq!(metric_phase(&run, "latency-p95"), "Failed");
    assert_eq!(phases(&latency), vec!["Failed"; 2], "{latency:#?}");
    assert!(latency.iter().all(|m| scalar(m) > 500.0), "{latency:#?}");
    assert_eq!(metric_phase(&run, "error-rate"), "Successful");
    assert!(!errors.is_empty(), "the error-rate gate was measured");
    assert!(
        errors.iter().all(|m| m.phase == "Successful"),
        "{errors:#?}"
    );
    assert!(
        errors.iter().all(|m| (scalar(m) - 0.03).abs() < 0.015),
        "{errors:#?}"
    );
    eprintln!(
        "p95 {:?} ms failed, error rate {:?} passed",
        latency.iter().map(scalar).collect::<Vec<_>>(),
        errors.iter().map(scalar).collect::<Vec<_>>()
    );
}

/// A fixed loopback address in front of whichever Prometheus is current, as a Service is in
/// front of a Prometheus pod: the rollout's `prometheus-address` argument stays valid when
/// Prometheus is replaced. Connections are refused (closed) while the backend is down.
struct PrometheusAddress {
    url: String,
    backend: Arc<Mutex<SocketAddr>>,
    accept: tokio::task::JoinHandle<()>,
}

impl PrometheusAddress {
    async fn start(prometheus: &Prometheus) -> Self {
        let backend = Arc::new(Mutex::new(socket_address(prometheus)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let target = backend.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let to = *target.lock().unwrap();
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Self {
            url,
            backend,
            accept,
        }
    }

    fn point_at(&self, prometheus: &Prometheus) {
        *self.backend.lock().unwrap() = socket_address(prometheus);
    }
}

impl Drop for PrometheusAddress {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

fn socket_address(prometheus: &Prometheus) -> SocketAddr {
    prometheus
        .url()
        .trim_start_matches("http://")
        .parse()
        .expect("prometheus listens on a socket address")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_down_mid_analysis_aborts_after_the_error_limit_and_a_retry_completes() {
    let (cluster, prometheus) = start_cluster().await;
    let address = PrometheusAddress::start(&prometheus).await;
    create_template(
        &cluster,
        example_template(
            "success-rate",
            json!({"count": 3, "consecutiveErrorLimit": 1}),
        ),
    )
    .await;
    let vs_before = deploy(
        &cluster,
        &prometheus,
        vec![
            json!({"setWeight": 20}),
            analysis_step(&["success-rate"], &address.url),
            json!({"setWeight": 50}),
        ],
    )
    .await;
    let checkpoint = cluster.sim.request_log().len();
    update(&cluster, json!({"sim.ramp.dev/error-rate": "0"})).await;
    let updating = cluster
        .wait_rollout("web", "the canary's pod-template hash", 10, |r| {
            r.status
                .as_ref()
                .is_some_and(|s| s.current_pod_hash != s.stable_rs)
        })
        .await;
    let name = format!("web-{}-2-1", current_hash(&updating));
    let runs = Api::<AnalysisRun>::namespaced(cluster.client.clone(), ns());
    eventually("a first Successful measurement", 20, || async {
        let run = runs.get(&name).await.ok()?;
        (phases(&measurements(&run, "success-rate")) == ["Successful"]).then_some(())
    })
    .await;
    let down = socket_address(&prometheus);
    drop(prometheus);
    // Its replacement starts now, unreachable until the address points at it, so that its
    // first scrape (seconds after start) is not waited for after the abort.
    let metrics = cluster.sim.metrics_url().expect("traffic metrics served");
    let replacement = Prometheus::start(&[metrics], Duration::from_secs(1))
        .await
        .expect("a new prometheus starts");
    assert_ne!(
        socket_address(&replacement),
        down,
        "the new Prometheus took the old port"
    );

    let aborted = wait_aborted(&cluster, 25).await;
    let message = aborted.status.clone().unwrap().message.unwrap_or_default();
    assert!(
        message.contains(
            "Step-based analysis phase error: Metric \"success-rate\" assessed Error due to \
             consecutiveErrors (2) > consecutiveErrorLimit (1)"
        ),
        "{message}"
    );
    // Never a step forward on errors: the canary kept 20 % until the abort took it back.
    let (writes, weight_writes) = wait_weights(&cluster, checkpoint, &vs_before, &[20, 0]).await;
    let run = get_run(&cluster, &name).await;
    assert_eq!(run_phase(&run), "Error", "{:#?}", run.status);
    let samples = measurements(&run, "success-rate");
    assert_eq!(
        phases(&samples),
        vec!["Successful", "Error", "Error"],
        "{samples:#?}"
    );
    assert!(
        samples[1..].iter().all(|m| {
            let message = m.message.clone().unwrap_or_default();
            message.starts_with("Prometheus query") && message.contains(&address.url)
        }),
        "the Error measurements say which Prometheus was unreachable: {samples:#?}"
    );
    // One Error is within the limit: the abort came only with the second, 10 s later.
    let first_error = started(&samples[1]);
    let abort = written_at(&weight_writes, 0);
    let held = elapsed(first_error, abort);
    assert!(
        held >= Duration::from_secs(10),
        "aborted {held:?} after the first Error"
    );
    let verdict = verdict_write(&writes, &name, "Error");
    let reaction = elapsed(writes[verdict].time, abort);
    assert!(reaction < Duration::from_secs(3), "{reaction:?}");
    eprintln!(
        "first Error to 100 % stable {held:?}; Error verdict written to 100 % stable \
         {reaction:?}"
    );

    // A new Prometheus behind the same address, then a retry: the analysis runs afresh.
    wait_scraping(&replacement).await;
    address.point_at(&replacement);
    cluster.patch_status("web", json!({"abort": false})).await;
    cluster.wait_healthy("web", 25).await;
    let writes = controller_writes(&cluster.sim, checkpoint);
    let retried = format!("{name}.1");
    assert_eq!(
        names(&runs_created(&writes)),
        vec![name.as_str(), retried.as_str()]
    );
    assert_eq!(
        weights(&weight_history(&writes, &vs_before)),
        vec![20, 0, 20, 50, 100, 0]
    );
    let retried = get_run(&cluster, &retried).await;
    assert_eq!(run_phase(&retried), "Successful", "{:#?}", retried.status);
    let samples = measurements(&retried, "success-rate");
    assert_eq!(phases(&samples), vec!["Successful"; 3], "{samples:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inconclusive_run_pauses_the_rollout_and_promote_resumes_it_with_a_fresh_run() {
    let (cluster, prometheus) = start_cluster().await;
    // Success at >= 99 %, failure under 50 %: a 90 % canary is neither. The rate window is
    // shortened so that, once the canary is fixed, its errors leave the window in seconds.
    let mut band = example_template(
        "success-rate",
        json!({
            "count": 2,
            "successCondition": "result[0] >= 0.99",
            "failureCondition": "result[0] < 0.5"
        }),
    );
    band["metadata"]["name"] = json!("success-band");
    let query = band["spec"]["metrics"][0]["provider"]["prometheus"]["query"]
        .as_str()
        .unwrap()
        .replace("[30s]", "[5s]");
    band["spec"]["metrics"][0]["provider"]["prometheus"]["query"] = json!(query);
    create_template(&cluster, band).await;
    let gate = analysis_step(&["success-band"], prometheus.url());
    let vs_before = deploy(
        &cluster,
        &prometheus,
        vec![
            json!({"setWeight": 20}),
            gate.clone(),
            json!({"setWeight": 50}),
            gate,
        ],
    )
    .await;
    let checkpoint = cluster.sim.request_log().len();
    update(&cluster, json!({"sim.ramp.dev/error-rate": "0.1"})).await;
    let paused = cluster
        .wait_rollout("web", "rollout paused on the Inconclusive run", 30, |r| {
            r.status.as_ref().is_some_and(|s| {
                s.pause_conditions
                    .iter()
                    .flatten()
                    .any(|c| c.reason == "InconclusiveAnalysisRun")
            })
        })
        .await;
    let status = paused.status.clone().unwrap();
    let reasons: Vec<&str> = status
        .pause_conditions
        .iter()
        .flatten()
        .map(|c| c.reason.as_str())
        .collect();
    assert_eq!(reasons, vec!["InconclusiveAnalysisRun"]);
    assert_eq!(status.phase.as_deref(), Some("Paused"), "{status:#?}");
    assert_eq!(status.controller_pause, Some(true));
    assert_eq!(status.abort, None, "{status:#?}");
    let hash = current_hash(&paused);
    let first = format!("web-{hash}-2-1");
    let inconclusive = get_run(&cluster, &first).await;
    assert_eq!(run_phase(&inconclusive), "Inconclusive");
    let samples = measurements(&inconclusive, "success-rate");
    assert_eq!(phases(&samples), vec!["Inconclusive"], "{samples:#?}");
    assert!((scalar(&samples[0]) - 0.9).abs() < 0.02, "{samples:#?}");

    // Fix the canary in place (its ReplicaSet's behaviour, same revision) and wait until its
    // errors are out of the query's window.
    let replica_sets =
        Api::<k8s_openapi::api::apps::v1::ReplicaSet>::namespaced(cluster.client.clone(), ns());
    replica_sets
        .patch(
            &format!("web-{hash}"),
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"template": {"metadata": {"annotations": {
                "sim.ramp.dev/error-rate": "0"
            }}}}})),
        )
        .await
        .expect("canary fixed");
    let clean = format!(
        "sum(rate(istio_requests_total{{reporter=\"destination\",destination_service_name=\"{CANARY_SERVICE}\",response_code=~\"5.*\"}}[5s])) == 0"
    );
    eventually("the canary's errors out of the window", 20, || async {
        prometheus
            .query(&clean)
            .await
            .ok()
            .filter(|r| r.as_array().is_some_and(|a| !a.is_empty()))
    })
    .await;
    let still = cluster.rollout("web").await;
    let writes = controller_writes(&cluster.sim, checkpoint);
    assert_eq!(
        weights(&weight_history(&writes, &vs_before)),
        vec![20],
        "no step forward while paused"
    );
    assert_eq!(names(&runs_created(&writes)), vec![first.as_str()]);

    // `promote` as the plugin does on an Inconclusive step analysis: clear the pause and
    // move past the step.
    let index = still.status.unwrap().current_step_index.unwrap();
    cluster
        .patch_status(
            "web",
            json!({"pauseConditions": null, "controllerPause": false, "currentStepIndex": index + 1}),
        )
        .await;
    cluster.wait_healthy("web", 30).await;
    let writes = controller_writes(&cluster.sim, checkpoint);
    assert_eq!(
        weights(&weight_history(&writes, &vs_before)),
        vec![20, 50, 100, 0]
    );
    let fresh = format!("web-{hash}-2-3");
    assert_eq!(
        names(&runs_created(&writes)),
        vec![first.as_str(), fresh.as_str()]
    );
    let history = weight_history(&writes, &vs_before);
    assert!(
        verdict_write(&writes, &fresh, "Successful") < first_write(&history, 100).1,
        "100 % written before {fresh} was Successful"
    );
    let fresh = get_run(&cluster, &fresh).await;
    assert_eq!(run_phase(&fresh), "Successful", "{:#?}", fresh.status);
    let samples = measurements(&fresh, "success-rate");
    assert_eq!(phases(&samples), vec!["Successful"; 2]);
    assert!(samples.iter().all(|m| scalar(m) >= 0.99), "{samples:#?}");
    assert_eq!(run_phase(&get_run(&cluster, &first).await), "Inconclusive");
}
