//! Deleting a system with revocation (RFC 7009) against oidc-provider: `authplug systems delete
//! --revoke` and `DELETE /v1/systems/{id}?revoke=true` revoke the refresh and access tokens, and
//! the provider's introspection endpoint then reports both inactive; a provider that does not
//! revoke leaves the system stored, unless the delete is forced.

use std::collections::BTreeMap;

use authplug_protocol::{OnboardRequest, OnboardStep, Resume, Secret};
use authplug_store::NewSystem;
use serde_json::{json, Value};
use tests::desk::Desk;
use tests::host::{secrets, PluginHost};
use tests::oidc::{follow_consent, OidcProvider, REDIRECT_URI};

fn parameters(provider: &OidcProvider) -> BTreeMap<String, Value> {
    serde_json::from_value(json!({
        "login_url": format!("{}/auth", provider.issuer),
        "token_url": format!("{}/token", provider.issuer),
        "revocation_url": format!("{}/token/revocation", provider.issuer),
        "scopes": ["openid", "offline_access"],
    }))
    .unwrap()
}

/// A system `id` on the desk's store, onboarded through the provider's real consent.
fn onboard(host: &PluginHost, provider: &OidcProvider, desk: &Desk, id: &str) -> NewSystem {
    let scheme = host.scheme("oauth2", None);
    let required = secrets(&[("client_id", "app"), ("client_secret", "app-secret")]);
    let first = OnboardRequest {
        required: required.clone(),
        parameters: parameters(provider),
        redirect_uri: Some(REDIRECT_URI.into()),
        ..Default::default()
    };
    let Ok(OnboardStep::Redirect { url, continuation, .. }) =
        scheme.onboard(first.clone(), &host.services)
    else {
        panic!("a consent first");
    };
    let callback = host.block_on(follow_consent(&url, REDIRECT_URI)).into_iter().collect();
    let resume = OnboardRequest { resume: Some(Resume { continuation, callback }), ..first };
    let Ok(OnboardStep::Done { injected, expires_at, .. }) = scheme.onboard(resume, &host.services)
    else {
        panic!("onboarded");
    };
    let system = NewSystem {
        id: id.into(),
        scheme: "oauth2".into(),
        parameters: parameters(provider),
        required,
        injected,
        expires_at,
    };
    desk.store().create(system.clone(), "test").unwrap();
    system
}

fn tokens(system: &NewSystem) -> [&Secret; 2] {
    [&system.injected["oauth_refresh_token"], &system.injected["oauth_access_token"]]
}

