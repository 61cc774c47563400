//! PATCH bodies: choosing the patch type from the Content-Type header and applying JSON
//! merge (RFC 7386), JSON patch (RFC 6902) and strategic merge patches, with the HTTP status a
//! real server answers on failure. Server-side apply lives in [`super::apply`].

use serde_json::{Map, Value};

use super::KindKey;
use super::strategic::strategic_merge;

/// The four patch types a real server accepts, keyed by Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PatchType {
    /// `application/json-patch+json` (RFC 6902 operations).
    Json,
    /// `application/merge-patch+json` (RFC 7386; `null` deletes).
    Merge,
    /// `application/strategic-merge-patch+json` (built-in kinds only).
    StrategicMerge,
    /// `application/apply-patch+yaml` (server-side apply; handled by [`super::apply`]).
    Apply,
}

impl PatchType {
    /// Parses a Content-Type header value; parameters (`; charset=utf-8`) and case are ignored.
    /// `None` means the server answers 415 Unsupported Media Type.
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        let media = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match media.as_str() {
            "application/json-patch+json" => Some(Self::Json),
            "application/merge-patch+json" => Some(Self::Merge),
            "application/strategic-merge-patch+json" => Some(Self::StrategicMerge),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Some(Self::Apply),
            _ => None,
        }
    }

    /// The canonical Content-Type of this patch type.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Json => "application/json-patch+json",
            Self::Merge => "application/merge-patch+json",
            Self::StrategicMerge => "application/strategic-merge-patch+json",
            Self::Apply => "application/apply-patch+yaml",
        }
    }

    /// The patch types a real server accepts for `kind`, as listed in its 415 message and in
    /// the `patch` operation's consumes list of OpenAPI documents.
    pub fn accepted_for(kind: &KindKey) -> &'static [PatchType] {
        if strategic_merge_supported(kind) {
            &[Self::Json, Self::Merge, Self::StrategicMerge, Self::Apply]
        } else {
            &[Self::Json, Self::Merge, Self::Apply]
        }
    }
}

/// Whether strategic merge patch is allowed: only for built-in kinds. A real server answers
/// 415 for custom resources (there is no Go struct carrying merge keys).
pub fn strategic_merge_supported(kind: &KindKey) -> bool {
    kind.is_builtin()
}

/// A PATCH a real server refuses. Map to a `Status` with [`PatchError::status_code`],
/// [`PatchError::reason`] and the `Display` text as `message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// Patch type not accepted for this kind (strategic merge on a CR): 415.
    #[error(
        "the body of the request was in an unknown format - accepted media types include: {accepted}"
    )]
    UnsupportedMediaType {
        /// Comma-separated accepted Content-Types.
        accepted: String,
    },
    /// The patch document itself is malformed: 400.
    #[error("{0}")]
    BadRequest(String),
    /// The patch is well-formed but cannot be applied to this object (a failed JSON patch
    /// `test`, a path that does not exist): 422.
    #[error("the server rejected our request due to an error in our request: {0}")]
    Unprocessable(String),
}

impl PatchError {
    /// HTTP status code of the `Status` a real server would return.
    pub fn status_code(&self) -> u16 {
        match self {
            Self::UnsupportedMediaType { .. } => 415,
            Self::BadRequest(_) => 400,
            Self::Unprocessable(_) => 422,
        }
    }

    /// `Status.reason` a real server would return.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::UnsupportedMediaType { .. } => "UnsupportedMediaType",
            Self::BadRequest(_) => "BadRequest",
            Self::Unprocessable(_) => "Invalid",
        }
    }

    fn unsupported(kind: &KindKey) -> Self {
        let accepted = PatchType::accepted_for(kind)
            .iter()
            .map(|t| t.content_type())
            .collect::<Vec<_>>()
            .join(", ");
        Self::UnsupportedMediaType { accepted }
    }
}

