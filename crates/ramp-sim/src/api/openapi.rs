//! OpenAPI v3 documents, enough for kubectl: every operation carries its group-version-kind
//! and the `fieldValidation` parameter (so kubectl leaves validation to the server), and
//! custom resources publish their CRD schema. Built-in kinds publish a permissive schema.

use super::catalog::{Catalog, ResourceDef};
use serde_json::{Map, Value, json};
use std::hash::{DefaultHasher, Hash, Hasher};

fn group_version_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

pub fn index(catalog: &Catalog) -> Value {
    let mut gvs = std::collections::BTreeSet::new();
    for def in catalog.all() {
        for v in &def.versions {
            gvs.insert(group_version_path(&def.group, &v.name));
        }
    }
    let mut paths = Map::new();
    for gv in gvs {
        let hash = document(catalog, &gv).map(|doc| {
            let mut hasher = DefaultHasher::new();
            doc.to_string().hash(&mut hasher);
            format!("{:016X}", hasher.finish())
        });
        paths.insert(gv.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{gv}?hash={}", hash.unwrap_or_default())}));
    }
    json!({"paths": paths})
}

fn schema_id(def: &ResourceDef, version: &str) -> String {
    let group = if def.group.is_empty() {
        "core".to_owned()
    } else {
        def.group.clone()
    };
    format!("{}.{}.{}", group, version, def.kind)
}

fn parameter(name: &str) -> Value {
    json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}})
}

fn operation(
    def: &ResourceDef,
    version: &str,
    action: &str,
    id: &str,
    schema_ref: &str,
    write: bool,
) -> Value {
    let mut op = json!({
        "operationId": format!("{action}{}{}", def.kind, version),
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": def.group, "version": version, "kind": def.kind},
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": schema_ref}}}}},
    });
    let _ = id;
    if write {
        op["parameters"] = json!([
            parameter("dryRun"),
            parameter("fieldManager"),
            parameter("fieldValidation")
        ]);
        op["requestBody"] =
            json!({"content": {"*/*": {"schema": {"$ref": schema_ref}}}, "required": true});
    }
    op
}

/// The document for `api/v1` or `apis/{group}/{version}`.
pub fn document(catalog: &Catalog, group_version: &str) -> Option<Value> {
    let (group, version) = match group_version.split('/').collect::<Vec<_>>().as_slice() {
        ["api", v] => (String::new(), (*v).to_owned()),
        ["apis", g, v] => ((*g).to_owned(), (*v).to_owned()),
        _ => return None,
    };
    let mut paths = Map::new();
    let mut schemas = Map::new();
    let prefix = format!("/{}", group_version_path(&group, &version));
    for def in catalog.all().filter(|d| d.group == group) {
        let Some(v) = def.version(&version) else {
            continue;
        };
        let id = schema_id(def, &version);
        let schema_ref = format!("#/components/schemas/{id}");
        let mut schema = match &v.schema {
            Some(s) => (**s).clone(),
            None => json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
        };
        schema["x-kubernetes-group-version-kind"] =
            json!([{"group": def.group, "version": version, "kind": def.kind}]);
        schemas.insert(id.clone(), schema);
        let base = if def.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}", def.plural)
        } else {
            format!("{prefix}/{}", def.plural)
        };
        paths.insert(
            base.clone(),
            json!({
                "get": operation(def, &version, "list", &id, &schema_ref, false),
                "post": operation(def, &version, "post", &id, &schema_ref, true),
                "delete": operation(def, &version, "deletecollection", &id, &schema_ref, false),
            }),
        );
        paths.insert(
            format!("{base}/{{name}}"),
            json!({
                "get": operation(def, &version, "get", &id, &schema_ref, false),
                "put": operation(def, &version, "put", &id, &schema_ref, true),
                "patch": operation(def, &version, "patch", &id, &schema_ref, true),
                "delete": operation(def, &version, "delete", &id, &schema_ref, false),
            }),
        );
        if v.status {
            paths.insert(
                format!("{base}/{{name}}/status"),
                json!({
                    "get": operation(def, &version, "get", &id, &schema_ref, false),
                    "put": operation(def, &version, "put", &id, &schema_ref, true),
                    "patch": operation(def, &version, "patch", &id, &schema_ref, true),
                }),
            );
        }
    }
    if paths.is_empty() {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}
