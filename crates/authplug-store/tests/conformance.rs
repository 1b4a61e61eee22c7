//! One conformance suite, run against both real backends: a SQLite file and a PostgreSQL server.

#[macro_use]
mod support;

use std::sync::Arc;
use std::time::Duration;

use authplug_store::{Change, Injected, Keyring, Lifecycle, ManualClock, State, StoreError};
use support::{exposed, secrets, system, windows_contain, Backend, Kind};

conformance!(
    created_systems_read_back_with_their_secrets,
    an_id_is_created_once,
    updates_are_compare_and_set,
    deleting_keeps_the_audit_trail,
    the_audit_trail_names_changes_never_values,
    leases_exclude_others_until_released_or_expired,
    an_older_binary_refuses_a_newer_schema,
    a_store_of_schema_1_is_migrated_keeping_everything,
    concurrent_callers_in_one_process_each_get_their_own_outcome,
    pending_onboardings_are_sealed_and_taken_once_by_any_instance,
    an_onboarding_creates_or_with_replace_renews_a_system,
    a_read_at_once_gives_the_injected_secrets_or_nothing_where_it_would_wait,
    a_read_is_not_held_up_by_a_write_waiting_for_a_lock,
);

/// `injected` (authorize's read): the system with its injected secrets, none of the required
/// ones. `injected_now` (the same on an async thread): on SQLite, once a read connection is
/// idle, in one statement; on PostgreSQL (a network round trip) never.
fn a_read_at_once_gives_the_injected_secrets_or_nothing_where_it_would_wait(kind: Kind) {
    let store = Backend::new(kind).open();
    let injected = [("oauth_access_token", "at-1"), ("oauth_refresh_token", "rt-1")];
    store.create(system("shop", &injected), "test").unwrap();
    let full = store.get("shop").unwrap().expect("stored");
    assert!(!full.required.is_empty(), "the fixture has required secrets");
    let waited = store.injected("shop").unwrap().expect("stored");
    let now = store.injected_now("shop");
    let records = match kind {
        Kind::Postgres => {
            assert!(now.is_none(), "PostgreSQL never reads on the caller's thread");
            vec![waited]
        }
        Kind::Sqlite => {
            assert!(store.injected_now("nope").expect("idle").unwrap().is_none());
            vec![waited, now.expect("a read connection is idle after get").unwrap().unwrap()]
        }
    };
    for record in records {
        assert_eq!(exposed(&record.injected), exposed(&full.injected));
        assert!(record.required.is_empty(), "the required secrets are not read");
        assert_eq!(record.summary.version, full.summary.version);
        assert_eq!(record.summary.parameters, full.summary.parameters);
        assert_eq!(
            record.summary.secret_names,
            ["injected.oauth_access_token", "injected.oauth_refresh_token"]
        );
    }
    assert!(store.injected("nope").unwrap().is_none());
}

/// A read is not held up by a write waiting for a lock another client holds: the write keeps
/// one connection busy (on PostgreSQL, one session of the pool) and the read takes another.
fn a_read_is_not_held_up_by_a_write_waiting_for_a_lock(kind: Kind) {
    let backend = Backend::new(kind);
    let store = Arc::new(backend.open());
    store.create(system("shop", &[("api_key", "key-1")]), "test").unwrap();
    let lock = backend.hold_write_lock("shop");
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            let change = Change { failures: Some(1), ..Change::default() };
            store.update("shop", 1, change, "test").map(|record| record.summary.version)
        })
    };
    backend.wait_for_a_lock_waiter();
    let (sent, received) = std::sync::mpsc::channel();
    let reader = store.clone();
    std::thread::spawn(move || {
        let _ = sent.send(reader.injected("shop").map(|r| r.map(|r| r.summary.version)));
    });
    let read = received.recv_timeout(Duration::from_secs(20)).expect("the read waits for nothing");
    assert_eq!(read.unwrap(), Some(1), "the committed version, not the waiting write's");
    assert!(!writer.is_finished(), "the write still waits for the lock");
    drop(lock);
    assert_eq!(writer.join().unwrap().unwrap(), 2);
}

