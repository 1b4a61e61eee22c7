//! The row operations on a SQLite transaction, through the connection's statement cache (the
//! hot path of the refresh engine runs the same dozen statements thousands of times).

use std::path::Path;

use rusqlite::types::Type;
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::database_error;
use crate::backend::{
    AttemptRows, AuditRows, LeaseRows, PendingRows, SecretName, SecretRow, SecretRows, SystemRow,
    SystemRows, SystemWithSecrets,
};
use crate::crypto::Sealed;
use crate::journal::{Attempt, Finish, Lease, Outcome};
use crate::listing::Filter;
use crate::model::{AuditEntry, SecretKind, State};
use crate::schema::{self, sql, Dialect};
use crate::{Result, StoreError};

pub(super) struct SqliteTx<'a> {
    pub(super) tx: &'a Connection,
    pub(super) path: &'a Path,
}

/// A text column holding one of the store's enums: a name no authplug writes is damage, which
/// `classify` reports as [`StoreError::Corrupt`].
fn named<T>(r: &Row<'_>, column: usize, parse: fn(&str) -> Result<T>) -> rusqlite::Result<T> {
    let text: String = r.get(column)?;
    parse(&text)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(column, Type::Text, e.into()))
}

fn system_row(r: &Row<'_>) -> rusqlite::Result<SystemRow> {
    Ok(SystemRow {
        id: r.get(0)?,
        scheme: r.get(1)?,
        state: named(r, 2, State::parse)?,
        state_reason: r.get(3)?,
        parameters: r.get(4)?,
        expires_at: r.get(5)?,
        version: r.get(6)?,
        created_at: r.get(7)?,
        updated_at: r.get(8)?,
        last_refresh_at: r.get(9)?,
        failures: r.get(10)?,
        due_at: r.get(11)?,
        connector: r.get(12)?,
    })
}

fn secret_row(r: &Row<'_>) -> rusqlite::Result<SecretRow> {
    secret_row_at(r, 0)
}

/// A secret row whose columns start at `at`.
fn secret_row_at(r: &Row<'_>, at: usize) -> rusqlite::Result<SecretRow> {
    Ok(SecretRow {
        system_id: r.get(at)?,
        kind: named(r, at + 1, SecretKind::parse)?,
        name: r.get(at + 2)?,
        sealed: Sealed {
            key_id: r.get(at + 3)?,
            nonce: r.get(at + 4)?,
            ciphertext: r.get(at + 5)?,
        },
    })
}

fn audit_row(r: &Row<'_>) -> rusqlite::Result<AuditEntry> {
    let detail: String = r.get(4)?;
    Ok(crate::backend::audit_entry(r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, &detail))
}

fn attempt_row(r: &Row<'_>) -> rusqlite::Result<Attempt> {
    let outcome: Option<String> = r.get(8)?;
    let outcome = outcome
        .map(|text| Outcome::parse(&text))
        .transpose()
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(8, Type::Text, e.into()))?;
    Ok(Attempt {
        id: r.get(0)?,
        system_id: r.get(1)?,
        holder: r.get(2)?,
        from_version: r.get(3)?,
        started_at_ms: r.get(4)?,
        sent_at_ms: r.get(5)?,
        answered_at_ms: r.get(6)?,
        finished_at_ms: r.get(7)?,
        outcome,
        detail: r.get(9)?,
        retry_at_ms: r.get(10)?,
    })
}

