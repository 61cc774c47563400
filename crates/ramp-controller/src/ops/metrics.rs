//! The controller's Prometheus metrics with upstream's names and labels (so Argo Rollouts
//! dashboards and alerts keep working) plus Ramp's own. Object state is read from the
//! controllers' caches at scrape time; per-object counters are dropped with their object.
//! Rendering is the Prometheus text format 0.0.4; serving it is `ops::http`'s job.

use crate::memory::Gone;
use crate::runtime::{WatchLiveness, Watches};
use futures::future::BoxFuture;
use futures::{Stream, TryStreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::Api;
use kube::core::error_boundary::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::reflector;
use kube::runtime::reflector::Store;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use ramp_api::analysis::{AnalysisPhase, AnalysisRun, Metric};
use ramp_api::rollout::Rollout;
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::{self, Write as _};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// Content type of [`Metrics::render`].
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upstream's buckets for `rollout_reconcile` and `analysis_run_reconcile` (seconds).
const UPSTREAM_RECONCILE_BUCKETS: &[f64] = &[0.01, 0.15, 0.25, 0.5, 1.0];
/// Buckets of `ramp_reaction_seconds`.
const REACTION_BUCKETS: &[f64] = &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Finer buckets for Ramp's own reconcile histogram.
const RECONCILE_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The phases `rollout_phase` reports, one series each.
const ROLLOUT_PHASES: [&str; 6] = [
    "Completed",
    "Progressing",
    "Paused",
    "Timeout",
    "Error",
    "Abort",
];

type GuardedRollout = DeserializeGuard<Rollout>;
/// `(metric, help, value)` of one `rollout_info_replicas_*` gauge.
type ReplicaGauge = (&'static str, &'static str, fn(&Rollout) -> i32);
type GuardedRun = DeserializeGuard<AnalysisRun>;

/// Which controller a reconcile belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ControllerKind {
    Rollout,
    AnalysisRun,
}

impl ControllerKind {
    fn label(self) -> &'static str {
        match self {
            Self::Rollout => "rollout",
            Self::AnalysisRun => "analysisrun",
        }
    }
}

/// `(namespace, name)` of an object.
type ObjectKey = (String, String);

/// One API request's bounded labels: resource (with subresource), verb and status code.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RequestLabels {
    pub kind: String,
    pub verb: &'static str,
    pub status_code: String,
}

#[derive(Clone, Debug)]
struct Histogram {
    bounds: &'static [f64],
    /// Observations at or below each bound (not yet cumulative).
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, value: f64) {
        if let Some(slot) = self.bounds.iter().position(|bound| value <= *bound) {
            self.counts[slot] += 1;
        }
        self.sum += value;
        self.count += 1;
    }
}

#[derive(Default)]
struct Recorded {
    reconciles: BTreeMap<(ControllerKind, ObjectKey), Histogram>,
    reconcile_errors: BTreeMap<(ControllerKind, ObjectKey), u64>,
    rollout_events: BTreeMap<(ObjectKey, String, String), u64>,
    requests: BTreeMap<RequestLabels, u64>,
    reconcile_durations: BTreeMap<(ControllerKind, &'static str), Histogram>,
    reactions: Option<Histogram>,
}

/// What `ramp_reaction_seconds` is waiting for.
#[derive(Default)]
struct Reactions {
    /// The newest `metadata.generation` seen per rollout.
    generations: HashMap<ObjectKey, i64>,
    /// Rollouts' AnalysisRuns seen without a verdict yet, by uid: the rollout they belong to.
    undecided_runs: HashMap<String, ObjectKey>,
    /// Rollouts with a trigger (a new generation, a run's verdict) and no write since: when
    /// the first such trigger arrived.
    waiting: HashMap<ObjectKey, Instant>,
}

/// A controller cache and whether its first list has arrived.
struct Cache<K>
where
    K: 'static + Resource + Clone,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    store: Store<K>,
    synced: Arc<AtomicBool>,
}

impl<K> Cache<K>
where
    K: 'static + Resource + Clone,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    fn synced(&self) -> bool {
        self.synced.load(Ordering::SeqCst)
    }
}

/// The kinds whose controller caches the metrics read.
pub trait CachedKind: Resource<DynamicType = ()> + Clone + Sized + 'static {
    #[doc(hidden)]
    fn register(metrics: &Metrics, store: Store<Self>, synced: Arc<AtomicBool>);

    /// One watch event of the kind (reaction tracking); nothing by default.
    #[doc(hidden)]
    fn observe(_metrics: &Metrics, _event: &watcher::Event<Self>) {}

    /// Drops from a cached object what no reconcile reads, before it enters the store.
    #[doc(hidden)]
    fn prune(&mut self);
}

