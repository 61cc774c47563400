//! What the routers hold: the router objects a reconcile read, compared with what Ramp last
//! wrote through the same pure planners that write them (an empty plan means "in force").
//! No I/O; the rollout controller's gather step fetches the objects.

use k8s_openapi::api::networking::v1::Ingress;
use ramp_core::traffic::{TrafficIntent, TrafficReading};
use serde_json::Value;

use super::RolloutTrafficTarget;
use super::error::ObjectName;
use super::istio::{
    SplitDestinations, plan_destination_rule, plan_virtual_service, virtual_service_name,
};
use super::nginx::{
    CanaryIngressWrite, canary_ingress_name, desired_canary_ingress, plan_canary_ingress,
};

/// Router objects as read: each referenced object that exists, by name.
#[derive(Clone, Debug, Default)]
pub struct RouterObjects(Vec<(ObjectName, Value)>);

impl RouterObjects {
    pub fn insert(&mut self, object: ObjectName, value: Value) {
        self.0.push((object, value));
    }

    fn get(&self, kind: &str, namespace: &str, name: &str) -> Option<&Value> {
        self.0
            .iter()
            .find(|(o, _)| o.kind == kind && o.namespace == namespace && o.name == name)
            .map(|(_, v)| v)
    }
}

/// What the routers of `target` hold, compared with `last` (Ramp's last write). `None` when an
/// object is missing or cannot be interpreted: the preflight or the next write reports that.
pub fn read_traffic(
    target: &RolloutTrafficTarget,
    objects: &RouterObjects,
    last: &TrafficIntent,
) -> Option<TrafficReading> {
    let mut largest = 0;
    let mut holds = true;
    let namespace = target.namespace.as_str();
    if let Some(istio) = &target.routing.istio {
        let split = SplitDestinations::for_rollout(
            istio,
            target.canary_service.as_deref(),
            target.stable_service.as_deref(),
        )
        .ok()?;
        let managed: Vec<String> = target
            .routing
            .managed_route_names()
            .map(str::to_owned)
            .collect();
        for selection in istio
            .virtual_service
            .iter()
            .chain(istio.virtual_services.iter().flatten())
        {
            let (name, vs_namespace) = virtual_service_name(&selection.name, namespace);
            let object = ObjectName::new("VirtualService", vs_namespace, name);
            let current = objects.get("VirtualService", vs_namespace, name)?;
            let plan =
                plan_virtual_service(current, &object, selection, split, &managed, last).ok()?;
            holds &= plan.patch.0.is_empty();
            largest = largest.max(plan.largest_canary_weight);
        }
        if let Some(rule) = &istio.destination_rule {
            let object = ObjectName::new("DestinationRule", namespace, &rule.name);
            let current = objects.get("DestinationRule", namespace, &rule.name)?;
            let patch =
                plan_destination_rule(current, &object, rule, &target.rollout, last).ok()?;
            holds &= patch.0.is_empty();
        }
    }
    if let Some(nginx) = &target.routing.nginx {
        // As `TrafficRouters::apply`: mirror routes are Istio's when both are configured.
        let nginx_last = TrafficIntent {
            mirror_routes: if target.routing.istio.is_some() {
                Vec::new()
            } else {
                last.mirror_routes.clone()
            },
            ..last.clone()
        };
        let key = format!("{}/canary-weight", nginx.annotation_prefix());
        for stable_name in nginx.stable_ingress_names() {
            let stable: Ingress =
                serde_json::from_value(objects.get("Ingress", namespace, stable_name)?.clone())
                    .ok()?;
            let canary_name = canary_ingress_name(&target.rollout, stable_name);
            let canary: Option<Ingress> = match objects.get("Ingress", namespace, &canary_name) {
                Some(value) => Some(serde_json::from_value(value.clone()).ok()?),
                None => None,
            };
            let desired = desired_canary_ingress(&stable, target, nginx, &nginx_last).ok()?;
            let plan = plan_canary_ingress(canary.as_ref(), &desired, target, nginx).ok()?;
            holds &= plan == CanaryIngressWrite::Unchanged;
            let weight = canary
                .as_ref()
                .and_then(|c| c.metadata.annotations.as_ref())
                .and_then(|a| a.get(&key))
                .and_then(|w| w.trim().parse::<i32>().ok())
                .unwrap_or(0);
            largest = largest.max(weight);
        }
    }
    Some(TrafficReading {
        canary_weight: largest,
        holds_last_write: holds,
    })
}
