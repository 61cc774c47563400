//! Least privilege proven on ramp-sim with RBAC on: the Rollout and AnalysisRun controllers run
//! with a token of the Helm chart's ServiceAccount, granted exactly the chart's rules (read from
//! charts/ramp/templates/rbac.yaml), through a canary with an analysis step and a blue-green
//! promotion, and leader election runs with the chart's Lease Role. No request may be denied,
//! and requests outside the rules must be.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod canary_support;

use canary_support::*;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use pretty_assertions::assert_eq;
use ramp_api::analysis::AnalysisTemplate;
use ramp_api::rollout::Rollout;
use ramp_controller::ops::leader::{Attempt, LeaderElector, LeaseConfig};
use ramp_sim::{DeniedRequest, SimConfig};
use serde_json::{Value, json};
use std::time::Duration;

const CHART_RBAC: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../charts/ramp/templates/rbac.yaml"
);
/// The chart's release name and namespace as charts/ramp/tests/test_chart.py renders it; the
/// ServiceAccount is named after the release.
const RELEASE: &str = "ramp";
const RELEASE_NAMESPACE: &str = "ramp-system";

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

fn bound_to_chart_sa(role_kind: &str, role: &str) -> Value {
    json!({
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": RELEASE, "namespace": RELEASE_NAMESPACE}],
    })
}

/// The chart's default rendering (cluster-wide): one ClusterRole with every rule, bound to the
/// ServiceAccount by a ClusterRoleBinding.
fn cluster_wide_rbac() -> Vec<Value> {
    let mut rules = chart_rules("ramp.namespacedRules");
    rules.extend(chart_rules("ramp.clusterRules"));
    vec![
        rbac_object("ClusterRole", None, RELEASE, json!({ "rules": rules })),
        rbac_object(
            "ClusterRoleBinding",
            None,
            RELEASE,
            bound_to_chart_sa("ClusterRole", RELEASE),
        ),
    ]
}

/// The chart with `namespaced: true` released into `namespace`: a Role and RoleBinding there,
/// and a ClusterRole only for the cluster-scoped ClusterAnalysisTemplates.
fn namespaced_rbac(namespace: &str) -> Vec<Value> {
    let templates = format!("{RELEASE}-cluster-templates");
    let subject = |role_kind: &str, role: &str| {
        let mut body = bound_to_chart_sa(role_kind, role);
        body["subjects"][0]["namespace"] = json!(namespace);
        body
    };
    vec![
        rbac_object(
            "Role",
            Some(namespace),
            RELEASE,
            json!({ "rules": chart_rules("ramp.namespacedRules") }),
        ),
        rbac_object(
            "RoleBinding",
            Some(namespace),
            RELEASE,
            subject("Role", RELEASE),
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
            subject("ClusterRole", &templates),
        ),
    ]
}

async fn create_as_admin(cluster: &Cluster, objects: Vec<Value>) {
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
            None => Api::all_with(cluster.client.clone(), &resource),
        };
        api.create(&PostParams::default(), &object)
            .await
            .expect("RBAC object created");
    }
}

