//! Managed routes of a VirtualService: the `setHeaderRoute` and `setMirrorRoute` routes Ramp
//! writes at the top of `spec.http`, built from the intent and the reference weighted route.

use std::collections::BTreeSet;

use ramp_api::rollout::{HeaderRoutingMatch, RouteMatch, StringMatch};
use ramp_core::traffic::{HeaderRouteIntent, MirrorRouteIntent, TrafficIntent};
use serde_json::{Map, Value, json};

use super::virtual_service::{SplitDestinations, WeightedRoute};
use crate::traffic::error::{ObjectName, TrafficError};

/// The managed routes that must lead `spec.http`, in `managedRoutes` order (routes of the
/// intent not listed there follow, in the intent's order).
pub(super) fn desired_managed_routes(
    managed_routes: &[String],
    intent: &TrafficIntent,
    reference: Option<&WeightedRoute<'_>>,
    split: SplitDestinations<'_>,
    object: &ObjectName,
) -> Result<Vec<Value>, TrafficError> {
    enum Wanted<'i> {
        Header(&'i HeaderRouteIntent),
        Mirror(&'i MirrorRouteIntent),
    }
    let find = |name: &str| {
        intent
            .header_routes
            .iter()
            .find(|route| route.name == name)
            .map(Wanted::Header)
            .or_else(|| {
                intent
                    .mirror_routes
                    .iter()
                    .find(|route| route.name == name)
                    .map(Wanted::Mirror)
            })
    };
    let listed: BTreeSet<&str> = managed_routes.iter().map(String::as_str).collect();
    let ordered: Vec<Wanted<'_>> = managed_routes
        .iter()
        .filter_map(|name| find(name))
        .chain(
            intent
                .header_routes
                .iter()
                .filter(|route| !listed.contains(route.name.as_str()))
                .map(Wanted::Header),
        )
        .chain(
            intent
                .mirror_routes
                .iter()
                .filter(|route| !listed.contains(route.name.as_str()))
                .map(Wanted::Mirror),
        )
        .collect();
    if ordered.is_empty() {
        return Ok(Vec::new());
    }
    let Some(reference) = reference else {
        return Err(TrafficError::MissingInObject {
            object: object.clone(),
            detail:
                "header and mirror routes need a managed HTTP route to copy destinations from, \
                     and none is managed"
                    .to_owned(),
        });
    };
    let canary_target = canary_target(reference, split);
    ordered
        .into_iter()
        .map(|wanted| match wanted {
            Wanted::Header(route) => header_route(route, &canary_target),
            Wanted::Mirror(route) => mirror_route(route, reference, &canary_target),
        })
        .collect()
}

/// `{host, subset?, port?}` of the canary as the reference route names it: the same host
/// string (short or fully qualified) the user wrote, the canary subset in subset mode, and
/// the port of the route's first destination.
fn canary_target(reference: &WeightedRoute<'_>, split: SplitDestinations<'_>) -> Value {
    let destinations = reference.destinations();
    let mut target = Map::new();
    if let Some(host) = destinations[reference.canary].pointer("/destination/host") {
        target.insert("host".to_owned(), host.clone());
    }
    if split.is_subset()
        && let Some(subset) = destinations[reference.canary].pointer("/destination/subset")
    {
        target.insert("subset".to_owned(), subset.clone());
    }
    if let Some(port) = destinations
        .first()
        .and_then(|first| first.pointer("/destination/port"))
    {
        target.insert("port".to_owned(), port.clone());
    }
    Value::Object(target)
}

fn string_match(value: &StringMatch, route: &str, what: &str) -> Result<Value, TrafficError> {
    let set: Vec<(&str, &String)> = [
        ("exact", value.exact.as_ref()),
        ("prefix", value.prefix.as_ref()),
        ("regex", value.regex.as_ref()),
    ]
    .into_iter()
    .filter_map(|(kind, v)| v.map(|v| (kind, v)))
    .collect();
    match set.as_slice() {
        [(kind, v)] => Ok(json!({ *kind: v })),
        _ => Err(TrafficError::UnsupportedRoute {
            router: "istio",
            route: route.to_owned(),
            detail: format!("{what} must set exactly one of exact, prefix or regex"),
        }),
    }
}

fn header_route(route: &HeaderRouteIntent, canary: &Value) -> Result<Value, TrafficError> {
    // One match block per condition, as upstream writes it, so a VirtualService written by
    // Argo Rollouts is already in the desired state after a migration.
    let matches = route
        .matches
        .iter()
        .map(
            |HeaderRoutingMatch {
                 header_name,
                 header_value,
             }| {
                let value = string_match(
                    header_value,
                    &route.name,
                    &format!("header '{header_name}'"),
                )?;
                Ok(json!({ "headers": { header_name.as_str(): value } }))
            },
        )
        .collect::<Result<Vec<_>, TrafficError>>()?;
    Ok(json!({
        "name": route.name,
        "match": matches,
        "route": [{ "destination": canary, "weight": 100 }],
    }))
}

fn mirror_route(
    route: &MirrorRouteIntent,
    reference: &WeightedRoute<'_>,
    canary: &Value,
) -> Result<Value, TrafficError> {
    let matches = route
        .matches
        .iter()
        .map(
            |RouteMatch {
                 method,
                 path,
                 headers,
             }| {
                let mut block = Map::new();
                if let Some(method) = method {
                    block.insert(
                        "method".to_owned(),
                        string_match(method, &route.name, "method")?,
                    );
                }
                if let Some(path) = path {
                    block.insert("uri".to_owned(), string_match(path, &route.name, "path")?);
                }
                if let Some(headers) = headers.as_ref().filter(|h| !h.is_empty()) {
                    let mut by_name = Map::new();
                    for (name, value) in headers {
                        by_name.insert(
                            name.clone(),
                            string_match(value, &route.name, &format!("header '{name}'"))?,
                        );
                    }
                    block.insert("headers".to_owned(), Value::Object(by_name));
                }
                Ok(Value::Object(block))
            },
        )
        .collect::<Result<Vec<_>, TrafficError>>()?;
    let mut mirror = Map::new();
    mirror.insert("name".to_owned(), json!(route.name));
    if !matches.is_empty() {
        mirror.insert("match".to_owned(), Value::Array(matches));
    }
    mirror.insert(
        "route".to_owned(),
        Value::Array(reference.reweighted_destinations()),
    );
    mirror.insert("mirror".to_owned(), canary.clone());
    mirror.insert(
        "mirrorPercentage".to_owned(),
        json!({ "value": route.percentage.clamp(0, 100) }),
    );
    Ok(Value::Object(mirror))
}
