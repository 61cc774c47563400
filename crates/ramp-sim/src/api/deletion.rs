//! Deletion: DELETE and deletecollection with preconditions, finalizers and
//! `deletionTimestamp`, the Background / Foreground / Orphan propagation policies, namespace
//! termination and CRD removal. The asynchronous cascade itself runs in `gc`.

use super::catalog::crd_to_def;
use super::gc::GcQueue;
use super::objects::{finalizers, metadata_mut};
use super::server::{
    ApiRequest, ApiServer, Selectors, Target, json_response, served, stored_response,
};
use super::status::{ApiError, ApiResult};
use super::store::{ObjectKey, State, Stored, meta_str, now_rfc3339};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};
use std::sync::Arc;

const FOREGROUND_FINALIZER: &str = "foregroundDeletion";
const ORPHAN_FINALIZER: &str = "orphan";

/// How dependents are treated when their owner is deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Propagation {
    Background,
    Foreground,
    Orphan,
}

struct DeleteOptions {
    propagation: Propagation,
    uid: Option<String>,
    resource_version: Option<String>,
}

fn delete_options(request: &ApiRequest) -> ApiResult<DeleteOptions> {
    let body = if request.body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice::<Value>(&request.body)
            .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?
    };
    let policy = body
        .get("propagationPolicy")
        .and_then(Value::as_str)
        .or_else(|| request.param("propagationPolicy"));
    let orphan = body
        .get("orphanDependents")
        .and_then(Value::as_bool)
        .or_else(|| request.param("orphanDependents").map(|v| v == "true"));
    let propagation = match (policy, orphan) {
        (Some("Foreground"), _) => Propagation::Foreground,
        (Some("Orphan"), _) => Propagation::Orphan,
        (Some("Background"), _) => Propagation::Background,
        (Some(other), _) => {
            return Err(ApiError::bad_request(format!(
                "DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Unsupported value: {other:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
            )));
        }
        (None, Some(true)) => Propagation::Orphan,
        (None, _) => Propagation::Background,
    };
    let precondition = |field: &str| {
        body.pointer(&format!("/preconditions/{field}"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    Ok(DeleteOptions {
        propagation,
        uid: precondition("uid"),
        resource_version: precondition("resourceVersion"),
    })
}

/// The outcome of a delete: gone now, or waiting for finalizers / dependents.
pub enum Deletion {
    Deleted(Arc<Stored>),
    Pending(Arc<Stored>),
}

pub fn delete(
    server: &Arc<ApiServer>,
    target: &Target,
    request: &ApiRequest,
) -> ApiResult<Response> {
    let name = target.name.as_deref().unwrap_or_default();
    if target.subresource.is_some() {
        return Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        ));
    }
    let options = delete_options(request)?;
    let gr = target.gr();
    let mut state = server.lock();
    let object = state
        .get(&gr, target.namespace_or_empty(), name)
        .map(|o| o.value())
        .ok_or_else(|| ApiError::not_found(&gr, name))?;
    if let Some(uid) = &options.uid
        && uid != meta_str(&object, "uid")
    {
        return Err(ApiError::conflict(
            &gr,
            name,
            &format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                meta_str(&object, "uid")
            ),
        ));
    }
    if let Some(rv) = &options.resource_version
        && rv != meta_str(&object, "resourceVersion")
    {
        return Err(ApiError::conflict(
            &gr,
            name,
            &format!(
                "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                meta_str(&object, "resourceVersion")
            ),
        ));
    }
    if request.dry_run() {
        let mut object = object;
        object["apiVersion"] = Value::String(target.api_version());
        return Ok(json_response(StatusCode::OK, &object));
    }
    let key = ObjectKey {
        gr,
        namespace: target.namespace_or_empty().to_owned(),
        name: name.to_owned(),
    };
    let outcome = delete_locked(&mut state, &server.gc, &key, options.propagation);
    drop(state);
    Ok(match outcome {
        Deletion::Deleted(obj) => stored_response(StatusCode::OK, &obj, &target.api_version()),
        Deletion::Pending(obj) => {
            stored_response(StatusCode::ACCEPTED, &obj, &target.api_version())
        }
    })
}

