//! Ramp's decisions: pure functions from an observed snapshot of one rollout (and `now`) to a
//! plan the controller applies. No tokio, no kube client, no clock reads: time comes in as data.
#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod analysis;
pub mod bluegreen;
pub mod canary;
pub mod conditions;
mod ephemeral;
pub mod hash;
mod pass;
pub mod plan;
pub mod preflight;
pub mod replicas;
pub mod snapshot;
pub mod traffic;
pub mod world;

pub use canary::plan_rollout;
pub use plan::{Action, EventType, RolloutEvent, RolloutPlan};
pub use snapshot::{
    AnalysisRunKind, AnalysisRunSummary, AnalysisTemplates, PodView, ReplicaSetView,
    RouterObjectView, ServiceView, Snapshot,
};
pub use traffic::TrafficIntent;

#[cfg(test)]
mod progressions;
#[cfg(test)]
mod properties;
#[cfg(test)]
mod scenarios;
#[cfg(test)]
mod sim;
#[cfg(test)]
mod traffic_scenarios;
