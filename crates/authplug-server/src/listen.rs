//! Serving connections with limits, as a careful nginx setup does: a client must send a request's
//! head within the header timeout (also the longest a kept-alive connection may wait for its next
//! request), a request that moves no byte for the idle timeout is closed, and at most
//! `max_connections` are served. A new connection over the cap makes the oldest one close as soon
//! as it is between requests (at once for a socket that never sent one), so idle sockets cannot
//! keep a probe or a worker out; past four times the cap (connections still finishing their
//! request after being asked to close), new connections are closed unanswered.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio_rustls::TlsAcceptor;

/// The limits of [`serve`].
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            max_connections: 512,
        }
    }
}

/// The connections being served, oldest first.
#[derive(Default)]
struct Live {
    next: u64,
    /// Each connection, whether it was asked to close, and when a byte last moved on it (0:
    /// never).
    open: VecDeque<(u64, Arc<Notify>, bool, Arc<AtomicU64>)>,
}

/// Serves `app` on `listener` within `limits` until `shutdown` completes, then lets every
/// connection finish its request and returns once all are closed.
/// With `tls`, every connection is TLS (its handshake within the header timeout).
pub async fn serve(
    listener: TcpListener,
    app: crate::App,
    limits: Limits,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let live = Arc::new(Mutex::new(Live::default()));
    let (stop, stopped) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut shed_warned = Instant::now() - Duration::from_secs(60);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // Out of file descriptors or the like: said, and tried again shortly.
                Err(error) => {
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let (id, evict, last) = {
            let mut live = live.lock().unwrap_or_else(|p| p.into_inner());
            // Those asked to close are on their way out (a socket that never sent a byte goes as
            // soon as its task runs, a busy one after its request): the cap counts the others,
            // and only four times the cap in all closes new connections unanswered.
            let staying = live.open.iter().filter(|(_, _, asked, _)| !*asked).count();
            let gone = |asked: bool, last: &AtomicU64| asked && last.load(Ordering::Relaxed) == 0;
            let held = live.open.iter().filter(|(_, _, asked, last)| !gone(*asked, last)).count();
            if held >= limits.max_connections.saturating_mul(4) {
                drop(stream);
                if shed_warned.elapsed() > Duration::from_secs(10) {
                    shed_warned = Instant::now();
                    tracing::warn!(
                        cap = limits.max_connections,
                        "connections over four times the cap are closed unanswered"
                    );
                }
                continue;
            }
            if staying >= limits.max_connections {
                // The oldest closes when it is between requests (at once if it never sent one).
                if let Some((_, notify, asked, _)) =
                    live.open.iter_mut().find(|(_, _, asked, _)| !*asked)
                {
                    *asked = true;
                    notify.notify_one();
                }
            }
            live.next += 1;
            let id = live.next;
            let evict = Arc::new(Notify::new());
            let last = Arc::new(AtomicU64::new(0));
            live.open.push_back((id, evict.clone(), false, last.clone()));
            (id, evict, last)
        };
        let app = app.clone();
        let live = live.clone();
        let mut stopped = stopped.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let born = Instant::now();
            let watched = Watched { inner: stream, last: last.clone(), born };
            match tls {
                None => connection(watched, born, app, limits, evict, last, &mut stopped).await,
                Some(tls) => {
                    // A handshake that does not finish in time, or fails, closes the socket; so
                    // do an eviction and the server's stop before it finishes (no request yet).
                    let handshake =
                        tokio::time::timeout(limits.header_timeout, tls.accept(watched));
                    let (evicted, mut stopping) = (evict.clone(), stopped.clone());
                    let secured = tokio::select! {
                        done = handshake => done.ok().and_then(Result::ok),
                        () = evicted.notified() => None,
                        _ = stopping.changed() => None,
                    };
                    if let Some(secured) = secured {
                        connection(secured, born, app, limits, evict, last, &mut stopped).await;
                    }
                }
            }
            let mut live = live.lock().unwrap_or_else(|p| p.into_inner());
            live.open.retain(|(open, ..)| *open != id);
        });
    }
    let _ = stop.send(true);
    drop(stopped);
    // Every connection finishes its request (bounded, as an operator's stop must be).
    let deadline = Instant::now() + Duration::from_secs(30);
    while !live.lock().unwrap_or_else(|p| p.into_inner()).open.is_empty()
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// One connection: HTTP/1.1 with the header timeout, closed gracefully when evicted, when the
/// server stops, or when no byte moved for the idle timeout.
async fn connection<S>(
    stream: S,
    born: Instant,
    app: crate::App,
    limits: Limits,
    evict: Arc<Notify>,
    last: Arc<AtomicU64>,
    stopped: &mut watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(stream);
    let service = hyper_util::service::TowerToHyperService::new(app);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    let conn = builder.serve_connection(io, service);
    let mut conn = std::pin::pin!(conn);
    let mut closing = false;
    let mut tick = tokio::time::interval(limits.idle_timeout.min(Duration::from_secs(1)));
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            () = evict.notified(), if !closing => {
                // A socket that never sent a byte has no request to finish: closed at once.
                if last.load(Ordering::Relaxed) == 0 {
                    return;
                }
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = stopped.changed(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = tick.tick() => {
                let moved = Duration::from_millis(last.load(Ordering::Relaxed).saturating_sub(1));
                let quiet = born.elapsed().saturating_sub(moved);
                if quiet > limits.idle_timeout {
                    return; // dropped: the socket closes
                }
            }
        }
    }
}

/// A stream that notes when a byte last moved (1 + milliseconds since `born`; 0: never).
struct Watched {
    inner: TcpStream,
    last: Arc<AtomicU64>,
    born: Instant,
}

impl Watched {
    fn moved(&self) {
        self.last.store(self.born.elapsed().as_millis() as u64 + 1, Ordering::Relaxed);
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.moved();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.moved();
        }
        polled
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
