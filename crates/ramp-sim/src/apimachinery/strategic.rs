//! Strategic merge patch for built-in kinds, and the list shapes (merge keys) it shares with
//! server-side apply. The merge keys are the upstream `patchMergeKey` tags of the types Ramp
//! and its tests write; lists not in the table are atomic (replaced), as upstream.
//!
//! Limits: merge keys are looked up by field name and position (`containers` anywhere, `ports`
//! inside a container or at a Service's `spec.ports`), not from the Go types, so a built-in
//! list outside the table merges atomically; `$setElementOrder` puts the listed items first and
//! keeps the others after them in their previous order.

use serde_json::{Map, Value};

use super::KindKey;

/// How a list field merges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListShape {
    /// Replaced as a whole (`tolerations`, `args`, most CR lists).
    Atomic,
    /// A list of objects identified by these key fields (`containers` by `name`).
    Map {
        /// The fields whose values identify an item.
        keys: Vec<String>,
    },
    /// A list of scalars merged as a set (`metadata.finalizers`).
    Set,
}

impl ListShape {
    fn keyed(key: &str) -> Self {
        Self::Map {
            keys: vec![key.to_owned()],
        }
    }
}

const CONTAINER_LISTS: &[&str] = &["containers", "initContainers", "ephemeralContainers"];

/// The shape of the list at `path` (field names from the object root, list positions
/// omitted: `["spec", "template", "spec", "containers", "ports"]`) in a built-in kind.
pub(crate) fn builtin_list_shape(kind: &KindKey, path: &[&str]) -> ListShape {
    let Some((&last, parents)) = path.split_last() else {
        return ListShape::Atomic;
    };
    let parent = parents.last().copied().unwrap_or("");
    let in_container = CONTAINER_LISTS.contains(&parent);
    match last {
        _ if CONTAINER_LISTS.contains(&last) => ListShape::keyed("name"),
        "ports" if in_container => ListShape::keyed("containerPort"),
        "ports" if kind.group.is_empty() && kind.kind == "Service" && path == ["spec", "ports"] => {
            ListShape::keyed("port")
        }
        "env" if in_container => ListShape::keyed("name"),
        "volumeMounts" if in_container => ListShape::keyed("mountPath"),
        "volumeDevices" if in_container => ListShape::keyed("devicePath"),
        "resizePolicy" if in_container => ListShape::keyed("resourceName"),
        "volumes" | "imagePullSecrets" | "resourceClaims" | "schedulingGates"
            if parent == "spec" =>
        {
            ListShape::keyed("name")
        }
        "hostAliases" if parent == "spec" => ListShape::keyed("ip"),
        "topologySpreadConstraints" if parent == "spec" => ListShape::keyed("topologyKey"),
        "conditions" if parent == "status" => ListShape::keyed("type"),
        "ownerReferences" if path.len() == 2 && parent == "metadata" => ListShape::keyed("uid"),
        "finalizers" if path.len() == 2 && parent == "metadata" => ListShape::Set,
        "secrets" if kind.group.is_empty() && kind.kind == "ServiceAccount" => {
            ListShape::keyed("name")
        }
        _ => ListShape::Atomic,
    }
}

/// A strategic merge patch the server must refuse. `unprocessable` selects 422 over 400.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StrategicError {
    pub message: String,
    pub unprocessable: bool,
}

impl StrategicError {
    fn bad_request(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            unprocessable: false,
        }
    }
}

const PATCH_DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";

/// Applies a strategic merge patch to a built-in object.
pub(crate) fn strategic_merge(
    kind: &KindKey,
    current: &Value,
    patch: &Value,
) -> Result<Value, StrategicError> {
    let (Value::Object(original), Value::Object(patch)) = (current, patch) else {
        return Err(StrategicError::bad_request(
            "strategic merge patch must be a JSON object",
        ));
    };
    let mut path = Vec::new();
    match merge_map(kind, &mut path, original.clone(), patch)? {
        Some(merged) => Ok(Value::Object(merged)),
        None => Err(StrategicError::bad_request(
            "a strategic merge patch cannot delete the whole object",
        )),
    }
}

