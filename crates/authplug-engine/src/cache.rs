//! What `Engine::authorize` answered, kept in memory for a moment. Workers call authorize once
//! per outbound request, thousands of times a second for one system; each answer would
//! otherwise read and decrypt the stored row and call the plugin's apply step again, for the
//! same result.
//!
//! An entry lives until the first of: its time to live (one second by default, the bound on how
//! long another instance's change goes unseen here), the moment its secrets become due for
//! refresh (so a due credential is always refreshed first, as without the cache), and this
//! process changing the system (refresh, re-authorisation, delete: [`AuthorizeCache::forget`]).

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use authplug_protocol::ApplyResponse;

use crate::Token;

/// One outbound request's worth of authorisation: what the scheme's apply step adds to the
/// request, and which system, scheme, version and expiry it came from (not the secrets it was
/// made from: a kept answer never holds a refresh token). Its headers are secrets: never
/// printed.
pub struct Authorization {
    pub system: String,
    pub scheme: String,
    /// The system's version the answer was made from.
    pub version: i64,
    /// When the applied secrets expire, Unix seconds.
    pub expires_at: Option<i64>,
    /// Whether the secrets were renewed by the call that made this answer.
    pub refreshed: bool,
    pub applied: ApplyResponse,
    /// The answer as its caller renders it (the server's JSON), made once and reused with it:
    /// an answer served from memory is not serialised again.
    pub rendered: std::sync::OnceLock<Box<[u8]>>,
}

impl Authorization {
    /// `token`'s answer, `applied`. The token's secrets and parameters are not kept: an answer
    /// reused from memory holds what one request needs, not the refresh token behind it.
    pub fn new(token: Token, applied: ApplyResponse) -> Self {
        Self {
            system: token.system,
            scheme: token.scheme,
            version: token.version,
            expires_at: token.expires_at,
            refreshed: token.refreshed,
            applied,
            rendered: std::sync::OnceLock::new(),
        }
    }
}

impl std::fmt::Debug for Authorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorization")
            .field("system", &self.system)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl Authorization {
    /// About how many bytes it holds: its strings and a fixed overhead per value.
    fn weight(&self) -> usize {
        const OVERHEAD: usize = 48;
        let applied: usize = (self.applied.headers.iter().chain(&self.applied.query))
            .map(|(k, v)| k.len() + v.expose().len() + OVERHEAD)
            .sum();
        256 + 2 * self.system.len() + self.scheme.len() + applied
    }
}

struct Entry {
    authorization: Arc<Authorization>,
    until: Instant,
    weight: usize,
}

/// Generation slots: a system's generation is its slot's, so the bookkeeping of `forget` is a
/// fixed size however many systems change. Two systems sharing a slot only means that an answer
/// is sometimes not kept when it could have been.
const SLOTS: usize = 4096;

struct Inner {
    entries: HashMap<String, Entry>,
    /// The entries in the order they were kept, with the moment each ends: the oldest are
    /// dropped first (they end first: every entry lives at most the same time to live). An item
    /// whose entry was replaced or removed since is skipped.
    order: VecDeque<(String, Instant)>,
    /// What the entries hold, by [`Authorization::weight`].
    bytes: usize,
    /// Bumped by every `forget` of a system of the slot: an answer computed from a read made
    /// before the bump is not kept (the system changed while it was being computed).
    generations: Box<[u64]>,
}

pub(crate) struct AuthorizeCache {
    ttl: Duration,
    max_entries: usize,
    max_bytes: usize,
    inner: RwLock<Inner>,
    hits: AtomicU64,
    misses: AtomicU64,
    evicted: AtomicU64,
}

impl std::fmt::Debug for AuthorizeCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuthorizeCache(ttl {:?}, at most {} entries)", self.ttl, self.max_entries)
    }
}

fn slot(system: &str) -> usize {
    // A fixed hasher: the slot of a system is the same for every call.
    let hasher = BuildHasherDefault::<DefaultHasher>::default();
    (hasher.hash_one(system) % SLOTS as u64) as usize
}

impl AuthorizeCache {
    pub(crate) fn new(ttl: Duration) -> Self {
        let inner = Inner {
            entries: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            generations: vec![0; SLOTS].into_boxed_slice(),
        };
        Self {
            ttl,
            max_entries: usize::MAX,
            max_bytes: usize::MAX,
            inner: RwLock::new(inner),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
        }
    }

    /// At most `entries` answers holding at most `bytes` (zero for either turns the reuse off).
    pub(crate) fn bounded(mut self, entries: usize, bytes: usize) -> Self {
        (self.max_entries, self.max_bytes) = (entries, bytes);
        self
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

    /// How many answers are kept, the bytes they hold, and how many were dropped before their
    /// time to free room.
    pub(crate) fn size(&self) -> (usize, usize, u64) {
        let inner = self.read();
        (inner.entries.len(), inner.bytes, self.evicted.load(Ordering::Relaxed))
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
            inner.remove(system);
        }
        None
    }

    /// The system's generation: read it before reading the store, give it to `put`.
    pub(crate) fn generation(&self, system: &str) -> u64 {
        self.read().generations[slot(system)]
    }

