//! The host as a plugin sees it: one generic callback, and typed helpers on top.

use std::fmt;

use authplug_abi::HostHandle;
use authplug_protocol::{host_method, ErrorBody, ErrorCode, HttpRequest, HttpResponse};

/// Anything that answers host callbacks: the FFI handle in a loaded plugin, or the host's own
/// function when a scheme is linked statically.
pub trait HostCall {
    fn call(&self, method: &str, request: &str) -> Result<String, String>;
}

impl HostCall for HostHandle<'_> {
    fn call(&self, method: &str, request: &str) -> Result<String, String> {
        HostHandle::call(self, method, request)
    }
}

impl<F: Fn(&str, &str) -> Result<String, String>> HostCall for F {
    fn call(&self, method: &str, request: &str) -> Result<String, String> {
        self(method, request)
    }
}

/// The host's capabilities during one call.
pub struct Host<'a> {
    inner: &'a dyn HostCall,
}

impl fmt::Debug for Host<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Host")
    }
}

impl<'a> Host<'a> {
    pub fn new(inner: &'a dyn HostCall) -> Self {
        Self { inner }
    }

    /// Performs one HTTP request through the host's transport. Redirects are not followed; the
    /// host refuses URLs its policy forbids (plain http, private addresses) with an `http` error.
    pub fn http(&self, request: &HttpRequest) -> Result<HttpResponse, ErrorBody> {
        let json = serde_json::to_string(request)
            .map_err(|_| ErrorBody::new(ErrorCode::Internal, "unserialisable HTTP request"))?;
        match self.inner.call(host_method::HTTP, &json) {
            Ok(answer) => serde_json::from_str(&answer).map_err(|_| {
                ErrorBody::new(ErrorCode::Internal, "the host's HTTP answer did not parse")
            }),
            Err(error) => Err(serde_json::from_str(&error)
                .unwrap_or_else(|_| ErrorBody::new(ErrorCode::Http, "HTTP request failed"))),
        }
    }

    /// The host transport as an `oauth2::SyncHttpClient`, for schemes built on the `oauth2` crate.
    pub fn http_client(&self) -> HostHttp<'_> {
        HostHttp { host: self, last: std::cell::Cell::new(None), headers: Vec::new() }
    }
}

/// The host transport, usable wherever the `oauth2` crate wants a synchronous HTTP client. Its
/// `Debug` names the added headers, never their values.
pub struct HostHttp<'a> {
    host: &'a Host<'a>,
    /// The last answer's status and `Retry-After`, which the `oauth2` crate does not pass on.
    last: std::cell::Cell<Option<(u16, Option<u64>)>>,
    /// Headers added to every request (a provider's API-gateway key on its token endpoint).
    headers: Vec<(String, String)>,
}

impl fmt::Debug for HostHttp<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("HostHttp").field("headers", &names).finish_non_exhaustive()
    }
}

impl HostHttp<'_> {
    /// The same client, adding `name: value` to every request it sends (PowerOffice's
    /// `Ocp-Apim-Subscription-Key` on its token endpoint, which the `oauth2` crate cannot add).
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The status and `Retry-After` (seconds) of the last answer this client received.
    pub fn last_answer(&self) -> Option<(u16, Option<u64>)> {
        self.last.get()
    }
}

/// An HTTP failure reported by the host (policy, transport, size), without any secret.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HostHttpError(pub ErrorBody);

impl oauth2::SyncHttpClient for HostHttp<'_> {
    type Error = HostHttpError;

    fn call(&self, request: oauth2::HttpRequest) -> Result<oauth2::HttpResponse, Self::Error> {
        let (parts, body) = request.into_parts();
        let headers = parts
            .headers
            .iter()
            .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_owned())))
            .chain(self.headers.iter().cloned())
            .collect();
        let request = HttpRequest {
            method: parts.method.to_string(),
            url: parts.uri.to_string(),
            headers,
            body,
        };
        let answer = self.host.http(&request).map_err(HostHttpError)?;
        self.last.set(Some((answer.status, crate::provider::retry_after(&answer))));
        let mut builder = http::Response::builder().status(answer.status);
        for (name, value) in &answer.headers {
            builder = builder.header(name, value);
        }
        builder.body(answer.body).map_err(|_| {
            HostHttpError(ErrorBody::new(ErrorCode::Http, "the host's HTTP answer was malformed"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oauth2::SyncHttpClient;

    #[test]
    fn oauth2_requests_travel_through_the_host_callback() {
        let host_fn = |method: &str, request: &str| -> Result<String, String> {
            assert_eq!(method, "http");
            let request: HttpRequest = serde_json::from_str(request).unwrap();
            assert_eq!(request.method, "POST");
            assert_eq!(request.url, "https://idp.example.test/token");
            assert!(request.headers.contains(&("accept".into(), "application/json".into())));
            let response = HttpResponse {
                status: 200,
                headers: vec![("content-type".into(), "application/json".into())],
                body: br#"{"ok":true}"#.to_vec(),
            };
            Ok(serde_json::to_string(&response).unwrap())
        };
        let host = Host::new(&host_fn);
        let request = http::Request::builder()
            .method("POST")
            .uri("https://idp.example.test/token")
            .header("accept", "application/json")
            .body(b"grant_type=x".to_vec())
            .unwrap();
        let response = host.http_client().call(request).unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.body(), br#"{"ok":true}"#);
    }

    #[test]
    fn host_refusals_arrive_as_typed_errors() {
        let host_fn = |_: &str, _: &str| -> Result<String, String> {
            Err(ErrorBody::new(ErrorCode::Http, "plain http is not allowed").to_json())
        };
        let host = Host::new(&host_fn);
        let request = HttpRequest {
            method: "GET".into(),
            url: "http://x".into(),
            headers: vec![],
            body: vec![],
        };
        let error = host.http(&request).unwrap_err();
        assert_eq!(error.code, ErrorCode::Http);
        assert!(error.message.contains("plain http"));
    }
}
