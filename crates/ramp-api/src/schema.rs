//! Schema fragments the derive cannot express: free-form objects that a real API server must
//! keep verbatim (`x-kubernetes-preserve-unknown-fields`), placed exactly where upstream has them.

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};

/// An object whose content the API server keeps as it is (plugin configs, `jsonBody`, ...).
pub fn preserve_unknown_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// Any JSON value kept as it is (upstream's `x-kubernetes-preserve-unknown-fields` without a type).
pub fn preserve_unknown_value(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// A label selector the API server compares as a whole (`x-kubernetes-map-type: atomic`), as
/// upstream declares the experiment templates' selectors.
pub fn atomic_label_selector(generator: &mut SchemaGenerator) -> Schema {
    let mut schema =
        generator.subschema_for::<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>();
    schema.insert("x-kubernetes-map-type".into(), "atomic".into());
    // Upstream declares both lists atomic as well, so server-side apply replaces them whole.
    let expressions = schema
        .get_mut("properties")
        .and_then(|p| p.get_mut("matchExpressions"))
        .and_then(serde_json::Value::as_object_mut);
    if let Some(expressions) = expressions {
        expressions.insert("x-kubernetes-list-type".into(), "atomic".into());
        let values = expressions
            .get_mut("items")
            .and_then(|i| i.pointer_mut("/properties/values"))
            .and_then(serde_json::Value::as_object_mut);
        if let Some(values) = values {
            values.insert("x-kubernetes-list-type".into(), "atomic".into());
        }
    }
    schema
}

/// `Rollout.spec.selector`: atomic and immutable once set (upstream's CEL rule and message).
pub fn immutable_label_selector(generator: &mut SchemaGenerator) -> Schema {
    let mut schema = atomic_label_selector(generator);
    schema.insert(
        "x-kubernetes-validations".into(),
        serde_json::json!([{ "message": ".spec.selector is immutable", "rule": "self == oldSelf" }]),
    );
    schema
}

/// The schema of `T` for an `Option<T>` field whose "unset" is absence, never `null`: without it
/// the derive appends `null` to an `enum` of `T`, which upstream's CRDs do not allow.
pub fn absent_or<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

/// A `PodTemplateSpec` shaped like the one upstream embeds in its CRDs (controller-gen output),
/// so the API server accepts, prunes and defaults exactly what it would for Argo Rollouts:
/// - `metadata` keeps only `labels` and `annotations` (everything else is pruned);
/// - `spec.volumes` and the containers' `resources.limits`/`requests` are free-form (so e.g.
///   `cpu: 0.5` is accepted, which an int-or-string schema would reject);
/// - lists and maps carry the server-side-apply markers of the Kubernetes types
///   (`x-kubernetes-list-type`, `-list-map-keys`, `-map-type`);
/// - reference `name`s are optional with default `""`, and `ports[].protocol` defaults to `TCP`,
///   `grpc.service` to `""`, `fileKeyRef.optional` to `false`, as in upstream's schema.
pub fn embedded_pod_template(generator: &mut SchemaGenerator) -> Schema {
    let mut schema = generator.subschema_for::<k8s_openapi::api::core::v1::PodTemplateSpec>();
    if let Some(properties) = schema.get_mut("properties") {
        shape_pod_template_like_upstream(properties);
    }
    schema
}

/// A `JobSpec` (the analysis `job` provider) whose pod template is shaped like upstream's, as
/// [`embedded_pod_template`] describes.
pub fn embedded_job_spec(generator: &mut SchemaGenerator) -> Schema {
    let mut schema = generator.subschema_for::<k8s_openapi::api::batch::v1::JobSpec>();
    if let Some(properties) = schema.pointer_mut("/properties/template/properties") {
        shape_pod_template_like_upstream(properties);
    }
    if let Some(properties) = schema
        .get_mut("properties")
        .and_then(serde_json::Value::as_object_mut)
    {
        for (key, node) in properties.iter_mut().filter(|(key, _)| *key != "template") {
            mark_merge_strategy(node, key);
        }
    }
    schema
}

/// Applies [`embedded_pod_template`]'s adjustments to the `properties` of a PodTemplateSpec
/// schema.
fn shape_pod_template_like_upstream(properties: &mut serde_json::Value) {
    use serde_json::{Value, json};

    let Some(properties) = properties.as_object_mut() else {
        return;
    };
    if let Some(metadata) = properties.get_mut("metadata") {
        *metadata = json!({
            "type": "object",
            "properties": {
                "labels": { "type": "object", "additionalProperties": { "type": "string" } },
                "annotations": { "type": "object", "additionalProperties": { "type": "string" } }
            }
        });
    }
    let Some(pod) = properties
        .get_mut("spec")
        .and_then(|spec| spec.get_mut("properties"))
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    if let Some(volumes) = pod.get_mut("volumes") {
        *volumes = json!({ "x-kubernetes-preserve-unknown-fields": true });
    }
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        let Some(container) = pod
            .get_mut(list)
            .and_then(|l| l.pointer_mut("/items/properties"))
        else {
            continue;
        };
        for quantity_map in ["limits", "requests"] {
            if let Some(node) =
                container.pointer_mut(&format!("/resources/properties/{quantity_map}"))
            {
                *node = json!({ "x-kubernetes-preserve-unknown-fields": true });
            }
        }
        if let Some(protocol) = container.pointer_mut("/ports/items/properties/protocol") {
            set_default(protocol, json!("TCP"));
        }
        for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
            if let Some(service) =
                container.pointer_mut(&format!("/{probe}/properties/grpc/properties/service"))
            {
                set_default(service, json!(""));
            }
        }
        if let Some(optional) = container.pointer_mut(
            "/env/items/properties/valueFrom/properties/fileKeyRef/properties/optional",
        ) {
            set_default(optional, json!(false));
        }
    }
    if let Some(secret) = pod
        .get_mut("imagePullSecrets")
        .and_then(|list| list.get_mut("items"))
    {
        relax_reference_name(secret);
    }
    for (key, node) in pod.iter_mut() {
        relax_reference_names(node);
        mark_merge_strategy(node, key);
    }
}

