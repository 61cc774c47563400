//! Workload simulators: the ReplicaSet, Deployment and Job controllers and the kubelet, as one
//! watch-driven loop over the API. It reads only through watchers (reflector stores) and writes
//! only through the kube client, like the real components; it never touches the server's storage.

mod behaviour;
mod deployment;
mod job;
mod kubelet;
mod replicaset;
mod writes;

pub use behaviour::{
    CRASH_LOOP, IMAGE_PULL_FAILURE, JOB_DURATION, JOB_RESULT, NEVER_READY, READY_AFTER,
    parse_duration,
};

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::Resource;
use kube::api::{Api, DeleteParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use writes::{Written, replace_status, sync_deployment};

/// Timings of the simulated kubelet and controllers; per-version overrides come from
/// `sim.ramp.dev/*` pod-template annotations.
#[derive(Clone, Debug)]
pub struct WorkloadConfig {
    /// Time from a pod's start until its containers run and (unless told otherwise) are ready.
    pub pod_ready_delay: Duration,
    /// Run time of a Job's pod when the Job does not say `sim.ramp.dev/job-duration`.
    pub job_duration: Duration,
    /// Time between two restarts of a crash-looping container.
    pub crash_restart_interval: Duration,
    /// Time from `ErrImagePull` to `ImagePullBackOff`.
    pub image_pull_backoff_delay: Duration,
    /// Wait before retrying a failed write to the API server.
    pub retry_delay: Duration,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        Self {
            pod_ready_delay: Duration::from_millis(200),
            job_duration: Duration::from_secs(1),
            crash_restart_interval: Duration::from_secs(1),
            image_pull_backoff_delay: Duration::from_secs(1),
            retry_delay: Duration::from_millis(500),
        }
    }
}

/// A write of the simulators that the API server refused.
#[derive(Debug, thiserror::Error)]
#[error("{verb} {kind} {namespace}/{name}: {source}")]
struct WriteError {
    verb: &'static str,
    kind: &'static str,
    namespace: String,
    name: String,
    source: kube::Error,
}

fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(s) if s.code == 404)
}

/// Namespace and name of an object.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Key {
    namespace: String,
    name: String,
}

impl Key {
    fn of<K: Resource>(object: &K) -> Self {
        Self {
            namespace: object.meta().namespace.clone().unwrap_or_default(),
            name: object.meta().name.clone().unwrap_or_default(),
        }
    }
    fn object_ref<K: Resource<DynamicType = ()>>(&self) -> ObjectRef<K> {
        ObjectRef::new(&self.name).within(&self.namespace)
    }
}

/// Something one of the simulated components has to look at.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Target {
    Pod(Key),
    ReplicaSet(Key),
    Job(Key),
    Deployment(Key),
}

/// One event from one of the watches, already applied to its store.
enum Observed {
    ReplicaSet(Box<watcher::Event<ReplicaSet>>),
    Pod(Box<watcher::Event<Pod>>),
    Deployment(Box<watcher::Event<Deployment>>),
    Job(Box<watcher::Event<Job>>),
}

/// Pods created or deleted by an owner that its store does not show yet (the real
/// controllers' "expectations"), so a reconcile that runs before the watch catches up
/// neither creates nor deletes twice.
#[derive(Default, Debug)]
struct Expectations {
    created: BTreeSet<String>,
    deleted: BTreeSet<String>,
}

struct Stores {
    replica_sets: Store<ReplicaSet>,
    pods: Store<Pod>,
    deployments: Store<Deployment>,
    jobs: Store<Job>,
}

