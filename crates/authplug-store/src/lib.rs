//! The credential store: one interface, two real backends.
//!
//! * **SQLite** (bundled, nothing to install), the embedded default: one file, shared safely by
//!   the processes of one machine (WAL, immediate write transactions, `synchronous=FULL`).
//! * **PostgreSQL**, chosen by a `postgres://` URL, shared by several authplug instances.
//!
//! Per system (a connector instance) the store keeps the scheme id, non-secret parameters, the
//! required and injected secrets, the expiry, a lifecycle state, a version for optimistic
//! concurrency, timestamps, and an audit trail (who, what, when; never values).
//!
//! Secret values are sealed with XChaCha20-Poly1305 ([`crypto`]); names and metadata are not.
//! Every operation is synchronous: callers in async code run them on blocking threads, as they do
//! plugin calls. All writes are transactions; [`Store::update`] is a compare-and-set on the
//! version, and [`Store::try_lease`] a per-system lease with expiry for the refresh engine.

pub mod bundle;
pub mod crypto;
mod journal;
mod pending;
mod postgres;
mod schema;
mod sqlite;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use authplug_protocol::Secret;
use serde::{Deserialize, Serialize};
use serde_json::json;

pub use crypto::{Keyring, MasterKey};
pub use journal::{Attempt, Begin, Finish, Lease};

use crypto::{Place, Sealed};

/// Why a store operation failed. Each displays as one line that names the problem and never a
/// secret value.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreError {
    /// The store file or folder cannot be used.
    Io(String),
    /// The database is damaged (a truncated or overwritten SQLite file).
    Corrupt(String),
    /// The master key source is unusable.
    Key(String),
    /// Values are sealed under keys the keyring does not have.
    WrongKey {
        needed: Vec<String>,
        have: Vec<String>,
    },
    /// A ciphertext does not authenticate at its place: tampered with, or moved from another row.
    Tampered(String),
    /// The database was migrated by a newer authplug.
    SchemaTooNew {
        found: i64,
        known: i64,
    },
    NotFound(String),
    Exists(String),
    /// Compare-and-set lost: someone else wrote first.
    VersionConflict {
        id: String,
        expected: i64,
        actual: i64,
    },
    /// Any other database error.
    Database(String),
    /// A backup bundle is unreadable.
    Bundle(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Io(m) => write!(f, "store unusable: {m}"),
            StoreError::Corrupt(m) => write!(f, "store damaged: {m}"),
            StoreError::Key(m) => write!(f, "master key: {m}"),
            StoreError::WrongKey { needed, have } => write!(
                f,
                "wrong master key: values are sealed under {}, but the keyring has {} \
                 (check AUTHPLUG_MASTER_KEY or the key file)",
                needed.join(", "),
                have.join(", ")
            ),
            StoreError::Tampered(place) => write!(
                f,
                "the {place} does not decrypt: its ciphertext was tampered with or moved from \
                 another row"
            ),
            StoreError::SchemaTooNew { found, known } => write!(
                f,
                "the store's schema is version {found}, newer than this authplug knows ({known}): \
                 upgrade authplug"
            ),
            StoreError::NotFound(id) => write!(f, "no system `{id}`"),
            StoreError::Exists(id) => write!(f, "system `{id}` already exists"),
            StoreError::VersionConflict { id, expected, actual } => write!(
                f,
                "system `{id}` changed meanwhile: expected version {expected}, found {actual}"
            ),
            StoreError::Database(m) => write!(f, "database error: {m}"),
            StoreError::Bundle(m) => write!(f, "backup bundle: {m}"),
        }
    }
}

impl std::error::Error for StoreError {}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Where a store lives.
#[derive(Clone, PartialEq)]
pub enum Location {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Location {
    /// A `postgres://` or `postgresql://` URL, or else a SQLite file path.
    pub fn parse(text: &str) -> Self {
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            Location::Postgres(text.to_owned())
        } else {
            Location::Sqlite(PathBuf::from(text))
        }
    }

