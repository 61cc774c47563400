//! Writes: create, update and patch with a real server's admission rules (server-owned
//! metadata, generation, status and scale subresources, optimistic concurrency, finalizer
//! rules, CRD registration). Patch and schema semantics come from `apimachinery`; deletion is
//! in `deletion`, garbage collection in `gc`.

use super::catalog::{GroupResource, crd_established_status, crd_to_def};
use super::deletion::remove_object;
use super::gc::GcQueue;
use super::scale::{scale_of, write_scale};
use super::server::{ApiRequest, ApiServer, Target, served, stored_response};
use super::status::{ApiError, ApiResult, Cause};
use super::store::{ObjectKey, State, Stored, meta_str, now_rfc3339};
use crate::apimachinery::patch::{PatchType, apply_patch};
use crate::apimachinery::{KindKey, generation_should_bump};
use axum::body::Bytes;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::{Map, Value, json};
use std::sync::Arc;

/// Largest total size of an object's annotations a real server accepts.
const MAX_ANNOTATIONS_BYTES: usize = 256 * 1024;

pub fn patch_type_name(patch_type: PatchType) -> &'static str {
    match patch_type {
        PatchType::Json => "json",
        PatchType::Merge => "merge",
        PatchType::StrategicMerge => "strategic",
        PatchType::Apply => "apply",
    }
}

/// A request body as JSON: YAML for apply patches, JSON otherwise.
pub fn decode_body(body: &Bytes, content_type: &str) -> ApiResult<Value> {
    if body.is_empty() {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    if content_type.contains("protobuf")
        && let Some(object) = super::protobuf::decode(body)
    {
        return Ok(object);
    }
    if content_type.contains("protobuf") || content_type.contains("cbor") {
        return Err(ApiError::unsupported_media_type(format!(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (got {content_type})"
        )));
    }
    if content_type.contains("yaml") {
        let text = std::str::from_utf8(body)
            .map_err(|e| ApiError::bad_request(format!("the body is not UTF-8: {e}")))?;
        return serde_saphyr::from_str::<Value>(text)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")));
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
    })
}

fn decode_object(request: &ApiRequest) -> ApiResult<Value> {
    let value = decode_body(&request.body, request.content_type())?;
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    Ok(value)
}

fn kind_key(target: &Target) -> KindKey {
    KindKey::new(target.def.group.clone(), target.def.kind.clone())
}

/// Checks `apiVersion`/`kind` against the URL (filling them in when absent) and the
/// namespace against the path.
fn check_identity(target: &Target, object: &mut Value) -> ApiResult<()> {
    let api_version = target.api_version();
    match object.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => object["apiVersion"] = Value::String(api_version.clone()),
        Some(v) if v == api_version => {}
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({api_version})"
            )));
        }
    }
    match object.get("kind").and_then(Value::as_str) {
        None | Some("") => object["kind"] = Value::String(target.def.kind.clone()),
        Some(k) if k == target.def.kind => {}
        Some(k) => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                target.def.kind
            )));
        }
    }
    if !object.get("metadata").is_some_and(Value::is_object) {
        object["metadata"] = json!({});
    }
    let meta = metadata_mut(object);
    if target.def.namespaced {
        let url_ns = target.namespace_or_empty();
        match meta.get("namespace").and_then(Value::as_str) {
            None | Some("") => {
                meta.insert("namespace".into(), Value::String(url_ns.to_owned()));
            }
            Some(ns) if ns == url_ns => {}
            Some(_) => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
        }
    } else {
        meta.remove("namespace");
    }
    Ok(())
}

pub(crate) fn metadata_mut(object: &mut Value) -> &mut Map<String, Value> {
    if !object.get("metadata").is_some_and(Value::is_object) {
        object["metadata"] = json!({});
    }
    match object.get_mut("metadata") {
        Some(Value::Object(map)) => map,
        // Just made sure metadata is an object.
        _ => unreachable!("metadata was set to an object above"),
    }
}

fn invalid(target: &Target, name: &str, field: &str, reason: &str, message: String) -> ApiError {
    ApiError::invalid(
        &target.def.kind,
        &target.def.group,
        name,
        vec![Cause {
            reason: reason.to_owned(),
            message,
            field: field.to_owned(),
        }],
    )
}

