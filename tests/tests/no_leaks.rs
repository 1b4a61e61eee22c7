//! No secret value appears in any log line, error message or `Debug` output.
//!
//! A child process (this test binary again, with a role) runs the schemes' real flows against the
//! fakes, successes and failures alike, with every log line at TRACE level on, and prints every
//! result and error both with `Display` and `Debug`. The parent captures all of it and looks for
//! every secret value involved, and for the shapes secret values take.

use std::collections::BTreeMap;
use std::process::Command;

use authplug_protocol::{ApplyRequest, OnboardRequest, OnboardStep, RefreshRequest, Resume};
use authplug_testkit::superoffice::{self, keys, SuperOffice};
use authplug_testkit::{tripletex, webcrm};
use tests::host::{parameters, secrets, PluginHost};

const ROLE: &str = "AUTHPLUG_NO_LEAKS_CHILD";
const SO_APP_TOKEN: &str = "so-app-token-5b7d-secret";
const CONSUMER: &str = "consumer-token-81c2-secret";
const EMPLOYEE: &str = "employee-token-44e9-secret";
const WEBCRM_TOKEN: &str = "webcrm-application-token-a3f0-secret";

/// The child: runs the flows and prints everything a careless program might.
#[test]
fn child_process() {
    if std::env::var(ROLE).is_err() {
        return;
    }
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(std::io::stderr)
        .init();
    let host = PluginHost::load(&["superoffice", "tripletex", "jwt_scheme"]);
    let show = |what: &str, result: &dyn std::fmt::Debug| println!("{what}: {result:?}");

    // SuperOffice: onboarding, renewal, apply, and the failures.
    let fake = SuperOffice::start("so-client", SO_APP_TOKEN, "Cust12345");
    let scheme = host.scheme("oauth2", Some("superoffice-ticket"));
    let onboard = |app_token: &str, partner: &str, mode: superoffice::Mode| {
        fake.set_mode(superoffice::Mode::Normal);
        let mut request = OnboardRequest {
            scheme: "superoffice".into(),
            required: secrets(&[
                ("client_id", "so-client"),
                ("client_secret", app_token),
                ("partner_private_key", partner),
            ]),
            parameters: parameters(fake.oauth2_block()),
            redirect_uri: Some("http://127.0.0.1:9/callback".into()),
            resume: None,
        };
        let first = scheme.onboard(request.clone(), &host.services).unwrap();
        show("superoffice redirect", &first);
        let OnboardStep::Redirect { url, continuation, .. } = first else { panic!() };
        let callback = fake.consent(&url);
        fake.set_mode(mode);
        request.resume = Some(Resume { continuation, callback });
        let result = scheme.onboard(request, &host.services);
        if let Err(error) = &result {
            println!("superoffice error: {error}");
        }
        show("superoffice onboarding", &result);
        result
    };
    let pem = keys().partner_pem();
    let done = onboard(SO_APP_TOKEN, &pem, superoffice::Mode::Normal).unwrap();
    let OnboardStep::Done { injected, .. } = &done else { panic!() };
    let refresh = RefreshRequest {
        scheme: "superoffice".into(),
        required: secrets(&[
            ("client_id", "so-client"),
            ("client_secret", SO_APP_TOKEN),
            ("partner_private_key", &pem),
        ]),
        injected: injected.clone(),
        parameters: parameters(fake.oauth2_block()),
    };
    for mode in
        [superoffice::Mode::Normal, superoffice::Mode::GrantRevoked, superoffice::Mode::Unavailable]
    {
        fake.set_mode(mode);
        show("superoffice refresh", &scheme.refresh(refresh.clone(), &host.services));
    }
    let apply = ApplyRequest {
        scheme: "superoffice".into(),
        injected: injected.clone(),
        ..Default::default()
    };
    show("superoffice apply", &scheme.apply(apply, &host.services));
    let _ = onboard("wrong-app-token-secret", &pem, superoffice::Mode::Normal);
    let _ = onboard(SO_APP_TOKEN, &keys().unknown_partner_pem(), superoffice::Mode::Normal);
    let _ = onboard(SO_APP_TOKEN, &pem, superoffice::Mode::TicketSignedByWrongKey);
    let _ = onboard(SO_APP_TOKEN, &pem, superoffice::Mode::Unavailable);

    // Tripletex: right and wrong tokens, refresh.
    let tripletex = tripletex::Tripletex::start(CONSUMER, EMPLOYEE);
    let scheme = host.scheme("api_key", Some("tripletex"));
    for employee in [EMPLOYEE, "employee-token-wrong-secret"] {
        let request = OnboardRequest {
            required: secrets(&[("consumer_token", CONSUMER), ("employee_token", employee)]),
            parameters: parameters(
                serde_json::json!({"environment": "test", "base_url": tripletex.base_url()}),
            ),
            ..Default::default()
        };
        let result = scheme.onboard(request.clone(), &host.services);
        if let Err(error) = &result {
            println!("tripletex error: {error}");
        }
        show("tripletex onboarding", &result);
        let refresh = RefreshRequest {
            required: request.required.clone(),
            injected: request.required.clone(),
            parameters: request.parameters.clone(),
            ..Default::default()
        };
        show("tripletex refresh", &scheme.refresh(refresh, &host.services));
    }

    // webCRM: right and wrong application token.
    let webcrm = webcrm::WebCrm::start(WEBCRM_TOKEN);
    let scheme = host.scheme("api_key", Some("jwt"));
    for token in [WEBCRM_TOKEN, "webcrm-wrong-token-secret"] {
        let request = OnboardRequest {
            required: secrets(&[("api_key", token)]),
            parameters: parameters(serde_json::json!({"login_url": webcrm.login_url()})),
            ..Default::default()
        };
        let result = scheme.onboard(request, &host.services);
        if let Err(error) = &result {
            println!("webcrm error: {error}");
        }
        show("webcrm onboarding", &result);
    }
    // The secrets the parent must look for, which only the child saw (the fakes made them).
    let OnboardStep::Done { injected, .. } = done else { panic!() };
    let values: BTreeMap<&str, &str> =
        injected.iter().map(|(k, v)| (k.as_str(), v.expose())).collect();
    eprintln!("SECRETS-FOR-THE-PARENT {}", serde_json::to_string(&values).unwrap());
}

