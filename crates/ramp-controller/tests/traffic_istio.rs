//! Istio planners against the VirtualServices and DestinationRules of the upstream e2e tests
//! (research §5.2): the patch is applied to the object and the result compared, and a second
//! plan on the result must be empty.

use pretty_assertions::assert_eq;
use proptest::prelude::*;
use ramp_api::rollout::{
    HeaderRoutingMatch, IstioDestinationRule, IstioVirtualService, RouteMatch, StringMatch,
    TcpRoute, TlsRoute,
};
use ramp_controller::traffic::istio::{
    SplitDestinations, VirtualServicePlan, plan_destination_rule, plan_destination_rule_release,
    plan_virtual_service, virtual_service_name,
};
use ramp_controller::traffic::{ObjectName, TrafficError};
use ramp_core::traffic::{HeaderRouteIntent, MirrorRouteIntent, TrafficIntent};
use serde_json::{Value, json};

const HOST_SPLIT: SplitDestinations<'static> = SplitDestinations::Host {
    canary_service: "istio-host-split-canary",
    stable_service: "istio-host-split-stable",
};

fn vs_object() -> ObjectName {
    ObjectName::new("VirtualService", "default", "istio-host-split-vsvc")
}

fn host_split_vs() -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": "VirtualService",
        "metadata": {"name": "istio-host-split-vsvc", "namespace": "default", "resourceVersion": "7"},
        "spec": {
            "hosts": ["istio-host-split-vsvc"],
            "http": [{
                "name": "primary",
                "route": [
                    {"destination": {"host": "istio-host-split-stable"}, "weight": 100},
                    {"destination": {"host": "istio-host-split-canary"}, "weight": 0}
                ]
            }],
            "tls": [{
                "match": [{"port": 3000, "sniHosts": ["istio-host-split-vsvc"]}],
                "route": [
                    {"destination": {"host": "istio-host-split-stable"}, "weight": 100},
                    {"destination": {"host": "istio-host-split-canary"}, "weight": 0}
                ]
            }]
        }
    })
}

fn primary_only() -> IstioVirtualService {
    IstioVirtualService {
        name: "istio-host-split-vsvc".to_owned(),
        routes: Some(vec!["primary".to_owned()]),
        ..IstioVirtualService::default()
    }
}

fn intent(weight: i32) -> TrafficIntent {
    TrafficIntent {
        canary_weight: weight,
        max_weight: 100,
        ..TrafficIntent::default()
    }
}

fn plan(
    vs: &Value,
    selection: &IstioVirtualService,
    split: SplitDestinations<'_>,
    managed: &[&str],
    intent: &TrafficIntent,
) -> VirtualServicePlan {
    let managed: Vec<String> = managed.iter().map(|s| s.to_string()).collect();
    plan_virtual_service(vs, &vs_object(), selection, split, &managed, intent)
        .expect("plan succeeds")
}

/// Applies the plan, then asserts a second plan on the result writes nothing.
fn apply_plan(
    vs: &Value,
    selection: &IstioVirtualService,
    split: SplitDestinations<'_>,
    managed: &[&str],
    intent: &TrafficIntent,
) -> Value {
    let first = plan(vs, selection, split, managed, intent);
    let mut result = vs.clone();
    json_patch::patch(&mut result, &first.patch)
        .expect("patch applies to the object it was planned on");
    let second = plan(&result, selection, split, managed, intent);
    assert!(
        second.patch.0.is_empty(),
        "plan on its own result is not a no-op: {:?}",
        second.patch
    );
    result
}

fn weights(route: &Value) -> Vec<(String, i64)> {
    route["route"]
        .as_array()
        .expect("route has destinations")
        .iter()
        .map(|d| {
            let host = d["destination"]["host"].as_str().unwrap_or_default();
            let subset = d["destination"]["subset"].as_str();
            let key = subset.map_or_else(|| host.to_owned(), str::to_owned);
            (key, d["weight"].as_i64().unwrap_or(-1))
        })
        .collect()
}

fn pair(stable: i64, canary: i64) -> Vec<(String, i64)> {
    vec![
        ("istio-host-split-stable".to_owned(), stable),
        ("istio-host-split-canary".to_owned(), canary),
    ]
}