/// The real server's validation of a built-in object's pod spec or template, after defaulting.
fn check_builtin(target: &Target, name: &str, object: &Value) -> ApiResult<()> {
    let causes = super::validation::causes(&target.def.group, &target.def.plural, object);
    if causes.is_empty() {
        return Ok(());
    }
    Err(ApiError::invalid(
        &target.def.kind,
        &target.def.group,
        name,
        causes,
    ))
}

/// DNS-1123 subdomain (label for namespaces), as real name validation requires.
fn name_problem(target: &Target, name: &str) -> Option<String> {
    let label_only = target.def.group.is_empty() && target.def.plural == "namespaces";
    let max = if label_only { 63 } else { 253 };
    let valid_chars = name.chars().all(|c| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || (c == '.' && !label_only)
    });
    let edges = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if name.len() > max {
        return Some(format!(
            "Invalid value: {name:?}: must be no more than {max} characters"
        ));
    }
    if !valid_chars || !edges(name.chars().next()) || !edges(name.chars().last()) {
        let what = if label_only {
            "RFC 1123 label"
        } else {
            "RFC 1123 subdomain"
        };
        return Some(format!(
            "Invalid value: {name:?}: a lowercase {what} must consist of lower case alphanumeric characters, '-'{} and must start and end with an alphanumeric character",
            if label_only { "" } else { " or '.'," }
        ));
    }
    None
}

