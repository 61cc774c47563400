//! NGINX router: derives a canary Ingress `<rollout>-<stableIngress>-canary` from each of the
//! user's stable Ingresses (never modified) and keeps its canary annotations equal to the
//! intent. Pure planners build the desired Ingress and the merge patch of Ramp's keys; the
//! thin [`NginxRouter`] reads, plans and writes with a resourceVersion precondition.
//!
//! Beyond upstream: a `setHeaderRoute` step is carried out with NGINX's own canary-by-header
//! and canary-by-cookie annotations on the same canary Ingress that carries `canary-weight`.
//! NGINX evaluates header, then cookie, then weight, so a header cohort always reaches the
//! canary while everyone else is split by weight — both at once.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{Ingress, IngressSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Client;
use kube::api::{Api, Patch as KubePatch, PatchParams, PostParams};
use ramp_api::rollout::{HeaderRoutingMatch, NginxTrafficRouting, StringMatch};
use ramp_core::traffic::{HeaderRouteIntent, TrafficIntent};
use serde_json::{Map, Value, json};

use super::error::{ObjectName, TrafficError};
use super::{RolloutTrafficTarget, TrafficWrite};

const INGRESS: &str = "Ingress";
const STABLE_INGRESS_FIELD: &str = "spec.strategy.canary.trafficRouting.nginx.stableIngress(es)";
/// The legacy ingress-class annotation, copied from the stable Ingress.
pub const INGRESS_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
const MAX_NAME_LENGTH: usize = 253;
const CANARY_SUFFIX: &str = "-canary";
const MAX_WRITE_ATTEMPTS: u32 = 5;

/// Canary annotation names (without prefix) that only Ramp's intent decides: removed from the
/// canary Ingress when the intent (or the rollout's static annotations) no longer sets them.
const INTENT_OWNED_KEYS: [&str; 5] = [
    "canary-weight-total",
    "canary-by-header",
    "canary-by-header-value",
    "canary-by-header-pattern",
    "canary-by-cookie",
];

/// Name of the canary Ingress for `stable_ingress`; the `<rollout>-<stable>` prefix is cut so
/// the name stays within 253 characters, as upstream.
pub fn canary_ingress_name(rollout: &str, stable_ingress: &str) -> String {
    let mut prefix = format!("{rollout}-{stable_ingress}");
    let limit = MAX_NAME_LENGTH - CANARY_SUFFIX.len();
    if prefix.len() > limit {
        let mut cut = limit;
        while !prefix.is_char_boundary(cut) {
            cut -= 1;
        }
        prefix.truncate(cut);
    }
    prefix + CANARY_SUFFIX
}

fn prefixed(prefix: &str, key: &str) -> String {
    format!("{prefix}/{key}")
}

