//! `authplug connect` as a connector developer runs it: the real connector folders, their
//! `.authconfig`, a consent in "the browser" (this test, following the redirects), and the
//! store that results.

use serde_json::json;
use tests::desk::{free_port, start_connect, Desk};
use tests::oidc::{follow_consent, OidcProvider};

/// The desk's copy of HubSpot, its consent and tokens at `provider` (OpenID scopes; the crm.*
/// scopes come with the resource indicator).
fn hubspot_at(desk: &Desk, provider: &OidcProvider) -> std::path::PathBuf {
    desk.connector("hubspot", |manifest| {
        manifest["oauth2"] = provider.oauth2_block(&["openid", "offline_access"]);
    })
}

/// [`hubspot_at`], with the provider's `native` client in its `.authconfig`.
fn hubspot_with_authconfig(desk: &Desk, provider: &OidcProvider) -> std::path::PathBuf {
    let hubspot = hubspot_at(desk, provider);
    std::fs::write(
        hubspot.join(".authconfig"),
        json!({"client_id": "native", "client_secret": "native-secret"}).to_string(),
    )
    .unwrap();
    hubspot
}

#[test]
fn hubspot_connects_through_a_real_consent_and_renders_with_the_stored_values() {
    let provider = OidcProvider::start();
    let desk = Desk::new();
    let hubspot = hubspot_with_authconfig(&desk, &provider);
    let port = free_port();
    let redirect = format!("http://127.0.0.1:{port}/callback");

    let (child, url, progress) = start_connect(
        &desk,
        &[hubspot.to_str().unwrap(), "--system", "hubspot-acme", "--json", "--port", &port],
    );
    assert!(
        progress[0].starts_with("[1/5] ") && progress[0].contains("scheme oauth2"),
        "{progress:?}"
    );
    assert!(
        progress[1].contains("client_id (") && progress[1].contains(".authconfig"),
        "{progress:?}"
    );
    assert!(!progress.iter().any(|l| l.contains("native-secret")), "no secret in the progress");

    // The browser: consent, then the redirect to authplug's loopback callback.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let query = runtime.block_on(follow_consent(&url, &redirect));
    let callback = reqwest::Url::parse_with_params(&redirect, &query).unwrap();
    let page = runtime.block_on(async { reqwest::get(callback).await.unwrap() });
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["cache-control"], "no-store");

    let output = child.wait();
    assert!(output.status.success(), "connect failed: {}", output.status);
    let printed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    // The real HubSpot connector declares no verification, nor does the oauth2 scheme.
    assert_eq!(printed["verification"]["outcome"], "undeclared", "{printed}");
    assert_eq!(
        printed["injected"],
        json!([
            "oauth_access_token",
            "oauth_client_id",
            "oauth_client_secret",
            "oauth_refresh_token"
        ])
    );

    let record = desk.store().get("hubspot-acme").unwrap().expect("stored");
    let names: Vec<&String> = record.injected.keys().collect();
    assert_eq!(
        names,
        ["oauth_access_token", "oauth_client_id", "oauth_client_secret", "oauth_refresh_token"]
    );
    assert_eq!(record.injected["oauth_client_secret"].expose(), "native-secret");
    assert!(!record.injected["oauth_refresh_token"].expose().is_empty());
    assert_eq!(record.summary.parameters["token_url"], format!("{}/token", provider.issuer));
    assert!(record.summary.expires_at.is_some());

    // Render: the system template for a local run, with the stored values.
    let out = desk.dir.path().join("build");
    let rendered = desk
        .authplug()
        .args([
            "render",
            hubspot.to_str().unwrap(),
            "--system",
            "hubspot-acme",
            "--reveal",
            "--output",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(rendered.status.success(), "{}", String::from_utf8_lossy(&rendered.stderr));
    let system: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("system.json")).unwrap()).unwrap();
    assert_eq!(system["_id"], "hubspot-acme");
    for (field, secret) in [
        ("access_token", "oauth_access_token"),
        ("client_id", "oauth_client_id"),
        ("client_secret", "oauth_client_secret"),
        ("refresh_token", "oauth_refresh_token"),
    ] {
        assert!(
            system["oauth2"][field] == record.injected[secret].expose(),
            "oauth2.{field} holds the stored {secret}"
        );
    }
    assert_eq!(system["oauth2"]["token_url"], format!("{}/token", provider.issuer));
    // Runtime Jinja is the runtime's.
    assert_eq!(system["operations"]["account-list"]["id_expression"], "{{ portalId }}");
    let contact: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("contact.json")).unwrap()).unwrap();
    assert!(contact.to_string().contains("hubspot-acme"), "datatype templates are rendered too");

    // Without --reveal, nothing secret is printed.
    let masked = desk
        .authplug()
        .args(["render", hubspot.to_str().unwrap(), "--system", "hubspot-acme"])
        .output()
        .unwrap();
    assert!(masked.status.success());
    let masked: serde_json::Value = serde_json::from_slice(&masked.stdout).unwrap();
    assert_eq!(masked["oauth2"]["refresh_token"], "********");
    assert_eq!(masked["oauth2"]["client_secret"], "********");
}

