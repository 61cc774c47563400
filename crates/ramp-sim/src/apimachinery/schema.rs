//! Structural-schema semantics for custom resources, given a CRD version's `openAPIV3Schema`:
//! defaulting, pruning of unknown fields, `fieldValidation=Strict` unknown-field reports and
//! validation with the real server's error wording. Compile once per CRD version with
//! [`CompiledSchema::new`].
//!
//! Limits compared with kube-apiserver:
//! - CEL rules (`x-kubernetes-validations`) are not evaluated; structural-schema rules for the
//!   CRD itself are not checked (a non-structural schema is accepted as written).
//! - Of the string formats, only `date-time` is checked; `int32`/`int64` and the rest pass.
//! - `metadata` at the root and in `x-kubernetes-embedded-resource` objects is kept as-is,
//!   not pruned to ObjectMeta's fields; embedded objects are not required to carry
//!   `apiVersion`/`kind`.
//! - Messages for `oneOf`/`anyOf`/`not` failures are generic (the real server lists the
//!   failing branches).

use std::fmt;

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::{JsonType, Validator};
use serde_json::{Map, Value};

use super::{KindKey, ListShape, quote_value};

/// A CRD schema that could not be turned into a validator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid openAPIV3Schema for {kind}: {message}")]
pub struct SchemaError {
    /// `Rollout.argoproj.io`
    pub kind: String,
    /// What is wrong.
    pub message: String,
}

/// One failed check on one field, as a `Status.details.causes` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Field path in the real server's form: `spec.strategy.canary.steps[0].setWeight`.
    pub field: String,
    /// `FieldValueInvalid`, `FieldValueRequired`, `FieldValueNotSupported`,
    /// `FieldValueTooMany`, `FieldValueDuplicate`.
    pub reason: &'static str,
    /// The cause message without the path, e.g. `Required value`.
    pub detail: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.detail)
    }
}

/// A write rejected by schema validation: 422 `Invalid`. `Display` gives the `Status.message`
/// (`Rollout.argoproj.io "web" is invalid: spec.replicas: Invalid value: ...`); `errors`
/// give `Status.details.causes` (`field`, `reason`, `message` = `detail`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct InvalidObject {
    /// `Rollout.argoproj.io`
    pub qualified_kind: String,
    /// `metadata.name` of the object (empty when absent, e.g. `generateName` creates).
    pub name: String,
    /// Every failed check, in path order.
    pub errors: Vec<FieldError>,
}

impl fmt::Display for InvalidObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?} is invalid: ", self.qualified_kind, self.name)?;
        match self.errors.as_slice() {
            [one] => write!(f, "{one}"),
            many => {
                let all: Vec<String> = many.iter().map(ToString::to_string).collect();
                write!(f, "[{}]", all.join(", "))
            }
        }
    }
}

/// The message of a 400 for `fieldValidation=Strict` given [`CompiledSchema::unknown_fields`]:
/// `strict decoding error: unknown field "spec.bogus"`.
pub fn strict_decoding_message(unknown_fields: &[String]) -> String {
    let fields: Vec<String> = unknown_fields
        .iter()
        .map(|f| format!("unknown field {f:?}"))
        .collect();
    format!("strict decoding error: {}", fields.join(", "))
}

/// One CRD version's schema, compiled once and reused for every write.
///
/// Server order on create/update (as kube-apiserver): [`CompiledSchema::unknown_fields`] if
/// `fieldValidation` is Strict/Warn, then [`CompiledSchema::prune`], then
/// [`CompiledSchema::apply_defaults`], then [`CompiledSchema::validate`]. On reads from
/// storage a real server also defaults; calling `apply_defaults` again is idempotent.
pub struct CompiledSchema {
    kind: KindKey,
    structural: Value,
    validator: Validator,
}