impl CachedKind for GuardedRollout {
    fn register(metrics: &Metrics, store: Store<Self>, synced: Arc<AtomicBool>) {
        *lock(&metrics.rollouts) = Some(Cache { store, synced });
    }

    fn prune(&mut self) {
        if let Ok(rollout) = &mut self.0 {
            prune_metadata(&mut rollout.metadata);
        }
    }

    fn observe(metrics: &Metrics, event: &watcher::Event<Self>) {
        match event {
            watcher::Event::Apply(rollout) => metrics.rollout_seen(rollout, false),
            watcher::Event::InitApply(rollout) => metrics.rollout_seen(rollout, true),
            watcher::Event::Delete(rollout) => metrics.rollout_gone(rollout),
            watcher::Event::Init | watcher::Event::InitDone => {}
        }
    }
}

impl CachedKind for GuardedRun {
    fn register(metrics: &Metrics, store: Store<Self>, synced: Arc<AtomicBool>) {
        *lock(&metrics.analysis_runs) = Some(Cache { store, synced });
    }

    fn prune(&mut self) {
        if let Ok(run) = &mut self.0 {
            prune_metadata(&mut run.metadata);
        }
    }
}

/// Drops the metadata no controller reads and that can outweigh the object itself: the field
/// managers' records and `kubectl apply`'s copy of the last applied manifest. Every write Ramp
/// makes is a patch, so a pruned copy never goes back to the API server.
pub fn prune_metadata(metadata: &mut ObjectMeta) {
    metadata.managed_fields = None;
    if let Some(annotations) = metadata.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty() {
            metadata.annotations = None;
        }
    }
}

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The watch of a controller's own objects (`resource` of `watches`), for
/// `Controller::for_stream`: reflected into the returned store, which `metrics` (when set)
/// reads, with a flag raised by the first complete list. The flag is not `Store::wait_until_ready`: that signal wakes only its most recent
/// waiter, and the controller itself waits on it before its first reconcile.
pub fn own_objects<K>(
    watches: &Watches,
    resource: &str,
    api: impl FnOnce(&kube::Client) -> Api<K>,
    config: watcher::Config,
    metrics: Option<&Arc<Metrics>>,
    gone: impl Fn(&Gone) + Send + Sync + 'static,
) -> (
    Store<K>,
    impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: CachedKind + DeserializeOwned + fmt::Debug + Send + Sync,
{
    let (store, writer) = reflector::store::<K>();
    let synced = Arc::new(AtomicBool::new(false));
    if let Some(metrics) = metrics {
        K::register(metrics, store.clone(), synced.clone());
    }
    let metrics = metrics.cloned();
    let cached = store.clone();
    let events = watches
        .watch(resource, api, config)
        .modify(K::prune)
        .reflect(writer)
        .inspect_ok(move |event| {
            match event {
                watcher::Event::InitDone => {
                    synced.store(true, Ordering::SeqCst);
                    let live = cached.state().iter().filter_map(|o| o.uid()).collect();
                    gone(&Gone::AllBut(live));
                }
                watcher::Event::Delete(object) => {
                    if let Some(uid) = object.uid() {
                        gone(&Gone::One(uid));
                    }
                }
                watcher::Event::Init | watcher::Event::InitApply(_) | watcher::Event::Apply(_) => {}
            }
            if let Some(metrics) = &metrics {
                K::observe(metrics, event);
            }
        })
        .applied_objects();
    (store, events)
}

/// Every metric the controller exposes.
pub struct Metrics {
    version: String,
    recorded: Mutex<Recorded>,
    rollouts: Mutex<Option<Cache<GuardedRollout>>>,
    analysis_runs: Mutex<Option<Cache<GuardedRun>>>,
    reactions: Mutex<Reactions>,
    /// How many objects each controller keeps per-object memory for.
    remembered: Mutex<BTreeMap<ControllerKind, RememberedCount>>,
    /// Whether each watch of the controllers is live, for readiness.
    watches: Arc<WatchLiveness>,
}

type RememberedCount = Box<dyn Fn() -> usize + Send + Sync>;

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl Metrics {
    /// `version` is reported by `argo_rollouts_controller_info`.
    pub fn new(version: impl Into<String>) -> Self {
        Self {
            version: version.into(),
            recorded: Mutex::new(Recorded::default()),
            rollouts: Mutex::new(None),
            analysis_runs: Mutex::new(None),
            reactions: Mutex::new(Reactions::default()),
            remembered: Mutex::new(BTreeMap::new()),
            watches: Arc::default(),
        }
    }

    /// Where the controllers' watches report whether they are live (readiness reads it).
    pub fn watch_liveness(&self) -> Arc<WatchLiveness> {
        self.watches.clone()
    }

    /// Reports `count` (the objects a controller remembers between reconciles) as
    /// `ramp_remembered_objects`: it follows the objects that exist and never outgrows them.
    pub fn register_memory(
        &self,
        controller: ControllerKind,
        count: impl Fn() -> usize + Send + Sync + 'static,
    ) {
        lock(&self.remembered).insert(controller, Box::new(count));
    }

    /// Whether both controllers' caches hold their first full list.
    pub fn caches_synced(&self) -> bool {
        lock(&self.rollouts).as_ref().is_some_and(Cache::synced)
            && lock(&self.analysis_runs)
                .as_ref()
                .is_some_and(Cache::synced)
    }

    /// Records one finished reconcile.
    pub fn reconciled(
        &self,
        controller: ControllerKind,
        object: ObjectKey,
        seconds: f64,
        failed: bool,
    ) {
        let mut recorded = lock(&self.recorded);
        recorded
            .reconciles
            .entry((controller, object.clone()))
            .or_insert_with(|| Histogram::new(UPSTREAM_RECONCILE_BUCKETS))
            .observe(seconds);
        if failed {
            *recorded
                .reconcile_errors
                .entry((controller, object))
                .or_default() += 1;
        }
        let result = if failed { "error" } else { "success" };
        recorded
            .reconcile_durations
            .entry((controller, result))
            .or_insert_with(|| Histogram::new(RECONCILE_BUCKETS))
            .observe(seconds);
    }

    /// Records one Kubernetes event emitted for a rollout (`rollout_events_total`).
    pub fn rollout_event(&self, namespace: &str, name: &str, type_: &str, reason: &str) {
        let key = (
            (namespace.to_owned(), name.to_owned()),
            type_.to_owned(),
            reason.to_owned(),
        );
        *lock(&self.recorded).rollout_events.entry(key).or_default() += 1;
    }

    /// A rollout's watch event arrived: a generation newer than the last one seen (a spec
    /// change after the first list) starts a reaction, unless one is already waiting.
    fn rollout_seen(&self, rollout: &GuardedRollout, initial: bool) {
        let Some(generation) = rollout.meta().generation else {
            return;
        };
        let key = object_key(rollout);
        let mut reactions = lock(&self.reactions);
        let previous = reactions.generations.insert(key.clone(), generation);
        if !initial && previous.is_some_and(|seen| generation > seen) {
            reactions.waiting.entry(key).or_insert_with(Instant::now);
        }
    }

    fn rollout_gone(&self, rollout: &GuardedRollout) {
        let key = object_key(rollout);
        let mut reactions = lock(&self.reactions);
        reactions.generations.remove(&key);
        reactions.waiting.remove(&key);
    }

    /// A watch event of an AnalysisRun a rollout created: a run seen without a verdict that now
    /// has one (the moment an abort or the next step becomes due) starts a reaction for its
    /// rollout. Runs first seen with a verdict, at a (re)list, start nothing.
    pub fn rollout_run_seen(&self, event: &watcher::Event<AnalysisRun>) {
        let mut reactions = lock(&self.reactions);
        match event {
            watcher::Event::Apply(run) | watcher::Event::InitApply(run) => {
                let Some(uid) = run.uid() else { return };
                if !run.is_completed() {
                    if let Some(owner) = run.owner_references().iter().find(|o| o.kind == "Rollout")
                    {
                        let key = (run.namespace().unwrap_or_default(), owner.name.clone());
                        reactions.undecided_runs.insert(uid, key);
                    }
                } else if let Some(rollout) = reactions.undecided_runs.remove(&uid) {
                    reactions
                        .waiting
                        .entry(rollout)
                        .or_insert_with(Instant::now);
                }
            }
            watcher::Event::Delete(run) => {
                if let Some(uid) = run.uid() {
                    reactions.undecided_runs.remove(&uid);
                }
            }
            watcher::Event::Init | watcher::Event::InitDone => {}
        }
    }

    /// The controller wrote something for a rollout (an object it manages, or the rollout's
    /// status): the end of a waiting reaction (`ramp_reaction_seconds`).
    pub fn rollout_acted(&self, namespace: &str, name: &str) {
        let key = (namespace.to_owned(), name.to_owned());
        let Some(since) = lock(&self.reactions).waiting.remove(&key) else {
            return;
        };
        lock(&self.recorded)
            .reactions
            .get_or_insert_with(|| Histogram::new(REACTION_BUCKETS))
            .observe(since.elapsed().as_secs_f64());
    }

    /// Records one API request (`controller_clientset_k8s_request_total`).
    pub fn request(&self, labels: RequestLabels) {
        *lock(&self.recorded).requests.entry(labels).or_default() += 1;
    }

    /// The exposition: cache-derived gauges computed now, counters and histograms of objects
    /// that still exist.
    pub fn render(&self) -> String {
        let rollouts = live_objects(&self.rollouts);
        let runs = live_objects(&self.analysis_runs);
        let mut out = Exposition::default();
        out.family(
            "argo_rollouts_controller_info",
            "Information about the controller (always 1).",
            "gauge",
        );
        out.sample(
            "argo_rollouts_controller_info",
            &[("version", &self.version)],
            1.0,
        );
        if let Some(rollouts) = &rollouts {
            render_rollouts(&mut out, rollouts);
        }
        if let Some(runs) = &runs {
            render_analysis_runs(&mut out, runs);
        }
        if let Some(rollouts) = &rollouts {
            // Deletions missed by a re-list never reach `rollout_gone`.
            let alive = keys(rollouts);
            let mut reactions = lock(&self.reactions);
            reactions.generations.retain(|key, _| alive.contains(key));
            reactions.waiting.retain(|key, _| alive.contains(key));
            reactions
                .undecided_runs
                .retain(|_, rollout| alive.contains(rollout));
        }
        out.family(
            "ramp_remembered_objects",
            "Objects a controller keeps memory for between reconciles (follows the objects that \
             exist; growth beyond them is a leak).",
            "gauge",
        );
        for (controller, count) in lock(&self.remembered).iter() {
            out.sample(
                "ramp_remembered_objects",
                &[("controller", controller.label())],
                count() as f64,
            );
        }
        let mut recorded = lock(&self.recorded);
        prune(&mut recorded, rollouts.as_ref(), runs.as_ref());
        render_recorded(&mut out, &recorded);
        out.text
    }
}

/// The objects of a synced cache; `None` while there is no cache or it is still listing (then
/// nothing is pruned: an empty unsynced cache says nothing about what exists).
fn live_objects<K>(cache: &Mutex<Option<Cache<K>>>) -> Option<Vec<Arc<K>>>
where
    K: 'static + Resource + Clone,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    let cache = lock(cache);
    let cache = cache.as_ref()?;
    cache
        .synced
        .load(Ordering::SeqCst)
        .then(|| cache.store.state())
}

