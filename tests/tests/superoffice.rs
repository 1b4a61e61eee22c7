//! The SuperOffice scheme through its plugin file, against the faithful fake environment of
//! `authplug-testkit`: consent, id_token verification, the signed system-user token, the ticket
//! JWT, the tenant lookup, renewal, and the ways each step fails.

use std::collections::BTreeMap;

use authplug_host::{CallError, LoadedScheme};
use authplug_protocol::{
    ApplyRequest, ErrorCode, OnboardRequest, OnboardStep, RefreshOutcome, RefreshRequest, Resume,
    Secret,
};
use authplug_testkit::superoffice::{keys, Mode, SuperOffice};
use tests::host::{no_secret_in, parameters, secrets, PluginHost};

const CLIENT_ID: &str = "so-client-8d2f";
const APP_TOKEN: &str = "so-app-token-3c1e9b0a-secret";
const TENANT: &str = "Cust12345";
const REDIRECT: &str = "http://127.0.0.1:9/authplug/callback";

struct Session {
    host: PluginHost,
    fake: SuperOffice,
}

impl Session {
    fn new() -> Self {
        Self {
            host: PluginHost::load(&["superoffice"]),
            fake: SuperOffice::start(CLIENT_ID, APP_TOKEN, TENANT),
        }
    }

    fn scheme(&self) -> &LoadedScheme {
        self.host.scheme("oauth2", Some("superoffice-ticket"))
    }

    fn parameters(&self, account_id: &str) -> BTreeMap<String, serde_json::Value> {
        let mut parameters = parameters(self.fake.oauth2_block());
        parameters.insert("account_id".into(), account_id.into());
        parameters
    }

    fn required(&self, client_secret: &str, partner_key: &str) -> BTreeMap<String, Secret> {
        secrets(&[
            ("client_id", CLIENT_ID),
            ("client_secret", client_secret),
            ("partner_private_key", partner_key),
        ])
    }

    /// The whole onboarding: redirect, the user's consent, the callback.
    fn onboard_with(
        &self,
        client_secret: &str,
        partner_key: &str,
        account_id: &str,
    ) -> Result<OnboardStep, CallError> {
        self.onboard_then(client_secret, partner_key, account_id, |_| {})
    }

    /// Onboarding with something happening between the consent and the callback.
    fn onboard_then(
        &self,
        client_secret: &str,
        partner_key: &str,
        account_id: &str,
        between: impl FnOnce(&SuperOffice),
    ) -> Result<OnboardStep, CallError> {
        let mut request = OnboardRequest {
            scheme: "superoffice".into(),
            required: self.required(client_secret, partner_key),
            parameters: self.parameters(account_id),
            redirect_uri: Some(REDIRECT.into()),
            resume: None,
        };
        let step = self.scheme().onboard(request.clone(), &self.host.services)?;
        let OnboardStep::Redirect { url, continuation, .. } = step else {
            panic!("a redirect first")
        };
        assert!(
            url.contains("scope=openid+api") && url.contains("code_challenge_method=S256"),
            "{url}"
        );
        let callback = self.fake.consent(&url);
        between(&self.fake);
        request.resume = Some(Resume { continuation, callback });
        self.scheme().onboard(request, &self.host.services)
    }

    fn onboard(&self) -> Result<OnboardStep, CallError> {
        self.onboard_with(APP_TOKEN, &keys().partner_pem(), TENANT)
    }

    fn refresh(&self, injected: &BTreeMap<String, Secret>) -> RefreshOutcome {
        let request = RefreshRequest {
            scheme: "superoffice".into(),
            required: self.required(APP_TOKEN, &keys().partner_pem()),
            injected: injected.clone(),
            parameters: self.parameters(TENANT),
        };
        self.scheme().refresh(request, &self.host.services).unwrap()
    }

    /// `GET {base_url}/{tenant}/api/v1/User/currentPrincipal` with the headers `apply` gives
    /// (the connector's url_pattern); the status.
    fn call_api(&self, base_url: &str, injected: &BTreeMap<String, Secret>) -> u16 {
        let apply = ApplyRequest {
            scheme: "superoffice".into(),
            injected: injected.clone(),
            ..Default::default()
        };
        let headers = self.scheme().apply(apply, &self.host.services).unwrap().headers;
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let mut request = reqwest::Client::new()
                .get(format!("{base_url}/{TENANT}/api/v1/User/currentPrincipal"));
            for (name, value) in &headers {
                request = request.header(name, value.expose());
            }
            request.send().await.unwrap().status().as_u16()
        })
    }
}

fn done(step: OnboardStep) -> (BTreeMap<String, Secret>, i64, BTreeMap<String, serde_json::Value>) {
    match step {
        OnboardStep::Done { injected, expires_at, outputs } => {
            (injected, expires_at.unwrap(), outputs)
        }
        other => panic!("not done: {other:?}"),
    }
}