/// Merges `patch` into `original`; `None` means the map itself is deleted (`$patch: delete`).
fn merge_map(
    kind: &KindKey,
    path: &mut Vec<String>,
    mut original: Map<String, Value>,
    patch: &Map<String, Value>,
) -> Result<Option<Map<String, Value>>, StrategicError> {
    match patch.get(PATCH_DIRECTIVE) {
        None => {}
        Some(Value::String(d)) if d == "merge" => {}
        Some(Value::String(d)) if d == "delete" => return Ok(None),
        Some(Value::String(d)) if d == "replace" => {
            // The replacement still goes through the merge so nested directives are resolved.
            let without: Map<String, Value> = patch
                .iter()
                .filter(|(k, _)| k.as_str() != PATCH_DIRECTIVE)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            return merge_map(kind, path, Map::new(), &without);
        }
        Some(other) => {
            return Err(StrategicError::bad_request(format!(
                "unknown patch type: {other} in map: {}",
                Value::Object(patch.clone())
            )));
        }
    }

    let retain_keys = match patch.get(RETAIN_KEYS) {
        None => None,
        Some(Value::Array(keys)) => {
            let keys: Vec<&str> = keys.iter().filter_map(Value::as_str).collect();
            if let Some(stray) = patch
                .iter()
                .filter(|(k, v)| !k.starts_with('$') && !v.is_null())
                .map(|(k, _)| k)
                .find(|k| !keys.contains(&k.as_str()))
            {
                return Err(StrategicError {
                    message: format!(
                        "The patch contains the field {stray:?} which is not in $retainKeys {keys:?}"
                    ),
                    unprocessable: true,
                });
            }
            Some(keys)
        }
        Some(_) => {
            return Err(StrategicError::bad_request(
                "invalid patch: $retainKeys must be a list of strings",
            ));
        }
    };

    for (key, value) in patch {
        if key.starts_with('$') {
            continue;
        }
        path.push(key.clone());
        let merged = merge_field(kind, path, original.remove(key), value);
        path.pop();
        if let Some(merged) = merged? {
            original.insert(key.clone(), merged);
        }
    }

    for (key, value) in patch {
        if let Some(list_key) = key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            let Value::Array(doomed) = value else {
                return Err(StrategicError::bad_request(format!(
                    "invalid patch: {key} must be a list"
                )));
            };
            if let Some(Value::Array(items)) = original.get_mut(list_key) {
                items.retain(|item| !doomed.contains(item));
            }
        }
    }

    for (key, value) in patch {
        if let Some(list_key) = key.strip_prefix(SET_ELEMENT_ORDER) {
            let Value::Array(order) = value else {
                return Err(StrategicError::bad_request(format!(
                    "invalid patch: {key} must be a list"
                )));
            };
            path.push(list_key.to_owned());
            let shape = list_shape(kind, path);
            path.pop();
            if let Some(Value::Array(items)) = original.get_mut(list_key) {
                reorder(items, order, &shape);
            }
        }
    }

    if let Some(keys) = retain_keys {
        original.retain(|k, _| keys.contains(&k.as_str()));
    }
    Ok(Some(original))
}

/// The merged value of one field; `None` removes the field.
fn merge_field(
    kind: &KindKey,
    path: &mut Vec<String>,
    original: Option<Value>,
    patch: &Value,
) -> Result<Option<Value>, StrategicError> {
    match patch {
        Value::Null => Ok(None),
        Value::Object(patch_map) => {
            let base = match original {
                Some(Value::Object(map)) => map,
                _ => Map::new(),
            };
            Ok(merge_map(kind, path, base, patch_map)?.map(Value::Object))
        }
        Value::Array(patch_items) => {
            let base = match original {
                Some(Value::Array(items)) => items,
                _ => Vec::new(),
            };
            let shape = list_shape(kind, path);
            Ok(Some(Value::Array(merge_list(
                kind,
                path,
                base,
                patch_items,
                &shape,
            )?)))
        }
        scalar => Ok(Some(scalar.clone())),
    }
}

fn list_shape(kind: &KindKey, path: &[String]) -> ListShape {
    let names: Vec<&str> = path.iter().map(String::as_str).collect();
    builtin_list_shape(kind, &names)
}

