//! Verifying a stored credential (`authplug verify`, `connect`'s last step and `POST
//! /v1/systems/{id}/verify`) against oidc-provider: its `/api/me` is the API a connector calls
//! (200 for a live access token of the server), its userinfo `/me` refuses the resource server's
//! tokens (401), and any other path is a 404. Each outcome, each exit code, and nothing stored
//! changed by any of them.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use tests::desk::Desk;
use tests::oidc::OidcProvider;

const SYSTEM: &str = "crm";

/// A client-credentials connector for oidc-provider's `app` client, whose system template's
/// `url_pattern` is `{{@ api_url @}}/api/%s`, declaring `verify` (none when `Null`).
fn connector(dir: &Path, issuer: &str, verify: Value) -> PathBuf {
    std::fs::create_dir_all(dir.join("templates")).unwrap();
    let mut manifest = json!({
        "auth": "oauth2", "auth_variant": "client_credentials",
        "oauth2": {"token_url": format!("{issuer}/token"), "scopes": ["crm.read"]},
        "additional_parameters": {"api_url": {}},
        "system-template": "templates/system.json",
    });
    if !verify.is_null() {
        manifest["verify"] = verify;
    }
    std::fs::write(dir.join("manifest.json"), manifest.to_string()).unwrap();
    let system = json!({"_id": "{{@ system @}}", "type": "system:rest",
        "url_pattern": "{{@ api_url @}}/api/%s",
        "headers": {"Authorization": "Bearer $SECRET(oauth_access_token)"}});
    std::fs::write(dir.join("templates/system.json"), system.to_string()).unwrap();
    dir.to_owned()
}

fn connect(desk: &Desk, folder: &Path, id: &str, issuer: &str) -> std::process::Output {
    desk.authplug()
        .arg("connect")
        .arg(folder)
        .args(["--system", id, "--no-prompt", "--json"])
        .args(["--secret", "client_id=app", "--secret", "client_secret=app-secret"])
        .args(["--param", &format!("api_url={issuer}")])
        .output()
        .unwrap()
}

/// `authplug verify ID --json`: the exit code and the report.
fn verify(desk: &Desk, id: &str) -> (Option<i32>, Value, String) {
    let output = desk.authplug().args(["verify", id, "--json"]).output().unwrap();
    let report = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    (output.status.code(), report, tests::stderr(&output))
}

fn state(desk: &Desk, id: &str) -> (String, i64) {
    let record = desk.store().get(id).unwrap().expect("the system is stored");
    (record.summary.state.as_str().to_owned(), record.summary.version)
}