#[test]
fn onboarding_yields_a_verified_ticket_the_tenant_and_its_api() {
    let session = Session::new();
    let (injected, expires_at, outputs) = done(session.onboard().unwrap());

    let names: Vec<&str> = injected.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "SO-Apptoken",
            "oauth_access_token",
            "oauth_client_id",
            "oauth_client_secret",
            "oauth_refresh_token",
            "so_ticket"
        ]
    );
    assert!(injected["so_ticket"].expose().starts_with("7T:Cust12345.ticket-"));
    assert_eq!(injected["SO-Apptoken"].expose(), APP_TOKEN);
    assert_eq!(injected["oauth_client_secret"].expose(), APP_TOKEN, "the templates read it there");
    assert_eq!(injected["oauth_client_id"].expose(), CLIENT_ID);
    assert!(injected["oauth_access_token"].expose().starts_with("8A:Cust12345."));
    assert_eq!(session.fake.authentications(), 1);

    // The 6-hour window, renewed 30 minutes early.
    let lifetime = expires_at - authplug_store::now_secs();
    assert!((6 * 3600 - 5..=6 * 3600).contains(&lifetime), "{lifetime}");
    assert_eq!(session.scheme().descriptor().refresh.margin_secs, Some(1800));

    assert_eq!(outputs["account_id"], TENANT);
    let base_url = outputs["base_url"].as_str().unwrap();
    assert_eq!(base_url, session.fake.url(), "the host, as the connector's url_pattern wants it");
    assert_eq!(session.call_api(base_url, &injected), 200, "SOTicket and SO-AppToken are accepted");
}

#[test]
fn the_partner_key_may_be_pkcs8_pkcs1_or_dotnet_xml() {
    let session = Session::new();
    for key in [keys().partner_pkcs1_pem(), keys().partner_dotnet_xml()] {
        let (injected, _, _) = done(session.onboard_with(APP_TOKEN, &key, TENANT).unwrap());
        assert!(injected["so_ticket"].expose().starts_with("7T:"));
    }
    assert_eq!(session.fake.authentications(), 2);
}

#[test]
fn a_ticket_signed_by_another_key_is_refused() {
    let session = Session::new();
    session.fake.set_mode(Mode::TicketSignedByWrongKey);
    let error = session.onboard().unwrap_err();
    assert_eq!(error.code, ErrorCode::Provider);
    assert_eq!(error.message, "the system-user ticket is not signed by the environment's key");
    no_secret_in(&error, &[APP_TOKEN, &session.fake.system_token(), "7T:"]);
}

#[test]
fn failures_name_their_cause_and_never_a_secret() {
    let session = Session::new();
    let system_token = session.fake.system_token();
    let leaks = [APP_TOKEN, "wrong-app-token-55", system_token.as_str(), "PRIVATE KEY"];

    // An application token SuperOffice does not know fails at the token endpoint.
    let error =
        session.onboard_with("wrong-app-token-55", &keys().partner_pem(), TENANT).unwrap_err();
    assert_eq!(error.code, ErrorCode::Provider);
    assert!(
        error.message.starts_with("the token endpoint refused the code: invalid_client"),
        "{error}"
    );
    no_secret_in(&error, &leaks);

    // A partner key SuperOffice does not have: the signature fails at Authenticate.
    let error = session.onboard_with(APP_TOKEN, &keys().unknown_partner_pem(), TENANT).unwrap_err();
    assert_eq!(
        error.message,
        "SuperOffice refused the system-user login for Cust12345: Signature verification failed"
    );
    no_secret_in(&error, &leaks);

    // Consent in one tenant for a connector configured for another.
    let error = session.onboard_with(APP_TOKEN, &keys().partner_pem(), "Cust99999").unwrap_err();
    assert_eq!(
        error.message,
        "consent was given for tenant Cust12345 but the connector is configured for Cust99999"
    );

    // An operator key that is not a key at all.
    let error = session
        .onboard_with(
            APP_TOKEN,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
            TENANT,
        )
        .unwrap_err();
    assert_eq!(error.code, ErrorCode::InvalidInput);
    assert_eq!(
        error.message,
        "the secret `partner_private_key` is not a readable PKCS#8 PEM RSA key"
    );

    // A token answer without the id_token the ticket needs: refused, naming the cause.
    let no_id_token = |fake: &SuperOffice| fake.set_mode(Mode::NoIdToken);
    let error =
        session.onboard_then(APP_TOKEN, &keys().partner_pem(), TENANT, no_id_token).unwrap_err();
    assert_eq!(error.code, ErrorCode::Provider);
    assert!(error.message.contains("carries no id_token"), "{error}");
    no_secret_in(&error, &leaks);
    session.fake.set_mode(Mode::Normal);

    // The environment goes down after the user consented.
    let down = |fake: &SuperOffice| fake.set_mode(Mode::Unavailable);
    let error = session.onboard_then(APP_TOKEN, &keys().partner_pem(), TENANT, down).unwrap_err();
    assert_eq!(error.code, ErrorCode::Http);
    no_secret_in(&error, &leaks);
}

