//! ramp-sim: an emulated Kubernetes cluster. A generic API server over HTTP (`api`), the
//! apimachinery semantics it applies (`apimachinery`: selectors, patches, schemas), and the
//! simulators standing in for the kubelet, the ReplicaSet controller and the mesh
//! (`workloads`, `traffic`).
#![forbid(unsafe_code)]

pub mod api;
pub mod apimachinery;
pub mod audit;
pub mod compat;
pub mod invariants;
pub mod prometheus;
pub mod testing;
pub mod tier;
pub mod traffic;
pub mod workloads;

pub use api::{
    DeniedRequest, ErrorFault, FaultError, FaultTarget, Faults, InjectedCounts, LatencyFault,
    LoggedRequest, RequestLog, Sim, SimConfig, SimError, SimHandle, Verb,
};
