//! The traffic a rollout wants: the canary's share and the managed header and mirror routes.
//! Decided by the canary step machine, made true by the routers of `ramp-controller`.

use crate::snapshot::Snapshot;
use ramp_api::rollout::{HeaderRoutingMatch, RouteMatch};

/// What every configured traffic router must make true for one rollout.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrafficIntent {
    /// The canary's share of traffic, out of `max_weight`.
    pub canary_weight: i32,
    /// The denominator of weights (`trafficRouting.maxTrafficWeight`, 100 by default).
    pub max_weight: i32,
    /// Pod-template hash the stable destination selects (DestinationRule subset label).
    pub stable_hash: Option<String>,
    /// Pod-template hash the canary destination selects.
    pub canary_hash: Option<String>,
    /// Header routes that must exist, in `managedRoutes` precedence order. Every other route
    /// named in `managedRoutes` must be absent.
    pub header_routes: Vec<HeaderRouteIntent>,
    /// Mirror routes that must exist, in `managedRoutes` precedence order.
    pub mirror_routes: Vec<MirrorRouteIntent>,
}

impl TrafficIntent {
    /// The stable share: whatever the canary does not take.
    pub fn stable_weight(&self) -> i32 {
        (self.max_weight - self.canary_weight).max(0)
    }
}

/// A `setHeaderRoute` in effect: matching requests go to the canary only.
#[derive(Clone, Debug, PartialEq)]
pub struct HeaderRouteIntent {
    pub name: String,
    pub matches: Vec<HeaderRoutingMatch>,
}

/// A `setMirrorRoute` in effect: matching requests are copied to the canary.
#[derive(Clone, Debug, PartialEq)]
pub struct MirrorRouteIntent {
    pub name: String,
    pub matches: Vec<RouteMatch>,
    /// Share of matching requests mirrored, 0..=100.
    pub percentage: i32,
}

/// What the routers hold, as the controller read their objects in this reconcile. Ramp owns
/// the weights, managed routes and subset hashes it writes; anyone may change them, so each
/// reconcile compares them with what it last wrote instead of trusting its own memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrafficReading {
    /// The canary's share in force: the largest canary weight over the managed routes and
    /// canary Ingresses (0 where an object has no canary weight), out of the intent's
    /// `max_weight`.
    pub canary_weight: i32,
    /// Every router object holds the last write ([`last_written`]) in every field Ramp owns.
    pub holds_last_write: bool,
}

/// What Ramp last made the routers hold: the controller's memory of its last write, else
/// (after a restart) `status.canary.weights`, without managed routes.
pub fn last_written(snapshot: &Snapshot) -> Option<TrafficIntent> {
    if let Some(known) = &snapshot.traffic {
        return Some(known.clone());
    }
    let max_weight = snapshot
        .rollout
        .spec
        .canary()
        .map_or(100, |c| c.max_traffic_weight());
    let weights = snapshot
        .rollout
        .status
        .as_ref()?
        .canary
        .as_ref()?
        .weights
        .as_ref()?;
    Some(TrafficIntent {
        canary_weight: weights.canary.weight,
        max_weight,
        stable_hash: weights.stable.pod_template_hash.clone(),
        canary_hash: weights.canary.pod_template_hash.clone(),
        header_routes: Vec::new(),
        mirror_routes: Vec::new(),
    })
}

/// What the routers hold as far as the decision can tell, and whether that differs from the
/// last write in a field the weight alone does not show (a route, a subset, the stable
/// weight). `None`: nothing was ever written.
pub fn in_force(snapshot: &Snapshot) -> Option<(TrafficIntent, bool)> {
    let mut last = last_written(snapshot)?;
    // Unless DestinationRule subsets split the traffic, the Services' selectors decide which
    // pods the canary and stable destinations reach. A recorded hash can be older than a
    // selector (a reconcile that failed after switching a Service never wrote its status).
    let strategy = snapshot.rollout.spec.canary();
    let subsets = strategy
        .and_then(|c| c.traffic_routing.as_ref())
        .and_then(|t| t.istio.as_ref())
        .is_some_and(|i| i.destination_rule.is_some());
    if !subsets && let Some(strategy) = strategy {
        let selector = |name: &Option<String>| {
            let name = name.as_deref()?;
            snapshot
                .services
                .iter()
                .find(|s| s.name == name && s.exists)
                .and_then(|s| s.selector_hash.clone())
        };
        if let Some(hash) = selector(&strategy.canary_service) {
            last.canary_hash = Some(hash);
        }
        if let Some(hash) = selector(&strategy.stable_service) {
            last.stable_hash = Some(hash);
        }
    }
    let Some(reading) = &snapshot.traffic_read else {
        return Some((last, false));
    };
    last.canary_weight = reading.canary_weight.clamp(0, last.max_weight);
    Some((last, !reading.holds_last_write))
}
