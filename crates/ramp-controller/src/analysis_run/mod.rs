//! The AnalysisRun controller: a kube-runtime `Controller` over AnalysisRuns that carries out
//! `ramp_core::analysis::run` (plan → measure through the providers → reconcile), writes the
//! status, records events and sleeps until the exact next measurement. Decisions stay in
//! `ramp-core`; measuring stays in `crate::metrics`.

mod status_patch;

use crate::memory::{Gone, Memory};
use crate::metrics::{self, MeasureContext, ProviderConfig, Providers};
use futures::{Future, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions};
use kube::core::error_boundary::DeserializeGuard;
use kube::runtime::controller::{Action, Config as RunConfig, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use ramp_api::analysis::{AnalysisPhase, AnalysisRun, SecretKeyRef, ValueFrom};
use ramp_core::analysis::args::{ResolvedArgs, resolve_args};
use ramp_core::analysis::run::{
    MeasurementOutcome, MeasurementTask, RunEvent, plan_measurements, reconcile,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

pub use status_patch::merge_diff;

/// The field manager of every write this controller makes.
const FIELD_MANAGER: &str = "ramp-analysisrun-controller";

/// How the AnalysisRun controller runs.
#[derive(Clone, Debug)]
pub struct AnalysisRunConfig {
    /// Only runs in this namespace; `None` watches every namespace.
    pub namespace: Option<String>,
    /// Runs reconciled at the same time.
    pub concurrency: u16,
    /// Prometheus address for metrics that name none.
    pub prometheus_address: Option<String>,
    /// First and largest delay of the error backoff.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// `reportingController` of the events.
    pub reporter: String,
    /// `reportingInstance` of the events.
    pub instance: Option<String>,
    /// Only runs labelled for this controller instance (`--instance-id`); `None` takes only
    /// unlabelled runs.
    pub instance_id: Option<String>,
    /// Where reconciles and cached runs are reported.
    pub metrics: Option<Arc<crate::ops::metrics::Metrics>>,
}

impl Default for AnalysisRunConfig {
    fn default() -> Self {
        Self {
            namespace: None,
            concurrency: 16,
            prometheus_address: None,
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(60),
            reporter: "ramp".to_owned(),
            instance: None,
            instance_id: None,
            metrics: None,
        }
    }
}

/// Why one reconcile of one run failed; retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum AnalysisRunError {
    #[error("analysisrun {namespace}/{name}: writing status: {source}")]
    WriteStatus {
        namespace: String,
        name: String,
        source: kube::Error,
    },
    #[error("analysisrun {namespace}/{name}: encoding status: {source}")]
    EncodeStatus {
        namespace: String,
        name: String,
        source: serde_json::Error,
    },
    #[error("analysisrun {namespace}/{name}: deleting after its ttlStrategy: {source}")]
    Delete {
        namespace: String,
        name: String,
        source: kube::Error,
    },
}

/// What the controller remembers of one run between reconciles.
#[derive(Default)]
struct RunMemory {
    /// The run as our last status write returned it: newer than the cache until the watch
    /// catches up, so a reconcile never measures twice from a stale status.
    last_written: Option<AnalysisRun>,
    /// The resourceVersion of an undecodable run we already marked Error.
    invalid_marked: Option<String>,
    /// Reconciles failed in a row, for the backoff.
    failures: u32,
}

/// Shared by every reconcile.
struct Context {
    client: Client,
    providers: Providers,
    recorder: Recorder,
    config: AnalysisRunConfig,
    memory: Memory<RunMemory>,
}

impl Context {
    fn with_memory<T>(&self, uid: &str, f: impl FnOnce(&mut RunMemory) -> T) -> T {
        self.memory.with(uid, f)
    }
}

/// The reconciled object: a run, or the error that kept it from decoding (so one malformed
/// run cannot stop the watch of all the others).
type GuardedRun = DeserializeGuard<AnalysisRun>;

/// Runs the AnalysisRun controller until `shutdown` resolves.
pub async fn run(
    client: Client,
    config: AnalysisRunConfig,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let reporter = Reporter {
        controller: config.reporter.clone(),
        instance: config.instance.clone(),
    };
    let ctx = Arc::new(Context {
        providers: Providers::new(
            ProviderConfig {
                prometheus_address: config.prometheus_address.clone(),
            },
            Some(client.clone()),
        ),
        recorder: Recorder::new(client.clone(), reporter),
        client,
        memory: Memory::default(),
        config: config.clone(),
    });
    let selector = crate::ops::scope::instance_selector(config.instance_id.as_deref());
    if let Some(metrics) = &config.metrics {
        // Weak: the context holds the metrics, so a strong reference back would never drop.
        let ctx = Arc::downgrade(&ctx);
        metrics.register_memory(
            crate::ops::metrics::ControllerKind::AnalysisRun,
            move || ctx.upgrade().map_or(0, |ctx| ctx.memory.len()),
        );
    }
    let memory = ctx.clone();
    let watches = crate::runtime::Watches::new(
        ctx.client.clone(),
        config
            .metrics
            .as_ref()
            .map(|metrics| metrics.watch_liveness())
            .unwrap_or_default(),
        "analysisrun",
    );
    let (cached_runs, run_events) = crate::ops::metrics::own_objects(
        &watches,
        "analysisruns",
        |client| -> Api<GuardedRun> {
            match &config.namespace {
                Some(namespace) => Api::namespaced(client.clone(), namespace),
                None => Api::all(client.clone()),
            }
        },
        watcher::Config::default().labels(&selector),
        config.metrics.as_ref(),
        move |gone| memory.memory.forget(gone),
    );
    let controller = Controller::for_stream(run_events, cached_runs);
    let reconcile = crate::ops::metrics::timed(
        config.metrics.clone(),
        crate::ops::metrics::ControllerKind::AnalysisRun,
        reconcile_run,
    );
    controller
        .with_config(RunConfig::default().concurrency(config.concurrency))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|outcome| async move {
            if let Err(error) = outcome {
                tracing::debug!(%error, "analysisrun controller");
            }
        })
        .await;
}

