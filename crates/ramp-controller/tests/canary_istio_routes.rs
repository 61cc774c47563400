//! End to end on ramp-sim: the Istio router features beyond a host split of one route —
//! DestinationRule subsets, header and mirror routes, someone else's edits, several
//! VirtualServices with a named route among others, TLS and TCP routes. Each test replays the
//! writes the sim logged onto the objects as they were, and asserts every state in between.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod canary_support;

use canary_support::*;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use pretty_assertions::assert_eq;
use ramp_api::rollout::Rollout;
use ramp_controller::traffic::IstioApiVersion;
use ramp_sim::LoggedRequest;
use serde_json::{Value, json};
use std::time::Duration;

const VS: &str = "web-vsvc";
const DR: &str = "web-destrule";
const HASH_LABEL: &str = "rollouts-pod-template-hash";

fn summaries(writes: &[LoggedRequest]) -> Vec<String> {
    writes.iter().map(LoggedRequest::summary).collect()
}

fn destination_rules(cluster: &Cluster) -> Api<DynamicObject> {
    Api::namespaced_with(
        cluster.client.clone(),
        ns(),
        &IstioApiVersion::V1alpha3.destination_rule_resource(),
    )
}

async fn create(api: &Api<DynamicObject>, manifest: Value) {
    let object: DynamicObject = serde_json::from_value(manifest).unwrap();
    api.create(&PostParams::default(), &object)
        .await
        .expect("Istio object created");
}

async fn read(api: &Api<DynamicObject>, name: &str) -> Value {
    serde_json::to_value(api.get(name).await.expect("Istio object readable")).unwrap()
}

/// The object after each successful write to `resource`/`name` in `writes`, replayed onto
/// `initial`, with the write's index in `writes`. The guards Ramp sends (`test` of a route
/// name, a destination host) are checked against the replay; only the resourceVersion guard
/// is dropped, since the replay has no versions.
fn replay(
    writes: &[LoggedRequest],
    resource: &str,
    name: &str,
    initial: &Value,
) -> Vec<(usize, Value)> {
    let mut object = initial.clone();
    let mut states = Vec::new();
    for (index, write) in writes.iter().enumerate() {
        if write.resource != resource || write.name.as_deref() != Some(name) {
            continue;
        }
        let body = write.body.clone().expect("write body logged");
        match write.patch_type.as_deref() {
            Some("json") => {
                let ops: Vec<Value> = serde_json::from_value(body).expect("JSON patch");
                let ops: Vec<Value> = ops
                    .into_iter()
                    .filter(|op| op["path"] != "/metadata/resourceVersion")
                    .collect();
                let patch: json_patch::Patch =
                    serde_json::from_value(Value::Array(ops)).expect("JSON patch");
                json_patch::patch(&mut object, &patch).unwrap_or_else(|e| {
                    panic!("{} does not apply to the replay: {e}", write.summary())
                });
            }
            Some("merge") => json_patch::merge(&mut object, &body),
            other => panic!("unexpected write {other:?}: {}", write.summary()),
        }
        states.push((index, object.clone()));
    }
    states
}

fn http_route<'v>(vs: &'v Value, name: &str) -> &'v Value {
    vs["spec"]["http"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|route| route["name"] == name)
        .unwrap_or_else(|| panic!("no HTTP route '{name}' in {vs:#}"))
}

fn route_names(vs: &Value) -> Vec<String> {
    vs["spec"]["http"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|route| route["name"].as_str().unwrap_or("<unnamed>").to_owned())
        .collect()
}

/// Weight of the destination whose `destination.<key>` is `value` in `route`.
fn weight_of(route: &Value, key: &str, value: &str) -> i64 {
    route["route"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d["destination"][key] == value)
        .and_then(|d| d["weight"].as_i64())
        .unwrap_or_else(|| panic!("no weighted destination {key}={value} in {route:#}"))
}

fn paused_at(rollout: &Rollout, step: i32) -> bool {
    let status = rollout.status.clone().unwrap_or_default();
    status.phase.as_deref() == Some("Paused")
        && status.current_step_index == Some(step)
        && status.has_pause_conditions()
}

fn hash_of(rollout: &Rollout) -> String {
    rollout
        .status
        .as_ref()
        .and_then(|s| s.current_pod_hash.clone())
        .expect("currentPodHash")
}

/// Waits until the update from `v1` is promoted and the old pods are gone.
async fn wait_promoted(cluster: &Cluster, v1: &Rollout, replicas: i32) -> Rollout {
    let old_stable = v1.status.as_ref().and_then(|s| s.stable_rs.clone());
    cluster
        .wait_rollout(
            "web",
            "the update fully promoted and the old ReplicaSet scaled down",
            40,
            |r| {
                let s = r.status.clone().unwrap_or_default();
                s.phase.as_deref() == Some("Healthy")
                    && s.stable_rs.is_some()
                    && s.stable_rs != old_stable
                    && s.current_pod_hash == s.stable_rs
                    && s.replicas == Some(replicas)
            },
        )
        .await
}

async fn wait_rs_scaled_to(cluster: &Cluster, name: &str, replicas: i32) {
    eventually(&format!("{name} scaled to {replicas}"), 20, || async move {
        cluster
            .replica_sets()
            .await
            .into_iter()
            .find(|rs| rs.metadata.name.as_deref() == Some(name))
            .filter(|rs| rs.spec.replicas == Some(replicas))
            .map(|_| ())
    })
    .await;
}

fn is_scale_to(write: &LoggedRequest, rs: &str, replicas: i64) -> bool {
    write.resource == "replicasets"
        && write.name.as_deref() == Some(rs)
        && write
            .body
            .as_ref()
            .is_some_and(|b| b["spec"]["replicas"] == replicas)
}

