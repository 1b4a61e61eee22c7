//! The SQLite backend: one file, WAL journal, `synchronous=FULL`, and immediate transactions for
//! writes, so that several processes on one machine can share it without lost updates.
//!
//! Transactions of concurrent callers in one process are committed as a group: the caller that
//! finds the connection free opens a transaction, every caller that queued behind it runs its
//! body in that transaction under its own savepoint, and the last one in the queue commits for
//! all. One fsync then makes a whole batch durable, instead of one fsync per caller in turn,
//! which is what bounded the refresh engine (three journaled writes per refresh). Nobody is told
//! "done" before the commit that holds their writes has returned, and a body that fails is rolled
//! back to its savepoint without touching the others.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use crate::backend::{Backend, SystemWithSecrets, Tx};
use crate::schema::{self, Dialect};
use crate::{Result, StoreError};

#[cfg(test)]
mod batch_tests;
mod fallback;
mod readers;
mod rows;

use readers::Readers;
use rows::SqliteTx;

pub(crate) struct SqliteBackend {
    /// Idle connections for reads of their own, when the file could be opened for writing:
    /// a read never waits behind a batch of writes (or a long count behind the writes), and
    /// sees what was committed when it began. Declared first, so dropped first: the writing
    /// connection closes last, and folds the write-ahead log in and removes it as it does.
    readers: Option<Readers>,
    state: Mutex<Group>,
    /// Signalled whenever a batch has been committed or rolled back.
    settled: Condvar,
    /// Callers waiting for `state`: while there are some, the open batch stays open for them.
    queued: AtomicUsize,
    path: PathBuf,
}

/// What every connection sets: temporary tables and indexes (sorting, a statement's journal)
/// in memory, not in files created and deleted under `/var/tmp` (a few per refresh otherwise).
const SHARED_PRAGMAS: &str = "PRAGMA temp_store = MEMORY;";

/// Files of at most this many pages (64 MiB of 4 KiB pages, about 40,000 systems) are checked
/// whole when opened.
const QUICK_CHECK_PAGES: i64 = 16_384;

/// At most this many callers share one commit, so a steady stream of callers cannot keep a
/// batch (and its earliest members) waiting forever.
const MAX_BATCH: usize = 64;

/// The connection and the batch bookkeeping, behind one mutex.
struct Group {
    connection: Connection,
    /// The batch whose transaction is open, and how many callers it holds.
    open: Option<(u64, usize)>,
    next_batch: u64,
    /// The newest batch that has settled (committed or rolled back); batches settle in order.
    settled: u64,
    /// Batches whose commit failed: the error, and how many members have yet to read it.
    failed: HashMap<u64, (StoreError, usize)>,
}

fn database_error(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |e| classify(path, e)
}

/// A damaged file is named as such, and so is a value no authplug writes; a file that cannot be
/// written for now (a full or read-only file system, a lock held too long) is unavailable;
/// anything else is a database error.
fn classify(path: &Path, error: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode::{
        CannotOpen, DatabaseBusy, DatabaseCorrupt, DatabaseLocked, DiskFull, NotADatabase,
        ReadOnly, SystemIoFailure,
    };
    if let rusqlite::Error::FromSqlConversionFailure(_, _, inner) = &error {
        if let Some(damage) = inner.downcast_ref::<StoreError>() {
            return damage.clone();
        }
    }
    let what = path.display().to_string();
    match error.sqlite_error_code() {
        Some(DatabaseCorrupt | NotADatabase) => StoreError::Corrupt {
            what: format!("{what} is not a readable SQLite database (truncated or overwritten?)"),
            source: Some(std::sync::Arc::new(error)),
        },
        Some(DiskFull) => StoreError::unavailable(
            format!("{what}: the file system is full: changes fail until space is freed"),
            Some(error),
        ),
        Some(ReadOnly) => StoreError::unavailable(
            format!("{what} cannot be written (a read-only file system or file): changes fail"),
            Some(error),
        ),
        Some(DatabaseBusy | DatabaseLocked) => StoreError::unavailable(
            format!("{what} is locked by another process for longer than the busy timeout (30 s)"),
            Some(error),
        ),
        Some(SystemIoFailure | CannotOpen) => StoreError::unavailable(
            format!("{what}: disk I/O error (a full, read-only or failing disk?)"),
            Some(error),
        ),
        _ => StoreError::database_because(what, error),
    }
}

