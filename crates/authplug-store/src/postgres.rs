//! The PostgreSQL backend, for several authplug instances sharing one store. Compare-and-set is an
//! `UPDATE ... WHERE version = $n` (the row lock makes a concurrent writer re-check and lose);
//! leases are an upsert guarded by expiry; migrations take an advisory lock.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use postgres::{Client, NoTls, Row, Statement};

use crate::backend::{
    audit_entry, AttemptRows, AuditRows, Backend, LeaseRows, PendingRows, SecretRow, SecretRows,
    SystemRow, SystemRows, Tx,
};
use crate::crypto::Sealed;
use crate::journal::{Attempt, Finish, Lease, Outcome};
use crate::model::{AuditEntry, SecretKind, State};
use crate::schema::{self, numbered, sql, Dialect};
use crate::{Result, StoreError};

pub(crate) struct PgBackend {
    config: postgres::Config,
    session: Mutex<Session>,
}

/// The session in use, or none since it was lost; and when connecting last failed.
struct Session {
    live: Option<Connection>,
    failed_at: Option<Instant>,
}

/// After a failed connection attempt, calls fail at once for this long instead of trying again:
/// an outage answers fast and does not hammer a database that is starting up.
const RECONNECT_PAUSE: Duration = Duration::from_millis(200);

/// How long connecting may take when the URL does not say (`connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// One session, with the statements prepared on it (prepared once, kept across transactions).
struct Connection {
    client: Client,
    statements: HashMap<&'static str, Statement>,
}

/// An arbitrary constant: the advisory lock under which migrations run.
const MIGRATION_LOCK: i64 = 0x6175_7468_706c_7567; // "authplug"

fn fail(error: postgres::Error) -> StoreError {
    let code = error.as_db_error().map(|db| db.code().code().to_owned());
    // Connection exceptions (class 08), a terminated session or a server shutting down or
    // starting up (57P01-57P03), a closed connection: the database is gone for now.
    let gone = error.is_closed()
        || code.as_deref().is_some_and(|c| c.starts_with("08") || c.starts_with("57P"));
    let what = match code {
        Some(code) => format!("PostgreSQL {code}"),
        None => "PostgreSQL".to_owned(),
    };
    if gone {
        return StoreError::unavailable(format!("{what}: the connection was lost"), Some(error));
    }
    StoreError::database_because(what, error)
}

impl PgBackend {
    /// Connects without TLS: for a database on loopback or a private network. (TLS for remote
    /// databases is not built yet.)
    pub(crate) fn connect(url: &str) -> Result<Self> {
        let mut config: postgres::Config =
            url.parse().map_err(|e| StoreError::database_because("not a PostgreSQL URL", e))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let mut client = config
            .connect(NoTls)
            .map_err(|e| StoreError::database_because("cannot connect to PostgreSQL", e))?;
        migrate(&mut client)?;
        let live = Some(Connection { client, statements: HashMap::new() });
        Ok(Self { config, session: Mutex::new(Session { live, failed_at: None }) })
    }

    /// The session, connected again if it was lost (not sooner than [`RECONNECT_PAUSE`] after a
    /// failed attempt). Statements are prepared again on a new session.
    fn session<'s>(&self, session: &'s mut Session) -> Result<&'s mut Connection> {
        if session.live.as_ref().is_some_and(|c| c.client.is_closed()) {
            session.live = None;
        }
        if session.live.is_none() {
            if session.failed_at.is_some_and(|at| at.elapsed() < RECONNECT_PAUSE) {
                let said = "PostgreSQL is unreachable (connecting again shortly)";
                return Err(StoreError::unavailable(said, None::<postgres::Error>));
            }
            match connect_within(&self.config, CONNECT_TIMEOUT) {
                Ok(client) => {
                    tracing::info!("connected to PostgreSQL again");
                    session.failed_at = None;
                    session.live = Some(Connection { client, statements: HashMap::new() });
                }
                Err(error) => {
                    session.failed_at = Some(Instant::now());
                    return Err(error);
                }
            }
        }
        Ok(session.live.as_mut().expect("connected above"))
    }
}

/// Connects on a thread of its own, waiting at most `within`: `connect_timeout` bounds only the
/// TCP connect, not a server that accepts and then never answers (one starting up or going
/// down), and every store call waits behind a reconnect.
fn connect_within(config: &postgres::Config, within: Duration) -> Result<Client> {
    let (sent, received) = std::sync::mpsc::channel();
    let config = config.clone();
    std::thread::spawn(move || {
        let _ = sent.send(config.connect(NoTls));
    });
    match received.recv_timeout(within) {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(error)) => Err(StoreError::unavailable("cannot connect to PostgreSQL", Some(error))),
        Err(_) => Err(StoreError::unavailable(
            format!("cannot connect to PostgreSQL: no answer within {} s", within.as_secs()),
            None::<postgres::Error>,
        )),
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
        let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let Connection { client, statements } = self.session(&mut session)?;
        let done = run(client, statements, write, body);
        // A session lost in the middle is dropped: the next call connects again.
        if matches!(done, Err(StoreError::Unavailable { .. })) {
            session.live = None;
        }
        done
    }
}

