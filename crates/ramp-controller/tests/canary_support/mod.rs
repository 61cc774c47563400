//! Shared by the canary end-to-end tests: a ramp-sim cluster with Ramp's CRDs and Istio's, the
//! Rollout controller running in-process, fixtures (services, VirtualService, Ingress,
//! rollouts) and deadline-bound waits. Assertions read the sim's request log.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, ResourceQuota, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::Client;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use ramp_api::rollout::Rollout;
use ramp_controller::analysis_run::AnalysisRunConfig;
use ramp_controller::context::ControllerConfig;
use ramp_controller::ops::{WatchScope, run_controllers};
use ramp_controller::traffic::IstioApiVersion;
use ramp_sim::testing::{Background, eventually_object, istio_crd};
use ramp_sim::tier::{TestCluster, test_namespace};
use ramp_sim::{FaultError, FaultTarget, LoggedRequest, SimConfig, Verb};
use serde_json::{Value, json};
use std::time::Duration;

// Not every test binary that includes this module polls with it.
#[allow(unused_imports)]
pub use ramp_sim::testing::eventually;

/// The namespace the test works in: `default` on ramp-sim, a fresh one on the real tier.
pub fn ns() -> &'static str {
    test_namespace()
}

pub struct Cluster {
    /// ramp-sim, or the real control plane when `RAMP_TEST_CLUSTER` names one.
    pub sim: TestCluster,
    pub client: Client,
    controller: Option<Background>,
}

impl Cluster {
    /// A sim with workloads (pods become ready after 200 ms) and every CRD installed; the
    /// controller is not running yet.
    pub async fn start() -> Self {
        Self::start_with(SimConfig {
            traffic_enabled: false,
            ..SimConfig::default()
        })
        .await
    }

    /// Starts the controllers; on the real tier they watch only this test's namespace, as the
    /// cluster is shared with the other tests.
    pub fn start_controller(&mut self) {
        let scope = self.sim.is_real().then(ns);
        self.controller = Some(start_controllers(self.client.clone(), scope));
    }

    /// Kills the controller as a crash would: its task is dropped mid-flight.
    pub async fn kill_controller(&mut self) {
        if let Some(controller) = self.controller.take() {
            controller.kill().await;
        }
    }

    pub async fn stop_controller(&mut self) {
        if let Some(controller) = self.controller.take() {
            controller.stop().await;
        }
    }

    /// Makes every pod creation in the namespace fail until [`Cluster::allow_pod_creations`]:
    /// an injected 500 on ramp-sim; on the real tier, a ResourceQuota that the pods already
    /// there fill (the ReplicaSet controller's creates are then refused as exceeding it).
    pub async fn refuse_pod_creations(&self) {
        match self.sim.sim() {
            Some(sim) => sim.add_error_fault(
                FaultTarget::verb_on(Verb::Create, "pods"),
                1.0,
                FaultError::Internal,
            ),
            None => {
                let pods = Api::<Pod>::namespaced(self.client.clone(), ns())
                    .list(&ListParams::default())
                    .await
                    .expect("pods listed")
                    .items
                    .len();
                let quota: ResourceQuota = serde_json::from_value(json!({
                    "apiVersion": "v1", "kind": "ResourceQuota",
                    "metadata": {"name": "no-more-pods", "namespace": ns()},
                    "spec": {"hard": {"pods": pods.to_string()}}
                }))
                .unwrap();
                let quotas = Api::<ResourceQuota>::namespaced(self.client.clone(), ns());
                quotas
                    .create(&PostParams::default(), &quota)
                    .await
                    .expect("quota created");
                // The quota binds once its usage is counted.
                eventually_object(&quotas, "no-more-pods", "pod quota counted", 20, |q| {
                    q.status
                        .as_ref()
                        .and_then(|s| s.used.as_ref())
                        .is_some_and(|used| used.contains_key("pods"))
                })
                .await;
            }
        }
    }

    /// Undoes [`Cluster::refuse_pod_creations`].
    pub async fn allow_pod_creations(&self) {
        match self.sim.sim() {
            Some(sim) => sim.clear_faults(),
            None => {
                Api::<ResourceQuota>::namespaced(self.client.clone(), ns())
                    .delete("no-more-pods", &Default::default())
                    .await
                    .expect("quota deleted");
            }
        }
    }

