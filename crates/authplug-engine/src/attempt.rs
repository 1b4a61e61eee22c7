//! One refresh under the lease: attempts until one renews, the provider refuses for good, or the
//! backoff says to stop for now. Each attempt calls the scheme on a blocking thread with the
//! journal watching its HTTP (so the request is journaled as sent before it leaves), re-reads
//! the store before believing a refusal, and stores the settled result before anyone sees it.

use std::sync::Arc;
use std::time::Duration;

use authplug_host::{CallError, LoadedScheme};
use authplug_protocol::{ErrorCode, RefreshOutcome, RefreshRequest};
use authplug_store::{Attempt, Begin, Finish, StoreError, SystemRecord};

use crate::journal::Journal;
use crate::outcome::{classify, settle, unrenewable, Attempted, Then, Verdict};
use crate::{Engine, EngineError, Token};

impl Engine {
    /// Runs attempts under the lease, starting with `first`; `Ok(None)` when the lease was lost
    /// between attempts (the caller looks again).
    pub(crate) async fn run(
        self: &Arc<Self>,
        record: SystemRecord,
        scheme: &LoadedScheme,
        first: Attempt,
        previous: Option<Attempt>,
    ) -> Result<Option<Token>, EngineError> {
        let interrupted = previous.as_ref().and_then(interrupted_note);
        if let Some(note) = &interrupted {
            tracing::warn!(system = %record.summary.id, "{note}");
        }
        let record = Arc::new(record);
        let mut attempt = Arc::new(first);
        let mut number = 1u32;
        loop {
            // The scheme's call, its verdict and the first try at storing it: one hop to a
            // blocking thread for the whole attempt.
            let (engine, on_thread) = (self.clone(), (record.clone(), attempt.clone()));
            let (scheme_id, note) = (scheme.id().to_owned(), interrupted.clone());
            let settled = tokio::task::spawn_blocking(move || {
                let (record, attempt) = on_thread;
                engine.attempt(&record, &scheme_id, &attempt, number, note.as_deref())
            })
            .await
            .unwrap_or(Err(EngineError::Aborted { what: "a refresh thread" }))?;
            // Stored on the blocking thread, or tried again here (`finish` says for how long).
            let version = self.finish(&attempt, settled.stored).await?;
            for event in settled.events {
                self.events.emit(event);
            }
            match settled.then.at_version(version) {
                Then::Done(token) => return Ok(Some(token)),
                Then::Fail(error) => return Err(error),
                Then::Retry(delay) => tokio::time::sleep(delay).await,
            }
            let (id, holder) = (attempt.system_id.clone(), attempt.holder.clone());
            let (ttl, from) = (self.config.lease_ttl, attempt.from_version);
            let begin = self
                .blocking("a store write", move |store| {
                    Ok(store.begin_refresh(&id, &holder, ttl, from, None, false)?)
                })
                .await?;
            attempt = match begin {
                Begin::Started { attempt, .. } => Arc::new(attempt),
                // Our lease lapsed and someone else has it or moved on: start over.
                Begin::Moved { .. } | Begin::Held(_) | Begin::Backoff(_) => return Ok(None),
            };
            number += 1;
        }
    }

    /// One attempt, on a blocking thread: the scheme's `refresh` with the journal watching its
    /// HTTP, the verdict (the store read again before a refusal is believed), and the settled
    /// result stored once.
    fn attempt(
        &self,
        record: &SystemRecord,
        scheme_id: &str,
        attempt: &Attempt,
        number: u32,
        interrupted: Option<&str>,
    ) -> Result<Settled, EngineError> {
        let scheme = self.registry.get(scheme_id).ok_or_else(|| EngineError::SchemeNotLoaded {
            system: record.summary.id.clone(),
            scheme: scheme_id.to_owned(),
        })?;
        let journal =
            Arc::new(Journal::new(self.store.clone(), attempt.clone(), self.config.lease_ttl));
        let answer = self.call_refresh(record, scheme, journal.clone());
        // The host scrubbed what went in; the journal scrubs what came back.
        let answer = journal.scrub_outcome(answer);
        let mut verdict = classify(answer, journal.retry_after());
        // Nothing to renew secrets that expire with: a refusal, judged as one below.
        if let Verdict::Unchanged { reason } = verdict {
            verdict = match record.summary.expires_at {
                Some(_) => Verdict::Refused { reason: unrenewable(&reason) },
                None => Verdict::Unchanged { reason },
            };
        }
        if let Verdict::Refused { reason } = verdict {
            // Another instance may have stored a newer credential meanwhile: then our refresh
            // token was simply old.
            let id = &record.summary.id;
            let current =
                self.store.get(id)?.ok_or_else(|| EngineError::NotFound(id.to_owned()))?;
            verdict = if current.summary.version != attempt.from_version {
                Verdict::Superseded { reason, current: Box::new(current) }
            } else {
                Verdict::Refused { reason }
            };
        }
        let settlement = settle(
            verdict,
            &Attempted {
                record,
                attempt,
                number,
                answered_at_ms: journal.answered_at_ms(),
                now_ms: self.clock().now_ms(),
                backoff: &self.config.backoff,
                jitter: crate::Backoff::jitter(),
                interrupted,
                margin_secs: self.margin(scheme).secs(),
            },
        );
        let first_at = std::time::Instant::now();
        let first = self
            .store
            .finish_refresh(attempt, &settlement.finish, &self.config.actor)
            .map_err(EngineError::from);
        Ok(Settled {
            events: settlement.events,
            then: settlement.then,
            stored: Stored { finish: settlement.finish, first, first_at },
        })
    }

