//! Shared fixtures of the `plugin_*` tests: the objects a controller would have written at each
//! stage of a canary and a blue-green release (as in-memory values for the renderers and as
//! objects created in ramp-sim for the real binary), plus the cluster harness.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use ramp_api::analysis::AnalysisRun;
use ramp_api::rollout::Rollout;
use ramp_cli::plugin::render::RolloutFamily;
use ramp_sim::SimConfig;
use ramp_sim::testing::eventually;
use ramp_sim::tier::{TestCluster, real_cluster_dir, test_namespace};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

pub const CREATED: &str = "2026-11-22T10:00:00Z";
pub const STABLE_HASH: &str = "6c8f9b7d4";
pub const CANARY_HASH: &str = "7d9b5c6f8";
pub const BLUE_HASH: &str = "5f7c8d9b6";
pub const GREEN_HASH: &str = "8b6d4f7c5";

fn typed<T: DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).expect("fixture matches the type")
}

fn template(app: &str, image: &str, hash: Option<&str>) -> Value {
    let mut labels = json!({"app": app});
    if let Some(hash) = hash {
        labels["rollouts-pod-template-hash"] = json!(hash);
    }
    json!({
        "metadata": {"labels": labels},
        "spec": {"containers": [{"name": app, "image": image}]}
    })
}

/// A Rollout as a user applies it.
pub fn canary_rollout_manifest() -> Value {
    json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": 5,
            "selector": {"matchLabels": {"app": "web"}},
            "template": template("web", "registry.example/web:1.0", None),
            "strategy": {"canary": {"steps": [
                {"setWeight": 20},
                {"pause": {}},
                {"setWeight": 60},
                {"analysis": {"templates": [{"templateName": "success-rate"}]}}
            ]}}
        }
    })
}

pub fn blue_green_rollout_manifest() -> Value {
    json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "shop", "namespace": "default"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "shop"}},
            "template": template("shop", "registry.example/shop:blue", None),
            "strategy": {"blueGreen": {
                "activeService": "shop-active",
                "previewService": "shop-preview",
                "autoPromotionEnabled": false
            }}
        }
    })
}

/// One stage of a release: the rollout's spec image and status, and its children.
#[derive(Clone, Debug)]
pub struct Stage {
    pub image: &'static str,
    pub paused: bool,
    pub status: Value,
    pub replica_sets: Vec<ReplicaSetFixture>,
    pub analysis_runs: Vec<AnalysisRunFixture>,
}

#[derive(Clone, Debug)]
pub struct ReplicaSetFixture {
    pub app: &'static str,
    pub hash: &'static str,
    pub revision: i64,
    pub image: &'static str,
    pub replicas: i32,
    /// Pods that are running and ready (the rest are still creating).
    pub ready: i32,
    /// Restarts of the first pod.
    pub restarts: i32,
}

#[derive(Clone, Debug)]
pub struct AnalysisRunFixture {
    pub name: &'static str,
    pub hash: &'static str,
    pub revision: i64,
    pub phase: &'static str,
    pub successful: i32,
    pub failed: i32,
}

fn condition(type_: &str, status: &str, reason: &str, message: &str) -> Value {
    json!({
        "type": type_, "status": status, "reason": reason, "message": message,
        "lastUpdateTime": CREATED, "lastTransitionTime": CREATED
    })
}

fn rs(
    hash: &'static str,
    revision: i64,
    image: &'static str,
    replicas: i32,
    ready: i32,
) -> ReplicaSetFixture {
    ReplicaSetFixture {
        app: "web",
        hash,
        revision,
        image,
        replicas,
        ready,
        restarts: 0,
    }
}

/// The canary release of `web` from 1.0 to 2.0, as the controller leaves it at each stage.
pub mod canary {
    use super::*;

    pub fn stable() -> Stage {
        Stage {
            image: "registry.example/web:1.0",
            paused: false,
            status: json!({
                "observedGeneration": "1", "phase": "Healthy", "message": "",
                "currentPodHash": STABLE_HASH, "stableRS": STABLE_HASH, "currentStepIndex": 4,
                "replicas": 5, "updatedReplicas": 5, "readyReplicas": 5, "availableReplicas": 5,
                "conditions": [condition("Healthy", "True", "RolloutHealthy", "Rollout is healthy")]
            }),
            replica_sets: vec![rs(STABLE_HASH, 1, "registry.example/web:1.0", 5, 5)],
            analysis_runs: vec![],
        }
    }

