//! Turns the kubeconfig flags into a kube client and the namespace to work in, the way kubectl
//! does: `--kubeconfig`, else `$KUBECONFIG`, else `~/.kube/config`; `--context` picks the
//! context; `-n` wins over the context's namespace.

use super::cli::ConnectionArgs;
use super::errors::PluginError;
use kube::config::{KubeConfigOptions, Kubeconfig};

/// A client and the namespace commands act in.
#[derive(Clone)]
pub struct Connection {
    pub client: kube::Client,
    pub namespace: String,
    /// The API server's URL, for error messages.
    pub server: String,
}

pub async fn connect(args: &ConnectionArgs) -> Result<Connection, PluginError> {
    let options = KubeConfigOptions {
        context: args.context.clone(),
        cluster: None,
        user: None,
    };
    let config = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .map_err(|e| PluginError::Kubeconfig(format!("{}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &options).await
        }
        None => kube::Config::from_kubeconfig(&options).await,
    }
    .map_err(|e| PluginError::Kubeconfig(e.to_string()))?;
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let server = config.cluster_url.to_string();
    let client = kube::Client::try_from(config)
        .map_err(|e| PluginError::Kubeconfig(format!("cannot build a client: {e}")))?;
    Ok(Connection {
        client,
        namespace,
        server,
    })
}