fn keys<K: Resource>(objects: &[Arc<K>]) -> BTreeSet<ObjectKey> {
    objects.iter().map(|o| object_key(o.as_ref())).collect()
}

fn object_key<K: Resource>(object: &K) -> ObjectKey {
    let meta = object.meta();
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

/// Forgets counters of deleted objects so their series disappear and memory stays flat.
fn prune(
    recorded: &mut Recorded,
    rollouts: Option<&Vec<Arc<GuardedRollout>>>,
    runs: Option<&Vec<Arc<GuardedRun>>>,
) {
    let rollouts = rollouts.map(|r| keys(r));
    let runs = runs.map(|r| keys(r));
    let alive = |kind: ControllerKind, key: &ObjectKey| match kind {
        ControllerKind::Rollout => rollouts.as_ref().is_none_or(|k| k.contains(key)),
        ControllerKind::AnalysisRun => runs.as_ref().is_none_or(|k| k.contains(key)),
    };
    recorded
        .reconciles
        .retain(|(kind, key), _| alive(*kind, key));
    recorded
        .reconcile_errors
        .retain(|(kind, key), _| alive(*kind, key));
    recorded
        .rollout_events
        .retain(|(key, _, _), _| alive(ControllerKind::Rollout, key));
}

fn render_rollouts(out: &mut Exposition, rollouts: &[Arc<GuardedRollout>]) {
    let decoded: Vec<&Rollout> = rollouts.iter().filter_map(|g| g.0.as_ref().ok()).collect();
    out.family(
        "rollout_info",
        "Information about a rollout (always 1).",
        "gauge",
    );
    for rollout in &decoded {
        let (namespace, name) = object_key(*rollout);
        out.sample(
            "rollout_info",
            &[
                ("namespace", &namespace),
                ("name", &name),
                ("strategy", strategy(rollout)),
                ("traffic_router", traffic_router(rollout)),
                ("phase", metrics_phase(rollout)),
            ],
            1.0,
        );
    }
    let gauges: [ReplicaGauge; 4] = [
        (
            "rollout_info_replicas_available",
            "Available pods of a rollout.",
            |r| status(r, |s| s.available_replicas),
        ),
        (
            "rollout_info_replicas_unavailable",
            "Pods of a rollout that are not available.",
            |r| (status(r, |s| s.replicas) - status(r, |s| s.available_replicas)).max(0),
        ),
        (
            "rollout_info_replicas_desired",
            "Pods a rollout asks for (spec.replicas, default 1).",
            |r| r.spec.replicas.unwrap_or(1),
        ),
        (
            "rollout_info_replicas_updated",
            "Pods of a rollout's newest revision.",
            |r| status(r, |s| s.updated_replicas),
        ),
    ];
    for (metric, help, value) in gauges {
        out.family(metric, help, "gauge");
        for rollout in &decoded {
            let (namespace, name) = object_key(*rollout);
            out.sample(
                metric,
                &[("namespace", &namespace), ("name", &name)],
                f64::from(value(rollout)),
            );
        }
    }
    out.family(
        "rollout_phase",
        "Deprecated (use rollout_info): 1 for a rollout's phase, 0 for the others.",
        "gauge",
    );
    for rollout in &decoded {
        let (namespace, name) = object_key(*rollout);
        let current = metrics_phase(rollout);
        for phase in ROLLOUT_PHASES {
            out.sample(
                "rollout_phase",
                &[
                    ("namespace", &namespace),
                    ("name", &name),
                    ("strategy", strategy(rollout)),
                    ("phase", phase),
                ],
                if phase == current { 1.0 } else { 0.0 },
            );
        }
    }
}

/// A replica count from the status; zero before the first status write.
fn status(rollout: &Rollout, field: fn(&ramp_api::rollout::RolloutStatus) -> Option<i32>) -> i32 {
    rollout.status.as_ref().and_then(field).unwrap_or(0)
}

fn strategy(rollout: &Rollout) -> &'static str {
    if rollout.spec.canary().is_some() {
        "canary"
    } else if rollout.spec.blue_green().is_some() {
        "blueGreen"
    } else {
        "none"
    }
}