/// A new onboarding creates the system; of a taken id, only with `replace`, which gives it the
/// new scheme and secrets, active again and without failures.
fn an_onboarding_creates_or_with_replace_renews_a_system(kind: Kind) {
    let store = Backend::new(kind).open();
    let mut first = system("s", &[("api_key", "first-1a")]);
    first.scheme = "api_key".into();
    let onboarded = store.onboarded(first, false, "t", &|_| None).unwrap();
    assert!(onboarded.previous.is_none() && onboarded.record.summary.version == 1);
    let change = Change {
        state: Some(Lifecycle::NeedsReauth("invalid_grant".into())),
        failures: Some(3),
        ..Change::default()
    };
    store.update("s", 1, change, "t").unwrap();
    let again = store.onboarded(system("s", &[("api_key", "second-2b")]), false, "t", &|_| None);
    assert!(matches!(again, Err(StoreError::Exists(_))), "{again:?}");
    let mut renewed = system("s", &[("oauth_access_token", "third-3c")]);
    renewed.scheme = "oauth2".into();
    let line = |previous: &authplug_store::SystemSummary| {
        Some(("recovered".to_owned(), serde_json::json!({"was": previous.state})))
    };
    let authplug_store::Onboarded { record, previous } =
        store.onboarded(renewed, true, "t", &line).unwrap();
    let previous = previous.expect("it replaced one");
    assert_eq!((previous.state, previous.failures), (State::NeedsReauth, 3), "as it was");
    assert_eq!(record.summary.scheme, "oauth2");
    assert_eq!(record.summary.state, State::Active);
    assert_eq!(record.summary.failures, 0);
    assert_eq!(exposed(&record.injected).keys().collect::<Vec<_>>(), ["oauth_access_token"]);
    let trail = store.audit("s").unwrap();
    let last: Vec<(&str, &serde_json::Value)> =
        trail.iter().rev().take(2).map(|e| (e.action.as_str(), &e.detail)).collect();
    assert_eq!(last[0], ("recovered", &serde_json::json!({"was": "needs_reauth"})), "{trail:?}");
    assert_eq!(last[1].0, "updated", "with the change, in its transaction");
}

/// What an onboarding's callback needs waits sealed, under the state's hash, and is taken once,
/// by whichever instance the browser comes back to first; an expired one is gone.
fn pending_onboardings_are_sealed_and_taken_once_by_any_instance(kind: Kind) {
    let backend = Backend::new(kind);
    let (one, two) = (backend.open(), backend.open());
    let (state, value) = ("state-0123456789abcdef", b"continuation-secret-4b1d");
    one.put_pending_onboarding(state, value, Duration::from_secs(60)).unwrap();
    let again = one.put_pending_onboarding(state, b"other", Duration::from_secs(60));
    assert!(matches!(again, Err(StoreError::Exists(_))), "{again:?}");
    let raw = backend.raw_bytes();
    assert!(!windows_contain(&raw, value), "sealed");
    assert!(!windows_contain(&raw, state.as_bytes()), "only the state's hash is kept");

    let taken = two.take_pending_onboarding(state).unwrap().expect("another instance takes it");
    assert_eq!(&taken[..], value);
    assert!(one.take_pending_onboarding(state).unwrap().is_none(), "once");
    assert!(two.take_pending_onboarding("unknown-state-0123456").unwrap().is_none());

    one.put_pending_onboarding("short-lived-state-0123", b"v", Duration::from_millis(1)).unwrap();
    // Time passing, not synchronisation: the entry lives 1 ms.
    std::thread::sleep(Duration::from_millis(5));
    assert!(two.take_pending_onboarding("short-lived-state-0123").unwrap().is_none(), "expired");
}

