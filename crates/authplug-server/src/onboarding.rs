//! Onboarding over HTTP: `POST /v1/systems/{id}/onboard` starts a connector's onboarding with the
//! secrets the caller gives, and either finishes at once or answers the consent URL; the
//! provider sends the browser back to `GET /v1/onboarding/callback`, whose `state` must match a
//! pending onboarding, once. The continuation (the PKCE verifier) never leaves the server side:
//! it waits sealed in the store, so the callback may reach any instance sharing it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use authplug_connector::Connector;
use authplug_protocol::{OnboardRequest, OnboardStep, Resume, Secret};
use authplug_store::NewSystem;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use zeroize::Zeroizing;

use crate::auth::Caller;
use crate::routes::{permitted, with_store, ApiError};
use crate::AppState;

/// How long a consent may take.
const PENDING_FOR: Duration = Duration::from_secs(600);

/// One onboarding: what it will store once the scheme is done. Holds secrets: kept only
/// sealed in the store while the consent runs, never printed.
#[derive(Serialize, Deserialize)]
struct Onboarding {
    system: String,
    scheme: String,
    /// The scheme's required secrets and parameters.
    request: OnboardRequest,
    /// The user's secrets the connector itself asks for (stored with the required ones).
    extras: BTreeMap<String, Secret>,
    actor: String,
    /// Where the callback sends the browser when done (a path of this server), if anywhere.
    return_to: Option<String>,
    /// What is recorded of the connector on the system (`connector_parameter`).
    record: Value,
}

/// An onboarding waiting for its callback: kept in the store under its `state`, so the
/// browser may come back to any instance sharing the store, and only once.
#[derive(Serialize, Deserialize)]
struct Pending {
    onboarding: Onboarding,
    continuation: Secret,
}

async fn keep_pending(
    state: &Arc<AppState>,
    key: String,
    pending: &Pending,
) -> Result<(), ApiError> {
    let bytes = Zeroizing::new(
        serde_json::to_vec(pending)
            .map_err(|_| ApiError::internal("cannot encode an onboarding"))?,
    );
    with_store(state, move |store| store.put_pending_onboarding(&key, &bytes, PENDING_FOR)).await
}

/// The pending onboarding of `state`, removed from the store: a state is good for one callback.
async fn take_pending(state: &Arc<AppState>, key: String) -> Result<Option<Pending>, ApiError> {
    let Some(bytes) = with_store(state, move |store| store.take_pending_onboarding(&key)).await?
    else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|_| ApiError::internal("a pending onboarding could not be read back"))
}

#[derive(Debug, Deserialize)]
pub struct Start {
    /// A connector the server was started with (`--connectors`).
    connector: String,
    /// The scheme's required secrets and the connector's extra ones.
    #[serde(default)]
    secrets: BTreeMap<String, Secret>,
    /// Scheme parameters over the manifest's (e.g. `account_id`).
    #[serde(default)]
    parameters: BTreeMap<String, Value>,
    /// Onboard an existing system again.
    #[serde(default)]
    replace: bool,
    /// A path of this server the callback sends the browser back to, with `#connected=<id>`
    /// (the web page's own); without it the callback answers a short page.
    #[serde(default)]
    return_to: Option<String>,
}

/// Only a path of this server: printable ASCII starting with one `/`, without a backslash or a
/// fragment, so the callback cannot be turned into an open redirect (browsers drop tabs and
/// read `\\` as `/`, which would make `/<tab>/host` or `/\\host` another origin).
fn local_path(path: &str) -> bool {
    path.starts_with('/')
        && !path.starts_with("//")
        && path.bytes().all(|b| b.is_ascii_graphic() && b != b'\\' && b != b'#')
}

#[cfg(test)]
mod tests {
    use super::local_path;

    #[test]
    fn return_to_is_a_path_of_this_server_only() {
        for good in ["/", "/ui/", "/?tab=systems"] {
            assert!(local_path(good), "{good}");
        }
        for bad in [
            "",
            "https://evil.example/",
            "//evil.example",
            "/\\evil.example",
            "\\/evil.example",
            "/\t/evil.example",
            "/ /x",
            "/#x",
            "/\r\nLocation: x",
            "evil",
        ] {
            assert!(!local_path(bad), "{bad:?}");
        }
    }
}

