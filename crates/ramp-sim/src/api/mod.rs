//! The emulated Kubernetes API server: a generic JSON object store served over HTTP on a
//! loopback port with discovery, OpenAPI, watches, admission, garbage collection, fault
//! injection and a request log. `Sim` starts it (plus the simulators) and hands back a handle.

mod admission;
pub mod catalog;
mod defaults;
mod deletion;
mod discovery;
mod eviction;
pub mod faults;
mod gc;
mod objects;
mod openapi;
mod protobuf;
mod rbac;
pub mod request_log;
mod scale;
mod server;
pub mod status;
pub mod store;
mod table;
mod validation;
mod watch;

pub use faults::{ErrorFault, FaultError, FaultTarget, Faults, InjectedCounts, LatencyFault, Verb};
pub use rbac::{DeniedRequest, ServiceAccountUser};
pub use request_log::{LoggedRequest, RequestLog};

use catalog::GroupResource;
use serde_json::json;
use server::ApiServer;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

/// How to start the emulated cluster.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Where the API server listens; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Where to write the kubeconfig; `None` writes one into a fresh temporary directory
    /// that is removed when the handle is dropped.
    pub kubeconfig_path: Option<PathBuf>,
    /// Changes kept per resource for watches resuming from a resourceVersion; older
    /// versions get 410 Gone.
    pub watch_history: usize,
    /// Per-resource fan-out buffer; a watcher that falls further behind is cut with 410.
    pub watch_buffer: usize,
    /// How often open watches that allow bookmarks get one.
    pub bookmark_interval: Duration,
    /// Most request-log entries kept (the oldest go first); `None` keeps all of them.
    pub request_log_limit: Option<usize>,
    /// Faults active from the start (change them later through the handle).
    pub faults: Faults,
    /// Run the workload simulator (ReplicaSets, Pods, Deployments, Jobs).
    pub workloads_enabled: bool,
    pub workloads: crate::workloads::WorkloadConfig,
    /// Run the traffic simulator and serve its metrics on `metrics_listen`.
    pub traffic_enabled: bool,
    pub traffic: crate::traffic::TrafficConfig,
    pub metrics_listen: SocketAddr,
    /// Authenticate bearer tokens issued by `SimHandle::service_account_token` and authorize
    /// them with the stored RBAC objects. Requests without a token stay cluster-admin.
    pub rbac: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            kubeconfig_path: None,
            watch_history: 10_000,
            watch_buffer: 4096,
            bookmark_interval: Duration::from_secs(5),
            request_log_limit: None,
            faults: Faults::default(),
            workloads_enabled: true,
            workloads: crate::workloads::WorkloadConfig::default(),
            traffic_enabled: true,
            traffic: crate::traffic::TrafficConfig::default(),
            metrics_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            rbac: false,
        }
    }
}

