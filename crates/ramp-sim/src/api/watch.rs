//! Watch streams: newline-delimited `{"type", "object"}` events over a chunked response,
//! resuming from a resourceVersion (410 Gone once it left the bounded history), with
//! bookmarks, `sendInitialEvents`, timeouts, selector transitions, and the cuts a restart or
//! a fault injects.

use super::server::{
    ApiRequest, ApiServer, Rendering, Selectors, Target, partial_metadata, rendering, served,
    served_bytes,
};
use super::status::{ApiError, ApiResult};
use super::store::{EventKind, Stored, WatchEvent};
use super::table;
use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

/// What one watcher wants to see and how.
struct Watcher {
    target_namespace: Option<String>,
    selectors: Selectors,
    rendering: Rendering,
    api_version: String,
    kind: String,
    target: Target,
    request_query: ApiRequest,
}

impl Watcher {
    fn frame(&self, kind: &str, object: &Stored) -> Bytes {
        let mut out = Vec::with_capacity(object.json.len() + 32);
        out.extend_from_slice(b"{\"type\":\"");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\",\"object\":");
        match self.rendering {
            Rendering::Object => out.extend_from_slice(&served_bytes(object, &self.api_version)),
            Rendering::Metadata => {
                let _ = serde_json::to_writer(&mut out, &partial_metadata(&object.value()));
            }
            Rendering::Table => {
                let served_object = served(object, &self.api_version);
                let rv = served_object
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let doc = table::table(
                    &self.target,
                    std::slice::from_ref(&served_object),
                    rv,
                    &self.request_query,
                );
                let _ = serde_json::to_writer(&mut out, &doc);
            }
        }
        out.extend_from_slice(b"}\n");
        Bytes::from(out)
    }

    fn in_scope(&self, namespace: &str) -> bool {
        self.target_namespace
            .as_deref()
            .is_none_or(|ns| ns == namespace)
    }

    /// The frame a change produces for this watcher, if any: selector watches see objects
    /// entering their selection as ADDED and leaving it as DELETED.
    fn event_frame(&self, event: &WatchEvent) -> Option<Bytes> {
        if !self.in_scope(&event.object.namespace) {
            return None;
        }
        let everything = self.selectors.is_everything();
        let now = everything || self.selectors.matches_stored(&event.object);
        let before = everything
            || event
                .previous
                .as_deref()
                .is_some_and(|p| self.selectors.matches_stored(p));
        let kind = match event.kind {
            EventKind::Added if now => "ADDED",
            EventKind::Modified => match (before, now) {
                (true, true) => "MODIFIED",
                (false, true) => "ADDED",
                (true, false) => "DELETED",
                (false, false) => return None,
            },
            EventKind::Deleted if before || now => "DELETED",
            _ => return None,
        };
        Some(self.frame(kind, &event.object))
    }

    fn bookmark(&self, rv: u64, initial_events_end: bool) -> Bytes {
        let mut metadata = json!({"resourceVersion": rv.to_string()});
        if initial_events_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let event = json!({
            "type": "BOOKMARK",
            "object": {"kind": self.kind, "apiVersion": self.api_version, "metadata": metadata},
        });
        let mut out = serde_json::to_vec(&event).unwrap_or_default();
        out.push(b'\n');
        Bytes::from(out)
    }
}

fn error_frame(err: &ApiError) -> Bytes {
    let mut out = serde_json::to_vec(&json!({"type": "ERROR", "object": err.to_status()}))
        .unwrap_or_default();
    out.push(b'\n');
    Bytes::from(out)
}

fn too_old(requested: u64, oldest: u64) -> ApiError {
    ApiError::gone(format!("too old resource version: {requested} ({oldest})"))
}

