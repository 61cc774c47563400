//! Liveness and readiness as probes see them. Live while the process serves; ready when a
//! standby is waiting for the lease (as upstream, whose standbys pass their probes) or when
//! the leader's caches are synced; not ready while starting, syncing or shutting down.

use super::metrics::Metrics;
use std::sync::{Arc, Mutex};

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
}

impl Health {
    /// Readiness reads cache sync from `metrics`, which the controllers hand their caches to.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            role: Mutex::new(Role::Starting),
            metrics,
        }
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
    pub fn readiness(&self) -> Result<&'static str, &'static str> {
        match self.role() {
            Role::Starting => Err("starting"),
            Role::StandingBy => Ok("standing by for the leader lease"),
            Role::Leading if self.metrics.caches_synced() => Ok("leading"),
            Role::Leading => Err("leading; caches are still syncing"),
            Role::ShuttingDown => Err("shutting down"),
            Role::Lost => Err("leadership lost"),
        }
    }
}
