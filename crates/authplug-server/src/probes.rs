//! What the platform's probes and scrapers read: `/healthz`, `/readyz`, `/metrics`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::AppState;

/// How long counts are reused when this process has not written to the store since: the bound
/// on how late a change by another instance shows in `/readyz` and `/metrics`.
const COUNTS_TTL: Duration = Duration::from_secs(5);

/// A count over the whole store (by scheme, by state: a scan of an index, 100 ms at a million
/// systems), reused until this process writes to the store or [`COUNTS_TTL`] passes; a probe
/// or scrape every second then costs one count every five, not one each.
#[derive(Debug, Default)]
pub(crate) struct CachedCount {
    kept: Mutex<Option<Counted>>,
}

/// Counts, when they were made, and the store's write count then.
type Counted = (Instant, u64, Arc<BTreeMap<String, u64>>);

impl CachedCount {
    async fn get(
        &self,
        state: &AppState,
        count: fn(&authplug_store::Store) -> authplug_store::Result<BTreeMap<String, u64>>,
    ) -> Result<Arc<BTreeMap<String, u64>>, ApiError> {
        let writes = state.engine.store().writes();
        if let Some((at, seen, counts)) = &*self.kept.lock().unwrap_or_else(|p| p.into_inner()) {
            if *seen == writes && at.elapsed() < COUNTS_TTL {
                return Ok(counts.clone());
            }
        }
        let counts = Arc::new(state.with_store(count).await?);
        let kept = (Instant::now(), writes, counts.clone());
        *self.kept.lock().unwrap_or_else(|p| p.into_inner()) = Some(kept);
        Ok(counts)
    }
}

pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready when the store answers and schemes are loaded. Degraded, and saying which, when an
/// isolated plugin's process is down (it is started again), when stored systems name a scheme
/// no loaded plugin serves (`missing`: those systems answer `cannot_serve`), or when the store
/// is read but cannot be written (`store.writes`: a full or read-only file system; stored
/// secrets are still served, renewals and changes fail until a write succeeds again).
pub(crate) async fn readyz(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let not_ready =
        |e: ApiError| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", e.message());
    // The store answers now (a read by key), whatever the counts' age.
    state.with_store(|store| store.version("readyz")).await.map_err(not_ready)?;
    let by_scheme = state.counts.0.get(&state, |s| s.count_by_scheme()).await.map_err(not_ready)?;
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
    let states = state.counts.1.get(&state, |s| s.count_by_state()).await?;
    let mut body = state.metrics.render(&states, state.engine.authorize_cache_counts());
    crate::metrics::render_cache(&mut body, state.engine.authorize_cache_size());
    let audit = &state.authorize_audit;
    crate::metrics::render_audit(&mut body, audit.waiting(), audit.not_audited());
    crate::metrics::render_plugins(&mut body, state.engine.registry());
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response())
}
