//! `kubectl-ramp`: the kubectl plugin (filled by the kubectl plugin issue).

use clap::Parser;

#[derive(Parser)]
#[command(name = "kubectl-ramp", version, about = "The release operator's console for Ramp rollouts")]
struct Cli {}

fn main() {
    let _ = Cli::parse();
}
