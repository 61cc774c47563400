//! `ramp demo`: a self-contained tour. Starts ramp-sim in-process (or, with `--kubeconfig`,
//! takes a namespace of an existing cluster: see [`cluster`]), installs the CRDs and an Istio
//! canary example gated by a success-rate analysis, runs the Rollout and AnalysisRun
//! controllers in-process, and narrates three releases: v2 passes its analysis and is promoted
//! to 100 %; a broken v3 (pods never ready) is aborted by `progressDeadlineAbort`; a v4 whose
//! pods answer 20 % errors is aborted by the analysis. Exits 0 only when the objects show the
//! scenario ended as expected.

use anyhow::{Context, anyhow, bail};
use cluster::{DemoCluster, DemoObject};
use futures::FutureExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use ramp_api::analysis::AnalysisTemplate;
use ramp_api::rollout::Rollout;
use ramp_controller::context::ControllerConfig;
use ramp_controller::ops::WatchScope;
use ramp_controller::ops::scope::INSTANCE_ID_LABEL;
use ramp_controller::traffic::IstioApiVersion;
use serde_json::{Value, json};
use std::process::ExitCode;
use std::time::{Duration, Instant};

mod analysis;
mod bluegreen;
mod cluster;

pub use cluster::ClusterArgs;

const ROLLOUT: &str = "demo";
/// The tour's controllers take only objects labelled for this instance, and a controller
/// already running on an existing cluster (Ramp's or Argo Rollouts', without this id) leaves
/// the tour's alone.
const INSTANCE_ID: &str = "ramp-demo";
const STABLE: &str = "demo-stable";
const CANARY: &str = "demo-canary";
const VIRTUAL_SERVICE: &str = "demo-vsvc";

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Which tour: a traffic-routed canary, or blue-green with a manual promotion.
    #[arg(value_enum, default_value_t = Scenario::Canary)]
    pub scenario: Scenario,
    /// Give up (exit 1) when the scenario has not finished after this many seconds.
    #[arg(long, default_value_t = 55)]
    pub timeout_seconds: u64,
    /// What measures the canary's success rate: a private Prometheus (when a `prometheus`
    /// binary is found, for `auto`) or the web provider reading the traffic simulator's JSON
    /// report.
    #[arg(long, value_enum, default_value_t = analysis::Measure::Auto)]
    pub metrics: analysis::Measure,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// Istio canary: v2 walks its weights to 100 %, a broken v3 is aborted.
    Canary,
    /// Blue-green: v2 behind the preview service, promoted by hand, v1 scaled down later.
    #[value(name = "bluegreen")]
    BlueGreen,
}

pub fn run(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    crate::controller::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(args.timeout_seconds);
        let (objects, traffic) = match args.scenario {
            Scenario::Canary => (objects(), true),
            Scenario::BlueGreen => (bluegreen::objects(), false),
        };
        let cluster = match DemoCluster::start(&args.cluster, traffic, &objects).await {
            Ok(cluster) => cluster,
            Err(err) => {
                eprintln!("demo failed: {err:#}");
                return Ok(ExitCode::FAILURE);
            }
        };
        println!("{}", cluster.describe());
        let tour = async {
            match args.scenario {
                Scenario::Canary => scenario(&cluster, deadline, args.metrics).await.map(
                    |()| "v2 promoted to 100 %, broken v3 and failing v4 aborted, traffic on v2",
                ),
                Scenario::BlueGreen => bluegreen::scenario(&cluster, deadline)
                    .await
                    .map(|()| bluegreen::FINISHED),
            }
        };
        // Ctrl-C ends the tour, not the process: an existing cluster is still cleaned up.
        let outcome = tokio::select! {
            outcome = tour => outcome,
            _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
        };
        let outcome = match (outcome, cluster.clean_up(&objects).await) {
            (outcome, Ok(cleaned)) => {
                if let Some(cleaned) = cleaned {
                    println!("\n{cleaned}");
                }
                outcome
            }
            (Ok(_), Err(err)) => Err(err.context("the tour passed, but cleaning up failed")),
            (Err(err), Err(cleaning)) => {
                eprintln!("\ncannot clean up: {cleaning:#}");
                Err(err)
            }
        };
        match outcome {
            Ok(summary) => {
                println!("\ndemo finished: {summary}");
                Ok(ExitCode::SUCCESS)
            }
            Err(err) => {
                eprintln!("\ndemo failed: {err:#}");
                Ok(ExitCode::FAILURE)
            }
        }
    })
}

