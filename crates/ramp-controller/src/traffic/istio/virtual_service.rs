//! VirtualService planning: locates the managed HTTP/TLS/TCP routes and their canary and
//! stable destinations, computes the weights, and emits the guarded patch (weights at their
//! indexes, managed routes at the top of `spec.http`).

use std::collections::BTreeSet;

use json_patch::Patch;
use ramp_api::rollout::{IstioTrafficRouting, IstioVirtualService, TcpRoute, TlsRoute};
use ramp_core::traffic::TrafficIntent;
use serde_json::{Value, json};

use super::managed_routes::desired_managed_routes;
use super::{ISTIO_TOTAL_WEIGHT, ROUTES_FIELD};
use crate::traffic::error::{ObjectName, TrafficError};
use crate::traffic::patch::{PatchBuilder, as_whole_number, json_eq};

/// How the canary and stable destinations of a route are recognised.
#[derive(Clone, Copy, Debug)]
pub enum SplitDestinations<'a> {
    /// Host-level split: destination host short names (text before the first `.`).
    Host {
        canary_service: &'a str,
        stable_service: &'a str,
    },
    /// Subset-level split: destination subsets of one host.
    Subset {
        canary_subset: &'a str,
        stable_subset: &'a str,
    },
}

impl<'a> SplitDestinations<'a> {
    /// The split the rollout configures: subsets when a DestinationRule is named, else hosts.
    pub fn for_rollout(
        istio: &'a IstioTrafficRouting,
        canary_service: Option<&'a str>,
        stable_service: Option<&'a str>,
    ) -> Result<Self, TrafficError> {
        if let Some(rule) = &istio.destination_rule {
            return Ok(Self::Subset {
                canary_subset: &rule.canary_subset_name,
                stable_subset: &rule.stable_subset_name,
            });
        }
        match (canary_service, stable_service) {
            (Some(canary_service), Some(stable_service)) => Ok(Self::Host {
                canary_service,
                stable_service,
            }),
            _ => Err(TrafficError::InvalidConfig {
                field: "spec.strategy.canary".to_owned(),
                detail: "Istio host-level splitting needs both canaryService and stableService \
                         (or a destinationRule for subset-level splitting)"
                    .to_owned(),
            }),
        }
    }

    fn role_of(&self, destination: &Value) -> Option<Role> {
        match self {
            Self::Host {
                canary_service,
                stable_service,
            } => {
                let host = destination.pointer("/destination/host")?.as_str()?;
                let short = host.split('.').next().unwrap_or(host);
                if short == *canary_service {
                    Some(Role::Canary)
                } else if short == *stable_service {
                    Some(Role::Stable)
                } else {
                    None
                }
            }
            Self::Subset {
                canary_subset,
                stable_subset,
            } => {
                let subset = destination.pointer("/destination/subset")?.as_str()?;
                if subset == *canary_subset {
                    Some(Role::Canary)
                } else if subset == *stable_subset {
                    Some(Role::Stable)
                } else {
                    None
                }
            }
        }
    }

    fn describe(&self, role: Role) -> String {
        match (self, role) {
            (Self::Host { canary_service, .. }, Role::Canary) => {
                format!("destination whose host is the canary service '{canary_service}'")
            }
            (Self::Host { stable_service, .. }, Role::Stable) => {
                format!("destination whose host is the stable service '{stable_service}'")
            }
            (Self::Subset { canary_subset, .. }, Role::Canary) => {
                format!("destination with the canary subset '{canary_subset}'")
            }
            (Self::Subset { stable_subset, .. }, Role::Stable) => {
                format!("destination with the stable subset '{stable_subset}'")
            }
        }
    }

