//! Where traffic goes: the canary and stable Service selectors and the router weights and
//! managed routes (research doc §5.1), in an order that never sends traffic to pods that are
//! not available and never removes a destination that still carries traffic.

use super::{Ctx, Pass};
use crate::plan::{Action, RolloutEvent};
use crate::replicas::{CanaryScale, set_weight_at, traffic_weight_to_replicas};
use crate::snapshot::ReplicaSetView;
use crate::traffic::{HeaderRouteIntent, MirrorRouteIntent, TrafficIntent, in_force};
use ramp_api::rollout::{AbortScaleDown, CanaryStatus, TrafficWeights, WeightDestination};

pub(super) struct RouteInputs<'a> {
    pub new_rs: &'a ReplicaSetView,
    pub stable_rs: Option<&'a ReplicaSetView>,
    pub promoted: bool,
    pub aborted: bool,
    pub promote_full: bool,
    pub counts_reached: bool,
    pub scale: CanaryScale,
    pub live: &'a [&'a ReplicaSetView],
}

/// The routing decided in a pass.
pub(super) struct Routing {
    /// Service and router actions, in order.
    pub actions: Vec<Action>,
    /// What the routers hold once `actions` ran (`None`: never written, no router).
    pub intent_after: Option<TrafficIntent>,
    /// The routers hold what this pass wants (steps waiting on a route may complete).
    pub in_sync: bool,
    /// Selector hashes once `actions` ran.
    pub canary_service_after: Option<String>,
    /// The routers send the canary share to the newest ReplicaSet.
    pub canary_on_newest: bool,
    pub stable_service_after: Option<String>,
}

impl Routing {
    /// Pods an RS must keep for the traffic it carries once the actions ran.
    pub fn pods_needed(&self, ctx: &Ctx<'_>, rs: &ReplicaSetView) -> i32 {
        let Some(intent) = &self.intent_after else {
            return 0;
        };
        let hash = rs.pod_template_hash.as_deref();
        let mut weight = 0;
        if intent.canary_hash.as_deref() == hash {
            weight += intent.canary_weight;
        }
        if intent.stable_hash.as_deref() == hash {
            weight += intent.stable_weight();
        }
        traffic_weight_to_replicas(ctx.replicas, weight, intent.max_weight)
    }

    /// Whether a service or the router still sends anything to this RS.
    pub fn references(&self, rs: &ReplicaSetView) -> bool {
        let hash = rs.pod_template_hash.as_deref();
        let by_router = self.intent_after.as_ref().is_some_and(|i| {
            (i.canary_hash.as_deref() == hash && i.canary_weight > 0)
                || (i.stable_hash.as_deref() == hash && i.stable_weight() > 0)
        });
        by_router
            || self.canary_service_after.as_deref() == hash
            || self.stable_service_after.as_deref() == hash
    }
}

fn fully_available(rs: &ReplicaSetView) -> bool {
    rs.serving() > 0 && rs.serving() >= rs.spec_replicas
}

/// Managed routes in force at `index`: every `setHeaderRoute`/`setMirrorRoute` so far, a
/// later step with the same name replacing (or, without `match`, removing) an earlier one.
fn managed_routes(ctx: &Ctx<'_>, index: usize) -> (Vec<HeaderRouteIntent>, Vec<MirrorRouteIntent>) {
    let mut headers: Vec<HeaderRouteIntent> = Vec::new();
    let mut mirrors: Vec<MirrorRouteIntent> = Vec::new();
    for step in ctx.steps.iter().take(index + 1) {
        if let Some(route) = &step.set_header_route {
            let Some(name) = route.name.clone() else {
                continue;
            };
            headers.retain(|h| h.name != name);
            if let Some(matches) = route.r#match.clone().filter(|m| !m.is_empty()) {
                headers.push(HeaderRouteIntent { name, matches });
            }
        }
        if let Some(route) = &step.set_mirror_route {
            mirrors.retain(|m| m.name != route.name);
            if let Some(matches) = route.r#match.clone().filter(|m| !m.is_empty()) {
                mirrors.push(MirrorRouteIntent {
                    name: route.name.clone(),
                    matches,
                    percentage: route.percentage(),
                });
            }
        }
    }
    let order: Vec<&str> = ctx
        .strategy
        .traffic_routing
        .as_ref()
        .map(|t| t.managed_route_names().collect())
        .unwrap_or_default();
    let rank = |name: &str| order.iter().position(|n| *n == name).unwrap_or(usize::MAX);
    headers.sort_by_key(|h| rank(&h.name));
    mirrors.sort_by_key(|m| rank(&m.name));
    (headers, mirrors)
}

