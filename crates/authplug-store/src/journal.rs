//! Leases and the refresh journal: what the refresh engine writes so that one instance at a time
//! refreshes a credential, and so that a crash in the middle of a refresh can be told apart
//! afterwards.
//!
//! An attempt is journaled in three durable steps: *started* (with the lease, in one
//! transaction), *sent* (just before its request leaves), and *finished* (in the same transaction
//! that stores its result). An attempt that was sent and never finished is the one case no client
//! can close: the provider may have rotated the refresh token and its answer died with the
//! process.

use std::time::Duration;

use serde::Serialize;

use crate::clock::after;
use crate::{Change, Result, Store, StoreError};

/// Attempts kept per system; older ones are pruned as new ones finish.
const KEEP_ATTEMPTS: i64 = 50;

/// Who holds a system's refresh lease, and until when (Unix milliseconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lease {
    pub holder: String,
    pub until_ms: i64,
}

/// One refresh attempt as journaled. `detail` is a provider's reason or an error, never a value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attempt {
    pub id: i64,
    pub system_id: String,
    pub holder: String,
    /// The system's version the attempt started from (and compare-and-sets against).
    pub from_version: i64,
    pub started_at_ms: i64,
    pub sent_at_ms: Option<i64>,
    /// When the last answer of the attempt arrived (not journaled separately: written with the
    /// result), so the gap between answer and durable result can be measured.
    pub answered_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
    pub outcome: Option<Outcome>,
    pub detail: Option<String>,
    /// Not before this time should the next attempt be made (backoff, `Retry-After`).
    pub retry_at_ms: Option<i64>,
}

impl Attempt {
    /// A new attempt as journaled when it starts: nothing sent, nothing finished.
    pub fn started(
        id: i64,
        system_id: &str,
        holder: &str,
        from_version: i64,
        started_at_ms: i64,
    ) -> Self {
        Self {
            id,
            system_id: system_id.to_owned(),
            holder: holder.to_owned(),
            from_version,
            started_at_ms,
            sent_at_ms: None,
            answered_at_ms: None,
            finished_at_ms: None,
            outcome: None,
            detail: None,
            retry_at_ms: None,
        }
    }

    /// The request left and no result was ever recorded: whoever made it died (or lost the
    /// store) while the provider may already have rotated the refresh token.
    pub fn interrupted_in_flight(&self) -> bool {
        self.sent_at_ms.is_some() && self.finished_at_ms.is_none()
    }
}

/// How a finished attempt ended, as journaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// New secrets were stored.
    Renewed,
    /// The provider refused: the system needs re-authorisation.
    Reauthorize,
    /// A failure worth retrying later (timeouts, 5xx, 429).
    Transient,
    /// Neither transient nor a refusal (a contract violation, a plugin panic).
    Failed,
    /// The provider refused an old refresh token: another holder had stored a newer one.
    Superseded,
    /// The scheme had nothing to renew with (no refresh token) and the secrets never expire:
    /// kept as they are.
    Unchanged,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Renewed => "renewed",
            Outcome::Reauthorize => "reauthorize",
            Outcome::Transient => "transient",
            Outcome::Failed => "failed",
            Outcome::Superseded => "superseded",
            Outcome::Unchanged => "unchanged",
        }
    }

    pub(crate) fn parse(text: &str) -> Result<Self> {
        [
            Outcome::Renewed,
            Outcome::Reauthorize,
            Outcome::Transient,
            Outcome::Failed,
            Outcome::Superseded,
            Outcome::Unchanged,
        ]
        .into_iter()
        .find(|o| o.as_str() == text)
        .ok_or_else(|| {
            StoreError::corrupt(format!("unknown refresh outcome {text:?} in the journal"))
        })
    }
}

/// What [`Store::begin_refresh`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// The lease is ours and the attempt is journaled. `previous` is the attempt before it.
    Started { attempt: Attempt, previous: Option<Attempt> },
    /// The previous attempt asked nobody to try before its `retry_at_ms` (backoff,
    /// `Retry-After`), and that time has not come. Nothing was taken or journaled.
    Backoff(Attempt),
    /// Another holder has the lease.
    Held(Lease),
    /// The system is no longer at the version the attempt was to start from: someone stored a
    /// newer credential meanwhile. Nothing was taken or journaled; read it again.
    Moved { version: i64 },
}

