//! Memory benchmark of the real `ramp controller` process (plain main, no harness): it runs
//! `ramp sim` and `ramp controller` as separate processes, drives updates of many Rollouts and
//! the creation and deletion of others, and checks that the controller's resident memory stays
//! flat per reconcile once its caches are full, and that it forgets deleted rollouts
//! (`ramp_remembered_objects`). The figures are read from the controller's
//! `/proc/<pid>/status` and its `/metrics`; the sim's memory is not counted.
//! `RAMP_BENCH_ROLLOUTS` (default 100), `RAMP_BENCH_CYCLES` (default 8, at least 3) and
//! `RAMP_BENCH_CHURN` (rollouts created and deleted per cycle, default 10) scale it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // A benchmark aborts on any failure.

use futures::{StreamExt, stream};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use ramp_api::rollout::Rollout;
use serde_json::json;
use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Largest accepted growth of the controller's resident memory per 1000 rollout reconciles:
/// the median over the cycles after [`SETTLED_CYCLE`] of each cycle's growth, less what
/// kube's event recorder is known to hold (see [`EVENT_CACHE_KIB`]). docs/performance.md
/// explains the figure: the noise of a flat run, and what a leak of one copy of a cached
/// object per reconcile would add.
const MAX_GROWTH_KIB_PER_1000_RECONCILES: f64 = 512.0;
/// kube's `events::Recorder` keeps every event it published for this long (its `CACHE_TTL`),
/// keyed by the object reference, resourceVersion included, so none is ever reused.
const EVENT_CACHE_TTL: Duration = Duration::from_secs(6 * 60);
/// Resident memory one event in that cache costs, measured: within the first six minutes,
/// when nothing leaves the cache, a run grows 1.39 to 1.65 KiB per published event.
const EVENT_CACHE_KIB: f64 = 1.5;
/// `reportingController` of the events Ramp's controllers publish (their `Reporter`s).
const RAMP_REPORTERS: [&str; 2] = ["rollouts-controller", "ramp"];
/// The cycle whose end is the verdict's starting point: by then every rollout has the three
/// ReplicaSets `revisionHistoryLimit: 2` keeps, so the caches hold all they ever will.
const SETTLED_CYCLE: usize = 2;
const NAMESPACE: &str = "default";
const POLL: Duration = Duration::from_millis(250);
/// How long after its delete event the controller may still remember a deleted rollout.
const FORGET_WITHIN: Duration = Duration::from_secs(10);

fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} is not a whole number")),
        Err(_) => default,
    }
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A scratch directory for the kubeconfig and the logs, removed when the bench ends.
struct WorkDir(PathBuf);

