//! Bearer-token authentication and RBAC authorization, off unless `SimConfig::rbac` is set.
//! Tokens the sim issued name a ServiceAccount; the decision evaluates the Role, ClusterRole,
//! RoleBinding and ClusterRoleBinding objects in the store as kube-apiserver's RBAC authorizer
//! does (no aggregation). Requests without a token stay cluster-admin, as the sim's own clients.

use super::catalog::GroupResource;
use super::faults::Verb;
use super::server::Target;
use super::status::ApiError;
use super::store::State;
use axum::http::{HeaderMap, header};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// An authenticated ServiceAccount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceAccountUser {
    pub namespace: String,
    pub name: String,
}

impl ServiceAccountUser {
    /// The user name the API server gives a ServiceAccount token.
    pub fn username(&self) -> String {
        format!("system:serviceaccount:{}:{}", self.namespace, self.name)
    }

    fn groups(&self) -> [String; 3] {
        [
            "system:serviceaccounts".to_owned(),
            format!("system:serviceaccounts:{}", self.namespace),
            "system:authenticated".to_owned(),
        ]
    }
}

/// A resource request RBAC refused, reads included (the request log keeps only writes).
#[derive(Clone, Debug)]
pub struct DeniedRequest {
    pub time: SystemTime,
    pub user: String,
    pub verb: Verb,
    pub group: String,
    pub resource: String,
    pub subresource: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    /// The Status message the client received.
    pub message: String,
}

/// Issued tokens, the on/off switch and the denials so far.
#[derive(Default)]
pub(crate) struct Rbac {
    enabled: AtomicBool,
    tokens: Mutex<HashMap<String, ServiceAccountUser>>,
    denied: Mutex<Vec<DeniedRequest>>,
}

impl Rbac {
    pub fn set_enabled(&self, enabled: bool) {
        self.enabled.store(enabled, Ordering::Relaxed);
    }

    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    pub fn register_token(&self, token: String, user: ServiceAccountUser) {
        if let Ok(mut tokens) = self.tokens.lock() {
            tokens.insert(token, user);
        }
    }

    pub fn denied(&self) -> Vec<DeniedRequest> {
        self.denied.lock().map(|d| d.clone()).unwrap_or_default()
    }

    /// Who sent the request: `None` is the cluster-admin (no token, or RBAC off); an unknown
    /// token is a 401 as on a real server.
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
    ) -> Result<Option<ServiceAccountUser>, ApiError> {
        if !self.enabled() {
            return Ok(None);
        }
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Ok(None);
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(unauthorized)?;
        self.tokens
            .lock()
            .ok()
            .and_then(|tokens| tokens.get(token).cloned())
            .map(Some)
            .ok_or_else(unauthorized)
    }

    /// Allows the request or answers 403 with kube-apiserver's message, recording the denial.
    pub fn authorize(
        &self,
        state: &State,
        user: &ServiceAccountUser,
        verb: Verb,
        target: &Target,
        field_selector: Option<&str>,
    ) -> Result<(), ApiError> {
        let attributes = Attributes::of(verb, target, field_selector);
        if allowed(state, user, &attributes) {
            return Ok(());
        }
        let error = forbidden(user, &attributes);
        if let Ok(mut denied) = self.denied.lock() {
            denied.push(DeniedRequest {
                time: SystemTime::now(),
                user: user.username(),
                verb,
                group: attributes.group.clone(),
                resource: attributes.resource.clone(),
                subresource: attributes.subresource.clone(),
                namespace: (!attributes.namespace.is_empty()).then(|| attributes.namespace.clone()),
                name: (!attributes.name.is_empty()).then(|| attributes.name.clone()),
                message: error.message.clone(),
            });
        }
        Err(error)
    }
}

fn unauthorized() -> ApiError {
    ApiError::new(401, "Unauthorized", "Unauthorized")
}

/// What RBAC decides on, as kube-apiserver's RequestInfo derives it from the request.
struct Attributes {
    verb: Verb,
    group: String,
    resource: String,
    subresource: Option<String>,
    namespace: String,
    name: String,
}

impl Attributes {
    fn of(verb: Verb, target: &Target, field_selector: Option<&str>) -> Self {
        let mut name = target.name.clone().unwrap_or_default();
        // A list or watch narrowed to one name by field selector is checked against that name,
        // so resourceNames rules can grant it.
        if name.is_empty()
            && matches!(verb, Verb::List | Verb::Watch)
            && let Some(selector) = field_selector
            && let Some(selected) = single_name(selector)
        {
            name = selected.to_owned();
        }
        let mut namespace = target.namespace.clone().unwrap_or_default();
        // A namespace is authorized in itself: a RoleBinding in `x` can grant reading `x`.
        if target.def.group.is_empty() && target.def.plural == "namespaces" && !name.is_empty() {
            namespace = name.clone();
        }
        Attributes {
            verb,
            group: target.def.group.clone(),
            resource: target.def.plural.clone(),
            subresource: target.subresource.clone(),
            namespace,
            name,
        }
    }

    fn combined_resource(&self) -> String {
        match &self.subresource {
            Some(sub) => format!("{}/{sub}", self.resource),
            None => self.resource.clone(),
        }
    }
}