/// Eight threads at once (SQLite groups their commits): every creation of a fresh id and every
/// compare-and-set that won is kept, and every duplicate id or lost race fails alone, without
/// taking the writes it shared a commit with down with it.
fn concurrent_callers_in_one_process_each_get_their_own_outcome(kind: Kind) {
    const THREADS: usize = 8;
    const EACH: usize = 25;
    let backend = Backend::new(kind);
    let store = backend.open();
    store.create(system("shared", &[("counter", "0")]), "test").unwrap();
    let outcomes: Vec<(usize, usize, usize)> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                let store = &store;
                scope.spawn(move || {
                    let (mut created, mut duplicates, mut increments) = (0, 0, 0);
                    for i in 0..EACH {
                        // Thread t creates its own ids and retries thread t-1's: one wins.
                        for owner in [t, (t + THREADS - 1) % THREADS] {
                            match store.create(system(&format!("s-{owner}-{i}"), &[]), "test") {
                                Ok(_) => created += 1,
                                Err(StoreError::Exists(_)) => duplicates += 1,
                                Err(other) => panic!("{other}"),
                            }
                        }
                        loop {
                            let record = store.get("shared").unwrap().unwrap();
                            let next =
                                exposed(&record.injected)["counter"].parse::<usize>().unwrap() + 1;
                            let change = Change {
                                injected: Some(Injected::new(
                                    secrets(&[("counter", &next.to_string())]),
                                    None,
                                )),
                                ..Change::default()
                            };
                            match store.update("shared", record.summary.version, change, "test") {
                                Ok(_) => break increments += 1,
                                Err(StoreError::VersionConflict { .. }) => continue,
                                Err(other) => panic!("{other}"),
                            }
                        }
                    }
                    (created, duplicates, increments)
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let created: usize = outcomes.iter().map(|o| o.0).sum();
    let duplicates: usize = outcomes.iter().map(|o| o.1).sum();
    let increments: usize = outcomes.iter().map(|o| o.2).sum();
    assert_eq!((created, duplicates), (THREADS * EACH, THREADS * EACH));
    assert_eq!(increments, THREADS * EACH);
    drop(store);
    let store = backend.open();
    assert_eq!(store.list().unwrap().len(), 1 + THREADS * EACH, "every creation is durable");
    let shared = store.get("shared").unwrap().unwrap();
    assert_eq!(exposed(&shared.injected)["counter"], (THREADS * EACH).to_string());
    assert_eq!(shared.summary.version, 1 + (THREADS * EACH) as i64, "no update lost or doubled");
}

fn created_systems_read_back_with_their_secrets(kind: Kind) {
    let backend = Backend::new(kind);
    let store = backend.open();
    let created =
        store.create(system("hubspot-1", &[("oauth_access_token", "at-1")]), "test").unwrap();
    assert_eq!(created.summary.version, 1);
    assert_eq!(created.summary.state, State::Active);
    drop(store);

    let reopened = backend.open();
    let record = reopened.get("hubspot-1").unwrap().expect("stored");
    assert_eq!(exposed(&record.injected)["oauth_access_token"], "at-1");
    assert_eq!(exposed(&record.required)["client_secret"], "client-secret-c0ffee");
    assert_eq!(record.summary.scheme, "oauth2");
    assert_eq!(record.summary.expires_at, Some(1_900_000_000));
    assert_eq!(record.summary.parameters["token_url"], "https://idp.example/token");
    assert_eq!(record.summary.key_ids, vec![backend.key.id().to_owned()]);
    assert!(reopened.get("nope").unwrap().is_none());
    let listed = reopened.list().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0].secret_names,
        ["injected.oauth_access_token", "required.client_id", "required.client_secret"]
    );
}

fn an_id_is_created_once(kind: Kind) {
    let store = Backend::new(kind).open();
    store.create(system("s", &[]), "test").unwrap();
    let error = store.create(system("s", &[("x", "y")]), "test").unwrap_err();
    assert!(matches!(&error, StoreError::Exists(id) if id == "s"), "{error}");
    assert!(store.get("s").unwrap().unwrap().injected.is_empty(), "the first one is intact");
}

