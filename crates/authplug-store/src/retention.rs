//! Retention: the audit trail and the refresh journal are kept for a configured time, and
//! pruned in bounded batches (each its own short transaction, so that no writer waits long).
//!
//! What is never pruned, whatever the age: unfinished attempts and each system's newest attempt
//! (a crash is classified from them, and the backoff is read from the newest), besides the count
//! of recent attempts each system keeps anyway (`journal`).

use std::time::Duration;

use crate::{Result, Store};

/// How long the audit trail and the journal are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Audit lines older than this are pruned; `None` keeps them all.
    pub audit: Option<Duration>,
    /// Finished refresh attempts older than this are pruned; `None` keeps them (up to the count
    /// each system keeps).
    pub journal: Option<Duration>,
}

impl Default for Retention {
    /// A year of audit trail, 30 days of journal.
    fn default() -> Self {
        Self {
            audit: Some(Duration::from_secs(365 * 86_400)),
            journal: Some(Duration::from_secs(30 * 86_400)),
        }
    }
}

/// What one call of [`Store::prune`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub audit: u64,
    pub journal: u64,
}

impl Pruned {
    pub fn total(&self) -> u64 {
        self.audit + self.journal
    }
}

impl Store {
    /// Prunes at most `batch` audit lines and `batch` attempts past `retention`, in one short
    /// transaction each. Call it again while it removes a full batch.
    pub fn prune(&self, retention: &Retention, batch: usize) -> Result<Pruned> {
        let limit = i64::try_from(batch.max(1)).unwrap_or(i64::MAX);
        let mut pruned = Pruned::default();
        if let Some(keep) = retention.audit {
            let before = self.clock.now_secs().saturating_sub(secs(keep));
            pruned.audit = self.tx(true, |tx| tx.prune_audit(before, limit))?;
        }
        if let Some(keep) = retention.journal {
            let before_ms = self.clock.now_ms().saturating_sub(secs(keep).saturating_mul(1000));
            pruned.journal = self.tx(true, |tx| tx.prune_journal(before_ms, limit))?;
        }
        Ok(pruned)
    }
}

fn secs(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}
