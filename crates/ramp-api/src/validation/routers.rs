//! Traffic-router objects a Rollout names (Istio VirtualServices and DestinationRules, NGINX
//! Ingresses), checked against the manifests given alongside it the way upstream checks the
//! live objects: the managed routes exist and send traffic to both the stable and the canary
//! side. An object that is not among the inputs is not judged (it may live elsewhere). The
//! objects are plain JSON: Ramp has no types for other projects' kinds.

use super::{ByName, FieldPath, Problem, Problems};
use crate::rollout::{IstioVirtualService, Rollout};
use serde_json::Value;

/// VirtualServices, DestinationRules and Ingresses known to the validator, by name.
#[derive(Clone, Debug, Default)]
pub struct RouterObjects {
    virtual_services: ByName<Value>,
    destination_rules: ByName<Value>,
    ingresses: ByName<Value>,
}

impl RouterObjects {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an object by its `kind` (`VirtualService`, `DestinationRule` or `Ingress`); other
    /// kinds are ignored. `object` is the whole manifest.
    pub fn add(&mut self, kind: &str, namespace: Option<&str>, name: &str, object: Value) {
        let table = match kind {
            "VirtualService" => &mut self.virtual_services,
            "DestinationRule" => &mut self.destination_rules,
            "Ingress" => &mut self.ingresses,
            _ => return,
        };
        table.insert(namespace, name, object);
    }

    pub fn is_empty(&self) -> bool {
        self.virtual_services.is_empty()
            && self.destination_rules.is_empty()
            && self.ingresses.is_empty()
    }
}

fn find<'a>(table: &'a ByName<Value>, namespace: Option<&str>, name: &str) -> Option<&'a Value> {
    table.find(namespace, name).map(|(_, object)| object)
}

/// Every problem of the router objects the rollout names and that are among `objects`.
pub fn check_router_objects(rollout: &Rollout, objects: &RouterObjects) -> Vec<Problem> {
    let mut problems = Problems::default();
    let Some(canary) = rollout.spec.canary() else {
        return problems.into_vec();
    };
    let Some(routing) = &canary.traffic_routing else {
        return problems.into_vec();
    };
    let namespace = rollout.metadata.namespace.as_deref();
    let routing_path = FieldPath::root("spec")
        .child("strategy")
        .child("canary")
        .child("trafficRouting");
    if let Some(istio) = &routing.istio {
        let istio_path = routing_path.child("istio");
        // Subset split routes by DestinationRule subsets; host split by service name.
        let expected = match &istio.destination_rule {
            Some(rule) => Destinations::Subsets {
                stable: &rule.stable_subset_name,
                canary: &rule.canary_subset_name,
            },
            None => Destinations::Hosts {
                stable: canary.stable_service.as_deref().unwrap_or_default(),
                canary: canary.canary_service.as_deref().unwrap_or_default(),
            },
        };
        let references = istio
            .virtual_service
            .iter()
            .map(|vs| (istio_path.child("virtualService"), vs))
            .chain(
                istio
                    .virtual_services
                    .iter()
                    .flatten()
                    .enumerate()
                    .map(|(i, vs)| (istio_path.child("virtualServices").index(i), vs)),
            );
        for (path, reference) in references {
            check_virtual_service(
                &mut problems,
                &path,
                namespace,
                reference,
                &expected,
                objects,
            );
        }
        if let Some(rule) = &istio.destination_rule {
            let name = rule.name.as_str();
            if let Some(object) = find(&objects.destination_rules, namespace, name) {
                let subsets: Vec<&str> = object
                    .pointer("/spec/subsets")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s.get("name").and_then(Value::as_str))
                    .collect();
                let rule_path = istio_path.child("destinationRule");
                for (field, subset) in [
                    ("canarySubsetName", &rule.canary_subset_name),
                    ("stableSubsetName", &rule.stable_subset_name),
                ] {
                    if !subset.is_empty() && !subsets.contains(&subset.as_str()) {
                        problems.error(
                            &rule_path.child(field),
                            format!("DestinationRule {name:?} has no subset named {subset:?}"),
                        );
                    }
                }
            }
        }
    }
    if let Some(nginx) = &routing.nginx {
        let stable = canary.stable_service.as_deref().unwrap_or_default();
        let nginx_path = routing_path.child("nginx");
        let names = nginx
            .stable_ingress
            .iter()
            .map(|n| (nginx_path.child("stableIngress"), n))
            .chain(
                nginx
                    .stable_ingresses
                    .iter()
                    .flatten()
                    .enumerate()
                    .map(|(i, n)| (nginx_path.child("stableIngresses").index(i), n)),
            );
        for (path, name) in names {
            let Some(ingress) = find(&objects.ingresses, namespace, name) else {
                continue;
            };
            if !stable.is_empty() && !ingress_backends(ingress).contains(&stable) {
                problems.error(
                    &path,
                    format!(
                        "Ingress {name:?} has no rule whose backend is the stable service {stable:?}, so no canary Ingress can be derived from it"
                    ),
                );
            }
        }
    }
    problems.into_vec()
}

