//! `ramp sim`: runs the emulated cluster (ramp-sim's API server plus its workload and traffic
//! simulators) in the foreground, writes a kubeconfig for kubectl and `ramp controller`, and
//! stops on Ctrl-C or SIGTERM, with the API server's faults (errors, latency, cut watches) given
//! as flags. All behaviour lives in `ramp_sim`; this module only wires flags.

use anyhow::Context;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct SimArgs {
    /// Address the Kubernetes API server listens on.
    #[arg(long, default_value = "127.0.0.1:6443")]
    pub listen: SocketAddr,
    /// Where to write the kubeconfig pointing at the sim.
    #[arg(long, default_value = "ramp-sim.kubeconfig")]
    pub kubeconfig: PathBuf,
    /// Address the traffic simulator serves Prometheus metrics on.
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub metrics_listen: SocketAddr,
    /// Synthetic requests per second entering each routed service.
    #[arg(long, default_value_t = 100.0)]
    pub rps: f64,
    /// Serve only the API: no simulated kubelet, controllers or traffic.
    #[arg(long)]
    pub api_only: bool,
    /// Inject a fault into the API server: `error=500|500-applied|429|409[,rate=R][,retry-after=S]` or
    /// `latency=DURATION`, each optionally narrowed by `,verb=V` and `,resource=R` (plural or
    /// plural.group). Repeat for several; see crates/ramp-sim/README.md.
    #[arg(long = "fault", value_name = "RULE")]
    pub faults: Vec<String>,
    /// Close every watch stream this long after it opened (e.g. `30s`), as a restarting API
    /// server or a load balancer does.
    #[arg(long, value_name = "DURATION")]
    pub watch_cut_after: Option<String>,
}

/// The faults the flags ask for; an unreadable rule is an error naming it.
fn faults(args: &SimArgs) -> anyhow::Result<ramp_sim::Faults> {
    let mut faults = ramp_sim::Faults::default();
    for rule in &args.faults {
        faults
            .add_rule(rule)
            .map_err(|why| anyhow::anyhow!("--fault {rule:?}: {why}"))?;
    }
    if let Some(after) = &args.watch_cut_after {
        let after = ramp_api::duration::parse(after)
            .map_err(|why| anyhow::anyhow!("--watch-cut-after {after:?}: {why}"))?;
        faults.watch_cut_after = Some(after);
    }
    Ok(faults)
}

pub fn run(args: &SimArgs) -> anyhow::Result<ExitCode> {
    if !(args.rps.is_finite() && args.rps >= 0.0) {
        anyhow::bail!("--rps must be a non-negative number, got {}", args.rps);
    }
    // Read before anything starts, so a mistyped rule never runs a sim without its fault.
    let faults = faults(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(args, faults))
}

async fn serve(args: &SimArgs, faults: ramp_sim::Faults) -> anyhow::Result<ExitCode> {
    let mut config = ramp_sim::SimConfig {
        listen: args.listen,
        kubeconfig_path: Some(args.kubeconfig.clone()),
        metrics_listen: args.metrics_listen,
        // A long-running sim must not grow without bound; tests read the log, people don't.
        request_log_limit: Some(10_000),
        faults,
        ..ramp_sim::SimConfig::default()
    };
    config.traffic.rps = args.rps;
    if args.api_only {
        config.workloads_enabled = false;
        config.traffic_enabled = false;
    }
    let sim = ramp_sim::Sim::start(config)
        .await
        .context("cannot start ramp-sim")?;
    println!("ramp-sim API server listening on {}", sim.api_url());
    println!("kubeconfig written to {}", sim.kubeconfig_path().display());
    if let Some(metrics) = sim.metrics_url() {
        println!("metrics served at {metrics}");
    }
    for rule in &args.faults {
        println!("injecting fault: {rule}");
    }
    if let Some(after) = &args.watch_cut_after {
        println!("closing every watch {after} after it opens");
    }
    println!(
        "try: kubectl --kubeconfig {} get ns",
        sim.kubeconfig_path().display()
    );
    wait_for_shutdown().await?;
    println!("ramp-sim stopped");
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_shutdown() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    tokio::select! {
        ctrl_c = tokio::signal::ctrl_c() => ctrl_c.context("cannot listen for Ctrl-C")?,
        _ = terminate.recv() => {}
    }
    Ok(())
}
