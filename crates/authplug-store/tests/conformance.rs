//! One conformance suite, run against both real backends: a SQLite file and a PostgreSQL server.

mod support;

use std::sync::Arc;
use std::time::Duration;

use authplug_store::{Change, Injected, Keyring, Lifecycle, ManualClock, State, StoreError};
use support::{exposed, secrets, system, Backend, Kind};

/// Generates `sqlite::<test>` and `postgres::<test>` for each test function taking a [`Kind`].
macro_rules! conformance {
    ($($test:ident),* $(,)?) => {
        mod sqlite { $( #[test] fn $test() { super::$test(super::Kind::Sqlite) } )* }
        mod postgres { $( #[test] fn $test() { super::$test(super::Kind::Postgres) } )* }
    };
}

conformance!(
    created_systems_read_back_with_their_secrets,
    an_id_is_created_once,
    updates_are_compare_and_set,
    deleting_keeps_the_audit_trail,
    the_audit_trail_names_changes_never_values,
    leases_exclude_others_until_released_or_expired,
    a_wrong_master_key_refuses_to_open_and_changes_nothing,
    a_ciphertext_moved_to_another_row_is_refused,
    a_tampered_byte_is_refused,
    an_older_binary_refuses_a_newer_schema,
    a_store_of_schema_1_is_migrated_keeping_everything,
    no_secret_value_is_stored_in_clear,
    rotating_the_key_reseals_everything_and_retires_the_old_key,
    bundles_restore_into_another_store,
    a_running_instance_follows_a_rotation_made_by_another,
    concurrent_callers_in_one_process_each_get_their_own_outcome,
    pending_onboardings_are_sealed_and_taken_once_by_any_instance,
    an_onboarding_creates_or_with_replace_renews_a_system,
);

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

fn a_wrong_master_key_refuses_to_open_and_changes_nothing(kind: Kind) {
    let backend = Backend::new(kind);
    backend.open().create(system("s", &[("a", "value-a")]), "t").unwrap();
    let before = backend.raw_bytes();
    let wrong = authplug_store::MasterKey::generate().unwrap();
    let error = backend.open_with(Keyring::fixed(vec![wrong.clone()])).unwrap_err();
    assert!(
        matches!(&error, StoreError::WrongKey { needed, have }
            if *needed == [backend.key.id()] && *have == [wrong.id()]),
        "{error}"
    );
    assert!(error.to_string().starts_with("wrong master key: values are sealed under"), "{error}");
    if kind == Kind::Sqlite {
        assert_eq!(backend.raw_bytes(), before, "nothing was written");
    }
    let record = backend.open().get("s").unwrap().unwrap();
    assert_eq!(exposed(&record.injected)["a"], "value-a");
}

fn a_ciphertext_moved_to_another_row_is_refused(kind: Kind) {
    let backend = Backend::new(kind);
    let store = backend.open();
    store.create(system("victim", &[("oauth_access_token", "victim-token")]), "t").unwrap();
    store.create(system("attacker", &[("oauth_access_token", "attacker-token")]), "t").unwrap();
    // Copy the attacker's sealed value over the victim's.
    backend.raw(
        "UPDATE secrets SET nonce = (SELECT nonce FROM secrets WHERE system_id = 'attacker' AND name = 'oauth_access_token'), \
         ciphertext = (SELECT ciphertext FROM secrets WHERE system_id = 'attacker' AND name = 'oauth_access_token') \
         WHERE system_id = 'victim' AND name = 'oauth_access_token'",
    );
    let error = store.get("victim").unwrap_err();
    assert_eq!(
        error.to_string(),
        "the injected secret `oauth_access_token` of system `victim` does not decrypt: its \
         ciphertext was tampered with or moved from another row"
    );
    assert_eq!(
        exposed(&store.get("attacker").unwrap().unwrap().injected)["oauth_access_token"],
        "attacker-token"
    );
}

fn a_tampered_byte_is_refused(kind: Kind) {
    let backend = Backend::new(kind);
    let store = backend.open();
    store.create(system("s", &[("api_key", "the-api-key")]), "t").unwrap();
    backend.flip_ciphertext_byte("api_key", 3);
    let error = store.get("s").unwrap_err();
    assert!(
        matches!(&error, StoreError::Tampered { place } if place.contains("`api_key` of system `s`")),
        "{error}"
    );
    assert!(store.list().is_ok(), "metadata stays readable");
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

fn no_secret_value_is_stored_in_clear(kind: Kind) {
    let backend = Backend::new(kind);
    let store = backend.open();
    let values =
        ["clear-access-token-5f1e", "clear-refresh-token-9a2b", "clear-client-secret-77c3"];
    let mut new =
        system("s", &[("oauth_access_token", values[0]), ("oauth_refresh_token", values[1])]);
    new.required = secrets(&[("client_id", "app"), ("client_secret", values[2])]);
    store.create(new, "t").unwrap();
    let change = Change {
        injected: Some(Injected::new(
            secrets(&[("oauth_access_token", values[0]), ("oauth_refresh_token", values[1])]),
            None,
        )),
        ..Change::default()
    };
    store.update("s", 1, change, "t").unwrap();
    let raw = backend.raw_bytes();
    assert!(windows_contain(&raw, b"oauth_access_token"), "the dump holds the names");
    for value in values {
        assert!(!windows_contain(&raw, value.as_bytes()), "{value} found in clear");
    }
}

fn windows_contain(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn rotating_the_key_reseals_everything_and_retires_the_old_key(kind: Kind) {
    let backend = Backend::new(kind);
    let key_file = backend.dir.path().join("conf/master.key");
    let store = backend.open_with(Keyring::from_file(&key_file).unwrap()).unwrap();
    for i in 0..5 {
        store.create(system(&format!("s{i}"), &[("token", &format!("value-{i}"))]), "t").unwrap();
    }
    let old = store.keyring().current();
    let mut steps = Vec::new();
    let rotation = store.rotate_key(&mut |done, total| steps.push((done, total))).unwrap();
    assert!(!rotation.resumed);
    assert_eq!(rotation.systems_rekeyed, 5);
    assert_eq!(steps.last(), Some(&(5, 5)));
    assert_eq!(rotation.retired_keys, vec![old.id().to_owned()]);
    assert_ne!(rotation.current_key, old.id());

    // A process that reads the key file anew opens everything; the old key alone opens nothing.
    let fresh = backend.open_with(Keyring::from_file(&key_file).unwrap()).unwrap();
    for i in 0..5 {
        let record = fresh.get(&format!("s{i}")).unwrap().unwrap();
        assert_eq!(exposed(&record.injected)["token"], format!("value-{i}"));
        assert_eq!(record.summary.key_ids, vec![rotation.current_key.clone()]);
    }
    assert!(matches!(
        backend.open_with(Keyring::fixed(vec![old])),
        Err(StoreError::WrongKey { .. })
    ));
    assert_eq!(fresh.audit("s0").unwrap().last().unwrap().action, "rekeyed");
}

fn a_running_instance_follows_a_rotation_made_by_another(kind: Kind) {
    let backend = Backend::new(kind);
    let key_file = backend.dir.path().join("master.key");
    let rotator = backend.open_with(Keyring::from_file(&key_file).unwrap()).unwrap();
    let running = backend.open_with(Keyring::from_file(&key_file).unwrap()).unwrap();
    running.create(system("s", &[("token", "before")]), "t").unwrap();
    let rotation = rotator.rotate_key(&mut |_, _| {}).unwrap();
    // Re-sealing does not bump the version (values are unchanged), so writers in flight do not
    // conflict. The running instance reads what was re-sealed, and seals what it writes next under the new
    // key, so the retired key is never needed again.
    assert_eq!(exposed(&running.get("s").unwrap().unwrap().injected)["token"], "before");
    let change = Change {
        injected: Some(Injected::new(secrets(&[("token", "after")]), None)),
        ..Change::default()
    };
    let updated = running.update("s", 1, change, "t").unwrap();
    assert_eq!(updated.summary.key_ids, vec![rotation.current_key.clone()]);
    let fresh = backend.open_with(Keyring::from_file(&key_file).unwrap()).unwrap();
    assert_eq!(exposed(&fresh.get("s").unwrap().unwrap().injected)["token"], "after");
}

fn bundles_restore_into_another_store(kind: Kind) {
    let source = Backend::new(kind);
    let store = source.open();
    store.create(system("a", &[("token", "bundle-value-a")]), "t").unwrap();
    store.create(system("b", &[("token", "bundle-value-b")]), "t").unwrap();
    let state =
        Change { state: Some(Lifecycle::NeedsReauth("revoked".into())), ..Change::default() };
    store.update("b", 1, state, "t").unwrap();
    let bundle = store.export().unwrap();
    assert!(!windows_contain(&bundle, b"bundle-value-a"), "the bundle is encrypted");

    let target = Backend::new(kind);
    let restored = target.open_with(Keyring::fixed(vec![source.key.clone()])).unwrap();
    restored.create(system("a", &[("token", "already-here")]), "t").unwrap();
    let report = restored.import(&bundle, "cli:restore", false).unwrap();
    assert_eq!((report.created, report.skipped), (vec!["b".to_owned()], vec!["a".to_owned()]));
    let b = restored.get("b").unwrap().unwrap();
    assert_eq!(exposed(&b.injected)["token"], "bundle-value-b");
    assert_eq!(b.summary.state, State::NeedsReauth);
    let report = restored.import(&bundle, "cli:restore", true).unwrap();
    assert_eq!(report.replaced, ["a", "b"]);
    assert_eq!(exposed(&restored.get("a").unwrap().unwrap().injected)["token"], "bundle-value-a");

    let stranger = Backend::new(kind).open();
    assert!(matches!(stranger.import(&bundle, "t", false), Err(StoreError::WrongKey { .. })));
    let mut damaged = bundle.clone();
    let at = damaged.len() - 10;
    damaged[at] = if damaged[at] == b'A' { b'B' } else { b'A' };
    let error = restored.import(&damaged, "t", false).unwrap_err();
    assert!(matches!(error, StoreError::Bundle(_)), "{error}");
    // The count outside the ciphertext (issue 16, item 15) is held to its content.
    let text = String::from_utf8(bundle.clone()).unwrap();
    let miscounted = text.replace("\"systems\": 2", "\"systems\": 7");
    assert_ne!(miscounted, text);
    let error = restored.import(miscounted.as_bytes(), "t", false).unwrap_err();
    assert!(error.to_string().contains("says it holds 7 systems but its sealed content holds 2"));
}

#[test]
fn an_empty_store_file_is_not_taken_for_a_new_store() {
    // Issue 16, item 12: a zero-byte file (a failed copy, a truncation) is refused, not reused.
    let backend = Backend::new(Kind::Sqlite);
    let authplug_store::Location::Sqlite(path) = &backend.location else { unreachable!() };
    let file = std::fs::File::create(path).unwrap();
    let minute_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
    file.set_modified(minute_ago).unwrap();
    drop(file);
    let error = backend.open_with(Keyring::fixed(vec![backend.key.clone()])).unwrap_err();
    assert!(matches!(error, StoreError::Corrupt { .. }), "{error}");
    assert!(error.to_string().contains("is empty (0 bytes), not a store authplug wrote"));
    assert_eq!(std::fs::metadata(path).unwrap().len(), 0, "left as it was");
}

#[test]
fn a_truncated_sqlite_file_is_named_and_left_alone() {
    let backend = Backend::new(Kind::Sqlite);
    let store = backend.open();
    for i in 0..200 {
        store.create(system(&format!("system-{i:04}"), &[("token", "t")]), "t").unwrap();
    }
    drop(store);
    let authplug_store::Location::Sqlite(path) = &backend.location else { unreachable!() };
    // Fold the WAL into the file, then cut the file in half.
    rusqlite::Connection::open(path)
        .unwrap()
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
        .unwrap();
    let bytes = std::fs::read(path).unwrap();
    std::fs::write(path, &bytes[..bytes.len() / 2]).unwrap();
    let before = std::fs::read(path).unwrap();
    let error = backend.open_with(Keyring::fixed(vec![backend.key.clone()])).unwrap_err();
    assert!(matches!(error, StoreError::Corrupt { .. }), "{error}");
    assert!(error.to_string().contains(&path.display().to_string()), "{error}");
    assert_eq!(std::fs::read(path).unwrap(), before, "the damaged file is not overwritten");
}

/// A file too large to be checked whole when opened (over 64 MiB), cut short, is named as
/// damaged all the same (SQLite compares it with its header).
#[test]
fn a_large_sqlite_file_cut_short_is_named() {
    let backend = Backend::new(Kind::Sqlite);
    drop(backend.open());
    let authplug_store::Location::Sqlite(path) = &backend.location else { unreachable!() };
    let filler = rusqlite::Connection::open(path).unwrap();
    filler
        .execute_batch(
            "CREATE TABLE filler (b BLOB); \
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 70) \
             INSERT INTO filler SELECT zeroblob(1048576) FROM n; \
             PRAGMA wal_checkpoint(TRUNCATE);",
        )
        .unwrap();
    drop(filler);
    assert!(
        backend.open_with(Keyring::fixed(vec![backend.key.clone()])).is_ok(),
        "whole, it opens"
    );
    let length = std::fs::metadata(path).unwrap().len();
    assert!(length > 64 << 20, "{length} bytes");
    // Its last pages cut off: the schema still reads.
    let cut = length - 3 * 4096;
    std::fs::OpenOptions::new().write(true).open(path).unwrap().set_len(cut).unwrap();
    let error = backend.open_with(Keyring::fixed(vec![backend.key.clone()])).unwrap_err();
    assert!(matches!(error, StoreError::Corrupt { .. }), "{error}");
    assert!(error.to_string().contains(&path.display().to_string()), "{error}");
    assert_eq!(std::fs::metadata(path).unwrap().len(), cut, "left as it was");
}

#[test]
fn a_file_that_is_not_a_database_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.sqlite3");
    std::fs::write(&path, b"this is a text file, not SQLite, and long enough to have a header....")
        .unwrap();
    let key = authplug_store::MasterKey::generate().unwrap();
    let error = authplug_store::Store::open(
        &authplug_store::Location::Sqlite(path),
        Keyring::fixed(vec![key]),
    )
    .unwrap_err();
    assert!(matches!(error, StoreError::Corrupt { .. }), "{error}");
}

#[test]
fn new_sqlite_stores_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data/authplug/store.sqlite3");
    let key = authplug_store::MasterKey::generate().unwrap();
    authplug_store::Store::open(
        &authplug_store::Location::Sqlite(path.clone()),
        Keyring::fixed(vec![key]),
    )
    .unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(
        std::fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777,
        0o700
    );
}