/// One reconcile of one run: plan, measure, judge, write, record, sleep.
async fn reconcile_run(
    guard: Arc<GuardedRun>,
    ctx: Arc<Context>,
) -> Result<Action, AnalysisRunError> {
    let cached = match &guard.0 {
        Ok(run) => run,
        Err(invalid) => {
            mark_undecodable(&ctx, &invalid.metadata, &invalid.error).await;
            return Ok(Action::await_change());
        }
    };
    let uid = cached.uid().unwrap_or_default();
    if cached.meta().deletion_timestamp.is_some() {
        ctx.memory.forget(&Gone::One(uid));
        return Ok(Action::await_change());
    }
    let run = freshest(&ctx, &uid, cached);
    let namespace = run.namespace().unwrap_or_default();
    let name = run.name_any();
    let now = Timestamp::now();

    if run.is_completed() {
        let update = reconcile(&run.spec, run.status.as_ref(), now, Vec::new());
        ctx.with_memory(&uid, |m| m.failures = 0);
        return match update.expires_at {
            Some(at) if at <= Timestamp::now() => {
                delete_expired(&ctx, &run).await?;
                Ok(Action::await_change())
            }
            Some(at) => Ok(Action::requeue(until(at))),
            None => Ok(Action::await_change()),
        };
    }

    let tasks = plan_measurements(&run.spec, run.status.as_ref(), now);
    let (outcomes, args) = if tasks.is_empty() {
        (Vec::new(), ResolvedArgs::default())
    } else {
        measure(&ctx, &run, tasks, now).await
    };
    let update = reconcile(&run.spec, run.status.as_ref(), now, outcomes);

    if run.status.as_ref() != Some(&update.status) {
        let written = write_status(&ctx, &run, &update.status).await?;
        ctx.with_memory(&uid, |m| m.last_written = Some(written));
    }
    for event in &update.events {
        publish(&ctx, &run, event).await;
    }
    for (metric, removed) in &update.trimmed {
        if let Err(error) = ctx
            .providers
            .garbage_collect(&run, metric, removed, &args, now)
            .await
        {
            tracing::warn!(analysisrun = %format!("{namespace}/{name}"), %error, "garbage collection failed");
        }
    }
    ctx.with_memory(&uid, |m| m.failures = 0);

    Ok(match (update.wake_at, update.expires_at) {
        (Some(at), _) | (None, Some(at)) => Action::requeue(until(at)),
        (None, None) => Action::await_change(),
    })
}