async fn create_namespace(cluster: &Cluster, name: &str) {
    let namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
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

/// A canary whose second step is an analysis against an in-test web endpoint answering ok,
/// taken from v1 to v2; the AnalysisRun must succeed for the rollout to become Healthy.
async fn canary_with_analysis(cluster: &Cluster) {
    let health = Health::new(true);
    let url = health_endpoint(health.clone()).await;
    cluster
        .create_services(&["web-stable", "web-canary"], "web")
        .await;
    cluster
        .create_virtual_service("web-vsvc", "web-stable", "web-canary")
        .await;
    let template: AnalysisTemplate = serde_json::from_value(json!({
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
    Api::<AnalysisTemplate>::namespaced(cluster.client.clone(), ns())
        .create(&PostParams::default(), &template)
        .await
        .expect("template created");
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
        .create_rollout(rollout_manifest("web", 3, canary))
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
async fn blue_green_promotion(cluster: &Cluster) {
    cluster
        .create_services(&["bg-active", "bg-preview"], "bg")
        .await;
    let mut manifest = rollout_manifest("bg", 2, json!(null));
    manifest["spec"]["strategy"] = json!({"blueGreen": {
        "activeService": "bg-active", "previewService": "bg-preview",
        "autoPromotionEnabled": false, "scaleDownDelaySeconds": 1
    }});
    cluster.create_rollout(manifest).await;
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
struct DenialsOnPanic<'a>(&'a ramp_sim::SimHandle);

impl Drop for DenialsOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "requests denied so far: {:#?}",
                describe(&self.0.denied_requests())
            );
        }
    }
}

fn describe(denied: &[DeniedRequest]) -> Vec<String> {
    denied.iter().map(|d| d.message.clone()).collect()
}

fn assert_nothing_denied(cluster: &Cluster) {
    let denied = cluster
        .sim
        .sim()
        .expect("RBAC is checked on ramp-sim")
        .denied_requests();
    assert!(
        denied.is_empty(),
        "the chart's rules denied: {:#?}",
        describe(&denied)
    );
    let refused_writes: Vec<String> = cluster
        .sim
        .request_log()
        .since_settled(0, std::time::Duration::from_secs(2))
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
    if ramp_sim::tier::skip_on_real_tier(
        &cluster.sim,
        "the chart's RBAC on the real server is tested by charts/ramp/tests",
    ) {
        return;
    }
    create_namespace(&cluster, RELEASE_NAMESPACE).await;
    create_as_admin(&cluster, cluster_wide_rbac()).await;
    let controller_client = cluster
        .sim
        .sim()
        .expect("RBAC is checked on ramp-sim")
        .service_account_client(RELEASE_NAMESPACE, RELEASE)
        .unwrap();
    let controllers = start_controllers(controller_client.clone(), None);

    let _report = DenialsOnPanic(cluster.sim.sim().expect("RBAC is checked on ramp-sim"));
    canary_with_analysis(&cluster).await;
    blue_green_promotion(&cluster).await;
    assert_nothing_denied(&cluster);

    // Outside the rules: Secrets are only read, never deleted or listed.
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
        "secrets \"db\" is forbidden: User \"system:serviceaccount:ramp-system:ramp\" cannot delete resource \"secrets\" in API group \"\" in the namespace \"default\""
    );
    forbidden_message(secrets.list(&ListParams::default()).await);
    let denied = cluster
        .sim
        .sim()
        .expect("RBAC is checked on ramp-sim")
        .denied_requests();
    assert_eq!(denied.len(), 2, "{:#?}", describe(&denied));

    controllers.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_namespaced_role_runs_canary_analysis_and_blue_green_and_grants_nothing_elsewhere()
 {
    let cluster = rbac_cluster().await;
    if ramp_sim::tier::skip_on_real_tier(
        &cluster.sim,
        "the chart's RBAC on the real server is tested by charts/ramp/tests",
    ) {
        return;
    }
    // Released into the rollouts' namespace with `namespaced: true`.
    create_as_admin(&cluster, namespaced_rbac(ns())).await;
    create_namespace(&cluster, "elsewhere").await;
    let controller_client = cluster
        .sim
        .sim()
        .expect("RBAC is checked on ramp-sim")
        .service_account_client(ns(), RELEASE)
        .unwrap();
    let controllers = start_controllers(controller_client.clone(), Some(ns()));

    let _report = DenialsOnPanic(cluster.sim.sim().expect("RBAC is checked on ramp-sim"));
    canary_with_analysis(&cluster).await;
    blue_green_promotion(&cluster).await;
    assert_nothing_denied(&cluster);

    // The same requests the controller made at home are refused in another namespace, and
    // cluster-wide.
    let elsewhere = Api::<Rollout>::namespaced(controller_client.clone(), "elsewhere");
    assert_eq!(
        forbidden_message(elsewhere.list(&ListParams::default()).await),
        "rollouts.argoproj.io is forbidden: User \"system:serviceaccount:default:ramp\" cannot list resource \"rollouts\" in API group \"argoproj.io\" in the namespace \"elsewhere\""
    );
    forbidden_message(
        Api::<Rollout>::all(controller_client.clone())
            .list(&ListParams::default())
            .await,
    );
    forbidden_message(
        Api::<k8s_openapi::api::apps::v1::ReplicaSet>::namespaced(controller_client, "elsewhere")
            .list(&ListParams::default())
            .await,
    );

    controllers.stop().await;
}

/// The chart's leader-election Role (charts/ramp/templates/rbac.yaml, `-leader-election`) as
/// rendered with the default values. Written out here because its resourceNames comes from a
/// template expression (`ramp.leaseName`); charts/ramp/tests/test_chart.py pins the same rules.
fn leader_election_rbac() -> Vec<Value> {
    let name = format!("{RELEASE}-leader-election");
    vec![
        rbac_object(
            "Role",
            Some(RELEASE_NAMESPACE),
            &name,
            json!({"rules": [
                {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
                {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                 "resourceNames": [LeaseConfig::lease_name(None)], "verbs": ["get", "update"]},
            ]}),
        ),
        rbac_object(
            "RoleBinding",
            Some(RELEASE_NAMESPACE),
            &name,
            bound_to_chart_sa("Role", &name),
        ),
    ]
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
    if ramp_sim::tier::skip_on_real_tier(
        &cluster.sim,
        "the chart's RBAC on the real server is tested by charts/ramp/tests",
    ) {
        return;
    }
    create_namespace(&cluster, RELEASE_NAMESPACE).await;
    create_as_admin(&cluster, leader_election_rbac()).await;
    let client = || {
        cluster
            .sim
            .sim()
            .expect("RBAC is checked on ramp-sim")
            .service_account_client(RELEASE_NAMESPACE, RELEASE)
            .unwrap()
    };
    let upstream_lease = || LeaseConfig::lease_name(None);
    let mut a = LeaderElector::new(
        client(),
        lease_config(RELEASE_NAMESPACE, upstream_lease(), "a"),
    )
    .unwrap();
    let mut b = LeaderElector::new(
        client(),
        lease_config(RELEASE_NAMESPACE, upstream_lease(), "b"),
    )
    .unwrap();

    // Created by the first leader, seen held by the standby, renewed, released and taken over.
    assert_eq!(a.try_acquire_or_renew().await.unwrap(), Attempt::Held);
    assert_eq!(
        b.try_acquire_or_renew().await.unwrap(),
        Attempt::HeldBy("a".to_owned())
    );
    assert_eq!(a.try_acquire_or_renew().await.unwrap(), Attempt::Held);
    a.release().await.unwrap();
    assert_eq!(b.try_acquire_or_renew().await.unwrap(), Attempt::Held);
    assert_nothing_denied(&cluster);

    // Another instance's lease, or the same lease elsewhere, is out of reach.
    let mut other_instance = LeaderElector::new(
        client(),
        lease_config(
            RELEASE_NAMESPACE,
            LeaseConfig::lease_name(Some("blue")),
            "c",
        ),
    )
    .unwrap();
    assert!(other_instance.try_acquire_or_renew().await.is_err());
    let mut elsewhere =
        LeaderElector::new(client(), lease_config(ns(), upstream_lease(), "d")).unwrap();
    assert!(elsewhere.try_acquire_or_renew().await.is_err());
    let denied: Vec<(String, String)> = cluster
        .sim
        .sim()
        .expect("RBAC is checked on ramp-sim")
        .denied_requests()
        .into_iter()
        .map(|d| (d.verb.to_string(), d.namespace.unwrap_or_default()))
        .collect();
    assert_eq!(
        denied,
        vec![
            ("get".to_owned(), RELEASE_NAMESPACE.to_owned()),
            ("get".to_owned(), ns().to_owned()),
        ]
    );
}
