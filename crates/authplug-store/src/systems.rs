//! Systems: create, read, compare-and-set, delete, and the audit trail. Values are sealed before
//! a transaction starts and opened after it ends, so no transaction waits on the cipher.

use std::collections::BTreeMap;

use authplug_protocol::Secret;
use serde_json::json;

use crate::backend::{SecretName, SecretRow, SystemRow, SystemWithSecrets, Tx};
use crate::crypto::Place;
use crate::model::{
    AuditEntry, Change, Deletion, Injected, Lifecycle, NewSystem, Onboarded, SecretKind, State,
    SystemRecord, SystemSummary,
};
use crate::{Result, Store, StoreError};

impl Store {
    /// Stores a new onboarding: creates the system or, with `replace`, gives the existing one
    /// the onboarding's scheme, parameters and secrets, active again and without failures.
    /// Without `replace`, a taken id is [`StoreError::Exists`]. Answers the record and, when it
    /// replaced one, the system as it was; `also` may add an audit line about that, written in
    /// the same transaction (the engine's `recovered`).
    pub fn onboarded(
        &self,
        new: NewSystem,
        replace: bool,
        actor: &str,
        also: &dyn Fn(&SystemSummary) -> Option<(String, serde_json::Value)>,
    ) -> Result<Onboarded> {
        // Kept for a replacement only.
        let again = replace.then(|| new.clone());
        let (id, new) = match (self.create(new, actor), again) {
            (Ok(record), _) => return Ok(Onboarded { record, previous: None }),
            (Err(StoreError::Exists(id)), Some(new)) => (id, new),
            (Err(other), _) => return Err(other),
        };
        let change = Change {
            scheme: Some(new.scheme),
            parameters: Some(new.parameters),
            required: Some(new.required),
            injected: Some(Injected::new(new.injected, new.expires_at)),
            state: Some(Lifecycle::Active),
            last_refresh_at: Some(self.clock.now_secs()),
            failures: Some(0),
        };
        let sealed = self.seal_change(&id, &change)?;
        let (previous, row, secrets) = self.tx(true, |tx| {
            let current = tx.system(&id)?.ok_or_else(|| StoreError::NotFound(id.clone()))?;
            let previous = summary(current.clone(), &tx.secrets(&id)?)?;
            let next = self.write_change(tx, &id, current.version, &change, &sealed, actor)?;
            if let Some((action, detail)) = also(&previous) {
                tx.append_audit(&self.audit_entry(&id, actor, &action, detail))?;
            }
            Ok((previous, next, tx.secrets(&id)?))
        })?;
        Ok(Onboarded { record: self.record(row, secrets)?, previous: Some(previous) })
    }

    /// Creates a system; fails with [`StoreError::Exists`] if the id is taken.
    pub fn create(&self, new: NewSystem, actor: &str) -> Result<SystemRecord> {
        let id = new.id.clone();
        self.create_batch(vec![new], actor)?;
        self.get(&id)?.ok_or(StoreError::NotFound(id))
    }

    /// Creates many systems in one transaction (a bulk import or a load test): all of them, or
    /// none if one id is taken ([`StoreError::Exists`] names it) or invalid. Every value is
    /// sealed before the transaction starts; each system gets its `created` audit line.
    pub fn create_batch(&self, news: Vec<NewSystem>, actor: &str) -> Result<usize> {
        let now = self.clock.now_secs();
        let mut rows = Vec::with_capacity(news.len());
        for new in &news {
            crate::check_system_id(&new.id)?;
            let mut sealed = self.seal_kind(&new.id, SecretKind::Required, &new.required)?;
            sealed.extend(self.seal_kind(&new.id, SecretKind::Injected, &new.injected)?);
            rows.push((new_row(new, now), sealed));
        }
        self.tx(true, |tx| {
            for (row, sealed) in &rows {
                if !tx.insert_system(row)? {
                    return Err(StoreError::Exists(row.id.clone()));
                }
                for secret in sealed {
                    tx.put_secret(secret)?;
                }
                let detail = json!({"scheme": row.scheme, "version": 1, "secrets": names(sealed)});
                tx.append_audit(&self.audit_entry(&row.id, actor, "created", detail))?;
            }
            Ok(())
        })?;
        Ok(rows.len())
    }

    /// The system with its secrets decrypted, or `None`. Any value that does not decrypt fails the
    /// whole read: nothing is returned half.
    pub fn get(&self, id: &str) -> Result<Option<SystemRecord>> {
        let found = self.tx(false, |tx| {
            let Some(row) = tx.system(id)? else { return Ok(None) };
            Ok(Some((row, tx.secrets(id)?)))
        })?;
        self.found(found)
    }