struct Simulator {
    client: kube::Client,
    config: WorkloadConfig,
    stores: Stores,
    /// Pods by the uid of their controller, so an owner finds its pods without a scan.
    pods_by_owner: HashMap<String, BTreeSet<Key>>,
    expectations: HashMap<String, Expectations>,
    /// Order in which this simulator created each pod (ties in creation timestamps).
    created_seq: HashMap<Key, u64>,
    next_seq: u64,
    /// When each pod (by uid) started, on the monotonic clock and the wall clock.
    started: HashMap<String, (Instant, Timestamp)>,
    timers: BTreeSet<(Instant, Target)>,
    timer_of: HashMap<Target, Instant>,
    dirty: BTreeSet<Target>,
    /// Targets with a reconcile in progress.
    running: BTreeSet<Target>,
    /// Kinds whose (re)list has been received: nothing is reconciled until all are.
    initialized: [bool; 4],
}

/// Runs the workload simulators until the task is aborted.
pub async fn run(client: kube::Client, config: WorkloadConfig) {
    let (rs_store, rs_writer) = reflector::store::<ReplicaSet>();
    let (pod_store, pod_writer) = reflector::store::<Pod>();
    let (deploy_store, deploy_writer) = reflector::store::<Deployment>();
    let (job_store, job_writer) = reflector::store::<Job>();
    let cfg = watcher::Config::default;
    let events = futures::stream::select_all([
        reflector::reflector(rs_writer, watcher(Api::all(client.clone()), cfg()))
            .backoff(WatchBackoff::new())
            .map(|e| e.map(|e| Observed::ReplicaSet(Box::new(e))))
            .boxed(),
        reflector::reflector(pod_writer, watcher(Api::all(client.clone()), cfg()))
            .backoff(WatchBackoff::new())
            .map(|e| e.map(|e| Observed::Pod(Box::new(e))))
            .boxed(),
        reflector::reflector(deploy_writer, watcher(Api::all(client.clone()), cfg()))
            .backoff(WatchBackoff::new())
            .map(|e| e.map(|e| Observed::Deployment(Box::new(e))))
            .boxed(),
        reflector::reflector(job_writer, watcher(Api::all(client.clone()), cfg()))
            .backoff(WatchBackoff::new())
            .map(|e| e.map(|e| Observed::Job(Box::new(e))))
            .boxed(),
    ]);
    let mut sim = Simulator {
        client,
        config,
        stores: Stores {
            replica_sets: rs_store,
            pods: pod_store,
            deployments: deploy_store,
            jobs: job_store,
        },
        pods_by_owner: HashMap::new(),
        expectations: HashMap::new(),
        created_seq: HashMap::new(),
        next_seq: 0,
        started: HashMap::new(),
        timers: BTreeSet::new(),
        timer_of: HashMap::new(),
        dirty: BTreeSet::new(),
        running: BTreeSet::new(),
        initialized: [false; 4],
    };
    sim.run(events).await;
}

impl Simulator {
    async fn run(
        &mut self,
        mut events: impl futures::Stream<Item = Result<Observed, watcher::Error>> + Unpin,
    ) {
        let mut in_flight: FuturesUnordered<Pending> = FuturesUnordered::new();
        loop {
            let next_timer = self.timers.first().map(|(at, _)| *at);
            tokio::select! {
                event = events.next() => match event {
                    Some(event) => self.observe(event),
                    None => return,
                },
                Some(done) = in_flight.next(), if !in_flight.is_empty() => self.complete(done),
                () = sleep_until(next_timer), if next_timer.is_some() => {}
            }
            // Take in everything already delivered so one reconcile sees all of it.
            while let Some(Some(event)) = events.next().now_or_never() {
                self.observe(event);
            }
            while let Some(Some(done)) = in_flight.next().now_or_never() {
                self.complete(done);
            }
            self.fire_due_timers();
            if self.initialized.iter().all(|i| *i) {
                self.start_reconciles(&mut in_flight);
            }
        }
    }