#[test]
fn connect_verifies_and_verify_reports_each_outcome_without_changing_the_system() {
    let provider = OidcProvider::start();
    let issuer = provider.issuer.clone();
    let desk = Desk::new();
    let folder = desk.dir.path().join("crm");

    // A relative URL, joined on the rendered url_pattern: connect's fifth step verifies.
    connector(&folder, &issuer, json!({"url": "me"}));
    let output = connect(&desk, &folder, SYSTEM, &issuer);
    let stderr = tests::stderr(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(!stderr.contains("app-secret"), "{stderr}");
    let progress: Vec<&str> = stderr.lines().filter(|l| l.starts_with('[')).collect();
    assert!(
        progress.last().unwrap().starts_with("[5/5] crm: verified: the connector's GET"),
        "{stderr}"
    );
    let answer: Value = serde_json::from_slice(&output.stdout).unwrap();
    let verification = &answer["verification"];
    assert_eq!(verification["outcome"], "verified", "{answer}");
    assert_eq!(verification["declared_by"], "connector");
    assert_eq!(verification["url"], format!("{issuer}/api/me"));
    assert_eq!(verification["status"], 200);
    let before = state(&desk, SYSTEM);

    let (code, report, _) = verify(&desk, SYSTEM);
    assert_eq!((code, &report["outcome"]), (Some(0), &json!("verified")), "{report}");

    // Each outcome, from what the real server answers; the system stays as it was.
    let cases = [
        (json!({"url": "{api_url}/me"}), 7, "refused", Some(401_u64)),
        (json!({"url": "nope", "method": "HEAD"}), 12, "failed", Some(404)),
    ];
    for (declared, exit, outcome, status) in cases {
        connector(&folder, &issuer, declared.clone());
        let (code, report, stderr) = verify(&desk, SYSTEM);
        assert_eq!(code, Some(exit), "{declared}: {stderr}");
        assert_eq!(report["outcome"], outcome, "{declared}: {report}");
        assert_eq!(report["status"].as_u64(), status, "{report}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert_eq!(state(&desk, SYSTEM), before, "{declared}: verifying changes nothing stored");
    }

    // A placeholder the system has no value for: bad input, named; `check` warns of it first
    // (a scheme's onboarding may give it).
    connector(&folder, &issuer, json!({"url": "{region_url}/me"}));
    let (code, _, stderr) = verify(&desk, SYSTEM);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("connector crm: verify.url: the system has no parameter region_url"),
        "{stderr}"
    );
    let check = desk.authplug().arg("check").arg(&folder).output().unwrap();
    assert_eq!(check.status.code(), Some(0));
    let findings = String::from_utf8_lossy(&check.stdout);
    assert!(findings.contains("warning: verify.url: {region_url} is no parameter"), "{findings}");

    // The credentials go only where the connector's requests go, and only with a safe method:
    // refused before anything is sent, by `verify` and by `check`.
    for (declared, said) in [
        (json!({"url": "https://elsewhere.example/me"}), "is not at the url_pattern's http"),
        (json!({"url": "{api_url}@elsewhere.example/me"}), "is not at the url_pattern's http"),
        (json!({"url": "me", "method": "DELETE"}), "verify.method \"DELETE\" is not one"),
    ] {
        connector(&folder, &issuer, declared.clone());
        let (code, _, stderr) = verify(&desk, SYSTEM);
        assert_eq!(code, Some(2), "{declared}: {stderr}");
        assert!(stderr.contains(said), "{declared}: {stderr}");
        assert_eq!(state(&desk, SYSTEM), before);
    }
    let check = desk.authplug().arg("check").arg(&folder).output().unwrap();
    assert_eq!(check.status.code(), Some(2), "an unsafe method is an error");

    // Neither the connector nor the scheme declares one: said, and a success.
    connector(&folder, &issuer, Value::Null);
    let (code, report, _) = verify(&desk, SYSTEM);
    assert_eq!((code, &report["outcome"]), (Some(0), &json!("undeclared")), "{report}");

    // Every verification is in the audit trail, with its outcome.
    let audit = desk.authplug().args(["systems", "audit", SYSTEM, "--json"]).output().unwrap();
    let trail = String::from_utf8_lossy(&audit.stdout);
    let outcomes = ["verified", "refused", "failed", "undeclared"];
    for outcome in outcomes {
        let said = format!("\"outcome\": \"{outcome}\"");
        assert!(trail.contains(&said), "{outcome}: {trail}");
    }

    // Connecting with a refused verification stores the system and says so, with exit 7.
    connector(&folder, &issuer, json!({"url": "{api_url}/me"}));
    let output = connect(&desk, &folder, "crm-2", &issuer);
    assert_eq!(output.status.code(), Some(7));
    let stderr = tests::stderr(&output);
    assert!(stderr.contains("system crm-2 is stored, but its verification failed"), "{stderr}");
    assert_eq!(state(&desk, "crm-2").0, "active");

    // One that cannot be sent at all: stored, said, the JSON printed all the same, exit 12.
    connector(&folder, &issuer, json!({"url": "{region_url}/me"}));
    let output = connect(&desk, &folder, "crm-3", &issuer);
    assert_eq!(output.status.code(), Some(12));
    let stderr = tests::stderr(&output);
    assert!(stderr.contains("[5/5] crm-3: cannot verify: system crm-3: connector"), "{stderr}");
    assert!(stderr.contains("system crm-3 is stored, but it could not be verified"), "{stderr}");
    let answer: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(answer["verification"]["error"].as_str().unwrap().contains("region_url"), "{answer}");
    assert_eq!(state(&desk, "crm-3").0, "active");

    // The provider gone: no answer, exit 12, the system as it was (its token is not due).
    connector(&folder, &issuer, json!({"url": "me"}));
    provider.stop();
    let text = desk.authplug().args(["verify", SYSTEM]).output().unwrap();
    assert_eq!(text.status.code(), Some(12), "{}", tests::stderr(&text));
    let line = tests::stderr(&text);
    let unreachable = format!("not verified (unreachable): the connector's GET {issuer}/api/me");
    assert!(line.contains(&unreachable), "{line}");
    assert_eq!(state(&desk, SYSTEM), before);
}

#[test]
fn serve_verifies_on_demand_for_callers_who_may_see_the_system() {
    let provider = OidcProvider::start();
    let issuer = provider.issuer.clone();
    let desk = Desk::new();
    let folder = connector(&desk.dir.path().join("crm"), &issuer, json!({"url": "me"}));
    let output = connect(&desk, &folder, SYSTEM, &issuer);
    assert!(output.status.success(), "{}", tests::stderr(&output));

    let (tokens, admin) = desk.admin_token();
    let other = desk.api_token(&tokens, "worker", "secrets:other");
    let mut command = desk.authplug();
    // No reuse of authorize answers: the state this test changes in the store is seen at once.
    command.args(["serve", "--authorize-cache-ms", "0"]);
    let (mut server, url, _log) = tests::serve(&mut command, &tokens);
    let (status, answer) = tests::call(&url, "POST", "/v1/systems/crm/verify", &admin);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["outcome"], "verified", "{answer}");
    assert_eq!(answer["url"], format!("{issuer}/api/me"));
    assert!(answer["elapsed_ms"].is_u64());
    let (status, answer) = tests::call(&url, "POST", "/v1/systems/nobody/verify", &admin);
    assert_eq!((status, &answer["error"]), (404, &json!("not_found")), "{answer}");
    let (status, _) = tests::call(&url, "POST", "/v1/systems/crm/verify", "ap_not-a-token");
    assert_eq!(status, 401);
    let (status, answer) = tests::call(&url, "POST", "/v1/systems/crm/verify", &other);
    assert_eq!(status, 403, "a token for another system: {answer}");

    // A refusal is the verification's answer (200), not the call's.
    connector(&folder, &issuer, json!({"url": "{api_url}/me"}));
    let (status, answer) = tests::call(&url, "POST", "/v1/systems/crm/verify", &admin);
    assert_eq!((status, &answer["outcome"]), (200, &json!("refused")), "{answer}");
    connector(&folder, &issuer, json!({"url": "{region_url}/me"}));
    let (status, answer) = tests::call(&url, "POST", "/v1/systems/crm/verify", &admin);
    assert_eq!((status, &answer["error"]), (422, &json!("cannot_verify")), "{answer}");
    // A connector folder gone: 422, naming no path of the server's.
    let moved = desk.dir.path().join("crm-moved");
    std::fs::rename(&folder, &moved).unwrap();
    let (status, answer) = tests::call(&url, "POST", "/v1/systems/crm/verify", &admin);
    assert_eq!((status, &answer["error"]), (422, &json!("cannot_verify")), "{answer}");
    let folder_name = desk.dir.path().to_string_lossy().into_owned();
    assert!(!answer.to_string().contains(&folder_name), "no server path: {answer}");
    std::fs::rename(&moved, &folder).unwrap();

    // A system that needs re-authorisation has no credential to verify: 409, and it stays so.
    connector(&folder, &issuer, json!({"url": "me"}));
    let store = desk.store();
    let version = store.version(SYSTEM).unwrap().unwrap();
    let lost = authplug_store::Change {
        state: Some(authplug_store::Lifecycle::NeedsReauth("invalid_grant".into())),
        ..Default::default()
    };
    store.update(SYSTEM, version, lost, "test").unwrap();
    let (status, answer) = tests::call(&url, "POST", "/v1/systems/crm/verify", &admin);
    assert_eq!((status, &answer["error"]), (409, &json!("needs_reauth")), "{answer}");
    assert_eq!(state(&desk, SYSTEM), ("needs_reauth".to_owned(), version + 1));
    assert!(tests::terminate(&mut server).success());
}
