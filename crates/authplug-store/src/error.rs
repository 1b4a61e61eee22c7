//! Why a store operation failed. Each kind displays as one line that names the problem and never
//! a secret value; the error beneath (an I/O, SQLite or PostgreSQL error) is the `source()`, so
//! a front end that prints the whole chain ([`chain`]) says both.

use std::error::Error;
use std::sync::Arc;

/// What caused a [`StoreError`]: shared, because a SQLite batch's failed commit is reported to
/// every caller in it.
pub type Cause = Arc<dyn Error + Send + Sync>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The store file or folder cannot be used.
    #[error("store unusable: {what}")]
    Io {
        what: String,
        #[source]
        source: Cause,
    },
    /// The database is damaged (a truncated or overwritten SQLite file, a value no authplug
    /// writes).
    #[error("store damaged: {what}")]
    Corrupt {
        what: String,
        #[source]
        source: Option<Cause>,
    },
    /// A file that holds secrets (or decides who may read them) could have been written, or
    /// (the key file) read, by someone else.
    #[error("{path}: refused: {why}")]
    Unsafe { path: String, why: String },
    /// The master key source is unusable.
    #[error("master key: {what}")]
    Key {
        what: String,
        #[source]
        source: Option<Cause>,
    },
    /// Values are sealed under keys the keyring does not have.
    #[error(
        "wrong master key: values are sealed under {}, but the keyring has {} (check \
         AUTHPLUG_MASTER_KEY or the key file)",
        needed.join(", "),
        have.join(", ")
    )]
    WrongKey { needed: Vec<String>, have: Vec<String> },
    /// A ciphertext does not authenticate at its place: tampered with, or moved from another row.
    #[error(
        "the {place} does not decrypt: its ciphertext was tampered with or moved from another row"
    )]
    Tampered { place: String },
    /// The database was migrated by a newer authplug.
    #[error(
        "the store's schema is version {found}, newer than this authplug knows ({known}): \
         upgrade authplug"
    )]
    SchemaTooNew { found: i64, known: i64 },
    #[error("no system `{0}`")]
    NotFound(String),
    /// Not a system id ([`check_system_id`](crate::check_system_id)): `shown` is the id escaped.
    #[error(
        "system id \"{shown}\": {why}; an id is 1 to 128 of A-Z, a-z, 0-9, `.`, `_` and `-`, not \
         starting with `-` or `.`"
    )]
    InvalidId { shown: String, why: String },
    #[error("system `{0}` already exists")]
    Exists(String),
    /// Compare-and-set lost: someone else wrote first.
    #[error("system `{id}` changed meanwhile: expected version {expected}, found {actual}")]
    VersionConflict { id: String, expected: i64, actual: i64 },
    /// A refresh attempt's lease lapsed or was taken over before its request left: that holder
    /// must not send it.
    #[error(
        "system `{id}`: the refresh lease of {holder} lapsed or was taken over; its request was \
         not sent"
    )]
    LeaseLost { id: String, holder: String },
    /// The database cannot be reached for now (PostgreSQL down, restarting, or the session
    /// terminated): the next call tries again, so this passes once the database is back.
    #[error("store unavailable: {what}")]
    Unavailable {
        what: String,
        #[source]
        source: Option<Cause>,
    },
    /// Any other database error.
    #[error("database error: {what}")]
    Database {
        what: String,
        #[source]
        source: Option<Cause>,
    },
    /// A listing's cursor that no authplug gave out (mistyped, cut short, edited).
    #[error("the cursor is not one a listing gave out: start again without one")]
    BadCursor,
    /// A backup bundle is unreadable.
    #[error("backup bundle: {0}")]
    Bundle(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl StoreError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        StoreError::Io { what: what.into(), source: Arc::new(source) }
    }

    pub(crate) fn corrupt(what: impl Into<String>) -> Self {
        StoreError::Corrupt { what: what.into(), source: None }
    }

    pub(crate) fn key(what: impl Into<String>) -> Self {
        StoreError::Key { what: what.into(), source: None }
    }

    pub(crate) fn key_because(
        what: impl Into<String>,
        source: impl Error + Send + Sync + 'static,
    ) -> Self {
        StoreError::Key { what: what.into(), source: Some(Arc::new(source)) }
    }

    pub(crate) fn database(what: impl Into<String>) -> Self {
        StoreError::Database { what: what.into(), source: None }
    }

    pub(crate) fn database_because(
        what: impl Into<String>,
        source: impl Error + Send + Sync + 'static,
    ) -> Self {
        StoreError::Database { what: what.into(), source: Some(Arc::new(source)) }
    }

    pub(crate) fn unavailable(
        what: impl Into<String>,
        source: Option<impl Error + Send + Sync + 'static>,
    ) -> Self {
        let source = source.map(|s| Arc::new(s) as Cause);
        StoreError::Unavailable { what: what.into(), source }
    }

    pub(crate) fn tampered(place: impl Into<String>) -> Self {
        StoreError::Tampered { place: place.into() }
    }
}

/// An error and every error beneath it, `: `-separated, on one line: what a front end prints.
pub fn chain(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let said = inner.to_string();
        // A wrapper that already says its cause is not repeated.
        if !text.ends_with(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        cause = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_says_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "permission denied");
        let error = StoreError::io("cannot create /x", io);
        assert_eq!(error.to_string(), "store unusable: cannot create /x");
        assert_eq!(chain(&error), "store unusable: cannot create /x: permission denied");
        assert_eq!(chain(&StoreError::NotFound("s".into())), "no system `s`");
    }
}
