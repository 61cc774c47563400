//! `ramp sim` (in progress).

use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct SimArgs {}

pub fn run(_args: &SimArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("ramp sim is not built yet")
}
