//! Field paths and field sets: the FieldsV1 `f:`/`k:`/`v:` vocabulary of managed fields, which
//! paths an object sets at the ownership granularity of its kind, and reading or removing the
//! value at a path. Server-side apply (`super::apply`) builds on it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Map, Value, json};

use super::schema::CompiledSchema;
use super::strategic::builtin_list_shape;
use super::{KindKey, ListShape};

/// Where list and map merge semantics come from.
#[derive(Debug, Clone, Copy)]
pub enum Structure<'a> {
    /// A built-in kind: strategic-merge keys (see the limits in `super::apply`).
    BuiltIn(&'a KindKey),
    /// A custom resource: its CRD schema's list and map extensions.
    Schema(&'a CompiledSchema),
    /// No knowledge: every list atomic, every map granular.
    Unknown,
}

impl Structure<'_> {
    pub(super) fn list_shape(&self, names: &[&str]) -> ListShape {
        match self {
            Structure::BuiltIn(kind) => builtin_list_shape(kind, names),
            Structure::Schema(schema) => schema.list_shape(names),
            Structure::Unknown => ListShape::Atomic,
        }
    }

    pub(super) fn map_is_atomic(&self, names: &[&str]) -> bool {
        match self {
            Structure::BuiltIn(_) => {
                matches!(names.last(), Some(&"selector") | Some(&"nodeSelector"))
                    && names.len() >= 2
                    && names[names.len() - 2] == "spec"
            }
            Structure::Schema(schema) => schema.map_is_atomic(names),
            Structure::Unknown => false,
        }
    }
}

/// One step of a field path, as in FieldsV1.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathElement {
    /// `f:name`, a field of a map.
    Field(String),
    /// `k:{"name":"web"}`, a list item identified by its key fields (canonical JSON with the
    /// key fields sorted).
    Key(String),
    /// `v:"finalizer"`, a member of a set list (canonical JSON of the value).
    Value(String),
    /// `i:3`, a list position (only read from stored entries; never produced).
    Index(usize),
}

impl PathElement {
    fn encode(&self) -> String {
        match self {
            Self::Field(name) => format!("f:{name}"),
            Self::Key(json) => format!("k:{json}"),
            Self::Value(json) => format!("v:{json}"),
            Self::Index(i) => format!("i:{i}"),
        }
    }

    fn decode(raw: &str) -> Option<Self> {
        let (prefix, rest) = raw.split_once(':')?;
        match prefix {
            "f" => Some(Self::Field(rest.to_owned())),
            "k" => {
                let parsed: Value = serde_json::from_str(rest).ok()?;
                Some(Self::Key(canonical_json(&parsed)))
            }
            "v" => {
                let parsed: Value = serde_json::from_str(rest).ok()?;
                Some(Self::Value(canonical_json(&parsed)))
            }
            "i" => rest.parse().ok().map(Self::Index),
            _ => None,
        }
    }

    /// The key fields of a `Key` element.
    fn key_fields(&self) -> Option<Map<String, Value>> {
        match self {
            Self::Key(json) => serde_json::from_str(json).ok(),
            _ => None,
        }
    }
}

/// JSON with object keys sorted at every level, so equal values encode equally.
pub(super) fn canonical_json(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let sorted: BTreeMap<&String, String> =
                map.iter().map(|(k, v)| (k, canonical_json(v))).collect();
            let parts: Vec<String> = sorted
                .iter()
                .map(|(k, v)| format!("{}:{v}", Value::String((*k).clone())))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(canonical_json).collect();
            format!("[{}]", parts.join(","))
        }
        other => other.to_string(),
    }
}

/// A path to an owned field, list item or set member.
pub type FieldPath = Vec<PathElement>;

