//! Whether each of the controllers' watches is live: bookkeeping only. A watch is live from a
//! successful list or watch request (or an event it delivered) until its next error; it is
//! down from that error, or from its start, until the next success. Times are inputs, so the
//! rules are checked without a clock; `runtime::watch` feeds the events and `/readyz` reads
//! [`WatchLiveness::stalled`].

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// How long a watch may be down before readiness fails: several times the longest retry
/// delay of a watch (`runtime::watch::WatchBackoff`), so one failed retry never flips it.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(15);

/// What one watch last showed.
#[derive(Clone, Debug, PartialEq, Eq)]
struct WatchState {
    live: bool,
    /// Since when it has been live, or down.
    since: Instant,
    /// The error that took it down; `None` while live or before its first list.
    error: Option<String>,
    /// How many times it went live.
    connections: u64,
}

/// A watch down for longer than the grace period, as `/readyz` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StalledWatch {
    pub name: String,
    pub down_for: Duration,
    /// The last error, or `None` when the watch never listed yet.
    pub error: Option<String>,
}

impl fmt::Display for StalledWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.down_for.as_secs();
        match &self.error {
            Some(error) => write!(
                f,
                "watch {} not live for {secs}s (last error: {error})",
                self.name
            ),
            None => write!(f, "watch {} not listed for {secs}s", self.name),
        }
    }
}

/// Every running watch of the process, by name (`rollout/replicasets`).
#[derive(Debug, Default)]
pub struct WatchLiveness {
    watches: Mutex<BTreeMap<String, WatchState>>,
}

impl WatchLiveness {
    /// Starts tracking watch `name` as not yet listed; it stops when the returned guard drops.
    pub fn register(self: &Arc<Self>, name: impl Into<String>, now: Instant) -> Registration {
        let name = name.into();
        self.lock().insert(
            name.clone(),
            WatchState {
                live: false,
                since: now,
                error: None,
                connections: 0,
            },
        );
        Registration {
            liveness: Arc::clone(self),
            name,
        }
    }

    /// A list or watch request of `name` succeeded, or it delivered an event.
    pub fn connected(&self, name: &str, now: Instant) {
        if let Some(state) = self.lock().get_mut(name)
            && !state.live
        {
            if state.error.is_some() {
                tracing::info!(watch = name, "watch live again");
            }
            state.live = true;
            state.since = now;
            state.error = None;
            state.connections += 1;
        }
    }

    /// A request or the stream of `name` failed. Returns whether this took a live watch down.
    pub fn failed(&self, name: &str, now: Instant, error: impl fmt::Display) -> bool {
        let mut watches = self.lock();
        let Some(state) = watches.get_mut(name) else {
            return false;
        };
        let went_down = state.live;
        if went_down {
            state.live = false;
            state.since = now;
        }
        state.error = Some(error.to_string());
        went_down
    }

    /// How many times `name` went live: a retry that sees this grow knows the watch recovered
    /// in between, even if it failed again since.
    pub fn connections(&self, name: &str) -> u64 {
        self.lock().get(name).map_or(0, |state| state.connections)
    }

    /// The watches down for longer than `grace` at `now`, longest first.
    pub fn stalled(&self, now: Instant, grace: Duration) -> Vec<StalledWatch> {
        let mut stalled: Vec<StalledWatch> = self
            .lock()
            .iter()
            .filter(|(_, state)| !state.live)
            .map(|(name, state)| StalledWatch {
                name: name.clone(),
                down_for: now.saturating_duration_since(state.since),
                error: state.error.clone(),
            })
            .filter(|watch| watch.down_for > grace)
            .collect();
        stalled.sort_by(|a, b| b.down_for.cmp(&a.down_for).then(a.name.cmp(&b.name)));
        stalled
    }

