//! The client-credentials schemes (`plugins/client-credentials`) against oidc-provider, which
//! implements the grant with `client_secret_basic`, `client_secret_post` and `private_key_jwt`
//! (verifying the assertion against the client's registered JWKS): through the built plugin file,
//! then as a user runs them (`authplug connect`, `token`, `refresh`, `serve`).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use authplug_protocol::{ErrorCode, OnboardRequest, OnboardStep, RefreshOutcome, RefreshRequest};
use authplug_testkit::superoffice::keys;
use base64::Engine as _;
use serde_json::{json, Value};
use tests::desk::Desk;
use tests::host::{parameters, secrets, PluginHost};
use tests::oidc::OidcProvider;

const BASIC: (&str, &str) = ("cc-basic", "cc-basic-secret-5f1e");
const POST: (&str, &str) = ("cc-post", "cc-post-secret-9a2b");
const JWT_CLIENT: &str = "cc-jwt";
const SERVICE_ACCOUNT: &str = "svc-7";

/// The clients of this test: one per client authentication, the key ones holding the testkit's
/// partner key's public half; `basic_secret` is what oidc-provider believes `cc-basic`'s is.
fn clients(basic_secret: &str) -> String {
    let jwks = json!({"keys": [keys().partner_public_jwk()]});
    let client = |id: &str, method: &str| {
        json!({
            "client_id": id, "grant_types": ["client_credentials"], "response_types": [],
            "redirect_uris": [], "token_endpoint_auth_method": method, "scope": "crm.read crm.write",
        })
    };
    let mut basic = client(BASIC.0, "client_secret_basic");
    basic["client_secret"] = basic_secret.into();
    let mut post = client(POST.0, "client_secret_post");
    post["client_secret"] = POST.1.into();
    let mut jwt = client(JWT_CLIENT, "private_key_jwt");
    jwt["jwks"] = jwks;
    jwt["token_endpoint_auth_signing_alg"] = "RS256".into();
    let mut service = client(SERVICE_ACCOUNT, "private_key_jwt");
    // The key file's `private_key_id` is the key's id at the provider: the assertion's `kid`.
    let mut key = keys().partner_public_jwk();
    key["kid"] = "k1".into();
    service["jwks"] = json!({"keys": [key]});
    json!([basic, post, jwt, service]).to_string()
}

fn provider(port: Option<u16>, ttl_secs: u64, basic_secret: &str) -> OidcProvider {
    let env = [
        ("OIDC_EXTRA_CLIENTS", clients(basic_secret)),
        ("OIDC_ACCESS_TOKEN_TTL", ttl_secs.to_string()),
    ];
    OidcProvider::start_on(port, None, &env)
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// The claims of an access token (oidc-provider issues RS256 JWTs for its resource server).
fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// A service-account key file as providers issue them, for `svc-7` with `pem`.
fn key_file(pem: &str, issuer: &str) -> String {
    json!({
        "type": "service_account", "client_id": SERVICE_ACCOUNT, "private_key_id": "k1",
        "private_key": pem, "client_email": "svc-7@example.test",
        "token_uri": format!("{issuer}/token"),
    })
    .to_string()
}

/// Each scheme's `(auth_variant, required secrets, parameters)` with `pem` as the key.
fn cases(issuer: &str, pem: &str, secret: Option<&str>) -> Vec<(&'static str, Value, Value)> {
    let block = json!({"token_url": format!("{issuer}/token"), "scopes": ["crm.read"]});
    let with = |extra: Value| {
        let mut block = block.clone();
        block.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        block
    };
    vec![
        (
            "client_credentials",
            json!({"client_id": BASIC.0, "client_secret": secret.unwrap_or(BASIC.1)}),
            block.clone(),
        ),
        (
            "client_credentials",
            json!({"client_id": POST.0, "client_secret": secret.unwrap_or(POST.1)}),
            with(json!({"client_auth": "form"})),
        ),
        ("private_key_jwt", json!({"client_id": JWT_CLIENT, "private_key": pem}), block.clone()),
        (
            "service_account",
            json!({"service_account_key": key_file(pem, issuer)}),
            json!({"scopes": ["crm.read"]}),
        ),
    ]
}

fn auth_of(variant: &str) -> &'static str {
    if variant == "service_account" {
        "api_key"
    } else {
        "oauth2"
    }
}