/// A system that needs re-authorisation, connected again with `--replace`: active again, and
/// the onboarding service says `recovered` exactly once, to the webhook and in the log.
#[test]
fn connecting_again_a_system_that_needs_reauthorisation_says_it_recovered_once() {
    let provider = OidcProvider::start();
    let desk = Desk::new();
    let hubspot = hubspot_with_authconfig(&desk, &provider);
    let (hook, delivered) = tests::webhook::receiver("connect-whsec", 0);
    let secret_file = desk.dir.path().join("webhook.secret");
    std::fs::write(&secret_file, "connect-whsec").unwrap();
    let webhook_url = format!("{}/events", hook.url());
    let connect = |replace: bool| {
        let port = free_port();
        let redirect = format!("http://127.0.0.1:{port}/callback");
        let mut args = vec![hubspot.to_str().unwrap(), "--system", "crm", "--port", &port];
        args.extend(["--webhook-url", &webhook_url, "--webhook-secret-file"]);
        args.push(secret_file.to_str().unwrap());
        args.push("-v");
        if replace {
            args.push("--replace");
        }
        let (child, url, _) = start_connect(&desk, &args);
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let query = runtime.block_on(follow_consent(&url, &redirect));
        let callback = reqwest::Url::parse_with_params(&redirect, &query).unwrap();
        runtime.block_on(async { reqwest::get(callback).await.unwrap() });
        let (output, log) = child.wait_with_log();
        assert!(output.status.success(), "connect failed: {log:?}");
        log
    };
    let first = connect(false);
    assert!(!first.iter().any(|l| l.contains("recovered")), "a new system recovers nothing");

    let store = desk.store();
    let version = store.version("crm").unwrap().unwrap();
    let lost = authplug_store::Change {
        state: Some(authplug_store::Lifecycle::NeedsReauth("invalid_grant: revoked".into())),
        failures: Some(1),
        ..Default::default()
    };
    store.update("crm", version, lost, "test").unwrap();
    let again = connect(true);
    let said: Vec<&String> = again.iter().filter(|l| l.contains("crm recovered")).collect();
    assert_eq!(said.len(), 1, "one log line: {again:?}");
    // The webhook was flushed before connect exited.
    assert_eq!(tests::webhook::kinds(&delivered, "crm"), ["recovered"]);
    let record = store.get("crm").unwrap().unwrap();
    assert_eq!((record.summary.state, record.summary.failures), (authplug_store::State::Active, 0));
    let audited = store.audit("crm").unwrap();
    assert_eq!(audited.iter().filter(|e| e.action == "recovered").count(), 1);
}

