//! The scaffold's own crate (`authplug schemes new demo_session`, which `cargo xtask test` wrote,
//! tested and built from a temporary folder) loaded by the unchanged host: shown, connected
//! against a loopback fake of the provider its sample describes, renewed after expiry, and
//! onboarded through the server. Its manifest field `demo_session.base_url` and the connector's
//! `account_id` reach the scheme both ways.

use std::sync::{Arc, Mutex};

use authplug_testkit::{FakeServer, Response};
use serde_json::{json, Value};
use tests::desk::{copy_dir, Desk};
use tests::{authplug, fixture, library_file, plugin_folder, scaffolded, stdout};

const KEY: &str = "demo-api-key-0123456789";

/// The provider of the sample: `POST /api/accounts/{account}/sessions` with `X-Api-Key`.
fn provider(seen: Arc<Mutex<Vec<String>>>) -> FakeServer {
    FakeServer::start(move |request| {
        let mut seen = seen.lock().unwrap();
        seen.push(request.path.clone());
        match (request.method.as_str(), request.header("x-api-key")) {
            ("POST", Some(KEY)) if request.path.starts_with("/api/accounts/") => {
                let token = format!("session-{}", seen.len());
                Response::json(200, &json!({"token": token, "expires_in": 3600}))
            }
            _ => Response::json(401, &json!({"message": "unknown key"})),
        }
    })
}

/// A folder holding only the scaffolded plugin file.
fn plugins() -> tempfile::TempDir {
    plugin_folder(&[(&fixture("demo_session"), &library_file("demo_session"))])
}

/// The scaffold's sample connector on the desk, pointed at `base_url`.
fn connector(desk: &Desk, name: &str, base_url: &str) -> std::path::PathBuf {
    let dir = desk.dir.path().join("connectors").join(name);
    copy_dir(&scaffolded().join("connector"), &dir);
    let path = dir.join("manifest.json");
    let mut manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    manifest["demo_session"]["base_url"] = base_url.into();
    std::fs::write(&path, manifest.to_string()).unwrap();
    dir
}

#[test]
fn the_scaffolded_scheme_loads_connects_and_renews_in_the_unchanged_host() {
    let plugins = plugins();
    let shown = authplug(plugins.path(), &["schemes", "show", "demo_session"]);
    assert!(shown.status.success(), "{}", tests::stderr(&shown));
    assert!(stdout(&shown).contains("serves:    api_key/demo_session"), "{}", stdout(&shown));

    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let fake = provider(seen.clone());
    let desk = Desk::new();
    let dir = connector(&desk, "membercare", &fake.url());
    let authconfig = json!({"api_key": KEY, "account_id": "acme"});
    std::fs::write(dir.join(".authconfig"), authconfig.to_string()).unwrap();
    let output = desk
        .authplug()
        .env("AUTHPLUG_PLUGIN_DIR", plugins.path())
        .arg("connect")
        .arg(&dir)
        .args(["--system", "members-acme", "--no-prompt"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", tests::stderr(&output));
    assert_eq!(*seen.lock().unwrap(), ["/api/accounts/acme/sessions"]);
    let record = desk.store().get("members-acme").unwrap().unwrap();
    assert_eq!(record.summary.parameters["base_url"], fake.url());
    assert_eq!(record.summary.parameters["account_id"], "acme");
    assert_eq!(record.injected["session_token"].expose(), "session-1");

    // Lapsed: `authplug token` renews it first.
    let injected = authplug_store::Injected::new(record.injected, Some(authplug_store::now_secs()));
    let change = authplug_store::Change { injected: Some(injected), ..Default::default() };
    desk.store().update("members-acme", record.summary.version, change, "test").unwrap();
    let token = desk
        .authplug()
        .env("AUTHPLUG_PLUGIN_DIR", plugins.path())
        .args(["token", "members-acme", "--secret", "session_token"])
        .output()
        .unwrap();
    assert!(token.status.success(), "{}", tests::stderr(&token));
    assert_eq!(stdout(&token).trim(), "session-2");
    assert_eq!(seen.lock().unwrap().len(), 2, "one renewal");
}

#[test]
fn the_servers_onboarding_hands_the_scheme_its_manifest_field_and_account() {
    let plugins = plugins();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let fake = provider(seen.clone());
    let desk = Desk::new();
    let dir = connector(&desk, "membercare", &fake.url());
    let (tokens, admin) = desk.admin_token();
    let mut serve = desk.authplug();
    serve.env("AUTHPLUG_PLUGIN_DIR", plugins.path()).arg("serve");
    serve.arg("--connectors").arg(dir.parent().unwrap());
    let (mut child, url, _log) = tests::serve(&mut serve, &tokens);
    let body = json!({"connector": "membercare", "secrets": {"api_key": KEY},
                      "parameters": {"account_id": "globex"}});
    let answer = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let response = reqwest::Client::new()
            .post(format!("{url}/v1/systems/members-globex/onboard"))
            .bearer_auth(&admin)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, serde_json::from_slice::<Value>(&response.bytes().await.unwrap()).unwrap())
    });
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(answer.0, 200, "{}", answer.1);
    assert_eq!(answer.1["step"], "done");
    assert_eq!(*seen.lock().unwrap(), ["/api/accounts/globex/sessions"]);
    let record = desk.store().get("members-globex").unwrap().unwrap();
    assert_eq!(record.summary.parameters["base_url"], fake.url());
    assert_eq!(record.summary.parameters["account_id"], "globex");
}
