//! What can go wrong, each a one-line message that names the system and never a value.

use std::fmt;

use authplug_host::CallError;
use authplug_store::StoreError;

use crate::Token;

#[derive(Debug)]
pub enum EngineError {
    NotFound(String),
    /// A human must onboard the system again; the provider's reason is kept.
    NeedsReauth {
        system: String,
        reason: String,
    },
    /// The provider is failing for now; nobody will try before `retry_at_ms`. `still_valid`
    /// holds the stored secrets when they have not expired yet.
    Unavailable {
        system: String,
        reason: String,
        retry_at_ms: Option<i64>,
        still_valid: Option<Box<Token>>,
    },
    /// The system's scheme is not among the loaded plugins.
    SchemeNotLoaded {
        system: String,
        scheme: String,
    },
    /// The scheme cannot renew what it injected (an API key): onboard again instead.
    CannotRenew {
        system: String,
        scheme: String,
    },
    /// Another instance held the refresh lease for longer than we wait.
    Busy {
        system: String,
        holder: String,
    },
    Store(StoreError),
    /// The scheme failed in a way that is neither transient nor the provider's refusal.
    Scheme {
        system: String,
        error: CallError,
    },
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineError::NotFound(id) => write!(f, "no system `{id}`"),
            EngineError::NeedsReauth { system, reason } => {
                write!(f, "system `{system}` needs re-authorisation: {reason} (onboard it again)")
            }
            EngineError::Unavailable { system, reason, retry_at_ms, .. } => {
                write!(f, "system `{system}`: refresh failed: {reason}")?;
                if let Some(at) = retry_at_ms.and_then(chrono::DateTime::from_timestamp_millis) {
                    write!(f, "; next attempt after {}", at.format("%Y-%m-%d %H:%M:%S UTC"))?;
                }
                Ok(())
            }
            EngineError::SchemeNotLoaded { system, scheme } => write!(
                f,
                "system `{system}` uses scheme `{scheme}`, which no loaded plugin provides"
            ),
            EngineError::CannotRenew { system, scheme } => write!(
                f,
                "system `{system}`: scheme `{scheme}` cannot renew its secrets; onboard it again"
            ),
            EngineError::Busy { system, holder } => write!(
                f,
                "system `{system}`: another instance ({holder}) is still refreshing it; try again"
            ),
            EngineError::Store(error) => write!(f, "{error}"),
            EngineError::Scheme { system, error } => write!(f, "system `{system}`: {error}"),
        }
    }
}

impl std::error::Error for EngineError {}

impl From<StoreError> for EngineError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(id) => EngineError::NotFound(id),
            other => EngineError::Store(other),
        }
    }
}
