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

/// Ready when the store answers and schemes are loaded. Degraded, and saying which, when an
/// isolated plugin's process is down (it is started again), when stored systems name a scheme
/// no loaded plugin serves (`missing`: those systems answer `cannot_serve`), or when the store
/// is read but cannot be written (`store.writes`: a full or read-only file system; stored
/// secrets are still served, renewals and changes fail until a write succeeds again).
pub(crate) async fn readyz(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let by_scheme = state
        .with_store(|store| store.count_by_scheme())
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", e.message()))?;
    let systems: u64 = by_scheme.values().sum();
    let registry = state.engine.registry();
    let schemes: Vec<String> = registry.schemes().map(|s| s.id().to_owned()).collect();
    // Ready with a plugin down: every other scheme still serves, and it is started again.
    let mut degraded: Vec<&str> =
        registry.schemes().filter(|s| s.degraded()).map(|s| s.id()).collect();
    let missing: Vec<Value> = by_scheme
        .iter()
        .filter(|(scheme, _)| registry.get(scheme).is_none())
        .map(|(scheme, count)| json!({"scheme": scheme, "systems": count}))
        .collect();
    degraded.extend(missing.iter().filter_map(|m| m["scheme"].as_str()));
    if schemes.is_empty() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "no scheme is loaded",
        ));
    }
    let writes = state.engine.store().write_failure();
    let status = if degraded.is_empty() && writes.is_none() { "ok" } else { "degraded" };
    let store = match writes {
        Some(reason) => json!({"writes": "failing", "reason": reason}),
        None => json!({"writes": "ok"}),
    };
    Ok(Json(json!({"ready": true, "status": status, "schemes": schemes, "degraded": degraded,
                   "missing": missing, "systems": systems, "store": store})))
}

/// Prometheus text exposition; no secret, no system id.
pub(crate) async fn metrics(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let states = state.with_store(|store| store.count_by_state()).await?;
    let mut body = state.metrics.render(&states, state.engine.authorize_cache_counts());
    crate::metrics::render_cache(&mut body, state.engine.authorize_cache_size());
    crate::metrics::render_plugins(&mut body, state.engine.registry());
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response())
}
