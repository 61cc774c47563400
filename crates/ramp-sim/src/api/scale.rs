//! The `/scale` subresource: the `autoscaling/v1` Scale view of an object through the paths
//! its kind (or CRD) declares, and writes of `spec.replicas` through it.

use super::objects::{Part, UpdateOptions, commit_update, field_manager};
use super::server::{ApiRequest, ApiServer, Target, json_response};
use super::status::{ApiError, ApiResult, Cause};
use super::store::meta_str;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value, json};
use std::sync::Arc;

/// Reads a dotted JSON path of the form `.spec.replicas` as a JSON pointer.
fn path_pointer(path: &str) -> String {
    path.trim_start_matches('.')
        .split('.')
        .fold(String::new(), |acc, s| format!("{acc}/{s}"))
}

/// The `autoscaling/v1` Scale view of an object.
pub fn scale_of(target: &Target, object: &Value) -> ApiResult<Value> {
    let paths = target
        .def
        .version(&target.version)
        .and_then(|v| v.scale.clone())
        .ok_or_else(|| ApiError::path_not_found(&format!("{}/scale", target.def.plural)))?;
    let spec_replicas = object
        .pointer(&path_pointer(&paths.spec_replicas))
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let status_replicas = object
        .pointer(&path_pointer(&paths.status_replicas))
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let selector = match &paths.label_selector {
        Some(path) => object
            .pointer(&path_pointer(path))
            .and_then(Value::as_str)
            .map(str::to_owned),
        None => object
            .pointer("/spec/selector/matchLabels")
            .and_then(Value::as_object)
            .map(|labels| {
                labels
                    .iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join(",")
            }),
    };
    let metadata = object.get("metadata").cloned().unwrap_or_default();
    let mut scale_meta = Map::new();
    for field in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = metadata.get(field) {
            scale_meta.insert(field.into(), v.clone());
        }
    }
    let mut status = json!({"replicas": status_replicas});
    if let Some(selector) = selector {
        status["selector"] = Value::String(selector);
    }
    Ok(json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": scale_meta,
        "spec": {"replicas": spec_replicas},
        "status": status,
    }))
}

pub(crate) fn write_scale(
    server: &Arc<ApiServer>,
    target: &Target,
    replicas: i64,
    precondition: &str,
    request: &ApiRequest,
) -> ApiResult<Response> {
    let name = target.name.as_deref().unwrap_or_default();
    let gr = target.gr();
    let paths = target
        .def
        .version(&target.version)
        .and_then(|v| v.scale.clone())
        .ok_or_else(|| ApiError::path_not_found(&format!("{}/scale", target.def.plural)))?;
    if replicas < 0 {
        return Err(ApiError::invalid(
            "Scale",
            "autoscaling",
            name,
            vec![Cause {
                reason: "FieldValueInvalid".into(),
                message: format!("Invalid value: {replicas}: must be greater than or equal to 0"),
                field: "spec.replicas".into(),
            }],
        ));
    }
    let mut state = server.lock();
    let old = state
        .get(&gr, target.namespace_or_empty(), name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(&gr, name))?;
    let mut new = old.value();
    if !precondition.is_empty() && precondition != meta_str(&new, "resourceVersion") {
        return Err(ApiError::stale(&gr, name));
    }
    set_pointer(
        &mut new,
        &path_pointer(&paths.spec_replicas),
        json!(replicas),
    );
    let manager = field_manager(request);
    let stored = commit_update(
        &mut state,
        &server.gc,
        target,
        &old,
        new,
        UpdateOptions {
            part: Part::Main,
            dry_run: request.dry_run(),
            manager: Some(&manager),
        },
    )?;
    drop(state);
    Ok(json_response(
        StatusCode::OK,
        &scale_of(target, &stored.value())?,
    ))
}

fn set_pointer(object: &mut Value, pointer: &str, value: Value) {
    let mut node = object;
    let segments: Vec<&str> = pointer.split('/').skip(1).collect();
    for (i, segment) in segments.iter().enumerate() {
        if !node.is_object() {
            *node = json!({});
        }
        let Some(map) = node.as_object_mut() else {
            return;
        };
        if i == segments.len() - 1 {
            map.insert((*segment).to_owned(), value);
            return;
        }
        node = map
            .entry((*segment).to_owned())
            .or_insert_with(|| json!({}));
    }
}