    /// Starts a reconcile for every dirty target that has none running (a target's reconciles
    /// never overlap, so an owner's expectations are settled before its next decision).
    fn start_reconciles(&mut self, in_flight: &mut FuturesUnordered<Pending>) {
        let ready: Vec<Target> = self
            .dirty
            .iter()
            .filter(|t| !self.running.contains(*t))
            .take(MAX_CONCURRENT_RECONCILES.saturating_sub(self.running.len()))
            .cloned()
            .collect();
        for target in ready {
            self.dirty.remove(&target);
            self.running.insert(target.clone());
            let pending = match &target {
                Target::Pod(key) => self.reconcile_pod(key),
                Target::ReplicaSet(key) => self.reconcile_replica_set(key),
                Target::Job(key) => self.reconcile_job(key),
                Target::Deployment(key) => self.reconcile_deployment(key),
            };
            in_flight.push(pending);
        }
    }

    /// Records what a finished reconcile wrote and when to look at its target again.
    fn complete(&mut self, done: Completion) {
        self.running.remove(&done.target);
        for (owner_uid, key) in done.written.created {
            self.next_seq += 1;
            self.created_seq.insert(key.clone(), self.next_seq);
            let expectations = self.expectations.entry(owner_uid).or_default();
            expectations.created.insert(key.name);
        }
        for (owner_uid, key) in done.written.deleted {
            let expectations = self.expectations.entry(owner_uid).or_default();
            expectations.deleted.insert(key.name);
        }
        let next = match done.outcome {
            Ok(next) => next,
            Err(error) => {
                // A conflict means our copy is stale: the watch brings the newer one.
                let conflict = matches!(&error.source, kube::Error::Api(s) if s.code == 409);
                if !conflict {
                    tracing::warn!(%error, "workload simulator: write failed, retrying");
                }
                Some(Instant::now() + self.config.retry_delay)
            }
        };
        self.schedule(done.target, next);
    }

    fn observe(&mut self, event: Result<Observed, watcher::Error>) {
        let observed = match event {
            Ok(observed) => observed,
            Err(error) => {
                tracing::warn!(%error, "workload simulator: watch failed, retrying");
                return;
            }
        };
        match observed {
            Observed::ReplicaSet(event) => {
                for rs in self.touched(0, *event) {
                    self.dirty.insert(Target::ReplicaSet(Key::of(&rs)));
                    if let Some(owner) = controller_of(&rs, "Deployment") {
                        self.dirty.insert(Target::Deployment(owner));
                    }
                }
            }
            Observed::Pod(event) => {
                let deleted = matches!(*event, watcher::Event::Delete(_));
                for pod in self.touched(1, *event) {
                    let key = Key::of(&pod);
                    if let Some(owner_uid) = controller_uid(&pod) {
                        let owned = self.pods_by_owner.entry(owner_uid).or_default();
                        if deleted {
                            owned.remove(&key);
                        } else {
                            owned.insert(key.clone());
                        }
                    }
                    if deleted {
                        self.created_seq.remove(&key);
                        if let Some(uid) = pod.metadata.uid.as_ref() {
                            self.started.remove(uid);
                        }
                    } else {
                        self.dirty.insert(Target::Pod(key));
                    }
                    if let Some(owner) = controller_of(&pod, "ReplicaSet") {
                        self.dirty.insert(Target::ReplicaSet(owner));
                    }
                    if let Some(owner) = controller_of(&pod, "Job") {
                        self.dirty.insert(Target::Job(owner));
                    }
                }
            }
            Observed::Deployment(event) => {
                for d in self.touched(2, *event) {
                    self.dirty.insert(Target::Deployment(Key::of(&d)));
                }
            }
            Observed::Job(event) => {
                for j in self.touched(3, *event) {
                    self.dirty.insert(Target::Job(Key::of(&j)));
                }
            }
        }
    }

    /// The objects an event is about; records the end of a kind's initial list.
    fn touched<K>(&mut self, kind: usize, event: watcher::Event<K>) -> Vec<K> {
        match event {
            watcher::Event::Apply(o) | watcher::Event::Delete(o) | watcher::Event::InitApply(o) => {
                vec![o]
            }
            // A relist swaps the store only when it is done: reconciling before that would
            // decide on the old state, so wait (keys marked meanwhile stay dirty).
            watcher::Event::Init => {
                self.initialized[kind] = false;
                Vec::new()
            }
            watcher::Event::InitDone => {
                self.initialized[kind] = true;
                Vec::new()
            }
        }
    }

