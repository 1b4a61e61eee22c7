//! Tripletex and webCRM (JWT) schemes through their plugin files, against the faithful fakes of
//! `authplug-testkit`: happy path, wrong token, expired session or token, and 5xx.

use std::collections::BTreeMap;

use authplug_host::{CallError, LoadedScheme, OperatorSecrets};
use authplug_protocol::{
    ApplyRequest, ErrorCode, OnboardRequest, OnboardStep, RefreshOutcome, RefreshRequest, Secret,
};
use authplug_testkit::{tripletex, webcrm};
use tests::host::{no_secret_in, parameters, secrets, PluginHost};

const CONSUMER: &str = "consumer-6f1d2c3b-secret";
const EMPLOYEE: &str = "employee-9a8b7c6d-secret";
const APP_TOKEN: &str = "0a1b2c3d-webcrm-application-token";

fn host() -> PluginHost {
    PluginHost::load(&["tripletex", "jwt_scheme"])
}

fn scheme<'a>(host: &'a PluginHost, auth_variant: &str) -> &'a LoadedScheme {
    host.scheme("api_key", Some(auth_variant))
}

// --- Tripletex -------------------------------------------------------------------------------

/// The engine keeps a Tripletex system's session clock: when the session nears its expiry date a
/// new one is created; when the tokens stop working the system needs re-authorisation.
#[test]
fn the_engine_renews_a_tripletex_session_before_its_date() {
    let host = host();
    let fake = tripletex::Tripletex::start(CONSUMER, EMPLOYEE);
    let OnboardStep::Done { injected, .. } = tripletex_onboard(&host, &fake, EMPLOYEE).unwrap()
    else {
        panic!("one step");
    };
    let (_dir, store) = tests::host::temp_store();
    store
        .create(
            authplug_store::NewSystem {
                id: "tt".into(),
                scheme: "tripletex".into(),
                parameters: parameters(
                    serde_json::json!({"environment": "test", "base_url": fake.base_url()}),
                ),
                required: secrets(&[("consumer_token", CONSUMER), ("employee_token", EMPLOYEE)]),
                injected,
                // The session's date has come.
                expires_at: Some(authplug_store::now_secs()),
            },
            "test",
        )
        .unwrap();
    let engine = host.engine(
        store,
        authplug_engine::EngineConfig::default(),
        std::time::Duration::from_secs(10),
        authplug_engine::Events::default(),
    );
    let refreshed = host.block_on(engine.sweep(2)).unwrap();
    assert_eq!(refreshed.len(), 1);
    let token = refreshed[0].1.as_ref().unwrap();
    let days = (token.expires_at.unwrap() - authplug_store::now_secs()) as f64 / 86_400.0;
    assert!((7.0..=8.0).contains(&days), "a new 7-day session: {days}");
    assert_eq!(fake.sessions_created(), 2);
    // Nothing is due now: a second sweep does nothing.
    assert!(host.block_on(engine.sweep(2)).unwrap().is_empty());
    assert_eq!(fake.sessions_created(), 2);
}

fn tripletex_onboard(
    host: &PluginHost,
    fake: &tripletex::Tripletex,
    employee: &str,
) -> Result<OnboardStep, CallError> {
    let request = OnboardRequest {
        required: secrets(&[("consumer_token", CONSUMER), ("employee_token", employee)]),
        parameters: parameters(
            serde_json::json!({"environment": "test", "base_url": fake.base_url()}),
        ),
        ..Default::default()
    };
    scheme(host, "tripletex").onboard(request, &host.services)
}