/// Upstream's router label: the first configured of the routers it names, else empty.
fn traffic_router(rollout: &Rollout) -> &'static str {
    let Some(routing) = rollout
        .spec
        .canary()
        .and_then(|c| c.traffic_routing.as_ref())
    else {
        return "";
    };
    [
        (routing.alb.is_some(), "ALB"),
        (routing.ambassador.is_some(), "Ambassador"),
        (routing.istio.is_some(), "Istio"),
        (routing.nginx.is_some(), "Nginx"),
        (routing.smi.is_some(), "SMI"),
        (routing.app_mesh.is_some(), "AppMesh"),
    ]
    .into_iter()
    .find_map(|(set, name)| set.then_some(name))
    .unwrap_or("")
}

/// The metrics-specific phase upstream derives from the conditions (not `status.phase`).
fn metrics_phase(rollout: &Rollout) -> &'static str {
    let Some(status) = &rollout.status else {
        return "Progressing";
    };
    let true_condition = |type_: &str| {
        status
            .condition(type_)
            .filter(|c| c.status == "True")
            .is_some()
    };
    if true_condition("InvalidSpec") {
        return "InvalidSpec";
    }
    if status
        .condition("ReplicaFailure")
        .is_some_and(|c| c.reason == "ReplicaSetCreateError")
    {
        return "Error";
    }
    match status.condition("Progressing").map(|c| c.reason.as_str()) {
        Some("NewReplicaSetAvailable") => "Completed",
        Some("RolloutPaused") => "Paused",
        Some("ReplicaSetCreateError") => "Error",
        Some("ProgressDeadlineExceeded") => "Timeout",
        Some("RolloutAborted") => "Abort",
        _ => "Progressing",
    }
}