/// The canary tour's objects, in the order they are deleted.
fn objects() -> Vec<DemoObject> {
    vec![
        DemoObject::of::<Rollout>(ROLLOUT),
        DemoObject::of::<Service>(STABLE),
        DemoObject::of::<Service>(CANARY),
        DemoObject {
            resource: IstioApiVersion::V1alpha3.virtual_service_resource(),
            name: VIRTUAL_SERVICE,
        },
        DemoObject::of::<AnalysisTemplate>(analysis::TEMPLATE),
    ]
}

/// The tour's controllers: the namespace of `client` only, the demo's instance only.
fn watch_scope(client: &Client) -> WatchScope {
    WatchScope {
        namespace: Some(client.default_namespace().to_owned()),
        instance_id: Some(INSTANCE_ID.to_owned()),
    }
}

async fn scenario(
    cluster: &DemoCluster,
    deadline: Instant,
    measure: analysis::Measure,
) -> anyhow::Result<()> {
    let client = cluster.client().clone();
    let metrics = analysis::Source::start(cluster.metrics_url(), measure).await?;
    println!("success-rate gate: {}", metrics.describe());
    let crds = install(cluster).await?;
    metrics.install(&client).await?;
    println!(
        "installed {crds}, services {STABLE}/{CANARY}, VirtualService {VIRTUAL_SERVICE}, AnalysisTemplate {} and Rollout {ROLLOUT} (v1)\n",
        analysis::TEMPLATE
    );

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        let _ = stopped.await;
    }
    .boxed()
    .shared();
    let config = ControllerConfig {
        istio_version: IstioApiVersion::V1alpha3,
        backoff_max: Duration::from_secs(2),
        scope: watch_scope(&client),
        ..ControllerConfig::default()
    };
    let rollouts = ramp_controller::rollout::run(client.clone(), config, shutdown.clone());
    let runs = ramp_controller::analysis_run::run(
        client.clone(),
        ramp_controller::analysis_run::AnalysisRunConfig {
            namespace: Some(client.default_namespace().to_owned()),
            instance_id: Some(INSTANCE_ID.to_owned()),
            backoff_max: Duration::from_secs(2),
            ..Default::default()
        },
        shutdown,
    );
    let controllers = tokio::spawn(async move {
        futures::join!(rollouts, runs);
    });
    let outcome = releases(&client, deadline).await;
    let _ = stop.send(());
    let _ = controllers.await;
    drop(metrics);
    outcome
}

async fn releases(client: &Client, deadline: Instant) -> anyhow::Result<()> {
    let rollouts = Api::<Rollout>::default_namespaced(client.clone());
    let mut view = LiveView::default();

    view.title("v1: initial deploy");
    let v1 = watch_until(client, &mut view, deadline, "v1 Healthy", |r, _| healthy(r)).await?;
    let v1_hash = stable_hash(&v1)?;

    view.title("v2: canary 20 % → success-rate analysis → 50 % → 80 % → 100 %");
    set_version(&rollouts, "v2", Behaviour::Healthy).await?;
    let v2 = watch_until(
        client,
        &mut view,
        deadline,
        "v2 promoted to 100 %",
        |r, _| healthy(r) && stable_hash(r).is_ok_and(|h| h != v1_hash),
    )
    .await?;
    let v2_hash = stable_hash(&v2)?;

    view.title("v3: pods never become ready; progressDeadlineAbort must abort it");
    set_version(&rollouts, "v3", Behaviour::NeverReady).await?;
    let aborted = watch_until(client, &mut view, deadline, "v3 aborted", |r, weight| {
        let status = r.status.clone().unwrap_or_default();
        status.abort == Some(true)
            && status.phase.as_deref() == Some("Degraded")
            && weight == Some(0)
    })
    .await?;

    back_on_stable(client, &aborted, &v2_hash).await?;

    view.title("v4: pods answer 20 % errors; the success-rate analysis must abort it");
    set_version(&rollouts, "v4", Behaviour::Failing).await?;
    let aborted = watch_until(
        client,
        &mut view,
        deadline,
        "v4 aborted by analysis",
        |r, weight| {
            let status = r.status.clone().unwrap_or_default();
            status.abort == Some(true)
                && status.phase.as_deref() == Some("Degraded")
                && status
                    .message
                    .as_deref()
                    .is_some_and(|m| m.contains("analysis phase failed"))
                && weight == Some(0)
        },
    )
    .await?;
    back_on_stable(client, &aborted, &v2_hash).await
}

