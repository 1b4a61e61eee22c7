//! The engine on its own: the real OAuth2 scheme linked statically, a fake token endpoint from
//! the testkit on loopback, a temporary SQLite store, and a manual clock. No Node, no
//! PostgreSQL, no `../shared`: `cargo test -p authplug-engine`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use authplug_engine::{Backoff, Engine, EngineConfig, EngineError, EventKind, Events};
use authplug_host::{HostServices, LoadOptions, Registry, Transport, TransportConfig};
use authplug_protocol::Secret;
use authplug_store::{
    Change, Clock, Keyring, Lifecycle, Location, ManualClock, MasterKey, NewSystem, Outcome, State,
    Store,
};
use authplug_testkit::{FakeServer, Response};

// The scheme under test, linked into this binary.
use oauth2_scheme as _;

const SYSTEM: &str = "crm";

/// What the fake provider does with the next refresh grant, before it answers.
type Hook = Box<dyn FnOnce() + Send>;

/// A token endpoint that rotates refresh tokens (each valid one works once), with answers that
/// a test queues ahead of the normal ones.
struct Provider {
    server: FakeServer,
    queued: Arc<Mutex<VecDeque<Response>>>,
    hooks: Arc<Mutex<VecDeque<Hook>>>,
    grants: Arc<AtomicUsize>,
}

impl Provider {
    fn start() -> Self {
        let queued: Arc<Mutex<VecDeque<Response>>> = Arc::default();
        let hooks: Arc<Mutex<VecDeque<Hook>>> = Arc::default();
        let grants = Arc::new(AtomicUsize::new(0));
        let valid = Mutex::new(std::collections::HashSet::from(["rt-0".to_owned()]));
        let (q, h, g) = (queued.clone(), hooks.clone(), grants.clone());
        let server = FakeServer::start(move |request| {
            let n = g.fetch_add(1, Ordering::SeqCst) + 1;
            if let Some(hook) = h.lock().unwrap().pop_front() {
                hook();
            }
            if let Some(answer) = q.lock().unwrap().pop_front() {
                return answer;
            }
            let used = request.form("refresh_token").unwrap_or_default();
            if !valid.lock().unwrap().remove(&used) {
                return Response::json(400, &serde_json::json!({"error": "invalid_grant"}));
            }
            let next = format!("rt-{n}");
            valid.lock().unwrap().insert(next.clone());
            Response::json(
                200,
                &serde_json::json!({
                    "access_token": format!("at-{n}"), "token_type": "Bearer",
                    "expires_in": 3600, "refresh_token": next,
                }),
            )
        });
        Self { server, queued, hooks, grants }
    }

    fn queue(&self, answer: Response) {
        self.queued.lock().unwrap().push_back(answer);
    }

    fn before_next(&self, hook: impl FnOnce() + Send + 'static) {
        self.hooks.lock().unwrap().push_back(Box::new(hook));
    }

    fn grants(&self) -> usize {
        self.grants.load(Ordering::SeqCst)
    }
}

fn status(code: u16, retry_after: Option<&str>) -> Response {
    let mut answer = Response::text(code, "busy");
    if let Some(seconds) = retry_after {
        answer.headers.push(("Retry-After".into(), seconds.into()));
    }
    answer
}

struct Lab {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    clock: Arc<ManualClock>,
    provider: Provider,
    engine: Arc<Engine>,
}

fn quick() -> EngineConfig {
    EngineConfig {
        backoff: Backoff {
            base: Duration::from_millis(10),
            cap: Duration::from_millis(40),
            attempts_per_call: 3,
            max_wait_in_call: Duration::from_secs(1),
        },
        wait_for_other: Duration::from_secs(10),
        poll: Duration::from_millis(5),
        ..EngineConfig::default()
    }
}

