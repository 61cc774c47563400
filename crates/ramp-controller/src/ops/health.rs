//! Liveness and readiness as probes see them. Live while the process serves; ready when a
//! standby is waiting for the lease (as upstream, whose standbys pass their probes) or when
//! the leader's caches are synced and every watch is live (none down for longer than the
//! grace period); not ready while starting, syncing, blind or shutting down.

use super::metrics::Metrics;
use crate::runtime::liveness::DEFAULT_GRACE;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where the controller is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Nothing decided yet.
    Starting,
    /// Waiting for the lease; another replica leads.
    StandingBy,
    /// Controllers running (leading, or leader election off).
    Leading,
    /// Draining after SIGTERM.
    ShuttingDown,
    /// Leadership lost; the process is about to stop.
    Lost,
}

/// The probe state shared by the controllers and the health endpoints.
#[derive(Debug)]
pub struct Health {
    role: Mutex<Role>,
    metrics: Arc<Metrics>,
    /// How long a watch may be down before the leader is not ready.
    watch_grace: Duration,
}

impl Health {
    /// Readiness reads cache sync from `metrics`, which the controllers hand their caches to.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            role: Mutex::new(Role::Starting),
            metrics,
            watch_grace: DEFAULT_GRACE,
        }
    }

    /// How long a watch may be down (failing, or not listed yet) before readiness fails;
    /// [`DEFAULT_GRACE`] otherwise.
    pub fn with_watch_grace(mut self, grace: Duration) -> Self {
        self.watch_grace = grace;
        self
    }

    pub fn set(&self, role: Role) {
        *self
            .role
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = role;
    }

    pub fn role(&self) -> Role {
        *self
            .role
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `Ok(what)` when ready, `Err(why not)` otherwise.
    pub fn readiness(&self) -> Result<String, String> {
        self.readiness_at(Instant::now())
    }

    fn readiness_at(&self, now: Instant) -> Result<String, String> {
        match self.role() {
            Role::Starting => Err("starting".to_owned()),
            Role::StandingBy => Ok("standing by for the leader lease".to_owned()),
            Role::Leading => {
                // A leader whose watches are down decides from a stale world.
                let stalled = self.metrics.watch_liveness().stalled(now, self.watch_grace);
                if !stalled.is_empty() {
                    let watches: Vec<String> = stalled.iter().map(ToString::to_string).collect();
                    Err(format!("leading; {}", watches.join("; ")))
                } else if self.metrics.caches_synced() {
                    Ok("leading".to_owned())
                } else {
                    Err("leading; caches are still syncing".to_owned())
                }
            }
            Role::ShuttingDown => Err("shutting down".to_owned()),
            Role::Lost => Err("leadership lost".to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leader_with_a_watch_down_past_the_grace_is_not_ready_and_says_which() {
        let metrics = Arc::new(Metrics::new("test"));
        let health = Health::new(metrics.clone()).with_watch_grace(Duration::from_secs(5));
        health.set(Role::Leading);
        let liveness = metrics.watch_liveness();
        let t0 = Instant::now();
        let _services = liveness.register("rollout/services", t0);
        liveness.connected("rollout/services", t0);
        liveness.failed("rollout/services", t0, "connection refused");
        assert_eq!(
            health.readiness_at(t0 + Duration::from_secs(5)),
            Err("leading; caches are still syncing".to_owned()),
            "within the grace only the caches count"
        );
        assert_eq!(
            health.readiness_at(t0 + Duration::from_secs(7)),
            Err(
                "leading; watch rollout/services not live for 7s (last error: connection refused)"
                    .to_owned()
            )
        );
        health.set(Role::StandingBy);
        assert!(health.readiness_at(t0 + Duration::from_secs(7)).is_ok());
    }
}
