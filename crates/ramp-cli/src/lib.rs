//! The command-line front ends of Ramp: each subcommand of `ramp` lives in its own module with
//! its clap arguments and a `run` function; `src/bin/` only parses and dispatches.
#![forbid(unsafe_code)]

pub mod crds;
pub mod lint;
pub mod sim;
