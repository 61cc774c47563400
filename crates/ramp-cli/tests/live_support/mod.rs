//! Shared by the `plugin_live` tests: a cluster of either tier (ramp-sim with its workload
//! simulation, or the real control plane when `RAMP_TEST_CLUSTER` names one) with Ramp's CRDs and
//! Istio's, the Rollout and AnalysisRun controllers running in-process (watching only the test's
//! namespace on the real tier, which other tests share), the real `kubectl-ramp` binary run off
//! the async runtime, deadline-bound waits, and the normalisation that makes its output
//! comparable across runs and tiers (ages, hashes, pod suffixes, timestamps, the namespace).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::Client;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use ramp_api::rollout::Rollout;
use ramp_controller::analysis_run::AnalysisRunConfig;
use ramp_controller::context::ControllerConfig;
use ramp_controller::ops::{WatchScope, run_controllers};
use ramp_controller::traffic::IstioApiVersion;
use ramp_sim::testing::{Background, eventually_object, istio_crd};
use ramp_sim::tier::{TestCluster, WriteLog, test_namespace};
use ramp_sim::{LoggedRequest, SimConfig, Verb};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub use ramp_sim::testing::eventually;

/// The namespace the test works in: `default` on ramp-sim, a fresh one on the real tier.
pub fn ns() -> &'static str {
    test_namespace()
}

/// `(verb, resource[/subresource], patch type, body)` of one write to rollouts.
pub type RolloutWrite = (Verb, String, Option<String>, Value);

pub fn typed<T: DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).expect("fixture matches the type")
}

pub fn merge_patch(resource: &str, body: Value) -> RolloutWrite {
    (
        Verb::Patch,
        resource.to_owned(),
        Some("merge".to_owned()),
        body,
    )
}

