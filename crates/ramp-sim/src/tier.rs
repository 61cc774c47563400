//! The two tiers a test runs on, behind one type: ramp-sim (the default), or the real control
//! plane that `scripts/cluster up DIR` started, chosen by `RAMP_TEST_CLUSTER=DIR`. A test asks
//! [`TestCluster::start`] for a cluster, works in [`test_namespace`], and reads the writes made
//! there from [`TestCluster::request_log`]: the sim's request log, or the real server's audit
//! log. What only the sim can do (faults, restarts, its own RBAC tokens) is reached through
//! [`TestCluster::sim`], which a test on the real tier skips with a line saying why.

use crate::audit::AuditLog;
use crate::testing::StartError;
use crate::traffic::TrafficHandle;
use crate::{LoggedRequest, RequestLog, SimConfig, SimHandle};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

/// Names the folder of a running real control plane (`scripts/cluster up DIR`); unset, tests
/// run on ramp-sim.
pub const REAL_CLUSTER_ENV: &str = "RAMP_TEST_CLUSTER";

/// The real control plane's folder when tests are to run there.
pub fn real_cluster_dir() -> Option<PathBuf> {
    std::env::var_os(REAL_CLUSTER_ENV)
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
}

/// The namespace this test works in: `default` on ramp-sim, where every test has a cluster of
/// its own; on the real tier, a fresh namespace for this process. The real tier runs under
/// cargo-nextest, which gives each test a process of its own, so this is one namespace a test.
pub fn test_namespace() -> &'static str {
    static NAMESPACE: OnceLock<String> = OnceLock::new();
    NAMESPACE.get_or_init(|| {
        if real_cluster_dir().is_none() {
            return "default".to_string();
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        format!("t-{}-{:05x}", std::process::id(), nanos & 0xfffff)
    })
}

/// A cluster for one test, on whichever tier the environment chose.
// One a test: the size of the value does not matter.
#[allow(clippy::large_enum_variant)]
pub enum TestCluster {
    Sim(SimHandle),
    Real(RealCluster),
}

/// A namespace of the real control plane, and what a test needs of it.
pub struct RealCluster {
    dir: PathBuf,
    kubeconfig: PathBuf,
    config: kube::Config,
    client: kube::Client,
    namespace: String,
    audit: AuditLog,
    traffic: Option<TrafficHandle>,
}