    fn fire_due_timers(&mut self) {
        let now = Instant::now();
        while let Some((at, target)) = self.timers.first().cloned() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            self.timer_of.remove(&target);
            self.dirty.insert(target);
        }
    }

    fn schedule(&mut self, target: Target, at: Option<Instant>) {
        if let Some(previous) = self.timer_of.remove(&target) {
            self.timers.remove(&(previous, target.clone()));
        }
        if let Some(at) = at {
            self.timers.insert((at, target.clone()));
            self.timer_of.insert(target, at);
        }
    }

    /// Live pods owned (as controller) by the object with `owner_uid`.
    fn owned_pods(&mut self, owner_uid: &str) -> Vec<Arc<Pod>> {
        let Some(keys) = self.pods_by_owner.get_mut(owner_uid) else {
            return Vec::new();
        };
        let store = &self.stores.pods;
        let mut pods = Vec::new();
        keys.retain(|key| match store.get(&key.object_ref()) {
            Some(pod) if controller_uid(pod.as_ref()).as_deref() == Some(owner_uid) => {
                pods.push(pod);
                true
            }
            _ => false,
        });
        pods
    }

    /// Settles an owner's expectations against what the store shows now; returns the number
    /// of created pods the store does not show yet.
    fn settle_expectations(&mut self, owner_uid: &str, pods: &[Arc<Pod>]) -> usize {
        let expectations = self.expectations.entry(owner_uid.to_string()).or_default();
        let names: BTreeMap<&str, &Pod> = pods
            .iter()
            .map(|p| (p.metadata.name.as_deref().unwrap_or_default(), p.as_ref()))
            .collect();
        expectations
            .created
            .retain(|name| !names.contains_key(name.as_str()));
        expectations.deleted.retain(|name| {
            names
                .get(name.as_str())
                .is_some_and(|p| p.metadata.deletion_timestamp.is_none())
        });
        expectations.created.len()
    }

    // ---- kubelet ----------------------------------------------------------------------------

    fn reconcile_pod(&mut self, key: &Key) -> Pending {
        let target = Target::Pod(key.clone());
        let Some(pod) = self.stores.pods.get(&key.object_ref()) else {
            return finished(target, Ok(None));
        };
        let api = Api::<Pod>::namespaced(self.client.clone(), &key.namespace);
        let failed = write_error("Pod", key);
        if pod.metadata.deletion_timestamp.is_some() {
            // The kubelet finishes a graceful deletion once the containers are gone.
            if pod.metadata.finalizers.as_ref().is_none_or(Vec::is_empty) {
                let name = key.name.clone();
                return Box::pin(async move {
                    let outcome = match api
                        .delete(&name, &DeleteParams::default().grace_period(0))
                        .await
                    {
                        Ok(_) => Ok(None),
                        Err(e) if is_not_found(&e) => Ok(None),
                        Err(e) => Err(failed("delete", e)),
                    };
                    Completion {
                        target,
                        written: Written::default(),
                        outcome,
                    }
                });
            }
            return finished(target, Ok(None));
        }
        let observed = kubelet::observed_stage(&pod);
        if matches!(
            observed,
            Some(kubelet::PodStage::Succeeded | kubelet::PodStage::Failed)
        ) {
            return finished(target, Ok(None));
        }
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let run_to_completion = pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.as_deref())
            .is_some_and(|p| p != "Always");
        let (behaviour, problems) = behaviour::pod_behaviour(
            pod.metadata.annotations.as_ref(),
            run_to_completion,
            self.config.pod_ready_delay,
            self.config.job_duration,
        );
        let (start, started_at) = match self.started.get(&uid) {
            Some(start) => *start,
            None => {
                for problem in &problems {
                    tracing::warn!(pod = %format!("{}/{}", key.namespace, key.name), %problem, "workload simulator: using the default");
                }
                // A pod started by an earlier run of the simulator keeps its start time.
                let now_wall = Timestamp::now();
                let start = match pod.status.as_ref().and_then(|s| s.start_time.as_ref()) {
                    Some(t) => {
                        let ago = now_wall.duration_since(t.0).unsigned_abs();
                        (
                            Instant::now().checked_sub(ago).unwrap_or_else(Instant::now),
                            t.0,
                        )
                    }
                    None => (Instant::now(), now_wall),
                };
                self.started.insert(uid, start);
                start
            }
        };
        let (stage, next) = kubelet::stage_at(
            &behaviour,
            start.elapsed(),
            self.config.crash_restart_interval,
            self.config.image_pull_backoff_delay,
        );
        let next = next.map(|offset| start + offset);
        if observed == Some(stage) {
            return finished(target, Ok(next));
        }
        let status = kubelet::status_for(
            &pod,
            stage,
            started_at,
            Timestamp::now(),
            pod.status.as_ref(),
        );
        let name = key.name.clone();
        Box::pin(async move {
            let outcome = replace_status(&api, &name, &status)
                .await
                .map(|()| next)
                .map_err(|e| failed("update status of", e));
            Completion {
                target,
                written: Written::default(),
                outcome,
            }
        })
    }

    // ---- ReplicaSet controller ------------------------------------------------------------

    fn reconcile_replica_set(&mut self, key: &Key) -> Pending {
        let target = Target::ReplicaSet(key.clone());
        let Some(rs) = self.stores.replica_sets.get(&key.object_ref()) else {
            return finished(target, Ok(None));
        };
        let uid = rs.metadata.uid.clone().unwrap_or_default();
        if rs.metadata.deletion_timestamp.is_some() {
            self.expectations.remove(&uid);
            return finished(target, Ok(None));
        }
        let pods = self.owned_pods(&uid);
        let pending_creates = self.settle_expectations(&uid, &pods);
        let pending_deletes = self
            .expectations
            .get(&uid)
            .map(|e| e.deleted.clone())
            .unwrap_or_default();
        let active: Vec<Arc<Pod>> = pods
            .into_iter()
            .filter(|p| replicaset::is_active(p))
            .collect();
        let candidates: Vec<&Arc<Pod>> = active
            .iter()
            .filter(|p| !pending_deletes.contains(p.metadata.name.as_deref().unwrap_or_default()))
            .collect();
        let wanted = usize::try_from(rs.spec.replicas.unwrap_or(1)).unwrap_or(0);
        let have = candidates.len() + pending_creates;
        let mut to_create = Vec::new();
        let mut to_delete = Vec::new();
        if wanted > have {
            let owner = replicaset::controller_ref("apps/v1", "ReplicaSet", &rs.metadata);
            let pod = replicaset::pod_from_template(
                &key.namespace,
                format!("{}-", key.name),
                rs.spec.template.as_ref(),
                owner,
                &BTreeMap::new(),
                &BTreeMap::new(),
            );
            to_create = vec![pod; wanted - have];
        } else if have > wanted {
            let mut ranks: Vec<_> = candidates
                .iter()
                .map(|p| {
                    let seq = self
                        .created_seq
                        .get(&Key::of(p.as_ref()))
                        .copied()
                        .unwrap_or(0);
                    replicaset::DeletionRank::of(p, seq)
                })
                .collect();
            replicaset::sort_for_deletion(&mut ranks);
            to_delete = ranks
                .into_iter()
                .take(have - wanted)
                .map(|rank| Key {
                    namespace: key.namespace.clone(),
                    name: rank.name,
                })
                .collect();
        }
        let client = self.client.clone();
        let retry_delay = self.config.retry_delay;
        let failed = write_error("ReplicaSet", key);
        let name = key.name.clone();
        let namespace = key.namespace.clone();
        Box::pin(async move {
            let mut written = Written::default();
            // The real controller reports a failed create or delete in a ReplicaFailure
            // condition and tries again later.
            let mut manage_error = None;
            for pod in &to_create {
                if let Err(e) = written.create_pod(&client, &uid, pod).await {
                    let message = e.to_string();
                    tracing::warn!(error = %failed("create pod for", e), "workload simulator");
                    manage_error = Some(("FailedCreate", message));
                    break;
                }
            }
            for pod in &to_delete {
                if let Err(e) = written.delete_pod(&client, &uid, pod).await {
                    let message = e.to_string();
                    tracing::warn!(error = %failed("delete pod of", e), "workload simulator");
                    manage_error = Some(("FailedDelete", message));
                    break;
                }
            }
            let active_pods: Vec<&Pod> = active.iter().map(|p| p.as_ref()).collect();
            let retry = manage_error.is_some();
            let (status, next_available) =
                replicaset::status(&rs, &active_pods, manage_error, Timestamp::now());
            let mut outcome = Ok(next_available.map(instant_of));
            if rs.status.as_ref() != Some(&status) {
                let api = Api::<ReplicaSet>::namespaced(client, &namespace);
                if let Err(e) = replace_status(&api, &name, &status).await {
                    outcome = Err(failed("update status of", e));
                }
            }
            if retry && outcome.is_ok() {
                outcome = Ok(Some(Instant::now() + retry_delay));
            }
            Completion {
                target,
                written,
                outcome,
            }
        })
    }

    // ---- Job controller ---------------------------------------------------------------------

    fn reconcile_job(&mut self, key: &Key) -> Pending {
        let target = Target::Job(key.clone());
        let Some(job) = self.stores.jobs.get(&key.object_ref()) else {
            return finished(target, Ok(None));
        };
        let uid = job.metadata.uid.clone().unwrap_or_default();
        if job.metadata.deletion_timestamp.is_some() {
            self.expectations.remove(&uid);
            return finished(target, Ok(None));
        }
        let pods = self.owned_pods(&uid);
        let pending_creates = self.settle_expectations(&uid, &pods);
        let pod_refs: Vec<&Pod> = pods.iter().map(|p| p.as_ref()).collect();
        let plan = job::plan(&job, &pod_refs, pending_creates, Timestamp::now());
        let mut to_create = Vec::new();
        if plan.start_pods > 0 {
            let template = job.spec.as_ref().map(|s| &s.template);
            let labels = BTreeMap::from([
                (
                    "batch.kubernetes.io/controller-uid".to_string(),
                    uid.clone(),
                ),
                ("batch.kubernetes.io/job-name".to_string(), key.name.clone()),
                ("controller-uid".to_string(), uid.clone()),
                ("job-name".to_string(), key.name.clone()),
            ]);
            // As the real Job controller: a pod carries its template's annotations only, so a
            // Job is steered by `sim.ramp.dev/*` on its pod template, on either tier.
            let annotations = BTreeMap::new();
            let owner = replicaset::controller_ref("batch/v1", "Job", &job.metadata);
            let pod = replicaset::pod_from_template(
                &key.namespace,
                format!("{}-", key.name),
                template,
                owner,
                &labels,
                &annotations,
            );
            to_create = vec![pod; plan.start_pods];
        }
        let to_delete: Vec<Key> = plan
            .delete_pods
            .iter()
            .map(|name| Key {
                namespace: key.namespace.clone(),
                name: name.clone(),
            })
            .collect();
        let client = self.client.clone();
        let failed = write_error("Job", key);
        let name = key.name.clone();
        let namespace = key.namespace.clone();
        Box::pin(async move {
            let mut written = Written::default();
            let outcome = async {
                for pod in &to_create {
                    written
                        .create_pod(&client, &uid, pod)
                        .await
                        .map_err(|e| failed("create pod for", e))?;
                }
                for pod in &to_delete {
                    written
                        .delete_pod(&client, &uid, pod)
                        .await
                        .map_err(|e| failed("delete pod of", e))?;
                }
                if job.status.as_ref() != Some(&plan.status) {
                    let api = Api::<Job>::namespaced(client.clone(), &namespace);
                    replace_status(&api, &name, &plan.status)
                        .await
                        .map_err(|e| failed("update status of", e))?;
                }
                Ok(plan.deadline.map(instant_of))
            }
            .await;
            Completion {
                target,
                written,
                outcome,
            }
        })
    }

    // ---- Deployment controller ------------------------------------------------------------

    fn reconcile_deployment(&mut self, key: &Key) -> Pending {
        let target = Target::Deployment(key.clone());
        let Some(d) = self.stores.deployments.get(&key.object_ref()) else {
            return finished(target, Ok(None));
        };
        if d.metadata.deletion_timestamp.is_some() {
            return finished(target, Ok(None));
        }
        let uid = d.metadata.uid.clone().unwrap_or_default();
        let owned: Vec<Arc<ReplicaSet>> = self
            .stores
            .replica_sets
            .state()
            .into_iter()
            .filter(|rs| {
                rs.metadata.namespace.as_deref() == Some(key.namespace.as_str())
                    && controller_uid(rs.as_ref()).as_deref() == Some(uid.as_str())
                    && rs.metadata.deletion_timestamp.is_none()
            })
            .collect();
        let client = self.client.clone();
        let failed = write_error("Deployment", key);
        let name = key.name.clone();
        let namespace = key.namespace.clone();
        Box::pin(async move {
            let outcome = sync_deployment(&client, &d, &owned, &namespace, &name)
                .await
                .map_err(|(verb, e)| failed(verb, e));
            Completion {
                target,
                written: Written::default(),
                outcome,
            }
        })
    }
}

