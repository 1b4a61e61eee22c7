//! Who is calling, and whether their token's scopes allow what they ask. The token is checked
//! before anything else: a caller without one learns nothing, not even how to shape a body.

use std::sync::Arc;

use axum::http::{header, HeaderMap, StatusCode};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::AppState;

/// The caller behind the request's bearer token.
pub(crate) fn caller(state: &AppState, headers: &HeaderMap) -> Result<Arc<Caller>, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        // The scheme's name is case-insensitive (RFC 9110, section 11.1).
        .and_then(|v| v.split_once(' ').filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer")))
        .map(|(_, token)| token)
        .ok_or_else(|| {
            ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "a bearer token is required")
        })?;
    state
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
) -> Result<Arc<Caller>, ApiError> {
    let caller = caller(state, headers)?;
    if allowed(&caller) {
        Ok(caller)
    } else {
        // The token's name is the operator's, not the caller's to learn.
        let message = format!("this token may not {}", what());
        Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", message))
    }
}
