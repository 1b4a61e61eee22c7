//! glewlwyd (Debian's OAuth2/OpenID Connect server, written in C): the second real, independent
//! OAuth2 server of the tests. `tests/peers/glewlwyd.sh` sets one up on a free loopback port with
//! a fresh SQLite database (one-use refresh tokens; a replayed one answers HTTP 400 with an empty
//! body and disables the chain), a confidential client `app`, and a user `alice`; this module
//! starts it, plays alice's browser through its consent, and stops it by its own process id.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

/// The redirect URI registered for `app` (`glewlwyd.sh`): glewlwyd matches ports exactly.
pub const REDIRECT_URI: &str = "http://127.0.0.1:8765/callback";

/// A running glewlwyd; stopped when dropped.
#[derive(Debug)]
pub struct Glewlwyd {
    pid: u32,
    _dir: tempfile::TempDir,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// What `glewlwyd.sh` printed: ISSUER, AUTHORIZE, TOKEN, REVOCATION, INTROSPECTION, ...
    pub endpoints: BTreeMap<String, String>,
}

impl Glewlwyd {
    /// Sets up and starts one (about a second: a database, a key, the admin API's provisioning).
    pub fn start() -> Self {
        let peers = std::path::PathBuf::from(
            std::env::var_os("AUTHPLUG_TEST_PEERS_DIR").expect("run the tests with cargo xtask"),
        );
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let output = Command::new("bash")
            .arg(peers.join("glewlwyd.sh"))
            .arg(port.to_string())
            .arg(dir.path())
            .output()
            .expect("bash runs");
        let said = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "glewlwyd.sh failed: {}{said}",
            String::from_utf8_lossy(&output.stderr)
        );
        let endpoints: BTreeMap<String, String> = said
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let pid = endpoints["PEER_PID"].parse().expect("a pid");
        Self { pid, _dir: dir, base: format!("http://127.0.0.1:{port}"), endpoints }
    }

    /// The connector manifest's `oauth2` block for this server.
    pub fn oauth2_block(&self, scopes: &[&str]) -> serde_json::Value {
        serde_json::json!({
            "login_url": self.endpoints["AUTHORIZE"],
            "token_url": self.endpoints["TOKEN"],
            "revocation_url": self.endpoints["REVOCATION"],
            "scopes": scopes,
        })
    }

    /// Plays alice's browser: logs in (glewlwyd's password login), grants `scopes` to `app`,
    /// then follows `url` with glewlwyd's `g_continue` to the redirect, and returns the
    /// callback's query parameters.
    pub async fn consent(&self, url: &str, scopes: &[&str]) -> Vec<(String, String)> {
        let client =
            reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let login = client
            .post(format!("{}/api/auth/", self.base))
            .header("content-type", "application/json")
            .body(r#"{"username":"alice","password":"alice-password"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(login.status(), 200, "alice logs in");
        let cookie = login
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|c| c.to_str().ok()?.split(';').next().map(str::to_owned))
            .collect::<Vec<_>>()
            .join("; ");
        let grant = serde_json::json!({"scope": scopes.join(" ")}).to_string();
        let granted = client
            .put(format!("{}/api/auth/grant/app", self.base))
            .header("cookie", &cookie)
            .header("content-type", "application/json")
            .body(grant)
            .send()
            .await
            .unwrap();
        assert_eq!(granted.status(), 200, "alice grants the scopes");
        let answer =
            client.get(format!("{url}&g_continue")).header("cookie", &cookie).send().await.unwrap();
        let location = answer
            .headers()
            .get("location")
            .unwrap_or_else(|| panic!("no redirect: {}", answer.status()))
            .to_str()
            .unwrap()
            .to_owned();
        assert!(location.starts_with(REDIRECT_URI), "back to the client: {location}");
        let back = url::Url::parse(&location).unwrap();
        back.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
    }

    /// Whether glewlwyd's introspection endpoint says `token` is active (asked as `app`).
    pub async fn active(&self, token: &str) -> bool {
        let answer = crate::introspect(&self.endpoints["INTROSPECTION"], token).await;
        answer["active"].as_bool().unwrap_or(false)
    }
}

impl Drop for Glewlwyd {
    fn drop(&mut self) {
        // Not our child (the script started it in the background): signal it by its id and
        // wait, bounded, until it is gone.
        let pid = self.pid.to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until && alive(self.pid) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Whether process `pid` still runs (neither gone nor a zombie waiting for its reaper).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command's closing parenthesis.
        Ok(stat) => stat.rsplit(')').next().is_some_and(|rest| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}
