//! `ramp controller`: runs Ramp's Rollout and AnalysisRun controllers against a cluster found
//! the usual way (`--kubeconfig`/`--context`, else `KUBECONFIG` or `~/.kube/config`, else
//! in-cluster) with upstream's operational flags, until SIGTERM or Ctrl-C. All behaviour lives
//! in `ramp_controller` (`ops` for leader election, metrics and probes); this module wires flags.

use anyhow::Context;
use clap::ArgAction;
use kube::config::{KubeConfigOptions, Kubeconfig};
use ramp_controller::analysis_run::AnalysisRunConfig;
use ramp_controller::context::ControllerConfig;
use ramp_controller::ops::client::{ClientOptions, build_client};
use ramp_controller::ops::health::Health;
use ramp_controller::ops::leader::LeaseConfig;
use ramp_controller::ops::metrics::Metrics;
use ramp_controller::ops::{self, RunError, RunOptions, WatchScope};
use ramp_controller::traffic::IstioApiVersion;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct ControllerArgs {
    /// Kubeconfig file to use (default: `KUBECONFIG`, then `~/.kube/config`, then in-cluster).
    #[arg(long, env = "RAMP_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use (default: the current context).
    #[arg(long)]
    pub context: Option<String>,
    /// Namespace of the client configuration (what `--namespaced` watches); default: the
    /// kubeconfig context's, in a cluster the pod's.
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// Watch only the client configuration's namespace, so a Role suffices.
    #[arg(long)]
    pub namespaced: bool,
    /// Reconcile only objects labelled
    /// `argo-rollouts.argoproj.io/controller-instance-id=<id>`; without it, only unlabelled
    /// objects.
    #[arg(long, default_value = "")]
    pub instance_id: String,
    /// Run the controllers only while holding the leader lease.
    #[arg(long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub leader_elect: bool,
    /// How long a leader's lease stays valid after its last renewal.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub leader_election_lease_duration: Duration,
    /// How long the leader keeps trying to renew before it stops acting.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub leader_election_renew_deadline: Duration,
    /// Time between attempts to acquire or renew the lease.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub leader_election_retry_period: Duration,
    /// Address of the Prometheus `/metrics` endpoint (`:8090` listens on every interface).
    #[arg(long, default_value = ":8090")]
    pub metrics_addr: String,
    /// Port of `/metrics` (upstream's flag; overrides the port of `--metrics-addr`).
    #[arg(long = "metricsPort", alias = "metricsport")]
    pub metrics_port: Option<u16>,
    /// Address of `/healthz` and `/readyz`.
    #[arg(long, default_value = ":8080")]
    pub health_addr: String,
    /// Port of `/healthz` and `/readyz` (upstream's flag; overrides `--health-addr`'s port).
    #[arg(long = "healthzPort", alias = "healthz-port")]
    pub healthz_port: Option<u16>,
    /// Sustained Kubernetes API requests per second (0 disables the limit).
    #[arg(long, default_value_t = 40.0)]
    pub qps: f32,
    /// Kubernetes API requests allowed in a burst above `--qps`.
    #[arg(long, default_value_t = 80)]
    pub burst: u32,
    /// Log format.
    #[arg(long, alias = "logformat", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log level (error, warn, info, debug, trace) or a `RUST_LOG`-style filter.
    #[arg(long, alias = "loglevel", default_value = "info")]
    pub log_level: String,
    /// Prometheus address for analysis metrics that name none.
    #[arg(long, env = "ARGO_ROLLOUTS_PROMETHEUS_ADDRESS")]
    pub prometheus_address: Option<String>,
    /// Rollouts reconciled at the same time.
    #[arg(long, alias = "rollout-threads", default_value_t = 10)]
    pub concurrency: u16,
    /// AnalysisRuns reconciled at the same time.
    #[arg(long, default_value_t = 30)]
    pub analysis_threads: u16,
    /// Istio API version of VirtualServices and DestinationRules (v1alpha3, v1beta1, v1).
    #[arg(long, default_value = "v1alpha3")]
    pub istio_version: IstioApiVersion,
    /// Pod name: reported in events and the start of the lease holder identity (set from the
    /// downward API in a cluster; default: the host name).
    #[arg(long, env = "POD_NAME")]
    pub instance: Option<String>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

pub fn run(args: &ControllerArgs) -> anyhow::Result<ExitCode> {
    install_crypto_provider();
    init_logging(args.log_format, &args.log_level);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run_controllers(args))
}

