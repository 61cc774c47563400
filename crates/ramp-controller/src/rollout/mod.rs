//! The Rollout controller: a kube-runtime `Controller` over Rollouts that owns ReplicaSets and
//! watches the Services, Ingresses, VirtualServices and DestinationRules rollouts reference.
//! Each reconcile reads as its steps: gather snapshot → validate and plan (`ramp-core`) →
//! apply → write status; then it sleeps until the plan's `wake_at` or the next change.

mod gather;

use crate::context::{Context, ControllerConfig, is_newer};
use crate::error::Error;
use crate::executor;
use crate::memory::Gone;
use crate::ops::metrics::{ControllerKind, prune_metadata};
use crate::runtime::Watches;
use crate::traffic::{ObjectName, RolloutTrafficTarget};
use futures::{Future, FutureExt, StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::jiff::Timestamp;
use kube::core::PartialObjectMeta;
use kube::core::error_boundary::DeserializeGuard;
use kube::runtime::controller::{Action, Config as RunConfig, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use ramp_api::analysis::AnalysisRun;
use ramp_api::rollout::{Rollout, condition_type};
use ramp_core::snapshot::ROLLOUT_TYPE_LABEL;
use std::sync::Arc;
use std::time::Duration;

/// The reconciled object: a Rollout, or the error that kept it from decoding (so one bad
/// object cannot stop the watch of all the others).
type GuardedRollout = DeserializeGuard<Rollout>;

/// Runs the Rollout controller until `shutdown` resolves.
pub async fn run(
    client: Client,
    config: ControllerConfig,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    // Every watch retries on its own and reports whether it is live (`runtime::watch`).
    let watches = Watches::new(
        client.clone(),
        config
            .metrics
            .as_ref()
            .map(|metrics| metrics.watch_liveness())
            .unwrap_or_default(),
        "rollout",
    );
    let (replica_set_store, replica_set_writer) = reflector::store::<ReplicaSet>();
    // One watch on ReplicaSets feeds both the snapshot cache and the owner triggers.
    let replica_sets = watches
        .watch(
            "replicasets",
            |client| config.scope.api::<ReplicaSet>(client),
            watcher::Config::default(),
        )
        .modify(prune_replica_set)
        .reflect(replica_set_writer)
        .touched_objects();
    let (run_store, run_writer) = reflector::store::<AnalysisRun>();
    // Only runs a rollout created carry `rollout-type`; Experiments' and users' runs do not.
    let analysis_runs = watches
        .watch(
            "analysisruns",
            |client| config.scope.api::<AnalysisRun>(client),
            watcher::Config::default().labels(ROLLOUT_TYPE_LABEL),
        )
        .modify(prune_analysis_run)
        .reflect(run_writer)
        .inspect_ok({
            let metrics = config.metrics.clone();
            move |event| {
                if let Some(metrics) = &metrics {
                    metrics.rollout_run_seen(event);
                }
            }
        })
        .touched_objects();
    let istio_served = serves_group(&client, "networking.istio.io").await;
    let ctx = Arc::new(
        Context::new(client.clone(), replica_set_store, config.clone())
            .with_analysis_runs(run_store),
    );

    if let Some(metrics) = &config.metrics {
        // Weak: the context holds the metrics, so a strong reference back would never drop.
        let ctx = Arc::downgrade(&ctx);
        metrics.register_memory(ControllerKind::Rollout, move || {
            ctx.upgrade().map_or(0, |ctx| ctx.remembered())
        });
    }
    let memory = ctx.clone();
    let (rollouts, rollout_events) = crate::ops::metrics::own_objects(
        &watches,
        "rollouts",
        |client| config.scope.api::<GuardedRollout>(client),
        config.scope.instance_watch(),
        config.metrics.as_ref(),
        move |gone| memory.forget(gone),
    );
    let controller = Controller::for_stream(rollout_events, rollouts.clone())
        .with_config(RunConfig::default().concurrency(config.concurrency));
    let mut controller = controller
        .owns_stream(replica_sets)
        .owns_stream(analysis_runs)
        .watches_stream(
            watches
                .watch(
                    "services",
                    |client| config.scope.api::<PartialObjectMeta<Service>>(client),
                    watcher::Config::default(),
                )
                .touched_objects(),
            referencing("Service", rollouts.clone()),
        )
        .watches_stream(
            watches
                .watch(
                    "ingresses",
                    |client| config.scope.api::<PartialObjectMeta<Ingress>>(client),
                    watcher::Config::default(),
                )
                .touched_objects(),
            referencing("Ingress", rollouts.clone()),
        );
    if istio_served {
        for (kind, resource) in [
            (
                "VirtualService",
                config.istio_version.virtual_service_resource(),
            ),
            (
                "DestinationRule",
                config.istio_version.destination_rule_resource(),
            ),
        ] {
            let objects = watches
                .watch(
                    &resource.plural,
                    |client| config.scope.api_with(client, &resource),
                    watcher::Config::default(),
                )
                .touched_objects();
            controller = controller.watches_stream_with(
                objects,
                referencing(kind, rollouts.clone()),
                resource,
            );
        }
    }
    controller
        .graceful_shutdown_on(shutdown)
        .run(
            crate::ops::metrics::timed(config.metrics.clone(), ControllerKind::Rollout, reconcile),
            error_policy,
            ctx,
        )
        .for_each(|outcome| async move {
            if let Err(error) = outcome {
                tracing::debug!(%error, "rollout controller");
            }
        })
        .await;
}

/// One reconcile of one rollout.
async fn reconcile(guard: Arc<GuardedRollout>, ctx: Arc<Context>) -> Result<Action, Error> {
    let rollout = match &guard.0 {
        Ok(rollout) => rollout,
        Err(invalid) => {
            tracing::warn!(error = %invalid.error, "Rollout could not be decoded; skipping it");
            return Ok(Action::await_change());
        }
    };
    let uid = rollout.uid().unwrap_or_default();
    if rollout.meta().deletion_timestamp.is_some() {
        // Its ReplicaSets go with it through their owner references.
        ctx.forget(&Gone::One(uid));
        return Ok(Action::await_change());
    }
    // A reconcile before the first ReplicaSet or AnalysisRun list would plan from an empty
    // world (and, after a leader handover, recreate objects that exist). Checked, not awaited:
    // a store's readiness signal wakes only its latest waiter, so concurrent reconciles would
    // starve each other.
    if ctx.replica_sets.wait_until_ready().now_or_never().is_none()
        || ctx
            .analysis_runs
            .wait_until_ready()
            .now_or_never()
            .is_none()
    {
        return Ok(Action::requeue(Duration::from_millis(100)));
    }
    let rollout = freshest(&ctx, rollout);
    let now = Timestamp::now();
    // 1. gather: the caches and the referenced objects.
    let snapshot = gather::snapshot(&ctx, &rollout, now).await?;
    // 2-3. validate and plan: `plan_rollout` runs the preflight checks first and, when they
    //      fail, plans only the InvalidSpec status and its Warning event.
    let plan = ramp_core::plan_rollout(&snapshot);
    // 4-5. apply in order, then write status and record events.
    executor::apply_plan(&ctx, &rollout, &plan).await?;
    ctx.with_memory(&uid, |m| m.failures = 0);

    let blocked = plan
        .status
        .condition(condition_type::INVALID_SPEC)
        .is_some_and(|c| c.status == "True");
    let next = match plan.wake_at {
        Some(at) => until(now, at).min(ctx.config.resync),
        None if blocked => ctx.config.invalid_spec_recheck,
        None => ctx.config.resync,
    };
    Ok(Action::requeue(next))
}

/// Retries a failed reconcile with exponential backoff per rollout, and reports traffic
/// configuration problems as Warning events on the rollout.
fn error_policy(guard: Arc<GuardedRollout>, error: &Error, ctx: Arc<Context>) -> Action {
    let Ok(rollout) = &guard.0 else {
        return Action::await_change();
    };
    let uid = rollout.uid().unwrap_or_default();
    let failures = ctx.with_memory(&uid, |m| {
        m.failures = m.failures.saturating_add(1);
        m.failures
    });
    tracing::warn!(rollout = %rollout.name_any(), %error, label = error.metric_label(), failures, "reconcile failed");
    let delay = backoff(failures, ctx.config.backoff_min, ctx.config.backoff_max);
    if let Error::Traffic { source, .. } = error
        && !source.is_transient()
        && failures == 1
    {
        let event = ramp_core::RolloutEvent::warning(source.event_reason(), source.to_string());
        let rollout = rollout.clone();
        tokio::spawn(async move { executor::publish(&ctx, &rollout, &event).await });
    }
    Action::requeue(delay)
}

/// `min * 2^(failures-1)`, capped at `max`.
fn backoff(failures: u32, min: Duration, max: Duration) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(20));
    min.saturating_mul(factor).min(max)
}