#[test]
fn host_split_set_weight_writes_exactly_the_two_weights_guarded() {
    let vs = host_split_vs();
    let planned = plan(&vs, &primary_only(), HOST_SPLIT, &[], &intent(10));
    assert_eq!(planned.observed_canary_weight, Some(0));
    assert_eq!(planned.desired_canary_weight, 10);
    assert_eq!(
        serde_json::to_value(&planned.patch).expect("serializes"),
        json!([
            {"op": "test", "path": "/metadata/resourceVersion", "value": "7"},
            {"op": "test", "path": "/spec/http/0/name", "value": "primary"},
            {"op": "test", "path": "/spec/http/0/route/1/destination/host", "value": "istio-host-split-canary"},
            {"op": "add", "path": "/spec/http/0/route/1/weight", "value": 10},
            {"op": "test", "path": "/spec/http/0/route/0/destination/host", "value": "istio-host-split-stable"},
            {"op": "add", "path": "/spec/http/0/route/0/weight", "value": 90}
        ])
    );
}

#[test]
fn host_split_walks_healthy_pause_promote_like_test_istio_host_split() {
    let healthy = host_split_vs();
    let paused = apply_plan(&healthy, &primary_only(), HOST_SPLIT, &[], &intent(10));
    assert_eq!(weights(&paused["spec"]["http"][0]), pair(90, 10));
    // TLS routes are not managed unless selected.
    assert_eq!(paused["spec"]["tls"], healthy["spec"]["tls"]);
    let promoted = apply_plan(&paused, &primary_only(), HOST_SPLIT, &[], &intent(0));
    assert_eq!(weights(&promoted["spec"]["http"][0]), pair(100, 0));
    assert_eq!(promoted, healthy);
}

#[test]
fn unnamed_only_route_is_managed_without_routes() {
    let mut vs = host_split_vs();
    vs["spec"]["http"][0]
        .as_object_mut()
        .expect("route")
        .remove("name");
    let selection = IstioVirtualService {
        name: "istio-host-split-vsvc".to_owned(),
        ..IstioVirtualService::default()
    };
    let result = apply_plan(&vs, &selection, HOST_SPLIT, &[], &intent(35));
    assert_eq!(weights(&result["spec"]["http"][0]), pair(65, 35));
}

#[test]
fn several_routes_without_routes_field_is_an_error_naming_the_field() {
    let mut vs = host_split_vs();
    let extra = vs["spec"]["http"][0].clone();
    vs["spec"]["http"].as_array_mut().expect("http").push(extra);
    let selection = IstioVirtualService {
        name: "istio-host-split-vsvc".to_owned(),
        ..IstioVirtualService::default()
    };
    let err = plan_virtual_service(&vs, &vs_object(), &selection, HOST_SPLIT, &[], &intent(10))
        .expect_err("ambiguous route");
    assert_eq!(err.metric_label(), "missing_in_object");
    let message = err.to_string();
    assert!(
        message.contains("VirtualService default/istio-host-split-vsvc"),
        "{message}"
    );
    assert!(message.contains("has 2 HTTP routes"), "{message}");
}

#[test]
fn missing_route_and_missing_destination_are_named() {
    let vs = host_split_vs();
    let selection = IstioVirtualService {
        name: "istio-host-split-vsvc".to_owned(),
        routes: Some(vec!["secondary".to_owned()]),
        ..IstioVirtualService::default()
    };
    let err = plan_virtual_service(&vs, &vs_object(), &selection, HOST_SPLIT, &[], &intent(10))
        .expect_err("no such route");
    assert!(
        err.to_string()
            .contains("has no HTTP route named 'secondary'"),
        "{err}"
    );

    let other_canary = SplitDestinations::Host {
        canary_service: "other-canary",
        stable_service: "istio-host-split-stable",
    };
    let err = plan_virtual_service(
        &vs,
        &vs_object(),
        &primary_only(),
        other_canary,
        &[],
        &intent(10),
    )
    .expect_err("no canary destination");
    assert_eq!(
        err.to_string(),
        "VirtualService default/istio-host-split-vsvc: http route 'primary' has no destination whose host \
         is the canary service 'other-canary'"
    );
}

#[test]
fn fully_qualified_hosts_match_by_short_name() {
    let mut vs = host_split_vs();
    vs["spec"]["http"][0]["route"][0]["destination"]["host"] =
        json!("istio-host-split-stable.default.svc.cluster.local");
    vs["spec"]["http"][0]["route"][1]["destination"]["host"] =
        json!("istio-host-split-canary.default.svc.cluster.local");
    let result = apply_plan(&vs, &primary_only(), HOST_SPLIT, &[], &intent(40));
    assert_eq!(result["spec"]["http"][0]["route"][0]["weight"], json!(60));
    assert_eq!(result["spec"]["http"][0]["route"][1]["weight"], json!(40));
}

