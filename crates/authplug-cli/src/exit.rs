//! The exit policy, in one place: each code says what kind of thing went wrong, so scripts can
//! branch on it, and every error kind of the crates below maps to one here.

use std::process::ExitCode;

use authplug_engine::EngineError;
use authplug_onboard::{OnboardError, VerifyError};
use authplug_protocol::ErrorCode;
use authplug_store::StoreError;

/// The exit codes of `authplug`, documented in `--help`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Code {
    /// Something failed that has no more specific code.
    Failure = 1,
    /// Bad input: a malformed argument, file or value (clap's usage errors are 2 as well).
    BadInput = 2,
    /// A plugin was refused and `--strict-plugins` was given, `plugins verify` found files the
    /// lock does not admit, or `schemes test`'s file was refused.
    PluginRefused = 3,
    /// The named scheme or system does not exist.
    NotFound = 4,
    /// The credential store cannot be used: damaged, wrong master key, newer schema, unreachable.
    Store = 5,
    /// Someone else changed the system meanwhile (compare-and-set lost); try again.
    Conflict = 6,
    /// The provider refused the credential: a human must onboard the system again.
    NeedsReauth = 7,
    /// The provider is failing for now and the stored secrets cannot be used; try later.
    Unavailable = 8,
    /// A plugin breaks a rule of the conformance kit (`authplug schemes test`).
    Nonconforming = 9,
    /// A file that holds secrets could have been written (or the key file read) by someone else:
    /// group or other permissions, another owner, a folder others may write.
    Unsafe = 10,
    /// The provider did not revoke the system's credential, so it was kept (`systems delete
    /// --revoke`; `--force` deletes anyway).
    NotRevoked = 11,
    /// The verification request got an answer that says nothing of the credential (a wrong
    /// verify URL, an outage) or no answer at all (`verify`, `connect`).
    NotVerified = 12,
}

impl From<Code> for ExitCode {
    fn from(code: Code) -> Self {
        ExitCode::from(code as u8)
    }
}

/// The text for `--help`.
pub const HELP: &str = "\
Exit codes:
  0  success
  1  failure without a more specific code
  2  bad input (arguments, files, values)
  3  a plugin was refused and --strict-plugins was given, plugins verify found files the lock
     does not admit, or schemes test's file was refused
  4  the named scheme or system does not exist
  5  the credential store cannot be used (damaged, wrong master key, newer schema, unreachable)
  6  the system changed meanwhile, or another instance is still refreshing it; try again
  7  the system needs re-authorisation (the provider refused it): onboard it again
  8  the provider is failing for now and the stored secrets have expired; try later
  9  a plugin breaks a rule of the conformance kit (schemes test)
  10 a file holding secrets (key, store, tokens) is writable by others, owned by another user,
     or (the key file) readable by others: chmod 600 it
  11 the provider did not revoke the system's credential, so it was not deleted (systems
     delete --revoke; --force deletes anyway)
  12 the verification request failed without a verdict on the credential: an answer other
     than 2xx, 401 or 403 (a wrong verify URL, an outage), or none (verify, connect)";

/// A failure: a one-line message for stderr and the exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: Code,
    pub message: String,
}

impl Failure {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    pub fn bad_input(message: impl Into<String>) -> Self {
        Self::new(Code::BadInput, message)
    }

    /// `--json` given to a command whose output is not a result (a document, a body).
    pub fn no_json(command: &str, instead: &str) -> Self {
        Self::bad_input(format!("`authplug {command}` has no --json output: {instead}"))
    }
}

/// The message of an error with every cause beneath it.
fn said(error: &dyn std::error::Error) -> String {
    authplug_store::chain(error)
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        let code = match &error {
            StoreError::NotFound(_) => Code::NotFound,
            StoreError::Unsafe { .. } => Code::Unsafe,
            StoreError::VersionConflict { .. } | StoreError::LeaseLost { .. } => Code::Conflict,
            StoreError::Exists(_)
            | StoreError::Bundle(_)
            | StoreError::InvalidId { .. }
            | StoreError::BadCursor => Code::BadInput,
            _ => Code::Store,
        };
        Failure::new(code, said(&error))
    }
}