fn render_analysis_runs(out: &mut Exposition, runs: &[Arc<GuardedRun>]) {
    let decoded: Vec<&AnalysisRun> = runs.iter().filter_map(|g| g.0.as_ref().ok()).collect();
    let phase_of = |run: &AnalysisRun| {
        run.status
            .as_ref()
            .map(|s| s.phase.clone())
            .unwrap_or_default()
    };
    out.family(
        "analysis_run_info",
        "Information about an analysis run (always 1).",
        "gauge",
    );
    for run in &decoded {
        let (namespace, name) = object_key(*run);
        out.sample(
            "analysis_run_info",
            &[
                ("namespace", &namespace),
                ("name", &name),
                ("phase", &phase_of(run)),
            ],
            1.0,
        );
    }
    out.family(
        "analysis_run_phase",
        "Deprecated (use analysis_run_info): 1 for a run's phase, 0 for the others.",
        "gauge",
    );
    for run in &decoded {
        let (namespace, name) = object_key(*run);
        let current = phase_of(run);
        let current = if current.is_empty() {
            "Pending"
        } else {
            current.as_str()
        };
        for phase in AnalysisPhase::ALL {
            out.sample(
                "analysis_run_phase",
                &[
                    ("namespace", &namespace),
                    ("name", &name),
                    ("phase", phase.as_str()),
                ],
                if phase.as_str() == current { 1.0 } else { 0.0 },
            );
        }
    }
    out.family(
        "analysis_run_metric_type",
        "The provider of each metric of a run (always 1).",
        "gauge",
    );
    for run in &decoded {
        let (namespace, name) = object_key(*run);
        for metric in &run.spec.metrics {
            out.sample(
                "analysis_run_metric_type",
                &[
                    ("namespace", &namespace),
                    ("name", &name),
                    ("metric", &metric.name),
                    ("type", &provider_type(metric)),
                ],
                1.0,
            );
        }
    }
    out.family(
        "analysis_run_metric_phase",
        "1 for each metric's phase, 0 for the others.",
        "gauge",
    );
    for run in &decoded {
        let (namespace, name) = object_key(*run);
        for metric in &run.spec.metrics {
            let result = run
                .status
                .as_ref()
                .and_then(|s| s.metric_result(&metric.name));
            let current = result
                .map(|r| r.phase.as_str())
                .filter(|p| !p.is_empty())
                .unwrap_or("Pending");
            let dry_run = if result.and_then(|r| r.dry_run) == Some(true) {
                "true"
            } else {
                "false"
            };
            let type_ = provider_type(metric);
            for phase in AnalysisPhase::ALL {
                out.sample(
                    "analysis_run_metric_phase",
                    &[
                        ("namespace", &namespace),
                        ("name", &name),
                        ("metric", &metric.name),
                        ("type", &type_),
                        ("dry_run", dry_run),
                        ("phase", phase.as_str()),
                    ],
                    if phase.as_str() == current { 1.0 } else { 0.0 },
                );
            }
        }
    }
}