/// Checks from the objects, not from what the view printed, that an aborted update left
/// everything on v2: the stable ReplicaSet and Service, no canary traffic, v2's pods all up.
async fn back_on_stable(client: &Client, aborted: &Rollout, v2_hash: &str) -> anyhow::Result<()> {
    let status = aborted.status.clone().unwrap_or_default();
    if status.stable_rs.as_deref() != Some(v2_hash) {
        bail!(
            "stable ReplicaSet is {:?}, expected v2's {v2_hash}",
            status.stable_rs
        );
    }
    let services = Api::<Service>::default_namespaced(client.clone());
    let stable = services
        .get(STABLE)
        .await
        .context("cannot read the stable Service")?;
    let selected = stable
        .spec
        .and_then(|s| s.selector)
        .and_then(|s| s.get("rollouts-pod-template-hash").cloned());
    if selected.as_deref() != Some(v2_hash) {
        bail!("stable Service selects {selected:?}, expected v2's {v2_hash}");
    }
    let weight = canary_weight(client).await?;
    if weight != Some(0) {
        bail!("VirtualService gives the canary {weight:?} %, expected 0");
    }
    let v2_rs = Api::<ReplicaSet>::default_namespaced(client.clone())
        .get(&format!("{ROLLOUT}-{v2_hash}"))
        .await
        .context("cannot read v2's ReplicaSet")?;
    let available = v2_rs.status.and_then(|s| s.available_replicas).unwrap_or(0);
    if available != aborted.spec.replicas() {
        bail!(
            "v2 has {available} available pods, expected {}",
            aborted.spec.replicas()
        );
    }
    Ok(())
}

fn healthy(rollout: &Rollout) -> bool {
    let Some(status) = &rollout.status else {
        return false;
    };
    status.phase.as_deref() == Some("Healthy")
        && status.observed_generation_number() == rollout.metadata.generation
        && status.stable_rs.is_some()
        && status.current_pod_hash == status.stable_rs
        && status.replicas == Some(rollout.spec.replicas())
}

fn stable_hash(rollout: &Rollout) -> anyhow::Result<String> {
    rollout
        .status
        .as_ref()
        .and_then(|s| s.stable_rs.clone())
        .context("the rollout has no stable ReplicaSet")
}

