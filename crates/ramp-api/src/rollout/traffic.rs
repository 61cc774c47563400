//! Traffic routing configuration of a canary (`spec.strategy.canary.trafficRouting`): one
//! member per supported mesh, ingress or plugin. How each router is driven is the controller's
//! business; these types only carry the configuration.

use crate::defaults;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where and how canary traffic weights are applied.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutTrafficRouting {
    /// Istio VirtualService(s) and/or DestinationRule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub istio: Option<IstioTrafficRouting>,
    /// NGINX ingress controller (a generated canary Ingress).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nginx: Option<NginxTrafficRouting>,
    /// AWS Load Balancer Controller ingress actions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alb: Option<AlbTrafficRouting>,
    /// SMI TrafficSplit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smi: Option<SmiTrafficRouting>,
    /// Ambassador/Emissary Mappings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ambassador: Option<AmbassadorTrafficRouting>,
    /// AWS App Mesh virtual router and nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_mesh: Option<AppMeshTrafficRouting>,
    /// Traefik weighted TraefikService.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traefik: Option<TraefikTrafficRouting>,
    /// Apache APISIX ApisixRoute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apisix: Option<ApisixTrafficRouting>,
    /// Traffic-router plugins by name, each with its free-form configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::preserve_unknown_object")]
    pub plugins: Option<BTreeMap<String, serde_json::Value>>,
    /// Routes owned by the controller (header and mirror routes), in precedence order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_routes: Option<Vec<ManagedRoute>>,
    /// Denominator of every weight (default 100; NGINX and plugins only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_traffic_weight: Option<i32>,
}

impl RolloutTrafficRouting {
    /// Denominator of every traffic weight (default 100).
    pub fn max_traffic_weight(&self) -> i32 {
        self.max_traffic_weight
            .unwrap_or(defaults::MAX_TRAFFIC_WEIGHT)
    }

    /// Names of the managed routes, in precedence order.
    pub fn managed_route_names(&self) -> impl Iterator<Item = &str> {
        self.managed_routes
            .iter()
            .flatten()
            .map(|route| route.name.as_str())
    }
}

/// A route the controller creates and removes itself.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagedRoute {
    /// Route name, referenced by `setHeaderRoute`/`setMirrorRoute` steps.
    pub name: String,
}

/// Istio: weights written into VirtualService routes, optionally split by DestinationRule
/// subsets.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IstioTrafficRouting {
    /// The VirtualService to edit (use this or `virtualServices`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_service: Option<IstioVirtualService>,
    /// Several VirtualServices to edit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_services: Option<Vec<IstioVirtualService>>,
    /// DestinationRule whose canary/stable subsets get the pod-template hashes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_rule: Option<IstioDestinationRule>,
}

/// A VirtualService and the routes in it whose weights are managed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IstioVirtualService {
    /// `name` or `name.namespace`.
    pub name: String,
    /// Names of the HTTP routes to manage (optional if the VirtualService has exactly one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routes: Option<Vec<String>>,
    /// TLS routes to manage, selected by port and SNI hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_routes: Option<Vec<TlsRoute>>,
    /// TCP routes to manage, selected by port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_routes: Option<Vec<TcpRoute>>,
}

/// Selects a TLS route of a VirtualService.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsRoute {
    /// Port the route matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
    /// SNI hosts the route matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni_hosts: Option<Vec<String>>,
}

/// Selects a TCP route of a VirtualService.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TcpRoute {
    /// Port the route matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
}

/// DestinationRule subsets used for subset-level splitting.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IstioDestinationRule {
    /// Name of the DestinationRule.
    pub name: String,
    /// Subset pointed at the canary pods.
    pub canary_subset_name: String,
    /// Subset pointed at the stable pods.
    pub stable_subset_name: String,
    /// Subsets from other DestinationRules that appear in the managed routes; their weights are
    /// left alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_subset_names: Option<Vec<String>>,
}

/// NGINX: a canary Ingress is generated next to each stable Ingress.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NginxTrafficRouting {
    /// Annotation prefix of the ingress controller (default `nginx.ingress.kubernetes.io`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotation_prefix: Option<String>,
    /// The user's Ingress routing to the stable service (use this or `stableIngresses`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_ingress: Option<String>,
    /// Several stable Ingresses, one canary Ingress each.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_ingresses: Option<Vec<String>>,
    /// Extra canary annotations; keys get the annotation prefix unless they already have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_ingress_annotations: Option<BTreeMap<String, String>>,
    /// Annotations copied verbatim onto the canary Ingress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_ingress_annotations: Option<BTreeMap<String, String>>,
}