/// Runs this reconcile's tasks in parallel, with the run's secrets read now (and only now).
/// When the arguments cannot be resolved, every task ends in an Error measurement saying why.
async fn measure(
    ctx: &Context,
    run: &AnalysisRun,
    tasks: Vec<MeasurementTask>,
    now: Timestamp,
) -> (Vec<MeasurementOutcome>, ResolvedArgs) {
    let secrets = read_secrets(ctx, run).await;
    let resolved = resolve_args(run.spec.args.as_deref().unwrap_or_default(), |secret| {
        secrets
            .get(&(secret.name.clone(), secret.key.clone()))
            .cloned()
            .unwrap_or_else(|| Err("the secret was not read".to_owned()))
    });
    let args = match resolved {
        Ok(args) => args,
        Err(error) => {
            let message = format!("Unable to resolve metric arguments: {error}");
            let empty = ResolvedArgs::default();
            let outcomes = tasks
                .into_iter()
                .map(|task| unresolved_outcome(run, task, &message, &empty, now))
                .collect();
            return (outcomes, empty);
        }
    };
    let outcomes = futures::future::join_all(
        tasks
            .into_iter()
            .map(|task| ctx.providers.run_task(task, run, &args, now)),
    )
    .await;
    (outcomes, args)
}

/// The outcome of a task whose arguments could not be resolved: an in-flight measurement
/// being terminated just ends, anything else is an Error measurement.
fn unresolved_outcome(
    run: &AnalysisRun,
    task: MeasurementTask,
    message: &str,
    args: &ResolvedArgs,
    now: Timestamp,
) -> MeasurementOutcome {
    let metric = task.metric().to_owned();
    let measurement = match task {
        MeasurementTask::Terminate { measurement, .. } => metrics::terminated(measurement, now),
        MeasurementTask::Measure { .. } | MeasurementTask::Resume { .. } => {
            let result = run.status.as_ref().and_then(|s| s.metric_result(&metric));
            let ctx = MeasureContext {
                run,
                result,
                args,
                now,
            };
            metrics::errored(message, now, &ctx)
        }
    };
    MeasurementOutcome {
        metric,
        measurement,
        metric_metadata: BTreeMap::new(),
    }
}

type SecretValues = HashMap<(String, String), Result<String, String>>;

/// Reads every secret the run's arguments reference from the run's namespace. Failures are
/// kept per key and reported by argument resolution; values never leave this map except into
/// `ResolvedArgs`, which redacts them.
async fn read_secrets(ctx: &Context, run: &AnalysisRun) -> SecretValues {
    let namespace = run.namespace().unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut values = SecretValues::new();
    let references = run
        .spec
        .args
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter(|arg| arg.value.is_none())
        .filter_map(|arg| match &arg.value_from {
            Some(ValueFrom {
                secret_key_ref: Some(reference),
                ..
            }) => Some(reference),
            _ => None,
        });
    for SecretKeyRef { name, key } in references {
        let entry = (name.clone(), key.clone());
        if values.contains_key(&entry) {
            continue;
        }
        let value = match api.get(name).await {
            Ok(secret) => secret_value(&secret, key),
            Err(kube::Error::Api(status)) if status.code == 404 => {
                Err(format!("secret {namespace}/{name} not found"))
            }
            Err(error) => Err(format!("reading secret {namespace}/{name}: {error}")),
        };
        values.insert(entry, value);
    }
    values
}