    pub async fn create_services(&self, names: &[&str], app: &str) {
        let api = Api::<Service>::namespaced(self.client.clone(), ns());
        for name in names {
            let service: Service = serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": ns()},
                "spec": {"selector": {"app": app}, "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP", "name": "http"}]}
            }))
            .unwrap();
            api.create(&PostParams::default(), &service)
                .await
                .expect("service created");
        }
    }

    pub async fn create_virtual_service(&self, name: &str, stable: &str, canary: &str) {
        let vs: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "networking.istio.io/v1alpha3", "kind": "VirtualService",
            "metadata": {"name": name, "namespace": ns()},
            "spec": {
                "hosts": [name],
                "http": [{
                    "name": "primary",
                    "retries": {"attempts": 3, "perTryTimeout": "2s"},
                    "route": [
                        {"destination": {"host": stable}, "weight": 100},
                        {"destination": {"host": canary}, "weight": 0}
                    ]
                }]
            }
        }))
        .unwrap();
        self.virtual_services()
            .create(&PostParams::default(), &vs)
            .await
            .expect("VirtualService created");
    }

    pub async fn create_ingress(&self, name: &str, service: &str) {
        let ingress: Ingress = serde_json::from_value(json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": name, "namespace": ns(), "annotations": {"kubernetes.io/ingress.class": "nginx"}},
            "spec": {"rules": [{"host": "web.example.com", "http": {"paths": [{
                "path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": service, "port": {"name": "http"}}}
            }]}}]}
        }))
        .unwrap();
        Api::<Ingress>::namespaced(self.client.clone(), ns())
            .create(&PostParams::default(), &ingress)
            .await
            .expect("Ingress created");
    }

    pub fn virtual_services(&self) -> Api<DynamicObject> {
        Api::namespaced_with(
            self.client.clone(),
            ns(),
            &IstioApiVersion::V1alpha3.virtual_service_resource(),
        )
    }

    pub fn rollouts(&self) -> Api<Rollout> {
        Api::namespaced(self.client.clone(), ns())
    }

    pub async fn create_rollout(&self, manifest: Value) -> Rollout {
        let rollout: Rollout = serde_json::from_value(manifest).expect("rollout manifest");
        self.rollouts()
            .create(&PostParams::default(), &rollout)
            .await
            .expect("rollout created")
    }

    pub async fn rollout(&self, name: &str) -> Rollout {
        self.rollouts().get(name).await.expect("rollout readable")
    }

    /// Changes the image, as `kubectl argo rollouts set image` does.
    pub async fn set_image(&self, name: &str, image: &str) {
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": image}]}}}});
        self.rollouts()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("image changed");
    }

    pub async fn patch_status(&self, name: &str, status: Value) {
        self.rollouts()
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": status })),
            )
            .await
            .expect("status patched");
    }

    pub async fn replica_sets(&self) -> Vec<ReplicaSet> {
        Api::<ReplicaSet>::namespaced(self.client.clone(), ns())
            .list(&ListParams::default())
            .await
            .expect("replicasets listed")
            .items
    }

    /// Waits until the rollout satisfies `check`, failing with `what` after `secs` seconds.
    pub async fn wait_rollout(
        &self,
        name: &str,
        what: &str,
        secs: u64,
        check: impl Fn(&Rollout) -> bool,
    ) -> Rollout {
        eventually_object(&self.rollouts(), name, what, secs, check).await
    }

    /// Waits until the rollout reports Healthy with every replica on the current template.
    pub async fn wait_healthy(&self, name: &str, secs: u64) -> Rollout {
        self.wait_rollout(name, "rollout Healthy and fully promoted", secs, |r| {
            let Some(status) = &r.status else {
                return false;
            };
            status.phase.as_deref() == Some("Healthy")
                && status.observed_generation_number() == r.metadata.generation
                && status.current_pod_hash.is_some()
                && status.current_pod_hash == status.stable_rs
                && status.available_replicas == Some(r.spec.replicas())
                && status.replicas == Some(r.spec.replicas())
        })
        .await
    }
}

/// Both controllers in-process with `client` (the admin's or a ServiceAccount's), watching
/// `namespace` or every namespace, with second-scale backoffs.
pub fn start_controllers(client: Client, namespace: Option<&str>) -> Background {
    let rollouts = ControllerConfig {
        concurrency: 4,
        backoff_min: Duration::from_millis(200),
        backoff_max: Duration::from_secs(2),
        invalid_spec_recheck: Duration::from_secs(2),
        istio_version: IstioApiVersion::V1alpha3,
        scope: WatchScope {
            namespace: namespace.map(str::to_owned),
            instance_id: None,
        },
        ..ControllerConfig::default()
    };
    let runs = AnalysisRunConfig {
        namespace: namespace.map(str::to_owned),
        backoff_min: Duration::from_millis(200),
        backoff_max: Duration::from_secs(2),
        ..AnalysisRunConfig::default()
    };
    Background::spawn(|shutdown| run_controllers(client, rollouts, runs, shutdown))
}

