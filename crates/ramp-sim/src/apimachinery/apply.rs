//! Server-side apply and field ownership: merging an applied configuration into the live
//! object, keeping `metadata.managedFields` (FieldsV1 `f:`/`k:`/`v:` sets) up to date for
//! Apply and Update writes, and reporting conflicts with other managers as a real server does.
//!
//! Limits of this emulation compared with kube-apiserver (structured-merge-diff):
//! - List identity: built-in kinds use their strategic-merge keys with a single key field
//!   (containers by `name`, container ports by `containerPort`, service ports by `port`, env by
//!   `name`, conditions by `type`, ownerReferences by `uid`...), not the multi-key
//!   `x-kubernetes-list-map-keys` of the OpenAPI schema (`containerPort`+`protocol`). Custom
//!   resources follow their schema: `x-kubernetes-list-type: map|set`, otherwise atomic;
//!   `x-kubernetes-map-type: atomic` maps are owned as a whole. Built-in `selector` and
//!   `nodeSelector` maps are atomic, as upstream.
//! - Order of merged associative lists: applied items follow the applied order; items only
//!   in the live list stay next to the items they followed. Upstream's interleaving differs in
//!   corner cases (several live-only items between reordered shared items).
//! - Conflicts are detected on leaf fields and list items whose value the apply would change;
//!   a conflict on a parent map containing another manager's fields is not reported.
//! - An Update records the fields whose value it changed (leaves and new list items), not the
//!   `.` markers of newly created maps; removed fields leave every manager's set.
//! - Ownership ignores `apiVersion`, `kind` and server-managed metadata (`name`, `namespace`,
//!   `uid`, `resourceVersion`, `generation`, `creationTimestamp`, `deletionTimestamp`,
//!   `deletionGracePeriodSeconds`, `selfLink`, `managedFields`), as upstream.
//! - `null` in an applied configuration means "not set" (typed clients serialise absent
//!   optionals that way), so a nullable custom-resource field cannot be applied as `null`.
//! - No field conversion between versions (CRDs use the `None` strategy, built-in kinds are
//!   served at one version): each entry records the apiVersion of the request that wrote it,
//!   and an applied configuration must be at the request's apiVersion (400 otherwise).
//! - An object without managed fields is credited to `before-first-apply` on its first apply,
//!   as upstream; the placeholder owns the fields present at that moment.
//! - Managed-fields entries are merged per (manager, operation, subresource), and for `Update`
//!   also per apiVersion, as upstream's manager identifier; timestamps come from the caller
//!   (`now`), so the module stays pure.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use super::ListShape;
pub use super::fieldpath::{
    FieldPath, FieldSet, PathElement, Structure, display_path, fields_of, value_at,
};
use super::fieldpath::{canonical_json, differs, item_key, remove_at};

/// One `metadata.managedFields` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedFieldsEntry {
    /// The field manager (`kubectl`, `ramp`, ...).
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    /// apiVersion the fields are expressed in.
    pub api_version: String,
    /// RFC 3339 time of the last write by this entry.
    pub time: Option<String>,
    /// `status` for writes through `/status`, `None` for the main resource.
    pub subresource: Option<String>,
    /// The owned fields.
    pub fields: FieldSet,
}

impl ManagedFieldsEntry {
    /// Parses `metadata.managedFields` of an object; malformed entries are skipped.
    pub fn read_all(object: &Value) -> Vec<Self> {
        object
            .pointer("/metadata/managedFields")
            .map(Self::read_list)
            .unwrap_or_default()
    }

    /// Parses a `managedFields` list; malformed entries are skipped.
    fn read_list(list: &Value) -> Vec<Self> {
        list.as_array()
            .map(|entries| entries.iter().filter_map(Self::parse).collect())
            .unwrap_or_default()
    }

    fn parse(entry: &Value) -> Option<Self> {
        let text = |name: &str| entry.get(name).and_then(Value::as_str).map(str::to_owned);
        Some(Self {
            manager: text("manager")?,
            operation: text("operation")?,
            api_version: text("apiVersion").unwrap_or_default(),
            time: text("time"),
            subresource: text("subresource"),
            fields: match entry.get("fieldsV1") {
                Some(fields) => FieldSet::from_fields_v1(fields)?,
                None => FieldSet::default(),
            },
        })
    }

    fn to_json(&self) -> Value {
        let mut entry = Map::new();
        entry.insert("apiVersion".into(), json!(self.api_version));
        entry.insert("fieldsType".into(), json!("FieldsV1"));
        entry.insert("fieldsV1".into(), self.fields.to_fields_v1());
        entry.insert("manager".into(), json!(self.manager));
        entry.insert("operation".into(), json!(self.operation));
        if let Some(subresource) = &self.subresource {
            entry.insert("subresource".into(), json!(subresource));
        }
        if let Some(time) = &self.time {
            entry.insert("time".into(), json!(time));
        }
        Value::Object(entry)
    }

    /// Whether this entry is the one a write by `manager` records into. As upstream's manager
    /// identifier, an `Update` entry belongs to one apiVersion (a manager writing at two
    /// versions has two entries) while an `Apply` entry follows its manager across versions.
    fn same_slot(
        &self,
        manager: &str,
        operation: &str,
        subresource: Option<&str>,
        api_version: &str,
    ) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource.as_deref() == subresource
            && (operation == "Apply" || self.api_version == api_version)
    }
}

/// The owned fields of `manager`'s (`operation`, `subresource`) entry, created at the end of
/// `entries` if the manager has none yet; the entry is stamped as written now in `api_version`.
fn claim<'e>(
    entries: &'e mut Vec<ManagedFieldsEntry>,
    manager: &str,
    operation: &str,
    subresource: Option<&str>,
    api_version: &str,
    now: &str,
) -> &'e mut FieldSet {
    let at = match entries
        .iter()
        .position(|e| e.same_slot(manager, operation, subresource, api_version))
    {
        Some(at) => at,
        None => {
            entries.push(ManagedFieldsEntry {
                manager: manager.to_owned(),
                operation: operation.to_owned(),
                api_version: String::new(),
                time: None,
                subresource: subresource.map(str::to_owned),
                fields: FieldSet::default(),
            });
            entries.len() - 1
        }
    };
    let entry = &mut entries[at];
    entry.api_version = api_version.to_owned();
    entry.time = Some(now.to_owned());
    &mut entry.fields
}

