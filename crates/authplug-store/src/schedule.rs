//! When each system next needs the refresh engine, kept in an indexed column (`due_at`) in the
//! same transaction as every change, so that a sweep asks for the systems due instead of
//! reading every system.
//!
//! The invariant: a system's `due_at` is never later than the moment it falls due under the
//! margin it was stored with, nor later than its backoff allows a retry; `None` means no refresh
//! is ever due (secrets that do not expire, a system that needs re-authorisation). A write that
//! knows the scheme's margin ([`Injected::with_margin`](crate::Injected::with_margin), which the
//! engine uses) stores the exact moment; any other (an import, a change by hand) stores the
//! earliest moment any margin could give, half the lifetime before expiry, which the sweep
//! refines with [`Store::reschedule`] when it finds the system not yet due. Keep-alive (refresh
//! what has been idle too long) is a setting of each engine, not stored: [`Store::idle`] finds
//! those systems through an index on their issue time.

use crate::backend::{SystemRow, Tx};
use crate::model::State;
use crate::{Result, Store, SystemSummary};

/// When secrets expiring at `expires_at` and issued at `issued` fall due (Unix seconds): a
/// margin before expiry, never more than half their lifetime; without a margin, half their
/// lifetime before expiry, the earliest any margin gives. Never, for secrets that do not expire.
pub fn due_at(expires_at: Option<i64>, issued: i64, margin_secs: Option<i64>) -> Option<i64> {
    let expires_at = expires_at?;
    let half = expires_at.saturating_sub(issued).max(0) / 2;
    Some(expires_at - margin_secs.unwrap_or(i64::MAX).clamp(0, half))
}

/// Where a sweep's walk through the due (or idle) systems has got to: the time and id of the
/// last system it was handed. Start with [`Walk::start`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Walk {
    pub at: i64,
    pub id: String,
}

impl Walk {
    pub fn start() -> Self {
        Self { at: i64::MIN, id: String::new() }
    }
}

/// The issue time of a row: its last refresh, or its creation.
pub(crate) fn issued(row: &SystemRow) -> i64 {
    row.last_refresh_at.unwrap_or(row.created_at)
}

/// The `due_at` a changed row gets: none unless active; recomputed when what it depends on
/// changed (or a margin is given), otherwise kept (it may hold a refined time or a backoff).
pub(crate) fn next_due(current: &SystemRow, next: &SystemRow, margin: Option<i64>) -> Option<i64> {
    if next.state != State::Active {
        return None;
    }
    let moved = next.expires_at != current.expires_at
        || issued(next) != issued(current)
        || current.state != State::Active
        || margin.is_some();
    if moved {
        due_at(next.expires_at, issued(next), margin)
    } else {
        current.due_at
    }
}

impl Store {
    /// The systems due by `until` (Unix seconds) after `walk`, in due order, at most `limit`:
    /// one batch of a sweep. Advance `walk` to the last one handed out for the next batch.
    pub fn due(&self, until: i64, walk: &Walk, limit: usize) -> Result<Vec<SystemSummary>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.summaries(|tx| tx.due(until, walk.at, &walk.id, limit))
    }

    /// The active systems issued (refreshed or onboarded) by `issued_by` after `walk`, oldest
    /// first, at most `limit`: one batch of a keep-alive sweep.
    pub fn idle(&self, issued_by: i64, walk: &Walk, limit: usize) -> Result<Vec<SystemSummary>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.summaries(|tx| tx.idle(issued_by, walk.at, &walk.id, limit))
    }

    /// Sets when the sweep should next look at each system `(id, version, due_at)` that is
    /// still at its version, in one transaction (no new version, no audit line: the index is
    /// bookkeeping; a system that changed meanwhile got its time from that writer). Answers how
    /// many were set.
    pub fn reschedule(&self, times: &[(String, i64, Option<i64>)]) -> Result<usize> {
        self.tx(true, |tx| {
            let mut set = 0;
            for (id, version, due_at) in times {
                set += usize::from(tx.reschedule(id, *version, *due_at)?);
            }
            Ok(set)
        })
    }

    /// Rows with their secret names (one query for the whole batch), as summaries.
    pub(crate) fn summaries(
        &self,
        rows: impl FnOnce(&mut dyn Tx) -> Result<Vec<SystemRow>>,
    ) -> Result<Vec<SystemSummary>> {
        let (rows, names) = self.tx(false, |tx| {
            let rows = rows(tx)?;
            let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
            let names = if ids.is_empty() { Vec::new() } else { tx.secret_names(&ids)? };
            Ok((rows, names))
        })?;
        crate::systems::summaries(rows, names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_fall_due_a_margin_before_expiry_at_most_half_their_lifetime() {
        assert_eq!(due_at(Some(3600), 0, Some(300)), Some(3300));
        // A 60-second token with a five-minute margin would be due the moment it is issued.
        assert_eq!(due_at(Some(1060), 1000, Some(300)), Some(1030));
        // Issued after its expiry (a clock step): due at expiry.
        assert_eq!(due_at(Some(1000), 2000, Some(300)), Some(1000));
        assert_eq!(due_at(None, 0, Some(300)), None);
    }

    #[test]
    fn without_a_margin_the_earliest_any_margin_gives() {
        assert_eq!(due_at(Some(3600), 0, None), Some(1800));
        for margin in [0, 60, 300, 1800, 100_000] {
            assert!(due_at(Some(3600), 0, None) <= due_at(Some(3600), 0, Some(margin)));
        }
    }
}
