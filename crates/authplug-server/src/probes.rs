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
    let schemes: Vec<String> =
        state.engine.registry().schemes().map(|s| s.id().to_owned()).collect();
    if schemes.is_empty() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "no scheme is loaded",
        ));
    }
    Ok(Json(json!({"ready": true, "schemes": schemes, "systems": systems})))
}

/// Prometheus text exposition; no secret, no system id.
pub(crate) async fn metrics(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let states = state.with_store(|store| store.count_by_state()).await?;
    let body = state.metrics.render(&states, state.engine.authorize_cache_counts());
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response())
}