fn write_entries(object: &mut Value, entries: &[ManagedFieldsEntry]) {
    let Some(root) = object.as_object_mut() else {
        return;
    };
    let metadata = root
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(metadata) = metadata {
        let rendered: Vec<Value> = entries
            .iter()
            .filter(|e| !e.fields.is_empty())
            .map(ManagedFieldsEntry::to_json)
            .collect();
        if rendered.is_empty() {
            metadata.remove("managedFields");
        } else {
            metadata.insert("managedFields".into(), Value::Array(rendered));
        }
    }
}

/// Which part of the object a write may touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteScope {
    /// The whole object (kinds without a status subresource).
    Whole,
    /// The main resource of a kind with a status subresource: `status` is ignored.
    Main,
    /// The `/status` subresource: only `status` is taken.
    Status,
    /// The `/scale` subresource: the server has already mapped the Scale onto the object
    /// (`spec.replicas`); `status` is ignored and ownership is recorded under `scale`.
    Scale,
}

impl WriteScope {
    fn subresource(self) -> Option<&'static str> {
        match self {
            Self::Status => Some("status"),
            Self::Scale => Some("scale"),
            Self::Whole | Self::Main => None,
        }
    }

    /// The part of `object` this scope lets a writer set.
    fn restrict(self, object: &Value) -> Value {
        let Value::Object(map) = object else {
            return object.clone();
        };
        let keeps = |key: &str| match self {
            Self::Whole => true,
            Self::Main | Self::Scale => key != "status",
            Self::Status => matches!(key, "apiVersion" | "kind" | "status"),
        };
        Value::Object(
            map.iter()
                .filter(|(k, _)| keeps(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )
    }
}

/// The parameters of one server-side apply request.
#[derive(Debug, Clone, Copy)]
pub struct ApplyRequest<'a> {
    /// `?fieldManager=` (required for apply; a real server answers 400 without it).
    pub field_manager: &'a str,
    /// `?force=true`: take conflicting fields from other managers.
    pub force: bool,
    /// The request's apiVersion (`argoproj.io/v1alpha1`), recorded in managedFields.
    pub api_version: &'a str,
    /// RFC 3339 timestamp recorded in managedFields.
    pub now: &'a str,
    /// Main resource or `/status`.
    pub scope: WriteScope,
}

/// A field another manager owns with a different value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyConflict {
    /// The other manager.
    pub manager: String,
    /// The apiVersion of the other manager's entry.
    pub api_version: String,
    /// The subresource the other manager wrote through (`scale`, `status`), if any.
    pub subresource: Option<String>,
    /// The field, e.g. `.spec.replicas`.
    pub field: String,
}

impl ApplyConflict {
    /// `conflict with "m" using apps/v1`: a `Status.details.causes` message
    /// (type `FieldManagerConflict`, `field` = [`ApplyConflict::field`]).
    pub fn cause_message(&self) -> String {
        format!("conflict with {}", self.manager_label())
    }

    /// `"m"`, `"m" using apps/v1` or `"m" with subresource "scale" using apps/v1`.
    fn manager_label(&self) -> String {
        let mut label = format!("{:?}", self.manager);
        if let Some(subresource) = &self.subresource {
            label.push_str(&format!(" with subresource {subresource:?}"));
        }
        if !self.api_version.is_empty() {
            label.push_str(&format!(" using {}", self.api_version));
        }
        label
    }
}

/// A refused apply. `status_code()`/`reason()` give the `Status`; `Display` the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// The applied configuration is malformed: 400.
    #[error("{0}")]
    BadRequest(String),
    /// Other managers own fields this apply would change, and `force` is false: 409.
    #[error("{}", conflict_message(.0))]
    Conflict(Vec<ApplyConflict>),
}

impl ApplyError {
    /// HTTP status code.
    pub fn status_code(&self) -> u16 {
        match self {
            Self::BadRequest(_) => 400,
            Self::Conflict(_) => 409,
        }
    }

    /// `Status.reason`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "BadRequest",
            Self::Conflict(_) => "Conflict",
        }
    }
}

fn conflict_message(conflicts: &[ApplyConflict]) -> String {
    let count = conflicts.len();
    let plural = if count == 1 { "" } else { "s" };
    let body = match conflicts {
        [one] => format!("{}: {}", one.cause_message(), one.field),
        many => {
            let mut by_manager: BTreeMap<String, Vec<&str>> = BTreeMap::new();
            for conflict in many {
                by_manager
                    .entry(conflict.manager_label())
                    .or_default()
                    .push(&conflict.field);
            }
            let mut lines = Vec::new();
            for (manager, fields) in by_manager {
                lines.push(format!("conflicts with {manager}:"));
                lines.extend(fields.iter().map(|f| format!("- {f}")));
            }
            lines.join("\n")
        }
    };
    format!("Apply failed with {count} conflict{plural}: {body}")
}

/// The manager a real server credits with every field of an object that had no managed
/// fields when it was first applied to.
pub const BEFORE_FIRST_APPLY: &str = "before-first-apply";

