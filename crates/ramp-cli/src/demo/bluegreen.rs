//! `ramp demo bluegreen`: the blue-green tour. Installs a Rollout with an active and a preview
//! Service on the tour's cluster (the in-process ramp-sim by default), rolls out v2 behind the preview Service, promotes it by
//! hand as `kubectl argo rollouts promote` does, and waits for blue's delayed scale-down.
//! Exits 0 only when the objects show green active and blue scaled down.

use super::cluster::{DemoCluster, DemoObject};
use super::{INSTANCE_ID, ROLLOUT, healthy, is_about, revision, stable_hash, watch_scope};
use anyhow::{Context, bail};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::events::v1::Event;
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use ramp_api::rollout::Rollout;
use ramp_controller::context::ControllerConfig;
use ramp_controller::ops::scope::INSTANCE_ID_LABEL;
use serde_json::json;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const ACTIVE: &str = "demo-active";
const PREVIEW: &str = "demo-preview";
const REPLICAS: i32 = 4;
const PREVIEW_REPLICAS: i32 = 2;
const SCALE_DOWN_DELAY_SECONDS: i32 = 3;

/// What the closing line says happened.
pub(super) const FINISHED: &str = "v2 previewed, promoted by hand, active on v2, v1 scaled down";

/// The blue-green tour's objects, in the order they are deleted.
pub(super) fn objects() -> Vec<DemoObject> {
    vec![
        DemoObject::of::<Rollout>(ROLLOUT),
        DemoObject::of::<Service>(ACTIVE),
        DemoObject::of::<Service>(PREVIEW),
    ]
}

pub(super) async fn scenario(cluster: &DemoCluster, deadline: Instant) -> anyhow::Result<()> {
    let client = cluster.client().clone();
    let crds = install(cluster).await?;
    println!(
        "installed {crds}, services {ACTIVE}/{PREVIEW} and blue-green Rollout {ROLLOUT} (v1, {REPLICAS} pods, \
         previewReplicaCount {PREVIEW_REPLICAS}, manual promotion, scaleDownDelaySeconds {SCALE_DOWN_DELAY_SECONDS})\n"
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = ControllerConfig {
        backoff_max: Duration::from_secs(2),
        scope: watch_scope(&client),
        ..ControllerConfig::default()
    };
    let controller = tokio::spawn(ramp_controller::rollout::run(
        client.clone(),
        config,
        async move {
            let _ = stopped.await;
        },
    ));
    let outcome = release(&client, deadline).await;
    let _ = stop.send(());
    let _ = controller.await;
    outcome
}

async fn release(client: &Client, deadline: Instant) -> anyhow::Result<()> {
    let rollouts = Api::<Rollout>::default_namespaced(client.clone());
    let mut view = LiveView::default();

    view.title("v1: initial deploy, active directly");
    let v1 = watch_until(client, &mut view, deadline, "v1 Healthy", healthy).await?;
    let v1_hash = stable_hash(&v1)?;

    view.title("v2: up behind the preview service, waiting for a person to promote");
    let patch = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "app", "image": "ghcr.io/example/shop:v2"}
    ]}}}});
    rollouts
        .patch(ROLLOUT, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .context("cannot roll out v2")?;
    let paused = watch_until(
        client,
        &mut view,
        deadline,
        "v2 paused for promotion",
        |r| {
            let status = r.status.clone().unwrap_or_default();
            let preview = status
                .blue_green
                .as_ref()
                .and_then(|b| b.preview_selector.clone());
            status.phase.as_deref() == Some("Paused")
                && preview.is_some()
                && preview == status.current_pod_hash
        },
    )
    .await?;
    let v2_hash = paused
        .status
        .and_then(|s| s.current_pod_hash)
        .context("the rollout has no current pod hash")?;
    if selector(client, ACTIVE).await?.as_deref() != Some(v1_hash.as_str()) {
        bail!("the active service left v1 before the promotion");
    }

    view.title("promote (kubectl argo rollouts promote demo): v2 to full size, then the switch");
    rollouts
        .patch_status(
            ROLLOUT,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"pauseConditions": null}})),
        )
        .await
        .context("cannot promote")?;
    watch_until(client, &mut view, deadline, "v2 active", |r| {
        let status = r.status.clone().unwrap_or_default();
        status.phase.as_deref() == Some("Healthy")
            && status.stable_rs.as_deref() == Some(v2_hash.as_str())
    })
    .await?;
    view.title(&format!(
        "v1 stays up for scaleDownDelaySeconds ({SCALE_DOWN_DELAY_SECONDS} s) as the fast way back"
    ));
    // Healthy counts every pod: v1's are gone once it holds.
    watch_until(client, &mut view, deadline, "v1 scaled down", healthy).await?;

    // Assert the end state from the objects, not from what the view printed.
    for (service, want) in [(ACTIVE, &v2_hash), (PREVIEW, &v2_hash)] {
        let got = selector(client, service).await?;
        if got.as_deref() != Some(want.as_str()) {
            bail!("Service {service} selects {got:?}, expected v2's {want}");
        }
    }
    let sets = Api::<ReplicaSet>::default_namespaced(client.clone());
    let blue = sets
        .get(&format!("{ROLLOUT}-{v1_hash}"))
        .await
        .context("cannot read v1's ReplicaSet")?;
    if blue.spec.replicas != Some(0) {
        bail!("v1's ReplicaSet was not scaled to 0");
    }
    let green = sets
        .get(&format!("{ROLLOUT}-{v2_hash}"))
        .await
        .context("cannot read v2's ReplicaSet")?;
    let available = green.status.and_then(|s| s.available_replicas).unwrap_or(0);
    if available != REPLICAS {
        bail!("v2 has {available} available pods, expected {REPLICAS}");
    }
    Ok(())
}