#[test]
fn tripletex_onboarding_proves_the_tokens_with_a_session() {
    let host = host();
    let fake = tripletex::Tripletex::start(CONSUMER, EMPLOYEE);
    let OnboardStep::Done { injected, expires_at, .. } =
        tripletex_onboard(&host, &fake, EMPLOYEE).unwrap()
    else {
        panic!("one step");
    };
    assert_eq!(injected["consumer_token"].expose(), CONSUMER);
    assert_eq!(injected["employee_token"].expose(), EMPLOYEE);
    assert_eq!(fake.sessions_created(), 1);
    let days = (expires_at.unwrap() - authplug_store::now_secs()) as f64 / 86_400.0;
    assert!((7.0..=8.0).contains(&days), "a 7-day session ends at midnight after its date: {days}");

    // Apply: HTTP Basic with company 0 and a session token the API accepts.
    let apply = ApplyRequest {
        injected: injected.clone(),
        parameters: parameters(
            serde_json::json!({"environment": "test", "base_url": fake.base_url()}),
        ),
        ..Default::default()
    };
    let headers = scheme(&host, "tripletex").apply(apply, &host.services).unwrap().headers;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let status = runtime.block_on(async {
        reqwest::Client::new()
            .get(format!("{}/v2/token/session/>whoAmI", fake.base_url()))
            .header("Authorization", headers[0].1.expose())
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status, 200);
}

#[test]
fn tripletex_wrong_tokens_are_a_clear_error_without_the_tokens() {
    let host = host();
    let fake = tripletex::Tripletex::start(CONSUMER, EMPLOYEE);
    let error = tripletex_onboard(&host, &fake, "employee-of-another-account").unwrap_err();
    assert_eq!(error.code, ErrorCode::Provider);
    assert!(
        error.message.starts_with(
            "Tripletex refused the credentials (HTTP 403); tokens of the test environment"
        ),
        "{error}"
    );
    no_secret_in(&error, &[CONSUMER, "employee-of-another-account"]);
}

#[test]
fn tripletex_users_in_production_give_only_the_employee_token() {
    let host = host();
    let fake = tripletex::Tripletex::start(CONSUMER, EMPLOYEE);
    let operator = OperatorSecrets::new([("tripletex", "consumer_token", Secret::new(CONSUMER))]);
    let services = host.services.clone().with_operator_secrets(operator);
    let request = OnboardRequest {
        required: secrets(&[("employee_token", EMPLOYEE)]),
        parameters: parameters(serde_json::json!({"base_url": fake.base_url()})),
        ..Default::default()
    };
    let step = scheme(&host, "tripletex").onboard(request.clone(), &services).unwrap();
    let OnboardStep::Done { injected, .. } = step else { panic!("done") };
    assert_eq!(injected["consumer_token"].expose(), CONSUMER);
    assert_eq!(fake.sessions_created(), 1);
    // Without the operator's value the same request names what is missing.
    let error = scheme(&host, "tripletex").onboard(request, &host.services).unwrap_err();
    assert_eq!(error.message, "required secret `consumer_token` is missing");
}

#[test]
fn tripletex_refresh_renews_sessions_and_classifies_failures() {
    let host = host();
    let fake = tripletex::Tripletex::start(CONSUMER, EMPLOYEE);
    let request = |employee: &str| RefreshRequest {
        required: secrets(&[("consumer_token", CONSUMER), ("employee_token", employee)]),
        injected: secrets(&[("consumer_token", CONSUMER), ("employee_token", employee)]),
        parameters: parameters(serde_json::json!({"base_url": fake.base_url()})),
        ..Default::default()
    };
    // An expired session is simply replaced by a new one.
    fake.expire_sessions();
    assert!(matches!(
        scheme(&host, "tripletex").refresh(request(EMPLOYEE), &host.services).unwrap(),
        RefreshOutcome::Renewed { .. }
    ));
    assert_eq!(fake.sessions_created(), 1);
    // A revoked employee token needs a human; a 503 is transient.
    match scheme(&host, "tripletex")
        .refresh(request("revoked-employee-token"), &host.services)
        .unwrap()
    {
        RefreshOutcome::Reauthorize { reason } => assert!(
            reason.contains("HTTP 403") && !reason.contains("revoked-employee-token"),
            "{reason}"
        ),
        other => panic!("{other:?}"),
    }
    fake.set_mode(tripletex::Mode::Unavailable);
    match scheme(&host, "tripletex").refresh(request(EMPLOYEE), &host.services).unwrap() {
        RefreshOutcome::Transient { reason, .. } => {
            assert_eq!(reason, "Tripletex answered HTTP 503")
        }
        other => panic!("{other:?}"),
    }
}

// --- webCRM (JWT) ----------------------------------------------------------------------------

fn webcrm_parameters(fake: &webcrm::WebCrm) -> BTreeMap<String, serde_json::Value> {
    // As webCRM's manifest has it: no jwt_header_key (the scheme defaults it to authCode).
    parameters(serde_json::json!({"login_url": fake.login_url()}))
}

#[test]
fn jwt_login_yields_tokens_with_the_expiry_of_the_jwt() {
    let host = host();
    for mode in [webcrm::Mode::Normal, webcrm::Mode::StandardNames] {
        let fake = webcrm::WebCrm::start(APP_TOKEN);
        fake.set_mode(mode.clone());
        let request = OnboardRequest {
            required: secrets(&[("api_key", APP_TOKEN)]),
            parameters: webcrm_parameters(&fake),
            ..Default::default()
        };
        let OnboardStep::Done { injected, expires_at, .. } =
            scheme(&host, "jwt").onboard(request, &host.services).unwrap()
        else {
            panic!("one step");
        };
        assert!(injected["jwt_access_token"].expose().starts_with("eyJ"), "{mode:?}");
        assert_eq!(injected["jwt_refresh_token"].expose(), "webcrm-refresh-1");
        let lifetime = expires_at.unwrap() - authplug_store::now_secs();
        assert!((3590..=3600).contains(&lifetime), "exp read from the JWT: {lifetime}");
        let apply = ApplyRequest { injected: injected.clone(), ..Default::default() };
        let header = &scheme(&host, "jwt").apply(apply, &host.services).unwrap().headers[0];
        assert_eq!(header.1.expose(), format!("Bearer {}", injected["jwt_access_token"].expose()));
    }
}

#[test]
fn jwt_wrong_application_token_is_a_clear_error_without_it() {
    let host = host();
    let fake = webcrm::WebCrm::start(APP_TOKEN);
    let request = OnboardRequest {
        required: secrets(&[("api_key", "wrong-application-token")]),
        parameters: webcrm_parameters(&fake),
        ..Default::default()
    };
    let error = scheme(&host, "jwt").onboard(request, &host.services).unwrap_err();
    assert_eq!(error.code, ErrorCode::Provider);
    assert_eq!(
        error.message,
        "the application token was refused: HTTP 401 (invalid_client: Invalid authentication code)"
    );
    no_secret_in(&error, &["wrong-application-token", APP_TOKEN]);
}

#[test]
fn jwt_refresh_logs_in_again_and_classifies_failures() {
    let host = host();
    let fake = webcrm::WebCrm::start(APP_TOKEN);
    let request = |key: &str| RefreshRequest {
        required: secrets(&[("api_key", key)]),
        // An expired access token from an earlier login.
        injected: secrets(&[
            ("jwt_access_token", &webcrm::jwt(authplug_store::now_secs() - 60, 0)),
            ("jwt_refresh_token", "webcrm-refresh-0"),
        ]),
        parameters: webcrm_parameters(&fake),
        ..Default::default()
    };
    match scheme(&host, "jwt").refresh(request(APP_TOKEN), &host.services).unwrap() {
        RefreshOutcome::Renewed { injected, expires_at } => {
            assert_eq!(injected["jwt_refresh_token"].expose(), "webcrm-refresh-1");
            assert!(expires_at.unwrap() > authplug_store::now_secs());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.logins(), 1, "no refresh_url: a fresh login");
    assert!(matches!(
        scheme(&host, "jwt").refresh(request("revoked-token"), &host.services).unwrap(),
        RefreshOutcome::Reauthorize { .. }
    ));
    fake.set_mode(webcrm::Mode::Unavailable);
    match scheme(&host, "jwt").refresh(request(APP_TOKEN), &host.services).unwrap() {
        RefreshOutcome::Transient { reason, .. } => {
            assert_eq!(reason, "the login endpoint answered HTTP 503")
        }
        other => panic!("{other:?}"),
    }
}