/// Server-side apply (`PATCH` with `application/apply-patch+yaml`): merges `applied` into
/// `current` (or creates it when `None`), updates `metadata.managedFields` and returns the
/// new object. The caller still sets server metadata (uid, resourceVersion, generation...),
/// runs schema pruning/defaulting/validation and stores the result.
///
/// - Fields in `applied` are set; this manager becomes (co-)owner of each.
/// - Fields this manager applied before but omits now are removed, unless another manager
///   also owns them (or something below them).
/// - A field owned by another manager whose value would change is a conflict: with `force`
///   the field changes hands, without it the result is [`ApplyError::Conflict`] (409).
pub fn server_side_apply(
    structure: Structure<'_>,
    current: Option<&Value>,
    applied: &Value,
    request: &ApplyRequest<'_>,
) -> Result<Value, ApplyError> {
    if request.field_manager.is_empty() {
        return Err(ApplyError::BadRequest(
            "PATCH, application/apply-patch+yaml requests require fieldManager to be set"
                .to_owned(),
        ));
    }
    let Value::Object(applied_map) = applied else {
        return Err(ApplyError::BadRequest(
            "the applied configuration must be an object".to_owned(),
        ));
    };
    for required in ["apiVersion", "kind"] {
        if applied_map
            .get(required)
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(ApplyError::BadRequest(format!(
                "error decoding YAML: Object '{}' is missing in the applied configuration",
                if required == "apiVersion" {
                    "apiVersion"
                } else {
                    "Kind"
                }
            )));
        }
    }
    let patch_version = applied_map
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if patch_version != request.api_version {
        return Err(ApplyError::BadRequest(format!(
            "Incorrect version specified in apply patch. Specified patch version: {patch_version}, expected: {}",
            request.api_version
        )));
    }
    if applied_map.contains_key("metadata")
        && applied
            .pointer("/metadata/managedFields")
            .is_some_and(|m| !m.is_null())
    {
        return Err(ApplyError::BadRequest(
            "metadata.managedFields must be nil".to_owned(),
        ));
    }

    let mut scoped = request.scope.restrict(applied);
    strip_nulls(&mut scoped);
    let applied_fields = fields_of(structure, &scoped);
    let subresource = request.scope.subresource();
    let live = current.cloned().unwrap_or_else(|| json!({}));
    let mut entries = ManagedFieldsEntry::read_all(&live);
    if let Some(current) = current
        && entries.is_empty()
    {
        // An object nobody tracked yet is owned as a whole by a placeholder manager, so the
        // first apply cannot silently overwrite values it did not set (upstream behaviour).
        let existing = fields_of(structure, &request.scope.restrict(current));
        if !existing.is_empty() {
            entries.push(ManagedFieldsEntry {
                manager: BEFORE_FIRST_APPLY.to_owned(),
                operation: "Update".to_owned(),
                api_version: current
                    .get("apiVersion")
                    .and_then(Value::as_str)
                    .unwrap_or(request.api_version)
                    .to_owned(),
                time: Some(request.now.to_owned()),
                subresource: None,
                fields: existing,
            });
        }
    }

    let is_own_apply = |e: &ManagedFieldsEntry| {
        e.same_slot(
            request.field_manager,
            "Apply",
            subresource,
            request.api_version,
        )
    };
    let previous = entries
        .iter()
        .find(|e| is_own_apply(e))
        .map(|e| e.fields.clone())
        .unwrap_or_default();

    let mut pruned_live = live.clone();
    // Fields this manager dropped from its configuration go away unless someone else holds them.
    let mut dropped: Vec<&FieldPath> = previous
        .paths()
        .filter(|p| !applied_fields.contains(p))
        .filter(|p| {
            !entries
                .iter()
                .any(|e| !is_own_apply(e) && e.fields.covers_or_has_descendant(p))
        })
        .filter(|p| !applied_fields.covers_or_has_descendant(p))
        .collect();
    // Parents first: removing a list item takes its fields along, while removing the
    // fields first would leave an empty item that no longer matches its key.
    dropped.sort_by_key(|p| p.len());
    for path in dropped {
        remove_at(&mut pruned_live, path);
    }
    // Removal first, so a parent emptied by it is set again when the configuration keeps it.
    let mut merged = merge_applied(structure, &pruned_live, &scoped, &mut Vec::new());

    let mut conflicts = Vec::new();
    let mut conflicting_paths: Vec<(usize, FieldPath)> = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        if entry.manager == request.field_manager {
            continue;
        }
        for path in applied_fields.paths() {
            if entry.fields.contains(path) && differs(structure, path, &live, &merged) {
                conflicts.push(ApplyConflict {
                    manager: entry.manager.clone(),
                    api_version: entry.api_version.clone(),
                    subresource: entry.subresource.clone(),
                    field: display_path(path),
                });
                conflicting_paths.push((index, path.clone()));
            }
        }
    }
    if !conflicts.is_empty() && !request.force {
        return Err(ApplyError::Conflict(conflicts));
    }
    for (index, path) in conflicting_paths {
        if let Some(entry) = entries.get_mut(index) {
            entry.fields.paths.remove(&path);
        }
    }

    *claim(
        &mut entries,
        request.field_manager,
        "Apply",
        subresource,
        request.api_version,
        request.now,
    ) = applied_fields;
    write_entries(&mut merged, &entries);
    Ok(merged)
}

/// A typed client's `null` means "not set": it neither sets nor claims the field.
fn strip_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// Merges an applied configuration into the live value following `structure`.
fn merge_applied(
    structure: Structure<'_>,
    live: &Value,
    applied: &Value,
    names: &mut Vec<String>,
) -> Value {
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    match (live, applied) {
        (_, Value::Object(applied_map)) if !structure.map_is_atomic(&name_refs) => {
            // A live value that is not a map is replaced by the applied map, merged from empty.
            let no_fields = Map::new();
            let live_map = live.as_object().unwrap_or(&no_fields);
            let mut out = live_map.clone();
            for (key, value) in applied_map {
                names.push(key.clone());
                let merged = merge_applied(
                    structure,
                    live_map.get(key).unwrap_or(&Value::Null),
                    value,
                    names,
                );
                names.pop();
                out.insert(key.clone(), merged);
            }
            Value::Object(out)
        }
        (Value::Array(live_items), Value::Array(applied_items)) => {
            match structure.list_shape(&name_refs) {
                ListShape::Set => Value::Array(interleave(
                    live_items,
                    applied_items,
                    |item| Some(canonical_json(item)),
                    |_, item| item.clone(),
                )),
                ListShape::Map { keys }
                    if applied_items.iter().all(|i| item_key(i, &keys).is_some()) =>
                {
                    let identity = |item: &Value| match item_key(item, &keys) {
                        Some(PathElement::Key(key)) => Some(key),
                        _ => None,
                    };
                    Value::Array(interleave(
                        live_items,
                        applied_items,
                        identity,
                        |live_item, item| {
                            merge_applied(structure, live_item.unwrap_or(&Value::Null), item, names)
                        },
                    ))
                }
                _ => applied.clone(),
            }
        }
        _ => applied.clone(),
    }
}

