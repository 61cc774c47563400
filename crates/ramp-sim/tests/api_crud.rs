//! Conformance of the emulated API server with the real kube client: CRUD, optimistic
//! concurrency, generateName, selectors, pagination, status/scale subresources, patches,
//! deletion semantics and the request log.
#![allow(clippy::unwrap_used)] // Tests fail loudly on any unexpected error.

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::Status;
use pretty_assertions::assert_eq;
use ramp_sim::{Sim, SimConfig, Verb};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

async fn sim() -> ramp_sim::SimHandle {
    Sim::start(SimConfig::api_only()).await.expect("sim starts")
}

fn configmap(name: &str, labels: &[(&str, &str)]) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>()},
        "data": {"k": "v"},
    }))
    .expect("valid configmap")
}

fn api_error(err: kube::Error) -> Status {
    match err {
        kube::Error::Api(status) => *status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what} did not happen within 5s");
}

#[tokio::test]
async fn default_namespaces_exist_and_namespaced_creates_need_one() {
    let sim = sim().await;
    let namespaces: Api<Namespace> = Api::all(sim.client());
    let names: Vec<String> = namespaces
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    assert!(
        names.contains(&"default".to_owned()) && names.contains(&"kube-system".to_owned()),
        "{names:?}"
    );
    let missing: Api<ConfigMap> = Api::namespaced(sim.client(), "nowhere");
    let err = api_error(
        missing
            .create(&PostParams::default(), &configmap("a", &[]))
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (404, "NotFound"));
    assert_eq!(err.message, "namespaces \"nowhere\" not found");
}

#[tokio::test]
async fn create_get_update_delete_with_server_metadata() {
    let sim = sim().await;
    let api: Api<ConfigMap> = Api::default_namespaced(sim.client());
    let created = api
        .create(&PostParams::default(), &configmap("web", &[]))
        .await
        .unwrap();
    let meta = &created.metadata;
    assert!(
        meta.uid.as_deref().is_some_and(|u| u.len() == 36),
        "uid {:?}",
        meta.uid
    );
    assert!(meta.creation_timestamp.is_some());
    let rv1: u64 = meta.resource_version.as_deref().unwrap().parse().unwrap();
    let err = api_error(
        api.create(&PostParams::default(), &configmap("web", &[]))
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(err.message, "configmaps \"web\" already exists");

    let mut changed = created.clone();
    changed.data = Some(BTreeMap::from([("k".to_owned(), "w".to_owned())]));
    let updated = api
        .replace("web", &PostParams::default(), &changed)
        .await
        .unwrap();
    let rv2: u64 = updated
        .metadata
        .resource_version
        .as_deref()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rv2 > rv1, "resourceVersion must grow: {rv1} -> {rv2}");
    assert_eq!(updated.metadata.uid, created.metadata.uid);

    // Replacing with the stale version conflicts.
    let err = api_error(
        api.replace("web", &PostParams::default(), &changed)
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
    assert!(
        err.message.contains("the object has been modified"),
        "{}",
        err.message
    );

    api.delete("web", &DeleteParams::default()).await.unwrap();
    let err = api_error(api.get("web").await.unwrap_err());
    assert_eq!((err.code, err.reason.as_str()), (404, "NotFound"));
    assert_eq!(err.message, "configmaps \"web\" not found");
}

#[tokio::test]
async fn generate_name_gives_unique_names() {
    let sim = sim().await;
    let api: Api<ConfigMap> = Api::default_namespaced(sim.client());
    let mut cm = configmap("", &[]);
    cm.metadata.name = None;
    cm.metadata.generate_name = Some("web-".to_owned());
    let a = api.create(&PostParams::default(), &cm).await.unwrap();
    let b = api.create(&PostParams::default(), &cm).await.unwrap();
    let (a, b) = (a.metadata.name.unwrap(), b.metadata.name.unwrap());
    assert!(a.starts_with("web-") && a.len() == 9, "{a}");
    assert_ne!(a, b);
    let log = sim.request_log().writes_to("configmaps");
    assert_eq!(
        log.iter()
            .map(|e| e.name.clone().unwrap_or_default())
            .collect::<Vec<_>>(),
        vec![a, b]
    );
}

#[tokio::test]
async fn label_and_field_selectors_filter_lists() {
    let sim = sim().await;
    let api: Api<ConfigMap> = Api::default_namespaced(sim.client());
    for (name, tier, track) in [
        ("a", "web", "stable"),
        ("b", "web", "canary"),
        ("c", "db", "stable"),
    ] {
        api.create(
            &PostParams::default(),
            &configmap(name, &[("tier", tier), ("track", track)]),
        )
        .await
        .unwrap();
    }
    let names = |list: kube::core::ObjectList<ConfigMap>| {
        list.items
            .into_iter()
            .filter_map(|c| c.metadata.name)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("tier=web"))
                .await
                .unwrap()
        ),
        ["a", "b"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("tier in (web,db),track!=canary"))
                .await
                .unwrap()
        ),
        ["a", "c"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("!track"))
                .await
                .unwrap()
        ),
        Vec::<String>::new()
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().fields("metadata.name=b"))
                .await
                .unwrap()
        ),
        ["b"]
    );
    let err = api_error(
        api.list(&ListParams::default().fields("data.k=v"))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (err.code, err.message.as_str()),
        (400, "field label not supported: data.k")
    );
}

