//! The HTTP front of the API server: one axum fallback handler that parses Kubernetes paths
//! and query parameters, applies injected faults, dispatches to reads (`get`, `list`),
//! watches, writes (`objects`) and discovery, and records mutating requests in the log.

use super::catalog::ResourceDef;
use super::faults::{FaultInjector, Verb};
use super::gc::GcQueue;
use super::request_log::{LoggedRequest, RequestLog};
use super::status::{ApiError, ApiResult};
use super::store::{ObjectName, State, Stored};
use super::{deletion, discovery, eviction, objects, openapi, scale, table, watch};
use crate::apimachinery::patch::PatchType;
use crate::apimachinery::selector::{FieldSelector, LabelSelector};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

/// Largest request body a real kube-apiserver accepts (3 MiB).
const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// Everything the handlers share: the store, faults, log, GC queue and restart signal.
pub(crate) struct ApiServer {
    state: Mutex<State>,
    pub faults: FaultInjector,
    pub log: RequestLog,
    pub gc: GcQueue,
    /// Bumped by a simulated restart; open watches end when it changes.
    pub restarts: tokio::sync::watch::Sender<u64>,
    pub bookmark_interval: Duration,
    /// `host:port` the server listens on, for `/api`'s serverAddressByClientCIDRs.
    pub address: Mutex<String>,
    /// Bearer tokens and RBAC decisions (off unless `SimConfig::rbac`).
    pub rbac: super::rbac::Rbac,
}