/// A canary Rollout of `web:v1` with the given strategy fields merged into `canary`.
pub fn rollout_manifest(name: &str, replicas: i32, canary: Value) -> Value {
    json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": name, "namespace": ns()},
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "web", "image": "web:v1", "ports": [{"containerPort": 8080}]}]}
            },
            "strategy": {"canary": canary}
        }
    })
}

/// Points an example AnalysisTemplate's `namespace` argument (the examples default it to
/// `default`) at the test's namespace, which is another one on the real tier.
pub fn query_test_namespace(template: &mut Value) {
    for arg in template["spec"]["args"]
        .as_array_mut()
        .into_iter()
        .flatten()
    {
        if arg["name"] == "namespace" {
            arg["value"] = json!(ns());
        }
    }
}

/// Successful writes since `checkpoint`, excluding the simulators' own (pods, statuses of
/// ReplicaSets, events, leases) and, on the real tier, those of kube-controller-manager's
/// other controllers (EndpointSlices, the namespace's ServiceAccount and CA ConfigMap).
pub fn controller_writes(sim: &TestCluster, checkpoint: usize) -> Vec<LoggedRequest> {
    sim.request_log()
        .since_settled(checkpoint, Duration::from_secs(2))
        .into_iter()
        .filter(|w| w.succeeded())
        .filter(|w| {
            let simulator_write = matches!(
                w.resource.as_str(),
                "pods"
                    | "events"
                    | "leases"
                    | "endpoints"
                    | "endpointslices"
                    | "serviceaccounts"
                    | "configmaps"
            ) || (w.resource == "replicasets"
                && w.subresource.as_deref() == Some("status"));
            !simulator_write
        })
        .collect()
}

/// The canary weight of the `primary` route after each write to VirtualService `name`,
/// replaying the logged patches onto `initial`.
pub fn canary_weights(
    writes: &[LoggedRequest],
    name: &str,
    initial: &Value,
    canary_host: &str,
) -> Vec<i64> {
    let mut vs = initial.clone();
    let mut weights = Vec::new();
    for write in writes
        .iter()
        .filter(|w| w.resource == "virtualservices" && w.name.as_deref() == Some(name))
    {
        let body = write.body.clone().expect("patch body logged");
        match write.patch_type.as_deref() {
            Some("json") => {
                // The router's optimistic-concurrency precondition holds against the live
                // object, not this replay of the spec.
                let ops: Vec<Value> = serde_json::from_value(body).expect("JSON patch");
                let ops: Vec<Value> = ops
                    .into_iter()
                    .filter(|op| {
                        !op["path"]
                            .as_str()
                            .unwrap_or_default()
                            .starts_with("/metadata/")
                    })
                    .collect();
                let patch: json_patch::Patch =
                    serde_json::from_value(Value::Array(ops)).expect("JSON patch");
                json_patch::patch(&mut vs, &patch)
                    .expect("logged patch applies to the replayed object");
            }
            Some("merge") => json_patch::merge(&mut vs, &body),
            other => panic!(
                "unexpected VirtualService write {other:?}: {}",
                write.summary()
            ),
        }
        weights.push(destination_weight(&vs, canary_host));
    }
    weights
}