#[test]
fn delete_with_revoke_revokes_both_tokens_at_the_provider_through_the_cli_and_the_api() {
    let provider =
        OidcProvider::start_on(None, None, &[("OIDC_ACCESS_TOKEN_FORMAT", "opaque".into())]);
    let host = PluginHost::load(&["oauth2_scheme"]);
    let desk = Desk::new();
    let by_cli = onboard(&host, &provider, &desk, "crm-cli");
    let by_api = onboard(&host, &provider, &desk, "crm-api");
    for token in tokens(&by_cli).into_iter().chain(tokens(&by_api)) {
        assert!(provider.active(token.expose()), "live before the delete");
    }

    let output = desk
        .authplug()
        .args(["systems", "delete", "crm-cli", "--yes", "--revoke", "--json"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", tests::stderr(&output));
    let said: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(said["revoked"], json!(["oauth_refresh_token", "oauth_access_token"]), "{said}");
    for token in tokens(&by_cli) {
        assert!(!provider.active(token.expose()), "inactive after the delete");
    }
    assert!(desk.store().get("crm-cli").unwrap().is_none());
    let trail = desk.store().audit("crm-cli").unwrap();
    let last = trail.last().unwrap();
    assert_eq!(last.action, "deleted");
    assert_eq!(last.detail["revoked"], said["revoked"], "the audit says what was revoked");

    // The API: the same, and a delete without revoke keeps its old answer.
    let (tokens_file, admin) = desk.admin_token();
    let mut command = desk.authplug();
    command.arg("serve");
    let (mut server, url, _log) = tests::serve(&mut command, &tokens_file);
    let (status, answer) = tests::call(&url, "DELETE", "/v1/systems/crm-api?force=true", &admin);
    assert_eq!(status, 400, "force without revoke: {answer}");
    let (status, answer) = tests::call(&url, "DELETE", "/v1/systems/crm-api?revoke=yes", &admin);
    assert_eq!(status, 400, "{answer}");
    let (status, answer) = tests::call(&url, "DELETE", "/v1/systems/crm-api?revoke=true", &admin);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["revoked"], json!(["oauth_refresh_token", "oauth_access_token"]));
    for token in tokens(&by_api) {
        assert!(!provider.active(token.expose()), "inactive after the API's delete");
    }
    assert!(tests::terminate(&mut server).success());
}

#[test]
fn a_provider_that_does_not_revoke_keeps_the_system_unless_forced() {
    let provider = OidcProvider::start();
    let host = PluginHost::load(&["oauth2_scheme"]);
    let desk = Desk::new();
    onboard(&host, &provider, &desk, "crm");

    // A provider that refuses the client (its secret was rotated since): kept, exit code 11.
    onboard(&host, &provider, &desk, "crm-rotated");
    let store = desk.store();
    let version = store.version("crm-rotated").unwrap().unwrap();
    let rotated = secrets(&[("client_id", "app"), ("client_secret", "a-rotated-secret")]);
    let change = authplug_store::Change { required: Some(rotated), ..Default::default() };
    store.update("crm-rotated", version, change, "test").unwrap();
    let output = desk
        .authplug()
        .args(["systems", "delete", "crm-rotated", "--yes", "--revoke"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(11), "{}", tests::stderr(&output));
    let stderr = tests::stderr(&output);
    assert!(stderr.contains("refused oauth_refresh_token: invalid_client"), "{stderr}");
    assert!(!stderr.contains("a-rotated-secret"), "{stderr}");
    assert!(desk.store().get("crm-rotated").unwrap().is_some(), "kept");

    provider.stop(); // the revocation endpoint is gone: connection refused

    let delete = |extra: &[&str]| {
        desk.authplug().args(["systems", "delete", "crm", "--yes", "--revoke"]).args(extra).output()
    };
    let output = delete(&[]).unwrap();
    assert_eq!(output.status.code(), Some(11), "{}", tests::stderr(&output));
    let stderr = tests::stderr(&output);
    assert!(stderr.contains("was not deleted: its credential was not revoked"), "{stderr}");
    assert!(stderr.contains("revocation endpoint failed for oauth_refresh_token"), "{stderr}");
    assert!(desk.store().get("crm").unwrap().is_some(), "kept");

    let output = delete(&["--force"]).unwrap();
    assert!(output.status.success(), "{}", tests::stderr(&output));
    assert!(tests::stderr(&output).contains("note: not revoked, deleted anyway"));
    assert!(desk.store().get("crm").unwrap().is_none());

    // A scheme with nothing to revoke (an API key) deletes with a note.
    let key = secrets(&[("api_key", "ck_live_123")]);
    let shop = NewSystem {
        id: "shop".into(),
        scheme: "api_key".into(),
        parameters: BTreeMap::new(),
        required: key.clone(),
        injected: key,
        expires_at: None,
    };
    desk.store().create(shop, "test").unwrap();
    let output =
        desk.authplug().args(["systems", "delete", "shop", "--yes", "--revoke"]).output().unwrap();
    assert!(output.status.success(), "{}", tests::stderr(&output));
    let stderr = tests::stderr(&output);
    assert!(stderr.contains("note: nothing revoked: scheme api_key does not revoke"), "{stderr}");
    assert!(desk.store().get("shop").unwrap().is_none());
}
