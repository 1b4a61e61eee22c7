//! The engine: hands out fresh credentials, refreshing them first when due. What it does is
//! split by job: `flight` (one caller per system at a time, and waiting for another instance's
//! lease), `attempt` (the attempts of one refresh under the lease), `outcome` (the pure step that
//! turns a scheme's answer into what is stored and said), `due` (when secrets fall due),
//! `authorize`, `sweep`, `onboarded` and `status`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use authplug_host::{HostServices, LoadedScheme, Registry};
use authplug_protocol::Secret;
use authplug_store::{Clock, State, Store, SystemRecord, SystemSummary};

use crate::cache::AuthorizeCache;
use crate::events::Events;
use crate::flight::Want;
use crate::{EngineConfig, EngineError, Holder};

/// A system's injected secrets, fresh enough to use.
#[derive(Debug, Clone)]
pub struct Token {
    pub system: String,
    pub scheme: String,
    pub injected: BTreeMap<String, Secret>,
    /// Unix seconds.
    pub expires_at: Option<i64>,
    pub version: i64,
    /// Whether the secrets were renewed during this call (by it, or by another caller it waited
    /// for).
    pub refreshed: bool,
    /// The system's non-secret parameters (how the scheme applies the secrets).
    pub parameters: BTreeMap<String, serde_json::Value>,
    /// Unix seconds the secrets were issued (their last refresh, or the onboarding).
    pub issued_at: i64,
}

impl Token {
    pub(crate) fn from_record(record: SystemRecord, refreshed: bool) -> Self {
        Self {
            issued_at: record.summary.issued_at(),
            system: record.summary.id,
            scheme: record.summary.scheme,
            injected: record.injected,
            expires_at: record.summary.expires_at,
            version: record.summary.version,
            refreshed,
            parameters: record.summary.parameters,
        }
    }
}

/// The credential lifecycle engine. Share it in an `Arc`.
#[derive(Debug)]
pub struct Engine {
    pub(crate) store: Arc<Store>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) services: HostServices,
    pub(crate) config: EngineConfig,
    pub(crate) holder: Holder,
    /// One async mutex per system being worked on in this process.
    pub(crate) flights: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    pub(crate) events: Events,
    pub(crate) authorized: AuthorizeCache,
}

impl Engine {
    /// The engine over `store`, reading time from the store's clock
    /// ([`Store::with_clock`](authplug_store::Store::with_clock) for tests).
    pub fn new(
        store: Arc<Store>,
        registry: Arc<Registry>,
        services: HostServices,
        config: EngineConfig,
        events: Events,
    ) -> Self {
        Self {
            authorized: AuthorizeCache::new(config.authorize_cache)
                .bounded(config.authorize_cache_entries, config.authorize_cache_bytes),
            store,
            registry,
            services,
            config,
            holder: Holder::new(),
            flights: Default::default(),
            events,
        }
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// What plugins may use of the host (the onboarding service calls schemes with it).
    pub fn services(&self) -> &HostServices {
        &self.services
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub fn events(&self) -> &Events {
        &self.events
    }

    /// The one clock: the store's.
    pub(crate) fn clock(&self) -> &dyn Clock {
        self.store.clock().as_ref()
    }

    /// The system's injected secrets, refreshed first if they are due. Secrets that are still
    /// valid are returned even when a refresh fails transiently.
    pub async fn token(self: &Arc<Self>, id: &str) -> Result<Token, EngineError> {
        // Most reads find the secrets active and not due: those need no turn (turns serialise
        // the callers of one system, which only a refresh needs).
        let record = self.get(id).await?;
        if record.summary.state == State::Active {
            if let Some(scheme) = self.registry.get(&record.summary.scheme) {
                if !self.is_due(&record.summary, scheme, self.clock().now_secs()) {
                    return Ok(Token::from_record(record, false));
                }
            }
        }
        match self.single_flight(id, Want::Fresh).await {
            Err(EngineError::Unavailable { still_valid: Some(token), system, reason, .. }) => {
                tracing::warn!(%system, %reason, "refresh failed; handing out the stored secrets, still valid");
                Ok(*token)
            }
            other => other,
        }
    }

    /// Forces a refresh, unless one that finished after this call began is shared instead.
    pub async fn refresh(self: &Arc<Self>, id: &str) -> Result<Token, EngineError> {
        let seen = self.get(id).await?.summary.last_refresh_at;
        self.single_flight(id, Want::Newer(seen)).await
    }

    /// Whether the system's secrets are due for refresh at `now` (Unix seconds).
    pub fn is_due(&self, summary: &SystemSummary, scheme: &LoadedScheme, now: i64) -> bool {
        crate::due::is_due(summary, self.margin(scheme), now)
    }

    /// The refresh margin `scheme` asks for, or the default.
    pub(crate) fn margin(&self, scheme: &LoadedScheme) -> crate::due::Margin {
        crate::due::Margin::of(scheme.descriptor(), self.config.default_margin)
    }

    /// How many `authorize` calls were answered from memory, and how many were not.
    pub fn authorize_cache_counts(&self) -> (u64, u64) {
        self.authorized.counts()
    }

    /// The authorize answers kept now, the bytes they hold (an estimate), and how many were
    /// dropped before their time to make room.
    pub fn authorize_cache_size(&self) -> (usize, usize, u64) {
        self.authorized.size()
    }

    /// Stops reusing the system's `authorize` answers: call it after changing the system
    /// outside the engine (deleted).
    pub fn forget(&self, id: &str) {
        self.authorized.forget(id);
    }

    pub(crate) async fn get(&self, id: &str) -> Result<SystemRecord, EngineError> {
        let id = id.to_owned();
        self.blocking("a store read", move |store| {
            store.get(&id)?.ok_or(EngineError::NotFound(id.clone()))
        })
        .await
    }

    /// Runs store work on a blocking thread: the store is synchronous.
    pub(crate) async fn blocking<T: Send + 'static>(
        &self,
        what: &'static str,
        work: impl FnOnce(&Store) -> Result<T, EngineError> + Send + 'static,
    ) -> Result<T, EngineError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || work(&store))
            .await
            .unwrap_or(Err(EngineError::Aborted { what }))
    }
}
