//! Bearer-token authentication and RBAC authorization through the real kube client: rules with
//! and without resourceNames, subresources and wildcards, RoleBindings to ClusterRoles limited
//! to their namespace, cluster-scoped kinds, list versus watch, the exact 403 message, and the
//! admin client and RBAC-off sims left unaffected.
#![allow(clippy::unwrap_used)] // Tests fail loudly on any unexpected error.

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret};
use kube::api::{Api, DeleteParams, EvictParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::Status;
use kube::runtime::WatchStreamExt;
use pretty_assertions::assert_eq;
use ramp_sim::{Sim, SimConfig, SimHandle, Verb};
use serde_json::{Value, json};

const SA_NS: &str = "team-a";
const SA: &str = "deployer";

async fn rbac_sim() -> SimHandle {
    let sim = Sim::start(SimConfig {
        rbac: true,
        ..SimConfig::api_only()
    })
    .await
    .expect("sim starts");
    for ns in [SA_NS, "team-b"] {
        apply(
            &sim,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        )
        .await;
    }
    sim
}

/// Creates any object as the admin client.
async fn apply(sim: &SimHandle, object: Value) {
    let api_version = object["apiVersion"].as_str().unwrap().to_owned();
    let kind = object["kind"].as_str().unwrap().to_owned();
    let (group, version) = api_version.split_once('/').unwrap_or(("", &api_version));
    let gvk = kube::api::GroupVersionKind::gvk(group, version, &kind);
    let (resource, caps) = kube::discovery::pinned_kind(&sim.client(), &gvk)
        .await
        .unwrap();
    let object: kube::api::DynamicObject = serde_json::from_value(object).unwrap();
    let api: Api<kube::api::DynamicObject> = match object.metadata.namespace.as_deref() {
        Some(ns) if caps.scope == kube::discovery::Scope::Namespaced => {
            Api::namespaced_with(sim.client(), ns, &resource)
        }
        _ => Api::all_with(sim.client(), &resource),
    };
    api.create(&PostParams::default(), &object).await.unwrap();
}

fn role(kind: &str, namespace: Option<&str>, name: &str, rules: Value) -> Value {
    let mut metadata = json!({"name": name});
    if let Some(ns) = namespace {
        metadata["namespace"] = json!(ns);
    }
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": metadata, "rules": rules})
}

fn binding(
    kind: &str,
    namespace: Option<&str>,
    role_kind: &str,
    role: &str,
    subjects: Value,
) -> Value {
    let mut metadata = json!({"name": format!("{role}-binding")});
    if let Some(ns) = namespace {
        metadata["namespace"] = json!(ns);
    }
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": metadata,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
        "subjects": subjects,
    })
}

fn the_sa() -> Value {
    json!([{"kind": "ServiceAccount", "name": SA, "namespace": SA_NS}])
}

/// A Role in `team-a` with `rules`, bound to the ServiceAccount.
async fn grant_in_namespace(sim: &SimHandle, rules: Value) {
    apply(sim, role("Role", Some(SA_NS), "grant", rules)).await;
    apply(
        sim,
        binding("RoleBinding", Some(SA_NS), "Role", "grant", the_sa()),
    )
    .await;
}

fn code(result: Result<impl std::fmt::Debug, kube::Error>) -> u16 {
    match result {
        Ok(_) => 200,
        Err(kube::Error::Api(status)) => status.code,
        Err(other) => panic!("expected an API answer, got {other:?}"),
    }
}

fn status<T>(result: Result<T, kube::Error>) -> Status {
    match result {
        Err(kube::Error::Api(status)) => *status,
        Err(other) => panic!("expected an API error, got {other:?}"),
        Ok(_) => panic!("expected an API error, the request succeeded"),
    }
}

async fn config_map(sim: &SimHandle, ns: &str, name: &str) {
    apply(sim, json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}})).await;
}

async fn pod(sim: &SimHandle, ns: &str, name: &str) {
    apply(
        sim,
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
               "spec": {"containers": [{"name": "app", "image": "nginx"}]}}),
    )
    .await;
}

