//! The host's HTTP transport: the one place where plugins' requests meet the network.
//!
//! reqwest with rustls; connect and total timeouts; redirects never followed (a 3xx goes back to
//! the scheme as it is); a cap on response size; and an SSRF guard: only `https`, and only to
//! public addresses, checked on the URL *and* on every address DNS returns, so a name that
//! resolves to 127.0.0.1 or 169.254.169.254 is refused too. Plain `http` to a loopback address is
//! allowed only when [`TransportConfig::allow_loopback_http`] is set, for development and tests.
//!
//! Errors and logs name the method and host, never the path, query, headers or body: those can
//! carry credentials (Tripletex puts its tokens in the query string).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use authplug_protocol::{ErrorBody, ErrorCode, HttpRequest, HttpResponse};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::Url;

/// Transport settings. The defaults suit production.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    pub connect_timeout: Duration,
    /// The whole request, from connect to the last body byte.
    pub timeout: Duration,
    /// Responses longer than this fail with an `http` error.
    pub max_response_bytes: usize,
    /// Allow `http://` to loopback addresses (127.0.0.0/8, ::1, localhost). Off in production.
    pub allow_loopback_http: bool,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(30),
            max_response_bytes: 1024 * 1024,
            allow_loopback_http: false,
        }
    }
}

/// The transport; requests run on the given tokio runtime.
#[derive(Debug)]
pub struct Transport {
    client: reqwest::Client,
    config: TransportConfig,
    runtime: tokio::runtime::Handle,
}

impl Transport {
    pub fn new(config: TransportConfig, runtime: tokio::runtime::Handle) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .https_only(!config.allow_loopback_http)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(config.connect_timeout)
            .timeout(config.timeout)
            .no_proxy()
            .user_agent(concat!("authplug/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(GuardedResolver { allow_loopback: config.allow_loopback_http }))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self { client, config, runtime })
    }

    pub fn config(&self) -> &TransportConfig {
        &self.config
    }

    /// Runs `request` to completion from a blocking thread (a plugin call), as a task of the
    /// host runtime: its sockets are driven where their readiness is seen, and this thread is
    /// woken once, with the answer (polled here, each readiness was a wake-up across threads).
    pub fn execute_blocking(&self, request: HttpRequest) -> Result<HttpResponse, ErrorBody> {
        let task = self.runtime.spawn(run(self.client.clone(), self.config.clone(), request));
        self.runtime
            .block_on(task)
            .unwrap_or_else(|_| Err(http_error("the request's task ended abnormally".into())))
    }

    /// Runs `request` under the transport's policy.
    pub async fn execute(&self, request: HttpRequest) -> Result<HttpResponse, ErrorBody> {
        run(self.client.clone(), self.config.clone(), request).await
    }
}

/// `request` run with `client` under `config`'s policy.
async fn run(
    client: reqwest::Client,
    config: TransportConfig,
    request: HttpRequest,
) -> Result<HttpResponse, ErrorBody> {
    let url = check_url(&request.url, config.allow_loopback_http)?;
    let host = url.host_str().unwrap_or("").to_owned();
    let method = reqwest::Method::from_bytes(request.method.as_bytes())
        .map_err(|_| http_error(format!("invalid HTTP method {:?}", request.method)))?;
    let mut builder = client.request(method.clone(), url);
    for (name, value) in &request.headers {
        let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| http_error(format!("invalid header name {name:?}")))?;
        let value = reqwest::header::HeaderValue::from_str(value)
            .map_err(|_| http_error(format!("invalid value for header {name}")))?;
        builder = builder.header(name, value);
    }
    let started = Instant::now();
    let mut response = builder
        .body(request.body)
        .send()
        .await
        .map_err(|e| http_error(format!("{method} {host}: {}", describe(&e))))?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_owned())))
        .collect();
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| http_error(format!("{method} {host}: reading the body: {}", describe(&e))))?
    {
        if body.len() + chunk.len() > config.max_response_bytes {
            return Err(http_error(format!(
                "{method} {host}: response larger than {} bytes",
                config.max_response_bytes
            )));
        }
        body.extend_from_slice(&chunk);
    }
    tracing::debug!(%method, %host, status, elapsed_ms = started.elapsed().as_millis() as u64, "http");
    Ok(HttpResponse { status, headers, body })
}

fn http_error(message: String) -> ErrorBody {
    ErrorBody::new(ErrorCode::Http, message)
}

