//! `kubectl-ramp`: the kubectl plugin (`kubectl ramp ...`). Parses the command line and hands
//! over to `ramp_cli::plugin`.
#![forbid(unsafe_code)]

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match ramp_cli::plugin::PluginCli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // Usage errors exit 1 like every other failure (help and version exit 0).
            let code = if err.use_stderr() { 1 } else { 0 };
            let _ = err.print();
            return ExitCode::from(code);
        }
    };
    ramp_cli::plugin::main(cli)
}
