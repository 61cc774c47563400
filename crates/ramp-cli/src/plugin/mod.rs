//! `kubectl ramp`: the release operator's console. Reads and changes Rollouts through the
//! Kubernetes API with the same patches as the upstream `kubectl argo rollouts` plugin, so the
//! two are interchangeable. This module holds the command line; `commands` talks to the API
//! server, `patches` builds the exact patch bodies and `render` turns objects into text.

pub mod cli;
pub mod commands;
pub mod connection;
pub mod errors;
pub mod health;
pub mod patches;
pub mod render;
pub mod style;

pub use cli::{Command, PluginCli};
pub use errors::PluginError;

use std::process::ExitCode;

/// Runs one parsed `kubectl ramp` invocation and returns the process exit code. Errors are
/// printed as one line on stderr.
pub fn main(cli: PluginCli) -> ExitCode {
    if let Command::Version(args) = &cli.command {
        commands::version(args);
        return ExitCode::SUCCESS;
    }
    if let Command::Analyze(args) = &cli.command {
        return crate::analyze::run(args);
    }
    if let Command::Lint(args) = &cli.command {
        return match crate::lint::run(args) {
            Ok(code) => code,
            Err(err) => {
                eprintln!("error: {err:#}");
                ExitCode::from(1)
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(1)
        }
    }
}
