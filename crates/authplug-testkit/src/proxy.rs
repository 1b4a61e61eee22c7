//! A fault-injecting, counting HTTP proxy to put between a client and a real server (such as
//! oidc-provider): it forwards every request, counts the ones a predicate selects (refresh
//! grants), and answers selected requests with queued faults instead of forwarding them.
//!
//! Faults never reach the upstream server: a refresh token is only consumed by requests that
//! were forwarded, so a test can tell exactly which refreshes the server saw.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::server::{read_request, write_response, Request, Response};

/// What to do with a selected request instead of forwarding it (or, for `SlowAnswer`, on
/// the way back).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Forward the request, then hold the server's answer this long before relaying it (a slow
    /// provider: the refresh token is consumed while the client waits).
    SlowAnswer(Duration),
    /// Hold the connection without answering for this long, then close it (a hung server: the
    /// client's timeout should fire first).
    Hang(Duration),
    /// Close the connection at once without an answer (a reset).
    Reset,
    /// Answer with this status, a `Retry-After` header when given, and an error body.
    Status { status: u16, retry_after: Option<String> },
    /// Answer 200 with a JSON body cut short: `Content-Length` promises more than is sent.
    Truncated,
}

type Selector = dyn Fn(&Request) -> bool + Send + Sync;

#[derive(Debug, Default)]
struct Counters {
    selected: AtomicUsize,
    forwarded: AtomicUsize,
    faulted: AtomicUsize,
}

/// A running proxy; stops when dropped.
pub struct FaultProxy {
    port: u16,
    faults: Arc<Mutex<VecDeque<Fault>>>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FaultProxy(127.0.0.1:{})", self.port)
    }
}

impl FaultProxy {
    /// Proxies to `upstream` (`host:port`); `select` picks the requests that are counted and
    /// may be faulted.
    pub fn start(
        upstream: &str,
        select: impl Fn(&Request) -> bool + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let port = listener.local_addr().expect("bound").port();
        let faults: Arc<Mutex<VecDeque<Fault>>> = Arc::default();
        let counters: Arc<Counters> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let select: Arc<Selector> = Arc::new(select);
        let upstream = upstream.to_owned();
        let (queue, counts, stopping) = (faults.clone(), counters.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (queue, counts, select, upstream) =
                    (queue.clone(), counts.clone(), select.clone(), upstream.clone());
                std::thread::spawn(move || {
                    handle(stream, &upstream, &*select, &queue, &counts);
                });
            }
        });
        Self { port, faults, counters, stop, thread: Some(thread) }
    }

    /// A proxy to oidc-provider (or any OAuth2 server) selecting refresh-token grants.
    pub fn refresh_grants(upstream: &str) -> Self {
        Self::start(upstream, |request| {
            request.method == "POST"
                && request.path.ends_with("/token")
                && request.form("grant_type").as_deref() == Some("refresh_token")
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Queues faults for the next selected requests, in order.
    pub fn push_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        self.faults.lock().unwrap_or_else(|p| p.into_inner()).extend(faults);
    }

    /// Faults still queued.
    pub fn pending_faults(&self) -> usize {
        self.faults.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Selected requests seen (faulted or forwarded).
    pub fn selected(&self) -> usize {
        self.counters.selected.load(Ordering::SeqCst)
    }

    /// Selected requests that reached the upstream server.
    pub fn forwarded(&self) -> usize {
        self.counters.forwarded.load(Ordering::SeqCst)
    }

    /// Selected requests answered with a fault.
    pub fn faulted(&self) -> usize {
        self.counters.faulted.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn handle(
    stream: TcpStream,
    upstream: &str,
    select: &Selector,
    faults: &Mutex<VecDeque<Fault>>,
    counters: &Counters,
) {
    let Some((request, target)) = read_request(&stream) else { return };
    let selected = select(&request);
    if selected {
        counters.selected.fetch_add(1, Ordering::SeqCst);
        let fault = faults.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
        match fault {
            Some(Fault::SlowAnswer(delay)) => {
                counters.forwarded.fetch_add(1, Ordering::SeqCst);
                return forward(stream, upstream, &request, &target, delay);
            }
            Some(fault) => {
                counters.faulted.fetch_add(1, Ordering::SeqCst);
                return inject(stream, fault);
            }
            None => {
                counters.forwarded.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
    forward(stream, upstream, &request, &target, Duration::ZERO);
}

fn inject(mut stream: TcpStream, fault: Fault) {
    match fault {
        Fault::SlowAnswer(_) => unreachable!("forwarded, not injected"),
        Fault::Hang(duration) => {
            std::thread::sleep(duration);
        }
        Fault::Reset => {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
        Fault::Status { status, retry_after } => {
            let mut response =
                Response::json(status, &serde_json::json!({"error": "temporarily_unavailable"}));
            if let Some(value) = retry_after {
                response.headers.push(("Retry-After".into(), value));
            }
            write_response(stream, &response);
        }
        Fault::Truncated => {
            let body = br#"{"access_token":"eyJhbGciOiJSUzI1NiJ9.trunc"#;
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n",
                body.len() + 200
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(body);
            let _ = stream.flush();
        }
    }
}

/// Sends the request upstream with `Connection: close` and relays the raw answer after `delay`.
fn forward(
    mut client: TcpStream,
    upstream: &str,
    request: &Request,
    target: &str,
    delay: Duration,
) {
    let Ok(mut server) = TcpStream::connect(upstream) else {
        write_response(client, &Response::text(502, "upstream unreachable"));
        return;
    };
    let mut head = format!("{} {target} HTTP/1.1\r\nHost: {upstream}\r\n", request.method);
    for (name, value) in &request.headers {
        if !matches!(name.as_str(), "host" | "connection" | "content-length" | "keep-alive") {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    head.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n", request.body.len()));
    if server.write_all(head.as_bytes()).is_err() || server.write_all(&request.body).is_err() {
        return;
    }
    let mut answer = Vec::new();
    let _ = server.set_read_timeout(Some(Duration::from_secs(30)));
    let _ = server.read_to_end(&mut answer);
    std::thread::sleep(delay);
    let _ = client.write_all(&answer);
    let _ = client.flush();
}
