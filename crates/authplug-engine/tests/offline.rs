//! Offline tokens: a provider that answers the code exchange with an access token and neither
//! `expires_in` nor a refresh token (tokens that live until revoked). Such a system is never due,
//! never marked for re-authorisation, and never sent to the provider again: a forced refresh or a
//! keep-alive sweep keeps it as it is. The same answer for secrets that do expire means a human
//! must authorise again before they stop working.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use authplug_engine::{Engine, EngineConfig, EngineError};
use authplug_protocol::Secret;
use authplug_store::{Clock, Keyring, Location, ManualClock, MasterKey, Outcome, State, Store};
use authplug_testkit::{FakeServer, Response};

use oauth2_scheme as _;

const SYSTEM: &str = "forever";

struct Lab {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    clock: Arc<ManualClock>,
    engine: Arc<Engine>,
    requests: Arc<AtomicUsize>,
    _server: FakeServer,
}

/// A system onboarded with an offline token (`expires_at` as given), and a token endpoint that
/// counts what reaches it.
fn lab(expires_at: Option<i64>, config: EngineConfig) -> Lab {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::starting_now());
    let keys = Keyring::fixed(vec![MasterKey::generate().unwrap()]);
    let location = Location::Sqlite(dir.path().join("store.sqlite3"));
    let store = Arc::new(Store::open(&location, keys).unwrap().with_clock(clock.clone()));
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = requests.clone();
    let server = FakeServer::start(move |_| {
        counted.fetch_add(1, Ordering::SeqCst);
        Response::json(400, &serde_json::json!({"error": "invalid_grant"}))
    });
    let expires_at = expires_at.map(|after| clock.now_secs() + after);
    let token_url = format!("{}/token", server.url());
    // What the scheme stores when the provider issued no refresh token: an empty one.
    let mut system = support::oauth2_system(SYSTEM, &token_url, &[], "", expires_at);
    system.injected.insert("oauth_access_token".into(), Secret::new("offline-at"));
    store.create(system, "test").unwrap();
    let engine = support::engine(store.clone(), config);
    Lab { _dir: dir, store, clock, engine, requests, _server: server }
}

impl Lab {
    fn outcomes(&self) -> Vec<Outcome> {
        let attempts = self.store.attempts(SYSTEM, 10).unwrap();
        attempts.into_iter().rev().filter_map(|a| a.outcome).collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_token_is_never_due_and_a_forced_refresh_or_keep_alive_keeps_it() {
    let keepalive =
        EngineConfig { keepalive: Some(Duration::from_secs(3600)), ..Default::default() };
    let lab = lab(None, keepalive);
    // Years later, still not due.
    lab.clock.set(lab.clock.now_ms() + 5 * 365 * 86_400_000);
    let token = lab.engine.token(SYSTEM).await.unwrap();
    assert!(!token.refreshed);
    assert_eq!(token.injected["oauth_access_token"].expose(), "offline-at");

    // An operator's forced refresh: nothing to renew with, nothing sent, nothing marked.
    let token = lab.engine.refresh(SYSTEM).await.unwrap();
    assert_eq!(token.injected["oauth_access_token"].expose(), "offline-at");
    assert!(!token.refreshed);
    let record = lab.store.get(SYSTEM).unwrap().unwrap();
    assert_eq!(record.summary.state, State::Active);
    assert_eq!(record.summary.failures, 0);
    assert_eq!(lab.outcomes(), [Outcome::Unchanged]);

    // A keep-alive sweep an interval later: the same, and the next sweep leaves it alone.
    lab.clock.set(lab.clock.now_ms() + 3_601_000);
    let swept = lab.engine.sweep(4).await.unwrap();
    assert_eq!(swept.len(), 1, "idle past the keep-alive");
    let swept = lab.engine.sweep(4).await.unwrap();
    assert!(swept.is_empty(), "looked at just now: {swept:?}");
    assert_eq!(lab.outcomes(), [Outcome::Unchanged, Outcome::Unchanged]);
    assert_eq!(lab.store.get(SYSTEM).unwrap().unwrap().summary.state, State::Active);
    assert_eq!(lab.requests.load(Ordering::SeqCst), 0, "the provider never asked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_that_expire_without_a_refresh_token_need_reauthorisation_when_due() {
    let lab = lab(Some(3600), EngineConfig::default());
    lab.clock.set(lab.clock.now_ms() + 3_550_000);
    let error = lab.engine.token(SYSTEM).await.unwrap_err();
    let EngineError::NeedsReauth { reason, .. } = &error else { panic!("{error:?}") };
    assert!(reason.contains("no refresh token") && reason.contains("authorise again"), "{reason}");
    assert_eq!(lab.store.get(SYSTEM).unwrap().unwrap().summary.state, State::NeedsReauth);
    assert_eq!(lab.outcomes(), [Outcome::Reauthorize]);
    assert_eq!(lab.requests.load(Ordering::SeqCst), 0);
}
