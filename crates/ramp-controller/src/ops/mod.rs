//! Running the controllers as an operator deploys them: leader election, the Rollout and
//! AnalysisRun controllers only while leading, metrics and probes, and a graceful stop that
//! drains in-flight reconciles and releases the lease. Reconcile logic stays in the
//! controllers; flags stay in the binary.

pub mod client;
pub mod health;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod scope;

use crate::analysis_run::{self, AnalysisRunConfig};
use crate::context::ControllerConfig;
use crate::rollout;
use futures::FutureExt;
use health::{Health, Role};
use kube::Client;
use leader::{LeaderElector, LeaderError, LeaseConfig};
use metrics::Metrics;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::watch;

pub use scope::WatchScope;

/// Everything `run` needs besides the client.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub rollouts: ControllerConfig,
    pub analysis_runs: AnalysisRunConfig,
    /// `None` runs the controllers at once, without a lease (`--leader-elect=false`).
    pub leader_election: Option<LeaseConfig>,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The controllers were stopped at once; the caller must not act any more (upstream exits
    /// the process, and so does `ramp controller`).
    #[error(transparent)]
    LeadershipLost(LeaderError),
    #[error(transparent)]
    LeaderElection(LeaderError),
}

/// Runs both controllers until `shutdown` resolves (then drains them and releases the lease:
/// `Ok`) or leadership is lost (then drops them mid-flight: `Err`).
pub async fn run(
    client: Client,
    options: RunOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let RunOptions {
        mut rollouts,
        mut analysis_runs,
        leader_election,
        metrics,
        health,
    } = options;
    rollouts.metrics = Some(metrics.clone());
    analysis_runs.metrics = Some(metrics);

    let (stop, stopped) = watch::channel(false);
    let shutdown = async move {
        shutdown.await;
        let _ = stop.send(true);
    };
    tokio::pin!(shutdown);

    let mut elector = match leader_election {
        Some(lease) => {
            let mut elector =
                LeaderElector::new(client.clone(), lease).map_err(RunError::LeaderElection)?;
            health.set(Role::StandingBy);
            tokio::select! {
                () = &mut shutdown => {
                    health.set(Role::ShuttingDown);
                    return Ok(());
                }
                () = elector.acquire() => {}
            }
            Some(elector)
        }
        None => None,
    };
    health.set(Role::Leading);

    let controllers = run_controllers(client, rollouts, analysis_runs, stop_signal(stopped));
    tokio::pin!(controllers);
    let mut stopping = false;
    loop {
        tokio::select! {
            () = &mut shutdown, if !stopping => {
                // The controllers see the same signal: they take no new work and finish what
                // is in flight, while the lease keeps being renewed below.
                stopping = true;
                health.set(Role::ShuttingDown);
                tracing::info!("shutting down: draining in-flight reconciles");
            }
            _ = &mut controllers => break,
            lost = hold(elector.as_mut()) => {
                health.set(Role::Lost);
                tracing::error!(error = %lost, "leadership lost; stopping the controllers now");
                return Err(RunError::LeadershipLost(lost));
            }
        }
    }
    health.set(Role::ShuttingDown);
    if let Some(elector) = elector.as_mut()
        && let Err(error) = elector.release().await
    {
        tracing::warn!(%error, "could not release the lease; a standby takes over once it expires");
    }
    Ok(())
}

/// Runs the Rollout and AnalysisRun controllers side by side until `shutdown` resolves and
/// both have drained: what [`run`] does while leading, and what tests run in-process.
pub async fn run_controllers(
    client: Client,
    rollouts: ControllerConfig,
    analysis_runs: AnalysisRunConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let shutdown = shutdown.boxed().shared();
    futures::future::join(
        rollout::run(client.clone(), rollouts, shutdown.clone()),
        analysis_run::run(client, analysis_runs, shutdown),
    )
    .await;
}

/// Renews the lease while leading; never resolves without leader election.
async fn hold(elector: Option<&mut LeaderElector>) -> LeaderError {
    match elector {
        Some(elector) => elector.hold().await,
        None => std::future::pending().await,
    }
}

/// Resolves once `stopped` turns true (or its sender is gone, which means the same).
async fn stop_signal(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}
