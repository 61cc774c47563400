//! The apimachinery semantics the emulated API server applies to every request: label and
//! field selectors, patches (merge, JSON, strategic), server-side apply with managed fields,
//! and CRD structural schemas (defaulting, pruning, validation). Pure functions over
//! `serde_json::Value`; no I/O, no clock (callers pass `now`), no async.

pub mod apply;
pub mod fieldpath;
pub mod patch;
pub mod schema;
pub mod selector;
mod strategic;

pub use strategic::ListShape;

use serde_json::Value;

/// The group and kind of an object, enough to decide which patch and merge semantics apply.
///
/// Built-in kinds (core, `apps`, `batch`, `networking.k8s.io`, ...) get strategic merge patch
/// and their upstream list merge keys; every other group is treated as a custom resource.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KindKey {
    /// API group; `""` for the core group (`v1` Pods, Services, ConfigMaps...).
    pub group: String,
    /// Kind in CamelCase, e.g. `Deployment`.
    pub kind: String,
}

/// API groups served by a real kube-apiserver itself (not by CRDs).
const BUILTIN_GROUPS: &[&str] = &[
    "",
    "apps",
    "batch",
    "autoscaling",
    "policy",
    "networking.k8s.io",
    "coordination.k8s.io",
    "events.k8s.io",
    "discovery.k8s.io",
    "rbac.authorization.k8s.io",
    "apiextensions.k8s.io",
    "admissionregistration.k8s.io",
    "scheduling.k8s.io",
    "storage.k8s.io",
    "node.k8s.io",
    "certificates.k8s.io",
    "authentication.k8s.io",
    "authorization.k8s.io",
];

impl KindKey {
    /// `KindKey::new("apps", "Deployment")`; use `""` for the core group.
    pub fn new(group: impl Into<String>, kind: impl Into<String>) -> Self {
        Self {
            group: group.into(),
            kind: kind.into(),
        }
    }

    /// Derives the key from an object's `apiVersion` (`apps/v1`, `v1`) and `kind`.
    /// Returns `None` when either is missing or not a string.
    pub fn of_object(object: &Value) -> Option<Self> {
        let api_version = object.get("apiVersion")?.as_str()?;
        let kind = object.get("kind")?.as_str()?;
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        Some(Self::new(group, kind))
    }

    /// True for kinds a real API server serves natively (strategic merge patch supported).
    pub fn is_builtin(&self) -> bool {
        BUILTIN_GROUPS.contains(&self.group.as_str())
    }

    /// `Rollout.argoproj.io`, or just `Pod` for the core group: the form a real server uses
    /// in "is invalid" messages.
    pub fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }
}

/// Whether an update must increment `metadata.generation`.
///
/// A real server bumps the generation when anything outside `metadata` changes; when the
/// kind has a status subresource, `status` changes do not count either (they arrive through
/// `/status`, and writes to the main resource ignore status). The other bump a real server
/// makes, when a graceful delete sets `metadata.deletionTimestamp` on an object held by
/// finalizers, belongs to the server's delete path, not to this comparison.
pub fn generation_should_bump(old: &Value, new: &Value, has_status_subresource: bool) -> bool {
    let ignored: &[&str] = if has_status_subresource {
        &["metadata", "status"]
    } else {
        &["metadata"]
    };
    let outside = |object: &Value| -> Vec<(String, Value)> {
        object
            .as_object()
            .map(|map| {
                map.iter()
                    .filter(|(k, _)| !ignored.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut a = outside(old);
    let mut b = outside(new);
    a.sort_by(|x, y| x.0.cmp(&y.0));
    b.sort_by(|x, y| x.0.cmp(&y.0));
    a != b
}

/// Reads the value at a dotted path (`spec.template.metadata.labels`), descending through
/// objects only. Returns `None` when any segment is missing or the parent is not an object.
pub fn get_path<'a>(object: &'a Value, dotted: &str) -> Option<&'a Value> {
    dotted
        .split('.')
        .filter(|s| !s.is_empty())
        .try_fold(object, |node, segment| node.as_object()?.get(segment))
}

/// Renders a JSON value the way field-path error messages quote it: strings in double
/// quotes, everything else as compact JSON.
pub(crate) fn quote_value(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kind_key_from_object_splits_group_from_version() {
        let deploy = json!({"apiVersion": "apps/v1", "kind": "Deployment"});
        assert_eq!(
            KindKey::of_object(&deploy),
            Some(KindKey::new("apps", "Deployment"))
        );
        let pod = json!({"apiVersion": "v1", "kind": "Pod"});
        assert_eq!(KindKey::of_object(&pod), Some(KindKey::new("", "Pod")));
        assert_eq!(KindKey::of_object(&json!({"kind": "Pod"})), None);
    }

    #[test]
    fn builtin_groups_are_recognised_and_crds_are_not() {
        assert!(KindKey::new("", "Service").is_builtin());
        assert!(KindKey::new("networking.k8s.io", "Ingress").is_builtin());
        assert!(!KindKey::new("argoproj.io", "Rollout").is_builtin());
        assert_eq!(
            KindKey::new("argoproj.io", "Rollout").qualified_kind(),
            "Rollout.argoproj.io"
        );
        assert_eq!(KindKey::new("", "Pod").qualified_kind(), "Pod");
    }

    #[test]
    fn generation_bumps_only_for_changes_outside_metadata_and_status() {
        let old = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"replicas": 1}, "status": {"x": 1}});
        let label_only = json!({"metadata": {"labels": {"a": "2"}}, "spec": {"replicas": 1}, "status": {"x": 1}});
        let status_only = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"replicas": 1}, "status": {"x": 2}});
        let spec = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"replicas": 2}, "status": {"x": 1}});
        let config_data = json!({"metadata": {}, "data": {"k": "v"}});
        assert!(!generation_should_bump(&old, &label_only, true));
        assert!(!generation_should_bump(&old, &status_only, true));
        assert!(generation_should_bump(&old, &status_only, false));
        assert!(generation_should_bump(&old, &spec, true));
        assert!(generation_should_bump(
            &json!({"metadata": {}}),
            &config_data,
            false
        ));
    }

    #[test]
    fn get_path_descends_objects() {
        let obj = json!({"metadata": {"name": "a", "labels": {"app": "x"}}});
        assert_eq!(get_path(&obj, "metadata.labels.app"), Some(&json!("x")));
        assert_eq!(get_path(&obj, "metadata.missing"), None);
        assert_eq!(get_path(&obj, "metadata.name.deeper"), None);
    }
}
