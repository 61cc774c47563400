//! Least privilege, on either tier: the Rollout and AnalysisRun controllers run with a token of
//! the Helm chart's ServiceAccount, granted exactly the chart's rules (read from
//! charts/ramp/templates/rbac.yaml), through a canary with an analysis step and a blue-green
//! promotion, and leader election runs with the chart's Lease Role. No request may be denied,
//! and requests outside the rules must be. On ramp-sim the sim's RBAC decides and lists its
//! denials; on the real tier the token comes from a TokenRequest, the real RBAC authorizer
//! decides, and its denials are read from the audit log.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod canary_support;

use canary_support::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use pretty_assertions::assert_eq;
use ramp_api::rollout::Rollout;
use ramp_controller::analysis_run::AnalysisRunConfig;
use ramp_controller::context::ControllerConfig;
use ramp_controller::ops::leader::{Attempt, LeaderElector, LeaseConfig};
use ramp_controller::ops::scope::INSTANCE_ID_LABEL;
use ramp_controller::ops::{WatchScope, run_controllers};
use ramp_controller::traffic::IstioApiVersion;
use ramp_sim::audit::AuditDenials;
use ramp_sim::testing::Background;
use ramp_sim::{DeniedRequest, SimConfig};
use serde_json::{Value, json};
use std::time::Duration;

const CHART_RBAC: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../charts/ramp/templates/rbac.yaml"
);
/// The chart's release name; the ServiceAccount, the Role and the ClusterRole are named after
/// it, as charts/ramp/tests/test_chart.py renders it.
const RELEASE: &str = "ramp";

/// The rules of one `{{- define "<name>" -}}` block of the chart's rbac.yaml. The blocks are
/// plain YAML lists (the template logic is only around them), so they parse as they are.
fn chart_rules(define: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(CHART_RBAC).expect("chart rbac.yaml readable");
    let start_marker = format!("{{{{- define \"{define}\" -}}}}");
    let start = text.find(&start_marker).expect("define block present") + start_marker.len();
    let end = start + text[start..].find("{{- end }}").expect("define block ends");
    let block = &text[start..end];
    assert!(
        !block.contains("{{"),
        "the {define} block gained template logic; read it differently"
    );
    let rules: Value = serde_saphyr::from_str(block).expect("rules are YAML");
    let rules = rules.as_array().expect("rules are a list").clone();
    assert!(!rules.is_empty(), "{define} has no rules");
    rules
}

fn rbac_object(kind: &str, namespace: Option<&str>, name: &str, body: Value) -> Value {
    let mut object = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind,
        "metadata": {"name": name},
    });
    if let Some(ns) = namespace {
        object["metadata"]["namespace"] = json!(ns);
    }
    json_patch::merge(&mut object, &body);
    object
}

/// Where the chart is released and what it may not touch. On ramp-sim, where a test has the
/// cluster to itself, the release has a namespace of its own (`ramp-system`, as
/// charts/ramp/tests/test_chart.py renders it) and cluster-scoped objects the chart's names.
/// The real tier is shared by the tests running at once: the release goes into the test's own
/// namespace, and cluster-scoped names and the other namespace carry it, so none collide.
struct Release {
    /// The ServiceAccount's (and the namespaced Roles') namespace.
    namespace: String,
    /// Appended to the names of cluster-scoped objects: empty on ramp-sim.
    suffix: String,
    /// A namespace the chart's namespaced Role grants nothing in.
    elsewhere: String,
}

impl Release {
    fn of(cluster: &Cluster) -> Self {
        if cluster.sim.is_real() {
            Release {
                namespace: ns().to_owned(),
                suffix: format!("-{}", ns()),
                elsewhere: format!("{}-elsewhere", ns()),
            }
        } else {
            Release {
                namespace: "ramp-system".to_owned(),
                suffix: String::new(),
                elsewhere: "elsewhere".to_owned(),
            }
        }
    }

    fn cluster_scoped(&self, name: &str) -> String {
        format!("{name}{}", self.suffix)
    }

    fn user(&self) -> String {
        format!("system:serviceaccount:{}:{RELEASE}", self.namespace)
    }

    fn bound_to_chart_sa(&self, role_kind: &str, role: &str) -> Value {
        json!({
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": RELEASE, "namespace": self.namespace}],
        })
    }

