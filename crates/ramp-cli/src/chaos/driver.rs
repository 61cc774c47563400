//! One chaos run: a fresh ramp-sim, Ramp's controllers in-process with their production
//! settings (one process, or two when the run changes leaders; always under leader election,
//! with the lease timings cut from 15/10/2 s to 2/1.5/0.25 s), version 1 rolled out in calm, then version 2
//! applied while the drawn faults strike. After the fault window the run is calm again and
//! must end where the analysis says (promoted, or aborted with all traffic on stable). The
//! whole request log then goes through [`ramp_sim::invariants`].

use super::scenario::{
    FAULT_WINDOW, FaultKind, HandEdit, Router, Scenario, Step, Strategy, Verdict,
};
use anyhow::{Context, bail};
use futures::FutureExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use ramp_api::rollout::Rollout;
use ramp_controller::analysis_run::AnalysisRunConfig;
use ramp_controller::context::ControllerConfig;
use ramp_controller::ops::health::Health;
use ramp_controller::ops::leader::LeaseConfig;
use ramp_controller::ops::metrics::Metrics;
use ramp_controller::ops::{self, RunError, RunOptions, WatchScope};
use ramp_controller::traffic::IstioApiVersion;
use ramp_sim::invariants::{self, Writer};
use ramp_sim::{FaultError, FaultTarget, LoggedRequest, Sim, SimConfig, SimHandle, Verb};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

const NAMESPACE: &str = "default";
const ROLLOUT: &str = "web";
const STABLE: &str = "web-stable";
const CANARY: &str = "web-canary";
const ACTIVE: &str = "web-active";
const PREVIEW: &str = "web-preview";
const VIRTUAL_SERVICE: &str = "web-vsvc";
const INGRESS: &str = "web-ingress";
const TEMPLATE: &str = "chaos";
/// The driver's own writes, and its hand edits, carry these field managers so the checker can
/// tell them from the controller's.
const DRIVER: &str = "ramp-chaos";
const HAND_EDIT: &str = "ramp-chaos-hand-edit";

/// What one run did and found.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Faults actually injected, by kind: requests failed for API errors, events otherwise.
    pub injected: BTreeMap<&'static str, u64>,
    /// Times the lease changed hands while version 2 rolled out.
    pub takeovers: u64,
    pub violations: Vec<String>,
    pub elapsed: Duration,
}

