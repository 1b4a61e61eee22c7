//! The loopback server that receives the browser after an OAuth2 consent (RFC 8252, section
//! 7.3): it listens on 127.0.0.1 only, answers the one callback whose `state` matches, refuses
//! any other, and gives up after a timeout.

use std::collections::BTreeMap;
use std::time::Duration;

use authplug_onboard::OnboardError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A bound callback listener and the path it answers.
pub struct Callback {
    listener: TcpListener,
    path: String,
}

/// Where the browser comes back to: a loopback `http://` URI, whose host and port are listened on.
pub fn parse_redirect(uri: &str) -> Result<(String, u16, String), OnboardError> {
    let bad = |why: &str| OnboardError::Input(format!("--redirect-uri {uri}: {why}"));
    let rest = uri
        .strip_prefix("http://")
        .ok_or_else(|| bad("the callback server speaks plain http:// on this machine"))?;
    let (authority, path) =
        rest.split_once('/').map_or((rest, "/".to_owned()), |(a, p)| (a, format!("/{p}")));
    let (host, port) = authority
        .rsplit_once(':')
        .ok_or_else(|| bad("give the port (e.g. http://127.0.0.1:8765/callback)"))?;
    if !matches!(host, "127.0.0.1" | "localhost" | "[::1]") {
        return Err(bad(
            "the host must be this machine's loopback (127.0.0.1, localhost or [::1])",
        ));
    }
    let port: u16 = port.parse().map_err(|_| bad("the port is not a number"))?;
    Ok((host.trim_matches(['[', ']']).to_owned(), port, path))
}

impl Callback {
    /// Binds before the consent URL is shown, so the browser never finds nobody listening.
    pub async fn bind(host: &str, port: u16, path: String) -> Result<Self, OnboardError> {
        let address = if host == "localhost" { "127.0.0.1" } else { host };
        let listener = TcpListener::bind((address, port)).await.map_err(|e| {
            OnboardError::Consent(format!(
                "cannot listen for the callback on {address}:{port}: {e} (choose another with --port)"
            ))
        })?;
        Ok(Self { listener, path })
    }

    /// Waits for the browser's request to the callback path and returns its query parameters,
    /// once `state` matched (a provider's refusal included: the onboarding service says it).
    /// Requests to other paths (a favicon) get a 404 and are not counted.
    pub async fn wait(
        self,
        state: &str,
        timeout: Duration,
    ) -> Result<BTreeMap<String, String>, OnboardError> {
        let waiting = async {
            loop {
                let (mut stream, _) = self.listener.accept().await.map_err(|e| {
                    OnboardError::Consent(format!("the callback listener failed: {e}"))
                })?;
                let Some(target) = read_target(&mut stream).await else { continue };
                let (path, query) = target.split_once('?').unwrap_or((&target, ""));
                if path != self.path {
                    respond(&mut stream, 404, "Not the callback.").await;
                    continue;
                }
                let query: BTreeMap<String, String> = form_urlencoded(query);
                // A request whose state does not match is not the browser coming back (any web
                // page can make one, an <img> is enough): refused and ignored, and the consent
                // goes on waiting for the real one, until the timeout.
                if query.get("state").map(String::as_str) != Some(state) {
                    respond(&mut stream, 400, "The state does not match this consent: ignored.")
                        .await;
                    eprintln!("warning: ignored a callback request whose state does not match this consent (forged, or from an older attempt); still waiting");
                    continue;
                }
                if query.contains_key("error") {
                    let page = "The provider refused the consent: see the terminal.";
                    respond(&mut stream, 400, page).await;
                } else {
                    let page = "authplug: connected. You can close this window.";
                    respond(&mut stream, 200, page).await;
                }
                return Ok(query);
            }
        };
        match tokio::time::timeout(timeout, waiting).await {
            Ok(result) => result,
            Err(_) => Err(OnboardError::ConsentTimedOut(timeout.as_secs())),
        }
    }
}

/// The request target of an HTTP/1.1 request line, if the request is readable.
async fn read_target(stream: &mut TcpStream) -> Option<String> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 2048];
    while !buffer.windows(4).any(|w| w == b"\r\n\r\n") && buffer.len() < 16 * 1024 {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            break;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&buffer);
    let mut parts = text.lines().next()?.split_whitespace();
    (parts.next()? == "GET").then_some(())?;
    parts.next().map(str::to_owned)
}

async fn respond(stream: &mut TcpStream, status: u16, message: &str) {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        _ => "Bad Request",
    };
    let body = format!("<!doctype html><title>authplug</title><p>{message}</p>\n");
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Security-Policy: default-src 'none'\r\nX-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Decodes `a=1&b=x%20y` (application/x-www-form-urlencoded), with the `url` crate's parser.
fn form_urlencoded(query: &str) -> BTreeMap<String, String> {
    let mut url = reqwest::Url::parse("http://callback.invalid/").expect("a constant URL parses");
    url.set_query(Some(query));
    url.query_pairs().into_owned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_decoded() {
        let query = form_urlencoded(
            "code=a%2Fb+c&state=xyz&iss=http%3A%2F%2F127.0.0.1%3A1&bad=%zz&end=%4&u=%C3%A9%",
        );
        assert_eq!(query["code"], "a/b c");
        assert_eq!(query["iss"], "http://127.0.0.1:1");
        assert_eq!(query["bad"], "%zz");
        assert_eq!(query["end"], "%4");
        assert_eq!(query["u"], "é%");
    }

    #[test]
    fn only_loopback_redirects_are_listened_on() {
        assert_eq!(
            parse_redirect("http://127.0.0.1:8765/callback").unwrap(),
            ("127.0.0.1".into(), 8765, "/callback".into())
        );
        assert_eq!(parse_redirect("http://localhost:9000").unwrap().2, "/");
        assert!(parse_redirect("https://app.example/cb").is_err());
        assert!(parse_redirect("http://example.com:80/cb").is_err());
        assert!(parse_redirect("http://127.0.0.1/cb").is_err());
    }
}
