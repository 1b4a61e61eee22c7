//! The README's "Connect a connector" walk-through, run as a new user would: its `.authconfig`
//! and every command of its `sh` block, in order, against oidc-provider (for HubSpot's OAuth2),
//! a fake API that wants the stored access token, and a fake integration node.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use authplug_testkit::{FakeServer, Response};
use serde_json::json;
use tests::desk::Desk;
use tests::node::FakeNode;
use tests::oidc::{follow_consent, OidcProvider, REDIRECT_URI};

const NODE_JWT: &str = "node-jwt-readme";

/// The section's fenced blocks: the `.authconfig` JSON and the commands (comments removed).
fn walkthrough() -> (String, Vec<String>) {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let section =
        readme.split("## Connect a connector").nth(1).expect("the README has the section");
    let section = section.split("\n## ").next().unwrap();
    let block = |fence: &str| {
        let start = section.find(fence).unwrap_or_else(|| panic!("a {fence} block")) + fence.len();
        section[start..].split("```").next().unwrap().trim().to_owned()
    };
    let commands = block("```sh")
        .lines()
        .map(|line| line.split("  #").next().unwrap().trim().to_owned())
        .filter(|line| !line.is_empty())
        .collect();
    (block("```json"), commands)
}

#[test]
fn the_readme_walkthrough_runs_as_written() {
    let (authconfig, commands) = walkthrough();
    assert_eq!(commands.len(), 6, "{commands:?}");
    assert!(commands.iter().all(|c| c.starts_with("authplug ")), "{commands:?}");

    let provider = OidcProvider::start();
    let desk = Desk::new();
    let hubspot = desk.dir.path().join("connectors/hubspot");
    tests::desk::copy_connector("hubspot", &hubspot, |manifest| {
        manifest["oauth2"] = provider.oauth2_block(&["openid", "offline_access"]);
    });
    let authconfig =
        authconfig.replace("YOUR_CLIENT_ID", "app").replace("YOUR_CLIENT_SECRET", "app-secret");
    std::fs::write(hubspot.join(".authconfig"), authconfig).unwrap();

    // The provider's API: answers only the stored access token.
    let expected: Arc<Mutex<Option<String>>> = Arc::default();
    let seen = expected.clone();
    let api = FakeServer::start(move |request| {
        let wanted = seen.lock().unwrap().clone().map(|token| format!("Bearer {token}"));
        match (request.path.as_str(), request.header("authorization")) {
            ("/account-info/v3/details", Some(given)) if Some(given.to_owned()) == wanted => {
                Response::json(200, &json!({"portalId": 42}))
            }
            _ => Response::json(401, &json!({"message": "no valid token"})),
        }
    });
    let node = FakeNode::start(NODE_JWT, &[("existing", "keep-me")]);

    let bin_dir = tests::authplug_bin().parent().unwrap().to_owned();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let shell = |command: &str| {
        let mut sh = Command::new("sh");
        desk.environment(&mut sh);
        sh.args(["-c", command])
            .current_dir(desk.dir.path())
            .env("PATH", &path)
            .env("API", api.url())
            .env("NODE", node.url())
            .env("AUTHPLUG_NODE_JWT", NODE_JWT)
            .env("AUTHPLUG_NO_BROWSER", "1");
        sh
    };

    let runtime = tokio::runtime::Runtime::new().unwrap();
    for command in &commands {
        let mut sh = shell(command);
        let output = if command.starts_with("authplug connect ") {
            // Play the browser: follow the consent printed on stderr to authplug's callback.
            let mut child = sh.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
            let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
            let url = loop {
                let line = lines.next().expect("a consent address").unwrap();
                if let Some(rest) = line.strip_prefix("  http") {
                    break format!("http{rest}");
                }
            };
            let query = runtime.block_on(follow_consent(&url, REDIRECT_URI));
            let callback = reqwest::Url::parse_with_params(REDIRECT_URI, &query).unwrap();
            let status = runtime.block_on(async { reqwest::get(callback).await.unwrap().status() });
            assert_eq!(status, 200);
            std::thread::spawn(move || lines.for_each(drop));
            let output = child.wait_with_output().unwrap();
            let token = desk.store().get("hubspot-acme").unwrap().unwrap().injected
                ["oauth_access_token"]
                .expose()
                .to_owned();
            *expected.lock().unwrap() = Some(token);
            output
        } else {
            sh.output().unwrap()
        };
        assert!(
            output.status.success(),
            "`{command}` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }

    // What the walk-through promised: the secrets on the node, its variables merged.
    let pushed = node.secrets_of("hubspot-acme");
    let names: Vec<&String> = pushed.keys().collect();
    assert_eq!(
        names,
        ["oauth_access_token", "oauth_client_id", "oauth_client_secret", "oauth_refresh_token"]
    );
    let env = node.state.lock().unwrap().env.clone();
    assert_eq!(env["existing"], "keep-me");
    assert_eq!(env["token_url"], format!("{}/token", provider.issuer));
}
