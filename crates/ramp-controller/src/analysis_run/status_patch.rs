//! The smallest JSON merge patch (RFC 7386) that turns one status into another: the
//! AnalysisRun has no status subresource, so the controller patches only what it changed and
//! leaves the spec (which a Rollout may be terminating at the same moment) alone.

use serde_json::{Map, Value};

/// The merge patch taking `old` to `new`: changed fields, nulls for removed ones; arrays and
/// non-objects are replaced whole (merge patch cannot address array items).
pub fn merge_diff(old: &Value, new: &Value) -> Value {
    match (old, new) {
        (Value::Object(old), Value::Object(new)) => {
            let mut patch = Map::new();
            for (key, old_value) in old {
                match new.get(key) {
                    None => {
                        patch.insert(key.clone(), Value::Null);
                    }
                    Some(new_value) if new_value != old_value => {
                        patch.insert(key.clone(), merge_diff(old_value, new_value));
                    }
                    Some(_) => {}
                }
            }
            for (key, new_value) in new {
                if !old.contains_key(key) {
                    patch.insert(key.clone(), new_value.clone());
                }
            }
            Value::Object(patch)
        }
        _ => new.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::merge_diff;
    use serde_json::json;

    #[test]
    fn only_changed_and_removed_fields_are_in_the_patch() {
        let old = json!({"phase": "Running", "message": "x", "startedAt": "t",
                         "metricResults": [{"name": "a", "count": 1}]});
        let new = json!({"phase": "Successful", "startedAt": "t",
                         "metricResults": [{"name": "a", "count": 2}], "completedAt": "u"});
        assert_eq!(
            merge_diff(&old, &new),
            json!({"phase": "Successful", "message": null,
                   "metricResults": [{"name": "a", "count": 2}], "completedAt": "u"})
        );
    }

    #[test]
    fn applying_the_patch_yields_the_new_value() {
        let old = json!({"a": {"b": 1, "c": 2}, "d": [1, 2]});
        let new = json!({"a": {"b": 1, "e": 3}, "d": [2]});
        let mut patched = old.clone();
        json_patch::merge(&mut patched, &merge_diff(&old, &new));
        assert_eq!(patched, new);
    }

    #[test]
    fn a_missing_old_value_patches_everything() {
        let new = json!({"phase": "Running"});
        assert_eq!(merge_diff(&serde_json::Value::Null, &new), new);
    }
}