/// Checks the safety invariants of [`ramp_sim::invariants`] over every write of the test's
/// namespace so far: the sim's request log, or the real server's audit log. Writes to pods and
/// ReplicaSet statuses are the cluster's; all others count as the controller's (the test's own
/// creates and image changes never move traffic, so they pass as such).
pub fn assert_invariants_hold(sim: &TestCluster) {
    use ramp_sim::invariants::{Writer, check};
    let log = sim.request_log().since_settled(0, Duration::from_secs(2));
    let violations = check(&log, |w| {
        if w.resource == "pods" || (w.resource == "replicasets" && w.subresource.is_some()) {
            Writer::Other
        } else {
            Writer::Controller
        }
    });
    let checked = log.iter().filter(|w| w.object.is_some()).count();
    assert!(
        checked > 0,
        "no write carried its object: nothing was checked"
    );
    assert!(
        violations.is_empty(),
        "{} invariant violations:\n{}",
        violations.len(),
        violations
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Weight of `host` in the first HTTP route.
pub fn destination_weight(vs: &Value, host: &str) -> i64 {
    vs["spec"]["http"][0]["route"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d["destination"]["host"] == host)
        .and_then(|d| d["weight"].as_i64())
        .unwrap_or(0)
}

/// `(replica set, replicas)` for each scale (merge patch of `spec.replicas`) and create.
pub fn replica_writes(writes: &[LoggedRequest]) -> Vec<(String, i64)> {
    writes
        .iter()
        .filter(|w| w.resource == "replicasets" && w.subresource.is_none())
        .filter_map(|w| {
            let body = w.body.as_ref()?;
            let replicas = body["spec"]["replicas"].as_i64()?;
            Some((w.name.clone().unwrap_or_default(), replicas))
        })
        .collect()
}

/// Name of the ReplicaSet whose hash the rollout's current template has.
pub fn current_rs(rollout: &Rollout) -> String {
    let hash = rollout
        .status
        .as_ref()
        .and_then(|s| s.current_pod_hash.clone())
        .expect("currentPodHash");
    format!(
        "{}-{hash}",
        rollout.metadata.name.clone().unwrap_or_default()
    )
}

/// Index in `writes` of the first write matching `pred`, failing with `what`.
pub fn position(
    writes: &[LoggedRequest],
    what: &str,
    pred: impl Fn(&LoggedRequest) -> bool,
) -> usize {
    writes.iter().position(pred).unwrap_or_else(|| {
        panic!(
            "no write {what} in: {:#?}",
            writes
                .iter()
                .map(LoggedRequest::summary)
                .collect::<Vec<_>>()
        )
    })
}

/// `status.availableReplicas` of ReplicaSet `name` as last written (by the sim's ReplicaSet
/// controller) in the full log before entry `before` of `writes`.
pub fn available_before(all: &[LoggedRequest], name: &str) -> i64 {
    all.iter()
        .rev()
        .filter(|w| {
            w.resource == "replicasets"
                && w.subresource.as_deref() == Some("status")
                && w.name.as_deref() == Some(name)
        })
        .find_map(|w| {
            w.body
                .as_ref()
                .map(|b| logged_status(b)["availableReplicas"].as_i64().unwrap_or(0))
        })
        .unwrap_or(0)
}

/// The status a status write carries: a merge body `{status}` or a JSON patch adding `/status`.
fn logged_status(body: &Value) -> Value {
    match body {
        Value::Array(ops) => ops
            .iter()
            .find(|op| op["path"] == "/status")
            .map(|op| op["value"].clone())
            .unwrap_or(Value::Null),
        other => other["status"].clone(),
    }
}

/// Every successful write since `checkpoint`, simulators' included, up to and excluding the
/// first controller write matching `pred`.
pub fn log_until(
    sim: &TestCluster,
    checkpoint: usize,
    pred: impl Fn(&LoggedRequest) -> bool,
) -> Vec<LoggedRequest> {
    let all: Vec<LoggedRequest> = sim
        .request_log()
        .since_settled(checkpoint, Duration::from_secs(2))
        .into_iter()
        .filter(|w| w.succeeded())
        .collect();
    let end = all.iter().position(pred).unwrap_or(all.len());
    all[..end].to_vec()
}

impl Cluster {
    /// Like [`Cluster::start`], with the sim configured by the caller (e.g. the traffic
    /// simulator on, for analysis against its metrics).
    pub async fn start_with(config: SimConfig) -> Self {
        let sim = TestCluster::start(config, cluster_crds())
            .await
            .expect("cluster starts with the CRDs");
        Self::on(sim)
    }

    /// A cluster over `sim`, started with [`cluster_crds`]; the controller is not running yet.
    pub fn on(sim: TestCluster) -> Self {
        let client = sim.client();
        Self {
            sim,
            client,
            controller: None,
        }
    }
}

/// Ramp's CRDs and stand-ins for Istio's (on the real tier its own, installed by `scripts/cluster
/// up`, win).
pub fn cluster_crds()
-> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>
{
    let versions = ["v1alpha3", "v1beta1", "v1"];
    let mut crds = ramp_api::crd::all();
    crds.push(istio_crd("virtualservices", "VirtualService", &versions));
    crds.push(istio_crd("destinationrules", "DestinationRule", &versions));
    crds
}

/// What the in-test endpoint answers as `ok`: `true`, `false`, or anything else (which
/// neither the success nor the failure condition accepts: Inconclusive).
#[derive(Clone, Default)]
pub struct Health(std::sync::Arc<std::sync::Mutex<Value>>);

impl Health {
    pub fn new(ok: bool) -> Self {
        Self(std::sync::Arc::new(std::sync::Mutex::new(json!(ok))))
    }

    pub fn answer(&self, value: Value) {
        *self.0.lock().unwrap() = value;
    }
}

/// An HTTP endpoint answering `{"ok": <health>}`.
pub async fn health_endpoint(health: Health) -> String {
    async fn answer(
        axum::extract::State(health): axum::extract::State<Health>,
    ) -> axum::Json<Value> {
        let ok = health.0.lock().unwrap().clone();
        axum::Json(json!({ "ok": ok }))
    }
    let app = axum::Router::new()
        .route("/health", axum::routing::get(answer))
        .with_state(health);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{address}/health")
}

/// A cluster with Services `web-stable`/`web-canary`, VirtualService `web-vsvc` splitting
/// between them, and the controllers running.
pub async fn istio_cluster() -> Cluster {
    let mut cluster = Cluster::start().await;
    cluster.create_istio_objects().await;
    cluster.start_controller();
    cluster
}

impl Cluster {
    /// Services `web-stable`/`web-canary` and VirtualService `web-vsvc` splitting between them.
    pub async fn create_istio_objects(&self) {
        self.create_services(&["web-stable", "web-canary"], "web")
            .await;
        self.create_virtual_service("web-vsvc", "web-stable", "web-canary")
            .await;
    }

    pub fn destination_rules(&self) -> Api<DynamicObject> {
        Api::namespaced_with(
            self.client.clone(),
            ns(),
            &IstioApiVersion::V1alpha3.destination_rule_resource(),
        )
    }

    /// VirtualService `web-vsvc` splitting host `web` between the subsets `stable` (100) and
    /// `canary` (0) of DestinationRule `web-destrule`, whose subsets both select `app: web`.
    pub async fn create_subset_split_objects(&self) {
        let vs: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "networking.istio.io/v1alpha3", "kind": "VirtualService",
            "metadata": {"name": "web-vsvc", "namespace": ns()},
            "spec": {"hosts": ["web"], "http": [{
                "name": "primary",
                "route": [
                    {"destination": {"host": "web", "subset": "stable"}, "weight": 100},
                    {"destination": {"host": "web", "subset": "canary"}, "weight": 0}
                ]
            }]}
        }))
        .unwrap();
        self.virtual_services()
            .create(&PostParams::default(), &vs)
            .await
            .expect("VirtualService created");
        let rule: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "networking.istio.io/v1alpha3", "kind": "DestinationRule",
            "metadata": {"name": "web-destrule", "namespace": ns()},
            "spec": {"host": "web", "subsets": [
                {"name": "stable", "labels": {"app": "web"}},
                {"name": "canary", "labels": {"app": "web"}}
            ]}
        }))
        .unwrap();
        self.destination_rules()
            .create(&PostParams::default(), &rule)
            .await
            .expect("DestinationRule created");
    }

    /// AnalysisTemplate `smoke`: two measurements, a second apart, of `{$.ok}` at the URL of
    /// its `url` argument (a [`health_endpoint`]), each of which must be `true`.
    pub async fn create_smoke_template(&self) {
        let template: ramp_api::analysis::AnalysisTemplate = serde_json::from_value(json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate",
            "metadata": {"name": "smoke", "namespace": ns()},
            "spec": {
                "args": [{"name": "url"}],
                "metrics": [{
                    "name": "smoke", "interval": "1s", "count": 2, "failureLimit": 0,
                    "successCondition": "result == true",
                    "provider": {"web": {"url": "{{args.url}}", "jsonPath": "{$.ok}"}}
                }]
            }
        }))
        .unwrap();
        Api::namespaced(self.client.clone(), ns())
            .create(&PostParams::default(), &template)
            .await
            .expect("template created");
    }
}

/// An Istio host-split canary over [`istio_cluster`]'s objects with `steps`, and the strategy
/// fields of `extra` on top.
pub fn istio_canary_with(steps: Value, extra: Value) -> Value {
    let mut canary = json!({
        "canaryService": "web-canary",
        "stableService": "web-stable",
        "trafficRouting": {"istio": {"virtualService": {"name": "web-vsvc", "routes": ["primary"]}}},
        "steps": steps
    });
    json_patch::merge(&mut canary, &extra);
    canary
}

/// [`istio_canary_with`] with second-scale scale-down delays (1 s after promotion and abort).
pub fn istio_canary(steps: Value) -> Value {
    istio_canary_with(
        steps,
        json!({"scaleDownDelaySeconds": 1, "abortScaleDownDelaySeconds": 1}),
    )
}