impl SqliteTx<'_> {
    /// The system and its injected secrets in one statement, so consistent without a
    /// transaction around it (a read connection's autocommit read).
    pub(super) fn system_with_injected(&self, id: &str) -> Result<Option<SystemWithSecrets>> {
        let mut query = self.tx.prepare_cached(sql::SYSTEM_WITH_INJECTED).map_err(self.fail())?;
        let mut rows = query.query([id]).map_err(self.fail())?;
        let mut found: Option<SystemWithSecrets> = None;
        while let Some(row) = rows.next().map_err(self.fail())? {
            let (_, secrets) = match &mut found {
                Some(found) => found,
                None => found.insert((system_row(row).map_err(self.fail())?, Vec::new())),
            };
            // A system without injected secrets is one row, the secret's columns NULL.
            if row.get_ref(13).map_err(self.fail())? != rusqlite::types::ValueRef::Null {
                secrets.push(secret_row_at(row, 13).map_err(self.fail())?);
            }
        }
        Ok(found)
    }

    fn run(&self, sql: &str, params: impl rusqlite::Params) -> Result<usize> {
        self.tx.prepare_cached(sql).and_then(|mut s| s.execute(params)).map_err(self.fail())
    }

    fn fail(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        database_error(self.path)
    }

    /// All rows of a query, each mapped by `row`.
    fn all<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        row: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>> {
        let mut query = self.tx.prepare_cached(sql).map_err(self.fail())?;
        query.query_map(params, row).and_then(Iterator::collect).map_err(self.fail())
    }

    /// The one row of a query, if any.
    fn one<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        row: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Option<T>> {
        let mut query = self.tx.prepare_cached(sql).map_err(self.fail())?;
        query.query_row(params, row).optional().map_err(self.fail())
    }
}

impl SystemRows for SqliteTx<'_> {
    fn system(&mut self, id: &str) -> Result<Option<SystemRow>> {
        self.one(sql::SYSTEM, [id], system_row)
    }

    fn due(
        &mut self,
        until: i64,
        after_at: i64,
        after_id: &str,
        limit: i64,
    ) -> Result<Vec<SystemRow>> {
        self.all(sql::DUE, params![until, after_at, after_id, limit], system_row)
    }

    fn idle(
        &mut self,
        issued_by: i64,
        after_at: i64,
        after_id: &str,
        limit: i64,
    ) -> Result<Vec<SystemRow>> {
        let bound = params![after_at, issued_by, after_at, after_id, limit];
        self.all(sql::IDLE, bound, system_row)
    }

    fn page(&mut self, filter: &Filter, after: &str, limit: i64) -> Result<Vec<SystemRow>> {
        let (conditions, values) = filter.conditions();
        let mut bound: Vec<&dyn rusqlite::ToSql> = vec![&after];
        bound.extend(values.iter().map(|v| v as &dyn rusqlite::ToSql));
        bound.push(&limit);
        self.all(&schema::page_sql(&conditions), bound.as_slice(), system_row)
    }

    fn count(&mut self, filter: &Filter) -> Result<u64> {
        let (conditions, values) = filter.conditions();
        let bound = rusqlite::params_from_iter(values.iter());
        let count = self.one(&schema::count_sql(&conditions), bound, |r| r.get(0))?;
        Ok(count.unwrap_or(0))
    }

    fn reschedule(&mut self, id: &str, version: i64, due_at: Option<i64>) -> Result<bool> {
        Ok(self.run(sql::RESCHEDULE, params![due_at, id, version])? == 1)
    }

    fn postpone(&mut self, id: &str, until: i64) -> Result<()> {
        self.run(sql::POSTPONE, params![until, id, until]).map(drop)
    }

    fn count_by_state(&mut self) -> Result<Vec<(State, u64)>> {
        self.all(sql::COUNT_BY_STATE, [], |r| Ok((named(r, 0, State::parse)?, r.get(1)?)))
    }

    fn count_by_scheme(&mut self) -> Result<Vec<(String, u64)>> {
        self.all(sql::COUNT_BY_SCHEME, [], |r| Ok((r.get(0)?, r.get(1)?)))
    }

    fn insert_system(&mut self, s: &SystemRow) -> Result<bool> {
        let changed = self.run(
            sql::INSERT_SYSTEM,
            params![
                s.id,
                s.scheme,
                s.state.as_str(),
                s.state_reason,
                s.parameters,
                s.expires_at,
                s.version,
                s.created_at,
                s.updated_at,
                s.last_refresh_at,
                s.failures,
                s.due_at,
                s.connector
            ],
        )?;
        Ok(changed == 1)
    }

    fn update_system(&mut self, s: &SystemRow, expected: i64) -> Result<bool> {
        let changed = self.run(
            sql::UPDATE_SYSTEM,
            params![
                s.scheme,
                s.state.as_str(),
                s.state_reason,
                s.parameters,
                s.expires_at,
                s.version,
                s.updated_at,
                s.last_refresh_at,
                s.failures,
                s.due_at,
                s.connector,
                s.id,
                expected
            ],
        )?;
        Ok(changed == 1)
    }

    fn delete_system(&mut self, id: &str) -> Result<bool> {
        self.run(sql::DELETE_SECRETS_OF, [id])?;
        Ok(self.run(sql::DELETE_SYSTEM, [id])? == 1)
    }

    fn delete_system_at(&mut self, id: &str, version: i64) -> Result<bool> {
        Ok(self.run(sql::DELETE_SYSTEM_AT, params![id, version])? == 1)
    }
}