/// Whether a `setCanaryScale` sizes the canary independently of its weight right now.
fn scale_pinned(ctx: &Ctx<'_>, index: usize, aborted: bool) -> bool {
    if aborted && ctx.strategy.abort_scale_down() != AbortScaleDown::Never {
        return false;
    }
    ctx.steps
        .iter()
        .take(index + 1)
        .rev()
        .find_map(|s| s.set_canary_scale.as_ref())
        .is_some_and(|s| !s.match_traffic_weight.unwrap_or(false))
}

fn rs_by_hash<'a>(live: &[&'a ReplicaSetView], hash: Option<&str>) -> Option<&'a ReplicaSetView> {
    live.iter()
        .find(|rs| hash.is_some() && rs.pod_template_hash.as_deref() == hash)
        .copied()
}

pub(super) fn decide(ctx: &Ctx<'_>, pass: &mut Pass, i: &RouteInputs<'_>) -> Routing {
    let new_hash = i.new_rs.pod_template_hash.clone();
    let stable_hash = if i.promoted {
        new_hash.clone()
    } else {
        i.stable_rs
            .and_then(|s| s.pod_template_hash.clone())
            .or(new_hash.clone())
    };
    let service = |name: &Option<String>| {
        name.as_deref()
            .filter(|n| !n.is_empty())
            .and_then(|n| ctx.snap.service(n))
    };
    let canary_service = service(&ctx.strategy.canary_service);
    let stable_service = service(&ctx.strategy.stable_service);
    // What the routers hold (read this reconcile), and whether someone changed a field Ramp
    // owns since its last write: then the routers are rewritten whatever the plan is.
    let (written, mut drifted) = match in_force(ctx.snap) {
        Some((held, drifted)) => (Some(held), drifted),
        None => (None, false),
    };
    let mut routing = Routing {
        actions: Vec::new(),
        intent_after: written.clone(),
        in_sync: true,
        canary_on_newest: false,
        canary_service_after: canary_service.and_then(|s| s.selector_hash.clone()),
        stable_service_after: stable_service.and_then(|s| s.selector_hash.clone()),
    };
    let stable_serves = |hash: Option<&str>, weight: i32| {
        let needed =
            traffic_weight_to_replicas(ctx.replicas, ctx.max_weight - weight, ctx.max_weight);
        needed <= 0 || rs_by_hash(i.live, hash).is_some_and(|rs| rs.serving() >= needed)
    };
    let canary_serves = |hash: Option<&str>, weight: i32| {
        let needed = traffic_weight_to_replicas(ctx.replicas, weight, ctx.max_weight);
        needed <= 0 || rs_by_hash(i.live, hash).is_some_and(|rs| rs.serving() >= needed)
    };
    if ctx.spec.is_paused() {
        // A manual pause holds traffic where Ramp last put it: another writer's change is
        // undone, as long as both sides still have the pods for their shares.
        if drifted
            && let Some(last) = crate::traffic::last_written(ctx.snap)
            && stable_serves(last.stable_hash.as_deref(), last.canary_weight)
            && canary_serves(last.canary_hash.as_deref(), last.canary_weight)
        {
            let from = written.as_ref().map_or(0, |w| w.canary_weight);
            push_traffic(ctx, pass, &mut routing, last, from);
        }
        if ctx.routed {
            record_weights(ctx, pass, routing.intent_after.as_ref());
        }
        return routing;
    }
    let owned = |view: Option<&crate::snapshot::ServiceView>| {
        view.is_some_and(|v| v.managed_by.as_deref() == Some(ctx.name.as_str()))
    };
    let written_canary_hash = written
        .as_ref()
        .and_then(|w| w.canary_hash.clone())
        .or(routing.canary_service_after.clone());
    let written_weight = written.as_ref().map_or(0, |w| w.canary_weight);
    let dynamic = ctx.strategy.dynamic_stable_scale() && ctx.routed;
    let n = ctx.steps.len();
    let index = usize::try_from(pass.status.current_step_index.unwrap_or(0).max(0)).unwrap_or(0);
    let scale_weight = match i.scale {
        CanaryScale::Weight(w) => w,
        CanaryScale::Replicas(_) => 0,
    };
    let dynamic_abort_weight = written_weight.min(scale_weight);

    // The stable service follows the stable RS, and only to a fully available one.
    let stable_target = rs_by_hash(i.live, stable_hash.as_deref()).filter(|rs| fully_available(rs));
    let stable_after = match stable_target {
        Some(rs) => rs.pod_template_hash.clone(),
        None => routing
            .stable_service_after
            .clone()
            .or(written.as_ref().and_then(|w| w.stable_hash.clone())),
    };
    // The canary service follows the newest RS once it can serve, and stable on abort.
    let canary_goal = if i.aborted && !(dynamic && dynamic_abort_weight > 0) {
        stable_hash.clone()
    } else if i.aborted {
        written_canary_hash.clone()
    } else {
        let ready = if owned(canary_service) || canary_service.is_none() {
            i.new_rs.serving() > 0
        } else {
            fully_available(i.new_rs)
        };
        if ready {
            new_hash.clone()
        } else {
            written_canary_hash.clone().or(stable_hash.clone())
        }
    };
    let mut canary_after = canary_goal.or(stable_hash.clone());

    let weight = if !ctx.routed || i.promoted {
        0
    } else if i.aborted {
        if dynamic { dynamic_abort_weight } else { 0 }
    } else if canary_after != new_hash || i.new_rs.available_replicas == 0 {
        0
    } else if i.promote_full {
        if dynamic {
            ctx.max_weight * i.new_rs.available_replicas / ctx.replicas.max(1)
        } else {
            written_weight
        }
    } else {
        // The step's weight; a higher one waits for the step's pods, a lower one never
        // waits: traffic leaves the canary first, its pods follow (research doc §4.3 only
        // holds back raising).
        let (wanted, before) = if index >= n {
            (ctx.max_weight, set_weight_before(ctx, n))
        } else {
            (
                set_weight_at(ctx.steps, index),
                set_weight_before(ctx, index),
            )
        };
        if i.counts_reached || wanted <= written_weight {
            wanted
        } else {
            before.min(wanted)
        }
    };
    // Never more canary share than its available pods serve (as counted by a status that has
    // seen the current spec), unless a setCanaryScale pins its size on purpose.
    let weight = if weight > written_weight && !scale_pinned(ctx, index, i.aborted) {
        let servable = i.new_rs.serving() * ctx.max_weight / ctx.replicas.max(1);
        weight.min(servable.max(written_weight)).min(ctx.max_weight)
    } else {
        weight.min(ctx.max_weight)
    };

    if ctx.routed {
        let written_stable = written.as_ref().and_then(|w| w.stable_hash.clone());
        // A new canary destination first gets zero weight on the old one.
        if written_weight > 0 && canary_after != written_canary_hash {
            let same_stable = written_stable == stable_after;
            if same_stable && stable_serves(written_stable.as_deref(), 0) {
                if let Some(w) = &written {
                    // Header and mirror routes reach the canary destination too: they go
                    // with its weight, or a cohort keeps hitting pods being let go.
                    let zero = TrafficIntent {
                        canary_weight: 0,
                        header_routes: Vec::new(),
                        mirror_routes: Vec::new(),
                        ..w.clone()
                    };
                    push_traffic(ctx, pass, &mut routing, zero, written_weight);
                    drifted = false;
                }
            } else if !same_stable && stable_serves(stable_after.as_deref(), weight) {
                // The stable moves too (promotion): the new stable takes the share.
            } else {
                canary_after = written_canary_hash.clone();
            }
        }
    }
    if let (Some(view), Some(hash)) = (canary_service, canary_after.as_ref())
        && view.selector_hash.as_ref() != Some(hash)
    {
        point(
            pass,
            &mut routing,
            &view.name,
            view.selector_hash.as_deref(),
            hash,
        );
        routing.canary_service_after = Some(hash.clone());
    }
    if let (Some(view), Some(hash)) = (stable_service, stable_after.as_ref())
        && view.selector_hash.as_ref() != Some(hash)
    {
        point(
            pass,
            &mut routing,
            &view.name,
            view.selector_hash.as_deref(),
            hash,
        );
        routing.stable_service_after = Some(hash.clone());
    }
    if !ctx.routed {
        return routing;
    }
    let (header_routes, mirror_routes) = if i.aborted || i.promoted || i.promote_full || n == 0 {
        (Vec::new(), Vec::new())
    } else {
        managed_routes(ctx, index.min(n - 1))
    };
    // Traffic only grows on the newest ReplicaSet: while the canary destination still is an
    // older one (its re-pointing is held back), its share may only shrink.
    let weight = if canary_after == stable_after && !i.promoted {
        0
    } else if canary_after != new_hash && !i.promoted {
        weight.min(written_weight)
    } else {
        weight
    };
    let intent = TrafficIntent {
        canary_weight: weight,
        max_weight: ctx.max_weight,
        stable_hash: stable_after.clone(),
        canary_hash: canary_after.clone(),
        header_routes,
        mirror_routes,
    };
    if drifted || routing.intent_after.as_ref() != Some(&intent) {
        if stable_serves(stable_after.as_deref(), intent.canary_weight) {
            let from = routing
                .intent_after
                .as_ref()
                .map_or(written_weight, |w| w.canary_weight);
            push_traffic(ctx, pass, &mut routing, intent, from);
        } else {
            routing.in_sync = false;
        }
    }
    record_weights(ctx, pass, routing.intent_after.as_ref());
    routing.canary_on_newest = routing
        .intent_after
        .as_ref()
        .is_some_and(|t| t.canary_hash == new_hash);
    routing
}

