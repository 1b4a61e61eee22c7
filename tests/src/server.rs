//! `authplug serve` started for a test on a lab's store (`Server`, ready once `/readyz` answers
//! 200), the HubSpot connector pointed at the lab's provider (`HubSpot`), API tokens and calls.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::lifecycle::Lab;

/// A running server, stopped by its own id when dropped; its stderr is collected.
#[derive(Debug)]
pub struct Server {
    pub child: crate::Reaped,
    pub url: String,
    pub log: Arc<Mutex<Vec<String>>>,
    pub reader: Option<std::thread::JoinHandle<()>>,
    pub ready_after: Duration,
}

impl Server {
    pub fn start_with(lab: &Lab, tokens: &std::path::Path, extra: &[&str]) -> Self {
        let started = Instant::now();
        let (child, url, lines) = crate::serve(lab.command().arg("serve").args(extra), tokens);
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = log.clone();
        let reader = std::thread::spawn(move || {
            lines.map_while(Result::ok).for_each(|l| sink.lock().unwrap().push(l))
        });
        // Ready: /readyz answers 200.
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let ready = runtime.block_on(async {
            loop {
                if let Ok(response) = reqwest::get(format!("{url}/readyz")).await {
                    if response.status() == 200 {
                        break serde_json::from_slice::<Value>(&response.bytes().await.unwrap())
                            .unwrap();
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
                assert!(started.elapsed() < Duration::from_secs(30), "never ready");
            }
        });
        assert_eq!(
            ready["schemes"].as_array().unwrap().len(),
            built_schemes(),
            "every built plugin is loaded"
        );
        Self { child, url, log, reader: Some(reader), ready_after: started.elapsed() }
    }
}

/// How many schemes the built plugin files hold (`authplug schemes --json`).
pub fn built_schemes() -> usize {
    let output = crate::authplug(&crate::plugin_dir(), &["schemes", "--json"]);
    let listing: Value = serde_json::from_slice(&output.stdout).unwrap();
    let count = listing["schemes"].as_array().unwrap().len();
    assert!(count >= 9, "the nine built-in schemes at least: {listing}");
    count
}

impl Server {
    /// SIGTERM, as a service manager stops it: it must end by itself, successfully.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let status = self.child.wait().unwrap();
        // The log is complete once the process's stderr has closed.
        self.reader.take().unwrap().join().unwrap();
        status
    }
}

pub fn api_token(lab: &Lab, tokens: &std::path::Path, name: &str, scopes: &[&str]) -> String {
    let mut command = lab.command();
    command.args(["api-token", name, "--tokens-file"]).arg(tokens);
    for scope in scopes {
        command.args(["--scope", scope]);
    }
    let output = command.output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// The HubSpot connector (its oauth2 block pointed at the lab's provider, tokens through the
/// counting proxy) in a `connectors` folder, and an admin token, for servers to onboard from.
pub struct HubSpot {
    pub connectors: std::path::PathBuf,
    pub tokens: std::path::PathBuf,
    pub admin: String,
}

/// Its admin token is a secret: never printed.
impl std::fmt::Debug for HubSpot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubSpot").field("connectors", &self.connectors).finish_non_exhaustive()
    }
}

impl HubSpot {
    pub fn new(lab: &Lab) -> Self {
        let connectors = lab.key_file().with_file_name("connectors");
        let folder = connectors.join("hubspot");
        crate::desk::copy_connector("hubspot", &folder, |manifest| {
            manifest["oauth2"] = serde_json::to_value(lab.parameters()).unwrap();
            manifest["verify"] = serde_json::json!({"url": "me"});
        });
        // The API the connector calls is the provider's own resource, which verifies the token
        // (`GET /api/me`): its requests, and so its verification, go there.
        let login = lab.parameters()["login_url"].as_str().unwrap().to_owned();
        let api = format!("{}/api/%s", login.strip_suffix("/auth").unwrap());
        let system = folder.join("templates/system.json");
        let template = std::fs::read_to_string(&system).unwrap();
        let pointed = template.replace("https://api.hubapi.com/%s", &api);
        assert_ne!(pointed, template, "HubSpot's url_pattern is where it was");
        std::fs::write(&system, pointed).unwrap();
        let tokens = lab.key_file().with_file_name("tokens.json");
        let admin = api_token(lab, &tokens, "ops", &["admin"]);
        Self { connectors, tokens, admin }
    }

    /// A server on the lab's store with these connectors and the tokens made so far (several
    /// are as instances behind one load balancer).
    pub fn serve(&self, lab: &Lab) -> Server {
        Server::start_with(lab, &self.tokens, &["--connectors", self.connectors.to_str().unwrap()])
    }

    /// `POST /v1/systems/{system}/onboard` of HubSpot with the provider's `native` client.
    pub async fn onboard(
        &self,
        server: &Server,
        system: &str,
        return_to: Option<&str>,
    ) -> reqwest::Response {
        let mut body = serde_json::json!({});
        if let Some(path) = return_to {
            body["return_to"] = path.into();
        }
        self.onboard_with(server, system, body).await
    }

    /// The same, with `body`'s fields (`return_to`, `replace`) added to the request.
    pub async fn onboard_with(
        &self,
        server: &Server,
        system: &str,
        mut body: Value,
    ) -> reqwest::Response {
        body["connector"] = "hubspot".into();
        body["secrets"] =
            serde_json::json!({"client_id": "native", "client_secret": "native-secret"});
        reqwest::Client::new()
            .post(format!("{}/v1/systems/{system}/onboard", server.url))
            .bearer_auth(&self.admin)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    }
}

/// One API call: its status, its `Cache-Control` and its JSON body (null when not JSON).
pub async fn call(method: &str, url: &str, token: Option<&str>) -> (u16, String, Value) {
    let client = reqwest::Client::new();
    let mut request = client.request(method.parse().unwrap(), url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let cache = response
        .headers()
        .get("cache-control")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = response.bytes().await.unwrap();
    (status, cache, serde_json::from_slice(&body).unwrap_or(Value::Null))
}
