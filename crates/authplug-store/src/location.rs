//! Where a store lives, and the XDG folders authplug keeps its files in.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::{Result, StoreError};

/// Where a store lives.
#[derive(Clone, PartialEq)]
pub enum Location {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Location {
    /// A `postgres://` or `postgresql://` URL, or else a SQLite file path.
    pub fn parse(text: &str) -> Self {
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            Location::Postgres(text.to_owned())
        } else {
            Location::Sqlite(PathBuf::from(text))
        }
    }

    /// `$XDG_DATA_HOME/authplug/store.sqlite3` (`~/.local/share/authplug/store.sqlite3`).
    pub fn default_sqlite() -> Self {
        Location::Sqlite(data_dir().join("store.sqlite3"))
    }
}

/// Shows a PostgreSQL URL without its password.
impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Sqlite(path) => write!(f, "{}", path.display()),
            Location::Postgres(url) => match url.split_once('@') {
                Some((credentials, rest)) => match credentials.rsplit_once(':') {
                    Some((user, _password)) if user.contains("//") && !user.ends_with('/') => {
                        write!(f, "{user}:***@{rest}")
                    }
                    _ => write!(f, "{url}"),
                },
                None => write!(f, "{url}"),
            },
        }
    }
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Location({self})")
    }
}

/// `$XDG_DATA_HOME/authplug`, or `~/.local/share/authplug`.
pub fn data_dir() -> PathBuf {
    xdg_dir("XDG_DATA_HOME", ".local/share")
}

/// `$XDG_CONFIG_HOME/authplug`, or `~/.config/authplug`: where the key file lives by default,
/// apart from the data, so that a copy of the data folder does not carry its key.
pub fn config_dir() -> PathBuf {
    xdg_dir("XDG_CONFIG_HOME", ".config")
}

fn xdg_dir(variable: &str, fallback: &str) -> PathBuf {
    let base = std::env::var_os(variable)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(fallback)))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("authplug")
}

/// Makes sure a SQLite store's folder exists and is private.
pub(crate) fn prepare_sqlite_dir(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::crypto::create_private_dir(dir)
            .map_err(|e| StoreError::io(format!("cannot create {}", dir.display()), e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_urls_display_without_password() {
        let location = Location::parse("postgres://authplug:hunter2@db.internal:5432/authplug");
        assert_eq!(location.to_string(), "postgres://authplug:***@db.internal:5432/authplug");
        assert!(!format!("{location:?}").contains("hunter2"));
        assert!(matches!(Location::parse("/var/lib/authplug/store.sqlite3"), Location::Sqlite(_)));
    }
}