impl fmt::Debug for CompiledSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompiledSchema")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl CompiledSchema {
    /// Compiles `openAPIV3Schema` of one version of `kind`.
    pub fn new(kind: KindKey, open_api_v3_schema: &Value) -> Result<Self, SchemaError> {
        let error = |message: String| SchemaError {
            kind: kind.qualified_kind(),
            message,
        };
        if !open_api_v3_schema.is_object() {
            return Err(error("the schema must be an object".to_owned()));
        }
        let translated = to_json_schema(open_api_v3_schema);
        let validator = jsonschema::draft4::options()
            .should_validate_formats(true)
            .build(&translated)
            .map_err(|e| error(e.to_string()))?;
        Ok(Self {
            kind,
            structural: open_api_v3_schema.clone(),
            validator,
        })
    }

    /// Compiles the schema of `version` from a whole `CustomResourceDefinition` object.
    pub fn from_crd(crd: &Value, version: &str) -> Result<Self, SchemaError> {
        let group = crd
            .pointer("/spec/group")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let kind_name = crd
            .pointer("/spec/names/kind")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let kind = KindKey::new(group, kind_name);
        let schema = crd
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .and_then(|versions| {
                versions
                    .iter()
                    .find(|v| v.get("name").and_then(Value::as_str) == Some(version))
            })
            .and_then(|v| v.pointer("/schema/openAPIV3Schema"))
            .ok_or_else(|| SchemaError {
                kind: kind.qualified_kind(),
                message: format!("version {version:?} has no schema.openAPIV3Schema"),
            })?;
        Self::new(kind, schema)
    }

    /// The kind this schema describes.
    pub fn kind(&self) -> &KindKey {
        &self.kind
    }

    /// The untranslated `openAPIV3Schema`.
    pub fn open_api_v3_schema(&self) -> &Value {
        &self.structural
    }

    /// Applies `default` values recursively (a defaulted object is itself defaulted), and
    /// drops `null` fields that are not `nullable` and have no default (a real server prunes
    /// those before defaulting; with a default, the default replaces the null).
    pub fn apply_defaults(&self, object: &mut Value) {
        default_node(&self.structural, object);
    }

    /// Removes fields the schema does not know and returns their paths (sorted), as a real
    /// server does on every write. `apiVersion`, `kind` and `metadata` are kept at the root
    /// and in `x-kubernetes-embedded-resource` objects.
    pub fn prune(&self, object: &mut Value) -> Vec<String> {
        let mut pruned = Vec::new();
        prune_node(&self.structural, object, "", true, &mut pruned);
        pruned.sort();
        pruned
    }

    /// The fields [`CompiledSchema::prune`] would remove, without changing the object: what
    /// `fieldValidation=Strict` rejects (see [`strict_decoding_message`]) and `Warn` reports.
    pub fn unknown_fields(&self, object: &Value) -> Vec<String> {
        let mut copy = object.clone();
        self.prune(&mut copy)
    }

    /// Every schema violation of `object`, in the real server's wording.
    pub fn field_errors(&self, object: &Value) -> Vec<FieldError> {
        let mut errors: Vec<FieldError> = self
            .validator
            .iter_errors(object)
            .map(|e| field_error(object, e.instance_path().as_str(), e.kind(), e.instance()))
            .collect();
        errors.sort_by(|a, b| a.field.cmp(&b.field).then(a.detail.cmp(&b.detail)));
        errors.dedup();
        errors
    }

    /// Validates `object`; the error is the 422 a real server returns.
    pub fn validate(&self, object: &Value) -> Result<(), InvalidObject> {
        let errors = self.field_errors(object);
        if errors.is_empty() {
            return Ok(());
        }
        Err(InvalidObject {
            qualified_kind: self.kind.qualified_kind(),
            name: object
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            errors,
        })
    }

    /// The schema node of the field at `path` (field names from the root, list positions
    /// omitted), descending through `items` of lists and `additionalProperties` of maps.
    pub fn node_at(&self, path: &[&str]) -> Option<&Value> {
        path.iter().try_fold(&self.structural, |node, name| {
            let node = if is_list_schema(node) {
                node.get("items")?
            } else {
                node
            };
            node.get("properties")
                .and_then(|p| p.get(*name))
                .or_else(|| node.get("additionalProperties").filter(|a| a.is_object()))
        })
    }

    /// How the list at `path` merges in server-side apply: `x-kubernetes-list-type: map`
    /// with `x-kubernetes-list-map-keys`, `set`, or atomic (the default for CRDs).
    pub fn list_shape(&self, path: &[&str]) -> ListShape {
        let Some(node) = self.node_at(path) else {
            return ListShape::Atomic;
        };
        match node.get("x-kubernetes-list-type").and_then(Value::as_str) {
            Some("map") => {
                let keys: Vec<String> = node
                    .get("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array)
                    .map(|keys| {
                        keys.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default();
                if keys.is_empty() {
                    ListShape::Atomic
                } else {
                    ListShape::Map { keys }
                }
            }
            Some("set") => ListShape::Set,
            _ => ListShape::Atomic,
        }
    }

    /// Whether the map at `path` is owned as a whole by server-side apply
    /// (`x-kubernetes-map-type: atomic`).
    pub fn map_is_atomic(&self, path: &[&str]) -> bool {
        self.node_at(path)
            .and_then(|n| n.get("x-kubernetes-map-type"))
            .and_then(Value::as_str)
            == Some("atomic")
    }
}

fn is_list_schema(node: &Value) -> bool {
    node.get("type").and_then(Value::as_str) == Some("array") || node.get("items").is_some()
}

fn flag(node: &Value, name: &str) -> bool {
    node.get(name).and_then(Value::as_bool) == Some(true)
}

/// Rewrites the Kubernetes dialect of OpenAPI v3 into a plain draft-4 JSON schema with the
/// same verdicts: `nullable` admits `null`, `x-kubernetes-int-or-string` admits integers and
/// strings, formats a real server does not check are dropped, and vendor extensions and
/// descriptions (dead weight for validation) are removed.
fn to_json_schema(node: &Value) -> Value {
    let Value::Object(source) = node else {
        return node.clone();
    };
    let mut out = Map::new();
    for (key, value) in source {
        let translated = match key.as_str() {
            k if k.starts_with("x-kubernetes-") => continue,
            "nullable" | "description" | "example" | "externalDocs" | "default" => continue,
            "format" if value.as_str() != Some("date-time") => continue,
            "properties" | "patternProperties" | "definitions" => match value {
                Value::Object(children) => Value::Object(
                    children
                        .iter()
                        .map(|(name, child)| (name.clone(), to_json_schema(child)))
                        .collect(),
                ),
                other => other.clone(),
            },
            "items" | "additionalProperties" | "not" | "additionalItems" => to_json_schema(value),
            "allOf" | "anyOf" | "oneOf" => match value {
                Value::Array(branches) => {
                    Value::Array(branches.iter().map(to_json_schema).collect())
                }
                other => other.clone(),
            },
            _ => value.clone(),
        };
        out.insert(key.clone(), translated);
    }
    if flag(node, "x-kubernetes-int-or-string") {
        // The anyOf a CRD generator emits next to the flag only restates it.
        out.remove("anyOf");
        out.insert("type".to_owned(), serde_json::json!(["integer", "string"]));
    }
    if flag(node, "nullable") {
        match out.get_mut("type") {
            Some(Value::String(single)) => {
                let single = std::mem::take(single);
                out.insert("type".to_owned(), serde_json::json!([single, "null"]));
            }
            Some(Value::Array(types)) => types.push(Value::from("null")),
            _ => {}
        }
        if let Some(Value::Array(options)) = out.get_mut("enum")
            && !options.contains(&Value::Null)
        {
            options.push(Value::Null);
        }
    }
    Value::Object(out)
}

fn default_node(schema: &Value, value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::Object(properties)) = schema.get("properties") {
                for (name, property) in properties {
                    let default = property.get("default");
                    match map.get(name) {
                        None => {
                            if let Some(default) = default {
                                map.insert(name.clone(), default.clone());
                            }
                        }
                        Some(Value::Null) if !flag(property, "nullable") => match default {
                            Some(default) => {
                                map.insert(name.clone(), default.clone());
                            }
                            None => {
                                map.remove(name);
                            }
                        },
                        Some(_) => {}
                    }
                    if let Some(child) = map.get_mut(name) {
                        default_node(property, child);
                    }
                }
            } else if let Some(additional) =
                schema.get("additionalProperties").filter(|a| a.is_object())
            {
                for child in map.values_mut() {
                    default_node(additional, child);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    default_node(item_schema, item);
                }
            }
        }
        _ => {}
    }
}

