//! A connector developer's desk: copies of the real connectors to edit, a private store and
//! master key, and `authplug` run against them with the built plugins.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

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
        let token = self.api_token(&tokens, "ops", "admin");
        (tokens, token)
    }

    /// A new API token `name` of `scope` in the tokens file `tokens`.
    pub fn api_token(&self, tokens: &Path, name: &str, scope: &str) -> String {
        let made = self
            .authplug()
            .args(["api-token", name, "--scope", scope, "--tokens-file"])
            .arg(tokens)
            .output()
            .unwrap();
        assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
        String::from_utf8(made.stdout).unwrap().trim().to_owned()
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

/// A running `authplug connect`, killed (by its own id) if the test ends before it does; the
/// rest of its stderr is collected.
#[derive(Debug)]
pub struct Running(Option<Child>, Option<std::thread::JoinHandle<Vec<String>>>);

impl Running {
    pub fn wait(self) -> std::process::Output {
        self.wait_with_log().0
    }

    /// Its output, and the stderr lines after the consent address.
    pub fn wait_with_log(mut self) -> (std::process::Output, Vec<String>) {
        let output = self.0.take().unwrap().wait_with_output().unwrap();
        (output, self.1.take().unwrap().join().unwrap())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts `authplug connect` and returns it once it printed the consent address.
pub fn start_connect(desk: &Desk, args: &[&str]) -> (Running, String, Vec<String>) {
    let mut child = desk
        .authplug()
        .arg("connect")
        .args(args)
        .arg("--no-browser")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut child = Running(Some(child), None);
    let mut seen = Vec::new();
    loop {
        let Some(Ok(line)) = lines.next() else {
            panic!("authplug ended before printing a consent address: {seen:?}");
        };
        seen.push(line.clone());
        if let Some(url) = line.strip_prefix("  http") {
            // Read the rest in the background so the process never blocks on a full pipe.
            child.1 = Some(std::thread::spawn(move || lines.map_while(Result::ok).collect()));
            return (child, format!("http{url}"), seen);
        }
        assert!(seen.len() < 20, "no consent address in {seen:?}");
    }
}

/// A free loopback port for a callback listener (oidc-provider's `native` client accepts any).
pub fn free_port() -> String {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string()
}