/// Time from `now` until `at`; zero when `at` has passed. Rounded up to the millisecond so a
/// requeue never lands just before the deadline it waits for.
fn until(now: Timestamp, at: Timestamp) -> Duration {
    let millis = at.as_millisecond().saturating_sub(now.as_millisecond());
    Duration::from_millis(u64::try_from(millis).unwrap_or(0).saturating_add(1))
}

/// The rollout as the cache has it, unless our own last status write returned a later version
/// the cache has not seen yet (planning from a stale status would repeat finished work).
fn freshest(ctx: &Context, cached: &Rollout) -> Rollout {
    let uid = cached.uid().unwrap_or_default();
    ctx.with_memory(&uid, |m| match &m.rollout {
        Some(written)
            if is_newer(
                written.resource_version().as_deref(),
                cached.resource_version().as_deref(),
            ) =>
        {
            written.clone()
        }
        _ => {
            m.rollout = None;
            cached.clone()
        }
    })
}

/// Drops what a rollout never reads from cached AnalysisRuns: it follows phases, not
/// measurements.
fn prune_analysis_run(run: &mut AnalysisRun) {
    prune_metadata(&mut run.metadata);
    run.spec.metrics = Vec::new();
    run.spec.args = None;
    if let Some(status) = run.status.as_mut() {
        status.metric_results = None;
        status.dry_run_summary = None;
        status.run_summary = None;
    }
}