    /// The chart's default rendering (cluster-wide): one ClusterRole with every rule, bound to
    /// the ServiceAccount by a ClusterRoleBinding.
    fn cluster_wide_rbac(&self) -> Vec<Value> {
        let mut rules = chart_rules("ramp.namespacedRules");
        rules.extend(chart_rules("ramp.clusterRules"));
        let name = self.cluster_scoped(RELEASE);
        vec![
            rbac_object("ClusterRole", None, &name, json!({ "rules": rules })),
            rbac_object(
                "ClusterRoleBinding",
                None,
                &name,
                self.bound_to_chart_sa("ClusterRole", &name),
            ),
        ]
    }

    /// The chart with `namespaced: true`: a Role and RoleBinding in the release namespace, and
    /// a ClusterRole only for the cluster-scoped ClusterAnalysisTemplates.
    fn namespaced_rbac(&self) -> Vec<Value> {
        let templates = self.cluster_scoped(&format!("{RELEASE}-cluster-templates"));
        let namespace = Some(self.namespace.as_str());
        vec![
            rbac_object(
                "Role",
                namespace,
                RELEASE,
                json!({ "rules": chart_rules("ramp.namespacedRules") }),
            ),
            rbac_object(
                "RoleBinding",
                namespace,
                RELEASE,
                self.bound_to_chart_sa("Role", RELEASE),
            ),
            rbac_object(
                "ClusterRole",
                None,
                &templates,
                json!({ "rules": chart_rules("ramp.clusterRules") }),
            ),
            rbac_object(
                "ClusterRoleBinding",
                None,
                &templates,
                self.bound_to_chart_sa("ClusterRole", &templates),
            ),
        ]
    }

    /// The chart's leader-election Role (charts/ramp/templates/rbac.yaml, `-leader-election`)
    /// as rendered with the default values. Written out here because its resourceNames comes
    /// from a template expression (`ramp.leaseName`); charts/ramp/tests/test_chart.py pins the
    /// same rules.
    fn leader_election_rbac(&self) -> Vec<Value> {
        let name = format!("{RELEASE}-leader-election");
        let namespace = Some(self.namespace.as_str());
        vec![
            rbac_object(
                "Role",
                namespace,
                &name,
                json!({"rules": [
                    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
                    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                     "resourceNames": [LeaseConfig::lease_name(None)], "verbs": ["get", "update"]},
                ]}),
            ),
            rbac_object(
                "RoleBinding",
                namespace,
                &name,
                self.bound_to_chart_sa("Role", &name),
            ),
        ]
    }
}

/// What a test created beyond its namespace on the real tier (cluster-scoped objects, other
/// namespaces): deleted when the test ends, pass or fail. kubectl asks, as the process may end
/// before a deletion made from here is answered. Nothing to do on ramp-sim.
struct Leftovers {
    kubeconfig: Option<std::path::PathBuf>,
    objects: Vec<String>,
}

