//! `Engine::authorize`: what one outbound request needs (the scheme's apply step), reused for a
//! moment (`cache.rs`).

use std::sync::Arc;
use std::time::Duration;

use authplug_host::CallError;
use authplug_protocol::{ApplyRequest, ErrorCode};

use crate::cache::Authorization;
use crate::{Engine, EngineError};

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
        let token = self.token(id).await?;
        let request = ApplyRequest {
            scheme: token.scheme.clone(),
            injected: token.injected.clone(),
            parameters: token.parameters.clone(),
        };
        let (registry, services) = (self.registry.clone(), self.services.clone());
        let (scheme_id, system) = (token.scheme.clone(), id.to_owned());
        let aborted = || EngineError::Scheme {
            system: id.to_owned(),
            error: CallError {
                scheme: token.scheme.clone(),
                code: ErrorCode::Internal,
                message: "the apply thread ended abnormally".into(),
            },
        };
        let applied = tokio::task::spawn_blocking(move || match registry.get(&scheme_id) {
            Some(scheme) => scheme
                .apply(request, &services)
                .map_err(|error| EngineError::Scheme { system, error }),
            None => Err(EngineError::SchemeNotLoaded { system, scheme: scheme_id }),
        })
        .await
        .unwrap_or_else(|_| Err(aborted()))?;
        let due_in = self.registry.get(&token.scheme).and_then(|scheme| {
            let due_at =
                crate::due::due_at(token.expires_at, token.issued_at, self.margin(scheme))?;
            let due_in_ms = due_at.saturating_mul(1000).saturating_sub(self.clock().now_ms());
            Some(Duration::from_millis(u64::try_from(due_in_ms).unwrap_or(0)))
        });
        let authorization = Arc::new(Authorization { token, applied });
        self.authorized.put(authorization.clone(), due_in, generation);
        Ok(authorization)
    }
}
