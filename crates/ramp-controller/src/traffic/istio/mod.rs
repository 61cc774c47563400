//! Istio router: makes a `TrafficIntent` true in VirtualServices (weights, header and mirror
//! routes) and a DestinationRule (subset hash labels). Pure planners turn an object's JSON
//! into a guarded RFC 6902 patch; the thin [`IstioRouter`] reads, plans and sends them.
//!
//! Better than upstream: Argo Rollouts rewrites the whole VirtualService and DestinationRule
//! with an Update, so a field another writer added between its read and its write (`retries`,
//! a new route, a changed timeout) is lost, and it deletes every DestinationRule subset it
//! does not manage. Ramp sends only the operations on what it owns — the canary and stable
//! `weight`s at their indexes, the managed routes, the two subsets' hash labels and the
//! managed-by annotation — each guarded by `test` operations on what the index points at
//! (route name, destination host and subset, TLS/TCP match) and on `metadata.resourceVersion`.
//! When anything moved, the server refuses the patch; Ramp re-reads and recomputes.

mod destination_rule;
mod managed_routes;
mod virtual_service;

use std::fmt;
use std::str::FromStr;

use json_patch::Patch;
use kube::Client;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, Patch as KubePatch, PatchParams,
};
use ramp_api::rollout::{IstioDestinationRule, IstioTrafficRouting, IstioVirtualService};
use ramp_core::traffic::TrafficIntent;
use serde_json::Value;

use super::error::{ObjectName, TrafficError};
use super::{RolloutTrafficTarget, TrafficWrite};

use destination_rule::subset_hash;
pub use destination_rule::{plan_destination_rule, plan_destination_rule_release};
pub use virtual_service::{SplitDestinations, VirtualServicePlan, plan_virtual_service};

/// API group of VirtualService and DestinationRule.
pub const ISTIO_GROUP: &str = "networking.istio.io";
/// Istio weights always add up to this (`maxTrafficWeight` is not allowed with Istio).
pub const ISTIO_TOTAL_WEIGHT: i64 = 100;

const VIRTUAL_SERVICE: &str = "VirtualService";
const DESTINATION_RULE: &str = "DestinationRule";
const ROUTES_FIELD: &str = "spec.strategy.canary.trafficRouting.istio.virtualService(s)";
const DESTINATION_RULE_FIELD: &str = "spec.strategy.canary.trafficRouting.istio.destinationRule";

/// Version of the `networking.istio.io` API to talk to. Upstream's default is `v1alpha3`;
/// all three serve the same VirtualService/DestinationRule schema.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IstioApiVersion {
    #[default]
    V1alpha3,
    V1beta1,
    V1,
}

impl IstioApiVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V1alpha3 => "v1alpha3",
            Self::V1beta1 => "v1beta1",
            Self::V1 => "v1",
        }
    }

    /// The VirtualService resource at this version.
    pub fn virtual_service_resource(self) -> ApiResource {
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(ISTIO_GROUP, self.as_str(), VIRTUAL_SERVICE),
            "virtualservices",
        )
    }

    /// The DestinationRule resource at this version.
    pub fn destination_rule_resource(self) -> ApiResource {
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(ISTIO_GROUP, self.as_str(), DESTINATION_RULE),
            "destinationrules",
        )
    }
}

impl fmt::Display for IstioApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for IstioApiVersion {
    type Err = TrafficError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "v1alpha3" => Ok(Self::V1alpha3),
            "v1beta1" => Ok(Self::V1beta1),
            "v1" => Ok(Self::V1),
            other => Err(TrafficError::InvalidConfig {
                field: "--istio-api-version".to_owned(),
                detail: format!(
                    "unknown Istio API version '{other}' (expected v1alpha3, v1beta1 or v1)"
                ),
            }),
        }
    }
}

/// Splits `name` or `name.namespace` (a trailing `.svc.cluster.local` / `.cluster.local` is
/// ignored, as upstream) into the VirtualService name and namespace.
pub fn virtual_service_name<'a>(
    reference: &'a str,
    rollout_namespace: &'a str,
) -> (&'a str, &'a str) {
    let trimmed = reference
        .strip_suffix(".svc.cluster.local")
        .or_else(|| reference.strip_suffix(".cluster.local"))
        .unwrap_or(reference);
    let mut parts = trimmed.split('.');
    let name = parts.next().unwrap_or(trimmed);
    match parts.next() {
        Some(namespace) if !namespace.is_empty() => (name, namespace),
        _ => (name, rollout_namespace),
    }
}