fn set_default(node: &mut serde_json::Value, default: serde_json::Value) {
    if let Some(node) = node.as_object_mut() {
        node.insert("default".into(), default);
    }
}

/// Optional references (`configMapRef`, `secretKeyRef`, ...) are the objects whose properties
/// are `name` and `optional` (plus `key`): upstream makes their `name` optional with default `""`
/// where k8s-openapi marks it required.
fn relax_reference_names(node: &mut serde_json::Value) {
    let is_reference = node
        .get("properties")
        .and_then(serde_json::Value::as_object)
        .is_some_and(|props| {
            props.contains_key("name")
                && props.contains_key("optional")
                && props
                    .keys()
                    .all(|k| matches!(k.as_str(), "name" | "key" | "optional"))
        });
    if is_reference {
        relax_reference_name(node);
    }
    if let Some(object) = node.as_object_mut() {
        for child in object.values_mut() {
            relax_reference_names(child);
        }
    }
}

fn relax_reference_name(node: &mut serde_json::Value) {
    let Some(object) = node.as_object_mut() else {
        return;
    };
    if let Some(required) = object
        .get_mut("required")
        .and_then(serde_json::Value::as_array_mut)
    {
        required.retain(|r| r != "name");
        if required.is_empty() {
            object.remove("required");
        }
    }
    if let Some(name) = object.get_mut("properties").and_then(|p| p.get_mut("name")) {
        set_default(name, serde_json::json!(""));
    }
}

/// Map lists of the pod spec and their keys, by the path of property names (`[]` = list items)
/// that ends at them; every other list is atomic, as in upstream's schema.
const MAP_LISTS: &[(&str, &[&str])] = &[
    ("containers", &["name"]),
    ("initContainers", &["name"]),
    ("ephemeralContainers", &["name"]),
    ("[].env", &["name"]),
    ("[].ports", &["containerPort", "protocol"]),
    ("[].volumeDevices", &["devicePath"]),
    ("[].volumeMounts", &["mountPath"]),
    ("resources.claims", &["name"]),
    ("hostAliases", &["ip"]),
    ("imagePullSecrets", &["name"]),
    ("resourceClaims", &["name"]),
    ("schedulingGates", &["name"]),
    (
        "topologySpreadConstraints",
        &["topologyKey", "whenUnsatisfiable"],
    ),
];

/// Lists of the pod and job specs that are sets.
const SET_LISTS: &[&str] = &["exitCodes.values", "onExitCodes.values"];

/// Objects of the pod and job specs that server-side apply replaces as a whole.
const ATOMIC_OBJECTS: &[&str] = &[
    "configMapRef",
    "secretRef",
    "configMapKeyRef",
    "secretKeyRef",
    "fieldRef",
    "fileKeyRef",
    "resourceFieldRef",
    "labelSelector",
    "namespaceSelector",
    "preference",
    "nodeSelector",
    "nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution",
    "nodeSelectorTerms[]",
    "imagePullSecrets[]",
    "selector",
];

fn ends_with_path(path: &str, suffix: &str) -> bool {
    path == suffix
        || path
            .strip_suffix(suffix)
            .is_some_and(|head| head.ends_with('.') || suffix.starts_with('['))
}

fn mark_merge_strategy(node: &mut serde_json::Value, path: &str) {
    let Some(object) = node.as_object_mut() else {
        return;
    };
    if object.get("type").and_then(serde_json::Value::as_str) == Some("array") {
        let map_keys = MAP_LISTS
            .iter()
            .find(|(suffix, _)| ends_with_path(path, suffix))
            .map(|(_, keys)| *keys);
        let list_type = match map_keys {
            Some(keys) => {
                object.insert("x-kubernetes-list-map-keys".into(), serde_json::json!(keys));
                "map"
            }
            None if SET_LISTS.iter().any(|suffix| ends_with_path(path, suffix)) => "set",
            None => "atomic",
        };
        object.insert("x-kubernetes-list-type".into(), list_type.into());
    } else if ATOMIC_OBJECTS
        .iter()
        .any(|suffix| ends_with_path(path, suffix))
    {
        object.insert("x-kubernetes-map-type".into(), "atomic".into());
    }
    if let Some(items) = object.get_mut("items") {
        mark_merge_strategy(items, &format!("{path}[]"));
    }
    if let Some(properties) = object
        .get_mut("properties")
        .and_then(serde_json::Value::as_object_mut)
    {
        for (key, child) in properties.iter_mut() {
            mark_merge_strategy(child, &format!("{path}.{key}"));
        }
    }
}