/// A logged write to rollouts, as comparable data.
pub fn rollout_write(e: &LoggedRequest) -> RolloutWrite {
    let resource = match &e.subresource {
        Some(sub) => format!("rollouts/{sub}"),
        None => "rollouts".to_owned(),
    };
    (
        e.verb,
        resource,
        e.patch_type.clone(),
        e.body.clone().unwrap_or(Value::Null),
    )
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A cluster whose ReplicaSets get pods that turn ready, with both controllers reconciling it.
pub struct LiveCluster {
    /// ramp-sim, or the real control plane when `RAMP_TEST_CLUSTER` names one.
    pub cluster: TestCluster,
    pub client: Client,
    controller: Option<Background>,
}

impl LiveCluster {
    pub async fn start() -> Self {
        let mut crds = ramp_api::crd::all();
        crds.push(istio_crd(
            "virtualservices",
            "VirtualService",
            &["v1alpha3", "v1beta1"],
        ));
        let config = SimConfig {
            traffic_enabled: false,
            ..SimConfig::default()
        };
        let tier = TestCluster::start(config, crds)
            .await
            .expect("cluster starts with the CRDs");
        let client = tier.client();
        let mut cluster = Self {
            cluster: tier,
            client,
            controller: None,
        };
        cluster.start_controller();
        cluster
    }

    /// On the real tier the controllers watch only this test's namespace.
    fn start_controller(&mut self) {
        let namespace = self.cluster.is_real().then(|| ns().to_owned());
        let rollouts = ControllerConfig {
            concurrency: 4,
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(2),
            invalid_spec_recheck: Duration::from_secs(2),
            istio_version: IstioApiVersion::V1alpha3,
            scope: WatchScope {
                namespace: namespace.clone(),
                instance_id: None,
            },
            ..ControllerConfig::default()
        };
        let runs = AnalysisRunConfig {
            namespace,
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(2),
            ..AnalysisRunConfig::default()
        };
        let client = self.client.clone();
        self.controller = Some(Background::spawn(|shutdown| {
            run_controllers(client, rollouts, runs, shutdown)
        }));
    }

    pub async fn stop_controller(&mut self) {
        if let Some(controller) = self.controller.take() {
            controller.stop().await;
        }
    }

    /// On the real tier its context defaults to the test's namespace.
    pub fn kubeconfig(&self) -> String {
        self.cluster.kubeconfig_path().display().to_string()
    }

    /// The writes made in the test's namespace: the sim's request log or the real audit log.
    pub fn request_log(&self) -> WriteLog<'_> {
        self.cluster.request_log()
    }

    /// The plugin binary with this cluster's kubeconfig, plain text.
    pub fn plugin(&self, args: &[&str]) -> assert_cmd::Command {
        let mut cmd = assert_cmd::Command::cargo_bin("kubectl-ramp").expect("binary built");
        cmd.arg("--kubeconfig").arg(self.kubeconfig()).args(args);
        cmd.env_remove("KUBECONFIG").env("NO_COLOR", "1");
        cmd
    }

    /// Runs the binary off the async runtime, so the sim and the controllers keep going.
    pub async fn run(&self, args: &[&str]) -> Output {
        let mut cmd = self.plugin(args);
        tokio::task::spawn_blocking(move || cmd.output().expect("the plugin runs"))
            .await
            .unwrap()
    }

    /// Runs a command that must succeed; returns the writes to rollouts it made.
    pub async fn command_writes(&self, args: &[&str]) -> Vec<RolloutWrite> {
        let checkpoint = self.request_log().len();
        let output = self.run(args).await;
        assert!(
            output.status.success(),
            "{args:?} failed: {}{}",
            stdout(&output),
            stderr(&output)
        );
        self.plugin_writes(checkpoint, self.request_log().len())
    }

    /// Successful writes to rollouts in `[from, to)` of the log that are not the controller's
    /// own status writes. The controller's status patches always carry the generation they
    /// observed; none of the plugin's does.
    pub fn plugin_writes(&self, from: usize, to: usize) -> Vec<RolloutWrite> {
        self.request_log()
            .since_settled(from, std::time::Duration::from_secs(2))
            .into_iter()
            .take(to.saturating_sub(from))
            .filter(|e: &LoggedRequest| e.succeeded() && e.resource == "rollouts")
            .filter(|e| !is_controller_status_write(e))
            .map(|e| rollout_write(&e))
            .collect()
    }

    pub async fn create_services(&self, names: &[&str], app: &str) {
        let api = Api::<Service>::namespaced(self.client.clone(), ns());
        for name in names {
            let service: Service = typed(json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": ns()},
                "spec": {"selector": {"app": app},
                         "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP", "name": "http"}]}
            }));
            api.create(&PostParams::default(), &service)
                .await
                .expect("service created");
        }
    }

    pub async fn service_selector(&self, name: &str) -> Value {
        let service = Api::<Service>::namespaced(self.client.clone(), ns())
            .get(name)
            .await
            .expect("service readable");
        serde_json::to_value(service.spec.unwrap().selector).unwrap()
    }

    pub fn virtual_services(&self) -> Api<DynamicObject> {
        Api::namespaced_with(
            self.client.clone(),
            ns(),
            &IstioApiVersion::V1alpha3.virtual_service_resource(),
        )
    }

    /// A VirtualService whose `primary` route sends everything to `stable`.
    pub async fn create_virtual_service(&self, name: &str, stable: &str, canary: &str) {
        let vs: DynamicObject = typed(json!({
            "apiVersion": "networking.istio.io/v1alpha3", "kind": "VirtualService",
            "metadata": {"name": name, "namespace": ns()},
            "spec": {"hosts": [name], "http": [{"name": "primary", "route": [
                {"destination": {"host": stable}, "weight": 100},
                {"destination": {"host": canary}, "weight": 0}
            ]}]}
        }));
        self.virtual_services()
            .create(&PostParams::default(), &vs)
            .await
            .expect("VirtualService created");
    }

    /// `(stable, canary)` weights of the `primary` route as stored now.
    pub async fn route_weights(&self, name: &str) -> (i64, i64) {
        let vs = self.virtual_services().get(name).await.unwrap();
        let routes = vs.data["spec"]["http"][0]["route"].clone();
        (
            routes[0]["weight"].as_i64().unwrap_or(0),
            routes[1]["weight"].as_i64().unwrap_or(0),
        )
    }

    /// Canary weights the controller wrote to VirtualService `name` since `checkpoint`, in
    /// order (JSON patches of the second destination of the first route).
    pub fn canary_weight_writes(&self, name: &str, checkpoint: usize) -> Vec<i64> {
        self.request_log()
            .since_settled(checkpoint, std::time::Duration::from_secs(2))
            .into_iter()
            .filter(|w| {
                w.succeeded() && w.resource == "virtualservices" && w.name.as_deref() == Some(name)
            })
            .flat_map(|w| {
                w.body
                    .as_ref()
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
            })
            .filter(|op| op["path"] == "/spec/http/0/route/1/weight")
            .filter_map(|op| op["value"].as_i64())
            .collect()
    }

    pub fn rollouts(&self) -> Api<Rollout> {
        Api::namespaced(self.client.clone(), ns())
    }

    pub async fn create_rollout(&self, manifest: Value) {
        self.rollouts()
            .create(&PostParams::default(), &typed(manifest))
            .await
            .expect("rollout created");
    }

    pub async fn rollout(&self, name: &str) -> Rollout {
        self.rollouts().get(name).await.expect("rollout readable")
    }

    pub async fn replica_sets(&self) -> Vec<ReplicaSet> {
        Api::<ReplicaSet>::namespaced(self.client.clone(), ns())
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
    }

    /// The ReplicaSet of `rollout` whose template runs `image`.
    pub async fn replica_set_of(&self, rollout: &str, image: &str) -> ReplicaSet {
        self.replica_sets()
            .await
            .into_iter()
            .find(|rs| {
                owner_name(&rs.metadata) == Some(rollout) && template_image(rs) == Some(image)
            })
            .unwrap_or_else(|| panic!("no ReplicaSet of {rollout} runs {image}"))
    }

    /// Waits until the rollout satisfies `check`.
    pub async fn wait_rollout(
        &self,
        name: &str,
        what: &str,
        secs: u64,
        check: impl Fn(&Rollout) -> bool,
    ) -> Rollout {
        eventually_object(&self.rollouts(), name, what, secs, check).await
    }

    /// Waits until the rollout satisfies `check` and has settled: the controller observed its
    /// generation, and each of its ReplicaSets has exactly its desired pods, all ready, none
    /// terminating — so a `get rollout` taken now is the same on every run.
    pub async fn wait_settled(
        &self,
        name: &str,
        what: &str,
        secs: u64,
        check: impl Fn(&Rollout) -> bool,
    ) -> Rollout {
        let client = self.client.clone();
        eventually(what, secs, || {
            let client = client.clone();
            let check = &check;
            async move {
                let rollout = Api::<Rollout>::namespaced(client.clone(), ns())
                    .get(name)
                    .await
                    .ok()?;
                let observed = rollout
                    .status
                    .as_ref()
                    .is_some_and(|s| s.observed_generation_number() == rollout.metadata.generation);
                if !observed || !check(&rollout) {
                    return None;
                }
                let replica_sets = Api::<ReplicaSet>::namespaced(client.clone(), ns())
                    .list(&ListParams::default())
                    .await
                    .ok()?
                    .items;
                let pods = Api::<Pod>::namespaced(client, ns())
                    .list(&ListParams::default())
                    .await
                    .ok()?
                    .items;
                let own: Vec<&ReplicaSet> = replica_sets
                    .iter()
                    .filter(|rs| owner_name(&rs.metadata) == Some(name))
                    .collect();
                let all_settled = own.iter().all(|rs| replica_set_settled(rs, &pods));
                // The rollout's counts caught up with its ReplicaSets': all of them, or for a
                // blue-green rollout the ready and available ones of the active ReplicaSet.
                let count = |rs: &ReplicaSet| rs.status.as_ref().map_or(0, |s| s.replicas);
                let pods_now: i32 = own.iter().map(|rs| count(rs)).sum();
                let status = rollout.status.clone().unwrap_or_default();
                let serving = match status.blue_green.as_ref() {
                    Some(bg) => own
                        .iter()
                        .filter(|rs| {
                            rs.metadata
                                .labels
                                .as_ref()
                                .and_then(|l| l.get("rollouts-pod-template-hash"))
                                == bg.active_selector.as_ref()
                        })
                        .map(|rs| count(rs))
                        .sum(),
                    None => pods_now,
                };
                let counted = status.replicas == Some(pods_now)
                    && status.ready_replicas == Some(serving)
                    && status.available_replicas == Some(serving);
                (all_settled && counted).then_some(rollout)
            }
        })
        .await
    }

    /// `get rollout NAME`, normalised for a snapshot.
    pub async fn get_tree(&self, name: &str) -> String {
        let output = self.run(&["get", "rollout", name]).await;
        assert!(
            output.status.success(),
            "get rollout failed: {}",
            stderr(&output)
        );
        self.normalise(name, &stdout(&output)).await
    }

    /// Replaces what differs between runs in the plugin's output: each pod-template hash of
    /// the rollout's ReplicaSets by `<tag>` (its image's tag), pod name suffixes by `xxxxx`,
    /// timestamps and ages, the test's namespace in the `Namespace:` line (see
    /// [`as_in_default`]); table columns are re-aligned afterwards.
    pub async fn normalise(&self, rollout: &str, text: &str) -> String {
        let hashes: Vec<(String, String)> = self
            .replica_sets()
            .await
            .iter()
            .filter(|rs| owner_name(&rs.metadata) == Some(rollout))
            .filter_map(|rs| {
                let hash = rs
                    .metadata
                    .labels
                    .as_ref()?
                    .get("rollouts-pod-template-hash")?
                    .clone();
                let tag = template_image(rs)?.rsplit(':').next()?.to_owned();
                Some((hash, format!("<{tag}>")))
            })
            .collect();
        as_in_default(&normalise_output(text, &hashes))
    }
}

