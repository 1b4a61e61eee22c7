//! What a backend implements: rows in and out of one transaction, split by the table they
//! touch, and a way to run a body in a transaction. The logic over them (sealing, compare-and-
//! set, audit lines) is written once, in the modules above; `sqlite` and `postgres` only move
//! rows, with the same SQL (`schema::sql`).

use crate::crypto::Sealed;
use crate::journal::{Attempt, Finish, Lease};
use crate::listing::Filter;
use crate::model::{AuditEntry, SecretKind, State};
use crate::Result;

/// A system row as the backends read and write it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SystemRow {
    pub id: String,
    pub scheme: String,
    pub state: State,
    pub state_reason: Option<String>,
    /// The parameters as JSON text.
    pub parameters: String,
    pub expires_at: Option<i64>,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_refresh_at: Option<i64>,
    pub failures: i64,
    /// See [`crate::schedule`].
    pub due_at: Option<i64>,
    /// The connector's name from the parameters, for filtering.
    pub connector: Option<String>,
}

/// A secret's name and key, without the value (for listings).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SecretName {
    pub system_id: String,
    pub kind: SecretKind,
    pub name: String,
    pub key_id: String,
}

/// A secret row as the backends read and write it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SecretRow {
    pub system_id: String,
    pub kind: SecretKind,
    pub name: String,
    pub sealed: Sealed,
}

/// A system's row with its secrets' rows (those a read asked for).
pub(crate) type SystemWithSecrets = (SystemRow, Vec<SecretRow>);

/// The `systems` table.
pub(crate) trait SystemRows {
    fn system(&mut self, id: &str) -> Result<Option<SystemRow>>;
    /// Systems with `due_at <= until` after `(after_at, after_id)`, by `(due_at, id)`.
    fn due(
        &mut self,
        until: i64,
        after_at: i64,
        after_id: &str,
        limit: i64,
    ) -> Result<Vec<SystemRow>>;
    /// Active systems issued by `issued_by` after `(after_at, after_id)`, by `(issued, id)`.
    fn idle(
        &mut self,
        issued_by: i64,
        after_at: i64,
        after_id: &str,
        limit: i64,
    ) -> Result<Vec<SystemRow>>;
    /// Systems matching `filter` with ids after `after`, by id.
    fn page(&mut self, filter: &Filter, after: &str, limit: i64) -> Result<Vec<SystemRow>>;
    fn count(&mut self, filter: &Filter) -> Result<u64>;
    /// Sets `due_at` if the system is at `version`.
    fn reschedule(&mut self, id: &str, version: i64, due_at: Option<i64>) -> Result<bool>;
    /// Moves a set `due_at` earlier than `until` to `until` (a backoff).
    fn postpone(&mut self, id: &str, until: i64) -> Result<()>;
    /// How many systems are in each state.
    fn count_by_state(&mut self) -> Result<Vec<(State, u64)>>;
    fn count_by_scheme(&mut self) -> Result<Vec<(String, u64)>>;
    /// False if a system with that id exists.
    fn insert_system(&mut self, row: &SystemRow) -> Result<bool>;
    /// Writes `row` if the stored version is `expected`; false otherwise.
    fn update_system(&mut self, row: &SystemRow, expected: i64) -> Result<bool>;
    /// Deletes the system and its secrets; false if there was none.
    fn delete_system(&mut self, id: &str) -> Result<bool>;
    /// Deletes the system (its secrets go with it) if it is at `version`; false otherwise.
    fn delete_system_at(&mut self, id: &str, version: i64) -> Result<bool>;
}

/// The `secrets` table.
pub(crate) trait SecretRows {
    fn secrets(&mut self, id: &str) -> Result<Vec<SecretRow>>;
    /// The secret names of the systems `ids`, by system id, kind and name.
    fn secret_names(&mut self, ids: &[String]) -> Result<Vec<SecretName>>;
    fn delete_secrets(&mut self, id: &str, kind: SecretKind) -> Result<()>;
    fn put_secret(&mut self, row: &SecretRow) -> Result<()>;
    /// Distinct key ids of all secrets.
    fn key_ids(&mut self) -> Result<Vec<String>>;
    /// Systems with a secret sealed under another key than `key_id`.
    fn systems_not_under(&mut self, key_id: &str) -> Result<Vec<String>>;
}

/// The `audit` table.
pub(crate) trait AuditRows {
    fn append_audit(&mut self, entry: &AuditEntry) -> Result<()>;
    fn audit(&mut self, id: &str) -> Result<Vec<AuditEntry>>;
    /// Deletes at most `limit` audit lines older than `before` (Unix seconds); how many.
    fn prune_audit(&mut self, before: i64, limit: i64) -> Result<u64>;
}

