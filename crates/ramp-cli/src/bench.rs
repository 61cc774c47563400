//! `ramp bench`: measurements that take minutes and report figures, kept out of the test
//! suite (which runs fixed samples of them). `chaos` runs randomized fault scenarios and
//! counts invariant violations.

use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub bench: Bench,
}

#[derive(clap::Subcommand, Debug)]
pub enum Bench {
    /// Randomized rollouts under API errors, outages, watch cuts, hand edits, kills and leader
    /// changes, each checked for the safety invariants; exits 1 on any violation.
    Chaos(crate::chaos::ChaosArgs),
}

pub fn run(args: &BenchArgs) -> anyhow::Result<ExitCode> {
    match &args.bench {
        Bench::Chaos(args) => crate::chaos::run(args),
    }
}
