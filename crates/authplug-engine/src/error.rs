//! What can go wrong, each kind a one-line message that names the system and never a value. The
//! error beneath (a store error, a scheme's) is the `source()`: print the whole chain with
//! [`authplug_store::chain`].

use authplug_host::CallError;
use authplug_store::StoreError;

use crate::Token;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("no system `{0}`")]
    NotFound(String),
    /// A human must onboard the system again; the provider's reason is kept.
    #[error("system `{system}` needs re-authorisation: {reason} (onboard it again)")]
    NeedsReauth { system: String, reason: String },
    /// The provider is failing for now; nobody will try before `retry_at_ms`. `still_valid`
    /// holds the stored secrets when they have not expired yet.
    #[error("system `{system}`: refresh failed: {reason}{}", next_attempt(*retry_at_ms))]
    Unavailable {
        system: String,
        reason: String,
        retry_at_ms: Option<i64>,
        still_valid: Option<Box<Token>>,
    },
    /// The system's scheme is not among the loaded plugins.
    #[error("system `{system}` uses scheme `{scheme}`, which no loaded plugin provides")]
    SchemeNotLoaded { system: String, scheme: String },
    /// The scheme cannot renew what it injected (an API key): onboard again instead.
    #[error("system `{system}`: scheme `{scheme}` cannot renew its secrets; onboard it again")]
    CannotRenew { system: String, scheme: String },
    /// Another instance held the refresh lease for longer than we wait.
    #[error("system `{system}`: another instance ({holder}) is still refreshing it; try again")]
    Busy { system: String, holder: String },
    #[error(transparent)]
    Store(StoreError),
    /// The scheme failed in a way that is neither transient nor the provider's refusal.
    #[error("system `{system}`")]
    Scheme {
        system: String,
        #[source]
        error: CallError,
    },
    /// The provider did not revoke the system's credential: it was not deleted.
    #[error("system `{system}` was not deleted: its credential was not revoked at the provider")]
    NotRevoked {
        system: String,
        #[source]
        error: CallError,
    },
    /// A task the engine ran (a plugin call, a store operation) panicked or was cancelled.
    #[error("{what} ended abnormally")]
    Aborted { what: &'static str },
}

fn next_attempt(retry_at_ms: Option<i64>) -> String {
    match retry_at_ms.and_then(chrono::DateTime::from_timestamp_millis) {
        Some(at) => format!("; next attempt after {}", at.format("%Y-%m-%d %H:%M:%S UTC")),
        None => String::new(),
    }
}

impl From<StoreError> for EngineError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(id) => EngineError::NotFound(id),
            other => EngineError::Store(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use authplug_protocol::ErrorCode;

    #[test]
    fn each_kind_is_one_line_and_its_cause_is_the_source() {
        let error = EngineError::Scheme {
            system: "crm".into(),
            error: CallError {
                scheme: "oauth2".into(),
                code: ErrorCode::ContractViolation,
                message: "injected `x` is undeclared".into(),
            },
        };
        assert_eq!(error.to_string(), "system `crm`");
        assert_eq!(
            authplug_store::chain(&error),
            "system `crm`: scheme `oauth2`: contract_violation: injected `x` is undeclared"
        );
        let later = EngineError::Unavailable {
            system: "crm".into(),
            reason: "HTTP 503".into(),
            retry_at_ms: Some(0),
            still_valid: None,
        };
        assert_eq!(
            later.to_string(),
            "system `crm`: refresh failed: HTTP 503; next attempt after 1970-01-01 00:00:00 UTC"
        );
        let store: EngineError = StoreError::NotFound("crm".into()).into();
        assert!(matches!(store, EngineError::NotFound(id) if id == "crm"));
    }
}