#[tokio::test]
async fn resource_names_limit_only_requests_on_a_named_object() {
    let sim = rbac_sim().await;
    config_map(&sim, SA_NS, "allowed").await;
    config_map(&sim, SA_NS, "other").await;
    grant_in_namespace(
        &sim,
        json!([{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["allowed"], "verbs": ["get", "list", "delete"]}]),
    )
    .await;
    let api: Api<ConfigMap> =
        Api::namespaced(sim.service_account_client(SA_NS, SA).unwrap(), SA_NS);

    assert_eq!(code(api.get("allowed").await), 200);
    assert_eq!(code(api.get("other").await), 403);
    // A list names no object, so a rule limited by resourceNames cannot grant it...
    assert_eq!(code(api.list(&ListParams::default()).await), 403);
    // ...unless the list is narrowed to the one name by field selector.
    let narrowed = api
        .list(&ListParams::default().fields("metadata.name=allowed"))
        .await
        .unwrap();
    assert_eq!(narrowed.items.len(), 1);
    assert_eq!(
        code(api.delete("other", &DeleteParams::default()).await),
        403
    );
    assert_eq!(
        code(api.delete("allowed", &DeleteParams::default()).await),
        200
    );
    // Creating never names an existing object.
    let created = api
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "allowed"}})).unwrap(),
        )
        .await;
    assert_eq!(code(created), 403);
}

#[tokio::test]
async fn subresources_are_authorized_apart_from_their_resource() {
    let sim = rbac_sim().await;
    pod(&sim, SA_NS, "web-1").await;
    pod(&sim, SA_NS, "web-2").await;
    grant_in_namespace(
        &sim,
        json!([
            {"apiGroups": [""], "resources": ["pods/eviction"], "verbs": ["create"]},
            {"apiGroups": [""], "resources": ["*/status"], "verbs": ["patch"]},
        ]),
    )
    .await;
    let api: Api<Pod> = Api::namespaced(sim.service_account_client(SA_NS, SA).unwrap(), SA_NS);
    let status_patch = Patch::Merge(json!({"status": {"message": "checked"}}));

    assert_eq!(
        code(
            api.patch_status("web-1", &PatchParams::default(), &status_patch)
                .await
        ),
        200
    );
    assert_eq!(
        code(
            api.patch(
                "web-1",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}}))
            )
            .await
        ),
        403
    );
    assert_eq!(code(api.get("web-1").await), 403);
    assert_eq!(code(api.evict("web-2", &EvictParams::default()).await), 200);
    assert_eq!(
        code(api.delete("web-1", &DeleteParams::default()).await),
        403
    );
    let evictions = sim.request_log().writes_to("pods/eviction");
    assert_eq!(
        evictions.iter().map(|w| w.code).collect::<Vec<_>>(),
        vec![201]
    );
}

#[tokio::test]
async fn a_role_binding_to_a_cluster_role_grants_only_in_its_namespace() {
    let sim = rbac_sim().await;
    for ns in [SA_NS, "team-b"] {
        config_map(&sim, ns, "settings").await;
    }
    apply(
        &sim,
        role(
            "ClusterRole",
            None,
            "config-reader",
            json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]),
        ),
    )
    .await;
    apply(
        &sim,
        binding(
            "RoleBinding",
            Some(SA_NS),
            "ClusterRole",
            "config-reader",
            the_sa(),
        ),
    )
    .await;
    let client = sim.service_account_client(SA_NS, SA).unwrap();
    let own: Api<ConfigMap> = Api::namespaced(client.clone(), SA_NS);
    let other: Api<ConfigMap> = Api::namespaced(client.clone(), "team-b");
    let everywhere: Api<ConfigMap> = Api::all(client);

    assert_eq!(code(own.get("settings").await), 200);
    assert_eq!(
        own.list(&ListParams::default()).await.unwrap().items.len(),
        1
    );
    assert_eq!(code(other.get("settings").await), 403);
    assert_eq!(code(other.list(&ListParams::default()).await), 403);
    assert_eq!(code(everywhere.list(&ListParams::default()).await), 403);
}

