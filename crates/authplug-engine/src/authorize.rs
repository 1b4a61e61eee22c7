//! `Engine::authorize`: what one outbound request needs (the scheme's apply step), reused for a
//! moment (`cache.rs`).

use std::sync::Arc;
use std::time::Duration;

use authplug_protocol::{ApplyRequest, ApplyResponse};
use authplug_store::{State, SystemRecord};

use crate::cache::Authorization;
use crate::{Engine, EngineError, Token};

impl Engine {
    /// What one outbound request of the system needs (the scheme's apply step: headers, query
    /// parameters), from secrets refreshed first if they are due. Callers that hold this never
    /// hold the long-lived secrets themselves. The answer is reused for the same system for a
    /// moment (`EngineConfig::authorize_cache`, see `cache.rs`).
    pub async fn authorize(self: &Arc<Self>, id: &str) -> Result<Arc<Authorization>, EngineError> {
        if let Some(cached) = self.authorized.get(id) {
            return Ok(cached);
        }
        let generation = self.authorized.generation(id);
        // The usual case, secrets active and not due: `Some`.
        let quick = match self.store.injected_now(id) {
            // SQLite with a read connection idle: read, decrypt and apply on this thread,
            // without a hop to another (the hop was most of an answer's cost). An apply that
            // asks the host for anything is made again on a blocking thread.
            Some(read) => match self.ready_record(read?.ok_or_else(|| not_found(id))?) {
                Some(mut token) => {
                    let request = apply_request(&mut token);
                    Some(match self.apply_now(&token, &request) {
                        Some(applied) => (token, applied?),
                        None => self.apply_on_thread(token, request).await?,
                    })
                }
                None => None,
            },
            // Otherwise (PostgreSQL, or every read connection busy) in one hop to a blocking
            // thread: the read, the decryption and the plugin's apply together.
            None => {
                let (engine, system) = (self.clone(), id.to_owned());
                tokio::task::spawn_blocking(move || engine.authorize_now(&system))
                    .await
                    .unwrap_or(Err(EngineError::Aborted { what: "an authorize thread" }))?
            }
        };
        let (token, applied) = match quick {
            Some(done) => done,
            // Due, failing or not active: the engine's full path (a refresh, or its error).
            None => {
                let mut token = self.token(id).await?;
                let request = apply_request(&mut token);
                self.apply_on_thread(token, request).await?
            }
        };
        let due_in = self.registry.get(&token.scheme).and_then(|scheme| {
            let due_at =
                crate::due::due_at(token.expires_at, token.issued_at, self.margin(scheme))?;
            let due_in_ms = due_at.saturating_mul(1000).saturating_sub(self.clock().now_ms());
            Some(Duration::from_millis(u64::try_from(due_in_ms).unwrap_or(0)))
        });
        let authorization = Arc::new(Authorization::new(token, applied));
        self.authorized.put(authorization.clone(), due_in, generation);
        Ok(authorization)
    }

    /// Authorize without waiting: the stored secrets and their apply step when they are active
    /// and not due; `None` when the full path is needed. Runs on a blocking thread.
    fn authorize_now(&self, id: &str) -> Result<Option<(Token, ApplyResponse)>, EngineError> {
        let Some(mut token) = self.ready(id)? else { return Ok(None) };
        let request = apply_request(&mut token);
        let applied = self.apply(&token, request)?;
        Ok(Some((token, applied)))
    }

    /// The stored secrets when they are active and not due (a store read of the injected
    /// secrets only); `None` when the engine's full path is needed.
    fn ready(&self, id: &str) -> Result<Option<Token>, EngineError> {
        let record = self.store.injected(id)?.ok_or_else(|| not_found(id))?;
        Ok(self.ready_record(record))
    }

    /// `record`'s secrets when they are active and not due; `None` when the engine's full path
    /// is needed.
    fn ready_record(&self, record: SystemRecord) -> Option<Token> {
        if record.summary.state != State::Active {
            return None;
        }
        let scheme = self.registry.get(&record.summary.scheme)?;
        if self.is_due(&record.summary, scheme, self.clock().now_secs()) {
            return None;
        }
        Some(Token::from_record(record, false))
    }

    /// [`Engine::apply`] on a blocking thread (an isolated plugin: a round trip to its process).
    async fn apply_on_thread(
        self: &Arc<Self>,
        token: Token,
        request: ApplyRequest,
    ) -> Result<(Token, ApplyResponse), EngineError> {
        let engine = self.clone();
        tokio::task::spawn_blocking(move || {
            let applied = engine.apply(&token, request)?;
            Ok((token, applied))
        })
        .await
        .unwrap_or(Err(EngineError::Aborted { what: "an authorize thread" }))
    }

    /// The scheme's apply step for `token`'s secrets, `request` (a plugin call).
    fn apply(&self, token: &Token, request: ApplyRequest) -> Result<ApplyResponse, EngineError> {
        match self.registry.get(&token.scheme) {
            Some(scheme) => {
                scheme.apply(request, &self.services).map_err(|error| scheme_error(token, error))
            }
            None => Err(not_loaded(token)),
        }
    }

    /// [`Engine::apply`] on this thread, which must not block: `None` when the scheme runs in
    /// another process or its apply asked the host for something (then [`Engine::apply`] on a
    /// blocking thread).
    fn apply_now(
        &self,
        token: &Token,
        request: &ApplyRequest,
    ) -> Option<Result<ApplyResponse, EngineError>> {
        let Some(scheme) = self.registry.get(&token.scheme) else {
            return Some(Err(not_loaded(token)));
        };
        let applied = scheme.apply_now(request, &self.services)?;
        Some(applied.map_err(|error| scheme_error(token, error)))
    }
}

/// The apply step's request, with `token`'s secrets and parameters moved into it (not copied:
/// the answer kept afterwards holds none of them).
fn apply_request(token: &mut Token) -> ApplyRequest {
    ApplyRequest {
        scheme: token.scheme.clone(),
        injected: std::mem::take(&mut token.injected),
        parameters: std::mem::take(&mut token.parameters),
    }
}

fn scheme_error(token: &Token, error: authplug_host::CallError) -> EngineError {
    EngineError::Scheme { system: token.system.clone(), error }
}

fn not_loaded(token: &Token) -> EngineError {
    EngineError::SchemeNotLoaded { system: token.system.clone(), scheme: token.scheme.clone() }
}

fn not_found(id: &str) -> EngineError {
    EngineError::NotFound(id.to_owned())
}