/// Deletes one object under the lock, honouring finalizers and the propagation policy.
/// Shared by the DELETE handler, deletecollection and the garbage collector.
pub fn delete_locked(
    state: &mut State,
    gc: &GcQueue,
    key: &ObjectKey,
    propagation: Propagation,
) -> Deletion {
    let Some(stored) = state.get_key(key).cloned() else {
        return Deletion::Deleted(Arc::new(Stored::from_value(&Value::Null)));
    };
    let object = stored.value();
    let already_deleting = stored.deleting;
    let is_namespace = key.gr.group.is_empty() && key.gr.resource == "namespaces";
    if is_namespace {
        if already_deleting {
            return Deletion::Pending(stored);
        }
        let mut updated = object.clone();
        metadata_mut(&mut updated).insert("deletionTimestamp".into(), Value::String(now_rfc3339()));
        updated["status"] = json!({"phase": "Terminating"});
        let stored = state.put(&key.gr, updated);
        gc.namespace_terminating(&key.name);
        return Deletion::Pending(stored);
    }
    let uid = meta_str(&object, "uid").to_owned();
    match propagation {
        Propagation::Orphan if !already_deleting => {
            for dependent in state.dependents(&uid) {
                let Some(mut updated) = state.get_key(&dependent).map(|d| d.value()) else {
                    continue;
                };
                if let Some(refs) = updated
                    .pointer_mut("/metadata/ownerReferences")
                    .and_then(Value::as_array_mut)
                {
                    refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(uid.as_str()));
                    if refs.is_empty()
                        && let Some(meta) =
                            updated.get_mut("metadata").and_then(Value::as_object_mut)
                    {
                        meta.remove("ownerReferences");
                    }
                }
                state.put(&dependent.gr, updated);
            }
        }
        Propagation::Foreground
            if !already_deleting || !finalizers(&object).contains(&FOREGROUND_FINALIZER) =>
        {
            let mut updated = object.clone();
            let meta = metadata_mut(&mut updated);
            if !meta.contains_key("deletionTimestamp") {
                meta.insert("deletionTimestamp".into(), Value::String(now_rfc3339()));
                meta.insert("deletionGracePeriodSeconds".into(), json!(0));
            }
            let list = meta.entry("finalizers").or_insert_with(|| json!([]));
            if let Some(list) = list.as_array_mut()
                && !list
                    .iter()
                    .any(|f| f.as_str() == Some(FOREGROUND_FINALIZER))
            {
                list.push(Value::String(FOREGROUND_FINALIZER.to_owned()));
            }
            let stored = state.put(&key.gr, updated);
            gc.foreground(&uid);
            return Deletion::Pending(stored);
        }
        _ => {}
    }
    let pending: Vec<&str> = finalizers(&object)
        .into_iter()
        .filter(|f| *f != ORPHAN_FINALIZER)
        .collect();
    if !pending.is_empty() {
        if already_deleting {
            return Deletion::Pending(stored);
        }
        let mut updated = object.clone();
        let meta = metadata_mut(&mut updated);
        meta.insert("deletionTimestamp".into(), Value::String(now_rfc3339()));
        meta.insert("deletionGracePeriodSeconds".into(), json!(0));
        return Deletion::Pending(state.put(&key.gr, updated));
    }
    match remove_object(state, gc, key) {
        Some(last) => Deletion::Deleted(last),
        None => Deletion::Deleted(stored),
    }
}

/// Removes an object for good and tells the garbage collector.
pub fn remove_object(state: &mut State, gc: &GcQueue, key: &ObjectKey) -> Option<Arc<Stored>> {
    let removed = state.remove(&key.gr, &key.namespace, &key.name)?;
    if key.gr.group == "apiextensions.k8s.io"
        && key.gr.resource == "customresourcedefinitions"
        && let Ok(def) = crd_to_def(&removed.value())
    {
        let served_gr = def.group_resource();
        state.drop_resource(&served_gr);
        state.catalog.remove(&served_gr);
    }
    gc.object_removed(&removed);
    Some(removed)
}

pub fn delete_collection(
    server: &Arc<ApiServer>,
    target: &Target,
    request: &ApiRequest,
) -> ApiResult<Response> {
    let selectors = Selectors::from_request(target, request)?;
    let options = delete_options(request)?;
    let gr = target.gr();
    let mut state = server.lock();
    let keys: Vec<ObjectKey> = state
        .range(&gr, target.namespace.as_deref(), None)
        .filter(|(_, obj)| selectors.matches_stored(obj))
        .map(|((ns, name), _)| ObjectKey {
            gr: gr.clone(),
            namespace: ns.clone(),
            name: name.clone(),
        })
        .collect();
    let mut items = Vec::new();
    if !request.dry_run() {
        for key in &keys {
            match delete_locked(&mut state, &server.gc, key, options.propagation) {
                Deletion::Deleted(obj) | Deletion::Pending(obj) => {
                    items.push(served(&obj, &target.api_version()))
                }
            }
        }
    }
    let rv = state.rv;
    drop(state);
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "kind": target.def.list_kind,
            "apiVersion": target.api_version(),
            "metadata": {"resourceVersion": rv.to_string()},
            "items": items,
        }),
    ))
}
