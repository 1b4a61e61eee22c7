//! Authorize calls, audited in aggregate: one audit row per token, system and minute (calls
//! served and refused, the first and last second), not one per call. A worker may call
//! `authorize` thousands of times a second; a row per call would make the audit trail the
//! store's main load. Rows are written when the minute is over and when the server stops; a
//! server killed outright loses at most the minute in progress.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;

use crate::AppState;

/// The action of the audit rows.
pub const AUTHORIZED: &str = "authorized";

/// Calls counted since the last flush: token name, then system.
#[derive(Debug, Default)]
pub struct AuthorizeAudit {
    counts: Mutex<HashMap<String, HashMap<String, Tally>>>,
    /// One flush at a time: the one at stop waits for a periodic one under way.
    flushing: tokio::sync::Mutex<()>,
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

impl AuthorizeAudit {
    /// Counts one call of the token named `token` for `system` (its row's actor is
    /// `api:TOKEN`).
    pub(crate) fn count(&self, token: &str, system: &str, served: bool) {
        let at = now();
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let systems = match counts.get_mut(token) {
            Some(systems) => systems,
            None => counts.entry(token.to_owned()).or_default(),
        };
        let tally = match systems.get_mut(system) {
            Some(tally) => tally,
            None => systems.entry(system.to_owned()).or_insert(Tally {
                served: 0,
                refused: 0,
                first: at,
                last: at,
            }),
        };
        if served {
            tally.served += 1;
        } else {
            tally.refused += 1;
        }
        tally.last = at;
    }

    /// Writes a row for every token and system counted since the last flush. A row the store
    /// refuses is put back, to be written with the next one.
    pub async fn flush(&self, state: &Arc<AppState>) {
        let _one = self.flushing.lock().await;
        let taken = std::mem::take(&mut *self.counts.lock().unwrap_or_else(|p| p.into_inner()));
        let mut kept = Vec::new();
        for (token, systems) in taken {
            let actor = format!("api:{token}");
            for (system, tally) in systems {
                let detail = json!({
                    "served": tally.served,
                    "refused": tally.refused,
                    "from": tally.first,
                    "to": tally.last,
                });
                let (id, who) = (system.clone(), actor.clone());
                let written = state
                    .with_store(move |store| store.record_event(&id, &who, AUTHORIZED, detail))
                    .await;
                if let Err(error) = written {
                    tracing::warn!(
                        system,
                        actor,
                        error = error.message(),
                        "authorize audit not written yet"
                    );
                    kept.push((token.clone(), system, tally));
                }
            }
        }
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        for (token, system, tally) in kept {
            let systems = counts.entry(token).or_default();
            match systems.get_mut(&system) {
                Some(slot) => {
                    slot.served += tally.served;
                    slot.refused += tally.refused;
                    slot.first = slot.first.min(tally.first);
                }
                None => {
                    systems.insert(system, tally);
                }
            }
        }
    }
}

/// Flushes the authorize audit at the end of every minute.
pub async fn flush_authorize_audit_forever(state: Arc<AppState>) {
    loop {
        let into_minute = Duration::from_secs((now().rem_euclid(60)) as u64);
        tokio::time::sleep(Duration::from_secs(60).saturating_sub(into_minute)).await;
        state.authorize_audit.flush(&state).await;
    }
}