fn required(value: &Value) -> BTreeMap<String, authplug_protocol::Secret> {
    let pairs: Vec<(String, String)> = value
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect();
    let borrowed: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    secrets(&borrowed)
}

#[test]
fn each_client_authentication_gets_a_token_and_every_refresh_a_new_one() {
    let provider = provider(None, 300, BASIC.1);
    let host = PluginHost::load(&["client_credentials"]);
    let pem = keys().partner_pem();
    for (variant, secrets, block) in cases(&provider.issuer, &pem, None) {
        let scheme = host.scheme(auth_of(variant), Some(variant));
        let request = OnboardRequest {
            required: required(&secrets),
            parameters: parameters(block.clone()),
            ..Default::default()
        };
        let OnboardStep::Done { injected, expires_at, .. } =
            scheme.onboard(request, &host.services).unwrap_or_else(|e| panic!("{variant}: {e}"))
        else {
            panic!("{variant}: one step, no consent");
        };
        let token = injected["oauth_access_token"].expose().to_owned();
        let issued = claims(&token);
        let client_id = issued["client_id"].as_str().unwrap().to_owned();
        assert!(
            [BASIC.0, POST.0, JWT_CLIENT, SERVICE_ACCOUNT].contains(&client_id.as_str()),
            "{variant}: {issued}"
        );
        assert_eq!(issued["scope"], "crm.read", "{variant}");
        let expires_at = expires_at.expect("oidc-provider says expires_in");
        assert!((expires_at - now() - 300).abs() <= 5, "{variant}: 300 s tokens");

        let refresh = RefreshRequest {
            required: required(&secrets),
            injected: injected.clone(),
            parameters: parameters(block),
            ..Default::default()
        };
        let RefreshOutcome::Renewed { injected: renewed, .. } =
            scheme.refresh(refresh, &host.services).unwrap()
        else {
            panic!("{variant}: renewed");
        };
        let again = renewed["oauth_access_token"].expose();
        assert_ne!(again, token, "{variant}: a new token");
        assert_eq!(claims(again)["client_id"], client_id.as_str());
        assert_eq!(renewed.keys().collect::<Vec<_>>(), injected.keys().collect::<Vec<_>>());
    }
}

/// Each client authentication revokes its access token on delete (RFC 7009, the client
/// authenticated as at the token endpoint: Basic, form post, or an assertion signed for the
/// request); oidc-provider's introspection then says it is inactive.
#[test]
fn delete_with_revoke_revokes_the_token_with_each_client_authentication() {
    let env = [
        ("OIDC_EXTRA_CLIENTS", clients(BASIC.1)),
        ("OIDC_ACCESS_TOKEN_FORMAT", "opaque".to_owned()),
    ];
    let provider = OidcProvider::start_on(None, None, &env);
    let host = PluginHost::load(&["client_credentials"]);
    let desk = Desk::new();
    let revocation = json!({"revocation_url": format!("{}/token/revocation", provider.issuer)});
    for (n, (variant, secrets, mut block)) in
        cases(&provider.issuer, &keys().partner_pem(), None).into_iter().enumerate()
    {
        block.as_object_mut().unwrap().extend(revocation.as_object().unwrap().clone());
        let scheme = host.scheme(auth_of(variant), Some(variant));
        let request = OnboardRequest {
            required: required(&secrets),
            parameters: parameters(block.clone()),
            ..Default::default()
        };
        let Ok(OnboardStep::Done { injected, expires_at, .. }) =
            scheme.onboard(request, &host.services)
        else {
            panic!("{variant}: onboarded");
        };
        let token = injected["oauth_access_token"].expose().to_owned();
        assert!(provider.active(&token), "{variant}: live before the delete");
        let id = format!("cc-{n}");
        let system = authplug_store::NewSystem {
            id: id.clone(),
            scheme: scheme.id().to_owned(),
            parameters: parameters(block),
            required: required(&secrets),
            injected,
            expires_at,
        };
        desk.store().create(system, "test").unwrap();
        let output = desk
            .authplug()
            .args(["systems", "delete", &id, "--yes", "--revoke", "--json"])
            .output()
            .unwrap();
        assert!(output.status.success(), "{variant}: {}", tests::stderr(&output));
        let said: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(said["revoked"], json!(["oauth_access_token"]), "{variant}: {said}");
        assert!(!provider.active(&token), "{variant}: inactive after the delete");
    }
}