/// The `Namespace:` line of a `get rollout` as it reads in ramp-sim's `default`: on the real
/// tier the test works in a namespace of its own, whose name changes every run.
pub fn as_in_default(text: &str) -> String {
    let from = format!("Namespace:       {}\n", ns());
    text.replacen(&from, "Namespace:       default\n", 1)
}

fn is_controller_status_write(e: &LoggedRequest) -> bool {
    e.subresource.as_deref() == Some("status")
        && e.body
            .as_ref()
            .is_some_and(|b| b["status"].get("observedGeneration").is_some())
}

fn owner_name(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<&str> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true))
        .map(|o| o.name.as_str())
}

fn template_image(rs: &ReplicaSet) -> Option<&str> {
    rs.spec
        .template
        .as_ref()?
        .spec
        .as_ref()?
        .containers
        .first()?
        .image
        .as_deref()
}

fn replica_set_settled(rs: &ReplicaSet, pods: &[Pod]) -> bool {
    let desired = rs.spec.replicas.unwrap_or(1);
    let status = rs.status.clone().unwrap_or_default();
    let own: Vec<&Pod> = pods
        .iter()
        .filter(|p| owner_name(&p.metadata) == rs.metadata.name.as_deref())
        .collect();
    let ready = |p: &&Pod| {
        p.metadata.deletion_timestamp.is_none()
            && p.status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .is_some_and(|cs| !cs.is_empty() && cs.iter().all(|c| c.ready))
    };
    usize::try_from(desired).ok() == Some(own.len())
        && own.iter().all(ready)
        && status.replicas == desired
        && status.ready_replicas.unwrap_or(0) == desired
        && status.available_replicas.unwrap_or(0) == desired
}