    pub fn paused_at_step_1() -> Stage {
        let mut canary = rs(CANARY_HASH, 2, "registry.example/web:2.0", 1, 1);
        canary.restarts = 2;
        Stage {
            image: "registry.example/web:2.0",
            paused: false,
            status: json!({
                "observedGeneration": "2", "phase": "Paused", "message": "CanaryPauseStep",
                "currentPodHash": CANARY_HASH, "stableRS": STABLE_HASH, "currentStepIndex": 1,
                "controllerPause": true,
                "pauseConditions": [{"reason": "CanaryPauseStep", "startTime": CREATED}],
                "replicas": 5, "updatedReplicas": 1, "readyReplicas": 5, "availableReplicas": 5
            }),
            replica_sets: vec![canary, rs(STABLE_HASH, 1, "registry.example/web:1.0", 4, 4)],
            analysis_runs: vec![],
        }
    }

    pub fn analysing_at_step_3() -> Stage {
        Stage {
            image: "registry.example/web:2.0",
            paused: false,
            status: json!({
                "observedGeneration": "2", "phase": "Progressing",
                "message": "more replicas need to be updated",
                "currentPodHash": CANARY_HASH, "stableRS": STABLE_HASH, "currentStepIndex": 3,
                "replicas": 5, "updatedReplicas": 3, "readyReplicas": 5, "availableReplicas": 5,
                "canary": {"currentStepAnalysisRunStatus":
                    {"name": "web-7d9b5c6f8-2-3", "status": "Running"}}
            }),
            replica_sets: vec![
                rs(CANARY_HASH, 2, "registry.example/web:2.0", 3, 3),
                rs(STABLE_HASH, 1, "registry.example/web:1.0", 2, 2),
            ],
            analysis_runs: vec![AnalysisRunFixture {
                name: "web-7d9b5c6f8-2-3",
                hash: CANARY_HASH,
                revision: 2,
                phase: "Running",
                successful: 2,
                failed: 0,
            }],
        }
    }

    pub fn aborted() -> Stage {
        let message = "Rollout aborted update to revision 2: Metric \"success-rate\" assessed Failed due to failed (1) > failureLimit (0)";
        Stage {
            image: "registry.example/web:2.0",
            paused: false,
            status: json!({
                "observedGeneration": "2", "phase": "Degraded",
                "message": format!("RolloutAborted: {message}"),
                "abort": true, "abortedAt": CREATED,
                "currentPodHash": CANARY_HASH, "stableRS": STABLE_HASH, "currentStepIndex": 0,
                "replicas": 5, "updatedReplicas": 0, "readyReplicas": 5, "availableReplicas": 5,
                "conditions": [condition("Progressing", "False", "RolloutAborted", message)]
            }),
            replica_sets: vec![
                rs(CANARY_HASH, 2, "registry.example/web:2.0", 0, 0),
                rs(STABLE_HASH, 1, "registry.example/web:1.0", 5, 5),
            ],
            analysis_runs: vec![AnalysisRunFixture {
                name: "web-7d9b5c6f8-2-3",
                hash: CANARY_HASH,
                revision: 2,
                phase: "Failed",
                successful: 2,
                failed: 1,
            }],
        }
    }

    pub fn promoted() -> Stage {
        Stage {
            image: "registry.example/web:2.0",
            paused: false,
            status: json!({
                "observedGeneration": "2", "phase": "Healthy", "message": "",
                "currentPodHash": CANARY_HASH, "stableRS": CANARY_HASH, "currentStepIndex": 4,
                "replicas": 5, "updatedReplicas": 5, "readyReplicas": 5, "availableReplicas": 5
            }),
            replica_sets: vec![
                rs(CANARY_HASH, 2, "registry.example/web:2.0", 5, 5),
                rs(STABLE_HASH, 1, "registry.example/web:1.0", 0, 0),
            ],
            analysis_runs: vec![AnalysisRunFixture {
                name: "web-7d9b5c6f8-2-3",
                hash: CANARY_HASH,
                revision: 2,
                phase: "Successful",
                successful: 5,
                failed: 0,
            }],
        }
    }
}

/// The blue-green release of `shop` from blue to green.
pub mod blue_green {
    use super::*;

