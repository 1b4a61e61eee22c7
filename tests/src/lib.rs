//! Support for the end-to-end tests: where the built files are, and running `authplug` as a user
//! would. `cargo xtask test` builds everything first and passes the locations in the environment.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub mod desk;
pub mod glewlwyd;
pub mod host;
pub mod lifecycle;
pub mod load;
pub mod node;
pub mod oidc;
pub mod pg;
pub mod rst;
pub mod server;
pub mod webhook;

fn from_env(name: &str) -> PathBuf {
    match std::env::var_os(name) {
        Some(value) => PathBuf::from(value),
        None => panic!("{name} is not set: run the end-to-end tests with `cargo xtask test`"),
    }
}

/// The built `authplug` binary.
pub fn authplug_bin() -> PathBuf {
    from_env("AUTHPLUG_TEST_BIN")
}

/// The folder where `cargo xtask` installed the plugins of `plugins/`.
pub fn plugin_dir() -> PathBuf {
    from_env("AUTHPLUG_TEST_PLUGIN_DIR")
}

/// A built plugin file by its library name, e.g. `api_key` -> `.../libapi_key.so`.
pub fn plugin(name: &str) -> PathBuf {
    plugin_dir().join(library_file(name))
}

/// A built fixture by its library name, e.g. `misbehaving_plugin`.
pub fn fixture(name: &str) -> PathBuf {
    from_env("AUTHPLUG_TEST_FIXTURE_DIR").join(library_file(name))
}

/// The crate `authplug schemes new demo_session` wrote (`cargo xtask test` tests and builds it;
/// its file is the fixture `demo_session`).
pub fn scaffolded() -> PathBuf {
    from_env("AUTHPLUG_TEST_SCAFFOLD_DIR")
}

/// A child process killed (by its own id) and reaped when dropped, so that a test failing
/// half-way leaves no server behind; it is the `Child` otherwise.
#[derive(Debug)]
pub struct Reaped(Option<std::process::Child>);

impl Reaped {
    pub fn new(child: std::process::Child) -> Self {
        Self(Some(child))
    }

    /// The child, for a caller that stops it in its own way.
    pub fn into_inner(mut self) -> std::process::Child {
        self.0.take().expect("the child is held until dropped")
    }
}

impl std::ops::Deref for Reaped {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        self.0.as_ref().expect("the child is held until dropped")
    }
}

impl std::ops::DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        self.0.as_mut().expect("the child is held until dropped")
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        // One already waited for is left alone.
        if let Some(child) = &mut self.0 {
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Starts `command` as `authplug serve --listen 127.0.0.1:0 --tokens-file TOKENS ...` (the
/// command's other arguments already given), and returns it with the address it listens on and
/// the rest of its stderr. The process is stopped when the [`Reaped`] is dropped, if the test
/// has not stopped it.
pub fn serve(
    command: &mut Command,
    tokens: &Path,
) -> (Reaped, String, std::io::Lines<std::io::BufReader<std::process::ChildStderr>>) {
    use std::io::BufRead as _;
    let child = command
        .args(["--listen", "127.0.0.1:0", "--tokens-file"])
        .arg(tokens)
        .env_remove("AUTHPLUG_ADMIN_TOKEN")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Held from the start: a panic while reading its address stops it too.
    let mut child = Reaped::new(child);
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("serve says where it listens").unwrap();
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    (child, url, lines)
}

/// `endpoint`'s introspection answer (RFC 7662) for `token`, asked as the peers' confidential
/// client `app`.
pub async fn introspect(endpoint: &str, token: &str) -> serde_json::Value {
    let answer = reqwest::Client::new()
        .post(endpoint)
        .basic_auth("app", Some("app-secret"))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    serde_json::from_slice(&answer).unwrap()
}

/// The shared folder beside the checkout (spec, connectors, peers).
pub fn shared_dir() -> PathBuf {
    from_env("AUTHPLUG_SHARED_DIR")
}

pub fn library_file(name: &str) -> String {
    format!("{}{name}{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX)
}

/// A fresh plugin folder holding copies of `files`, each under the given file name.
pub fn plugin_folder(files: &[(&Path, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for (from, name) in files {
        std::fs::copy(from, dir.path().join(name))
            .unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
    }
    dir
}

/// The environment of an `authplug` process on `store` with `key_file`: the built plugins,
/// loopback HTTP allowed (the peers listen there), and nothing inherited that would change it.
pub fn authplug_environment(command: &mut Command, store: &str, key_file: &Path) {
    command
        .env("AUTHPLUG_STORE", store)
        .env("AUTHPLUG_KEY_FILE", key_file)
        .env("AUTHPLUG_PLUGIN_DIR", plugin_dir())
        .env("AUTHPLUG_ALLOW_LOOPBACK_HTTP", "1")
        .env("AUTHPLUG_HTTP_TIMEOUT", "10");
    for inherited in [
        "AUTHPLUG_MASTER_KEY",
        "AUTHPLUG_WEBHOOK_URL",
        "AUTHPLUG_WEBHOOK_SECRET",
        "AUTHPLUG_LOG",
        "AUTHPLUG_OPERATOR_SECRETS",
    ] {
        command.env_remove(inherited);
    }
}

/// Runs `authplug args` with only `plugin_dir` as its plugin folder and a clean environment.
pub fn authplug(plugin_dir: &Path, args: &[&str]) -> Output {
    Command::new(authplug_bin())
        .args(args)
        .env("AUTHPLUG_PLUGIN_DIR", plugin_dir)
        .env_remove("AUTHPLUG_LOG")
        .env_remove("AUTHPLUG_STRICT_PLUGINS")
        .output()
        .expect("authplug runs")
}

/// Stops a running `authplug serve` as a service manager does (SIGTERM to its own pid) and waits
/// for it: how it ended.
pub fn terminate(child: &mut std::process::Child) -> std::process::ExitStatus {
    let pid = child.id().to_string();
    let sent = Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs");
    assert!(sent.success(), "SIGTERM to {pid}");
    child.wait().expect("serve ends")
}

/// One request to a running `authplug serve` with `token`: the status and the JSON answer (or
/// `null`).
pub fn call(url: &str, method: &str, path: &str, token: &str) -> (u16, serde_json::Value) {
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response = reqwest::Client::new()
            .request(method, format!("{url}{path}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body = response.bytes().await.unwrap();
        (status, serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null))
    })
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}
