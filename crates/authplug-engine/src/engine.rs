//! The engine: hands out fresh credentials, refreshing them first when due, one refresh at a
//! time per credential in this process (a per-system async mutex) and across processes and hosts
//! (the store's lease).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use authplug_host::{CallError, HostServices, LoadedScheme, Registry};
use authplug_protocol::{ApplyRequest, ErrorCode, RefreshOutcome, RefreshRequest, Secret};
use authplug_store::{
    now_ms, now_secs, Attempt, Begin, Change, Finish, State, Store, SystemRecord, SystemSummary,
};

use crate::cache::{Authorization, AuthorizeCache};
use crate::events::{Event, EventKind, Events};
use crate::journal::Journal;
use crate::{EngineConfig, EngineError, Holder};

/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER_SECS: u64 = 3600;

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
    fn from_record(record: SystemRecord, refreshed: bool) -> Self {
        Self {
            issued_at: record.summary.last_refresh_at.unwrap_or(record.summary.created_at),
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

/// What a caller wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// Fresh secrets: refresh only if due.
    Fresh,
    /// A refresh newer than the one the caller saw (its `last_refresh_at`): an operator's
    /// `refresh`.
    Newer(Option<i64>),
    /// A keep-alive refresh of an idle credential, unless someone refreshed meanwhile.
    KeepAlive(Option<i64>),
}

/// The credential lifecycle engine. Share it in an `Arc`.
#[derive(Debug)]
pub struct Engine {
    store: Arc<Store>,
    registry: Arc<Registry>,
    services: HostServices,
    config: EngineConfig,
    holder: Holder,
    flights: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    events: Events,
    authorized: AuthorizeCache,
}

impl Engine {
    pub fn new(
        store: Arc<Store>,
        registry: Arc<Registry>,
        services: HostServices,
        config: EngineConfig,
        events: Events,
    ) -> Self {
        Self {
            authorized: AuthorizeCache::new(config.authorize_cache),
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

    /// What plugins may use of the host (for onboarding outside the engine).
    pub fn services(&self) -> &HostServices {
        &self.services
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub fn events(&self) -> &Events {
        &self.events
    }

    /// The system's injected secrets, refreshed first if they are due. Secrets that are still
    /// valid are returned even when a refresh fails transiently.
    pub async fn token(self: &Arc<Self>, id: &str) -> Result<Token, EngineError> {
        // Most reads find the secrets active and not due: those need no turn (turns serialise
        // the callers of one system, which only a refresh needs).
        let record = self.get(id).await?;
        if record.summary.state == State::Active {
            if let Some(scheme) = self.registry.get(&record.summary.scheme) {
                if !self.is_due(&record.summary, scheme, now_secs()) {
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

    /// What one outbound request of the system needs (the scheme's apply step: headers, query
    /// parameters), from secrets refreshed first if they are due. Callers that hold this never
    /// hold the long-lived secrets themselves. The answer is reused for the same system for a
    /// moment (`EngineConfig::authorize_cache`, see `cache.rs`).
    pub async fn authorize(self: &Arc<Self>, id: &str) -> Result<Arc<Authorization>, EngineError> {
        if let Some(cached) = self.authorized.get(id) {
            return Ok(cached);
        }
        let generation = self.authorized.generation(id);
        let token = self.token(id).await?;
        let request = ApplyRequest {
            scheme: token.scheme.clone(),
            injected: token.injected.clone(),
            parameters: token.parameters.clone(),
        };
        let (registry, services) = (self.registry.clone(), self.services.clone());
        let (scheme_id, system) = (token.scheme.clone(), id.to_owned());
        let applied = tokio::task::spawn_blocking(move || match registry.get(&scheme_id) {
            Some(scheme) => scheme
                .apply(request, &services)
                .map_err(|error| EngineError::Scheme { system, error }),
            None => Err(EngineError::SchemeNotLoaded { system, scheme: scheme_id }),
        })
        .await
        .unwrap_or_else(|_| {
            Err(EngineError::Scheme {
                system: id.to_owned(),
                error: CallError {
                    scheme: token.scheme.clone(),
                    code: ErrorCode::Internal,
                    message: "the apply thread ended abnormally".into(),
                },
            })
        })?;
        let due_in = self.registry.get(&token.scheme).and_then(|scheme| {
            let due_at = self.due_at(token.expires_at, token.issued_at, scheme)?;
            let due_in_ms = due_at.saturating_mul(1000).saturating_sub(now_ms());
            Some(Duration::from_millis(u64::try_from(due_in_ms).unwrap_or(0)))
        });
        let authorization = Arc::new(Authorization { token, applied });
        self.authorized.put(authorization.clone(), due_in, generation);
        Ok(authorization)
    }

    /// How many `authorize` calls were answered from memory, and how many were not.
    pub fn authorize_cache_counts(&self) -> (u64, u64) {
        self.authorized.counts()
    }

    /// Stops reusing the system's `authorize` answers: call it after changing the system
    /// outside the engine (deleted, onboarded again).
    pub fn forget(&self, id: &str) {
        self.authorized.forget(id);
    }

    /// Forces a refresh, unless one that finished after this call began is shared instead.
    pub async fn refresh(self: &Arc<Self>, id: &str) -> Result<Token, EngineError> {
        let seen = self.get(id).await?.summary.last_refresh_at;
        self.single_flight(id, Want::Newer(seen)).await
    }

    /// Whether the system's secrets are due for refresh at `now` (Unix seconds).
    pub fn is_due(&self, summary: &SystemSummary, scheme: &LoadedScheme, now: i64) -> bool {
        let issued = summary.last_refresh_at.unwrap_or(summary.created_at);
        self.due_at(summary.expires_at, issued, scheme).is_some_and(|due| now >= due)
    }

    /// When secrets expiring at `expires_at` and issued at `issued` become due (Unix seconds):
    /// the scheme's margin (or the default) before expiry, at most half their lifetime.
    fn due_at(&self, expires_at: Option<i64>, issued: i64, scheme: &LoadedScheme) -> Option<i64> {
        let expires_at = expires_at?;
        let declared = scheme
            .descriptor()
            .refresh
            .margin_secs
            .map(|s| i64::try_from(s).unwrap_or(i64::MAX))
            .unwrap_or(self.config.default_margin.as_secs() as i64);
        let margin = declared.min((expires_at - issued).max(0) / 2);
        Some(expires_at - margin)
    }

    /// Whether an idle credential should be refreshed to keep it alive.
    fn needs_keepalive(&self, summary: &SystemSummary, now: i64) -> bool {
        let Some(idle) = self.config.keepalive else { return false };
        let last = summary.last_refresh_at.unwrap_or(summary.created_at);
        now - last >= idle.as_secs() as i64
    }

    /// Refreshes every active system that is due (or idle past the keep-alive), at most
    /// `concurrency` at a time, skipping those whose backoff has not ended. Returns each
    /// attempted system with its result.
    pub async fn sweep(
        self: &Arc<Self>,
        concurrency: usize,
    ) -> Result<Vec<(String, Result<Token, EngineError>)>, EngineError> {
        self.authorized.purge();
        let store = self.store.clone();
        let (systems, attempts) =
            blocking(move || Ok((store.list()?, store.latest_attempts()?))).await?;
        let backoff: HashMap<String, i64> =
            attempts.into_iter().filter_map(|a| Some((a.system_id, a.retry_at_ms?))).collect();
        let now = now_secs();
        let mut work = Vec::new();
        for summary in systems {
            if summary.state != State::Active {
                continue;
            }
            let Some(scheme) = self.registry.get(&summary.scheme) else { continue };
            if !scheme.descriptor().refresh.renews {
                continue;
            }
            if backoff.get(&summary.id).is_some_and(|at| *at > now_ms()) {
                continue;
            }
            if self.is_due(&summary, scheme, now) {
                work.push((summary.id, Want::Fresh));
            } else if self.needs_keepalive(&summary, now) {
                work.push((summary.id, Want::KeepAlive(summary.last_refresh_at)));
            }
        }
        let limit = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
        let mut tasks = tokio::task::JoinSet::new();
        for (id, want) in work {
            let engine = self.clone();
            let permit =
                limit.clone().acquire_owned().await.expect("the semaphore is never closed");
            tasks.spawn(async move {
                let result = engine.single_flight(&id, want).await;
                drop(permit);
                (id, result)
            });
        }
        let mut results = Vec::new();
        while let Some(done) = tasks.join_next().await {
            results.push(done.expect("sweep tasks do not panic"));
        }
        results.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(results)
    }

    /// Stores the secrets of a new onboarding of an existing system (re-authorisation): the
    /// system is active again and its failures are forgotten.
    pub async fn reauthorized(
        &self,
        id: &str,
        injected: BTreeMap<String, Secret>,
        expires_at: Option<i64>,
    ) -> Result<Token, EngineError> {
        let record = self.get(id).await?;
        let was = record.summary.state;
        let change = Change {
            injected: Some(injected),
            expires_at: Some(expires_at),
            state: Some((State::Active, None)),
            last_refresh_at: Some(now_secs()),
            failures: Some(0),
            ..Change::default()
        };
        let store = self.store.clone();
        let (version, actor) = (record.summary.version, self.config.actor.clone());
        let id_owned = id.to_owned();
        let updated =
            blocking(move || Ok(store.update(&id_owned, version, change, &actor)?)).await?;
        if was != State::Active || record.summary.failures > 0 {
            let mut event =
                Event::new(EventKind::Recovered, id, &updated.summary.scheme, &self.holder.next());
            event.expires_at = updated.summary.expires_at;
            event.reason = Some("onboarded again".into());
            self.events.emit(event);
        }
        self.authorized.forget(id);
        Ok(Token::from_record(updated, false))
    }

    async fn get(&self, id: &str) -> Result<SystemRecord, EngineError> {
        let store = self.store.clone();
        let id_owned = id.to_owned();
        blocking(move || store.get(&id_owned)?.ok_or(EngineError::NotFound(id_owned))).await
    }

    /// One caller per system at a time in this process; the others wait and then see its result.
    /// The work runs in its own task: a caller that goes away (a closed request) never cancels a
    /// refresh between its request and storing its answer.
    async fn single_flight(self: &Arc<Self>, id: &str, want: Want) -> Result<Token, EngineError> {
        let engine = self.clone();
        let id = id.to_owned();
        let asked_at = now_secs();
        let deadline = Instant::now() + self.config.wait_for_other;
        tokio::spawn(async move {
            let flight = {
                let mut flights = engine.flights.lock().unwrap_or_else(|p| p.into_inner());
                flights.entry(id.clone()).or_default().clone()
            };
            let result = {
                // Waiting for another caller's turn: a refresh it finished counts as ours.
                let turn = match flight.try_lock() {
                    Ok(turn) => Some((turn, None)),
                    Err(_) => tokio::time::timeout_at(deadline.into(), flight.lock())
                        .await
                        .ok()
                        .map(|turn| (turn, Some(asked_at))),
                };
                match turn {
                    Some((_turn, shared_since)) => {
                        engine.ensure(&id, want, shared_since, deadline).await
                    }
                    None => Err(EngineError::Busy {
                        system: id.clone(),
                        holder: "another caller in this process".into(),
                    }),
                }
            };
            drop(flight);
            // New secrets, or none to give: earlier authorize answers are not reused.
            if matches!(&result, Ok(token) if token.refreshed)
                || matches!(
                    &result,
                    Err(EngineError::NeedsReauth { .. } | EngineError::NotFound(_))
                )
            {
                engine.authorized.forget(&id);
            }
            // Forget the entry when nobody else holds it (cloning needs this lock, so no race).
            let mut flights = engine.flights.lock().unwrap_or_else(|p| p.into_inner());
            if flights.get(&id).is_some_and(|f| Arc::strong_count(f) == 1) {
                flights.remove(&id);
            }
            result
        })
        .await
        .unwrap_or_else(|_| {
            Err(EngineError::Store(authplug_store::StoreError::Database(
                "a refresh task ended abnormally".into(),
            )))
        })
    }

    async fn ensure(
        &self,
        id: &str,
        want: Want,
        shared_since: Option<i64>,
        deadline: Instant,
    ) -> Result<Token, EngineError> {
        let mut stale_holder: Option<String> = None;
        let mut waited = false;
        loop {
            let record = self.get(id).await?;
            let summary = &record.summary;
            if summary.state == State::NeedsReauth {
                return Err(EngineError::NeedsReauth {
                    system: id.to_owned(),
                    reason: summary.state_reason.clone().unwrap_or_default(),
                });
            }
            let scheme =
                self.registry.get(&summary.scheme).ok_or_else(|| EngineError::SchemeNotLoaded {
                    system: id.to_owned(),
                    scheme: summary.scheme.clone(),
                })?;
            let now = now_secs();
            match want {
                // Renewed since the caller looked (a version that moved for a failure count does
                // not count).
                Want::Newer(seen) | Want::KeepAlive(seen) if summary.last_refresh_at != seen => {
                    return Ok(Token::from_record(record, true));
                }
                Want::Fresh if !self.is_due(summary, scheme, now) => {
                    let renewed = waited
                        || shared_since
                            .is_some_and(|at| summary.last_refresh_at.is_some_and(|t| t >= at));
                    return Ok(Token::from_record(record, renewed));
                }
                _ => {}
            }
            if !scheme.descriptor().refresh.renews {
                if matches!(want, Want::Fresh) && summary.expires_at.is_some_and(|e| e > now) {
                    return Ok(Token::from_record(record, false));
                }
                return Err(EngineError::CannotRenew {
                    system: id.to_owned(),
                    scheme: summary.scheme.clone(),
                });
            }
            let holder = self.holder.next();
            let store = self.store.clone();
            let (id_owned, version, ttl) = (id.to_owned(), summary.version, self.config.lease_ttl);
            let stale = stale_holder.take();
            // An operator's forced refresh does not wait for the backoff; nothing else does.
            let respect_backoff = !matches!(want, Want::Newer(_));
            let begin = blocking(move || {
                Ok(store.begin_refresh(
                    &id_owned,
                    &holder,
                    ttl,
                    version,
                    stale.as_deref(),
                    respect_backoff,
                )?)
            })
            .await?;
            match begin {
                Begin::Backoff(previous) => return Err(backoff_error(record, previous)),
                Begin::Started { attempt, previous } => {
                    let (id, holder) = (attempt.system_id.clone(), attempt.holder.clone());
                    match self.run(record, scheme, attempt, previous).await {
                        Ok(Some(token)) => return Ok(token),
                        // The lease was lost between attempts: look again, from the top.
                        Ok(None) => {
                            waited = true;
                            continue;
                        }
                        Err(error) => {
                            // Whatever went wrong, give the lease back (a no-op if it was
                            // released with the result) rather than make everyone wait for it
                            // to lapse. An unstored result leaves its attempt open in the journal.
                            if let EngineError::Store(store_error) = &error {
                                tracing::error!(system = %id, error = %store_error, "refresh result not stored");
                            }
                            let store = self.store.clone();
                            let _ = blocking(move || Ok(store.release_lease(&id, &holder)?)).await;
                            return Err(error);
                        }
                    }
                }
                Begin::Moved { .. } => {
                    waited = true;
                    continue;
                }
                Begin::Held(lease) => {
                    if self.holder.is_dead(&lease.holder) {
                        tracing::warn!(system = %id, holder = %lease.holder, "the refresh lease's holder is dead; taking over");
                        stale_holder = Some(lease.holder);
                        continue;
                    }
                    self.wait_for_holder(id, summary.version, deadline, &lease.holder).await?;
                    waited = true;
                }
            }
        }
    }

    /// Waits for another holder's refresh: until the system's version moves, the lease is free
    /// or lapsed, or its holder is found dead. Polls the store; there is no notification that
    /// works the same for SQLite and PostgreSQL.
    async fn wait_for_holder(
        &self,
        id: &str,
        version: i64,
        deadline: Instant,
        holder: &str,
    ) -> Result<(), EngineError> {
        loop {
            if Instant::now() >= deadline {
                return Err(EngineError::Busy { system: id.to_owned(), holder: holder.to_owned() });
            }
            let jitter = self.config.poll.mul_f64(rand::random::<f64>());
            tokio::time::sleep(self.config.poll + jitter).await;
            let store = self.store.clone();
            let id_owned = id.to_owned();
            // The version and the lease only: no secret is decrypted while polling.
            let (current, lease) = blocking(move || {
                let version =
                    store.version(&id_owned)?.ok_or(EngineError::NotFound(id_owned.clone()))?;
                Ok((version, store.lease(&id_owned)?))
            })
            .await?;
            let free = match &lease {
                None => true,
                Some(lease) => lease.until_ms < now_ms() || self.holder.is_dead(&lease.holder),
            };
            if current != version || free {
                return Ok(());
            }
        }
    }

    /// Runs attempts under the lease until one renews, the provider refuses for good, or the
    /// backoff says to stop for now.
    async fn run(
        &self,
        record: SystemRecord,
        scheme: &LoadedScheme,
        first: Attempt,
        previous: Option<Attempt>,
    ) -> Result<Option<Token>, EngineError> {
        let id = record.summary.id.clone();
        let interrupted = previous.as_ref().and_then(interrupted_note);
        if let Some(note) = &interrupted {
            tracing::warn!(system = %id, "{note}");
        }
        let mut attempt = first;
        let mut number = 1u32;
        loop {
            let journal =
                Arc::new(Journal::new(self.store.clone(), attempt.clone(), self.config.lease_ttl));
            let services = self.services.clone().with_observer(journal.clone());
            let request = RefreshRequest {
                scheme: scheme.id().to_owned(),
                required: record.required.clone(),
                injected: record.injected.clone(),
                parameters: record.summary.parameters.clone(),
            };
            let registry = self.registry.clone();
            let scheme_id = scheme.id().to_owned();
            // Plugin calls block (the HTTP callback waits on the runtime): never on a worker.
            let outcome = tokio::task::spawn_blocking(move || match registry.get(&scheme_id) {
                Some(scheme) => scheme.refresh(request, &services),
                None => Err(CallError {
                    scheme: scheme_id,
                    code: ErrorCode::Internal,
                    message: "the scheme is no longer registered".into(),
                }),
            })
            .await
            .unwrap_or_else(|_| {
                Err(CallError {
                    scheme: scheme.id().to_owned(),
                    code: ErrorCode::Internal,
                    message: "the refresh thread ended abnormally".into(),
                })
            });
            let retry_after = journal.retry_after();
            let answered = journal.answered_at_ms();
            // The host scrubbed what went in; the journal scrubs what came back.
            let outcome = journal.scrub_outcome(outcome);
            let (reason, retry_after) = match outcome {
                Ok(RefreshOutcome::Renewed { injected, expires_at }) => {
                    return self
                        .renewed(&record, &attempt, number, answered, injected, expires_at)
                        .await
                        .map(Some);
                }
                Ok(RefreshOutcome::Reauthorize { reason }) => {
                    return self
                        .refused(&record, &attempt, number, answered, reason, interrupted)
                        .await
                        .map(Some);
                }
                Ok(RefreshOutcome::Transient { reason, retry_after_secs }) => {
                    (reason, retry_after_secs.or(retry_after))
                }
                Err(error) if error.code == ErrorCode::Http => (error.message, retry_after),
                Err(error) => {
                    return self.failed(&record, &attempt, number, answered, error).await.map(Some)
                }
            };
            let failures = record.summary.failures + i64::from(number);
            let backoff = &self.config.backoff;
            let mut delay = backoff.next_delay(failures);
            if let Some(seconds) = retry_after {
                // Honoured, up to an hour: a far-future value must not park a system for days.
                delay = delay.max(Duration::from_secs(seconds.min(MAX_RETRY_AFTER_SECS)));
            }
            let retry_at = now_ms() + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 2);
            let again = number < backoff.attempts_per_call && delay <= backoff.max_wait_in_call;
            let mut event = attempt_event(EventKind::RefreshFailed, &record, &attempt, number);
            event.reason = Some(reason.clone());
            event.retry_in_ms = Some(delay.as_millis() as u64);
            event.retry_after_secs = retry_after;
            event.failures = failures;
            event.expires_at = record.summary.expires_at;
            let finish = Finish {
                answered_at_ms: answered,
                outcome: "transient".into(),
                detail: Some(reason.clone()),
                retry_at_ms: Some(retry_at),
                // The last attempt of the call counts the failures on the system (a version bump
                // that tells waiting instances to look again).
                change: (!again).then(|| Change { failures: Some(failures), ..Change::default() }),
                release: !again,
                event: Some(event.audit_line()),
            };
            let stored = self.finish(&attempt, finish).await?;
            self.events.emit(event);
            if !again {
                let still_valid =
                    record.summary.expires_at.is_some_and(|e| e > now_secs()).then(|| {
                        let mut token = Token::from_record(record.clone(), false);
                        token.version = stored.unwrap_or(token.version);
                        Box::new(token)
                    });
                return Err(EngineError::Unavailable {
                    system: id,
                    reason,
                    retry_at_ms: Some(retry_at),
                    still_valid,
                });
            }
            tokio::time::sleep(delay).await;
            let store = self.store.clone();
            let (holder, ttl, version) =
                (attempt.holder.clone(), self.config.lease_ttl, attempt.from_version);
            let id_owned = id.clone();
            attempt = match blocking(move || {
                Ok(store.begin_refresh(&id_owned, &holder, ttl, version, None, false)?)
            })
            .await?
            {
                Begin::Started { attempt, .. } => attempt,
                // Our lease lapsed and someone else has it or moved on: start over.
                Begin::Moved { .. } | Begin::Held(_) | Begin::Backoff(_) => return Ok(None),
            };
            number += 1;
        }
    }

    async fn renewed(
        &self,
        record: &SystemRecord,
        attempt: &Attempt,
        number: u32,
        answered: Option<i64>,
        injected: BTreeMap<String, Secret>,
        expires_at: Option<i64>,
    ) -> Result<Token, EngineError> {
        let recovering = record.summary.failures > 0;
        let change = Change {
            injected: Some(injected.clone()),
            expires_at: Some(expires_at),
            state: Some((State::Active, None)),
            last_refresh_at: Some(now_secs()),
            failures: Some(0),
            ..Change::default()
        };
        let mut event = attempt_event(EventKind::Refreshed, record, attempt, number);
        event.expires_at = expires_at;
        event.failures = 0;
        let recovered = recovering.then(|| {
            let mut recovered = attempt_event(EventKind::Recovered, record, attempt, number);
            recovered.expires_at = expires_at;
            recovered.reason =
                Some(format!("refreshed after {} failed attempts", record.summary.failures));
            recovered
        });
        let finish = Finish {
            answered_at_ms: answered,
            outcome: "renewed".into(),
            change: Some(change),
            release: true,
            event: Some({
                let (action, mut detail) = event.audit_line();
                detail["recovered"] = recovering.into();
                (action, detail)
            }),
            ..Finish::default()
        };
        let version = self.finish(attempt, finish).await?.unwrap_or(attempt.from_version + 1);
        self.events.emit(event);
        if let Some(recovered) = recovered {
            self.events.emit(recovered);
        }
        Ok(Token {
            issued_at: now_secs(),
            system: record.summary.id.clone(),
            scheme: record.summary.scheme.clone(),
            injected,
            expires_at,
            version,
            refreshed: true,
            parameters: record.summary.parameters.clone(),
        })
    }

    /// The provider refused: unless another instance stored a newer credential meanwhile (then
    /// our refresh token was simply old), the system needs re-authorisation, reported once.
    async fn refused(
        &self,
        record: &SystemRecord,
        attempt: &Attempt,
        number: u32,
        answered: Option<i64>,
        reason: String,
        interrupted: Option<String>,
    ) -> Result<Token, EngineError> {
        let current = self.get(&record.summary.id).await?;
        if current.summary.version != attempt.from_version {
            let finish = Finish {
                answered_at_ms: answered,
                outcome: "superseded".into(),
                detail: Some(reason),
                release: true,
                ..Finish::default()
            };
            self.finish(attempt, finish).await?;
            return Ok(Token::from_record(current, true));
        }
        let reason = match interrupted {
            Some(note) => format!("{reason}; {note}"),
            None => reason,
        };
        let failures = record.summary.failures + 1;
        let mut event = attempt_event(EventKind::NeedsReauth, record, attempt, number);
        event.reason = Some(reason.clone());
        event.failures = failures;
        let finish = Finish {
            answered_at_ms: answered,
            outcome: "reauthorize".into(),
            detail: Some(reason.clone()),
            change: Some(Change {
                state: Some((State::NeedsReauth, Some(reason.clone()))),
                failures: Some(failures),
                ..Change::default()
            }),
            release: true,
            event: Some(event.audit_line()),
            ..Finish::default()
        };
        self.finish(attempt, finish).await?;
        self.events.emit(event);
        Err(EngineError::NeedsReauth { system: record.summary.id.clone(), reason })
    }

    /// A failure that is neither transient nor a refusal (a contract violation, a plugin panic):
    /// recorded with a backoff so that nobody retries it in a loop.
    async fn failed(
        &self,
        record: &SystemRecord,
        attempt: &Attempt,
        number: u32,
        answered: Option<i64>,
        error: CallError,
    ) -> Result<Token, EngineError> {
        let failures = record.summary.failures + i64::from(number);
        let delay = self.config.backoff.next_delay(failures);
        let retry_at = now_ms() + delay.as_millis() as i64;
        let mut event = attempt_event(EventKind::RefreshFailed, record, attempt, number);
        event.reason = Some(error.to_string());
        event.retry_in_ms = Some(delay.as_millis() as u64);
        event.failures = failures;
        let finish = Finish {
            answered_at_ms: answered,
            outcome: "failed".into(),
            detail: Some(error.to_string()),
            retry_at_ms: Some(retry_at),
            change: Some(Change { failures: Some(failures), ..Change::default() }),
            release: true,
            event: Some(event.audit_line()),
        };
        self.finish(attempt, finish).await?;
        self.events.emit(event);
        Err(EngineError::Scheme { system: record.summary.id.clone(), error })
    }

    /// Ends an attempt in the store; the system's new version if it changed. A store error is
    /// retried a few times within a second or two: the result (perhaps a rotated refresh token
    /// that exists nowhere else) is only in memory until this succeeds.
    async fn finish(&self, attempt: &Attempt, finish: Finish) -> Result<Option<i64>, EngineError> {
        let finish = Arc::new(finish);
        let mut wait = Duration::from_millis(50);
        let mut tries_left = 5;
        loop {
            let store = self.store.clone();
            let (owned, shared) = (attempt.clone(), finish.clone());
            let actor = self.config.actor.clone();
            let result = blocking(move || Ok(store.finish_refresh(&owned, &shared, &actor)?)).await;
            tries_left -= 1;
            match result {
                Err(EngineError::Store(error))
                    if tries_left > 0
                        && !matches!(error, authplug_store::StoreError::VersionConflict { .. }) =>
                {
                    tracing::warn!(system = %attempt.system_id, %error, "storing a refresh result failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
                other => return other,
            }
        }
    }
}

/// An event about one attempt of a refresh call.
fn attempt_event(kind: EventKind, record: &SystemRecord, attempt: &Attempt, number: u32) -> Event {
    let mut event = Event::new(kind, &record.summary.id, &record.summary.scheme, &attempt.holder);
    event.attempt = Some(number);
    event.failures = record.summary.failures;
    event
}

/// A note for the operator when the previous attempt died in flight.
fn interrupted_note(previous: &Attempt) -> Option<String> {
    if !previous.interrupted_in_flight() {
        return None;
    }
    let sent = previous
        .sent_at_ms
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f UTC").to_string())
        .unwrap_or_default();
    Some(format!(
        "an earlier refresh by {} was sent at {sent} and its answer was never stored (the process \
         died in flight); the provider may have rotated the refresh token then",
        previous.holder
    ))
}

/// The answer while a system's backoff runs: the stored secrets ride along if still valid.
fn backoff_error(record: SystemRecord, previous: Attempt) -> EngineError {
    let system = record.summary.id.clone();
    let still_valid = record
        .summary
        .expires_at
        .is_some_and(|e| e > now_secs())
        .then(|| Box::new(Token::from_record(record, false)));
    EngineError::Unavailable {
        system,
        reason: previous.detail.unwrap_or_else(|| "earlier attempts failed".into()),
        retry_at_ms: previous.retry_at_ms,
        still_valid,
    }
}

/// Runs store work on a blocking thread.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, EngineError> + Send + 'static,
) -> Result<T, EngineError> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|_| {
        Err(EngineError::Store(authplug_store::StoreError::Database(
            "a store operation ended abnormally".into(),
        )))
    })
}