#[test]
fn a_forged_callback_is_refused_and_the_consent_still_completes() {
    // Issue 16, item 10: any web page can send the loopback callback a request (an <img> is
    // enough); one with the wrong state is refused and ignored, and the real consent goes on.
    let provider = OidcProvider::start();
    let desk = Desk::new();
    let hubspot = hubspot_with_authconfig(&desk, &provider);
    let port = free_port();
    let redirect = format!("http://127.0.0.1:{port}/callback");
    let (child, url, _) =
        start_connect(&desk, &[hubspot.to_str().unwrap(), "--system", "h", "--port", &port]);
    let forged = format!("{redirect}?code=stolen&state=not-the-one");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let page = runtime.block_on(async { reqwest::get(forged).await.unwrap() });
    assert_eq!(page.status(), 400);
    assert_eq!(page.headers()["content-security-policy"], "default-src 'none'");
    assert!(desk.store().get("h").unwrap().is_none(), "nothing stored for the forgery");
    let query = runtime.block_on(follow_consent(&url, &redirect));
    let callback = reqwest::Url::parse_with_params(&redirect, &query).unwrap();
    let page = runtime.block_on(async { reqwest::get(callback).await.unwrap() });
    assert_eq!(page.status(), 200);
    let (output, log) = child.wait_with_log();
    assert!(output.status.success(), "{log:?}");
    assert!(log.iter().any(|l| l.contains("ignored a callback request")), "{log:?}");
    let record = desk.store().get("h").unwrap().expect("the real consent stored it");
    assert!(!record.injected["oauth_access_token"].expose().is_empty());
}

#[test]
fn a_missing_required_secret_is_named_with_where_to_put_it() {
    let desk = Desk::new();
    let tripletex = desk.connector("tripletex", |_| {});
    std::fs::write(tripletex.join(".authconfig"), "consumer_token=abc\n").unwrap();
    let output = desk
        .authplug()
        .args(["connect", tripletex.to_str().unwrap(), "--system", "t", "--no-prompt"])
        .env_remove("AUTHPLUG_SECRET_EMPLOYEE_TOKEN")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "error: missing required secret employee_token: {}/.authconfig lacks it, or give --secret employee_token=..., or set AUTHPLUG_SECRET_EMPLOYEE_TOKEN",
            tripletex.display()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("abc"), "no value is quoted");
}

const CONSUMER: &str = "consumer-6f1d2c3b-secret";
const EMPLOYEE: &str = "employee-9a8b7c6d-secret";