#[test]
fn refresh_renews_the_ticket_after_it_lapsed_and_classifies_failures() {
    let session = Session::new();
    let (injected, _, outputs) = done(session.onboard().unwrap());
    let base_url = outputs["base_url"].as_str().unwrap().to_owned();

    // The 6-hour window passed unused: the API answers 401 and a renewal mends it.
    session.fake.set_mode(Mode::TicketsLapsed);
    assert_eq!(session.call_api(&base_url, &injected), 401);
    session.fake.set_mode(Mode::Normal);
    let RefreshOutcome::Renewed { injected: renewed, expires_at } = session.refresh(&injected)
    else {
        panic!("renewed")
    };
    // Compared without printing: a failed assertion must not put tokens in the test output.
    assert!(renewed["so_ticket"].expose() != injected["so_ticket"].expose(), "a new ticket");
    assert!(
        renewed["oauth_refresh_token"].expose() == injected["oauth_refresh_token"].expose(),
        "SuperOffice does not rotate it"
    );
    assert!(
        renewed["oauth_access_token"].expose() != injected["oauth_access_token"].expose(),
        "a new access token"
    );
    assert!(expires_at.unwrap() > authplug_store::now_secs() + 5 * 3600);
    assert_eq!(session.call_api(&base_url, &renewed), 200);
    assert_eq!(session.fake.authentications(), 2);

    // A revoked grant needs a human; a bad ticket signature too; a 503 is transient.
    session.fake.set_mode(Mode::GrantRevoked);
    assert!(
        matches!(session.refresh(&renewed), RefreshOutcome::Reauthorize { reason } if reason.starts_with("invalid_grant"))
    );
    session.fake.set_mode(Mode::TicketSignedByWrongKey);
    assert!(
        matches!(session.refresh(&renewed), RefreshOutcome::Reauthorize { reason } if reason.contains("not signed by the environment's key"))
    );
    session.fake.set_mode(Mode::Unavailable);
    assert!(matches!(session.refresh(&renewed), RefreshOutcome::Transient { .. }));
}

/// The engine with a SuperOffice system: two clocks (the OAuth2 tokens and the ticket's 6-hour
/// window) folded into one `expires_at`, renewed when it closes in, and a revoked grant reported.
#[test]
fn the_engine_renews_the_ticket_before_its_window_closes() {
    let session = Session::new();
    let (injected, expires_at, outputs) = done(session.onboard().unwrap());
    assert!(expires_at <= authplug_store::now_secs() + 6 * 3600, "the ticket's window bounds it");
    let base_url = outputs["base_url"].as_str().unwrap().to_owned();
    let (_dir, store) = tests::host::temp_store();
    let mut parameters = session.parameters(TENANT);
    parameters.extend(outputs);
    store
        .create(
            authplug_store::NewSystem {
                id: "so".into(),
                scheme: "superoffice".into(),
                parameters,
                required: session.required(APP_TOKEN, &keys().partner_pem()),
                injected: injected.clone(),
                // Onboarded 5.6 hours ago: the window closes within the 30-minute margin.
                expires_at: Some(authplug_store::now_secs() + 1200),
            },
            "test",
        )
        .unwrap();
    let engine = session.host.engine(
        store,
        authplug_engine::EngineConfig::default(),
        std::time::Duration::from_secs(10),
        authplug_engine::Events::default(),
    );
    // Not due yet by the cap (a lifetime of 20 minutes from "now" gives a 10-minute margin)...
    let token = session.host.block_on(engine.token("so")).unwrap();
    assert!(!token.refreshed);
    // ...but an operator's refresh, or the closing window, renews the ticket.
    let token = session.host.block_on(engine.refresh("so")).unwrap();
    assert!(token.injected["so_ticket"].expose() != injected["so_ticket"].expose(), "a new ticket");
    assert!(token.expires_at.unwrap() > authplug_store::now_secs() + 5 * 3600);
    assert_eq!(session.call_api(&base_url, &token.injected), 200);
    assert_eq!(session.fake.authentications(), 2);

    session.fake.set_mode(Mode::GrantRevoked);
    let error = session.host.block_on(engine.refresh("so")).unwrap_err();
    assert!(
        matches!(&error, authplug_engine::EngineError::NeedsReauth { reason, .. } if reason.starts_with("invalid_grant")),
        "{error}"
    );
    no_secret_in(&error, &[APP_TOKEN, token.injected["so_ticket"].expose()]);
}