async fn run_controllers(args: &ControllerArgs) -> anyhow::Result<ExitCode> {
    let metrics = Arc::new(Metrics::new(env!("CARGO_PKG_VERSION")));
    let health = Arc::new(Health::new(metrics.clone()));
    let mut config = kube_config(args.kubeconfig.as_ref(), args.context.as_deref()).await?;
    if let Some(namespace) = &args.namespace {
        config.default_namespace.clone_from(namespace);
    }
    let namespace = args.namespaced.then(|| config.default_namespace.clone());
    let client = build_client(
        config,
        &ClientOptions {
            qps: args.qps,
            burst: args.burst,
            metrics: Some(metrics.clone()),
        },
    )
    .context("cannot build a Kubernetes client")?;
    ensure_rollouts_served(&client).await?;
    serve_endpoints(args, metrics.clone(), health.clone()).await?;

    let instance_id = Some(args.instance_id.clone()).filter(|id| !id.is_empty());
    let pod_name = args.instance.clone().unwrap_or_else(host_name);
    let rollouts = ControllerConfig {
        concurrency: args.concurrency.max(1),
        istio_version: args.istio_version,
        instance: Some(pod_name.clone()),
        scope: WatchScope {
            namespace: namespace.clone(),
            instance_id: instance_id.clone(),
        },
        ..ControllerConfig::default()
    };
    let analysis_runs = AnalysisRunConfig {
        namespace: namespace.clone(),
        concurrency: args.analysis_threads.max(1),
        prometheus_address: args.prometheus_address.clone(),
        instance: Some(pod_name.clone()),
        instance_id: instance_id.clone(),
        ..AnalysisRunConfig::default()
    };
    let leader_election = args.leader_elect.then(|| LeaseConfig {
        namespace: LeaseConfig::controller_namespace(),
        name: LeaseConfig::lease_name(instance_id.as_deref()),
        identity: LeaseConfig::unique_identity(&pod_name),
        lease_duration: args.leader_election_lease_duration,
        renew_deadline: args.leader_election_renew_deadline,
        retry_period: args.leader_election_retry_period,
    });
    if let Some(lease) = &leader_election {
        lease.validate()?;
        tracing::info!(lease = %format!("{}/{}", lease.namespace, lease.name), identity = %lease.identity, "leader election on");
    }
    tracing::info!(
        namespace = namespace.as_deref().unwrap_or("(all)"),
        instance_id = instance_id.as_deref().unwrap_or(""),
        "ramp controller starting"
    );
    let options = RunOptions {
        rollouts,
        analysis_runs,
        leader_election,
        metrics,
        health,
    };
    match ops::run(client, options, shutdown_signal()).await {
        Ok(()) => {
            tracing::info!("ramp controller stopped");
            Ok(ExitCode::SUCCESS)
        }
        Err(RunError::LeadershipLost(error)) => {
            // Upstream exits on a lost lease too: a fresh process re-enters the election with
            // empty caches, which is simpler to reason about than resuming.
            tracing::error!(%error, "exiting");
            Ok(ExitCode::from(1))
        }
        Err(error @ RunError::LeaderElection(_)) => Err(error.into()),
    }
}

/// Binds `/metrics` and the probes (one listener when both addresses are the same) and serves
/// them in the background for the life of the process.
async fn serve_endpoints(
    args: &ControllerArgs,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
) -> anyhow::Result<()> {
    let metrics_addr = listen_addr(&args.metrics_addr, args.metrics_port)
        .with_context(|| format!("--metrics-addr {:?}", args.metrics_addr))?;
    let health_addr = listen_addr(&args.health_addr, args.healthz_port)
        .with_context(|| format!("--health-addr {:?}", args.health_addr))?;
    let metrics_routes = ops::http::metrics_routes(metrics);
    let health_routes = ops::http::health_routes(health);
    let servers = if metrics_addr == health_addr {
        vec![(metrics_addr, metrics_routes.merge(health_routes))]
    } else {
        vec![(metrics_addr, metrics_routes), (health_addr, health_routes)]
    };
    for (addr, routes) in servers {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let bound = listener.local_addr().unwrap_or(addr);
        tracing::info!(%bound, "serving HTTP endpoints");
        tokio::spawn(async move {
            if let Err(error) = ops::http::serve(listener, routes).await {
                tracing::error!(%error, %bound, "HTTP endpoint stopped");
            }
        });
    }
    Ok(())
}

/// `host:port`, `:port` (every interface) or a bare port; `port` replaces the port.
fn listen_addr(addr: &str, port: Option<u16>) -> anyhow::Result<SocketAddr> {
    let addr = addr.trim();
    let full = if let Some(port) = addr.strip_prefix(':') {
        format!("0.0.0.0:{port}")
    } else if addr.parse::<u16>().is_ok() {
        format!("0.0.0.0:{addr}")
    } else {
        addr.to_owned()
    };
    let mut parsed: SocketAddr = full
        .parse()
        .with_context(|| format!("{addr:?} is not host:port or :port"))?;
    if let Some(port) = port {
        parsed.set_port(port);
    }
    Ok(parsed)
}

fn parse_duration(value: &str) -> Result<Duration, String> {
    ramp_api::duration::parse(value).map_err(|e| e.to_string())
}

fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "ramp-controller".to_owned())
}

