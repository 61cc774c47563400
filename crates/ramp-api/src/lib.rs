//! Ramp's API layer: the `argoproj.io/v1alpha1` kinds as Rust types, their defaults, their
//! semantic validation and CRD generation. Pure data and pure functions: no I/O, no clock.
#![forbid(unsafe_code)]

pub mod analysis;
pub mod common;
pub mod crd;
pub mod defaults;
pub mod duration;
pub mod experiment;
pub mod features;
pub mod manifest;
pub mod rollout;
pub mod schema;
pub mod validation;

/// The API group and version of every kind in this crate.
pub const GROUP: &str = "argoproj.io";
pub const VERSION: &str = "v1alpha1";