fn check_annotations(target: &Target, object: &Value) -> ApiResult<()> {
    let Some(annotations) = object
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
    else {
        return Ok(());
    };
    let total: usize = annotations
        .iter()
        .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
        .sum();
    if total > MAX_ANNOTATIONS_BYTES {
        return Err(invalid(
            target,
            meta_str(object, "name"),
            "metadata.annotations",
            "FieldValueTooLong",
            format!("Too long: must have at most {MAX_ANNOTATIONS_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// Field validation level from `fieldValidation` (a real server defaults to Warn).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum FieldValidation {
    Strict,
    Warn,
    Ignore,
}

fn field_validation(request: &ApiRequest) -> ApiResult<FieldValidation> {
    match request.param("fieldValidation") {
        None | Some("Warn") => Ok(FieldValidation::Warn),
        Some("Strict") => Ok(FieldValidation::Strict),
        Some("Ignore") => Ok(FieldValidation::Ignore),
        Some(other) => Err(ApiError::bad_request(format!(
            "fieldValidation parameter unsupported: {other:?}. Supported values: Ignore, Warn, Strict"
        ))),
    }
}

/// Schema admission for custom resources: defaulting, pruning of unknown fields, validation.
/// Returns the admitted object and warnings for the `Warning` header.
fn admit_custom(
    target: &Target,
    object: Value,
    request: &ApiRequest,
) -> ApiResult<(Value, Vec<String>)> {
    let level = field_validation(request)?;
    let Some(schema) = target
        .def
        .version(&target.version)
        .and_then(|v| v.compiled.clone())
    else {
        return Ok((object, Vec::new()));
    };
    super::admission::admit_with_schema(
        &schema,
        object,
        level == FieldValidation::Strict,
        level == FieldValidation::Warn,
    )
}

/// The field manager of a non-apply write: `fieldManager`, else the client's user agent
/// up to the first `/`, as a real server derives it.
pub(crate) fn field_manager(request: &ApiRequest) -> String {
    if let Some(manager) = request.param("fieldManager") {
        return manager.to_owned();
    }
    request
        .headers
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .and_then(|ua| ua.split('/').next())
        .filter(|m| !m.is_empty())
        .unwrap_or("unknown")
        .to_owned()
}

fn warning_headers(response: &mut Response, warnings: &[String]) {
    for warning in warnings {
        let text = format!(
            "299 - {}",
            serde_json::to_string(warning).unwrap_or_default()
        );
        if let Ok(value) = HeaderValue::from_str(&text) {
            response.headers_mut().append("warning", value);
        }
    }
}

/// What a real server resets on create for kinds with a status subresource.
fn reset_status_on_create(target: &Target, object: &mut Value) {
    let has_status = target
        .def
        .version(&target.version)
        .is_some_and(|v| v.status);
    if !has_status {
        return;
    }
    let Some(map) = object.as_object_mut() else {
        return;
    };
    if target.def.is_custom() {
        map.remove("status");
    } else if target.def.group.is_empty() && target.def.plural == "pods" {
        map.insert(
            "status".into(),
            json!({"phase": "Pending", "qosClass": "BestEffort"}),
        );
    } else if target.def.group.is_empty() && target.def.plural == "services" {
        map.insert("status".into(), json!({"loadBalancer": {}}));
    } else if target.def.group.is_empty() && target.def.plural == "namespaces" {
        map.insert("status".into(), json!({"phase": "Active"}));
    } else if target.def.group == "apiextensions.k8s.io" {
        map.remove("status");
    } else {
        map.insert("status".into(), json!({}));
    }
}

pub fn create(
    server: &Arc<ApiServer>,
    target: &Target,
    request: &ApiRequest,
) -> ApiResult<(Response, Option<String>)> {
    let mut object = decode_object(request)?;
    check_identity(target, &mut object)?;
    let (object, warnings) = if target.def.is_custom() {
        admit_custom(target, object, request)?
    } else {
        field_validation(request)?;
        (object, Vec::new())
    };
    let manager = field_manager(request);
    let mut state = server.lock();
    let created = create_locked(
        &mut state,
        &server.gc,
        target,
        object,
        request.dry_run(),
        Some(&manager),
    )?;
    drop(state);
    let name = created.name.clone();
    let mut response = stored_response(StatusCode::CREATED, &created, &target.api_version());
    warning_headers(&mut response, &warnings);
    Ok((response, Some(name)))
}

/// Stores a new object under the state lock: names, namespace checks, server metadata.
fn create_locked(
    state: &mut State,
    gc: &GcQueue,
    target: &Target,
    mut object: Value,
    dry_run: bool,
    manager: Option<&str>,
) -> ApiResult<Arc<Stored>> {
    let gr = target.gr();
    let namespace = target.namespace_or_empty().to_owned();
    let mut name = meta_str(&object, "name").to_owned();
    if name.is_empty() {
        let prefix = meta_str(&object, "generateName").to_owned();
        if prefix.is_empty() {
            return Err(invalid(
                target,
                "",
                "metadata.name",
                "FieldValueRequired",
                "Required value: name or generateName is required".to_owned(),
            ));
        }
        name = loop {
            let candidate = format!("{prefix}{}", state.random_suffix());
            if state.get(&gr, &namespace, &candidate).is_none() {
                break candidate;
            }
        };
    }
    if let Some(problem) = name_problem(target, &name) {
        return Err(invalid(
            target,
            &name,
            "metadata.name",
            "FieldValueInvalid",
            problem,
        ));
    }
    if target.def.namespaced {
        let namespaces = GroupResource::new("", "namespaces");
        match state.get(&namespaces, "", &namespace) {
            None => return Err(ApiError::not_found(&namespaces, &namespace)),
            Some(ns) if ns.deleting => {
                return Err(ApiError::forbidden(format!(
                    "{} \"{name}\" is forbidden: unable to create new content in namespace {namespace} because it is being terminated",
                    gr.qualified()
                )));
            }
            Some(_) => {}
        }
    }
    if state.get(&gr, &namespace, &name).is_some() {
        return Err(ApiError::already_exists(&gr, &name));
    }
    if !target.def.is_custom() {
        super::defaults::apply(&target.def.group, &target.def.plural, None, &mut object);
        check_builtin(target, &name, &object)?;
    }
    reset_status_on_create(target, &mut object);
    let now = now_rfc3339();
    let uid = state.new_uid();
    {
        let meta = metadata_mut(&mut object);
        meta.insert("name".into(), Value::String(name.clone()));
        meta.insert("uid".into(), Value::String(uid));
        meta.insert("creationTimestamp".into(), Value::String(now.clone()));
        meta.remove("deletionTimestamp");
        meta.remove("deletionGracePeriodSeconds");
        meta.remove("resourceVersion");
        meta.remove("selfLink");
        if target.def.has_generation {
            meta.insert("generation".into(), json!(1));
        } else {
            meta.remove("generation");
        }
    }
    if let Some(manager) = manager {
        super::admission::record_write(target, None, &mut object, manager, None);
    }
    check_annotations(target, &object)?;
    match (target.def.group.as_str(), target.def.plural.as_str()) {
        ("", "namespaces") => {
            object["spec"] = json!({"finalizers": ["kubernetes"]});
        }
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            let def = crd_to_def(&object)
                .map_err(|e| invalid(target, &name, &e.field, "FieldValueInvalid", e.message))?;
            let served_gr = def.group_resource();
            if let Some(existing) = state.catalog.get(&served_gr)
                && existing.crd_name.is_none()
            {
                return Err(invalid(
                    target,
                    &name,
                    "spec.group",
                    "FieldValueInvalid",
                    format!(
                        "Invalid value: {:?}: the resource is served by the API server itself",
                        def.group
                    ),
                ));
            }
            object["status"] = crd_established_status(&object, &now);
            if !dry_run {
                state.catalog.insert(def);
            }
        }
        _ => {}
    }
    if dry_run {
        return Ok(Arc::new(Stored::from_value(&object)));
    }
    let created = state.put(&gr, object);
    gc.object_written(&created);
    Ok(created)
}

/// Which part of an object a write may change.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Part {
    Main,
    Status,
}

/// How an update is committed: which part it writes, whether it is a dry run, and the field
/// manager to record (`None` when server-side apply already recorded ownership).
#[derive(Clone, Copy, Debug)]
pub(crate) struct UpdateOptions<'a> {
    pub part: Part,
    pub dry_run: bool,
    pub manager: Option<&'a str>,
}

/// Finishes an update under the lock: preconditions, server-owned fields, generation,
/// finalizer rules, no-op detection, and deletion once the last finalizer is gone.
pub(crate) fn commit_update(
    state: &mut State,
    gc: &GcQueue,
    target: &Target,
    old_stored: &Arc<Stored>,
    mut new: Value,
    options: UpdateOptions<'_>,
) -> ApiResult<Arc<Stored>> {
    let old_value = old_stored.value();
    let old = &old_value;
    let UpdateOptions {
        part,
        dry_run,
        manager,
    } = options;
    let gr = target.gr();
    let name = meta_str(old, "name").to_owned();
    let requested_rv = meta_str(&new, "resourceVersion");
    if !requested_rv.is_empty() && requested_rv != meta_str(old, "resourceVersion") {
        return Err(ApiError::stale(&gr, &name));
    }
    let has_status = target
        .def
        .version(&target.version)
        .is_some_and(|v| v.status);
    if part == Part::Status {
        let status = new.get("status").cloned();
        let managed = new.pointer("/metadata/managedFields").cloned();
        let requested_rv = new.pointer("/metadata/resourceVersion").cloned();
        new = old.clone();
        let meta = metadata_mut(&mut new);
        meta.remove("resourceVersion");
        if let Some(rv) = requested_rv {
            meta.insert("resourceVersion".into(), rv);
        }
        if let Some(managed) = managed {
            meta.insert("managedFields".into(), managed);
        }
        match status {
            Some(s) => new["status"] = s,
            None => {
                if let Some(map) = new.as_object_mut() {
                    map.remove("status");
                }
            }
        }
    } else if has_status {
        match old.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                if let Some(map) = new.as_object_mut() {
                    map.remove("status");
                }
            }
        }
    }
    if part != Part::Status && !target.def.is_custom() {
        super::defaults::apply(&target.def.group, &target.def.plural, Some(old), &mut new);
        check_builtin(target, &name, &new)?;
    }
    // The body is at the request's version; the object is stored at the storage version
    // (`None` conversion: only `apiVersion` differs). An object still stored at an earlier
    // storage version is rewritten even by a no-op write, as etcd's bytes differ.
    new["apiVersion"] = Value::String(target.def.storage_api_version());
    let old_meta = old
        .get("metadata")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    {
        let meta = metadata_mut(&mut new);
        for field in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "namespace",
            "name",
            "generation",
        ] {
            match old_meta.get(field) {
                Some(v) => meta.insert(field.into(), v.clone()),
                None => meta.remove(field),
            };
        }
        meta.remove("resourceVersion");
        if !meta.contains_key("managedFields")
            && let Some(mf) = old_meta.get("managedFields")
        {
            meta.insert("managedFields".into(), mf.clone());
        }
    }
    if old_meta.contains_key("deletionTimestamp") {
        let before: Vec<&str> = finalizers(old);
        let added: Vec<String> = finalizers(&new)
            .into_iter()
            .filter(|f| !before.contains(f))
            .map(str::to_owned)
            .collect();
        if !added.is_empty() {
            return Err(invalid(
                target,
                &name,
                "metadata.finalizers",
                "FieldValueForbidden",
                format!(
                    "Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers {added:?}"
                ),
            ));
        }
    }
    if let Some(manager) = manager {
        let subresource = (part == Part::Status).then_some("status");
        super::admission::record_write(target, Some(old), &mut new, manager, subresource);
    }
    if target.def.has_generation && generation_should_bump(old, &new, has_status) {
        let generation = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            + 1;
        metadata_mut(&mut new).insert("generation".into(), json!(generation));
    }
    check_annotations(target, &new)?;
    if target.def.group == "apiextensions.k8s.io"
        && target.def.plural == "customresourcedefinitions"
        && part == Part::Main
    {
        let def = crd_to_def(&new)
            .map_err(|e| invalid(target, &name, &e.field, "FieldValueInvalid", e.message))?;
        add_stored_version(&mut new, &def.storage_version);
        if !dry_run {
            state.catalog.insert(def);
        }
    }
    let mut unchanged = old.clone();
    if let Some(meta) = unchanged.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    if unchanged == new || dry_run {
        // A real server writes nothing (no new resourceVersion, no watch event) for a no-op.
        return Ok(if dry_run {
            Arc::new(Stored::from_value(&new))
        } else {
            Arc::clone(old_stored)
        });
    }
    let deleting =
        new.pointer("/metadata/deletionTimestamp").is_some() && finalizers(&new).is_empty();
    let stored = state.put(&gr, new);
    gc.object_written(&stored);
    if deleting {
        remove_object(
            state,
            gc,
            &ObjectKey {
                gr,
                namespace: target.namespace_or_empty().to_owned(),
                name,
            },
        );
    }
    Ok(stored)
}

