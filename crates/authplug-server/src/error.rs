//! Error answers: `{"error", "message"}` with a status, never a secret; and the one mapping from
//! the engine's, the store's and the onboarding's error kinds to them.

use std::sync::atomic::{AtomicU64, Ordering};

use authplug_engine::EngineError;
use authplug_onboard::OnboardError;
use authplug_protocol::ErrorCode;
use authplug_store::StoreError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }

    pub(crate) fn internal(message: &str) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// The machine-readable code (`bad_state`, `consent_refused`, `onboarding_failed`, ...).
    pub(crate) fn code(&self) -> &'static str {
        self.code
    }

    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    /// The error as a page for a person (the browser back from a consent), with a way back.
    pub(crate) fn page(self) -> Response {
        let body = format!(
            "<!doctype html><title>authplug</title><h1>Not connected</h1><p>{}</p><p><a href=\"/\">Back to authplug</a></p>\n",
            html_escape(&self.message)
        );
        (self.status, axum::response::Html(body)).into_response()
    }
}

pub(crate) fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Server-side failures are logged, at most a few lines a second however many requests fail (the
/// rest are counted into the next line). The message is logged for store failures only, whose
/// text is the database's and never a value; a plugin's or provider's text is scrubbed only of
/// what went into the call, so for those the status and code are logged alone.
fn log_failure(error: &ApiError) {
    static WINDOW: AtomicU64 = AtomicU64::new(0);
    static IN_WINDOW: AtomicU64 = AtomicU64::new(0);
    static HELD_BACK: AtomicU64 = AtomicU64::new(0);
    let second = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if WINDOW.swap(second, Ordering::Relaxed) != second {
        IN_WINDOW.store(0, Ordering::Relaxed);
    }
    if IN_WINDOW.fetch_add(1, Ordering::Relaxed) >= 5 {
        HELD_BACK.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let held_back = HELD_BACK.swap(0, Ordering::Relaxed);
    let said = match error.code {
        "store" | "store_unavailable" | "not_ready" => error.message.as_str(),
        _ => "see the answer's code",
    };
    tracing::error!(
        status = error.status.as_u16(),
        code = error.code,
        held_back,
        "request failed: {said}"
    );
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            log_failure(&self);
        }
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
            EngineError::Store(StoreError::Unavailable { .. }) => {
                (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable")
            }
            EngineError::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, "store"),
            EngineError::Scheme { error: call, .. } => {
                plugin_failed(call).unwrap_or((StatusCode::INTERNAL_SERVER_ERROR, "internal"))
            }
            EngineError::Aborted { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            EngineError::NotRevoked { .. } => (StatusCode::BAD_GATEWAY, "not_revoked"),
        };
        ApiError::new(status, code, authplug_store::chain(&error))
    }
}

/// An isolated plugin's process that failed the call: `plugin_crashed` or `plugin_timeout`.
fn plugin_failed(call: &authplug_host::CallError) -> Option<(StatusCode, &'static str)> {
    match call.code {
        ErrorCode::PluginCrashed => Some((StatusCode::BAD_GATEWAY, "plugin_crashed")),
        ErrorCode::PluginTimeout => Some((StatusCode::GATEWAY_TIMEOUT, "plugin_timeout")),
        // A stored value the scheme cannot use (a secret with a line end in a header).
        ErrorCode::InvalidInput => Some((StatusCode::CONFLICT, "invalid_secret")),
        _ => None,
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        if let StoreError::InvalidId { .. } = error {
            return ApiError::new(StatusCode::BAD_REQUEST, "invalid_system_id", error.to_string());
        }
        if let StoreError::BadCursor = error {
            return ApiError::new(StatusCode::BAD_REQUEST, "bad_cursor", error.to_string());
        }
        if let StoreError::Unavailable { .. } = error {
            let said = authplug_store::chain(&error);
            return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", said);
        }
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "store", authplug_store::chain(&error))
    }
}

impl From<authplug_onboard::VerifyError> for ApiError {
    fn from(error: authplug_onboard::VerifyError) -> Self {
        match error {
            authplug_onboard::VerifyError::Engine(inner) => inner.into(),
            declaration @ authplug_onboard::VerifyError::Declaration { .. } => {
                let said = authplug_store::chain(&declaration);
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "cannot_verify", said)
            }
        }
    }
}

impl From<OnboardError> for ApiError {
    fn from(error: OnboardError) -> Self {
        let said = authplug_store::chain(&error);
        let (status, code) = match error {
            OnboardError::Engine(inner) => return inner.into(),
            OnboardError::Exists(id) => {
                return ApiError::new(
                    StatusCode::CONFLICT,
                    "exists",
                    format!("system {id} exists: send \"replace\": true to onboard it again"),
                )
            }
            OnboardError::Missing { names } => {
                let names = names.join(", ");
                return ApiError::bad_request(format!("missing required secret(s): {names}"));
            }
            OnboardError::NoAuth { .. }
            | OnboardError::NoScheme { .. }
            | OnboardError::Input(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            OnboardError::ForgedCallback | OnboardError::UnknownState => {
                (StatusCode::BAD_REQUEST, "bad_state")
            }
            // The provider's code only: the description is the callback link's, which anyone
            // can craft, and this page is shown by the server.
            OnboardError::ConsentRefused { error, .. } => {
                let message = format!("the provider refused the consent: {error}");
                return ApiError::new(StatusCode::BAD_REQUEST, "consent_refused", message);
            }
            OnboardError::Scheme(ref call) => {
                plugin_failed(call).unwrap_or((StatusCode::BAD_GATEWAY, "onboarding_failed"))
            }
            OnboardError::ConsentTimedOut(_)
            | OnboardError::Consent(_)
            | OnboardError::Local(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        ApiError::new(status, code, said)
    }
}
