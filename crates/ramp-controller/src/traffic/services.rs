//! Service selectors: points the rollout's `canaryService` / `stableService` at a
//! pod-template hash by patching only `spec.selector.rollouts-pod-template-hash` (plus the
//! managed-by annotation on first adoption), and releases them when the rollout lets go.
//! Whether a ReplicaSet is available enough to receive a Service is decided by the caller.

use k8s_openapi::api::core::v1::Service;
use kube::Client;
use kube::api::{Api, Patch as KubePatch, PatchParams};
use serde_json::{Map, Value, json};

use super::error::{ObjectName, TrafficError};
use super::{MANAGED_BY_ANNOTATION, POD_TEMPLATE_HASH_LABEL, TrafficWrite};

const SERVICE: &str = "Service";
const MAX_WRITE_ATTEMPTS: u32 = 5;

/// Who manages `service` according to its managed-by annotation.
pub fn managing_rollout(service: &Service) -> Option<&str> {
    service
        .metadata
        .annotations
        .as_ref()?
        .get(MANAGED_BY_ANNOTATION)
        .map(String::as_str)
}

/// The pod-template hash `service` currently selects.
pub fn selected_hash(service: &Service) -> Option<&str> {
    service
        .spec
        .as_ref()?
        .selector
        .as_ref()?
        .get(POD_TEMPLATE_HASH_LABEL)
        .map(String::as_str)
}

/// The strategic merge patch that makes `service` select `hash` and marks it managed by
/// `rollout`; `None` when it already does. The observed resourceVersion rides along as a
/// precondition. A Service another rollout manages is refused.
pub fn selector_patch(
    service: &Service,
    rollout: &str,
    hash: &str,
) -> Result<Option<Value>, TrafficError> {
    let object = ObjectName::new(
        SERVICE,
        service.metadata.namespace.as_deref().unwrap_or_default(),
        service.metadata.name.as_deref().unwrap_or_default(),
    );
    let adopted = match managing_rollout(service) {
        Some(owner) if owner == rollout => true,
        Some(owner) => {
            return Err(TrafficError::ManagedByOtherRollout {
                object,
                owner: owner.to_owned(),
                rollout: rollout.to_owned(),
            });
        }
        None => false,
    };
    if adopted && selected_hash(service) == Some(hash) {
        return Ok(None);
    }
    let mut metadata = Map::new();
    if let Some(version) = &service.metadata.resource_version {
        metadata.insert("resourceVersion".to_owned(), json!(version));
    }
    if !adopted {
        metadata.insert(
            "annotations".to_owned(),
            json!({ MANAGED_BY_ANNOTATION: rollout }),
        );
    }
    Ok(Some(json!({
        "metadata": metadata,
        "spec": { "selector": { POD_TEMPLATE_HASH_LABEL: hash } },
    })))
}

/// The patch that removes the hash selector and the managed-by annotation when `rollout` stops
/// referencing `service`; `None` when `rollout` does not manage it.
pub fn release_patch(service: &Service, rollout: &str) -> Option<Value> {
    if managing_rollout(service) != Some(rollout) {
        return None;
    }
    let mut metadata = Map::new();
    if let Some(version) = &service.metadata.resource_version {
        metadata.insert("resourceVersion".to_owned(), json!(version));
    }
    metadata.insert(
        "annotations".to_owned(),
        json!({ MANAGED_BY_ANNOTATION: null }),
    );
    Some(json!({
        "metadata": metadata,
        "spec": { "selector": { POD_TEMPLATE_HASH_LABEL: null } },
    }))
}

/// Switches Service selectors through the API server.
#[derive(Clone)]
pub struct ServiceSelectors {
    client: Client,
}

impl ServiceSelectors {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// Points Service `name` at `hash`. `referenced_by` names the rollout field that names the
    /// Service (`spec.strategy.canary.canaryService`), for the not-found message.
    pub async fn point_at(
        &self,
        namespace: &str,
        name: &str,
        referenced_by: &str,
        rollout: &str,
        hash: &str,
    ) -> Result<Option<TrafficWrite>, TrafficError> {
        let summary =
            format!("Switched selector for service '{name}' from '{{previous}}' to '{hash}'");
        self.write(namespace, name, referenced_by, |service| {
            let previous = selected_hash(service).unwrap_or_default().to_owned();
            Ok(selector_patch(service, rollout, hash)?
                .map(|patch| (patch, summary.replace("{previous}", &previous))))
        })
        .await
    }

    /// Removes the hash selector and managed-by annotation Ramp added for `rollout`.
    pub async fn release(
        &self,
        namespace: &str,
        name: &str,
        rollout: &str,
    ) -> Result<Option<TrafficWrite>, TrafficError> {
        self.write(namespace, name, "the rollout's previous spec", |service| {
            Ok(release_patch(service, rollout).map(|patch| {
                (
                    patch,
                    format!("Released service '{name}' from rollout '{rollout}'"),
                )
            }))
        })
        .await
    }

    async fn write<F>(
        &self,
        namespace: &str,
        name: &str,
        referenced_by: &str,
        plan: F,
    ) -> Result<Option<TrafficWrite>, TrafficError>
    where
        F: Fn(&Service) -> Result<Option<(Value, String)>, TrafficError>,
    {
        let api = Api::<Service>::namespaced(self.client.clone(), namespace);
        let object = ObjectName::new(SERVICE, namespace, name);
        for _ in 0..MAX_WRITE_ATTEMPTS {
            let service = api
                .get_opt(name)
                .await
                .map_err(|e| TrafficError::api(object.clone(), "get", e))?
                .ok_or_else(|| TrafficError::NotFound {
                    object: object.clone(),
                    referenced_by: referenced_by.to_owned(),
                })?;
            let Some((patch, summary)) = plan(&service)? else {
                return Ok(None);
            };
            match api
                .patch(name, &PatchParams::default(), &KubePatch::Strategic(&patch))
                .await
            {
                Ok(_) => {
                    return Ok(Some(TrafficWrite {
                        object,
                        reason: "SwitchService",
                        summary,
                    }));
                }
                Err(kube::Error::Api(status)) if status.code == 409 => {
                    tracing::debug!(%object, message = %status.message, "service selector write raced; re-reading");
                }
                Err(source) => return Err(TrafficError::api(object, "patch", source)),
            }
        }
        Err(TrafficError::Conflict {
            object,
            attempts: MAX_WRITE_ATTEMPTS,
        })
    }
}
