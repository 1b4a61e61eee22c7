//! Single flight: one caller per system at a time in this process (an async mutex per system),
//! one refresh at a time across processes and hosts (the store's lease). A caller that waited
//! for another's turn, or for another instance's lease, reads the result instead of refreshing
//! again.

use std::sync::Arc;
use std::time::Instant;

use authplug_store::{Attempt, Begin, State, SystemRecord};

use crate::holder::Named;
use crate::{Engine, EngineError, Token};

/// What [`Engine::read_or_lease`] found.
enum Look {
    /// What is stored will do.
    Answer(Token),
    /// The lease was asked for, for the record as read.
    /// (Boxed: much larger than an answer.)
    Began(Box<(SystemRecord, Begin, Named)>),
}

/// What a caller wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Want {
    /// Fresh secrets: refresh only if due.
    Fresh,
    /// A refresh newer than the one the caller saw (its `last_refresh_at`): an operator's
    /// `refresh`.
    Newer(Option<i64>),
    /// A keep-alive refresh of an idle credential, unless someone refreshed meanwhile.
    KeepAlive(Option<i64>),
}

impl Engine {
    /// One caller per system at a time in this process; the others wait and then see its result.
    /// The work runs in its own task: a caller that goes away (a closed request) never cancels a
    /// refresh between its request and storing its answer.
    pub(crate) async fn single_flight(
        self: &Arc<Self>,
        id: &str,
        want: Want,
    ) -> Result<Token, EngineError> {
        let engine = self.clone();
        let id = id.to_owned();
        let asked_at = self.clock().now_secs();
        let deadline = Instant::now() + self.config.wait_for_other;
        tokio::spawn(async move {
            let flight = engine.flight(&id);
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
            engine.leave_flight(&id, flight);
            // New secrets, or none to give: earlier authorize answers are not reused.
            if matches!(&result, Ok(token) if token.refreshed)
                || matches!(
                    &result,
                    Err(EngineError::NeedsReauth { .. } | EngineError::NotFound(_))
                )
            {
                engine.authorized.forget(&id);
            }
            result
        })
        .await
        .unwrap_or(Err(EngineError::Aborted { what: "a refresh task" }))
    }

    /// System `id`'s turn in this process: an async mutex shared by everyone working on it.
    pub(crate) fn flight(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
        flights.entry(id.to_owned()).or_default().clone()
    }

    /// Gives `flight` back, forgetting the entry when nobody else holds it (cloning needs the
    /// map's lock, so no race).
    pub(crate) fn leave_flight(&self, id: &str, flight: Arc<tokio::sync::Mutex<()>>) {
        drop(flight);
        let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
        if flights.get(id).is_some_and(|f| Arc::strong_count(f) == 1) {
            flights.remove(id);
        }
    }

