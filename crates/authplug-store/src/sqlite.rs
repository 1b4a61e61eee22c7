//! The SQLite backend: one file, WAL journal, `synchronous=FULL`, and immediate transactions for
//! writes, so that several processes on one machine can share it without lost updates.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row, TransactionBehavior};

use crate::crypto::Sealed;
use crate::schema::{self, sql, Dialect};
use crate::{
    Attempt, AuditEntry, Backend, Finish, Lease, Result, SecretRow, StoreError, SystemRow, Tx,
};

pub(crate) struct SqliteBackend {
    connection: Mutex<Connection>,
}

fn database_error(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |e| classify(path, e)
}

/// A damaged file is named as such; anything else is a database error.
fn classify(path: &Path, error: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode::{DatabaseCorrupt, NotADatabase};
    match error.sqlite_error_code() {
        Some(DatabaseCorrupt | NotADatabase) => StoreError::Corrupt(format!(
            "{} is not a readable SQLite database (truncated or overwritten?): {error}",
            path.display()
        )),
        _ => StoreError::Database(format!("{}: {error}", path.display())),
    }
}

impl SqliteBackend {
    pub(crate) fn open(path: &Path) -> Result<Self> {
        crate::prepare_sqlite_dir(path)?;
        create_private_file(path)?;
        let fail = database_error(path);
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut connection = Connection::open_with_flags(path, flags).map_err(&fail)?;
        // Every statement the store runs fits, so none is parsed twice.
        connection.set_prepared_statement_cache_capacity(64);
        connection.busy_timeout(Duration::from_secs(30)).map_err(&fail)?;
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
            )
            .map_err(&fail)?;
        // A truncated or damaged file must be named before anything is read or written.
        let check: String =
            connection.query_row("PRAGMA quick_check", [], |r| r.get(0)).map_err(&fail)?;
        if check != "ok" {
            return Err(StoreError::Corrupt(format!(
                "{} failed its integrity check (truncated or damaged?): {check}",
                path.display()
            )));
        }
        migrate(&mut connection).map_err(|e| match e {
            StoreError::Database(m) => StoreError::Database(m),
            other => other,
        })?;
        Ok(Self { connection: Mutex::new(connection) })
    }
}

/// Creates the file with mode 0600 before SQLite does (SQLite would use the umask).
fn create_private_file(path: &Path) -> Result<()> {
    if path.exists() {
        return Ok(());
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .map(drop)
        .map_err(|e| StoreError::Io(format!("cannot create {}: {e}", path.display())))
}

fn migrate(connection: &mut Connection) -> Result<()> {
    let fail = |e: rusqlite::Error| StoreError::Database(format!("migration: {e}"));
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
    fn transaction(
        &self,
        write: bool,
        body: &mut dyn FnMut(&mut dyn Tx) -> Result<()>,
    ) -> Result<()> {
        let mut connection = self.connection.lock().unwrap_or_else(|p| p.into_inner());
        let path = connection.path().map(std::path::PathBuf::from).unwrap_or_default();
        let behavior =
            if write { TransactionBehavior::Immediate } else { TransactionBehavior::Deferred };
        let tx = connection.transaction_with_behavior(behavior).map_err(|e| classify(&path, e))?;
        let mut wrapped = SqliteTx { tx: &tx, path: &path };
        body(&mut wrapped)?;
        tx.commit().map_err(|e| classify(&path, e))
    }
}

struct SqliteTx<'a> {
    tx: &'a rusqlite::Transaction<'a>,
    path: &'a Path,
}

fn system_row(r: &Row<'_>) -> rusqlite::Result<SystemRow> {
    Ok(SystemRow {
        id: r.get(0)?,
        scheme: r.get(1)?,
        state: r.get(2)?,
        state_reason: r.get(3)?,
        parameters: r.get(4)?,
        expires_at: r.get(5)?,
        version: r.get(6)?,
        created_at: r.get(7)?,
        updated_at: r.get(8)?,
        last_refresh_at: r.get(9)?,
        failures: r.get(10)?,
    })
}