#[test]
fn tls_and_tcp_routes_get_the_same_weights() {
    let mut vs = host_split_vs();
    vs["spec"]["tcp"] = json!([
        {"match": [{"port": 9000}], "route": [
            {"destination": {"host": "other"}, "weight": 100}
        ]},
        {"match": [{"port": 8080}], "route": [
            {"destination": {"host": "istio-host-split-canary"}, "weight": 0},
            {"destination": {"host": "istio-host-split-stable"}, "weight": 100}
        ]}
    ]);
    let selection = IstioVirtualService {
        name: "istio-host-split-vsvc".to_owned(),
        routes: Some(vec!["primary".to_owned()]),
        tls_routes: Some(vec![TlsRoute {
            port: Some(3000),
            sni_hosts: Some(vec!["istio-host-split-vsvc".to_owned()]),
        }]),
        tcp_routes: Some(vec![TcpRoute { port: Some(8080) }]),
    };
    let result = apply_plan(&vs, &selection, HOST_SPLIT, &[], &intent(10));
    assert_eq!(weights(&result["spec"]["http"][0]), pair(90, 10));
    assert_eq!(weights(&result["spec"]["tls"][0]), pair(90, 10));
    assert_eq!(
        weights(&result["spec"]["tcp"][1]),
        vec![
            ("istio-host-split-canary".to_owned(), 10),
            ("istio-host-split-stable".to_owned(), 90)
        ]
    );
    assert_eq!(result["spec"]["tcp"][0], vs["spec"]["tcp"][0]);

    let wrong_sni = IstioVirtualService {
        tls_routes: Some(vec![TlsRoute {
            port: Some(3000),
            sni_hosts: Some(vec!["elsewhere".to_owned()]),
        }]),
        tcp_routes: None,
        ..selection
    };
    let err = plan_virtual_service(&vs, &vs_object(), &wrong_sni, HOST_SPLIT, &[], &intent(10))
        .expect_err("no tls route for that sni host");
    assert!(
        err.to_string()
            .contains("has no TLS route matching port 3000 and sniHosts [elsewhere]"),
        "{err}"
    );
}

fn subset_vs() -> Value {
    json!({
        "metadata": {"name": "istio-subset-split-vsvc", "namespace": "default", "resourceVersion": "3"},
        "spec": {
            "hosts": ["istio-subset-split"],
            "http": [{
                "name": "primary",
                "retries": {"attempts": 3, "perTryTimeout": "2s"},
                "route": [
                    {"destination": {"host": "istio-subset-split", "subset": "stable"}, "weight": 100},
                    {"destination": {"host": "istio-subset-split", "subset": "canary"}, "weight": 0}
                ]
            }]
        }
    })
}

const SUBSET_SPLIT: SplitDestinations<'static> = SplitDestinations::Subset {
    canary_subset: "canary",
    stable_subset: "stable",
};

#[test]
fn subset_split_weights_match_by_subset_and_keep_other_fields() {
    let vs = subset_vs();
    let result = apply_plan(&vs, &primary_only(), SUBSET_SPLIT, &[], &intent(25));
    assert_eq!(
        weights(&result["spec"]["http"][0]),
        vec![("stable".to_owned(), 75), ("canary".to_owned(), 25)]
    );
    assert_eq!(
        result["spec"]["http"][0]["retries"],
        vs["spec"]["http"][0]["retries"]
    );
}

#[test]
fn additional_subset_destinations_keep_their_weight_and_come_out_of_stable() {
    let mut vs = subset_vs();
    vs["spec"]["http"][0]["route"] = json!([
        {"destination": {"host": "istio-subset-split", "subset": "stable"}, "weight": 80},
        {"destination": {"host": "istio-subset-split", "subset": "canary"}, "weight": 0},
        {"destination": {"host": "istio-subset-split", "subset": "experiment"}, "weight": 20}
    ]);
    let result = apply_plan(&vs, &primary_only(), SUBSET_SPLIT, &[], &intent(10));
    assert_eq!(
        weights(&result["spec"]["http"][0]),
        vec![
            ("stable".to_owned(), 70),
            ("canary".to_owned(), 10),
            ("experiment".to_owned(), 20)
        ]
    );
    // The canary never gets more than is left after the other destinations.
    let result = apply_plan(&vs, &primary_only(), SUBSET_SPLIT, &[], &intent(100));
    assert_eq!(
        weights(&result["spec"]["http"][0]),
        vec![
            ("stable".to_owned(), 0),
            ("canary".to_owned(), 80),
            ("experiment".to_owned(), 20)
        ]
    );
}