// ---- 1. subset-level split ----

fn subset_route(name: &str) -> Value {
    json!({
        "name": name,
        "route": [
            {"destination": {"host": "web", "subset": "stable"}, "weight": 100},
            {"destination": {"host": "web", "subset": "canary"}, "weight": 0}
        ]
    })
}

fn subset_hashes(rule: &Value) -> (String, String) {
    let hash = |name: &str| {
        rule["spec"]["subsets"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["name"] == name)
            .and_then(|s| s["labels"][HASH_LABEL].as_str())
            .unwrap_or_default()
            .to_owned()
    };
    (hash("canary"), hash("stable"))
}

fn canary_policy() -> Value {
    json!({"loadBalancer": {"simple": "ROUND_ROBIN"}})
}

fn debug_subset() -> Value {
    json!({"name": "debug", "labels": {"app": "web", "track": "debug"}})
}

/// VirtualService `web-vsvc` splitting host `web` by subsets, DestinationRule `web-destrule`
/// with the two subsets (the canary one with a traffic policy) and a third, unmanaged one.
async fn subset_cluster() -> Cluster {
    let mut cluster = Cluster::start().await;
    create(
        &cluster.virtual_services(),
        json!({
            "apiVersion": "networking.istio.io/v1alpha3", "kind": "VirtualService",
            "metadata": {"name": VS, "namespace": ns()},
            "spec": {"hosts": ["web"], "http": [subset_route("primary")]}
        }),
    )
    .await;
    create(
        &destination_rules(&cluster),
        json!({
            "apiVersion": "networking.istio.io/v1alpha3", "kind": "DestinationRule",
            "metadata": {"name": DR, "namespace": ns()},
            "spec": {"host": "web", "subsets": [
                {"name": "stable", "labels": {"app": "web"}},
                {"name": "canary", "labels": {"app": "web"}, "trafficPolicy": canary_policy()},
                debug_subset()
            ]}
        }),
    )
    .await;
    cluster.start_controller();
    cluster
}

