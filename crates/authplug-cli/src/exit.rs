//! Exit codes: each says what kind of thing went wrong, so scripts can branch on them.

use std::process::ExitCode;

/// The exit codes of `authplug`, documented in `--help`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// Something failed that has no more specific code.
    Failure = 1,
    /// Bad input: a malformed argument, file or value (clap's usage errors are 2 as well).
    BadInput = 2,
    /// A plugin was refused and `--strict-plugins` was given.
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
  3  a plugin was refused and --strict-plugins was given
  4  the named scheme or system does not exist
  5  the credential store cannot be used (damaged, wrong master key, newer schema, unreachable)
  6  the system changed meanwhile, or another instance is still refreshing it; try again
  7  the system needs re-authorisation (the provider refused it): onboard it again
  8  the provider is failing for now and the stored secrets have expired; try later";

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
}
