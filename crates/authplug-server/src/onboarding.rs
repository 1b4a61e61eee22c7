//! Onboarding over HTTP: `POST /v1/systems/{id}/onboard` starts a connector's onboarding with the
//! secrets the caller gives, and either finishes at once or answers the consent URL; the
//! provider sends the browser back to `GET /v1/onboarding/callback`, whose `state` must match a
//! pending onboarding, once. The continuation (the PKCE verifier) never leaves the server.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use authplug_connector::Connector;
use authplug_protocol::{OnboardRequest, OnboardStep, Resume, Secret};
use authplug_store::{Change, NewSystem, State as SystemState, StoreError};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::routes::{caller, forbidden, ApiError};
use crate::AppState;

/// How long a consent may take.
const PENDING_FOR: Duration = Duration::from_secs(600);

/// An onboarding waiting for its callback, by `state`.
pub struct Pending {
    system: String,
    connector: String,
    scheme: String,
    request: OnboardRequest,
    continuation: Secret,
    actor: String,
    since: Instant,
}

/// The pending onboardings (secrets inside: never printed).
#[derive(Default)]
pub struct PendingOnboardings(Mutex<HashMap<String, Pending>>);

impl std::fmt::Debug for PendingOnboardings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let count = self.0.lock().map(|p| p.len()).unwrap_or(0);
        write!(f, "PendingOnboardings({count})")
    }
}

impl PendingOnboardings {
    fn insert(&self, state: String, pending: Pending) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, p| p.since.elapsed() < PENDING_FOR);
        map.insert(state, pending);
    }

    /// The pending onboarding of `state`, removed: a state is good for one callback.
    fn take(&self, state: &str) -> Option<Pending> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(state).filter(|p| p.since.elapsed() < PENDING_FOR)
    }
}

#[derive(Debug, Deserialize)]
pub struct Start {
    /// A connector the server was started with (`--connectors`).
    connector: String,
    /// The scheme's required secrets and the connector's extra ones.
    #[serde(default)]
    secrets: BTreeMap<String, String>,
    /// Scheme parameters over the manifest's (e.g. `account_id`).
    #[serde(default)]
    parameters: BTreeMap<String, Value>,
    /// Onboard an existing system again.
    #[serde(default)]
    replace: bool,
}

