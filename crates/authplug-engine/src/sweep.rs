//! `Engine::sweep`: every active system that is due (or idle past the keep-alive) refreshed, a
//! bounded number at a time. The systems due are found through the store's due index, in
//! batches, so a sweep's cost follows the work due, not the systems stored.

use std::collections::HashSet;
use std::sync::Arc;

use authplug_store::{State, SystemSummary, Walk};

use crate::due;
use crate::flight::Want;
use crate::{Engine, EngineError, Token};

/// Each attempted system with its result, by id.
pub type SweepResults = Vec<(String, Result<Token, EngineError>)>;

/// Systems read from the store per batch.
const BATCH: usize = 500;

/// What the sweep makes of a system the index calls due.
enum Looked {
    Due,
    /// Not due yet under its scheme's margin (or never, for a scheme that does not renew):
    /// the index is set to the exact moment.
    Later(Option<i64>),
    /// Not for this sweep (its scheme is not loaded).
    Skip,
}

impl Engine {
    /// Refreshes every active system that is due (or idle past the keep-alive), at most
    /// `concurrency` at a time, skipping those whose backoff has not ended. Returns each
    /// attempted system with its result.
    pub async fn sweep(self: &Arc<Self>, concurrency: usize) -> Result<SweepResults, EngineError> {
        self.authorized.purge();
        let now = self.clock().now_secs();
        let limit = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
        let mut tasks = tokio::task::JoinSet::new();
        let mut chosen = HashSet::new();
        let mut walk = Walk::start();
        loop {
            let from = walk.clone();
            let batch = self
                .blocking("a store read", move |store| Ok(store.due(now, &from, BATCH)?))
                .await?;
            let full = batch.len() == BATCH;
            let mut refined = Vec::new();
            for summary in batch {
                walk = Walk { at: summary.due_at.unwrap_or(i64::MIN), id: summary.id.clone() };
                match self.look(&summary, now) {
                    Looked::Due => {
                        chosen.insert(summary.id.clone());
                        self.start(&mut tasks, &limit, summary.id, Want::Fresh).await;
                    }
                    Looked::Later(at) => refined.push((summary.id, summary.version, at)),
                    Looked::Skip => {}
                }
            }
            if !refined.is_empty() {
                self.blocking("a store write", move |store| Ok(store.reschedule(&refined)?))
                    .await?;
            }
            if !full {
                break;
            }
        }
        if let Some(idle) = self.config.keepalive {
            let issued_by = now.saturating_sub(i64::try_from(idle.as_secs()).unwrap_or(i64::MAX));
            self.keep_alive(issued_by, &mut chosen, &mut tasks, &limit).await?;
        }
        let mut results = Vec::new();
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(result) => results.push(result),
                Err(_) => return Err(EngineError::Aborted { what: "a sweep task" }),
            }
        }
        results.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(results)
    }

    fn look(&self, summary: &SystemSummary, now: i64) -> Looked {
        let Some(scheme) = self.registry.get(&summary.scheme) else { return Looked::Skip };
        if summary.state != State::Active || !scheme.descriptor().refresh.renews {
            return Looked::Later(None);
        }
        if self.is_due(summary, scheme, now) {
            return Looked::Due;
        }
        Looked::Later(due::due_at(summary.expires_at, summary.issued_at(), self.margin(scheme)))
    }

    /// The systems idle since `issued_by`, not already `chosen`, whose backoff has ended. Each
    /// one started joins `chosen`: a system renewed early in the walk has a new issue time that
    /// the walk may meet again (a keep-alive of zero), and is not renewed twice in one sweep.
    async fn keep_alive(
        self: &Arc<Self>,
        issued_by: i64,
        chosen: &mut HashSet<String>,
        tasks: &mut tokio::task::JoinSet<(String, Result<Token, EngineError>)>,
        limit: &Arc<tokio::sync::Semaphore>,
    ) -> Result<(), EngineError> {
        let now_ms = self.clock().now_ms();
        let mut walk = Walk::start();
        loop {
            let from = walk.clone();
            let (batch, attempts) = self
                .blocking("a store read", move |store| {
                    let batch = store.idle(issued_by, &from, BATCH)?;
                    let ids: Vec<String> = batch.iter().map(|s| s.id.clone()).collect();
                    Ok((batch, store.journal_of(&ids)?.0))
                })
                .await?;
            let full = batch.len() == BATCH;
            for summary in batch {
                walk = Walk { at: summary.issued_at(), id: summary.id.clone() };
                let renews = self
                    .registry
                    .get(&summary.scheme)
                    .is_some_and(|s| s.descriptor().refresh.renews);
                let waiting = attempts
                    .get(&summary.id)
                    .and_then(|a| a.retry_at_ms)
                    .is_some_and(|at| at > now_ms);
                if renews && !waiting && chosen.insert(summary.id.clone()) {
                    let want = Want::KeepAlive(summary.last_refresh_at);
                    self.start(tasks, limit, summary.id, want).await;
                }
            }
            if !full {
                return Ok(());
            }
        }
    }

    /// Starts one refresh when a place under `limit` is free.
    async fn start(
        self: &Arc<Self>,
        tasks: &mut tokio::task::JoinSet<(String, Result<Token, EngineError>)>,
        limit: &Arc<tokio::sync::Semaphore>,
        id: String,
        want: Want,
    ) {
        let engine = self.clone();
        let permit = limit.clone().acquire_owned().await.expect("the semaphore is never closed");
        tasks.spawn(async move {
            let result = engine.single_flight(&id, want).await;
            drop(permit);
            (id, result)
        });
    }
}