impl ApiServer {
    pub fn new(
        log: RequestLog,
        state: State,
        faults: FaultInjector,
        gc: GcQueue,
        bookmark_interval: Duration,
    ) -> Self {
        ApiServer {
            state: Mutex::new(state),
            faults,
            log,
            gc,
            restarts: tokio::sync::watch::channel(0).0,
            bookmark_interval,
            address: Mutex::new(String::new()),
            rbac: super::rbac::Rbac::default(),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

pub(crate) fn router(server: Arc<ApiServer>) -> Router {
    Router::new().fallback(move |request: Request| {
        let server = Arc::clone(&server);
        async move { handle(server, request).await }
    })
}

/// A request aimed at a resource: `/api/v1/namespaces/ns/pods/web/status` and the like.
pub(crate) struct Target {
    pub def: Arc<ResourceDef>,
    pub version: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

impl Target {
    pub fn gr(&self) -> super::catalog::GroupResource {
        self.def.group_resource()
    }

    pub fn api_version(&self) -> String {
        self.def.api_version(&self.version)
    }

    pub fn namespace_or_empty(&self) -> &str {
        self.namespace.as_deref().unwrap_or("")
    }
}

enum Route {
    Version,
    CoreVersions,
    Groups,
    Group(String),
    ResourceList { group: String, version: String },
    OpenApiIndex,
    OpenApiDoc(String),
    Health,
    Resource(Target),
}

/// The request as the handlers see it.
pub(crate) struct ApiRequest {
    pub method: Method,
    pub query: HashMap<String, String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl ApiRequest {
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    pub fn flag(&self, key: &str) -> bool {
        matches!(self.param(key), Some("true" | "1"))
    }

    pub fn content_type(&self) -> &str {
        self.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn accept(&self) -> &str {
        self.headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn dry_run(&self) -> bool {
        self.query.get("dryRun").is_some_and(|v| v == "All")
    }
}

/// How the client wants objects rendered (from the Accept header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rendering {
    Object,
    Table,
    Metadata,
}

pub(crate) fn rendering(accept: &str) -> Rendering {
    // Clients list alternatives in preference order; the first form we serve wins.
    for alternative in accept.split(',') {
        if alternative.contains("as=Table") {
            return Rendering::Table;
        }
        if alternative.contains("as=PartialObjectMetadata") {
            return Rendering::Metadata;
        }
        let media = alternative.split(';').next().unwrap_or("").trim();
        if media == "application/json" || media == "*/*" || media == "application/yaml" {
            return Rendering::Object;
        }
    }
    Rendering::Object
}

async fn handle(server: Arc<ApiServer>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let query: HashMap<String, String> =
        axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
            .map(|q| q.0.into_iter().collect())
            .unwrap_or_default();
    // Discovery, OpenAPI and health stay open to any authenticated user, as
    // system:discovery and system:public-info-viewer allow.
    let user = match server.rbac.authenticate(&parts.headers) {
        Ok(user) => user,
        Err(err) => return err.into_response(),
    };
    let route = match route(&server, &path) {
        Ok(route) => route,
        Err(err) => return err.into_response(),
    };
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return ApiError::new(
                413,
                "RequestEntityTooLarge",
                format!("Request entity too large: limit is {MAX_BODY_BYTES}"),
            )
            .into_response();
        }
    };
    let request = ApiRequest {
        method: parts.method,
        query,
        headers: parts.headers,
        body,
    };
    match route {
        Route::Version => json_response(StatusCode::OK, &discovery::version()),
        Route::CoreVersions => {
            let address = server.address.lock().map(|a| a.clone()).unwrap_or_default();
            json_response(StatusCode::OK, &discovery::core_versions(&address))
        }
        Route::Groups => json_response(StatusCode::OK, &discovery::groups(&server.lock().catalog)),
        Route::Group(group) => match discovery::group(&server.lock().catalog, &group) {
            Some(doc) => json_response(StatusCode::OK, &doc),
            None => ApiError::path_not_found(&path).into_response(),
        },
        Route::ResourceList { group, version } => {
            match discovery::resource_list(&server.lock().catalog, &group, &version) {
                Some(doc) => json_response(StatusCode::OK, &doc),
                None => ApiError::path_not_found(&path).into_response(),
            }
        }
        Route::OpenApiIndex => {
            json_response(StatusCode::OK, &openapi::index(&server.lock().catalog))
        }
        Route::OpenApiDoc(group_version) => {
            match openapi::document(&server.lock().catalog, &group_version) {
                Some(doc) => json_response(StatusCode::OK, &doc),
                None => ApiError::path_not_found(&path).into_response(),
            }
        }
        Route::Health => (StatusCode::OK, "ok").into_response(),
        Route::Resource(target) => handle_resource(server, target, request, user).await,
    }
}

fn route(server: &ApiServer, path: &str) -> ApiResult<Route> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (group, version, rest): (&str, &str, &[&str]) = match segments.as_slice() {
        ["version"] => return Ok(Route::Version),
        ["healthz" | "readyz" | "livez", ..] => return Ok(Route::Health),
        ["api"] => return Ok(Route::CoreVersions),
        ["apis"] => return Ok(Route::Groups),
        ["apis", group] => return Ok(Route::Group((*group).to_owned())),
        ["openapi", "v3"] => return Ok(Route::OpenApiIndex),
        ["openapi", "v3", gv @ ..] => return Ok(Route::OpenApiDoc(gv.join("/"))),
        ["api", version] => {
            return Ok(Route::ResourceList {
                group: String::new(),
                version: (*version).to_owned(),
            });
        }
        ["apis", group, version] => {
            return Ok(Route::ResourceList {
                group: (*group).to_owned(),
                version: (*version).to_owned(),
            });
        }
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Err(ApiError::path_not_found(path)),
    };
    let (namespace, resource, name, subresource) = match rest {
        ["namespaces", ns, sub @ ("status" | "finalize")] if group.is_empty() => {
            (None, "namespaces", Some(*ns), Some(*sub))
        }
        ["namespaces", ns, resource] => (Some(*ns), *resource, None, None),
        ["namespaces", ns, resource, name] => (Some(*ns), *resource, Some(*name), None),
        ["namespaces", ns, resource, name, sub] => (Some(*ns), *resource, Some(*name), Some(*sub)),
        [resource] => (None, *resource, None, None),
        [resource, name] => (None, *resource, Some(*name), None),
        [resource, name, sub] => (None, *resource, Some(*name), Some(*sub)),
        _ => return Err(ApiError::path_not_found(path)),
    };
    let def = server
        .lock()
        .catalog
        .lookup(group, version, resource)
        .ok_or_else(|| ApiError::path_not_found(path))?;
    if namespace.is_some() && !def.namespaced {
        return Err(ApiError::path_not_found(path));
    }
    if namespace.is_none() && def.namespaced && name.is_some() {
        return Err(ApiError::path_not_found(path));
    }
    let version_def = def
        .version(version)
        .ok_or_else(|| ApiError::path_not_found(path))?;
    match subresource {
        None => {}
        Some("status") if version_def.status => {}
        Some("scale") if version_def.scale.is_some() => {}
        Some("finalize") if def.plural == "namespaces" && def.group.is_empty() => {}
        Some("eviction") if def.plural == "pods" && def.group.is_empty() => {}
        Some(_) => return Err(ApiError::path_not_found(path)),
    }
    Ok(Route::Resource(Target {
        def: Arc::clone(&def),
        version: version.to_owned(),
        namespace: namespace.map(str::to_owned),
        name: name.map(str::to_owned),
        subresource: subresource.map(str::to_owned),
    }))
}

fn verb_of(method: &Method, target: &Target, request: &ApiRequest) -> ApiResult<Verb> {
    let named = target.name.is_some();
    if target.subresource.as_deref() == Some("eviction") {
        // Evictions are created, never read or changed.
        return match method.as_str() {
            "POST" => Ok(Verb::Create),
            m => Err(ApiError::method_not_allowed(format!(
                "the server does not allow this method on the requested resource ({m})"
            ))),
        };
    }
    Ok(match (method.as_str(), named) {
        ("GET", true) => Verb::Get,
        ("GET", false) if request.flag("watch") => Verb::Watch,
        ("GET", false) => Verb::List,
        ("POST", false) => Verb::Create,
        ("PUT", true) => Verb::Update,
        ("PATCH", true) => Verb::Patch,
        ("DELETE", true) => Verb::Delete,
        ("DELETE", false) => Verb::DeleteCollection,
        (m, _) => {
            return Err(ApiError::method_not_allowed(format!(
                "the server does not allow this method on the requested resource ({m})"
            )));
        }
    })
}

async fn handle_resource(
    server: Arc<ApiServer>,
    target: Target,
    request: ApiRequest,
    user: Option<super::rbac::ServiceAccountUser>,
) -> Response {
    let verb = match verb_of(&request.method, &target, &request) {
        Ok(verb) => verb,
        Err(err) => return err.into_response(),
    };
    let gr = target.gr();
    let slot = verb.is_mutating().then(|| server.log.reserve());
    let (delay, fault) = server.faults.decide(verb, &gr.resource, &gr.qualified());
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let authorized = match &user {
        Some(user) => server.rbac.authorize(
            &server.lock(),
            user,
            verb,
            &target,
            request.param("fieldSelector"),
        ),
        None => Ok(()),
    };
    let outcome = match (authorized, fault) {
        (Err(err), _) => Err(err),
        (Ok(()), Some(fault)) if fault.applied && verb.is_mutating() => {
            // The write takes effect and its answer is lost: the client sees a 500.
            match dispatch(&server, verb, &target, &request).await {
                Ok((response, name)) => Ok((response, name, Some(fault.error))),
                Err(err) => Err(err),
            }
        }
        (Ok(()), Some(fault)) => Err(fault.error),
        (Ok(()), None) => dispatch(&server, verb, &target, &request)
            .await
            .map(|(response, name)| (response, name, None)),
    };
    let (response, logged_name, object) = match outcome {
        Ok((response, name, lost_answer)) if slot.is_some() => {
            let (response, object) = answered_object(response).await;
            match lost_answer {
                Some(err) => (err.into_response(), name, object),
                None => (response, name, object),
            }
        }
        Ok((response, name, _)) => (response, name, None),
        Err(err) => (err.into_response(), None, None),
    };
    if let Some(slot) = slot {
        server.log.fill(
            slot,
            LoggedRequest {
                time: SystemTime::now(),
                verb,
                group: target.def.group.clone(),
                version: target.version.clone(),
                resource: target.def.plural.clone(),
                namespace: target.namespace.clone(),
                name: logged_name.or_else(|| target.name.clone()),
                subresource: target.subresource.clone(),
                patch_type: (verb == Verb::Patch)
                    .then(|| {
                        PatchType::from_content_type(request.content_type())
                            .map(|t| objects::patch_type_name(t).to_owned())
                    })
                    .flatten(),
                field_manager: request.param("fieldManager").map(str::to_owned),
                body: objects::decode_body(&request.body, request.content_type()).ok(),
                code: response.status().as_u16(),
                object,
            },
        );
    }
    response
}

/// The object a successful write answered with (read from the buffered JSON body), and the
/// response rebuilt around that body. A `Status` answer (some deletes) is not an object.
async fn answered_object(response: Response) -> (Response, Option<Value>) {
    if !response.status().is_success() {
        return (response, None);
    }
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return (Response::from_parts(parts, Body::empty()), None);
    };
    let object = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .filter(|o| o.get("metadata").is_some() && o["kind"] != "Status");
    (Response::from_parts(parts, Body::from(bytes)), object)
}

/// Runs one verb; the name returned is what the request log records for creates.
async fn dispatch(
    server: &Arc<ApiServer>,
    verb: Verb,
    target: &Target,
    request: &ApiRequest,
) -> ApiResult<(Response, Option<String>)> {
    match verb {
        Verb::Get => get(server, target, request).map(|r| (r, None)),
        Verb::List => list(server, target, request).map(|r| (r, None)),
        Verb::Watch => watch::watch(server, target, request).map(|r| (r, None)),
        Verb::Create if target.subresource.as_deref() == Some("eviction") => {
            eviction::evict(server, target, request).map(|r| (r, None))
        }
        Verb::Create => objects::create(server, target, request),
        Verb::Update => objects::update(server, target, request).map(|r| (r, None)),
        Verb::Patch => objects::patch(server, target, request).map(|r| (r, None)),
        Verb::Delete => deletion::delete(server, target, request).map(|r| (r, None)),
        Verb::DeleteCollection => {
            deletion::delete_collection(server, target, request).map(|r| (r, None))
        }
    }
}

pub(crate) fn json_response(code: StatusCode, value: &Value) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

pub(crate) fn bytes_response(code: StatusCode, body: Vec<u8>) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from(body),
    )
        .into_response()
}

