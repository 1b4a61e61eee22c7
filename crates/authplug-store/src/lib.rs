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
//! version, and [`Store::begin_refresh`] takes a per-system lease with expiry for the refresh
//! engine.
//!
//! Modules by job: [`model`] (what callers see), `systems` (create, read, compare-and-set,
//! delete, audit), [`listing`] (pages, filters, counts), [`schedule`] (the due index the sweep
//! reads), `retention` (pruning the audit trail and the journal), `journal` (leases and the
//! refresh journal), `pending` (onboardings waiting
//! for a consent), `rotation` (key rotation), [`bundle`] (backups), `backend` (the row traits
//! the two backends implement), `schema` (migrations and SQL), [`clock`], [`location`].

pub mod bundle;
pub mod clock;
pub mod crypto;
pub mod listing;
pub mod location;
pub mod model;
pub mod schedule;

mod backend;
mod error;
mod guard;
mod id;
mod journal;
mod pending;
mod postgres;
mod retention;
mod rotation;
mod schema;
mod sqlite;
mod systems;
mod xchacha;

use std::fmt;
use std::sync::Arc;

pub use clock::{now_ms, now_secs, Clock, ManualClock, SystemClock};
pub use crypto::{Keyring, MasterKey};
pub use error::{chain, Cause, Result, StoreError};
pub use guard::{check_private_file, tighten, Holds};
pub use id::{check_system_id, escaped, MAX_SYSTEM_ID};
pub use journal::{Attempt, Begin, Finish, Lease, Outcome};
pub use listing::{Cursor, Filter, Page, MAX_PAGE};
pub use location::{config_dir, data_dir, Location};
pub use model::{
    AuditEntry, Change, Deletion, Injected, Lifecycle, NewSystem, Onboarded, SecretKind, State,
    SystemRecord, SystemSummary, CONNECTOR_PARAMETER,
};
pub use retention::{Pruned, Retention};
pub use rotation::Rotation;
pub use schedule::Walk;

use backend::{Backend, Tx};

pub use postgres::DEFAULT_SESSIONS;

/// How [`Store::open_with_options`] opens a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenOptions {
    /// PostgreSQL sessions this process opens at most, as concurrent calls need them (at least
    /// one; [`DEFAULT_SESSIONS`] by default). No meaning for SQLite.
    pub pg_sessions: usize,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self { pg_sessions: DEFAULT_SESSIONS }
    }
}

/// The store.
pub struct Store {
    backend: Box<dyn Backend>,
    keys: Keyring,
    location: Location,
    clock: Arc<dyn Clock>,
    /// Why the last write failed, while the store cannot be written (a full or read-only file
    /// system, a database gone); cleared by the next write that succeeds.
    write_failure: std::sync::Mutex<Option<String>>,
    /// Write transactions committed through this store.
    writes: std::sync::atomic::AtomicU64,
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
        Self::open_with_options(location, keys, OpenOptions::default())
    }

    /// [`Store::open`] with `options`.
    pub fn open_with_options(
        location: &Location,
        keys: Keyring,
        options: OpenOptions,
    ) -> Result<Self> {
        let backend: Box<dyn Backend> = match location {
            Location::Sqlite(path) => Box::new(sqlite::SqliteBackend::open(path)?),
            Location::Postgres(url) => {
                Box::new(postgres::PgBackend::connect(url, options.pg_sessions)?)
            }
        };
        let store = Self {
            backend,
            keys,
            location: location.clone(),
            clock: Arc::new(SystemClock),
            write_failure: std::sync::Mutex::new(None),
            writes: std::sync::atomic::AtomicU64::new(0),
        };
        let in_use = store.tx(false, |tx| tx.key_ids())?;
        let missing: Vec<String> = in_use.into_iter().filter(|id| !store.keys.has(id)).collect();
        if !missing.is_empty() {
            return Err(StoreError::WrongKey { needed: missing, have: store.keys.ids() });
        }
        Ok(store)
    }

    /// The store reading time from `clock` (tests; see [`clock`] for why only they may).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The clock the store stamps and compares times with; the engine reads the same one.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    pub fn keyring(&self) -> &Keyring {
        &self.keys
    }

    /// Why writes fail for now (the last write failed with [`StoreError::Unavailable`] and none
    /// succeeded since), for readiness probes.
    pub fn write_failure(&self) -> Option<String> {
        self.write_failure.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// How many write transactions this store has committed: what a cache of something
    /// computed from the store (counts) compares to know whether this process changed it since.
    pub fn writes(&self) -> u64 {
        self.writes.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn tx<R>(&self, write: bool, body: impl FnOnce(&mut dyn Tx) -> Result<R>) -> Result<R> {
        let mut body = Some(body);
        let mut out = None;
        let done = self.backend.transaction(write, &mut |tx| {
            let body = body.take().expect("a transaction body runs once");
            out = Some(body(tx)?);
            Ok(())
        });
        if write {
            let failure = match &done {
                Err(error @ StoreError::Unavailable { .. }) => Some(chain(error)),
                Err(_) => return done.map(|()| out.expect("the body ran")),
                Ok(()) => {
                    self.writes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    None
                }
            };
            *self.write_failure.lock().unwrap_or_else(|p| p.into_inner()) = failure;
        }
        done?;
        Ok(out.expect("the body ran"))
    }
}