#[tokio::test]
async fn cluster_scoped_kinds_need_a_cluster_role_binding() {
    let sim = rbac_sim().await;
    let reader =
        json!([{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list"]}]);
    apply(&sim, role("ClusterRole", None, "ns-reader", reader)).await;
    // A RoleBinding cannot grant cluster-scoped access, even to a ClusterRole.
    apply(
        &sim,
        binding(
            "RoleBinding",
            Some(SA_NS),
            "ClusterRole",
            "ns-reader",
            the_sa(),
        ),
    )
    .await;
    let namespaces: Api<Namespace> = Api::all(sim.service_account_client(SA_NS, SA).unwrap());
    let denied = status(namespaces.list(&ListParams::default()).await);
    assert_eq!(
        denied.message,
        "namespaces is forbidden: User \"system:serviceaccount:team-a:deployer\" cannot list resource \"namespaces\" in API group \"\" at the cluster scope"
    );
    // ...but it does grant reading its own namespace, which is authorized within itself.
    assert_eq!(code(namespaces.get(SA_NS).await), 200);
    assert_eq!(code(namespaces.get("team-b").await), 403);

    // A ClusterRoleBinding to the group of every ServiceAccount in the namespace grants it.
    apply(
        &sim,
        binding(
            "ClusterRoleBinding",
            None,
            "ClusterRole",
            "ns-reader",
            json!([{"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "system:serviceaccounts:team-a"}]),
        ),
    )
    .await;
    assert_eq!(code(namespaces.list(&ListParams::default()).await), 200);
    assert_eq!(code(namespaces.get("team-b").await), 200);
    // Other namespaces' ServiceAccounts are not in that group.
    let outsider: Api<Namespace> = Api::all(sim.service_account_client("team-b", SA).unwrap());
    assert_eq!(code(outsider.list(&ListParams::default()).await), 403);
}

#[tokio::test]
async fn a_denied_request_gets_the_api_servers_forbidden_status() {
    let sim = rbac_sim().await;
    apply(
        &sim,
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": SA_NS}, "stringData": {"password": "x"}}),
    )
    .await;
    grant_in_namespace(
        &sim,
        json!([{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]),
    )
    .await;
    let secrets: Api<Secret> =
        Api::namespaced(sim.service_account_client(SA_NS, SA).unwrap(), SA_NS);
    assert_eq!(code(secrets.get("db").await), 200);
    let checkpoint = sim.request_log().len();

    let denied = status(secrets.delete("db", &DeleteParams::default()).await);
    assert_eq!(denied.code, 403);
    assert_eq!(denied.reason, "Forbidden");
    assert_eq!(
        denied.message,
        "secrets \"db\" is forbidden: User \"system:serviceaccount:team-a:deployer\" cannot delete resource \"secrets\" in API group \"\" in the namespace \"team-a\""
    );
    let details = denied.details.unwrap();
    assert_eq!(
        (
            details.name.as_str(),
            details.group.as_str(),
            details.kind.as_str()
        ),
        ("db", "", "secrets")
    );

    // The write is logged with its 403 and never reached the store.
    let logged = sim.request_log().since(checkpoint);
    assert_eq!(logged.len(), 1);
    assert_eq!((logged[0].verb, logged[0].code), (Verb::Delete, 403));
    assert_eq!(code(secrets.get("db").await), 200);
    let recorded = sim.denied_requests();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].user, "system:serviceaccount:team-a:deployer");
    assert_eq!(recorded[0].message, denied.message);

    // Grouped resources are named `resource.group`, subresources `resource/sub`.
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(sim.service_account_client(SA_NS, SA).unwrap(), SA_NS);
    let denied = status(deployments.get_scale("web").await);
    assert_eq!(
        denied.message,
        "deployments.apps \"web\" is forbidden: User \"system:serviceaccount:team-a:deployer\" cannot get resource \"deployments/scale\" in API group \"apps\" in the namespace \"team-a\""
    );
}

#[tokio::test]
async fn list_and_watch_are_separate_verbs() {
    let sim = rbac_sim().await;
    config_map(&sim, SA_NS, "settings").await;
    grant_in_namespace(
        &sim,
        json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}]),
    )
    .await;
    let api: Api<ConfigMap> =
        Api::namespaced(sim.service_account_client(SA_NS, SA).unwrap(), SA_NS);
    assert_eq!(code(api.list(&ListParams::default()).await), 200);
    let denied = status(api.watch(&kube::api::WatchParams::default(), "0").await);
    assert_eq!(
        denied.message,
        "configmaps is forbidden: User \"system:serviceaccount:team-a:deployer\" cannot watch resource \"configmaps\" in API group \"\" in the namespace \"team-a\""
    );

    apply(
        &sim,
        role(
            "Role",
            Some(SA_NS),
            "watcher",
            json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["watch"]}]),
        ),
    )
    .await;
    apply(
        &sim,
        binding("RoleBinding", Some(SA_NS), "Role", "watcher", the_sa()),
    )
    .await;
    // With both verbs kube-runtime's watcher lists and watches.
    let first = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        kube::runtime::watcher(api, kube::runtime::watcher::Config::default())
            .applied_objects()
            .boxed()
            .try_next(),
    )
    .await
    .expect("the watcher delivered no object within 10 s")
    .unwrap()
    .unwrap();
    assert_eq!(first.metadata.name.as_deref(), Some("settings"));
}