/// The writes a test's namespace saw, from the sim's request log or the real audit log, with
/// the same reading methods.
#[derive(Clone, Copy)]
pub enum WriteLog<'a> {
    Sim(&'a RequestLog),
    Audit(&'a AuditLog),
}

impl WriteLog<'_> {
    pub fn entries(&self) -> Vec<LoggedRequest> {
        match self {
            WriteLog::Sim(log) => log.entries(),
            WriteLog::Audit(log) => log.entries(),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            WriteLog::Sim(log) => log.len(),
            WriteLog::Audit(log) => log.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn since(&self, n: usize) -> Vec<LoggedRequest> {
        match self {
            WriteLog::Sim(log) => log.since(n),
            WriteLog::Audit(log) => log.since(n),
        }
    }

    pub fn since_settled(&self, n: usize, within: Duration) -> Vec<LoggedRequest> {
        match self {
            WriteLog::Sim(log) => log.since_settled(n, within),
            WriteLog::Audit(log) => log.since_settled(n, within),
        }
    }

    pub fn filter(&self, keep: impl Fn(&LoggedRequest) -> bool) -> Vec<LoggedRequest> {
        match self {
            WriteLog::Sim(log) => log.filter(keep),
            WriteLog::Audit(log) => log.filter(keep),
        }
    }

    /// Successful writes to a resource: see [`LoggedRequest::is_write_to`].
    pub fn writes_to(&self, resource: &str) -> Vec<LoggedRequest> {
        self.filter(|e| e.is_write_to(resource))
    }

    /// Successful writes to one object (any subresource).
    pub fn writes_to_object(
        &self,
        resource: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Vec<LoggedRequest> {
        self.filter(|e| e.is_write_to_object(resource, namespace, name))
    }
}

impl TestCluster {
    /// On ramp-sim: a sim started with `config` and `crds`. On the real tier: a fresh
    /// [`test_namespace`] of the running control plane, each of `crds` created unless a CRD of
    /// that name is already installed (the real Istio and Gateway API CRDs `scripts/cluster
    /// up` installs win over stand-ins), and the traffic simulator when `config` asks for it.
    pub async fn start(
        config: SimConfig,
        crds: impl IntoIterator<Item = CustomResourceDefinition>,
    ) -> Result<Self, StartError> {
        match real_cluster_dir() {
            None => Self::start_sim(config, crds).await,
            Some(dir) => Self::start_real(dir, config, crds).await,
        }
    }

    /// The real control plane in `dir` (see [`TestCluster::start`]): the real side of a test
    /// that compares the two tiers.
    pub async fn start_real(
        dir: PathBuf,
        config: SimConfig,
        crds: impl IntoIterator<Item = CustomResourceDefinition>,
    ) -> Result<Self, StartError> {
        Ok(TestCluster::Real(
            RealCluster::start(dir, config, crds).await?,
        ))
    }

    /// ramp-sim whatever the environment says, with [`test_namespace`] created when it is not
    /// `default`: the sim side of a test that compares the two tiers.
    pub async fn start_sim(
        config: SimConfig,
        crds: impl IntoIterator<Item = CustomResourceDefinition>,
    ) -> Result<Self, StartError> {
        let sim = crate::testing::start_with_crds(config, crds).await?;
        let namespace = test_namespace();
        if namespace != "default" {
            let ns: Namespace = serde_json::from_value(serde_json::json!({
                "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}
            }))
            .map_err(|e| {
                real_error(format!("Namespace {namespace}"))(kube::Error::SerdeError(e))
            })?;
            Api::<Namespace>::all(sim.client())
                .create(&PostParams::default(), &ns)
                .await
                .map_err(real_error(format!("Namespace {namespace}")))?;
        }
        Ok(TestCluster::Sim(sim))
    }

    pub fn client(&self) -> kube::Client {
        match self {
            TestCluster::Sim(sim) => sim.client(),
            TestCluster::Real(real) => real.client.clone(),
        }
    }

    /// The configuration [`TestCluster::client`] was built from, for a client with layers of
    /// the caller's own.
    pub fn client_config(&self) -> kube::Config {
        match self {
            TestCluster::Sim(sim) => {
                let mut config = kube::Config::new(
                    sim.api_url()
                        .parse()
                        .unwrap_or_else(|e| panic!("the sim's URL: {e}")),
                );
                config.default_namespace = test_namespace().to_owned();
                config
            }
            TestCluster::Real(real) => real.config.clone(),
        }
    }

    pub fn is_real(&self) -> bool {
        matches!(self, TestCluster::Real(_))
    }

    /// The sim, for what only it can do; `None` on the real tier.
    pub fn sim(&self) -> Option<&SimHandle> {
        match self {
            TestCluster::Sim(sim) => Some(sim),
            TestCluster::Real(_) => None,
        }
    }

    /// The namespace this test works in: [`test_namespace`] on either tier.
    pub fn namespace(&self) -> &str {
        match self {
            TestCluster::Sim(_) => test_namespace(),
            TestCluster::Real(real) => &real.namespace,
        }
    }

    pub fn request_log(&self) -> WriteLog<'_> {
        match self {
            TestCluster::Sim(sim) => WriteLog::Sim(sim.request_log()),
            TestCluster::Real(real) => WriteLog::Audit(&real.audit),
        }
    }

    /// A kubeconfig for kubectl, the plugin and `ramp controller`. On the real tier it is
    /// cluster-admin and its context defaults to the test's namespace, so a command without
    /// `-n` works there as it does in the sim's `default`.
    pub fn kubeconfig_path(&self) -> &Path {
        match self {
            TestCluster::Sim(sim) => sim.kubeconfig_path(),
            TestCluster::Real(real) => &real.kubeconfig,
        }
    }

    /// Where the traffic simulator serves its Prometheus metrics, when it runs.
    pub fn metrics_url(&self) -> Option<String> {
        match self {
            TestCluster::Sim(sim) => sim.metrics_url(),
            TestCluster::Real(real) => real.traffic.as_ref().map(TrafficHandle::metrics_url),
        }
    }

    /// The real control plane's folder; `None` on the sim.
    pub fn real_dir(&self) -> Option<&Path> {
        match self {
            TestCluster::Sim(_) => None,
            TestCluster::Real(real) => Some(&real.dir),
        }
    }
}

/// Prints why a test does not run on the real tier; true when it should return at once.
pub fn skip_on_real_tier(cluster: &TestCluster, why: &str) -> bool {
    if cluster.is_real() {
        eprintln!("skipped on the real control plane: {why}");
    }
    cluster.is_real()
}

fn real_error(what: String) -> impl FnOnce(kube::Error) -> StartError {
    move |source| StartError::Crd { name: what, source }
}

impl RealCluster {
    async fn start(
        dir: PathBuf,
        sim_config: SimConfig,
        crds: impl IntoIterator<Item = CustomResourceDefinition>,
    ) -> Result<Self, StartError> {
        if std::env::var("NEXTEST_EXECUTION_MODE").as_deref() != Ok("process-per-test") {
            panic!(
                "{REAL_CLUSTER_ENV} is set: the real tier gives each test process one namespace, \
                 so run it under cargo nextest (one process a test), not cargo test"
            );
        }
        let namespace = test_namespace().to_string();
        let kubeconfig = namespaced_kubeconfig(&dir, &namespace);
        let config = real_config(&kubeconfig, &namespace).await;
        let client = kube::Client::try_from(config.clone())
            .unwrap_or_else(|e| panic!("{REAL_CLUSTER_ENV}: cannot build a client: {e}"));
        // Follow the audit log from before the namespace exists: every write in it is seen.
        let audit = AuditLog::follow(&dir.join("audit.log"), &namespace);

        let crd_api = Api::<CustomResourceDefinition>::all(client.clone());
        for crd in crds {
            let name = crd.metadata.name.clone().unwrap_or_default();
            if crd_api.get_opt(&name).await.ok().flatten().is_none() {
                match crd_api.create(&PostParams::default(), &crd).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(status)) if status.code == 409 => {}
                    Err(source) => return Err(real_error(name)(source)),
                }
            }
            crate::testing::eventually(&format!("CRD {name} established"), 30, || {
                let crd_api = crd_api.clone();
                let name = name.clone();
                async move {
                    let crd = crd_api.get_opt(&name).await.ok().flatten()?;
                    crd.status?
                        .conditions?
                        .iter()
                        .any(|c| c.type_ == "Established" && c.status == "True")
                        .then_some(())
                }
            })
            .await;
        }

        let namespaces = Api::<Namespace>::all(client.clone());
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": namespace, "labels": {"ramp.dev/test": "true"}}
        }))
        .map_err(|e| real_error(format!("Namespace {namespace}"))(kube::Error::SerdeError(e)))?;
        namespaces
            .create(&PostParams::default(), &ns)
            .await
            .map_err(real_error(format!("Namespace {namespace}")))?;
        // Pods are refused until the namespace's default ServiceAccount exists.
        let accounts = Api::<ServiceAccount>::namespaced(client.clone(), &namespace);
        crate::testing::eventually(
            &format!("ServiceAccount {namespace}/default created"),
            30,
            || {
                let accounts = accounts.clone();
                async move { accounts.get_opt("default").await.ok().flatten() }
            },
        )
        .await;

        let traffic = if sim_config.traffic_enabled {
            let traffic = crate::traffic::start(
                client.clone(),
                crate::traffic::TrafficConfig {
                    namespace: Some(namespace.clone()),
                    ..sim_config.traffic.clone()
                },
                sim_config.metrics_listen,
            )
            .await
            .map_err(|e| StartError::Sim(crate::SimError::Traffic(e.to_string())))?;
            Some(traffic)
        } else {
            None
        };
        Ok(RealCluster {
            dir,
            kubeconfig,
            config,
            client,
            namespace,
            audit,
            traffic,
        })
    }
}