impl Leftovers {
    fn of(cluster: &Cluster) -> Self {
        Leftovers {
            kubeconfig: cluster
                .sim
                .is_real()
                .then(|| cluster.sim.kubeconfig_path().to_owned()),
            objects: Vec::new(),
        }
    }
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        let Some(kubeconfig) = &self.kubeconfig else {
            return;
        };
        if self.objects.is_empty() {
            return;
        }
        let _ = std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("delete")
            .args(&self.objects)
            .args(["--wait=false", "--ignore-not-found"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

async fn create_as_admin(cluster: &Cluster, leftovers: &mut Leftovers, objects: Vec<Value>) {
    for object in objects {
        let kind = object["kind"].as_str().unwrap().to_owned();
        let plural = format!("{}s", kind.to_lowercase());
        let resource = kube::api::ApiResource {
            group: "rbac.authorization.k8s.io".into(),
            version: "v1".into(),
            api_version: "rbac.authorization.k8s.io/v1".into(),
            kind,
            plural,
        };
        let object: kube::api::DynamicObject = serde_json::from_value(object).unwrap();
        let api: Api<kube::api::DynamicObject> = match object.metadata.namespace.as_deref() {
            Some(ns) => Api::namespaced_with(cluster.client.clone(), ns, &resource),
            None => {
                let name = object.metadata.name.clone().unwrap();
                leftovers.objects.push(format!(
                    "{}.rbac.authorization.k8s.io/{name}",
                    resource.plural
                ));
                Api::all_with(cluster.client.clone(), &resource)
            }
        };
        api.create(&PostParams::default(), &object)
            .await
            .expect("RBAC object created");
    }
}

/// Creates `name` unless it is the test's own namespace, which the cluster already has.
async fn create_namespace(cluster: &Cluster, leftovers: &mut Leftovers, name: &str) {
    if name == ns() {
        return;
    }
    let namespace = serde_json::from_value(
        json!({"metadata": {"name": name, "labels": {"ramp.dev/test": "true"}}}),
    )
    .unwrap();
    leftovers.objects.push(format!("namespace/{name}"));
    Api::<k8s_openapi::api::core::v1::Namespace>::all(cluster.client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .expect("namespace created");
}

async fn rbac_cluster() -> Cluster {
    Cluster::start_with(SimConfig {
        traffic_enabled: false,
        rbac: true,
        ..SimConfig::default()
    })
    .await
}

/// A client authenticated as the chart's ServiceAccount, which is created first. On ramp-sim a
/// token the sim issues; on the real tier a token from the TokenRequest API, sent to the real
/// server (verified with the kubeconfig's CA) instead of the admin's client certificate.
async fn chart_service_account_client(
    cluster: &Cluster,
    leftovers: &mut Leftovers,
    release: &Release,
) -> kube::Client {
    create_namespace(cluster, leftovers, &release.namespace).await;
    let accounts = Api::<ServiceAccount>::namespaced(cluster.client.clone(), &release.namespace);
    let account = serde_json::from_value(json!({"metadata": {"name": RELEASE}})).unwrap();
    accounts
        .create(&PostParams::default(), &account)
        .await
        .expect("ServiceAccount created");
    if let Some(sim) = cluster.sim.sim() {
        return sim
            .service_account_client(&release.namespace, RELEASE)
            .unwrap();
    }
    let request: TokenRequest =
        serde_json::from_value(json!({"spec": {"audiences": [], "expirationSeconds": 3600}}))
            .unwrap();
    let issued = accounts
        .create_token_request(RELEASE, &PostParams::default(), &request)
        .await
        .expect("a token for the chart's ServiceAccount");
    let token = issued.status.expect("TokenRequest status").token;
    let mut config = cluster.sim.client_config();
    config.default_namespace = release.namespace.clone();
    config.auth_info = serde_json::from_value(json!({ "token": token })).unwrap();
    kube::Client::try_from(config).unwrap()
}

/// The requests refused to the chart's ServiceAccount: the sim's own list, or the real
/// authorizer's decisions from the audit log (followed from before the account existed).
enum Denials<'a> {
    Sim(&'a ramp_sim::SimHandle),
    Audit(AuditDenials),
}

impl<'a> Denials<'a> {
    fn follow(cluster: &'a Cluster, release: &Release) -> Self {
        match (cluster.sim.sim(), cluster.sim.real_dir()) {
            (Some(sim), _) => Denials::Sim(sim),
            (None, Some(dir)) => Denials::Audit(AuditDenials::follow(
                &dir.join("audit.log"),
                &release.user(),
            )),
            (None, None) => unreachable!("a cluster is on one tier or the other"),
        }
    }

    /// The denials so far, once the audit log has caught up with what the client saw.
    fn settled(&self, user: &str) -> Vec<DeniedRequest> {
        match self {
            Denials::Sim(sim) => sim
                .denied_requests()
                .into_iter()
                .filter(|d| d.user == user)
                .collect(),
            Denials::Audit(audit) => audit.settled(Duration::from_secs(3)),
        }
    }
}

/// A denial as both tiers report it: verb, group, resource, subresource, namespace, name.
type Refused = (
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn refused(denied: &[DeniedRequest]) -> Vec<Refused> {
    denied
        .iter()
        .map(|d| {
            (
                d.verb.to_string(),
                d.group.clone(),
                d.resource.clone(),
                d.subresource.clone(),
                d.namespace.clone(),
                d.name.clone(),
            )
        })
        .collect()
}

fn refusal(
    verb: &str,
    group: &str,
    resource: &str,
    namespace: Option<&str>,
    name: Option<&str>,
) -> Refused {
    (
        verb.to_owned(),
        group.to_owned(),
        resource.to_owned(),
        None,
        namespace.map(str::to_owned),
        name.map(str::to_owned),
    )
}

/// Both controllers in-process with `client`, watching `scope`, with second-scale backoffs.
fn start_chart_controllers(client: kube::Client, scope: WatchScope) -> Background {
    let runs = AnalysisRunConfig {
        namespace: scope.namespace.clone(),
        instance_id: scope.instance_id.clone(),
        backoff_min: Duration::from_millis(200),
        backoff_max: Duration::from_secs(2),
        ..AnalysisRunConfig::default()
    };
    let rollouts = ControllerConfig {
        concurrency: 4,
        backoff_min: Duration::from_millis(200),
        backoff_max: Duration::from_secs(2),
        invalid_spec_recheck: Duration::from_secs(2),
        istio_version: IstioApiVersion::V1alpha3,
        scope,
        ..ControllerConfig::default()
    };
    Background::spawn(|shutdown| run_controllers(client, rollouts, runs, shutdown))
}

/// A rollout manifest labelled for controller instance `instance`, when there is one.
fn for_instance(mut manifest: Value, instance: Option<&str>) -> Value {
    if let Some(id) = instance {
        manifest["metadata"]["labels"] = json!({ INSTANCE_ID_LABEL: id });
    }
    manifest
}

/// A canary whose second step is an analysis against an in-test web endpoint answering ok,
/// taken from v1 to v2; the AnalysisRun must succeed for the rollout to become Healthy.
async fn canary_with_analysis(cluster: &Cluster, instance: Option<&str>) {
    let health = Health::new(true);
    let url = health_endpoint(health.clone()).await;
    cluster.create_istio_objects().await;
    cluster.create_smoke_template().await;
    let canary = json!({
        "canaryService": "web-canary",
        "stableService": "web-stable",
        "scaleDownDelaySeconds": 1,
        "trafficRouting": {"istio": {"virtualService": {"name": "web-vsvc", "routes": ["primary"]}}},
        "steps": [
            {"setWeight": 20},
            {"analysis": {"templates": [{"templateName": "smoke"}], "args": [{"name": "url", "value": url}]}},
            {"setWeight": 60}
        ]
    });
    cluster
        .create_rollout(for_instance(rollout_manifest("web", 3, canary), instance))
        .await;
    cluster.wait_healthy("web", 30).await;
    cluster.set_image("web", "web:v2").await;
    let v2 = cluster.wait_healthy("web", 40).await;
    let hash = v2.status.unwrap().current_pod_hash.unwrap();
    let runs = Api::<ramp_api::analysis::AnalysisRun>::namespaced(cluster.client.clone(), ns())
        .list(&ListParams::default())
        .await
        .unwrap();
    let phases: Vec<(String, String)> = runs
        .items
        .iter()
        .map(|r| {
            (
                r.metadata.name.clone().unwrap(),
                r.status.clone().unwrap_or_default().phase,
            )
        })
        .collect();
    assert_eq!(
        phases,
        vec![(format!("web-{hash}-2-1"), "Successful".to_owned())]
    );
}

/// A blue-green rollout `bg` taken to v2 through a manual promotion.
async fn blue_green_promotion(cluster: &Cluster, instance: Option<&str>) {
    cluster
        .create_services(&["bg-active", "bg-preview"], "bg")
        .await;
    let mut manifest = rollout_manifest("bg", 2, json!(null));
    manifest["spec"]["strategy"] = json!({"blueGreen": {
        "activeService": "bg-active", "previewService": "bg-preview",
        "autoPromotionEnabled": false, "scaleDownDelaySeconds": 1
    }});
    cluster
        .create_rollout(for_instance(manifest, instance))
        .await;
    cluster.wait_healthy("bg", 30).await;
    cluster.set_image("bg", "web:v2").await;
    let paused = |r: &Rollout| {
        r.status.as_ref().is_some_and(|s| {
            s.has_pause_conditions()
                && s.current_pod_hash.is_some()
                && s.blue_green
                    .as_ref()
                    .and_then(|b| b.preview_selector.as_ref())
                    == s.current_pod_hash.as_ref()
        })
    };
    cluster
        .wait_rollout("bg", "v2 paused for promotion", 30, paused)
        .await;
    cluster
        .patch_status("bg", json!({"pauseConditions": null}))
        .await;
    let promoted = cluster.wait_healthy("bg", 30).await;
    let status = promoted.status.unwrap();
    assert_eq!(
        status.blue_green.unwrap().active_selector,
        status.current_pod_hash
    );
}

/// When a wait fails, the denials are usually why: print them with the panic.
struct DenialsOnPanic<'a>(&'a Denials<'a>, String);

impl Drop for DenialsOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "requests denied so far: {:#?}",
                describe(&self.0.settled(&self.1))
            );
        }
    }
}

fn describe(denied: &[DeniedRequest]) -> Vec<String> {
    denied
        .iter()
        .map(|d| format!("{} {}: {}", d.verb, d.resource, d.message))
        .collect()
}

fn assert_nothing_denied(cluster: &Cluster, denials: &Denials, release: &Release) {
    let denied = denials.settled(&release.user());
    assert!(
        denied.is_empty(),
        "the chart's rules denied: {:#?}",
        describe(&denied)
    );
    let refused_writes: Vec<String> = cluster
        .sim
        .request_log()
        .since_settled(0, Duration::from_secs(2))
        .iter()
        .filter(|w| w.code == 401 || w.code == 403)
        .map(|w| w.summary())
        .collect();
    assert_eq!(refused_writes, Vec::<String>::new());
}

fn forbidden_message(result: Result<impl std::fmt::Debug, kube::Error>) -> String {
    match result {
        Err(kube::Error::Api(status)) if status.code == 403 => status.message,
        other => panic!("expected 403 Forbidden, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_cluster_role_runs_canary_analysis_and_blue_green_without_a_denial() {
    let cluster = rbac_cluster().await;
    let release = Release::of(&cluster);
    let mut leftovers = Leftovers::of(&cluster);
    let denials = Denials::follow(&cluster, &release);
    let controller_client = chart_service_account_client(&cluster, &mut leftovers, &release).await;
    create_as_admin(&cluster, &mut leftovers, release.cluster_wide_rbac()).await;
    // Cluster-wide, as the chart runs it. The real tier's other tests share the cluster, so
    // this controller takes only the rollouts labelled with its instance id.
    let instance = ns();
    let controllers = start_chart_controllers(
        controller_client.clone(),
        WatchScope {
            namespace: None,
            instance_id: Some(instance.to_owned()),
        },
    );

    let _report = DenialsOnPanic(&denials, release.user());
    canary_with_analysis(&cluster, Some(instance)).await;
    blue_green_promotion(&cluster, Some(instance)).await;
    assert_nothing_denied(&cluster, &denials, &release);

    // Outside the rules: Secrets are only read, never deleted or listed; Deployments are not
    // Ramp's to write.
    let secret: Secret = serde_json::from_value(
        json!({"metadata": {"name": "db", "namespace": ns()}, "stringData": {"password": "x"}}),
    )
    .unwrap();
    let secrets = Api::<Secret>::namespaced(controller_client.clone(), ns());
    Api::<Secret>::namespaced(cluster.client.clone(), ns())
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    assert!(secrets.get("db").await.is_ok());
    assert_eq!(
        forbidden_message(secrets.delete("db", &DeleteParams::default()).await),
        format!(
            "secrets \"db\" is forbidden: User \"{}\" cannot delete resource \"secrets\" in API group \"\" in the namespace \"{}\"",
            release.user(),
            ns()
        )
    );
    forbidden_message(secrets.list(&ListParams::default()).await);
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "not-ramps"},
        "spec": {
            "selector": {"matchLabels": {"app": "x"}},
            "template": {"metadata": {"labels": {"app": "x"}},
                         "spec": {"containers": [{"name": "x", "image": "x"}]}}
        }
    }))
    .unwrap();
    forbidden_message(
        Api::<Deployment>::namespaced(controller_client.clone(), ns())
            .create(&PostParams::default(), &deployment)
            .await,
    );
    let denied = denials.settled(&release.user());
    assert_eq!(
        refused(&denied),
        vec![
            refusal("delete", "", "secrets", Some(ns()), Some("db")),
            refusal("list", "", "secrets", Some(ns()), None),
            refusal("create", "apps", "deployments", Some(ns()), None),
        ],
        "{:#?}",
        describe(&denied)
    );

    controllers.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_namespaced_role_runs_canary_analysis_and_blue_green_and_grants_nothing_elsewhere()
 {
    let cluster = rbac_cluster().await;
    // Released into the rollouts' namespace with `namespaced: true`.
    let release = Release {
        namespace: ns().to_owned(),
        ..Release::of(&cluster)
    };
    let mut leftovers = Leftovers::of(&cluster);
    let denials = Denials::follow(&cluster, &release);
    let controller_client = chart_service_account_client(&cluster, &mut leftovers, &release).await;
    create_as_admin(&cluster, &mut leftovers, release.namespaced_rbac()).await;
    create_namespace(&cluster, &mut leftovers, &release.elsewhere).await;
    let controllers = start_chart_controllers(
        controller_client.clone(),
        WatchScope {
            namespace: Some(ns().to_owned()),
            instance_id: None,
        },
    );

    let _report = DenialsOnPanic(&denials, release.user());
    canary_with_analysis(&cluster, None).await;
    blue_green_promotion(&cluster, None).await;
    assert_nothing_denied(&cluster, &denials, &release);

    // The same requests the controller made at home are refused in another namespace, and
    // cluster-wide.
    let elsewhere = Api::<Rollout>::namespaced(controller_client.clone(), &release.elsewhere);
    assert_eq!(
        forbidden_message(elsewhere.list(&ListParams::default()).await),
        format!(
            "rollouts.argoproj.io is forbidden: User \"{}\" cannot list resource \"rollouts\" in API group \"argoproj.io\" in the namespace \"{}\"",
            release.user(),
            release.elsewhere
        )
    );
    forbidden_message(
        Api::<Rollout>::all(controller_client.clone())
            .list(&ListParams::default())
            .await,
    );
    forbidden_message(
        Api::<k8s_openapi::api::apps::v1::ReplicaSet>::namespaced(
            controller_client,
            &release.elsewhere,
        )
        .list(&ListParams::default())
        .await,
    );
    let denied = denials.settled(&release.user());
    assert_eq!(
        refused(&denied),
        vec![
            refusal(
                "list",
                "argoproj.io",
                "rollouts",
                Some(&release.elsewhere),
                None
            ),
            refusal("list", "argoproj.io", "rollouts", None, None),
            refusal(
                "list",
                "apps",
                "replicasets",
                Some(&release.elsewhere),
                None
            ),
        ],
        "{:#?}",
        describe(&denied)
    );

    controllers.stop().await;
}