/// Drops what Ramp never reads from cached ReplicaSets. The watch sees every ReplicaSet in
/// scope, most of them Deployments'; a reconcile reads only those a Rollout controls, so of the
/// others only what maps a change to an owner stays (a few hundred bytes instead of a pod
/// template each).
fn prune_replica_set(rs: &mut ReplicaSet) {
    prune_metadata(&mut rs.metadata);
    let controlled_by_rollout = rs
        .owner_references()
        .iter()
        .any(|o| o.kind == "Rollout" && o.controller == Some(true));
    if !controlled_by_rollout {
        let meta = std::mem::take(&mut rs.metadata);
        *rs = ReplicaSet {
            metadata: kube::core::ObjectMeta {
                name: meta.name,
                namespace: meta.namespace,
                uid: meta.uid,
                resource_version: meta.resource_version,
                owner_references: meta.owner_references,
                deletion_timestamp: meta.deletion_timestamp,
                ..kube::core::ObjectMeta::default()
            },
            spec: Default::default(),
            status: None,
        };
    }
}

/// Maps a change of a `kind` object to every rollout in the store that references it.
fn referencing<O: Resource>(
    kind: &'static str,
    rollouts: Store<GuardedRollout>,
) -> impl Fn(O) -> Vec<ObjectRef<GuardedRollout>> + Send + Sync + 'static {
    move |object: O| {
        let namespace = object.meta().namespace.clone().unwrap_or_default();
        let name = object.meta().name.clone().unwrap_or_default();
        let wanted = ObjectName::new(kind, &namespace, &name);
        rollouts
            .state()
            .iter()
            .filter(|guard| {
                guard
                    .0
                    .as_ref()
                    .is_ok_and(|rollout| references(rollout).contains(&wanted))
            })
            .map(|guard| ObjectRef::from_obj(guard.as_ref()))
            .collect()
    }
}

