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
use std::sync::atomic::{AtomicU64, Ordering};
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

#[derive(Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    /// Bumped by every `forget`: an answer computed from a read made before the bump is not
    /// kept (the system changed while it was being computed).
    generations: HashMap<String, u64>,
    /// Expired entries are dropped when a `put` finds this many (then twice as many as remain).
    sweep_above: usize,
}

/// The least `Inner::sweep_above`.
const SWEEP_ABOVE: usize = 4096;

pub(crate) struct AuthorizeCache {
    ttl: Duration,
    inner: RwLock<Inner>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl std::fmt::Debug for AuthorizeCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuthorizeCache(ttl {:?})", self.ttl)
    }
}

impl AuthorizeCache {
    pub(crate) fn new(ttl: Duration) -> Self {
        let inner = Inner { sweep_above: SWEEP_ABOVE, ..Inner::default() };
        Self { ttl, inner: RwLock::new(inner), hits: AtomicU64::new(0), misses: AtomicU64::new(0) }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The reusable answer for `system`, if any; an expired one is dropped (its secrets with it).
    pub(crate) fn get(&self, system: &str) -> Option<Arc<Authorization>> {
        let found = self.lookup(system);
        let counter = if found.is_some() { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// How many lookups found an answer, and how many did not.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (self.hits.load(Ordering::Relaxed), self.misses.load(Ordering::Relaxed))
    }

    fn lookup(&self, system: &str) -> Option<Arc<Authorization>> {
        let now = Instant::now();
        {
            let inner = self.read();
            match inner.entries.get(system) {
                None => return None,
                Some(entry) if now < entry.until => return Some(entry.authorization.clone()),
                Some(_) => {}
            }
        }
        let mut inner = self.write();
        if inner.entries.get(system).is_some_and(|e| e.until <= now) {
            inner.entries.remove(system);
        }
        None
    }

    /// The system's generation: read it before reading the store, give it to `put`.
    pub(crate) fn generation(&self, system: &str) -> u64 {
        self.read().generations.get(system).copied().unwrap_or(0)
    }

    /// Keeps `authorization` until its time to live ends or, sooner, until `due_in` (when its
    /// secrets become due for refresh) has passed; unless the system was forgotten since
    /// `generation` was read.
    pub(crate) fn put(
        &self,
        authorization: Arc<Authorization>,
        due_in: Option<Duration>,
        generation: u64,
    ) {
        let lifetime = due_in.map_or(self.ttl, |due| due.min(self.ttl));
        if lifetime.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut inner = self.write();
        let system = &authorization.token.system;
        if inner.generations.get(system).copied().unwrap_or(0) != generation {
            return;
        }
        // A newer version already kept (a concurrent refresh) stays.
        if inner
            .entries
            .get(system)
            .is_some_and(|e| e.authorization.token.version > authorization.token.version)
        {
            return;
        }
        if inner.entries.len() >= inner.sweep_above {
            inner.entries.retain(|_, e| e.until > now);
            inner.sweep_above = (inner.entries.len() * 2).max(SWEEP_ABOVE);
        }
        let system = system.clone();
        inner.entries.insert(system, Entry { authorization, until: now + lifetime });
    }

    /// Drops the system's answer, and any being computed from an earlier read.
    pub(crate) fn forget(&self, system: &str) {
        let mut inner = self.write();
        inner.entries.remove(system);
        *inner.generations.entry(system.to_owned()).or_default() += 1;
    }

    /// Drops every expired answer (and the secrets in it).
    pub(crate) fn purge(&self) {
        let now = Instant::now();
        self.write().entries.retain(|_, e| e.until > now);
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
        cache.put(authorization("crm", 1), None, cache.generation("crm"));
        assert_eq!(cache.get("crm").unwrap().token.version, 1);
        assert!(cache.get("other").is_none());
        assert_eq!(cache.counts(), (1, 1));
        cache.forget("crm");
        assert!(cache.get("crm").is_none());
    }

    #[test]
    fn nothing_is_kept_past_the_due_time_or_without_a_time_to_live() {
        let cache = AuthorizeCache::new(Duration::from_secs(60));
        cache.put(authorization("due", 1), Some(Duration::ZERO), 0);
        assert!(cache.get("due").is_none(), "already due: not kept");
        let off = AuthorizeCache::new(Duration::ZERO);
        off.put(authorization("crm", 1), None, 0);
        assert!(off.get("crm").is_none(), "a zero time to live turns the cache off");
    }

    #[test]
    fn an_older_version_does_not_replace_a_newer_one() {
        let cache = AuthorizeCache::new(Duration::from_secs(60));
        cache.put(authorization("crm", 5), None, 0);
        cache.put(authorization("crm", 4), None, 0);
        assert_eq!(cache.get("crm").unwrap().token.version, 5);
        cache.put(authorization("crm", 6), None, 0);
        assert_eq!(cache.get("crm").unwrap().token.version, 6);
    }

    /// An answer computed from a read made before the system changed (refreshed, deleted,
    /// onboarded again by this process) is not kept, even when nothing was cached meanwhile.
    #[test]
    fn an_answer_read_before_a_forget_is_not_kept() {
        let cache = AuthorizeCache::new(Duration::from_secs(60));
        let before = cache.generation("crm");
        cache.forget("crm");
        cache.put(authorization("crm", 7), None, before);
        assert!(cache.get("crm").is_none());
        cache.put(authorization("crm", 8), None, cache.generation("crm"));
        assert_eq!(cache.get("crm").unwrap().token.version, 8);
    }

    #[test]
    fn expired_answers_are_dropped() {
        let cache = AuthorizeCache::new(Duration::from_millis(1));
        cache.put(authorization("crm", 1), None, 0);
        // Time passing, not synchronisation: the answers live 1 ms.
        std::thread::sleep(Duration::from_millis(5));
        assert!(cache.get("crm").is_none());
        assert!(cache.read().entries.is_empty(), "the expired answer is gone, secrets and all");
        cache.put(authorization("other", 1), None, 0);
        std::thread::sleep(Duration::from_millis(5));
        cache.purge();
        assert!(cache.read().entries.is_empty());
    }
}