fn subset_canary(steps: Value) -> Value {
    json!({
        "scaleDownDelaySeconds": 1,
        "abortScaleDownDelaySeconds": 1,
        "trafficRouting": {"istio": {
            "virtualService": {"name": VS, "routes": ["primary"]},
            "destinationRule": {"name": DR, "canarySubsetName": "canary", "stableSubsetName": "stable"}
        }},
        "steps": steps
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subset_split_labels_subsets_by_hash_around_every_weight_and_ends_on_the_new_hash() {
    let cluster = subset_cluster().await;
    let canary_policy = canary_policy();
    let debug_subset = debug_subset();
    let canary = subset_canary(json!([
        {"setWeight": 20}, {"pause": {"duration": "1s"}},
        {"setWeight": 40}, {"pause": {"duration": "1s"}},
        {"setWeight": 60}, {"pause": {"duration": "1s"}},
        {"setWeight": 80}, {"pause": {"duration": "1s"}}
    ]));
    cluster
        .create_rollout(rollout_manifest("web", 5, canary))
        .await;
    let v1 = cluster.wait_healthy("web", 20).await;
    let old_hash = hash_of(&v1);
    let old_rs = current_rs(&v1);
    // Before any update both subsets select the only pods there are.
    let rule_before = eventually("both subsets labelled with the v1 hash", 10, || {
        let cluster = &cluster;
        let old_hash = old_hash.clone();
        async move {
            let rule = read(&destination_rules(cluster), DR).await;
            (subset_hashes(&rule) == (old_hash.clone(), old_hash)).then_some(rule)
        }
    })
    .await;
    let vs_before = read(&cluster.virtual_services(), VS).await;
    assert_eq!(
        weight_of(http_route(&vs_before, "primary"), "subset", "canary"),
        0
    );

    let start = cluster.sim.request_log().len();
    cluster.set_image("web", "web:v2").await;
    let v2 = wait_promoted(&cluster, &v1, 5).await;
    let new_hash = hash_of(&v2);
    let new_rs = current_rs(&v2);
    let writes = controller_writes(&cluster.sim, start);
    let s = summaries(&writes);

    // The VirtualService walks every step, the two subsets always adding up to 100.
    let vs_states = replay(&writes, "virtualservices", VS, &vs_before);
    let weights: Vec<(i64, i64)> = vs_states
        .iter()
        .map(|(_, vs)| {
            let primary = http_route(vs, "primary");
            (
                weight_of(primary, "subset", "stable"),
                weight_of(primary, "subset", "canary"),
            )
        })
        .collect();
    assert_eq!(
        weights,
        vec![(80, 20), (60, 40), (40, 60), (20, 80), (0, 100), (100, 0)],
        "{s:#?}"
    );
    // The DestinationRule is written twice: the canary subset moves to the new pods, then, at
    // promotion, the stable subset follows.
    let rule_states = replay(&writes, "destinationrules", DR, &rule_before);
    let hashes: Vec<(String, String)> = rule_states
        .iter()
        .map(|(_, rule)| subset_hashes(rule))
        .collect();
    assert_eq!(
        hashes,
        vec![
            (new_hash.clone(), old_hash.clone()),
            (new_hash.clone(), new_hash.clone())
        ],
        "{s:#?}"
    );
    let canary_moved = rule_states[0].0;
    let stable_moved = rule_states[1].0;
    let vs_index = |canary: i64| {
        vs_states
            .iter()
            .find(|(_, vs)| weight_of(http_route(vs, "primary"), "subset", "canary") == canary)
            .map(|(index, _)| *index)
            .unwrap()
    };
    // The canary subset selects the new pods before it gets any weight, and only once one of
    // them is available.
    assert!(canary_moved < vs_index(20), "{s:#?}");
    let before = log_until(&cluster.sim, start, |w| w.resource == "destinationrules");
    assert!(available_before(&before, &new_rs) >= 1, "{s:#?}");
    // Promotion: the stable subset moves to the new pods (all five available) while the
    // canary subset still has 100 %, and only then does the weight return to the stable
    // subset — never back to the old pods. The old pods go last.
    assert!(vs_index(100) < stable_moved, "{s:#?}");
    assert!(stable_moved < vs_index(0), "{s:#?}");
    let old_down = position(&writes, "scaling the old ReplicaSet down", |w| {
        is_scale_to(w, &old_rs, 0)
    });
    assert!(vs_index(0) < old_down, "{s:#?}");
    let all: Vec<LoggedRequest> = cluster
        .sim
        .request_log()
        .since_settled(start, std::time::Duration::from_secs(2))
        .into_iter()
        .filter(LoggedRequest::succeeded)
        .collect();
    let second_rule_write = all
        .iter()
        .enumerate()
        .filter(|(_, w)| w.resource == "destinationrules")
        .nth(1)
        .map(|(index, _)| index)
        .unwrap();
    let before_stable_move = &all[..second_rule_write];
    assert_eq!(available_before(before_stable_move, &new_rs), 5, "{s:#?}");
    assert_eq!(
        replica_writes(&writes),
        vec![
            (new_rs.clone(), 0),
            (new_rs.clone(), 1),
            (new_rs.clone(), 2),
            (new_rs.clone(), 3),
            (new_rs.clone(), 4),
            (new_rs.clone(), 5),
            (old_rs.clone(), 0),
        ],
        "{s:#?}"
    );

    // Only the two subsets' hash labels and the managed-by annotation are Ramp's: the canary
    // subset's traffic policy and the unmanaged subset are left as they were.
    let rule = read(&destination_rules(&cluster), DR).await;
    assert_eq!(
        rule["metadata"]["annotations"]["argo-rollouts.argoproj.io/managed-by-rollouts"],
        "web"
    );
    let subsets = rule["spec"]["subsets"].as_array().unwrap();
    assert_eq!(subsets.len(), 3, "{rule:#}");
    assert_eq!(subsets[1]["trafficPolicy"], canary_policy);
    assert_eq!(subsets[1]["labels"]["app"], "web");
    assert_eq!(subsets[2], debug_subset);
    assert_eq!(rule_states.last().unwrap().1["spec"], rule["spec"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subset_split_abort_takes_the_weight_back_before_relabelling_and_survives_a_downscale() {
    let cluster = subset_cluster().await;
    cluster
        .create_rollout(rollout_manifest(
            "web",
            4,
            subset_canary(json!([{"setWeight": 50}, {"pause": {}}])),
        ))
        .await;
    let v1 = cluster.wait_healthy("web", 20).await;
    let old_hash = hash_of(&v1);
    cluster.set_image("web", "web:v2").await;
    let paused = cluster
        .wait_rollout("web", "paused at 50 %", 20, |r| paused_at(r, 1))
        .await;
    let new_hash = hash_of(&paused);
    let canary_rs = current_rs(&paused);
    let rule_paused = read(&destination_rules(&cluster), DR).await;
    let vs_paused = read(&cluster.virtual_services(), VS).await;
    assert_eq!(
        subset_hashes(&rule_paused),
        (new_hash.clone(), old_hash.clone())
    );
    assert_eq!(
        weight_of(http_route(&vs_paused, "primary"), "subset", "canary"),
        50
    );

    let abort_at = cluster.sim.request_log().len();
    cluster.patch_status("web", json!({"abort": true})).await;
    wait_rs_scaled_to(&cluster, &canary_rs, 0).await;
    let writes = controller_writes(&cluster.sim, abort_at);
    let s = summaries(&writes);
    // The weight leaves the canary subset while it still selects the canary pods; only then
    // does the canary subset go back to the stable pods, and the canary pods go last.
    let vs_states = replay(&writes, "virtualservices", VS, &vs_paused);
    let rule_states = replay(&writes, "destinationrules", DR, &rule_paused);
    assert_eq!(
        vs_states
            .iter()
            .map(|(_, vs)| {
                let primary = http_route(vs, "primary");
                (
                    weight_of(primary, "subset", "stable"),
                    weight_of(primary, "subset", "canary"),
                )
            })
            .collect::<Vec<_>>(),
        vec![(100, 0)],
        "{s:#?}"
    );
    assert_eq!(
        rule_states
            .iter()
            .map(|(_, rule)| subset_hashes(rule))
            .collect::<Vec<_>>(),
        vec![(old_hash.clone(), old_hash.clone())],
        "{s:#?}"
    );
    let pods_down = position(&writes, "scaling the canary down", |w| {
        is_scale_to(w, &canary_rs, 0)
    });
    assert!(
        vs_states[0].0 < rule_states[0].0 && rule_states[0].0 < pods_down,
        "{s:#?}"
    );

    // Scaling the aborted rollout down to one pod keeps every request on the stable subset.
    let scaled_at = cluster.sim.request_log().len();
    cluster
        .rollouts()
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 1}})),
        )
        .await
        .expect("rollout scaled");
    wait_rs_scaled_to(&cluster, &current_rs(&v1), 1).await;
    cluster
        .wait_rollout("web", "status observes one replica", 20, |r| {
            r.status.as_ref().and_then(|s| s.replicas) == Some(1)
        })
        .await;
    let after_scale = controller_writes(&cluster.sim, scaled_at);
    assert!(
        !after_scale
            .iter()
            .any(|w| matches!(w.resource.as_str(), "virtualservices" | "destinationrules")),
        "{:#?}",
        summaries(&after_scale)
    );
    let vs = read(&cluster.virtual_services(), VS).await;
    assert_eq!(
        weight_of(http_route(&vs, "primary"), "subset", "stable"),
        100
    );
    assert_eq!(weight_of(http_route(&vs, "primary"), "subset", "canary"), 0);
    assert_eq!(
        subset_hashes(&read(&destination_rules(&cluster), DR).await),
        (old_hash.clone(), old_hash)
    );
}

// ---- 2. header and mirror routes ----

fn host_route(name: &str) -> Value {
    json!({
        "name": name,
        "retries": {"attempts": 3, "perTryTimeout": "2s"},
        "route": [
            {"destination": {"host": "web-stable"}, "weight": 100},
            {"destination": {"host": "web-canary"}, "weight": 0}
        ]
    })
}

fn static_route() -> Value {
    json!({
        "name": "static",
        "match": [{"uri": {"prefix": "/static"}}],
        "route": [{"destination": {"host": "web-static"}}]
    })
}

/// Services `web-stable`/`web-canary`, and VirtualService `web-vsvc` with `http`.
async fn host_cluster(http: Value) -> Cluster {
    let mut cluster = Cluster::start().await;
    cluster
        .create_services(&["web-stable", "web-canary"], "web")
        .await;
    create(
        &cluster.virtual_services(),
        json!({
            "apiVersion": "networking.istio.io/v1alpha3", "kind": "VirtualService",
            "metadata": {"name": VS, "namespace": ns()},
            "spec": {"hosts": ["web"], "http": http}
        }),
    )
    .await;
    cluster.start_controller();
    cluster
}

fn managed_routes_canary() -> Value {
    json!({
        "canaryService": "web-canary",
        "stableService": "web-stable",
        "scaleDownDelaySeconds": 1,
        "abortScaleDownDelaySeconds": 1,
        "trafficRouting": {
            "managedRoutes": [{"name": "set-header-1"}, {"name": "mirror-1"}],
            "istio": {"virtualService": {"name": VS, "routes": ["primary"]}}
        },
        "steps": [
            {"setWeight": 20},
            {"setHeaderRoute": {"name": "set-header-1", "match": [
                {"headerName": "agent", "headerValue": {"regex": "firefox(.*)"}}
            ]}},
            {"setMirrorRoute": {"name": "mirror-1", "percentage": 50, "match": [
                {"method": {"exact": "POST"}, "path": {"prefix": "/color"}}
            ]}},
            {"pause": {}},
            {"setWeight": 40},
            {"setHeaderRoute": {"name": "set-header-1"}},
            {"pause": {}}
        ]
    })
}

fn header_route() -> Value {
    json!({
        "name": "set-header-1",
        "match": [{"headers": {"agent": {"regex": "firefox(.*)"}}}],
        "route": [{"destination": {"host": "web-canary"}, "weight": 100}]
    })
}

fn mirror_route(stable: i64, canary: i64) -> Value {
    json!({
        "name": "mirror-1",
        "match": [{"method": {"exact": "POST"}, "uri": {"prefix": "/color"}}],
        "route": [
            {"destination": {"host": "web-stable"}, "weight": stable},
            {"destination": {"host": "web-canary"}, "weight": canary}
        ],
        "mirror": {"host": "web-canary"},
        "mirrorPercentage": {"value": 50}
    })
}

/// `(route names, primary's canary weight, mirror route's canary weight)` of a VS state.
fn routes_summary(vs: &Value) -> (Vec<String>, i64, Option<i64>) {
    let names = route_names(vs);
    let mirror = names
        .iter()
        .any(|n| n == "mirror-1")
        .then(|| weight_of(http_route(vs, "mirror-1"), "host", "web-canary"));
    (
        names,
        weight_of(http_route(vs, "primary"), "host", "web-canary"),
        mirror,
    )
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|n| (*n).to_owned()).collect()
}

