//! Every system's lifecycle as an operator sees it: the stored state, and what the lease and the
//! journal add to it (a refresh in flight, a backoff, an attempt that died in flight). One
//! reading for `authplug status` and `GET /v1/systems`; it needs no plugin.

use std::sync::Arc;

use authplug_store::{
    Attempt, Cursor, Filter, Lease, State, Store, StoreError, SystemSummary, MAX_PAGE,
};
use serde::Serialize;

use crate::{Engine, EngineError};

/// One system's lifecycle.
#[derive(Debug, Clone, Serialize)]
pub struct SystemStatus {
    pub summary: SystemSummary,
    /// A refresh is in flight: a live lease with an unfinished attempt.
    pub refreshing: bool,
    /// The newest attempt in the journal.
    pub last_attempt: Option<Attempt>,
    /// The lease, while it is live.
    pub lease: Option<Lease>,
    /// Nobody tries again before this (a backoff or `Retry-After`), Unix milliseconds; only
    /// while it is still to come.
    pub next_attempt_at_ms: Option<i64>,
    /// The last attempt was sent and never finished, and nobody holds the lease: its process
    /// died in flight, and the next refresh will tell whether the grant survived.
    pub interrupted_in_flight: bool,
}

impl SystemStatus {
    /// The state as shown: `refreshing` while a refresh is in flight, else the stored one.
    pub fn shown_state(&self) -> &'static str {
        if self.refreshing && self.summary.state == State::Active {
            "refreshing"
        } else {
            self.summary.state.as_str()
        }
    }

    /// One line for the operator: the reason for the state, or what the journal says.
    pub fn note(&self) -> String {
        if let Some(reason) = &self.summary.state_reason {
            reason.clone()
        } else if self.interrupted_in_flight {
            "the last refresh died in flight; the next one will tell whether the grant survived"
                .into()
        } else if let Some(at) = self.next_attempt_at_ms {
            let detail = self.last_attempt.as_ref().and_then(|a| a.detail.clone());
            format!("next attempt after {} ({})", utc(at), detail.unwrap_or_default())
        } else if self.refreshing {
            format!("by {}", self.lease.as_ref().map(|l| l.holder.as_str()).unwrap_or(""))
        } else {
            String::new()
        }
    }
}

/// Unix milliseconds as UTC `YYYY-MM-DD HH:MM:SS`.
fn utc(at_ms: i64) -> String {
    chrono::DateTime::from_timestamp(at_ms.div_euclid(1000), 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| "-".into())
}

/// One page of systems' lifecycles, by id, read from the store: the page, then its systems'
/// latest attempts and leases, one query each (not one per system).
pub fn status_page(
    store: &Store,
    filter: &Filter,
    cursor: Option<&Cursor>,
    limit: usize,
) -> Result<(Vec<SystemStatus>, Option<Cursor>), StoreError> {
    let page = store.page(filter, cursor, limit)?;
    let ids: Vec<String> = page.systems.iter().map(|s| s.id.clone()).collect();
    let (mut attempts, mut leases) = store.journal_of(&ids)?;
    let now = store.clock().now_ms();
    let systems = page
        .systems
        .into_iter()
        .map(|summary| {
            let last_attempt = attempts.remove(&summary.id);
            let lease = leases.remove(&summary.id).filter(|l| l.until_ms > now);
            let unfinished = last_attempt.as_ref().is_some_and(|a| a.finished_at_ms.is_none());
            let interrupted = last_attempt.as_ref().is_some_and(Attempt::interrupted_in_flight);
            SystemStatus {
                refreshing: lease.is_some() && unfinished,
                next_attempt_at_ms: last_attempt
                    .as_ref()
                    .and_then(|a| a.retry_at_ms)
                    .filter(|at| *at > now),
                interrupted_in_flight: interrupted && lease.is_none(),
                summary,
                last_attempt,
                lease,
            }
        })
        .collect();
    Ok((systems, page.next))
}

/// Every system's lifecycle, by id, a page at a time (it holds them all: for tests and small
/// stores; listings page with [`status_page`]).
pub fn status(store: &Store) -> Result<Vec<SystemStatus>, StoreError> {
    let mut all = Vec::new();
    let mut cursor = None;
    loop {
        let (page, next) = status_page(store, &Filter::default(), cursor.as_ref(), MAX_PAGE)?;
        all.extend(page);
        match next {
            Some(next) => cursor = Some(next),
            None => return Ok(all),
        }
    }
}

impl Engine {
    /// [`status_page`] of the engine's store, on a blocking thread.
    pub async fn status_page(
        self: &Arc<Self>,
        filter: Filter,
        cursor: Option<Cursor>,
        limit: usize,
    ) -> Result<(Vec<SystemStatus>, Option<Cursor>), EngineError> {
        self.blocking("a store read", move |store| {
            Ok(status_page(store, &filter, cursor.as_ref(), limit)?)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use authplug_store::{Begin, Keyring, Location, ManualClock, MasterKey, NewSystem};
    use std::time::Duration;

    #[test]
    fn the_journal_and_the_lease_say_what_the_state_alone_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let location = Location::Sqlite(dir.path().join("s.sqlite3"));
        let clock = Arc::new(ManualClock::at(1_700_000_000_000));
        let store = Store::open(&location, Keyring::fixed(vec![MasterKey::generate().unwrap()]))
            .unwrap()
            .with_clock(clock.clone());
        for id in ["idle", "busy"] {
            store.create(NewSystem { id: id.into(), ..Default::default() }, "t").unwrap();
        }
        let ttl = Duration::from_secs(60);
        let Begin::Started { attempt, .. } =
            store.begin_refresh("busy", "h#1", ttl, 1, None, true).unwrap()
        else {
            panic!("the lease is free")
        };
        store.mark_sent(&attempt, ttl).unwrap();
        let shown = |store: &Store| -> Vec<(String, &'static str, bool, String)> {
            status(store)
                .unwrap()
                .into_iter()
                .map(|s| (s.summary.id.clone(), s.shown_state(), s.interrupted_in_flight, s.note()))
                .collect()
        };
        assert_eq!(
            shown(&store),
            [
                ("busy".into(), "refreshing", false, "by h#1".into()),
                ("idle".into(), "active", false, String::new()),
            ]
        );
        // The holder dies with its request in flight: once the lease lapses, the journal says so.
        clock.advance(ttl * 2);
        let busy = &shown(&store)[0];
        assert_eq!((busy.1, busy.2), ("active", true));
        assert!(busy.3.contains("died in flight"), "{busy:?}");
    }
}