    /// `$XDG_DATA_HOME/authplug/store.sqlite3` (`~/.local/share/authplug/store.sqlite3`).
    pub fn default_sqlite() -> Self {
        Location::Sqlite(data_dir().join("store.sqlite3"))
    }
}

/// Shows a PostgreSQL URL without its password.
impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Sqlite(path) => write!(f, "{}", path.display()),
            Location::Postgres(url) => match url.split_once('@') {
                Some((credentials, rest)) => match credentials.rsplit_once(':') {
                    Some((user, _password)) if user.contains("//") && !user.ends_with('/') => {
                        write!(f, "{user}:***@{rest}")
                    }
                    _ => write!(f, "{url}"),
                },
                None => write!(f, "{url}"),
            },
        }
    }
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Location({self})")
    }
}

/// `$XDG_DATA_HOME/authplug`, or `~/.local/share/authplug`.
pub fn data_dir() -> PathBuf {
    xdg_dir("XDG_DATA_HOME", ".local/share")
}

/// `$XDG_CONFIG_HOME/authplug`, or `~/.config/authplug`: where the key file lives by default,
/// apart from the data, so that a copy of the data folder does not carry its key.
pub fn config_dir() -> PathBuf {
    xdg_dir("XDG_CONFIG_HOME", ".config")
}

fn xdg_dir(variable: &str, fallback: &str) -> PathBuf {
    let base = std::env::var_os(variable)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(fallback)))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("authplug")
}

/// The lifecycle state of a stored credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Active,
    Refreshing,
    NeedsReauth,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Active => "active",
            State::Refreshing => "refreshing",
            State::NeedsReauth => "needs_reauth",
        }
    }

    fn parse(text: &str) -> Result<Self> {
        match text {
            "active" => Ok(State::Active),
            "refreshing" => Ok(State::Refreshing),
            "needs_reauth" => Ok(State::NeedsReauth),
            other => {
                Err(StoreError::Corrupt(format!("unknown state {other:?} in the systems table")))
            }
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which set a secret belongs to.
pub const REQUIRED: &str = "required";
pub const INJECTED: &str = "injected";

/// A system as stored, with its secrets decrypted.
#[derive(Debug, Clone, PartialEq)]
pub struct SystemRecord {
    pub summary: SystemSummary,
    pub required: BTreeMap<String, Secret>,
    pub injected: BTreeMap<String, Secret>,
}

/// A system's metadata: everything but the values.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SystemSummary {
    pub id: String,
    pub scheme: String,
    pub state: State,
    pub state_reason: Option<String>,
    pub parameters: BTreeMap<String, serde_json::Value>,
    /// When the injected secrets stop working, Unix seconds.
    pub expires_at: Option<i64>,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_refresh_at: Option<i64>,
    pub failures: i64,
    /// Secret names, `required.x` / `injected.y`, for listings.
    pub secret_names: Vec<String>,
    /// Key ids the values are sealed under.
    pub key_ids: Vec<String>,
}

/// A system to create.
#[derive(Debug, Clone, Default)]
pub struct NewSystem {
    pub id: String,
    pub scheme: String,
    pub parameters: BTreeMap<String, serde_json::Value>,
    pub required: BTreeMap<String, Secret>,
    pub injected: BTreeMap<String, Secret>,
    pub expires_at: Option<i64>,
}

/// A change to a system; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct Change {
    pub scheme: Option<String>,
    pub parameters: Option<BTreeMap<String, serde_json::Value>>,
    /// Replaces the whole set of required secrets.
    pub required: Option<BTreeMap<String, Secret>>,
    /// Replaces the whole set of injected secrets.
    pub injected: Option<BTreeMap<String, Secret>>,
    pub expires_at: Option<Option<i64>>,
    pub state: Option<(State, Option<String>)>,
    pub last_refresh_at: Option<i64>,
    pub failures: Option<i64>,
}

/// One line of the audit trail: who did what to which system, when. Never a value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub system_id: String,
    /// Unix seconds.
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub detail: serde_json::Value,
}

