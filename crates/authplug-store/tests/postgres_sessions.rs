//! The PostgreSQL session pool's bound (`OpenOptions::pg_sessions`, the CLI's
//! `--store-sessions`): concurrent calls beyond it wait for a session instead of opening more.

mod support;

use std::sync::Arc;

use authplug_store::{Change, Keyring, Location, OpenOptions, Store};
use postgres::{Client, NoTls};
use support::{system, Backend, Kind};

/// Sessions of the store's database besides `except` and the caller's own.
fn sessions(checker: &mut Client, except: i32) -> i64 {
    let sql = "SELECT count(*) FROM pg_stat_activity \
               WHERE datname = current_database() AND pid NOT IN (pg_backend_pid(), $1)";
    checker.query_one(sql, &[&except]).unwrap().get(0)
}

#[test]
fn calls_beyond_the_bound_wait_for_a_session_instead_of_opening_one() {
    if std::env::var_os("AUTHPLUG_TEST_PG_URL").is_none() {
        eprintln!("AUTHPLUG_TEST_PG_URL not set: skipped (run with `cargo xtask test`)");
        return;
    }
    let backend = Backend::new(Kind::Postgres);
    let Location::Postgres(url) = &backend.location else { unreachable!("a PostgreSQL store") };
    let keys = Keyring::fixed(vec![backend.key.clone()]);
    let options = OpenOptions { pg_sessions: 2 };
    let store = Arc::new(Store::open_with_options(&backend.location, keys, options).unwrap());
    for i in 0..6 {
        store.create(system(&format!("s{i}"), &[("api_key", "key-1")]), "test").unwrap();
    }
    // Another client holds every system's row lock: each writer waits for it, in PostgreSQL
    // if it has a session, else in the pool.
    let mut holder = Client::connect(url, NoTls).unwrap();
    let holder_pid: i32 = holder.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    holder.batch_execute("BEGIN; SELECT id FROM systems FOR UPDATE").unwrap();
    let writers: Vec<_> = (0..6)
        .map(|i| {
            let store = store.clone();
            std::thread::spawn(move || {
                let change = Change { failures: Some(1), ..Change::default() };
                store.update(&format!("s{i}"), 1, change, "test").map(|r| r.summary.version)
            })
        })
        .collect();
    let waiting = backend.wait_for_lock_waiters(2);
    assert_eq!(waiting, 2, "{waiting} sessions wait for the lock: the bound is two");
    let mut checker = Client::connect(url, NoTls).unwrap();
    assert_eq!(sessions(&mut checker, holder_pid), 2, "two sessions while six calls want one");
    holder.batch_execute("COMMIT").unwrap();
    for writer in writers {
        assert_eq!(writer.join().unwrap().unwrap(), 2, "every write done once a session is free");
    }
    assert_eq!(sessions(&mut checker, holder_pid), 2, "the pool keeps its two sessions");
}
