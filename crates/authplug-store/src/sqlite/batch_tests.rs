//! A batch's first member runs without a savepoint: what it wrote is gone when it fails or
//! panics, and the store goes on.

use std::panic::AssertUnwindSafe;

use super::*;
use crate::model::AuditEntry;

fn entry(action: &str) -> AuditEntry {
    AuditEntry {
        system_id: "s".into(),
        at: 1,
        actor: "test".into(),
        action: action.into(),
        detail: serde_json::json!({}),
    }
}

fn actions(backend: &SqliteBackend) -> Vec<String> {
    let mut actions = Vec::new();
    backend
        .transaction(false, &mut |tx| {
            actions = tx.audit("s")?.into_iter().map(|e| e.action).collect();
            Ok(())
        })
        .unwrap();
    actions
}

#[test]
fn a_first_member_that_fails_or_panics_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let backend = SqliteBackend::open(&dir.path().join("store.sqlite3")).unwrap();
    let failed = backend.transaction(true, &mut |tx| {
        tx.append_audit(&entry("failed"))?;
        Err(StoreError::database("failed on purpose"))
    });
    assert!(failed.is_err());
    let panicked = std::panic::catch_unwind(AssertUnwindSafe(|| {
        backend.transaction(true, &mut |tx| {
            tx.append_audit(&entry("panicked"))?;
            panic!("panicked on purpose")
        })
    }));
    assert!(panicked.is_err());
    backend.transaction(true, &mut |tx| tx.append_audit(&entry("kept"))).unwrap();
    assert_eq!(actions(&backend), ["kept"]);
}
