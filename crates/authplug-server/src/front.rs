//! What every request goes through around its route, in one service ([`App`]) wrapped around the
//! router: a body declared too large is refused before anything else, every answer gets
//! `Cache-Control: no-store` (and a strict policy for a page without one of its own), a
//! framework's plain-text rejection becomes `{"error", "message"}`, and every request is counted
//! and timed by its route pattern. One service rather than a stack of per-route middleware
//! layers: each of those was boxed and cloned for every request, a tenth of a cached
//! `authorize`.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;

use crate::error::ApiError;
use crate::AppState;

/// The HTTP application: the router and what every request goes through around it. Cheap to
/// clone (a connection holds one).
#[derive(Clone)]
pub struct App {
    router: Router,
    front: Arc<Front>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").finish_non_exhaustive()
    }
}

struct Front {
    state: Arc<AppState>,
    /// Every route's pattern, to count requests by (never the path: it holds system ids).
    patterns: matchit::Router<&'static str>,
    max_body: usize,
}

impl App {
    /// `router` with every request measured and every answer marked, for the patterns given
    /// (those of `router`'s routes).
    pub(crate) fn new(
        state: Arc<AppState>,
        router: Router,
        patterns: impl IntoIterator<Item = &'static str>,
    ) -> Self {
        let mut table = matchit::Router::new();
        for pattern in patterns {
            // A pattern served for several methods is in the table once.
            let _ = table.insert(pattern, pattern);
        }
        let max_body = state.max_body;
        Self { router, front: Arc::new(Front { state, patterns: table, max_body }) }
    }
}

impl<B> tower::Service<Request<B>> for App
where
    B: http_body::Body<Data = axum::body::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let started = Instant::now();
        let front = self.front.clone();
        let route = front.patterns.at(request.uri().path()).map_or("unmatched", |m| *m.value);
        let routed = match front.too_large(&request) {
            Some(refused) => Err(refused),
            None => Ok(tower::Service::call(&mut self.router, request.map(Body::new))),
        };
        Box::pin(async move {
            let response = match routed {
                Ok(routed) => routed.await.unwrap_or_else(|never| match never {}),
                Err(refused) => refused,
            };
            let response = marked(response).await;
            front.state.metrics.request(route, response.status().as_u16(), started.elapsed());
            Ok(response)
        })
    }
}

impl Front {
    /// A body declared larger than the limit is refused at once (413), before authentication
    /// and before a byte of it is read.
    fn too_large<B>(&self, request: &Request<B>) -> Option<Response> {
        let declared = request.headers().get(header::CONTENT_LENGTH)?.to_str().ok()?;
        let max = self.max_body;
        if declared.parse::<u64>().ok()? <= max as u64 {
            return None;
        }
        let message = format!("the body is larger than {max} bytes (--max-body)");
        Some(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message).into_response())
    }
}

/// Every answer: `Cache-Control: no-store`; a page without a policy of its own (the consent
/// callback's) the strictest; a framework's rejection (a malformed query, path or body), which
/// is plain text, answered as every other error is, `{"error", "message"}`.
async fn marked(response: Response) -> Response {
    let text = |r: &Response, kind: &str| {
        let value = r.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
        value.is_some_and(|v| v.starts_with(kind))
    };
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
    if html && !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        let policy =
            "default-src 'none'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";
        headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(policy));
        headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    }
    response
}

/// A route's `{id}`: a system id, or the request is answered 400 `invalid_system_id` before
/// its handler does anything else (or the store sees it).
#[derive(Debug)]
pub(crate) struct SystemId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for SystemId {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| e.into_response())?;
        match authplug_store::check_system_id(&id) {
            Ok(_) => Ok(SystemId(id)),
            Err(error) => Err(ApiError::from(error).into_response()),
        }
    }
}