/// What a key rotation did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rotation {
    pub current_key: String,
    /// Whether it finished an interrupted rotation instead of starting one.
    pub resumed: bool,
    pub systems_rekeyed: usize,
    pub retired_keys: Vec<String>,
}

/// A system row as the backends read and write it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SystemRow {
    pub id: String,
    pub scheme: String,
    pub state: String,
    pub state_reason: Option<String>,
    pub parameters: String,
    pub expires_at: Option<i64>,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_refresh_at: Option<i64>,
    pub failures: i64,
}

/// A secret row as the backends read and write it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SecretRow {
    pub system_id: String,
    pub kind: String,
    pub name: String,
    pub sealed: Sealed,
}

/// The row operations each backend implements inside one transaction.
pub(crate) trait Tx {
    fn system(&mut self, id: &str) -> Result<Option<SystemRow>>;
    fn systems(&mut self) -> Result<Vec<SystemRow>>;
    fn secrets(&mut self, id: &str) -> Result<Vec<SecretRow>>;
    /// False if a system with that id exists.
    fn insert_system(&mut self, row: &SystemRow) -> Result<bool>;
    /// Writes `row` if the stored version is `expected`; false otherwise.
    fn update_system(&mut self, row: &SystemRow, expected: i64) -> Result<bool>;
    fn delete_system(&mut self, id: &str) -> Result<bool>;
    fn delete_secrets(&mut self, id: &str, kind: &str) -> Result<()>;
    fn put_secret(&mut self, row: &SecretRow) -> Result<()>;
    fn append_audit(&mut self, entry: &AuditEntry) -> Result<()>;
    fn audit(&mut self, id: &str) -> Result<Vec<AuditEntry>>;
    /// Distinct key ids of all secrets.
    fn key_ids(&mut self) -> Result<Vec<String>>;
    /// Systems with a secret sealed under another key than `key_id`.
    fn systems_not_under(&mut self, key_id: &str) -> Result<Vec<String>>;
    /// Takes or renews the lease if free, expired, or already `holder`'s.
    fn try_lease(&mut self, id: &str, holder: &str, now_ms: i64, until_ms: i64) -> Result<bool>;
    fn release_lease(&mut self, id: &str, holder: &str) -> Result<()>;
    fn lease(&mut self, id: &str) -> Result<Option<Lease>>;
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
    /// Forgets a system's attempts older than `below` (an attempt id).
    fn prune_attempts(&mut self, id: &str, below: i64) -> Result<()>;

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

/// A backend: runs a body in a transaction, committing if it returns `Ok`.
pub(crate) trait Backend: Send + Sync {
    fn transaction(
        &self,
        write: bool,
        body: &mut dyn FnMut(&mut dyn Tx) -> Result<()>,
    ) -> Result<()>;
}

/// The store.
pub struct Store {
    backend: Box<dyn Backend>,
    keys: Keyring,
    location: Location,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store").field("location", &self.location).finish()
    }
}