const EMBEDDED_FIELDS: &[&str] = &["apiVersion", "kind", "metadata"];

fn join_field(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}.{name}")
    }
}

fn prune_node(
    schema: &Value,
    value: &mut Value,
    path: &str,
    is_root: bool,
    pruned: &mut Vec<String>,
) {
    match value {
        Value::Object(map) => {
            let preserve = flag(schema, "x-kubernetes-preserve-unknown-fields");
            let embedded = is_root || flag(schema, "x-kubernetes-embedded-resource");
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            let declares_object = properties.is_some()
                || additional.is_some()
                || schema.get("type").and_then(Value::as_str) == Some("object");
            if !declares_object && !preserve {
                // A scalar schema holding an object: validation reports the type mismatch.
                return;
            }
            let mut doomed = Vec::new();
            for (name, child) in map.iter_mut() {
                let child_path = join_field(path, name);
                if embedded && EMBEDDED_FIELDS.contains(&name.as_str()) {
                    // Kept as-is: ObjectMeta is the server's business, not the schema's.
                } else if let Some(property) = properties.and_then(|p| p.get(name)) {
                    prune_node(property, child, &child_path, false, pruned);
                } else if let Some(additional_schema) = additional.filter(|a| a.is_object()) {
                    prune_node(additional_schema, child, &child_path, false, pruned);
                } else if preserve || additional.and_then(Value::as_bool) == Some(true) {
                    // Unknown fields are preserved here.
                } else {
                    doomed.push(name.clone());
                    pruned.push(child_path);
                }
            }
            for name in doomed {
                map.remove(&name);
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    prune_node(item_schema, item, &format!("{path}[{i}]"), false, pruned);
                }
            }
        }
        _ => {}
    }
}

