//! VirtualServices, DestinationRules and Ingresses named by a Rollout.

use super::*;
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

fn virtual_service(http: Value) -> Value {
    json!({"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
        "metadata": {"name": "vs"}, "spec": {"http": http}})
}

fn route(name: &str, destinations: Value) -> Value {
    json!({"name": name, "route": destinations})
}

fn objects(list: &[(&str, Option<&str>, Value)]) -> RouterObjects {
    let mut objects = RouterObjects::new();
    for (kind, namespace, object) in list {
        let name = object["metadata"]["name"]
            .as_str()
            .expect("test objects are named");
        objects.add(kind, *namespace, name, object.clone());
    }
    objects
}

fn istio_rollout(virtual_service: Value) -> Rollout {
    canary_with(json!({"trafficRouting": {"istio": {"virtualService": virtual_service}}}))
}

#[test]
fn managed_routes_must_exist_and_reach_both_services() {
    let vs = virtual_service(json!([
        route(
            "primary",
            json!([
                {"destination": {"host": "checkout-stable"}, "weight": 100},
                {"destination": {"host": "checkout-canary.shop.svc.cluster.local"}, "weight": 0}
            ])
        ),
        route(
            "secondary",
            json!([{"destination": {"host": "checkout-stable"}}])
        )
    ]));
    let known = objects(&[("VirtualService", None, vs)]);
    let good = istio_rollout(json!({"name": "vs", "routes": ["primary"]}));
    assert_eq!(
        lines(&check_router_objects(&good, &known)),
        Vec::<String>::new()
    );
    let bad = istio_rollout(json!({"name": "vs", "routes": ["secondary", "tertiary"]}));
    assert_eq!(
        lines(&check_router_objects(&bad, &known)),
        vec![
            r#"error: spec.strategy.canary.trafficRouting.istio.virtualService.routes: VirtualService "vs" has no HTTP route named "tertiary""#,
            r#"error: spec.strategy.canary.trafficRouting.istio.virtualService: route "secondary" of VirtualService "vs" has no destination host "checkout-canary"; it needs both the stable and the canary side"#,
        ]
    );
    let unnamed = istio_rollout(json!({"name": "vs"}));
    assert_eq!(
        lines(&check_router_objects(&unnamed, &known)),
        error(
            r#"spec.strategy.canary.trafficRouting.istio.virtualService: VirtualService "vs" has 2 HTTP routes; name the managed ones in routes"#
        )
    );
}

/// As upstream's TLS-only host split e2e: a VirtualService with only `tls` routes, under a
/// rollout that selects one by port and SNI host and still lists an HTTP route name.
#[test]
fn http_route_names_are_ignored_for_a_virtual_service_without_http_routes() {
    let tls_only = json!({"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
    "metadata": {"name": "vs"}, "spec": {"tls": [{
        "match": [{"port": 443, "sniHosts": ["checkout.example.com"]}],
        "route": [
            {"destination": {"host": "checkout-stable"}, "weight": 100},
            {"destination": {"host": "checkout-canary"}, "weight": 0}
        ]
    }]}});
    let known = objects(&[("VirtualService", None, tls_only)]);
    let tls = json!([{"port": 443, "sniHosts": ["checkout.example.com"]}]);
    let with_names = istio_rollout(json!({"name": "vs", "routes": ["primary"], "tlsRoutes": tls}));
    assert_eq!(
        lines(&check_router_objects(&with_names, &known)),
        Vec::<String>::new()
    );
    // An empty `http` list is a list: the named route must be in it, as upstream.
    let empty_http = objects(&[(
        "VirtualService",
        None,
        json!({"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
            "metadata": {"name": "vs"}, "spec": {"http": [], "tls": []}}),
    )]);
    assert_eq!(
        lines(&check_router_objects(&with_names, &empty_http)),
        error(
            r#"spec.strategy.canary.trafficRouting.istio.virtualService.routes: VirtualService "vs" has no HTTP route named "primary""#
        )
    );
    // Nothing but HTTP route names, and no HTTP routes: still an error.
    let only_names = istio_rollout(json!({"name": "vs", "routes": ["primary"]}));
    assert_eq!(
        lines(&check_router_objects(&only_names, &known)),
        error(
            r#"spec.strategy.canary.trafficRouting.istio.virtualService.routes: VirtualService "vs" has no HTTP route named "primary""#
        )
    );
}

#[test]
fn subset_split_needs_both_subsets_in_the_route_and_the_rule() {
    let vs = virtual_service(json!([route(
        "primary",
        json!([
            {"destination": {"host": "web", "subset": "stable"}, "weight": 100}
        ])
    )]));
    let rule = json!({"metadata": {"name": "dr"}, "spec": {"subsets": [{"name": "stable"}]}});
    let known = objects(&[
        ("VirtualService", None, vs),
        ("DestinationRule", None, rule),
    ]);
    let rollout = canary_with(json!({"trafficRouting": {"istio": {
        "virtualService": {"name": "vs"},
        "destinationRule": {"name": "dr", "canarySubsetName": "canary", "stableSubsetName": "stable"}
    }}}));
    assert_eq!(
        lines(&check_router_objects(&rollout, &known)),
        vec![
            r#"error: spec.strategy.canary.trafficRouting.istio.virtualService: route (its only HTTP route) of VirtualService "vs" has no destination subset "canary"; it needs both the stable and the canary side"#,
            r#"error: spec.strategy.canary.trafficRouting.istio.destinationRule.canarySubsetName: DestinationRule "dr" has no subset named "canary""#,
        ]
    );
}

#[test]
fn objects_are_matched_by_namespace() {
    let vs = virtual_service(json!([route(
        "primary",
        json!([{"destination": {"host": "other"}}])
    )]));
    let known = objects(&[("VirtualService", Some("mesh"), vs)]);
    // The rollout is in "shop": a VirtualService in "mesh" is another object...
    let local = istio_rollout(json!({"name": "vs"}));
    assert_eq!(
        lines(&check_router_objects(&local, &known)),
        Vec::<String>::new()
    );
    // ...unless the reference names its namespace.
    let qualified = istio_rollout(json!({"name": "vs.mesh.svc.cluster.local"}));
    assert_eq!(
        lines(&check_router_objects(&qualified, &known)),
        error(
            r#"spec.strategy.canary.trafficRouting.istio.virtualService: route (its only HTTP route) of VirtualService "vs" has no destination host "checkout-stable" or "checkout-canary"; it needs both the stable and the canary side"#
        )
    );
}

#[test]
fn stable_ingress_must_route_to_the_stable_service() {
    let v1 = json!({"metadata": {"name": "web"}, "spec": {"rules": [{"http": {"paths": [
        {"path": "/", "backend": {"service": {"name": "checkout-stable", "port": {"number": 80}}}}
    ]}}]}});
    let beta = json!({"metadata": {"name": "legacy"}, "spec": {"rules": [{"http": {"paths": [
        {"path": "/", "backend": {"serviceName": "somewhere-else", "servicePort": 80}}
    ]}}]}});
    let known = objects(&[("Ingress", None, v1), ("Ingress", None, beta)]);
    let rollout =
        canary_with(json!({"trafficRouting": {"nginx": {"stableIngresses": ["web", "legacy"]}}}));
    assert_eq!(
        lines(&check_router_objects(&rollout, &known)),
        error(
            r#"spec.strategy.canary.trafficRouting.nginx.stableIngresses[1]: Ingress "legacy" has no rule whose backend is the stable service "checkout-stable", so no canary Ingress can be derived from it"#
        )
    );
}