impl WorkDir {
    fn create() -> Self {
        let path =
            std::env::temp_dir().join(format!("ramp-controller-memory-{}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process that is killed when the bench ends, panics included.
struct Process {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Process {
    fn spawn(name: &'static str, dir: &Path, args: &[String]) -> Self {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_ramp"))
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `ramp {name}`: {e}"));
        Self { name, child, log }
    }

    /// Panics with the end of the log when the process has exited.
    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            panic!(
                "`ramp {}` exited ({status}); end of its log:\n{}",
                self.name,
                tail.join("\n")
            );
        }
    }

    /// `(VmRSS, VmHWM)` in KiB.
    fn memory_kib(&mut self) -> (u64, u64) {
        self.assert_running();
        let path = format!("/proc/{}/status", self.child.id());
        let status = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .unwrap_or_else(|| panic!("{path} has no {name}"))
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` until it returns `Ok`; on the deadline panics with `what` and the last reason
/// `check` gave for not being there yet.
async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + within;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(reason) => assert!(
                Instant::now() < deadline,
                "{what}: never happened within {} s ({reason})",
                within.as_secs()
            ),
        }
        tokio::time::sleep(POLL).await;
    }
}

/// `GET path` over HTTP/1.0: `(status, body)`.
async fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: bench\r\n\r\n").as_bytes())
        .await
        .map_err(|e| format!("GET {addr}{path}: {e}"))?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .map_err(|e| format!("GET {addr}{path}: {e}"))?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("GET {addr}{path}: no status line"))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// Rollout reconciles the controller has finished, by result.
#[derive(Clone, Copy, Default)]
struct Reconciles {
    succeeded: u64,
    failed: u64,
}

impl Reconciles {
    fn total(self) -> u64 {
        self.succeeded + self.failed
    }
}

/// The rollout controller's figures in one `/metrics` exposition.
struct Scrape {
    reconciles: Reconciles,
    /// `ramp_remembered_objects`: rollouts the controller keeps per-object memory for.
    remembered: u64,
    /// Size of the whole exposition (per-object series must go with their objects).
    bytes: usize,
}

fn sample_value(body: &str, series: &str) -> Option<u64> {
    let prefix = format!("{series} ");
    body.lines().find_map(|l| l.strip_prefix(&prefix)).map(|v| {
        v.trim()
            .parse::<u64>()
            .unwrap_or_else(|_| panic!("{series} has a non-integer value {v:?}"))
    })
}

async fn scrape(metrics: SocketAddr) -> Scrape {
    let (status, body) = http_get(metrics, "/metrics").await.unwrap();
    assert_eq!(status, 200, "GET /metrics: {body}");
    let reconciles = |result: &str| {
        let series = format!(
            "ramp_reconcile_duration_seconds_count{{controller=\"rollout\",result=\"{result}\"}}"
        );
        // A result that never happened has no series yet.
        sample_value(&body, &series).unwrap_or(0)
    };
    let remembered = r#"ramp_remembered_objects{controller="rollout"}"#;
    Scrape {
        reconciles: Reconciles {
            succeeded: reconciles("success"),
            failed: reconciles("error"),
        },
        remembered: sample_value(&body, remembered)
            .unwrap_or_else(|| panic!("/metrics has no {remembered}")),
        bytes: body.len(),
    }
}

fn image(version: usize) -> String {
    format!("argoproj/rollouts-demo:v{version}")
}

/// `rollout-canary.yaml`'s shape with one replica and second-scale steps.
fn rollout(name: &str, image: &str) -> Rollout {
    serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "replicas": 1,
            "revisionHistoryLimit": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{
                    "name": "rollouts-demo",
                    "image": image,
                    "imagePullPolicy": "Always",
                    "ports": [{"containerPort": 8080}]
                }]}
            },
            "strategy": {"canary": {"steps": [
                {"setWeight": 50},
                {"pause": {"duration": "1s"}},
                {"setWeight": 100}
            ]}}
        }
    }))
    .unwrap()
}

fn template_image(rollout: &Rollout) -> Option<&str> {
    rollout
        .spec
        .template
        .as_ref()?
        .spec
        .as_ref()?
        .containers
        .first()?
        .image
        .as_deref()
}

/// Why `rollout` is not yet Healthy at `image` on a stable ReplicaSet other than `previous`;
/// `Ok` with its stable pod hash when it is.
fn healthy_at(rollout: &Rollout, image: &str, previous: Option<&String>) -> Result<String, String> {
    let name = rollout.metadata.name.as_deref().unwrap_or_default();
    let status = rollout.status.clone().unwrap_or_default();
    if template_image(rollout) != Some(image) {
        return Err(format!("{name} does not run {image} yet"));
    }
    if status.observed_generation_number() != rollout.metadata.generation {
        return Err(format!(
            "{name}: generation {:?} not observed yet",
            rollout.metadata.generation
        ));
    }
    match (&status.phase, &status.stable_rs) {
        (Some(phase), Some(stable))
            if phase == "Healthy" && status.is_fully_promoted() && Some(stable) != previous =>
        {
            Ok(stable.clone())
        }
        _ => Err(format!(
            "{name}: phase {:?}, message {:?}, stable {:?}, current {:?}",
            status.phase, status.message, status.stable_rs, status.current_pod_hash
        )),
    }
}

/// Waits until each of `names` is Healthy at `image`, on a new stable ReplicaSet for those in
/// `stable`; records each one's stable pod hash there.
async fn wait_healthy(
    rollouts: &Api<Rollout>,
    names: &[String],
    image: &str,
    stable: &mut BTreeMap<String, String>,
    within: Duration,
) {
    let what = format!("{} rollouts Healthy at {image}", names.len());
    let reached = eventually(&what, within, || async {
        let listed = rollouts
            .list(&ListParams::default())
            .await
            .map_err(|e| format!("list rollouts: {e}"))?;
        let by_name: BTreeMap<&str, &Rollout> = listed
            .items
            .iter()
            .filter_map(|r| Some((r.metadata.name.as_deref()?, r)))
            .collect();
        let mut reached = Vec::with_capacity(names.len());
        let mut waiting = Vec::new();
        for name in names {
            let outcome = by_name
                .get(name.as_str())
                .ok_or_else(|| format!("{name} does not exist"))
                .and_then(|r| healthy_at(r, image, stable.get(name)));
            match outcome {
                Ok(hash) => reached.push((name.clone(), hash)),
                Err(reason) => waiting.push(reason),
            }
        }
        match waiting.first() {
            None => Ok(reached),
            Some(first) => Err(format!(
                "{} of {} not there, e.g. {first}",
                waiting.len(),
                names.len()
            )),
        }
    })
    .await;
    stable.extend(reached);
}

async fn create_all(rollouts: &Api<Rollout>, names: &[String], image: &str) {
    stream::iter(names)
        .map(|name| async move {
            rollouts
                .create(&PostParams::default(), &rollout(name, image))
                .await
                .unwrap_or_else(|e| panic!("create rollout {name}: {e}"))
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
}

async fn set_image(rollouts: &Api<Rollout>, names: &[String], image: &str) {
    let patch = json!({"spec": {"template": {"spec": {"containers": [{
        "name": "rollouts-demo",
        "image": image,
        "imagePullPolicy": "Always",
        "ports": [{"containerPort": 8080}]
    }]}}}});
    stream::iter(names)
        .map(|name| {
            let patch = &patch;
            async move {
                rollouts
                    .patch(name, &PatchParams::default(), &Patch::Merge(patch))
                    .await
                    .unwrap_or_else(|e| panic!("set the image of rollout {name}: {e}"))
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
}

/// Deletes `names` and waits until neither they nor a ReplicaSet they own are left.
async fn delete_all(
    rollouts: &Api<Rollout>,
    replica_sets: &Api<ReplicaSet>,
    names: &[String],
    within: Duration,
) {
    for name in names {
        rollouts
            .delete(name, &DeleteParams::default())
            .await
            .unwrap_or_else(|e| panic!("delete rollout {name}: {e}"));
    }
    let deleted: HashSet<&str> = names.iter().map(String::as_str).collect();
    let what = format!(
        "{} deleted rollouts and their ReplicaSets gone",
        names.len()
    );
    eventually(&what, within, || async {
        let left = rollouts
            .list(&ListParams::default())
            .await
            .map_err(|e| format!("list rollouts: {e}"))?
            .items
            .into_iter()
            .filter_map(|r| r.metadata.name)
            .filter(|n| deleted.contains(n.as_str()))
            .count();
        let owned = replica_sets
            .list(&ListParams::default())
            .await
            .map_err(|e| format!("list replicasets: {e}"))?
            .items
            .into_iter()
            .filter(|rs| {
                rs.metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|o| deleted.contains(o.name.as_str()))
            })
            .count();
        if left == 0 && owned == 0 {
            Ok(())
        } else {
            Err(format!("{left} rollouts and {owned} ReplicaSets left"))
        }
    })
    .await;
}

/// The figures taken at the end of a cycle (cycle 0: after the first rollouts are Healthy).
struct Sample {
    cycle: usize,
    elapsed: Duration,
    reconciles: Reconciles,
    rss_kib: u64,
    hwm_kib: u64,
    metrics_bytes: usize,
    remembered: u64,
    /// Events the controller has published so far.
    events: usize,
    /// Those published within [`EVENT_CACHE_TTL`], still held by kube's event recorder.
    cached_events: usize,
    /// The most `cached_events` so far: the memory of evicted events stays with the allocator
    /// for reuse, so the recorder's share of the resident memory follows this peak.
    peak_cached_events: usize,
    /// Growth since the previous sample less the recorder's share, per 1000 reconciles.
    growth_per_1000: Option<f64>,
}

/// `(published, still cached)` of the events Ramp's controllers published.
async fn count_events(events: &Api<Event>) -> (usize, usize) {
    let now = Timestamp::now();
    let ttl = SignedDuration::try_from(EVENT_CACHE_TTL).unwrap();
    let ours: Vec<Event> = events
        .list(&ListParams::default())
        .await
        .unwrap_or_else(|e| panic!("list events: {e}"))
        .items
        .into_iter()
        .filter(|e| {
            e.reporting_controller
                .as_deref()
                .is_some_and(|r| RAMP_REPORTERS.contains(&r))
        })
        .collect();
    let cached = ours
        .iter()
        .filter(|e| e.event_time.as_ref().is_some_and(|t| t.0 + ttl > now))
        .count();
    (ours.len(), cached)
}

/// Fills in `sample.peak_cached_events` and `sample.growth_per_1000` from the sample before it.
fn growth_since(previous: &Sample, sample: &mut Sample) {
    sample.peak_cached_events = previous.peak_cached_events.max(sample.cached_events);
    let reconciles = sample.reconciles.total() - previous.reconciles.total();
    let cache_kib =
        (sample.peak_cached_events - previous.peak_cached_events) as f64 * EVENT_CACHE_KIB;
    let growth_kib = sample.rss_kib as f64 - previous.rss_kib as f64 - cache_kib;
    sample.growth_per_1000 = (reconciles > 0).then(|| growth_kib * 1000.0 / reconciles as f64);
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    match values.len() {
        0 => None,
        n if n % 2 == 1 => Some(values[middle]),
        _ => Some((values[middle - 1] + values[middle]) / 2.0),
    }
}

/// JSON size of `object` without what the controllers prune before caching: the yardstick
/// for a leak of one cached copy.
fn cached_json_bytes<K: kube::Resource + serde::Serialize>(mut object: K) -> usize {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
    serde_json::to_vec(&object).unwrap().len()
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

#[tokio::main]
async fn main() {
    ramp_cli::controller::install_crypto_provider();
    let rollout_count = env_usize("RAMP_BENCH_ROLLOUTS", 100);
    let cycles = env_usize("RAMP_BENCH_CYCLES", 8);
    let churn = env_usize("RAMP_BENCH_CHURN", 10);
    assert!(rollout_count > 0, "RAMP_BENCH_ROLLOUTS must be at least 1");
    assert!(
        cycles > SETTLED_CYCLE,
        "RAMP_BENCH_CYCLES must be above {SETTLED_CYCLE}: growth is measured after cycle {SETTLED_CYCLE}"
    );
    // Generous: a debug build on two shared cores, with room for the rollout count.
    let within = Duration::from_secs(120 + rollout_count as u64);

    let dir = WorkDir::create();
    let kubeconfig = dir.0.join("kubeconfig");
    let api_addr = free_addr();
    let mut sim = Process::spawn(
        "sim",
        &dir.0,
        &[
            "sim".to_owned(),
            format!("--listen={api_addr}"),
            format!("--kubeconfig={}", kubeconfig.display()),
            format!("--metrics-listen={}", free_addr()),
            // No traffic routing here: the traffic simulator would only burn the shared CPU.
            "--rps=0".to_owned(),
        ],
    );
    let config = eventually("ramp sim writes its kubeconfig", within, || {
        sim.assert_running();
        let kubeconfig = kubeconfig.clone();
        async move {
            let file = Kubeconfig::read_from(&kubeconfig)
                .map_err(|e| format!("{}: {e}", kubeconfig.display()))?;
            kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map_err(|e| format!("{}: {e}", kubeconfig.display()))
        }
    })
    .await;
    let client = kube::Client::try_from(config).unwrap();
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    let crd_list = ramp_api::crd::all();
    eventually("ramp sim accepts the CRDs", within, || {
        let crds = crds.clone();
        let crd = crd_list[0].clone();
        async move {
            crds.create(&PostParams::default(), &crd)
                .await
                .map(drop)
                .map_err(|e| format!("create CRD: {e}"))
        }
    })
    .await;
    for crd in &crd_list[1..] {
        crds.create(&PostParams::default(), crd).await.unwrap();
    }
    let rollouts = Api::<Rollout>::namespaced(client.clone(), NAMESPACE);
    let replica_sets = Api::<ReplicaSet>::namespaced(client.clone(), NAMESPACE);
    let events = Api::<Event>::namespaced(client.clone(), NAMESPACE);
    eventually("ramp sim serves rollouts", within, || async {
        rollouts
            .list(&ListParams::default())
            .await
            .map(drop)
            .map_err(|e| format!("list rollouts: {e}"))
    })
    .await;

    let metrics = free_addr();
    let health = free_addr();
    let mut controller = Process::spawn(
        "controller",
        &dir.0,
        &[
            "controller".to_owned(),
            format!("--kubeconfig={}", kubeconfig.display()),
            "--leader-elect=false".to_owned(),
            format!("--metrics-addr={metrics}"),
            format!("--health-addr={health}"),
            // The default 40 requests/s would make the client's rate limit, not the
            // controller, set the pace; the memory held per object does not depend on it.
            "--qps=0".to_owned(),
        ],
    );
    eventually("the controller's /readyz answers 200", within, || {
        controller.assert_running();
        async move {
            match http_get(health, "/readyz").await? {
                (200, _) => Ok(()),
                (status, body) => Err(format!("/readyz: {status} {body}")),
            }
        }
    })
    .await;
    let (idle_rss, idle_hwm) = controller.memory_kib();
    println!(
        "controller ready: VmRSS {:.1} MiB, VmHWM {:.1} MiB (before any rollout)",
        mib(idle_rss),
        mib(idle_hwm)
    );

    let started = Instant::now();
    let names: Vec<String> = (0..rollout_count).map(|i| format!("mem-{i}")).collect();
    let mut stable = BTreeMap::new();
    create_all(&rollouts, &names, &image(0)).await;
    wait_healthy(&rollouts, &names, &image(0), &mut stable, within).await;
    let one = rollouts.get(&names[0]).await.unwrap();
    let owned_by_one = replica_sets
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|rs| {
            rs.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.name == names[0])
        })
        .unwrap_or_else(|| panic!("rollout {} owns no ReplicaSet", names[0]));
    println!(
        "as cached (JSON, managedFields and last-applied dropped): a Rollout {} bytes, \
         a ReplicaSet {} bytes",
        cached_json_bytes(one),
        cached_json_bytes(owned_by_one)
    );
    let mut samples = Vec::with_capacity(cycles + 1);
    let take = |cycle: usize, controller: &mut Process| {
        let (rss_kib, hwm_kib) = controller.memory_kib();
        let events = events.clone();
        async move {
            let Scrape {
                reconciles,
                remembered,
                bytes: metrics_bytes,
            } = scrape(metrics).await;
            let (events, cached_events) = count_events(&events).await;
            Sample {
                cycle,
                elapsed: started.elapsed(),
                reconciles,
                rss_kib,
                hwm_kib,
                metrics_bytes,
                remembered,
                events,
                cached_events,
                peak_cached_events: cached_events,
                growth_per_1000: None,
            }
        }
    };
    samples.push(take(0, &mut controller).await);
    println!(
        "{rollout_count} rollouts, {cycles} cycles, {churn} rollouts created and deleted per cycle"
    );
    println!(
        "{:>5} {:>9} {:>11} {:>7} {:>8} {:>8} {:>10} {:>10} {:>13} {:>10} {:>17}",
        "cycle",
        "elapsed s",
        "reconciles",
        "errors",
        "events",
        "cached",
        "VmRSS MiB",
        "VmHWM MiB",
        "metrics bytes",
        "remembered",
        "KiB/1000 rec (*)"
    );
    let print_row = |s: &Sample| {
        println!(
            "{:>5} {:>9.1} {:>11} {:>7} {:>8} {:>8} {:>10.1} {:>10.1} {:>13} {:>10} {:>17}",
            s.cycle,
            s.elapsed.as_secs_f64(),
            s.reconciles.total(),
            s.reconciles.failed,
            s.events,
            s.cached_events,
            mib(s.rss_kib),
            mib(s.hwm_kib),
            s.metrics_bytes,
            s.remembered,
            s.growth_per_1000
                .map_or_else(|| "-".to_owned(), |g| format!("{g:+.0}"))
        );
    };
    print_row(&samples[0]);

    let mut unforgotten = Vec::new();
    for cycle in 1..=cycles {
        let churned: Vec<String> = (0..churn).map(|j| format!("churn-{cycle}-{j}")).collect();
        set_image(&rollouts, &names, &image(cycle)).await;
        create_all(&rollouts, &churned, &image(cycle)).await;
        wait_healthy(&rollouts, &names, &image(cycle), &mut stable, within).await;
        let mut churn_stable = BTreeMap::new();
        wait_healthy(
            &rollouts,
            &churned,
            &image(cycle),
            &mut churn_stable,
            within,
        )
        .await;
        delete_all(&rollouts, &replica_sets, &churned, within).await;
        // Forgetting follows the delete events the controller has already seen, so a short
        // deadline suffices; what stays remembered is reported at the end, with the table.
        let forgot = tokio::time::timeout(FORGET_WITHIN, async {
            while scrape(metrics).await.remembered > rollout_count as u64 {
                tokio::time::sleep(POLL).await;
            }
        })
        .await;
        if forgot.is_err() {
            unforgotten.push(cycle);
        }
        sim.assert_running();
        let mut sample = take(cycle, &mut controller).await;
        if let Some(previous) = samples.last() {
            growth_since(previous, &mut sample);
        }
        print_row(&sample);
        samples.push(sample);
    }

    println!(
        "(*) growth of VmRSS since the previous cycle, less {EVENT_CACHE_KIB} KiB per event \
         by which kube's event recorder cache passed its previous peak (events leave it after \
         {} s), per 1000 rollout reconciles",
        EVENT_CACHE_TTL.as_secs()
    );
    let settled = &samples[SETTLED_CYCLE];
    let last = &samples[cycles];
    let reconciles = last.reconciles.total() - settled.reconciles.total();
    assert!(
        reconciles > 0,
        "the controller reported no rollout reconcile between cycle {SETTLED_CYCLE} and cycle {cycles}"
    );
    let growth_kib = last.rss_kib as f64 - settled.rss_kib as f64;
    let per_cycle: Vec<f64> = samples[SETTLED_CYCLE + 1..]
        .iter()
        .filter_map(|s| s.growth_per_1000)
        .collect();
    let typical = median(per_cycle).unwrap_or_else(|| {
        panic!("no cycle after cycle {SETTLED_CYCLE} reported a rollout reconcile")
    });
    let mut verdict = String::new();
    let _ = write!(
        verdict,
        "VmRSS after cycle {SETTLED_CYCLE}: {:.1} MiB, after cycle {cycles}: {:.1} MiB \
         ({growth_kib:+.0} KiB over {reconciles} reconciles, {} events cached then, {} now); \
         median growth per cycle, less the event cache: {typical:+.0} KiB per 1000 reconciles \
         (bound {MAX_GROWTH_KIB_PER_1000_RECONCILES}); VmHWM {:.1} MiB",
        mib(settled.rss_kib),
        mib(last.rss_kib),
        settled.cached_events,
        last.cached_events,
        mib(last.hwm_kib)
    );
    println!("{verdict}");
    assert!(
        typical <= MAX_GROWTH_KIB_PER_1000_RECONCILES,
        "the controller's memory grows with reconciles: {verdict}"
    );
    println!("verdict: flat (within the bound)");
    if let Some(first) = unforgotten.first() {
        panic!(
            "the controller keeps per-object memory of deleted rollouts: \
             ramp_remembered_objects stayed above the {rollout_count} rollouts that exist \
             (for {} s after the deletions) first after cycle {first}, then after cycles \
             {:?}; it ended at {}",
            FORGET_WITHIN.as_secs(),
            &unforgotten[1..],
            last.remembered
        );
    }
    println!("every deleted rollout was forgotten");
    drop(controller);
    drop(sim);
}