/// How many times a write is recomputed after someone else changed the object in between.
const MAX_WRITE_ATTEMPTS: u32 = 5;

/// Reads `name`, plans with `plan`, and sends the JSON patch; on a refused guard (409, or 422
/// from a failed `test`) re-reads and recomputes. Returns whether anything was written.
pub(crate) async fn guarded_json_patch<F>(
    api: &Api<DynamicObject>,
    object: &ObjectName,
    referenced_by: &str,
    mut plan: F,
) -> Result<bool, TrafficError>
where
    F: FnMut(&Value) -> Result<Patch, TrafficError>,
{
    let mut last_refusal = None;
    for _ in 0..MAX_WRITE_ATTEMPTS {
        let current = read_json(api, object, referenced_by).await?;
        let patch = plan(&current)?;
        if patch.0.is_empty() {
            return Ok(false);
        }
        match api
            .patch(
                &object.name,
                &PatchParams::default(),
                &KubePatch::Json::<()>(patch),
            )
            .await
        {
            Ok(_) => return Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 || status.code == 422 => {
                tracing::debug!(%object, code = status.code, message = %status.message, "guarded patch refused; re-reading");
                last_refusal = Some(kube::Error::Api(status));
            }
            Err(source) => return Err(TrafficError::api(object.clone(), "patch", source)),
        }
    }
    match last_refusal {
        // A 422 that survives every fresh recompute is the server rejecting the content, not a race.
        Some(kube::Error::Api(status)) if status.code == 422 => Err(TrafficError::api(
            object.clone(),
            "patch",
            kube::Error::Api(status),
        )),
        _ => Err(TrafficError::Conflict {
            object: object.clone(),
            attempts: MAX_WRITE_ATTEMPTS,
        }),
    }
}

async fn read_json(
    api: &Api<DynamicObject>,
    object: &ObjectName,
    referenced_by: &str,
) -> Result<Value, TrafficError> {
    let found = api
        .get_opt(&object.name)
        .await
        .map_err(|source| TrafficError::api(object.clone(), "get", source))?
        .ok_or_else(|| TrafficError::NotFound {
            object: object.clone(),
            referenced_by: referenced_by.to_owned(),
        })?;
    serde_json::to_value(&found).map_err(|e| TrafficError::Decode {
        object: object.clone(),
        detail: e.to_string(),
    })
}

/// Applies Istio intents through the API server.
#[derive(Clone)]
pub struct IstioRouter {
    client: Client,
    version: IstioApiVersion,
}

impl IstioRouter {
    pub fn new(client: Client, version: IstioApiVersion) -> Self {
        Self { client, version }
    }

