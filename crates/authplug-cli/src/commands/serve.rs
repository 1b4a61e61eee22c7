//! `authplug serve`: the long-running host. The server crate has the routes; this wires the
//! engine, the tokens and the connectors to a listener, and the signals to reloads and a
//! graceful stop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use authplug_server::{AppState, Scope, ServeOptions, Tokens};
use clap::Args;

use super::api_token::tokens_file;
use crate::context::{Context, EngineOptions};
use crate::exit::{Code, Failure};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The address to listen on.
    #[arg(long, value_name = "ADDR", env = "AUTHPLUG_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,

    /// The API tokens file. Default: $XDG_CONFIG_HOME/authplug/tokens.json.
    #[arg(long, value_name = "FILE", env = "AUTHPLUG_TOKENS_FILE")]
    pub tokens_file: Option<PathBuf>,

    /// Seconds between two checks of every system for a due refresh.
    #[arg(long, value_name = "SECS", env = "AUTHPLUG_SWEEP_INTERVAL", default_value_t = 30)]
    pub sweep_interval: u64,

    /// Refreshes a sweep runs at once.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub sweep_concurrency: usize,

    /// Days the audit trail is kept (older lines are pruned after each sweep); 0 keeps it all.
    #[arg(long, value_name = "DAYS", env = "AUTHPLUG_AUDIT_RETENTION_DAYS", default_value_t = 365)]
    pub audit_retention_days: u64,

    /// Days finished refresh attempts are kept in the journal (each system's newest and any
    /// unfinished one are always kept); 0 keeps them (up to 50 per system).
    #[arg(
        long,
        value_name = "DAYS",
        env = "AUTHPLUG_JOURNAL_RETENTION_DAYS",
        default_value_t = 30
    )]
    pub journal_retention_days: u64,

    /// Also refresh systems idle for this many seconds (providers that expire unused tokens).
    #[arg(long, value_name = "SECS", env = "AUTHPLUG_KEEPALIVE")]
    pub keepalive: Option<u64>,

    /// Reuse a system's authorize answer for this many milliseconds (never past the moment its
    /// secrets become due; 0: never). Also how late a change made by another instance sharing
    /// the store is seen by this one's authorize.
    #[arg(long, value_name = "MS", env = "AUTHPLUG_AUTHORIZE_CACHE_MS", default_value_t = 1000)]
    pub authorize_cache_ms: u64,

    /// The most authorize answers kept in memory at once; the oldest are dropped to make room
    /// (0: never kept).
    #[arg(
        long,
        value_name = "N",
        env = "AUTHPLUG_AUTHORIZE_CACHE_ENTRIES",
        default_value_t = 100_000
    )]
    pub authorize_cache_entries: usize,

    /// The most memory, in MiB, the kept authorize answers may hold (the headers and query
    /// parameters of each, estimated; no answer keeps the secrets it came from); the oldest are
    /// dropped to make room.
    #[arg(long, value_name = "MIB", env = "AUTHPLUG_AUTHORIZE_CACHE_MIB", default_value_t = 64)]
    pub authorize_cache_mib: usize,

    /// A folder of connector folders users may onboard through the API.
    #[arg(long, value_name = "DIR", env = "AUTHPLUG_CONNECTORS")]
    pub connectors: Option<PathBuf>,

    /// Do not serve the web page at / (an API-only deployment).
    #[arg(long, env = "AUTHPLUG_NO_WEB_PAGE")]
    pub no_web_page: bool,

    /// The address browsers reach this server at, for the OAuth2 callback
    /// (PUBLIC_URL/v1/onboarding/callback). Default: http://LISTEN.
    #[arg(long, value_name = "URL", env = "AUTHPLUG_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// Seconds a client has to send a request's head, counted from when the server waits for
    /// it: also how long a kept-alive connection may wait for its next request.
    #[arg(long, value_name = "SECS", env = "AUTHPLUG_HEADER_TIMEOUT", default_value_t = 10)]
    pub header_timeout: u64,

    /// Seconds a request may go without a byte moving either way (a stalled upload, a client
    /// that stopped reading) before its connection is closed.
    #[arg(long, value_name = "SECS", env = "AUTHPLUG_IDLE_TIMEOUT", default_value_t = 120)]
    pub idle_timeout: u64,

    /// Connections served at once. Over the cap, the oldest connection closes as soon as it is
    /// between requests (at once if it never sent one); past four times the cap, new ones are
    /// closed unanswered.
    #[arg(long, value_name = "N", env = "AUTHPLUG_MAX_CONNECTIONS", default_value_t = 512)]
    pub max_connections: usize,

    /// Serve HTTPS with this PEM certificate chain (the server's certificate first); read again
    /// on SIGHUP, with the key.
    #[arg(long, value_name = "FILE", env = "AUTHPLUG_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1), readable by its owner only.
    #[arg(long, value_name = "FILE", env = "AUTHPLUG_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Allow plain HTTP on an address that is not loopback (TLS ends at a proxy in front, on a
    /// network nobody else can reach). Without TLS, only 127.0.0.0/8 and ::1 are served.
    #[arg(long, env = "AUTHPLUG_INSECURE_HTTP")]
    pub insecure_http: bool,

    /// The largest request body, in bytes; a larger declared Content-Length is answered 413
    /// before authentication.
    #[arg(long, value_name = "BYTES", env = "AUTHPLUG_MAX_BODY", default_value_t = 1 << 20)]
    pub max_body: usize,
}