/// Redraws the view whenever it changes until `done` holds, or fails at the deadline.
async fn watch_until(
    client: &Client,
    view: &mut LiveView,
    deadline: Instant,
    what: &str,
    done: impl Fn(&Rollout, Option<i64>) -> bool,
) -> anyhow::Result<Rollout> {
    let rollouts = Api::<Rollout>::default_namespaced(client.clone());
    loop {
        let rollout = rollouts
            .get(ROLLOUT)
            .await
            .context("cannot read the rollout")?;
        let weight = canary_weight(client).await?;
        view.show(client, &rollout, weight).await?;
        if done(&rollout, weight) {
            return Ok(rollout);
        }
        if Instant::now() > deadline {
            bail!("{what}: did not happen before the deadline");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One line per change: step, weights, pods per revision, phase, latest event.
#[derive(Default)]
struct LiveView {
    last: String,
    last_event: String,
    last_run: String,
}

impl LiveView {
    fn title(&mut self, title: &str) {
        println!("\n== {title}");
        self.last.clear();
    }

    async fn show(
        &mut self,
        client: &Client,
        rollout: &Rollout,
        weight: Option<i64>,
    ) -> anyhow::Result<()> {
        let status = rollout.status.clone().unwrap_or_default();
        let steps = rollout.spec.steps().len();
        let step = status
            .current_step_index
            .map_or_else(|| "-".to_owned(), |i| format!("{i}/{steps}"));
        let canary = weight.unwrap_or(0);
        let mut sets = Api::<ReplicaSet>::default_namespaced(client.clone())
            .list(&ListParams::default().labels(&format!("app={ROLLOUT}")))
            .await
            .context("cannot list ReplicaSets")?
            .items;
        sets.sort_by_key(revision);
        let pods: Vec<String> = sets
            .iter()
            .filter(|rs| {
                rs.spec.replicas.unwrap_or(0) > 0
                    || rs.status.as_ref().is_some_and(|s| s.replicas > 0)
            })
            .map(|rs| {
                let status = rs.status.clone().unwrap_or_default();
                format!(
                    "rev{} {}/{}",
                    revision(rs),
                    status.available_replicas.unwrap_or(0),
                    rs.spec.replicas.unwrap_or(0)
                )
            })
            .collect();
        let line = format!(
            "step {step:>5} | weight canary {canary:>3} % stable {:>3} % | pods {:<22} | {:<11} {}",
            100 - canary,
            pods.join(", "),
            status.phase.as_deref().unwrap_or("-"),
            status.message.as_deref().unwrap_or("")
        );
        if line != self.last {
            println!("{line}");
            self.last = line;
        }
        if let Some(run) = analysis::newest_run(client).await?
            && run != self.last_run
        {
            println!("      {run}");
            self.last_run = run;
        }
        let event = latest_event(client, rollout).await?;
        if !event.is_empty() && event != self.last_event {
            println!("      event: {event}");
            self.last_event = event;
        }
        Ok(())
    }
}

fn revision(rs: &ReplicaSet) -> i64 {
    rs.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("rollout.argoproj.io/revision"))
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

async fn latest_event(client: &Client, rollout: &Rollout) -> anyhow::Result<String> {
    let events = Api::<Event>::default_namespaced(client.clone())
        .list(&ListParams::default())
        .await
        .context("cannot list events")?;
    Ok(events
        .items
        .iter()
        .filter(|e| is_about(e, rollout))
        .max_by_key(|e| {
            // The recorder folds repeats into a series: its last observation is the latest.
            let seen = e
                .series
                .as_ref()
                .map(|s| s.last_observed_time.0)
                .or_else(|| e.event_time.as_ref().map(|t| t.0));
            let version = e
                .metadata
                .resource_version
                .as_deref()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            (seen, version)
        })
        .map(|e| {
            format!(
                "{} {}",
                e.reason.as_deref().unwrap_or(""),
                e.note.as_deref().unwrap_or("")
            )
        })
        .unwrap_or_default())
}

/// Whether `event` is about this `rollout` object. By uid, not name: a Rollout of the same name
/// that an earlier tour made in the namespace left its events behind (they expire after an
/// hour), and they are not this one's story.
fn is_about(event: &Event, rollout: &Rollout) -> bool {
    let regarding = event.regarding.as_ref();
    regarding.and_then(|r| r.uid.as_deref()) == rollout.metadata.uid.as_deref()
        && regarding.and_then(|r| r.name.as_deref()) == Some(ROLLOUT)
}

/// The canary's weight in the VirtualService's primary route.
async fn canary_weight(client: &Client) -> anyhow::Result<Option<i64>> {
    let vs = virtual_services(client)
        .get(VIRTUAL_SERVICE)
        .await
        .context("cannot read the VirtualService")?;
    Ok(vs.data["spec"]["http"][0]["route"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d["destination"]["host"] == CANARY)
        .and_then(|d| d["weight"].as_i64()))
}

fn virtual_services(client: &Client) -> Api<DynamicObject> {
    Api::default_namespaced_with(
        client.clone(),
        &IstioApiVersion::V1alpha3.virtual_service_resource(),
    )
}

/// How a version's pods behave: ramp-sim's kubelet (or kwok, on the real control plane) reads
/// readiness from the pods' annotations, the traffic simulator their error rate.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    Healthy,
    /// Never pass readiness.
    NeverReady,
    /// Answer 20 % of requests with 500.
    Failing,
}

/// A new image with the given behaviour.
async fn set_version(
    rollouts: &Api<Rollout>,
    version: &str,
    behaviour: Behaviour,
) -> anyhow::Result<()> {
    let never_ready = if behaviour == Behaviour::NeverReady {
        json!("true")
    } else {
        Value::Null
    };
    let error_rate = if behaviour == Behaviour::Failing {
        json!("0.2")
    } else {
        Value::Null
    };
    let patch = json!({"spec": {"template": {
        "metadata": {"annotations": {
            "sim.ramp.dev/never-ready": never_ready,
            "sim.ramp.dev/error-rate": error_rate
        }},
        "spec": {"containers": [{"name": "app", "image": format!("ghcr.io/example/demo:{version}")}]}
    }}});
    rollouts
        .patch(ROLLOUT, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .with_context(|| format!("cannot roll out {version}"))?;
    Ok(())
}

/// Ramp's CRDs and `extra_crds` where missing, and the demo's Services (all selecting the
/// rollout's pods). Says which CRDs it installed.
async fn install_base(
    cluster: &DemoCluster,
    extra_crds: Vec<CustomResourceDefinition>,
    service_names: &[&str],
) -> anyhow::Result<String> {
    let mut crds = ramp_api::crd::all();
    crds.extend(extra_crds);
    let installed = cluster.install_crds(crds).await?;
    let services = Api::<Service>::default_namespaced(cluster.client().clone());
    for name in service_names {
        let service: Service = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name},
            "spec": {"selector": {"app": ROLLOUT}, "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}
        }))?;
        services
            .create(&PostParams::default(), &service)
            .await
            .with_context(|| format!("cannot create Service {name}"))?;
    }
    Ok(installed)
}