    /// The system with its injected secrets only, read at once if the backend can without
    /// waiting for anything but its own file (SQLite with a read connection idle now); `None`
    /// otherwise. For callers on threads that must not block (an async worker answering
    /// `authorize`, which needs no required secret). `required` is left empty, and the
    /// summary's `secret_names` and `key_ids` cover the injected secrets only.
    pub fn injected_now(&self, id: &str) -> Option<Result<Option<SystemRecord>>> {
        Some(self.backend.injected_now(id)?.and_then(|found| self.found(found)))
    }

    /// The system with its injected secrets only, as [`Store::injected_now`] but waiting for a
    /// connection if need be (on PostgreSQL one statement, one round trip).
    pub fn injected(&self, id: &str) -> Result<Option<SystemRecord>> {
        self.found(self.backend.injected(id)?)
    }

    /// The system's version, or `None`: a cheap read for callers that wait for a change.
    pub fn version(&self, id: &str) -> Result<Option<i64>> {
        self.tx(false, |tx| Ok(tx.system(id)?.map(|row| row.version)))
    }

    /// How many systems each scheme serves, counted by the database (for readiness: a stored
    /// system whose scheme is not loaded cannot be served).
    pub fn count_by_scheme(&self) -> Result<BTreeMap<String, u64>> {
        Ok(self.tx(false, |tx| tx.count_by_scheme())?.into_iter().collect())
    }

    /// How many systems are in each state (every state named, zeros included), counted by the
    /// database: cheap enough for readiness probes and metrics scrapes.
    pub fn count_by_state(&self) -> Result<BTreeMap<String, u64>> {
        let counted = self.tx(false, |tx| tx.count_by_state())?;
        let mut counts: BTreeMap<String, u64> =
            [State::Active, State::NeedsReauth].map(|s| (s.as_str().to_owned(), 0)).into();
        for (state, count) in counted {
            *counts.entry(state.as_str().to_owned()).or_default() += count;
        }
        Ok(counts)
    }

