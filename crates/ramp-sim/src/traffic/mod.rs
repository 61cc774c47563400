//! Traffic and metrics simulator: a steady synthetic load split the way the data plane would
//! split it (read from live VirtualServices, DestinationRules, Ingresses, HTTPRoutes, Services
//! and pods), metered per version and exported with Istio's and ingress-nginx's real metric
//! names. It only watches the API; it writes nothing to it.

mod exposition;
mod meter;
mod model;
mod routes;
mod split;

pub use exposition::{VersionReport, VersionsReport};
pub use model::{Behaviour, LatencyModel};
pub use split::{ERROR_CODE, ERROR_RATE, LATENCY_MS, LATENCY_P95_MS, RPS_ANNOTATION, RequestClass};

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Resource;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::watch;
use tokio::task::JoinSet;

use meter::Meter;

/// Load and defaults of the traffic simulator.
#[derive(Clone, Debug)]
pub struct TrafficConfig {
    /// Requests per second entering each entry point: each VirtualService, stable NGINX
    /// Ingress, HTTPRoute, and each Service with a selector that no router sends to. An entry
    /// point's `sim.ramp.dev/rps` annotation overrides it.
    pub rps: f64,
    /// How often counters advance (and routing changes are picked up).
    pub tick: Duration,
    /// Shares of the load that carry headers or cookies (for header and cookie routes);
    /// the rest carries none.
    pub request_classes: Vec<RequestClass>,
    /// Behaviour of versions whose pod template says nothing.
    pub default_behaviour: Behaviour,
    /// Only this namespace's objects, when set: a test sharing a real cluster with others
    /// meters its own traffic alone.
    pub namespace: Option<String>,
}

impl Default for TrafficConfig {
    fn default() -> Self {
        Self {
            rps: 100.0,
            tick: Duration::from_millis(100),
            request_classes: vec![RequestClass {
                share: 0.1,
                headers: vec![("X-Canary".into(), "true".into())],
                cookies: vec![("canary".into(), "always".into())],
            }],
            default_behaviour: Behaviour {
                error_rate: 0.0,
                error_code: 500,
                latency: LatencyModel::from_p50_p95(20.0, 50.0),
            },
            namespace: None,
        }
    }
}

/// Why the traffic simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum TrafficError {
    #[error("cannot listen for metrics on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The running traffic simulator; dropping it stops its tasks.
#[derive(Debug)]
pub struct TrafficHandle {
    metrics_addr: SocketAddr,
    _tasks: JoinSet<()>,
}

impl TrafficHandle {
    /// Where the Prometheus text exposition is served, e.g. `http://127.0.0.1:9100/metrics`.
    pub fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.metrics_addr)
    }

    /// Where the per-version JSON report is served (`?namespace=&replicaSet=&podTemplateHash=`
    /// filter it).
    pub fn versions_url(&self) -> String {
        format!("http://{}/api/v1/versions", self.metrics_addr)
    }

    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
    }
}

/// Objects of one kind, mirrored from a watch; `changed` counts changes.
struct Mirror<K> {
    objects: RwLock<BTreeMap<(String, String), Arc<K>>>,
    changed: watch::Sender<u64>,
}

impl<K> Mirror<K> {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            objects: RwLock::new(BTreeMap::new()),
            changed: watch::Sender::new(0),
        })
    }

    fn all(&self) -> Vec<Arc<K>> {
        self.objects
            .read()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    fn update(&self, f: impl FnOnce(&mut BTreeMap<(String, String), Arc<K>>)) {
        if let Ok(mut objects) = self.objects.write() {
            f(&mut objects);
        }
        self.changed.send_modify(|n| *n += 1);
    }

    fn generation(&self) -> u64 {
        *self.changed.borrow()
    }
}

struct Objects {
    pods: Arc<Mirror<Pod>>,
    replica_sets: Arc<Mirror<ReplicaSet>>,
    services: Arc<Mirror<Service>>,
    ingresses: Arc<Mirror<Ingress>>,
    crds: Arc<Mirror<CustomResourceDefinition>>,
    virtual_services: Arc<Mirror<DynamicObject>>,
    destination_rules: Arc<Mirror<DynamicObject>>,
    http_routes: Arc<Mirror<DynamicObject>>,
}

impl Objects {
    fn generation(&self) -> u64 {
        self.pods.generation()
            + self.replica_sets.generation()
            + self.services.generation()
            + self.ingresses.generation()
            + self.virtual_services.generation()
            + self.destination_rules.generation()
            + self.http_routes.generation()
    }

