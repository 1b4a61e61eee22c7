//! `authplug serve`: the long-running host. It runs the lifecycle engine's sweep in the
//! background and serves fresh credentials over HTTP to the workers that run connectors, each
//! caller limited by the scopes of its API token.
//!
//! The API lives under `/v1`; `/healthz` and `/readyz` are for the platform's probes. Every
//! answer carries `Cache-Control: no-store`, and no answer carries a secret unless the caller's
//! token grants it.

mod auth;
mod metrics;
mod onboarding;
mod routes;
mod ui;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use authplug_engine::Engine;

pub use auth::{hash_token, new_token, Scope, TokenEntry, Tokens};
pub use metrics::Metrics;
pub use onboarding::load_connectors;
pub use routes::router;

/// What the routes share.
#[derive(Debug)]
pub struct AppState {
    pub engine: Arc<Engine>,
    /// Replaced whole when the configuration is reloaded (SIGHUP).
    pub tokens: std::sync::RwLock<Tokens>,
    /// Connectors users may onboard, by name; replaced whole when reloaded (SIGHUP).
    pub connectors: std::sync::RwLock<Arc<Connectors>>,
    /// The address browsers reach this server at (for the OAuth2 callback).
    pub public_url: String,
    pub metrics: Metrics,
    /// Serve the connect page at `/` (off for API-only deployments).
    pub web_page: bool,
}

/// The connectors of `--connectors`, by name.
pub type Connectors = BTreeMap<String, authplug_connector::Connector>;

impl AppState {
    /// The connectors as they are now (a reload replaces them for later requests only).
    pub fn connectors(&self) -> Arc<Connectors> {
        self.connectors.read().unwrap_or_else(|p| p.into_inner()).clone()
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
}

/// Sweeps every `interval`: due systems are refreshed before any worker asks for them.
pub async fn sweep_forever(engine: Arc<Engine>, options: ServeOptions) {
    let mut ticks = tokio::time::interval(options.sweep_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match engine.sweep(options.sweep_concurrency).await {
            Ok(results) if !results.is_empty() => {
                let failed = results.iter().filter(|(_, r)| r.is_err()).count();
                tracing::info!(refreshed = results.len() - failed, failed, "sweep");
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "sweep failed"),
        }
    }
}