/// Turns a JSON pointer into the real server's field path, using the instance to tell list
/// positions (`[0]`) from map keys that happen to be numeric.
fn field_path(instance: &Value, pointer: &str) -> String {
    let mut path = String::new();
    let mut node = Some(instance);
    for raw in pointer.split('/').skip(1) {
        let segment = raw.replace("~1", "/").replace("~0", "~");
        match node {
            Some(Value::Array(items)) => {
                path.push_str(&format!("[{segment}]"));
                node = segment.parse::<usize>().ok().and_then(|i| items.get(i));
            }
            Some(Value::Object(map)) => {
                path = join_field(&path, &segment);
                node = map.get(&segment);
            }
            _ => {
                path = join_field(&path, &segment);
                node = None;
            }
        }
    }
    path
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// How a value appears after "Invalid value:": scalars as themselves, containers by type.
fn shown_value(value: &Value) -> String {
    match value {
        Value::Object(_) | Value::Array(_) => format!("{:?}", type_name(value)),
        other => quote_value(other),
    }
}

fn expected_types(kind: &TypeKind) -> String {
    let names: Vec<&str> = match kind {
        TypeKind::Single(t) => vec![t.as_str()],
        TypeKind::Multiple(set) => set
            .iter()
            .filter(|t| *t != JsonType::Null)
            .map(JsonType::as_str)
            .collect(),
    };
    names.join(",")
}

fn field_error(
    object: &Value,
    pointer: &str,
    kind: &ValidationErrorKind,
    instance: &Value,
) -> FieldError {
    let field = field_path(object, pointer);
    let invalid = |detail: String| FieldError {
        field: field.clone(),
        reason: "FieldValueInvalid",
        detail: format!("Invalid value: {}: {detail}", shown_value(instance)),
    };
    let in_body = if field.is_empty() {
        "body".to_owned()
    } else {
        format!("{field} in body")
    };
    match kind {
        ValidationErrorKind::Type { kind } => {
            let actual = type_name(instance);
            FieldError {
                field: field.clone(),
                reason: "FieldValueInvalid",
                detail: format!(
                    "Invalid value: {actual:?}: {in_body} must be of type {}: {actual:?}",
                    expected_types(kind)
                ),
            }
        }
        ValidationErrorKind::Required { property } => FieldError {
            field: join_field(&field, property.as_str().unwrap_or_default()),
            reason: "FieldValueRequired",
            detail: "Required value".to_owned(),
        },
        ValidationErrorKind::Enum { options } => {
            let supported: Vec<String> = options
                .as_array()
                .map(|o| o.iter().map(quote_value).collect())
                .unwrap_or_default();
            FieldError {
                field: field.clone(),
                reason: "FieldValueNotSupported",
                detail: format!(
                    "Unsupported value: {}: supported values: {}",
                    shown_value(instance),
                    supported.join(", ")
                ),
            }
        }
        ValidationErrorKind::Minimum { limit } => invalid(format!(
            "{in_body} should be greater than or equal to {limit}"
        )),
        ValidationErrorKind::ExclusiveMinimum { limit } => {
            invalid(format!("{in_body} should be greater than {limit}"))
        }
        ValidationErrorKind::Maximum { limit } => {
            invalid(format!("{in_body} should be less than or equal to {limit}"))
        }
        ValidationErrorKind::ExclusiveMaximum { limit } => {
            invalid(format!("{in_body} should be less than {limit}"))
        }
        ValidationErrorKind::MinLength { limit } => {
            invalid(format!("{in_body} should be at least {limit} chars long"))
        }
        ValidationErrorKind::MaxLength { limit } => {
            invalid(format!("{in_body} should be at most {limit} chars long"))
        }
        ValidationErrorKind::Pattern { pattern } => {
            invalid(format!("{in_body} should match '{pattern}'"))
        }
        ValidationErrorKind::Format { format } => invalid(format!(
            "{in_body} must be of type {format}: {}",
            shown_value(instance)
        )),
        ValidationErrorKind::MinItems { limit } => FieldError {
            field: field.clone(),
            reason: "FieldValueInvalid",
            detail: format!(
                "Invalid value: {}: {in_body} should have at least {limit} items",
                instance.as_array().map_or(0, Vec::len)
            ),
        },
        ValidationErrorKind::MaxItems { limit } => FieldError {
            field: field.clone(),
            reason: "FieldValueTooMany",
            detail: format!(
                "Too many: {}: must have at most {limit} items",
                instance.as_array().map_or(0, Vec::len)
            ),
        },
        ValidationErrorKind::MinProperties { limit } => {
            invalid(format!("{in_body} should have at least {limit} properties"))
        }
        ValidationErrorKind::MaxProperties { limit } => {
            invalid(format!("{in_body} should have at most {limit} properties"))
        }
        ValidationErrorKind::UniqueItems => FieldError {
            field: field.clone(),
            reason: "FieldValueDuplicate",
            detail: format!("Duplicate value: {}", shown_value(instance)),
        },
        ValidationErrorKind::MultipleOf { multiple_of } => {
            invalid(format!("{in_body} should be a multiple of {multiple_of}"))
        }
        ValidationErrorKind::OneOfNotValid { .. }
        | ValidationErrorKind::OneOfMultipleValid { .. } => invalid(format!(
            "{in_body} must validate one and only one schema (oneOf)"
        )),
        ValidationErrorKind::AnyOf { .. } => invalid(format!(
            "{in_body} must validate at least one schema (anyOf)"
        )),
        ValidationErrorKind::Not { .. } => {
            invalid(format!("{in_body} must not validate the schema (not)"))
        }
        other => invalid(format!("{in_body} fails the {} check", other.keyword())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compat::{self, ArgoRollouts};
    use serde_json::json;
    use std::path::{Path, PathBuf};

    fn crd(upstream: &ArgoRollouts, file: &str) -> CompiledSchema {
        let text = std::fs::read_to_string(upstream.crd(file)).expect("read CRD");
        let crd: Value = serde_saphyr::from_str(&text).expect("parse CRD");
        CompiledSchema::from_crd(&crd, "v1alpha1").expect("compile CRD schema")
    }

    /// Upstream's Rollout schema, or `None` when the corpus is absent (the test is skipped).
    fn rollout_schema() -> Option<CompiledSchema> {
        compat::argo_rollouts().map(|upstream| crd(&upstream, "rollout-crd.yaml"))
    }

    fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read examples dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                yaml_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                out.push(path);
            }
        }
    }

    fn rollout(spec: Value) -> Value {
        json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "web", "namespace": "default"}, "spec": spec})
    }

    fn valid_spec() -> Value {
        json!({
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.25",
                    "ports": [{"containerPort": 80}],
                    "resources": {"requests": {"cpu": "10m", "memory": 32}}}]}
            },
            "strategy": {"canary": {"maxSurge": "25%", "maxUnavailable": 0,
                "steps": [{"setWeight": 20}, {"pause": {"duration": "1m"}}, {"pause": {}}]}}
        })
    }

    #[test]
    fn every_upstream_example_is_valid_and_loses_nothing_to_pruning() {
        let Some(upstream) = compat::argo_rollouts() else {
            return;
        };
        let schemas: Vec<CompiledSchema> = [
            "rollout-crd.yaml",
            "analysis-template-crd.yaml",
            "cluster-analysis-template-crd.yaml",
            "analysis-run-crd.yaml",
            "experiment-crd.yaml",
        ]
        .iter()
        .map(|f| crd(&upstream, f))
        .collect();
        let mut files = Vec::new();
        yaml_files(&upstream.examples(), &mut files);
        let mut checked = 0;
        let mut unparsable = Vec::new();
        for file in files {
            let text = std::fs::read_to_string(&file).expect("read example");
            let docs = match serde_saphyr::from_multiple::<Value>(&text) {
                Ok(docs) => docs,
                Err(e) => {
                    unparsable.push(format!("{}: {e}", file.display()));
                    continue;
                }
            };
            for doc in docs {
                let Some(kind) = KindKey::of_object(&doc) else {
                    continue;
                };
                let Some(schema) = schemas.iter().find(|s| s.kind() == &kind) else {
                    continue;
                };
                let unknown = schema.unknown_fields(&doc);
                assert!(
                    unknown.is_empty(),
                    "{}: unknown {unknown:?}",
                    file.display()
                );
                let mut object = doc.clone();
                assert!(schema.prune(&mut object).is_empty());
                schema.apply_defaults(&mut object);
                if let Err(e) = schema.validate(&object) {
                    panic!("{}: {e}", file.display());
                }
                checked += 1;
            }
        }
        assert!(checked >= 20, "only {checked} example objects were checked");
        // This upstream example writes `{{args.linkerd-enabled}}` unquoted, which YAML reads as
        // a flow mapping with a mapping key: there is no JSON form to send to a server.
        assert_eq!(unparsable.len(), 1, "{unparsable:#?}");
        assert!(
            unparsable[0].contains("traffic-management/rollout-linkerd.yaml"),
            "{unparsable:#?}"
        );
    }

    #[test]
    fn hand_made_valid_rollout_passes() {
        let Some(schema) = rollout_schema() else {
            return;
        };
        assert_eq!(schema.validate(&rollout(valid_spec())), Ok(()));
    }

    #[test]
    fn type_errors_read_like_the_real_server() {
        let Some(schema) = rollout_schema() else {
            return;
        };
        let mut spec = valid_spec();
        spec["replicas"] = json!("string");
        let err = schema
            .validate(&rollout(spec))
            .expect_err("replicas must be an integer");
        assert_eq!(
            err.to_string(),
            "Rollout.argoproj.io \"web\" is invalid: spec.replicas: Invalid value: \"string\": \
             spec.replicas in body must be of type integer: \"string\""
        );
        assert_eq!(err.errors[0].field, "spec.replicas");
        assert_eq!(err.errors[0].reason, "FieldValueInvalid");
    }

    #[test]
    fn nested_list_paths_and_multiple_errors_are_reported() {
        let Some(schema) = rollout_schema() else {
            return;
        };
        let mut spec = valid_spec();
        spec["strategy"]["canary"]["steps"][0]["setWeight"] = json!(true);
        spec["template"]["spec"]["containers"][0]
            .as_object_mut()
            .expect("container")
            .remove("name");
        let err = schema.validate(&rollout(spec)).expect_err("two errors");
        let fields: Vec<&str> = err.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.strategy.canary.steps[0].setWeight",
                "spec.template.spec.containers[0].name"
            ]
        );
        assert_eq!(err.errors[1].detail, "Required value");
        assert!(
            err.to_string().contains("is invalid: [spec.strategy"),
            "{err}"
        );
    }

    #[test]
    fn int_or_string_accepts_both_and_rejects_others() {
        let Some(schema) = rollout_schema() else {
            return;
        };
        for ok in [json!(1), json!("25%")] {
            let mut spec = valid_spec();
            spec["strategy"]["canary"]["maxSurge"] = ok.clone();
            assert_eq!(schema.validate(&rollout(spec)), Ok(()), "{ok}");
        }
        let mut spec = valid_spec();
        spec["strategy"]["canary"]["maxSurge"] = json!(true);
        let err = schema
            .validate(&rollout(spec))
            .expect_err("bool is neither");
        assert_eq!(
            err.errors[0].detail,
            "Invalid value: \"boolean\": spec.strategy.canary.maxSurge in body must be of type \
             integer,string: \"boolean\""
        );
    }

    fn small_schema() -> CompiledSchema {
        let schema = json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["mode"],
                    "properties": {
                        "mode": {"type": "string", "enum": ["a", "b"], "default": "a"},
                        "count": {"type": "integer", "minimum": 0, "maximum": 10, "default": 1, "format": "int32"},
                        "note": {"type": "string", "nullable": true},
                        "name": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 5},
                        "since": {"type": "string", "format": "date-time"},
                        "tags": {"type": "array", "maxItems": 2, "items": {"type": "string"}},
                        "limits": {"type": "object", "additionalProperties": {
                            "type": "object", "properties": {"max": {"type": "integer", "default": 3}}}},
                        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                            "properties": {"known": {"type": "object", "properties": {"a": {"type": "string"}}}}},
                        "embedded": {"type": "object", "x-kubernetes-embedded-resource": true,
                            "properties": {"spec": {"type": "object", "properties": {"x": {"type": "string"}}}}},
                        "nested": {"type": "object", "default": {},
                            "properties": {"inner": {"type": "string", "default": "deep"}}},
                        "steps": {"type": "array", "items": {"type": "object",
                            "properties": {"weight": {"type": "integer", "default": 5}}}}
                    }
                }
            }
        });
        CompiledSchema::new(KindKey::new("example.com", "Widget"), &schema).expect("compiles")
    }

    fn widget(spec: Value) -> Value {
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": spec})
    }

    #[test]
    fn validation_keywords_map_to_real_server_messages() {
        let schema = small_schema();
        let table: &[(Value, &str)] = &[
            (
                json!({"mode": "c"}),
                "spec.mode: Unsupported value: \"c\": supported values: \"a\", \"b\"",
            ),
            (
                json!({"mode": "a", "count": -1}),
                "spec.count: Invalid value: -1: spec.count in body should be greater than or equal to 0",
            ),
            (
                json!({"mode": "a", "count": 11}),
                "spec.count: Invalid value: 11: spec.count in body should be less than or equal to 10",
            ),
            (
                json!({"mode": "a", "name": "ABC"}),
                "spec.name: Invalid value: \"ABC\": spec.name in body should match '^[a-z]+$'",
            ),
            (
                json!({"mode": "a", "name": "abcdef"}),
                "spec.name: Invalid value: \"abcdef\": spec.name in body should be at most 5 chars long",
            ),
            (
                json!({"mode": "a", "tags": ["a", "b", "c"]}),
                "spec.tags: Too many: 3: must have at most 2 items",
            ),
            (
                json!({"mode": "a", "since": "yesterday"}),
                "spec.since: Invalid value: \"yesterday\": spec.since in body must be of type date-time: \"yesterday\"",
            ),
            (json!({}), "spec.mode: Required value"),
            (
                json!({"mode": "a", "limits": {"x": {"max": "many"}}}),
                "spec.limits.x.max: Invalid value: \"string\": spec.limits.x.max in body must be of type integer: \"string\"",
            ),
        ];
        for (spec, expected) in table {
            let errors = schema.field_errors(&widget(spec.clone()));
            let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
            assert_eq!(messages, [expected.to_string()], "{spec}");
        }
    }

    #[test]
    fn nullable_admits_null_and_formats_are_tolerated() {
        let schema = small_schema();
        let ok =
            widget(json!({"mode": "b", "note": null, "count": 3, "since": "2024-01-02T03:04:05Z"}));
        assert_eq!(schema.validate(&ok), Ok(()));
    }

    #[test]
    fn defaults_apply_recursively_and_replace_non_nullable_nulls() {
        let schema = small_schema();
        let mut object = widget(json!({"count": null, "note": null, "name": null,
            "limits": {"a": {}}, "steps": [{}, {"weight": 1}]}));
        schema.apply_defaults(&mut object);
        assert_eq!(
            object["spec"],
            json!({"mode": "a", "count": 1, "note": null, "nested": {"inner": "deep"},
                "limits": {"a": {"max": 3}}, "steps": [{"weight": 5}, {"weight": 1}]})
        );
        let again = object.clone();
        schema.apply_defaults(&mut object);
        assert_eq!(object, again, "defaulting is idempotent");
    }

    #[test]
    fn pruning_removes_unknown_fields_and_respects_extensions() {
        let schema = small_schema();
        let mut object = widget(json!({
            "mode": "a", "bogus": 1,
            "free": {"anything": {"goes": true}, "known": {"a": "x", "b": "pruned"}},
            "embedded": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                "spec": {"x": "y", "z": "pruned"}, "status": {}},
            "steps": [{"weight": 1, "extra": true}]
        }));
        object["status"] = json!({"anything": 1});
        let strict = schema.unknown_fields(&object);
        let pruned = schema.prune(&mut object);
        assert_eq!(strict, pruned);
        assert_eq!(
            pruned,
            [
                "spec.bogus",
                "spec.embedded.spec.z",
                "spec.embedded.status",
                "spec.free.known.b",
                "spec.steps[0].extra",
                "status"
            ]
        );
        assert_eq!(object["spec"]["free"]["anything"], json!({"goes": true}));
        assert_eq!(object["spec"]["embedded"]["metadata"], json!({"name": "p"}));
        assert_eq!(object["metadata"], json!({"name": "w"}));
        assert_eq!(
            strict_decoding_message(&strict[..2]),
            "strict decoding error: unknown field \"spec.bogus\", unknown field \"spec.embedded.spec.z\""
        );
    }

    #[test]
    fn rollout_unknown_fields_are_found_in_place() {
        let Some(schema) = rollout_schema() else {
            return;
        };
        let mut spec = valid_spec();
        spec["bogus"] = json!(true);
        spec["strategy"]["canary"]["steps"][1]["pause"]["forever"] = json!(1);
        assert_eq!(
            schema.unknown_fields(&rollout(spec)),
            ["spec.bogus", "spec.strategy.canary.steps[1].pause.forever"]
        );
    }

    #[test]
    fn list_shapes_come_from_schema_extensions() {
        let Some(schema) = rollout_schema() else {
            return;
        };
        assert_eq!(
            schema.list_shape(&["spec", "template", "spec", "containers"]),
            ListShape::Map {
                keys: vec!["name".to_owned()]
            }
        );
        assert_eq!(
            schema.list_shape(&["spec", "strategy", "canary", "steps"]),
            ListShape::Atomic
        );
        assert!(schema.map_is_atomic(&["spec", "selector"]));
        assert!(!schema.map_is_atomic(&["spec", "strategy"]));
    }

    #[test]
    fn compiled_schemas_can_be_shared_across_tasks() {
        fn shareable<T: Send + Sync + 'static>() {}
        shareable::<CompiledSchema>();
        shareable::<InvalidObject>();
    }

    #[test]
    fn broken_schemas_and_crds_are_reported() {
        let kind = KindKey::new("example.com", "Widget");
        assert!(CompiledSchema::new(kind.clone(), &json!("nope")).is_err());
        assert!(CompiledSchema::new(kind, &json!({"type": "object", "pattern": "("})).is_err());
        let err = CompiledSchema::from_crd(
            &json!({"spec": {"group": "g", "names": {"kind": "K"}}}),
            "v1",
        )
        .expect_err("no versions");
        assert!(err.to_string().contains("K.g"), "{err}");
    }
}