#[test]
fn tripletex_connects_from_its_authconfig_lines() {
    let fake = authplug_testkit::tripletex::Tripletex::start(CONSUMER, EMPLOYEE);
    let desk = Desk::new();
    let tripletex = desk.connector("tripletex", |_| {});
    std::fs::write(
        tripletex.join(".authconfig"),
        format!("# the classic tool's format\nCONSUMER_TOKEN={CONSUMER}\nemployee_token={EMPLOYEE}\nbase_url={}\n", fake.base_url()),
    )
    .unwrap();
    let output = desk
        .authplug()
        .args(["connect", tripletex.to_str().unwrap(), "--system", "tripletex-acme", "--no-prompt"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(!stderr.contains(CONSUMER) && !stderr.contains(EMPLOYEE), "no secret in the progress");
    // Onboarding proved the tokens with a session; verification's whoAmI was sent with a fresh
    // one, as every request applied is.
    assert_eq!(fake.sessions_created(), 2, "one session to onboard, one to verify");
    assert!(stderr.contains("[5/5] tripletex-acme: verified: the scheme's GET "), "{stderr}");
    assert!(stderr.contains("/v2/token/session/>whoAmI in "), "{stderr}");
    let record = desk.store().get("tripletex-acme").unwrap().unwrap();
    assert_eq!(record.injected["consumer_token"].expose(), CONSUMER);
    assert_eq!(record.injected["employee_token"].expose(), EMPLOYEE);
    assert_eq!(record.summary.parameters["base_url"], fake.base_url());
    // The manifest asks for a webhook secret: one was generated (the user gave none).
    assert_eq!(record.required["webhook_secret"].expose().len(), 64);
    assert!(stderr.contains("webhook_secret (generated)"), "{stderr}");
}

#[test]
fn webcrm_connects_from_its_authconfig_json() {
    const APP_TOKEN: &str = "0a1b2c3d-webcrm-application-token";
    let fake = authplug_testkit::webcrm::WebCrm::start(APP_TOKEN);
    let desk = Desk::new();
    let webcrm =
        desk.connector("webcrm", |manifest| manifest["jwt"]["login_url"] = fake.login_url().into());
    std::fs::write(webcrm.join(".authconfig"), json!({"API_KEY": APP_TOKEN}).to_string()).unwrap();
    let output = desk
        .authplug()
        .args(["connect", webcrm.to_str().unwrap(), "--system", "webcrm-acme", "--no-prompt"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    // The check's warning is shown, and does not stop the connection.
    assert!(stderr.contains("warning: `jwt.jwt_header_key` is missing"), "{stderr}");
    assert_eq!(fake.logins(), 1);
    let record = desk.store().get("webcrm-acme").unwrap().unwrap();
    assert!(record.injected["jwt_access_token"].expose().starts_with("ey"), "a JWT");
    assert!(record.summary.expires_at.is_some());
}

#[test]
fn superoffice_connects_through_its_consent_from_its_authconfig() {
    use authplug_testkit::superoffice::{keys, SuperOffice};
    const CLIENT_ID: &str = "so-client-8d2f";
    const APP_TOKEN: &str = "so-app-token-3c1e9b0a-secret";
    const TENANT: &str = "Cust12345";
    let fake = SuperOffice::start(CLIENT_ID, APP_TOKEN, TENANT);
    let desk = Desk::new();
    let superoffice =
        desk.connector("superoffice", |manifest| manifest["oauth2"] = fake.oauth2_block());
    std::fs::write(
        superoffice.join(".authconfig"),
        json!({"client_id": CLIENT_ID, "client_secret": APP_TOKEN, "account_id": TENANT})
            .to_string(),
    )
    .unwrap();
    // The partner's private key is the operator's, not the connector developer's.
    let operator = desk.dir.path().join("operator.json");
    std::fs::write(
        &operator,
        json!({"superoffice": {"partner_private_key": keys().partner_pem()}}).to_string(),
    )
    .unwrap();
    let port = free_port();
    let (child, url, _) = start_connect(
        &desk,
        &[
            superoffice.to_str().unwrap(),
            "--system",
            "superoffice-acme",
            "--port",
            &port,
            "--operator-secrets",
            operator.to_str().unwrap(),
        ],
    );
    let query = fake.consent(&url);
    let callback =
        reqwest::Url::parse_with_params(&format!("http://127.0.0.1:{port}/callback"), &query)
            .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    assert_eq!(runtime.block_on(async { reqwest::get(callback).await.unwrap().status() }), 200);
    let (output, log) = child.wait_with_log();
    assert!(output.status.success(), "{log:?}");
    // The scheme's verification: the current principal, at the tenant's API, with the ticket.
    let verified = log.iter().find(|l| l.starts_with("[5/5] ")).expect("a fifth step");
    assert!(verified.contains("superoffice-acme: verified: the scheme's GET http"), "{log:?}");
    assert!(verified.contains(&format!("/{TENANT}/api/v1/User/currentPrincipal")), "{log:?}");
    let record = desk.store().get("superoffice-acme").unwrap().unwrap();
    assert!(!record.injected["so_ticket"].expose().is_empty());
    assert_eq!(record.injected["SO-Apptoken"].expose(), APP_TOKEN);
    assert_eq!(record.summary.parameters["account_id"], TENANT);
    assert!(
        record.summary.parameters["base_url"].as_str().unwrap().starts_with("http://127.0.0.1"),
        "the tenant's API host"
    );
    assert!(
        !record.required.contains_key("partner_private_key"),
        "the operator's key is not stored with the system"
    );
    // The real connector's requests go to the tenant's API: its url_pattern, rendered with what
    // onboarding found (`{{@ base_url @}}/{{@ account_id @}}/api/v1/%s`).
    let out = desk.dir.path().join("build");
    let rendered = desk
        .authplug()
        .arg("render")
        .arg(&superoffice)
        .args(["--system", "superoffice-acme", "--output"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(rendered.status.success(), "{}", tests::stderr(&rendered));
    let system: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("system.json")).unwrap()).unwrap();
    assert_eq!(system["url_pattern"], format!("{}/{TENANT}/api/v1/%s", fake.url()));
}

/// The browser: the consent, then the redirect to authplug's loopback callback.
fn consent(url: &str, redirect: &str) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let query = runtime.block_on(follow_consent(url, redirect));
    let callback = reqwest::Url::parse_with_params(redirect, &query).unwrap();
    assert_eq!(runtime.block_on(async { reqwest::get(callback).await.unwrap().status() }), 200);
}

#[test]
fn the_tenant_is_read_into_account_id_by_key_dotted_path_or_list_with_or_without_identity_url() {
    let provider = OidcProvider::start();
    let desk = Desk::new();
    // HubSpot's token metadata (`GET /oauth/v1/access-tokens/{token}`, the token in the path)
    // and a userinfo-style endpoint (the token as a bearer credential), both answering only the
    // new access token (oidc-provider's are JWTs).
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = asked.clone();
    let identity = authplug_testkit::FakeServer::start(move |request| {
        count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let bearer = request.header("authorization").unwrap_or_default();
        match request.path.strip_prefix("/oauth/v1/access-tokens/") {
            Some(token) if token.starts_with("ey") && bearer.ends_with(token) => {
                authplug_testkit::Response::json(200, &json!({"hub_id": 4711, "token": token}))
            }
            None if request.path == "/userinfo" && bearer.starts_with("Bearer ey") => {
                authplug_testkit::Response::json(200, &json!({"user": {"tenant": "Cust1"}}))
            }
            _ => authplug_testkit::Response::json(401, &json!({})),
        }
    });
    let metadata = format!("{}/oauth/v1/access-tokens/", identity.url());
    let userinfo = format!("{}/userinfo", identity.url());
    for (system, extra, expected) in [
        ("by-key", json!({"identity_url": metadata, "tenant_id_expression": "hub_id"}), "4711"),
        (
            "by-path",
            json!({"identity_url": userinfo, "tenant_id_expression": "{{ user.tenant }}"}),
            "Cust1",
        ),
        ("by-list", json!({"tenant_id_expression": ["sub"]}), "alice"),
    ] {
        let hubspot = desk.dir.path().join(system);
        tests::desk::copy_connector("hubspot", &hubspot, |manifest| {
            let mut block = provider.oauth2_block(&["openid", "offline_access"]);
            block.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            manifest["oauth2"] = block;
        });
        let port = free_port();
        let (child, url, _) = start_connect(
            &desk,
            &[
                hubspot.to_str().unwrap(),
                "--system",
                system,
                "--port",
                &port,
                "--secret",
                "client_id=native",
                "--secret",
                "client_secret=native-secret",
            ],
        );
        consent(&url, &format!("http://127.0.0.1:{port}/callback"));
        let (output, log) = child.wait_with_log();
        assert!(output.status.success(), "{system}: {log:?}");
        assert!(log.iter().any(|l| l.contains(&format!("account_id = {expected}"))), "{log:?}");
        let record = desk.store().get(system).unwrap().unwrap();
        assert_eq!(record.summary.parameters["account_id"], expected, "{system}");
    }
    assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 2, "each identity_url once");

    // A tenant the answer does not have fails the onboarding by the expression's name, and
    // stores nothing.
    let hubspot = desk.dir.path().join("nowhere");
    tests::desk::copy_connector("hubspot", &hubspot, |manifest| {
        let mut block = provider.oauth2_block(&["openid", "offline_access"]);
        block["tenant_id_expression"] = "portal.id".into();
        manifest["oauth2"] = block;
    });
    let port = free_port();
    let args = [hubspot.to_str().unwrap(), "--system", "nowhere", "--port", &port];
    let secrets = ["--secret", "client_id=native", "--secret", "client_secret=native-secret"];
    let (child, url, _) = start_connect(&desk, &[&args[..], &secrets[..]].concat());
    consent(&url, &format!("http://127.0.0.1:{port}/callback"));
    let (output, log) = child.wait_with_log();
    assert!(!output.status.success());
    let said = log.join("\n");
    assert!(said.contains("tenant_id_expression portal.id finds no tenant"), "{said}");
    assert!(desk.store().get("nowhere").unwrap().is_none());
}

#[test]
fn a_consent_never_completed_times_out_cleanly() {
    let provider = OidcProvider::start();
    let desk = Desk::new();
    let hubspot = hubspot_at(&desk, &provider);
    let port = free_port();
    let (child, _url, _) = start_connect(
        &desk,
        &[
            hubspot.to_str().unwrap(),
            "--system",
            "h",
            "--port",
            &port,
            "--timeout",
            "1",
            "--secret",
            "client_id=native",
            "--secret",
            "client_secret=native-secret",
        ],
    );
    let output = child.wait();
    assert_eq!(output.status.code(), Some(1));
    assert!(desk.store().get("h").unwrap().is_none());
    // The listener is gone with the process.
    assert!(std::net::TcpListener::bind(format!("127.0.0.1:{port}")).is_ok());
}