fn updates_are_compare_and_set(kind: Kind) {
    let store = Backend::new(kind).open();
    store
        .create(
            system("s", &[("oauth_access_token", "at-1"), ("oauth_refresh_token", "rt-1")]),
            "t",
        )
        .unwrap();
    let change = Change {
        injected: Some(Injected::new(
            secrets(&[("oauth_access_token", "at-2"), ("oauth_refresh_token", "rt-2")]),
            Some(1_950_000_000),
        )),
        ..Change::default()
    };
    let updated = store.update("s", 1, change.clone(), "engine").unwrap();
    assert_eq!(updated.summary.version, 2);
    assert_eq!(exposed(&updated.injected)["oauth_refresh_token"], "rt-2");
    assert_eq!(exposed(&updated.required)["client_id"], "app", "untouched sets stay");

    let stale = store.update("s", 1, change, "engine").unwrap_err();
    assert!(
        matches!(&stale, StoreError::VersionConflict { id, expected: 1, actual: 2 } if id == "s"),
        "{stale}"
    );
    let missing = store.update("nope", 1, Change::default(), "engine").unwrap_err();
    assert!(matches!(&missing, StoreError::NotFound(id) if id == "nope"), "{missing}");

    let state = Change {
        state: Some(Lifecycle::NeedsReauth("invalid_grant: revoked".into())),
        failures: Some(1),
        ..Change::default()
    };
    let updated = store.update("s", 2, state, "engine").unwrap();
    assert_eq!(updated.summary.state, State::NeedsReauth);
    assert_eq!(updated.summary.state_reason.as_deref(), Some("invalid_grant: revoked"));
    assert_eq!(exposed(&updated.injected)["oauth_access_token"], "at-2");
}

fn deleting_keeps_the_audit_trail(kind: Kind) {
    let store = Backend::new(kind).open();
    store.create(system("s", &[("a", "b")]), "alice").unwrap();
    assert!(store.delete("s", "bob").unwrap());
    assert!(!store.delete("s", "bob").unwrap());
    assert!(store.get("s").unwrap().is_none());
    let actions: Vec<String> = store.audit("s").unwrap().into_iter().map(|e| e.action).collect();
    assert_eq!(actions, ["created", "deleted"]);
    store.create(system("s", &[]), "alice").expect("the id can be reused");
}

fn the_audit_trail_names_changes_never_values(kind: Kind) {
    let store = Backend::new(kind).open();
    store.create(system("s", &[("oauth_access_token", "value-in-create")]), "cli:alice").unwrap();
    let change = Change {
        injected: Some(Injected::new(secrets(&[("oauth_access_token", "value-in-update")]), None)),
        ..Change::default()
    };
    store.update("s", 1, change, "engine:host-a").unwrap();
    store
        .record_event(
            "s",
            "cli:bob",
            "revealed",
            serde_json::json!({"names": ["injected.oauth_access_token"]}),
        )
        .unwrap();
    let trail = store.audit("s").unwrap();
    let summary: Vec<(String, String)> =
        trail.iter().map(|e| (e.actor.clone(), e.action.clone())).collect();
    assert_eq!(
        summary,
        [
            ("cli:alice".into(), "created".into()),
            ("engine:host-a".into(), "updated".into()),
            ("cli:bob".into(), "revealed".into()),
        ]
    );
    assert!(trail[1].detail["changed"].to_string().contains("injected.oauth_access_token"));
    let text = serde_json::to_string(&trail).unwrap();
    assert!(!text.contains("value-in-create") && !text.contains("value-in-update"), "{text}");
    assert!(!text.contains("client-secret-c0ffee"));
}