    pub(super) fn is_subset(&self) -> bool {
        matches!(self, Self::Subset { .. })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Role {
    Canary,
    Stable,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RouteKind {
    Http,
    Tls,
    Tcp,
}

impl RouteKind {
    fn field(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Tls => "tls",
            Self::Tcp => "tcp",
        }
    }
}

/// A route whose canary/stable weights Ramp manages, located in the object as read.
#[derive(Debug)]
pub(super) struct WeightedRoute<'v> {
    pub(super) kind: RouteKind,
    index: usize,
    route: &'v Value,
    pub(super) canary: usize,
    stable: usize,
    canary_weight: i64,
    stable_weight: i64,
    observed_canary_weight: Option<i64>,
}

impl WeightedRoute<'_> {
    pub(super) fn destinations(&self) -> &[Value] {
        self.route
            .get("route")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// This route's destinations with the desired weights written in.
    pub(super) fn reweighted_destinations(&self) -> Vec<Value> {
        let mut destinations = self.destinations().to_vec();
        for (index, weight) in [
            (self.canary, self.canary_weight),
            (self.stable, self.stable_weight),
        ] {
            if let Some(Value::Object(destination)) = destinations.get_mut(index) {
                destination.insert("weight".to_owned(), json!(weight));
            }
        }
        destinations
    }
}

/// What Ramp would write to one VirtualService, and what it saw there.
#[derive(Debug)]
pub struct VirtualServicePlan {
    /// Guarded operations; empty when the VirtualService already says what the intent says.
    pub patch: Patch,
    /// Canary weight of the first managed route before the patch (`None`: no weight set).
    pub observed_canary_weight: Option<i32>,
    /// Canary weight the patch writes.
    pub desired_canary_weight: i32,
    /// The largest canary weight over every managed route before the patch (0 where a
    /// route sets none): the most traffic the canary gets from this VirtualService.
    pub largest_canary_weight: i32,
}

/// Plans the patch that makes `virtual_service` route the intent's weights and managed routes.
///
/// `managed_routes` are the names in `trafficRouting.managedRoutes`, in precedence order.
pub fn plan_virtual_service(
    virtual_service: &Value,
    object: &ObjectName,
    selection: &IstioVirtualService,
    split: SplitDestinations<'_>,
    managed_routes: &[String],
    intent: &TrafficIntent,
) -> Result<VirtualServicePlan, TrafficError> {
    if intent.max_weight != ISTIO_TOTAL_WEIGHT as i32 {
        return Err(TrafficError::InvalidConfig {
            field: "spec.strategy.canary.trafficRouting.maxTrafficWeight".to_owned(),
            detail: format!(
                "Istio weights add up to {ISTIO_TOTAL_WEIGHT}; maxTrafficWeight {} is not supported",
                intent.max_weight
            ),
        });
    }
    let managed_names = managed_route_names(managed_routes, intent);
    let http = routes_of(virtual_service, RouteKind::Http);
    let tls = routes_of(virtual_service, RouteKind::Tls);
    let tcp = routes_of(virtual_service, RouteKind::Tcp);

    let mut weighted = Vec::new();
    let has_http = virtual_service
        .pointer("/spec/http")
        .is_some_and(Value::is_array);
    for index in select_http_routes(http, has_http, selection, &managed_names, object)? {
        weighted.push(weigh_route(
            RouteKind::Http,
            index,
            &http[index],
            split,
            intent,
            object,
        )?);
    }
    for selector in selection.tls_routes.iter().flatten() {
        let index = select_tls_route(tls, selector, object)?;
        weighted.push(weigh_route(
            RouteKind::Tls,
            index,
            &tls[index],
            split,
            intent,
            object,
        )?);
    }
    for selector in selection.tcp_routes.iter().flatten() {
        let index = select_tcp_route(tcp, selector, object)?;
        weighted.push(weigh_route(
            RouteKind::Tcp,
            index,
            &tcp[index],
            split,
            intent,
            object,
        )?);
    }

    let reference = weighted.iter().find(|route| route.kind == RouteKind::Http);
    let desired_managed = desired_managed_routes(managed_routes, intent, reference, split, object)?;
    let current_managed: Vec<(usize, &str)> = http
        .iter()
        .enumerate()
        .filter_map(|(index, route)| {
            let name = route.get("name")?.as_str()?;
            managed_names.contains(name).then_some((index, name))
        })
        .collect();
    let managed_in_place = current_managed.len() == desired_managed.len()
        && current_managed
            .iter()
            .zip(&desired_managed)
            .enumerate()
            .all(|(position, ((index, _), desired))| {
                *index == position && json_eq(&http[*index], desired)
            });

    let mut builder = PatchBuilder::default();
    if !managed_in_place {
        for (index, name) in current_managed.iter().rev() {
            let at = index.to_string();
            builder.test(&["spec", "http", &at, "name"], json!(name));
            builder.remove(&["spec", "http", &at]);
        }
        for (position, route) in desired_managed.iter().enumerate() {
            builder.add(&["spec", "http", &position.to_string()], route.clone());
        }
    }
    for route in &weighted {
        let index = if route.kind == RouteKind::Http && !managed_in_place {
            let removed_before = current_managed
                .iter()
                .filter(|(i, _)| *i < route.index)
                .count();
            route.index - removed_before + desired_managed.len()
        } else {
            route.index
        };
        write_weights(&mut builder, route, index, split);
    }

    let observed_canary_weight = weighted
        .first()
        .and_then(|route| route.observed_canary_weight)
        .map(clamp_i32);
    let desired_canary_weight = weighted
        .first()
        .map(|route| clamp_i32(route.canary_weight))
        .unwrap_or(intent.canary_weight);
    let largest_canary_weight = weighted
        .iter()
        .map(|route| clamp_i32(route.observed_canary_weight.unwrap_or(0)))
        .max()
        .unwrap_or(0);
    Ok(VirtualServicePlan {
        patch: builder.finish(virtual_service),
        observed_canary_weight,
        desired_canary_weight,
        largest_canary_weight,
    })
}

fn clamp_i32(value: i64) -> i32 {
    i32::try_from(value).unwrap_or(if value < 0 { i32::MIN } else { i32::MAX })
}

fn managed_route_names<'a>(
    managed_routes: &'a [String],
    intent: &'a TrafficIntent,
) -> BTreeSet<&'a str> {
    managed_routes
        .iter()
        .map(String::as_str)
        .chain(intent.header_routes.iter().map(|route| route.name.as_str()))
        .chain(intent.mirror_routes.iter().map(|route| route.name.as_str()))
        .collect()
}