impl SecretRows for SqliteTx<'_> {
    fn secrets(&mut self, id: &str) -> Result<Vec<SecretRow>> {
        self.all(sql::SECRETS, [id], secret_row)
    }

    fn secret_names(&mut self, ids: &[String]) -> Result<Vec<SecretName>> {
        let ids = serde_json::to_string(ids).expect("strings serialise");
        self.all(&schema::with_ids(sql::SECRET_NAMES_OF, Dialect::Sqlite), [ids], |r| {
            Ok(SecretName {
                system_id: r.get(0)?,
                kind: named(r, 1, SecretKind::parse)?,
                name: r.get(2)?,
                key_id: r.get(3)?,
            })
        })
    }

    fn delete_secrets(&mut self, id: &str, kind: SecretKind) -> Result<()> {
        self.run(sql::DELETE_SECRETS_KIND, [id, kind.as_str()]).map(drop)
    }

    fn put_secret(&mut self, s: &SecretRow) -> Result<()> {
        let sealed = &s.sealed;
        let row = params![
            s.system_id,
            s.kind.as_str(),
            s.name,
            sealed.key_id,
            sealed.nonce,
            sealed.ciphertext
        ];
        self.run(sql::PUT_SECRET, row).map(drop)
    }

    fn key_ids(&mut self) -> Result<Vec<String>> {
        self.all(sql::KEY_IDS, [], |r| r.get(0))
    }

    fn systems_not_under(&mut self, key_id: &str) -> Result<Vec<String>> {
        self.all(sql::SYSTEMS_NOT_UNDER, [key_id], |r| r.get(0))
    }
}

impl AuditRows for SqliteTx<'_> {
    fn append_audit(&mut self, e: &AuditEntry) -> Result<()> {
        let row = params![e.system_id, e.at, e.actor, e.action, e.detail.to_string()];
        self.run(sql::APPEND_AUDIT, row).map(drop)
    }

    fn audit(&mut self, id: &str) -> Result<Vec<AuditEntry>> {
        self.all(sql::AUDIT, [id], audit_row)
    }

    fn prune_audit(&mut self, before: i64, limit: i64) -> Result<u64> {
        Ok(self.run(sql::PRUNE_AUDIT, params![before, limit])? as u64)
    }
}