/// The tokens file, and the admin token of the environment.
fn load_tokens(path: &std::path::Path) -> Result<Tokens, Failure> {
    let mut tokens = if path.exists() {
        authplug_store::check_private_file(path, authplug_store::Holds::Guarded)
            .map_err(|e| Failure::new(Code::Unsafe, e.to_string()))?;
        Tokens::from_file(path).map_err(|e| Failure::new(Code::BadInput, e))?
    } else {
        Tokens::default()
    };
    if let Ok(admin) = std::env::var("AUTHPLUG_ADMIN_TOKEN") {
        if !admin.is_empty() {
            tokens = tokens.with_plain("admin (AUTHPLUG_ADMIN_TOKEN)", &admin, vec![Scope::Admin]);
        }
    }
    Ok(tokens)
}

/// TLS from --tls-cert and --tls-key, or plain HTTP: on loopback, or where the operator said
/// --insecure-http (and is warned).
fn transport(args: &ServeArgs) -> Result<Option<authplug_server::tls::Tls>, Failure> {
    use authplug_server::tls::{Tls, TlsError};
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        return Tls::load(cert, key).map(Some).map_err(|e| match e {
            TlsError::Unsafe(why) => Failure::new(Code::Unsafe, why),
            TlsError::Invalid(why) => Failure::new(Code::BadInput, why),
        });
    }
    if let Some(warning) = plain_http(args.listen, args.insecure_http)? {
        eprintln!("{warning}");
    }
    Ok(None)
}

/// Plain HTTP on `listen`: refused off loopback unless `insecure`, and then a warning.
fn plain_http(listen: SocketAddr, insecure: bool) -> Result<Option<String>, Failure> {
    if listen.ip().is_loopback() {
        return Ok(None);
    }
    if !insecure {
        return Err(Failure::new(
            Code::BadInput,
            format!(
                "--listen {listen}: plain HTTP on an address that is not loopback would send API tokens and secrets in clear; give --tls-cert and --tls-key, or --insecure-http if TLS ends at a proxy in front"
            ),
        ));
    }
    Ok(Some(format!(
        "warning: serving plain HTTP on {listen} (--insecure-http): API tokens and secrets cross the network in clear unless a proxy in front terminates TLS"
    )))
}

/// What SIGHUP reads again.
struct Reload {
    state: Arc<AppState>,
    tokens: PathBuf,
    connectors: Option<PathBuf>,
    tls: Option<Arc<authplug_server::tls::Tls>>,
}