/// What a managed route must point at: both services (host split) or both subsets.
enum Destinations<'a> {
    Hosts { stable: &'a str, canary: &'a str },
    Subsets { stable: &'a str, canary: &'a str },
}

/// Splits a VirtualService reference `name.namespace` (optionally followed by
/// `.svc.cluster.local` or `.cluster.local`), as upstream does.
fn split_host_name<'a>(
    text: &'a str,
    default_namespace: Option<&'a str>,
) -> (&'a str, Option<&'a str>) {
    let trimmed = text
        .strip_suffix(".svc.cluster.local")
        .or_else(|| text.strip_suffix(".cluster.local"))
        .unwrap_or(text);
    match trimmed.split_once('.') {
        Some((name, namespace)) => (name, Some(namespace)),
        None => (trimmed, default_namespace),
    }
}

fn check_virtual_service(
    problems: &mut Problems,
    path: &FieldPath,
    rollout_namespace: Option<&str>,
    reference: &IstioVirtualService,
    expected: &Destinations<'_>,
    objects: &RouterObjects,
) {
    let (name, namespace) = split_host_name(&reference.name, rollout_namespace);
    let Some(object) = find(&objects.virtual_services, namespace, name) else {
        return;
    };
    let http: Vec<&Value> = object
        .pointer("/spec/http")
        .and_then(Value::as_array)
        .map(|routes| routes.iter().collect())
        .unwrap_or_default();
    let other_routes = reference.tls_routes.as_ref().is_some_and(|r| !r.is_empty())
        || reference.tcp_routes.as_ref().is_some_and(|r| !r.is_empty());
    // Without a `spec.http` list, a rollout that selects TLS or TCP routes manages no HTTP
    // route, whatever `routes` names: upstream skips the HTTP side of such a VirtualService
    // (its TLS-only e2e host split lists an HTTP route name all the same).
    let has_http = object.pointer("/spec/http").is_some_and(Value::is_array);
    let managed: Vec<(String, &Value)> = match &reference.routes {
        _ if !has_http && other_routes => Vec::new(),
        Some(names) if !names.is_empty() => {
            let mut found = Vec::new();
            for route_name in names {
                match http
                    .iter()
                    .find(|r| r.get("name").and_then(Value::as_str) == Some(route_name))
                {
                    Some(route) => found.push((format!("{route_name:?}"), *route)),
                    None => problems.error(
                        &path.child("routes"),
                        format!("VirtualService {name:?} has no HTTP route named {route_name:?}"),
                    ),
                }
            }
            found
        }
        _ => {
            if other_routes {
                Vec::new()
            } else if http.len() == 1 {
                vec![("(its only HTTP route)".to_owned(), http[0])]
            } else {
                problems.error(
                    path,
                    format!(
                        "VirtualService {name:?} has {} HTTP routes; name the managed ones in routes",
                        http.len()
                    ),
                );
                Vec::new()
            }
        }
    };
    for (route_label, route) in managed {
        let destinations: Vec<&Value> = route
            .get("route")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|d| d.get("destination"))
            .collect();
        let missing: Vec<&str> = match expected {
            Destinations::Hosts { stable, canary } => [*stable, *canary]
                .into_iter()
                .filter(|service| {
                    !service.is_empty()
                        && !destinations.iter().any(|d| {
                            d.get("host")
                                .and_then(Value::as_str)
                                .is_some_and(|host| host.split('.').next() == Some(*service))
                        })
                })
                .collect(),
            Destinations::Subsets { stable, canary } => [*stable, *canary]
                .into_iter()
                .filter(|subset| {
                    !subset.is_empty()
                        && !destinations
                            .iter()
                            .any(|d| d.get("subset").and_then(Value::as_str) == Some(*subset))
                })
                .collect(),
        };
        if !missing.is_empty() {
            let what = match expected {
                Destinations::Hosts { .. } => "destination host",
                Destinations::Subsets { .. } => "destination subset",
            };
            problems.error(
                path,
                format!(
                    "route {route_label} of VirtualService {name:?} has no {what} {}; it needs both the stable and the canary side",
                    missing.iter().map(|m| format!("{m:?}")).collect::<Vec<_>>().join(" or ")
                ),
            );
        }
    }
}

/// Names of the Services an Ingress's rules route to (networking.k8s.io/v1 and the older
/// `serviceName` form).
fn ingress_backends(ingress: &Value) -> Vec<&str> {
    ingress
        .pointer("/spec/rules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|rule| rule.pointer("/http/paths").and_then(Value::as_array))
        .flatten()
        .filter_map(|path| {
            path.pointer("/backend/service/name")
                .or_else(|| path.pointer("/backend/serviceName"))
                .and_then(Value::as_str)
        })
        .collect()
}
