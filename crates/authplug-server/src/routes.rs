//! The HTTP API. Every route but the probes wants `Authorization: Bearer <token>`; a missing or
//! unknown token is 401, a token without the scope 403. Errors are `{"error", "message"}` and
//! never carry a secret.

use std::collections::BTreeMap;
use std::sync::Arc;

use authplug_engine::EngineError;
use authplug_protocol::Source;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::AppState;

/// The routes, with `Cache-Control: no-store` on every answer.
pub fn router(state: Arc<AppState>) -> Router {
    let page = if state.web_page { crate::ui::routes() } else { Router::new() };
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/connectors", get(connectors))
        .route("/v1/systems", get(list))
        .route("/v1/systems/{id}", get(show).delete(delete))
        .route("/v1/systems/{id}/secrets", get(secrets))
        .route("/v1/systems/{id}/authorize", post(authorize))
        .route("/v1/systems/{id}/onboard", post(crate::onboarding::start))
        .route("/v1/onboarding/callback", get(crate::onboarding::callback))
        .merge(page)
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .layer(axum::middleware::map_response(no_store))
        .layer(axum::middleware::from_fn_with_state(state.clone(), measure))
        .with_state(state)
}

/// Counts and times every request by its route pattern (never the path: it holds system ids).
async fn measure(
    State(state): State<Arc<AppState>>,
    matched: Option<axum::extract::MatchedPath>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let route = matched.map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    state.metrics.request(&route, response.status().as_u16(), started.elapsed());
    response
}

/// The OpenAPI document of these routes.
pub const OPENAPI: &str = include_str!("openapi.json");

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// Prometheus text exposition; no secret, no system id.
async fn metrics(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let mut states = with_store(&state, |store| store.count_by_state()).await?;
    for known in ["active", "needs_reauth"] {
        states.entry(known.to_owned()).or_insert(0);
    }
    let body = state.metrics.render(&states, state.engine.authorize_cache_counts());
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The document describes exactly the routes the router serves.
    #[test]
    fn the_openapi_document_describes_every_route() {
        let document: Value = serde_json::from_str(OPENAPI).unwrap();
        let mut described: Vec<String> = Vec::new();
        for (path, item) in document["paths"].as_object().unwrap() {
            for method in ["get", "post", "delete"] {
                if item.get(method).is_some() {
                    described.push(format!("{} {path}", method.to_uppercase()));
                }
            }
        }
        described.sort();
        let source = include_str!("routes.rs");
        let mut served: Vec<String> = Vec::new();
        for line in source.lines().map(str::trim).filter(|l| l.starts_with(".route(\"")) {
            let path = line.split('"').nth(1).unwrap();
            let handlers = line.split_once(", ").unwrap().1;
            for (method, call) in [("GET", "get("), ("POST", "post("), ("DELETE", "delete(")] {
                if handlers.starts_with(call) || handlers.contains(&format!(".{call}")) {
                    served.push(format!("{method} {path}"));
                }
            }
        }
        served.sort();
        assert_eq!(described, served);
    }
}

async fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub(crate) fn internal(message: &str) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }
}

impl ApiError {
    /// The machine-readable code (`bad_state`, `consent_refused`, `onboarding_failed`, ...).
    pub(crate) fn code(&self) -> &'static str {
        self.code
    }

    /// The error as a page for a person (the browser back from a consent), with a way back.
    pub(crate) fn page(self) -> Response {
        let body = format!(
            "<!doctype html><title>authplug</title><h1>Not connected</h1><p>{}</p><p><a href=\"/\">Back to authplug</a></p>\n",
            crate::onboarding::html_escape(&self.message)
        );
        (self.status, axum::response::Html(body)).into_response()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response =
            (self.status, Json(json!({"error": self.code, "message": self.message})))
                .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<EngineError> for ApiError {
    fn from(error: EngineError) -> Self {
        let (status, code) = match &error {
            EngineError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            EngineError::NeedsReauth { .. } => (StatusCode::CONFLICT, "needs_reauth"),
            EngineError::Unavailable { .. } => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            EngineError::Busy { .. } => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
            EngineError::SchemeNotLoaded { .. } | EngineError::CannotRenew { .. } => {
                (StatusCode::CONFLICT, "cannot_serve")
            }
            EngineError::Store(_) | EngineError::Scheme { .. } => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        };
        ApiError::new(status, code, error.to_string())
    }
}

impl From<authplug_store::StoreError> for ApiError {
    fn from(error: authplug_store::StoreError) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "store", error.to_string())
    }
}

/// Runs store work on a blocking thread: the store is synchronous (SQLite, `postgres`).
pub(crate) async fn with_store<T: Send + 'static>(
    state: &AppState,
    work: impl FnOnce(&authplug_store::Store) -> Result<T, authplug_store::StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    let engine = state.engine.clone();
    tokio::task::spawn_blocking(move || work(engine.store()))
        .await
        .map_err(|_| ApiError::internal("a store task ended abnormally"))?
        .map_err(ApiError::from)
}

/// The caller behind the request's bearer token.
pub(crate) fn caller(state: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "a bearer token is required")
        })?;
    state
        .tokens
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .caller(token.trim())
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "unknown token"))
}

/// The caller behind the request's bearer token, if its scopes allow what it asks
/// (`allowed`): 401 without a known token, 403 naming `what` without the scope.
pub(crate) fn permitted(
    state: &AppState,
    headers: &HeaderMap,
    allowed: impl FnOnce(&Caller) -> bool,
    what: impl FnOnce() -> String,
) -> Result<Caller, ApiError> {
    let caller = caller(state, headers)?;
    if allowed(&caller) {
        Ok(caller)
    } else {
        Err(forbidden(&caller, &what()))
    }
}

