//! The due index, paging and retention, against both real backends: what lets a store of a
//! million systems be swept and listed at the cost of the work due, not of everything stored.

mod support;

use std::sync::Arc;
use std::time::Duration;

use authplug_store::{
    Begin, Change, Deletion, Filter, Finish, Injected, Lifecycle, ManualClock, Outcome, Retention,
    State, Store, Walk,
};
use support::{secrets, system, Backend, Kind};

macro_rules! both {
    ($($test:ident),* $(,)?) => {
        mod sqlite { $( #[test] fn $test() { super::$test(super::Kind::Sqlite) } )* }
        mod postgres { $( #[test] fn $test() { super::$test(super::Kind::Postgres) } )* }
    };
}

both!(
    the_due_index_hands_out_exactly_the_systems_due_in_batches,
    a_refresh_sets_the_exact_due_time_and_a_backoff_postpones_it,
    pages_walk_every_system_once_and_filters_narrow_them,
    retention_prunes_old_rows_but_never_a_systems_newest_attempt,
    idle_systems_are_found_by_issue_time_in_batches,
    a_batch_is_created_whole_or_not_at_all,
    a_delete_at_a_version_deletes_only_that_version,
);

const NOW: i64 = 1_800_000_000;

fn at_now(backend: &Backend) -> (Store, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::at(NOW * 1000));
    (backend.open().with_clock(clock.clone()), clock)
}

/// Every system due by `until`, walked in batches of `batch`.
fn all_due(store: &Store, until: i64, batch: usize) -> Vec<String> {
    let mut walk = Walk::start();
    let mut ids = Vec::new();
    loop {
        let found = store.due(until, &walk, batch).unwrap();
        let full = found.len() == batch;
        for summary in found {
            walk = Walk { at: summary.due_at.unwrap(), id: summary.id.clone() };
            ids.push(summary.id);
        }
        if !full {
            return ids;
        }
    }
}

fn the_due_index_hands_out_exactly_the_systems_due_in_batches(kind: Kind) {
    let backend = Backend::new(kind);
    let (store, _clock) = at_now(&backend);
    // Created now with lifetimes of 10..=59 minutes: without a margin, each is first due half
    // its lifetime from now. One never expires, one needs re-authorisation.
    for minutes in 10..60 {
        let mut new = system(&format!("s{minutes:02}"), &[("token", "t")]);
        new.expires_at = Some(NOW + minutes * 60);
        store.create(new, "t").unwrap();
    }
    let mut forever = system("forever", &[("token", "t")]);
    forever.expires_at = None;
    store.create(forever, "t").unwrap();
    let mut refused = system("refused", &[("token", "t")]);
    refused.expires_at = Some(NOW);
    store.create(refused, "t").unwrap();
    let change =
        Change { state: Some(Lifecycle::NeedsReauth("invalid_grant".into())), ..Change::default() };
    store.update("refused", 1, change, "t").unwrap();

    assert_eq!(all_due(&store, NOW, 7), Vec::<String>::new(), "nothing due yet");
    // Twenty minutes on: lifetimes up to 40 minutes are half gone.
    let due = all_due(&store, NOW + 20 * 60, 7);
    let expected: Vec<String> = (10..=40).map(|m| format!("s{m:02}")).collect();
    assert_eq!(due, expected, "in due order, each once, across batches");
    // The sweep refines a time: set later, the system leaves the due set; a system that moved
    // meanwhile keeps the time its writer set.
    let times = vec![("s40".to_owned(), 1, Some(NOW + 39 * 60)), ("s39".to_owned(), 99, None)];
    assert_eq!(store.reschedule(&times).unwrap(), 1);
    assert!(!all_due(&store, NOW + 20 * 60, 100).contains(&"s40".to_owned()));
    assert!(all_due(&store, NOW + 20 * 60, 100).contains(&"s39".to_owned()));
}

fn a_refresh_sets_the_exact_due_time_and_a_backoff_postpones_it(kind: Kind) {
    let backend = Backend::new(kind);
    let (store, _clock) = at_now(&backend);
    let mut new = system("crm", &[("token", "old")]);
    new.expires_at = Some(NOW + 3600);
    store.create(new, "t").unwrap();
    assert_eq!(store.get("crm").unwrap().unwrap().summary.due_at, Some(NOW + 1800));
    let ttl = Duration::from_secs(30);
    let Begin::Started { attempt, .. } =
        store.begin_refresh("crm", "a", ttl, 1, None, true).unwrap()
    else {
        panic!("not started")
    };
    let injected = Injected::new(secrets(&[("token", "new")]), Some(NOW + 3600)).with_margin(300);
    let change = Change {
        injected: Some(injected),
        last_refresh_at: Some(NOW),
        state: Some(Lifecycle::Active),
        ..Change::default()
    };
    let finish = Finish { change: Some(change), ..Finish::new(Outcome::Renewed) };
    store.finish_refresh(&attempt, &finish, "engine").unwrap();
    assert_eq!(store.get("crm").unwrap().unwrap().summary.due_at, Some(NOW + 3300), "exact");
    // A transient failure asking for a retry later than that moves the due time there.
    let Begin::Started { attempt, .. } =
        store.begin_refresh("crm", "a", ttl, 2, None, true).unwrap()
    else {
        panic!("not started")
    };
    let retry_at_ms = (NOW + 4000) * 1000 + 1;
    let finish = Finish { retry_at_ms: Some(retry_at_ms), ..Finish::new(Outcome::Transient) };
    store.finish_refresh(&attempt, &finish, "engine").unwrap();
    assert_eq!(store.get("crm").unwrap().unwrap().summary.due_at, Some(NOW + 4001));
    assert!(all_due(&store, NOW + 4000, 10).is_empty(), "not before the backoff ends");
    assert_eq!(all_due(&store, NOW + 4001, 10), ["crm"]);
}

fn pages_walk_every_system_once_and_filters_narrow_them(kind: Kind) {
    let backend = Backend::new(kind);
    let (store, _clock) = at_now(&backend);
    for i in 0..45 {
        let mut new = system(&format!("p{i:02}"), &[("token", "t")]);
        let connector = if i % 3 == 0 { "hubspot" } else { "tripletex" };
        new.parameters.insert("connector".into(), serde_json::json!({"name": connector}));
        if i % 5 == 0 {
            new.scheme = "api_key".into();
        }
        store.create(new, "t").unwrap();
    }
    let change =
        Change { state: Some(Lifecycle::NeedsReauth("revoked".into())), ..Change::default() };
    store.update("p07", 1, change, "t").unwrap();
    let walk = |filter: &Filter, limit: usize| -> Vec<String> {
        let (mut ids, mut cursor) = (Vec::new(), None);
        loop {
            let page = store.page(filter, cursor.as_ref(), limit).unwrap();
            assert!(page.systems.len() <= limit);
            ids.extend(page.systems.into_iter().map(|s| s.id));
            match page.next {
                Some(next) => cursor = Some(next),
                None => return ids,
            }
        }
    };
    let all: Vec<String> = (0..45).map(|i| format!("p{i:02}")).collect();
    assert_eq!(walk(&Filter::default(), 10), all);
    assert_eq!(walk(&Filter::default(), 45), all, "an exact last page says there is no next");
    let hubspot = Filter { connector: Some("hubspot".into()), ..Filter::default() };
    let expected: Vec<String> = (0..45).step_by(3).map(|i| format!("p{i:02}")).collect();
    assert_eq!(walk(&hubspot, 4), expected);
    let both = Filter { scheme: Some("api_key".into()), ..hubspot.clone() };
    assert_eq!(walk(&both, 100), ["p00", "p15", "p30"]);
    let reauth = Filter { state: Some(State::NeedsReauth), ..Filter::default() };
    assert_eq!(walk(&reauth, 100), ["p07"]);
    assert_eq!(store.count(&Filter::default()).unwrap(), 45);
    assert_eq!(store.count(&hubspot).unwrap(), 15);
    assert_eq!(store.count(&reauth).unwrap(), 1);
    let page = store.page(&Filter::default(), None, 1).unwrap();
    assert!(page.systems[0].secret_names.contains(&"injected.token".to_owned()));
    assert!(page.systems[0].secret_names.contains(&"required.client_secret".to_owned()));
}

fn retention_prunes_old_rows_but_never_a_systems_newest_attempt(kind: Kind) {
    let backend = Backend::new(kind);
    let (store, clock) = at_now(&backend);
    store.create(system("old", &[("token", "t")]), "t").unwrap();
    let ttl = Duration::from_secs(30);
    for _ in 0..3 {
        let Begin::Started { attempt, .. } =
            store.begin_refresh("old", "a", ttl, 1, None, false).unwrap()
        else {
            panic!("not started")
        };
        store.finish_refresh(&attempt, &Finish::new(Outcome::Transient), "engine").unwrap();
    }
    assert_eq!(store.attempts("old", 10).unwrap().len(), 3);
    // Forty days on, with a 30-day journal and a year of audit.
    clock.advance(Duration::from_secs(40 * 86_400));
    let pruned = store.prune(&Retention::default(), 1000).unwrap();
    assert_eq!(pruned.journal, 2, "all but the newest");
    assert_eq!(pruned.audit, 0);
    assert_eq!(store.attempts("old", 10).unwrap().len(), 1);
    // Two years on: the audit trail goes, in batches of the size asked.
    store.record_event("old", "t", "secrets_read", serde_json::json!({})).unwrap();
    clock.advance(Duration::from_secs(2 * 365 * 86_400));
    let lines = store.audit("old").unwrap().len() as u64;
    assert!(lines >= 2);
    let first = store.prune(&Retention::default(), 1).unwrap();
    assert_eq!(first.audit, 1);
    let rest = store.prune(&Retention { audit: Some(Duration::from_secs(1)), journal: None }, 1000);
    assert_eq!(rest.unwrap().audit, lines - 1);
    assert!(store.audit("old").unwrap().is_empty());
    assert_eq!(store.attempts("old", 10).unwrap().len(), 1, "the newest attempt stays");
}

fn idle_systems_are_found_by_issue_time_in_batches(kind: Kind) {
    let backend = Backend::new(kind);
    let (store, clock) = at_now(&backend);
    // Created a minute apart: i00 is the oldest. One of them needs re-authorisation.
    for i in 0..12 {
        store.create(system(&format!("i{i:02}"), &[("token", "t")]), "t").unwrap();
        clock.advance(Duration::from_secs(60));
    }
    let change =
        Change { state: Some(Lifecycle::NeedsReauth("revoked".into())), ..Change::default() };
    store.update("i03", 1, change, "t").unwrap();
    let idle = |issued_by: i64| -> Vec<String> {
        let (mut walk, mut ids) = (Walk::start(), Vec::new());
        loop {
            let found = store.idle(issued_by, &walk, 4).unwrap();
            let full = found.len() == 4;
            for summary in found {
                walk = Walk { at: summary.issued_at(), id: summary.id.clone() };
                ids.push(summary.id);
            }
            if !full {
                return ids;
            }
        }
    };
    let expected: Vec<String> = (0..10).filter(|i| *i != 3).map(|i| format!("i{i:02}")).collect();
    assert_eq!(idle(NOW + 9 * 60), expected, "oldest first, active only, each once");
    assert!(idle(NOW - 1).is_empty());
}

fn a_batch_is_created_whole_or_not_at_all(kind: Kind) {
    let backend = Backend::new(kind);
    let (store, _clock) = at_now(&backend);
    let batch: Vec<_> = (0..300).map(|i| system(&format!("b{i:03}"), &[("token", "t")])).collect();
    assert_eq!(store.create_batch(batch, "loader").unwrap(), 300);
    assert_eq!(store.count(&Filter::default()).unwrap(), 300);
    let one = store.get("b123").unwrap().unwrap();
    assert_eq!(one.injected["token"].expose(), "t", "sealed and opened like any other");
    assert_eq!(one.required["client_secret"].expose(), "client-secret-c0ffee");
    assert_eq!(store.audit("b123").unwrap()[0].action, "created");
    assert!(one.summary.due_at.is_some(), "each new system is in the due index");
    // One taken id fails the whole batch, and names it; nothing of it is stored.
    let clash = vec![system("c1", &[("token", "t")]), system("b007", &[("token", "t")])];
    let error = store.create_batch(clash, "loader").unwrap_err();
    assert!(error.to_string().contains("b007"), "{error}");
    assert!(store.get("c1").unwrap().is_none());
    // So does an invalid id, before anything is written.
    let bad = vec![system("c2", &[("token", "t")]), system("no spaces", &[("token", "t")])];
    assert!(store.create_batch(bad, "loader").is_err());
    assert_eq!(store.count(&Filter::default()).unwrap(), 300);
}

/// What a delete with revocation relies on: a system that moved since the version its tokens
/// were revoked from is kept, whole; one at that version goes with its secrets, audited.
fn a_delete_at_a_version_deletes_only_that_version(kind: Kind) {
    let backend = Backend::new(kind);
    let store = backend.open();
    let created = store.create(system("crm", &[("token", "t-1")]), "t").unwrap();
    let read = created.summary.version;
    let change = Change { failures: Some(1), ..Change::default() };
    let moved = store.update("crm", read, change, "t").unwrap().summary.version;
    let detail = serde_json::json!({"revoked": ["token"]});
    assert_eq!(store.delete_at("crm", read, "ops", detail.clone()).unwrap(), Deletion::Moved);
    let kept = store.get("crm").unwrap().expect("kept");
    assert_eq!(kept.injected["token"].expose(), "t-1", "kept whole, secrets included");
    assert_eq!(store.delete_at("crm", moved, "ops", detail.clone()).unwrap(), Deletion::Deleted);
    assert!(store.get("crm").unwrap().is_none());
    let last = store.audit("crm").unwrap().pop().unwrap();
    assert_eq!((last.action.as_str(), &last.detail), ("deleted", &detail));
    assert_eq!(store.delete_at("crm", moved, "ops", detail).unwrap(), Deletion::Gone);
}
