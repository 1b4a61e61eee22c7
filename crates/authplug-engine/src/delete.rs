//! Deleting a system, its credential revoked at the provider first when asked (so that no grant
//! outlives the connection, RFC 7009 for OAuth2).
//!
//! No refresh runs meanwhile: the delete takes the system's turn in this process and the store's
//! lease (as a refresh does, waiting for one under way to store its result), so what it revokes
//! is what is stored, and nothing is issued between the revocation and the delete. The system
//! is deleted only at the version revoked (a writer outside the lease, an onboarding, makes it
//! read and revoke again, a few times at most). A provider that does not revoke leaves the
//! system stored, unless the caller forces the delete; a scheme with nothing to revoke deletes
//! with a note.

use std::sync::Arc;
use std::time::Instant;

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
        let deleted = Deleted { system: id.to_owned(), ..Deleted::default() };
        if revocation == Revocation::Skip {
            let (target, actor) = (id.to_owned(), actor.to_owned());
            let existed = self.blocking("a store write", move |s| Ok(s.delete(&target, &actor)?));
            if !existed.await? {
                return Err(EngineError::NotFound(id.to_owned()));
            }
            self.forget(id);
            return Ok(deleted);
        }
        let flight = self.flight(id);
        let deadline = Instant::now() + self.config.wait_for_other;
        let result = match tokio::time::timeout_at(deadline.into(), flight.lock()).await {
            Ok(_turn) => self.delete_leased(id, actor, revocation, deadline, deleted).await,
            Err(_) => Err(EngineError::Busy {
                system: id.to_owned(),
                holder: "another caller in this process".into(),
            }),
        };
        self.leave_flight(id, flight);
        result
    }

    /// With this process's turn: takes the store's lease, revokes, deletes, gives it back.
    async fn delete_leased(
        &self,
        id: &str,
        actor: &str,
        revocation: Revocation,
        deadline: Instant,
        deleted: Deleted,
    ) -> Result<Deleted, EngineError> {
        let named = self.holder.next();
        let holder = format!("delete:{named}");
        loop {
            let (target, lessee, ttl) = (id.to_owned(), holder.clone(), self.config.lease_ttl);
            let taken = self
                .blocking("a store write", move |s| Ok(s.try_lease(&target, &lessee, ttl)?))
                .await?;
            if taken {
                break;
            }
            let target = id.to_owned();
            let (version, lease) = self
                .blocking("a store read", move |s| Ok((s.version(&target)?, s.lease(&target)?)))
                .await?;
            let version = version.ok_or_else(|| EngineError::NotFound(id.to_owned()))?;
            let other = lease.map(|l| l.holder).unwrap_or_default();
            self.wait_for_holder(id, version, deadline, &other).await?;
        }
        let result = self.revoke_and_delete(id, actor, revocation, deleted).await;
        let (target, lessee) = (id.to_owned(), holder);
        let _ =
            self.blocking("a store write", move |s| Ok(s.release_lease(&target, &lessee)?)).await;
        drop(named);
        result
    }

    async fn revoke_and_delete(
        &self,
        id: &str,
        actor: &str,
        revocation: Revocation,
        mut deleted: Deleted,
    ) -> Result<Deleted, EngineError> {
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
                // The provider refused or could not be reached: it did not revoke.
                Some(Err(error)) if matches!(error.code, ErrorCode::Provider | ErrorCode::Http) => {
                    return Err(EngineError::NotRevoked { system: id.to_owned(), error });
                }
                // The scheme or its plugin failed (bad settings, a crash): not the provider.
                Some(Err(error)) => {
                    return Err(EngineError::Scheme { system: id.to_owned(), error });
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
                // Changed by a writer outside the lease: revoke what it stored too.
                Deletion::Gone => return Err(EngineError::NotFound(id.to_owned())),
                Deletion::Moved => continue,
            }
        }
        Err(EngineError::Busy {
            system: id.to_owned(),
            holder: "writers that kept changing it while it was revoked".into(),
        })
    }
}