fn destination_rule() -> Value {
    json!({
        "metadata": {"name": "istio-subset-split-destrule", "namespace": "default", "resourceVersion": "11"},
        "spec": {
            "host": "istio-subset-split",
            "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}},
            "subsets": [
                {"name": "canary", "labels": {"app": "istio-subset-split"}},
                {"name": "stable", "labels": {"app": "istio-subset-split"}, "trafficPolicy": {"loadBalancer": {"simple": "ROUND_ROBIN"}}},
                {"name": "legacy", "labels": {"version": "v0"}}
            ]
        }
    })
}

fn rule_config() -> IstioDestinationRule {
    IstioDestinationRule {
        name: "istio-subset-split-destrule".to_owned(),
        canary_subset_name: "canary".to_owned(),
        stable_subset_name: "stable".to_owned(),
        additional_subset_names: None,
    }
}

fn dr_object() -> ObjectName {
    ObjectName::new("DestinationRule", "default", "istio-subset-split-destrule")
}

fn hashes(canary: Option<&str>, stable: Option<&str>) -> TrafficIntent {
    TrafficIntent {
        canary_hash: canary.map(str::to_owned),
        stable_hash: stable.map(str::to_owned),
        ..intent(0)
    }
}

#[test]
fn destination_rule_labels_the_two_subsets_and_keeps_unmanaged_subsets() {
    let rule = destination_rule();
    let intent = hashes(Some("6c9b8f4d7"), Some("58f8d7b6c5"));
    let patch = plan_destination_rule(
        &rule,
        &dr_object(),
        &rule_config(),
        "istio-subset-split",
        &intent,
    )
    .expect("plan succeeds");
    let mut result = rule.clone();
    json_patch::patch(&mut result, &patch).expect("applies");
    assert_eq!(
        result["metadata"]["annotations"],
        json!({"argo-rollouts.argoproj.io/managed-by-rollouts": "istio-subset-split"})
    );
    assert_eq!(
        result["spec"]["subsets"],
        json!([
            {"name": "canary", "labels": {"app": "istio-subset-split", "rollouts-pod-template-hash": "6c9b8f4d7"}},
            {"name": "stable", "labels": {"app": "istio-subset-split", "rollouts-pod-template-hash": "58f8d7b6c5"},
             "trafficPolicy": {"loadBalancer": {"simple": "ROUND_ROBIN"}}},
            {"name": "legacy", "labels": {"version": "v0"}}
        ])
    );
    assert_eq!(
        result["spec"]["trafficPolicy"],
        rule["spec"]["trafficPolicy"]
    );
    let again = plan_destination_rule(
        &result,
        &dr_object(),
        &rule_config(),
        "istio-subset-split",
        &intent,
    )
    .expect("plan succeeds");
    assert!(again.0.is_empty(), "{again:?}");

    // Promotion: both subsets carry the new hash; a missing hash removes the label.
    let promoted = hashes(Some("6c9b8f4d7"), Some("6c9b8f4d7"));
    let patch = plan_destination_rule(
        &result,
        &dr_object(),
        &rule_config(),
        "istio-subset-split",
        &promoted,
    )
    .expect("plan succeeds");
    json_patch::patch(&mut result, &patch).expect("applies");
    assert_eq!(
        result["spec"]["subsets"][1]["labels"]["rollouts-pod-template-hash"],
        json!("6c9b8f4d7")
    );
    let cleared = hashes(None, Some("6c9b8f4d7"));
    let patch = plan_destination_rule(
        &result,
        &dr_object(),
        &rule_config(),
        "istio-subset-split",
        &cleared,
    )
    .expect("plan succeeds");
    json_patch::patch(&mut result, &patch).expect("applies");
    assert_eq!(
        result["spec"]["subsets"][0]["labels"],
        json!({"app": "istio-subset-split"})
    );
}

#[test]
fn destination_rule_without_labels_gets_a_labels_map() {
    let mut rule = destination_rule();
    rule["spec"]["subsets"][0]
        .as_object_mut()
        .expect("subset")
        .remove("labels");
    let patch = plan_destination_rule(
        &rule,
        &dr_object(),
        &rule_config(),
        "ro",
        &hashes(Some("abc"), Some("def")),
    )
    .expect("plan succeeds");
    json_patch::patch(&mut rule, &patch).expect("applies");
    assert_eq!(
        rule["spec"]["subsets"][0]["labels"],
        json!({"rollouts-pod-template-hash": "abc"})
    );
}