    fn shop(
        hash: &'static str,
        revision: i64,
        image: &'static str,
        replicas: i32,
    ) -> ReplicaSetFixture {
        ReplicaSetFixture {
            app: "shop",
            hash,
            revision,
            image,
            replicas,
            ready: replicas,
            restarts: 0,
        }
    }

    pub fn active_blue() -> Stage {
        Stage {
            image: "registry.example/shop:blue",
            paused: false,
            status: json!({
                "observedGeneration": "1", "phase": "Healthy", "message": "",
                "currentPodHash": BLUE_HASH, "stableRS": BLUE_HASH,
                "blueGreen": {"activeSelector": BLUE_HASH, "previewSelector": BLUE_HASH},
                "replicas": 2, "updatedReplicas": 2, "readyReplicas": 2, "availableReplicas": 2
            }),
            replica_sets: vec![shop(BLUE_HASH, 1, "registry.example/shop:blue", 2)],
            analysis_runs: vec![],
        }
    }

    pub fn green_in_preview() -> Stage {
        Stage {
            image: "registry.example/shop:green",
            paused: false,
            status: json!({
                "observedGeneration": "2", "phase": "Paused", "message": "BlueGreenPause",
                "currentPodHash": GREEN_HASH, "stableRS": BLUE_HASH, "controllerPause": true,
                "pauseConditions": [{"reason": "BlueGreenPause", "startTime": CREATED}],
                "blueGreen": {"activeSelector": BLUE_HASH, "previewSelector": GREEN_HASH},
                "replicas": 4, "updatedReplicas": 2, "readyReplicas": 2, "availableReplicas": 2
            }),
            replica_sets: vec![
                shop(GREEN_HASH, 2, "registry.example/shop:green", 2),
                shop(BLUE_HASH, 1, "registry.example/shop:blue", 2),
            ],
            analysis_runs: vec![],
        }
    }

    pub fn green_active() -> Stage {
        Stage {
            image: "registry.example/shop:green",
            paused: false,
            status: json!({
                "observedGeneration": "2", "phase": "Healthy", "message": "",
                "currentPodHash": GREEN_HASH, "stableRS": GREEN_HASH,
                "blueGreen": {"activeSelector": GREEN_HASH, "previewSelector": GREEN_HASH},
                "replicas": 2, "updatedReplicas": 2, "readyReplicas": 2, "availableReplicas": 2
            }),
            replica_sets: vec![
                shop(GREEN_HASH, 2, "registry.example/shop:green", 2),
                shop(BLUE_HASH, 1, "registry.example/shop:blue", 0),
            ],
            analysis_runs: vec![],
        }
    }
}

fn uid_of(name: &str) -> String {
    format!("uid-{name}")
}

fn owner(kind: &str, name: &str, uid: &str) -> Value {
    let api_version = if kind == "Rollout" {
        "argoproj.io/v1alpha1"
    } else {
        "apps/v1"
    };
    json!([{"apiVersion": api_version, "kind": kind, "name": name, "uid": uid,
            "controller": true, "blockOwnerDeletion": true}])
}

/// The rollout with the stage's spec image and status (no server involved).
pub fn rollout_at(manifest: &Value, stage: &Stage) -> Value {
    let mut rollout = manifest.clone();
    let app = rollout["metadata"]["name"].as_str().unwrap().to_owned();
    rollout["spec"]["template"] = template(&app, stage.image, None);
    if stage.paused {
        rollout["spec"]["paused"] = json!(true);
    }
    let generation: i64 = stage.status["observedGeneration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    rollout["metadata"]["generation"] = json!(generation);
    rollout["status"] = stage.status.clone();
    rollout
}

pub fn replica_set_value(
    rollout: &str,
    rollout_uid: &str,
    f: &ReplicaSetFixture,
    namespace: &str,
) -> Value {
    let name = format!("{rollout}-{}", f.hash);
    json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": name, "namespace": namespace, "creationTimestamp": CREATED,
            "uid": uid_of(&name),
            "labels": {"app": f.app, "rollouts-pod-template-hash": f.hash},
            "annotations": {"rollout.argoproj.io/revision": f.revision.to_string()},
            "ownerReferences": owner("Rollout", rollout, rollout_uid)
        },
        "spec": {
            "replicas": f.replicas,
            "selector": {"matchLabels": {"app": f.app, "rollouts-pod-template-hash": f.hash}},
            "template": template(f.app, f.image, Some(f.hash))
        }
    })
}