fn stream_response(rx: futures::channel::mpsc::Receiver<Bytes>) -> Response {
    let body = Body::from_stream(rx.map(Ok::<Bytes, Infallible>));
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

pub fn watch(
    server: &Arc<ApiServer>,
    target: &Target,
    request: &ApiRequest,
) -> ApiResult<Response> {
    let selectors = Selectors::from_request(target, request)?;
    let send_initial = request.flag("sendInitialEvents");
    if send_initial && request.param("resourceVersionMatch") != Some("NotOlderThan") {
        return Err(ApiError::bad_request(
            "sendInitialEvents is forbidden for watch unless resourceVersionMatch is set to NotOlderThan",
        ));
    }
    let allow_bookmarks = request.flag("allowWatchBookmarks");
    let timeout = match request.param("timeoutSeconds") {
        Some(t) => Some(Duration::from_secs(t.parse().map_err(|_| {
            ApiError::bad_request(format!("invalid timeoutSeconds: {t:?}"))
        })?)),
        None => None,
    };
    let requested_rv = match request.param("resourceVersion") {
        None | Some("0") => None,
        Some(v) => Some(
            v.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {v:?}")))?,
        ),
    };
    let gr = target.gr();
    let namespace = target.namespace.clone();
    let watcher = Watcher {
        target_namespace: namespace.clone(),
        selectors,
        rendering: rendering(request.accept()),
        api_version: target.api_version(),
        kind: target.def.kind.clone(),
        target: Target {
            def: Arc::clone(&target.def),
            version: target.version.clone(),
            namespace: target.namespace.clone(),
            name: None,
            subresource: None,
        },
        request_query: ApiRequest {
            method: request.method.clone(),
            query: request.query.clone(),
            headers: request.headers.clone(),
            body: Bytes::new(),
        },
    };
    let (tx, rx) = futures::channel::mpsc::channel::<Bytes>(64);
    let subscription = {
        let mut state = server.lock();
        let current = state.rv;
        let (initial, from) = match (requested_rv, send_initial) {
            (Some(rv), false) => (Vec::new(), rv),
            // No version (or sendInitialEvents): the current state as ADDED, then changes.
            _ => (
                state
                    .range(&gr, namespace.as_deref(), None)
                    .map(|(_, o)| Arc::clone(o))
                    .collect(),
                current,
            ),
        };
        state
            .subscribe(&gr, from)
            .map(|(replay, live)| (initial, replay, live, from))
    };
    let (initial, replay, mut live, from) = match subscription {
        Ok(s) => s,
        Err(old) => {
            let frame = error_frame(&too_old(requested_rv.unwrap_or(0), old.oldest));
            let mut tx = tx;
            tokio::spawn(async move {
                let _ = tx.send(frame).await;
            });
            return Ok(stream_response(rx));
        }
    };
    let cut_after = server.faults.watch_cut_after();
    let ends_at = [timeout, cut_after]
        .into_iter()
        .flatten()
        .min()
        .map(|d| Instant::now() + d);
    let server = Arc::clone(server);
    let mut restarts = server.restarts.subscribe();
    tokio::spawn(async move {
        let mut tx = tx;
        for object in &initial {
            if !watcher.in_scope(&object.namespace) || !watcher.selectors.matches_stored(object) {
                continue;
            }
            if tx.send(watcher.frame("ADDED", object)).await.is_err() {
                return;
            }
        }
        if send_initial && tx.send(watcher.bookmark(from, true)).await.is_err() {
            return;
        }
        for event in &replay {
            if let Some(frame) = watcher.event_frame(event)
                && tx.send(frame).await.is_err()
            {
                return;
            }
        }
        let mut ticker = tokio::time::interval(server.bookmark_interval);
        ticker.tick().await;
        let deadline = async {
            match ends_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                event = live.recv() => match event {
                    Ok(event) => {
                        if let Some(frame) = watcher.event_frame(&event)
                            && tx.send(frame).await.is_err()
                        {
                            return;
                        }
                    }
                    Err(RecvError::Lagged(_)) => {
                        // A watcher too slow for the fan-out is cut like a real server cuts it.
                        let _ = tx.send(error_frame(&too_old(from, from))).await;
                        return;
                    }
                    Err(RecvError::Closed) => return,
                },
                _ = &mut deadline => return,
                _ = restarts.changed() => return,
                _ = ticker.tick() => {
                    if tx.is_closed() {
                        return;
                    }
                    if allow_bookmarks {
                        // Only a version every earlier event was already sent for is safe.
                        let safe_rv = {
                            let state = server.lock();
                            live.is_empty().then_some(state.rv)
                        };
                        if let Some(rv) = safe_rv
                            && tx.send(watcher.bookmark(rv, false)).await.is_err()
                        {
                            return;
                        }
                    }
                }
            }
        }
    });
    Ok(stream_response(rx))
}
