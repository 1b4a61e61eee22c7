//! The row operations on a PostgreSQL transaction, each statement prepared once per session.

use std::collections::HashMap;

use postgres::types::ToSql;
use postgres::{Client, GenericClient, Row, Statement};

use super::fail;
use crate::backend::{
    audit_entry, AttemptRows, AuditRows, LeaseRows, PendingRows, SecretName, SecretRow, SecretRows,
    SystemRow, SystemRows, SystemWithSecrets,
};
use crate::crypto::Sealed;
use crate::journal::{Attempt, Finish, Lease, Outcome};
use crate::listing::Filter;
use crate::model::{AuditEntry, SecretKind, State};
use crate::schema::{self, numbered, sql, Dialect};
use crate::{Result, StoreError};

pub(super) struct PgTx<'a> {
    pub(super) tx: postgres::Transaction<'a>,
    pub(super) statements: &'a mut HashMap<String, Statement>,
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
        due_at: r.get(11),
        connector: r.get(12),
    })
}

fn secret_row(r: &Row) -> Result<SecretRow> {
    secret_row_at(r, 0)
}

/// A secret row whose columns start at `at`.
fn secret_row_at(r: &Row, at: usize) -> Result<SecretRow> {
    Ok(SecretRow {
        system_id: r.get(at),
        kind: SecretKind::parse(r.get(at + 1))?,
        name: r.get(at + 2),
        sealed: Sealed { key_id: r.get(at + 3), nonce: r.get(at + 4), ciphertext: r.get(at + 5) },
    })
}

/// The prepared form of a statement (one of [`sql`]'s, or a listing's), prepared on first use
/// in the session.
fn prepared(
    client: &mut impl GenericClient,
    statements: &mut HashMap<String, Statement>,
    sql: &str,
) -> Result<Statement> {
    if let Some(statement) = statements.get(sql) {
        return Ok(statement.clone());
    }
    let numbered = numbered(&schema::with_ids(sql, Dialect::Postgres));
    let statement = client.prepare(&numbered).map_err(fail)?;
    statements.insert(sql.to_owned(), statement.clone());
    Ok(statement)
}

/// The system and its injected secrets in one statement, outside a transaction (one statement
/// is one snapshot, and one round trip).
pub(super) fn system_with_injected(
    client: &mut Client,
    statements: &mut HashMap<String, Statement>,
    id: &str,
) -> Result<Option<SystemWithSecrets>> {
    let statement = prepared(client, statements, sql::SYSTEM_WITH_INJECTED)?;
    let rows = client.query(&statement, &[&id]).map_err(fail)?;
    let Some(first) = rows.first() else { return Ok(None) };
    let system = system_row(first)?;
    // A system without injected secrets is one row, the secret's columns NULL.
    let secrets = rows
        .iter()
        .filter(|row| row.get::<_, Option<&str>>(13).is_some())
        .map(|row| secret_row_at(row, 13))
        .collect::<Result<_>>()?;
    Ok(Some((system, secrets)))
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
    /// The prepared form of a statement (one of [`sql`]'s, or a listing's), prepared on first
    /// use in the session.
    fn statement(&mut self, sql: &str) -> Result<Statement> {
        prepared(&mut self.tx, self.statements, sql)
    }

    fn run(&mut self, sql: &str, params: Params<'_>) -> Result<u64> {
        let statement = self.statement(sql)?;
        self.tx.execute(&statement, params).map_err(fail)
    }

    fn all(&mut self, sql: &str, params: Params<'_>) -> Result<Vec<Row>> {
        let statement = self.statement(sql)?;
        self.tx.query(&statement, params).map_err(fail)
    }

    fn one(&mut self, sql: &str, params: Params<'_>) -> Result<Option<Row>> {
        let statement = self.statement(sql)?;
        self.tx.query_opt(&statement, params).map_err(fail)
    }
}