/// One transaction on `client`: committed if `body` succeeds, rolled back otherwise.
fn run(
    client: &mut Client,
    statements: &mut HashMap<&'static str, Statement>,
    write: bool,
    body: &mut dyn FnMut(&mut dyn Tx) -> Result<()>,
) -> Result<()> {
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

struct PgTx<'a> {
    tx: postgres::Transaction<'a>,
    statements: &'a mut HashMap<&'static str, Statement>,
}

type Params<'a> = &'a [&'a (dyn postgres::types::ToSql + Sync)];

fn system_row(r: &Row) -> Result<SystemRow> {
    Ok(SystemRow {
        id: r.get(0),
        scheme: r.get(1),
        state: State::parse(r.get(2))?,
        state_reason: r.get(3),
        parameters: r.get(4),
        expires_at: r.get(5),
        version: r.get(6),
        created_at: r.get(7),
        updated_at: r.get(8),
        last_refresh_at: r.get(9),
        failures: r.get(10),
    })
}

fn secret_row(r: &Row) -> Result<SecretRow> {
    Ok(SecretRow {
        system_id: r.get(0),
        kind: SecretKind::parse(r.get(1))?,
        name: r.get(2),
        sealed: Sealed { key_id: r.get(3), nonce: r.get(4), ciphertext: r.get(5) },
    })
}

fn attempt_row(r: &Row) -> Result<Attempt> {
    let outcome: Option<&str> = r.get(8);
    Ok(Attempt {
        id: r.get(0),
        system_id: r.get(1),
        holder: r.get(2),
        from_version: r.get(3),
        started_at_ms: r.get(4),
        sent_at_ms: r.get(5),
        answered_at_ms: r.get(6),
        finished_at_ms: r.get(7),
        outcome: outcome.map(Outcome::parse).transpose()?,
        detail: r.get(9),
        retry_at_ms: r.get(10),
    })
}

fn lease(r: &Row, from: usize) -> Lease {
    Lease { holder: r.get(from), until_ms: r.get(from + 1) }
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

    fn run(&mut self, sql: &'static str, params: Params<'_>) -> Result<u64> {
        let statement = self.statement(sql)?;
        self.tx.execute(&statement, params).map_err(fail)
    }

    fn all(&mut self, sql: &'static str, params: Params<'_>) -> Result<Vec<Row>> {
        let statement = self.statement(sql)?;
        self.tx.query(&statement, params).map_err(fail)
    }

    fn one(&mut self, sql: &'static str, params: Params<'_>) -> Result<Option<Row>> {
        let statement = self.statement(sql)?;
        self.tx.query_opt(&statement, params).map_err(fail)
    }
}

impl SystemRows for PgTx<'_> {
    fn system(&mut self, id: &str) -> Result<Option<SystemRow>> {
        self.one(sql::SYSTEM, &[&id])?.as_ref().map(system_row).transpose()
    }

    fn systems(&mut self) -> Result<Vec<SystemRow>> {
        self.all(sql::SYSTEMS, &[])?.iter().map(system_row).collect()
    }

    fn count_by_state(&mut self) -> Result<Vec<(State, u64)>> {
        let rows = self.all(sql::COUNT_BY_STATE, &[])?;
        rows.iter()
            .map(|r| Ok((State::parse(r.get(0))?, u64::try_from(r.get::<_, i64>(1)).unwrap_or(0))))
            .collect()
    }

    fn count_by_scheme(&mut self) -> Result<Vec<(String, u64)>> {
        let rows = self.all(sql::COUNT_BY_SCHEME, &[])?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), u64::try_from(r.get::<_, i64>(1)).unwrap_or(0)))
            .collect())
    }

    fn insert_system(&mut self, s: &SystemRow) -> Result<bool> {
        let changed = self.run(
            sql::INSERT_SYSTEM,
            &[
                &s.id,
                &s.scheme,
                &s.state.as_str(),
                &s.state_reason,
                &s.parameters,
                &s.expires_at,
                &s.version,
                &s.created_at,
                &s.updated_at,
                &s.last_refresh_at,
                &s.failures,
            ],
        )?;
        Ok(changed == 1)
    }

    fn update_system(&mut self, s: &SystemRow, expected: i64) -> Result<bool> {
        let changed = self.run(
            sql::UPDATE_SYSTEM,
            &[
                &s.scheme,
                &s.state.as_str(),
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
        )?;
        Ok(changed == 1)
    }

    fn delete_system(&mut self, id: &str) -> Result<bool> {
        self.run(sql::DELETE_SECRETS_OF, &[&id])?;
        Ok(self.run(sql::DELETE_SYSTEM, &[&id])? == 1)
    }
}

