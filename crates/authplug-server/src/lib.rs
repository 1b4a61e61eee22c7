//! `authplug serve`: the long-running host. It runs the lifecycle engine's sweep in the
//! background and serves fresh credentials over HTTP to the workers that run connectors, each
//! caller limited by the scopes of its API token.
//!
//! The API lives under `/v1`; `/healthz` and `/readyz` are for the platform's probes. Every
//! answer carries `Cache-Control: no-store`, and no answer carries a secret unless the caller's
//! token grants it. The routes are one table (`routes::api`); the router is built by
//! [`router`] and tested without a socket.

mod access;
mod audit;
mod auth;
mod connectors;
mod error;
mod front;
pub mod listen;
mod metrics;
mod onboarding;
mod probes;
mod routes;
mod systems;
pub mod tls;
mod ui;

#[cfg(test)]
mod paging_tests;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use authplug_engine::Engine;
use authplug_onboard::Onboarder;

pub use audit::{flush_authorize_audit_forever, AuthorizeAudit, AUTHORIZED};
pub use auth::{hash_token, new_token, Scope, TokenEntry, Tokens};
pub use connectors::load_connectors;
pub use error::ApiError;
pub use front::App;
pub use metrics::Metrics;
pub use routes::{router, OPENAPI};

/// The default of [`AppState::max_body`]: 1 MiB (an onboarding request is a few KB).
pub const DEFAULT_MAX_BODY: usize = 1 << 20;

/// The connectors of `--connectors`, by name.
pub type Connectors = BTreeMap<String, authplug_connector::Connector>;

/// What the routes share.
#[derive(Debug)]
pub struct AppState {
    pub engine: Arc<Engine>,
    /// Replaced whole when the configuration is reloaded (SIGHUP).
    tokens: RwLock<Tokens>,
    /// Connectors users may onboard, by name; replaced whole when reloaded (SIGHUP).
    connectors: RwLock<Arc<Connectors>>,
    /// The address browsers reach this server at (for the OAuth2 callback), without a
    /// trailing `/`.
    pub public_url: String,
    pub metrics: Metrics,
    /// Serve the connect page at `/` (off for API-only deployments).
    pub web_page: bool,
    /// The largest request body, in bytes: a larger declared `Content-Length` is refused (413)
    /// before authentication, a larger streamed body when it is read.
    pub max_body: usize,
    /// Authorize calls counted for the audit trail (a row per token, system and minute).
    pub authorize_audit: AuthorizeAudit,
    /// The store's counts by scheme (`/readyz`) and by state (`/metrics`), reused for a moment.
    counts: (probes::CachedCount, probes::CachedCount),
}

impl AppState {
    pub fn new(
        engine: Arc<Engine>,
        tokens: Tokens,
        connectors: Connectors,
        public_url: &str,
        web_page: bool,
    ) -> Self {
        Self {
            engine,
            tokens: RwLock::new(tokens),
            connectors: RwLock::new(Arc::new(connectors)),
            public_url: public_url.trim_end_matches('/').to_owned(),
            metrics: Metrics::default(),
            web_page,
            max_body: DEFAULT_MAX_BODY,
            authorize_audit: AuthorizeAudit::default(),
            counts: Default::default(),
        }
    }

    /// The caller `token` belongs to, by the tokens as they are now.
    pub(crate) fn caller(&self, token: &str) -> Option<Arc<auth::Caller>> {
        self.tokens.read().unwrap_or_else(|p| p.into_inner()).caller(token)
    }

    /// Replaces the tokens for later requests (a reload).
    pub fn set_tokens(&self, tokens: Tokens) {
        *self.tokens.write().unwrap_or_else(|p| p.into_inner()) = tokens;
    }

    /// The connectors as they are now (a reload replaces them for later requests only).
    pub fn connectors(&self) -> Arc<Connectors> {
        self.connectors.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the connectors for later requests (a reload).
    pub fn set_connectors(&self, connectors: Connectors) {
        *self.connectors.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(connectors);
    }

    /// The onboarding service over this server's engine.
    pub(crate) fn onboarder(&self) -> Onboarder {
        Onboarder::new(self.engine.clone())
    }

    /// Runs store work on a blocking thread: the store is synchronous (SQLite, `postgres`).
    pub(crate) async fn with_store<T: Send + 'static>(
        &self,
        work: impl FnOnce(&authplug_store::Store) -> Result<T, authplug_store::StoreError>
            + Send
            + 'static,
    ) -> Result<T, ApiError> {
        let engine = self.engine.clone();
        blocking(move || work(engine.store())).await
    }
}

/// Runs synchronous work (the store, plugin calls, the onboarding service) on a blocking
/// thread, never on an async worker.
pub(crate) async fn blocking<T, E>(
    work: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, ApiError>
where
    T: Send + 'static,
    E: Send + 'static,
    ApiError: From<E>,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(ApiError::from),
        Err(_) => Err(ApiError::internal("a blocking task ended abnormally")),
    }
}

/// Counts the engine's lifecycle events for `/metrics`.
pub async fn count_events(state: Arc<AppState>) {
    let mut events = state.engine.events().subscribe();
    while let Some(event) = events.recv().await {
        state.metrics.event(event.kind.as_str());
    }
}

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// How often every system is checked for a due refresh.
    pub sweep_interval: Duration,
    pub sweep_concurrency: usize,
    /// How long the audit trail and the refresh journal are kept; pruned after each sweep.
    pub retention: authplug_store::Retention,
}

/// Rows pruned per batch, and batches per sweep: pruning a backlog takes many sweeps rather
/// than one long stall.
const PRUNE_BATCH: usize = 1000;
const PRUNE_BATCHES: usize = 20;

/// Sweeps every `interval`: due systems are refreshed before any worker asks for them.
/// Each sweep's time and outcome go to the server's metrics.
pub async fn sweep_forever(state: Arc<AppState>, options: ServeOptions) {
    let engine = state.engine.clone();
    let mut ticks = tokio::time::interval(options.sweep_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let started = std::time::Instant::now();
        let swept = engine.sweep(options.sweep_concurrency).await;
        let took = started.elapsed();
        match swept {
            Ok(results) => {
                let failed = results.iter().filter(|(_, r)| r.is_err()).count();
                let refreshed = results.len() - failed;
                state.metrics.sweep(took, refreshed as u64, failed as u64);
                if !results.is_empty() {
                    let ms = took.as_millis() as u64;
                    tracing::info!(refreshed, failed, ms, "sweep");
                }
            }
            Err(error) => {
                state.metrics.sweep_failed(took);
                tracing::warn!(error = %authplug_store::chain(&error), "sweep failed")
            }
        }
        let store = engine.store().clone();
        let retention = options.retention;
        let pruned = tokio::task::spawn_blocking(move || {
            let mut total = authplug_store::Pruned::default();
            for _ in 0..PRUNE_BATCHES {
                let pruned = store.prune(&retention, PRUNE_BATCH)?;
                total.audit += pruned.audit;
                total.journal += pruned.journal;
                if pruned.audit < PRUNE_BATCH as u64 && pruned.journal < PRUNE_BATCH as u64 {
                    break;
                }
            }
            Ok::<_, authplug_store::StoreError>(total)
        })
        .await;
        match pruned {
            Ok(Ok(p)) if p.total() > 0 => {
                tracing::info!(audit = p.audit, journal = p.journal, "pruned past retention")
            }
            Ok(Ok(_)) => {}
            Ok(Err(error)) => {
                tracing::warn!(error = %authplug_store::chain(&error), "pruning failed")
            }
            Err(_) => tracing::warn!("pruning was cut short"),
        }
    }
}