/// Escapes regex metacharacters so a literal prefix can be used in `canary-by-header-pattern`.
fn regex_escape(literal: &str) -> String {
    let mut escaped = String::with_capacity(literal.len());
    for c in literal.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// The canary-by-header / canary-by-cookie annotations that carry the active header routes.
///
/// Mapping (Istio's semantics kept: the whole header value is matched):
/// * a condition on any header → `canary-by-header: <name>` plus `canary-by-header-value`
///   (exact) or `canary-by-header-pattern` (prefix → `^<escaped prefix>`, regex →
///   `^(?:<regex>)$`, since NGINX searches while Istio matches the whole value);
/// * a condition on the `Cookie` header with `exact: "<cookie>=always"` → `canary-by-cookie:
///   <cookie>` (NGINX routes a cookie whose value is `always`), leaving the header slot free
///   for an `X-Canary`-style condition; any other `Cookie` condition uses the header slot.
///
/// NGINX has one header slot and one cookie slot per canary Ingress; conditions that need a
/// second different one are refused.
pub fn header_route_annotations(
    prefix: &str,
    header_routes: &[HeaderRouteIntent],
) -> Result<BTreeMap<String, String>, TrafficError> {
    let mut header: Option<(String, &'static str, String)> = None;
    let mut cookie: Option<String> = None;
    for route in header_routes {
        let unsupported = |detail: String| TrafficError::UnsupportedRoute {
            router: "nginx",
            route: route.name.clone(),
            detail,
        };
        for HeaderRoutingMatch {
            header_name,
            header_value,
        } in &route.matches
        {
            let StringMatch {
                exact,
                prefix: starts,
                regex,
            } = header_value;
            let is_cookie = header_name.eq_ignore_ascii_case("cookie");
            if is_cookie
                && starts.is_none()
                && regex.is_none()
                && let Some(name) = exact
                    .as_deref()
                    .and_then(|v| v.strip_suffix("=always"))
                    .filter(|name| !name.is_empty() && !name.contains([';', '=', ' ']))
            {
                match &cookie {
                    Some(existing) if existing != name => {
                        return Err(unsupported(format!(
                            "NGINX routes by one cookie per canary Ingress; '{existing}' is already used"
                        )));
                    }
                    _ => cookie = Some(name.to_owned()),
                }
                continue;
            }
            let condition = match (exact, starts, regex) {
                (Some(v), None, None) => ("canary-by-header-value", v.clone()),
                (None, Some(p), None) => {
                    ("canary-by-header-pattern", format!("^{}", regex_escape(p)))
                }
                (None, None, Some(r)) => ("canary-by-header-pattern", format!("^(?:{r})$")),
                _ => {
                    return Err(unsupported(format!(
                        "header '{header_name}' must set exactly one of exact, prefix or regex"
                    )));
                }
            };
            let wanted = (header_name.clone(), condition.0, condition.1);
            match &header {
                Some(existing) if *existing != wanted => {
                    return Err(unsupported(format!(
                        "NGINX matches one header condition per canary Ingress; header '{}' is already used",
                        existing.0
                    )));
                }
                _ => header = Some(wanted),
            }
        }
    }
    let mut annotations = BTreeMap::new();
    if let Some((name, kind, value)) = header {
        annotations.insert(prefixed(prefix, "canary-by-header"), name);
        annotations.insert(prefixed(prefix, kind), value);
    }
    if let Some(name) = cookie {
        annotations.insert(prefixed(prefix, "canary-by-cookie"), name);
    }
    Ok(annotations)
}

/// The annotations Ramp wants on the canary Ingress.
fn desired_annotations(
    stable: &Ingress,
    nginx: &NginxTrafficRouting,
    max_traffic_weight: Option<i32>,
    intent: &TrafficIntent,
) -> Result<BTreeMap<String, String>, TrafficError> {
    let prefix = nginx.annotation_prefix();
    let mut annotations = BTreeMap::new();
    if let Some(class) = stable
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(INGRESS_CLASS_ANNOTATION))
    {
        annotations.insert(INGRESS_CLASS_ANNOTATION.to_owned(), class.clone());
    }
    for (key, value) in nginx.additional_ingress_annotations.iter().flatten() {
        let key = if key.contains('/') {
            key.clone()
        } else {
            prefixed(prefix, key)
        };
        annotations.insert(key, value.clone());
    }
    for (key, value) in nginx.canary_ingress_annotations.iter().flatten() {
        annotations.insert(key.clone(), value.clone());
    }
    let header_annotations = header_route_annotations(prefix, &intent.header_routes)?;
    if !header_annotations.is_empty() {
        // A step's header route replaces static header/cookie matching while it is active.
        for key in &INTENT_OWNED_KEYS[1..] {
            annotations.remove(&prefixed(prefix, key));
        }
        annotations.extend(header_annotations);
    }
    annotations.insert(prefixed(prefix, "canary"), "true".to_owned());
    annotations.insert(
        prefixed(prefix, "canary-weight"),
        intent.canary_weight.max(0).to_string(),
    );
    if let Some(total) = max_traffic_weight {
        annotations.insert(prefixed(prefix, "canary-weight-total"), total.to_string());
    }
    Ok(annotations)
}

/// The canary Ingress Ramp wants next to `stable`: the rules that route to the stable service
/// with those backends moved to the canary service, the stable Ingress's TLS and class, the
/// canary annotations, and the Rollout as controller owner.
pub fn desired_canary_ingress(
    stable: &Ingress,
    target: &RolloutTrafficTarget,
    nginx: &NginxTrafficRouting,
    intent: &TrafficIntent,
) -> Result<Ingress, TrafficError> {
    let stable_name = stable.metadata.name.clone().unwrap_or_default();
    let object = ObjectName::new(INGRESS, &target.namespace, &stable_name);
    if let Some(mirror) = intent.mirror_routes.first() {
        return Err(TrafficError::UnsupportedRoute {
            router: "nginx",
            route: mirror.name.clone(),
            detail: "a canary Ingress cannot mirror traffic; use Istio for setMirrorRoute"
                .to_owned(),
        });
    }
    let (Some(stable_service), Some(canary_service)) =
        (&target.stable_service, &target.canary_service)
    else {
        return Err(TrafficError::InvalidConfig {
            field: "spec.strategy.canary".to_owned(),
            detail: "NGINX traffic routing needs both canaryService and stableService".to_owned(),
        });
    };
    let stable_spec = stable.spec.clone().unwrap_or_default();
    let mut rules = Vec::new();
    for mut rule in stable_spec.rules.unwrap_or_default() {
        let mut uses_stable = false;
        if let Some(http) = rule.http.as_mut() {
            for path in &mut http.paths {
                if let Some(service) = path.backend.service.as_mut()
                    && service.name == *stable_service
                {
                    service.name = canary_service.clone();
                    uses_stable = true;
                }
            }
        }
        if uses_stable {
            rules.push(rule);
        }
    }
    if rules.is_empty() {
        return Err(TrafficError::MissingInObject {
            object,
            detail: format!("has no rules using service {stable_service} backend"),
        });
    }
    let annotations =
        desired_annotations(stable, nginx, target.routing.max_traffic_weight, intent)?;
    Ok(Ingress {
        metadata: ObjectMeta {
            name: Some(canary_ingress_name(&target.rollout, &stable_name)),
            namespace: Some(target.namespace.clone()),
            annotations: Some(annotations),
            owner_references: Some(vec![OwnerReference {
                api_version: format!("{}/{}", ramp_api::GROUP, ramp_api::VERSION),
                kind: "Rollout".to_owned(),
                name: target.rollout.clone(),
                uid: target.uid.clone(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..ObjectMeta::default()
        },
        spec: Some(IngressSpec {
            ingress_class_name: stable_spec.ingress_class_name,
            rules: Some(rules),
            tls: stable_spec.tls,
            default_backend: None,
        }),
        status: None,
    })
}

/// What to do with the canary Ingress.
#[derive(Clone, Debug, PartialEq)]
pub enum CanaryIngressWrite {
    /// It does not exist yet.
    Create(Box<Ingress>),
    /// A JSON merge patch of only Ramp's annotations and spec fields, carrying the observed
    /// `metadata.resourceVersion` as precondition.
    Patch(Value),
    /// It already says what the intent says.
    Unchanged,
}

/// Compares the existing canary Ingress (if any) with the desired one. Annotations others put
/// on it are left alone; Ramp's intent-owned annotations that are no longer wanted are removed.
pub fn plan_canary_ingress(
    existing: Option<&Ingress>,
    desired: &Ingress,
    target: &RolloutTrafficTarget,
    nginx: &NginxTrafficRouting,
) -> Result<CanaryIngressWrite, TrafficError> {
    let Some(existing) = existing else {
        return Ok(CanaryIngressWrite::Create(Box::new(desired.clone())));
    };
    let name = existing.metadata.name.clone().unwrap_or_default();
    let controlled = existing
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|owner| {
            owner.controller == Some(true)
                && owner.kind == "Rollout"
                && owner.name == target.rollout
                && (target.uid.is_empty() || owner.uid == target.uid)
        });
    if !controlled {
        return Err(TrafficError::NotControlledByRollout {
            object: ObjectName::new(INGRESS, &target.namespace, &name),
            rollout: target.rollout.clone(),
        });
    }
    let empty = BTreeMap::new();
    let current_annotations = existing.metadata.annotations.as_ref().unwrap_or(&empty);
    let desired_annotations = desired.metadata.annotations.as_ref().unwrap_or(&empty);
    let mut annotation_patch = Map::new();
    for (key, value) in desired_annotations {
        if current_annotations.get(key) != Some(value) {
            annotation_patch.insert(key.clone(), json!(value));
        }
    }
    for key in INTENT_OWNED_KEYS {
        let key = prefixed(nginx.annotation_prefix(), key);
        if current_annotations.contains_key(&key) && !desired_annotations.contains_key(&key) {
            annotation_patch.insert(key, Value::Null);
        }
    }
    let current_spec = existing.spec.clone().unwrap_or_default();
    let desired_spec = desired.spec.clone().unwrap_or_default();
    let mut spec_patch = Map::new();
    for (field, current, wanted) in [
        (
            "rules",
            to_json(&current_spec.rules),
            to_json(&desired_spec.rules),
        ),
        (
            "tls",
            to_json(&current_spec.tls),
            to_json(&desired_spec.tls),
        ),
        (
            "ingressClassName",
            to_json(&current_spec.ingress_class_name),
            to_json(&desired_spec.ingress_class_name),
        ),
    ] {
        if current != wanted {
            spec_patch.insert(field.to_owned(), wanted);
        }
    }
    if annotation_patch.is_empty() && spec_patch.is_empty() {
        return Ok(CanaryIngressWrite::Unchanged);
    }
    let mut metadata = Map::new();
    if let Some(version) = &existing.metadata.resource_version {
        metadata.insert("resourceVersion".to_owned(), json!(version));
    }
    if !annotation_patch.is_empty() {
        metadata.insert("annotations".to_owned(), Value::Object(annotation_patch));
    }
    let mut patch = Map::new();
    patch.insert("metadata".to_owned(), Value::Object(metadata));
    if !spec_patch.is_empty() {
        patch.insert("spec".to_owned(), Value::Object(spec_patch));
    }
    Ok(CanaryIngressWrite::Patch(Value::Object(patch)))
}

fn to_json<T: serde::Serialize>(value: &Option<T>) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// Applies NGINX intents through the API server (`networking.k8s.io/v1` Ingress).
#[derive(Clone)]
pub struct NginxRouter {
    client: Client,
}

impl NginxRouter {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// Creates or updates the canary Ingress of every stable Ingress the rollout names.
    pub async fn apply(
        &self,
        target: &RolloutTrafficTarget,
        nginx: &NginxTrafficRouting,
        intent: &TrafficIntent,
    ) -> Result<Vec<TrafficWrite>, TrafficError> {
        let api = Api::<Ingress>::namespaced(self.client.clone(), &target.namespace);
        let mut writes = Vec::new();
        for stable_name in nginx.stable_ingress_names() {
            if let Some(write) = self
                .apply_one(&api, target, nginx, stable_name, intent)
                .await?
            {
                writes.push(write);
            }
        }
        Ok(writes)
    }

    async fn apply_one(
        &self,
        api: &Api<Ingress>,
        target: &RolloutTrafficTarget,
        nginx: &NginxTrafficRouting,
        stable_name: &str,
        intent: &TrafficIntent,
    ) -> Result<Option<TrafficWrite>, TrafficError> {
        let stable_object = ObjectName::new(INGRESS, &target.namespace, stable_name);
        let canary_name = canary_ingress_name(&target.rollout, stable_name);
        let canary_object = ObjectName::new(INGRESS, &target.namespace, &canary_name);
        let weight = intent.canary_weight;
        for _ in 0..MAX_WRITE_ATTEMPTS {
            let stable = api
                .get_opt(stable_name)
                .await
                .map_err(|e| TrafficError::api(stable_object.clone(), "get", e))?
                .ok_or_else(|| TrafficError::NotFound {
                    object: stable_object.clone(),
                    referenced_by: STABLE_INGRESS_FIELD.to_owned(),
                })?;
            let existing = api
                .get_opt(&canary_name)
                .await
                .map_err(|e| TrafficError::api(canary_object.clone(), "get", e))?;
            let desired = desired_canary_ingress(&stable, target, nginx, intent)?;
            let result = match plan_canary_ingress(existing.as_ref(), &desired, target, nginx)? {
                CanaryIngressWrite::Unchanged => return Ok(None),
                CanaryIngressWrite::Create(ingress) => api
                    .create(&PostParams::default(), &ingress)
                    .await
                    .map(|_| TrafficWrite {
                        object: canary_object.clone(),
                        reason: "CreatingCanaryIngress",
                        summary: format!(
                            "Creating canary ingress `{canary_name}` with weight `{weight}`"
                        ),
                    }),
                CanaryIngressWrite::Patch(patch) => api
                    .patch(
                        &canary_name,
                        &PatchParams::default(),
                        &KubePatch::Merge(&patch),
                    )
                    .await
                    .map(|_| TrafficWrite {
                        object: canary_object.clone(),
                        reason: "PatchingCanaryIngress",
                        summary: format!(
                            "Updating Ingress `{canary_name}` to desiredWeight '{weight}'"
                        ),
                    }),
            };
            match result {
                Ok(write) => return Ok(Some(write)),
                // Created or changed by someone else since our read: read again.
                Err(kube::Error::Api(status)) if status.code == 409 => {
                    tracing::debug!(object = %canary_object, message = %status.message, "canary ingress write raced; re-reading");
                }
                Err(source) => return Err(TrafficError::api(canary_object, "write", source)),
            }
        }
        Err(TrafficError::Conflict {
            object: canary_object,
            attempts: MAX_WRITE_ATTEMPTS,
        })
    }
}
