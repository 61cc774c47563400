//! Building blocks for the targeted RFC 6902 patches the routers send: JSON pointers, guarded
//! operations, and a number-tolerant JSON equality for "is there anything to write" checks.
//! No I/O here; the appliers in the router modules send what these build.

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation, RemoveOperation, TestOperation};
use serde_json::Value;

/// A JSON pointer from unescaped segments (`/` and `~` inside a segment are escaped).
pub(crate) fn pointer(segments: &[&str]) -> PointerBuf {
    PointerBuf::from_tokens(segments.iter().copied())
}

/// Accumulates operations; empty means "nothing to write".
#[derive(Debug, Default)]
pub(crate) struct PatchBuilder {
    operations: Vec<PatchOperation>,
}

impl PatchBuilder {
    pub(crate) fn test(&mut self, path: &[&str], value: Value) {
        self.operations.push(PatchOperation::Test(TestOperation {
            path: pointer(path),
            value,
        }));
    }

    /// `add` replaces an existing member, so it is used for both "set" and "create".
    pub(crate) fn add(&mut self, path: &[&str], value: Value) {
        self.operations.push(PatchOperation::Add(AddOperation {
            path: pointer(path),
            value,
        }));
    }

    pub(crate) fn remove(&mut self, path: &[&str]) {
        self.operations
            .push(PatchOperation::Remove(RemoveOperation {
                path: pointer(path),
            }));
    }

    /// The finished patch, led by a `test` of `metadata.resourceVersion` when anything is
    /// written: a concurrent write by anyone makes the server refuse it (422) instead of
    /// letting Ramp act on a stale read.
    pub(crate) fn finish(self, object: &Value) -> Patch {
        if self.operations.is_empty() {
            return Patch(Vec::new());
        }
        let mut operations = Vec::with_capacity(self.operations.len() + 1);
        if let Some(version) = object
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
        {
            operations.push(PatchOperation::Test(TestOperation {
                path: pointer(&["metadata", "resourceVersion"]),
                value: Value::String(version.to_owned()),
            }));
        }
        operations.extend(self.operations);
        Patch(operations)
    }
}

/// JSON equality where `100` and `100.0` are the same number: objects round-tripped through
/// other writers (Go's `float64` decoding) must not look changed.
pub(crate) fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_eq(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(key, value)| y.get(key).is_some_and(|other| json_eq(value, other)))
        }
        _ => a == b,
    }
}

/// An integer JSON value, accepting whole floats (`20.0`).
pub(crate) fn as_whole_number(value: &Value) -> Option<i64> {
    value.as_i64().or_else(|| {
        value
            .as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 1e15)
            .map(|f| f as i64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pointer_escapes_slashes_in_annotation_keys() {
        let path = pointer(&[
            "metadata",
            "annotations",
            "argo-rollouts.argoproj.io/managed-by-rollouts",
        ]);
        assert_eq!(
            path.as_str(),
            "/metadata/annotations/argo-rollouts.argoproj.io~1managed-by-rollouts"
        );
    }

    #[test]
    fn json_eq_treats_whole_floats_as_integers() {
        assert!(json_eq(&json!({"w": [100]}), &json!({"w": [100.0]})));
        assert!(!json_eq(&json!({"w": [100]}), &json!({"w": [99]})));
        assert!(!json_eq(&json!({"w": 1}), &json!({"w": 1, "x": 2})));
    }

    #[test]
    fn finish_leads_with_resource_version_test_only_when_writing() {
        let object = json!({"metadata": {"resourceVersion": "42"}});
        assert!(PatchBuilder::default().finish(&object).0.is_empty());
        let mut builder = PatchBuilder::default();
        builder.add(&["spec", "x"], json!(1));
        let patch = serde_json::to_value(builder.finish(&object)).expect("patch serializes");
        assert_eq!(
            patch,
            json!([
                {"op": "test", "path": "/metadata/resourceVersion", "value": "42"},
                {"op": "add", "path": "/spec/x", "value": 1}
            ])
        );
    }
}