    /// Keeps `authorization` until its time to live ends or, sooner, until `due_in` (when its
    /// secrets become due for refresh) has passed; unless the system was forgotten since
    /// `generation` was read. Room is made by dropping the expired answers, then the oldest.
    pub(crate) fn put(
        &self,
        authorization: Arc<Authorization>,
        due_in: Option<Duration>,
        generation: u64,
    ) {
        let lifetime = due_in.map_or(self.ttl, |due| due.min(self.ttl));
        let weight = authorization.weight();
        if lifetime.is_zero() || self.max_entries == 0 || weight > self.max_bytes {
            return;
        }
        let now = Instant::now();
        let mut inner = self.write();
        let system = &authorization.system;
        if inner.generations[slot(system)] != generation {
            return;
        }
        // A newer version already kept (a concurrent refresh) stays.
        if inner
            .entries
            .get(system)
            .is_some_and(|e| e.authorization.version > authorization.version)
        {
            return;
        }
        let system = system.clone();
        inner.remove(&system);
        inner.drop_expired(now);
        while inner.entries.len() >= self.max_entries || inner.bytes + weight > self.max_bytes {
            if !inner.drop_oldest() {
                break;
            }
            self.evicted.fetch_add(1, Ordering::Relaxed);
        }
        let until = now + lifetime;
        inner.bytes += weight;
        inner.order.push_back((system.clone(), until));
        inner.entries.insert(system, Entry { authorization, until, weight });
    }

    /// Drops the system's answer, and any being computed from an earlier read.
    pub(crate) fn forget(&self, system: &str) {
        let mut inner = self.write();
        inner.remove(system);
        inner.generations[slot(system)] += 1;
    }

    /// Drops every expired answer (and the secrets in it).
    pub(crate) fn purge(&self) {
        self.write().drop_expired(Instant::now());
    }
}

impl Inner {
    fn remove(&mut self, system: &str) {
        if let Some(entry) = self.entries.remove(system) {
            self.bytes -= entry.weight;
        }
    }

    /// Drops the front of the order while it has ended.
    fn drop_expired(&mut self, now: Instant) {
        while self.order.front().is_some_and(|(_, until)| *until <= now) {
            self.drop_oldest();
        }
        // Expired entries kept less long than others before them (due sooner) go too, when
        // the order's stale items outnumber the entries.
        if self.order.len() > 2 * self.entries.len() + 64 {
            self.entries.retain(|_, e| e.until > now);
            self.bytes = self.entries.values().map(|e| e.weight).sum();
            let entries = &self.entries;
            self.order
                .retain(|(system, until)| entries.get(system).is_some_and(|e| e.until == *until));
        }
    }

    /// Drops the oldest item of the order (its entry, if it is still that one); false if none.
    fn drop_oldest(&mut self) -> bool {
        let Some((system, until)) = self.order.pop_front() else { return false };
        if self.entries.get(&system).is_some_and(|e| e.until == until) {
            self.remove(&system);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn authorization(system: &str, version: i64) -> Arc<Authorization> {
        Arc::new(Authorization::new(
            Token {
                system: system.into(),
                scheme: "oauth2".into(),
                injected: BTreeMap::new(),
                expires_at: None,
                version,
                refreshed: false,
                parameters: BTreeMap::new(),
                issued_at: 0,
            },
            ApplyResponse::default(),
        ))
    }

    #[test]
    fn an_entry_is_served_until_forgotten() {
        let cache = AuthorizeCache::new(Duration::from_secs(60));
        cache.put(authorization("crm", 1), None, cache.generation("crm"));
        assert_eq!(cache.get("crm").unwrap().version, 1);
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
        assert_eq!(cache.get("crm").unwrap().version, 5);
        cache.put(authorization("crm", 6), None, 0);
        assert_eq!(cache.get("crm").unwrap().version, 6);
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
        assert_eq!(cache.get("crm").unwrap().version, 8);
    }

    #[test]
    fn the_cache_holds_at_most_its_entries_and_bytes_dropping_the_oldest() {
        let cache = AuthorizeCache::new(Duration::from_secs(60)).bounded(3, usize::MAX);
        for (i, system) in ["a", "b", "c", "d"].into_iter().enumerate() {
            cache.put(authorization(system, i as i64), None, cache.generation(system));
        }
        assert!(cache.get("a").is_none(), "the oldest made room");
        assert!(["b", "c", "d"].iter().all(|s| cache.get(s).is_some()));
        assert_eq!(cache.size().0, 3);
        assert_eq!(cache.size().2, 1, "one answer dropped for room");
        // Replacing an entry does not count twice.
        cache.put(authorization("d", 9), None, cache.generation("d"));
        assert_eq!(cache.size().0, 3);
        assert!(cache.get("b").is_some());

        let one = authorization("x", 1).weight();
        let cache = AuthorizeCache::new(Duration::from_secs(60)).bounded(100, 2 * one);
        for system in ["x", "y", "z"] {
            cache.put(authorization(system, 1), None, cache.generation(system));
        }
        let (entries, bytes, _) = cache.size();
        assert_eq!(entries, 2, "two answers' worth of bytes");
        assert!(bytes <= 2 * one);
        assert!(cache.get("x").is_none() && cache.get("z").is_some());
        let off = AuthorizeCache::new(Duration::from_secs(60)).bounded(0, usize::MAX);
        off.put(authorization("crm", 1), None, 0);
        assert!(off.get("crm").is_none(), "no entries: no reuse");
    }

    #[test]
    fn forgetting_many_systems_keeps_a_fixed_bookkeeping() {
        let cache = AuthorizeCache::new(Duration::from_secs(60));
        for i in 0..10_000 {
            cache.forget(&format!("system-{i}"));
        }
        assert_eq!(cache.read().generations.len(), SLOTS);
        let before = cache.generation("system-1");
        cache.forget("system-1");
        assert_ne!(cache.generation("system-1"), before);
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