    fn snapshot(&self) -> split::Snapshot {
        split::Snapshot {
            pods: self.pods.all(),
            replica_sets: self.replica_sets.all(),
            services: self.services.all(),
            ingresses: self.ingresses.all(),
            virtual_services: self.virtual_services.all(),
            destination_rules: self.destination_rules.all(),
            http_routes: self.http_routes.all(),
        }
    }
}

/// Starts the load generator, the meters and the metrics server.
pub async fn start(
    client: kube::Client,
    config: TrafficConfig,
    metrics_listen: SocketAddr,
) -> Result<TrafficHandle, TrafficError> {
    let listen_error = |source| TrafficError::Listen {
        addr: metrics_listen,
        source,
    };
    let listener = tokio::net::TcpListener::bind(metrics_listen)
        .await
        .map_err(listen_error)?;
    let metrics_addr = listener.local_addr().map_err(listen_error)?;

    let objects = Arc::new(Objects {
        pods: Mirror::new(),
        replica_sets: Mirror::new(),
        services: Mirror::new(),
        ingresses: Mirror::new(),
        crds: Mirror::new(),
        virtual_services: Mirror::new(),
        destination_rules: Mirror::new(),
        http_routes: Mirror::new(),
    });
    let meter = Arc::new(Mutex::new(Meter::default()));
    let mut tasks = JoinSet::new();
    let cfg = watcher::Config::default;
    fn typed<K>(client: &kube::Client, namespace: Option<&str>) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        match namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let ns = config.namespace.as_deref();
    tasks.spawn(follow(
        watcher(typed::<Pod>(&client, ns), cfg()),
        objects.pods.clone(),
    ));
    tasks.spawn(follow(
        watcher(typed::<ReplicaSet>(&client, ns), cfg()),
        objects.replica_sets.clone(),
    ));
    tasks.spawn(follow(
        watcher(typed::<Service>(&client, ns), cfg()),
        objects.services.clone(),
    ));
    tasks.spawn(follow(
        watcher(typed::<Ingress>(&client, ns), cfg()),
        objects.ingresses.clone(),
    ));
    tasks.spawn(follow(
        watcher(Api::<CustomResourceDefinition>::all(client.clone()), cfg()),
        objects.crds.clone(),
    ));
    for (group, kind, plural, mirror) in [
        (
            "networking.istio.io",
            "VirtualService",
            "virtualservices",
            &objects.virtual_services,
        ),
        (
            "networking.istio.io",
            "DestinationRule",
            "destinationrules",
            &objects.destination_rules,
        ),
        (
            "gateway.networking.k8s.io",
            "HTTPRoute",
            "httproutes",
            &objects.http_routes,
        ),
    ] {
        tasks.spawn(follow_custom_kind(
            client.clone(),
            config.namespace.clone(),
            objects.crds.clone(),
            CustomKind {
                group,
                kind,
                plural,
            },
            mirror.clone(),
        ));
    }
    tasks.spawn(generate_load(objects, meter.clone(), config));

    let app = axum::Router::new()
        .route("/metrics", get(metrics))
        .route("/api/v1/versions", get(versions))
        .with_state(meter);
    tasks.spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "traffic simulator: metrics server stopped");
        }
    });
    Ok(TrafficHandle {
        metrics_addr,
        _tasks: tasks,
    })
}

async fn metrics(State(meter): State<Arc<Mutex<Meter>>>) -> impl IntoResponse {
    let body = meter
        .lock()
        .map(|m| exposition::render(&m))
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, exposition::CONTENT_TYPE)], body)
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct VersionFilter {
    namespace: Option<String>,
    replica_set: Option<String>,
    pod_template_hash: Option<String>,
}

async fn versions(
    State(meter): State<Arc<Mutex<Meter>>>,
    Query(filter): Query<VersionFilter>,
) -> axum::Json<VersionsReport> {
    let report = meter
        .lock()
        .map(|m| {
            exposition::versions_report(
                &m,
                filter.namespace.as_deref(),
                filter.replica_set.as_deref(),
                filter.pod_template_hash.as_deref(),
            )
        })
        .unwrap_or(VersionsReport {
            versions: Vec::new(),
        });
    axum::Json(report)
}