/// Runs `scenario`; `analysis_url` serves `/pass`, `/fail` and `/error`. An `Err` is a run
/// that could not be carried out (the sim did not start), not a finding.
pub async fn run(
    scenario: &Scenario,
    analysis_url: &str,
    timeout: Duration,
    log_dir: Option<&std::path::Path>,
) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let sim = Sim::start(SimConfig {
        traffic_enabled: false,
        ..SimConfig::default()
    })
    .await
    .context("cannot start ramp-sim")?;
    sim.seed_faults(scenario.seed);
    let client = sim.client();
    install(&client, scenario, analysis_url).await?;
    let fleet = Arc::new(Fleet::new(
        client.clone(),
        if scenario.faults.leader_changes.is_empty() {
            1
        } else {
            2
        },
    ));
    fleet.start_all();

    let mut outcome = Outcome::default();
    let v1 = wait_for(&client, Duration::from_secs(30), |r| {
        settled(r)
            .then(|| r.status.as_ref()?.stable_rs.clone())
            .flatten()
    })
    .await;
    let v1 = match v1 {
        Ok(v1) => v1,
        Err(err) => {
            // Nothing has been injected yet: this is the controller's failure.
            fleet.stop_all().await;
            let rollout = rollouts(&client).get(ROLLOUT).await.ok();
            let status = rollout.and_then(|r| serde_json::to_value(r.status).ok());
            outcome.violations.push(format!(
                "version 1 did not become healthy without faults: {err:#}; status {}",
                status.unwrap_or_default()
            ));
            let log = sim.request_log().entries();
            if let Some(dir) = log_dir {
                write_log(dir, scenario, &log, &outcome.violations)?;
            }
            outcome.elapsed = started.elapsed();
            return Ok(outcome);
        }
    };

    let log_start = sim.request_log().len();
    if let Some((rate, applied)) = scenario.faults.api_errors {
        sim.add_error_fault(
            FaultTarget::any(),
            rate * applied,
            FaultError::InternalAfterApply,
        );
        sim.add_error_fault(FaultTarget::any(), rate, FaultError::Internal);
    }
    sim.set_watch_cut_after(scenario.faults.watch_cut_after);
    let patch = json!([{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "web:v2"}]);
    retry(|| async {
        rollouts(&client)
            .patch(
                ROLLOUT,
                &PatchParams {
                    field_manager: Some(DRIVER.into()),
                    ..PatchParams::default()
                },
                &Patch::<Value>::Json(serde_json::from_value(patch.clone())?),
            )
            .await
            .map(drop)
            .map_err(anyhow::Error::from)
    })
    .await
    .context("cannot apply version 2")?;
    let t0 = Instant::now();

    let counts = Arc::new(Mutex::new(BTreeMap::<&'static str, u64>::new()));
    let mid_abort = scenario.faults.kill_mid_abort.then(|| {
        tokio::spawn(kill_when_aborting(
            client.clone(),
            fleet.clone(),
            counts.clone(),
        ))
    });
    schedule(&sim, scenario, &fleet, t0, &counts).await;
    sim.clear_faults();
    sim.set_watch_cut_after(None);

    let expectation = Expectation {
        v1,
        promote: !scenario.analysis.aborts(),
        router: match &scenario.strategy {
            Strategy::Canary { router, .. } => Some(*router),
            Strategy::BlueGreen => None,
        },
    };
    let deadline = timeout.saturating_sub(t0.elapsed());
    let ended = wait_until(deadline, || expectation.reached(&client)).await;
    if let Some(task) = mid_abort {
        task.abort();
    }
    fleet.stop_all().await;
    if let Err(err) = ended {
        let rollout = rollouts(&client).get(ROLLOUT).await.ok();
        let status = rollout
            .and_then(|r| serde_json::to_value(r.status).ok())
            .unwrap_or_default();
        outcome
            .violations
            .push(format!("did not converge: {err:#}; status {status}"));
    }

    let log = sim.request_log().entries();
    outcome.violations.extend(
        invariants::check(&log, writer)
            .into_iter()
            .map(|v| v.to_string()),
    );
    outcome.takeovers = takeovers(&log[log_start..]);
    if let Some(dir) = log_dir.filter(|_| !outcome.violations.is_empty()) {
        write_log(dir, scenario, &log, &outcome.violations)?;
    }
    let injected = sim.injected_faults();
    let mut counts = counts.lock().map(|c| c.clone()).unwrap_or_default();
    if scenario.faults.api_errors.is_some() {
        counts.insert("api-errors: 500", injected.internal);
        counts.insert(
            "api-errors: applied then 500",
            injected.applied_then_internal,
        );
    }
    if scenario.faults.watch_cut_after.is_some() {
        counts.insert(FaultKind::WatchCuts.as_str(), 1);
    }
    outcome.injected = counts;
    outcome.elapsed = started.elapsed();
    drop(sim);
    Ok(outcome)
}

/// Writes the run's log, a write a line (`#index summary manager object`), after the scenario
/// and its violations.
fn write_log(
    dir: &std::path::Path,
    scenario: &Scenario,
    log: &[LoggedRequest],
    violations: &[String],
) -> anyhow::Result<()> {
    use std::fmt::Write as _;
    let mut text = format!("{scenario}\n");
    for violation in violations {
        let _ = writeln!(text, "violation: {violation}");
    }
    for (index, write) in log.iter().enumerate() {
        let object = write.object.as_ref().map(|o| {
            let mut o = o.clone();
            if let Some(meta) = o["metadata"].as_object_mut() {
                meta.remove("managedFields");
            }
            o.to_string()
        });
        let _ = writeln!(
            text,
            "#{index} {} [{}] {}",
            write.summary(),
            write.field_manager.as_deref().unwrap_or("-"),
            object.unwrap_or_default()
        );
    }
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("seed-{}.log", scenario.seed));
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// Who made a logged write: the driver and its hand edits are marked by field manager, and
/// the kubelet and ReplicaSet controller simulators write only pods and ReplicaSet status.
/// Ramp never deletes a router object, so a delete of one is a hand edit.
fn writer(write: &LoggedRequest) -> Writer {
    let router = matches!(write.resource.as_str(), "virtualservices" | "ingresses");
    match write.field_manager.as_deref() {
        Some(HAND_EDIT) => Writer::HandEdit,
        Some(DRIVER) => Writer::Other,
        _ if router && write.verb == Verb::Delete => Writer::HandEdit,
        _ if write.resource == "pods" => Writer::Other,
        _ if write.resource == "replicasets" && write.subresource.is_some() => Writer::Other,
        _ => Writer::Controller,
    }
}

/// The end a run must reach once calm.
struct Expectation {
    v1: String,
    promote: bool,
    router: Option<Router>,
}

impl Expectation {
    async fn reached(&self, client: &Client) -> anyhow::Result<bool> {
        let rollout = rollouts(client).get(ROLLOUT).await?;
        let status = rollout.status.clone().unwrap_or_default();
        let current = status.current_pod_hash.clone().unwrap_or_default();
        if current == self.v1 || current.is_empty() {
            return Ok(false);
        }
        let services: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
        let selected = |name: &'static str| {
            let services = services.clone();
            async move {
                anyhow::Ok(
                    services
                        .get(name)
                        .await?
                        .spec
                        .and_then(|s| s.selector)
                        .and_then(|s| s.get("rollouts-pod-template-hash").cloned())
                        .unwrap_or_default(),
                )
            }
        };
        let on = if self.promote { &current } else { &self.v1 };
        if self.promote {
            if !settled(&rollout) || status.stable_rs.as_deref() != Some(current.as_str()) {
                return Ok(false);
            }
        } else if status.abort != Some(true) {
            return Ok(false);
        }
        let front = if self.router.is_some() {
            STABLE
        } else {
            ACTIVE
        };
        if &selected(front).await? != on || canary_weight(client, self.router).await? != 0 {
            return Ok(false);
        }
        if !self.promote {
            // The aborted version's pods go once traffic has left them.
            let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), NAMESPACE);
            let scaled_down = replica_sets
                .list(&ListParams::default())
                .await?
                .into_iter()
                .filter(|rs| rs.labels().get("rollouts-pod-template-hash") == Some(&current))
                .all(|rs| rs.spec.replicas == Some(0));
            return Ok(scaled_down);
        }
        Ok(true)
    }
}

