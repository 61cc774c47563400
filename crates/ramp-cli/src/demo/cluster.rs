//! Where the tour runs: a ramp-sim of its own (the default), or one namespace of an existing
//! cluster (`--kubeconfig`, `--context`). On an existing cluster it installs only the CRDs that
//! are missing, never replacing one, runs the traffic simulator as a client of that namespace
//! alone, refuses a namespace that already holds the tour's objects, and removes them at the
//! end. The scenarios work through [`DemoCluster::client`], whose default namespace is the
//! tour's; they never learn which kind of cluster it is.

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, PostParams};
use kube::{Client, Resource};
use ramp_sim::SimHandle;
use ramp_sim::traffic::{TrafficConfig, TrafficHandle};
use serde_json::json;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Which cluster the operator pointed the tour at; none of these flags: its own ramp-sim.
#[derive(clap::Args, Debug, Default)]
pub struct ClusterArgs {
    /// Run the tour on an existing test cluster instead of an in-process ramp-sim: it installs
    /// the CRDs it lacks, runs the controllers and the traffic simulator in-process for one
    /// namespace, and deletes its objects at the end. Its pods are steered by `sim.ramp.dev/*`
    /// annotations, so the nodes must be kwok's with Ramp's stages (`tools/cluster/`).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context of the existing cluster (default: the current one); alone, it reads
    /// `KUBECONFIG` or `~/.kube/config`.
    #[arg(long)]
    pub context: Option<String>,
    /// Namespace on the existing cluster (default: the context's, else `default`); created, and
    /// deleted at the end, when absent.
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
}

impl ClusterArgs {
    fn existing(&self) -> bool {
        self.kubeconfig.is_some() || self.context.is_some()
    }
}

/// An object a scenario creates: the tour refuses to start where one exists, and deletes it
/// at the end on an existing cluster.
pub(super) struct DemoObject {
    pub resource: ApiResource,
    pub name: &'static str,
}

impl DemoObject {
    pub fn of<K: Resource<DynamicType = ()>>(name: &'static str) -> Self {
        Self {
            resource: ApiResource::erase::<K>(&()),
            name,
        }
    }
}

/// The cluster the tour runs on.
pub(super) struct DemoCluster {
    client: Client,
    place: Place,
}

// One a run: the size of the value does not matter.
#[allow(clippy::large_enum_variant)]
enum Place {
    Sim(SimHandle),
    Existing {
        server: String,
        /// The namespace did not exist: the tour made it and deletes it whole.
        created_namespace: bool,
        traffic: Option<TrafficHandle>,
    },
}

impl DemoCluster {
    /// Starts ramp-sim (with its traffic simulator when `traffic`), or connects to the cluster
    /// `args` name and prepares the namespace: refused when any of `objects` is there already.
    pub async fn start(
        args: &ClusterArgs,
        traffic: bool,
        objects: &[DemoObject],
    ) -> anyhow::Result<Self> {
        if !args.existing() {
            if args.namespace.is_some() {
                bail!(
                    "--namespace needs --kubeconfig or --context: the tour's own ramp-sim \
                     uses default"
                );
            }
            let sim = ramp_sim::Sim::start(ramp_sim::SimConfig {
                traffic_enabled: traffic,
                request_log_limit: Some(1_000),
                ..ramp_sim::SimConfig::default()
            })
            .await
            .context("cannot start ramp-sim")?;
            return Ok(Self {
                client: sim.client(),
                place: Place::Sim(sim),
            });
        }
        let mut config =
            crate::controller::kube_config(args.kubeconfig.as_ref(), args.context.as_deref())
                .await?;
        if let Some(namespace) = &args.namespace {
            config.default_namespace.clone_from(namespace);
        }
        let server = config.cluster_url.to_string();
        let client = Client::try_from(config).context("cannot build a Kubernetes client")?;
        let namespace = client.default_namespace().to_owned();
        refuse_taken(&client, &namespace, objects).await?;
        let created_namespace = ensure_namespace(&client, &namespace).await?;
        let traffic = if traffic {
            let handle = ramp_sim::traffic::start(
                client.clone(),
                TrafficConfig {
                    namespace: Some(namespace.clone()),
                    ..TrafficConfig::default()
                },
                SocketAddr::from(([127, 0, 0, 1], 0)),
            )
            .await
            .context("cannot start the traffic simulator")?;
            Some(handle)
        } else {
            None
        };
        Ok(Self {
            client,
            place: Place::Existing {
                server,
                created_namespace,
                traffic,
            },
        })
    }

    /// A client whose default namespace is the tour's.
    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn namespace(&self) -> &str {
        self.client.default_namespace()
    }

    /// One line on where the tour runs.
    pub fn describe(&self) -> String {
        match &self.place {
            Place::Sim(sim) => format!("ramp-sim API server on {}", sim.api_url()),
            Place::Existing {
                server,
                created_namespace,
                ..
            } => format!(
                "cluster {server}, namespace {}{}",
                self.namespace(),
                if *created_namespace {
                    " (created for the demo)"
                } else {
                    ""
                }
            ),
        }
    }

    /// Where the traffic simulator serves its Prometheus metrics, when it runs.
    pub fn metrics_url(&self) -> Option<String> {
        match &self.place {
            Place::Sim(sim) => sim.metrics_url(),
            Place::Existing { traffic, .. } => traffic.as_ref().map(TrafficHandle::metrics_url),
        }
    }