/// The object as served at `version`: custom resources convert between versions by
/// rewriting `apiVersion` only (the `None` conversion strategy).
pub(crate) fn served(object: &Stored, api_version: &str) -> Value {
    let mut value = object.value();
    if object.api_version != api_version {
        value["apiVersion"] = Value::String(api_version.to_owned());
    }
    value
}

/// The object's JSON as served at `api_version`, without re-serializing when it is stored at
/// that version.
pub(crate) fn served_bytes(object: &Stored, api_version: &str) -> Bytes {
    if object.api_version == api_version {
        return object.json.clone();
    }
    Bytes::from(serde_json::to_vec(&served(object, api_version)).unwrap_or_default())
}

pub(crate) fn stored_response(code: StatusCode, object: &Stored, api_version: &str) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from(served_bytes(object, api_version)),
    )
        .into_response()
}

pub(crate) fn partial_metadata(object: &Value) -> Value {
    serde_json::json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": object.get("metadata").cloned().unwrap_or(Value::Null),
    })
}

fn get(server: &ApiServer, target: &Target, request: &ApiRequest) -> ApiResult<Response> {
    let name = target.name.as_deref().unwrap_or_default();
    let gr = target.gr();
    let object = server
        .lock()
        .get(&gr, target.namespace_or_empty(), name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(&gr, name))?;
    if target.subresource.as_deref() == Some("scale") {
        return Ok(json_response(
            StatusCode::OK,
            &scale::scale_of(target, &object.value())?,
        ));
    }
    let api_version = target.api_version();
    Ok(match rendering(request.accept()) {
        Rendering::Table => {
            let rv = server.lock().rv;
            let served_object = served(&object, &api_version);
            json_response(
                StatusCode::OK,
                &table::table(target, std::slice::from_ref(&served_object), rv, request),
            )
        }
        Rendering::Metadata => json_response(StatusCode::OK, &partial_metadata(&object.value())),
        Rendering::Object => stored_response(StatusCode::OK, &object, &api_version),
    })
}

