//! Why an onboarding did not store anything. Each kind is one line naming the connector, system
//! or input, never a value; front ends add their own hints (a flag to pass, a field to send)
//! and map kinds to exit codes or HTTP statuses.

use authplug_engine::EngineError;
use authplug_host::CallError;

#[derive(Debug, thiserror::Error)]
pub enum OnboardError {
    /// The connector's manifest names no `auth`.
    #[error(
        "connector {connector}: the manifest names no `auth`: this connector needs no credentials"
    )]
    NoAuth { connector: String },
    /// No loaded scheme serves the connector's `(auth, auth_variant)`.
    #[error("no loaded scheme serves connector {connector}")]
    NoScheme { connector: String },
    /// An input a source holds is malformed (said without its value).
    #[error("{0}")]
    Input(String),
    /// Inputs nothing gave (or gave empty).
    #[error("missing required secret{} {}", if names.len() == 1 { "" } else { "s" }, names.join(", "))]
    Missing { names: Vec<String> },
    /// The system exists and the onboarding was not asked to replace it.
    #[error("system {0} exists")]
    Exists(String),
    /// The scheme's onboarding failed (the provider, the connector's settings, the plugin).
    #[error("onboarding failed")]
    Scheme(#[source] CallError),
    /// The provider answered the consent with an error (the user declined, a bad request): its
    /// code, and its description when it gave one.
    #[error(
        "the provider refused the consent: {error}{}",
        description.as_ref().map(|d| format!(": {d}")).unwrap_or_default()
    )]
    ConsentRefused { error: String, description: Option<String> },
    /// A callback whose `state` is not the consent's: replayed or forged.
    #[error(
        "the callback's state does not match the consent's: refused (a replayed or forged \
         callback?); nothing was stored"
    )]
    ForgedCallback,
    /// A callback for no pending onboarding: unknown, expired, or used already.
    #[error("unknown, expired or already used state: start the onboarding again")]
    UnknownState,
    /// The consent was not completed in time.
    #[error("no callback within {0} s: the consent was not completed (use --timeout for longer)")]
    ConsentTimedOut(u64),
    /// The way back from the consent failed (the callback listener, the store that keeps it).
    #[error("{0}")]
    Consent(String),
    /// Something this machine could not do (read the terminal, draw randomness).
    #[error("{0}")]
    Local(String),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl From<authplug_store::StoreError> for OnboardError {
    fn from(error: authplug_store::StoreError) -> Self {
        OnboardError::Engine(error.into())
    }
}