/// A reconcile in progress: its writes, then what they changed.
type Pending = Pin<Box<dyn Future<Output = Completion> + Send>>;

/// Reconciles running at once: the API server is local, so this only bounds a burst.
const MAX_CONCURRENT_RECONCILES: usize = 64;

/// The end of one reconcile.
struct Completion {
    target: Target,
    written: Written,
    /// When to look at the target again, or the write that failed.
    outcome: Result<Option<Instant>, WriteError>,
}

fn finished(target: Target, outcome: Result<Option<Instant>, WriteError>) -> Pending {
    Box::pin(std::future::ready(Completion {
        target,
        written: Written::default(),
        outcome,
    }))
}

fn write_error(
    kind: &'static str,
    key: &Key,
) -> impl Fn(&'static str, kube::Error) -> WriteError + Send + 'static {
    let key = key.clone();
    move |verb, source| WriteError {
        verb,
        kind,
        namespace: key.namespace.clone(),
        name: key.name.clone(),
        source,
    }
}

fn controller_uid<K: Resource>(object: &K) -> Option<String> {
    object
        .meta()
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true))
        .map(|o| o.uid.clone())
}

fn controller_of<K: Resource>(object: &K, kind: &str) -> Option<Key> {
    let owner = object
        .meta()
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true) && o.kind == kind)?;
    Some(Key {
        namespace: object.meta().namespace.clone().unwrap_or_default(),
        name: owner.name.clone(),
    })
}

/// The monotonic instant of a wall-clock time (now if it is in the past).
fn instant_of(at: Timestamp) -> Instant {
    let ahead = at.duration_since(Timestamp::now());
    if ahead.is_negative() {
        Instant::now()
    } else {
        Instant::now() + ahead.unsigned_abs()
    }
}

/// Backoff between failed watch attempts of the simulators: the API server is local, so retry
/// fast (50 ms, doubling up to 500 ms) rather than with kube's default (800 ms up to 30 s),
/// which would let a server that keeps cutting idle watches stall them for seconds.
#[derive(Clone, Debug)]
pub(crate) struct WatchBackoff {
    next: Duration,
}

impl WatchBackoff {
    const FIRST: Duration = Duration::from_millis(50);
    const MAX: Duration = Duration::from_millis(500);

    pub(crate) fn new() -> Self {
        Self { next: Self::FIRST }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let current = self.next;
        self.next = (current * 2).min(Self::MAX);
        Some(current)
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