#[test]
fn no_secret_appears_in_logs_errors_or_debug_output() {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["child_process", "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the child failed:\n{stdout}\n{stderr}");
    let (stderr, issued) = stderr.split_once("SECRETS-FOR-THE-PARENT ").expect("the child's list");
    let issued: BTreeMap<String, String> =
        serde_json::from_str(issued.lines().next().unwrap()).unwrap();
    let all = format!("{stdout}\n{stderr}");

    // The run did what it should: logs at debug level, results and failures printed.
    assert!(all.contains("http") && all.contains("DEBUG"), "no log lines captured:\n{all}");
    for expected in [
        "provider: the system-user ticket is not signed",
        "provider: Tripletex refused",
        "webcrm error:",
        "Renewed",
        "Reauthorize",
        "Transient",
    ] {
        assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
    }

    let pem = keys().partner_pem();
    let pem_body: Vec<&str> = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let mut secrets: Vec<&str> = vec![
        SO_APP_TOKEN,
        CONSUMER,
        EMPLOYEE,
        WEBCRM_TOKEN,
        "wrong-app-token-secret",
        "employee-token-wrong-secret",
        "webcrm-wrong-token-secret",
    ];
    secrets.extend(pem_body.iter().copied());
    secrets.extend(issued.values().map(String::as_str).filter(|v| *v != "so-client"));
    assert!(issued.len() == 6, "{:?}", issued.keys());
    for secret in secrets {
        assert!(!all.contains(secret), "a secret value leaked: {secret}\n{all}");
    }
    // The shapes of issued values: tickets, access tokens, refresh tokens, JWTs, PKCE verifiers.
    for shape in
        ["7T:", "8A:", "so-refresh-", "webcrm-refresh-", "eyJ", "code_verifier", "SystemUserToken"]
    {
        assert!(!all.contains(shape), "something shaped like a secret ({shape}) leaked:\n{all}");
    }
}
