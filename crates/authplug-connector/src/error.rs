//! Why a connector folder cannot be read. Each names the file and, where known, the place.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    #[error("{}: {reason}", path.display())]
    Unreadable { path: PathBuf, reason: String },
    /// Not JSON, or JSON of the wrong shape: `file:line:column: reason`.
    #[error("{}:{line}:{column}: {reason}", path.display())]
    Malformed { path: PathBuf, line: usize, column: usize, reason: String },
}
