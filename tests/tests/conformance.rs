//! `authplug schemes test`: every built-in plugin file keeps every rule of the conformance kit
//! (against its recorded exchanges, or SuperOffice's fake on loopback), and a fixture that
//! breaks one rule per scheme fails naming each, one line apiece, with exit code 9.

use std::path::{Path, PathBuf};
use std::process::Output;

use authplug_testkit::superoffice::{keys, SuperOffice};
use serde_json::json;
use tests::{authplug_bin, fixture, plugin, stdout};

fn schemes_test(file: &Path, exercise: Option<&Path>, more: &[&str]) -> Output {
    let mut command = std::process::Command::new(authplug_bin());
    command.args(["schemes", "test"]).arg(file).args(more);
    if let Some(exercise) = exercise {
        command.arg("--exercise").arg(exercise);
    }
    command.output().unwrap()
}

fn repository(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join(path)
}

fn assert_conforms(output: &Output, what: &str) {
    let lines = stdout(output);
    assert!(output.status.success(), "{what}:\n{lines}{}", tests::stderr(output));
    assert!(!lines.contains("FAIL"), "{what}:\n{lines}");
    assert!(lines.lines().filter(|l| l.starts_with("ok ")).count() >= 7, "{what}:\n{lines}");
}

#[test]
fn every_built_in_plugin_keeps_every_rule() {
    let output = schemes_test(&plugin("api_key"), None, &[]);
    assert_conforms(&output, "api_key");
    for (library, folder) in [
        ("oauth2_scheme", "oauth2-scheme"),
        ("jwt_scheme", "jwt-scheme"),
        ("tripletex", "tripletex"),
        ("client_credentials", "client-credentials"),
        ("poweroffice", "poweroffice"),
    ] {
        let exercise = repository(&format!("plugins/{folder}/conformance.json"));
        let output = schemes_test(&plugin(library), Some(&exercise), &[]);
        assert_conforms(&output, library);
        let lines = stdout(&output);
        for rule in ["onboard", "refresh.429", "refresh.503", "refresh.truncated", "apply"] {
            assert!(lines.contains(&format!(" {rule}\n")), "{library} ran {rule}:\n{lines}");
        }
        // The schemes that declare a verification have it answered by their exercise.
        if ["tripletex", "poweroffice"].contains(&library) {
            assert!(lines.contains(&format!("ok   {library} verify\n")), "{lines}");
        }
    }
}

#[test]
fn superoffice_keeps_every_rule_against_its_fake() {
    let fake = SuperOffice::start("kit-client", "kit-app-token", "Cust12345");
    let mut parameters = fake.oauth2_block();
    parameters["account_id"] = "Cust12345".into();
    let exercise = json!({"schemes": {"superoffice": {
        "parameters": parameters,
        "secrets": {"client_id": "kit-client", "client_secret": "kit-app-token",
                    "partner_private_key": keys().partner_pem()},
        "forward": true,
        "follow_consent": true,
    }}});
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("exercise.json");
    std::fs::write(&file, exercise.to_string()).unwrap();
    let output = schemes_test(&plugin("superoffice"), Some(&file), &["--allow-loopback-http"]);
    assert_conforms(&output, "superoffice");
    assert!(stdout(&output).contains("ok   superoffice refresh.503"), "{}", stdout(&output));
    // Its verification, the tenant's current principal, is sent to the fake with the ticket.
    assert!(stdout(&output).contains("ok   superoffice verify"), "{}", stdout(&output));
}

#[test]
fn a_plugin_breaking_a_rule_per_scheme_fails_naming_each() {
    let exercise = repository("tests/fixtures/nonconforming-plugin/exercise.json");
    let output = schemes_test(&fixture("nonconforming_plugin"), Some(&exercise), &[]);
    assert_eq!(output.status.code(), Some(9), "{}", tests::stderr(&output));
    let lines = stdout(&output);
    for (scheme, rule, says) in [
        ("undeclared", "onboard", "injected `session` was never declared"),
        ("leaky", "secrets", "holds the value of `key`"),
        ("flaky", "refresh.503", "HTTP 503 classified as reauthorize, not transient"),
        ("panicky_apply", "no-panic", "`apply` panicked"),
        ("bad_header", "apply", "header name \"X Api Key\" is not an HTTP token"),
        ("unverified", "verify", "GET https://provider.example/me answered HTTP 401"),
    ] {
        let line = lines
            .lines()
            .find(|l| l.starts_with(&format!("FAIL {scheme} {rule}: ")))
            .unwrap_or_else(|| panic!("no FAIL line for {scheme} {rule}:\n{lines}"));
        assert!(line.contains(says) && line.contains("(fix: "), "{line}");
        assert!(!line.contains("kit-sentinel-"), "the report shows no secret: {line}");
    }
    // Each scheme keeps the rules it does not break.
    assert!(lines.contains("ok   undeclared secrets") && lines.contains("ok   leaky onboard\n"));
    assert!(lines.contains("ok   flaky refresh.401") && lines.contains("ok   bad_header no-panic"));
    assert!(lines.contains("ok   unverified apply") && lines.contains("skip flaky verify"));
    let json = std::process::Command::new(authplug_bin())
        .args(["--json", "schemes", "test"])
        .arg(fixture("nonconforming_plugin"))
        .arg("--exercise")
        .arg(&exercise)
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["passed"], false);
    let failed = report["findings"].as_array().unwrap().iter().filter(|f| f["verdict"] == "fail");
    assert_eq!(failed.count(), lines.lines().filter(|l| l.starts_with("FAIL")).count());
}

#[test]
fn a_file_the_host_would_refuse_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("libbogus.so");
    std::fs::write(&bogus, b"not a library").unwrap();
    let output = schemes_test(&bogus, None, &[]);
    assert_eq!(output.status.code(), Some(3));
    let said = tests::stderr(&output);
    assert!(said.contains("libbogus.so: not a shared library"), "{said}");
    let exercise = dir.path().join("typo.json");
    std::fs::write(&exercise, r#"{"schemes": {"api_key": {"parameter": {}}}}"#).unwrap();
    let output = schemes_test(&plugin("api_key"), Some(&exercise), &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(tests::stderr(&output).contains("unknown field `parameter`"));
}