fn set_weight_before(ctx: &Ctx<'_>, index: usize) -> i32 {
    if index == 0 {
        0
    } else {
        set_weight_at(ctx.steps, index - 1)
    }
}

fn point(pass: &mut Pass, routing: &mut Routing, service: &str, from: Option<&str>, to: &str) {
    pass.events.push(RolloutEvent::normal(
        "SwitchService",
        format!(
            "Switched selector for service '{service}' from '{}' to '{to}'",
            from.unwrap_or("")
        ),
    ));
    routing.actions.push(Action::PointService {
        service: service.to_owned(),
        pod_template_hash: to.to_owned(),
    });
}

fn push_traffic(
    ctx: &Ctx<'_>,
    pass: &mut Pass,
    routing: &mut Routing,
    intent: TrafficIntent,
    from: i32,
) {
    let _ = ctx;
    if intent.canary_weight != from || routing.intent_after.is_none() {
        let message = match routing.intent_after {
            Some(_) => format!(
                "Traffic weight updated from {from} to {}",
                intent.canary_weight
            ),
            None => format!("Traffic weight updated to {}", intent.canary_weight),
        };
        pass.events
            .push(RolloutEvent::normal("TrafficWeightUpdated", message));
    }
    routing.actions.push(Action::SetTraffic(intent.clone()));
    routing.intent_after = Some(intent);
}

/// `status.canary.weights` records what the routers hold.
fn record_weights(ctx: &Ctx<'_>, pass: &mut Pass, intent: Option<&TrafficIntent>) {
    let Some(intent) = intent else { return };
    let weights = TrafficWeights {
        canary: WeightDestination {
            weight: intent.canary_weight,
            service_name: ctx.strategy.canary_service.clone(),
            pod_template_hash: intent.canary_hash.clone(),
        },
        stable: WeightDestination {
            weight: intent.stable_weight(),
            service_name: ctx.strategy.stable_service.clone(),
            pod_template_hash: intent.stable_hash.clone(),
        },
        additional: None,
        verified: None,
    };
    pass.status
        .canary
        .get_or_insert_with(CanaryStatus::default)
        .weights = Some(weights);
}
