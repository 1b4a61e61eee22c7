//! The PostgreSQL backend, for several authplug instances sharing one store. Compare-and-set is an
//! `UPDATE ... WHERE version = $n` (the row lock makes a concurrent writer re-check and lose);
//! leases are an upsert guarded by expiry; migrations take an advisory lock.

use std::collections::HashMap;
use std::sync::Mutex;

use postgres::{Client, NoTls, Row, Statement};

use crate::crypto::Sealed;
use crate::schema::{self, numbered, sql, Dialect};
use crate::{
    Attempt, AuditEntry, Backend, Finish, Lease, Result, SecretRow, StoreError, SystemRow, Tx,
};

pub(crate) struct PgBackend {
    connection: Mutex<Connection>,
}

/// One session, with the statements prepared on it (prepared once, kept across transactions).
struct Connection {
    client: Client,
    statements: HashMap<&'static str, Statement>,
}

/// An arbitrary constant: the advisory lock under which migrations run.
const MIGRATION_LOCK: i64 = 0x6175_7468_706c_7567; // "authplug"

fn fail(error: postgres::Error) -> StoreError {
    StoreError::Database(error.to_string())
}

impl PgBackend {
    /// Connects without TLS: for a database on loopback or a private network. (TLS for remote
    /// databases is not built yet.)
    pub(crate) fn connect(url: &str) -> Result<Self> {
        let mut client = Client::connect(url, NoTls)
            .map_err(|e| StoreError::Database(format!("cannot connect to PostgreSQL: {e}")))?;
        migrate(&mut client)?;
        Ok(Self { connection: Mutex::new(Connection { client, statements: HashMap::new() }) })
    }
}

fn migrate(client: &mut Client) -> Result<()> {
    let mut tx = client.transaction().map_err(fail)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).map_err(fail)?;
    tx.batch_execute(schema::CREATE_META).map_err(fail)?;
    let found: Option<String> =
        tx.query_opt(schema::READ_VERSION, &[]).map_err(fail)?.map(|r| r.get(0));
    let found = schema::parse_version(found)?;
    for (version, statements) in schema::pending(found, Dialect::Postgres)? {
        tx.batch_execute(&statements).map_err(fail)?;
        tx.execute(&numbered(schema::WRITE_VERSION), &[&version.to_string()]).map_err(fail)?;
    }
    tx.commit().map_err(fail)
}

impl Backend for PgBackend {
    fn transaction(
        &self,
        write: bool,
        body: &mut dyn FnMut(&mut dyn Tx) -> Result<()>,
    ) -> Result<()> {
        let mut connection = self.connection.lock().unwrap_or_else(|p| p.into_inner());
        let Connection { client, statements } = &mut *connection;
        if client.is_closed() {
            return Err(StoreError::Database("the PostgreSQL connection is closed".into()));
        }
        // Under READ COMMITTED every statement takes its own snapshot, so a read of a system row
        // and then of its secrets could straddle another instance's commit and return a torn
        // record. Reads therefore run in one REPEATABLE READ snapshot; writes lock the row they
        // compare-and-set, which READ COMMITTED serialises correctly.
        let tx = if write {
            client.transaction()
        } else {
            client
                .build_transaction()
                .isolation_level(postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
        }
        .map_err(fail)?;
        let mut wrapped = PgTx { tx, statements };
        body(&mut wrapped)?;
        wrapped.tx.commit().map_err(fail)
    }
}

struct PgTx<'a> {
    tx: postgres::Transaction<'a>,
    statements: &'a mut HashMap<&'static str, Statement>,
}

fn system_row(r: &Row) -> SystemRow {
    SystemRow {
        id: r.get(0),
        scheme: r.get(1),
        state: r.get(2),
        state_reason: r.get(3),
        parameters: r.get(4),
        expires_at: r.get(5),
        version: r.get(6),
        created_at: r.get(7),
        updated_at: r.get(8),
        last_refresh_at: r.get(9),
        failures: r.get(10),
    }
}

fn secret_row(r: &Row) -> SecretRow {
    SecretRow {
        system_id: r.get(0),
        kind: r.get(1),
        name: r.get(2),
        sealed: Sealed { key_id: r.get(3), nonce: r.get(4), ciphertext: r.get(5) },
    }
}

/// An audit row's columns as an entry (shared with the SQLite backend).
pub(crate) fn audit_entry(
    (system_id, at, actor, action, detail): (String, i64, String, String, String),
) -> AuditEntry {
    let detail = serde_json::from_str(&detail).unwrap_or(serde_json::Value::String(detail));
    AuditEntry { system_id, at, actor, action, detail }
}

