//! The PostgreSQL backend, for several authplug instances sharing one store. Compare-and-set is an
//! `UPDATE ... WHERE version = $n` (the row lock makes a concurrent writer re-check and lose);
//! leases are an upsert guarded by expiry; migrations take an advisory lock.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use postgres::{Client, NoTls, Statement};

use crate::backend::{Backend, SystemWithSecrets, Tx};
use crate::schema::{self, numbered, Dialect};
use crate::{Result, StoreError};

mod rows;

use rows::PgTx;

pub(crate) struct PgBackend {
    config: postgres::Config,
    /// Sessions open at most.
    max_sessions: usize,
    sessions: Mutex<Sessions>,
    /// Signalled when a session is handed back or given up.
    returned: Condvar,
}

/// The sessions: idle ones, how many are open (idle or lent), and when connecting last failed.
struct Sessions {
    idle: Vec<Connection>,
    open: usize,
    failed_at: Option<Instant>,
}

/// Sessions open at most per process unless told otherwise ([`crate::OpenOptions`]).
/// Concurrent calls (the sweep's refreshes, uncached authorize reads) each take one; with a
/// single session they queued behind each other's round trips. Eight per instance leaves room
/// for a dozen instances within PostgreSQL's default `max_connections` (100).
pub const DEFAULT_SESSIONS: usize = 8;

/// After a failed connection attempt, calls fail at once for this long instead of trying again:
/// an outage answers fast and does not hammer a database that is starting up.
const RECONNECT_PAUSE: Duration = Duration::from_millis(200);

/// How long connecting may take when the URL does not say (`connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// One session, with the statements prepared on it (prepared once, kept across transactions).
struct Connection {
    client: Client,
    statements: HashMap<String, Statement>,
}

/// An arbitrary constant: the advisory lock under which migrations run.
const MIGRATION_LOCK: i64 = 0x6175_7468_706c_7567; // "authplug"

fn fail(error: postgres::Error) -> StoreError {
    let code = error.as_db_error().map(|db| db.code().code().to_owned());
    // Connection exceptions (class 08), a terminated session or a server shutting down or
    // starting up (57P01-57P03), a closed connection, or one the socket failed under (reset by
    // a server going down): the database is gone for now.
    let io = std::error::Error::source(&error).is_some_and(|s| s.is::<std::io::Error>());
    let gone = error.is_closed()
        || io
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
    pub(crate) fn connect(url: &str, max_sessions: usize) -> Result<Self> {
        let mut config: postgres::Config =
            url.parse().map_err(|e| StoreError::database_because("not a PostgreSQL URL", e))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let mut client = config
            .connect(NoTls)
            .map_err(|e| StoreError::database_because("cannot connect to PostgreSQL", e))?;
        migrate(&mut client)?;
        let first = Connection { client, statements: HashMap::new() };
        let sessions = Sessions { idle: vec![first], open: 1, failed_at: None };
        let max_sessions = max_sessions.max(1);
        Ok(Self { config, max_sessions, sessions: Mutex::new(sessions), returned: Condvar::new() })
    }

    /// Runs `work` on a session: an idle one, a new one while fewer than `max_sessions` are
    /// open (not sooner than [`RECONNECT_PAUSE`] after a failed attempt), or else the next one
    /// handed back. A session lost under `work` is dropped, and so are the idle ones (a
    /// server that went away took them all); the next calls connect again.
    fn with_session<T>(&self, work: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let mut lent = Lent { backend: self, session: Some(self.lend()?) };
        let done = work(lent.session.as_mut().expect("lent above"));
        let session = lent.session.take().expect("lent above");
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        if matches!(done, Err(StoreError::Unavailable { .. })) || session.client.is_closed() {
            sessions.open -= 1 + sessions.idle.len();
            sessions.idle.clear();
            // Places freed: every waiter may connect (or learn at once that it cannot).
            self.returned.notify_all();
        } else {
            sessions.idle.push(session);
            self.returned.notify_one();
        }
        done
    }

    fn lend(&self) -> Result<Connection> {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            while let Some(session) = sessions.idle.pop() {
                if !session.client.is_closed() {
                    return Ok(session);
                }
                sessions.open -= 1;
                self.returned.notify_all();
            }
            if sessions.open < self.max_sessions {
                if sessions.failed_at.is_some_and(|at| at.elapsed() < RECONNECT_PAUSE) {
                    let said = "PostgreSQL is unreachable (connecting again shortly)";
                    return Err(StoreError::unavailable(said, None::<postgres::Error>));
                }
                sessions.open += 1;
                drop(sessions);
                return self.reconnect();
            }
            sessions = self.returned.wait(sessions).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// A new session (its place in the count already taken). Statements are prepared again on
    /// it.
    fn reconnect(&self) -> Result<Connection> {
        let connected = connect_within(&self.config, CONNECT_TIMEOUT);
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        match connected {
            Ok(client) => {
                if sessions.failed_at.take().is_some() {
                    tracing::info!("connected to PostgreSQL again");
                }
                Ok(Connection { client, statements: HashMap::new() })
            }
            Err(error) => {
                sessions.open -= 1;
                sessions.failed_at = Some(Instant::now());
                // Every waiter learns at once that PostgreSQL is unreachable for now (woken one
                // at a time, the others would wait for a session nobody hands back).
                self.returned.notify_all();
                Err(error)
            }
        }
    }
}

/// A session out of the pool; given up (its place freed) if the work on it panicked.
struct Lent<'b> {
    backend: &'b PgBackend,
    session: Option<Connection>,
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        if self.session.take().is_some() {
            let mut sessions = self.backend.sessions.lock().unwrap_or_else(|p| p.into_inner());
            sessions.open -= 1;
            self.backend.returned.notify_all();
        }
    }
}

/// Connects on a thread of its own, waiting at most `within`: `connect_timeout` bounds only the
/// TCP connect, not a server that accepts and then never answers (one starting up or going
/// down), and every store call waits behind a reconnect.
fn connect_within(config: &postgres::Config, within: Duration) -> Result<Client> {
    let (sent, received) = std::sync::mpsc::channel();
    let config = config.clone();
    let connecting = std::thread::Builder::new().name("pg-connect".into()).spawn(move || {
        let _ = sent.send(config.connect(NoTls));
    });
    if let Err(error) = connecting {
        return Err(StoreError::unavailable("cannot connect to PostgreSQL", Some(error)));
    }
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
        self.with_session(|Connection { client, statements }| run(client, statements, write, body))
    }

    fn injected(&self, id: &str) -> Result<Option<SystemWithSecrets>> {
        // One statement is one snapshot: no transaction around it, one round trip.
        self.with_session(|Connection { client, statements }| {
            rows::system_with_injected(client, statements, id)
        })
    }
}

/// One transaction on `client`: committed if `body` succeeds, rolled back otherwise.
fn run(
    client: &mut Client,
    statements: &mut HashMap<String, Statement>,
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