fn secret_row(r: &Row<'_>) -> rusqlite::Result<SecretRow> {
    Ok(SecretRow {
        system_id: r.get(0)?,
        kind: r.get(1)?,
        name: r.get(2)?,
        sealed: Sealed { key_id: r.get(3)?, nonce: r.get(4)?, ciphertext: r.get(5)? },
    })
}

fn audit_row(r: &Row<'_>) -> rusqlite::Result<(String, i64, String, String, String)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

impl SqliteTx<'_> {
    /// Runs a statement through the connection's statement cache: the hot path of the refresh
    /// engine runs the same dozen statements thousands of times.
    fn run(&self, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<usize> {
        self.tx.prepare_cached(sql)?.execute(params)
    }

    fn fail(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        database_error(self.path)
    }

    fn strings(&mut self, statement: &str, id: Option<&str>) -> Result<Vec<String>> {
        let mut query = self.tx.prepare_cached(statement).map_err(self.fail())?;
        let params: Vec<&dyn rusqlite::ToSql> =
            id.iter().map(|id| id as &dyn rusqlite::ToSql).collect();
        query
            .query_map(params.as_slice(), |r| r.get(0))
            .and_then(Iterator::collect)
            .map_err(self.fail())
    }
}

impl Tx for SqliteTx<'_> {
    fn system(&mut self, id: &str) -> Result<Option<SystemRow>> {
        let mut query = self.tx.prepare_cached(sql::SYSTEM).map_err(self.fail())?;
        query.query_row([id], system_row).optional().map_err(self.fail())
    }

    fn systems(&mut self) -> Result<Vec<SystemRow>> {
        let mut query = self.tx.prepare_cached(sql::SYSTEMS).map_err(self.fail())?;
        query.query_map([], system_row).and_then(Iterator::collect).map_err(self.fail())
    }

    fn secrets(&mut self, id: &str) -> Result<Vec<SecretRow>> {
        let mut query = self.tx.prepare_cached(sql::SECRETS).map_err(self.fail())?;
        query.query_map([id], secret_row).and_then(Iterator::collect).map_err(self.fail())
    }

    fn insert_system(&mut self, s: &SystemRow) -> Result<bool> {
        let changed = self
            .run(
                sql::INSERT_SYSTEM,
                params![
                    s.id,
                    s.scheme,
                    s.state,
                    s.state_reason,
                    s.parameters,
                    s.expires_at,
                    s.version,
                    s.created_at,
                    s.updated_at,
                    s.last_refresh_at,
                    s.failures
                ],
            )
            .map_err(self.fail())?;
        Ok(changed == 1)
    }

    fn update_system(&mut self, s: &SystemRow, expected: i64) -> Result<bool> {
        let changed = self
            .run(
                sql::UPDATE_SYSTEM,
                params![
                    s.scheme,
                    s.state,
                    s.state_reason,
                    s.parameters,
                    s.expires_at,
                    s.version,
                    s.updated_at,
                    s.last_refresh_at,
                    s.failures,
                    s.id,
                    expected
                ],
            )
            .map_err(self.fail())?;
        Ok(changed == 1)
    }

    fn delete_system(&mut self, id: &str) -> Result<bool> {
        self.run(sql::DELETE_SECRETS_OF, [id]).map_err(self.fail())?;
        Ok(self.run(sql::DELETE_SYSTEM, [id]).map_err(self.fail())? == 1)
    }

    fn delete_secrets(&mut self, id: &str, kind: &str) -> Result<()> {
        self.run(sql::DELETE_SECRETS_KIND, [id, kind]).map(drop).map_err(self.fail())
    }

    fn put_secret(&mut self, s: &SecretRow) -> Result<()> {
        self.run(
            sql::PUT_SECRET,
            params![
                s.system_id,
                s.kind,
                s.name,
                s.sealed.key_id,
                s.sealed.nonce,
                s.sealed.ciphertext
            ],
        )
        .map(drop)
        .map_err(self.fail())
    }

    fn append_audit(&mut self, e: &AuditEntry) -> Result<()> {
        self.run(
            sql::APPEND_AUDIT,
            params![e.system_id, e.at, e.actor, e.action, e.detail.to_string()],
        )
        .map(drop)
        .map_err(self.fail())
    }

    fn audit(&mut self, id: &str) -> Result<Vec<AuditEntry>> {
        let mut query = self.tx.prepare_cached(sql::AUDIT).map_err(self.fail())?;
        let rows: Vec<_> =
            query.query_map([id], audit_row).and_then(Iterator::collect).map_err(self.fail())?;
        Ok(rows.into_iter().map(crate::postgres::audit_entry).collect())
    }

    fn key_ids(&mut self) -> Result<Vec<String>> {
        self.strings(sql::KEY_IDS, None)
    }

    fn systems_not_under(&mut self, key_id: &str) -> Result<Vec<String>> {
        self.strings(sql::SYSTEMS_NOT_UNDER, Some(key_id))
    }

    fn try_lease(&mut self, id: &str, holder: &str, now_ms: i64, until_ms: i64) -> Result<bool> {
        let changed =
            self.run(sql::TRY_LEASE, params![id, holder, until_ms, now_ms]).map_err(self.fail())?;
        Ok(changed == 1)
    }

    fn release_lease(&mut self, id: &str, holder: &str) -> Result<()> {
        self.run(sql::RELEASE_LEASE, [id, holder]).map(drop).map_err(self.fail())
    }

    fn lease(&mut self, id: &str) -> Result<Option<Lease>> {
        let mut query = self.tx.prepare_cached(sql::LEASE).map_err(self.fail())?;
        query
            .query_row([id], |r| Ok(Lease { holder: r.get(0)?, until_ms: r.get(1)? }))
            .optional()
            .map_err(self.fail())
    }

    fn insert_attempt(
        &mut self,
        id: &str,
        holder: &str,
        from_version: i64,
        at_ms: i64,
    ) -> Result<i64> {
        let mut query = self.tx.prepare_cached(sql::INSERT_ATTEMPT).map_err(self.fail())?;
        query.query_row(params![id, holder, from_version, at_ms], |r| r.get(0)).map_err(self.fail())
    }

    fn mark_sent(&mut self, attempt: i64, at_ms: i64) -> Result<()> {
        let mut query = self.tx.prepare_cached(sql::MARK_SENT).map_err(self.fail())?;
        query.execute(params![at_ms, attempt]).map(drop).map_err(self.fail())
    }

    fn finish_attempt(&mut self, attempt: i64, at_ms: i64, f: &Finish) -> Result<()> {
        let mut query = self.tx.prepare_cached(sql::FINISH_ATTEMPT).map_err(self.fail())?;
        query
            .execute(params![at_ms, f.outcome, f.detail, f.retry_at_ms, f.answered_at_ms, attempt])
            .map(drop)
            .map_err(self.fail())
    }

    fn attempts(&mut self, id: &str, limit: i64) -> Result<Vec<Attempt>> {
        let mut query = self.tx.prepare_cached(sql::ATTEMPTS).map_err(self.fail())?;
        query
            .query_map(params![id, limit], attempt_row)
            .and_then(Iterator::collect)
            .map_err(self.fail())
    }

    fn latest_attempts(&mut self) -> Result<Vec<Attempt>> {
        let mut query = self.tx.prepare_cached(sql::LATEST_ATTEMPTS).map_err(self.fail())?;
        query.query_map([], attempt_row).and_then(Iterator::collect).map_err(self.fail())
    }

    fn prune_attempts(&mut self, id: &str, below: i64) -> Result<()> {
        self.run(sql::PRUNE_ATTEMPTS, params![id, below]).map(drop).map_err(self.fail())
    }
}

fn attempt_row(r: &Row<'_>) -> rusqlite::Result<Attempt> {
    Ok(Attempt {
        id: r.get(0)?,
        system_id: r.get(1)?,
        holder: r.get(2)?,
        from_version: r.get(3)?,
        started_at_ms: r.get(4)?,
        sent_at_ms: r.get(5)?,
        answered_at_ms: r.get(6)?,
        finished_at_ms: r.get(7)?,
        outcome: r.get(8)?,
        detail: r.get(9)?,
        retry_at_ms: r.get(10)?,
    })
}