/// reqwest's error text without the URL (which may carry credentials in its query).
fn describe(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else if error.is_body() || error.is_decode() {
        "broken response body"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(error);
    let mut detail = None;
    while let Some(cause) = source {
        detail = Some(cause.to_string());
        source = cause.source();
    }
    match detail {
        Some(detail) => format!("{kind} ({detail})"),
        None => kind.to_owned(),
    }
}

/// Parses and checks a URL against the policy.
pub fn check_url(text: &str, allow_loopback_http: bool) -> Result<Url, ErrorBody> {
    let url = Url::parse(text).map_err(|e| http_error(format!("invalid URL ({e})")))?;
    let host = url.host_str().ok_or_else(|| http_error("URL without a host".to_owned()))?;
    let ip = match url.host() {
        Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        _ => None,
    };
    let loopback = ip.map(|ip| ip.is_loopback()).unwrap_or(host.eq_ignore_ascii_case("localhost"));
    match url.scheme() {
        "https" => {}
        "http" if allow_loopback_http && loopback => {}
        "http" if loopback => {
            return Err(http_error(format!(
                "plain http to {host} refused: loopback http is allowed only with \
                 --allow-loopback-http (development and tests)"
            )));
        }
        "http" => return Err(http_error(format!("plain http to {host} refused: https only"))),
        other => return Err(http_error(format!("URL scheme {other:?} refused: https only"))),
    }
    if let Some(ip) = ip {
        if !address_allowed(ip, allow_loopback_http) {
            return Err(http_error(format!("{host} is not a public address")));
        }
    }
    Ok(url)
}

/// Public unicast addresses only; loopback too when allowed.
pub fn address_allowed(ip: IpAddr, allow_loopback: bool) -> bool {
    if ip.is_loopback() {
        return allow_loopback;
    }
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
                || (a == 198 && (b == 18 || b == 19)) // benchmarking
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return address_allowed(IpAddr::V4(v4), allow_loopback);
            }
            let first = v6.segments()[0];
            !(v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link local
                || first == 0x2001 && v6.segments()[1] == 0x0db8) // documentation
        }
    }
}

/// Resolves names with the system resolver and drops every address the policy forbids.
struct GuardedResolver {
    allow_loopback: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_loopback = self.allow_loopback;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> =
                found.into_iter().filter(|a| address_allowed(a.ip(), allow_loopback)).collect();
            if allowed.is_empty() {
                let message = format!("{host} resolves to no public address");
                return Err(message.into());
            }
            let addrs: Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_to_public_hosts_passes() {
        assert!(check_url("https://api.hubapi.com/oauth/v1/token", false).is_ok());
        assert!(check_url("https://93.184.216.34/", false).is_ok());
    }

    #[test]
    fn plain_http_is_refused_unless_loopback_is_allowed() {
        let error = check_url("http://example.com/", true).unwrap_err();
        assert!(error.message.contains("https only"), "{}", error.message);
        let error = check_url("http://127.0.0.1:3000/token", false).unwrap_err();
        assert!(error.message.contains("--allow-loopback-http"), "{}", error.message);
        assert!(check_url("http://127.0.0.1:3000/token", true).is_ok());
        assert!(check_url("http://localhost:3000/token", true).is_ok());
        assert!(check_url("http://[::1]:3000/token", true).is_ok());
    }

    #[test]
    fn private_and_metadata_addresses_are_refused() {
        for url in [
            "https://169.254.169.254/latest/meta-data",
            "https://10.0.0.1/",
            "https://192.168.1.1/",
            "https://172.16.0.1/",
            "https://100.64.0.1/",
            "https://[fd00::1]/",
            "https://[::ffff:10.0.0.1]/",
            "https://127.0.0.1/",
        ] {
            assert!(check_url(url, false).is_err(), "{url}");
        }
        assert!(check_url("https://127.0.0.1/", true).is_ok());
        assert!(check_url("https://10.0.0.1/", true).is_err());
    }

    #[test]
    fn other_schemes_are_refused() {
        for url in ["file:///etc/passwd", "ftp://example.com/", "gopher://x/"] {
            assert!(check_url(url, true).is_err(), "{url}");
        }
    }

    #[test]
    fn errors_never_quote_the_path_or_query() {
        let error =
            check_url("http://example.com/v2/token?employeeToken=s3cr3t", false).unwrap_err();
        assert!(!error.message.contains("s3cr3t"));
    }
}