/// `POST /v1/systems/{id}/onboard` (admin).
pub async fn start(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    // The token first: a caller without one learns nothing, not even how to shape a body.
    let caller = caller(&state, &headers)?;
    if !caller.is_admin() {
        return Err(forbidden(&caller, "onboard systems"));
    }
    let bad = |message: String| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message);
    let start: Start = serde_json::from_slice(&body).map_err(|e| {
        bad(format!(
            "the body is not an onboarding request ({:?} error at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        ))
    })?;
    let connector = state.connectors.get(&start.connector).ok_or_else(|| {
        let known: Vec<&String> = state.connectors.keys().collect();
        bad(format!("no connector {} (known: {known:?})", start.connector))
    })?;
    let manifest = &connector.manifest;
    let auth = manifest
        .auth
        .as_deref()
        .ok_or_else(|| bad(format!("connector {} needs no authentication", start.connector)))?;
    let scheme = state
        .engine
        .registry()
        .resolve(auth, manifest.auth_variant.as_deref())
        .ok_or_else(|| bad(format!("no loaded scheme serves connector {}", start.connector)))?;
    let exists = {
        let (engine, id) = (state.engine.clone(), id.clone());
        tokio::task::spawn_blocking(move || engine.store().get(&id).map(|r| r.is_some()))
            .await
            .map_err(|_| ApiError::internal("the store check failed"))??
    };
    if exists && !start.replace {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "exists",
            format!("system {id} exists: send \"replace\": true to onboard it again"),
        ));
    }
    let declared: Vec<&str> = scheme
        .descriptor()
        .required
        .iter()
        .filter(|r| !r.operator)
        .map(|r| r.name.as_str())
        .collect();
    let missing: Vec<&&str> =
        declared.iter().filter(|n| !start.secrets.contains_key(**n)).collect();
    if !missing.is_empty() {
        return Err(bad(format!(
            "missing required secret(s): {}",
            missing.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", ")
        )));
    }
    let mut parameters = connector.scheme_parameters();
    parameters.extend(start.parameters.clone());
    let required: BTreeMap<String, Secret> = start
        .secrets
        .iter()
        .filter(|(name, _)| declared.contains(&name.as_str()))
        .map(|(name, value)| (name.clone(), Secret::new(value.clone())))
        .collect();
    let request = OnboardRequest {
        required,
        parameters,
        redirect_uri: Some(format!("{}/v1/onboarding/callback", state.public_url)),
        ..OnboardRequest::default()
    };
    let step = onboard(&state, scheme.id(), request.clone()).await?;
    let actor = format!("api:{}", caller.name);
    match step {
        OnboardStep::Redirect { url, state: consent_state, continuation } => {
            state.pending.insert(
                consent_state,
                Pending {
                    system: id.clone(),
                    connector: start.connector.clone(),
                    scheme: scheme.id().to_owned(),
                    request,
                    continuation,
                    actor,
                    since: Instant::now(),
                },
            );
            Ok(Json(json!({"step": "redirect", "system": id, "url": url})).into_response())
        }
        OnboardStep::Done { injected, expires_at, outputs } => {
            let mut request = request;
            request.parameters.extend(outputs);
            let stored = store(
                &state,
                &id,
                &start.connector,
                scheme.id(),
                request,
                injected,
                expires_at,
                &actor,
            )
            .await?;
            Ok(Json(json!({"step": "done", "system": id, "state": stored})).into_response())
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct Callback {
    state: Option<String>,
    #[serde(flatten)]
    rest: BTreeMap<String, String>,
}

/// `GET /v1/onboarding/callback`: the browser back from the consent.
pub async fn callback(
    State(state): State<Arc<AppState>>,
    Query(query): Query<Callback>,
) -> Result<Response, ApiError> {
    let refused =
        |message: &str| ApiError::new(StatusCode::BAD_REQUEST, "bad_state", message.to_owned());
    let consent_state = query.state.clone().ok_or_else(|| refused("the callback has no state"))?;
    let pending = state.pending.take(&consent_state).ok_or_else(|| {
        refused("unknown, expired or already used state: start the onboarding again")
    })?;
    if let Some(error) = query.rest.get("error") {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "consent_refused",
            format!("the provider refused the consent: {error}"),
        ));
    }
    let mut callback = query.rest.clone();
    callback.insert("state".into(), consent_state);
    let mut request = pending.request.clone();
    request.resume = Some(Resume { continuation: pending.continuation.clone(), callback });
    let step = onboard(&state, &pending.scheme, request.clone()).await?;
    let OnboardStep::Done { injected, expires_at, outputs } = step else {
        return Err(ApiError::internal("the scheme asked for a second consent"));
    };
    request.parameters.extend(outputs);
    request.resume = None;
    store(
        &state,
        &pending.system,
        &pending.connector,
        &pending.scheme,
        request,
        injected,
        expires_at,
        &pending.actor,
    )
    .await?;
    Ok(Html(format!(
        "<!doctype html><title>authplug</title><p>System <b>{}</b> is connected. You can close this window.</p>\n",
        html_escape(&pending.system)
    ))
    .into_response())
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

async fn onboard(
    state: &Arc<AppState>,
    scheme: &str,
    request: OnboardRequest,
) -> Result<OnboardStep, ApiError> {
    let engine = state.engine.clone();
    let scheme = scheme.to_owned();
    tokio::task::spawn_blocking(move || {
        let loaded = engine
            .registry()
            .get(&scheme)
            .ok_or_else(|| ApiError::internal("the scheme is no longer loaded"))?;
        loaded.onboard(request, engine.services()).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "onboarding_failed",
                format!("onboarding failed: {e}"),
            )
        })
    })
    .await
    .map_err(|_| ApiError::internal("the onboarding thread ended abnormally"))?
}

/// Stores the result: a new system, or the existing one onboarded again.
#[allow(clippy::too_many_arguments)]
async fn store(
    state: &Arc<AppState>,
    id: &str,
    connector: &str,
    scheme: &str,
    request: OnboardRequest,
    injected: BTreeMap<String, Secret>,
    expires_at: Option<i64>,
    actor: &str,
) -> Result<&'static str, ApiError> {
    let engine = state.engine.clone();
    let mut parameters = request.parameters;
    parameters.insert("connector".into(), json!({"name": connector}));
    let new = NewSystem {
        id: id.to_owned(),
        scheme: scheme.to_owned(),
        parameters: parameters.clone(),
        required: request.required.clone(),
        injected: injected.clone(),
        expires_at,
    };
    let actor = actor.to_owned();
    tokio::task::spawn_blocking(move || match engine.store().create(new, &actor) {
        Ok(_) => Ok("created"),
        Err(StoreError::Exists(id)) => {
            let current = engine.store().get(&id)?.ok_or(StoreError::NotFound(id.clone()))?;
            let change = Change {
                parameters: Some(parameters),
                required: Some(request.required),
                injected: Some(injected),
                expires_at: Some(expires_at),
                state: Some((SystemState::Active, None)),
                last_refresh_at: Some(authplug_store::now_secs()),
                failures: Some(0),
                ..Change::default()
            };
            engine.store().update(&id, current.summary.version, change, &actor).map(|_| "replaced")
        }
        Err(other) => Err(other),
    })
    .await
    .map_err(|_| ApiError::internal("the store write failed"))?
    .map_err(ApiError::from)
}

/// The connector folders under `dir` (each with a manifest.json), by folder name.
pub fn load_connectors(dir: &std::path::Path) -> Result<BTreeMap<String, Connector>, String> {
    let mut connectors = BTreeMap::new();
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.join("manifest.json").is_file() {
            let connector = Connector::load(&path).map_err(|e| e.to_string())?;
            connectors.insert(connector.name(), connector);
        }
    }
    Ok(connectors)
}