/// Advances the meters every tick with the split of the current objects (recomputed when
/// any of them changed).
async fn generate_load(objects: Arc<Objects>, meter: Arc<Mutex<Meter>>, config: TrafficConfig) {
    let load = split::Load {
        rps: config.rps,
        classes: config.request_classes.clone(),
        default_behaviour: config.default_behaviour,
    };
    let mut ticks = tokio::time::interval(config.tick.max(Duration::from_millis(1)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = Instant::now();
    let mut seen = None;
    let mut current = split::Split::default();
    loop {
        ticks.tick().await;
        let generation = objects.generation();
        if seen != Some(generation) {
            current = split::split(&objects.snapshot(), &load);
            seen = Some(generation);
        }
        let now = Instant::now();
        // A stalled runtime must not turn into a burst of requests.
        let elapsed = now.duration_since(last).min(Duration::from_secs(5));
        last = now;
        if let Ok(mut meter) = meter.lock() {
            meter.advance(&current, elapsed.as_secs_f64());
        }
    }
}

fn key_of<K: Resource>(object: &K) -> (String, String) {
    (
        object.meta().namespace.clone().unwrap_or_default(),
        object.meta().name.clone().unwrap_or_default(),
    )
}

/// Mirrors a watch into `mirror` until the stream ends.
async fn follow<K, S>(stream: S, mirror: Arc<Mirror<K>>)
where
    K: Resource + Clone + std::fmt::Debug + Send + Sync + 'static,
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send,
{
    let stream = stream.backoff(crate::workloads::WatchBackoff::new());
    futures::pin_mut!(stream);
    let mut relist: Option<BTreeMap<(String, String), Arc<K>>> = None;
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Init) => relist = Some(BTreeMap::new()),
            Ok(watcher::Event::InitApply(object)) => {
                relist
                    .get_or_insert_with(BTreeMap::new)
                    .insert(key_of(&object), Arc::new(object));
            }
            Ok(watcher::Event::InitDone) => {
                let fresh = relist.take().unwrap_or_default();
                mirror.update(|objects| *objects = fresh);
            }
            Ok(watcher::Event::Apply(object)) => {
                mirror.update(|objects| {
                    objects.insert(key_of(&object), Arc::new(object));
                });
            }
            Ok(watcher::Event::Delete(object)) => {
                mirror.update(|objects| {
                    objects.remove(&key_of(&object));
                });
            }
            Err(error) => tracing::debug!(%error, "traffic simulator: watch failed, retrying"),
        }
    }
}

#[derive(Clone, Copy)]
struct CustomKind {
    group: &'static str,
    kind: &'static str,
    plural: &'static str,
}

/// The version to watch a custom kind at: its storage version if served, else the first
/// served one; `None` while no CRD defines it.
fn served_version(crds: &Mirror<CustomResourceDefinition>, kind: CustomKind) -> Option<String> {
    let name = format!("{}.{}", kind.plural, kind.group);
    let crd = crds
        .all()
        .into_iter()
        .find(|c| c.metadata.name.as_deref() == Some(name.as_str()))?;
    let served = crd.spec.versions.iter().filter(|v| v.served);
    let mut fallback = None;
    for version in served {
        if version.storage {
            return Some(version.name.clone());
        }
        fallback.get_or_insert_with(|| version.name.clone());
    }
    fallback
}

/// Mirrors a custom kind (Istio, Gateway API) while a CRD serves it; follows the CRD's served
/// versions as they change.
async fn follow_custom_kind(
    client: kube::Client,
    namespace: Option<String>,
    crds: Arc<Mirror<CustomResourceDefinition>>,
    kind: CustomKind,
    mirror: Arc<Mirror<DynamicObject>>,
) {
    let mut crd_changes = crds.changed.subscribe();
    loop {
        let version = served_version(&crds, kind);
        match &version {
            None => {
                if mirror.objects.read().is_ok_and(|m| !m.is_empty()) {
                    mirror.update(BTreeMap::clear);
                }
            }
            Some(version) => {
                let resource = ApiResource {
                    group: kind.group.to_string(),
                    version: version.clone(),
                    api_version: format!("{}/{version}", kind.group),
                    kind: kind.kind.to_string(),
                    plural: kind.plural.to_string(),
                };
                let api = match &namespace {
                    Some(ns) => {
                        Api::<DynamicObject>::namespaced_with(client.clone(), ns, &resource)
                    }
                    None => Api::<DynamicObject>::all_with(client.clone(), &resource),
                };
                let watch = follow(watcher(api, watcher::Config::default()), mirror.clone());
                let still_served = async {
                    loop {
                        if crd_changes.changed().await.is_err() {
                            return;
                        }
                        if served_version(&crds, kind).as_ref() != Some(version) {
                            return;
                        }
                    }
                };
                tokio::select! {
                    () = watch => {}
                    () = still_served => {}
                }
                continue;
            }
        }
        if crd_changes.changed().await.is_err() {
            return;
        }
    }
}
