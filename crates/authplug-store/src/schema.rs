//! Schema migrations, versioned and applied on open, for both SQL dialects.
//!
//! Migration `n` brings the schema from version `n - 1` to `n`; the version lives in
//! `authplug_meta`. A database at a version this binary does not know is refused (an older
//! authplug must not write to a newer schema). Never edit a released migration: add one.

use crate::{Result, StoreError};

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

/// The migrations, in order. `{blob}` and `{serial}` are filled in per dialect.
const MIGRATIONS: &[&str] = &[
    // 1: systems, their sealed secrets, the audit trail, leases.
    "CREATE TABLE systems (
        id TEXT PRIMARY KEY,
        scheme TEXT NOT NULL,
        state TEXT NOT NULL,
        state_reason TEXT,
        parameters TEXT NOT NULL,
        expires_at BIGINT,
        version BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        last_refresh_at BIGINT,
        failures BIGINT NOT NULL DEFAULT 0
    );
    CREATE TABLE secrets (
        system_id TEXT NOT NULL REFERENCES systems(id) ON DELETE CASCADE,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        key_id TEXT NOT NULL,
        nonce {blob} NOT NULL,
        ciphertext {blob} NOT NULL,
        PRIMARY KEY (system_id, kind, name)
    );
    CREATE INDEX secrets_key_id ON secrets (key_id);
    CREATE TABLE audit (
        id {serial},
        system_id TEXT NOT NULL,
        at BIGINT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE INDEX audit_system ON audit (system_id);
    CREATE TABLE leases (
        system_id TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        expires_at_ms BIGINT NOT NULL
    );",
    // 2: the refresh journal: when each refresh attempt started, when its request left, and when
    // it finished (in the same transaction that stored its result), so that a crash can be
    // classified and the next instance can tell the operator what happened.
    "CREATE TABLE refresh_attempts (
        id {serial},
        system_id TEXT NOT NULL,
        holder TEXT NOT NULL,
        from_version BIGINT NOT NULL,
        started_at_ms BIGINT NOT NULL,
        sent_at_ms BIGINT,
        answered_at_ms BIGINT,
        finished_at_ms BIGINT,
        outcome TEXT,
        detail TEXT,
        retry_at_ms BIGINT
    );
    CREATE INDEX refresh_attempts_system ON refresh_attempts (system_id, id);",
    // 3: onboardings waiting for their consent's callback, sealed, so that the callback may
    // reach any instance on the store, once.
    "CREATE TABLE pending_onboardings (
        state_sha256 TEXT PRIMARY KEY,
        key_id TEXT NOT NULL,
        nonce {blob} NOT NULL,
        ciphertext {blob} NOT NULL,
        expires_at_ms BIGINT NOT NULL
    );",
    // 4: what a store of a million systems needs: each system's next due time (the sweep asks
    // for the due ones through an index instead of reading every system), its connector's name
    // as a column (to filter listings), indexes for paging by state, scheme and connector, and
    // for pruning the audit trail and the journal by age. Existing rows get the earliest due
    // time any margin could give (half the lifetime before expiry); the sweep refines it.
    "ALTER TABLE systems ADD COLUMN due_at BIGINT;
    ALTER TABLE systems ADD COLUMN connector TEXT;
    UPDATE systems SET connector = {connector},
        due_at = CASE WHEN state = 'active' AND expires_at IS NOT NULL THEN expires_at -
            (CASE WHEN expires_at > COALESCE(last_refresh_at, created_at)
                THEN (expires_at - COALESCE(last_refresh_at, created_at)) / 2 ELSE 0 END) END;
    CREATE INDEX systems_due ON systems (due_at, id) WHERE due_at IS NOT NULL;
    CREATE INDEX systems_issued ON systems (COALESCE(last_refresh_at, created_at), id)
        WHERE state = 'active';
    CREATE INDEX systems_state ON systems (state, id);
    CREATE INDEX systems_scheme ON systems (scheme, id);
    CREATE INDEX systems_connector ON systems (connector, id);
    CREATE INDEX audit_at ON audit (at);
    CREATE INDEX refresh_attempts_started ON refresh_attempts (started_at_ms);",
    // 5: the journal may hold the outcome `unchanged` (an offline token kept, protocol 1.5). No
    // table changes: the version tells older binaries, which cannot read that outcome, not to
    // open the store rather than fail on one of its attempts.
    "UPDATE authplug_meta SET value = value WHERE key = 'schema_version';",
];