#[test]
fn destination_rule_errors_name_the_rule() {
    let mut rule = destination_rule();
    rule["metadata"]["annotations"] =
        json!({"argo-rollouts.argoproj.io/managed-by-rollouts": "someone-else"});
    let err = plan_destination_rule(
        &rule,
        &dr_object(),
        &rule_config(),
        "mine",
        &hashes(Some("a"), Some("b")),
    )
    .expect_err("claimed by another rollout");
    assert!(matches!(err, TrafficError::ManagedByOtherRollout { .. }));
    assert_eq!(
        err.to_string(),
        "DestinationRule default/istio-subset-split-destrule is managed by rollout 'someone-else', not by 'mine'"
    );

    let config = IstioDestinationRule {
        canary_subset_name: "preview".to_owned(),
        ..rule_config()
    };
    let err = plan_destination_rule(
        &destination_rule(),
        &dr_object(),
        &config,
        "mine",
        &hashes(Some("a"), Some("b")),
    )
    .expect_err("missing subset");
    assert!(
        err.to_string().contains("has no subset named 'preview'"),
        "{err}"
    );
}

#[test]
fn releasing_a_destination_rule_removes_only_ramps_marks() {
    let rule = destination_rule();
    let intent = hashes(Some("c"), Some("s"));
    let patch = plan_destination_rule(&rule, &dr_object(), &rule_config(), "ro", &intent)
        .expect("plan succeeds");
    let mut managed = rule.clone();
    json_patch::patch(&mut managed, &patch).expect("applies");
    assert!(
        plan_destination_rule_release(&managed, &rule_config(), "someone-else")
            .0
            .is_empty()
    );
    let release = plan_destination_rule_release(&managed, &rule_config(), "ro");
    json_patch::patch(&mut managed, &release).expect("applies");
    assert_eq!(managed["metadata"]["annotations"], json!({}));
    assert_eq!(managed["spec"], rule["spec"]);
    assert!(
        plan_destination_rule_release(&managed, &rule_config(), "ro")
            .0
            .is_empty()
    );
}

fn header_intent(weight: i32) -> TrafficIntent {
    TrafficIntent {
        header_routes: vec![HeaderRouteIntent {
            name: "set-header-1".to_owned(),
            matches: vec![HeaderRoutingMatch {
                header_name: "agent".to_owned(),
                header_value: StringMatch {
                    regex: Some("firefox(.*)".to_owned()),
                    ..StringMatch::default()
                },
            }],
        }],
        ..intent(weight)
    }
}

#[test]
fn header_route_goes_first_and_disappears_like_test_istio_host_header_route() {
    let mut vs = host_split_vs();
    vs["spec"]["http"][0]["route"][0]["destination"]["port"] = json!({"number": 8080});
    let managed = ["set-header-1"];
    let paused = apply_plan(
        &vs,
        &primary_only(),
        HOST_SPLIT,
        &managed,
        &header_intent(20),
    );
    let http = paused["spec"]["http"].as_array().expect("http");
    assert_eq!(http.len(), 2);
    assert_eq!(
        http[0],
        json!({
            "name": "set-header-1",
            "match": [{"headers": {"agent": {"regex": "firefox(.*)"}}}],
            "route": [{"destination": {"host": "istio-host-split-canary", "port": {"number": 8080}}, "weight": 100}]
        })
    );
    assert_eq!(http[1]["name"], json!("primary"));
    assert_eq!(weights(&http[1]), pair(80, 20));

    let later = apply_plan(&paused, &primary_only(), HOST_SPLIT, &managed, &intent(40));
    let http = later["spec"]["http"].as_array().expect("http");
    assert_eq!(http.len(), 1);
    assert_eq!(weights(&http[0]), pair(60, 40));

    let promoted = apply_plan(&later, &primary_only(), HOST_SPLIT, &managed, &intent(0));
    assert_eq!(promoted, vs);
}

#[test]
fn header_route_in_subset_mode_targets_the_canary_subset() {
    let managed = ["set-header-1"];
    let result = apply_plan(
        &subset_vs(),
        &primary_only(),
        SUBSET_SPLIT,
        &managed,
        &header_intent(0),
    );
    assert_eq!(
        result["spec"]["http"][0]["route"],
        json!([{"destination": {"host": "istio-subset-split", "subset": "canary"}, "weight": 100}])
    );
}