fn routes_of(object: &Value, kind: RouteKind) -> &[Value] {
    object
        .get("spec")
        .and_then(|spec| spec.get(kind.field()))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

pub(super) fn route_name(route: &Value) -> Option<&str> {
    route.get("name").and_then(Value::as_str)
}

/// Indexes of the HTTP routes whose weights the rollout manages. `has_http` says whether the
/// VirtualService has a `spec.http` list at all: one without it, under a rollout that selects
/// TLS or TCP routes, has no HTTP route to manage even when `routes` names some. Upstream skips
/// the HTTP side of such a VirtualService, and its e2e suite (TLS-only host split) relies on it.
fn select_http_routes(
    http: &[Value],
    has_http: bool,
    selection: &IstioVirtualService,
    managed: &BTreeSet<&str>,
    object: &ObjectName,
) -> Result<Vec<usize>, TrafficError> {
    let is_managed = |route: &Value| route_name(route).is_some_and(|name| managed.contains(name));
    let named: Vec<&String> = selection.routes.iter().flatten().collect();
    let has_other_selectors = selection.tls_routes.as_ref().is_some_and(|r| !r.is_empty())
        || selection.tcp_routes.as_ref().is_some_and(|r| !r.is_empty());
    if !has_http && has_other_selectors {
        return Ok(Vec::new());
    }
    if named.is_empty() {
        let unmanaged: Vec<usize> = (0..http.len()).filter(|&i| !is_managed(&http[i])).collect();
        return match unmanaged.as_slice() {
            [only] => Ok(vec![*only]),
            _ if has_other_selectors => Ok(Vec::new()),
            [] => Err(TrafficError::MissingInObject {
                object: object.clone(),
                detail: "has no HTTP route to manage".to_owned(),
            }),
            several => Err(TrafficError::MissingInObject {
                object: object.clone(),
                detail: format!(
                    "has {} HTTP routes; name the ones to manage in {ROUTES_FIELD}.routes",
                    several.len()
                ),
            }),
        };
    }
    named
        .into_iter()
        .map(|wanted| {
            if managed.contains(wanted.as_str()) {
                return Err(TrafficError::InvalidConfig {
                    field: format!("{ROUTES_FIELD}.routes"),
                    detail: format!("route '{wanted}' is also listed in managedRoutes"),
                });
            }
            http.iter()
                .position(|route| route_name(route) == Some(wanted.as_str()))
                .ok_or_else(|| TrafficError::MissingInObject {
                    object: object.clone(),
                    detail: format!(
                        "has no HTTP route named '{wanted}' (listed in {ROUTES_FIELD}.routes)"
                    ),
                })
        })
        .collect()
}

fn match_blocks(route: &Value) -> &[Value] {
    route
        .get("match")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn select_tls_route(
    tls: &[Value],
    selector: &TlsRoute,
    object: &ObjectName,
) -> Result<usize, TrafficError> {
    let wanted_hosts = selector.sni_hosts.as_deref().unwrap_or_default();
    let block_matches = |block: &Value| {
        let port_ok = selector
            .port
            .is_none_or(|port| block.get("port").and_then(as_whole_number) == Some(port));
        let hosts: Vec<&str> = block
            .get("sniHosts")
            .and_then(Value::as_array)
            .map(|hosts| hosts.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        port_ok
            && wanted_hosts
                .iter()
                .all(|host| hosts.contains(&host.as_str()))
    };
    tls.iter()
        .position(|route| match_blocks(route).iter().any(block_matches))
        .ok_or_else(|| TrafficError::MissingInObject {
            object: object.clone(),
            detail: format!(
                "has no TLS route matching port {} and sniHosts [{}] (listed in {ROUTES_FIELD}.tlsRoutes)",
                selector.port.map_or_else(|| "(any)".to_owned(), |p| p.to_string()),
                wanted_hosts.join(", ")
            ),
        })
}

fn select_tcp_route(
    tcp: &[Value],
    selector: &TcpRoute,
    object: &ObjectName,
) -> Result<usize, TrafficError> {
    let route_matches = |route: &Value| {
        let blocks = match_blocks(route);
        match selector.port {
            Some(port) => blocks
                .iter()
                .any(|block| block.get("port").and_then(as_whole_number) == Some(port)),
            None => blocks.is_empty() || blocks.iter().any(|block| block.get("port").is_none()),
        }
    };
    tcp.iter()
        .position(route_matches)
        .ok_or_else(|| TrafficError::MissingInObject {
            object: object.clone(),
            detail: format!(
                "has no TCP route matching port {} (listed in {ROUTES_FIELD}.tcpRoutes)",
                selector
                    .port
                    .map_or_else(|| "(none)".to_owned(), |p| p.to_string())
            ),
        })
}

fn destination_weight(destination: &Value) -> Option<i64> {
    destination.get("weight").and_then(as_whole_number)
}

/// Locates the canary and stable destinations of a route and computes their weights. Every
/// other destination (an `additionalSubsetNames` subset, someone else's) keeps its weight and
/// comes out of the stable share; the canary never gets more than it asked for.
fn weigh_route<'v>(
    kind: RouteKind,
    index: usize,
    route: &'v Value,
    split: SplitDestinations<'_>,
    intent: &TrafficIntent,
    object: &ObjectName,
) -> Result<WeightedRoute<'v>, TrafficError> {
    let destinations = route
        .get("route")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut canary = None;
    let mut stable = None;
    let mut others = 0_i64;
    for (position, destination) in destinations.iter().enumerate() {
        match split.role_of(destination) {
            Some(Role::Canary) if canary.is_none() => canary = Some(position),
            Some(Role::Stable) if stable.is_none() => stable = Some(position),
            _ => others += destination_weight(destination).unwrap_or(0).max(0),
        }
    }
    let label = match route_name(route) {
        Some(name) => format!("{} route '{name}'", kind.field()),
        None => format!("{} route #{index}", kind.field()),
    };
    let missing = |role| TrafficError::MissingInObject {
        object: object.clone(),
        detail: format!("{label} has no {}", split.describe(role)),
    };
    let canary = canary.ok_or_else(|| missing(Role::Canary))?;
    let stable = stable.ok_or_else(|| missing(Role::Stable))?;
    let available = ISTIO_TOTAL_WEIGHT - others;
    if available < 0 {
        return Err(TrafficError::MissingInObject {
            object: object.clone(),
            detail: format!(
                "{label}: destinations other than canary and stable already take {others} of {ISTIO_TOTAL_WEIGHT}"
            ),
        });
    }
    let canary_weight = i64::from(intent.canary_weight).clamp(0, available);
    Ok(WeightedRoute {
        kind,
        index,
        route,
        canary,
        stable,
        canary_weight,
        stable_weight: available - canary_weight,
        observed_canary_weight: destination_weight(&destinations[canary]),
    })
}

fn write_weights(
    builder: &mut PatchBuilder,
    route: &WeightedRoute<'_>,
    index: usize,
    split: SplitDestinations<'_>,
) {
    let destinations = route.destinations();
    let changes: Vec<(usize, i64)> = [
        (route.canary, route.canary_weight),
        (route.stable, route.stable_weight),
    ]
    .into_iter()
    .filter(|(position, weight)| destination_weight(&destinations[*position]) != Some(*weight))
    .collect();
    if changes.is_empty() {
        return;
    }
    let field = route.kind.field();
    let at = index.to_string();
    if let Some(name) = route_name(route.route) {
        builder.test(&["spec", field, &at, "name"], json!(name));
    } else if let Some(blocks) = route.route.get("match") {
        builder.test(&["spec", field, &at, "match"], blocks.clone());
    }
    for (position, weight) in changes {
        let destination = &destinations[position];
        let slot = position.to_string();
        if let Some(host) = destination.pointer("/destination/host") {
            builder.test(
                &["spec", field, &at, "route", &slot, "destination", "host"],
                host.clone(),
            );
        }
        if split.is_subset()
            && let Some(subset) = destination.pointer("/destination/subset")
        {
            builder.test(
                &["spec", field, &at, "route", &slot, "destination", "subset"],
                subset.clone(),
            );
        }
        builder.add(
            &["spec", field, &at, "route", &slot, "weight"],
            json!(weight),
        );
    }
}
