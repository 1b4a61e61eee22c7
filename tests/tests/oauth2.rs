//! The OAuth2 scheme end to end against oidc-provider (PKCE required, refresh tokens rotated,
//! reuse revoking the whole grant), through the built plugin file and the host's transport.

use std::collections::BTreeMap;

use authplug_host::LoadedScheme;
use authplug_protocol::{
    ErrorCode, OnboardRequest, OnboardStep, RefreshOutcome, RefreshRequest, Resume, Secret,
};
use tests::host::PluginHost;
use tests::oidc::{follow_consent, OidcProvider, REDIRECT_URI};

struct Setup {
    host: PluginHost,
    provider: OidcProvider,
}

impl Setup {
    fn new() -> Self {
        Self { host: PluginHost::load(&["oauth2_scheme"]), provider: OidcProvider::start() }
    }

    fn scheme(&self) -> &LoadedScheme {
        self.host.scheme("oauth2", None)
    }

    fn parameters(&self) -> BTreeMap<String, serde_json::Value> {
        // crm.* are granted through the resource indicator; asking for them as scopes makes this
        // peer ask for consent forever.
        let block = self.provider.oauth2_block(&["openid", "offline_access"]);
        serde_json::from_value(block).unwrap()
    }

    fn required(&self, secret: &str) -> BTreeMap<String, Secret> {
        BTreeMap::from([
            ("client_id".to_owned(), Secret::new("app")),
            ("client_secret".to_owned(), Secret::new(secret)),
        ])
    }

    /// Runs the consent: the redirect step, the browser, the host's state check, and returns what
    /// resuming gives, with a hook to alter the continuation first.
    fn onboard(
        &self,
        secret: &str,
        alter: impl FnOnce(String) -> String,
    ) -> Result<OnboardStep, authplug_host::CallError> {
        let first = OnboardRequest {
            required: self.required(secret),
            parameters: self.parameters(),
            redirect_uri: Some(REDIRECT_URI.into()),
            ..Default::default()
        };
        let OnboardStep::Redirect { url, state, continuation } =
            self.scheme().onboard(first, &self.host.services).unwrap()
        else {
            panic!("OAuth2 onboarding starts with a redirect");
        };
        assert!(url.starts_with(&format!("{}/auth?", self.provider.issuer)), "{url}");
        assert!(url.contains("code_challenge_method=S256") && url.contains("state="), "{url}");
        let callback: BTreeMap<String, String> =
            self.host.block_on(follow_consent(&url, REDIRECT_URI)).into_iter().collect();
        assert_eq!(callback.get("state"), Some(&state), "the host's state check");
        let resume = OnboardRequest {
            required: self.required(secret),
            parameters: self.parameters(),
            redirect_uri: Some(REDIRECT_URI.into()),
            resume: Some(Resume {
                continuation: Secret::new(alter(continuation.expose().to_owned())),
                callback,
            }),
            ..Default::default()
        };
        self.scheme().onboard(resume, &self.host.services)
    }

    fn refresh(&self, injected: &BTreeMap<String, Secret>) -> RefreshOutcome {
        let request = RefreshRequest {
            required: self.required("app-secret"),
            injected: injected.clone(),
            parameters: self.parameters(),
            ..Default::default()
        };
        self.scheme().refresh(request, &self.host.services).unwrap()
    }
}

fn values(map: &BTreeMap<String, Secret>) -> BTreeMap<String, String> {
    map.iter().map(|(k, v)| (k.clone(), v.expose().to_owned())).collect()
}

#[test]
fn onboarding_then_three_rotating_refreshes_without_a_reuse() {
    let setup = Setup::new();
    let OnboardStep::Done { injected, expires_at, .. } =
        setup.onboard("app-secret", |c| c).unwrap()
    else {
        panic!("done after the callback");
    };
    let first = values(&injected);
    assert_eq!(
        first.keys().collect::<Vec<_>>(),
        ["oauth_access_token", "oauth_client_id", "oauth_client_secret", "oauth_refresh_token"]
    );
    assert_eq!(first["oauth_client_id"], "app");
    assert_eq!(first["oauth_client_secret"], "app-secret");
    assert!(first["oauth_access_token"].starts_with("eyJ"), "a JWT access token");
    assert!(!first["oauth_refresh_token"].is_empty());
    assert!(expires_at.unwrap() > authplug_store::now_secs() + 200, "300 s tokens");

    // Each refresh uses the refresh token the previous one returned. oidc-provider rotates them and
    // revokes the whole grant on a reuse, so three successes prove none happened.
    let mut current = injected;
    let mut seen_refresh_tokens = vec![first["oauth_refresh_token"].clone()];
    for round in 1..=3 {
        let RefreshOutcome::Renewed { injected, expires_at } = setup.refresh(&current) else {
            panic!("refresh {round} failed");
        };
        let renewed = values(&injected);
        assert!(expires_at.is_some());
        assert_ne!(renewed["oauth_access_token"], values(&current)["oauth_access_token"]);
        assert!(
            !seen_refresh_tokens.contains(&renewed["oauth_refresh_token"]),
            "rotated in round {round}"
        );
        seen_refresh_tokens.push(renewed["oauth_refresh_token"].clone());
        current = injected;
    }

    // And the server does detect reuse: an old refresh token is refused and kills the grant, so the
    // current one stops working too. (This is what the engine must never cause.)
    let mut stale = current.clone();
    stale.insert("oauth_refresh_token".into(), Secret::new(seen_refresh_tokens[1].clone()));
    match setup.refresh(&stale) {
        RefreshOutcome::Reauthorize { reason } => {
            assert!(reason.starts_with("invalid_grant"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(setup.refresh(&current), RefreshOutcome::Reauthorize { .. }), "grant revoked");
}

#[test]
fn a_wrong_client_secret_is_a_clear_error_without_the_secret() {
    let setup = Setup::new();
    let error = setup.onboard("not-the-secret", |c| c).unwrap_err();
    assert_eq!(error.code, ErrorCode::Provider);
    assert!(
        error.message.starts_with("the token endpoint refused the code: invalid_client"),
        "{error}"
    );
    assert!(!error.to_string().contains("not-the-secret"));
}

#[test]
fn a_tampered_pkce_verifier_is_refused() {
    let setup = Setup::new();
    let tamper = |continuation: String| {
        let mut value: serde_json::Value = serde_json::from_str(&continuation).unwrap();
        value["verifier"] = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".into(); // RFC 7636's, not ours
        value.to_string()
    };
    let error = setup.onboard("app-secret", tamper).unwrap_err();
    assert_eq!(error.code, ErrorCode::Provider);
    assert!(error.message.contains("invalid_grant"), "{error}");
    assert!(error.message.contains("PKCE verifier does not match"), "names the cause: {error}");
}

#[test]
fn a_callback_with_another_state_is_refused() {
    let setup = Setup::new();
    let error = setup
        .onboard("app-secret", |c| {
            let mut value: serde_json::Value = serde_json::from_str(&c).unwrap();
            value["state"] = "a-state-from-another-authorisation".into();
            value.to_string()
        })
        .unwrap_err();
    assert_eq!(error.code, ErrorCode::InvalidInput);
    assert!(error.message.contains("state does not match"), "{error}");
}
