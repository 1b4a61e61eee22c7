//! Encrypted backup bundles: `authplug store export` / `import`.
//!
//! A bundle is a small JSON envelope around one ciphertext: every system with its secrets, sealed
//! under the store's current master key (the key id travels in the clear, so an import with the
//! wrong keyring says which key it needs). Restoring needs a keyring that has that key.

use std::collections::BTreeMap;

use authplug_protocol::Secret;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::crypto::{Place, Sealed};
use crate::{Change, Injected, Lifecycle, NewSystem, Result, State, Store, StoreError};

const FORMAT: &str = "authplug-bundle-v1";

#[derive(Serialize, Deserialize)]
struct Envelope {
    format: String,
    created_at: i64,
    systems: usize,
    key_id: String,
    nonce: String,
    ciphertext: String,
}

#[derive(Serialize, Deserialize)]
struct BundledSystem {
    id: String,
    scheme: String,
    state: State,
    state_reason: Option<String>,
    parameters: BTreeMap<String, serde_json::Value>,
    expires_at: Option<i64>,
    required: BTreeMap<String, Secret>,
    injected: BTreeMap<String, Secret>,
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Imported {
    pub created: Vec<String>,
    pub replaced: Vec<String>,
    pub skipped: Vec<String>,
}

fn place(created_at: &str) -> Place<'_> {
    Place { system: "(bundle)", kind: "export", name: created_at }
}

impl Store {
    /// Every system with its secrets, as an encrypted bundle.
    pub fn export(&self) -> Result<Vec<u8>> {
        let mut systems = Vec::new();
        for summary in self.list()? {
            let Some(record) = self.get(&summary.id)? else { continue };
            let s = record.summary;
            systems.push(BundledSystem {
                id: s.id,
                scheme: s.scheme,
                state: s.state,
                state_reason: s.state_reason,
                parameters: s.parameters,
                expires_at: s.expires_at,
                required: record.required,
                injected: record.injected,
            });
        }
        let plain = Zeroizing::new(serde_json::to_vec(&systems).expect("bundles serialise"));
        let created_at = self.clock.now_secs();
        let sealed = self.keys.seal(&place(&created_at.to_string()), &plain)?;
        let envelope = Envelope {
            format: FORMAT.into(),
            created_at,
            systems: systems.len(),
            key_id: sealed.key_id,
            nonce: STANDARD.encode(sealed.nonce),
            ciphertext: STANDARD.encode(sealed.ciphertext),
        };
        Ok(serde_json::to_vec_pretty(&envelope).expect("envelopes serialise"))
    }

    /// Restores a bundle. Existing systems are skipped unless `replace`, which overwrites them
    /// (compare-and-set on their current version). Audited as `imported`.
    pub fn import(&self, bytes: &[u8], actor: &str, replace: bool) -> Result<Imported> {
        let envelope: Envelope = serde_json::from_slice(bytes)
            .map_err(|e| StoreError::Bundle(format!("not an authplug bundle ({e})")))?;
        if envelope.format != FORMAT {
            return Err(StoreError::Bundle(format!("unknown format {:?}", envelope.format)));
        }
        let decode = |text: &str, what: &str| {
            STANDARD
                .decode(text)
                .map_err(|_| StoreError::Bundle(format!("its {what} is not base64")))
        };
        let sealed = Sealed {
            key_id: envelope.key_id.clone(),
            nonce: decode(&envelope.nonce, "nonce")?,
            ciphertext: decode(&envelope.ciphertext, "ciphertext")?,
        };
        let created_at = envelope.created_at.to_string();
        let plain = self.keys.open(&place(&created_at), &sealed).map_err(|e| match e {
            StoreError::Tampered { .. } => StoreError::Bundle(
                "its ciphertext does not authenticate (damaged or altered)".into(),
            ),
            other => other,
        })?;
        let systems: Vec<BundledSystem> = serde_json::from_slice(&plain)
            .map_err(|_| StoreError::Bundle("its content is not a list of systems".into()))?;
        // The count shown outside the ciphertext is held to what the ciphertext holds.
        if systems.len() != envelope.systems {
            return Err(StoreError::Bundle(format!(
                "it says it holds {} systems but its sealed content holds {} (altered)",
                envelope.systems,
                systems.len()
            )));
        }
        let mut report = Imported { created: vec![], replaced: vec![], skipped: vec![] };
        for system in systems {
            match self.version(&system.id)? {
                Some(version) if replace => {
                    let change = Change {
                        scheme: Some(system.scheme),
                        parameters: Some(system.parameters),
                        required: Some(system.required),
                        injected: Some(Injected::new(system.injected, system.expires_at)),
                        state: Some(Lifecycle::from_parts(system.state, system.state_reason)),
                        ..Default::default()
                    };
                    self.update(&system.id, version, change, actor)?;
                    report.replaced.push(system.id);
                }
                Some(_) => report.skipped.push(system.id),
                None => {
                    let id = system.id.clone();
                    let state = Lifecycle::from_parts(system.state, system.state_reason);
                    let created = self.create(
                        NewSystem {
                            id: system.id,
                            scheme: system.scheme,
                            parameters: system.parameters,
                            required: system.required,
                            injected: system.injected,
                            expires_at: system.expires_at,
                        },
                        actor,
                    )?;
                    if state.state() != State::Active {
                        let change = Change { state: Some(state), ..Default::default() };
                        self.update(&id, created.summary.version, change, actor)?;
                    }
                    report.created.push(id);
                }
            }
        }
        Ok(report)
    }
}