#[test]
fn mirror_routes_carry_current_weights_and_percentage_like_test_istio_host_mirror_route() {
    let managed = ["mirror-route", "mirror-route-2"];
    let mirror = |name: &str, percentage: i32| MirrorRouteIntent {
        name: name.to_owned(),
        matches: vec![RouteMatch {
            method: Some(StringMatch {
                exact: Some("GET".to_owned()),
                ..StringMatch::default()
            }),
            path: Some(StringMatch {
                prefix: Some("/".to_owned()),
                ..StringMatch::default()
            }),
            headers: None,
        }],
        percentage,
    };
    let at_20 = TrafficIntent {
        // Intent order differs from managedRoutes order: managedRoutes decides precedence.
        mirror_routes: vec![mirror("mirror-route-2", 80), mirror("mirror-route", 100)],
        ..intent(20)
    };
    let result = apply_plan(
        &host_split_vs(),
        &primary_only(),
        HOST_SPLIT,
        &managed,
        &at_20,
    );
    let http = result["spec"]["http"].as_array().expect("http");
    assert_eq!(http.len(), 3);
    assert_eq!(
        http[0],
        json!({
            "name": "mirror-route",
            "match": [{"method": {"exact": "GET"}, "uri": {"prefix": "/"}}],
            "route": [
                {"destination": {"host": "istio-host-split-stable"}, "weight": 80},
                {"destination": {"host": "istio-host-split-canary"}, "weight": 20}
            ],
            "mirror": {"host": "istio-host-split-canary"},
            "mirrorPercentage": {"value": 100}
        })
    );
    assert_eq!(http[1]["name"], json!("mirror-route-2"));
    assert_eq!(http[1]["mirrorPercentage"], json!({"value": 80}));
    assert_eq!(weights(&http[1]), pair(80, 20));
    assert_eq!(weights(&http[2]), pair(80, 20));

    // A weight change also moves the mirror routes' copies of the weights.
    let at_50 = TrafficIntent {
        canary_weight: 50,
        ..at_20.clone()
    };
    let result = apply_plan(&result, &primary_only(), HOST_SPLIT, &managed, &at_50);
    for route in result["spec"]["http"].as_array().expect("http") {
        assert_eq!(weights(route), pair(50, 50));
    }
    let done = apply_plan(&result, &primary_only(), HOST_SPLIT, &managed, &intent(0));
    assert_eq!(done, host_split_vs());
}

#[test]
fn managed_routes_written_elsewhere_are_moved_to_the_front() {
    let mut vs = host_split_vs();
    let stray = json!({"name": "set-header-1", "route": [{"destination": {"host": "x"}}]});
    vs["spec"]["http"].as_array_mut().expect("http").push(stray);
    let result = apply_plan(
        &vs,
        &primary_only(),
        HOST_SPLIT,
        &["set-header-1"],
        &header_intent(5),
    );
    let http = result["spec"]["http"].as_array().expect("http");
    assert_eq!(http.len(), 2);
    assert_eq!(http[0]["name"], json!("set-header-1"));
    assert_eq!(
        http[0]["route"][0]["destination"]["host"],
        json!("istio-host-split-canary")
    );
    assert_eq!(weights(&http[1]), pair(95, 5));
}

#[test]
fn multiple_virtual_services_are_planned_independently() {
    let first = host_split_vs();
    let mut second = host_split_vs();
    second["metadata"]["name"] = json!("istio-host-split-vsvc2");
    second["spec"]["http"][0]["name"] = json!("secondary");
    let selection_2 = IstioVirtualService {
        name: "istio-host-split-vsvc2.other".to_owned(),
        routes: Some(vec!["secondary".to_owned()]),
        ..IstioVirtualService::default()
    };
    assert_eq!(
        virtual_service_name(&selection_2.name, "default"),
        ("istio-host-split-vsvc2", "other")
    );
    assert_eq!(virtual_service_name("vs", "default"), ("vs", "default"));
    assert_eq!(
        virtual_service_name("vs.team.svc.cluster.local", "default"),
        ("vs", "team")
    );
    let one = apply_plan(&first, &primary_only(), HOST_SPLIT, &[], &intent(30));
    let two = apply_plan(&second, &selection_2, HOST_SPLIT, &[], &intent(30));
    assert_eq!(weights(&one["spec"]["http"][0]), pair(70, 30));
    assert_eq!(weights(&two["spec"]["http"][0]), pair(70, 30));
}