fn leases_exclude_others_until_released_or_expired(kind: Kind) {
    let clock = Arc::new(ManualClock::at(1_000_000));
    let store = Backend::new(kind).open().with_clock(clock.clone());
    let ttl = Duration::from_secs(30);
    let at = |ms: i64| clock.set(1_000_000 + ms);
    assert!(store.try_lease("s", "a", ttl).unwrap());
    at(1);
    assert!(!store.try_lease("s", "b", ttl).unwrap(), "held by a");
    at(2);
    assert!(store.try_lease("s", "a", ttl).unwrap(), "a renews");
    at(29_000);
    assert!(!store.try_lease("s", "b", ttl).unwrap(), "still a's");
    at(30_003);
    assert!(store.try_lease("s", "b", ttl).unwrap(), "a's lease lapsed");
    store.release_lease("s", "a").unwrap(); // not a's any more: no effect
    at(30_004);
    assert!(!store.try_lease("s", "a", ttl).unwrap());
    store.release_lease("s", "b").unwrap();
    at(30_005);
    assert!(store.try_lease("s", "a", ttl).unwrap(), "released");
    at(0);
    assert!(store.try_lease("other", "b", ttl).unwrap(), "leases are per system");
    let held: Vec<String> = store.leases().unwrap().into_iter().map(|(id, _)| id).collect();
    assert_eq!(held, ["other", "s"]);
}

fn an_older_binary_refuses_a_newer_schema(kind: Kind) {
    let backend = Backend::new(kind);
    backend.open().create(system("s", &[]), "t").unwrap();
    backend.raw("UPDATE authplug_meta SET value = '99' WHERE key = 'schema_version'");
    let error = backend.open_with(Keyring::fixed(vec![backend.key.clone()])).unwrap_err();
    assert!(matches!(error, StoreError::SchemaTooNew { found: 99, known: 5 }), "{error}");
    assert!(error.to_string().contains("upgrade authplug"));
}

/// A store written by the authplug before the refresh journal (schema 1) opens, gains the
/// journal and the pending onboardings, and keeps its systems.
fn a_store_of_schema_1_is_migrated_keeping_everything(kind: Kind) {
    let backend = Backend::new(kind);
    let mut new = system("s", &[("api_key", "kept-value-1f2e")]);
    new.expires_at = None;
    let created = backend.open().create(new.clone(), "t").unwrap().summary.created_at;
    new.id = "expiring".into();
    new.expires_at = Some(created + 3600);
    new.parameters.insert("connector".into(), serde_json::json!({"name": "hubspot"}));
    // Its own creation time: the clock may have ticked since the first one's.
    let issued = backend.open().create(new, "t").unwrap().summary.created_at;
    backend.raw("DROP TABLE refresh_attempts");
    backend.raw("DROP TABLE pending_onboardings");
    for index in ["systems_due", "systems_issued", "systems_state", "systems_scheme"] {
        backend.raw(&format!("DROP INDEX {index}"));
    }
    backend.raw("DROP INDEX systems_connector");
    backend.raw("DROP INDEX audit_at");
    backend.raw("ALTER TABLE systems DROP COLUMN due_at");
    backend.raw("ALTER TABLE systems DROP COLUMN connector");
    backend.raw("UPDATE authplug_meta SET value = '1' WHERE key = 'schema_version'");
    let store = backend.open();
    assert_eq!(store.get("s").unwrap().unwrap().injected["api_key"].expose(), "kept-value-1f2e");
    // Schema 4's due index and connector column, filled in for the systems already stored: due
    // half the lifetime before expiry (the earliest any margin gives), never without expiry.
    let expiring = store.get("expiring").unwrap().unwrap().summary;
    assert_eq!(expiring.due_at, Some(created + 3600 - (created + 3600 - issued) / 2));
    assert_eq!(store.get("s").unwrap().unwrap().summary.due_at, None);
    let hubspot =
        authplug_store::Filter { connector: Some("hubspot".into()), ..Default::default() };
    let page = store.page(&hubspot, None, 10).unwrap();
    assert_eq!(page.systems.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["expiring"]);
    let begin = store
        .begin_refresh("s", "holder", std::time::Duration::from_secs(5), 1, None, true)
        .unwrap();
    assert!(matches!(begin, authplug_store::Begin::Started { .. }), "{begin:?}");
    assert_eq!(store.attempts("s", 5).unwrap().len(), 1);
    // And the pending onboardings of schema 3.
    store.put_pending_onboarding("migrated-state-0123456", b"v", Duration::from_secs(9)).unwrap();
    assert!(store.take_pending_onboarding("migrated-state-0123456").unwrap().is_some());
}