fn merge_list(
    kind: &KindKey,
    path: &mut Vec<String>,
    original: Vec<Value>,
    patch: &[Value],
    shape: &ListShape,
) -> Result<Vec<Value>, StrategicError> {
    let replace_all = patch
        .iter()
        .any(|item| item.get(PATCH_DIRECTIVE).and_then(Value::as_str) == Some("replace"));
    let (mut result, patch_items): (Vec<Value>, Vec<&Value>) = if replace_all {
        (
            Vec::new(),
            patch
                .iter()
                .filter(|item| item.get(PATCH_DIRECTIVE).is_none())
                .collect(),
        )
    } else {
        (original, patch.iter().collect())
    };
    match shape {
        ListShape::Atomic => {
            let mut replaced = Vec::with_capacity(patch_items.len());
            for item in patch_items {
                replaced.push(resolve_new_value(kind, path, item)?);
            }
            Ok(replaced)
        }
        ListShape::Set => {
            for item in patch_items {
                if item.is_object() || item.is_array() {
                    return Err(StrategicError::bad_request(format!(
                        "invalid patch: list of primitives at {} holds {item}",
                        path.join(".")
                    )));
                }
                if !result.contains(item) {
                    result.push(item.clone());
                }
            }
            Ok(result)
        }
        ListShape::Map { keys } => {
            for item in patch_items {
                let Value::Object(item_map) = item else {
                    return Err(StrategicError::bad_request(format!(
                        "invalid patch: {} must hold objects with merge key {:?}, got {item}",
                        path.join("."),
                        keys.join(",")
                    )));
                };
                if keys.iter().any(|k| !item_map.contains_key(k)) {
                    return Err(StrategicError::bad_request(format!(
                        "map: {item} does not contain declared merge key: {}",
                        keys.join(",")
                    )));
                }
                let same_key =
                    |candidate: &Value| keys.iter().all(|k| candidate.get(k) == item_map.get(k));
                if item_map.get(PATCH_DIRECTIVE).and_then(Value::as_str) == Some("delete") {
                    result.retain(|existing| !same_key(existing));
                    continue;
                }
                match result.iter().position(same_key) {
                    Some(at) => {
                        let existing = match std::mem::take(&mut result[at]) {
                            Value::Object(map) => map,
                            _ => Map::new(),
                        };
                        match merge_map(kind, path, existing, item_map)? {
                            Some(merged) => result[at] = Value::Object(merged),
                            None => {
                                result.remove(at);
                            }
                        }
                    }
                    None => {
                        if let Some(merged) = merge_map(kind, path, Map::new(), item_map)? {
                            result.push(Value::Object(merged));
                        }
                    }
                }
            }
            Ok(result)
        }
    }
}

/// A patch value placed where nothing existed: directives inside it still apply.
fn resolve_new_value(
    kind: &KindKey,
    path: &mut Vec<String>,
    value: &Value,
) -> Result<Value, StrategicError> {
    Ok(merge_field(kind, path, None, value)?.unwrap_or(Value::Null))
}