impl Reload {
    /// On SIGHUP, the connectors folder, the TLS certificate and key, and the tokens file are
    /// read again (a bad file or folder keeps the old ones, and says why). Plugins are never
    /// unloaded or reloaded: that takes a restart.
    async fn on_hangup(self, mut hangups: tokio::signal::unix::Signal) {
        while hangups.recv().await.is_some() {
            // Connectors first: once the new tokens answer, the new connectors are there too.
            if let Some(dir) = &self.connectors {
                match authplug_server::load_connectors(dir) {
                    Ok(loaded) => {
                        let count = loaded.len();
                        self.state.set_connectors(loaded);
                        eprintln!(
                            "authplug serve: reloaded {count} connector(s) from {}",
                            dir.display()
                        );
                    }
                    Err(error) => eprintln!("authplug serve: kept the old connectors: {error}"),
                }
            }
            if let Some(tls) = &self.tls {
                match tls.reload() {
                    Ok(()) => eprintln!(
                        "authplug serve: reloaded the TLS certificate from {}",
                        tls.cert_file().display()
                    ),
                    Err(error) => {
                        eprintln!("authplug serve: kept the old TLS certificate: {error}")
                    }
                }
            }
            match load_tokens(&self.tokens) {
                Ok(tokens) => {
                    self.state.set_tokens(tokens);
                    eprintln!(
                        "authplug serve: reloaded the API tokens from {}",
                        self.tokens.display()
                    );
                }
                Err(failure) => {
                    eprintln!("authplug serve: kept the old API tokens: {}", failure.message)
                }
            }
        }
    }
}

pub fn run(ctx: &Context<'_>, args: &ServeArgs) -> Result<(), Failure> {
    if ctx.json() {
        return Err(Failure::no_json("serve", "it serves JSON over HTTP instead"));
    }
    let started = Instant::now();
    let path = tokens_file(&args.tokens_file);
    let tokens = load_tokens(&path)?;
    if tokens.is_empty() {
        eprintln!(
            "warning: no API token: only /healthz and /readyz will answer (set AUTHPLUG_ADMIN_TOKEN, or `authplug api-token NAME --scope ...`)"
        );
    }
    let tls = transport(args)?;
    let cache = Duration::from_millis(args.authorize_cache_ms);
    let options = EngineOptions {
        keepalive: args.keepalive,
        authorize_cache: Some(cache),
        authorize_cache_bounds: Some((
            args.authorize_cache_entries,
            args.authorize_cache_mib.saturating_mul(1 << 20),
        )),
    };
    let engine = ctx.engine(options)?;
    let schemes = engine.registry().schemes().count();
    // Stored systems no loaded plugin serves answer `cannot_serve`: said now, and by /readyz.
    for (scheme, count) in engine.store().count_by_scheme()? {
        if engine.registry().get(&scheme).is_none() {
            eprintln!(
                "warning: {count} stored system(s) use scheme `{scheme}`, which no loaded plugin serves: they answer cannot_serve (see the refusals above, or --plugin-dir)"
            );
        }
    }
    let runtime = ctx.runtime()?;
    let connectors = match &args.connectors {
        Some(dir) => {
            authplug_server::load_connectors(dir).map_err(|e| Failure::new(Code::BadInput, e))?
        }
        None => Default::default(),
    };
    let options = ServeOptions {
        sweep_interval: Duration::from_secs(args.sweep_interval.max(1)),
        sweep_concurrency: args.sweep_concurrency.max(1),
        retention: authplug_store::Retention {
            audit: days(args.audit_retention_days),
            journal: days(args.journal_retention_days),
        },
    };
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen).await.map_err(|e| {
            Failure::new(Code::Failure, format!("cannot listen on {}: {e}", args.listen))
        })?;
        let address: SocketAddr = listener.local_addr().map_err(|e| Failure::new(Code::Failure, e.to_string()))?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let public_url =
            args.public_url.clone().unwrap_or_else(|| format!("{scheme}://{address}"));
        let mut state = AppState::new(
            engine.clone(),
            tokens,
            connectors,
            public_url.trim_end_matches('/'),
            !args.no_web_page,
        );
        state.max_body = args.max_body.max(1024);
        let state = Arc::new(state);
        tokio::spawn(authplug_server::count_events(state.clone()));
        tokio::spawn(authplug_server::flush_authorize_audit_forever(state.clone()));
        // Installed before the server says it listens, so that no SIGHUP finds the default action.
        let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map_err(|e| Failure::new(Code::Failure, format!("no SIGHUP handler: {e}")))?;
        // SIGTERM and SIGINT too: a stop sent as soon as the server says it listens must be
        // graceful, not the default action.
        let stops = Stops::install()?;
        let folder = args.connectors.clone();
        let tls = tls.map(Arc::new);
        let reload = Reload { state: state.clone(), tokens: path.clone(), connectors: folder, tls: tls.clone() };
        tokio::spawn(reload.on_hangup(hangups));
        let sweeper = tokio::spawn(authplug_server::sweep_forever(state.clone(), options));
        eprintln!(
            "authplug serve: listening on {scheme}://{address} ({schemes} schemes, store {}, pid {}), ready in {} ms",
            engine.store().location(),
            std::process::id(),
            started.elapsed().as_millis()
        );
        let app = authplug_server::router(state.clone());
        let limits = authplug_server::listen::Limits {
            header_timeout: Duration::from_secs(args.header_timeout.max(1)),
            idle_timeout: Duration::from_secs(args.idle_timeout.max(1)),
            max_connections: args.max_connections.max(1),
        };
        let acceptor = tls.as_ref().map(|tls| tls.acceptor());
        authplug_server::listen::serve(listener, app, limits, acceptor, stops.received())
            .await
            .map_err(|e| Failure::new(Code::Failure, format!("the server failed: {e}")))?;
        // Refreshes run in their own tasks and store their result before anyone sees it; the
        // sweep stops between systems, and webhook deliveries get a little time to finish.
        sweeper.abort();
        // The authorize calls of the minute in progress go to the audit trail.
        state.authorize_audit.flush(&state).await;
        if !engine.events().flush(Duration::from_secs(10)).await {
            tracing::warn!("some webhook deliveries did not finish before exit");
        }
        eprintln!("authplug serve: stopped");
        Ok(())
    })
}

