//! `ramp lint` (in progress).

use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct LintArgs {}

pub fn run(_args: &LintArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("ramp lint is not built yet")
}
