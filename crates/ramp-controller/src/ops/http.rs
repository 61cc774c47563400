//! The operator's HTTP endpoints: `/metrics` (Prometheus text) and `/healthz`, `/readyz`.
//! Serves what `Metrics` and `Health` report and nothing else; no state lives here.

use super::health::Health;
use super::metrics::{CONTENT_TYPE, Metrics};
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use std::sync::Arc;

/// `GET /metrics`.
pub fn metrics_routes(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(metrics)
}

/// `GET /healthz` (200 "ok" while the process serves) and `GET /readyz` (200 "ok: <state>", or
/// 503 "not ready: <why>", naming each watch down past its grace period and for how long).
pub fn health_routes(health: Arc<Health>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .with_state(health)
}

/// Serves `router` on `listener` until the task is dropped or the listener fails.
pub async fn serve(listener: tokio::net::TcpListener, router: Router) -> std::io::Result<()> {
    axum::serve(listener, router).await
}

async fn scrape(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], metrics.render())
}

async fn ready(State(health): State<Arc<Health>>) -> impl IntoResponse {
    match health.readiness() {
        Ok(state) => (StatusCode::OK, format!("ok: {state}")),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}"),
        ),
    }
}