impl SystemRows for PgTx<'_> {
    fn system(&mut self, id: &str) -> Result<Option<SystemRow>> {
        self.one(sql::SYSTEM, &[&id])?.as_ref().map(system_row).transpose()
    }

    fn due(
        &mut self,
        until: i64,
        after_at: i64,
        after_id: &str,
        limit: i64,
    ) -> Result<Vec<SystemRow>> {
        let rows = self.all(sql::DUE, &[&until, &after_at, &after_id, &limit])?;
        rows.iter().map(system_row).collect()
    }

    fn idle(
        &mut self,
        issued_by: i64,
        after_at: i64,
        after_id: &str,
        limit: i64,
    ) -> Result<Vec<SystemRow>> {
        let rows = self.all(sql::IDLE, &[&after_at, &issued_by, &after_at, &after_id, &limit])?;
        rows.iter().map(system_row).collect()
    }

    fn page(&mut self, filter: &Filter, after: &str, limit: i64) -> Result<Vec<SystemRow>> {
        let (conditions, values) = filter.conditions();
        let mut bound: Vec<&(dyn ToSql + Sync)> = vec![&after];
        bound.extend(values.iter().map(|v| v as &(dyn ToSql + Sync)));
        bound.push(&limit);
        let rows = self.all(&schema::page_sql(&conditions), &bound)?;
        rows.iter().map(system_row).collect()
    }

    fn count(&mut self, filter: &Filter) -> Result<u64> {
        let (conditions, values) = filter.conditions();
        let bound: Vec<&(dyn ToSql + Sync)> =
            values.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
        let row = self.one(&schema::count_sql(&conditions), &bound)?;
        Ok(row.map_or(0, |r| u64::try_from(r.get::<_, i64>(0)).unwrap_or(0)))
    }

    fn reschedule(&mut self, id: &str, version: i64, due_at: Option<i64>) -> Result<bool> {
        Ok(self.run(sql::RESCHEDULE, &[&due_at, &id, &version])? == 1)
    }

    fn postpone(&mut self, id: &str, until: i64) -> Result<()> {
        self.run(sql::POSTPONE, &[&until, &id, &until]).map(drop)
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
                &s.due_at,
                &s.connector,
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
                &s.due_at,
                &s.connector,
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

    fn delete_system_at(&mut self, id: &str, version: i64) -> Result<bool> {
        Ok(self.run(sql::DELETE_SYSTEM_AT, &[&id, &version])? == 1)
    }
}

impl SecretRows for PgTx<'_> {
    fn secrets(&mut self, id: &str) -> Result<Vec<SecretRow>> {
        self.all(sql::SECRETS, &[&id])?.iter().map(secret_row).collect()
    }

    fn secret_names(&mut self, ids: &[String]) -> Result<Vec<SecretName>> {
        let rows = self.all(sql::SECRET_NAMES_OF, &[&ids])?;
        rows.iter()
            .map(|r| {
                Ok(SecretName {
                    system_id: r.get(0),
                    kind: SecretKind::parse(r.get(1))?,
                    name: r.get(2),
                    key_id: r.get(3),
                })
            })
            .collect()
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

    fn prune_audit(&mut self, before: i64, limit: i64) -> Result<u64> {
        self.run(sql::PRUNE_AUDIT, &[&before, &limit])
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

    fn leases_of(&mut self, ids: &[String]) -> Result<Vec<(String, Lease)>> {
        Ok(self.all(sql::LEASES_OF, &[&ids])?.iter().map(|r| (r.get(0), lease(r, 1))).collect())
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

    fn latest_attempts_of(&mut self, ids: &[String]) -> Result<Vec<Attempt>> {
        self.all(sql::LATEST_ATTEMPTS_OF, &[&ids])?.iter().map(attempt_row).collect()
    }

    fn prune_journal(&mut self, before_ms: i64, limit: i64) -> Result<u64> {
        self.run(sql::PRUNE_JOURNAL, &[&before_ms, &limit])
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