/// Upstream's provider type names (`Prometheus`, `NewRelic`, `SkyWalking`, …); a plugin
/// reports its own name.
fn provider_type(metric: &Metric) -> String {
    if let Ok(Some((plugin, _))) = metric.provider.plugin() {
        return plugin.to_owned();
    }
    match metric.provider.kind_name() {
        Ok("skywalking") => "SkyWalking".to_owned(),
        Ok(json_name) => {
            let mut chars = json_name.chars();
            chars
                .next()
                .map(|first| first.to_uppercase().chain(chars).collect())
                .unwrap_or_default()
        }
        Err(_) => String::new(),
    }
}

fn render_recorded(out: &mut Exposition, recorded: &Recorded) {
    for (kind, metric, help) in [
        (
            ControllerKind::Rollout,
            "rollout_reconcile",
            "Rollout reconcile duration (seconds).",
        ),
        (
            ControllerKind::AnalysisRun,
            "analysis_run_reconcile",
            "AnalysisRun reconcile duration (seconds).",
        ),
    ] {
        out.family(metric, help, "histogram");
        for ((_, (namespace, name)), histogram) in
            recorded.reconciles.iter().filter(|((k, _), _)| *k == kind)
        {
            out.histogram(
                metric,
                &[("namespace", namespace), ("name", name)],
                histogram,
            );
        }
    }
    for (kind, metric, help) in [
        (
            ControllerKind::Rollout,
            "rollout_reconcile_error",
            "Failed rollout reconciles.",
        ),
        (
            ControllerKind::AnalysisRun,
            "analysis_run_reconcile_error",
            "Failed analysis run reconciles.",
        ),
    ] {
        out.family(metric, help, "counter");
        for ((_, (namespace, name)), count) in recorded
            .reconcile_errors
            .iter()
            .filter(|((k, _), _)| *k == kind)
        {
            out.sample(
                metric,
                &[("namespace", namespace), ("name", name)],
                *count as f64,
            );
        }
    }
    out.family(
        "rollout_events_total",
        "Kubernetes events emitted for rollouts.",
        "counter",
    );
    for (((namespace, name), type_, reason), count) in &recorded.rollout_events {
        out.sample(
            "rollout_events_total",
            &[
                ("namespace", namespace),
                ("name", name),
                ("type", type_),
                ("reason", reason),
            ],
            *count as f64,
        );
    }
    out.family(
        "controller_clientset_k8s_request_total",
        "Kubernetes API requests by resource, verb and status code.",
        "counter",
    );
    for (labels, count) in &recorded.requests {
        out.sample(
            "controller_clientset_k8s_request_total",
            &[
                ("kind", &labels.kind),
                ("verb", labels.verb),
                ("status_code", &labels.status_code),
            ],
            *count as f64,
        );
    }
    out.family(
        "ramp_reaction_seconds",
        "From a trigger (a rollout's new spec generation, one of its AnalysisRuns reaching a \
         verdict) to the controller's first write for the rollout (seconds).",
        "histogram",
    );
    if let Some(histogram) = &recorded.reactions {
        out.histogram("ramp_reaction_seconds", &[], histogram);
    }
    out.family(
        "ramp_reconcile_duration_seconds",
        "Reconcile duration by controller and result (seconds).",
        "histogram",
    );
    for ((kind, result), histogram) in &recorded.reconcile_durations {
        out.histogram(
            "ramp_reconcile_duration_seconds",
            &[("controller", kind.label()), ("result", result)],
            histogram,
        );
    }
}