impl SqliteBackend {
    pub(crate) fn open(path: &Path) -> Result<Self> {
        crate::location::prepare_sqlite_dir(path)?;
        create_private_file(path)?;
        let mut readers = Some(Readers::default());
        let connection = match connect(path, Access::Write) {
            Ok(connection) => connection,
            // A store that cannot be written for now (a full or read-only file system) is still
            // read; every change fails, and says why.
            Err(writable @ StoreError::Unavailable { .. }) => {
                let connection = match connect(path, Access::Read) {
                    Ok(connection) => connection,
                    Err(_) => fallback::unwritable(path, writable.clone())?,
                };
                let why = crate::chain(&writable);
                tracing::warn!("{}: opened for reading only: {why}", path.display());
                readers = None;
                connection
            }
            Err(other) => return Err(other),
        };
        Ok(Self {
            state: Mutex::new(Group {
                connection,
                open: None,
                next_batch: 1,
                settled: 0,
                failed: HashMap::new(),
            }),
            settled: Condvar::new(),
            queued: AtomicUsize::new(0),
            path: path.to_owned(),
            readers,
        })
    }
}

/// Creates the file with mode 0600 before SQLite does (SQLite would use the umask).
/// An existing one must be safe ([`crate::check_private_file`]), and is tightened to 0600.
fn create_private_file(path: &Path) -> Result<()> {
    if path.exists() {
        crate::check_private_file(path, crate::Holds::Guarded)?;
        // An empty file nobody is setting up (another process creating the store writes its
        // header within moments) is not a store: it is not silently taken for a new one.
        let meta = std::fs::metadata(path)
            .map_err(|e| StoreError::io(format!("cannot read {}", path.display()), e))?;
        let age = meta.modified().ok().and_then(|m| m.elapsed().ok()).unwrap_or_default();
        if meta.len() == 0 && age > std::time::Duration::from_secs(10) {
            return Err(StoreError::corrupt(format!(
                "{} is empty (0 bytes), not a store authplug wrote: restore it from a backup, or remove it to start an empty store",
                path.display()
            )));
        }
        return crate::tighten(path);
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .map(drop)
        .map_err(|e| StoreError::io(format!("cannot create {}", path.display()), e))
}

/// How [`connect`] opens the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Write,
    /// Reading only: SQLite writes nothing, but still needs the WAL's shared-memory file.
    Read,
    /// Reading a file nobody can change (on a read-only file system, with no write-ahead log
    /// left to apply): no locks and no shared memory at all.
    Immutable,
}

/// A connection to the store at `path`, checked and migrated.
fn connect(path: &Path, access: Access) -> Result<Connection> {
    let fail = database_error(path);
    let flags = match access {
        Access::Write => OpenFlags::SQLITE_OPEN_READ_WRITE,
        Access::Read => OpenFlags::SQLITE_OPEN_READ_ONLY,
        Access::Immutable => OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI,
    } | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut connection = match access {
        Access::Immutable => Connection::open_with_flags(fallback::immutable_uri(path), flags),
        _ => Connection::open_with_flags(path, flags),
    }
    .map_err(&fail)?;
    let writable = access == Access::Write;
    // Every statement the store runs fits, so none is parsed twice.
    connection.set_prepared_statement_cache_capacity(64);
    connection.busy_timeout(Duration::from_secs(30)).map_err(&fail)?;
    let pragmas = match writable {
        true => "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
        false => "PRAGMA foreign_keys = ON;",
    };
    connection.execute_batch(pragmas).map_err(&fail)?;
    connection.execute_batch(SHARED_PRAGMAS).map_err(&fail)?;
    // A truncated or damaged file must be named before anything is read or written. The whole
    // check reads every page (seconds for a million systems): a larger file is not checked
    // whole; SQLite still refuses a file shorter than its header says (`NOTADB`, named as
    // damaged by `classify`) and names any other damage in a page when it reads it.
    let pages: i64 = connection.query_row("PRAGMA page_count", [], |r| r.get(0)).map_err(&fail)?;
    if pages <= QUICK_CHECK_PAGES {
        let check: String =
            connection.query_row("PRAGMA quick_check", [], |r| r.get(0)).map_err(&fail)?;
        if check != "ok" {
            return Err(StoreError::corrupt(format!(
                "{} failed its integrity check (truncated or damaged?): {check}",
                path.display()
            )));
        }
    }
    migrate(&mut connection, path)?;
    Ok(connection)
}