/// How an attempt ended, written in one transaction.
#[derive(Debug, Clone)]
pub struct Finish {
    pub outcome: Outcome,
    pub detail: Option<String>,
    pub retry_at_ms: Option<i64>,
    /// When the provider's last answer arrived, Unix milliseconds.
    pub answered_at_ms: Option<i64>,
    /// The change to store, compare-and-set at the attempt's `from_version`.
    pub change: Option<Change>,
    /// Give the lease back (false while the holder goes on retrying).
    pub release: bool,
    /// An audit line `(action, detail)` to append in the same transaction.
    pub event: Option<(String, serde_json::Value)>,
}

impl Finish {
    /// An attempt that ended with `outcome`, changing nothing, releasing the lease.
    pub fn new(outcome: Outcome) -> Self {
        Self {
            outcome,
            detail: None,
            retry_at_ms: None,
            answered_at_ms: None,
            change: None,
            release: true,
            event: None,
        }
    }
}

impl Store {
    /// Who holds the system's lease, if anyone (expired leases included: compare `until_ms`).
    pub fn lease(&self, id: &str) -> Result<Option<Lease>> {
        self.tx(false, |tx| tx.lease(id))
    }

    /// Every held lease by system id (expired ones included: compare `until_ms`).
    pub fn leases(&self) -> Result<Vec<(String, Lease)>> {
        self.tx(false, |tx| tx.leases())
    }

    /// Takes the system's lease for `ttl` if it is free, expired, or already `holder`'s (which
    /// renews it). Works across processes (SQLite) and hosts (PostgreSQL); a crashed holder's
    /// lease lapses after `ttl`. Uses the store's clock: keep hosts' clocks within a small part
    /// of `ttl` of each other.
    pub fn try_lease(&self, id: &str, holder: &str, ttl: Duration) -> Result<bool> {
        let now = self.clock.now_ms();
        self.tx(true, |tx| tx.try_lease(id, holder, now, after(now, ttl)))
    }

    /// Gives the lease back if `holder` has it.
    pub fn release_lease(&self, id: &str, holder: &str) -> Result<()> {
        self.tx(true, |tx| tx.release_lease(id, holder))
    }

    /// Takes (or renews) the system's lease for `ttl` and journals a new attempt starting from
    /// `from_version`, in one transaction. If `stale_holder` is given and holds the lease, the
    /// lease is taken from it (a holder known to be dead). With `respect_backoff`, a previous
    /// attempt's `retry_at_ms` still to come answers [`Begin::Backoff`].
    pub fn begin_refresh(
        &self,
        id: &str,
        holder: &str,
        ttl: Duration,
        from_version: i64,
        stale_holder: Option<&str>,
        respect_backoff: bool,
    ) -> Result<Begin> {
        let now = self.clock.now_ms();
        let until = after(now, ttl);
        self.tx(true, |tx| {
            if let Some(stale) = stale_holder {
                tx.release_lease(id, stale)?;
            }
            if !tx.try_lease(id, holder, now, until)? {
                let lease = tx.lease(id)?.unwrap_or(Lease { holder: String::new(), until_ms: 0 });
                return Ok(Begin::Held(lease));
            }
            // Read under the lease (PostgreSQL: after the upsert waited for any holder that was
            // committing), so a result stored just before, and its attempt, are seen.
            let version =
                tx.system(id)?.ok_or_else(|| StoreError::NotFound(id.to_owned()))?.version;
            if version != from_version {
                tx.release_lease(id, holder)?;
                return Ok(Begin::Moved { version });
            }
            let previous = tx.attempts(id, 1)?.into_iter().next();
            if let Some(previous) = &previous {
                let waiting = previous.finished_at_ms.is_some()
                    && previous.retry_at_ms.is_some_and(|at| at > now);
                if respect_backoff && waiting && previous.holder != holder {
                    tx.release_lease(id, holder)?;
                    return Ok(Begin::Backoff(previous.clone()));
                }
            }
            let attempt = tx.insert_attempt(id, holder, from_version, now)?;
            let attempt = Attempt::started(attempt, id, holder, from_version, now);
            Ok(Begin::Started { attempt, previous })
        })
    }

