//! Store throughput with encryption on: reads (one system, three secrets decrypted) and
//! compare-and-set writes (three secrets sealed) per second, for each backend; and the cost of
//! encryption alone. Run with `cargo xtask bench` (it starts PostgreSQL; without
//! AUTHPLUG_TEST_PG_URL only SQLite is measured).

use std::cell::Cell;
use std::collections::BTreeMap;
use std::hint::black_box;

use authplug_protocol::Secret;
use authplug_store::crypto::Place;
use authplug_store::{Change, Injected, Keyring, Location, MasterKey, NewSystem, Store};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn secrets(round: u64) -> BTreeMap<String, Secret> {
    BTreeMap::from([
        (
            "oauth_access_token".into(),
            Secret::new(format!("eyJhbGciOiJSUzI1NiJ9.access.{round:0>400}")),
        ),
        ("oauth_refresh_token".into(), Secret::new(format!("refresh-{round:0>40}"))),
        ("oauth_client_secret".into(), Secret::new("client-secret-0123456789abcdef")),
    ])
}

fn seeded(location: Location) -> Store {
    let store =
        Store::open(&location, Keyring::fixed(vec![MasterKey::generate().unwrap()])).unwrap();
    store
        .create(
            NewSystem {
                id: "bench".into(),
                scheme: "oauth2".into(),
                parameters: BTreeMap::new(),
                required: BTreeMap::new(),
                injected: secrets(0),
                expires_at: None,
            },
            "bench",
        )
        .unwrap();
    store
}

fn backend(c: &mut Criterion, name: &str, store: Store) {
    let mut group = c.benchmark_group(format!("store/{name}"));
    group.throughput(Throughput::Elements(1));
    group.bench_function("read (decrypt 3 secrets)", |b| {
        b.iter(|| black_box(store.get("bench").unwrap().unwrap()))
    });
    let version = Cell::new(store.get("bench").unwrap().unwrap().summary.version);
    group.bench_function("compare-and-set write (seal 3 secrets)", |b| {
        b.iter(|| {
            let injected = Injected::new(secrets(version.get() as u64), None);
            let change = Change { injected: Some(injected), ..Change::default() };
            let updated = store.update("bench", version.get(), change, "bench").unwrap();
            version.set(updated.summary.version);
        })
    });
    group.finish();
}

fn sqlite(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    backend(c, "sqlite", seeded(Location::Sqlite(dir.path().join("bench.sqlite3"))));
}

fn postgres(c: &mut Criterion) {
    let Ok(admin) = std::env::var("AUTHPLUG_TEST_PG_URL") else {
        eprintln!(
            "AUTHPLUG_TEST_PG_URL not set: PostgreSQL not measured (use `cargo xtask bench`)"
        );
        return;
    };
    let name = format!("bench_{}", std::process::id());
    let mut client = postgres::Client::connect(&admin, postgres::NoTls).unwrap();
    client.batch_execute(&format!("DROP DATABASE IF EXISTS {name}")).unwrap();
    client.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
    let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    backend(c, "postgres", seeded(Location::Postgres(url)));
}

fn encryption(c: &mut Criterion) {
    let keys = Keyring::fixed(vec![MasterKey::generate().unwrap()]);
    let place = Place { system: "bench", kind: "injected", name: "oauth_access_token" };
    let value = secrets(1)["oauth_access_token"].expose().to_owned();
    let sealed = keys.seal(&place, value.as_bytes()).unwrap();
    let mut group = c.benchmark_group("encryption");
    group.throughput(Throughput::Elements(1));
    group.bench_function("seal one 440-byte value", |b| {
        b.iter(|| black_box(keys.seal(&place, black_box(value.as_bytes())).unwrap()))
    });
    group.bench_function("open one 440-byte value", |b| {
        b.iter(|| black_box(keys.open(&place, black_box(&sealed)).unwrap()))
    });
    group.finish();
}

criterion_group!(benches, encryption, sqlite, postgres);
criterion_main!(benches);