/// The schema version this binary writes.
pub(crate) const CURRENT: i64 = MIGRATIONS.len() as i64;

pub(crate) const CREATE_META: &str =
    "CREATE TABLE IF NOT EXISTS authplug_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)";

pub(crate) const READ_VERSION: &str =
    "SELECT value FROM authplug_meta WHERE key = 'schema_version'";

/// The statements that bring a database from `found` to [`CURRENT`], each with the version after it.
pub(crate) fn pending(found: i64, dialect: Dialect) -> Result<Vec<(i64, String)>> {
    if found > CURRENT {
        return Err(StoreError::SchemaTooNew { found, known: CURRENT });
    }
    let (blob, serial, connector) = match dialect {
        Dialect::Sqlite => (
            "BLOB",
            "INTEGER PRIMARY KEY AUTOINCREMENT",
            "CASE WHEN json_type(parameters, '$.connector.name') = 'text' \
            THEN json_extract(parameters, '$.connector.name') END",
        ),
        Dialect::Postgres => (
            "BYTEA",
            "BIGSERIAL PRIMARY KEY",
            "CASE WHEN jsonb_typeof(parameters::jsonb -> 'connector' -> 'name') = 'string' \
            THEN parameters::jsonb -> 'connector' ->> 'name' END",
        ),
    };
    Ok(MIGRATIONS
        .iter()
        .enumerate()
        .skip(found as usize)
        .map(|(i, sql)| {
            let sql = sql.replace("{blob}", blob).replace("{serial}", serial);
            (i as i64 + 1, sql.replace("{connector}", connector))
        })
        .collect())
}

/// The statement recording the version, for the dialect's upsert.
pub(crate) const WRITE_VERSION: &str =
    "INSERT INTO authplug_meta (key, value) VALUES ('schema_version', ?) \
     ON CONFLICT (key) DO UPDATE SET value = excluded.value";

/// Parses the stored version text.
pub(crate) fn parse_version(text: Option<String>) -> Result<i64> {
    match text {
        None => Ok(0),
        Some(text) => text.parse().map_err(|_| {
            StoreError::corrupt(format!("authplug_meta holds a malformed schema version {text:?}"))
        }),
    }
}

