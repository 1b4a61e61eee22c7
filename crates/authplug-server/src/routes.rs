//! The HTTP API's routes, in one table ([`api`]) that the router is built from and the OpenAPI
//! document is checked against. Every route but the probes wants `Authorization: Bearer
//! <token>`; a missing or unknown token is 401, a token without the scope 403. Errors are
//! `{"error", "message"}` and never carry a secret; every answer has `Cache-Control: no-store`.

use std::sync::Arc;

use axum::extract::State;
use axum::handler::Handler;
use axum::http::{header, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::Router;

use crate::error::ApiError;
use crate::{connectors, onboarding, probes, systems, AppState};

/// One route: its method, its path pattern and its handler.
pub(crate) struct Route {
    /// The router reads it from the handler; the OpenAPI test from here.
    #[cfg_attr(not(test), expect(dead_code, reason = "read by the OpenAPI test"))]
    pub method: Method,
    pub path: &'static str,
    handler: MethodRouter<Arc<AppState>>,
}

fn route<H, T>(method: Method, path: &'static str, handler: H) -> Route
where
    H: Handler<T, Arc<AppState>>,
    T: 'static,
{
    let filter = MethodFilter::try_from(method.clone()).expect("the table names plain methods");
    Route { method, path, handler: on(filter, handler) }
}

/// Every API route (the web page's are in `ui.rs`).
pub(crate) fn api() -> Vec<Route> {
    vec![
        route(Method::GET, "/healthz", probes::healthz),
        route(Method::GET, "/readyz", probes::readyz),
        route(Method::GET, "/metrics", probes::metrics),
        route(Method::GET, "/v1/openapi.json", openapi),
        route(Method::GET, "/v1/connectors", connectors::list),
        route(Method::GET, "/v1/systems", systems::list),
        route(Method::GET, "/v1/systems/{id}", systems::show),
        route(Method::DELETE, "/v1/systems/{id}", systems::delete),
        route(Method::GET, "/v1/systems/{id}/secrets", systems::secrets),
        route(Method::POST, "/v1/systems/{id}/authorize", systems::authorize),
        route(Method::POST, "/v1/systems/{id}/verify", systems::verify),
        route(Method::POST, "/v1/systems/{id}/onboard", onboarding::start),
        route(Method::GET, "/v1/onboarding/callback", onboarding::callback),
    ]
}

/// The routes, with `Cache-Control: no-store` on every answer and every request measured.
pub fn router(state: Arc<AppState>) -> Router {
    let page = if state.web_page { crate::ui::routes() } else { Router::new() };
    let api = api().into_iter().fold(Router::new(), |router, r| router.route(r.path, r.handler));
    let api = api.route_layer(axum::middleware::from_fn(valid_ids));
    let max_body = state.max_body;
    api.merge(page)
        .fallback(|| async { ApiError::not_found("no such route") })
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(max_body, declared_body))
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

/// A body declared larger than the limit is refused at once (413), before authentication and
/// before a byte of it is read.
async fn declared_body(
    State(max): State<usize>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let declared = request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok());
    if declared.and_then(|v| v.parse::<u64>().ok()).is_some_and(|n| n > max as u64) {
        let message = format!("the body is larger than {max} bytes (--max-body)");
        return ApiError::new(axum::http::StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
            .into_response();
    }
    next.run(request).await
}

/// A route's `{id}` is a system id, or the request is answered 400 `invalid_system_id` before
/// its handler (or the store) sees it.
async fn valid_ids(
    params: axum::extract::RawPathParams,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    for (name, value) in &params {
        if name == "id" {
            if let Err(error) = authplug_store::check_system_id(value) {
                return ApiError::from(error).into_response();
            }
        }
    }
    next.run(request).await
}

/// The OpenAPI document of these routes.
pub const OPENAPI: &str = include_str!("openapi.json");

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn no_store(response: Response) -> Response {
    let text = |r: &Response, kind: &str| {
        let value = r.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
        value.is_some_and(|v| v.starts_with(kind))
    };
    // A framework's rejection (a malformed query, path or body) is plain text: answered as
    // every other error is, `{"error", "message"}`.
    let mut response = if response.status().is_client_error() && text(&response, "text/plain") {
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 64 << 10).await.unwrap_or_default();
        let message = String::from_utf8_lossy(&body).trim().to_owned();
        ApiError::new(status, "bad_request", message).into_response()
    } else {
        response
    };
    let html = text(&response, "text/html");
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Pages without a policy of their own (the consent callback's) get the strictest.
    if html && !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        let policy =
            "default-src 'none'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";
        headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(policy));
        headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    }
    response
}
