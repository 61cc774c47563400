//! The command-line front ends of Ramp: each subcommand of `ramp` lives in its own module with
//! its clap arguments and a `run` function; `src/bin/` only parses and dispatches.
#![forbid(unsafe_code)]

pub mod analyze;
pub mod bench;
pub mod chaos;
pub mod controller;
pub mod crds;
pub mod demo;
pub mod lint;
pub mod plugin;
pub mod sim;