/// Parsed `labelSelector` and `fieldSelector`, with the fields a kind supports checked.
pub(crate) struct Selectors {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Selectors {
    pub fn from_request(target: &Target, request: &ApiRequest) -> ApiResult<Self> {
        let labels = match request.param("labelSelector") {
            Some(s) => LabelSelector::parse(s).map_err(|e| {
                ApiError::bad_request(format!("unable to parse requirement: {}", e.message))
            })?,
            None => LabelSelector::everything(),
        };
        let fields = match request.param("fieldSelector") {
            Some(s) => FieldSelector::parse(s).map_err(|e| ApiError::bad_request(e.message))?,
            None => FieldSelector::default(),
        };
        for requirement in fields.requirements() {
            if !field_supported(&target.def, &requirement.field) {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {}",
                    requirement.field
                )));
            }
        }
        Ok(Selectors { labels, fields })
    }

    /// Matches a stored object, parsing it only for field selectors beyond name and namespace.
    pub fn matches_stored(&self, object: &Stored) -> bool {
        if !self.labels.is_everything() && !self.labels.matches_map(&object.labels) {
            return false;
        }
        if self.fields.is_everything() {
            return true;
        }
        let metadata_only = self
            .fields
            .requirements()
            .iter()
            .all(|r| r.field == "metadata.name" || r.field == "metadata.namespace");
        if metadata_only {
            let skeleton = serde_json::json!({"metadata": {"name": object.name, "namespace": object.namespace}});
            self.fields.matches_object(&skeleton)
        } else {
            self.fields.matches_object(&object.value())
        }
    }

    pub fn is_everything(&self) -> bool {
        self.labels.is_everything() && self.fields.is_everything()
    }
}