fn forbidden(caller: &Caller, what: &str) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!("token {} may not {what}", caller.name),
    )
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready when the store answers and schemes are loaded.
async fn readyz(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let systems =
        with_store(&state, |store| store.count_by_state().map(|c| c.values().sum::<u64>()))
            .await
            .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", e.message))?;
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

fn summary_json(summary: &authplug_store::SystemSummary) -> Value {
    json!({
        "id": summary.id,
        "scheme": summary.scheme,
        "connector": summary
            .parameters
            .get(authplug_connector::CONNECTOR_PARAMETER)
            .and_then(|c| c.get("name")),
        "state": summary.state.as_str(),
        "state_reason": summary.state_reason,
        "expires_at": summary.expires_at,
        "last_refresh_at": summary.last_refresh_at,
        "failures": summary.failures,
        "version": summary.version,
        "secret_names": summary.secret_names,
    })
}

async fn list(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    permitted(&state, &headers, Caller::is_admin, || "list systems".to_owned())?;
    let systems = with_store(&state, |store| store.list()).await?;
    Ok(Json(json!({"systems": systems.iter().map(summary_json).collect::<Vec<_>>()})))
}

/// The connectors users may onboard (`--connectors`), each with the inputs its onboarding
/// wants: the scheme's user secrets, then the connector's own. What the web page builds its
/// form from; no value, only names and descriptions.
async fn connectors(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    permitted(&state, &headers, Caller::is_admin, || "list connectors".to_owned())?;
    let listed: Vec<Value> = state
        .connectors()
        .iter()
        .map(|(name, connector)| {
            let manifest = &connector.manifest;
            let scheme = manifest.auth.as_deref().and_then(|auth| {
                state.engine.registry().resolve(auth, manifest.auth_variant.as_deref())
            });
            let wanted = match scheme {
                Some(scheme) => manifest.onboarding_inputs(scheme.descriptor()),
                None => manifest.connector_secrets(),
            };
            let inputs: Vec<Value> = wanted
                .into_iter()
                .map(|input| {
                    json!({
                        "name": input.name,
                        "description": input.description,
                        "secret": input.secret,
                        "optional": input.optional,
                        "generated": input.generated,
                    })
                })
                .collect();
            json!({
                "name": name,
                "display_name": manifest.system.clone().unwrap_or_else(|| name.clone()),
                "auth": manifest.auth,
                "auth_variant": manifest.auth_variant,
                "scheme": scheme.map(|s| s.id()),
                "inputs": inputs,
            })
        })
        .collect();
    Ok(Json(json!({"connectors": listed})))
}

async fn show(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    permitted(&state, &headers, |c| c.may_see(&id), || format!("see system {id}"))?;
    let found = id.clone();
    let summary = with_store(&state, move |store| store.get(&found).map(|r| r.map(|r| r.summary)))
        .await?
        .ok_or_else(|| {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no system {id}"))
        })?;
    Ok(Json(summary_json(&summary)))
}

async fn delete(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let caller = permitted(&state, &headers, Caller::is_admin, || "delete systems".to_owned())?;
    let actor = format!("api:{}", caller.name);
    let target = id.clone();
    let deleted = with_store(&state, move |store| store.delete(&target, &actor)).await?;
    state.engine.forget(&id);
    if deleted {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no system {id}")))
    }
}

/// Secrets that outlive an access token: refresh tokens, and copies of the user's confidential
/// inputs (client secrets, API keys, consumer tokens). Only `long-lived:` scopes read them; a
/// worker that needs them for a call asks `authorize` instead.
fn long_lived(state: &AppState, scheme: &str, name: &str) -> bool {
    if name.contains("refresh_token") {
        return true;
    }
    state.engine.registry().get(scheme).is_some_and(|s| {
        let descriptor = s.descriptor();
        descriptor.injected.iter().any(|i| {
            i.name == name
                && matches!(&i.source, Source::Copied { from }
                    if descriptor.required.iter().any(|r| r.name == *from && r.secret))
        })
    })
}

async fn secrets(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let caller =
        permitted(&state, &headers, |c| c.may_read(&id), || format!("read the secrets of {id}"))?;
    let token = state.engine.token(&id).await?;
    let full = caller.may_read_long_lived(&id);
    let mut given: BTreeMap<&str, &str> = BTreeMap::new();
    let mut withheld = Vec::new();
    for (name, value) in &token.injected {
        if full || !long_lived(&state, &token.scheme, name) {
            given.insert(name, value.expose());
        } else {
            withheld.push(name.as_str());
        }
    }
    // Every secret read is audited: who, which names.
    let (system, actor) = (id.clone(), format!("api:{}", caller.name));
    let names: Vec<String> = given.keys().map(|n| n.to_string()).collect();
    with_store(&state, move |store| {
        store.record_event(&system, &actor, "secrets_read", json!({"secrets": names}))
    })
    .await?;
    Ok(Json(json!({
        "system": id,
        "scheme": token.scheme,
        "expires_at": token.expires_at,
        "refreshed": token.refreshed,
        "secrets": given,
        "withheld": withheld,
    })))
}

async fn authorize(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    permitted(
        &state,
        &headers,
        |c| c.may_authorize(&id),
        || format!("authorize requests of {id}"),
    )?;
    let authorization = state.engine.authorize(&id).await?;
    let pairs = |list: &[(String, authplug_protocol::Secret)]| -> Vec<Value> {
        list.iter().map(|(k, v)| json!([k, v.expose()])).collect()
    };
    Ok(Json(json!({
        "system": id,
        "expires_at": authorization.token.expires_at,
        "headers": pairs(&authorization.applied.headers),
        "query": pairs(&authorization.applied.query),
    })))
}