    /// Records, durably, that the attempt's request is leaving now, and renews the lease for
    /// `ttl`. Refuses (and records nothing) unless the lease is still the attempt's
    /// ([`StoreError::LeaseLost`]) and the system is still at its `from_version`
    /// ([`StoreError::VersionConflict`]): a holder whose lease lapsed must not send.
    pub fn mark_sent(&self, attempt: &Attempt, ttl: Duration) -> Result<()> {
        let now = self.clock.now_ms();
        let id = attempt.system_id.as_str();
        self.tx(true, |tx| {
            let ours =
                tx.lease(id)?.is_some_and(|l| l.holder == attempt.holder && l.until_ms >= now);
            if !ours {
                return Err(StoreError::LeaseLost {
                    id: id.to_owned(),
                    holder: attempt.holder.clone(),
                });
            }
            let version = tx.system(id)?.map(|r| r.version);
            if version != Some(attempt.from_version) {
                return Err(StoreError::VersionConflict {
                    id: id.to_owned(),
                    expected: attempt.from_version,
                    actual: version.unwrap_or(-1),
                });
            }
            tx.try_lease(id, &attempt.holder, now, after(now, ttl))?;
            tx.mark_sent(attempt.id, now)
        })
    }

    /// Ends an attempt: stores its change (compare-and-set at `from_version`), marks it
    /// finished, appends its audit line and releases the lease, all in one transaction. Returns
    /// the system's new version when there was a change (the caller has the values it stored).
    pub fn finish_refresh(
        &self,
        attempt: &Attempt,
        finish: &Finish,
        actor: &str,
    ) -> Result<Option<i64>> {
        let id = attempt.system_id.as_str();
        let sealed = match &finish.change {
            Some(change) => self.seal_change(id, change)?,
            None => Default::default(),
        };
        let now = self.clock.now_ms();
        self.tx(true, |tx| {
            let written = match &finish.change {
                Some(change) => Some(
                    self.write_change(tx, id, attempt.from_version, change, &sealed, actor)?
                        .version,
                ),
                None => None,
            };
            tx.finish_attempt(attempt.id, now, finish)?;
            if let Some(retry_at_ms) = finish.retry_at_ms {
                // Not due again before the backoff ends (rounded up to the second).
                tx.postpone(id, retry_at_ms.div_euclid(1000) + 1)?;
            }
            if let Some((action, detail)) = &finish.event {
                tx.append_audit(&self.audit_entry(id, actor, action, detail.clone()))?;
            }
            if finish.release {
                tx.release_lease(id, &attempt.holder)?;
            }
            if attempt.id % 16 == 0 {
                if let Some(oldest) = tx.attempts(id, KEEP_ATTEMPTS)?.last() {
                    tx.prune_attempts(id, oldest.id)?;
                }
            }
            Ok(written)
        })
    }