impl Lab {
    /// An engine over a store holding system `crm`, an hour from expiry, onboarded at the fake
    /// provider with refresh token `rt-0`. Call inside a multi-threaded runtime.
    fn new(config: EngineConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::starting_now());
        let keys = Keyring::fixed(vec![MasterKey::generate().unwrap()]);
        let location = Location::Sqlite(dir.path().join("store.sqlite3"));
        let store = Arc::new(Store::open(&location, keys).unwrap().with_clock(clock.clone()));
        let provider = Provider::start();
        let secret = |v: &str| Secret::new(v);
        store
            .create(
                NewSystem {
                    id: SYSTEM.into(),
                    scheme: "oauth2".into(),
                    parameters: BTreeMap::from([
                        ("token_url".into(), format!("{}/token", provider.server.url()).into()),
                        ("login_url".into(), "https://login.example/authorize".into()),
                    ]),
                    required: BTreeMap::from([
                        ("client_id".into(), secret("app")),
                        ("client_secret".into(), secret("app-secret")),
                    ]),
                    injected: BTreeMap::from([
                        ("oauth_access_token".into(), secret("at-0")),
                        ("oauth_refresh_token".into(), secret("rt-0")),
                        ("oauth_client_id".into(), secret("app")),
                        ("oauth_client_secret".into(), secret("app-secret")),
                    ]),
                    expires_at: Some(clock.now_secs() + 3600),
                },
                "test",
            )
            .unwrap();
        let registry = Registry::load(&LoadOptions {
            dirs: vec![],
            include_static: true,
            ..Default::default()
        });
        assert!(registry.get("oauth2").is_some(), "the linked OAuth2 scheme is registered");
        let transport = TransportConfig { allow_loopback_http: true, ..TransportConfig::default() };
        let transport =
            Transport::new(transport, tokio::runtime::Handle::current()).map(Arc::new).unwrap();
        let engine = Arc::new(Engine::new(
            store.clone(),
            Arc::new(registry),
            HostServices::new(transport),
            config,
            Events::default(),
        ));
        Self { _dir: dir, store, clock, provider, engine }
    }

    /// Moves the clock to the moment the stored secrets fall due (the scheme's margin, 60 s,
    /// before expiry).
    fn make_due(&self) {
        let expires_at = self.store.get(SYSTEM).unwrap().unwrap().summary.expires_at.unwrap();
        self.clock.set((expires_at - 60) * 1000);
    }

    fn access_token(&self) -> String {
        self.store.get(SYSTEM).unwrap().unwrap().injected["oauth_access_token"].expose().to_owned()
    }

    fn outcomes(&self) -> Vec<Outcome> {
        let attempts = self.store.attempts(SYSTEM, 10).unwrap();
        attempts.into_iter().rev().filter_map(|a| a.outcome).collect()
    }
}