fn settled(rollout: &Rollout) -> bool {
    rollout.status.as_ref().is_some_and(|s| {
        s.phase.as_deref() == Some("Healthy")
            && s.observed_generation.as_deref()
                == rollout
                    .metadata
                    .generation
                    .map(|g| g.to_string())
                    .as_deref()
    })
}

/// The canary's weight in the router object (0 for blue-green and for an absent object).
async fn canary_weight(client: &Client, router: Option<Router>) -> anyhow::Result<i64> {
    Ok(match router {
        None => 0,
        Some(Router::Istio) => {
            let vs = virtual_services(client).get(VIRTUAL_SERVICE).await?;
            vs.data["spec"]["http"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|route| route["route"].as_array().cloned().unwrap_or_default())
                .filter(|d| d["destination"]["host"] == CANARY)
                .filter_map(|d| d["weight"].as_i64())
                .sum()
        }
        Some(Router::Nginx) => {
            let ingresses: Api<Ingress> = Api::namespaced(client.clone(), NAMESPACE);
            match ingresses
                .get_opt(&format!("{ROLLOUT}-{INGRESS}-canary"))
                .await?
            {
                None => 0,
                Some(ingress) => ingress
                    .annotations()
                    .get("nginx.ingress.kubernetes.io/canary-weight")
                    .and_then(|w| w.parse().ok())
                    .unwrap_or(0),
            }
        }
    })
}

/// Lease holder changes among the logged lease writes.
fn takeovers(log: &[LoggedRequest]) -> u64 {
    let mut holder: Option<String> = None;
    let mut changes = 0;
    for object in log
        .iter()
        .filter(|w| w.resource == "leases")
        .filter_map(|w| w.object.as_ref())
    {
        let now = object["spec"]["holderIdentity"].as_str().map(str::to_owned);
        if now.is_some() && holder.is_some() && now != holder {
            changes += 1;
        }
        if now.is_some() {
            holder = now;
        }
    }
    changes
}