/// `$setElementOrder`: items named in `order` come first, in that order; the rest keep their
/// relative order after them.
fn reorder(items: &mut Vec<Value>, order: &[Value], shape: &ListShape) {
    let identifies = |wanted: &Value, item: &Value| match shape {
        ListShape::Map { keys } => keys.iter().all(|k| wanted.get(k) == item.get(k)),
        _ => wanted == item,
    };
    let mut remaining = std::mem::take(items);
    for wanted in order {
        if let Some(at) = remaining.iter().position(|item| identifies(wanted, item)) {
            items.push(remaining.remove(at));
        }
    }
    items.extend(remaining);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn deployment() -> KindKey {
        KindKey::new("apps", "Deployment")
    }

    fn merged(kind: &KindKey, current: Value, patch: Value) -> Value {
        strategic_merge(kind, &current, &patch).expect("patch applies")
    }

    #[test]
    fn list_shapes_follow_upstream_merge_keys() {
        let pod = KindKey::new("", "Pod");
        let svc = KindKey::new("", "Service");
        let table: &[(&KindKey, &[&str], ListShape)] = &[
            (&pod, &["spec", "containers"], ListShape::keyed("name")),
            (&pod, &["spec", "initContainers"], ListShape::keyed("name")),
            (
                &pod,
                &["spec", "containers", "ports"],
                ListShape::keyed("containerPort"),
            ),
            (&svc, &["spec", "ports"], ListShape::keyed("port")),
            (
                &pod,
                &["spec", "containers", "env"],
                ListShape::keyed("name"),
            ),
            (
                &pod,
                &["spec", "containers", "volumeMounts"],
                ListShape::keyed("mountPath"),
            ),
            (&pod, &["spec", "volumes"], ListShape::keyed("name")),
            (&pod, &["spec", "tolerations"], ListShape::Atomic),
            (&pod, &["spec", "containers", "args"], ListShape::Atomic),
            (&pod, &["status", "conditions"], ListShape::keyed("type")),
            (
                &pod,
                &["metadata", "ownerReferences"],
                ListShape::keyed("uid"),
            ),
            (&pod, &["metadata", "finalizers"], ListShape::Set),
            (
                &deployment(),
                &["spec", "template", "spec", "containers"],
                ListShape::keyed("name"),
            ),
            (
                &deployment(),
                &["spec", "template", "spec", "imagePullSecrets"],
                ListShape::keyed("name"),
            ),
        ];
        for (kind, path, expected) in table {
            assert_eq!(&builtin_list_shape(kind, path), expected, "{path:?}");
        }
    }

    #[test]
    fn containers_merge_by_name_and_keep_unpatched_fields() {
        let current = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "image": "app:1", "ports": [{"containerPort": 80, "name": "http"}]},
            {"name": "sidecar", "image": "proxy:1"}
        ]}}}});
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "image": "app:2", "ports": [{"containerPort": 9090, "name": "metrics"}]},
            {"name": "new", "image": "new:1"}
        ]}}}});
        assert_eq!(
            merged(&deployment(), current, patch),
            json!({"spec": {"template": {"spec": {"containers": [
                {"name": "app", "image": "app:2", "ports": [
                    {"containerPort": 80, "name": "http"},
                    {"containerPort": 9090, "name": "metrics"}
                ]},
                {"name": "sidecar", "image": "proxy:1"},
                {"name": "new", "image": "new:1"}
            ]}}}})
        );
    }

    #[test]
    fn null_deletes_fields_and_atomic_lists_are_replaced() {
        let pod = KindKey::new("", "Pod");
        let current = json!({"metadata": {"labels": {"a": "1", "b": "2"}},
            "spec": {"tolerations": [{"key": "x"}, {"key": "y"}]}});
        let patch = json!({"metadata": {"labels": {"a": null, "c": "3"}},
            "spec": {"tolerations": [{"key": "z"}]}});
        assert_eq!(
            merged(&pod, current, patch),
            json!({"metadata": {"labels": {"b": "2", "c": "3"}},
                "spec": {"tolerations": [{"key": "z"}]}})
        );
    }

    #[test]
    fn patch_directives_delete_replace_and_merge() {
        let pod = KindKey::new("", "Pod");
        let current = json!({"spec": {
            "containers": [{"name": "a", "image": "a"}, {"name": "b", "image": "b"}],
            "volumes": [{"name": "v1", "emptyDir": {}}],
            "securityContext": {"runAsUser": 1, "fsGroup": 2}
        }});
        let patch = json!({"spec": {
            "containers": [{"name": "a", "$patch": "delete"}],
            "volumes": [{"$patch": "replace"}, {"name": "v2", "emptyDir": {}}],
            "securityContext": {"$patch": "replace", "runAsUser": 5}
        }});
        assert_eq!(
            merged(&pod, current, patch),
            json!({"spec": {
                "containers": [{"name": "b", "image": "b"}],
                "volumes": [{"name": "v2", "emptyDir": {}}],
                "securityContext": {"runAsUser": 5}
            }})
        );
        let delete_map = json!({"spec": {"securityContext": {"$patch": "delete"}}});
        let result = merged(
            &pod,
            json!({"spec": {"securityContext": {"runAsUser": 1}, "hostname": "h"}}),
            delete_map,
        );
        assert_eq!(result, json!({"spec": {"hostname": "h"}}));
    }

    #[test]
    fn retain_keys_drops_unlisted_fields() {
        let current = json!({"spec": {"strategy": {"type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 1}}}});
        let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}});
        assert_eq!(
            merged(&deployment(), current.clone(), patch),
            json!({"spec": {"strategy": {"type": "Recreate"}}})
        );
        let stray = json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}});
        let err = strategic_merge(&deployment(), &current, &stray).expect_err("stray key");
        assert!(err.unprocessable, "{}", err.message);
    }

    #[test]
    fn primitive_set_lists_union_and_delete_from_primitive_list() {
        let pod = KindKey::new("", "Pod");
        let current = json!({"metadata": {"finalizers": ["a", "b"]}});
        let add = json!({"metadata": {"finalizers": ["b", "c"]}});
        assert_eq!(
            merged(&pod, current.clone(), add),
            json!({"metadata": {"finalizers": ["a", "b", "c"]}})
        );
        let remove = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}});
        assert_eq!(
            merged(&pod, current, remove),
            json!({"metadata": {"finalizers": ["b"]}})
        );
    }

    #[test]
    fn set_element_order_reorders_merged_list() {
        let pod = KindKey::new("", "Pod");
        let current =
            json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}});
        let patch = json!({"spec": {
            "$setElementOrder/containers": [{"name": "c"}, {"name": "a"}],
            "containers": [{"name": "a", "image": "x"}]
        }});
        assert_eq!(
            merged(&pod, current, patch),
            json!({"spec": {"containers": [{"name": "c"}, {"name": "a", "image": "x"}, {"name": "b"}]}})
        );
    }

    #[test]
    fn service_ports_merge_by_port_and_owner_refs_by_uid() {
        let svc = KindKey::new("", "Service");
        let current = json!({
            "metadata": {"ownerReferences": [{"uid": "1", "name": "a"}]},
            "spec": {"ports": [{"port": 80, "targetPort": 8080}]}
        });
        let patch = json!({
            "metadata": {"ownerReferences": [{"uid": "2", "name": "b"}]},
            "spec": {"ports": [{"port": 80, "targetPort": 9090}, {"port": 443}]}
        });
        assert_eq!(
            merged(&svc, current, patch),
            json!({
                "metadata": {"ownerReferences": [{"uid": "1", "name": "a"}, {"uid": "2", "name": "b"}]},
                "spec": {"ports": [{"port": 80, "targetPort": 9090}, {"port": 443}]}
            })
        );
    }

    #[test]
    fn conditions_merge_by_type() {
        let current = json!({"status": {"conditions": [
            {"type": "Available", "status": "False"}, {"type": "Progressing", "status": "True"}]}});
        let patch = json!({"status": {"conditions": [{"type": "Available", "status": "True"}]}});
        assert_eq!(
            merged(&deployment(), current, patch),
            json!({"status": {"conditions": [
                {"type": "Available", "status": "True"}, {"type": "Progressing", "status": "True"}]}})
        );
    }

    #[test]
    fn malformed_strategic_patches_are_rejected() {
        let pod = KindKey::new("", "Pod");
        let current = json!({"spec": {"containers": [{"name": "a"}]}});
        let cases = [
            json!({"spec": {"containers": [{"image": "no-name"}]}}),
            json!({"spec": {"containers": ["scalar"]}}),
            json!({"spec": {"$patch": "explode"}}),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}}),
            json!({"metadata": {"finalizers": [{"a": 1}]}}),
            json!(["not", "a", "map"]),
        ];
        for patch in cases {
            let err = strategic_merge(&pod, &current, &patch).expect_err(&patch.to_string());
            assert!(!err.unprocessable, "{patch}: {}", err.message);
        }
    }

    fn map_tree() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i16>().prop_map(|n| json!(n)),
            "[a-z]{0,3}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 20, 3, |inner| {
            proptest::collection::btree_map("[a-c]", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect()))
        })
    }

    fn map_object() -> impl Strategy<Value = Value> {
        proptest::collection::btree_map("[a-d]", map_tree(), 0..4)
            .prop_map(|m| Value::Object(m.into_iter().collect()))
    }

    proptest! {
        #[test]
        fn without_lists_or_directives_strategic_merge_is_a_merge_patch(
            current in map_object(), patch in map_object()
        ) {
            let pod = KindKey::new("", "Pod");
            let mut expected = current.clone();
            json_patch::merge(&mut expected, &patch);
            prop_assert_eq!(strategic_merge(&pod, &current, &patch).expect("applies"), expected);
        }
    }

    #[test]
    fn kubectl_client_side_apply_patch_for_a_deployment() {
        let current = json!({
            "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [{
                "name": "web", "image": "nginx:1",
                "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
            }]}}}
        });
        // The shape kubectl's three-way merge sends after `image` changed and `B` was dropped.
        let patch = json!({
            "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"v\":2}"}},
            "spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "web"}],
                "containers": [{
                    "$setElementOrder/env": [{"name": "A"}],
                    "env": [{"$patch": "delete", "name": "B"}],
                    "image": "nginx:2",
                    "name": "web"
                }]
            }}}
        });
        assert_eq!(
            merged(&deployment(), current, patch),
            json!({
                "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"v\":2}"}},
                "spec": {"replicas": 2, "template": {"spec": {"containers": [{
                    "name": "web", "image": "nginx:2", "env": [{"name": "A", "value": "1"}]
                }]}}}
            })
        );
    }

    #[test]
    fn directives_inside_new_values_are_resolved() {
        let pod = KindKey::new("", "Pod");
        let patch = json!({"spec": {"containers": [{"name": "a", "env": [
            {"name": "X", "value": "1"}, {"name": "Y", "$patch": "delete"}]}]}});
        assert_eq!(
            merged(&pod, json!({}), patch),
            json!({"spec": {"containers": [{"name": "a", "env": [{"name": "X", "value": "1"}]}]}})
        );
    }
}