/// Sets the image and waits at the first pause, with the VirtualService as it was before.
async fn paused_with_managed_routes(cluster: &Cluster) -> (Rollout, Rollout, Value, usize) {
    cluster
        .create_rollout(rollout_manifest("web", 5, managed_routes_canary()))
        .await;
    let v1 = cluster.wait_healthy("web", 20).await;
    let vs_before = read(&cluster.virtual_services(), VS).await;
    assert_eq!(
        route_names(&vs_before),
        names(&["static", "primary"]),
        "the initial deploy adds no managed route"
    );
    let start = cluster.sim.request_log().len();
    cluster.set_image("web", "web:v2").await;
    let paused = cluster
        .wait_rollout("web", "paused after the header and mirror steps", 20, |r| {
            paused_at(r, 3)
        })
        .await;
    (v1, paused, vs_before, start)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_and_mirror_routes_lead_the_http_list_and_are_gone_after_promotion() {
    let cluster = host_cluster(json!([static_route(), host_route("primary")])).await;
    let (v1, paused, vs_before, start) = paused_with_managed_routes(&cluster).await;
    let new_rs = current_rs(&paused);

    // At the pause: the header route, then the mirror route (managedRoutes order), ahead of
    // every route of the user's, even one listed before the weighted route.
    let vs = read(&cluster.virtual_services(), VS).await;
    assert_eq!(
        route_names(&vs),
        names(&["set-header-1", "mirror-1", "static", "primary"])
    );
    assert_eq!(vs["spec"]["http"][0], header_route());
    assert_eq!(vs["spec"]["http"][1], mirror_route(80, 20));
    assert_eq!(vs["spec"]["http"][2], static_route());
    let mut primary = host_route("primary");
    primary["route"][0]["weight"] = json!(80);
    primary["route"][1]["weight"] = json!(20);
    assert_eq!(vs["spec"]["http"][3], primary);

    // The rest of the way: promote at each pause.
    cluster
        .patch_status("web", json!({"pauseConditions": null}))
        .await;
    cluster
        .wait_rollout("web", "paused after the header route is removed", 20, |r| {
            paused_at(r, 6)
        })
        .await;
    cluster
        .patch_status("web", json!({"pauseConditions": null}))
        .await;
    wait_promoted(&cluster, &v1, 5).await;

    let writes = controller_writes(&cluster.sim, start);
    let s = summaries(&writes);
    let states: Vec<(Vec<String>, i64, Option<i64>)> =
        replay(&writes, "virtualservices", VS, &vs_before)
            .iter()
            .map(|(_, vs)| routes_summary(vs))
            .collect();
    let all = names(&["set-header-1", "mirror-1", "static", "primary"]);
    assert_eq!(
        states,
        vec![
            (names(&["static", "primary"]), 20, None),
            (names(&["set-header-1", "static", "primary"]), 20, None),
            (all.clone(), 20, Some(20)),
            // The mirror route carries the current weights, updated with every step.
            (all, 40, Some(40)),
            (names(&["mirror-1", "static", "primary"]), 40, Some(40)),
            (names(&["mirror-1", "static", "primary"]), 100, Some(100)),
            // Fully promoted: every managed route gone with the weight back to stable.
            (names(&["static", "primary"]), 0, None),
        ],
        "{s:#?}"
    );
    let vs_after = read(&cluster.virtual_services(), VS).await;
    assert_eq!(
        vs_after["spec"]["http"],
        json!([static_route(), host_route("primary")])
    );
    let old_down = position(&writes, "scaling the old ReplicaSet down", |w| {
        is_scale_to(w, &current_rs(&v1), 0)
    });
    let last_vs = writes
        .iter()
        .rposition(|w| w.resource == "virtualservices")
        .unwrap();
    assert!(last_vs < old_down, "{s:#?}");
    assert!(replica_writes(&writes).contains(&(new_rs, 5)), "{s:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_removes_header_and_mirror_routes_with_the_weight_before_pods_go() {
    let cluster = host_cluster(json!([static_route(), host_route("primary")])).await;
    let (v1, paused, _, _) = paused_with_managed_routes(&cluster).await;
    let canary_rs = current_rs(&paused);
    let vs_paused = read(&cluster.virtual_services(), VS).await;
    assert_eq!(
        route_names(&vs_paused),
        names(&["set-header-1", "mirror-1", "static", "primary"])
    );

    let abort_at = cluster.sim.request_log().len();
    cluster.patch_status("web", json!({"abort": true})).await;
    wait_rs_scaled_to(&cluster, &canary_rs, 0).await;
    let writes = controller_writes(&cluster.sim, abort_at);
    let s = summaries(&writes);
    let states = replay(&writes, "virtualservices", VS, &vs_paused);
    // One write takes every canary route away at once: the header cohort and the mirror
    // stop reaching the canary together with its weighted share.
    assert_eq!(
        states
            .iter()
            .map(|(_, vs)| routes_summary(vs))
            .collect::<Vec<_>>(),
        vec![(names(&["static", "primary"]), 0, None)],
        "{s:#?}"
    );
    assert_eq!(
        states[0].1["spec"]["http"],
        json!([static_route(), host_route("primary")])
    );
    let pods_down = position(&writes, "scaling the canary down", |w| {
        is_scale_to(w, &canary_rs, 0)
    });
    assert!(states[0].0 < pods_down, "{s:#?}");
    // The canary Service goes back to the stable pods once no route reaches it; the stable
    // Service never moves.
    let stable_hash = current_rs(&v1).trim_start_matches("web-").to_owned();
    let service_writes: Vec<(usize, String, String)> = writes
        .iter()
        .enumerate()
        .filter(|(_, w)| w.resource == "services")
        .map(|(index, w)| {
            let hash = w.body.as_ref().unwrap()["spec"]["selector"][HASH_LABEL].clone();
            (
                index,
                w.name.clone().unwrap_or_default(),
                hash.as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        service_writes
            .iter()
            .map(|(_, name, hash)| (name.as_str(), hash.as_str()))
            .collect::<Vec<_>>(),
        vec![("web-canary", stable_hash.as_str())],
        "{s:#?}"
    );
    assert!(states[0].0 < service_writes[0].0, "{s:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_full_drops_header_and_mirror_routes_at_once_and_keeps_the_weight_until_promoted() {
    let cluster = host_cluster(json!([static_route(), host_route("primary")])).await;
    let (v1, paused, _, _) = paused_with_managed_routes(&cluster).await;
    let new_rs = current_rs(&paused);
    let vs_paused = read(&cluster.virtual_services(), VS).await;
    let start = cluster.sim.request_log().len();
    cluster
        .patch_status("web", json!({"promoteFull": true}))
        .await;
    wait_promoted(&cluster, &v1, 5).await;
    let writes = controller_writes(&cluster.sim, start);
    let s = summaries(&writes);
    let states = replay(&writes, "virtualservices", VS, &vs_paused);
    // The managed routes go with the first write; the weighted share stays where it was
    // while the canary grows to full size, and returns to stable once it is the stable.
    assert_eq!(
        states
            .iter()
            .map(|(_, vs)| routes_summary(vs))
            .collect::<Vec<_>>(),
        vec![
            (names(&["static", "primary"]), 20, None),
            (names(&["static", "primary"]), 0, None),
        ],
        "{s:#?}"
    );
    let stable_switch = position(&writes, "to the stable Service", |w| {
        w.resource == "services" && w.name.as_deref() == Some("web-stable")
    });
    assert!(
        states[0].0 < stable_switch && stable_switch < states[1].0,
        "{s:#?}"
    );
    assert_eq!(
        available_before(
            &log_until(&cluster.sim, start, |w| {
                w.resource == "services" && w.name.as_deref() == Some("web-stable")
            }),
            &new_rs
        ),
        5,
        "{s:#?}"
    );
    assert_eq!(
        read(&cluster.virtual_services(), VS).await["spec"]["http"],
        json!([static_route(), host_route("primary")])
    );
}

// ---- 3. someone else's edits ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_by_another_writer_while_paused_survive_every_later_weight() {
    let cluster = host_cluster(json!([host_route("primary")])).await;
    let steps =
        json!([{"setWeight": 25}, {"pause": {}}, {"setWeight": 50}, {"pause": {"duration": "1s"}}]);
    let canary = json!({
        "canaryService": "web-canary",
        "stableService": "web-stable",
        "scaleDownDelaySeconds": 1,
        "trafficRouting": {"istio": {"virtualService": {"name": VS, "routes": ["primary"]}}},
        "steps": steps
    });
    cluster
        .create_rollout(rollout_manifest("web", 4, canary))
        .await;
    let v1 = cluster.wait_healthy("web", 20).await;
    cluster.set_image("web", "web:v2").await;
    cluster
        .wait_rollout("web", "paused at 25 %", 20, |r| paused_at(r, 1))
        .await;

    // Another writer: a route inserted ahead of `primary` (moving it to index 1), one appended,
    // `primary`'s retries and timeout changed, a gateway added.
    let maintenance = json!({
        "name": "maintenance",
        "match": [{"headers": {"x-maintenance": {"exact": "1"}}}],
        "route": [{"destination": {"host": "web-maintenance"}}]
    });
    let legacy = json!({
        "name": "legacy",
        "match": [{"uri": {"prefix": "/v0"}}],
        "route": [{"destination": {"host": "web-legacy"}}]
    });
    let edit = json!([
        {"op": "add", "path": "/spec/http/0", "value": maintenance},
        {"op": "add", "path": "/spec/http/-", "value": legacy},
        {"op": "add", "path": "/spec/http/1/timeout", "value": "5s"},
        {"op": "replace", "path": "/spec/http/1/retries/attempts", "value": 5},
        {"op": "add", "path": "/spec/gateways", "value": ["mesh", "web-gateway"]}
    ]);
    cluster
        .virtual_services()
        .patch(
            VS,
            &PatchParams::default(),
            &Patch::Json::<()>(serde_json::from_value(edit).unwrap()),
        )
        .await
        .expect("the other writer's edit");
    let vs_edited = read(&cluster.virtual_services(), VS).await;
    let start = cluster.sim.request_log().len();
    cluster
        .patch_status("web", json!({"pauseConditions": null}))
        .await;
    wait_promoted(&cluster, &v1, 4).await;

    let writes = controller_writes(&cluster.sim, start);
    let s = summaries(&writes);
    let states = replay(&writes, "virtualservices", VS, &vs_edited);
    let expected_primary = |stable: i64, canary: i64| {
        json!({
            "name": "primary",
            "timeout": "5s",
            "retries": {"attempts": 5, "perTryTimeout": "2s"},
            "route": [
                {"destination": {"host": "web-stable"}, "weight": stable},
                {"destination": {"host": "web-canary"}, "weight": canary}
            ]
        })
    };
    let expected: Vec<Value> = [(50, 50), (0, 100), (100, 0)]
        .into_iter()
        .map(|(stable, canary)| {
            json!({
                "hosts": ["web"],
                "gateways": ["mesh", "web-gateway"],
                "http": [maintenance, expected_primary(stable, canary), legacy]
            })
        })
        .collect();
    assert_eq!(
        states
            .iter()
            .map(|(_, vs)| vs["spec"].clone())
            .collect::<Vec<_>>(),
        expected,
        "{s:#?}"
    );
    // Ramp found `primary` where the other writer moved it, and wrote only its two weights.
    for (index, _) in &states {
        let ops = writes[*index].body.as_ref().unwrap().as_array().unwrap();
        let written: Vec<&str> = ops
            .iter()
            .filter(|op| op["op"] != "test")
            .map(|op| op["path"].as_str().unwrap())
            .collect();
        assert!(
            written
                .iter()
                .all(|path| path.starts_with("/spec/http/1/route/") && path.ends_with("/weight")),
            "{written:?}"
        );
    }
    assert_eq!(
        read(&cluster.virtual_services(), VS).await["spec"],
        expected[2]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_editing_throughout_the_rollout_loses_nothing_and_weights_stay_in_order() {
    let cluster = host_cluster(json!([host_route("primary")])).await;
    let canary = json!({
        "canaryService": "web-canary",
        "stableService": "web-stable",
        "scaleDownDelaySeconds": 1,
        "trafficRouting": {"istio": {"virtualService": {"name": VS, "routes": ["primary"]}}},
        "steps": [
            {"setWeight": 25}, {"pause": {"duration": "1s"}},
            {"setWeight": 50}, {"pause": {"duration": "1s"}},
            {"setWeight": 75}, {"pause": {"duration": "1s"}}
        ]
    });
    cluster
        .create_rollout(rollout_manifest("web", 4, canary))
        .await;
    let v1 = cluster.wait_healthy("web", 20).await;
    let vs_before = read(&cluster.virtual_services(), VS).await;
    let start = cluster.sim.request_log().len();

    // The other writer inserts a route at the top (shifting `primary` down) or appends one,
    // and labels the object, every 50 ms until the rollout is done — without reading first,
    // so any write of Ramp's made on a stale read would drop some of these.
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let editor = {
        let api = cluster.virtual_services();
        tokio::spawn(async move {
            let mut edits = 0_usize;
            loop {
                let route = json!({
                    "name": format!("edit-{edits}"),
                    "match": [{"headers": {"x-edit": {"exact": edits.to_string()}}}],
                    "route": [{"destination": {"host": "web-edits"}}]
                });
                let at = if edits.is_multiple_of(2) { "0" } else { "-" };
                let ops = json!([
                    {"op": "add", "path": format!("/spec/http/{at}"), "value": route},
                    {"op": "add", "path": "/metadata/labels", "value": {"edits": edits.to_string()}}
                ]);
                api.patch(
                    VS,
                    &PatchParams::default(),
                    &Patch::Json::<()>(serde_json::from_value(ops).unwrap()),
                )
                .await
                .expect("the other writer's edit");
                edits += 1;
                tokio::select! {
                    _ = &mut stopped => return edits,
                    () = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        })
    };
    cluster.set_image("web", "web:v2").await;
    wait_promoted(&cluster, &v1, 4).await;
    let _ = stop.send(());
    let edits = editor.await.unwrap();

    // Everything written to the VirtualService, by both writers, replayed in order: every
    // route the other writer added is there, in the order it put them, and `primary` walked
    // each step exactly once.
    let all_writes: Vec<LoggedRequest> = cluster
        .sim
        .request_log()
        .since_settled(start, std::time::Duration::from_secs(2))
        .into_iter()
        .filter(LoggedRequest::succeeded)
        .collect();
    let states = replay(&all_writes, "virtualservices", VS, &vs_before);
    let ramp_states: Vec<i64> = states
        .iter()
        .filter(|(index, _)| {
            // Ramp's writes are the ones that touch weights.
            all_writes[*index]
                .body
                .as_ref()
                .and_then(Value::as_array)
                .is_some_and(|ops| {
                    ops.iter()
                        .any(|op| op["path"].as_str().unwrap_or("").ends_with("/weight"))
                })
        })
        .map(|(_, vs)| weight_of(http_route(vs, "primary"), "host", "web-canary"))
        .collect();
    assert_eq!(
        ramp_states,
        vec![25, 50, 75, 100, 0],
        "{:#?}",
        summaries(&all_writes)
    );
    let live = read(&cluster.virtual_services(), VS).await;
    assert_eq!(live["spec"], states.last().unwrap().1["spec"]);
    let expected_order: Vec<String> = (0..edits)
        .rev()
        .filter(|n| n.is_multiple_of(2))
        .map(|n| format!("edit-{n}"))
        .chain(std::iter::once("primary".to_owned()))
        .chain(
            (0..edits)
                .filter(|n| !n.is_multiple_of(2))
                .map(|n| format!("edit-{n}")),
        )
        .collect();
    assert_eq!(route_names(&live), expected_order);
    assert_eq!(live["metadata"]["labels"]["edits"], (edits - 1).to_string());
    let mut primary = host_route("primary");
    primary["route"][0]["weight"] = json!(100);
    primary["route"][1]["weight"] = json!(0);
    assert_eq!(*http_route(&live, "primary"), primary);
}

// ---- 4. several VirtualServices, a named route among several ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_virtual_services_change_only_the_named_routes() {
    let mut cluster = Cluster::start().await;
    cluster
        .create_services(&["web-stable", "web-canary"], "web")
        .await;
    // `admin` and `health` also split between stable and canary, but are not named: Ramp must
    // leave their weights alone.
    let mut admin = host_route("admin");
    admin["match"] = json!([{"uri": {"prefix": "/admin"}}]);
    admin["route"][0]["weight"] = json!(90);
    admin["route"][1]["weight"] = json!(10);
    let mut health = host_route("health");
    health["route"][0]["weight"] = json!(50);
    health["route"][1]["weight"] = json!(50);
    create(
        &cluster.virtual_services(),
        json!({
            "apiVersion": "networking.istio.io/v1alpha3", "kind": "VirtualService",
            "metadata": {"name": VS, "namespace": ns()},
            "spec": {"hosts": ["web"], "http": [admin, host_route("primary"), static_route()]}
        }),
    )
    .await;
    create(
        &cluster.virtual_services(),
        json!({
            "apiVersion": "networking.istio.io/v1alpha3", "kind": "VirtualService",
            "metadata": {"name": "web-internal", "namespace": ns()},
            "spec": {"hosts": ["web.internal"], "http": [health, host_route("internal")]}
        }),
    )
    .await;
    cluster.start_controller();
    let canary = json!({
        "canaryService": "web-canary",
        "stableService": "web-stable",
        "scaleDownDelaySeconds": 1,
        "trafficRouting": {"istio": {"virtualServices": [
            {"name": VS, "routes": ["primary"]},
            {"name": "web-internal", "routes": ["internal"]}
        ]}},
        "steps": [
            {"setWeight": 25}, {"pause": {"duration": "1s"}},
            {"setWeight": 50}, {"pause": {"duration": "1s"}}
        ]
    });
    cluster
        .create_rollout(rollout_manifest("web", 4, canary))
        .await;
    let v1 = cluster.wait_healthy("web", 20).await;
    let public_before = read(&cluster.virtual_services(), VS).await;
    let internal_before = read(&cluster.virtual_services(), "web-internal").await;
    let start = cluster.sim.request_log().len();
    cluster.set_image("web", "web:v2").await;
    wait_promoted(&cluster, &v1, 4).await;
    let writes = controller_writes(&cluster.sim, start);
    let s = summaries(&writes);

    for (name, before, named) in [
        (VS, &public_before, "primary"),
        ("web-internal", &internal_before, "internal"),
    ] {
        let states = replay(&writes, "virtualservices", name, before);
        let weights: Vec<i64> = states
            .iter()
            .map(|(_, vs)| weight_of(http_route(vs, named), "host", "web-canary"))
            .collect();
        assert_eq!(weights, vec![25, 50, 100, 0], "{name}: {s:#?}");
        // Every other route is exactly as it was in every state.
        for (_, vs) in &states {
            let others = |vs: &Value| -> Vec<Value> {
                vs["spec"]["http"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|r| r["name"] != named)
                    .cloned()
                    .collect()
            };
            assert_eq!(others(vs), others(before), "{name}");
            let route = http_route(vs, named);
            assert_eq!(
                weight_of(route, "host", "web-stable") + weight_of(route, "host", "web-canary"),
                100
            );
        }
    }
    // Both VirtualServices get each weight, in the order the rollout lists them.
    let order: Vec<&str> = writes
        .iter()
        .filter(|w| w.resource == "virtualservices")
        .map(|w| w.name.as_deref().unwrap())
        .collect();
    assert_eq!(order, [VS, "web-internal"].repeat(4), "{s:#?}");
}

// ---- 5. TLS and TCP routes ----

fn tls_route(port: i64, host: &str, stable: i64, canary: i64) -> Value {
    json!({
        "match": [{"port": port, "sniHosts": [host]}],
        "route": [
            {"destination": {"host": "web-stable", "port": {"number": port}}, "weight": stable},
            {"destination": {"host": "web-canary", "port": {"number": port}}, "weight": canary}
        ]
    })
}

fn tcp_route(port: i64, stable: i64, canary: i64) -> Value {
    json!({
        "match": [{"port": port}],
        "route": [
            {"destination": {"host": "web-stable", "port": {"number": port}}, "weight": stable},
            {"destination": {"host": "web-canary", "port": {"number": port}}, "weight": canary}
        ]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_tcp_routes_selected_by_port_and_sni_walk_every_weight() {
    let mut cluster = Cluster::start().await;
    cluster
        .create_services(&["web-stable", "web-canary"], "web")
        .await;
    // Only the TLS route for web.example.com:443 and the TCP route on 3306 are the rollout's;
    // the TLS route of another SNI host and the TCP route on another port are not.
    let spec = json!({
        "hosts": ["web.example.com", "other.example.com"],
        "tls": [
            tls_route(443, "other.example.com", 70, 30),
            tls_route(443, "web.example.com", 100, 0)
        ],
        "tcp": [tcp_route(5432, 60, 40), tcp_route(3306, 100, 0)]
    });
    create(
        &cluster.virtual_services(),
        json!({
            "apiVersion": "networking.istio.io/v1alpha3", "kind": "VirtualService",
            "metadata": {"name": VS, "namespace": ns()},
            "spec": spec
        }),
    )
    .await;
    cluster.start_controller();
    let canary = json!({
        "canaryService": "web-canary",
        "stableService": "web-stable",
        "scaleDownDelaySeconds": 1,
        "trafficRouting": {"istio": {"virtualService": {
            "name": VS,
            "tlsRoutes": [{"port": 443, "sniHosts": ["web.example.com"]}],
            "tcpRoutes": [{"port": 3306}]
        }}},
        "steps": [
            {"setWeight": 25}, {"pause": {"duration": "1s"}},
            {"setWeight": 50}, {"pause": {"duration": "1s"}}
        ]
    });
    cluster
        .create_rollout(rollout_manifest("web", 4, canary))
        .await;
    let v1 = cluster.wait_healthy("web", 20).await;
    let vs_before = read(&cluster.virtual_services(), VS).await;
    assert_eq!(
        vs_before["spec"], spec,
        "the initial deploy changes nothing"
    );
    let start = cluster.sim.request_log().len();
    cluster.set_image("web", "web:v2").await;
    let v2 = wait_promoted(&cluster, &v1, 4).await;
    let writes = controller_writes(&cluster.sim, start);
    let s = summaries(&writes);

    // One write per weight moves the TLS and the TCP route together; the others never move.
    let states: Vec<Value> = replay(&writes, "virtualservices", VS, &vs_before)
        .into_iter()
        .map(|(_, vs)| vs["spec"].clone())
        .collect();
    let expected: Vec<Value> = [25, 50, 100, 0]
        .into_iter()
        .map(|canary| {
            json!({
                "hosts": ["web.example.com", "other.example.com"],
                "tls": [
                    tls_route(443, "other.example.com", 70, 30),
                    tls_route(443, "web.example.com", 100 - canary, canary)
                ],
                "tcp": [tcp_route(5432, 60, 40), tcp_route(3306, 100 - canary, canary)]
            })
        })
        .collect();
    assert_eq!(states, expected, "{s:#?}");
    let new_rs = current_rs(&v2);
    for (canary, pods) in [(25, 1), (50, 2), (100, 4)] {
        let before = log_until(&cluster.sim, start, |w| {
            w.resource == "virtualservices"
                && w.body.as_ref().is_some_and(|b| {
                    b.as_array().into_iter().flatten().any(|op| {
                        op["path"] == "/spec/tls/1/route/1/weight" && op["value"] == canary
                    })
                })
        });
        assert!(
            available_before(&before, &new_rs) >= pods,
            "{canary} % written before {pods} canary pods were available: {s:#?}"
        );
    }
}