/// Applies a JSON, merge or strategic merge patch to `current` and returns the patched
/// object. The caller then checks resourceVersion, immutable fields and schema as for an
/// update.
///
/// `PatchType::Apply` is refused with `BadRequest`: server-side apply needs a field manager
/// and managed fields, so the server calls [`super::apply::server_side_apply`] for it.
pub fn apply_patch(
    patch_type: PatchType,
    kind: &KindKey,
    current: &Value,
    patch: &Value,
) -> Result<Value, PatchError> {
    let patched = match patch_type {
        PatchType::Merge => {
            if !patch.is_object() {
                return Err(PatchError::BadRequest(format!(
                    "merge patch must be a JSON object, got {}",
                    json_type(patch)
                )));
            }
            merge_patch(current, patch)
        }
        PatchType::Json => json_patch(current, patch)?,
        PatchType::StrategicMerge => {
            if !strategic_merge_supported(kind) {
                return Err(PatchError::unsupported(kind));
            }
            strategic_merge(kind, current, patch).map_err(|e| {
                if e.unprocessable {
                    PatchError::Unprocessable(e.message)
                } else {
                    PatchError::BadRequest(e.message)
                }
            })?
        }
        PatchType::Apply => {
            return Err(PatchError::BadRequest(
                "apply patches are handled by server-side apply, not apply_patch".to_owned(),
            ));
        }
    };
    if !patched.is_object() {
        return Err(PatchError::Unprocessable(format!(
            "the patched {} is a JSON {}, not an object",
            kind.qualified_kind(),
            json_type(&patched)
        )));
    }
    Ok(patched)
}

/// RFC 7386 JSON merge patch: objects merge recursively, `null` deletes, anything else
/// (including lists) replaces.
pub fn merge_patch(current: &Value, patch: &Value) -> Value {
    let mut merged = current.clone();
    json_patch::merge(&mut merged, patch);
    merged
}

/// The merge patch that turns `from` into `to` (the inverse of [`merge_patch`] for objects
/// whose values are never `null`, since `null` in a merge patch means delete).
pub fn create_merge_patch(from: &Value, to: &Value) -> Value {
    match (from, to) {
        (Value::Object(a), Value::Object(b)) => {
            let mut patch = Map::new();
            for (key, old) in a {
                match b.get(key) {
                    None => {
                        patch.insert(key.clone(), Value::Null);
                    }
                    Some(new) if new != old => {
                        patch.insert(key.clone(), create_merge_patch(old, new));
                    }
                    Some(_) => {}
                }
            }
            for (key, new) in b {
                if !a.contains_key(key) {
                    patch.insert(key.clone(), new.clone());
                }
            }
            Value::Object(patch)
        }
        _ => to.clone(),
    }
}