/// The signals that stop the server, installed before it says it listens.
struct Stops {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl Stops {
    fn install() -> Result<Stops, Failure> {
        use tokio::signal::unix::{signal, SignalKind};
        let handler = |kind: SignalKind, name: &str| {
            signal(kind).map_err(|e| Failure::new(Code::Failure, format!("no {name} handler: {e}")))
        };
        Ok(Stops {
            terminate: handler(SignalKind::terminate(), "SIGTERM")?,
            interrupt: handler(SignalKind::interrupt(), "SIGINT")?,
        })
    }

    async fn received(mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
        eprintln!("authplug serve: shutting down (in-flight requests finish)");
    }
}

/// A retention in days; zero keeps everything.
fn days(days: u64) -> Option<Duration> {
    (days > 0).then(|| Duration::from_secs(days.saturating_mul(86_400)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_for_loopback_or_said_to_be_insecure() {
        for loopback in ["127.0.0.1:8080", "127.3.4.5:1", "[::1]:8080"] {
            assert!(plain_http(loopback.parse().unwrap(), false).unwrap().is_none());
        }
        for open in ["0.0.0.0:8080", "192.168.1.4:80", "[::]:8080"] {
            let refused = plain_http(open.parse().unwrap(), false).unwrap_err();
            assert_eq!(refused.code, Code::BadInput);
            assert!(refused.message.contains("--insecure-http"), "{}", refused.message);
            let warning = plain_http(open.parse().unwrap(), true).unwrap().unwrap();
            assert!(warning.starts_with("warning: serving plain HTTP on"), "{warning}");
        }
    }
}