    /// Metadata of every system, by id; no value is decrypted. It holds every system in
    /// memory: listings page through [`Store::page`] instead.
    pub fn list(&self) -> Result<Vec<SystemSummary>> {
        let mut all = Vec::new();
        let mut cursor = None;
        loop {
            let page = self.page(&Default::default(), cursor.as_ref(), crate::MAX_PAGE)?;
            all.extend(page.systems);
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(all),
            }
        }
    }

    /// Compare-and-set: applies `change` if the system is still at `expected_version`, and returns
    /// the new record (version `expected_version + 1`).
    pub fn update(
        &self,
        id: &str,
        expected_version: i64,
        change: Change,
        actor: &str,
    ) -> Result<SystemRecord> {
        let sealed = self.seal_change(id, &change)?;
        let (row, secrets) = self.tx(true, |tx| {
            let next = self.write_change(tx, id, expected_version, &change, &sealed, actor)?;
            Ok((next, tx.secrets(id)?))
        })?;
        self.record(row, secrets)
    }

    /// Deletes a system and its secrets; its audit trail stays. False if there was none.
    pub fn delete(&self, id: &str, actor: &str) -> Result<bool> {
        self.tx(true, |tx| {
            let existed = tx.delete_system(id)?;
            if existed {
                tx.append_audit(&self.audit_entry(id, actor, "deleted", json!({})))?;
            }
            Ok(existed)
        })
    }

    /// Deletes a system if it is still at `version` (what its credential was revoked from),
    /// with `detail` in its audit line. A system that changed meanwhile (a refresh stored new
    /// tokens) is left for the caller to revoke again.
    pub fn delete_at(
        &self,
        id: &str,
        version: i64,
        actor: &str,
        detail: serde_json::Value,
    ) -> Result<Deletion> {
        self.tx(true, |tx| {
            let Some(row) = tx.system(id)? else { return Ok(Deletion::Gone) };
            if row.version != version {
                return Ok(Deletion::Moved);
            }
            // The system's row first, as every writer locks it first (no deadlock with a
            // refresh storing its result); its secrets go with it (ON DELETE CASCADE), and are
            // deleted by name too.
            if !tx.delete_system_at(id, version)? {
                return Ok(Deletion::Moved);
            }
            tx.delete_secrets(id, SecretKind::Required)?;
            tx.delete_secrets(id, SecretKind::Injected)?;
            tx.append_audit(&self.audit_entry(id, actor, "deleted", detail.clone()))?;
            Ok(Deletion::Deleted)
        })
    }

    /// Records an audited event without changing the system (e.g. values revealed to a user).
    pub fn record_event(
        &self,
        id: &str,
        actor: &str,
        action: &str,
        detail: serde_json::Value,
    ) -> Result<()> {
        self.record_events(action, vec![(id.to_owned(), actor.to_owned(), detail)])
    }

    /// [`Store::record_event`] for each `(system, actor, detail)` of `rows`, all with
    /// `action`, in one transaction.
    pub fn record_events(
        &self,
        action: &str,
        rows: Vec<(String, String, serde_json::Value)>,
    ) -> Result<()> {
        self.tx(true, |tx| {
            for (id, actor, detail) in rows {
                tx.append_audit(&self.audit_entry(&id, &actor, action, detail))?;
            }
            Ok(())
        })
    }

    /// The audit trail of a system, oldest first.
    pub fn audit(&self, id: &str) -> Result<Vec<AuditEntry>> {
        self.tx(false, |tx| tx.audit(id))
    }

    /// The sealed secret sets a change replaces, sealed before its transaction starts.
    pub(crate) fn seal_change(&self, id: &str, change: &Change) -> Result<SealedSets> {
        let required = change.required.as_ref();
        let injected = change.injected.as_ref().map(|i| &i.secrets);
        Ok(SealedSets {
            required: required.map(|r| self.seal_kind(id, SecretKind::Required, r)).transpose()?,
            injected: injected.map(|i| self.seal_kind(id, SecretKind::Injected, i)).transpose()?,
        })
    }

    /// The compare-and-set of [`Store::update`] inside a transaction: checks the version,
    /// writes the row and the sealed secret sets, and appends the audit line. Returns the new
    /// row.
    pub(crate) fn write_change(
        &self,
        tx: &mut dyn Tx,
        id: &str,
        expected_version: i64,
        change: &Change,
        sealed: &SealedSets,
        actor: &str,
    ) -> Result<SystemRow> {
        let current = tx.system(id)?.ok_or_else(|| StoreError::NotFound(id.to_owned()))?;
        let conflict = |actual| StoreError::VersionConflict {
            id: id.to_owned(),
            expected: expected_version,
            actual,
        };
        if current.version != expected_version {
            return Err(conflict(current.version));
        }
        let mut next = current.clone();
        let mut changed = Vec::new();
        if let Some(scheme) = &change.scheme {
            next.scheme = scheme.clone();
            changed.push("scheme".to_owned());
        }
        if let Some(parameters) = &change.parameters {
            next.parameters = serde_json::to_string(parameters).expect("JSON values serialise");
            next.connector = connector_of(parameters);
            changed.push("parameters".to_owned());
        }
        if let Some(injected) = &change.injected {
            next.expires_at = injected.expires_at;
            changed.push("expires_at".to_owned());
        }
        if let Some(lifecycle) = &change.state {
            next.state = lifecycle.state();
            next.state_reason = lifecycle.reason().map(str::to_owned);
            changed.push(format!("state={}", next.state));
        }
        if let Some(at) = change.last_refresh_at {
            next.last_refresh_at = Some(at);
        }
        if let Some(failures) = change.failures {
            next.failures = failures;
        }
        next.version = expected_version + 1;
        next.updated_at = self.clock.now_secs();
        let margin = change.injected.as_ref().and_then(|i| i.margin_secs);
        next.due_at = crate::schedule::next_due(&current, &next, margin);
        if !tx.update_system(&next, expected_version)? {
            return Err(conflict(tx.system(id)?.map(|r| r.version).unwrap_or(-1)));
        }
        for (kind, rows) in
            [(SecretKind::Required, &sealed.required), (SecretKind::Injected, &sealed.injected)]
        {
            if let Some(rows) = rows {
                tx.delete_secrets(id, kind)?;
                for secret in rows {
                    tx.put_secret(secret)?;
                }
                changed.extend(names(rows));
            }
        }
        let detail = json!({"version": next.version, "changed": changed});
        tx.append_audit(&self.audit_entry(id, actor, "updated", detail))?;
        Ok(next)
    }

    pub(crate) fn seal_kind(
        &self,
        id: &str,
        kind: SecretKind,
        values: &BTreeMap<String, Secret>,
    ) -> Result<Vec<SecretRow>> {
        values
            .iter()
            .map(|(name, value)| {
                let place = Place { system: id, kind: kind.as_str(), name };
                Ok(SecretRow {
                    system_id: id.to_owned(),
                    kind,
                    name: name.clone(),
                    sealed: self.keys.seal(&place, value.expose().as_bytes())?,
                })
            })
            .collect()
    }

    /// [`Store::record`] of a read that may have found nothing.
    fn found(&self, found: Option<SystemWithSecrets>) -> Result<Option<SystemRecord>> {
        found.map(|(row, secrets)| self.record(row, secrets)).transpose()
    }

    fn record(&self, row: SystemRow, secrets: Vec<SecretRow>) -> Result<SystemRecord> {
        let mut required = BTreeMap::new();
        let mut injected = BTreeMap::new();
        for secret in &secrets {
            let kind = secret.kind.as_str();
            let place = Place { system: &row.id, kind, name: &secret.name };
            let plain = self.keys.open(&place, &secret.sealed)?;
            let text = String::from_utf8(plain.to_vec()).map_err(|_| {
                StoreError::tampered(format!(
                    "{kind} secret `{}` of system `{}`",
                    secret.name, row.id
                ))
            })?;
            let set = match secret.kind {
                SecretKind::Required => &mut required,
                SecretKind::Injected => &mut injected,
            };
            set.insert(secret.name.clone(), Secret::new(text));
        }
        Ok(SystemRecord { summary: summary(row, &secrets)?, required, injected })
    }

    /// An audit line stamped now.
    pub(crate) fn audit_entry(
        &self,
        id: &str,
        actor: &str,
        action: &str,
        detail: serde_json::Value,
    ) -> AuditEntry {
        AuditEntry {
            system_id: id.to_owned(),
            at: self.clock.now_secs(),
            actor: actor.to_owned(),
            action: action.to_owned(),
            detail,
        }
    }
}