impl SimConfig {
    /// Only the API server: no workload or traffic simulation.
    pub fn api_only() -> Self {
        SimConfig {
            workloads_enabled: false,
            traffic_enabled: false,
            ..SimConfig::default()
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot write the kubeconfig {path}: {source}")]
    Kubeconfig {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot build a kube client for {url}: {message}")]
    Client { url: String, message: String },
    #[error("the traffic simulator did not start: {0}")]
    Traffic(String),
}

/// Starts the emulated cluster.
pub struct Sim;

impl Sim {
    pub async fn start(config: SimConfig) -> Result<SimHandle, SimError> {
        let mut state = store::State::new(config.watch_history, config.watch_buffer);
        for namespace in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            seed_namespace(&mut state, namespace);
        }
        let (gc_queue, gc_receiver) = gc::GcQueue::new();
        let server = Arc::new(ApiServer::new(
            RequestLog::with_limit(config.request_log_limit),
            state,
            faults::FaultInjector::new(config.faults.clone()),
            gc_queue,
            config.bookmark_interval,
        ));
        server.rbac.set_enabled(config.rbac);
        let gc_task = tokio::spawn(gc::run(Arc::downgrade(&server), gc_receiver));
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| SimError::Bind {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| SimError::Bind {
            addr: config.listen,
            source,
        })?;
        if let Ok(mut address) = server.address.lock() {
            *address = addr.to_string();
        }
        let serving = Serving::spawn(Arc::clone(&server), listener);
        let url = format!("http://{addr}");
        let (kubeconfig, owned_dir) = match &config.kubeconfig_path {
            Some(path) => (path.clone(), None),
            None => {
                static COUNTER: AtomicU64 = AtomicU64::new(0);
                let dir = std::env::temp_dir().join(format!(
                    "ramp-sim-{}-{}",
                    std::process::id(),
                    COUNTER.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::create_dir_all(&dir).map_err(|source| SimError::Kubeconfig {
                    path: dir.clone(),
                    source,
                })?;
                (dir.join("kubeconfig"), Some(dir))
            }
        };
        write_kubeconfig(&kubeconfig, &url)?;
        let client = client_for(&url)?;
        let mut handle = SimHandle {
            server,
            addr,
            url,
            serving: Mutex::new(Some(serving)),
            kubeconfig,
            owned_dir,
            client,
            tasks: vec![gc_task],
            metrics_url: None,
            traffic: None,
        };
        handle.start_simulators(&config).await?;
        Ok(handle)
    }
}

fn seed_namespace(state: &mut store::State, name: &str) {
    let uid = state.new_uid();
    let namespace = json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": name,
            "uid": uid,
            "creationTimestamp": store::now_rfc3339(),
            "labels": {"kubernetes.io/metadata.name": name},
        },
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    });
    state.put(&GroupResource::new("", "namespaces"), namespace);
}

fn client_for(url: &str) -> Result<kube::Client, SimError> {
    let uri = url
        .parse::<axum::http::Uri>()
        .map_err(|e| SimError::Client {
            url: url.to_owned(),
            message: e.to_string(),
        })?;
    let mut config = kube::Config::new(uri);
    config.default_namespace = "default".to_owned();
    kube::Client::try_from(config).map_err(|e| SimError::Client {
        url: url.to_owned(),
        message: e.to_string(),
    })
}

/// Writes a kubeconfig whose current context points at the sim (plain HTTP, no auth).
pub fn write_kubeconfig(path: &Path, url: &str) -> Result<(), SimError> {
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: ramp-sim\n  cluster:\n    server: {url}\ncontexts:\n- name: ramp-sim\n  context:\n    cluster: ramp-sim\n    user: ramp-sim\n    namespace: default\ncurrent-context: ramp-sim\nusers:\n- name: ramp-sim\n  user: {{}}\n"
    );
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| SimError::Kubeconfig {
            path: path.to_owned(),
            source,
        })?;
    }
    std::fs::write(path, text).map_err(|source| SimError::Kubeconfig {
        path: path.to_owned(),
        source,
    })
}

/// The running HTTP server: its task and the trigger for a graceful stop.
struct Serving {
    task: JoinHandle<()>,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl Serving {
    fn spawn(server: Arc<ApiServer>, listener: tokio::net::TcpListener) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = server::router(server);
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stopped.await;
            });
            if let Err(err) = serve.await {
                tracing::warn!(error = %err, "ramp-sim API server stopped");
            }
        });
        Serving { task, stop }
    }
}

/// A running emulated cluster. Dropping it stops the server and the simulators.
pub struct SimHandle {
    server: Arc<ApiServer>,
    addr: SocketAddr,
    url: String,
    serving: Mutex<Option<Serving>>,
    kubeconfig: PathBuf,
    owned_dir: Option<PathBuf>,
    client: kube::Client,
    tasks: Vec<JoinHandle<()>>,
    metrics_url: Option<String>,
    traffic: Option<crate::traffic::TrafficHandle>,
}

impl SimHandle {
    async fn start_simulators(&mut self, config: &SimConfig) -> Result<(), SimError> {
        if config.workloads_enabled {
            let task = tokio::spawn(crate::workloads::run(
                self.client(),
                config.workloads.clone(),
            ));
            self.tasks.push(task);
        }
        if config.traffic_enabled {
            let traffic =
                crate::traffic::start(self.client(), config.traffic.clone(), config.metrics_listen)
                    .await
                    .map_err(|e| SimError::Traffic(e.to_string()))?;
            self.metrics_url = Some(traffic.metrics_url());
            self.traffic = Some(traffic);
        }
        Ok(())
    }