/// The row statements, with `?` placeholders (PostgreSQL gets them numbered).
pub(crate) mod sql {
    /// The columns of a system row, in the order the backends read them.
    pub const SYSTEM_COLUMNS: &str = "id, scheme, state, state_reason, parameters, expires_at, \
        version, created_at, updated_at, last_refresh_at, failures, due_at, connector";
    pub const SYSTEM: &str =
        "SELECT id, scheme, state, state_reason, parameters, expires_at, version, \
        created_at, updated_at, last_refresh_at, failures, due_at, connector FROM systems \
        WHERE id = ?";
    pub const COUNT_BY_STATE: &str = "SELECT state, COUNT(*) FROM systems GROUP BY state";
    pub const COUNT_BY_SCHEME: &str = "SELECT scheme, COUNT(*) FROM systems GROUP BY scheme";
    /// Systems due by a time, after a `(due_at, id)` cursor, in due order.
    pub const DUE: &str =
        "SELECT id, scheme, state, state_reason, parameters, expires_at, version, \
        created_at, updated_at, last_refresh_at, failures, due_at, connector FROM systems \
        WHERE due_at IS NOT NULL AND due_at <= ? AND (due_at, id) > (?, ?) \
        ORDER BY due_at, id LIMIT ?";
    /// Active systems issued (refreshed or onboarded) by a time, after an `(issued, id)` cursor.
    /// (The cursor's time is also the range's start: SQLite then walks the partial index from
    /// there instead of from its beginning.)
    pub const IDLE: &str =
        "SELECT id, scheme, state, state_reason, parameters, expires_at, version, \
        created_at, updated_at, last_refresh_at, failures, due_at, connector FROM systems \
        WHERE state = 'active' AND COALESCE(last_refresh_at, created_at) BETWEEN ? AND ? \
        AND (COALESCE(last_refresh_at, created_at), id) > (?, ?) \
        ORDER BY COALESCE(last_refresh_at, created_at), id LIMIT ?";
    pub const RESCHEDULE: &str = "UPDATE systems SET due_at = ? WHERE id = ? AND version = ?";
    pub const POSTPONE: &str =
        "UPDATE systems SET due_at = ? WHERE id = ? AND due_at IS NOT NULL AND due_at < ?";
    /// A system and its injected secrets in one statement (one row per secret, or one with
    /// no secret): a consistent read without a transaction around it.
    pub const SYSTEM_WITH_INJECTED: &str =
        "SELECT s.id, s.scheme, s.state, s.state_reason, s.parameters, s.expires_at, s.version, \
        s.created_at, s.updated_at, s.last_refresh_at, s.failures, s.due_at, s.connector, \
        x.system_id, x.kind, x.name, x.key_id, x.nonce, x.ciphertext FROM systems s \
        LEFT JOIN secrets x ON x.system_id = s.id AND x.kind = 'injected' \
        WHERE s.id = ? ORDER BY x.name";
    pub const SECRETS: &str =
        "SELECT system_id, kind, name, key_id, nonce, ciphertext FROM secrets \
        WHERE system_id = ? ORDER BY kind, name";
    pub const INSERT_SYSTEM: &str =
        "INSERT INTO systems (id, scheme, state, state_reason, parameters, \
        expires_at, version, created_at, updated_at, last_refresh_at, failures, due_at, connector) \
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING";
    pub const UPDATE_SYSTEM: &str = "UPDATE systems SET scheme = ?, state = ?, state_reason = ?, \
        parameters = ?, expires_at = ?, version = ?, updated_at = ?, last_refresh_at = ?, failures = ?, \
        due_at = ?, connector = ? WHERE id = ? AND version = ?";
    pub const DELETE_SECRETS_OF: &str = "DELETE FROM secrets WHERE system_id = ?";
    pub const DELETE_SYSTEM: &str = "DELETE FROM systems WHERE id = ?";
    pub const DELETE_SYSTEM_AT: &str = "DELETE FROM systems WHERE id = ? AND version = ?";
    pub const DELETE_SECRETS_KIND: &str = "DELETE FROM secrets WHERE system_id = ? AND kind = ?";
    pub const PUT_SECRET: &str =
        "INSERT INTO secrets (system_id, kind, name, key_id, nonce, ciphertext) \
        VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (system_id, kind, name) DO UPDATE SET \
        key_id = excluded.key_id, nonce = excluded.nonce, ciphertext = excluded.ciphertext";
    pub const APPEND_AUDIT: &str =
        "INSERT INTO audit (system_id, at, actor, action, detail) VALUES (?, ?, ?, ?, ?)";
    pub const AUDIT: &str =
        "SELECT system_id, at, actor, action, detail FROM audit WHERE system_id = ? ORDER BY id";
    pub const KEY_IDS: &str = "SELECT DISTINCT key_id FROM secrets ORDER BY key_id";
    pub const SYSTEMS_NOT_UNDER: &str =
        "SELECT DISTINCT system_id FROM secrets WHERE key_id <> ? ORDER BY system_id";
    pub const TRY_LEASE: &str =
        "INSERT INTO leases (system_id, holder, expires_at_ms) VALUES (?, ?, ?) \
        ON CONFLICT (system_id) DO UPDATE SET holder = excluded.holder, \
        expires_at_ms = excluded.expires_at_ms \
        WHERE leases.expires_at_ms < ? OR leases.holder = excluded.holder";
    pub const RELEASE_LEASE: &str = "DELETE FROM leases WHERE system_id = ? AND holder = ?";
    pub const LEASE: &str = "SELECT holder, expires_at_ms FROM leases WHERE system_id = ?";
    pub const LEASES: &str =
        "SELECT system_id, holder, expires_at_ms FROM leases ORDER BY system_id";
    pub const INSERT_ATTEMPT: &str =
        "INSERT INTO refresh_attempts (system_id, holder, from_version, started_at_ms) \
        VALUES (?, ?, ?, ?) RETURNING id";
    pub const MARK_SENT: &str =
        "UPDATE refresh_attempts SET sent_at_ms = ? WHERE id = ? AND sent_at_ms IS NULL";
    pub const FINISH_ATTEMPT: &str =
        "UPDATE refresh_attempts SET finished_at_ms = ?, outcome = ?, \
        detail = ?, retry_at_ms = ?, answered_at_ms = ? WHERE id = ?";
    pub const ATTEMPTS: &str = "SELECT id, system_id, holder, from_version, started_at_ms, \
        sent_at_ms, answered_at_ms, finished_at_ms, outcome, detail, retry_at_ms FROM refresh_attempts \
        WHERE system_id = ? ORDER BY id DESC LIMIT ?";
    pub const LATEST_ATTEMPTS: &str = "SELECT id, system_id, holder, from_version, started_at_ms, \
        sent_at_ms, answered_at_ms, finished_at_ms, outcome, detail, retry_at_ms FROM refresh_attempts \
        WHERE id IN (SELECT max(id) FROM refresh_attempts GROUP BY system_id) ORDER BY system_id";
    /// `{ids}` stands for a list parameter: [`super::with_ids`] fills it in per dialect.
    pub const SECRET_NAMES_OF: &str = "SELECT system_id, kind, name, key_id FROM secrets \
        WHERE system_id {ids} ORDER BY system_id, kind, name";
    pub const LATEST_ATTEMPTS_OF: &str = "SELECT id, system_id, holder, from_version, \
        started_at_ms, sent_at_ms, answered_at_ms, finished_at_ms, outcome, detail, retry_at_ms \
        FROM refresh_attempts WHERE id IN \
        (SELECT max(id) FROM refresh_attempts WHERE system_id {ids} GROUP BY system_id)";
    pub const LEASES_OF: &str =
        "SELECT system_id, holder, expires_at_ms FROM leases WHERE system_id {ids}";
    pub const PRUNE_AUDIT: &str =
        "DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE at < ? ORDER BY at LIMIT ?)";
    /// Finished attempts started before a time, never a system's newest (what a crash is
    /// classified by, and what the backoff reads).
    pub const PRUNE_JOURNAL: &str = "DELETE FROM refresh_attempts WHERE id IN \
        (SELECT a.id FROM refresh_attempts a WHERE a.started_at_ms < ? \
        AND a.finished_at_ms IS NOT NULL AND EXISTS (SELECT 1 FROM refresh_attempts b \
        WHERE b.system_id = a.system_id AND b.id > a.id) ORDER BY a.started_at_ms LIMIT ?)";
    pub const PRUNE_ATTEMPTS: &str = "DELETE FROM refresh_attempts WHERE system_id = ? AND id < ?";
    pub const PUT_PENDING: &str =
        "INSERT INTO pending_onboardings (state_sha256, key_id, nonce, ciphertext, expires_at_ms) \
        VALUES (?, ?, ?, ?, ?) ON CONFLICT (state_sha256) DO NOTHING";
    pub const DROP_EXPIRED_PENDING: &str =
        "DELETE FROM pending_onboardings WHERE expires_at_ms < ?";
    pub const TAKE_PENDING: &str = "DELETE FROM pending_onboardings WHERE state_sha256 = ? \
        RETURNING key_id, nonce, ciphertext, expires_at_ms";
}