impl From<VerifyError> for Failure {
    fn from(error: VerifyError) -> Self {
        match error {
            VerifyError::Engine(inner) => Failure::from(inner),
            VerifyError::Declaration { .. } => Failure::bad_input(said(&error)),
        }
    }
}

impl From<EngineError> for Failure {
    fn from(error: EngineError) -> Self {
        let code = match &error {
            EngineError::NotFound(_) | EngineError::SchemeNotLoaded { .. } => Code::NotFound,
            EngineError::NeedsReauth { .. } => Code::NeedsReauth,
            EngineError::Unavailable { .. } => Code::Unavailable,
            EngineError::Busy { .. } => Code::Conflict,
            EngineError::NotRevoked { .. } => Code::NotRevoked,
            EngineError::Store(e) => return Failure::from(e.clone()),
            EngineError::CannotRenew { .. }
            | EngineError::Scheme { .. }
            | EngineError::Aborted { .. } => Code::Failure,
        };
        Failure::new(code, said(&error))
    }
}

impl From<OnboardError> for Failure {
    fn from(error: OnboardError) -> Self {
        let code = match error {
            OnboardError::Exists(id) => {
                return Failure::new(
                    Code::Conflict,
                    format!("system {id} exists: pass --replace to onboard it again"),
                )
            }
            OnboardError::Engine(EngineError::NotFound(_)) => {
                return Failure::new(Code::Conflict, "the system vanished meanwhile; try again")
            }
            OnboardError::Engine(inner) => return Failure::from(inner),
            OnboardError::NoAuth { .. }
            | OnboardError::NoScheme { .. }
            | OnboardError::Input(_)
            | OnboardError::Missing { .. }
            | OnboardError::ForgedCallback
            | OnboardError::UnknownState => Code::BadInput,
            // What the user gave (a missing parameter, an unusable key) is bad input.
            OnboardError::Scheme(ref call) if call.code == ErrorCode::InvalidInput => {
                Code::BadInput
            }
            OnboardError::Scheme(_)
            | OnboardError::ConsentRefused { .. }
            | OnboardError::ConsentTimedOut(_)
            | OnboardError::Consent(_)
            | OnboardError::Local(_) => Code::Failure,
        };
        Failure::new(code, said(&error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(code: ErrorCode) -> authplug_host::CallError {
        authplug_host::CallError { scheme: "demo".into(), code, message: "m".into() }
    }

    #[test]
    fn every_error_kind_maps_to_its_code_with_its_causes_said() {
        let cases: Vec<(Failure, Code)> = vec![
            (StoreError::NotFound("crm".into()).into(), Code::NotFound),
            (
                EngineError::NeedsReauth { system: "crm".into(), reason: "x".into() }.into(),
                Code::NeedsReauth,
            ),
            (
                EngineError::Unavailable {
                    system: "crm".into(),
                    reason: "HTTP 503".into(),
                    retry_at_ms: None,
                    still_valid: None,
                }
                .into(),
                Code::Unavailable,
            ),
            (EngineError::Busy { system: "crm".into(), holder: "h".into() }.into(), Code::Conflict),
            (OnboardError::Missing { names: vec!["api_key".into()] }.into(), Code::BadInput),
            (OnboardError::ForgedCallback.into(), Code::BadInput),
            (OnboardError::ConsentTimedOut(5).into(), Code::Failure),
            (OnboardError::Scheme(call(ErrorCode::InvalidInput)).into(), Code::BadInput),
            (OnboardError::Scheme(call(ErrorCode::Provider)).into(), Code::Failure),
            (OnboardError::Engine(EngineError::NotFound("crm".into())).into(), Code::Conflict),
        ];
        for (failure, code) in cases {
            assert_eq!(failure.code, code, "{}", failure.message);
        }
        let exists = Failure::from(OnboardError::Exists("crm".into()));
        assert_eq!(exists.code, Code::Conflict);
        assert_eq!(exists.message, "system crm exists: pass --replace to onboard it again");
        let wrapped =
            Failure::from(OnboardError::Engine(EngineError::Store(StoreError::Corrupt {
                what: "store.sqlite3 failed its integrity check".into(),
                source: None,
            })));
        assert_eq!(
            wrapped.code,
            Code::Store,
            "a store error through the onboarding keeps its code"
        );
    }
}