/// See [`LiveCluster::normalise`]. `hashes` maps each hash to its replacement.
pub fn normalise_output(text: &str, hashes: &[(String, String)]) -> String {
    let pod_suffix = regex::Regex::new(r"(<[^>]+>)-[a-z0-9]{5}\b").unwrap();
    let timestamp = regex::Regex::new(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z").unwrap();
    let substitute = |s: &str| {
        let mut s = s.to_owned();
        for (hash, token) in hashes {
            s = s.replace(hash.as_str(), token);
        }
        let s = pod_suffix.replace_all(&s, "$1-xxxxx");
        timestamp.replace_all(&s, "<time>").into_owned()
    };
    let mut out: Vec<String> = Vec::new();
    let mut table: Option<Table> = None;
    for line in text.lines() {
        if let Some(t) = table.as_mut() {
            if line.trim().is_empty() {
                out.extend(table.take().unwrap().render());
                out.push(String::new());
                continue;
            }
            t.push(line, &substitute);
            continue;
        }
        if let Some(t) = Table::header(line) {
            table = Some(t);
            continue;
        }
        out.push(substitute(line));
    }
    if let Some(t) = table {
        out.extend(t.render());
    }
    let mut text = out.join("\n");
    text.push('\n');
    text
}

/// A column-aligned table of the plugin (the `get` tree or `history`), split into cells at
/// its header's column positions so cells can change width and be re-aligned.
struct Table {
    starts: Vec<usize>,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn header(line: &str) -> Option<Table> {
        let is_tree = line.starts_with("NAME ") && line.contains(" KIND ");
        let is_history = line.starts_with("REVISION ");
        if !is_tree && !is_history {
            return None;
        }
        let chars: Vec<char> = line.chars().collect();
        let mut starts = Vec::new();
        let mut header = Vec::new();
        for (i, c) in chars.iter().enumerate() {
            if !c.is_whitespace() && (i == 0 || chars[i - 1].is_whitespace()) {
                starts.push(i);
            }
        }
        for (n, start) in starts.iter().enumerate() {
            let end = starts.get(n + 1).copied().unwrap_or(chars.len());
            header.push(
                chars[*start..end]
                    .iter()
                    .collect::<String>()
                    .trim()
                    .to_owned(),
            );
        }
        Some(Table {
            starts,
            header,
            rows: Vec::new(),
        })
    }

    fn push(&mut self, line: &str, substitute: &impl Fn(&str) -> String) {
        let chars: Vec<char> = line.chars().collect();
        let cells = (0..self.starts.len())
            .map(|n| {
                let start = self.starts[n].min(chars.len());
                let end = self
                    .starts
                    .get(n + 1)
                    .copied()
                    .unwrap_or(chars.len())
                    .min(chars.len());
                let cell: String = chars[start..end].iter().collect();
                let cell = substitute(cell.trim_end());
                // Ages grow while the test runs.
                if self.header[n] == "AGE" && !cell.trim().is_empty() {
                    "Xs".to_owned()
                } else {
                    cell
                }
            })
            .collect();
        self.rows.push(cells);
    }

    fn render(self) -> Vec<String> {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (n, cell) in row.iter().enumerate() {
                widths[n] = widths[n].max(cell.chars().count());
            }
        }
        std::iter::once(&self.header)
            .chain(self.rows.iter())
            .map(|row| {
                let mut line = String::new();
                for (n, cell) in row.iter().enumerate() {
                    line.push_str(&format!("{cell:<width$}  ", width = widths[n]));
                }
                line.trim_end().to_owned()
            })
            .collect()
    }
}

