//! The HTTP API's routes, in one table ([`api`]) that the router is built from and the OpenAPI
//! document is checked against. Every route but the probes wants `Authorization: Bearer
//! <token>`; a missing or unknown token is 401, a token without the scope 403. Errors are
//! `{"error", "message"}` and never carry a secret; every answer has `Cache-Control: no-store`.

use std::sync::Arc;

use axum::handler::Handler;
use axum::http::{header, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::Router;

use crate::error::ApiError;
use crate::front::App;
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

/// The application: every route (the web page's too, if on) behind [`App`]'s measuring and
/// marking.
pub fn router(state: Arc<AppState>) -> App {
    let (page, page_patterns) = if state.web_page {
        (crate::ui::routes(), crate::ui::PATTERNS)
    } else {
        (Router::new(), &[][..])
    };
    let routes = api();
    let patterns: Vec<&'static str> =
        routes.iter().map(|r| r.path).chain(page_patterns.iter().copied()).collect();
    let api = routes.into_iter().fold(Router::new(), |router, r| router.route(r.path, r.handler));
    let router = api
        .merge(page)
        .fallback(|| async { ApiError::not_found("no such route") })
        .layer(axum::extract::DefaultBodyLimit::max(state.max_body))
        .with_state(state.clone());
    App::new(state, router, patterns)
}

/// The OpenAPI document of these routes.
pub const OPENAPI: &str = include_str!("openapi.json");

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}