fn secret_value(secret: &Secret, key: &str) -> Result<String, String> {
    let name = secret.name_any();
    if let Some(bytes) = secret.data.as_ref().and_then(|d| d.get(key)) {
        return String::from_utf8(bytes.0.clone())
            .map_err(|_| format!("key {key:?} of secret {name} is not UTF-8"));
    }
    secret
        .string_data
        .as_ref()
        .and_then(|d| d.get(key))
        .cloned()
        .ok_or_else(|| format!("secret {name} has no key {key:?}"))
}

/// Writes `status` as a JSON merge patch of the main resource (AnalysisRun has no status
/// subresource): only the fields that changed, with removed fields set to null.
async fn write_status(
    ctx: &Context,
    run: &AnalysisRun,
    status: &ramp_api::analysis::AnalysisRunStatus,
) -> Result<AnalysisRun, AnalysisRunError> {
    let namespace = run.namespace().unwrap_or_default();
    let name = run.name_any();
    let encode = |source| AnalysisRunError::EncodeStatus {
        namespace: namespace.clone(),
        name: name.clone(),
        source,
    };
    let old = match &run.status {
        Some(old) => serde_json::to_value(old).map_err(encode)?,
        None => serde_json::Value::Null,
    };
    let new = serde_json::to_value(status).map_err(encode)?;
    let patch = serde_json::json!({ "status": merge_diff(&old, &new) });
    let api: Api<AnalysisRun> = Api::namespaced(ctx.client.clone(), &namespace);
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).validation_strict(),
        &Patch::Merge(&patch),
    )
    .await
    .map_err(|source| AnalysisRunError::WriteStatus {
        namespace,
        name,
        source,
    })
}

/// Marks a run that does not decode as Error, once per resourceVersion, so the people who
/// wrote it see why nothing happens; the watch of every other run goes on.
async fn mark_undecodable(
    ctx: &Context,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    error: &str,
) {
    let uid = meta.uid.clone().unwrap_or_default();
    let version = meta.resource_version.clone();
    if ctx.with_memory(&uid, |m| {
        m.invalid_marked.is_some() && m.invalid_marked == version
    }) {
        return;
    }
    let (Some(namespace), Some(name)) = (&meta.namespace, &meta.name) else {
        return;
    };
    tracing::warn!(analysisrun = %format!("{namespace}/{name}"), %error, "AnalysisRun could not be decoded; marking it Error");
    let resource = ApiResource::erase::<AnalysisRun>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), namespace, &resource);
    let patch = serde_json::json!({
        "status": {
            "phase": AnalysisPhase::Error.as_str(),
            "message": format!("The AnalysisRun is malformed: {error}"),
        }
    });
    match api
        .patch(
            name,
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(written) => {
            ctx.with_memory(&uid, |m| {
                m.invalid_marked = written.metadata.resource_version.clone();
            });
        }
        Err(error) => {
            tracing::warn!(analysisrun = %format!("{namespace}/{name}"), %error, "could not mark the malformed AnalysisRun Error");
        }
    }
}

/// Deletes a completed run whose `ttlStrategy` expired; the uid precondition keeps a run
/// recreated under the same name safe.
async fn delete_expired(ctx: &Context, run: &AnalysisRun) -> Result<(), AnalysisRunError> {
    let namespace = run.namespace().unwrap_or_default();
    let name = run.name_any();
    let api: Api<AnalysisRun> = Api::namespaced(ctx.client.clone(), &namespace);
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: run.uid(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(()),
        Err(source) => Err(AnalysisRunError::Delete {
            namespace,
            name,
            source,
        }),
    }
}

/// Records one event on the run. A failure to record is logged, never fatal.
async fn publish(ctx: &Context, run: &AnalysisRun, event: &RunEvent) {
    let kube_event = Event {
        type_: if event.warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: event.reason.clone(),
        note: Some(event.message.clone()),
        // The recorder folds events with the same reason and action into one series keeping
        // the first note: each metric's transition must stay its own event.
        action: event.message.chars().take(128).collect(),
        secondary: None,
    };
    if let Err(error) = ctx
        .recorder
        .publish(&kube_event, &run.object_ref(&()))
        .await
    {
        tracing::warn!(analysisrun = %run.name_any(), reason = %event.reason, %error, "could not record event");
    }
}