impl LeaseRows for SqliteTx<'_> {
    fn try_lease(&mut self, id: &str, holder: &str, now_ms: i64, until_ms: i64) -> Result<bool> {
        Ok(self.run(sql::TRY_LEASE, params![id, holder, until_ms, now_ms])? == 1)
    }

    fn release_lease(&mut self, id: &str, holder: &str) -> Result<()> {
        self.run(sql::RELEASE_LEASE, [id, holder]).map(drop)
    }

    fn lease(&mut self, id: &str) -> Result<Option<Lease>> {
        self.one(sql::LEASE, [id], |r| Ok(Lease { holder: r.get(0)?, until_ms: r.get(1)? }))
    }

    fn leases(&mut self) -> Result<Vec<(String, Lease)>> {
        self.all(sql::LEASES, [], |r| {
            Ok((r.get(0)?, Lease { holder: r.get(1)?, until_ms: r.get(2)? }))
        })
    }

    fn leases_of(&mut self, ids: &[String]) -> Result<Vec<(String, Lease)>> {
        let ids = serde_json::to_string(ids).expect("strings serialise");
        self.all(&schema::with_ids(sql::LEASES_OF, Dialect::Sqlite), [ids], |r| {
            Ok((r.get(0)?, Lease { holder: r.get(1)?, until_ms: r.get(2)? }))
        })
    }
}

impl AttemptRows for SqliteTx<'_> {
    fn insert_attempt(
        &mut self,
        id: &str,
        holder: &str,
        from_version: i64,
        at_ms: i64,
    ) -> Result<i64> {
        let inserted =
            self.one(sql::INSERT_ATTEMPT, params![id, holder, from_version, at_ms], |r| r.get(0))?;
        inserted.ok_or_else(|| StoreError::database("an attempt was inserted without an id"))
    }

    fn mark_sent(&mut self, attempt: i64, at_ms: i64) -> Result<()> {
        self.run(sql::MARK_SENT, params![at_ms, attempt]).map(drop)
    }

    fn finish_attempt(&mut self, attempt: i64, at_ms: i64, f: &Finish) -> Result<()> {
        let row =
            params![at_ms, f.outcome.as_str(), f.detail, f.retry_at_ms, f.answered_at_ms, attempt];
        self.run(sql::FINISH_ATTEMPT, row).map(drop)
    }

    fn attempts(&mut self, id: &str, limit: i64) -> Result<Vec<Attempt>> {
        self.all(sql::ATTEMPTS, params![id, limit], attempt_row)
    }

    fn latest_attempts(&mut self) -> Result<Vec<Attempt>> {
        self.all(sql::LATEST_ATTEMPTS, [], attempt_row)
    }

    fn latest_attempts_of(&mut self, ids: &[String]) -> Result<Vec<Attempt>> {
        let ids = serde_json::to_string(ids).expect("strings serialise");
        let sql = schema::with_ids(sql::LATEST_ATTEMPTS_OF, Dialect::Sqlite);
        self.all(&sql, [ids], attempt_row)
    }

    fn prune_journal(&mut self, before_ms: i64, limit: i64) -> Result<u64> {
        Ok(self.run(sql::PRUNE_JOURNAL, params![before_ms, limit])? as u64)
    }

    fn prune_attempts(&mut self, id: &str, below: i64) -> Result<()> {
        self.run(sql::PRUNE_ATTEMPTS, params![id, below]).map(drop)
    }
}

impl PendingRows for SqliteTx<'_> {
    fn put_pending(
        &mut self,
        state_sha256: &str,
        sealed: &Sealed,
        expires_at_ms: i64,
        now_ms: i64,
    ) -> Result<bool> {
        self.run(sql::DROP_EXPIRED_PENDING, params![now_ms])?;
        let row =
            params![state_sha256, sealed.key_id, sealed.nonce, sealed.ciphertext, expires_at_ms];
        Ok(self.run(sql::PUT_PENDING, row)? == 1)
    }

    fn take_pending(&mut self, state_sha256: &str) -> Result<Option<(Sealed, i64)>> {
        self.one(sql::TAKE_PENDING, [state_sha256], |r| {
            let sealed = Sealed { key_id: r.get(0)?, nonce: r.get(1)?, ciphertext: r.get(2)? };
            Ok((sealed, r.get(3)?))
        })
    }
}