/// Field selectors a real server accepts per kind, beyond metadata.name/namespace.
fn field_supported(def: &ResourceDef, field: &str) -> bool {
    if field == "metadata.name" || field == "metadata.namespace" {
        return true;
    }
    match (def.group.as_str(), def.plural.as_str()) {
        ("", "pods") => matches!(
            field,
            "spec.nodeName"
                | "spec.restartPolicy"
                | "spec.schedulerName"
                | "spec.serviceAccountName"
                | "spec.hostNetwork"
                | "status.phase"
                | "status.podIP"
                | "status.nominatedNodeName"
        ),
        ("", "events") => {
            field.starts_with("involvedObject.")
                || matches!(field, "reason" | "source" | "type" | "reportingComponent")
        }
        ("events.k8s.io", "events") => {
            field.starts_with("regarding.")
                || matches!(field, "reason" | "type" | "reportingController")
        }
        ("", "secrets") => field == "type",
        ("", "namespaces") => field == "status.phase",
        ("apps", "replicasets") => field == "status.replicas",
        ("batch", "jobs") => field == "status.successful",
        _ => false,
    }
}

/// The opaque `continue` token: the resourceVersion of the first page and the last key served.
fn encode_continue(rv: u64, last: &ObjectName) -> String {
    let raw = serde_json::json!([rv, last.0, last.1]).to_string();
    raw.bytes().map(|b| format!("{b:02x}")).collect()
}