/// The secret sets a change replaces, sealed.
#[derive(Debug, Default)]
pub(crate) struct SealedSets {
    required: Option<Vec<SecretRow>>,
    injected: Option<Vec<SecretRow>>,
}

/// The connector's name a system's parameters record (see
/// [`CONNECTOR_PARAMETER`](crate::CONNECTOR_PARAMETER)).
pub(crate) fn connector_of(parameters: &BTreeMap<String, serde_json::Value>) -> Option<String> {
    let name = parameters.get(crate::CONNECTOR_PARAMETER)?.get("name")?;
    name.as_str().map(str::to_owned)
}

/// Rows and the secret names of all of them (sorted by system id, as the query gives them) as
/// summaries, in the rows' order.
pub(crate) fn summaries(
    rows: Vec<SystemRow>,
    names: Vec<SecretName>,
) -> Result<Vec<SystemSummary>> {
    let mut by_system: std::collections::HashMap<String, Vec<SecretName>> = Default::default();
    for name in names {
        by_system.entry(name.system_id.clone()).or_default().push(name);
    }
    rows.into_iter()
        .map(|row| {
            let names = by_system.remove(&row.id).unwrap_or_default();
            let listed = names.iter().map(|n| format!("{}.{}", n.kind.as_str(), n.name)).collect();
            summary_of(row, listed, names.into_iter().map(|n| n.key_id).collect())
        })
        .collect()
}

fn summary(row: SystemRow, secrets: &[SecretRow]) -> Result<SystemSummary> {
    let key_ids = secrets.iter().map(|s| s.sealed.key_id.clone()).collect();
    summary_of(row, names(secrets), key_ids)
}

fn summary_of(
    row: SystemRow,
    secret_names: Vec<String>,
    mut key_ids: Vec<String>,
) -> Result<SystemSummary> {
    let parameters = serde_json::from_str(&row.parameters).map_err(|_| {
        StoreError::corrupt(format!("the parameters of system `{}` are not JSON", row.id))
    })?;
    key_ids.sort();
    key_ids.dedup();
    Ok(SystemSummary {
        state: row.state,
        id: row.id,
        scheme: row.scheme,
        state_reason: row.state_reason,
        parameters,
        expires_at: row.expires_at,
        version: row.version,
        created_at: row.created_at,
        updated_at: row.updated_at,
        last_refresh_at: row.last_refresh_at,
        failures: row.failures,
        secret_names,
        key_ids,
        due_at: row.due_at,
    })
}

fn names(secrets: &[SecretRow]) -> Vec<String> {
    secrets.iter().map(|s| format!("{}.{}", s.kind.as_str(), s.name)).collect()
}

/// The row of a new system created at `now`.
fn new_row(new: &NewSystem, now: i64) -> SystemRow {
    SystemRow {
        id: new.id.clone(),
        scheme: new.scheme.clone(),
        state: State::Active,
        state_reason: None,
        parameters: serde_json::to_string(&new.parameters).expect("JSON values serialise"),
        expires_at: new.expires_at,
        version: 1,
        created_at: now,
        updated_at: now,
        last_refresh_at: None,
        failures: 0,
        due_at: crate::schedule::due_at(new.expires_at, now, None),
        connector: connector_of(&new.parameters),
    }
}
