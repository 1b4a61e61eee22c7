//! `Engine::sweep`: every active system that is due (or idle past the keep-alive) refreshed, a
//! bounded number at a time.

use std::collections::HashMap;
use std::sync::Arc;

use authplug_store::State;

use crate::due;
use crate::flight::Want;
use crate::{Engine, EngineError, Token};

/// Each attempted system with its result, by id.
pub type SweepResults = Vec<(String, Result<Token, EngineError>)>;

impl Engine {
    /// Refreshes every active system that is due (or idle past the keep-alive), at most
    /// `concurrency` at a time, skipping those whose backoff has not ended. Returns each
    /// attempted system with its result.
    pub async fn sweep(self: &Arc<Self>, concurrency: usize) -> Result<SweepResults, EngineError> {
        self.authorized.purge();
        let (systems, attempts) = self
            .blocking("a store read", |store| Ok((store.list()?, store.latest_attempts()?)))
            .await?;
        let backoff: HashMap<String, i64> =
            attempts.into_iter().filter_map(|a| Some((a.system_id, a.retry_at_ms?))).collect();
        let (now, now_ms) = (self.clock().now_secs(), self.clock().now_ms());
        let mut work = Vec::new();
        for summary in systems {
            if summary.state != State::Active {
                continue;
            }
            let Some(scheme) = self.registry.get(&summary.scheme) else { continue };
            if !scheme.descriptor().refresh.renews {
                continue;
            }
            if backoff.get(&summary.id).is_some_and(|at| *at > now_ms) {
                continue;
            }
            if self.is_due(&summary, scheme, now) {
                work.push((summary.id, Want::Fresh));
            } else if due::needs_keepalive(&summary, self.config.keepalive, now) {
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
            match done {
                Ok(result) => results.push(result),
                Err(_) => return Err(EngineError::Aborted { what: "a sweep task" }),
            }
        }
        results.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(results)
    }
}