    /// The scheme's `refresh` (on a blocking thread: its HTTP callback waits on the runtime),
    /// its HTTP watched by `journal`. A panic in the host's part of the call is a failed call.
    fn call_refresh(
        &self,
        record: &SystemRecord,
        scheme: &LoadedScheme,
        journal: Arc<Journal>,
    ) -> Result<RefreshOutcome, CallError> {
        let services = self.services.clone().with_observer(journal);
        let request = RefreshRequest {
            scheme: scheme.id().to_owned(),
            required: record.required.clone(),
            injected: record.injected.clone(),
            parameters: record.summary.parameters.clone(),
        };
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            scheme.refresh(request, &services)
        }))
        .unwrap_or_else(|_| {
            Err(CallError {
                scheme: scheme.id().to_owned(),
                code: ErrorCode::Internal,
                message: "the refresh thread ended abnormally".into(),
            })
        })
    }

    /// Ends an attempt in the store; the system's new version if it changed. A store error is
    /// retried a few times within a second or two, and an unreachable store (PostgreSQL
    /// restarting) for up to [`STORE_OUTAGE`]: the result (perhaps a rotated refresh token that
    /// exists nowhere else) is only in memory until this succeeds.
    async fn finish(&self, attempt: &Attempt, settled: Stored) -> Result<Option<i64>, EngineError> {
        let Stored { finish, first, first_at } = settled;
        let finish = Arc::new(finish);
        let mut wait = Duration::from_millis(50);
        let mut tries_left = 5;
        let outage_ends = first_at + STORE_OUTAGE;
        let mut result = first;
        loop {
            match result {
                Err(EngineError::Store(error @ StoreError::Unavailable { .. }))
                    if std::time::Instant::now() < outage_ends =>
                {
                    tracing::warn!(system = %attempt.system_id, error = %authplug_store::chain(&error), "the store is unreachable with a refresh result to keep; trying again");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(1));
                }
                // A conflict will not go away by trying again; anything else may.
                Err(EngineError::Store(error))
                    if tries_left > 1 && !matches!(error, StoreError::VersionConflict { .. }) =>
                {
                    tries_left -= 1;
                    tracing::warn!(system = %attempt.system_id, error = %authplug_store::chain(&error), "storing a refresh result failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
                other => return other,
            }
            let (owned, shared) = (attempt.clone(), finish.clone());
            let actor = self.config.actor.clone();
            result = self
                .blocking("a store write", move |store| {
                    Ok(store.finish_refresh(&owned, &shared, &actor)?)
                })
                .await;
        }
    }
}

/// What one attempt came to, from its blocking thread: what to say and do once its result is
/// stored, and the first try at storing it.
struct Settled {
    /// Said once the finish is stored, in order.
    events: Vec<crate::Event>,
    then: Then,
    stored: Stored,
}

/// A refresh result and the first try at storing it (the system's new version if it
/// changed), made at `first_at`.
struct Stored {
    finish: Finish,
    first: Result<Option<i64>, EngineError>,
    first_at: std::time::Instant,
}

/// How long a refresh result waits in memory for an unreachable store.
const STORE_OUTAGE: Duration = Duration::from_secs(60);

/// A note for the operator when the previous attempt died in flight.
pub(crate) fn interrupted_note(previous: &Attempt) -> Option<String> {
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
