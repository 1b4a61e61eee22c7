//! A SQLite store's file as an operator's disk may leave it: empty, truncated, not a database,
//! and new files created private.

mod support;

use authplug_store::{Keyring, StoreError};
use support::{system, Backend, Kind};

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
