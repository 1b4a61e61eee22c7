//! What `Engine::authorize` answered, kept in memory for a moment. Workers call authorize once
//! per outbound request, thousands of times a second for one system; each answer would
//! otherwise read and decrypt the stored row and call the plugin's apply step again, for the
//! same result.
//!
//! An entry lives until the first of: its time to live (one second by default, the bound on how
//! long another instance's change goes unseen here), the moment its secrets become due for
//! refresh (so a due credential is always refreshed first, as without the cache), and this
//! process changing the system (refresh, re-authorisation, delete: [`AuthorizeCache::forget`]).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use authplug_protocol::ApplyResponse;

use crate::Token;

/// One outbound request's worth of authorisation: the secrets it came from and what the
/// scheme's apply step adds to the request. Holds secrets: never printed.
pub struct Authorization {
    pub token: Token,
    pub applied: ApplyResponse,
}

impl std::fmt::Debug for Authorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorization")
            .field("system", &self.token.system)
            .field("version", &self.token.version)
            .finish_non_exhaustive()
    }
}

struct Entry {
    authorization: Arc<Authorization>,
    until: Instant,
}

/// Past this many entries, expired ones are dropped when the next one is added.
const SWEEP_ABOVE: usize = 4096;

#[derive(Default)]
pub(crate) struct AuthorizeCache {
    ttl: Duration,
    entries: RwLock<HashMap<String, Entry>>,
}

impl std::fmt::Debug for AuthorizeCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuthorizeCache(ttl {:?})", self.ttl)
    }
}

impl AuthorizeCache {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self { ttl, entries: RwLock::default() }
    }

    pub(crate) fn get(&self, system: &str) -> Option<Arc<Authorization>> {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        let entry = entries.get(system)?;
        (Instant::now() < entry.until).then(|| entry.authorization.clone())
    }

    /// Keeps `authorization` until its time to live ends or, sooner, until `due_in` (when its
    /// secrets become due for refresh) has passed.
    pub(crate) fn put(&self, authorization: Arc<Authorization>, due_in: Option<Duration>) {
        let lifetime = due_in.map_or(self.ttl, |due| due.min(self.ttl));
        if lifetime.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= SWEEP_ABOVE {
            entries.retain(|_, e| e.until > now);
        }
        // A newer version already cached (a concurrent refresh) is kept.
        if entries
            .get(&authorization.token.system)
            .is_some_and(|e| e.authorization.token.version > authorization.token.version)
        {
            return;
        }
        let system = authorization.token.system.clone();
        entries.insert(system, Entry { authorization, until: now + lifetime });
    }

    pub(crate) fn forget(&self, system: &str) {
        self.entries.write().unwrap_or_else(|p| p.into_inner()).remove(system);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn authorization(system: &str, version: i64) -> Arc<Authorization> {
        Arc::new(Authorization {
            token: Token {
                system: system.into(),
                scheme: "oauth2".into(),
                injected: BTreeMap::new(),
                expires_at: None,
                version,
                refreshed: false,
                parameters: BTreeMap::new(),
                issued_at: 0,
            },
            applied: ApplyResponse::default(),
        })
    }

    #[test]
    fn an_entry_is_served_until_forgotten() {
        let cache = AuthorizeCache::new(Duration::from_secs(60));
        cache.put(authorization("crm", 1), None);
        assert_eq!(cache.get("crm").unwrap().token.version, 1);
        assert!(cache.get("other").is_none());
        cache.forget("crm");
        assert!(cache.get("crm").is_none());
    }

    #[test]
    fn nothing_is_kept_past_the_due_time_or_without_a_time_to_live() {
        let cache = AuthorizeCache::new(Duration::from_secs(60));
        cache.put(authorization("due", 1), Some(Duration::ZERO));
        assert!(cache.get("due").is_none(), "already due: not kept");
        let off = AuthorizeCache::new(Duration::ZERO);
        off.put(authorization("crm", 1), None);
        assert!(off.get("crm").is_none(), "a zero time to live turns the cache off");
    }

    #[test]
    fn an_older_version_does_not_replace_a_newer_one() {
        let cache = AuthorizeCache::new(Duration::from_secs(60));
        cache.put(authorization("crm", 5), None);
        cache.put(authorization("crm", 4), None);
        assert_eq!(cache.get("crm").unwrap().token.version, 5);
        cache.put(authorization("crm", 6), None);
        assert_eq!(cache.get("crm").unwrap().token.version, 6);
    }
}