pub fn replica_set_status(f: &ReplicaSetFixture) -> Value {
    json!({"replicas": f.replicas, "readyReplicas": f.ready, "availableReplicas": f.ready,
           "observedGeneration": 1})
}

pub fn pod_values(
    rs_name: &str,
    rs_uid: &str,
    f: &ReplicaSetFixture,
    namespace: &str,
) -> Vec<(Value, Value)> {
    (0..f.replicas)
        .map(|i| {
            let name = format!("{rs_name}-p{i}");
            let ready = i < f.ready;
            let restarts = if i == 0 { f.restarts } else { 0 };
            let pod = json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {
                    "name": name, "namespace": namespace, "creationTimestamp": CREATED,
                    "uid": uid_of(&name),
                    "labels": {"app": f.app, "rollouts-pod-template-hash": f.hash},
                    "ownerReferences": owner("ReplicaSet", rs_name, rs_uid)
                },
                "spec": {"containers": [{"name": f.app, "image": f.image}]}
            });
            let state = if ready {
                json!({"running": {"startedAt": CREATED}})
            } else {
                json!({"waiting": {"reason": "ContainerCreating"}})
            };
            let status = json!({
                "phase": if ready { "Running" } else { "Pending" },
                "containerStatuses": [{"name": f.app, "image": f.image, "imageID": "",
                    "ready": ready, "restartCount": restarts, "state": state}]
            });
            (pod, status)
        })
        .collect()
}

pub fn analysis_run_value(
    rollout: &str,
    rollout_uid: &str,
    f: &AnalysisRunFixture,
    namespace: &str,
) -> Value {
    json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisRun",
        "metadata": {
            "name": f.name, "namespace": namespace, "creationTimestamp": CREATED,
            "uid": uid_of(f.name),
            "labels": {"rollouts-pod-template-hash": f.hash},
            "annotations": {"rollout.argoproj.io/revision": f.revision.to_string()},
            "ownerReferences": owner("Rollout", rollout, rollout_uid)
        },
        "spec": {"metrics": [{"name": "success-rate", "successCondition": "result[0] >= 0.95",
            "provider": {"prometheus": {"address": "http://prometheus:9090", "query": "up"}}}]},
        "status": {
            "phase": f.phase,
            "startedAt": CREATED,
            "metricResults": [{
                "name": "success-rate", "phase": f.phase, "count": f.successful + f.failed,
                "successful": f.successful, "failed": f.failed,
                "measurements": [{"phase": if f.failed > 0 { "Failed" } else { "Successful" },
                    "startedAt": CREATED, "finishedAt": CREATED,
                    "value": if f.failed > 0 { "[0.81]" } else { "[0.99]" }}]
            }],
            "runSummary": {"count": 1, "successful": i32::from(f.phase == "Successful"),
                "failed": i32::from(f.phase == "Failed")}
        }
    })
}

