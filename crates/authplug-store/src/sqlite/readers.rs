//! The read connections: at most [`MAX_READERS`] open at once, each reused. A read that finds
//! them all busy waits for one instead of opening a connection of its own: opening one costs
//! more than most reads (the file, its write-ahead log and shared memory opened, the schema
//! parsed), and the strace of a sweep at concurrency 16 showed a new connection for one read
//! in four.

use std::path::Path;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::Result;

/// Read connections open at most. Reads are short; more than this at once only queue for the
/// machine's cores.
pub(super) const MAX_READERS: usize = 8;

#[derive(Default)]
pub(super) struct Readers {
    pool: Mutex<Pool>,
    returned: Condvar,
}

#[derive(Default)]
struct Pool {
    idle: Vec<Connection>,
    /// Connections open, idle or lent.
    open: usize,
}

impl Readers {
    /// Runs `read` on an idle connection, a new one while fewer than [`MAX_READERS`] are open,
    /// or else the next one handed back.
    pub(super) fn with<T>(
        &self,
        path: &Path,
        read: impl FnOnce(&mut Connection) -> Result<T>,
    ) -> Result<T> {
        let mut connection = self.lend(path)?;
        let outcome = read(&mut connection);
        self.hand_back(connection);
        outcome
    }

    /// Runs `read` on a connection idle now; `None` when none is (nothing is opened or
    /// waited for).
    pub(super) fn with_idle<T>(
        &self,
        read: impl FnOnce(&mut Connection) -> Result<T>,
    ) -> Option<Result<T>> {
        let mut connection = self.pool.lock().unwrap_or_else(|p| p.into_inner()).idle.pop()?;
        let outcome = read(&mut connection);
        self.hand_back(connection);
        Some(outcome)
    }

    fn lend(&self, path: &Path) -> Result<Connection> {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(connection) = pool.idle.pop() {
                return Ok(connection);
            }
            if pool.open < MAX_READERS {
                pool.open += 1;
                drop(pool);
                return open(path).inspect_err(|_| self.closed());
            }
            pool = self.returned.wait(pool).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// A connection left inside a transaction (a failed commit) is closed, not reused.
    fn hand_back(&self, connection: Connection) {
        if !connection.is_autocommit() {
            drop(connection);
            return self.closed();
        }
        self.pool.lock().unwrap_or_else(|p| p.into_inner()).idle.push(connection);
        self.returned.notify_one();
    }

    fn closed(&self) {
        self.pool.lock().unwrap_or_else(|p| p.into_inner()).open -= 1;
        self.returned.notify_one();
    }
}

/// A read connection to a store a writable connection has opened (checked and migrated).
fn open(path: &Path) -> Result<Connection> {
    let fail = super::database_error(path);
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let connection = Connection::open_with_flags(path, flags).map_err(&fail)?;
    connection.set_prepared_statement_cache_capacity(64);
    connection.busy_timeout(Duration::from_secs(30)).map_err(&fail)?;
    connection.execute_batch(super::SHARED_PRAGMAS).map_err(&fail)?;
    Ok(connection)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_beyond_the_limit_wait_for_a_connection_instead_of_opening_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.sqlite3");
        Connection::open(&path).unwrap().execute_batch("PRAGMA journal_mode = WAL").unwrap();
        let readers = Readers::default();
        let busy = std::sync::Barrier::new(MAX_READERS + 1);
        std::thread::scope(|scope| {
            for _ in 0..MAX_READERS * 3 {
                scope.spawn(|| {
                    readers
                        .with(&path, |c| {
                            let one: i64 = c.query_row("SELECT 1", [], |r| r.get(0)).unwrap();
                            Ok(one)
                        })
                        .unwrap();
                });
            }
            // Hold every connection at once: the others queue, none is opened beyond the limit.
            for _ in 0..MAX_READERS {
                scope.spawn(|| {
                    readers
                        .with(&path, |_| {
                            busy.wait();
                            Ok(())
                        })
                        .unwrap()
                });
            }
            busy.wait();
            assert!(readers.pool.lock().unwrap().open <= MAX_READERS);
        });
        let pool = readers.pool.lock().unwrap();
        assert!(pool.open <= MAX_READERS, "{} open", pool.open);
        assert_eq!(pool.idle.len(), pool.open, "every connection handed back");
    }
}