    /// `http://127.0.0.1:<port>`.
    pub fn api_url(&self) -> String {
        self.url.clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A kube client for the sim (default namespace `default`).
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// A kubeconfig the real kubectl and `ramp controller` can use.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// Where the traffic simulator serves its Prometheus metrics, when it runs.
    pub fn metrics_url(&self) -> Option<String> {
        self.metrics_url.clone()
    }

    /// Every mutating request so far.
    pub fn request_log(&self) -> &RequestLog {
        &self.server.log
    }

    /// Issues a bearer token authenticating as ServiceAccount `namespace/name`
    /// (`system:serviceaccount:<namespace>:<name>`); honoured only with `SimConfig::rbac`.
    pub fn service_account_token(&self, namespace: &str, name: &str) -> String {
        let token = {
            let mut state = self.server.lock();
            format!("ramp-sim.{}.{}", state.new_uid(), state.new_uid())
        };
        self.server.rbac.register_token(
            token.clone(),
            ServiceAccountUser {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            },
        );
        token
    }

    /// A kube client authenticated as ServiceAccount `namespace/name`, defaulting to its
    /// namespace.
    pub fn service_account_client(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<kube::Client, SimError> {
        let token = self.service_account_token(namespace, name);
        let client_error = |message: String| SimError::Client {
            url: self.url.clone(),
            message,
        };
        let uri = self
            .url
            .parse::<axum::http::Uri>()
            .map_err(|e| client_error(e.to_string()))?;
        let mut config = kube::Config::new(uri);
        config.default_namespace = namespace.to_owned();
        config.auth_info = serde_json::from_value(json!({ "token": token }))
            .map_err(|e| client_error(e.to_string()))?;
        kube::Client::try_from(config).map_err(|e| client_error(e.to_string()))
    }

    /// Writes a kubeconfig authenticating as ServiceAccount `namespace/name` with a fresh token
    /// (for kubectl or `ramp controller`).
    pub fn write_service_account_kubeconfig(
        &self,
        path: &Path,
        namespace: &str,
        name: &str,
    ) -> Result<(), SimError> {
        let token = self.service_account_token(namespace, name);
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: ramp-sim\n  cluster:\n    server: {url}\ncontexts:\n- name: ramp-sim\n  context:\n    cluster: ramp-sim\n    user: {namespace}-{name}\n    namespace: {namespace}\ncurrent-context: ramp-sim\nusers:\n- name: {namespace}-{name}\n  user:\n    token: {token}\n",
            url = self.url
        );
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| SimError::Kubeconfig {
                path: path.to_owned(),
                source,
            })?;
        }
        std::fs::write(path, text).map_err(|source| SimError::Kubeconfig {
            path: path.to_owned(),
            source,
        })
    }

    /// Every resource request RBAC refused so far, reads included.
    pub fn denied_requests(&self) -> Vec<DeniedRequest> {
        self.server.rbac.denied()
    }

    /// The current (latest) resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.server.lock().rv
    }

    pub fn faults(&self) -> Faults {
        self.server.faults.get()
    }

    pub fn set_faults(&self, faults: Faults) {
        self.server.faults.set(faults);
    }

    pub fn clear_faults(&self) {
        self.server.faults.set(Faults::default());
    }

    /// Fails `rate` of the requests matching `target` with `error`.
    pub fn add_error_fault(&self, target: FaultTarget, rate: f64, error: FaultError) {
        self.server.faults.update(|f| {
            f.errors.push(ErrorFault {
                target,
                rate,
                error,
            })
        });
    }

    /// Delays every request matching `target`.
    pub fn add_latency(&self, target: FaultTarget, delay: Duration) {
        self.server
            .faults
            .update(|f| f.latency.push(LatencyFault { target, delay }));
    }

    /// Starts the fault injector's random source over from `seed`: the same requests in the
    /// same order then meet the same faults.
    pub fn seed_faults(&self, seed: u64) {
        self.server.faults.seed(seed);
    }

    /// How many requests each kind of injected error has hit so far.
    pub fn injected_faults(&self) -> InjectedCounts {
        self.server.faults.counts()
    }

    /// Cuts every watch stream opened from now on after `after` (`None`: never).
    pub fn set_watch_cut_after(&self, after: Option<Duration>) {
        self.server.faults.update(|f| f.watch_cut_after = after);
    }

    /// Simulates an API server restart: every connection and watch is dropped, the port is
    /// re-bound, and all objects and the resourceVersion counter are kept.
    pub async fn restart(&self) -> Result<(), SimError> {
        let previous = self.serving.lock().ok().and_then(|mut s| s.take());
        self.server
            .restarts
            .send_modify(|generation| *generation += 1);
        if let Some(serving) = previous {
            let _ = serving.stop.send(());
            let mut task = serving.task;
            if tokio::time::timeout(Duration::from_secs(2), &mut task)
                .await
                .is_err()
            {
                task.abort();
                let _ = task.await;
            }
        }
        let listener = tokio::net::TcpListener::bind(self.addr)
            .await
            .map_err(|source| SimError::Bind {
                addr: self.addr,
                source,
            })?;
        let serving = Serving::spawn(Arc::clone(&self.server), listener);
        if let Ok(mut slot) = self.serving.lock() {
            *slot = Some(serving);
        }
        Ok(())
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Ok(mut serving) = self.serving.lock()
            && let Some(serving) = serving.take()
        {
            serving.task.abort();
        }
        self.server
            .restarts
            .send_modify(|generation| *generation += 1);
        for task in &self.tasks {
            task.abort();
        }
        self.traffic = None;
        if let Some(dir) = &self.owned_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