fn migrate(connection: &mut Connection, path: &Path) -> Result<()> {
    // Nothing to migrate (the usual case) is found by reading alone, so that a store on a full
    // or read-only file system still opens.
    let current = connection.query_row(schema::READ_VERSION, [], |r| r.get(0)).optional();
    if let Ok(found) = current {
        if schema::pending(schema::parse_version(found)?, Dialect::Sqlite)?.is_empty() {
            return Ok(());
        }
    }
    let fail = |e: rusqlite::Error| match classify(path, e) {
        unavailable @ StoreError::Unavailable { .. } => unavailable,
        other => StoreError::database_because("migration", other),
    };
    let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate).map_err(fail)?;
    tx.execute(schema::CREATE_META, []).map_err(fail)?;
    let found: Option<String> =
        tx.query_row(schema::READ_VERSION, [], |r| r.get(0)).optional().map_err(fail)?;
    let found = schema::parse_version(found)?;
    for (version, statements) in schema::pending(found, Dialect::Sqlite)? {
        tx.execute_batch(&statements).map_err(fail)?;
        tx.execute(schema::WRITE_VERSION, [version.to_string()]).map_err(fail)?;
    }
    tx.commit().map_err(fail)
}

impl Backend for SqliteBackend {
    fn injected_now(&self, id: &str) -> Option<Result<Option<SystemWithSecrets>>> {
        let readers = self.readers.as_ref()?;
        readers.with_idle(|connection| {
            SqliteTx { tx: connection, path: &self.path }.system_with_injected(id)
        })
    }

    fn injected(&self, id: &str) -> Result<Option<SystemWithSecrets>> {
        match &self.readers {
            Some(readers) => readers.with(&self.path, |connection| {
                SqliteTx { tx: connection, path: &self.path }.system_with_injected(id)
            }),
            None => crate::backend::injected_in_transaction(self, id),
        }
    }

    fn transaction(
        &self,
        write: bool,
        body: &mut dyn FnMut(&mut dyn Tx) -> Result<()>,
    ) -> Result<()> {
        if let (false, Some(readers)) = (write, &self.readers) {
            return readers.with(&self.path, |connection| read_alone(connection, &self.path, body));
        }
        self.queued.fetch_add(1, Ordering::SeqCst);
        let mut group = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.queued.fetch_sub(1, Ordering::SeqCst);
        let path = self.path.as_path();
        if group.open.is_none() {
            if !write && self.queued.load(Ordering::SeqCst) == 0 {
                // A lone reader needs no batch: a deferred transaction of its own.
                return read_alone(&mut group.connection, path, body);
            }
            control(&group.connection, "BEGIN IMMEDIATE").map_err(|e| classify(path, e))?;
            let batch = group.next_batch;
            group.next_batch += 1;
            group.open = Some((batch, 0));
        }
        let (batch, members) = group.open.as_mut().expect("a batch is open");
        *members += 1;
        let (batch, first) = (*batch, *members == 1);

        // The batch's first member needs no savepoint: the transaction holds nothing else yet,
        // so its failure rolls the whole transaction back. That saves the savepoint's
        // statements and the sub-journal copy of every page it changes (a twentieth of a
        // refresh's CPU).
        let outcome = match first {
            true => run_first(&group.connection, path, body),
            false => run_in_savepoint(&group.connection, path, body),
        };
        let failed_first = first && !matches!(outcome, Ok(Ok(())));
        if failed_first && !group.connection.is_autocommit() {
            let _ = control(&group.connection, "ROLLBACK");
        }
        if group.connection.is_autocommit() || failed_first {
            // SQLite rolled the whole transaction back (a full disk, an I/O error), or the first
            // member failed and took it back: the batch is lost for every member, whose writes
            // must not be reported as done (after a first member's failure there is none).
            let error = match &outcome {
                Ok(Err(e)) => e.clone(),
                _ => StoreError::database(format!("{}: transaction rolled back", path.display())),
            };
            self.settle(&mut group, batch, Err(error));
        } else {
            let members = group.open.map_or(0, |(_, n)| n);
            if self.queued.load(Ordering::SeqCst) == 0 || members >= MAX_BATCH {
                let committed = control(&group.connection, "COMMIT");
                let result = committed.map_err(|e| classify(path, e));
                if result.is_err() {
                    // A failed COMMIT may leave the transaction open; nothing of it may stay.
                    let _ = group.connection.execute_batch("ROLLBACK");
                }
                self.settle(&mut group, batch, result);
            }
        }
        let own = match outcome {
            Ok(own) => own,
            Err(panic) => {
                self.forget(&mut group, batch);
                drop(group);
                std::panic::resume_unwind(panic)
            }
        };
        if let Err(error) = own {
            // This body's writes were rolled back to its savepoint: nothing to wait for.
            self.forget(&mut group, batch);
            return Err(error);
        }
        while group.settled < batch {
            group = self.settled.wait(group).unwrap_or_else(|p| p.into_inner());
        }
        match group.failed.get_mut(&batch) {
            None => Ok(()),
            Some((error, readers)) => {
                let error = error.clone();
                *readers -= 1;
                if *readers == 0 {
                    group.failed.remove(&batch);
                }
                Err(error)
            }
        }
    }
}

