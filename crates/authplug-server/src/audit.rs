//! Authorize calls, audited in aggregate: one audit row per token, system and flush (calls
//! served and refused, the first and last second), not one per call. A worker may call
//! `authorize` thousands of times a second; a row per call would make the audit trail the
//! store's main load. Rows are written when the minute is over, sooner when
//! [`FLUSH_AT`] token-and-system pairs are waiting, and when the server stops; a server killed
//! outright loses at most what was waiting.
//!
//! Memory is bounded: at most [`MAX_PAIRS`] pairs wait. A call whose pair finds the bound
//! reached (the store refusing writes for long) is not audited; how many were not is logged
//! as an error at the next flush.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;

use crate::AppState;

/// The action of the audit rows.
pub const AUTHORIZED: &str = "authorized";

/// Pairs waiting that start a flush before the minute is over (random traffic over many
/// systems: a row per system called, written without waiting for the minute). Every write
/// also empties the read connections' page caches (SQLite starts a read afresh after a
/// commit), so flushes are few and large.
pub const FLUSH_AT: usize = 50_000;

/// Pairs waiting at most (about 150 bytes each).
pub const MAX_PAIRS: usize = 100_000;

/// Rows written per store transaction.
const ROWS_PER_WRITE: usize = 2_000;

/// Calls counted since the last flush: token name, then system.
#[derive(Debug, Default)]
pub struct AuthorizeAudit {
    waiting: Mutex<Waiting>,
    /// One flush at a time: the one at stop waits for a periodic one under way.
    flushing: tokio::sync::Mutex<()>,
    /// Told when [`FLUSH_AT`] pairs are waiting.
    full: tokio::sync::Notify,
    /// Calls not audited since the server started: their pair found [`MAX_PAIRS`] waiting.
    dropped: AtomicU64,
    /// Of those, the ones a flush has logged.
    logged: AtomicU64,
    /// Whether the last flush failed to write: then none starts before the minute is over.
    failing: AtomicBool,
}

#[derive(Debug, Default)]
struct Waiting {
    counts: HashMap<String, HashMap<String, Tally>>,
    pairs: usize,
}

#[derive(Debug, Clone, Copy)]
struct Tally {
    served: u64,
    refused: u64,
    first: i64,
    last: i64,
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

impl Waiting {
    /// Adds `tally` for `token` and `system`; false if it is a new pair and the bound is
    /// reached.
    fn add(&mut self, token: &str, system: &str, tally: Tally) -> bool {
        let systems = match self.counts.get_mut(token) {
            Some(systems) => systems,
            None if self.pairs >= MAX_PAIRS => return false,
            None => self.counts.entry(token.to_owned()).or_default(),
        };
        match systems.get_mut(system) {
            Some(slot) => {
                slot.served += tally.served;
                slot.refused += tally.refused;
                slot.first = slot.first.min(tally.first);
                slot.last = slot.last.max(tally.last);
            }
            None if self.pairs >= MAX_PAIRS => return false,
            None => {
                systems.insert(system.to_owned(), tally);
                self.pairs += 1;
            }
        }
        true
    }
}

impl AuthorizeAudit {
    /// Counts one call of the token named `token` for `system` (its row's actor is
    /// `api:TOKEN`).
    pub(crate) fn count(&self, token: &str, system: &str, served: bool) {
        let at = now();
        let tally =
            Tally { served: u64::from(served), refused: u64::from(!served), first: at, last: at };
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        let before = waiting.pairs;
        if !waiting.add(token, system, tally) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        if before < FLUSH_AT && waiting.pairs >= FLUSH_AT {
            self.full.notify_one();
        }
    }

    /// How many token-and-system pairs wait to be written.
    pub fn waiting(&self) -> usize {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner()).pairs
    }

