//! Ramp's imperative shell: the controllers that gather snapshots, the executor that applies
//! `ramp-core`'s plans, and the traffic routers that make a `TrafficIntent` true.
#![forbid(unsafe_code)]

pub mod analysis_run;
pub mod context;
pub mod error;
pub mod executor;
pub mod memory;
pub mod metrics;
pub mod ops;
pub mod rollout;
pub mod runtime;
pub mod traffic;