/// Carries out the timed faults of the plan, in order, from `t0`; returns when the fault window
/// has passed.
async fn schedule(
    sim: &SimHandle,
    scenario: &Scenario,
    fleet: &Arc<Fleet>,
    t0: Instant,
    counts: &Counts,
) {
    enum Action {
        OutageStart(Duration),
        HandEdit(HandEdit),
        Kill(Duration),
        LeaderChange(bool),
    }
    let plan = &scenario.faults;
    let mut actions: Vec<(Duration, Action)> = Vec::new();
    actions.extend(
        plan.outages
            .iter()
            .map(|(at, len)| (*at, Action::OutageStart(*len))),
    );
    actions.extend(
        plan.hand_edits
            .iter()
            .map(|(at, e)| (*at, Action::HandEdit(*e))),
    );
    actions.extend(
        plan.kills
            .iter()
            .map(|(at, down)| (*at, Action::Kill(*down))),
    );
    actions.extend(
        plan.leader_changes
            .iter()
            .map(|(at, g)| (*at, Action::LeaderChange(*g))),
    );
    actions.sort_by_key(|(at, _)| *at);
    let client = sim.client();
    let router = match &scenario.strategy {
        Strategy::Canary { router, .. } => Some(*router),
        Strategy::BlueGreen => None,
    };
    for (at, action) in actions {
        tokio::time::sleep_until((t0 + at).into()).await;
        match action {
            Action::OutageStart(length) => {
                let before = sim.faults();
                sim.add_error_fault(FaultTarget::any(), 1.0, FaultError::Internal);
                let _ = sim.restart().await;
                tokio::time::sleep(length).await;
                sim.set_faults(before);
                bump(counts, FaultKind::Outage);
            }
            Action::HandEdit(edit) => {
                let Some(router) = router else { continue };
                if within_two_seconds(|| hand_edit(&client, router, edit)).await {
                    bump(counts, FaultKind::HandEdit);
                }
            }
            Action::Kill(down) => {
                fleet.kill_all();
                tokio::time::sleep(down).await;
                fleet.start_all();
                bump(counts, FaultKind::Kill);
            }
            Action::LeaderChange(graceful) => {
                if within_two_seconds(|| fleet.change_leader(graceful)).await {
                    bump(counts, FaultKind::LeaderChange);
                }
            }
        }
    }
    tokio::time::sleep_until((t0 + FAULT_WINDOW).into()).await;
}

/// Faults injected so far, by the name the report gives them.
type Counts = Arc<Mutex<BTreeMap<&'static str, u64>>>;

fn bump(counts: &Counts, kind: FaultKind) {
    if let Ok(mut counts) = counts.lock() {
        *counts.entry(kind.as_str()).or_insert(0) += 1;
    }
}

/// Tries `attempt` every 100 ms until it reports success, for up to 2 s (the API may be
/// failing); says whether it succeeded.
async fn within_two_seconds<F, Fut>(mut attempt: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..20 {
        if attempt().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Edits the router behind the controller's back; `false` when the edit did not get through
/// (the API may be failing).
async fn hand_edit(client: &Client, router: Router, edit: HandEdit) -> bool {
    let manager = PatchParams {
        field_manager: Some(HAND_EDIT.into()),
        ..PatchParams::default()
    };
    let post = PostParams {
        field_manager: Some(HAND_EDIT.into()),
        ..PostParams::default()
    };
    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), NAMESPACE);
    let canary_ingress = format!("{ROLLOUT}-{INGRESS}-canary");
    match (router, edit) {
        (Router::Istio, HandEdit::HalfToCanary) => {
            let patch = json!({"spec": {"http": [{"name": "primary", "route": [
                {"destination": {"host": STABLE}, "weight": 50},
                {"destination": {"host": CANARY}, "weight": 50}
            ]}]}});
            virtual_services(client)
                .patch(VIRTUAL_SERVICE, &manager, &Patch::Merge(&patch))
                .await
                .is_ok()
        }
        (Router::Istio, HandEdit::Reapplied) => {
            let api = virtual_services(client);
            let Ok(vs) = parse::<DynamicObject>(virtual_service()) else {
                return false;
            };
            // A delete answered 500 may have been applied: a later 404 means it is gone.
            let deleted = match api.delete(VIRTUAL_SERVICE, &DeleteParams::default()).await {
                Ok(_) => true,
                Err(kube::Error::Api(status)) => status.code == 404,
                Err(_) => false,
            };
            deleted
                && retry(|| async { Ok(api.create(&post, &vs).await.map(drop)?) })
                    .await
                    .is_ok()
        }
        (Router::Nginx, HandEdit::HalfToCanary) => {
            let patch = json!({"metadata": {"annotations": {"nginx.ingress.kubernetes.io/canary-weight": "50"}}});
            ingresses
                .patch(&canary_ingress, &manager, &Patch::Merge(&patch))
                .await
                .is_ok()
        }
        (Router::Nginx, HandEdit::Reapplied) => ingresses
            .delete(&canary_ingress, &DeleteParams::default())
            .await
            .is_ok(),
    }
}