#[tokio::test]
async fn pagination_with_limit_and_continue_visits_every_object_once() {
    let sim = sim().await;
    let api: Api<ConfigMap> = Api::default_namespaced(sim.client());
    for i in 0..7 {
        api.create(&PostParams::default(), &configmap(&format!("cm-{i}"), &[]))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut params = ListParams::default().limit(3);
    let mut pages = 0;
    loop {
        let page = api.list(&params).await.unwrap();
        pages += 1;
        seen.extend(page.items.into_iter().filter_map(|c| c.metadata.name));
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, (0..7).map(|i| format!("cm-{i}")).collect::<Vec<_>>());
}

#[tokio::test]
async fn patches_merge_json_strategic_and_the_log_records_them() {
    let sim = sim().await;
    let api: Api<Pod> = Api::default_namespaced(sim.client());
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "1"}},
        "spec": {"containers": [{"name": "app", "image": "app:1"}, {"name": "side", "image": "side:1"}]},
    }))
    .unwrap();
    api.create(&PostParams::default(), &pod).await.unwrap();
    let checkpoint = sim.request_log().len();
    let merged = api
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"b": "2", "a": null}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        merged.metadata.labels,
        Some(BTreeMap::from([("b".to_owned(), "2".to_owned())]))
    );
    let strategic = api
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Strategic(
                json!({"spec": {"containers": [{"name": "side", "image": "side:2"}]}}),
            ),
        )
        .await
        .unwrap();
    let images: Vec<_> = strategic
        .spec
        .unwrap()
        .containers
        .into_iter()
        .map(|c| c.image.unwrap_or_default())
        .collect();
    assert_eq!(images, ["app:1", "side:2"]);
    let ops: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/metadata/labels/b", "value": "2"},
        {"op": "replace", "path": "/metadata/labels/b", "value": "3"},
    ]))
    .unwrap();
    let patched = api
        .patch("p", &PatchParams::default(), &Patch::<()>::Json(ops))
        .await
        .unwrap();
    assert_eq!(patched.metadata.labels.unwrap()["b"], "3");
    let failing: json_patch::Patch =
        serde_json::from_value(json!([{"op": "test", "path": "/metadata/labels/b", "value": "9"}]))
            .unwrap();
    let err = api_error(
        api.patch("p", &PatchParams::default(), &Patch::<()>::Json(failing))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 422, "{}", err.message);

    let log = sim.request_log().since(checkpoint);
    let summary: Vec<_> = log
        .iter()
        .map(|e| (e.verb, e.patch_type.clone().unwrap_or_default(), e.code))
        .collect();
    assert_eq!(
        summary,
        [
            (Verb::Patch, "merge".to_owned(), 200),
            (Verb::Patch, "strategic".to_owned(), 200),
            (Verb::Patch, "json".to_owned(), 200),
            (Verb::Patch, "json".to_owned(), 422)
        ]
    );
    assert_eq!(
        log[0].body,
        Some(json!({"metadata": {"labels": {"b": "2", "a": null}}}))
    );
}