#[tokio::test]
async fn wildcards_grant_every_verb_group_and_resource() {
    let sim = rbac_sim().await;
    pod(&sim, SA_NS, "web").await;
    grant_in_namespace(
        &sim,
        json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]),
    )
    .await;
    let client = sim.service_account_client(SA_NS, SA).unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), SA_NS);
    assert_eq!(
        code(
            pods.patch_status(
                "web",
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {}}))
            )
            .await
        ),
        200
    );
    assert_eq!(
        code(
            pods.delete_collection(&DeleteParams::default(), &ListParams::default())
                .await
        ),
        200
    );
    // Still only in the namespace of the RoleBinding.
    let elsewhere: Api<Pod> = Api::namespaced(client, "default");
    assert_eq!(code(elsewhere.list(&ListParams::default()).await), 403);
}

#[tokio::test]
async fn admin_client_discovery_and_rbac_off_are_unaffected() {
    let sim = rbac_sim().await;
    // No token: cluster-admin, whatever the RBAC objects say.
    let admin: Api<Secret> = Api::namespaced(sim.client(), SA_NS);
    assert_eq!(code(admin.list(&ListParams::default()).await), 200);
    // A ServiceAccount without any grant still reads discovery and OpenAPI.
    let client = sim.service_account_client(SA_NS, SA).unwrap();
    assert!(!client.list_api_groups().await.unwrap().groups.is_empty());
    assert!(
        !client
            .list_core_api_versions()
            .await
            .unwrap()
            .versions
            .is_empty()
    );
    let openapi: Value = client
        .request(
            axum::http::Request::get("/openapi/v3")
                .body(Vec::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert!(openapi["paths"].is_object());
    assert_eq!(
        code(
            Api::<Secret>::namespaced(client, SA_NS)
                .list(&ListParams::default())
                .await
        ),
        403
    );

    // A token the sim never issued is rejected.
    let mut config = kube::Config::new(sim.api_url().parse().unwrap());
    config.auth_info = serde_json::from_value(json!({"token": "forged"})).unwrap();
    let forged = kube::Client::try_from(config).unwrap();
    assert_eq!(code(forged.list_api_groups().await), 401);

    // RBAC off (the default): a token is accepted and ignored.
    let open = Sim::start(SimConfig::api_only()).await.unwrap();
    let secrets: Api<Secret> = Api::namespaced(
        open.service_account_client("default", SA).unwrap(),
        "default",
    );
    assert_eq!(code(secrets.list(&ListParams::default()).await), 200);
    assert!(open.denied_requests().is_empty());
}

#[tokio::test]
async fn a_service_account_kubeconfig_authenticates_as_that_account() {
    let sim = rbac_sim().await;
    config_map(&sim, SA_NS, "settings").await;
    grant_in_namespace(
        &sim,
        json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]),
    )
    .await;
    let dir = std::env::temp_dir().join(format!("ramp-sim-rbac-{}", std::process::id()));
    let path = dir.join("deployer.kubeconfig");
    sim.write_service_account_kubeconfig(&path, SA_NS, SA)
        .unwrap();
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(config.default_namespace, SA_NS);
    let api: Api<ConfigMap> = Api::default_namespaced(kube::Client::try_from(config).unwrap());
    assert_eq!(code(api.get("settings").await), 200);
    assert_eq!(code(api.list(&ListParams::default()).await), 403);
}