    /// Makes every configured VirtualService and the DestinationRule say what `intent` says.
    ///
    /// Order: VirtualServices whose canary weight goes down are written first, then the
    /// DestinationRule's hashes, then the remaining VirtualServices. At no point does a
    /// subset receive more traffic than the old or the new state gives it (the race behind
    /// upstream's argo-rollouts#4612, where a rollback moved weight before the subset hash).
    /// Except when the stable subset moves (promotion): the weight that leaves the canary
    /// lands on the stable subset, so the stable subset must select the new pods first, or
    /// the old pods take back traffic that neither state gives them.
    pub async fn apply(
        &self,
        target: &RolloutTrafficTarget,
        istio: &IstioTrafficRouting,
        intent: &TrafficIntent,
    ) -> Result<Vec<TrafficWrite>, TrafficError> {
        let split = SplitDestinations::for_rollout(
            istio,
            target.canary_service.as_deref(),
            target.stable_service.as_deref(),
        )?;
        let managed_routes: Vec<String> = target
            .routing
            .managed_route_names()
            .map(str::to_owned)
            .collect();
        let selections: Vec<&IstioVirtualService> = istio
            .virtual_service
            .iter()
            .chain(istio.virtual_services.iter().flatten())
            .collect();
        let stable_subset_moves = match &istio.destination_rule {
            Some(rule) => {
                let object = ObjectName::new(DESTINATION_RULE, &target.namespace, &rule.name);
                let api = Api::<DynamicObject>::namespaced_with(
                    self.client.clone(),
                    &target.namespace,
                    &self.version.destination_rule_resource(),
                );
                let current = read_json(&api, &object, DESTINATION_RULE_FIELD).await?;
                subset_hash(&current, &rule.stable_subset_name) != intent.stable_hash.as_deref()
            }
            None => false,
        };
        let mut writes = Vec::new();
        let mut pending = Vec::new();
        for selection in &selections {
            let (name, namespace) = virtual_service_name(&selection.name, &target.namespace);
            let object = ObjectName::new(VIRTUAL_SERVICE, namespace, name);
            let api = Api::<DynamicObject>::namespaced_with(
                self.client.clone(),
                namespace,
                &self.version.virtual_service_resource(),
            );
            let current = read_json(&api, &object, ROUTES_FIELD).await?;
            let plan =
                plan_virtual_service(&current, &object, selection, split, &managed_routes, intent)?;
            let lowers_canary = plan
                .observed_canary_weight
                .is_some_and(|observed| observed > plan.desired_canary_weight);
            if lowers_canary && !stable_subset_moves {
                self.write_virtual_service(
                    &api,
                    &object,
                    selection,
                    split,
                    &managed_routes,
                    intent,
                    &mut writes,
                )
                .await?;
            } else {
                pending.push((api, object, *selection));
            }
        }
        if let Some(rule) = &istio.destination_rule {
            let object = ObjectName::new(DESTINATION_RULE, &target.namespace, &rule.name);
            let api = Api::<DynamicObject>::namespaced_with(
                self.client.clone(),
                &target.namespace,
                &self.version.destination_rule_resource(),
            );
            let written = guarded_json_patch(&api, &object, DESTINATION_RULE_FIELD, |current| {
                plan_destination_rule(current, &object, rule, &target.rollout, intent)
            })
            .await?;
            if written {
                writes.push(TrafficWrite {
                    summary: format!(
                        "DestinationRule {} subset updated (canary: {}, stable: {})",
                        rule.name,
                        intent.canary_hash.as_deref().unwrap_or(""),
                        intent.stable_hash.as_deref().unwrap_or("")
                    ),
                    object,
                    reason: "UpdatedDestinationRule",
                });
            }
        }
        for (api, object, selection) in pending {
            self.write_virtual_service(
                &api,
                &object,
                selection,
                split,
                &managed_routes,
                intent,
                &mut writes,
            )
            .await?;
        }
        Ok(writes)
    }

    /// Releases a DestinationRule `rollout` no longer references (see
    /// [`plan_destination_rule_release`]). A rule that no longer exists needs nothing.
    pub async fn release_destination_rule(
        &self,
        namespace: &str,
        rule: &IstioDestinationRule,
        rollout: &str,
    ) -> Result<Option<TrafficWrite>, TrafficError> {
        let object = ObjectName::new(DESTINATION_RULE, namespace, &rule.name);
        let api = Api::<DynamicObject>::namespaced_with(
            self.client.clone(),
            namespace,
            &self.version.destination_rule_resource(),
        );
        let written = match guarded_json_patch(&api, &object, DESTINATION_RULE_FIELD, |current| {
            Ok(plan_destination_rule_release(current, rule, rollout))
        })
        .await
        {
            Ok(written) => written,
            Err(TrafficError::NotFound { .. }) => false,
            Err(other) => return Err(other),
        };
        Ok(written.then(|| TrafficWrite {
            summary: format!(
                "DestinationRule {} released by rollout {rollout}",
                rule.name
            ),
            object,
            reason: "UpdatedDestinationRule",
        }))
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "internal step of apply, all borrowed from it"
    )]
    async fn write_virtual_service(
        &self,
        api: &Api<DynamicObject>,
        object: &ObjectName,
        selection: &IstioVirtualService,
        split: SplitDestinations<'_>,
        managed_routes: &[String],
        intent: &TrafficIntent,
        writes: &mut Vec<TrafficWrite>,
    ) -> Result<(), TrafficError> {
        let mut desired = intent.canary_weight;
        let written = guarded_json_patch(api, object, ROUTES_FIELD, |current| {
            let plan =
                plan_virtual_service(current, object, selection, split, managed_routes, intent)?;
            desired = plan.desired_canary_weight;
            Ok(plan.patch)
        })
        .await?;
        if written {
            writes.push(TrafficWrite {
                summary: format!(
                    "VirtualService `{}` set to desiredWeight '{desired}'",
                    object.name
                ),
                object: object.clone(),
                reason: "Updated VirtualService",
            });
        }
        Ok(())
    }
}