/// Every object a rollout's reconcile reads besides its ReplicaSets.
fn references(rollout: &Rollout) -> Vec<ObjectName> {
    if let Some(target) = RolloutTrafficTarget::from_rollout(rollout) {
        return target.referenced_objects();
    }
    let namespace = rollout.namespace().unwrap_or_else(|| "default".to_owned());
    let blue_green = rollout.spec.blue_green().into_iter().flat_map(|b| {
        [
            Some(b.active_service.as_str()),
            b.preview_service.as_deref(),
        ]
    });
    rollout
        .spec
        .canary()
        .into_iter()
        .flat_map(|c| [c.canary_service.as_deref(), c.stable_service.as_deref()])
        .chain(blue_green)
        .flatten()
        .map(|service| ObjectName::new("Service", &namespace, service))
        .collect()
}

/// Whether the API server serves `group` (Istio's kinds are only watched when installed).
async fn serves_group(client: &Client, group: &str) -> bool {
    match client.list_api_groups().await {
        Ok(groups) => groups.groups.iter().any(|g| g.name == group),
        Err(error) => {
            tracing::warn!(%error, group, "API discovery failed; not watching the group");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_minimum_and_stops_at_the_maximum() {
        let min = Duration::from_millis(500);
        let max = Duration::from_secs(300);
        assert_eq!(backoff(1, min, max), min);
        assert_eq!(backoff(2, min, max), Duration::from_secs(1));
        assert_eq!(backoff(4, min, max), Duration::from_secs(4));
        assert_eq!(backoff(40, min, max), max);
    }

    fn replica_set(owner_kind: &str) -> ReplicaSet {
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "web-6c5f", "namespace": "prod", "uid": "u1", "resourceVersion": "7",
                "labels": {"app": "web"},
                "annotations": {
                    "kubectl.kubernetes.io/last-applied-configuration": "{}",
                    "rollout.argoproj.io/revision": "3"
                },
                "managedFields": [{"manager": "kubectl", "operation": "Update"}],
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": owner_kind,
                    "name": "web", "uid": "o1", "controller": true}]
            },
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "web:v1"}]}}},
            "status": {"replicas": 2, "availableReplicas": 2}
        }))
        .unwrap_or_else(|e| panic!("fixture: {e}"))
    }

    #[test]
    fn cached_replica_sets_keep_what_a_reconcile_reads_and_others_only_their_owner() {
        let mut controlled = replica_set("Rollout");
        prune_replica_set(&mut controlled);
        assert!(controlled.metadata.managed_fields.is_none());
        let annotations = controlled.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(
            annotations.keys().collect::<Vec<_>>(),
            ["rollout.argoproj.io/revision"]
        );
        let mut expected = replica_set("Rollout");
        expected.metadata.managed_fields = None;
        expected.metadata.annotations = Some(annotations);
        assert_eq!(controlled, expected, "spec, status and labels kept");

        let mut deployments = replica_set("Deployment");
        prune_replica_set(&mut deployments);
        assert_eq!(deployments.spec.template, None);
        assert_eq!(deployments.status, None);
        assert_eq!(deployments.metadata.labels, None);
        assert_eq!(deployments.metadata.resource_version.as_deref(), Some("7"));
        let owners = deployments.metadata.owner_references.unwrap_or_default();
        assert_eq!(
            owners[0].kind, "Deployment",
            "what maps a change to its owner stays"
        );
    }

    #[test]
    fn requeue_lands_on_or_just_after_the_deadline() {
        let now = Timestamp::from_second(1_000).unwrap_or(Timestamp::UNIX_EPOCH);
        let at = Timestamp::from_second(1_003).unwrap_or(Timestamp::UNIX_EPOCH);
        assert_eq!(until(now, at), Duration::from_millis(3_001));
        assert_eq!(until(at, now), Duration::from_millis(1));
    }
}