/// RFC 6902 JSON patch. A malformed document is 400; an operation that fails against this
/// object (a `test` mismatch, a missing path) is 422, as on a real server.
pub fn json_patch(current: &Value, patch: &Value) -> Result<Value, PatchError> {
    let operations: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|e| PatchError::BadRequest(format!("invalid JSON patch: {e}")))?;
    let mut patched = current.clone();
    json_patch::patch(&mut patched, &operations.0).map_err(|e| {
        let detail = match e.kind {
            json_patch::PatchErrorKind::TestFailed => {
                format!("testing value {} failed: test failed", e.path)
            }
            _ => e.to_string(),
        };
        PatchError::Unprocessable(detail)
    })?;
    Ok(patched)
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn rollout() -> KindKey {
        KindKey::new("argoproj.io", "Rollout")
    }

    #[test]
    fn content_types_parse_with_parameters() {
        let table = [
            ("application/json-patch+json", Some(PatchType::Json)),
            (
                "application/merge-patch+json; charset=utf-8",
                Some(PatchType::Merge),
            ),
            (
                "Application/Strategic-Merge-Patch+JSON",
                Some(PatchType::StrategicMerge),
            ),
            ("application/apply-patch+yaml", Some(PatchType::Apply)),
            ("application/json", None),
            ("", None),
        ];
        for (header, expected) in table {
            assert_eq!(PatchType::from_content_type(header), expected, "{header}");
        }
        for t in [
            PatchType::Json,
            PatchType::Merge,
            PatchType::StrategicMerge,
            PatchType::Apply,
        ] {
            assert_eq!(PatchType::from_content_type(t.content_type()), Some(t));
        }
    }

    #[test]
    fn merge_patch_merges_objects_deletes_nulls_and_replaces_lists() {
        let current = json!({"metadata": {"labels": {"a": "1", "b": "2"}},
            "spec": {"replicas": 1, "steps": [{"setWeight": 10}, {"pause": {}}]}});
        let patch = json!({"metadata": {"labels": {"a": null, "c": "3"}},
            "spec": {"steps": [{"setWeight": 50}]}});
        let patched =
            apply_patch(PatchType::Merge, &rollout(), &current, &patch).expect("merge applies");
        assert_eq!(
            patched,
            json!({"metadata": {"labels": {"b": "2", "c": "3"}},
                "spec": {"replicas": 1, "steps": [{"setWeight": 50}]}})
        );
    }

    #[test]
    fn merge_patch_must_be_an_object() {
        let err = apply_patch(PatchType::Merge, &rollout(), &json!({}), &json!([1]))
            .expect_err("list body");
        assert_eq!(err.status_code(), 400);
    }

    #[test]
    fn json_patch_applies_operations_and_maps_failures_to_422_or_400() {
        let current = json!({"spec": {"replicas": 1, "paused": true}});
        let ok = json!([
            {"op": "test", "path": "/spec/replicas", "value": 1},
            {"op": "replace", "path": "/spec/replicas", "value": 3},
            {"op": "remove", "path": "/spec/paused"},
            {"op": "add", "path": "/metadata", "value": {"labels": {"a": "b"}}}
        ]);
        assert_eq!(
            apply_patch(PatchType::Json, &rollout(), &current, &ok).expect("applies"),
            json!({"spec": {"replicas": 3}, "metadata": {"labels": {"a": "b"}}})
        );

        let failed_test = json!([{"op": "test", "path": "/spec/replicas", "value": 2}]);
        let err = apply_patch(PatchType::Json, &rollout(), &current, &failed_test)
            .expect_err("test fails");
        assert_eq!((err.status_code(), err.reason()), (422, "Invalid"));
        assert!(
            err.to_string()
                .contains("testing value /spec/replicas failed"),
            "{err}"
        );

        let missing = json!([{"op": "remove", "path": "/spec/nothing"}]);
        let err =
            apply_patch(PatchType::Json, &rollout(), &current, &missing).expect_err("missing path");
        assert_eq!(err.status_code(), 422);

        let malformed = json!([{"op": "frobnicate", "path": "/spec"}]);
        let err =
            apply_patch(PatchType::Json, &rollout(), &current, &malformed).expect_err("bad op");
        assert_eq!(err.status_code(), 400);

        let replace_root = json!([{"op": "replace", "path": "", "value": 5}]);
        let err = apply_patch(PatchType::Json, &rollout(), &current, &replace_root)
            .expect_err("scalar result");
        assert_eq!(err.status_code(), 422);
    }

    #[test]
    fn strategic_merge_is_415_for_custom_resources_and_merges_builtins() {
        let err = apply_patch(
            PatchType::StrategicMerge,
            &rollout(),
            &json!({}),
            &json!({"spec": {}}),
        )
        .expect_err("CRs reject strategic merge");
        assert_eq!(
            (err.status_code(), err.reason()),
            (415, "UnsupportedMediaType")
        );
        assert_eq!(
            err.to_string(),
            "the body of the request was in an unknown format - accepted media types include: \
             application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
        );

        let deploy = KindKey::new("apps", "Deployment");
        let current = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]}}}});
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "b", "image": "b:2"}]}}}});
        assert_eq!(
            apply_patch(PatchType::StrategicMerge, &deploy, &current, &patch).expect("merges"),
            json!({"spec": {"template": {"spec": {"containers": [
                {"name": "a", "image": "a:1"}, {"name": "b", "image": "b:2"}]}}}})
        );
        let retain = json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}});
        let err = apply_patch(PatchType::StrategicMerge, &deploy, &current, &retain)
            .expect_err("retainKeys mismatch");
        assert_eq!(err.status_code(), 422);
    }

    #[test]
    fn apply_patches_are_routed_elsewhere() {
        let err = apply_patch(PatchType::Apply, &rollout(), &json!({}), &json!({}))
            .expect_err("apply is not a plain patch");
        assert_eq!(err.status_code(), 400);
    }

    fn json_tree() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            any::<bool>().prop_map(Value::Bool),
            any::<i32>().prop_map(|n| json!(n)),
            "[a-z]{0,4}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                proptest::collection::btree_map("[a-d]", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn json_object() -> impl Strategy<Value = Value> {
        proptest::collection::btree_map("[a-e]", json_tree(), 0..5)
            .prop_map(|m| Value::Object(m.into_iter().collect()))
    }

    proptest! {
        #[test]
        fn merge_patch_of_diff_turns_a_into_b(a in json_object(), b in json_object()) {
            let patch = create_merge_patch(&a, &b);
            prop_assert_eq!(merge_patch(&a, &patch), b);
        }

        #[test]
        fn merge_patch_is_idempotent(a in json_object(), p in json_object()) {
            let once = merge_patch(&a, &p);
            prop_assert_eq!(merge_patch(&once, &p), once);
        }
    }
}
