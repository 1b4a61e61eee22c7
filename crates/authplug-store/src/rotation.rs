//! Key rotation: every value re-sealed under a new current key, one system per transaction, so
//! writers go on meanwhile; resumable, because the new key reaches the key file before any value
//! is sealed with it, and old keys leave the file only when nothing uses them.

use serde::Serialize;
use serde_json::json;

use crate::backend::SecretRow;
use crate::crypto::{self, Place};
use crate::{Result, Store, StoreError};

/// What a key rotation did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rotation {
    pub current_key: String,
    /// Whether it finished an interrupted rotation instead of starting one.
    pub resumed: bool,
    pub systems_rekeyed: usize,
    pub retired_keys: Vec<String>,
}

impl Store {
    /// Re-encrypts every value under a new current key, one system per transaction, so writers go
    /// on meanwhile. With a key file, the new key is written (beside the old ones) before any
    /// value is re-encrypted, and an interrupted rotation is finished by the next call instead of
    /// starting another. Keys that no value uses any more are then dropped from the key file.
    pub fn rotate_key(&self, progress: &mut dyn FnMut(usize, usize)) -> Result<Rotation> {
        let current = self.keys.current();
        let pending = self.tx(false, |tx| tx.systems_not_under(current.id()))?;
        let resumed = !pending.is_empty();
        let target = if resumed {
            current
        } else {
            match self.keys.source() {
                crypto::KeySource::Env => {
                    return Err(StoreError::key(format!(
                        "every value is already sealed under {}; to rotate, put a new key first in \
                         {} (new,old) and run this again",
                        current.id(),
                        crypto::MASTER_KEY_ENV
                    )));
                }
                _ => self.keys.begin_rotation()?,
            }
        };
        let todo =
            if resumed { pending } else { self.tx(false, |tx| tx.systems_not_under(target.id()))? };
        let total = todo.len();
        for (done, id) in todo.iter().enumerate() {
            self.rekey(id, target.id())?;
            progress(done + 1, total);
        }
        let in_use = self.tx(false, |tx| tx.key_ids())?;
        let retired = self.keys.retire_except(&in_use)?;
        Ok(Rotation {
            current_key: target.id().to_owned(),
            resumed,
            systems_rekeyed: total,
            retired_keys: retired,
        })
    }

    fn rekey(&self, id: &str, target: &str) -> Result<()> {
        self.tx(true, |tx| {
            // Lock the system row first (a same-version write), so a concurrent refresh that
            // stores new secrets either commits before these are read or waits until the rekey
            // commits; re-sealing never writes an older value over a newer one (PostgreSQL runs
            // writes under READ COMMITTED; SQLite's write transactions are serial anyway).
            let Some(row) = tx.system(id)? else { return Ok(()) };
            if !tx.update_system(&row, row.version)? {
                return Err(StoreError::VersionConflict {
                    id: id.to_owned(),
                    expected: row.version,
                    actual: tx.system(id)?.map(|r| r.version).unwrap_or(-1),
                });
            }
            let mut moved = 0;
            for row in tx.secrets(id)? {
                if row.sealed.key_id == target {
                    continue;
                }
                let place = Place { system: id, kind: row.kind.as_str(), name: &row.name };
                let plain = self.keys.open(&place, &row.sealed)?;
                let sealed = self.keys.seal(&place, &plain)?;
                tx.put_secret(&SecretRow { sealed, ..row })?;
                moved += 1;
            }
            if moved > 0 {
                let detail = json!({"key": target, "values": moved});
                tx.append_audit(&self.audit_entry(id, "authplug", "rekeyed", detail))?;
            }
            Ok(())
        })
    }
}
