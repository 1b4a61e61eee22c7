//! The web page of `authplug serve`, in Debian's headless Chromium (driven by
//! `tests/peers/web-connect.mjs`), against oidc-provider's consent.

use serde_json::Value;
use tests::lifecycle::Lab;
use tests::server::{HubSpot, Server};

/// Runs `tests/peers/web-connect.mjs` in `phase` against the server: what the browser saw.
fn browse(server: &Server, admin: &str, phase: &str, screenshot: &std::path::Path) -> Value {
    let chromium = std::env::var("AUTHPLUG_TEST_CHROMIUM").unwrap_or("/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).is_file(),
        "{chromium} is missing: install Debian's chromium (.ci/run does) or set AUTHPLUG_TEST_CHROMIUM"
    );
    let peers = std::env::var_os("AUTHPLUG_TEST_PEERS_DIR")
        .expect("AUTHPLUG_TEST_PEERS_DIR is not set: run the tests with `cargo xtask test`");
    let output = std::process::Command::new("node")
        .arg("web-connect.mjs")
        .current_dir(peers)
        .env("PHASE", phase)
        .env("AUTHPLUG_URL", &server.url)
        .env("AUTHPLUG_TOKEN", admin)
        .env("CHROMIUM", &chromium)
        .env("SCREENSHOT", screenshot)
        .env("CONNECTOR", "hubspot")
        .env("SYSTEM", "crm-web")
        .env("SECRET_client_id", "native")
        .env("SECRET_client_secret", "native-secret")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let seen: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap();
    assert_eq!(seen["error"], Value::Null, "the browser session failed: {seen}");
    // No script error and no CSP violation; only the wrong token's 401, when one was tried.
    let unexpected: Vec<&Value> = seen["console"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| !(phase == "connect" && m.as_str().unwrap().contains("status of 401")))
        .collect();
    assert!(unexpected.is_empty(), "{seen}");
    // The browser went to the provider and came back: page, provider, page.
    let origins: Vec<&str> =
        seen["origins"].as_array().unwrap().iter().map(|o| o.as_str().unwrap()).collect();
    assert_eq!(origins.len(), 3, "{seen}");
    assert_eq!((origins[0], origins[2]), (server.url.as_str(), server.url.as_str()));
    // The form asked for exactly the scheme's user secrets, the confidential one hidden as typed.
    let inputs: Vec<(&str, &str)> = seen["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["name"].as_str().unwrap(), i["type"].as_str().unwrap()))
        .collect();
    assert_eq!(inputs, [("client_id", "text"), ("client_secret", "password")]);
    assert_eq!(seen["state"], "active", "{seen}");
    // Then the page verified the new credential at the connector's request, and shows it.
    let message = seen["message"].as_str().unwrap();
    let verified = "System crm-web is connected. Its credential is verified (GET http://127.0.0.1:";
    assert!(message.starts_with(verified) && message.ends_with("/api/me: HTTP 200)."), "{seen}");
    assert!(seen["verification"].as_str().unwrap().starts_with("verified "), "{seen}");
    assert!(!seen["final_url"].as_str().unwrap().contains('#'), "the outcome left the address");
    let png = std::fs::read(screenshot).expect("the screenshot artifact");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "a real screenshot");
    seen
}

/// The web page, in Debian's headless Chromium: an operator signs in with an admin token (a
/// wrong one is refused), connects HubSpot through the provider's consent and sees it listed as
/// active; later the system needs re-authorisation, and its Reconnect button makes it active
/// again.
#[test]
fn the_web_page_connects_a_connector_through_the_consent_in_a_real_browser() {
    let lab = Lab::sqlite();
    let hubspot = HubSpot::new(&lab);
    let (server, admin) = (hubspot.serve(&lab), &hubspot.admin);
    let artifacts =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let (connected, reconnected) =
        (artifacts.join("web-connect.png"), artifacts.join("web-reconnect.png"));
    for old in [&connected, &reconnected] {
        let _ = std::fs::remove_file(old);
    }
    let login = reqwest::Url::parse(lab.parameters()["login_url"].as_str().unwrap()).unwrap();
    let provider = login.origin().ascii_serialization();

    let seen = browse(&server, admin, "connect", &connected);
    assert_eq!(seen["origins"][1], provider.as_str(), "the consent happened at the provider");
    assert!(
        seen["refused"].as_str().unwrap().starts_with("That token cannot sign in here"),
        "{seen}"
    );
    assert_eq!(seen["replace"], false);
    // What the page showed is what the store holds.
    let record = lab.store().get("crm-web").unwrap().expect("connected through the page");
    assert_eq!(record.summary.state.as_str(), "active");
    assert!(record.injected.contains_key("oauth_refresh_token"));
    assert_eq!(record.required["client_id"].expose(), "native");

    // The grant is lost: the page shows it, and reconnecting makes the system active again.
    let store = lab.store();
    let change = authplug_store::Change {
        state: Some(authplug_store::Lifecycle::NeedsReauth("invalid_grant".into())),
        ..authplug_store::Change::default()
    };
    store.update("crm-web", record.summary.version, change, "test").unwrap();
    let seen = browse(&server, admin, "reconnect", &reconnected);
    assert_eq!(seen["before"], "needs_reauth", "{seen}");
    assert_eq!(seen["counts"], "2 systems, 1 needing re-authorisation");
    assert_eq!(seen["filtered"], serde_json::json!(["crm-web"]), "the filter keeps that row only");
    assert_eq!(seen["replace"], true, "Reconnect onboards the same system again");
    let again = seen["verified_again"].as_str().unwrap();
    assert!(again.starts_with("Its credential is verified (GET "), "the Verify button: {seen}");
    let again = lab.store().get("crm-web").unwrap().unwrap();
    assert_eq!(again.summary.state.as_str(), "active");
    assert!(again.summary.version > record.summary.version + 1);
    // Compared without printing either value.
    assert!(
        again.injected["oauth_refresh_token"].expose()
            != record.injected["oauth_refresh_token"].expose(),
        "a new grant"
    );
    eprintln!("web page: screenshots in {}", artifacts.display());
    drop(server);
}