    /// The system's newest attempts, newest first.
    pub fn attempts(&self, id: &str, limit: usize) -> Result<Vec<Attempt>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.tx(false, |tx| tx.attempts(id, limit))
    }

    /// The newest attempt of every system that has one, by system id.
    pub fn latest_attempts(&self) -> Result<Vec<Attempt>> {
        self.tx(false, |tx| tx.latest_attempts())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Injected, Keyring, Lifecycle, Location, NewSystem};
    use authplug_protocol::Secret;
    use std::collections::BTreeMap;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let location = Location::Sqlite(dir.path().join("s.sqlite3"));
        let store =
            Store::open(&location, Keyring::fixed(vec![crate::MasterKey::generate().unwrap()]))
                .unwrap();
        store
            .create(
                NewSystem {
                    id: "crm".into(),
                    scheme: "oauth2".into(),
                    injected: BTreeMap::from([("t".into(), Secret::new("old"))]),
                    ..Default::default()
                },
                "test",
            )
            .unwrap();
        (dir, store)
    }

    fn started(begin: Begin) -> Attempt {
        match begin {
            Begin::Started { attempt, .. } => attempt,
            other => panic!("not started: {other:?}"),
        }
    }

    #[test]
    fn an_attempt_is_journaled_with_its_lease_and_finished_with_its_result() {
        let (_dir, store) = store();
        let ttl = Duration::from_secs(30);
        let attempt = started(store.begin_refresh("crm", "a", ttl, 1, None, true).unwrap());
        assert_eq!(store.begin_refresh("crm", "b", ttl, 1, None, true).unwrap(), {
            let lease = store.lease("crm").unwrap().unwrap();
            assert_eq!(lease.holder, "a");
            Begin::Held(lease)
        });
        store.mark_sent(&attempt, ttl).unwrap();
        let journaled = &store.attempts("crm", 5).unwrap()[0];
        assert!(journaled.interrupted_in_flight(), "{journaled:?}");

        let change = Change {
            injected: Some(Injected::new(BTreeMap::from([("t".into(), Secret::new("new"))]), None)),
            state: Some(Lifecycle::Active),
            ..Default::default()
        };
        let finish = Finish {
            change: Some(change),
            event: Some(("refreshed".into(), serde_json::json!({}))),
            ..Finish::new(Outcome::Renewed)
        };
        assert_eq!(store.finish_refresh(&attempt, &finish, "engine").unwrap(), Some(2));
        let record = store.get("crm").unwrap().unwrap();
        assert_eq!(record.injected["t"].expose(), "new");
        assert_eq!(record.summary.version, 2);
        let journaled = &store.attempts("crm", 5).unwrap()[0];
        assert!(!journaled.interrupted_in_flight());
        assert_eq!(journaled.outcome, Some(Outcome::Renewed));
        assert_eq!(store.lease("crm").unwrap(), None, "released with the result");
        assert!(store.audit("crm").unwrap().iter().any(|e| e.action == "refreshed"));
        // A second holder may now start; a known-dead holder's lease can be taken over.
        let b = started(store.begin_refresh("crm", "b", ttl, 2, None, true).unwrap());
        assert_eq!(b.from_version, 2);
        started(store.begin_refresh("crm", "c", ttl, 2, Some("b"), true).unwrap());
        assert_eq!(
            store.begin_refresh("crm", "c", ttl, 1, None, true).unwrap(),
            Begin::Moved { version: 2 },
            "an attempt never starts from an old version"
        );
        assert_eq!(store.latest_attempts().unwrap().len(), 1);
    }

    #[test]
    fn a_holder_whose_lease_lapsed_may_not_send() {
        let (_dir, store) = store();
        let ttl = Duration::from_secs(30);
        let attempt = started(store.begin_refresh("crm", "a", ttl, 1, None, true).unwrap());
        // "a"'s lease is gone (lapsed, or taken as a dead holder's) and "b" has it.
        store.release_lease("crm", "a").unwrap();
        started(store.begin_refresh("crm", "b", Duration::from_secs(30), 1, None, true).unwrap());
        let error = store.mark_sent(&attempt, Duration::from_secs(30)).unwrap_err();
        assert!(matches!(error, StoreError::LeaseLost { .. }), "{error}");
        assert_eq!(store.attempts("crm", 2).unwrap()[1].sent_at_ms, None, "nothing recorded");
    }

    #[test]
    fn a_result_against_a_changed_system_is_refused_and_nothing_is_marked_finished() {
        let (_dir, store) = store();
        let attempt = started(
            store.begin_refresh("crm", "a", Duration::from_secs(30), 1, None, true).unwrap(),
        );
        store.update("crm", 1, Change::default(), "someone").unwrap();
        let finish = Finish { change: Some(Change::default()), ..Finish::new(Outcome::Renewed) };
        let error = store.finish_refresh(&attempt, &finish, "engine").unwrap_err();
        assert!(matches!(error, StoreError::VersionConflict { .. }), "{error}");
        assert_eq!(store.attempts("crm", 1).unwrap()[0].finished_at_ms, None);
    }
}
