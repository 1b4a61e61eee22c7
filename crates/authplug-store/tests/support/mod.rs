//! Both real backends for the store's tests: a SQLite file in a temporary folder, and a fresh
//! database on the PostgreSQL server `cargo xtask test` starts (`AUTHPLUG_TEST_PG_URL`).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use authplug_protocol::Secret;
use authplug_store::{Keyring, Location, MasterKey, NewSystem, Store};

/// A store location with everything needed to reopen it and look at it raw.
pub struct Backend {
    pub location: Location,
    pub key: MasterKey,
    /// Keeps a SQLite store's folder alive; also holds key files.
    pub dir: tempfile::TempDir,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn new(kind: Kind) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let location = match kind {
            Kind::Sqlite => Location::Sqlite(dir.path().join("store.sqlite3")),
            Kind::Postgres => Location::Postgres(fresh_database()),
        };
        Self { location, key: MasterKey::generate().unwrap(), dir }
    }

    pub fn kind(&self) -> Kind {
        match self.location {
            Location::Sqlite(_) => Kind::Sqlite,
            Location::Postgres(_) => Kind::Postgres,
        }
    }

    pub fn open(&self) -> Store {
        Store::open(&self.location, Keyring::fixed(vec![self.key.clone()])).unwrap()
    }

    pub fn open_with(&self, keys: Keyring) -> Result<Store, authplug_store::StoreError> {
        Store::open(&self.location, keys)
    }

    pub fn location_text(&self) -> String {
        match &self.location {
            Location::Sqlite(path) => path.display().to_string(),
            Location::Postgres(url) => url.clone(),
        }
    }

    /// Runs raw SQL against the database, beside the store (to damage it on purpose).
    pub fn raw(&self, sql: &str) {
        match &self.location {
            Location::Sqlite(path) => {
                let connection = rusqlite::Connection::open(path).unwrap();
                connection.execute_batch(sql).unwrap();
            }
            Location::Postgres(url) => {
                let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
                client.batch_execute(sql).unwrap();
            }
        }
    }

    /// Another client holding the lock a write of system `id` needs, until dropped: SQLite's
    /// write lock, or PostgreSQL's row lock.
    pub fn hold_write_lock(&self, id: &str) -> Box<dyn std::any::Any> {
        match &self.location {
            Location::Sqlite(path) => {
                let connection = rusqlite::Connection::open(path).unwrap();
                connection.execute_batch("BEGIN IMMEDIATE").unwrap();
                Box::new(connection)
            }
            Location::Postgres(url) => {
                let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
                client.batch_execute("BEGIN").unwrap();
                let locked = client
                    .query("SELECT id FROM systems WHERE id = $1 FOR UPDATE", &[&id])
                    .unwrap();
                assert_eq!(locked.len(), 1, "the row is there to lock");
                Box::new(client)
            }
        }
    }

    /// Returns once a session of the database waits for a lock (PostgreSQL). SQLite shows no
    /// waiter from outside: nothing to wait for.
    pub fn wait_for_a_lock_waiter(&self) {
        self.wait_for_lock_waiters(1);
    }

    /// Returns, once at least `at_least` sessions of the database wait for a lock, how many do
    /// (PostgreSQL; 0 at once on SQLite, which shows no waiter from outside).
    pub fn wait_for_lock_waiters(&self, at_least: i64) -> i64 {
        let Location::Postgres(url) = &self.location else { return 0 };
        let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let waiting: i64 = client
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity \
                     WHERE datname = current_database() AND wait_event_type = 'Lock'",
                    &[],
                )
                .unwrap()
                .get(0);
            if waiting >= at_least {
                return waiting;
            }
            assert!(std::time::Instant::now() < deadline, "{waiting} sessions wait for the lock");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// Flips one bit of byte `at` of the ciphertext of every secret called `name`.
    pub fn flip_ciphertext_byte(&self, name: &str, at: usize) {
        match &self.location {
            Location::Sqlite(path) => {
                let connection = rusqlite::Connection::open(path).unwrap();
                let mut ciphertext: Vec<u8> = connection
                    .query_row("SELECT ciphertext FROM secrets WHERE name = ?", [name], |r| r.get(0))
                    .unwrap();
                ciphertext[at] ^= 1;
                connection
                    .execute(
                        "UPDATE secrets SET ciphertext = ? WHERE name = ?",
                        rusqlite::params![ciphertext, name],
                    )
                    .unwrap();
            }
            Location::Postgres(_) => self.raw(&format!(
                "UPDATE secrets SET ciphertext = set_byte(ciphertext, {at}, get_byte(ciphertext, {at}) # 1) \
                 WHERE name = '{name}'"
            )),
        }
    }

    /// Every byte the database keeps: the SQLite file with its WAL, or a `pg_dump` of the database.
    pub fn raw_bytes(&self) -> Vec<u8> {
        match &self.location {
            Location::Sqlite(path) => {
                let mut bytes = std::fs::read(path).unwrap();
                for suffix in ["-wal", "-journal"] {
                    let mut side = path.clone().into_os_string();
                    side.push(suffix);
                    if let Ok(more) = std::fs::read(PathBuf::from(side)) {
                        bytes.extend(more);
                    }
                }
                bytes
            }
            Location::Postgres(url) => {
                let bin = PathBuf::from(std::env::var_os("AUTHPLUG_TEST_PG_BIN").expect(
                    "AUTHPLUG_TEST_PG_BIN is not set: run the tests with `cargo xtask test`",
                ));
                let output =
                    std::process::Command::new(bin.join("pg_dump")).arg(url).output().unwrap();
                assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
                assert!(output.stdout.len() > 1000, "a real dump");
                output.stdout
            }
        }
    }
}