fn clock_now(lab: &Lab) -> i64 {
    lab.clock.now_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_that_are_not_due_are_handed_out_without_asking_the_provider() {
    let lab = Lab::new(quick());
    let token = lab.engine.token(SYSTEM).await.unwrap();
    assert!(!token.refreshed);
    assert_eq!(token.injected["oauth_access_token"].expose(), "at-0");
    // One second before the margin: still not due.
    lab.make_due();
    lab.clock.set(lab.clock.now_ms() - 1000);
    assert!(!lab.engine.token(SYSTEM).await.unwrap().refreshed);
    assert_eq!(lab.provider.grants(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_callers_of_a_due_system_cause_one_refresh_grant() {
    let lab = Lab::new(quick());
    lab.make_due();
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let engine = lab.engine.clone();
            tokio::spawn(async move { engine.token(SYSTEM).await })
        })
        .collect();
    for call in calls {
        let token = call.await.unwrap().unwrap();
        assert_eq!(token.injected["oauth_access_token"].expose(), "at-1");
    }
    assert_eq!(lab.provider.grants(), 1, "single flight");
    assert_eq!(lab.access_token(), "at-1", "stored before anyone saw it");
    assert_eq!(lab.outcomes(), [Outcome::Renewed]);
    let record = lab.store.get(SYSTEM).unwrap().unwrap();
    assert_eq!(record.summary.last_refresh_at, Some(clock_now(&lab)), "the engine's clock");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_refresh_renews_even_when_not_due_and_rotates_the_refresh_token() {
    let lab = Lab::new(quick());
    let first = lab.engine.refresh(SYSTEM).await.unwrap();
    let second = lab.engine.refresh(SYSTEM).await.unwrap();
    assert!(first.refreshed && second.refreshed);
    assert_eq!(second.injected["oauth_refresh_token"].expose(), "rt-2", "the rotated one was used");
    assert_eq!(lab.provider.grants(), 2);
    assert!(second.version > first.version);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_needs_reauthorisation_once_and_is_not_retried() {
    let lab = Lab::new(quick());
    let mut events = lab.engine.events().subscribe();
    lab.provider.queue(Response::json(
        400,
        &serde_json::json!({"error": "invalid_grant", "error_description": "revoked"}),
    ));
    lab.make_due();
    let error = lab.engine.token(SYSTEM).await.unwrap_err();
    assert!(
        matches!(&error, EngineError::NeedsReauth { reason, .. } if reason == "invalid_grant: revoked"),
        "{error}"
    );
    let again = lab.engine.token(SYSTEM).await.unwrap_err();
    assert!(matches!(again, EngineError::NeedsReauth { .. }));
    assert_eq!(lab.provider.grants(), 1, "asked once");
    let summary = lab.store.get(SYSTEM).unwrap().unwrap().summary;
    assert_eq!((summary.state, summary.failures), (State::NeedsReauth, 1));
    assert_eq!(lab.outcomes(), [Outcome::Reauthorize]);
    assert_eq!(events.recv().await.unwrap().kind, EventKind::NeedsReauth);
    assert!(events.try_recv().is_err(), "said once");
    let audited = lab.store.audit(SYSTEM).unwrap();
    assert_eq!(audited.iter().filter(|e| e.action == "needs_reauth").count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_after_another_instance_stored_a_newer_token_is_not_believed() {
    let lab = Lab::new(quick());
    let store = lab.store.clone();
    // As the grant arrives, another instance stores what it refreshed: our token is now old.
    lab.provider.before_next(move || {
        let record = store.get(SYSTEM).unwrap().unwrap();
        let mut injected = record.injected.clone();
        injected.insert("oauth_access_token".into(), Secret::new("at-elsewhere"));
        let change = Change {
            injected: Some(authplug_store::Injected::new(injected, record.summary.expires_at)),
            last_refresh_at: Some(record.summary.created_at + 1),
            ..Change::default()
        };
        store.update(SYSTEM, record.summary.version, change, "other-instance").unwrap();
    });
    lab.provider.queue(Response::json(400, &serde_json::json!({"error": "invalid_grant"})));
    let token = lab.engine.refresh(SYSTEM).await.unwrap();
    assert_eq!(token.injected["oauth_access_token"].expose(), "at-elsewhere");
    assert!(token.refreshed);
    assert_eq!(lab.store.get(SYSTEM).unwrap().unwrap().summary.state, State::Active);
    assert_eq!(lab.outcomes(), [Outcome::Superseded]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_with_backoff_within_the_call() {
    let lab = Lab::new(quick());
    let mut events = lab.engine.events().subscribe();
    lab.provider.queue(status(503, None));
    lab.provider.queue(status(502, None));
    lab.make_due();
    let token = lab.engine.token(SYSTEM).await.unwrap();
    assert!(token.refreshed);
    assert_eq!(lab.provider.grants(), 3);
    assert_eq!(lab.outcomes(), [Outcome::Transient, Outcome::Transient, Outcome::Renewed]);
    let kinds: Vec<EventKind> =
        std::iter::from_fn(|| events.try_recv().ok()).map(|e| e.kind).collect();
    assert_eq!(kinds, [EventKind::RefreshFailed, EventKind::RefreshFailed, EventKind::Refreshed]);
    let failures = lab.store.get(SYSTEM).unwrap().unwrap().summary.failures;
    assert_eq!(failures, 0, "the renewal forgets the failures");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_retry_after_ends_the_call_hands_out_still_valid_secrets_and_is_respected() {
    let lab = Lab::new(quick());
    lab.provider.queue(status(429, Some("30")));
    lab.make_due();
    // Due, not expired: the stored secrets are still handed out.
    let token = lab.engine.token(SYSTEM).await.unwrap();
    assert!(!token.refreshed);
    assert_eq!(token.injected["oauth_access_token"].expose(), "at-0");
    let attempt = &lab.store.attempts(SYSTEM, 1).unwrap()[0];
    assert_eq!(attempt.retry_at_ms, Some(lab.clock.now_ms() + 30_000), "the provider's wish");
    // Until then nobody asks again, not even a sweep (the secrets are still valid meanwhile).
    lab.clock.advance(Duration::from_secs(29));
    assert!(lab.engine.sweep(4).await.unwrap().is_empty());
    lab.engine.token(SYSTEM).await.unwrap();
    assert_eq!(lab.provider.grants(), 1);
    // An operator's forced refresh does not wait for it.
    assert!(lab.engine.refresh(SYSTEM).await.unwrap().refreshed);
    assert_eq!(lab.provider.grants(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_secrets_are_not_handed_out_while_the_provider_fails() {
    let lab = Lab::new(quick());
    for _ in 0..3 {
        lab.provider.queue(status(503, None));
    }
    let expires_at = lab.store.get(SYSTEM).unwrap().unwrap().summary.expires_at.unwrap();
    lab.clock.set((expires_at + 1) * 1000);
    let error = lab.engine.token(SYSTEM).await.unwrap_err();
    assert!(matches!(error, EngineError::Unavailable { still_valid: None, .. }), "{error}");
    assert_eq!(lab.provider.grants(), 3, "attempts_per_call");
    assert_eq!(lab.store.get(SYSTEM).unwrap().unwrap().summary.failures, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorize_answers_are_reused_until_this_process_changes_the_system() {
    let lab = Lab::new(EngineConfig { authorize_cache: Duration::from_secs(60), ..quick() });
    let first = lab.engine.authorize(SYSTEM).await.unwrap();
    let again = lab.engine.authorize(SYSTEM).await.unwrap();
    assert!(Arc::ptr_eq(&first, &again), "answered from memory");
    assert_eq!(lab.engine.authorize_cache_counts(), (1, 1));
    let header = |a: &authplug_engine::Authorization| a.applied.headers[0].1.expose().to_owned();
    assert_eq!(header(&first), "Bearer at-0");
    lab.engine.refresh(SYSTEM).await.unwrap();
    let renewed = lab.engine.authorize(SYSTEM).await.unwrap();
    assert_eq!(header(&renewed), "Bearer at-1", "a refresh forgets the old answer");
    lab.engine.forget(SYSTEM);
    let store = lab.store.clone();
    store.delete(SYSTEM, "test").unwrap();
    let gone = lab.engine.authorize(SYSTEM).await.unwrap_err();
    assert!(matches!(gone, EngineError::NotFound(_)), "{gone}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onboarding_a_system_that_needed_reauthorisation_says_it_recovered_once() {
    let lab = Lab::new(quick());
    let mut events = lab.engine.events().subscribe();
    let record = lab.store.get(SYSTEM).unwrap().unwrap();
    let healthy = NewSystem {
        id: SYSTEM.into(),
        scheme: "oauth2".into(),
        parameters: record.summary.parameters.clone(),
        required: record.required.clone(),
        injected: record.injected.clone(),
        expires_at: record.summary.expires_at,
    };
    // Onboarding a healthy system again is no recovery.
    lab.engine.onboarded(healthy.clone(), true, "test").unwrap();
    let version = lab.store.version(SYSTEM).unwrap().unwrap();
    let lost =
        Change { state: Some(Lifecycle::NeedsReauth("invalid_grant".into())), ..Change::default() };
    lab.store.update(SYSTEM, version, lost, "test").unwrap();
    let onboarded = lab.engine.onboarded(healthy.clone(), true, "test").unwrap();
    assert_eq!(onboarded.previous.unwrap().state, State::NeedsReauth);
    assert_eq!(onboarded.record.summary.state, State::Active);
    let event = events.recv().await.unwrap();
    assert_eq!((event.kind, event.system.as_str()), (EventKind::Recovered, SYSTEM));
    assert!(events.try_recv().is_err(), "exactly one event");
    let audited = lab.store.audit(SYSTEM).unwrap();
    assert_eq!(audited.iter().filter(|e| e.action == "recovered").count(), 1);
    // Without replace, an existing id is refused and nothing is said.
    let taken = lab.engine.onboarded(healthy, false, "test").unwrap_err();
    assert!(matches!(taken, EngineError::Store(authplug_store::StoreError::Exists(_))), "{taken}");
    assert!(events.try_recv().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_refreshes_what_is_due_and_idle_systems_only_with_keepalive() {
    let lab = Lab::new(EngineConfig { keepalive: Some(Duration::from_secs(86_400)), ..quick() });
    assert!(lab.engine.sweep(4).await.unwrap().is_empty(), "nothing is due");
    lab.make_due();
    let swept = lab.engine.sweep(4).await.unwrap();
    assert_eq!(swept.len(), 1);
    assert!(swept[0].1.as_ref().unwrap().refreshed);
    // Renewed for an hour; a day idle later, keep-alive refreshes it although it is not due...
    lab.store
        .update(
            SYSTEM,
            lab.store.version(SYSTEM).unwrap().unwrap(),
            Change {
                injected: Some(authplug_store::Injected::new(
                    lab.store.get(SYSTEM).unwrap().unwrap().injected,
                    None,
                )),
                ..Change::default()
            },
            "test",
        )
        .unwrap();
    lab.clock.advance(Duration::from_secs(86_400));
    assert_eq!(lab.engine.sweep(4).await.unwrap().len(), 1);
    assert_eq!(lab.provider.grants(), 2);
    // ...and a system that needs re-authorisation is never swept.
    let version = lab.store.version(SYSTEM).unwrap().unwrap();
    let lost = Change { state: Some(Lifecycle::NeedsReauth("x".into())), ..Change::default() };
    lab.store.update(SYSTEM, version, lost, "test").unwrap();
    lab.clock.advance(Duration::from_secs(86_400 * 2));
    assert!(lab.engine.sweep(4).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_keepalive_renews_each_system_once_per_sweep_across_batches() {
    // More idle systems than one batch of the walk (500): a system renewed early gets a new
    // issue time ahead of the walk, and must not be met and renewed again in the same sweep.
    let lab = Lab::new(EngineConfig { keepalive: Some(Duration::ZERO), ..quick() });
    let template = lab.store.get(SYSTEM).unwrap().unwrap();
    let copies: Vec<NewSystem> = (0..600)
        .map(|i| NewSystem {
            id: format!("copy-{i:03}"),
            scheme: "oauth2".into(),
            parameters: template.summary.parameters.clone(),
            required: template.required.clone(),
            injected: template.injected.clone(),
            expires_at: template.summary.expires_at,
        })
        .collect();
    lab.store.create_batch(copies, "test").unwrap();
    let answer = Response::json(
        200,
        &serde_json::json!({"access_token": "at-any", "token_type": "Bearer", "expires_in": 3600}),
    );
    for _ in 0..601 {
        lab.provider.queue(answer.clone());
    }
    lab.clock.advance(Duration::from_secs(10));
    let swept = lab.engine.sweep(4).await.unwrap();
    assert_eq!(swept.len(), 601, "each system once");
    assert!(swept.iter().all(|(_, result)| result.as_ref().is_ok_and(|t| t.refreshed)));
    assert_eq!(lab.provider.grants(), 601, "one grant per system");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_held_by_another_instance_is_waited_for_and_its_result_shared() {
    let lab = Lab::new(quick());
    lab.make_due();
    // Another instance takes the lease and refreshes; this engine waits and reads its result.
    let ttl = Duration::from_secs(60);
    let other = "elsewhere/1/scope/other#1";
    assert!(lab.store.try_lease(SYSTEM, other, ttl).unwrap());
    let engine = lab.engine.clone();
    let waiting = tokio::spawn(async move { engine.token(SYSTEM).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiting.is_finished(), "it waits for the holder");
    let record = lab.store.get(SYSTEM).unwrap().unwrap();
    let mut injected = record.injected.clone();
    injected.insert("oauth_access_token".into(), Secret::new("at-other"));
    let change = Change {
        injected: Some(authplug_store::Injected::new(injected, Some(clock_now(&lab) + 3600))),
        last_refresh_at: Some(clock_now(&lab)),
        ..Change::default()
    };
    lab.store.update(SYSTEM, record.summary.version, change, "other").unwrap();
    lab.store.release_lease(SYSTEM, other).unwrap();
    let token = waiting.await.unwrap().unwrap();
    assert_eq!(token.injected["oauth_access_token"].expose(), "at-other");
    assert!(token.refreshed, "renewed by the other, shared here");
    assert_eq!(lab.provider.grants(), 0, "never asked the provider itself");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_left_behind_by_an_ended_refresh_of_this_process_is_taken_over_at_once() {
    // A refresh of this process took the lease and ended without giving it back (the database
    // went away before the release; seen under a PostgreSQL restart, where every later call of
    // the system then waited for the lease to lapse).
    let lab = Lab::new(EngineConfig { wait_for_other: Duration::from_secs(30), ..quick() });
    lab.make_due();
    let ended = authplug_engine::Holder::new().next();
    assert!(lab.store.try_lease(SYSTEM, &ended, Duration::from_secs(120)).unwrap());
    drop(ended);
    let started = std::time::Instant::now();
    let token = lab.engine.token(SYSTEM).await.unwrap();
    assert!(token.refreshed);
    assert_eq!(lab.provider.grants(), 1, "refreshed here, once");
    assert!(started.elapsed() < Duration::from_secs(10), "not waited for: {:?}", started.elapsed());
}
