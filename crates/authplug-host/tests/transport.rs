//! The host transport against a real HTTP server on loopback: what it lets through, what it
//! refuses, and what its errors say (and do not say).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use authplug_host::{HostServices, Transport, TransportConfig};
use authplug_protocol::{ErrorCode, HttpRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A tiny HTTP/1.1 server with canned answers by path; counts the requests it served.
struct Server {
    port: u16,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn server() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else { return };
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 8192];
                let mut read = 0;
                while !buffer[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buffer[read..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => read += n,
                    }
                }
                let head = String::from_utf8_lossy(&buffer[..read]).to_string();
                let target = head.split_whitespace().nth(1).unwrap_or("/");
                let path = target.split('?').next().unwrap_or("/").to_owned();
                let (status, extra, body): (&str, String, Vec<u8>) = match path.as_str() {
                    "/ok" => ("200 OK", String::new(), b"hello".to_vec()),
                    "/echo-auth" => {
                        let auth = head
                            .lines()
                            .find(|l| l.to_ascii_lowercase().starts_with("authorization:"))
                            .unwrap_or("")
                            .to_owned();
                        ("200 OK", String::new(), auth.into_bytes())
                    }
                    "/redirect" => ("302 Found", "Location: /ok\r\n".into(), vec![]),
                    "/big" => ("200 OK", String::new(), vec![b'x'; 64 * 1024]),
                    "/slow" => {
                        tokio::time::sleep(Duration::from_secs(3)).await;
                        ("200 OK", String::new(), b"late".to_vec())
                    }
                    _ => ("404 Not Found", String::new(), vec![]),
                };
                let answer = format!(
                    "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
                let _ = socket.write_all(&body).await;
            });
        }
    });
    Server { port, hits, task }
}

fn config() -> TransportConfig {
    TransportConfig {
        timeout: Duration::from_millis(500),
        max_response_bytes: 16 * 1024,
        allow_loopback_http: true,
        ..TransportConfig::default()
    }
}

fn get(url: String) -> HttpRequest {
    HttpRequest { method: "GET".into(), url, headers: vec![], body: vec![] }
}

/// Runs `request` the way a plugin's callback does: from a blocking thread, on the runtime.
async fn execute(
    config: TransportConfig,
    request: HttpRequest,
) -> Result<authplug_protocol::HttpResponse, authplug_protocol::ErrorBody> {
    let transport = Transport::new(config, tokio::runtime::Handle::current()).unwrap();
    tokio::task::spawn_blocking(move || transport.execute_blocking(request)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_http_works_when_allowed() {
    let server = server().await;
    let response =
        execute(config(), get(format!("http://127.0.0.1:{}/ok", server.port))).await.unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_http_is_refused_by_default_without_a_request() {
    let server = server().await;
    let config = TransportConfig { allow_loopback_http: false, ..config() };
    let error =
        execute(config, get(format!("http://127.0.0.1:{}/ok", server.port))).await.unwrap_err();
    assert_eq!(error.code, ErrorCode::Http);
    assert!(error.message.contains("--allow-loopback-http"), "{}", error.message);
    assert_eq!(server.hits.load(Ordering::SeqCst), 0, "nothing reached the server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_resolving_to_loopback_are_refused_over_https_too() {
    // `localhost` resolves to 127.0.0.1: the DNS guard must refuse it when loopback is not allowed.
    let config = TransportConfig { allow_loopback_http: false, ..config() };
    let error = execute(config, get("https://localhost:1/".into())).await.unwrap_err();
    assert!(error.message.contains("no public address"), "{}", error.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_returned_not_followed() {
    let server = server().await;
    let response =
        execute(config(), get(format!("http://127.0.0.1:{}/redirect", server.port))).await.unwrap();
    assert_eq!(response.status, 302);
    assert_eq!(server.hits.load(Ordering::SeqCst), 1, "the Location was not fetched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_responses_fail() {
    let server = server().await;
    let error =
        execute(config(), get(format!("http://127.0.0.1:{}/big", server.port))).await.unwrap_err();
    assert!(error.message.contains("larger than 16384 bytes"), "{}", error.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_servers_time_out_and_the_error_hides_the_query() {
    let server = server().await;
    let url = format!("http://127.0.0.1:{}/slow?employeeToken=query-secret-123", server.port);
    let error = execute(config(), get(url)).await.unwrap_err();
    assert!(error.message.contains("timed out"), "{}", error.message);
    assert!(!error.message.contains("query-secret-123"), "{}", error.message);
    assert!(!error.message.contains("/slow"), "{}", error.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_services_answer_the_plugin_http_callback() {
    let server = server().await;
    let transport = Arc::new(Transport::new(config(), tokio::runtime::Handle::current()).unwrap());
    let services = HostServices::new(transport);
    let request = HttpRequest {
        method: "GET".into(),
        url: format!("http://127.0.0.1:{}/echo-auth", server.port),
        headers: vec![("Authorization".into(), "Bearer abc".into())],
        body: vec![],
    };
    let json = serde_json::to_string(&request).unwrap();
    let answer =
        tokio::task::spawn_blocking(move || services.handle("http", &json)).await.unwrap().unwrap();
    let response: authplug_protocol::HttpResponse = serde_json::from_str(&answer).unwrap();
    assert_eq!(String::from_utf8_lossy(&response.body).to_lowercase(), "authorization: bearer abc");

    let request =
        serde_json::to_string(&get(format!("http://127.0.0.1:{}/ok", server.port))).unwrap();
    let offline = HostServices::offline().handle("http", &request).unwrap_err();
    assert!(offline.contains("this host offers no network access"), "{offline}");
    let malformed = HostServices::offline().handle("http", "{}").unwrap_err();
    assert!(malformed.contains("invalid_input"), "{malformed}");
    let unknown = HostServices::offline().handle("teleport", "{}").unwrap_err();
    assert!(unknown.contains("unknown_method"), "{unknown}");
}