#[tokio::test]
async fn status_and_scale_subresources_write_only_their_part() {
    let sim = sim().await;
    let api: Api<ReplicaSet> = Api::default_namespaced(sim.client());
    let rs: ReplicaSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}},
        "status": {"replicas": 99},
    }))
    .unwrap();
    let created = api.create(&PostParams::default(), &rs).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    assert_eq!(
        created.status.as_ref().map(|s| s.replicas),
        Some(0),
        "status is reset on create"
    );

    let status = api
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"replicas": 2, "readyReplicas": 1}})),
        )
        .await
        .unwrap();
    assert_eq!(
        status
            .status
            .as_ref()
            .map(|s| (s.replicas, s.ready_replicas)),
        Some((2, Some(1)))
    );
    assert_eq!(
        status.metadata.generation,
        Some(1),
        "status writes do not bump generation"
    );

    // Spec changes through the main resource do not touch status, and bump generation.
    let spec = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"minReadySeconds": 3}, "status": {"replicas": 7}})),
        )
        .await
        .unwrap();
    assert_eq!(spec.metadata.generation, Some(2));
    assert_eq!(spec.status.as_ref().map(|s| s.replicas), Some(2));
    // Metadata-only changes do not bump generation.
    let labelled = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .unwrap();
    assert_eq!(labelled.metadata.generation, Some(2));

    let scale = api.get_scale("web").await.unwrap();
    assert_eq!(scale.spec.and_then(|s| s.replicas), Some(2));
    assert_eq!(scale.status.as_ref().map(|s| s.replicas), Some(2));
    assert_eq!(
        scale.status.and_then(|s| s.selector),
        Some("app=web".to_owned())
    );
    api.patch_scale(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 5}})),
    )
    .await
    .unwrap();
    let after = api.get("web").await.unwrap();
    assert_eq!(after.spec.replicas, Some(5));
    assert_eq!(after.metadata.generation, Some(3));
}

#[tokio::test]
async fn a_no_op_update_writes_nothing() {
    let sim = sim().await;
    let api: Api<ConfigMap> = Api::default_namespaced(sim.client());
    let created = api
        .create(&PostParams::default(), &configmap("same", &[]))
        .await
        .unwrap();
    let patched = api
        .patch(
            "same",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"k": "v"}})),
        )
        .await
        .unwrap();
    assert_eq!(
        patched.metadata.resource_version,
        created.metadata.resource_version
    );
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let sim = sim().await;
    let api: Api<ConfigMap> = Api::default_namespaced(sim.client());
    let mut cm = configmap("held", &[]);
    cm.metadata.finalizers = Some(vec!["example.com/hold".to_owned()]);
    api.create(&PostParams::default(), &cm).await.unwrap();
    let pending = api.delete("held", &DeleteParams::default()).await.unwrap();
    let pending = pending
        .left()
        .expect("the object comes back while finalizers are pending");
    assert!(pending.metadata.deletion_timestamp.is_some());
    let err = api_error(
        api.patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["example.com/hold", "other"]}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.code, 422, "{}", err.message);
    api.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    let err = api_error(api.get("held").await.unwrap_err());
    assert_eq!(err.code, 404);
}

#[tokio::test]
async fn delete_preconditions_are_checked() {
    let sim = sim().await;
    let api: Api<ConfigMap> = Api::default_namespaced(sim.client());
    api.create(&PostParams::default(), &configmap("pre", &[]))
        .await
        .unwrap();
    let params = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: Some("nope".into()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    let err = api_error(api.delete("pre", &params).await.unwrap_err());
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
    assert!(
        err.message
            .contains("Precondition failed: UID in precondition: nope"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn owner_references_cascade_in_background_and_orphan_on_request() {
    let sim = sim().await;
    let client = sim.client();
    let owners: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let owner = owners
        .create(&PostParams::default(), &configmap("owner", &[]))
        .await
        .unwrap();
    let owner_ref = json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid, "controller": true}]);
    for name in ["dep-1", "dep-2"] {
        let mut dep = configmap(name, &[]);
        dep.metadata.owner_references = Some(serde_json::from_value(owner_ref.clone()).unwrap());
        owners.create(&PostParams::default(), &dep).await.unwrap();
    }
    owners
        .delete("owner", &DeleteParams::background())
        .await
        .unwrap();
    eventually("dependents garbage-collected", || async {
        owners
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    })
    .await;

    let owner = owners
        .create(&PostParams::default(), &configmap("owner2", &[]))
        .await
        .unwrap();
    let mut dep = configmap("kept", &[]);
    dep.metadata.owner_references = Some(serde_json::from_value(json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner2", "uid": owner.metadata.uid}])).unwrap());
    owners.create(&PostParams::default(), &dep).await.unwrap();
    owners
        .delete("owner2", &DeleteParams::orphan())
        .await
        .unwrap();
    let kept = owners.get("kept").await.unwrap();
    assert_eq!(kept.metadata.owner_references.unwrap_or_default().len(), 0);
}

#[tokio::test]
async fn foreground_deletion_waits_for_blocking_dependents() {
    let sim = sim().await;
    let api: Api<ConfigMap> = Api::default_namespaced(sim.client());
    let owner = api
        .create(&PostParams::default(), &configmap("fg", &[]))
        .await
        .unwrap();
    let mut dep = configmap("fg-dep", &[]);
    dep.metadata.finalizers = Some(vec!["example.com/slow".to_owned()]);
    dep.metadata.owner_references = Some(serde_json::from_value(json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "fg", "uid": owner.metadata.uid, "blockOwnerDeletion": true}])).unwrap());
    api.create(&PostParams::default(), &dep).await.unwrap();
    api.delete("fg", &DeleteParams::foreground()).await.unwrap();
    eventually("dependent marked for deletion", || async {
        api.get("fg-dep")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    })
    .await;
    let owner_now = api.get("fg").await.unwrap();
    assert!(
        owner_now
            .metadata
            .finalizers
            .unwrap_or_default()
            .contains(&"foregroundDeletion".to_owned())
    );
    api.patch(
        "fg-dep",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    eventually("owner deleted after its dependent", || async {
        api.get("fg").await.is_err()
    })
    .await;
}

#[tokio::test]
async fn deletecollection_removes_matching_objects() {
    let sim = sim().await;
    let api: Api<ConfigMap> = Api::default_namespaced(sim.client());
    for (name, tier) in [("x", "a"), ("y", "a"), ("z", "b")] {
        api.create(&PostParams::default(), &configmap(name, &[("tier", tier)]))
            .await
            .unwrap();
    }
    api.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("tier=a"),
    )
    .await
    .unwrap();
    let left: Vec<_> = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    assert_eq!(left, ["z"]);
}

