//! The web page operators connect connectors from: plain HTML, one script and one style sheet,
//! compiled into the binary (no build step, nothing to deploy beside it). The page holds no
//! secret of its own: it signs in with an admin API token kept in the tab's `sessionStorage`
//! and calls the same `/v1` API as any client.

use axum::http::{header, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::Arc;

use crate::AppState;

const INDEX: &str = include_str!("../web/index.html");
const SCRIPT: &str = include_str!("../web/app.js");
const STYLE: &str = include_str!("../web/style.css");

/// Only this origin's script and style run; nothing may frame the page or post its forms
/// elsewhere. The consent is a top-level navigation, which the policy does not limit.
const POLICY: &str =
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
img-src 'self' data:; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

/// The page's route patterns (as [`routes`] serves them).
pub(crate) const PATTERNS: &[&str] = &["/", "/ui/app.js", "/ui/style.css"];

pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(|| async { page("text/html; charset=utf-8", INDEX) }))
        .route("/ui/app.js", get(|| async { page("text/javascript; charset=utf-8", SCRIPT) }))
        .route("/ui/style.css", get(|| async { page("text/css; charset=utf-8", STYLE) }))
}

fn page(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(HeaderName::from_static("x-frame-options"), HeaderValue::from_static("DENY"));
    response
}