/// A new, empty database on the test server.
fn fresh_database() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let admin = std::env::var("AUTHPLUG_TEST_PG_URL")
        .expect("AUTHPLUG_TEST_PG_URL is not set: run the tests with `cargo xtask test`");
    let name = format!(
        "t_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst),
        authplug_store::now_ms()
    );
    let mut client = postgres::Client::connect(&admin, postgres::NoTls).unwrap();
    client.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
    let base = admin.rsplit_once('/').unwrap().0;
    format!("{base}/{name}")
}

pub fn secrets(pairs: &[(&str, &str)]) -> BTreeMap<String, Secret> {
    pairs.iter().map(|(k, v)| (k.to_string(), Secret::new(*v))).collect()
}

pub fn system(id: &str, injected: &[(&str, &str)]) -> NewSystem {
    NewSystem {
        id: id.into(),
        scheme: "oauth2".into(),
        parameters: BTreeMap::from([("token_url".into(), "https://idp.example/token".into())]),
        required: secrets(&[("client_id", "app"), ("client_secret", "client-secret-c0ffee")]),
        injected: secrets(injected),
        expires_at: Some(1_900_000_000),
    }
}

pub fn exposed(map: &BTreeMap<String, Secret>) -> BTreeMap<String, String> {
    map.iter().map(|(k, v)| (k.clone(), v.expose().to_owned())).collect()
}

/// A random number below `bound`, for fault timing.
pub fn random_below(bound: u64) -> u64 {
    let mut bytes = [0u8; 8];
    getrandom::getrandom(&mut bytes).unwrap();
    u64::from_le_bytes(bytes) % bound
}

pub fn windows_contain(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Generates `sqlite::<test>` and `postgres::<test>` for each test function taking a [`Kind`].
#[allow(unused_macros)]
macro_rules! conformance {
    ($($test:ident),* $(,)?) => {
        mod sqlite { $( #[test] fn $test() { super::$test(super::Kind::Sqlite) } )* }
        mod postgres { $( #[test] fn $test() { super::$test(super::Kind::Postgres) } )* }
    };
}