impl Store {
    /// Opens (creating it if needed) the store at `location`, applies pending migrations, and
    /// checks that `keys` opens what is stored. Fails without writing anything when it does not.
    pub fn open(location: &Location, keys: Keyring) -> Result<Self> {
        let backend: Box<dyn Backend> = match location {
            Location::Sqlite(path) => Box::new(sqlite::SqliteBackend::open(path)?),
            Location::Postgres(url) => Box::new(postgres::PgBackend::connect(url)?),
        };
        let store = Self { backend, keys, location: location.clone() };
        let in_use = store.tx(false, |tx| tx.key_ids())?;
        let missing: Vec<String> = in_use.into_iter().filter(|id| !store.keys.has(id)).collect();
        if !missing.is_empty() {
            return Err(StoreError::WrongKey { needed: missing, have: store.keys.ids() });
        }
        Ok(store)
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    pub fn keyring(&self) -> &Keyring {
        &self.keys
    }

    fn tx<R>(&self, write: bool, body: impl FnOnce(&mut dyn Tx) -> Result<R>) -> Result<R> {
        let mut body = Some(body);
        let mut out = None;
        self.backend.transaction(write, &mut |tx| {
            let body = body.take().expect("a transaction body runs once");
            out = Some(body(tx)?);
            Ok(())
        })?;
        Ok(out.expect("the body ran"))
    }

    /// Stores a new onboarding: creates the system or, with `replace`, gives the existing one
    /// the onboarding's scheme, parameters and secrets, active again and without failures.
    /// Without `replace`, a taken id is [`StoreError::Exists`]. Answers the record and whether
    /// it replaced one.
    pub fn onboarded(
        &self,
        new: NewSystem,
        replace: bool,
        actor: &str,
    ) -> Result<(SystemRecord, bool)> {
        // Kept for a replacement only.
        let again = replace.then(|| new.clone());
        match (self.create(new, actor), again) {
            (Ok(record), _) => Ok((record, false)),
            (Err(StoreError::Exists(id)), Some(new)) => {
                let current = self.get(&id)?.ok_or_else(|| StoreError::NotFound(id.clone()))?;
                let change = Change {
                    scheme: Some(new.scheme),
                    parameters: Some(new.parameters),
                    required: Some(new.required),
                    injected: Some(new.injected),
                    expires_at: Some(new.expires_at),
                    state: Some((State::Active, None)),
                    last_refresh_at: Some(now_secs()),
                    failures: Some(0),
                };
                Ok((self.update(&id, current.summary.version, change, actor)?, true))
            }
            (Err(other), _) => Err(other),
        }
    }

    /// Creates a system; fails with [`StoreError::Exists`] if the id is taken.
    pub fn create(&self, new: NewSystem, actor: &str) -> Result<SystemRecord> {
        let now = now_secs();
        let row = SystemRow {
            id: new.id.clone(),
            scheme: new.scheme.clone(),
            state: State::Active.as_str().to_owned(),
            state_reason: None,
            parameters: serde_json::to_string(&new.parameters).expect("JSON values serialise"),
            expires_at: new.expires_at,
            version: 1,
            created_at: now,
            updated_at: now,
            last_refresh_at: None,
            failures: 0,
        };
        let sealed = self.seal_all(&new.id, &new.required, &new.injected)?;
        self.tx(true, |tx| {
            if !tx.insert_system(&row)? {
                return Err(StoreError::Exists(new.id.clone()));
            }
            for secret in &sealed {
                tx.put_secret(secret)?;
            }
            tx.append_audit(&audit(
                &new.id,
                actor,
                "created",
                json!({
                    "scheme": new.scheme, "version": 1, "secrets": names(&sealed),
                }),
            ))
        })?;
        self.get(&new.id)?.ok_or_else(|| StoreError::NotFound(new.id.clone()))
    }

    /// The system with its secrets decrypted, or `None`. Any value that does not decrypt fails the
    /// whole read: nothing is returned half.
    pub fn get(&self, id: &str) -> Result<Option<SystemRecord>> {
        let found = self.tx(false, |tx| {
            let Some(row) = tx.system(id)? else { return Ok(None) };
            Ok(Some((row, tx.secrets(id)?)))
        })?;
        found.map(|(row, secrets)| self.record(row, secrets)).transpose()
    }

    /// The system's version, or `None`: a cheap read for callers that wait for a change.
    pub fn version(&self, id: &str) -> Result<Option<i64>> {
        self.tx(false, |tx| Ok(tx.system(id)?.map(|row| row.version)))
    }

    /// Metadata of every system, by id; no value is decrypted.
    /// How many systems are in each state (`active`, `needs_reauth`), from the system rows alone:
    /// cheap enough for readiness probes and metrics scrapes.
    pub fn count_by_state(&self) -> Result<BTreeMap<String, u64>> {
        self.tx(false, |tx| {
            let mut counts = BTreeMap::new();
            for row in tx.systems()? {
                *counts.entry(row.state).or_default() += 1;
            }
            Ok(counts)
        })
    }

    pub fn list(&self) -> Result<Vec<SystemSummary>> {
        let rows = self.tx(false, |tx| {
            let systems = tx.systems()?;
            let mut out = Vec::with_capacity(systems.len());
            for row in systems {
                let secrets = tx.secrets(&row.id)?;
                out.push((row, secrets));
            }
            Ok(out)
        })?;
        rows.into_iter().map(|(row, secrets)| summary(row, &secrets)).collect()
    }

    /// Compare-and-set: applies `change` if the system is still at `expected_version`, and returns
    /// the new record (version `expected_version + 1`).
    pub fn update(
        &self,
        id: &str,
        expected_version: i64,
        change: Change,
        actor: &str,
    ) -> Result<SystemRecord> {
        let sealed_required =
            change.required.as_ref().map(|r| self.seal_kind(id, REQUIRED, r)).transpose()?;
        let sealed_injected =
            change.injected.as_ref().map(|i| self.seal_kind(id, INJECTED, i)).transpose()?;
        let (row, secrets) = self.tx(true, |tx| {
            let next = write_change(
                tx,
                id,
                expected_version,
                &change,
                [(REQUIRED, &sealed_required), (INJECTED, &sealed_injected)],
                actor,
            )?;
            Ok((next, tx.secrets(id)?))
        })?;
        self.record(row, secrets)
    }

    /// Deletes a system and its secrets; its audit trail stays. False if there was none.
    pub fn delete(&self, id: &str, actor: &str) -> Result<bool> {
        self.tx(true, |tx| {
            let existed = tx.delete_system(id)?;
            if existed {
                tx.append_audit(&audit(id, actor, "deleted", json!({})))?;
            }
            Ok(existed)
        })
    }

    /// Records an audited event without changing the system (e.g. values revealed to a user).
    pub fn record_event(
        &self,
        id: &str,
        actor: &str,
        action: &str,
        detail: serde_json::Value,
    ) -> Result<()> {
        self.tx(true, |tx| tx.append_audit(&audit(id, actor, action, detail)))
    }

    /// The audit trail of a system, oldest first.
    pub fn audit(&self, id: &str) -> Result<Vec<AuditEntry>> {
        self.tx(false, |tx| tx.audit(id))
    }

    /// Takes the system's lease for `ttl` if it is free, expired, or already `holder`'s (which
    /// renews it). Works across processes (SQLite) and hosts (PostgreSQL); a crashed holder's
    /// lease lapses after `ttl`. Uses the local clock: keep hosts' clocks within a small part of
    /// `ttl` of each other.
    pub fn try_lease(&self, id: &str, holder: &str, ttl: Duration) -> Result<bool> {
        self.try_lease_at(id, holder, now_ms(), ttl)
    }

    /// [`Store::try_lease`] at a given time (Unix milliseconds), for callers with their own clock.
    pub fn try_lease_at(&self, id: &str, holder: &str, now_ms: i64, ttl: Duration) -> Result<bool> {
        let until = now_ms.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2));
        self.tx(true, |tx| tx.try_lease(id, holder, now_ms, until))
    }

    /// Gives the lease back if `holder` has it.
    pub fn release_lease(&self, id: &str, holder: &str) -> Result<()> {
        self.tx(true, |tx| tx.release_lease(id, holder))
    }

    /// Re-encrypts every value under a new current key, one system per transaction, so writers go
    /// on meanwhile. With a key file, the new key is written (beside the old ones) before any
    /// value is re-encrypted, and an interrupted rotation is finished by the next call instead of
    /// starting another. Keys that no value uses any more are then dropped from the key file.
    pub fn rotate_key(&self, progress: &mut dyn FnMut(usize, usize)) -> Result<Rotation> {
        let current = self.keys.current();
        let pending = self.tx(false, |tx| tx.systems_not_under(current.id()))?;
        let resumed = !pending.is_empty();
        let target = if resumed {
            current
        } else {
            match self.keys.source() {
                crypto::KeySource::Env => {
                    return Err(StoreError::Key(format!(
                        "every value is already sealed under {}; to rotate, put a new key first in \
                         {} (new,old) and run this again",
                        current.id(),
                        crypto::MASTER_KEY_ENV
                    )));
                }
                _ => self.keys.begin_rotation()?,
            }
        };
        let todo =
            if resumed { pending } else { self.tx(false, |tx| tx.systems_not_under(target.id()))? };
        let total = todo.len();
        for (done, id) in todo.iter().enumerate() {
            self.rekey(id, target.id())?;
            progress(done + 1, total);
        }
        let in_use = self.tx(false, |tx| tx.key_ids())?;
        let retired = self.keys.retire_except(&in_use)?;
        Ok(Rotation {
            current_key: target.id().to_owned(),
            resumed,
            systems_rekeyed: total,
            retired_keys: retired,
        })
    }

    fn rekey(&self, id: &str, target: &str) -> Result<()> {
        self.tx(true, |tx| {
            // Lock the system row first (a same-version write), so a concurrent refresh that
            // stores new secrets either commits before these are read or waits until the rekey
            // commits; re-sealing never writes an older value over a newer one (PostgreSQL runs
            // writes under READ COMMITTED; SQLite's write transactions are serial anyway).
            let Some(row) = tx.system(id)? else { return Ok(()) };
            if !tx.update_system(&row, row.version)? {
                return Err(StoreError::VersionConflict {
                    id: id.to_owned(),
                    expected: row.version,
                    actual: tx.system(id)?.map(|r| r.version).unwrap_or(-1),
                });
            }
            let mut moved = 0;
            for row in tx.secrets(id)? {
                if row.sealed.key_id == target {
                    continue;
                }
                let place = Place { system: id, kind: &row.kind, name: &row.name };
                let plain = self.keys.open(&place, &row.sealed)?;
                let sealed = self.keys.seal(&place, &plain)?;
                tx.put_secret(&SecretRow { sealed, ..row })?;
                moved += 1;
            }
            if moved > 0 {
                tx.append_audit(&audit(
                    id,
                    "authplug",
                    "rekeyed",
                    json!({"key": target, "values": moved}),
                ))?;
            }
            Ok(())
        })
    }

    fn seal_all(
        &self,
        id: &str,
        required: &BTreeMap<String, Secret>,
        injected: &BTreeMap<String, Secret>,
    ) -> Result<Vec<SecretRow>> {
        let mut rows = self.seal_kind(id, REQUIRED, required)?;
        rows.extend(self.seal_kind(id, INJECTED, injected)?);
        Ok(rows)
    }

    fn seal_kind(
        &self,
        id: &str,
        kind: &str,
        values: &BTreeMap<String, Secret>,
    ) -> Result<Vec<SecretRow>> {
        values
            .iter()
            .map(|(name, value)| {
                let place = Place { system: id, kind, name };
                Ok(SecretRow {
                    system_id: id.to_owned(),
                    kind: kind.to_owned(),
                    name: name.clone(),
                    sealed: self.keys.seal(&place, value.expose().as_bytes())?,
                })
            })
            .collect()
    }

    fn record(&self, row: SystemRow, secrets: Vec<SecretRow>) -> Result<SystemRecord> {
        let mut required = BTreeMap::new();
        let mut injected = BTreeMap::new();
        for secret in &secrets {
            let place = Place { system: &row.id, kind: &secret.kind, name: &secret.name };
            let plain = self.keys.open(&place, &secret.sealed)?;
            let text = String::from_utf8(plain.to_vec()).map_err(|_| {
                StoreError::Tampered(format!(
                    "{} secret `{}` of system `{}`",
                    secret.kind, secret.name, row.id
                ))
            })?;
            let set = if secret.kind == REQUIRED { &mut required } else { &mut injected };
            set.insert(secret.name.clone(), Secret::new(text));
        }
        Ok(SystemRecord { summary: summary(row, &secrets)?, required, injected })
    }
}