    /// How many calls were not audited since the server started (the bound was reached).
    pub fn not_audited(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Writes a row for every token and system counted since the last flush, several rows per
    /// store transaction. Rows the store refuses are put back, to be written with the next
    /// flush.
    pub async fn flush(&self, state: &Arc<AppState>) {
        let _one = self.flushing.lock().await;
        let taken = {
            let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
            std::mem::take(&mut *waiting)
        };
        let mut rows: Vec<(String, String, Tally)> = Vec::with_capacity(taken.pairs);
        for (token, systems) in taken.counts {
            rows.extend(systems.into_iter().map(|(system, tally)| (token.clone(), system, tally)));
        }
        let mut kept = Vec::new();
        let mut chunks = rows.chunks(ROWS_PER_WRITE);
        for chunk in chunks.by_ref() {
            let written: Vec<_> = chunk
                .iter()
                .map(|(token, system, tally)| {
                    let detail = json!({
                        "served": tally.served,
                        "refused": tally.refused,
                        "from": tally.first,
                        "to": tally.last,
                    });
                    (system.clone(), format!("api:{token}"), detail)
                })
                .collect();
            let stored =
                state.with_store(move |store| store.record_events(AUTHORIZED, written)).await;
            if let Err(error) = stored {
                // The rest waits for the next flush: a store refusing one write refuses more.
                kept.extend_from_slice(chunk);
                kept.extend(chunks.flatten().cloned());
                tracing::warn!(
                    rows = kept.len(),
                    error = error.message(),
                    "authorize audit not written yet"
                );
                break;
            }
        }
        self.failing.store(!kept.is_empty(), Ordering::Relaxed);
        if !kept.is_empty() {
            let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
            for (token, system, tally) in kept {
                if !waiting.add(&token, &system, tally) {
                    self.dropped.fetch_add(tally.served + tally.refused, Ordering::Relaxed);
                }
            }
        }
        let total = self.dropped.load(Ordering::Relaxed);
        let dropped = total - self.logged.swap(total, Ordering::Relaxed);
        if dropped > 0 {
            tracing::error!(
                calls = dropped,
                "authorize calls not audited: {MAX_PAIRS} token-and-system pairs were waiting to be written (is the store refusing writes?)"
            );
        }
    }
}

/// Flushes the authorize audit at the end of every minute, and whenever [`FLUSH_AT`] pairs
/// are waiting (unless the last flush failed: then at the minute only).
pub async fn flush_authorize_audit_forever(state: Arc<AppState>) {
    let audit = &state.authorize_audit;
    loop {
        let into_minute = Duration::from_secs((now().rem_euclid(60)) as u64);
        let minute = tokio::time::sleep(Duration::from_secs(60).saturating_sub(into_minute));
        tokio::pin!(minute);
        loop {
            tokio::select! {
                _ = &mut minute => break,
                _ = audit.full.notified() => {
                    if !audit.failing.load(Ordering::Relaxed) {
                        break;
                    }
                }
            }
        }
        audit.flush(&state).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::Lab;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn calls_are_summed_per_pair_written_in_batches_and_bounded() {
        let lab = Lab::new();
        let audit = &lab.state.authorize_audit;
        for i in 0..ROWS_PER_WRITE + 3 {
            audit.count("worker", &format!("s-{i}"), true);
        }
        audit.count("worker", "s-0", false);
        audit.count("ops", "s-0", true);
        assert_eq!(audit.waiting(), ROWS_PER_WRITE + 4);
        audit.flush(&lab.state).await;
        assert_eq!(audit.waiting(), 0);
        let store = lab.state.engine.store();
        let rows = store.audit("s-0").unwrap();
        let rows: Vec<_> = rows.iter().filter(|r| r.action == AUTHORIZED).collect();
        assert_eq!(rows.len(), 2, "a row per token");
        let worker = rows.iter().find(|r| r.actor == "api:worker").unwrap();
        assert_eq!(
            (worker.detail["served"].as_u64(), worker.detail["refused"].as_u64()),
            (Some(1), Some(1))
        );
        let last = format!("s-{}", ROWS_PER_WRITE + 2);
        assert_eq!(store.audit(&last).unwrap().len(), 1, "the second batch was written");

        // The bound: a new pair beyond it is not kept, a known pair still counts.
        let mut waiting = Waiting::default();
        let tally = Tally { served: 1, refused: 0, first: 1, last: 1 };
        for i in 0..MAX_PAIRS {
            assert!(waiting.add("t", &i.to_string(), tally));
        }
        assert!(!waiting.add("t", "one more", tally));
        assert!(!waiting.add("another token", "0", tally));
        assert!(waiting.add("t", "0", tally));
        assert_eq!(waiting.pairs, MAX_PAIRS);
        assert_eq!(waiting.counts["t"]["0"].served, 2);
    }

    #[tokio::test]
    async fn enough_waiting_pairs_call_for_a_flush_before_the_minute_is_over() {
        let audit = AuthorizeAudit::default();
        for i in 0..FLUSH_AT - 1 {
            audit.count("worker", &format!("s-{i}"), true);
        }
        audit.count("worker", "s-0", true);
        let early = tokio::time::timeout(Duration::from_millis(50), audit.full.notified()).await;
        assert!(early.is_err(), "not called for below the mark (a known pair adds none)");
        audit.count("worker", "one more", true);
        let called = tokio::time::timeout(Duration::from_secs(5), audit.full.notified()).await;
        assert!(called.is_ok(), "called for at the mark");
    }
}