/// Kills every controller process the moment the rollout is seen aborting, and starts them
/// again shortly after.
async fn kill_when_aborting(client: Client, fleet: Arc<Fleet>, counts: Counts) {
    loop {
        if let Ok(rollout) = rollouts(&client).get(ROLLOUT).await
            && rollout.status.as_ref().and_then(|s| s.abort) == Some(true)
        {
            fleet.kill_all();
            tokio::time::sleep(Duration::from_millis(300)).await;
            fleet.start_all();
            bump(&counts, FaultKind::KillMidAbort);
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The controller processes of a run: each a task running `ops::run` under leader election,
/// restarted (with a new identity) when it loses its lease, as a pod would be.
struct Fleet {
    client: Client,
    slots: Mutex<Vec<Option<Process>>>,
}

struct Process {
    identity: Arc<Mutex<String>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Fleet {
    fn new(client: Client, processes: usize) -> Self {
        Fleet {
            client,
            slots: Mutex::new((0..processes).map(|_| None).collect()),
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Vec<Option<Process>>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts every process that is not running.
    fn start_all(&self) {
        let mut slots = self.slots();
        for (index, slot) in slots.iter_mut().enumerate() {
            if slot.as_ref().is_none_or(|p| p.task.is_finished()) {
                *slot = Some(self.spawn(index));
            }
        }
    }

    fn spawn(&self, index: usize) -> Process {
        let client = self.client.clone();
        let identity = Arc::new(Mutex::new(String::new()));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        }
        .boxed()
        .shared();
        let held = identity.clone();
        let task = tokio::spawn(async move {
            let mut generation = 0;
            loop {
                generation += 1;
                let name = format!("ramp-{index}-{generation}");
                let lease = LeaseConfig {
                    namespace: NAMESPACE.to_owned(),
                    name: LeaseConfig::lease_name(None),
                    identity: LeaseConfig::unique_identity(&name),
                    lease_duration: Duration::from_secs(2),
                    renew_deadline: Duration::from_millis(1_500),
                    retry_period: Duration::from_millis(250),
                };
                if let Ok(mut held) = held.lock() {
                    held.clone_from(&lease.identity);
                }
                let metrics = Arc::new(Metrics::new(env!("CARGO_PKG_VERSION")));
                let options = RunOptions {
                    // The production settings, but for the namespace and Istio's version.
                    rollouts: ControllerConfig {
                        istio_version: IstioApiVersion::V1alpha3,
                        instance: Some(name.clone()),
                        scope: WatchScope {
                            namespace: Some(NAMESPACE.to_owned()),
                            instance_id: None,
                        },
                        ..ControllerConfig::default()
                    },
                    analysis_runs: AnalysisRunConfig {
                        namespace: Some(NAMESPACE.to_owned()),
                        instance: Some(name),
                        ..AnalysisRunConfig::default()
                    },
                    leader_election: Some(lease),
                    health: Arc::new(Health::new(metrics.clone())),
                    metrics,
                };
                match ops::run(client.clone(), options, shutdown.clone()).await {
                    Err(RunError::LeadershipLost(_)) => {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                    }
                    Ok(()) | Err(RunError::LeaderElection(_)) => return,
                }
            }
        });
        Process {
            identity,
            stop: Some(stop),
            task,
        }
    }

    /// `kill -9` of every process: their tasks are dropped wherever they are.
    fn kill_all(&self) {
        for process in self.slots().iter_mut().filter_map(Option::take) {
            process.task.abort();
        }
    }

    /// Stops the process holding the lease (gracefully, releasing it, or killed) and starts it
    /// again as a standby; `false` when no process held it.
    async fn change_leader(&self, graceful: bool) -> bool {
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), NAMESPACE);
        let Ok(lease) = leases.get(&LeaseConfig::lease_name(None)).await else {
            return false;
        };
        let holder = lease
            .spec
            .and_then(|s| s.holder_identity)
            .unwrap_or_default();
        let leader = {
            let mut slots = self.slots();
            let index = slots.iter().position(|slot| {
                slot.as_ref()
                    .is_some_and(|p| p.identity.lock().is_ok_and(|id| *id == holder))
            });
            index.and_then(|i| slots[i].take())
        };
        let Some(mut leader) = leader else {
            return false;
        };
        if graceful {
            if let Some(stop) = leader.stop.take() {
                let _ = stop.send(());
            }
            if tokio::time::timeout(Duration::from_secs(10), &mut leader.task)
                .await
                .is_err()
            {
                leader.task.abort();
            }
        } else {
            leader.task.abort();
        }
        self.start_all();
        true
    }

    /// Stops every process gracefully (killing what does not stop within seconds).
    async fn stop_all(&self) {
        let processes: Vec<Process> = self.slots().iter_mut().filter_map(Option::take).collect();
        for mut process in processes {
            if let Some(stop) = process.stop.take() {
                let _ = stop.send(());
            }
            if tokio::time::timeout(Duration::from_secs(10), &mut process.task)
                .await
                .is_err()
            {
                process.task.abort();
            }
        }
    }
}

fn rollouts(client: &Client) -> Api<Rollout> {
    Api::namespaced(client.clone(), NAMESPACE)
}

fn virtual_services(client: &Client) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        NAMESPACE,
        &IstioApiVersion::V1alpha3.virtual_service_resource(),
    )
}

/// Tries `attempt` until it succeeds (an object already there counts) for up to 30 s: longer
/// than any outage a run draws.
async fn retry<F, Fut>(mut attempt: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match attempt().await {
            Ok(()) => return Ok(()),
            Err(err) => {
                let exists = matches!(err.downcast_ref::<kube::Error>(), Some(kube::Error::Api(s)) if s.code == 409 && s.reason == "AlreadyExists");
                if exists {
                    return Ok(());
                }
                if Instant::now() > deadline {
                    return Err(err);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Polls `done` every 100 ms until it is true or `within` has passed; read errors count as
/// not yet.
async fn wait_until<F, Fut>(within: Duration, mut done: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + within;
    let mut last = None;
    loop {
        match done().await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(err) => last = Some(err),
        }
        if Instant::now() > deadline {
            match last {
                Some(err) => bail!("not within {within:?} (last read failed: {err:#})"),
                None => bail!("not within {within:?}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `pick` finds something in the rollout.
async fn wait_for<T>(
    client: &Client,
    within: Duration,
    pick: impl Fn(&Rollout) -> Option<T>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(rollout) = rollouts(client).get(ROLLOUT).await
            && let Some(found) = pick(&rollout)
        {
            return Ok(found);
        }
        if Instant::now() > deadline {
            bail!("not within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn parse<K: DeserializeOwned>(value: Value) -> anyhow::Result<K> {
    Ok(serde_json::from_value(value)?)
}

/// The CRDs, Services, router object, analysis template and version 1 of the rollout.
async fn install(client: &Client, scenario: &Scenario, analysis_url: &str) -> anyhow::Result<()> {
    let post = PostParams {
        field_manager: Some(DRIVER.into()),
        ..PostParams::default()
    };
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    let versions = ["v1alpha3", "v1beta1", "v1"];
    let mut all = ramp_api::crd::all();
    all.push(ramp_sim::testing::istio_crd(
        "virtualservices",
        "VirtualService",
        &versions,
    ));
    for crd in all {
        crds.create(&post, &crd)
            .await
            .context("cannot create a CRD")?;
    }
    let services: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
    let names = match scenario.strategy {
        Strategy::Canary { .. } => [STABLE, CANARY],
        Strategy::BlueGreen => [ACTIVE, PREVIEW],
    };
    for name in names {
        let service: Service = parse(json!({
            "metadata": {"name": name},
            "spec": {"selector": {"app": ROLLOUT}, "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}
        }))?;
        services
            .create(&post, &service)
            .await
            .with_context(|| format!("cannot create Service {name}"))?;
    }
    match &scenario.strategy {
        Strategy::Canary {
            router: Router::Istio,
            ..
        } => {
            let vs: DynamicObject = parse(virtual_service())?;
            virtual_services(client)
                .create(&post, &vs)
                .await
                .context("cannot create the VirtualService")?;
        }
        Strategy::Canary {
            router: Router::Nginx,
            ..
        } => {
            let ingress: Ingress = parse(json!({
                "metadata": {"name": INGRESS, "annotations": {"kubernetes.io/ingress.class": "nginx"}},
                "spec": {"rules": [{"host": "web.example.com", "http": {"paths": [{
                    "path": "/", "pathType": "Prefix",
                    "backend": {"service": {"name": STABLE, "port": {"name": "http"}}}
                }]}}]}
            }))?;
            Api::<Ingress>::namespaced(client.clone(), NAMESPACE)
                .create(&post, &ingress)
                .await
                .context("cannot create the Ingress")?;
        }
        Strategy::BlueGreen => {}
    }
    let url = format!("{analysis_url}/{}", scenario.analysis.as_str());
    let template: ramp_api::analysis::AnalysisTemplate = parse(json!({
        "metadata": {"name": TEMPLATE},
        "spec": {"metrics": [{
            "name": "verdict", "interval": "1s", "count": 2,
            "failureLimit": 0, "consecutiveErrorLimit": 0,
            "successCondition": "result == true",
            "provider": {"web": {"url": url, "jsonPath": "{$.ok}"}}
        }]}
    }))?;
    Api::namespaced(client.clone(), NAMESPACE)
        .create(&post, &template)
        .await
        .context("cannot create the AnalysisTemplate")?;
    let rollout: Rollout = parse(rollout_manifest(scenario))?;
    rollouts(client)
        .create(&post, &rollout)
        .await
        .context("cannot create the Rollout")?;
    Ok(())
}

fn virtual_service() -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1alpha3", "kind": "VirtualService",
        "metadata": {"name": VIRTUAL_SERVICE, "namespace": NAMESPACE},
        "spec": {"hosts": [VIRTUAL_SERVICE], "http": [{"name": "primary", "route": [
            {"destination": {"host": STABLE}, "weight": 100},
            {"destination": {"host": CANARY}, "weight": 0}
        ]}]}
    })
}

fn rollout_manifest(scenario: &Scenario) -> Value {
    let analysis = json!({"templates": [{"templateName": TEMPLATE}]});
    let strategy = match &scenario.strategy {
        Strategy::Canary {
            router,
            steps,
            dynamic_stable_scale,
        } => {
            let steps: Vec<Value> = steps
                .iter()
                .map(|step| match step {
                    Step::SetWeight(w) => json!({"setWeight": w}),
                    Step::Pause => json!({"pause": {"duration": "1s"}}),
                    Step::Analysis => json!({"analysis": analysis}),
                })
                .collect();
            let routing = match router {
                Router::Istio => {
                    json!({"istio": {"virtualService": {"name": VIRTUAL_SERVICE, "routes": ["primary"]}}})
                }
                Router::Nginx => json!({"nginx": {"stableIngress": INGRESS}}),
            };
            let mut canary = json!({
                "stableService": STABLE, "canaryService": CANARY,
                "trafficRouting": routing, "steps": steps,
                "abortScaleDownDelaySeconds": 1
            });
            // Upstream refuses a scale-down delay with dynamicStableScale.
            if *dynamic_stable_scale {
                canary["dynamicStableScale"] = json!(true);
            } else {
                canary["scaleDownDelaySeconds"] = json!(1);
            }
            json!({"canary": canary})
        }
        Strategy::BlueGreen => {
            let mut blue_green = json!({
                "activeService": ACTIVE, "previewService": PREVIEW,
                "autoPromotionEnabled": true,
                "scaleDownDelaySeconds": 1, "abortScaleDownDelaySeconds": 1
            });
            if scenario.analysis != Verdict::None {
                blue_green["prePromotionAnalysis"] = analysis;
            }
            json!({"blueGreen": blue_green})
        }
    };
    json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": ROLLOUT, "namespace": NAMESPACE},
        "spec": {
            "replicas": scenario.replicas,
            "revisionHistoryLimit": 2,
            "progressDeadlineSeconds": 600,
            "selector": {"matchLabels": {"app": ROLLOUT}},
            "template": {
                "metadata": {"labels": {"app": ROLLOUT}},
                "spec": {"containers": [{"name": "web", "image": "web:v1", "ports": [{"containerPort": 8080}]}]}
            },
            "strategy": strategy
        }
    })
}