/// The cached run, or our own last write when the cache has not caught up with it yet.
fn freshest(ctx: &Context, uid: &str, cached: &AnalysisRun) -> AnalysisRun {
    let written = ctx.with_memory(uid, |m| m.last_written.clone());
    match written {
        Some(written)
            if is_newer(
                written.resource_version().as_deref(),
                cached.resource_version().as_deref(),
            ) =>
        {
            written
        }
        _ => cached.clone(),
    }
}

/// Whether `candidate` is a later resourceVersion than `cached`; unparseable versions are
/// never newer (the cache wins).
fn is_newer(candidate: Option<&str>, cached: Option<&str>) -> bool {
    match (
        candidate.and_then(|v| v.parse::<u64>().ok()),
        cached.and_then(|v| v.parse::<u64>().ok()),
    ) {
        (Some(candidate), Some(cached)) => candidate > cached,
        _ => false,
    }
}

/// Time from now until `at`, zero when it has passed.
fn until(at: Timestamp) -> Duration {
    let left = at.duration_since(Timestamp::now());
    Duration::try_from(left).unwrap_or(Duration::ZERO)
}

/// Retries a failed reconcile with exponential backoff per run.
fn error_policy(guard: Arc<GuardedRun>, error: &AnalysisRunError, ctx: Arc<Context>) -> Action {
    let Ok(run) = &guard.0 else {
        return Action::await_change();
    };
    let uid = run.uid().unwrap_or_default();
    let failures = ctx.with_memory(&uid, |m| {
        m.failures = m.failures.saturating_add(1);
        m.failures
    });
    tracing::warn!(analysisrun = %run.name_any(), %error, failures, "reconcile failed");
    Action::requeue(backoff(
        failures,
        ctx.config.backoff_min,
        ctx.config.backoff_max,
    ))
}

/// `min × 2^(failures-1)`, capped at `max`.
fn backoff(failures: u32, min: Duration, max: Duration) -> Duration {
    let exponent = failures.saturating_sub(1).min(20);
    min.saturating_mul(1 << exponent).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let min = Duration::from_millis(500);
        let max = Duration::from_secs(10);
        assert_eq!(backoff(1, min, max), Duration::from_millis(500));
        assert_eq!(backoff(2, min, max), Duration::from_secs(1));
        assert_eq!(backoff(4, min, max), Duration::from_secs(4));
        assert_eq!(backoff(6, min, max), max);
        assert_eq!(backoff(u32::MAX, min, max), max);
    }

    #[test]
    fn a_newer_resource_version_wins_only_when_both_parse() {
        assert!(is_newer(Some("12"), Some("9")));
        assert!(!is_newer(Some("9"), Some("12")));
        assert!(!is_newer(Some("12"), Some("12")));
        assert!(!is_newer(Some("abc"), Some("1")));
        assert!(!is_newer(None, Some("1")));
    }

    #[test]
    fn secret_values_come_from_data_then_string_data() {
        let mut secret = Secret::default();
        secret.metadata.name = Some("creds".into());
        secret.data = Some(BTreeMap::from([(
            "token".to_owned(),
            k8s_openapi::ByteString(b"s3cr3t".to_vec()),
        )]));
        secret.string_data = Some(BTreeMap::from([("user".to_owned(), "ops".to_owned())]));
        assert_eq!(secret_value(&secret, "token"), Ok("s3cr3t".to_owned()));
        assert_eq!(secret_value(&secret, "user"), Ok("ops".to_owned()));
        let missing = secret_value(&secret, "other");
        let missing = missing.err().unwrap_or_default();
        assert!(
            missing.contains("creds") && missing.contains("other"),
            "{missing}"
        );
    }
}
