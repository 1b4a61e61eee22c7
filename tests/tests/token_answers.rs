//! Token answers as some providers send them, through the built OAuth2 plugin file and a fake
//! token endpoint: an answer for OpenID scopes without an `id_token` (providers that issue one
//! only with some grants, or apps registered without `openid`), and offline tokens (no
//! `expires_in`, no refresh token), which onboard as never expiring.

use std::collections::BTreeMap;

use authplug_protocol::Resume;
use authplug_protocol::{ErrorCode, OnboardRequest, OnboardStep, RefreshOutcome, RefreshRequest};
use authplug_testkit::{FakeServer, Response};
use serde_json::{json, Value};
use tests::host::{parameters, secrets, PluginHost};

const REDIRECT: &str = "http://127.0.0.1:8765/callback";

/// A token endpoint answering every grant with `answer`.
fn endpoint(answer: Value) -> FakeServer {
    FakeServer::start(move |_| Response::json(200, &answer))
}

/// The consent and the code exchange with `extra` settings in the manifest's `oauth2` block.
fn onboard(host: &PluginHost, server: &FakeServer, extra: Value) -> Result<OnboardStep, String> {
    let scheme = host.scheme("oauth2", None);
    let mut block = json!({
        "login_url": "https://login.example.test/authorize",
        "token_url": format!("{}/token", server.url()),
        "scopes": ["openid", "profile"],
    });
    block.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    let mut request = OnboardRequest {
        required: secrets(&[("client_id", "app"), ("client_secret", "app-secret")]),
        parameters: parameters(block),
        redirect_uri: Some(REDIRECT.into()),
        ..Default::default()
    };
    let Ok(OnboardStep::Redirect { state, continuation, .. }) =
        scheme.onboard(request.clone(), &host.services)
    else {
        panic!("a consent first");
    };
    let callback = BTreeMap::from([("code".to_owned(), "c-1".to_owned()), ("state".into(), state)]);
    request.resume = Some(Resume { continuation, callback });
    scheme.onboard(request, &host.services).map_err(|e| format!("{:?}: {}", e.code, e.message))
}

#[test]
fn an_answer_for_openid_scopes_without_an_id_token_onboards_and_a_tenant_rule_says_where_it_looked()
{
    let host = PluginHost::load(&["oauth2_scheme"]);
    let server = endpoint(json!({
        "access_token": "opaque-at", "token_type": "Bearer", "expires_in": 3600,
        "refresh_token": "rt-1", "scope": "openid profile",
    }));
    let Ok(OnboardStep::Done { injected, .. }) = onboard(&host, &server, json!({})) else {
        panic!("the generic scheme needs no id_token");
    };
    assert_eq!(injected["oauth_access_token"].expose(), "opaque-at");

    let error = onboard(&host, &server, json!({"tenant_id_expression": "tid"})).unwrap_err();
    assert_eq!(
        error,
        format!(
            "{:?}: tenant_id_expression tid finds no tenant in the token answer, its id_token or \
             the access token's claims: check the manifest's oauth2 block",
            ErrorCode::Provider
        )
    );
}

#[test]
fn an_offline_token_onboards_as_never_expiring_and_its_refresh_changes_nothing() {
    let host = PluginHost::load(&["oauth2_scheme"]);
    let server = endpoint(json!({"access_token": "offline-at", "token_type": "bearer"}));
    let Ok(OnboardStep::Done { injected, expires_at, .. }) = onboard(&host, &server, json!({}))
    else {
        panic!("onboarded");
    };
    assert_eq!(expires_at, None, "never expires");
    assert_eq!(injected["oauth_refresh_token"].expose(), "", "no refresh token issued");
    let hits = server.hits();
    let request = RefreshRequest {
        required: secrets(&[("client_id", "app"), ("client_secret", "app-secret")]),
        injected: injected.clone(),
        parameters: parameters(json!({
            "login_url": "https://login.example.test/authorize",
            "token_url": format!("{}/token", server.url()),
        })),
        ..Default::default()
    };
    let outcome = host.scheme("oauth2", None).refresh(request, &host.services).unwrap();
    assert!(matches!(outcome, RefreshOutcome::Unchanged { .. }), "{outcome:?}");
    assert_eq!(server.hits(), hits, "nothing sent");
}