/// rustls needs exactly one process-wide crypto provider; choose aws-lc-rs before any client
/// exists so no dependency's feature set can make the choice ambiguous (a runtime panic).
pub fn install_crypto_provider() {
    // An error means a provider is already installed, which is all we need.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// `RUST_LOG` wins over `--log-level` so one noisy module can be tuned without a redeploy.
fn init_logging(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Fails only when a subscriber is already set (tests, embedding): keep that one.
    let _ = match format {
        LogFormat::Text => tracing_subscriber::fmt().with_env_filter(filter).try_init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .try_init(),
    };
}

/// The configuration for the cluster the flags, the environment or the pod point at.
pub(crate) async fn kube_config(
    kubeconfig: Option<&PathBuf>,
    context: Option<&str>,
) -> anyhow::Result<kube::Config> {
    let options = KubeConfigOptions {
        context: context.map(str::to_owned),
        ..KubeConfigOptions::default()
    };
    match (kubeconfig, context) {
        (Some(path), _) => {
            let file = Kubeconfig::read_from(path)
                .with_context(|| format!("cannot read kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &options)
                .await
                .with_context(|| format!("cannot use kubeconfig {}", path.display()))
        }
        (None, Some(context)) => kube::Config::from_kubeconfig(&options)
            .await
            .with_context(|| format!("cannot use kubeconfig context {context}")),
        (None, None) => kube::Config::infer()
            .await
            .context("no kubeconfig (KUBECONFIG, ~/.kube/config) and not running in a cluster"),
    }
}

/// A client for the cluster the flags, the environment or the pod point at.
pub async fn client(
    kubeconfig: Option<&PathBuf>,
    context: Option<&str>,
) -> anyhow::Result<kube::Client> {
    let config = kube_config(kubeconfig, context).await?;
    kube::Client::try_from(config).context("cannot build a Kubernetes client")
}

/// Refuses to start against a cluster without the Rollout CRD: the controller would only log
/// watch errors, and the fix (installing the CRDs) is better said once and clearly.
async fn ensure_rollouts_served(client: &kube::Client) -> anyhow::Result<()> {
    let served = client
        .list_api_group_resources("argoproj.io/v1alpha1")
        .await
        .map(|list| list.resources.iter().any(|r| r.name == "rollouts"))
        .unwrap_or(false);
    if !served {
        anyhow::bail!(
            "the cluster does not serve argoproj.io/v1alpha1 rollouts; install the CRDs first: \
             ramp crds | kubectl apply --server-side -f -"
        );
    }
    Ok(())
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the controller");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    tracing::info!("termination signal received");
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        controller: ControllerArgs,
    }

    fn parse(args: &[&str]) -> ControllerArgs {
        let argv = std::iter::once("ramp-controller").chain(args.iter().copied());
        Cli::try_parse_from(argv)
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
            .controller
    }

    #[test]
    fn defaults_are_upstreams() {
        let args = parse(&[]);
        assert!(args.leader_elect);
        assert_eq!(args.leader_election_lease_duration, Duration::from_secs(15));
        assert_eq!(args.leader_election_renew_deadline, Duration::from_secs(10));
        assert_eq!(args.leader_election_retry_period, Duration::from_secs(2));
        assert_eq!((args.qps, args.burst), (40.0, 80));
        assert_eq!(args.metrics_addr, ":8090");
        assert_eq!(args.health_addr, ":8080");
        assert_eq!(args.log_format, LogFormat::Text);
        assert!(!args.namespaced);
        assert_eq!(args.instance_id, "");
    }

    #[test]
    fn upstream_spellings_parse() {
        let args = parse(&[
            "--leader-elect=false",
            "--metricsport",
            "9100",
            "--healthzPort",
            "9101",
            "--logformat",
            "json",
            "--loglevel",
            "debug",
            "--rollout-threads",
            "3",
            "--instance-id",
            "blue",
            "--namespaced",
            "--leader-election-lease-duration",
            "1m30s",
        ]);
        assert!(!args.leader_elect);
        assert_eq!(args.metrics_port, Some(9100));
        assert_eq!(args.healthz_port, Some(9101));
        assert_eq!(args.log_format, LogFormat::Json);
        assert_eq!(args.log_level, "debug");
        assert_eq!(args.concurrency, 3);
        assert_eq!(args.instance_id, "blue");
        assert!(args.namespaced);
        assert_eq!(args.leader_election_lease_duration, Duration::from_secs(90));
        assert!(parse(&["--leader-elect"]).leader_elect);
    }

    #[test]
    fn listen_addresses_accept_upstream_forms() {
        let parsed = |addr: &str, port| listen_addr(addr, port).map(|a| a.to_string()).ok();
        assert_eq!(parsed(":8090", None).as_deref(), Some("0.0.0.0:8090"));
        assert_eq!(parsed("8080", None).as_deref(), Some("0.0.0.0:8080"));
        assert_eq!(
            parsed("127.0.0.1:9000", Some(9100)).as_deref(),
            Some("127.0.0.1:9100")
        );
        assert_eq!(parsed("nonsense", None), None);
    }
}