#[tokio::test]
async fn namespace_deletion_removes_its_content() {
    let sim = sim().await;
    let namespaces: Api<Namespace> = Api::all(sim.client());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "doomed"}})).unwrap();
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let api: Api<ConfigMap> = Api::namespaced(sim.client(), "doomed");
    api.create(&PostParams::default(), &configmap("inside", &[]))
        .await
        .unwrap();
    namespaces
        .delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    eventually("namespace and content gone", || async {
        namespaces.get("doomed").await.is_err()
    })
    .await;
    assert!(
        api.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

#[tokio::test]
async fn dependents_of_owners_that_do_not_exist_are_collected() {
    let sim = sim().await;
    let api: Api<ConfigMap> = Api::default_namespaced(sim.client());
    let live = api
        .create(&PostParams::default(), &configmap("live-owner", &[]))
        .await
        .unwrap();
    let ghost = json!({"apiVersion": "v1", "kind": "ConfigMap", "name": "ghost", "uid": "00000000-0000-4000-8000-000000000000"});
    let live_ref = json!({"apiVersion": "v1", "kind": "ConfigMap", "name": "live-owner", "uid": live.metadata.uid});
    let mut orphan = configmap("orphan", &[]);
    orphan.metadata.owner_references = Some(serde_json::from_value(json!([ghost])).unwrap());
    api.create(&PostParams::default(), &orphan).await.unwrap();
    let mut mixed = configmap("mixed", &[]);
    mixed.metadata.owner_references =
        Some(serde_json::from_value(json!([ghost, live_ref])).unwrap());
    api.create(&PostParams::default(), &mixed).await.unwrap();
    eventually("the dependent of a missing owner deleted", || async {
        api.get("orphan").await.is_err()
    })
    .await;
    eventually("the dangling reference dropped", || async {
        api.get("mixed")
            .await
            .unwrap()
            .metadata
            .owner_references
            .unwrap_or_default()
            .len()
            == 1
    })
    .await;
}

#[tokio::test]
async fn server_side_apply_on_a_builtin_lease_creates_then_updates() {
    use k8s_openapi::api::coordination::v1::Lease;
    let sim = sim().await;
    let api: Api<Lease> = Api::default_namespaced(sim.client());
    let lease = |holder: &str| {
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "ramp-leader"},
               "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15}})
    };
    let created = api
        .patch(
            "ramp-leader",
            &PatchParams::apply("ramp-a"),
            &Patch::Apply(lease("a")),
        )
        .await
        .unwrap();
    assert_eq!(
        created
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.clone()),
        Some("a".to_owned())
    );
    let err = api_error(
        api.patch(
            "ramp-leader",
            &PatchParams::apply("ramp-b"),
            &Patch::Apply(lease("b")),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
    let taken = api
        .patch(
            "ramp-leader",
            &PatchParams::apply("ramp-b").force(),
            &Patch::Apply(lease("b")),
        )
        .await
        .unwrap();
    assert_eq!(
        taken.spec.and_then(|s| s.holder_identity),
        Some("b".to_owned())
    );
    let managers: Vec<String> = taken
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert!(managers.contains(&"ramp-b".to_owned()), "{managers:?}");
}