    /// The names of the watches being tracked.
    pub fn names(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, WatchState>> {
        self.watches.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Keeps one watch in the bookkeeping while its stream exists.
#[derive(Debug)]
pub struct Registration {
    liveness: Arc<WatchLiveness>,
    name: String,
}

impl Registration {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn liveness(&self) -> &Arc<WatchLiveness> {
        &self.liveness
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.liveness.lock().remove(&self.name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GRACE: Duration = Duration::from_secs(15);

    fn at(start: Instant, secs: u64) -> Instant {
        start + Duration::from_secs(secs)
    }

    #[test]
    fn a_watch_that_never_listed_stalls_after_the_grace_period() {
        let liveness = Arc::new(WatchLiveness::default());
        let t0 = Instant::now();
        let _watch = liveness.register("rollout/services", t0);
        assert!(liveness.stalled(at(t0, 15), GRACE).is_empty());
        let stalled = liveness.stalled(at(t0, 16), GRACE);
        assert_eq!(stalled.len(), 1);
        assert_eq!(
            stalled[0].to_string(),
            "watch rollout/services not listed for 16s"
        );
    }

    #[test]
    fn an_error_counts_from_the_first_failure_and_a_success_clears_it() {
        let liveness = Arc::new(WatchLiveness::default());
        let t0 = Instant::now();
        let _watch = liveness.register("rollout/replicasets", t0);
        liveness.connected("rollout/replicasets", at(t0, 1));
        assert!(liveness.failed("rollout/replicasets", at(t0, 10), "connection refused"));
        assert!(!liveness.failed("rollout/replicasets", at(t0, 20), "HTTP 500"));
        let stalled = liveness.stalled(at(t0, 30), GRACE);
        assert_eq!(
            stalled.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["watch rollout/replicasets not live for 20s (last error: HTTP 500)"]
        );
        liveness.connected("rollout/replicasets", at(t0, 31));
        assert!(liveness.stalled(at(t0, 100), GRACE).is_empty());
        assert_eq!(liveness.connections("rollout/replicasets"), 2);
    }

    #[test]
    fn a_dropped_registration_leaves_the_bookkeeping() {
        let liveness = Arc::new(WatchLiveness::default());
        let t0 = Instant::now();
        let watch = liveness.register("analysisrun/analysisruns", t0);
        assert_eq!(watch.name(), "analysisrun/analysisruns");
        drop(watch);
        assert!(liveness.names().is_empty());
        liveness.connected("analysisrun/analysisruns", t0);
        assert!(!liveness.failed("analysisrun/analysisruns", t0, "gone"));
        assert!(liveness.stalled(at(t0, 100), GRACE).is_empty());
    }

    #[derive(Clone, Debug)]
    enum Step {
        Connected(usize),
        Failed(usize),
    }

    fn step() -> impl Strategy<Value = (u64, Step)> {
        (
            0u64..20,
            prop_oneof![
                (0usize..3).prop_map(Step::Connected),
                (0usize..3).prop_map(Step::Failed),
            ],
        )
    }

    proptest! {
        /// Against a model: a watch is stalled exactly when its last event was a failure (or it
        /// never connected) and the failure that ended its last live stretch (or its start) is
        /// more than the grace period ago.
        #[test]
        fn stalled_watches_are_those_down_longer_than_the_grace(
            steps in proptest::collection::vec(step(), 0..40),
            wait in 0u64..40,
        ) {
            let names = ["rollout/rollouts", "rollout/services", "rollout/virtualservices"];
            let liveness = Arc::new(WatchLiveness::default());
            let t0 = Instant::now();
            let _registered: Vec<_> = names.iter().map(|n| liveness.register(*n, t0)).collect();
            // Per watch: Some(down since) or None when live.
            let mut model: Vec<Option<u64>> = vec![Some(0); names.len()];
            let mut now = 0;
            for (dt, step) in steps {
                now += dt;
                match step {
                    Step::Connected(i) => {
                        liveness.connected(names[i], at(t0, now));
                        model[i] = None;
                    }
                    Step::Failed(i) => {
                        let went_down = liveness.failed(names[i], at(t0, now), "boom");
                        prop_assert_eq!(went_down, model[i].is_none());
                        model[i] = Some(model[i].unwrap_or(now));
                    }
                }
            }
            now += wait;
            let stalled = liveness.stalled(at(t0, now), GRACE);
            let mut expected: Vec<(String, u64)> = names
                .iter()
                .zip(&model)
                .filter_map(|(name, down)| down.map(|since| ((*name).to_owned(), now - since)))
                .filter(|(_, down_for)| Duration::from_secs(*down_for) > GRACE)
                .collect();
            expected.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            let got: Vec<(String, u64)> = stalled
                .iter()
                .map(|s| (s.name.clone(), s.down_for.as_secs()))
                .collect();
            prop_assert_eq!(got, expected);
        }
    }
}