/// Orders a merged associative list: applied items in applied order (each merged with its
/// live counterpart), live-only items kept where they stood relative to the items around them.
fn interleave(
    live: &[Value],
    applied: &[Value],
    identity: impl Fn(&Value) -> Option<String>,
    mut merge: impl FnMut(Option<&Value>, &Value) -> Value,
) -> Vec<Value> {
    let live_ids: Vec<Option<String>> = live.iter().map(&identity).collect();
    let applied_ids: Vec<Option<String>> = applied.iter().map(&identity).collect();
    let in_applied = |id: &String| applied_ids.iter().flatten().any(|a| a == id);
    let live_of = |id: &String| {
        live_ids
            .iter()
            .position(|l| l.as_ref() == Some(id))
            .map(|at| &live[at])
    };
    let mut emitted: BTreeSet<String> = BTreeSet::new();
    let mut out = Vec::with_capacity(live.len().max(applied.len()));
    let (mut l, mut r) = (0, 0);
    while l < live.len() || r < applied.len() {
        if let Some(live_id) = live_ids.get(l) {
            match live_id {
                Some(id) if emitted.contains(id) => {
                    l += 1;
                    continue;
                }
                Some(id) if in_applied(id) => {
                    // Shared with the configuration: it is emitted at its applied position.
                }
                _ => {
                    out.push(live[l].clone());
                    l += 1;
                    continue;
                }
            }
        }
        let Some(item) = applied.get(r) else {
            l += 1;
            continue;
        };
        if let Some(id) = &applied_ids[r]
            && emitted.insert(id.clone())
        {
            out.push(merge(live_of(id), item));
        }
        r += 1;
    }
    out
}

