//! Deleting a system, its credential revoked at the provider first when asked (so that no grant
//! outlives the connection, RFC 7009 for OAuth2).
//!
//! The revocation is of the version read: the system is deleted only if it is still at that
//! version, so tokens a refresh stored meanwhile are revoked too (read, revoke, delete again, a
//! few times at most). Each round revokes what was stored, so it settles: a revoked refresh
//! token cannot mint new ones. A provider that does not revoke leaves the system stored, unless
//! the caller forces the delete; a scheme with nothing to revoke deletes with a note.

use std::sync::Arc;

use authplug_protocol::{ErrorCode, RevokeRequest};
use authplug_store::Deletion;
use serde::Serialize;

use crate::{Engine, EngineError};

/// How many times a system that moved under a revocation is read and revoked again.
const ROUNDS: usize = 3;

/// What a delete did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Deleted {
    pub system: String,
    /// The injected secrets revoked at the provider, by name.
    pub revoked: Vec<String>,
    /// What was not revoked, and why.
    pub notes: Vec<String>,
}

/// Whether a delete revokes first, and whether a failed revocation still deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    /// Delete only.
    Skip,
    /// Revoke, and delete only if the provider did not fail.
    Revoke,
    /// Revoke, and delete even if the provider failed (the failure is in the notes).
    RevokeOrForce,
}

impl Engine {
    /// Deletes system `id` as `actor`, revoking its credential first as `revocation` says.
    pub async fn delete(
        self: &Arc<Self>,
        id: &str,
        actor: &str,
        revocation: Revocation,
    ) -> Result<Deleted, EngineError> {
        let mut deleted = Deleted { system: id.to_owned(), ..Deleted::default() };
        if revocation == Revocation::Skip {
            let (target, actor) = (id.to_owned(), actor.to_owned());
            let existed = self.blocking("a store write", move |s| Ok(s.delete(&target, &actor)?));
            if !existed.await? {
                return Err(EngineError::NotFound(id.to_owned()));
            }
            self.forget(id);
            return Ok(deleted);
        }
        for _ in 0..ROUNDS {
            let record = self.get(id).await?;
            let version = record.summary.version;
            let scheme_id = record.summary.scheme.clone();
            let request = RevokeRequest {
                scheme: scheme_id.clone(),
                required: record.required,
                injected: record.injected,
                parameters: record.summary.parameters,
            };
            let (registry, services) = (self.registry.clone(), self.services.clone());
            let answer = tokio::task::spawn_blocking(move || {
                registry.get(&scheme_id).map(|scheme| scheme.revoke(request, &services))
            })
            .await
            .map_err(|_| EngineError::Aborted { what: "a revocation" })?;
            match answer {
                Some(Ok(answer)) => {
                    for name in answer.revoked {
                        if !deleted.revoked.contains(&name) {
                            deleted.revoked.push(name);
                        }
                    }
                    deleted.notes.extend(answer.notes);
                    deleted.notes.dedup();
                }
                Some(Err(error)) if error.code == ErrorCode::UnknownMethod => deleted.notes.push(
                    format!("nothing revoked: scheme {} does not revoke credentials", error.scheme),
                ),
                Some(Err(error)) if revocation == Revocation::RevokeOrForce => {
                    deleted.notes.push(format!("not revoked, deleted anyway: {error}"));
                }
                Some(Err(error)) => {
                    return Err(EngineError::NotRevoked { system: id.to_owned(), error });
                }
                None if revocation == Revocation::RevokeOrForce => deleted.notes.push(format!(
                    "not revoked, deleted anyway: scheme {} is not loaded",
                    record.summary.scheme
                )),
                None => {
                    return Err(EngineError::SchemeNotLoaded {
                        system: id.to_owned(),
                        scheme: record.summary.scheme,
                    })
                }
            }
            let detail = serde_json::json!({"revoked": deleted.revoked, "notes": deleted.notes});
            let (target, actor_owned) = (id.to_owned(), actor.to_owned());
            let outcome = self
                .blocking("a store write", move |store| {
                    Ok(store.delete_at(&target, version, &actor_owned, detail)?)
                })
                .await?;
            match outcome {
                Deletion::Deleted => {
                    self.forget(id);
                    return Ok(deleted);
                }
                Deletion::Gone => return Err(EngineError::NotFound(id.to_owned())),
                // A refresh stored new tokens meanwhile: revoke those too.
                Deletion::Moved => continue,
            }
        }
        Err(EngineError::Busy {
            system: id.to_owned(),
            holder: "refreshes that kept changing it while it was revoked".into(),
        })
    }
}