#[test]
fn a_wrong_secret_or_key_is_one_line_naming_invalid_client_and_quoting_nothing() {
    let provider = provider(None, 300, BASIC.1);
    let host = PluginHost::load(&["client_credentials"]);
    let rogue = keys().unknown_partner_pem();
    for (variant, secrets, block) in cases(&provider.issuer, &rogue, Some("not-the-secret")) {
        let scheme = host.scheme(auth_of(variant), Some(variant));
        let request = OnboardRequest {
            required: required(&secrets),
            parameters: parameters(block.clone()),
            ..Default::default()
        };
        let error = scheme.onboard(request, &host.services).unwrap_err();
        assert_eq!(error.code, ErrorCode::Provider, "{variant}: {error}");
        assert!(
            error
                .message
                .starts_with("the token endpoint refused the client credentials: invalid_client"),
            "{variant}: {error}"
        );
        assert!(!error.message.contains('\n'), "one line: {error}");
        tests::host::no_secret_in(&error, &["not-the-secret", "PRIVATE KEY"]);

        // The same refusal at refresh time means a human must act: re-authorise.
        let refresh = RefreshRequest {
            required: required(&secrets),
            parameters: parameters(block),
            ..Default::default()
        };
        let outcome = scheme.refresh(refresh, &host.services).unwrap();
        assert!(matches!(outcome, RefreshOutcome::Reauthorize { .. }), "{variant}: {outcome:?}");
    }
}

/// A connector folder `name` for `(oauth2, variant)` against `issuer`, its `oauth2` block with
/// `extra` fields.
fn connector(desk: &Desk, name: &str, variant: &str, issuer: &str, extra: Value) -> String {
    let dir = desk.dir.path().join(name);
    std::fs::create_dir_all(dir.join("templates")).unwrap();
    let mut block =
        json!({"token_url": format!("{issuer}/token"), "scopes": ["crm.read", "crm.write"]});
    block.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    let manifest = json!({
        "auth": "oauth2", "auth_variant": variant, "oauth2": block,
        "system-template": "templates/system.json",
    });
    std::fs::write(dir.join("manifest.json"), manifest.to_string()).unwrap();
    let system = json!({"_id": "{{@ system @}}", "type": "system:rest",
        "headers": {"Authorization": "Bearer $SECRET(oauth_access_token)"}});
    std::fs::write(dir.join("templates/system.json"), system.to_string()).unwrap();
    dir.to_string_lossy().into_owned()
}

/// `authplug token ID --json`'s access token, expiry and whether it refreshed.
fn token(desk: &Desk, id: &str) -> (String, i64, bool) {
    let output = desk.authplug().args(["token", id, "--json"]).output().unwrap();
    assert!(output.status.success(), "{}", tests::stderr(&output));
    let answer: Value = serde_json::from_slice(&output.stdout).unwrap();
    let access = answer["secrets"]["oauth_access_token"].as_str().unwrap().to_owned();
    (access, answer["expires_at"].as_i64().unwrap(), answer["refreshed"].as_bool().unwrap())
}

/// Waits until the wall clock reaches `at` (Unix seconds): the moment a credential falls due.
fn until(at: i64) {
    let wait = at - now();
    if wait > 0 {
        std::thread::sleep(Duration::from_secs(wait as u64));
    }
}