/// Records ownership for a non-apply write (create, update, JSON/merge/strategic patch) by
/// `field_manager`, as a real server does: the manager's `Update` entry gains every field whose
/// value the write changed, other managers lose those fields, and fields the write removed
/// leave every manager. `old` is the stored object (`None` on create); `new` is modified in
/// place. If the request itself carried a `metadata.managedFields` different from the stored
/// one, the request's list is the starting point (an empty list resets ownership).
pub fn record_update(
    structure: Structure<'_>,
    old: Option<&Value>,
    new: &mut Value,
    field_manager: &str,
    api_version: &str,
    now: &str,
    scope: WriteScope,
) {
    let stored = old
        .and_then(|o| o.pointer("/metadata/managedFields"))
        .cloned();
    let sent = new.pointer("/metadata/managedFields").cloned();
    let mut entries = match (&sent, old) {
        (Some(sent), _) if Some(sent) != stored.as_ref() => ManagedFieldsEntry::read_list(sent),
        (_, Some(old)) => ManagedFieldsEntry::read_all(old),
        (_, None) => Vec::new(),
    };
    let empty = json!({});
    let before = scope.restrict(old.unwrap_or(&empty));
    let after = scope.restrict(new);
    let changed: Vec<FieldPath> = fields_of(structure, &after)
        .paths()
        .filter(|p| differs(structure, p, &before, &after))
        .cloned()
        .collect();

    for entry in &mut entries {
        entry
            .fields
            .paths
            .retain(|p| value_at(new, p).is_some() && !changed.contains(p));
    }
    let subresource = scope.subresource();
    if !changed.is_empty() {
        claim(
            &mut entries,
            field_manager,
            "Update",
            subresource,
            api_version,
            now,
        )
        .paths
        .extend(changed);
    }
    write_entries(new, &entries);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apimachinery::KindKey;
    use crate::apimachinery::schema::CompiledSchema;
    use pretty_assertions::assert_eq;
    use proptest::prelude::*;

    const NOW: &str = "2026-01-01T00:00:00Z";

    fn request(manager: &str, force: bool) -> ApplyRequest<'_> {
        ApplyRequest {
            field_manager: manager,
            force,
            api_version: "apps/v1",
            now: NOW,
            scope: WriteScope::Whole,
        }
    }

    /// `request` for a configuration at another apiVersion than `apps/v1`.
    fn request_at<'a>(api_version: &'a str, manager: &'a str, force: bool) -> ApplyRequest<'a> {
        ApplyRequest {
            api_version,
            ..request(manager, force)
        }
    }

    fn deployment_kind() -> KindKey {
        KindKey::new("apps", "Deployment")
    }

    fn deployment(replicas: i64, image: &str) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"replicas": replicas, "template": {"spec": {"containers": [
                {"name": "web", "image": image}]}}}
        })
    }

    fn managers(object: &Value) -> Vec<(String, String)> {
        ManagedFieldsEntry::read_all(object)
            .into_iter()
            .map(|e| (e.manager, e.operation))
            .collect()
    }

    #[test]
    fn apply_create_records_fields_v1_like_a_real_server() {
        let kind = deployment_kind();
        let created = server_side_apply(
            Structure::BuiltIn(&kind),
            None,
            &deployment(2, "nginx:1"),
            &request("kubectl", false),
        )
        .expect("create");
        let entry = &created["metadata"]["managedFields"][0];
        assert_eq!(entry["manager"], "kubectl");
        assert_eq!(entry["operation"], "Apply");
        assert_eq!(entry["apiVersion"], "apps/v1");
        assert_eq!(entry["fieldsType"], "FieldsV1");
        assert_eq!(entry["time"], NOW);
        assert_eq!(
            entry["fieldsV1"],
            json!({
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {
                    "f:replicas": {},
                    "f:template": {"f:spec": {"f:containers": {
                        "k:{\"name\":\"web\"}": {".": {}, "f:image": {}, "f:name": {}}
                    }}}
                }
            })
        );
        assert_eq!(created["spec"]["replicas"], 2);
    }

    #[test]
    fn reapply_by_same_manager_removes_dropped_fields_and_list_items() {
        let kind = deployment_kind();
        let mut first = deployment(2, "nginx:1");
        first["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .expect("containers")
            .push(json!({"name": "sidecar", "image": "proxy:1"}));
        first["metadata"]["labels"]["tier"] = json!("front");
        let live = server_side_apply(
            Structure::BuiltIn(&kind),
            None,
            &first,
            &request("kubectl", false),
        )
        .expect("first apply");
        let second = deployment(2, "nginx:2");
        let result = server_side_apply(
            Structure::BuiltIn(&kind),
            Some(&live),
            &second,
            &request("kubectl", false),
        )
        .expect("second apply");
        assert_eq!(result["metadata"]["labels"], json!({"app": "web"}));
        assert_eq!(
            result["spec"]["template"]["spec"]["containers"],
            json!([{"name": "web", "image": "nginx:2"}])
        );
    }

    #[test]
    fn fields_owned_by_another_manager_survive_when_dropped() {
        let kind = deployment_kind();
        let live = server_side_apply(
            Structure::BuiltIn(&kind),
            None,
            &deployment(2, "nginx:1"),
            &request("kubectl", false),
        )
        .expect("create");
        // A controller also applies a label it shares.
        let controller_config = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}}});
        let live = server_side_apply(
            Structure::BuiltIn(&kind),
            Some(&live),
            &controller_config,
            &request("controller", false),
        )
        .expect("shared label, same value: no conflict");
        let without_labels = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web"}, "spec": {"replicas": 2}});
        let result = server_side_apply(
            Structure::BuiltIn(&kind),
            Some(&live),
            &without_labels,
            &request("kubectl", false),
        )
        .expect("reapply");
        assert_eq!(result["metadata"]["labels"], json!({"app": "web"}));
        assert_eq!(result["spec"].get("template"), None);
    }

    #[test]
    fn conflicting_apply_is_409_and_force_takes_ownership() {
        let kind = deployment_kind();
        let live = server_side_apply(
            Structure::BuiltIn(&kind),
            None,
            &deployment(2, "nginx:1"),
            &request("kubectl", false),
        )
        .expect("create");
        let hpa = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web"}, "spec": {"replicas": 5}});
        let err = server_side_apply(
            Structure::BuiltIn(&kind),
            Some(&live),
            &hpa,
            &request("hpa", false),
        )
        .expect_err("conflict");
        assert_eq!((err.status_code(), err.reason()), (409, "Conflict"));
        assert_eq!(
            err.to_string(),
            "Apply failed with 1 conflict: conflict with \"kubectl\" using apps/v1: .spec.replicas"
        );
        let ApplyError::Conflict(conflicts) = &err else {
            panic!("expected a conflict, got {err:?}");
        };
        assert_eq!(
            conflicts[0].cause_message(),
            "conflict with \"kubectl\" using apps/v1"
        );

        let forced = server_side_apply(
            Structure::BuiltIn(&kind),
            Some(&live),
            &hpa,
            &request("hpa", true),
        )
        .expect("forced");
        assert_eq!(forced["spec"]["replicas"], 5);
        let entries = ManagedFieldsEntry::read_all(&forced);
        let kubectl = entries
            .iter()
            .find(|e| e.manager == "kubectl")
            .expect("kubectl entry");
        let replicas = vec![
            PathElement::Field("spec".into()),
            PathElement::Field("replicas".into()),
        ];
        assert!(!kubectl.fields.contains(&replicas));
        let hpa_entry = entries
            .iter()
            .find(|e| e.manager == "hpa")
            .expect("hpa entry");
        assert!(hpa_entry.fields.contains(&replicas));

        // kubectl re-applying its old replicas now conflicts with hpa.
        let err = server_side_apply(
            Structure::BuiltIn(&kind),
            Some(&forced),
            &deployment(2, "nginx:1"),
            &request("kubectl", false),
        )
        .expect_err("conflict with hpa");
        assert!(err.to_string().contains("conflict with \"hpa\""), "{err}");
    }

    #[test]
    fn several_conflicts_are_grouped_by_manager() {
        let kind = deployment_kind();
        let live = server_side_apply(
            Structure::BuiltIn(&kind),
            None,
            &deployment(2, "nginx:1"),
            &request("kubectl", false),
        )
        .expect("create");
        let err = server_side_apply(
            Structure::BuiltIn(&kind),
            Some(&live),
            &deployment(3, "nginx:9"),
            &request("other", false),
        )
        .expect_err("two conflicts");
        assert_eq!(
            err.to_string(),
            "Apply failed with 2 conflicts: conflicts with \"kubectl\" using apps/v1:\n\
             - .spec.replicas\n\
             - .spec.template.spec.containers[name=\"web\"].image"
        );
    }

    #[test]
    fn updates_take_ownership_without_conflicts_and_removals_clear_owners() {
        let kind = deployment_kind();
        let live = server_side_apply(
            Structure::BuiltIn(&kind),
            None,
            &deployment(2, "nginx:1"),
            &request("kubectl", false),
        )
        .expect("create");
        let mut scaled = live.clone();
        scaled["spec"]["replicas"] = json!(4);
        scaled["metadata"]
            .as_object_mut()
            .expect("metadata")
            .remove("labels");
        record_update(
            Structure::BuiltIn(&kind),
            Some(&live),
            &mut scaled,
            "kube-controller-manager",
            "apps/v1",
            NOW,
            WriteScope::Whole,
        );
        assert_eq!(
            managers(&scaled),
            [
                ("kubectl".to_owned(), "Apply".to_owned()),
                ("kube-controller-manager".to_owned(), "Update".to_owned())
            ]
        );
        let entries = ManagedFieldsEntry::read_all(&scaled);
        assert_eq!(
            entries[1].fields.to_fields_v1(),
            json!({"f:spec": {"f:replicas": {}}})
        );
        assert_eq!(
            entries[0].fields.to_string(),
            ".spec.template.spec.containers[name=\"web\"], \
             .spec.template.spec.containers[name=\"web\"].image, \
             .spec.template.spec.containers[name=\"web\"].name"
        );
        // Re-applying kubectl's replicas now conflicts with the updater, as on a real server.
        let err = server_side_apply(
            Structure::BuiltIn(&kind),
            Some(&scaled),
            &deployment(2, "nginx:1"),
            &request("kubectl", false),
        )
        .expect_err("conflict with updater");
        assert!(
            err.to_string()
                .contains("\"kube-controller-manager\" using apps/v1: .spec.replicas"),
            "{err}"
        );
    }

    #[test]
    fn update_on_create_owns_everything_but_server_metadata() {
        let kind = KindKey::new("", "ConfigMap");
        let mut created = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "d", "uid": "1"}, "data": {"a": "1"}});
        record_update(
            Structure::BuiltIn(&kind),
            None,
            &mut created,
            "kubectl-client-side-apply",
            "v1",
            NOW,
            WriteScope::Whole,
        );
        assert_eq!(
            created["metadata"]["managedFields"][0]["fieldsV1"],
            json!({"f:data": {"f:a": {}}})
        );
        let unchanged = created.clone();
        let mut again = created.clone();
        record_update(
            Structure::BuiltIn(&kind),
            Some(&unchanged),
            &mut again,
            "x",
            "v1",
            NOW,
            WriteScope::Whole,
        );
        assert_eq!(
            managers(&again),
            [("kubectl-client-side-apply".to_owned(), "Update".to_owned())]
        );
    }

    #[test]
    fn update_entries_are_per_version_and_apply_entries_follow_their_manager() {
        let live = json!({"apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w"}, "spec": {"a": 1, "b": 1}});
        let entries = |object: &Value| -> Vec<(String, String, String)> {
            ManagedFieldsEntry::read_all(object)
                .into_iter()
                .map(|e| (e.manager, e.operation, e.api_version))
                .collect()
        };
        let mut first = live.clone();
        first["spec"]["a"] = json!(2);
        record_update(
            Structure::Unknown,
            Some(&live),
            &mut first,
            "ramp",
            "example.com/v1beta1",
            NOW,
            WriteScope::Whole,
        );
        let mut second = first.clone();
        second["spec"]["b"] = json!(2);
        record_update(
            Structure::Unknown,
            Some(&first),
            &mut second,
            "ramp",
            "example.com/v1",
            NOW,
            WriteScope::Whole,
        );
        let update = |version: &str| ("ramp".into(), "Update".into(), version.to_owned());
        assert_eq!(
            entries(&second),
            [update("example.com/v1beta1"), update("example.com/v1")]
        );

        let config = |version: &str| {
            json!({"apiVersion": version, "kind": "Widget", "metadata": {"name": "w"},
                "spec": {"c": 1}})
        };
        let applied = server_side_apply(
            Structure::Unknown,
            Some(&second),
            &config("example.com/v1beta1"),
            &request_at("example.com/v1beta1", "ramp", false),
        )
        .expect("apply at v1beta1");
        let applied = server_side_apply(
            Structure::Unknown,
            Some(&applied),
            &config("example.com/v1"),
            &request_at("example.com/v1", "ramp", false),
        )
        .expect("apply at v1");
        let apply = ("ramp".into(), "Apply".into(), "example.com/v1".to_owned());
        assert_eq!(
            entries(&applied),
            [
                update("example.com/v1beta1"),
                update("example.com/v1"),
                apply
            ]
        );

        let err = server_side_apply(
            Structure::Unknown,
            Some(&applied),
            &config("example.com/v1beta1"),
            &request_at("example.com/v1", "ramp", false),
        )
        .expect_err("a configuration at another version");
        assert_eq!(
            err.to_string(),
            "Incorrect version specified in apply patch. Specified patch version: example.com/v1beta1, expected: example.com/v1"
        );
    }

    #[test]
    fn custom_resources_follow_schema_list_types() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "steps": {"type": "array", "items": {"type": "object", "properties": {"w": {"type": "integer"}}}},
            "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                "items": {"type": "object", "properties": {"name": {"type": "string"}, "n": {"type": "integer"}}}},
            "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}}
        }}}});
        let compiled =
            CompiledSchema::new(KindKey::new("example.com", "Widget"), &schema).expect("compiles");
        let structure = Structure::Schema(&compiled);
        let mine = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
            "spec": {"steps": [{"w": 1}], "ports": [{"name": "a", "n": 1}], "tags": ["x"]}});
        let live = server_side_apply(
            structure,
            None,
            &mine,
            &request_at("example.com/v1", "me", false),
        )
        .expect("create");
        let theirs = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
            "spec": {"ports": [{"name": "b", "n": 2}], "tags": ["y"]}});
        let merged = server_side_apply(
            structure,
            Some(&live),
            &theirs,
            &request_at("example.com/v1", "them", false),
        )
        .expect("disjoint items");
        assert_eq!(
            merged["spec"]["ports"],
            json!([{"name": "a", "n": 1}, {"name": "b", "n": 2}])
        );
        assert_eq!(merged["spec"]["tags"], json!(["x", "y"]));
        let steps = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
            "spec": {"steps": [{"w": 2}]}});
        let err = server_side_apply(
            structure,
            Some(&merged),
            &steps,
            &request_at("example.com/v1", "them", false),
        )
        .expect_err("atomic list owned by me");
        assert!(err.to_string().contains(".spec.steps"), "{err}");
    }

    #[test]
    fn status_scope_only_takes_status_and_records_subresource() {
        let kind = deployment_kind();
        let live = server_side_apply(
            Structure::BuiltIn(&kind),
            None,
            &deployment(2, "nginx:1"),
            &request("kubectl", false),
        )
        .expect("create");
        let status_apply = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web"}, "spec": {"replicas": 9}, "status": {"replicas": 2}});
        let mut req = request("controller", false);
        req.scope = WriteScope::Status;
        let result = server_side_apply(Structure::BuiltIn(&kind), Some(&live), &status_apply, &req)
            .expect("status apply");
        assert_eq!(result["spec"]["replicas"], 2);
        assert_eq!(result["status"], json!({"replicas": 2}));
        let entry = ManagedFieldsEntry::read_all(&result)
            .into_iter()
            .find(|e| e.manager == "controller")
            .expect("status entry");
        assert_eq!(entry.subresource.as_deref(), Some("status"));
        assert_eq!(
            entry.fields.to_fields_v1(),
            json!({"f:status": {"f:replicas": {}}})
        );
    }

    #[test]
    fn conflicts_name_the_other_managers_subresource() {
        let kind = deployment_kind();
        let live = server_side_apply(
            Structure::BuiltIn(&kind),
            None,
            &deployment(2, "nginx:1"),
            &request("kubectl", false),
        )
        .expect("create");
        let mut scaled = live.clone();
        scaled["spec"]["replicas"] = json!(7);
        record_update(
            Structure::BuiltIn(&kind),
            Some(&live),
            &mut scaled,
            "kube-controller-manager",
            "apps/v1",
            NOW,
            WriteScope::Scale,
        );
        let err = server_side_apply(
            Structure::BuiltIn(&kind),
            Some(&scaled),
            &deployment(2, "nginx:1"),
            &request("kubectl", false),
        )
        .expect_err("conflict");
        assert_eq!(
            err.to_string(),
            "Apply failed with 1 conflict: conflict with \"kube-controller-manager\" with \
             subresource \"scale\" using apps/v1: .spec.replicas"
        );
    }

    #[test]
    fn first_apply_to_an_untracked_object_conflicts_with_before_first_apply() {
        let kind = deployment_kind();
        let untracked = deployment(2, "nginx:1");
        let err = server_side_apply(
            Structure::BuiltIn(&kind),
            Some(&untracked),
            &deployment(3, "nginx:1"),
            &request("kubectl", false),
        )
        .expect_err("replicas differ");
        assert_eq!(
            err.to_string(),
            "Apply failed with 1 conflict: conflict with \"before-first-apply\" using apps/v1: \
             .spec.replicas"
        );
        let same = server_side_apply(
            Structure::BuiltIn(&kind),
            Some(&untracked),
            &deployment(2, "nginx:1"),
            &request("kubectl", false),
        )
        .expect("same values co-own");
        assert_eq!(
            managers(&same),
            [
                (BEFORE_FIRST_APPLY.to_owned(), "Update".to_owned()),
                ("kubectl".to_owned(), "Apply".to_owned())
            ]
        );
    }

    #[test]
    fn keyed_lists_follow_the_applied_order_and_keep_others_items() {
        let kind = deployment_kind();
        let with_containers = |names: &[&str]| {
            let containers: Vec<Value> = names
                .iter()
                .map(|n| json!({"name": n, "image": format!("{n}:1")}))
                .collect();
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                "spec": {"template": {"spec": {"containers": containers}}}})
        };
        let live = server_side_apply(
            Structure::BuiltIn(&kind),
            None,
            &with_containers(&["a", "b"]),
            &request("me", false),
        )
        .expect("create");
        let live = server_side_apply(
            Structure::BuiltIn(&kind),
            Some(&live),
            &with_containers(&["c"]),
            &request("them", false),
        )
        .expect("them adds c");
        let reordered = server_side_apply(
            Structure::BuiltIn(&kind),
            Some(&live),
            &with_containers(&["b", "a"]),
            &request("me", false),
        )
        .expect("me reorders");
        let names: Vec<&str> = reordered["spec"]["template"]["spec"]["containers"]
            .as_array()
            .expect("containers")
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert_eq!(names, ["b", "a", "c"]);
    }

    #[test]
    fn null_in_applied_configuration_releases_and_removes_the_field() {
        let kind = deployment_kind();
        let live = server_side_apply(
            Structure::BuiltIn(&kind),
            None,
            &deployment(2, "nginx:1"),
            &request("kubectl", false),
        )
        .expect("create");
        let mut without_replicas = deployment(2, "nginx:1");
        without_replicas["spec"]["replicas"] = Value::Null;
        let result = server_side_apply(
            Structure::BuiltIn(&kind),
            Some(&live),
            &without_replicas,
            &request("kubectl", false),
        )
        .expect("reapply");
        assert_eq!(result["spec"].get("replicas"), None);
        assert!(
            !ManagedFieldsEntry::read_all(&result)[0]
                .fields
                .to_string()
                .contains(".spec.replicas")
        );
    }

    fn json_tree() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            any::<bool>().prop_map(Value::Bool),
            any::<i16>().prop_map(|n| json!(n)),
            "[a-z]{0,3}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 20, 3, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                proptest::collection::btree_map("[a-c]", inner, 0..3)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn config() -> impl Strategy<Value = Value> {
        proptest::collection::btree_map("[a-d]", json_tree(), 0..4).prop_map(|fields| {
            let mut object: Map<String, Value> = fields.into_iter().collect();
            object.insert("apiVersion".into(), json!("example.com/v1"));
            object.insert("kind".into(), json!("Widget"));
            Value::Object(object)
        })
    }

    /// A Deployment with uniquely named containers (each with uniquely named env vars), in
    /// random order.
    fn deployment_config() -> impl Strategy<Value = Value> {
        let env = proptest::collection::btree_map("[A-C]", "[a-z]{0,2}", 0..3)
            .prop_map(|vars| {
                vars.into_iter()
                    .map(|(name, value)| json!({"name": name, "value": value}))
                    .collect::<Vec<_>>()
            })
            .prop_shuffle();
        let containers = proptest::collection::btree_map("[a-e]", ("[a-z]{1,3}", env), 0..4)
            .prop_map(|containers| {
                containers
                    .into_iter()
                    .map(|(name, (image, env))| {
                        let mut container = json!({"name": name, "image": image});
                        if !env.is_empty() {
                            container["env"] = Value::Array(env);
                        }
                        container
                    })
                    .collect::<Vec<_>>()
            })
            .prop_shuffle();
        (containers, proptest::option::of(0i64..5)).prop_map(|(containers, replicas)| {
            let mut spec = json!({"template": {"spec": {"containers": containers}}});
            if let Some(replicas) = replicas {
                spec["replicas"] = json!(replicas);
            }
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web"}, "spec": spec})
        })
    }

    fn without_managed_fields(mut object: Value) -> Value {
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("managedFields");
            if meta.is_empty() {
                object.as_object_mut().map(|o| o.remove("metadata"));
            }
        }
        object
    }

    proptest! {
        #[test]
        fn a_sole_manager_gets_exactly_its_latest_configuration(first in config(), second in config()) {
            let req = ApplyRequest { api_version: "example.com/v1", ..request("me", false) };
            let created = server_side_apply(Structure::Unknown, None, &first, &req)
                .expect("create");
            prop_assert_eq!(without_managed_fields(created.clone()), first);
            let updated = server_side_apply(Structure::Unknown, Some(&created), &second, &req)
                .expect("a sole manager never conflicts");
            prop_assert_eq!(without_managed_fields(updated.clone()), second.clone());
            let again = server_side_apply(Structure::Unknown, Some(&updated), &second, &req)
                .expect("reapply");
            prop_assert_eq!(again, updated);
        }

        #[test]
        fn a_sole_manager_gets_its_keyed_lists_in_its_order(
            first in deployment_config(), second in deployment_config()
        ) {
            let kind = deployment_kind();
            let structure = Structure::BuiltIn(&kind);
            let req = request("me", false);
            let created = server_side_apply(structure, None, &first, &req).expect("create");
            prop_assert_eq!(without_managed_fields(created.clone()), first);
            let updated = server_side_apply(structure, Some(&created), &second, &req)
                .expect("a sole manager never conflicts");
            prop_assert_eq!(without_managed_fields(updated), second);
        }

        #[test]
        fn a_forced_apply_sets_every_field_it_names(first in config(), second in config()) {
            let mine = ApplyRequest { api_version: "example.com/v1", ..request("me", false) };
            let theirs = ApplyRequest { api_version: "example.com/v1", ..request("them", true) };
            let created = server_side_apply(Structure::Unknown, None, &first, &mine)
                .expect("create");
            let forced = server_side_apply(Structure::Unknown, Some(&created), &second, &theirs)
                .expect("force never conflicts");
            let applied = fields_of(Structure::Unknown, &second);
            for path in applied.paths() {
                match value_at(&second, path) {
                    // An empty map only says the map exists; others' fields may live in it.
                    Some(Value::Object(_)) => prop_assert!(
                        value_at(&forced, path).is_some_and(Value::is_object),
                        "{} is no longer a map", display_path(path)
                    ),
                    expected => prop_assert_eq!(value_at(&forced, path), expected, "{}", display_path(path)),
                }
            }
            let owners = ManagedFieldsEntry::read_all(&forced);
            let them = owners.iter().find(|e| e.manager == "them");
            prop_assert_eq!(them.map(|e| &e.fields), (!applied.is_empty()).then_some(&applied));
            if let Some(me) = owners.iter().find(|e| e.manager == "me") {
                for path in me.fields.paths() {
                    prop_assert!(
                        !applied.contains(path) || value_at(&created, path) == value_at(&second, path),
                        "me kept {} although them changed it", display_path(path)
                    );
                }
            }
        }
    }

    #[test]
    fn malformed_apply_requests_are_400() {
        let kind = deployment_kind();
        let cases = [
            (json!({"kind": "Deployment"}), "kubectl"),
            (json!({"apiVersion": "apps/v1"}), "kubectl"),
            (json!([1]), "kubectl"),
            (deployment(1, "x"), ""),
            (
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"managedFields": []}}),
                "kubectl",
            ),
        ];
        for (config, manager) in cases {
            let err = server_side_apply(
                Structure::BuiltIn(&kind),
                None,
                &config,
                &request(manager, false),
            )
            .expect_err(&config.to_string());
            assert_eq!(err.status_code(), 400, "{config}: {err}");
        }
    }

    #[test]
    fn set_lists_track_members_with_v_elements() {
        let kind = KindKey::new("", "ConfigMap");
        let config = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "finalizers": ["a", "b"]}});
        let live = server_side_apply(
            Structure::BuiltIn(&kind),
            None,
            &config,
            &request_at("v1", "me", false),
        )
        .expect("create");
        assert_eq!(
            live["metadata"]["managedFields"][0]["fieldsV1"],
            json!({"f:metadata": {"f:finalizers": {"v:\"a\"": {}, "v:\"b\"": {}}}})
        );
        let fewer = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "finalizers": ["b"]}});
        let result = server_side_apply(
            Structure::BuiltIn(&kind),
            Some(&live),
            &fewer,
            &request_at("v1", "me", false),
        )
        .expect("reapply");
        assert_eq!(result["metadata"]["finalizers"], json!(["b"]));
    }
}