/// The compare-and-set of [`Store::update`] inside a transaction: checks the version, writes the
/// row and the sealed secret sets, and appends the audit line. Returns the new row.
fn write_change(
    tx: &mut dyn Tx,
    id: &str,
    expected_version: i64,
    change: &Change,
    sealed: [(&str, &Option<Vec<SecretRow>>); 2],
    actor: &str,
) -> Result<SystemRow> {
    let current = tx.system(id)?.ok_or_else(|| StoreError::NotFound(id.to_owned()))?;
    if current.version != expected_version {
        return Err(StoreError::VersionConflict {
            id: id.to_owned(),
            expected: expected_version,
            actual: current.version,
        });
    }
    let mut next = current.clone();
    let mut changed = Vec::new();
    if let Some(scheme) = &change.scheme {
        next.scheme = scheme.clone();
        changed.push("scheme".to_owned());
    }
    if let Some(parameters) = &change.parameters {
        next.parameters = serde_json::to_string(parameters).expect("JSON values serialise");
        changed.push("parameters".to_owned());
    }
    if let Some(expires_at) = change.expires_at {
        next.expires_at = expires_at;
        changed.push("expires_at".to_owned());
    }
    if let Some((state, reason)) = &change.state {
        next.state = state.as_str().to_owned();
        next.state_reason = reason.clone();
        changed.push(format!("state={state}"));
    }
    if let Some(at) = change.last_refresh_at {
        next.last_refresh_at = Some(at);
    }
    if let Some(failures) = change.failures {
        next.failures = failures;
    }
    next.version = expected_version + 1;
    next.updated_at = now_secs();
    if !tx.update_system(&next, expected_version)? {
        let actual = tx.system(id)?.map(|r| r.version).unwrap_or(-1);
        return Err(StoreError::VersionConflict {
            id: id.to_owned(),
            expected: expected_version,
            actual,
        });
    }
    for (kind, sealed) in sealed {
        if let Some(sealed) = sealed {
            tx.delete_secrets(id, kind)?;
            for secret in sealed {
                tx.put_secret(secret)?;
            }
            changed.extend(names(sealed));
        }
    }
    tx.append_audit(&audit(
        id,
        actor,
        "updated",
        json!({
            "version": next.version, "changed": changed,
        }),
    ))?;
    Ok(next)
}