/// `POST /v1/systems/{id}/onboard` (admin).
pub async fn start(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    // The token first: a caller without one learns nothing, not even how to shape a body.
    let caller = permitted(&state, &headers, Caller::is_admin, || "onboard systems".to_owned())?;
    let bad = |message: String| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message);
    let start: Start = serde_json::from_slice(&body).map_err(|e| {
        bad(format!(
            "the body is not an onboarding request ({:?} error at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        ))
    })?;
    if let Some(path) = start.return_to.as_deref().filter(|p| !local_path(p)) {
        return Err(bad(format!("return_to {path:?} is not a path of this server (/...)")));
    }
    let connectors = state.connectors();
    let connector = connectors.get(&start.connector).ok_or_else(|| {
        let known: Vec<&String> = connectors.keys().collect();
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
    let found = id.clone();
    let exists = with_store(&state, move |store| store.get(&found).map(|r| r.is_some())).await?;
    if exists && !start.replace {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "exists",
            format!("system {id} exists: send \"replace\": true to onboard it again"),
        ));
    }
    // The scheme's user secrets, then the connector's own (a webhook secret is made up when
    // none is given).
    let (mut required, mut extras, mut missing) = (BTreeMap::new(), BTreeMap::new(), Vec::new());
    for wanted in manifest.onboarding_inputs(scheme.descriptor()) {
        let value = match start.secrets.get(&wanted.name) {
            Some(value) => value.clone(),
            None if wanted.generated => Secret::new(random_hex()?),
            None if wanted.optional => continue,
            None => {
                missing.push(wanted.name);
                continue;
            }
        };
        let into = if wanted.for_scheme { &mut required } else { &mut extras };
        into.insert(wanted.name, value);
    }
    if !missing.is_empty() {
        return Err(bad(format!("missing required secret(s): {}", missing.join(", "))));
    }
    let mut parameters = connector.scheme_parameters();
    parameters.extend(start.parameters.clone());
    let record = authplug_connector::connector_parameter(connector, extras.keys());
    let onboarding = Onboarding {
        system: id.clone(),
        scheme: scheme.id().to_owned(),
        request: OnboardRequest {
            required,
            parameters,
            redirect_uri: Some(format!("{}/v1/onboarding/callback", state.public_url)),
            ..OnboardRequest::default()
        },
        extras,
        actor: format!("api:{}", caller.name),
        return_to: start.return_to.clone(),
        record,
    };
    match onboard(&state, &onboarding.scheme, onboarding.request.clone()).await? {
        OnboardStep::Redirect { url, state: consent_state, continuation } => {
            keep_pending(&state, consent_state, &Pending { onboarding, continuation }).await?;
            Ok(Json(json!({"step": "redirect", "system": id, "url": url})).into_response())
        }
        OnboardStep::Done { injected, expires_at, outputs } => {
            let stored = store(&state, onboarding, injected, expires_at, outputs).await?;
            Ok(Json(json!({"step": "done", "system": id, "state": stored})).into_response())
        }
    }
}

fn random_hex() -> Result<String, ApiError> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|_| ApiError::internal("no randomness"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The callback's query. No `Debug`: it holds the authorization code.
#[derive(Deserialize)]
pub struct Callback {
    state: Option<String>,
    #[serde(flatten)]
    rest: BTreeMap<String, String>,
}

/// `GET /v1/onboarding/callback`: the browser back from the consent. A person reads the
/// answer, so errors are a short HTML page (with the same status) rather than JSON.
pub async fn callback(state: State<Arc<AppState>>, query: Query<Callback>) -> Response {
    match finish_consent(state, query).await {
        Ok(response) => response,
        Err(error) => error.page(),
    }
}

async fn finish_consent(
    State(state): State<Arc<AppState>>,
    Query(query): Query<Callback>,
) -> Result<Response, ApiError> {
    let refused =
        |message: &str| ApiError::new(StatusCode::BAD_REQUEST, "bad_state", message.to_owned());
    let consent_state = query.state.clone().ok_or_else(|| refused("the callback has no state"))?;
    let pending = take_pending(&state, consent_state.clone()).await?.ok_or_else(|| {
        refused("unknown, expired or already used state: start the onboarding again")
    })?;
    let return_to = pending.onboarding.return_to.clone();
    let outcome = resume(&state, pending, consent_state, query.rest).await;
    // Back to the page with the outcome's code only: a crafted link cannot put words in it.
    match (outcome, return_to) {
        (Ok(system), Some(path)) => Ok(back(&path, "connected", &system)),
        (Err(error), Some(path)) => Ok(back(&path, "error", error.code())),
        (Ok(system), None) => Ok(Html(format!(
            "<!doctype html><title>authplug</title><p>System <b>{}</b> is connected. You can close this window.</p>\n",
            html_escape(&system)
        ))
        .into_response()),
        (Err(error), None) => Err(error),
    }
}

/// Resumes the scheme's onboarding with the provider's answer and stores the result: the
/// system's id.
async fn resume(
    state: &Arc<AppState>,
    pending: Pending,
    consent_state: String,
    mut callback: BTreeMap<String, String>,
) -> Result<String, ApiError> {
    if let Some(error) = callback.get("error") {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "consent_refused",
            format!("the provider refused the consent: {error}"),
        ));
    }
    let Pending { onboarding, continuation } = pending;
    callback.insert("state".into(), consent_state);
    let mut request = onboarding.request.clone();
    request.resume = Some(Resume { continuation, callback });
    let step = onboard(state, &onboarding.scheme, request).await?;
    let OnboardStep::Done { injected, expires_at, outputs } = step else {
        return Err(ApiError::internal("the scheme asked for a second consent"));
    };
    let system = onboarding.system.clone();
    store(state, onboarding, injected, expires_at, outputs).await?;
    Ok(system)
}

/// `303 See Other` to the page the onboarding came from, the outcome in the fragment (which no
/// server log or referrer sees).
fn back(path: &str, key: &str, value: &str) -> Response {
    let fragment: String =
        url::form_urlencoded::Serializer::new(String::new()).append_pair(key, value).finish();
    Redirect::to(&format!("{path}#{fragment}")).into_response()
}

pub(crate) fn html_escape(text: &str) -> String {
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
async fn store(
    state: &Arc<AppState>,
    onboarding: Onboarding,
    injected: BTreeMap<String, Secret>,
    expires_at: Option<i64>,
    outputs: BTreeMap<String, Value>,
) -> Result<&'static str, ApiError> {
    let Onboarding { system, scheme, request, extras, actor, record, .. } = onboarding;
    let mut parameters = request.parameters;
    parameters.extend(outputs);
    parameters.insert(authplug_connector::CONNECTOR_PARAMETER.into(), record);
    let mut required = request.required;
    required.extend(extras);
    let system_id = system.clone();
    let new = NewSystem { id: system, scheme, parameters, required, injected, expires_at };
    // Replacing: the onboarding was started with "replace", or for a system that did not exist.
    let stored = with_store(state, move |store| {
        let (_, replaced) = store.onboarded(new, true, &actor)?;
        Ok(if replaced { "replaced" } else { "created" })
    })
    .await;
    // Earlier authorize answers of a system onboarded again are not reused.
    state.engine.forget(&system_id);
    stored
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
