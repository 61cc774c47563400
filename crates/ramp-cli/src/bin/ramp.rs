//! `ramp`: the controller and its tools.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "ramp",
    version,
    about = "Progressive delivery for Kubernetes, compatible with Argo Rollouts"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the Rollout and AnalysisRun controllers against the current kube configuration.
    Controller(ramp_cli::controller::ControllerArgs),
    /// Roll out releases, with a live view, on an in-process emulated cluster or a test cluster.
    Demo(ramp_cli::demo::DemoArgs),
    /// Print the CustomResourceDefinitions of the argoproj.io/v1alpha1 kinds Ramp serves.
    Crds(ramp_cli::crds::CrdsArgs),
    /// Check Rollout, AnalysisTemplate and Experiment manifests for mistakes.
    Lint(ramp_cli::lint::LintArgs),
    /// Run an AnalysisTemplate's metrics against the live providers and print the verdict.
    Analyze(ramp_cli::analyze::AnalyzeArgs),
    /// Run the emulated Kubernetes cluster (ramp-sim) until interrupted.
    Sim(ramp_cli::sim::SimArgs),
    /// Measure Ramp: randomized fault runs checked for safety (`chaos`).
    Bench(ramp_cli::bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Controller(args) => ramp_cli::controller::run(&args),
        Command::Demo(args) => ramp_cli::demo::run(&args),
        Command::Crds(args) => ramp_cli::crds::run(&args),
        Command::Lint(args) => ramp_cli::lint::run(&args),
        Command::Analyze(args) => Ok(ramp_cli::analyze::run(&args)),
        Command::Sim(args) => ramp_cli::sim::run(&args),
        Command::Bench(args) => ramp_cli::bench::run(&args),
    };
    match outcome {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
