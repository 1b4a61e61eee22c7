//! oidc-provider (the OpenID-certified npm server) on a loopback port, and a browser stand-in that
//! follows its auto-approving consent by redirects, with a cookie jar.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// The redirect URI registered for the peer's clients (`tests/peers/oidc-provider.mjs`).
pub const REDIRECT_URI: &str = "http://127.0.0.1:8765/callback";

/// A running oidc-provider; stopped (by its own process id) when dropped.
#[derive(Debug)]
pub struct OidcProvider {
    child: Child,
    pub issuer: String,
}

impl OidcProvider {
    /// Whether the provider's introspection endpoint says `token` is active (asked as the
    /// confidential client `app`, which may introspect any client's tokens).
    pub fn active(&self, token: &str) -> bool {
        let endpoint = format!("{}/token/introspection", self.issuer);
        let answer =
            tokio::runtime::Runtime::new().unwrap().block_on(crate::introspect(&endpoint, token));
        answer["active"].as_bool().unwrap_or_else(|| panic!("introspection answered {answer}"))
    }

    /// Starts the peer on a free port and waits for its `ready` line.
    pub fn start() -> Self {
        Self::start_with(None, None)
    }

    /// Starts the peer with room for `objects` grants, tokens and sessions in its memory adapter
    /// (its default holds 1000, about 150 grants), and if `cpus` is given (a `taskset` list) on
    /// those CPUs only: for benchmarks over thousands of grants that must not share CPUs with
    /// the client, as a real provider would not.
    pub fn start_with(objects: Option<usize>, cpus: Option<&str>) -> Self {
        let env: Vec<(&str, String)> =
            objects.map(|objects| ("OIDC_STORE_SIZE", objects.to_string())).into_iter().collect();
        Self::start_on(None, cpus, &env)
    }

    /// Starts the peer on `port` (a free one if `None`) with `env` (`OIDC_EXTRA_CLIENTS`,
    /// `OIDC_ACCESS_TOKEN_TTL`, `OIDC_STORE_SIZE`: see `tests/peers/oidc-provider.mjs`).
    pub fn start_on(port: Option<u16>, cpus: Option<&str>, env: &[(&str, String)]) -> Self {
        let dir =
            std::path::PathBuf::from(std::env::var_os("AUTHPLUG_TEST_PEERS_DIR").expect(
                "AUTHPLUG_TEST_PEERS_DIR is not set: run the tests with `cargo xtask test`",
            ));
        let port = port.unwrap_or_else(|| {
            std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
        });
        let mut command = match cpus {
            Some(cpus) => {
                let mut pinned = Command::new("taskset");
                pinned.args(["-c", cpus, "node"]);
                pinned
            }
            None => Command::new("node"),
        };
        command.envs(env.iter().map(|(k, v)| (k, v)));
        let mut child = command
            .arg("oidc-provider.mjs")
            .arg(port.to_string())
            .current_dir(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node runs");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        loop {
            match lines.next() {
                Some(Ok(line)) if line.contains(" ready") => break,
                Some(Ok(_)) => continue,
                _ => panic!("oidc-provider exited before it was ready"),
            }
        }
        // Keep reading what it prints (its notices): a closed pipe would kill it with EPIPE on
        // its next line.
        std::thread::spawn(move || lines.for_each(drop));
        Self { child, issuer: format!("http://127.0.0.1:{port}") }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.issuer.rsplit(':').next().and_then(|p| p.parse().ok()).expect("a port")
    }

    /// Stops it (by its own process id) and waits until it has exited.
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The server's process id (for benchmarks that read its CPU time).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The connector manifest's `oauth2` block for this server.
    pub fn oauth2_block(&self, scopes: &[&str]) -> serde_json::Value {
        serde_json::json!({
            "login_url": format!("{}/auth", self.issuer),
            "token_url": format!("{}/token", self.issuer),
            "scopes": scopes,
        })
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Plays the user's browser: follows the redirects from `url` (the consent is auto-approved)
/// until one goes to `redirect_uri`, and returns that callback's query parameters. Cookies are
/// kept in a simple jar (name=value for the one peer host), as a browser would for this flow.
pub async fn follow_consent(url: &str, redirect_uri: &str) -> Vec<(String, String)> {
    let client =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let mut jar: std::collections::BTreeMap<String, String> = Default::default();
    let mut current = url::Url::parse(url).unwrap();
    for _ in 0..10 {
        let cookie = jar.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
        let mut request = client.get(current.clone());
        if !cookie.is_empty() {
            request = request.header("cookie", cookie);
        }
        let response = request.send().await.unwrap();
        for set in response.headers().get_all("set-cookie") {
            let pair = set.to_str().unwrap().split(';').next().unwrap_or("");
            if let Some((name, value)) = pair.split_once('=') {
                jar.insert(name.trim().to_owned(), value.trim().to_owned());
            }
        }
        let location = response
            .headers()
            .get("location")
            .unwrap_or_else(|| panic!("no redirect from {current}: {}", response.status()))
            .to_str()
            .unwrap()
            .to_owned();
        let next = current.join(&location).unwrap();
        if next.as_str().starts_with(redirect_uri) {
            return next.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        }
        current = next;
    }
    panic!("the consent did not come back to {redirect_uri}");
}