impl SecretRows for PgTx<'_> {
    fn secrets(&mut self, id: &str) -> Result<Vec<SecretRow>> {
        self.all(sql::SECRETS, &[&id])?.iter().map(secret_row).collect()
    }

    fn delete_secrets(&mut self, id: &str, kind: SecretKind) -> Result<()> {
        self.run(sql::DELETE_SECRETS_KIND, &[&id, &kind.as_str()]).map(drop)
    }

    fn put_secret(&mut self, s: &SecretRow) -> Result<()> {
        let sealed = &s.sealed;
        let row: Params<'_> = &[
            &s.system_id,
            &s.kind.as_str(),
            &s.name,
            &sealed.key_id,
            &sealed.nonce,
            &sealed.ciphertext,
        ];
        self.run(sql::PUT_SECRET, row).map(drop)
    }

    fn key_ids(&mut self) -> Result<Vec<String>> {
        Ok(self.all(sql::KEY_IDS, &[])?.iter().map(|r| r.get(0)).collect())
    }

    fn systems_not_under(&mut self, key_id: &str) -> Result<Vec<String>> {
        Ok(self.all(sql::SYSTEMS_NOT_UNDER, &[&key_id])?.iter().map(|r| r.get(0)).collect())
    }
}

impl AuditRows for PgTx<'_> {
    fn append_audit(&mut self, e: &AuditEntry) -> Result<()> {
        let detail = e.detail.to_string();
        self.run(sql::APPEND_AUDIT, &[&e.system_id, &e.at, &e.actor, &e.action, &detail]).map(drop)
    }

    fn audit(&mut self, id: &str) -> Result<Vec<AuditEntry>> {
        let rows = self.all(sql::AUDIT, &[&id])?;
        Ok(rows
            .iter()
            .map(|r| audit_entry(r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
            .collect())
    }
}

impl LeaseRows for PgTx<'_> {
    fn try_lease(&mut self, id: &str, holder: &str, now_ms: i64, until_ms: i64) -> Result<bool> {
        Ok(self.run(sql::TRY_LEASE, &[&id, &holder, &until_ms, &now_ms])? == 1)
    }

    fn release_lease(&mut self, id: &str, holder: &str) -> Result<()> {
        self.run(sql::RELEASE_LEASE, &[&id, &holder]).map(drop)
    }

    fn lease(&mut self, id: &str) -> Result<Option<Lease>> {
        Ok(self.one(sql::LEASE, &[&id])?.map(|r| lease(&r, 0)))
    }

    fn leases(&mut self) -> Result<Vec<(String, Lease)>> {
        Ok(self.all(sql::LEASES, &[])?.iter().map(|r| (r.get(0), lease(r, 1))).collect())
    }
}

impl AttemptRows for PgTx<'_> {
    fn insert_attempt(
        &mut self,
        id: &str,
        holder: &str,
        from_version: i64,
        at_ms: i64,
    ) -> Result<i64> {
        let row = self.one(sql::INSERT_ATTEMPT, &[&id, &holder, &from_version, &at_ms])?;
        row.map(|r| r.get(0))
            .ok_or_else(|| StoreError::database("an attempt was inserted without an id"))
    }

    fn mark_sent(&mut self, attempt: i64, at_ms: i64) -> Result<()> {
        self.run(sql::MARK_SENT, &[&at_ms, &attempt]).map(drop)
    }

    fn finish_attempt(&mut self, attempt: i64, at_ms: i64, f: &Finish) -> Result<()> {
        let row: Params<'_> =
            &[&at_ms, &f.outcome.as_str(), &f.detail, &f.retry_at_ms, &f.answered_at_ms, &attempt];
        self.run(sql::FINISH_ATTEMPT, row).map(drop)
    }

    fn attempts(&mut self, id: &str, limit: i64) -> Result<Vec<Attempt>> {
        self.all(sql::ATTEMPTS, &[&id, &limit])?.iter().map(attempt_row).collect()
    }

    fn latest_attempts(&mut self) -> Result<Vec<Attempt>> {
        self.all(sql::LATEST_ATTEMPTS, &[])?.iter().map(attempt_row).collect()
    }

    fn prune_attempts(&mut self, id: &str, below: i64) -> Result<()> {
        self.run(sql::PRUNE_ATTEMPTS, &[&id, &below]).map(drop)
    }
}

impl PendingRows for PgTx<'_> {
    fn put_pending(
        &mut self,
        state_sha256: &str,
        sealed: &Sealed,
        expires_at_ms: i64,
        now_ms: i64,
    ) -> Result<bool> {
        self.run(sql::DROP_EXPIRED_PENDING, &[&now_ms])?;
        let row: Params<'_> =
            &[&state_sha256, &sealed.key_id, &sealed.nonce, &sealed.ciphertext, &expires_at_ms];
        Ok(self.run(sql::PUT_PENDING, row)? == 1)
    }

    fn take_pending(&mut self, state_sha256: &str) -> Result<Option<(Sealed, i64)>> {
        let row = self.one(sql::TAKE_PENDING, &[&state_sha256])?;
        Ok(row.map(|r| {
            (Sealed { key_id: r.get(0), nonce: r.get(1), ciphertext: r.get(2) }, r.get(3))
        }))
    }
}
