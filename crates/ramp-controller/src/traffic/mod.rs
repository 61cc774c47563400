//! Traffic routers: make a `ramp_core::traffic::TrafficIntent` true in the cluster (Istio
//! VirtualServices/DestinationRules, NGINX canary Ingresses) and point the canary/stable
//! Services at pod-template hashes. Deciding the intent is ramp-core's job; each router
//! here only writes the fields Ramp owns, guarded against concurrent writers.

pub mod error;
pub mod istio;
pub mod nginx;
mod patch;
pub mod reading;
pub mod services;

use kube::Client;
use ramp_api::rollout::{Rollout, RolloutTrafficRouting};
use ramp_core::traffic::TrafficIntent;

pub use error::{ObjectName, TrafficError};
pub use istio::{IstioApiVersion, IstioRouter};
pub use nginx::NginxRouter;
pub use reading::{RouterObjects, read_traffic};
pub use services::ServiceSelectors;

/// Label carrying a ReplicaSet's pod-template hash (Service selectors, DestinationRule subsets).
pub const POD_TEMPLATE_HASH_LABEL: &str = "rollouts-pod-template-hash";
/// Annotation naming the rollout that manages a Service or DestinationRule (upstream's key, so
/// objects adopted by Argo Rollouts stay adopted).
pub const MANAGED_BY_ANNOTATION: &str = "argo-rollouts.argoproj.io/managed-by-rollouts";

/// The parts of a Rollout the routers need, detached from the Rollout object.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RolloutTrafficTarget {
    pub rollout: String,
    pub namespace: String,
    /// UID of the Rollout, for the canary Ingress's owner reference.
    pub uid: String,
    pub canary_service: Option<String>,
    pub stable_service: Option<String>,
    pub routing: RolloutTrafficRouting,
}

impl RolloutTrafficTarget {
    /// The traffic target of a canary rollout with `trafficRouting`; `None` for any other
    /// rollout (basic canary, blue-green): there is no router to drive.
    pub fn from_rollout(rollout: &Rollout) -> Option<Self> {
        let canary = rollout.spec.strategy.as_ref()?.canary.as_ref()?;
        let routing = canary.traffic_routing.clone()?;
        Some(Self {
            rollout: rollout.metadata.name.clone().unwrap_or_default(),
            namespace: rollout
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".to_owned()),
            uid: rollout.metadata.uid.clone().unwrap_or_default(),
            canary_service: canary.canary_service.clone(),
            stable_service: canary.stable_service.clone(),
            routing,
        })
    }

    /// Every object the routers read or write for this rollout (Services, VirtualServices,
    /// the DestinationRule, stable and canary Ingresses): what the controller watches and maps
    /// back to the rollout.
    pub fn referenced_objects(&self) -> Vec<ObjectName> {
        let namespace = self.namespace.as_str();
        let mut objects: Vec<ObjectName> = self
            .canary_service
            .iter()
            .chain(self.stable_service.iter())
            .map(|name| ObjectName::new("Service", namespace, name))
            .collect();
        if let Some(istio) = &self.routing.istio {
            for selection in istio
                .virtual_service
                .iter()
                .chain(istio.virtual_services.iter().flatten())
            {
                let (name, vs_namespace) = istio::virtual_service_name(&selection.name, namespace);
                objects.push(ObjectName::new("VirtualService", vs_namespace, name));
            }
            if let Some(rule) = &istio.destination_rule {
                objects.push(ObjectName::new("DestinationRule", namespace, &rule.name));
            }
        }
        if let Some(nginx_routing) = &self.routing.nginx {
            for stable in nginx_routing.stable_ingress_names() {
                objects.push(ObjectName::new("Ingress", namespace, stable));
                let canary = nginx::canary_ingress_name(&self.rollout, stable);
                objects.push(ObjectName::new("Ingress", namespace, &canary));
            }
        }
        objects
    }
}

/// One write a router made, for the controller's events (`reason` is upstream's event reason).
#[derive(Clone, Debug, PartialEq)]
pub struct TrafficWrite {
    pub object: ObjectName,
    pub reason: &'static str,
    pub summary: String,
}

/// Every router Ramp drives, sharing one client.
#[derive(Clone)]
pub struct TrafficRouters {
    pub istio: IstioRouter,
    pub nginx: NginxRouter,
}

impl TrafficRouters {
    pub fn new(client: Client, istio_version: IstioApiVersion) -> Self {
        Self {
            istio: IstioRouter::new(client.clone(), istio_version),
            nginx: NginxRouter::new(client),
        }
    }

    /// Applies `intent` to every router the rollout configures (Istio, then NGINX) and returns
    /// the writes made. Mirror routes go to Istio only; NGINX refuses them when it is the
    /// only router (it has no way to mirror from a canary Ingress).
    pub async fn apply(
        &self,
        target: &RolloutTrafficTarget,
        intent: &TrafficIntent,
    ) -> Result<Vec<TrafficWrite>, TrafficError> {
        let mut writes = Vec::new();
        if let Some(istio) = &target.routing.istio {
            writes.extend(self.istio.apply(target, istio, intent).await?);
        }
        if let Some(nginx) = &target.routing.nginx {
            let nginx_intent;
            let intent = if target.routing.istio.is_some() && !intent.mirror_routes.is_empty() {
                nginx_intent = TrafficIntent {
                    mirror_routes: Vec::new(),
                    ..intent.clone()
                };
                &nginx_intent
            } else {
                intent
            };
            writes.extend(self.nginx.apply(target, nginx, intent).await?);
        }
        Ok(writes)
    }
}