impl NginxTrafficRouting {
    /// Annotation prefix of the ingress controller.
    pub fn annotation_prefix(&self) -> &str {
        self.annotation_prefix
            .as_deref()
            .unwrap_or(defaults::NGINX_ANNOTATION_PREFIX)
    }

    /// Every stable Ingress named, from either field.
    pub fn stable_ingress_names(&self) -> impl Iterator<Item = &str> {
        self.stable_ingress
            .iter()
            .chain(self.stable_ingresses.iter().flatten())
            .map(String::as_str)
    }
}

/// AWS ALB: the forward action annotation of the Ingress is rewritten with weights.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlbTrafficRouting {
    /// The ALB Ingress (use this or `ingresses`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<String>,
    /// Several ALB Ingresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingresses: Option<Vec<String>>,
    /// Service port used in the forward action.
    pub service_port: i32,
    /// Service referenced by the Ingress rule (default: the stable service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_service: Option<String>,
    /// Annotation prefix of the controller (default `alb.ingress.kubernetes.io`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotation_prefix: Option<String>,
    /// Target-group stickiness of the forward action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stickiness_config: Option<StickinessConfig>,
}

impl AlbTrafficRouting {
    /// Annotation prefix of the load balancer controller.
    pub fn annotation_prefix(&self) -> &str {
        self.annotation_prefix
            .as_deref()
            .unwrap_or(defaults::ALB_ANNOTATION_PREFIX)
    }

    /// Every ALB Ingress named, from either field.
    pub fn ingress_names(&self) -> impl Iterator<Item = &str> {
        self.ingress
            .iter()
            .chain(self.ingresses.iter().flatten())
            .map(String::as_str)
    }
}

/// Target-group stickiness.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StickinessConfig {
    /// Whether stickiness is on.
    pub enabled: bool,
    /// Stickiness duration in seconds.
    pub duration_seconds: i64,
}

/// SMI: a TrafficSplit with canary and stable backends.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SmiTrafficRouting {
    /// Root service of the TrafficSplit (default: the stable service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_service: Option<String>,
    /// Name of the TrafficSplit (default: the rollout name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_split_name: Option<String>,
}

/// Traefik: a weighted TraefikService.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TraefikTrafficRouting {
    /// TraefikService whose weighted services get the canary/stable weights.
    pub weighted_traefik_service_name: String,
}

/// Ambassador: a `<mapping>-canary` Mapping per base Mapping.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AmbassadorTrafficRouting {
    /// Base Mappings routing to the stable service.
    pub mappings: Vec<String>,
}

/// APISIX: weights of an ApisixRoute's backends.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApisixTrafficRouting {
    /// The ApisixRoute to edit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<ApisixRoute>,
}

/// An ApisixRoute and the HTTP rules in it whose weights are managed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApisixRoute {
    /// Name of the ApisixRoute.
    pub name: String,
    /// Names of the HTTP rules to manage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<Vec<String>>,
}

/// AWS App Mesh: virtual router weights and virtual node selectors.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppMeshTrafficRouting {
    /// Virtual service whose router routes are weighted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_service: Option<AppMeshVirtualService>,
    /// Canary and stable virtual nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_node_group: Option<AppMeshVirtualNodeGroup>,
}

/// An App Mesh virtual service and the routes to manage.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppMeshVirtualService {
    /// Name of the virtual service.
    pub name: String,
    /// Names of the routes to manage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routes: Option<Vec<String>>,
}

/// The canary and stable virtual nodes of an App Mesh split.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppMeshVirtualNodeGroup {
    /// Virtual node selecting the canary pods.
    pub canary_virtual_node_ref: AppMeshVirtualNodeReference,
    /// Virtual node selecting the stable pods.
    pub stable_virtual_node_ref: AppMeshVirtualNodeReference,
}

/// Reference to an App Mesh virtual node.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppMeshVirtualNodeReference {
    /// Name of the virtual node.
    pub name: String,
}