#[test]
fn connect_then_token_and_serve_fetch_again_after_expiry_and_a_changed_secret_needs_reauth() {
    // Due at half the lifetime (the 60 s margin is capped at 8 s), which leaves a slow machine
    // 8 s between a fetch and the reads that must still see its token (serve's start included).
    const TTL: i64 = 16;
    let provider = provider(None, TTL as u64, BASIC.1);
    let desk = Desk::new();
    let pem = keys().partner_pem();
    // One system per client authentication: (system, client id, connector, secret name, value).
    let systems = [
        (
            "crm-basic",
            BASIC.0,
            connector(&desk, "basic", "client_credentials", &provider.issuer, json!({})),
            "client_secret",
            BASIC.1.to_owned(),
        ),
        (
            "crm-form",
            POST.0,
            connector(
                &desk,
                "form",
                "client_credentials",
                &provider.issuer,
                json!({"client_auth": "form"}),
            ),
            "client_secret",
            POST.1.to_owned(),
        ),
        (
            "crm-jwt",
            JWT_CLIENT,
            connector(
                &desk,
                "jwt",
                "private_key_jwt",
                &provider.issuer,
                json!({"assertion_alg": "RS256"}),
            ),
            "private_key",
            pem,
        ),
    ];
    let mut due = 0;
    let mut current = BTreeMap::new();
    for (id, client, folder, name, value) in &systems {
        let output = desk
            .authplug()
            .args(["connect", folder, "--system", id, "--no-prompt"])
            .args(["--secret", &format!("client_id={client}")])
            .args(["--secret", &format!("{name}={value}")])
            .output()
            .unwrap();
        let stderr = tests::stderr(&output);
        assert!(output.status.success(), "{id}: {stderr}");
        assert!(!stderr.contains(value.as_str()), "{id}: {stderr}");
        let (first, expires_at, refreshed) = token(&desk, id);
        assert!(!refreshed, "{id}: fresh from onboarding");
        assert_eq!(claims(&first)["client_id"], *client);
        due = due.max(expires_at - TTL / 2);
        current.insert(*id, (first, expires_at));
    }
    until(due);
    for (id, client, ..) in &systems {
        let (again, later, refreshed) = token(&desk, id);
        let (first, expires_at) = &current[id];
        assert!(
            refreshed && again != *first && later > *expires_at,
            "{id}: fetched again when due"
        );
        assert_eq!(claims(&again)["client_id"], *client);
        due = due.max(later - TTL / 2);
        current.insert(*id, (again, later));
    }

    // Through serve: an authorize after the next expiry hands out a new token.
    let (tokens, admin) = desk.admin_token();
    let mut command = desk.authplug();
    command.arg("serve");
    let (mut server, url, _log) = tests::serve(&mut command, &tokens);
    let authorize = |id: &str| {
        let (status, answer) =
            tests::call(&url, "POST", &format!("/v1/systems/{id}/authorize"), &admin);
        assert_eq!(status, 200, "{answer}");
        answer["headers"][0][1].as_str().unwrap().trim_start_matches("Bearer ").to_owned()
    };
    for (id, ..) in &systems {
        assert_eq!(authorize(id), current[id].0, "{id}: still valid, served as stored");
    }
    until(due);
    for (id, client, ..) in &systems {
        let third = authorize(id);
        assert_ne!(third, current[id].0, "{id}: serve fetched a new token when due");
        assert_eq!(claims(&third)["client_id"], *client);
    }
    assert!(tests::terminate(&mut server).success());

    // The provider now holds another secret for the client (rotated by its owner): the next
    // fetch is refused, and the system needs re-authorisation.
    let port = provider.port();
    provider.stop();
    let _rotated = self::provider(Some(port), TTL as u64, "a-rotated-secret-0c4d");
    let output = desk.authplug().args(["refresh", "crm-basic"]).output().unwrap();
    assert_eq!(output.status.code(), Some(7), "{}", tests::stderr(&output));
    let stderr = tests::stderr(&output);
    assert!(stderr.contains("invalid_client"), "{stderr}");
    assert!(!stderr.contains(BASIC.1));
    let record = desk.store().get("crm-basic").unwrap().unwrap();
    assert_eq!(record.summary.state, authplug_store::State::NeedsReauth);
}