/// The `leases` table.
pub(crate) trait LeaseRows {
    /// Takes or renews the lease if free, expired, or already `holder`'s.
    fn try_lease(&mut self, id: &str, holder: &str, now_ms: i64, until_ms: i64) -> Result<bool>;
    fn release_lease(&mut self, id: &str, holder: &str) -> Result<()>;
    fn lease(&mut self, id: &str) -> Result<Option<Lease>>;
    /// Every lease, with its system id (lapsed ones included).
    fn leases(&mut self) -> Result<Vec<(String, Lease)>>;
    fn leases_of(&mut self, ids: &[String]) -> Result<Vec<(String, Lease)>>;
}

/// The `refresh_attempts` table: the refresh journal.
pub(crate) trait AttemptRows {
    /// Journals a refresh attempt; returns its id.
    fn insert_attempt(
        &mut self,
        id: &str,
        holder: &str,
        from_version: i64,
        at_ms: i64,
    ) -> Result<i64>;
    fn mark_sent(&mut self, attempt: i64, at_ms: i64) -> Result<()>;
    fn finish_attempt(&mut self, attempt: i64, at_ms: i64, finish: &Finish) -> Result<()>;
    /// The newest `limit` attempts of a system, newest first.
    fn attempts(&mut self, id: &str, limit: i64) -> Result<Vec<Attempt>>;
    /// The newest attempt of every system that has one.
    fn latest_attempts(&mut self) -> Result<Vec<Attempt>>;
    fn latest_attempts_of(&mut self, ids: &[String]) -> Result<Vec<Attempt>>;
    /// Deletes at most `limit` finished attempts started before `before_ms` that are not their
    /// system's newest; how many.
    fn prune_journal(&mut self, before_ms: i64, limit: i64) -> Result<u64>;
    /// Forgets a system's attempts older than `below` (an attempt id).
    fn prune_attempts(&mut self, id: &str, below: i64) -> Result<()>;
}

/// The `pending_onboardings` table.
pub(crate) trait PendingRows {
    /// Keeps a pending onboarding (dropping expired ones first); false if the state is taken.
    fn put_pending(
        &mut self,
        state_sha256: &str,
        sealed: &Sealed,
        expires_at_ms: i64,
        now_ms: i64,
    ) -> Result<bool>;
    /// Removes and returns a pending onboarding with its expiry.
    fn take_pending(&mut self, state_sha256: &str) -> Result<Option<(Sealed, i64)>>;
}

/// Every row operation, inside one transaction.
pub(crate) trait Tx:
    SystemRows + SecretRows + AuditRows + LeaseRows + AttemptRows + PendingRows
{
}

impl<T: SystemRows + SecretRows + AuditRows + LeaseRows + AttemptRows + PendingRows> Tx for T {}

/// A backend: runs a body in a transaction, committing if it returns `Ok`.
pub(crate) trait Backend: Send + Sync {
    fn transaction(
        &self,
        write: bool,
        body: &mut dyn FnMut(&mut dyn Tx) -> Result<()>,
    ) -> Result<()>;

    /// The system and its injected secrets, read at once if the backend can without waiting
    /// for anything but its own file (a connection idle now, no network): `None` otherwise.
    /// For callers on threads that must not block.
    fn injected_now(&self, _id: &str) -> Option<Result<Option<SystemWithSecrets>>> {
        None
    }

    /// The system and its injected secrets, waiting for a connection if need be: in one
    /// statement where the backend can (one snapshot without a transaction around it), else in
    /// a read transaction.
    fn injected(&self, id: &str) -> Result<Option<SystemWithSecrets>> {
        injected_in_transaction(self, id)
    }
}

/// [`Backend::injected`] as a read transaction of two statements.
pub(crate) fn injected_in_transaction<B: Backend + ?Sized>(
    backend: &B,
    id: &str,
) -> Result<Option<SystemWithSecrets>> {
    let mut found = None;
    backend.transaction(false, &mut |tx| {
        found = match tx.system(id)? {
            Some(row) => {
                let mut secrets = tx.secrets(id)?;
                secrets.retain(|secret| secret.kind == SecretKind::Injected);
                Some((row, secrets))
            }
            None => None,
        };
        Ok(())
    })?;
    Ok(found)
}

/// An audit row's columns as an entry. The detail is JSON text; text that is not (no authplug
/// writes it) is kept as a string rather than lost.
pub(crate) fn audit_entry(
    system_id: String,
    at: i64,
    actor: String,
    action: String,
    detail: &str,
) -> AuditEntry {
    let detail = serde_json::from_str(detail)
        .unwrap_or_else(|_| serde_json::Value::String(detail.to_owned()));
    AuditEntry { system_id, at, actor, action, detail }
}