fn single_name(selector: &str) -> Option<&str> {
    let mut parts = selector.split(',');
    let only = parts.next()?;
    if parts.next().is_some() {
        return None;
    }
    only.strip_prefix("metadata.name==")
        .or_else(|| only.strip_prefix("metadata.name="))
        .filter(|n| !n.is_empty())
}

fn forbidden(user: &ServiceAccountUser, attributes: &Attributes) -> ApiError {
    let gr = GroupResource::new(&attributes.group, &attributes.resource);
    let scope = if attributes.namespace.is_empty() {
        "at the cluster scope".to_owned()
    } else {
        format!("in the namespace \"{}\"", attributes.namespace)
    };
    let reason = format!(
        "User \"{}\" cannot {} resource \"{}\" in API group \"{}\" {scope}",
        user.username(),
        attributes.verb,
        attributes.combined_resource(),
        attributes.group,
    );
    let message = if attributes.name.is_empty() {
        format!("{} is forbidden: {reason}", gr.qualified())
    } else {
        format!(
            "{} \"{}\" is forbidden: {reason}",
            gr.qualified(),
            attributes.name
        )
    };
    let mut error = ApiError::forbidden(message);
    error.group = Some(attributes.group.clone());
    error.kind = Some(attributes.resource.clone());
    if !attributes.name.is_empty() {
        error.name = Some(attributes.name.clone());
    }
    error
}

/// Whether any binding that names the user grants a rule matching the request.
fn allowed(state: &State, user: &ServiceAccountUser, attributes: &Attributes) -> bool {
    let cluster_roles = GroupResource::new(RBAC_GROUP, "clusterroles");
    let roles = GroupResource::new(RBAC_GROUP, "roles");
    let rules_of = |role_ref: &Value, binding_namespace: &str| -> Vec<Value> {
        let kind = role_ref.get("kind").and_then(Value::as_str).unwrap_or("");
        let name = role_ref.get("name").and_then(Value::as_str).unwrap_or("");
        let role = match kind {
            "ClusterRole" => state.get(&cluster_roles, "", name),
            // A RoleBinding can only refer to a Role in its own namespace.
            "Role" if !binding_namespace.is_empty() => state.get(&roles, binding_namespace, name),
            _ => None,
        };
        role.and_then(|r| r.value().get("rules").and_then(Value::as_array).cloned())
            .unwrap_or_default()
    };
    let grants = |binding: &Value, binding_namespace: &str| -> bool {
        let Some(role_ref) = binding.get("roleRef") else {
            return false;
        };
        binds(binding, binding_namespace, user)
            && rules_of(role_ref, binding_namespace)
                .iter()
                .any(|rule| rule_allows(rule, attributes))
    };
    let cluster_bindings = GroupResource::new(RBAC_GROUP, "clusterrolebindings");
    let cluster_wide = state
        .range(&cluster_bindings, None, None)
        .any(|(_, stored)| {
            let binding = stored.value();
            binding.pointer("/roleRef/kind").and_then(Value::as_str) == Some("ClusterRole")
                && grants(&binding, "")
        });
    if cluster_wide || attributes.namespace.is_empty() {
        return cluster_wide;
    }
    let bindings = GroupResource::new(RBAC_GROUP, "rolebindings");
    state
        .range(&bindings, Some(&attributes.namespace), None)
        .any(|(_, stored)| grants(&stored.value(), &attributes.namespace))
}

/// Whether a binding's subjects include the user.
fn binds(binding: &Value, binding_namespace: &str, user: &ServiceAccountUser) -> bool {
    let Some(subjects) = binding.get("subjects").and_then(Value::as_array) else {
        return false;
    };
    let username = user.username();
    let groups = user.groups();
    subjects.iter().any(|subject| {
        let field = |f: &str| subject.get(f).and_then(Value::as_str).unwrap_or("");
        match field("kind") {
            "ServiceAccount" => {
                // A subject without a namespace means the binding's own namespace.
                let namespace = match field("namespace") {
                    "" => binding_namespace,
                    ns => ns,
                };
                field("name") == user.name && namespace == user.namespace
            }
            "User" => field("name") == username,
            "Group" => groups.iter().any(|g| g == field("name")),
            _ => false,
        }
    })
}

fn rule_allows(rule: &Value, attributes: &Attributes) -> bool {
    let list = |field: &str| -> Vec<&str> {
        rule.get(field)
            .and_then(Value::as_array)
            .map(|items| items.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    };
    let verbs = list("verbs");
    let groups = list("apiGroups");
    let resources = list("resources");
    let names = list("resourceNames");
    let verb = attributes.verb.as_str();
    let combined = attributes.combined_resource();
    let verb_ok = verbs.iter().any(|v| *v == "*" || *v == verb);
    let group_ok = groups.iter().any(|g| *g == "*" || *g == attributes.group);
    let resource_ok = resources.iter().any(|r| {
        *r == "*"
            || *r == combined
            || attributes
                .subresource
                .as_deref()
                .is_some_and(|sub| r.strip_prefix("*/") == Some(sub))
    });
    let name_ok = names.is_empty()
        || (!attributes.name.is_empty() && names.iter().any(|n| *n == attributes.name));
    verb_ok && group_ok && resource_ok && name_ok
}