/// Renders a path the way a real server lists conflicting fields:
/// `.spec.template.spec.containers[name="web"].image`.
pub fn display_path(path: &[PathElement]) -> String {
    let mut out = String::new();
    for element in path {
        match element {
            PathElement::Field(name) => {
                out.push('.');
                out.push_str(name);
            }
            PathElement::Key(_) => {
                let fields = element.key_fields().unwrap_or_default();
                let parts: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={}", v)).collect();
                out.push_str(&format!("[{}]", parts.join(",")));
            }
            PathElement::Value(json) => out.push_str(&format!("[={json}]")),
            PathElement::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// A set of owned paths, convertible to and from FieldsV1 JSON.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSet {
    pub(super) paths: BTreeSet<FieldPath>,
}

#[derive(Default)]
struct FieldTree {
    owned: bool,
    children: BTreeMap<String, FieldTree>,
}

impl FieldTree {
    fn to_json(&self) -> Value {
        let mut map = Map::new();
        if self.owned && !self.children.is_empty() {
            map.insert(".".to_owned(), json!({}));
        }
        for (key, child) in &self.children {
            map.insert(key.clone(), child.to_json());
        }
        Value::Object(map)
    }
}

impl FieldSet {
    /// Parses a FieldsV1 object (`{"f:spec": {"f:replicas": {}}}`). Unknown prefixes make the
    /// whole set invalid, as a real server rejects such managedFields.
    pub fn from_fields_v1(fields: &Value) -> Option<Self> {
        let mut set = Self::default();
        let mut path = Vec::new();
        parse_fields(fields, &mut path, &mut set.paths)?;
        Some(set)
    }

    /// Renders the set as FieldsV1.
    pub fn to_fields_v1(&self) -> Value {
        let mut root = FieldTree::default();
        for path in &self.paths {
            let mut node = &mut root;
            for element in path {
                node = node.children.entry(element.encode()).or_default();
            }
            node.owned = true;
        }
        root.to_json()
    }

    /// Whether `path` is in the set.
    pub fn contains(&self, path: &[PathElement]) -> bool {
        self.paths.contains(path)
    }

    /// Whether the set holds `path` or anything below it.
    pub(super) fn covers_or_has_descendant(&self, path: &[PathElement]) -> bool {
        self.paths
            .range(path.to_vec()..)
            .next()
            .is_some_and(|p| p.starts_with(path))
    }

    /// The owned paths, sorted.
    pub fn paths(&self) -> impl Iterator<Item = &FieldPath> {
        self.paths.iter()
    }

    /// True when nothing is owned.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }
}

fn parse_fields(node: &Value, path: &mut FieldPath, out: &mut BTreeSet<FieldPath>) -> Option<()> {
    let map = node.as_object()?;
    if map.is_empty() && !path.is_empty() {
        out.insert(path.clone());
        return Some(());
    }
    for (key, child) in map {
        if key == "." {
            out.insert(path.clone());
            continue;
        }
        path.push(PathElement::decode(key)?);
        let parsed = parse_fields(child, path, out);
        path.pop();
        parsed?;
    }
    Some(())
}

/// Server-managed metadata no manager owns.
const UNOWNED_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "selfLink",
    "managedFields",
];

fn is_unowned(path: &[PathElement]) -> bool {
    match path {
        [PathElement::Field(f)] => f == "apiVersion" || f == "kind",
        [PathElement::Field(m), PathElement::Field(f)] => {
            m == "metadata" && UNOWNED_METADATA.contains(&f.as_str())
        }
        _ => false,
    }
}

/// The fields an object sets, in the ownership granularity of `structure`: leaves, atomic
/// lists and maps, list items (`k:`/`v:`) and the leaves inside them.
pub fn fields_of(structure: Structure<'_>, object: &Value) -> FieldSet {
    let mut set = FieldSet::default();
    let mut path = Vec::new();
    let mut names = Vec::new();
    collect(structure, object, &mut path, &mut names, &mut set.paths);
    set
}

fn collect(
    structure: Structure<'_>,
    value: &Value,
    path: &mut FieldPath,
    names: &mut Vec<String>,
    out: &mut BTreeSet<FieldPath>,
) {
    if is_unowned(path) {
        return;
    }
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    match value {
        Value::Object(map) if !map.is_empty() && !structure.map_is_atomic(&name_refs) => {
            for (key, child) in map {
                path.push(PathElement::Field(key.clone()));
                names.push(key.clone());
                collect(structure, child, path, names, out);
                names.pop();
                path.pop();
            }
        }
        Value::Array(items) => match structure.list_shape(&name_refs) {
            ListShape::Set => {
                for item in items {
                    path.push(PathElement::Value(canonical_json(item)));
                    out.insert(path.clone());
                    path.pop();
                }
            }
            ListShape::Map { keys } if items.iter().all(|i| item_key(i, &keys).is_some()) => {
                for item in items {
                    let Some(key) = item_key(item, &keys) else {
                        continue;
                    };
                    path.push(key);
                    out.insert(path.clone());
                    if let Value::Object(fields) = item {
                        for (field, child) in fields {
                            path.push(PathElement::Field(field.clone()));
                            names.push(field.clone());
                            collect(structure, child, path, names, out);
                            names.pop();
                            path.pop();
                        }
                    }
                    path.pop();
                }
            }
            _ => {
                out.insert(path.clone());
            }
        },
        _ => {
            // An empty `metadata` is what remains once server fields are set aside: nothing
            // a manager could own.
            let empty_metadata = matches!(path.as_slice(), [PathElement::Field(f)] if f == "metadata")
                && value.as_object().is_some_and(Map::is_empty);
            if !path.is_empty() && !empty_metadata {
                out.insert(path.clone());
            }
        }
    }
}

pub(super) fn item_key(item: &Value, keys: &[String]) -> Option<PathElement> {
    let mut fields = Map::new();
    for key in keys {
        fields.insert(key.clone(), item.get(key)?.clone());
    }
    Some(PathElement::Key(canonical_json(&Value::Object(fields))))
}

pub(super) fn item_matches(item: &Value, key: &PathElement) -> bool {
    key.key_fields()
        .is_some_and(|fields| fields.iter().all(|(k, v)| item.get(k) == Some(v)))
}

/// The value at `path`, if present.
pub fn value_at<'a>(object: &'a Value, path: &[PathElement]) -> Option<&'a Value> {
    path.iter().try_fold(object, |node, element| match element {
        PathElement::Field(name) => node.as_object()?.get(name),
        PathElement::Key(_) => node.as_array()?.iter().find(|i| item_matches(i, element)),
        PathElement::Value(json) => node.as_array()?.iter().find(|i| &canonical_json(i) == json),
        PathElement::Index(i) => node.as_array()?.get(*i),
    })
}

