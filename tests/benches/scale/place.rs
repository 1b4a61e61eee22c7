//! The scale bench's stores (a SQLite file, or a fresh PostgreSQL database), filled in batches
//! through the store's own API, and blocking HTTP calls from the bench's thread.

use std::path::PathBuf;
use std::time::Instant;

use authplug_store::{Keyring, Location, NewSystem, Store};

use super::BATCH;

/// Blocking HTTP calls from the bench's thread.
pub struct Http {
    pub runtime: tokio::runtime::Runtime,
    pub client: reqwest::Client,
}

impl Http {
    pub fn new() -> Self {
        Self { runtime: tokio::runtime::Runtime::new().unwrap(), client: reqwest::Client::new() }
    }

    /// The status and body of `method url`, with `token` as the bearer if given.
    pub fn call(&self, method: reqwest::Method, url: &str, token: Option<&str>) -> (u16, Vec<u8>) {
        self.runtime.block_on(async {
            let mut request = self.client.request(method, url);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    (status, response.bytes().await.map(|b| b.to_vec()).unwrap_or_default())
                }
                Err(_) => (0, Vec::new()),
            }
        })
    }
}

/// A store of the bench's own: a SQLite file, or a fresh PostgreSQL database.
pub struct Place {
    pub location: Location,
    pub key_file: PathBuf,
    pub dir: tempfile::TempDir,
}

pub fn place(backend: &str, n: usize) -> Option<Place> {
    let dir = match std::env::var_os("AUTHPLUG_BENCH_DIR") {
        Some(base) => tempfile::tempdir_in(base).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let location = match backend {
        "sqlite" => Location::Sqlite(dir.path().join("store.sqlite3")),
        _ => {
            let Ok(admin) = std::env::var("AUTHPLUG_TEST_PG_URL") else {
                eprintln!("scale: AUTHPLUG_TEST_PG_URL not set: PostgreSQL not measured (use `cargo xtask bench`)");
                return None;
            };
            let name = format!("scale_{}_{n}", std::process::id());
            let mut client = postgres::Client::connect(&admin, postgres::NoTls).unwrap();
            client.batch_execute(&format!("DROP DATABASE IF EXISTS {name}")).unwrap();
            client.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
            Location::Postgres(format!("{}/{name}", admin.rsplit_once('/').unwrap().0))
        }
    };
    let key_file = dir.path().join("master.key");
    Some(Place { location, key_file, dir })
}

impl Place {
    pub fn store(&self) -> Store {
        Store::open(&self.location, Keyring::from_file(&self.key_file).unwrap()).unwrap()
    }

    pub fn store_arg(&self) -> String {
        match &self.location {
            Location::Sqlite(path) => path.display().to_string(),
            Location::Postgres(url) => url.clone(),
        }
    }
}

/// Stores `systems` in batches, printing progress; systems per second.
pub fn fill(
    store: &Store,
    systems: impl Iterator<Item = NewSystem>,
    total: usize,
    what: &str,
) -> f64 {
    let started = Instant::now();
    let mut batch = Vec::with_capacity(BATCH);
    let mut done = 0;
    let flush = |batch: &mut Vec<NewSystem>, done: &mut usize| {
        *done += batch.len();
        store.create_batch(std::mem::take(batch), "bench").unwrap();
        if *done % 100_000 < BATCH && total >= 100_000 {
            eprintln!(
                "scale: {what}: {done}/{total} stored ({:.0} s)",
                started.elapsed().as_secs_f64()
            );
        }
    };
    for system in systems {
        batch.push(system);
        if batch.len() == BATCH {
            flush(&mut batch, &mut done);
        }
    }
    if !batch.is_empty() {
        flush(&mut batch, &mut done);
    }
    total as f64 / started.elapsed().as_secs_f64()
}
