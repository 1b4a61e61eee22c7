//! Onboarding over the API, through the onboarding service (`authplug-onboard`, the same path as
//! `authplug connect`). `POST /v1/systems/{id}/onboard` starts a connector's onboarding with the
//! secrets the caller gives, and either finishes at once or answers the consent URL; the
//! provider sends the browser back to `GET /v1/onboarding/callback`, whose `state` must match a
//! pending onboarding, once. The continuation (the PKCE verifier) never leaves the server side:
//! it waits sealed in the store ([`Park`]), so the callback may reach any instance sharing it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use authplug_onboard::{Given, Outcome, Park, Request};
use authplug_protocol::Secret;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::access::permitted;
use crate::auth::Caller;
use crate::error::{html_escape, ApiError};
use crate::front::SystemId;
use crate::{blocking, AppState};

/// How long a consent may take.
const PENDING_FOR: Duration = Duration::from_secs(600);

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

/// `POST /v1/systems/{id}/onboard` (admin).
pub(crate) async fn start(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    SystemId(id): SystemId,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    // The token first: a caller without one learns nothing, not even how to shape a body.
    let caller = permitted(&state, &headers, Caller::is_admin, || "onboard systems".to_owned())?;
    let start: Start = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body is not an onboarding request ({:?} error at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        ))
    })?;
    if let Some(path) = start.return_to.as_deref().filter(|p| !local_path(p)) {
        return Err(ApiError::bad_request(format!(
            "return_to {path:?} is not a path of this server (/...)"
        )));
    }
    let connectors = state.connectors();
    let Some(connector) = connectors.get(&start.connector) else {
        let known: Vec<&String> = connectors.keys().collect();
        let message = format!("no connector {} (known: {known:?})", start.connector);
        return Err(ApiError::bad_request(message));
    };
    if connector.manifest.auth.is_none() {
        let message = format!("connector {} needs no authentication", start.connector);
        return Err(ApiError::bad_request(message));
    }
    let onboarder = state.onboarder();
    let redirect_uri = format!("{}/v1/onboarding/callback", state.public_url);
    let system = id.clone();
    let outcome = blocking(move || {
        let request = Request {
            connector: &connectors[&start.connector],
            system,
            replace: start.replace,
            actor: format!("api:{}", caller.name),
            redirect_uri: Some(redirect_uri),
            defaults: BTreeMap::new(),
            parameters: start.parameters,
            return_to: start.return_to,
        };
        let plan = onboarder.plan(request, &mut Given::new(&start.secrets, "the request"))?;
        onboarder.run(plan, &mut Park(PENDING_FOR))
    })
    .await?;
    Ok(match outcome {
        Outcome::AwaitingConsent { url } => {
            Json(json!({"step": "redirect", "system": id, "url": url})).into_response()
        }
        Outcome::Done(finished) => {
            let stored = if finished.stored.previous.is_some() { "replaced" } else { "created" };
            Json(json!({"step": "done", "system": id, "state": stored})).into_response()
        }
    })
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
pub(crate) async fn callback(state: State<Arc<AppState>>, query: Query<Callback>) -> Response {
    match finish_consent(state, query).await {
        Ok(response) => response,
        Err(error) => error.page(),
    }
}

async fn finish_consent(
    State(state): State<Arc<AppState>>,
    Query(query): Query<Callback>,
) -> Result<Response, ApiError> {
    let consent_state = query.state.clone().ok_or_else(|| {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_state", "the callback has no state")
    })?;
    let onboarder = state.onboarder();
    let (taker, key) = (onboarder.clone(), consent_state.clone());
    let pending = blocking(move || taker.take_pending(&key)).await?;
    let (system, return_to) = (pending.system().to_owned(), pending.return_to().map(str::to_owned));
    let outcome = blocking(move || {
        onboarder.resume(pending, &consent_state, query.rest, &mut Park(PENDING_FOR))
    })
    .await;
    // Back to the page with the outcome's code only: a crafted link cannot put words in it.
    match (outcome, return_to) {
        (Ok(Outcome::Done(_)), Some(path)) => Ok(back(&path, "connected", &system)),
        (Ok(Outcome::Done(_)), None) => Ok(Html(format!(
            "<!doctype html><title>authplug</title><p>System <b>{}</b> is connected. You can close this window.</p>\n",
            html_escape(&system)
        ))
        .into_response()),
        // The scheme asks for another consent: the browser goes on to it.
        (Ok(Outcome::AwaitingConsent { url }), _) => {
            let location = HeaderValue::try_from(url)
                .map_err(|_| ApiError::internal("the scheme's consent address is not a URL"))?;
            Ok((StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response())
        }
        (Err(error), Some(path)) => Ok(back(&path, "error", error.code())),
        (Err(error), None) => Err(error),
    }
}

/// `303 See Other` to the page the onboarding came from, the outcome in the fragment (which no
/// server log or referrer sees).
fn back(path: &str, key: &str, value: &str) -> Response {
    let fragment: String =
        url::form_urlencoded::Serializer::new(String::new()).append_pair(key, value).finish();
    Redirect::to(&format!("{path}#{fragment}")).into_response()
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