/// A copy of the control plane's kubeconfig (`DIR/kubeconfig`) whose contexts default to
/// `namespace`, written as `DIR/tests/<namespace>.kubeconfig` (JSON, which kubectl reads as
/// YAML).
///
/// # Panics
///
/// When the kubeconfig cannot be read or the copy written: the tier is misconfigured.
fn namespaced_kubeconfig(dir: &Path, namespace: &str) -> PathBuf {
    let source = dir.join("kubeconfig");
    let mut file = Kubeconfig::read_from(&source)
        .unwrap_or_else(|e| panic!("{REAL_CLUSTER_ENV}: cannot read {}: {e}", source.display()));
    for named in &mut file.contexts {
        if let Some(context) = named.context.as_mut() {
            context.namespace = Some(namespace.to_string());
        }
    }
    let tests = dir.join("tests");
    let path = tests.join(format!("{namespace}.kubeconfig"));
    let written = std::fs::create_dir_all(&tests).and_then(|()| {
        let json = serde_json::to_vec_pretty(&file).map_err(std::io::Error::other)?;
        std::fs::write(&path, json)
    });
    if let Err(e) = written {
        panic!("{REAL_CLUSTER_ENV}: cannot write {}: {e}", path.display());
    }
    path
}

/// The client configuration of the real control plane, defaulting to `namespace`.
///
/// # Panics
///
/// When the kubeconfig `scripts/cluster up` wrote cannot be read: the tier is misconfigured.
async fn real_config(kubeconfig: &Path, namespace: &str) -> kube::Config {
    let file = Kubeconfig::read_from(kubeconfig).unwrap_or_else(|e| {
        panic!(
            "{REAL_CLUSTER_ENV}: cannot read {}: {e}",
            kubeconfig.display()
        )
    });
    let mut config = kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{REAL_CLUSTER_ENV}: bad kubeconfig: {e}"));
    config.default_namespace = namespace.to_string();
    config
}

impl Drop for RealCluster {
    fn drop(&mut self) {
        // The namespace goes with the test. The process may end before a deletion made from
        // here is answered, so kubectl, which outlives it, asks for it and nothing waits.
        let _ = std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["delete", "namespace", &self.namespace, "--wait=false"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
    }
}