fn lease_config(namespace: &str, name: String, identity: &str) -> LeaseConfig {
    LeaseConfig {
        namespace: namespace.to_owned(),
        name,
        identity: identity.to_owned(),
        lease_duration: Duration::from_secs(2),
        renew_deadline: Duration::from_secs(1),
        retry_period: Duration::from_millis(200),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_leader_election_role_covers_acquire_renew_handover_and_only_that_lease() {
    let cluster = rbac_cluster().await;
    let release = Release::of(&cluster);
    let mut leftovers = Leftovers::of(&cluster);
    let denials = Denials::follow(&cluster, &release);
    let client = chart_service_account_client(&cluster, &mut leftovers, &release).await;
    create_as_admin(&cluster, &mut leftovers, release.leader_election_rbac()).await;
    create_namespace(&cluster, &mut leftovers, &release.elsewhere).await;
    let home = release.namespace.as_str();
    let upstream_lease = || LeaseConfig::lease_name(None);
    let mut a =
        LeaderElector::new(client.clone(), lease_config(home, upstream_lease(), "a")).unwrap();
    let mut b =
        LeaderElector::new(client.clone(), lease_config(home, upstream_lease(), "b")).unwrap();

    // Created by the first leader, seen held by the standby, renewed, released and taken over.
    assert_eq!(a.try_acquire_or_renew().await.unwrap(), Attempt::Held);
    assert_eq!(
        b.try_acquire_or_renew().await.unwrap(),
        Attempt::HeldBy("a".to_owned())
    );
    assert_eq!(a.try_acquire_or_renew().await.unwrap(), Attempt::Held);
    a.release().await.unwrap();
    assert_eq!(b.try_acquire_or_renew().await.unwrap(), Attempt::Held);
    assert_nothing_denied(&cluster, &denials, &release);

    // Another instance's lease, or the same lease elsewhere, is out of reach.
    let blue = LeaseConfig::lease_name(Some("blue"));
    let mut other_instance =
        LeaderElector::new(client.clone(), lease_config(home, blue.clone(), "c")).unwrap();
    assert!(other_instance.try_acquire_or_renew().await.is_err());
    let mut elsewhere = LeaderElector::new(
        client,
        lease_config(&release.elsewhere, upstream_lease(), "d"),
    )
    .unwrap();
    assert!(elsewhere.try_acquire_or_renew().await.is_err());
    let denied = denials.settled(&release.user());
    let leases = "coordination.k8s.io";
    assert_eq!(
        refused(&denied),
        vec![
            refusal("get", leases, "leases", Some(home), Some(&blue)),
            refusal(
                "get",
                leases,
                "leases",
                Some(&release.elsewhere),
                Some(&upstream_lease())
            ),
        ],
        "{:#?}",
        describe(&denied)
    );
}