impl PgTx<'_> {
    /// The prepared form of one of [`sql`]'s statements, prepared on first use.
    fn statement(&mut self, sql: &'static str) -> Result<Statement> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.tx.prepare(&numbered(sql)).map_err(fail)?;
        self.statements.insert(sql, statement.clone());
        Ok(statement)
    }

    fn strings(
        &mut self,
        sql: &'static str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<Vec<String>> {
        let statement = self.statement(sql)?;
        let rows = self.tx.query(&statement, params).map_err(fail)?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}

impl Tx for PgTx<'_> {
    fn system(&mut self, id: &str) -> Result<Option<SystemRow>> {
        let st_system = self.statement(sql::SYSTEM)?;
        Ok(self.tx.query_opt(&st_system, &[&id]).map_err(fail)?.as_ref().map(system_row))
    }

    fn systems(&mut self) -> Result<Vec<SystemRow>> {
        let st_systems = self.statement(sql::SYSTEMS)?;
        Ok(self.tx.query(&st_systems, &[]).map_err(fail)?.iter().map(system_row).collect())
    }

    fn secrets(&mut self, id: &str) -> Result<Vec<SecretRow>> {
        let st_secrets = self.statement(sql::SECRETS)?;
        Ok(self.tx.query(&st_secrets, &[&id]).map_err(fail)?.iter().map(secret_row).collect())
    }

    fn insert_system(&mut self, s: &SystemRow) -> Result<bool> {
        let st_insert_system = self.statement(sql::INSERT_SYSTEM)?;
        let changed = self
            .tx
            .execute(
                &st_insert_system,
                &[
                    &s.id,
                    &s.scheme,
                    &s.state,
                    &s.state_reason,
                    &s.parameters,
                    &s.expires_at,
                    &s.version,
                    &s.created_at,
                    &s.updated_at,
                    &s.last_refresh_at,
                    &s.failures,
                ],
            )
            .map_err(fail)?;
        Ok(changed == 1)
    }

    fn update_system(&mut self, s: &SystemRow, expected: i64) -> Result<bool> {
        let st_update_system = self.statement(sql::UPDATE_SYSTEM)?;
        let changed = self
            .tx
            .execute(
                &st_update_system,
                &[
                    &s.scheme,
                    &s.state,
                    &s.state_reason,
                    &s.parameters,
                    &s.expires_at,
                    &s.version,
                    &s.updated_at,
                    &s.last_refresh_at,
                    &s.failures,
                    &s.id,
                    &expected,
                ],
            )
            .map_err(fail)?;
        Ok(changed == 1)
    }

    fn delete_system(&mut self, id: &str) -> Result<bool> {
        let st_delete_secrets_of = self.statement(sql::DELETE_SECRETS_OF)?;
        let st_delete_system = self.statement(sql::DELETE_SYSTEM)?;
        self.tx.execute(&st_delete_secrets_of, &[&id]).map_err(fail)?;
        Ok(self.tx.execute(&st_delete_system, &[&id]).map_err(fail)? == 1)
    }

    fn delete_secrets(&mut self, id: &str, kind: &str) -> Result<()> {
        let st_delete_secrets_kind = self.statement(sql::DELETE_SECRETS_KIND)?;
        self.tx.execute(&st_delete_secrets_kind, &[&id, &kind]).map(drop).map_err(fail)
    }

    fn put_secret(&mut self, s: &SecretRow) -> Result<()> {
        let st_put_secret = self.statement(sql::PUT_SECRET)?;
        self.tx
            .execute(
                &st_put_secret,
                &[
                    &s.system_id,
                    &s.kind,
                    &s.name,
                    &s.sealed.key_id,
                    &s.sealed.nonce,
                    &s.sealed.ciphertext,
                ],
            )
            .map(drop)
            .map_err(fail)
    }

    fn append_audit(&mut self, e: &AuditEntry) -> Result<()> {
        let st_append_audit = self.statement(sql::APPEND_AUDIT)?;
        let detail = e.detail.to_string();
        self.tx
            .execute(&st_append_audit, &[&e.system_id, &e.at, &e.actor, &e.action, &detail])
            .map(drop)
            .map_err(fail)
    }

    fn audit(&mut self, id: &str) -> Result<Vec<AuditEntry>> {
        let st_audit = self.statement(sql::AUDIT)?;
        let rows = self.tx.query(&st_audit, &[&id]).map_err(fail)?;
        Ok(rows
            .iter()
            .map(|r| audit_entry((r.get(0), r.get(1), r.get(2), r.get(3), r.get(4))))
            .collect())
    }

    fn key_ids(&mut self) -> Result<Vec<String>> {
        self.strings(sql::KEY_IDS, &[])
    }

    fn systems_not_under(&mut self, key_id: &str) -> Result<Vec<String>> {
        self.strings(sql::SYSTEMS_NOT_UNDER, &[&key_id])
    }

    fn try_lease(&mut self, id: &str, holder: &str, now_ms: i64, until_ms: i64) -> Result<bool> {
        let st_try_lease = self.statement(sql::TRY_LEASE)?;
        let changed =
            self.tx.execute(&st_try_lease, &[&id, &holder, &until_ms, &now_ms]).map_err(fail)?;
        Ok(changed == 1)
    }

    fn release_lease(&mut self, id: &str, holder: &str) -> Result<()> {
        let st_release_lease = self.statement(sql::RELEASE_LEASE)?;
        self.tx.execute(&st_release_lease, &[&id, &holder]).map(drop).map_err(fail)
    }

    fn lease(&mut self, id: &str) -> Result<Option<Lease>> {
        let st = self.statement(sql::LEASE)?;
        let row = self.tx.query_opt(&st, &[&id]).map_err(fail)?;
        Ok(row.map(|r| Lease { holder: r.get(0), until_ms: r.get(1) }))
    }

    fn insert_attempt(
        &mut self,
        id: &str,
        holder: &str,
        from_version: i64,
        at_ms: i64,
    ) -> Result<i64> {
        let st = self.statement(sql::INSERT_ATTEMPT)?;
        let row = self.tx.query_one(&st, &[&id, &holder, &from_version, &at_ms]).map_err(fail)?;
        Ok(row.get(0))
    }

    fn mark_sent(&mut self, attempt: i64, at_ms: i64) -> Result<()> {
        let st = self.statement(sql::MARK_SENT)?;
        self.tx.execute(&st, &[&at_ms, &attempt]).map(drop).map_err(fail)
    }

    fn finish_attempt(&mut self, attempt: i64, at_ms: i64, f: &Finish) -> Result<()> {
        let st = self.statement(sql::FINISH_ATTEMPT)?;
        self.tx
            .execute(
                &st,
                &[&at_ms, &f.outcome, &f.detail, &f.retry_at_ms, &f.answered_at_ms, &attempt],
            )
            .map(drop)
            .map_err(fail)
    }

    fn attempts(&mut self, id: &str, limit: i64) -> Result<Vec<Attempt>> {
        let st = self.statement(sql::ATTEMPTS)?;
        Ok(self.tx.query(&st, &[&id, &limit]).map_err(fail)?.iter().map(attempt_row).collect())
    }

    fn latest_attempts(&mut self) -> Result<Vec<Attempt>> {
        let st = self.statement(sql::LATEST_ATTEMPTS)?;
        Ok(self.tx.query(&st, &[]).map_err(fail)?.iter().map(attempt_row).collect())
    }

    fn prune_attempts(&mut self, id: &str, below: i64) -> Result<()> {
        let st = self.statement(sql::PRUNE_ATTEMPTS)?;
        self.tx.execute(&st, &[&id, &below]).map(drop).map_err(fail)
    }

    fn put_pending(
        &mut self,
        state_sha256: &str,
        sealed: &Sealed,
        expires_at_ms: i64,
        now_ms: i64,
    ) -> Result<bool> {
        let st = self.statement(sql::DROP_EXPIRED_PENDING)?;
        self.tx.execute(&st, &[&now_ms]).map_err(fail)?;
        let st = self.statement(sql::PUT_PENDING)?;
        let changed = self
            .tx
            .execute(
                &st,
                &[&state_sha256, &sealed.key_id, &sealed.nonce, &sealed.ciphertext, &expires_at_ms],
            )
            .map_err(fail)?;
        Ok(changed == 1)
    }

    fn take_pending(&mut self, state_sha256: &str) -> Result<Option<(Sealed, i64)>> {
        let st = self.statement(sql::TAKE_PENDING)?;
        let row = self.tx.query_opt(&st, &[&state_sha256]).map_err(fail)?;
        Ok(row.map(|r| {
            (Sealed { key_id: r.get(0), nonce: r.get(1), ciphertext: r.get(2) }, r.get(3))
        }))
    }
}

fn attempt_row(r: &Row) -> Attempt {
    Attempt {
        id: r.get(0),
        system_id: r.get(1),
        holder: r.get(2),
        from_version: r.get(3),
        started_at_ms: r.get(4),
        sent_at_ms: r.get(5),
        answered_at_ms: r.get(6),
        finished_at_ms: r.get(7),
        outcome: r.get(8),
        detail: r.get(9),
        retry_at_ms: r.get(10),
    }
}