/// Redraws the view whenever it changes until `done` holds, or fails at the deadline.
async fn watch_until(
    client: &Client,
    view: &mut LiveView,
    deadline: Instant,
    what: &str,
    done: impl Fn(&Rollout) -> bool,
) -> anyhow::Result<Rollout> {
    let rollouts = Api::<Rollout>::default_namespaced(client.clone());
    loop {
        let rollout = rollouts
            .get(ROLLOUT)
            .await
            .context("cannot read the rollout")?;
        view.show(client, &rollout).await?;
        if done(&rollout) {
            return Ok(rollout);
        }
        if Instant::now() > deadline {
            bail!("{what}: did not happen before the deadline");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One line per change: which revision each service selects, pods per revision, phase; and
/// each event on the rollout once, in order.
#[derive(Default)]
struct LiveView {
    last: String,
    /// Events already printed, by uid and series count (a repeat bumps the count).
    seen_events: BTreeSet<(String, i32)>,
}

impl LiveView {
    fn title(&mut self, title: &str) {
        println!("\n== {title}");
        self.last.clear();
    }

    async fn show(&mut self, client: &Client, rollout: &Rollout) -> anyhow::Result<()> {
        let status = rollout.status.clone().unwrap_or_default();
        let mut sets = Api::<ReplicaSet>::default_namespaced(client.clone())
            .list(&ListParams::default().labels(&format!("app={ROLLOUT}")))
            .await
            .context("cannot list ReplicaSets")?
            .items;
        sets.sort_by_key(revision);
        let rev_of = |hash: Option<String>| {
            let Some(hash) = hash else {
                return "-".to_owned();
            };
            sets.iter()
                .find(|rs| {
                    rs.metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get("rollouts-pod-template-hash"))
                        == Some(&hash)
                })
                .map_or_else(
                    || hash.clone(),
                    |rs| format!("rev{} ({hash})", revision(rs)),
                )
        };
        let active = rev_of(selector(client, ACTIVE).await?);
        let preview = rev_of(selector(client, PREVIEW).await?);
        let pods: Vec<String> = sets
            .iter()
            .filter(|rs| {
                rs.spec.replicas.unwrap_or(0) > 0
                    || rs.status.as_ref().is_some_and(|s| s.replicas > 0)
            })
            .map(|rs| {
                let rs_status = rs.status.clone().unwrap_or_default();
                format!(
                    "rev{} {}/{}",
                    revision(rs),
                    rs_status.available_replicas.unwrap_or(0),
                    rs.spec.replicas.unwrap_or(0)
                )
            })
            .collect();
        let line = format!(
            "active {active:<16} | preview {preview:<16} | pods {:<18} | {:<11} {}",
            pods.join(", "),
            status.phase.as_deref().unwrap_or("-"),
            status.message.as_deref().unwrap_or("")
        );
        if line != self.last {
            println!("{line}");
            self.last = line;
        }
        for event in self.new_events(client, rollout).await? {
            println!("      event: {event}");
        }
        Ok(())
    }

    async fn new_events(
        &mut self,
        client: &Client,
        rollout: &Rollout,
    ) -> anyhow::Result<Vec<String>> {
        let mut events: Vec<Event> = Api::<Event>::default_namespaced(client.clone())
            .list(&ListParams::default())
            .await
            .context("cannot list events")?
            .items
            .into_iter()
            .filter(|e| is_about(e, rollout))
            .collect();
        events.sort_by_key(|e| {
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
        });
        let mut fresh = Vec::new();
        for event in events {
            let key = (
                event.metadata.uid.clone().unwrap_or_default(),
                event.series.as_ref().map_or(1, |s| s.count),
            );
            if self.seen_events.insert(key) {
                fresh.push(format!(
                    "{} {}",
                    event.reason.as_deref().unwrap_or(""),
                    event.note.as_deref().unwrap_or("")
                ));
            }
        }
        Ok(fresh)
    }
}

/// The `rollouts-pod-template-hash` a Service selects.
async fn selector(client: &Client, service: &str) -> anyhow::Result<Option<String>> {
    let found = Api::<Service>::default_namespaced(client.clone())
        .get(service)
        .await
        .with_context(|| format!("cannot read Service {service}"))?;
    Ok(found
        .spec
        .and_then(|s| s.selector)
        .and_then(|s| s.get("rollouts-pod-template-hash").cloned()))
}

async fn install(cluster: &DemoCluster) -> anyhow::Result<String> {
    let installed = super::install_base(cluster, Vec::new(), &[ACTIVE, PREVIEW]).await?;
    let rollout: Rollout = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": ROLLOUT, "labels": {INSTANCE_ID_LABEL: INSTANCE_ID}},
        "spec": {
            "replicas": REPLICAS,
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": {"app": ROLLOUT}},
            "template": {
                "metadata": {"labels": {"app": ROLLOUT}},
                "spec": {"containers": [{"name": "app", "image": "ghcr.io/example/shop:v1", "ports": [{"containerPort": 8080}]}]}
            },
            "strategy": {"blueGreen": {
                "activeService": ACTIVE,
                "previewService": PREVIEW,
                "autoPromotionEnabled": false,
                "previewReplicaCount": PREVIEW_REPLICAS,
                "scaleDownDelaySeconds": SCALE_DOWN_DELAY_SECONDS,
                "activeMetadata": {"labels": {"role": "active"}},
                "previewMetadata": {"labels": {"role": "preview"}}
            }}
        }
    }))?;
    Api::<Rollout>::default_namespaced(cluster.client().clone())
        .create(&PostParams::default(), &rollout)
        .await
        .context("cannot create the Rollout")?;
    Ok(installed)
}