#[test]
fn a_patch_survives_unrelated_edits_and_refuses_moved_routes() {
    let mut vs = host_split_vs();
    vs["metadata"]
        .as_object_mut()
        .expect("metadata")
        .remove("resourceVersion");
    let planned = plan(&vs, &primary_only(), HOST_SPLIT, &[], &intent(10));

    // Someone adds retries to our route and a route of their own after it: the patch still
    // applies and their fields survive.
    let mut edited = vs.clone();
    edited["spec"]["http"][0]["retries"] = json!({"attempts": 3});
    edited["spec"]["http"]
        .as_array_mut()
        .expect("http")
        .push(json!({"name": "theirs", "route": [{"destination": {"host": "elsewhere"}}]}));
    let mut result = edited.clone();
    json_patch::patch(&mut result, &planned.patch).expect("unrelated edits do not block the patch");
    assert_eq!(result["spec"]["http"][0]["retries"], json!({"attempts": 3}));
    assert_eq!(result["spec"]["http"][1], edited["spec"]["http"][1]);
    assert_eq!(weights(&result["spec"]["http"][0]), pair(90, 10));

    // Someone inserts a route in front of ours: the index now points elsewhere and the
    // guard refuses the patch instead of writing weights into their route.
    let mut shifted = vs.clone();
    shifted["spec"]["http"]
        .as_array_mut()
        .expect("http")
        .insert(
            0,
            json!({"name": "theirs", "route": [{"destination": {"host": "elsewhere"}}]}),
        );
    let mut result = shifted.clone();
    assert!(json_patch::patch(&mut result, &planned.patch).is_err());

    // With a resourceVersion, any concurrent write refuses the patch.
    let versioned = plan(
        &host_split_vs(),
        &primary_only(),
        HOST_SPLIT,
        &[],
        &intent(10),
    );
    let mut bumped = host_split_vs();
    bumped["metadata"]["resourceVersion"] = json!("8");
    assert!(json_patch::patch(&mut bumped, &versioned.patch).is_err());
}

#[test]
fn istio_refuses_a_max_weight_other_than_100() {
    let intent = TrafficIntent {
        max_weight: 1000,
        ..intent(10)
    };
    let err = plan_virtual_service(
        &host_split_vs(),
        &vs_object(),
        &primary_only(),
        HOST_SPLIT,
        &[],
        &intent,
    )
    .expect_err("maxTrafficWeight with Istio");
    assert_eq!(err.metric_label(), "invalid_config");
}

// ---- property: the patch keeps weights at 100 and never touches what Ramp does not own ----

#[derive(Clone, Debug)]
struct Scenario {
    vs: Value,
    managed_names: Vec<String>,
    intent: TrafficIntent,
}

fn destination(host: &str, weight: Option<i64>) -> Value {
    match weight {
        Some(w) => json!({"destination": {"host": host, "port": {"number": 80}}, "weight": w}),
        None => json!({"destination": {"host": host}}),
    }
}

prop_compose! {
    fn scenario()(
        extra_routes in 0usize..4,
        primary_at in 0usize..4,
        canary_first in any::<bool>(),
        old_canary in 0i64..=100,
        other_weight in prop::option::of(0i64..=30),
        stale_managed in prop::collection::vec((0usize..2, 0usize..6), 0..3),
        weight in 0i32..=100,
        with_header in any::<bool>(),
        with_mirror in any::<bool>(),
        mirror_percentage in 0i32..=100,
        retries in prop::option::of(1i64..5),
    ) -> Scenario {
        let other = other_weight.unwrap_or(0);
        let old_canary = old_canary.min(100 - other);
        let mut route = vec![
            destination("istio-host-split-stable", Some(100 - other - old_canary)),
            destination("istio-host-split-canary", Some(old_canary)),
        ];
        if canary_first { route.reverse(); }
        if let Some(w) = other_weight { route.push(destination("experiment", Some(w))); }
        let mut primary = json!({"name": "primary", "timeout": "5s", "route": route});
        if let Some(attempts) = retries { primary["retries"] = json!({"attempts": attempts}); }
        let mut http: Vec<Value> = (0..extra_routes)
            .map(|i| json!({"name": format!("user-{i}"), "match": [{"uri": {"prefix": format!("/u{i}")}}],
                            "route": [destination("istio-host-split-stable", None)]}))
            .collect();
        http.insert(primary_at.min(http.len()), primary);
        let managed_names = vec!["header".to_owned(), "mirror".to_owned()];
        for (which, at) in stale_managed {
            let name = &managed_names[which];
            if http.iter().any(|r| r["name"] == json!(name)) { continue; }
            let at = at.min(http.len());
            http.insert(at, json!({"name": name, "route": [destination("stale", Some(100))]}));
        }
        let vs = json!({
            "metadata": {"name": "vs", "namespace": "default", "resourceVersion": "1", "labels": {"team": "a"}},
            "spec": {"hosts": ["vs"], "gateways": ["mesh"], "http": http}
        });
        let header_routes = if with_header {
            vec![HeaderRouteIntent { name: "header".to_owned(), matches: vec![HeaderRoutingMatch {
                header_name: "X-Canary".to_owned(),
                header_value: StringMatch { exact: Some("true".to_owned()), ..StringMatch::default() },
            }]}]
        } else { Vec::new() };
        let mirror_routes = if with_mirror {
            vec![MirrorRouteIntent { name: "mirror".to_owned(), matches: Vec::new(), percentage: mirror_percentage }]
        } else { Vec::new() };
        Scenario { vs, managed_names, intent: TrafficIntent {
            canary_weight: weight, max_weight: 100, header_routes, mirror_routes, ..TrafficIntent::default()
        }}
    }
}