async fn install(cluster: &DemoCluster) -> anyhow::Result<String> {
    let client = cluster.client();
    let istio = vec![
        istio_crd("virtualservices", "VirtualService")?,
        istio_crd("destinationrules", "DestinationRule")?,
    ];
    let installed = install_base(cluster, istio, &[STABLE, CANARY]).await?;
    let vs: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "networking.istio.io/v1alpha3", "kind": "VirtualService",
        "metadata": {"name": VIRTUAL_SERVICE},
        "spec": {"hosts": [VIRTUAL_SERVICE], "http": [{"name": "primary", "route": [
            {"destination": {"host": STABLE}, "weight": 100},
            {"destination": {"host": CANARY}, "weight": 0}
        ]}]}
    }))?;
    virtual_services(client)
        .create(&PostParams::default(), &vs)
        .await
        .context("cannot create the VirtualService")?;
    let rollout: Rollout = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": ROLLOUT, "labels": {INSTANCE_ID_LABEL: INSTANCE_ID}},
        "spec": {
            "replicas": 5,
            "revisionHistoryLimit": 3,
            "progressDeadlineSeconds": 6,
            "progressDeadlineAbort": true,
            "selector": {"matchLabels": {"app": ROLLOUT}},
            "template": {
                "metadata": {"labels": {"app": ROLLOUT}},
                "spec": {"containers": [{"name": "app", "image": "ghcr.io/example/demo:v1", "ports": [{"containerPort": 8080}]}]}
            },
            "strategy": {"canary": {
                "canaryService": CANARY,
                "stableService": STABLE,
                "scaleDownDelaySeconds": 2,
                "abortScaleDownDelaySeconds": 2,
                "trafficRouting": {"istio": {"virtualService": {"name": VIRTUAL_SERVICE, "routes": ["primary"]}}},
                "steps": [
                    {"setWeight": 20}, analysis::step(),
                    {"setWeight": 50}, {"pause": {"duration": "2s"}},
                    {"setWeight": 80}, {"pause": {"duration": "2s"}}
                ]
            }}
        }
    }))?;
    Api::<Rollout>::default_namespaced(client.clone())
        .create(&PostParams::default(), &rollout)
        .await
        .context("cannot create the Rollout")?;
    Ok(installed)
}

fn istio_crd(plural: &str, kind: &str) -> anyhow::Result<CustomResourceDefinition> {
    let version = |name: &str, storage: bool| {
        json!({
            "name": name, "served": true, "storage": storage,
            "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
            }}}
        })
    };
    Ok(serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.networking.istio.io")},
        "spec": {
            "group": "networking.istio.io",
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": kind.to_lowercase(), "kind": kind, "listKind": format!("{kind}List")},
            "versions": [version("v1alpha3", true), version("v1beta1", false), version("v1", false)]
        }
    }))?)
}