/// A plugin process left running (`--watch`), its stdout read on a thread so the test can
/// wait for lines with a deadline.
pub struct Watching {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Watching {
    pub fn spawn(cluster: &LiveCluster, args: &[&str]) -> Watching {
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("kubectl-ramp"))
            .arg("--kubeconfig")
            .arg(cluster.kubeconfig())
            .args(args)
            .env_remove("KUBECONFIG")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Watching {
            child,
            lines: rx,
            seen: Vec::new(),
        }
    }

    /// Blocks (call it off the runtime) until a line satisfying `wanted` arrives.
    pub fn wait_for(&mut self, what: &str, secs: u64, wanted: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let hit = wanted(&line);
                    self.seen.push(line);
                    if hit {
                        return;
                    }
                }
                Err(_) => panic!(
                    "never saw {what} within {secs} s; output so far:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Interrupts the process as Ctrl-C would and reaps it.
    pub fn interrupt(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!("the plugin ignored the interrupt for 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The frames printed so far: each starts at a `Name:` line.
    pub fn frames(&self) -> Vec<String> {
        let mut frames: Vec<Vec<&str>> = Vec::new();
        for line in &self.seen {
            if line.starts_with("Name:") || frames.is_empty() {
                frames.push(Vec::new());
            }
            frames.last_mut().unwrap().push(line);
        }
        frames
            .into_iter()
            .map(|f| f.join("\n").trim_end().to_owned())
            .collect()
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
