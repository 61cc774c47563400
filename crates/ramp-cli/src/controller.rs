//! `ramp controller`: runs Ramp's Rollout controller against a cluster found the usual way
//! (`--kubeconfig`/`--context`, else `KUBECONFIG` or `~/.kube/config`, else in-cluster) until
//! Ctrl-C or SIGTERM. All behaviour lives in `ramp_controller`; this module wires flags.

use anyhow::Context;
use kube::config::{KubeConfigOptions, Kubeconfig};
use ramp_controller::context::ControllerConfig;
use ramp_controller::traffic::IstioApiVersion;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct ControllerArgs {
    /// Kubeconfig file to use (default: `KUBECONFIG`, then `~/.kube/config`, then in-cluster).
    #[arg(long, env = "RAMP_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use (default: the current context).
    #[arg(long)]
    pub context: Option<String>,
    /// Rollouts reconciled at the same time.
    #[arg(long, default_value_t = 8)]
    pub concurrency: u16,
    /// Istio API version of VirtualServices and DestinationRules (v1alpha3, v1beta1, v1).
    #[arg(long, default_value = "v1alpha3")]
    pub istio_version: IstioApiVersion,
    /// Pod name reported in events (set from the downward API in a cluster).
    #[arg(long, env = "POD_NAME")]
    pub instance: Option<String>,
}

pub fn run(args: &ControllerArgs) -> anyhow::Result<ExitCode> {
    install_crypto_provider();
    init_tracing();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let client = client(args.kubeconfig.as_ref(), args.context.as_deref()).await?;
        let config = ControllerConfig {
            concurrency: args.concurrency.max(1),
            istio_version: args.istio_version,
            instance: args.instance.clone(),
            ..ControllerConfig::default()
        };
        ensure_rollouts_served(&client).await?;
        tracing::info!("ramp controller starting");
        ramp_controller::rollout::run(client, config, shutdown_signal()).await;
        tracing::info!("ramp controller stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// rustls needs exactly one process-wide crypto provider; choose aws-lc-rs before any client
/// exists so no dependency's feature set can make the choice ambiguous (a runtime panic).
pub fn install_crypto_provider() {
    // An error means a provider is already installed, which is all we need.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Fails only when a subscriber is already set (tests, embedding): keep that one.
    let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
}

/// A client for the cluster the flags, the environment or the pod point at.
pub async fn client(
    kubeconfig: Option<&PathBuf>,
    context: Option<&str>,
) -> anyhow::Result<kube::Client> {
    let options = KubeConfigOptions {
        context: context.map(str::to_owned),
        ..KubeConfigOptions::default()
    };
    let config = match (kubeconfig, context) {
        (Some(path), _) => {
            let file = Kubeconfig::read_from(path)
                .with_context(|| format!("cannot read kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &options)
                .await
                .with_context(|| format!("cannot use kubeconfig {}", path.display()))?
        }
        (None, Some(context)) => kube::Config::from_kubeconfig(&options)
            .await
            .with_context(|| format!("cannot use kubeconfig context {context}"))?,
        (None, None) => kube::Config::infer()
            .await
            .context("no kubeconfig (KUBECONFIG, ~/.kube/config) and not running in a cluster")?,
    };
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
}