/// Lists a CRD's storage version in `status.storedVersions` when an update changes it, as the
/// real registry does: objects written earlier stay stored at the versions listed before it.
fn add_stored_version(crd: &mut Value, storage_version: &str) {
    if !crd.get("status").is_some_and(Value::is_object) {
        crd["status"] = json!({});
    }
    let status = &mut crd["status"];
    match status
        .get_mut("storedVersions")
        .and_then(Value::as_array_mut)
    {
        Some(stored) if stored.iter().any(|v| v == storage_version) => {}
        Some(stored) => stored.push(json!(storage_version)),
        None => status["storedVersions"] = json!([storage_version]),
    }
}

pub(crate) fn finalizers(object: &Value) -> Vec<&str> {
    object
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

pub fn update(
    server: &Arc<ApiServer>,
    target: &Target,
    request: &ApiRequest,
) -> ApiResult<Response> {
    let name = target.name.as_deref().unwrap_or_default();
    let mut body = decode_object(request)?;
    if target.subresource.as_deref() == Some("scale") {
        let replicas = body
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let precondition = meta_str(&body, "resourceVersion").to_owned();
        return write_scale(server, target, replicas, &precondition, request);
    }
    check_identity(target, &mut body)?;
    let body_name = meta_str(&body, "name");
    if body_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    let (body, warnings) = if target.def.is_custom() {
        admit_custom(target, body, request)?
    } else {
        field_validation(request)?;
        (body, Vec::new())
    };
    let part = if target.subresource.as_deref() == Some("status") {
        Part::Status
    } else {
        Part::Main
    };
    let gr = target.gr();
    let mut state = server.lock();
    let old = state
        .get(&gr, target.namespace_or_empty(), name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(&gr, name))?;
    let manager = field_manager(request);
    let stored = commit_update(
        &mut state,
        &server.gc,
        target,
        &old,
        body,
        UpdateOptions {
            part,
            dry_run: request.dry_run(),
            manager: Some(&manager),
        },
    )?;
    drop(state);
    let mut response = stored_response(StatusCode::OK, &stored, &target.api_version());
    warning_headers(&mut response, &warnings);
    Ok(response)
}

fn patch_error(err: crate::apimachinery::patch::PatchError) -> ApiError {
    ApiError::new(err.status_code(), err.reason(), err.to_string())
}

pub fn patch(
    server: &Arc<ApiServer>,
    target: &Target,
    request: &ApiRequest,
) -> ApiResult<Response> {
    let name = target.name.as_deref().unwrap_or_default().to_owned();
    let gr = target.gr();
    let kind = kind_key(target);
    let patch_type = PatchType::from_content_type(request.content_type()).ok_or_else(|| {
        ApiError::unsupported_media_type(format!(
            "the body of the request was in an unknown format - accepted media types include: {}",
            PatchType::accepted_for(&kind)
                .iter()
                .map(|t| t.content_type())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    let patch_doc = decode_body(&request.body, request.content_type())?;
    field_validation(request)?;
    let manager = request.param("fieldManager").map(str::to_owned);
    if patch_type == PatchType::Apply && manager.is_none() {
        return Err(ApiError::bad_request(
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
        ));
    }
    let force = request.flag("force");
    // Optimistic loop: compute the patch outside the lock, commit only if nobody wrote since.
    for _ in 0..16 {
        let old = server
            .lock()
            .get(&gr, target.namespace_or_empty(), &name)
            .cloned();
        let Some(old) = old else {
            if patch_type == PatchType::Apply && target.subresource.is_none() {
                return apply_create(
                    server,
                    target,
                    request,
                    &patch_doc,
                    manager.as_deref().unwrap_or_default(),
                    force,
                );
            }
            return Err(ApiError::not_found(&gr, &name));
        };
        // A patch applies to the object as the request's version presents it.
        let old_value = served(&old, &target.api_version());
        if target.subresource.as_deref() == Some("scale") {
            let scale = scale_of(target, &old_value)?;
            let patched = match patch_type {
                PatchType::Apply => crate::apimachinery::patch::merge_patch(&scale, &patch_doc),
                PatchType::StrategicMerge => {
                    crate::apimachinery::patch::merge_patch(&scale, &patch_doc)
                }
                other => apply_patch(
                    other,
                    &KindKey::new("autoscaling", "Scale"),
                    &scale,
                    &patch_doc,
                )
                .map_err(patch_error)?,
            };
            let replicas = patched
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            let precondition = meta_str(&patched, "resourceVersion").to_owned();
            return write_scale(server, target, replicas, &precondition, request);
        }
        let patched = match patch_type {
            PatchType::Apply => super::admission::server_side_apply(
                target,
                Some(&old_value),
                &patch_doc,
                manager.as_deref().unwrap_or_default(),
                force,
                target.subresource.as_deref(),
            )?,
            other => apply_patch(other, &kind, &old_value, &patch_doc).map_err(patch_error)?,
        };
        let mut patched = patched;
        check_identity(target, &mut patched)?;
        if meta_str(&patched, "name") != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                meta_str(&patched, "name")
            )));
        }
        let (patched, warnings) = if target.def.is_custom() && target.subresource.is_none() {
            admit_custom(target, patched, request)?
        } else {
            (patched, Vec::new())
        };
        let part = if target.subresource.as_deref() == Some("status") {
            Part::Status
        } else {
            Part::Main
        };
        let mut state = server.lock();
        let current = state.get(&gr, target.namespace_or_empty(), &name).cloned();
        match current {
            Some(current) if Arc::ptr_eq(&current, &old) => {
                let update_manager =
                    (patch_type != PatchType::Apply).then(|| field_manager(request));
                let stored = commit_update(
                    &mut state,
                    &server.gc,
                    target,
                    &old,
                    patched,
                    UpdateOptions {
                        part,
                        dry_run: request.dry_run(),
                        manager: update_manager.as_deref(),
                    },
                )?;
                drop(state);
                let mut response = stored_response(StatusCode::OK, &stored, &target.api_version());
                warning_headers(&mut response, &warnings);
                return Ok(response);
            }
            _ => continue,
        }
    }
    Err(ApiError::conflict(
        &gr,
        &name,
        "too many concurrent writes; please try again",
    ))
}

/// Server-side apply on an object that does not exist yet creates it.
fn apply_create(
    server: &Arc<ApiServer>,
    target: &Target,
    request: &ApiRequest,
    patch_doc: &Value,
    manager: &str,
    force: bool,
) -> ApiResult<Response> {
    let mut object =
        super::admission::server_side_apply(target, None, patch_doc, manager, force, None)?;
    check_identity(target, &mut object)?;
    let name = target.name.as_deref().unwrap_or_default();
    if meta_str(&object, "name") != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            meta_str(&object, "name")
        )));
    }
    let (object, warnings) = if target.def.is_custom() {
        admit_custom(target, object, request)?
    } else {
        (object, Vec::new())
    };
    let mut state = server.lock();
    let created = create_locked(
        &mut state,
        &server.gc,
        target,
        object,
        request.dry_run(),
        None,
    )?;
    drop(state);
    let mut response = stored_response(StatusCode::CREATED, &created, &target.api_version());
    warning_headers(&mut response, &warnings);
    Ok(response)
}
