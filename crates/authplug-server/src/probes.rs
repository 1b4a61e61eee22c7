//! What the platform's probes and scrapers read: `/healthz`, `/readyz`, `/metrics`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::AppState;

pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready when the store answers and schemes are loaded.
pub(crate) async fn readyz(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let systems = state
        .with_store(|store| store.count_by_state().map(|c| c.values().sum::<u64>()))
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", e.message()))?;
    let registry = state.engine.registry();
    let schemes: Vec<String> = registry.schemes().map(|s| s.id().to_owned()).collect();
    // Ready with a plugin down: every other scheme still serves, and it is started again.
    let degraded: Vec<&str> = registry.schemes().filter(|s| s.degraded()).map(|s| s.id()).collect();
    if schemes.is_empty() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "no scheme is loaded",
        ));
    }
    Ok(Json(json!({"ready": true, "schemes": schemes, "degraded": degraded, "systems": systems})))
}

/// Prometheus text exposition; no secret, no system id.
pub(crate) async fn metrics(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let states = state.with_store(|store| store.count_by_state()).await?;
    let mut body = state.metrics.render(&states, state.engine.authorize_cache_counts());
    crate::metrics::render_plugins(&mut body, state.engine.registry());
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response())
}