/// A listing's page: the systems after an id that match a filter's conditions, by id.
pub(crate) fn page_sql(conditions: &str) -> String {
    format!(
        "SELECT {} FROM systems WHERE id > ?{conditions} ORDER BY id LIMIT ?",
        sql::SYSTEM_COLUMNS
    )
}

/// How many systems match a filter's conditions.
pub(crate) fn count_sql(conditions: &str) -> String {
    format!("SELECT COUNT(*) FROM systems WHERE 1 = 1{conditions}")
}

/// `sql` with its `{ids}` list parameter written for the dialect: a JSON array of ids for
/// SQLite, a text array for PostgreSQL.
pub(crate) fn with_ids(sql: &str, dialect: Dialect) -> String {
    sql.replace(
        "{ids}",
        match dialect {
            Dialect::Sqlite => "IN (SELECT value FROM json_each(?))",
            Dialect::Postgres => "= ANY(?)",
        },
    )
}

/// `?` placeholders numbered `$1, $2, ...` for PostgreSQL.
pub(crate) fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_in_order() {
        assert_eq!(numbered("a = ? AND b = ?"), "a = $1 AND b = $2");
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let error = pending(CURRENT + 1, Dialect::Sqlite).unwrap_err();
        assert!(error.to_string().contains("upgrade authplug"), "{error}");
        assert_eq!(pending(CURRENT, Dialect::Sqlite).unwrap().len(), 0);
        assert_eq!(pending(0, Dialect::Postgres).unwrap().len(), CURRENT as usize);
    }
}