fn summary(row: SystemRow, secrets: &[SecretRow]) -> Result<SystemSummary> {
    let parameters = serde_json::from_str(&row.parameters).map_err(|_| {
        StoreError::Corrupt(format!("the parameters of system `{}` are not JSON", row.id))
    })?;
    let mut key_ids: Vec<String> = secrets.iter().map(|s| s.sealed.key_id.clone()).collect();
    key_ids.sort();
    key_ids.dedup();
    Ok(SystemSummary {
        state: State::parse(&row.state)?,
        id: row.id,
        scheme: row.scheme,
        state_reason: row.state_reason,
        parameters,
        expires_at: row.expires_at,
        version: row.version,
        created_at: row.created_at,
        updated_at: row.updated_at,
        last_refresh_at: row.last_refresh_at,
        failures: row.failures,
        secret_names: names(secrets),
        key_ids,
    })
}

fn names(secrets: &[SecretRow]) -> Vec<String> {
    secrets.iter().map(|s| format!("{}.{}", s.kind, s.name)).collect()
}

fn audit(id: &str, actor: &str, action: &str, detail: serde_json::Value) -> AuditEntry {
    AuditEntry {
        system_id: id.to_owned(),
        at: now_secs(),
        actor: actor.to_owned(),
        action: action.to_owned(),
        detail,
    }
}

pub fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Makes sure a SQLite store's folder exists and is private.
pub(crate) fn prepare_sqlite_dir(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crypto::create_private_dir(dir)
            .map_err(|e| StoreError::Io(format!("cannot create {}: {e}", dir.display())))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_urls_display_without_password() {
        let location = Location::parse("postgres://authplug:hunter2@db.internal:5432/authplug");
        assert_eq!(location.to_string(), "postgres://authplug:***@db.internal:5432/authplug");
        assert!(!format!("{location:?}").contains("hunter2"));
        assert!(matches!(Location::parse("/var/lib/authplug/store.sqlite3"), Location::Sqlite(_)));
    }
}