/// Whether a write changes the field at `path`. A list item, a set member or a granular map
/// (owned as a leaf only while empty) "changes" only by appearing or disappearing; changes
/// inside it are reported on its own fields.
pub(super) fn differs(
    structure: Structure<'_>,
    path: &[PathElement],
    before: &Value,
    after: &Value,
) -> bool {
    let (a, b) = (value_at(before, path), value_at(after, path));
    let granular_maps = matches!((a, b), (Some(Value::Object(_)), Some(Value::Object(_)))) && {
        let names: Vec<&str> = path
            .iter()
            .filter_map(|e| match e {
                PathElement::Field(name) => Some(name.as_str()),
                _ => None,
            })
            .collect();
        !structure.map_is_atomic(&names)
    };
    match path.last() {
        Some(PathElement::Key(_) | PathElement::Value(_)) => a.is_some() != b.is_some(),
        _ if granular_maps => false,
        _ => a != b,
    }
}

/// Removes the field, item or member at `path`. Maps and lists left empty by the removal go
/// too, as upstream (an apply that drops the last label leaves no `labels: {}` behind).
pub(super) fn remove_at(object: &mut Value, path: &[PathElement]) {
    remove_below(object, path);
}

/// Returns whether `node` became empty because of this removal.
fn remove_below(node: &mut Value, path: &[PathElement]) -> bool {
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    if rest.is_empty() {
        let removed = match (first, &mut *node) {
            (PathElement::Field(name), Value::Object(map)) => map.remove(name).is_some(),
            (PathElement::Key(_), Value::Array(items)) => {
                let before = items.len();
                items.retain(|i| !item_matches(i, first));
                items.len() != before
            }
            (PathElement::Value(json), Value::Array(items)) => {
                let before = items.len();
                items.retain(|i| &canonical_json(i) != json);
                items.len() != before
            }
            (PathElement::Index(i), Value::Array(items)) if *i < items.len() => {
                items.remove(*i);
                true
            }
            _ => false,
        };
        return removed && is_empty_container(node);
    }
    let child_emptied = match (first, &mut *node) {
        (PathElement::Field(name), Value::Object(map)) => {
            let emptied = map.get_mut(name).is_some_and(|c| remove_below(c, rest));
            if emptied {
                map.remove(name);
            }
            emptied
        }
        (PathElement::Key(_), Value::Array(items)) => {
            match items.iter().position(|i| item_matches(i, first)) {
                Some(at) => remove_below(&mut items[at], rest),
                None => false,
            }
        }
        (PathElement::Index(i), Value::Array(items)) => {
            items.get_mut(*i).is_some_and(|c| remove_below(c, rest))
        }
        _ => false,
    };
    // An item emptied of its fields stays: its key fields are never all removed by design.
    child_emptied && matches!(first, PathElement::Field(_)) && is_empty_container(node)
}

fn is_empty_container(value: &Value) -> bool {
    match value {
        Value::Object(map) => map.is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

impl fmt::Display for FieldSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let paths: Vec<String> = self.paths.iter().map(|p| display_path(p)).collect();
        f.write_str(&paths.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_v1_round_trips_through_parse_and_render() {
        let fields = json!({
            "f:metadata": {"f:finalizers": {"v:\"a\"": {}}, "f:labels": {".": {}, "f:x": {}}},
            "f:spec": {"f:ports": {"k:{\"port\":80,\"protocol\":\"TCP\"}": {".": {}, "f:port": {}}}},
            "f:status": {"f:list": {"i:0": {}}}
        });
        let set = FieldSet::from_fields_v1(&fields).expect("parses");
        assert_eq!(set.to_fields_v1(), fields);
        assert!(FieldSet::from_fields_v1(&json!({"x:bad": {}})).is_none());
    }
}