/// Wraps a reconcile function so each call is timed and counted under its object.
pub fn timed<K, C, E, F, Fut>(
    metrics: Option<Arc<Metrics>>,
    controller: ControllerKind,
    mut reconcile: F,
) -> impl FnMut(Arc<K>, Arc<C>) -> BoxFuture<'static, Result<Action, E>>
where
    K: Resource,
    F: FnMut(Arc<K>, Arc<C>) -> Fut,
    Fut: Future<Output = Result<Action, E>> + Send + 'static,
{
    move |object, ctx| {
        let key = object_key(object.as_ref());
        let metrics = metrics.clone();
        let reconciling = reconcile(object, ctx);
        Box::pin(async move {
            let started = Instant::now();
            let outcome = reconciling.await;
            if let Some(metrics) = metrics {
                let seconds = started.elapsed().as_secs_f64();
                metrics.reconciled(controller, key, seconds, outcome.is_err());
            }
            outcome
        })
    }
}

/// Text being rendered.
#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    fn family(&mut self, name: &str, help: &str, type_: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {type_}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        write_labels(&mut self.text, labels, None);
        let _ = writeln!(self.text, " {}", number(value));
    }

    fn histogram(&mut self, name: &str, labels: &[(&str, &str)], histogram: &Histogram) {
        let mut cumulative = 0;
        for (bound, count) in histogram.bounds.iter().zip(&histogram.counts) {
            cumulative += count;
            let _ = write!(self.text, "{name}_bucket");
            write_labels(&mut self.text, labels, Some(&number(*bound)));
            let _ = writeln!(self.text, " {cumulative}");
        }
        let _ = write!(self.text, "{name}_bucket");
        write_labels(&mut self.text, labels, Some("+Inf"));
        let _ = writeln!(self.text, " {}", histogram.count);
        let _ = write!(self.text, "{name}_sum");
        write_labels(&mut self.text, labels, None);
        let _ = writeln!(self.text, " {}", number(histogram.sum));
        let _ = write!(self.text, "{name}_count");
        write_labels(&mut self.text, labels, None);
        let _ = writeln!(self.text, " {}", histogram.count);
    }
}

