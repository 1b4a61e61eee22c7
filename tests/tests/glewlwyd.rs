//! The OAuth2 scheme end to end against glewlwyd, a second real and independent server (Debian's,
//! in C): the same cases as against oidc-provider (`oauth2.rs`, and the single flight of
//! `lifecycle.rs`), through the built plugin file. glewlwyd's refresh tokens are one-use: a
//! replayed one answers HTTP 400 with an empty body and disables the whole chain, so a lost or
//! doubled refresh shows at once.

use std::collections::BTreeMap;
use std::time::Duration;

use authplug_engine::{EngineConfig, Events};
use authplug_protocol::{
    ErrorCode, OnboardRequest, OnboardStep, RefreshOutcome, RefreshRequest, Resume, Secret,
};
use authplug_store::{Change, Injected, NewSystem, Outcome, State};
use tests::glewlwyd::{Glewlwyd, REDIRECT_URI};
use tests::host::{parameters, secrets, temp_store, PluginHost};

const SCOPES: &[&str] = &["openid", "offline_access", "crm.read"];

struct Setup {
    host: PluginHost,
    server: Glewlwyd,
}

impl Setup {
    fn new() -> Self {
        Self { host: PluginHost::load(&["oauth2_scheme"]), server: Glewlwyd::start() }
    }

    fn parameters(&self) -> BTreeMap<String, serde_json::Value> {
        parameters(self.server.oauth2_block(SCOPES))
    }

    fn required(&self, secret: &str) -> BTreeMap<String, Secret> {
        secrets(&[("client_id", "app"), ("client_secret", secret)])
    }

    /// The consent as alice, then the code exchange, the continuation altered by `alter` first.
    fn onboard(
        &self,
        secret: &str,
        alter: impl FnOnce(String) -> String,
    ) -> Result<OnboardStep, authplug_host::CallError> {
        let scheme = self.host.scheme("oauth2", None);
        let first = OnboardRequest {
            required: self.required(secret),
            parameters: self.parameters(),
            redirect_uri: Some(REDIRECT_URI.into()),
            ..Default::default()
        };
        let OnboardStep::Redirect { url, state, continuation } =
            scheme.onboard(first.clone(), &self.host.services).unwrap()
        else {
            panic!("a consent first");
        };
        assert!(url.contains("code_challenge_method=S256") && url.contains("nonce="), "{url}");
        let callback: BTreeMap<String, String> =
            self.host.block_on(self.server.consent(&url, SCOPES)).into_iter().collect();
        assert_eq!(callback.get("state"), Some(&state));
        let continuation = Secret::new(alter(continuation.expose().to_owned()));
        let resume = OnboardRequest { resume: Some(Resume { continuation, callback }), ..first };
        scheme.onboard(resume, &self.host.services)
    }

    fn done(&self) -> (BTreeMap<String, Secret>, Option<i64>) {
        match self.onboard("app-secret", |c| c).unwrap() {
            OnboardStep::Done { injected, expires_at, .. } => (injected, expires_at),
            other => panic!("{other:?}"),
        }
    }

    fn refresh(&self, injected: &BTreeMap<String, Secret>) -> RefreshOutcome {
        let request = RefreshRequest {
            required: self.required("app-secret"),
            injected: injected.clone(),
            parameters: self.parameters(),
            ..Default::default()
        };
        self.host.scheme("oauth2", None).refresh(request, &self.host.services).unwrap()
    }
}

