//! `ramp sim`: runs the emulated cluster (ramp-sim's API server plus its workload and traffic
//! simulators) in the foreground, writes a kubeconfig for kubectl and `ramp controller`, and
//! stops on Ctrl-C or SIGTERM. All behaviour lives in `ramp_sim`; this module only wires flags.

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
}

pub fn run(args: &SimArgs) -> anyhow::Result<ExitCode> {
    if !(args.rps.is_finite() && args.rps >= 0.0) {
        anyhow::bail!("--rps must be a non-negative number, got {}", args.rps);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(args))
}

async fn serve(args: &SimArgs) -> anyhow::Result<ExitCode> {
    let mut config = ramp_sim::SimConfig {
        listen: args.listen,
        kubeconfig_path: Some(args.kubeconfig.clone()),
        metrics_listen: args.metrics_listen,
        // A long-running sim must not grow without bound; tests read the log, people don't.
        request_log_limit: Some(10_000),
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