fn without_weights(route: &Value) -> Value {
    let mut route = route.clone();
    if let Some(destinations) = route.get_mut("route").and_then(Value::as_array_mut) {
        for d in destinations {
            if let Some(d) = d.as_object_mut() {
                d.remove("weight");
            }
        }
    }
    route
}

proptest! {
    #[test]
    fn patch_keeps_weights_at_100_and_leaves_foreign_fields_alone(s in scenario()) {
        let selection = primary_only();
        let managed: Vec<&str> = s.managed_names.iter().map(String::as_str).collect();
        let result = apply_plan(&s.vs, &selection, HOST_SPLIT, &managed, &s.intent);

        // Everything outside spec.http is untouched.
        prop_assert_eq!(&result["metadata"], &s.vs["metadata"]);
        prop_assert_eq!(&result["spec"]["hosts"], &s.vs["spec"]["hosts"]);
        prop_assert_eq!(&result["spec"]["gateways"], &s.vs["spec"]["gateways"]);

        let is_managed = |r: &Value| s.managed_names.iter().any(|n| r["name"] == json!(n));
        let before: Vec<&Value> = s.vs["spec"]["http"].as_array().expect("well-formed").iter().filter(|r| !is_managed(r)).collect();
        let after_all = result["spec"]["http"].as_array().expect("well-formed");
        let leading = after_all.iter().take_while(|r| is_managed(r)).count();
        let after: Vec<&Value> = after_all.iter().filter(|r| !is_managed(r)).collect();
        // Managed routes only at the front, in managedRoutes order, exactly those intended.
        prop_assert_eq!(leading, after_all.len() - after.len());
        let expected: Vec<&str> = ["header", "mirror"].into_iter()
            .filter(|n| (*n == "header" && !s.intent.header_routes.is_empty()) || (*n == "mirror" && !s.intent.mirror_routes.is_empty()))
            .collect();
        let names: Vec<&str> = after_all[..leading].iter().map(|r| r["name"].as_str().expect("well-formed")).collect();
        prop_assert_eq!(names, expected);

        // Unmanaged routes: same order, same content except the weights of the primary route.
        prop_assert_eq!(before.len(), after.len());
        for (b, a) in before.iter().zip(&after) {
            if b["name"] == json!("primary") {
                prop_assert_eq!(without_weights(b), without_weights(a));
                let total: i64 = a["route"].as_array().expect("well-formed").iter().map(|d| d["weight"].as_i64().expect("well-formed")).sum();
                prop_assert_eq!(total, 100);
                let canary = a["route"].as_array().expect("well-formed").iter()
                    .find(|d| d["destination"]["host"] == json!("istio-host-split-canary")).expect("well-formed");
                let experiment = a["route"].as_array().expect("well-formed").iter()
                    .find(|d| d["destination"]["host"] == json!("experiment"));
                let others = experiment.map_or(0, |d| d["weight"].as_i64().expect("well-formed"));
                prop_assert_eq!(canary["weight"].as_i64().expect("well-formed"), i64::from(s.intent.canary_weight).min(100 - others));
            } else {
                prop_assert_eq!(*b, *a);
            }
        }
    }
}