    /// With this process's turn: hands out what is stored if it will do, else takes the lease
    /// and refreshes, or waits for the instance that holds it.
    async fn ensure(
        self: &Arc<Self>,
        id: &str,
        want: Want,
        shared_since: Option<i64>,
        deadline: Instant,
    ) -> Result<Token, EngineError> {
        let mut stale_holder: Option<String> = None;
        let mut waited = false;
        loop {
            // The read and, if it must refresh, taking the lease: one hop to a blocking thread.
            let (engine, id_owned, stale) = (self.clone(), id.to_owned(), stale_holder.take());
            let found = tokio::task::spawn_blocking(move || {
                engine.read_or_lease(&id_owned, want, shared_since, waited, stale)
            })
            .await
            .unwrap_or(Err(EngineError::Aborted { what: "a store call" }))?;
            // `_named` keeps this holder alive until the iteration ends: a lease it leaves
            // behind (not given back because the store went away) is then taken over by the
            // next refresh, not waited for.
            let (record, begin, _named) = match found {
                Look::Answer(token) => return Ok(token),
                Look::Began(began) => *began,
            };
            // Found by `read_or_lease`, and the registry never changes; were it gone, a lease
            // taken is given back.
            let Some(scheme) = self.registry.get(&record.summary.scheme) else {
                if let Begin::Started { attempt, .. } = begin {
                    self.give_back(attempt.system_id, attempt.holder).await;
                }
                return Err(EngineError::SchemeNotLoaded {
                    system: id.to_owned(),
                    scheme: record.summary.scheme.clone(),
                });
            };
            let version = record.summary.version;
            match begin {
                Begin::Backoff(previous) => return Err(self.backoff_error(record, previous)),
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
                                tracing::error!(system = %id, error = %authplug_store::chain(store_error), "refresh result not stored");
                            }
                            self.give_back(id, holder).await;
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
                    self.wait_for_holder(id, version, deadline, &lease.holder).await?;
                    waited = true;
                }
            }
        }
    }

    /// Gives `holder`'s lease on system `id` back (nothing if it is not held), without waiting
    /// for it to lapse; a store that fails now leaves it to lapse.
    async fn give_back(&self, id: String, holder: String) {
        let _ = self
            .blocking("a store write", move |store| Ok(store.release_lease(&id, &holder)?))
            .await;
    }

    /// On a blocking thread: reads the system and either answers from what is stored, or
    /// takes the lease to refresh it (`begin_refresh`).
    fn read_or_lease(
        &self,
        id: &str,
        want: Want,
        shared_since: Option<i64>,
        waited: bool,
        stale_holder: Option<String>,
    ) -> Result<Look, EngineError> {
        let record = self.store.get(id)?.ok_or_else(|| EngineError::NotFound(id.to_owned()))?;
        let summary = &record.summary;
        if summary.state == State::NeedsReauth {
            return Err(EngineError::NeedsReauth {
                system: id.to_owned(),
                reason: summary.state_reason.clone().unwrap_or_default(),
            });
        }
        let scheme = self.registry.get(&summary.scheme).ok_or_else(|| {
            EngineError::SchemeNotLoaded { system: id.to_owned(), scheme: summary.scheme.clone() }
        })?;
        let now = self.clock().now_secs();
        match want {
            // Renewed since the caller looked (a version that moved for a failure count does
            // not count).
            Want::Newer(seen) | Want::KeepAlive(seen) if summary.last_refresh_at != seen => {
                return Ok(Look::Answer(Token::from_record(record, true)));
            }
            Want::Fresh if !self.is_due(summary, scheme, now) => {
                let renewed = waited
                    || shared_since
                        .is_some_and(|at| summary.last_refresh_at.is_some_and(|t| t >= at));
                return Ok(Look::Answer(Token::from_record(record, renewed)));
            }
            _ => {}
        }
        if !scheme.descriptor().refresh.renews {
            if matches!(want, Want::Fresh) && summary.expires_at.is_some_and(|e| e > now) {
                return Ok(Look::Answer(Token::from_record(record, false)));
            }
            return Err(EngineError::CannotRenew {
                system: id.to_owned(),
                scheme: summary.scheme.clone(),
            });
        }
        let named = self.holder.next();
        // An operator's forced refresh does not wait for the backoff; nothing else does.
        let respect_backoff = !matches!(want, Want::Newer(_));
        let begin = self.store.begin_refresh(
            id,
            &named.to_string(),
            self.config.lease_ttl,
            summary.version,
            stale_holder.as_deref(),
            respect_backoff,
        )?;
        Ok(Look::Began(Box::new((record, begin, named))))
    }

    /// Waits for another holder's refresh: until the system's version moves, the lease is free
    /// or lapsed, or its holder is found dead. Polls the store; there is no notification that
    /// works the same for SQLite and PostgreSQL.
    pub(crate) async fn wait_for_holder(
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
            let id_owned = id.to_owned();
            // The version and the lease only: no secret is decrypted while polling.
            let (current, lease) = self
                .blocking("a store read", move |store| {
                    let version =
                        store.version(&id_owned)?.ok_or(EngineError::NotFound(id_owned.clone()))?;
                    Ok((version, store.lease(&id_owned)?))
                })
                .await?;
            let free = match &lease {
                None => true,
                Some(lease) => {
                    lease.until_ms < self.clock().now_ms() || self.holder.is_dead(&lease.holder)
                }
            };
            if current != version || free {
                return Ok(());
            }
        }
    }

    /// The answer while a system's backoff runs: the stored secrets ride along if still valid.
    fn backoff_error(&self, record: SystemRecord, previous: Attempt) -> EngineError {
        let system = record.summary.id.clone();
        let still_valid = record
            .summary
            .expires_at
            .is_some_and(|e| e > self.clock().now_secs())
            .then(|| Box::new(Token::from_record(record, false)));
        EngineError::Unavailable {
            system,
            reason: previous.detail.unwrap_or_else(|| "earlier attempts failed".into()),
            retry_at_ms: previous.retry_at_ms,
            still_valid,
        }
    }
}
