//! What every reconcile shares: the client, the routers, the event recorder, the ReplicaSet
//! cache, and a little per-rollout memory (the traffic last applied, our own recent writes not
//! yet seen by the caches, the failure count for backoff). No decisions are made here.

use crate::memory::{Gone, Memory};
use crate::traffic::{IstioApiVersion, ServiceSelectors, TrafficRouters};
use k8s_openapi::api::apps::v1::ReplicaSet;
use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::Store;
use ramp_api::analysis::AnalysisRun;
use ramp_api::rollout::Rollout;
use ramp_core::TrafficIntent;
use std::collections::HashMap;
use std::time::Duration;

/// How the Rollout controller runs.
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// Rollouts reconciled at the same time.
    pub concurrency: u16,
    /// A rollout with nothing scheduled is looked at again after this long anyway: a safety
    /// net against a missed watch event, never the mechanism that drives a rollout.
    pub resync: Duration,
    /// How often a rollout blocked by an invalid spec or a missing object is re-checked when no
    /// watch event arrives first (upstream re-checks every 20 s).
    pub invalid_spec_recheck: Duration,
    /// First and largest delay of the error backoff.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// The Istio API version the routers read and write.
    pub istio_version: IstioApiVersion,
    /// `reportingController` of the events.
    pub reporter: String,
    /// `reportingInstance` of the events (the pod name in a cluster).
    pub instance: Option<String>,
    /// The namespace and controller instance whose objects are watched.
    pub scope: crate::ops::WatchScope,
    /// Where reconciles, events and cached rollouts are reported.
    pub metrics: Option<std::sync::Arc<crate::ops::metrics::Metrics>>,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            concurrency: 8,
            resync: Duration::from_secs(300),
            invalid_spec_recheck: Duration::from_secs(20),
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(300),
            istio_version: IstioApiVersion::default(),
            reporter: "rollouts-controller".to_owned(),
            instance: None,
            scope: crate::ops::WatchScope::default(),
            metrics: None,
        }
    }
}

/// Per-rollout memory that outlives a reconcile (but not the process).
#[derive(Default)]
pub(crate) struct RolloutMemory {
    /// What the routers were last made to hold for this rollout.
    pub traffic: Option<TrafficIntent>,
    /// The Rollout as our last status write returned it.
    pub rollout: Option<Rollout>,
    /// ReplicaSets as our last writes returned them, by name.
    pub replica_sets: HashMap<String, ReplicaSet>,
    /// AnalysisRuns as our last writes returned them, by name.
    pub analysis_runs: HashMap<String, AnalysisRun>,
    /// Reconciles failed in a row, for the backoff.
    pub failures: u32,
}

/// Shared by every reconcile.
pub struct Context {
    pub client: Client,
    pub routers: TrafficRouters,
    pub services: ServiceSelectors,
    pub recorder: Recorder,
    /// Every ReplicaSet in the cluster, pruned of what Ramp does not read.
    pub replica_sets: Store<ReplicaSet>,
    /// Every AnalysisRun a rollout created, pruned of its metrics and measurements.
    pub analysis_runs: Store<AnalysisRun>,
    pub config: ControllerConfig,
    memory: Memory<RolloutMemory>,
}

impl Context {
    pub fn new(client: Client, replica_sets: Store<ReplicaSet>, config: ControllerConfig) -> Self {
        let reporter = Reporter {
            controller: config.reporter.clone(),
            instance: config.instance.clone(),
        };
        Self {
            routers: TrafficRouters::new(client.clone(), config.istio_version),
            services: ServiceSelectors::new(client.clone()),
            recorder: Recorder::new(client.clone(), reporter),
            client,
            replica_sets,
            analysis_runs: kube::runtime::reflector::store().0,
            config,
            memory: Memory::default(),
        }
    }

    /// Reads rollouts' AnalysisRuns from `store` (empty until set).
    pub fn with_analysis_runs(mut self, store: Store<AnalysisRun>) -> Self {
        self.analysis_runs = store;
        self
    }

    /// The memory of the rollout with this uid.
    pub(crate) fn with_memory<T>(&self, uid: &str, f: impl FnOnce(&mut RolloutMemory) -> T) -> T {
        self.memory.with(uid, f)
    }

    /// Forgets rollouts that no longer exist.
    pub(crate) fn forget(&self, gone: &Gone) {
        self.memory.forget(gone);
    }

    /// Rollouts remembered (the memory must not outgrow the rollouts that exist).
    pub fn remembered(&self) -> usize {
        self.memory.len()
    }
}

/// Whether `candidate` is a later version of the same object than `cached`. Resource versions
/// are opaque to clients, but every API server Ramp talks to (etcd-backed ones and ramp-sim)
/// issues increasing integers; if either does not parse, the cache is trusted.
pub(crate) fn is_newer(candidate: Option<&str>, cached: Option<&str>) -> bool {
    match (
        candidate.and_then(|v| v.parse::<u64>().ok()),
        cached.and_then(|v| v.parse::<u64>().ok()),
    ) {
        (Some(candidate), Some(cached)) => candidate > cached,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::is_newer;

    #[test]
    fn only_a_strictly_later_parsable_version_wins_over_the_cache() {
        assert!(is_newer(Some("12"), Some("9")));
        assert!(!is_newer(Some("9"), Some("12")));
        assert!(!is_newer(Some("9"), Some("9")));
        assert!(!is_newer(Some("abc"), Some("9")));
        assert!(!is_newer(Some("10"), None));
    }
}