impl SqliteBackend {
    /// Records how `batch` ended and wakes its members.
    fn settle(&self, group: &mut MutexGuard<'_, Group>, batch: u64, result: Result<()>) {
        let members = group.open.take().map_or(0, |(_, n)| n);
        if let Err(error) = result {
            group.failed.insert(batch, (error, members));
        }
        group.settled = batch;
        self.settled.notify_all();
    }

    /// A member that will not wait for its batch's outcome (its own body failed).
    fn forget(&self, group: &mut MutexGuard<'_, Group>, batch: u64) {
        if let Some((open, members)) = group.open.as_mut() {
            if *open == batch {
                *members -= 1;
                return;
            }
        }
        if let Some((_, readers)) = group.failed.get_mut(&batch) {
            *readers -= 1;
            if *readers == 0 {
                group.failed.remove(&batch);
            }
        }
    }
}

/// A read with no batch open: its own deferred transaction, ended at once (the control
/// statements prepared once: parsing them was a third of a one-row read).
fn read_alone(
    connection: &mut Connection,
    path: &Path,
    body: &mut dyn FnMut(&mut dyn Tx) -> Result<()>,
) -> Result<()> {
    control(connection, "BEGIN DEFERRED").map_err(|e| classify(path, e))?;
    let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        body(&mut SqliteTx { tx: connection, path })
    }));
    let read = match read {
        Ok(read) => read,
        // Not left inside the transaction (the next caller's BEGIN would fail).
        Err(panic) => {
            let _ = control(connection, "ROLLBACK");
            std::panic::resume_unwind(panic)
        }
    };
    let end = if read.is_ok() { "COMMIT" } else { "ROLLBACK" };
    let ended = control(connection, end).map_err(|e| classify(path, e));
    if ended.is_err() && !connection.is_autocommit() {
        let _ = control(connection, "ROLLBACK");
    }
    read.and(ended)
}

/// Runs `body`, the first member of the open transaction, without a savepoint: the caller
/// rolls the transaction back if it fails or panics (the panic is handed back, as by
/// [`run_in_savepoint`]).
fn run_first(
    connection: &Connection,
    path: &Path,
    body: &mut dyn FnMut(&mut dyn Tx) -> Result<()>,
) -> std::result::Result<Result<()>, Panic> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        body(&mut SqliteTx { tx: connection, path })
    }))
}

/// A transaction's control statement, prepared once per connection (parsing `COMMIT` and the
/// savepoints for every write was a tenth of the engine's CPU per refresh).
fn control(connection: &Connection, sql: &str) -> rusqlite::Result<()> {
    connection.prepare_cached(sql)?.execute([]).map(drop)
}

type Panic = Box<dyn std::any::Any + Send>;

/// Runs `body` under a savepoint of the open transaction: released when it succeeds, rolled
/// back when it fails or panics (the panic is handed back, to be resumed once the batch is
/// settled, so that the other members are not left waiting).
fn run_in_savepoint(
    connection: &Connection,
    path: &Path,
    body: &mut dyn FnMut(&mut dyn Tx) -> Result<()>,
) -> std::result::Result<Result<()>, Panic> {
    if let Err(e) = control(connection, "SAVEPOINT member") {
        return Ok(Err(classify(path, e)));
    }
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        body(&mut SqliteTx { tx: connection, path })
    }));
    let end = match &outcome {
        Ok(Ok(())) => "RELEASE member",
        _ => "ROLLBACK TO member; RELEASE member",
    };
    if !connection.is_autocommit() {
        let ended = match end {
            "RELEASE member" => control(connection, end),
            _ => connection.execute_batch(end),
        };
        if let Err(e) = ended {
            // The savepoint's fate is unknown: give up the whole transaction rather than commit
            // writes whose caller was told they failed.
            let _ = connection.execute_batch("ROLLBACK");
            return Ok(Err(classify(path, e)));
        }
    }
    outcome
}