fn write_labels(out: &mut String, labels: &[(&str, &str)], le: Option<&str>) {
    if labels.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    for (key, value) in labels.iter().copied().chain(le.map(|le| ("le", le))) {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(key);
        out.push_str("=\"");
        for c in value.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
}

fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        value.to_string()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain counters behind; keep serving them.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_render_cumulative_buckets_sum_and_count() {
        let mut histogram = Histogram::new(UPSTREAM_RECONCILE_BUCKETS);
        for value in [0.0, 0.25, 0.25, 3.0] {
            histogram.observe(value);
        }
        let mut out = Exposition::default();
        out.histogram("rollout_reconcile", &[("name", "web")], &histogram);
        let expected = "rollout_reconcile_bucket{name=\"web\",le=\"0.01\"} 1\n\
            rollout_reconcile_bucket{name=\"web\",le=\"0.15\"} 1\n\
            rollout_reconcile_bucket{name=\"web\",le=\"0.25\"} 3\n\
            rollout_reconcile_bucket{name=\"web\",le=\"0.5\"} 3\n\
            rollout_reconcile_bucket{name=\"web\",le=\"1\"} 3\n\
            rollout_reconcile_bucket{name=\"web\",le=\"+Inf\"} 4\n\
            rollout_reconcile_sum{name=\"web\"} 3.5\n\
            rollout_reconcile_count{name=\"web\"} 4\n";
        assert_eq!(out.text, expected);
    }

    #[test]
    fn label_values_are_escaped() {
        let mut out = Exposition::default();
        out.sample("m", &[("reason", "a\"b\\c\nd")], 2.0);
        assert_eq!(out.text, "m{reason=\"a\\\"b\\\\c\\nd\"} 2\n");
    }

    #[test]
    fn counters_of_deleted_objects_are_pruned_and_others_kept() {
        let metrics = Metrics::new("test");
        metrics.rollout_event("default", "web", "Normal", "RolloutUpdated");
        metrics.rollout_event("default", "gone", "Normal", "RolloutUpdated");
        metrics.reconciled(
            ControllerKind::Rollout,
            ("default".to_owned(), "gone".to_owned()),
            0.1,
            true,
        );
        let mut recorded = lock(&metrics.recorded);
        let alive: Vec<Arc<GuardedRollout>> = vec![Arc::new(DeserializeGuard(Ok(
            serde_json::from_value(serde_json::json!({
                "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
                "metadata": {"name": "web", "namespace": "default"},
                "spec": {"template": {}}
            }))
            .unwrap_or_else(|e| panic!("rollout fixture: {e}")),
        )))];
        prune(&mut recorded, Some(&alive), None);
        let names: Vec<&str> = recorded
            .rollout_events
            .keys()
            .map(|((_, name), _, _)| name.as_str())
            .collect();
        assert_eq!(names, ["web"]);
        assert!(recorded.reconcile_errors.is_empty());
        // Ramp's own histogram is per controller, not per object: it stays.
        assert_eq!(recorded.reconcile_durations.len(), 1);
    }

    fn run(uid: &str, phase: Option<&str>) -> AnalysisRun {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisRun",
            "metadata": {"name": uid, "namespace": "default", "uid": uid,
                "ownerReferences": [{"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
                    "name": "web", "uid": "r1", "controller": true}]},
            "spec": {"metrics": []},
            "status": phase.map(|p| serde_json::json!({"phase": p}))
        }))
        .unwrap_or_else(|e| panic!("run fixture: {e}"))
    }

    fn reactions_observed(metrics: &Metrics) -> u64 {
        lock(&metrics.recorded)
            .reactions
            .as_ref()
            .map_or(0, |h| h.count)
    }

    #[test]
    fn a_run_reaching_its_verdict_starts_a_reaction_that_the_next_write_ends() {
        let metrics = Metrics::new("test");
        // Listed already decided (a restart): nothing to react to.
        metrics.rollout_run_seen(&watcher::Event::InitApply(run("old", Some("Failed"))));
        metrics.rollout_acted("default", "web");
        assert_eq!(reactions_observed(&metrics), 0);

        metrics.rollout_run_seen(&watcher::Event::Apply(run("new", Some("Running"))));
        metrics.rollout_acted("default", "web");
        assert_eq!(reactions_observed(&metrics), 0, "no verdict yet");
        metrics.rollout_run_seen(&watcher::Event::Apply(run("new", Some("Failed"))));
        // The controller's own later updates of the decided run start nothing more.
        metrics.rollout_run_seen(&watcher::Event::Apply(run("new", Some("Failed"))));
        metrics.rollout_acted("default", "web");
        metrics.rollout_acted("default", "web");
        assert_eq!(reactions_observed(&metrics), 1);
        assert!(lock(&metrics.reactions).undecided_runs.is_empty());
    }
}
