//! A connector developer's desk: copies of the real connectors to edit, a private store and
//! master key, and `authplug` run against them with the built plugins.

use std::path::{Path, PathBuf};
use std::process::Command;

use authplug_store::{Keyring, Location, Store};
use serde_json::Value;

#[derive(Debug)]
pub struct Desk {
    pub dir: tempfile::TempDir,
}

impl Default for Desk {
    fn default() -> Self {
        Self::new()
    }
}

impl Desk {
    pub fn new() -> Self {
        Self { dir: tempfile::tempdir().unwrap() }
    }

    pub fn store_path(&self) -> PathBuf {
        self.dir.path().join("store.sqlite3")
    }

    pub fn key_file(&self) -> PathBuf {
        self.dir.path().join("master.key")
    }

    /// The store `authplug` wrote to.
    pub fn store(&self) -> Store {
        Store::open(
            &Location::Sqlite(self.store_path()),
            Keyring::from_file(&self.key_file()).unwrap(),
        )
        .unwrap()
    }

    /// `authplug` on this desk's store, with the built plugins and loopback HTTP allowed.
    pub fn authplug(&self) -> Command {
        let mut command = Command::new(crate::authplug_bin());
        self.environment(&mut command);
        command
    }

    /// The environment `authplug` needs for this desk (also for a shell that runs it).
    pub fn environment(&self, command: &mut Command) {
        crate::authplug_environment(
            command,
            &self.store_path().to_string_lossy(),
            &self.key_file(),
        );
    }

    /// A tokens file on the desk holding one admin API token (`authplug api-token`), and the
    /// token, for an `authplug serve` of this desk.
    pub fn admin_token(&self) -> (PathBuf, String) {
        let tokens = self.dir.path().join("tokens.json");
        let made = self
            .authplug()
            .args(["api-token", "ops", "--scope", "admin", "--tokens-file"])
            .arg(&tokens)
            .output()
            .unwrap();
        assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
        (tokens, String::from_utf8(made.stdout).unwrap().trim().to_owned())
    }

    /// A copy of the real connector `name` on the desk, its manifest changed by `edit`.
    pub fn connector(&self, name: &str, edit: impl FnOnce(&mut Value)) -> PathBuf {
        let target = self.dir.path().join(name);
        copy_connector(name, &target, edit);
        target
    }
}

/// The real connector `name` from the shared folder.
pub fn real_connector(name: &str) -> PathBuf {
    crate::shared_dir().join("connectors").join(name)
}

/// Copies the real connector `name` to `target`, its manifest changed by `edit`.
pub fn copy_connector(name: &str, target: &Path, edit: impl FnOnce(&mut Value)) {
    copy_dir(&real_connector(name), target);
    let path = target.join("manifest.json");
    let mut manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut manifest);
    std::fs::write(&path, serde_json::to_string_pretty(&manifest).unwrap()).unwrap();
}

/// Copies the folder `from` to `to`, recursively.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