    /// Creates each of `crds` that the cluster does not have (an installed one, say the real
    /// multi-version Istio CRDs, is kept as it is) and waits until all are established. Says
    /// which it created, for the narration.
    pub async fn install_crds(
        &self,
        crds: Vec<CustomResourceDefinition>,
    ) -> anyhow::Result<String> {
        let api = Api::<CustomResourceDefinition>::all(self.client.clone());
        let (mut created, mut kept) = (Vec::new(), 0);
        for crd in crds {
            let name = crd.metadata.name.clone().unwrap_or_default();
            let present = api
                .get_opt(&name)
                .await
                .with_context(|| format!("cannot read CRD {name}"))?
                .is_some();
            if present {
                kept += 1;
                continue;
            }
            match api.create(&PostParams::default(), &crd).await {
                Ok(_) => created.push(name.clone()),
                // Installed meanwhile by someone else: theirs stays.
                Err(kube::Error::Api(status)) if status.code == 409 => kept += 1,
                Err(e) => return Err(e).with_context(|| format!("cannot install CRD {name}")),
            }
            wait_for(&format!("CRD {name} established"), CRD_WAIT, || {
                let api = api.clone();
                let name = name.clone();
                async move {
                    let crd = api.get_opt(&name).await?;
                    Ok(crd.and_then(|crd| crd.status?.conditions).is_some_and(|c| {
                        c.iter()
                            .any(|c| c.type_ == "Established" && c.status == "True")
                    }))
                }
            })
            .await?;
        }
        Ok(match (created.len(), kept) {
            (_, 0) => "the CRDs".to_owned(),
            (0, _) => "no CRD (all were installed already)".to_owned(),
            _ => format!(
                "CRDs {} (the others were installed already)",
                created.join(", ")
            ),
        })
    }

    /// On an existing cluster, deletes `objects` (the Rollout's ReplicaSets, pods and
    /// AnalysisRuns go with it, collected by the cluster as its dependents), or the whole
    /// namespace when the tour created it, and says what it removed. CRDs stay: other objects
    /// may use them by now. Nothing to do on the tour's own ramp-sim, which goes with the
    /// process.
    pub async fn clean_up(&self, objects: &[DemoObject]) -> anyhow::Result<Option<String>> {
        let Place::Existing {
            created_namespace, ..
        } = &self.place
        else {
            return Ok(None);
        };
        let namespace = self.namespace();
        if *created_namespace {
            Api::<Namespace>::all(self.client.clone())
                .delete(namespace, &DeleteParams::background())
                .await
                .with_context(|| format!("cannot delete namespace {namespace}"))?;
            return Ok(Some(format!(
                "cleaned up: deleted namespace {namespace} (created for the demo); the CRDs stay"
            )));
        }
        let mut deleted = Vec::new();
        for object in objects {
            let api = Api::<DynamicObject>::namespaced_with(
                self.client.clone(),
                namespace,
                &object.resource,
            );
            match api.delete(object.name, &DeleteParams::background()).await {
                Ok(_) => deleted.push(format!("{} {}", object.resource.kind, object.name)),
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!(
                            "cannot delete {} {namespace}/{}",
                            object.resource.kind, object.name
                        )
                    });
                }
            }
        }
        Ok(Some(format!(
            "cleaned up: deleted {} from namespace {namespace} (with the Rollout's ReplicaSets, \
             pods and AnalysisRuns); the CRDs stay",
            deleted.join(", ")
        )))
    }
}

const CRD_WAIT: Duration = Duration::from_secs(30);

/// Refuses a namespace that holds any of the tour's objects: the tour would take them over
/// and delete them at the end.
async fn refuse_taken(
    client: &Client,
    namespace: &str,
    objects: &[DemoObject],
) -> anyhow::Result<()> {
    for object in objects {
        let api =
            Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &object.resource);
        // A kind the cluster does not serve yet answers 404 too: nothing of it is there.
        let found = api.get_opt(object.name).await.with_context(|| {
            format!(
                "cannot read {} {namespace}/{}",
                object.resource.kind, object.name
            )
        })?;
        if found.is_some() {
            bail!(
                "namespace {namespace} already holds {} {}, one of the demo's objects: delete \
                 it, or choose another namespace with --namespace",
                object.resource.kind,
                object.name
            );
        }
    }
    Ok(())
}

/// Creates the namespace when it is absent (true). Pods may be refused for a moment, until
/// the cluster has made the namespace's default ServiceAccount; the ReplicaSet controller
/// retries them, so nothing waits for it here (ramp-sim makes no ServiceAccounts at all).
async fn ensure_namespace(client: &Client, namespace: &str) -> anyhow::Result<bool> {
    let namespaces = Api::<Namespace>::all(client.clone());
    let existing = namespaces
        .get_opt(namespace)
        .await
        .with_context(|| format!("cannot read namespace {namespace}"))?;
    if let Some(existing) = existing {
        if existing.metadata.deletion_timestamp.is_some() {
            bail!("namespace {namespace} is being deleted: wait, or choose another --namespace");
        }
        return Ok(false);
    }
    let object: Namespace = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": namespace, "labels": {"app.kubernetes.io/created-by": "ramp-demo"}}
    }))?;
    namespaces
        .create(&PostParams::default(), &object)
        .await
        .with_context(|| format!("cannot create namespace {namespace}"))?;
    Ok(true)
}

/// Polls `check` every 100 ms until it holds, or fails naming `what` after `within`.
async fn wait_for<F, Fut>(what: &str, within: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool, kube::Error>>,
{
    let deadline = Instant::now() + within;
    loop {
        if check()
            .await
            .with_context(|| format!("{what}: cannot tell"))?
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{what}: did not happen within {} s", within.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