/// The stage as in-memory objects, for the renderers.
pub fn family_at(manifest: &Value, stage: &Stage) -> RolloutFamily {
    let mut rollout_value = rollout_at(manifest, stage);
    let name = rollout_value["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let uid = uid_of(&name);
    rollout_value["metadata"]["uid"] = json!(uid);
    rollout_value["metadata"]["creationTimestamp"] = json!(CREATED);
    let rollout: Rollout = typed(rollout_value);
    let mut replica_sets = Vec::new();
    let mut pods = Vec::new();
    for f in &stage.replica_sets {
        let mut rs = replica_set_value(&name, &uid, f, "default");
        rs["status"] = replica_set_status(f);
        let rs_name = rs["metadata"]["name"].as_str().unwrap().to_owned();
        for (mut pod, status) in pod_values(&rs_name, &uid_of(&rs_name), f, "default") {
            pod["status"] = status;
            pods.push(typed::<Pod>(pod));
        }
        replica_sets.push(typed::<ReplicaSet>(rs));
    }
    let runs = stage
        .analysis_runs
        .iter()
        .map(|f| typed::<AnalysisRun>(analysis_run_value(&name, &uid, f, "default")))
        .collect::<Vec<_>>();
    RolloutFamily::select(rollout, replica_sets, pods, runs)
}

/// A cluster of either tier with the argoproj.io CRDs installed and nothing acting on what the
/// test writes: ramp-sim's API server alone, or the test's namespace of the real control plane
/// with kube-controller-manager's ReplicaSet controller and the scheduler kept out of it
/// ([`Cluster::keep_controllers_out`]), so the objects stay as a stage leaves them.
pub struct Cluster {
    /// ramp-sim, or the real control plane when `RAMP_TEST_CLUSTER` names one.
    pub cluster: TestCluster,
    /// Cluster-scoped objects and namespaces this test made on the real tier, deleted with it.
    made: Vec<(&'static str, String)>,
}

const CRDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../crds");

/// The namespace the test works in: `default` on ramp-sim, a fresh one on the real tier.
pub fn ns() -> &'static str {
    test_namespace()
}

impl Cluster {
    pub async fn start() -> Cluster {
        Cluster::start_with(true).await
    }

    /// A cluster whose Rollout CRD has no status subresource (as very old installs had), so
    /// status patches must fall back to the main resource. The real tier's Rollout CRD is the
    /// one every test shares: a test that needs this skips there.
    pub async fn start_without_rollout_status_subresource() -> Cluster {
        Cluster::start_with(false).await
    }

    async fn start_with(rollout_status_subresource: bool) -> Cluster {
        // Never a stripped Rollout CRD on the real tier, where it would be every test's.
        let strip_status = !rollout_status_subresource && real_cluster_dir().is_none();
        let mut crds = Vec::new();
        for file in ["rollout-crd.yaml", "analysis-run-crd.yaml"] {
            let path = format!("{CRDS}/{file}");
            let text =
                std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
            let mut crd: CustomResourceDefinition =
                serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("parse {path}: {e}"));
            if strip_status && file == "rollout-crd.yaml" {
                for version in &mut crd.spec.versions {
                    if let Some(subresources) = version.subresources.as_mut() {
                        subresources.status = None;
                    }
                }
            }
            crds.push(crd);
        }
        // Boxed: the real tier's start is a large future for a test thread's stack.
        let tier = Box::pin(TestCluster::start(SimConfig::api_only(), crds))
            .await
            .expect("cluster starts with the CRDs");
        let mut cluster = Cluster {
            cluster: tier,
            made: Vec::new(),
        };
        if cluster.cluster.is_real() {
            cluster.keep_controllers_out(ns()).await;
        }
        cluster
    }

    /// On the real tier: keeps kube-controller-manager's ReplicaSet controller and the
    /// scheduler from writing to the pods and ReplicaSet statuses of `namespace` (a
    /// ValidatingAdmissionPolicy refusing their writes there), as ramp-sim's API server alone
    /// has neither. Otherwise the ReplicaSet controller would replace the stage's pods with
    /// its own and recount its statuses, and the scheduler would bind the pods to kwok's node,
    /// whose fake kubelet rewrites their statuses.
    async fn keep_controllers_out(&mut self, namespace: &str) {
        let name = format!("ramp-test-hands-off-{namespace}");
        let policy: ValidatingAdmissionPolicy = typed(json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": name},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {"resourceRules": [
                    {"apiGroups": [""], "apiVersions": ["v1"],
                     "operations": ["CREATE", "UPDATE", "DELETE"],
                     "resources": ["pods", "pods/status", "pods/binding"]},
                    {"apiGroups": ["apps"], "apiVersions": ["v1"],
                     "operations": ["UPDATE"], "resources": ["replicasets/status"]}
                ]},
                "validations": [{
                    "expression": "!(request.userInfo.username in ['system:serviceaccount:kube-system:replicaset-controller', 'system:kube-scheduler'])",
                    "message": "this test's objects stay as it wrote them"
                }]
            }
        }));
        let binding: ValidatingAdmissionPolicyBinding = typed(json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": name},
            "spec": {
                "policyName": name,
                "validationActions": ["Deny"],
                "matchResources": {"namespaceSelector": {"matchLabels":
                    {"kubernetes.io/metadata.name": namespace}}}
            }
        }));
        let client = self.cluster.client();
        Api::<ValidatingAdmissionPolicy>::all(client.clone())
            .create(&PostParams::default(), &policy)
            .await
            .expect("policy created");
        self.made.push(("validatingadmissionpolicy", name.clone()));
        Api::<ValidatingAdmissionPolicyBinding>::all(client.clone())
            .create(&PostParams::default(), &binding)
            .await
            .expect("policy binding created");
        self.made
            .push(("validatingadmissionpolicybinding", name.clone()));
        // The server enforces the policy once it has read both objects: until a dry-run pod
        // create as the ReplicaSet controller is refused, its writes could still pass.
        let mut config = self.cluster.client_config();
        config.auth_info.impersonate =
            Some("system:serviceaccount:kube-system:replicaset-controller".to_owned());
        let as_controller = kube::Client::try_from(config).expect("impersonating client");
        let pods = Api::<Pod>::namespaced(as_controller, namespace);
        let probe: Pod = typed(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "hands-off-probe", "namespace": namespace},
            "spec": {"containers": [{"name": "probe", "image": "probe"}]}
        }));
        let dry_run = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        eventually(
            &format!("the policy refusing the ReplicaSet controller in {namespace}"),
            20,
            || {
                let (pods, probe, dry_run) = (pods.clone(), probe.clone(), dry_run.clone());
                async move {
                    match pods.create(&dry_run, &probe).await {
                        Err(kube::Error::Api(status))
                            if status.message.contains("stay as it wrote them") =>
                        {
                            Some(())
                        }
                        _ => None,
                    }
                }
            },
        )
        .await;
    }

    /// On the real tier its context defaults to the test's namespace.
    pub fn kubeconfig(&self) -> String {
        self.cluster.kubeconfig_path().display().to_string()
    }

    /// The plugin binary with this cluster's kubeconfig.
    pub fn plugin(&self) -> assert_cmd::Command {
        let mut cmd = assert_cmd::Command::cargo_bin("kubectl-ramp").expect("binary built");
        cmd.arg("--kubeconfig").arg(self.kubeconfig());
        cmd.env_remove("KUBECONFIG").env("NO_COLOR", "1");
        cmd
    }

    /// A second namespace of this test (`team-b` on ramp-sim; on the real tier, which other
    /// tests share, the test's namespace with `-b` after it), with no controller acting in it.
    pub async fn second_namespace(&mut self) -> String {
        let name = if self.cluster.is_real() {
            format!("{}-b", ns())
        } else {
            "team-b".to_owned()
        };
        self.create_namespace(&name).await;
        if self.cluster.is_real() {
            self.made.push(("namespace", name.clone()));
            self.keep_controllers_out(&name).await;
        }
        name
    }

    pub async fn create_namespace(&self, name: &str) {
        let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(self.cluster.client());
        api.create(
            &PostParams::default(),
            &typed(json!({"metadata": {"name": name}})),
        )
        .await
        .expect("namespace created");
    }

    /// Creates the rollout (if missing) and everything of the stage, as a controller would
    /// have left it. Returns the rollout's uid.
    pub async fn apply_stage(&self, manifest: &Value, stage: &Stage, namespace: &str) -> String {
        // Boxed: a test awaits several stages, and their futures would overflow its stack.
        Box::pin(self.write_stage(manifest, stage, namespace)).await
    }

    async fn write_stage(&self, manifest: &Value, stage: &Stage, namespace: &str) -> String {
        let client = self.cluster.client();
        let rollouts: Api<Rollout> = Api::namespaced(client.clone(), namespace);
        let mut desired = rollout_at(manifest, stage);
        desired["metadata"]["namespace"] = json!(namespace);
        let name = desired["metadata"]["name"].as_str().unwrap().to_owned();
        let status = desired["status"].take();
        let desired_obj: Rollout = typed(desired.clone());
        let current = match rollouts.get_opt(&name).await.unwrap() {
            Some(mut existing) => {
                existing.spec = desired_obj.spec.clone();
                rollouts
                    .replace(&name, &PostParams::default(), &existing)
                    .await
                    .unwrap()
            }
            None => rollouts
                .create(&PostParams::default(), &desired_obj)
                .await
                .unwrap(),
        };
        let mut status = status;
        // The controller writes the generation it observed.
        status["observedGeneration"] = json!(current.metadata.generation.unwrap().to_string());
        self.set_rollout_status(namespace, &name, status).await;
        let uid = current.metadata.uid.clone().unwrap();

        let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), namespace);
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        for f in &stage.replica_sets {
            let mut value = replica_set_value(&name, &uid, f, namespace);
            value["metadata"].as_object_mut().unwrap().remove("uid");
            let rs_name = value["metadata"]["name"].as_str().unwrap().to_owned();
            let rs = match replica_sets.get_opt(&rs_name).await.unwrap() {
                Some(mut existing) => {
                    existing.spec.replicas = Some(f.replicas);
                    replica_sets
                        .replace(&rs_name, &PostParams::default(), &existing)
                        .await
                        .unwrap()
                }
                None => replica_sets
                    .create(&PostParams::default(), &typed(value))
                    .await
                    .unwrap(),
            };
            replace_status(&replica_sets, &rs_name, replica_set_status(f)).await;
            let rs_uid = rs.metadata.uid.clone().unwrap();
            // Pods beyond the desired count are gone, as the ReplicaSet controller would do.
            for existing in pods.list(&Default::default()).await.unwrap() {
                let pod_name = existing.metadata.name.clone().unwrap();
                let index: Option<i32> = pod_name
                    .strip_prefix(&format!("{rs_name}-p"))
                    .and_then(|i| i.parse().ok());
                if index.is_some_and(|i| i >= f.replicas) {
                    pods.delete(&pod_name, &Default::default()).await.unwrap();
                }
            }
            for (mut pod, status) in pod_values(&rs_name, &rs_uid, f, namespace) {
                pod["metadata"].as_object_mut().unwrap().remove("uid");
                let pod_name = pod["metadata"]["name"].as_str().unwrap().to_owned();
                if pods.get_opt(&pod_name).await.unwrap().is_none() {
                    pods.create(&PostParams::default(), &typed(pod))
                        .await
                        .unwrap();
                }
                replace_status(&pods, &pod_name, status).await;
            }
        }
        let runs: Api<AnalysisRun> = Api::namespaced(client, namespace);
        for f in &stage.analysis_runs {
            let mut value = analysis_run_value(&name, &uid, f, namespace);
            value["metadata"].as_object_mut().unwrap().remove("uid");
            match runs.get_opt(f.name).await.unwrap() {
                Some(mut existing) => {
                    existing.status = typed(value["status"].clone());
                    runs.replace(f.name, &PostParams::default(), &existing)
                        .await
                        .unwrap();
                }
                None => {
                    runs.create(&PostParams::default(), &typed(value))
                        .await
                        .unwrap();
                }
            }
        }
        uid
    }

    /// Replaces the rollout's whole status, as the controller's status writes do.
    pub async fn set_rollout_status(&self, namespace: &str, name: &str, status: Value) {
        let rollouts: Api<Rollout> = Api::namespaced(self.cluster.client(), namespace);
        replace_status(&rollouts, name, status).await;
    }

    pub async fn rollout(&self, namespace: &str, name: &str) -> Rollout {
        Api::<Rollout>::namespaced(self.cluster.client(), namespace)
            .get(name)
            .await
            .unwrap()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // As the test's namespace goes (see `TestCluster`): kubectl outlives the process, so
        // it asks for the deletions and nothing waits.
        for (kind, name) in self.made.iter().rev() {
            let _ = std::process::Command::new("kubectl")
                .arg("--kubeconfig")
                .arg(self.cluster.kubeconfig_path())
                .args(["delete", kind, name, "--wait=false", "--ignore-not-found"])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn();
        }
    }
}

async fn replace_status<K>(api: &Api<K>, name: &str, status: Value)
where
    K: Clone + DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let current = api.get(name).await.unwrap();
    let mut value = serde_json::to_value(&current).unwrap();
    value["status"] = status;
    let updated: K = serde_json::from_value(value).unwrap();
    api.replace_status(name, &PostParams::default(), &updated)
        .await
        .unwrap_or_else(|e| panic!("replace status of {name}: {e}"));
}

/// Replaces ages in the tree rows (`NAME ... KIND ... AGE`) with `Xs`, keeping the columns.
pub fn normalise_ages(text: &str) -> String {
    let age = regex::Regex::new(r"\b\d+[smhdy]( +|$)").unwrap();
    let mut in_tree = false;
    text.lines()
        .map(|line| {
            if line.starts_with("NAME ") && line.contains("KIND") {
                in_tree = true;
                return line.to_owned();
            }
            if !in_tree {
                return line.to_owned();
            }
            age.replace_all(line, |caps: &regex::Captures| {
                let whole = caps.get(0).unwrap().as_str();
                format!("{:<width$}", "Xs", width = whole.len().max(3))
            })
            .trim_end()
            .to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}