fn decode_continue(token: &str) -> ApiResult<(u64, ObjectName)> {
    let invalid = || ApiError::bad_request("continue key is not valid: illegal base64 data");
    if !token.len().is_multiple_of(2) {
        return Err(invalid());
    }
    let bytes: Vec<u8> = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(token.get(i..i + 2).unwrap_or(""), 16))
        .collect::<Result<_, _>>()
        .map_err(|_| invalid())?;
    let (rv, ns, name): (u64, String, String) =
        serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    Ok((rv, (ns, name)))
}

fn list(server: &ApiServer, target: &Target, request: &ApiRequest) -> ApiResult<Response> {
    let selectors = Selectors::from_request(target, request)?;
    let limit = match request.param("limit") {
        Some(l) => l
            .parse::<usize>()
            .map_err(|_| ApiError::bad_request(format!("invalid limit: {l:?}")))?,
        None => 0,
    };
    let (first_rv, after) = match request.param("continue") {
        Some(token) => {
            let (rv, last) = decode_continue(token)?;
            (Some(rv), Some(last))
        }
        None => (None, None),
    };
    let gr = target.gr();
    let mut items: Vec<Arc<Stored>> = Vec::new();
    let mut next: Option<ObjectName> = None;
    let mut remaining = 0usize;
    let rv;
    {
        let state = server.lock();
        rv = first_rv.unwrap_or(state.rv);
        let mut iter = state.range(&gr, target.namespace.as_deref(), after);
        for (key, object) in iter.by_ref() {
            if !selectors.matches_stored(object) {
                continue;
            }
            if limit > 0 && items.len() == limit {
                next = Some(key.clone());
                remaining = 1;
                break;
            }
            items.push(Arc::clone(object));
        }
        if next.is_some() && selectors.is_everything() {
            remaining += iter.count();
        }
    }
    // The token names the last item served so the next page starts right after it.
    let continue_token = match (&next, items.last()) {
        (Some(_), Some(last)) => {
            let last_key = (last.namespace.clone(), last.name.clone());
            Some(encode_continue(rv, &last_key))
        }
        _ => None,
    };
    let api_version = target.api_version();
    match rendering(request.accept()) {
        Rendering::Table => {
            let served_items: Vec<Value> = items.iter().map(|o| served(o, &api_version)).collect();
            let mut doc = table::table(target, &served_items, rv, request);
            if let Some(token) = &continue_token {
                doc["metadata"]["continue"] = Value::String(token.clone());
            }
            Ok(json_response(StatusCode::OK, &doc))
        }
        rendering => {
            let mut metadata = serde_json::Map::new();
            metadata.insert("resourceVersion".into(), Value::String(rv.to_string()));
            if let Some(token) = continue_token {
                metadata.insert("continue".into(), Value::String(token));
                if selectors.is_everything() {
                    metadata.insert("remainingItemCount".into(), Value::from(remaining as u64));
                }
            }
            let (kind, list_api_version) = if rendering == Rendering::Metadata {
                (
                    "PartialObjectMetadataList".to_owned(),
                    "meta.k8s.io/v1".to_owned(),
                )
            } else {
                (target.def.list_kind.clone(), api_version.clone())
            };
            let mut out = Vec::with_capacity(items.len() * 512 + 256);
            out.extend_from_slice(b"{\"kind\":");
            write_json(&mut out, &Value::String(kind));
            out.extend_from_slice(b",\"apiVersion\":");
            write_json(&mut out, &Value::String(list_api_version));
            out.extend_from_slice(b",\"metadata\":");
            write_json(&mut out, &Value::Object(metadata));
            out.extend_from_slice(b",\"items\":[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                match rendering {
                    Rendering::Metadata => write_json(&mut out, &partial_metadata(&item.value())),
                    _ => out.extend_from_slice(&served_bytes(item, &api_version)),
                }
            }
            out.extend_from_slice(b"]}");
            Ok(bytes_response(StatusCode::OK, out))
        }
    }
}

fn write_json(out: &mut Vec<u8>, value: &Value) {
    // Serializing a `Value` into memory cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
}