#[test]
fn onboarding_then_three_one_use_refreshes_and_a_replay_is_refused() {
    let setup = Setup::new();
    let (injected, expires_at) = setup.done();
    assert!(injected["oauth_access_token"].expose().starts_with("ey"), "a JWT access token");
    assert!(!injected["oauth_refresh_token"].expose().is_empty());
    assert!(expires_at.unwrap() > authplug_store::now_secs() + 200, "300 s tokens");

    let mut current = injected;
    let mut used = vec![current["oauth_refresh_token"].expose().to_owned()];
    for round in 1..=3 {
        let RefreshOutcome::Renewed { injected, .. } = setup.refresh(&current) else {
            panic!("refresh {round}");
        };
        let next = injected["oauth_refresh_token"].expose().to_owned();
        assert!(!used.contains(&next), "rotated in round {round}");
        used.push(next);
        current = injected;
    }
    // A replayed refresh token: HTTP 400 with an empty body, which is a refusal, and the whole
    // chain is gone (the engine must never cause this).
    let mut stale = current.clone();
    stale.insert("oauth_refresh_token".into(), Secret::new(used[1].clone()));
    match setup.refresh(&stale) {
        RefreshOutcome::Reauthorize { reason } => assert!(reason.contains("HTTP 400"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(setup.refresh(&current), RefreshOutcome::Reauthorize { .. }), "chain gone");
    let live = setup.host.block_on(setup.server.active(used[3].as_str()));
    assert!(!live, "glewlwyd disabled the newest refresh token too");
}

#[test]
fn a_wrong_client_secret_and_a_tampered_pkce_verifier_are_clear_errors() {
    let setup = Setup::new();
    let error = setup.onboard("not-the-secret", |c| c).unwrap_err();
    assert_eq!(error.code, ErrorCode::Provider);
    assert!(
        error.message.starts_with("the token endpoint refused the code: unauthorized_client"),
        "{error}"
    );
    assert!(!error.to_string().contains("not-the-secret"));

    let tamper = |continuation: String| {
        let mut value: serde_json::Value = serde_json::from_str(&continuation).unwrap();
        value["verifier"] = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".into(); // RFC 7636's
        value.to_string()
    };
    let error = setup.onboard("app-secret", tamper).unwrap_err();
    assert_eq!(error.code, ErrorCode::Provider);
    assert!(error.message.contains("invalid_code"), "{error}");
}

#[test]
fn a_hundred_callers_across_an_expiry_cause_one_refresh() {
    let setup = Setup::new();
    let (injected, _) = setup.done();
    let (_dir, store) = temp_store();
    let first_refresh = injected["oauth_refresh_token"].expose().to_owned();
    let system = NewSystem {
        id: "crm".into(),
        scheme: "oauth2".into(),
        parameters: setup.parameters(),
        required: setup.required("app-secret"),
        injected: injected.clone(),
        expires_at: Some(authplug_store::now_secs() + 300),
    };
    let created = store.create(system, "test").unwrap();
    // Due now: the secrets lapse as the callers arrive.
    let due = Injected::new(injected, Some(authplug_store::now_secs()));
    let change = Change { injected: Some(due), ..Change::default() };
    store.update("crm", created.summary.version, change, "test").unwrap();
    let config = EngineConfig::default();
    let engine = setup.host.engine(store, config, Duration::from_secs(10), Events::default());
    let tokens = setup.host.block_on(async {
        let calls: Vec<_> = (0..100)
            .map(|_| {
                let engine = engine.clone();
                tokio::spawn(async move { engine.token("crm").await })
            })
            .collect();
        let mut tokens = std::collections::BTreeSet::new();
        for call in calls {
            let token = call.await.unwrap().unwrap();
            tokens.insert(token.injected["oauth_access_token"].expose().to_owned());
        }
        tokens
    });
    assert_eq!(tokens.len(), 1, "every caller got the one renewed token");
    let stored = engine.store().get("crm").unwrap().unwrap();
    assert_eq!(stored.summary.state, State::Active);
    assert_ne!(stored.injected["oauth_refresh_token"].expose(), first_refresh, "rotated once");
    let attempts = engine.store().attempts("crm", 10).unwrap();
    let outcomes: Vec<_> = attempts.iter().filter_map(|a| a.outcome).collect();
    assert_eq!(outcomes, [Outcome::Renewed], "one refresh");
    // Had a refresh token been sent twice, glewlwyd would have disabled the chain.
    assert!(setup.host.block_on(engine.refresh("crm")).is_ok(), "the chain is alive");
}
