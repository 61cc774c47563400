//! The traffic a rollout wants: the canary's share and the managed header and mirror routes.
//! Decided by the canary step machine, made true by the routers of `ramp-controller`.

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
