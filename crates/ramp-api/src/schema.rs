//! Schema fragments the derive cannot express: free-form objects that a real API server must
//! keep verbatim (`x-kubernetes-preserve-unknown-fields`), placed exactly where upstream has them.

use schemars::{Schema, SchemaGenerator, json_schema};

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
