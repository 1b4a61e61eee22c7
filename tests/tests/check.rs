//! `authplug check` over the seven real connectors as they are, and over broken copies of them:
//! a connector developer's CI step.

use std::path::PathBuf;

use serde_json::Value;
use tests::desk::{copy_connector, real_connector};
use tests::{authplug, plugin_dir, shared_dir, stderr, stdout};

fn connector(name: &str) -> PathBuf {
    real_connector(name)
}

/// A copy of a real connector, with its manifest changed by `edit`.
fn broken_copy(name: &str, edit: impl FnOnce(&mut Value)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_connector(name, dir.path(), edit);
    dir
}

fn check(args: &[&str]) -> (Option<i32>, String, String) {
    let output = authplug(&plugin_dir(), &[&["check"], args].concat());
    (output.status.code(), stdout(&output), stderr(&output))
}

#[test]
fn the_seven_real_connectors_are_judged_as_the_spec_says() {
    let dirs: Vec<String> =
        ["hubspot", "powerofficego", "superoffice", "tripletex", "webcrm", "wix", "woocommerce"]
            .iter()
            .map(|name| connector(name).display().to_string())
            .collect();
    let args: Vec<&str> = dirs.iter().map(String::as_str).chain(["--json"]).collect();
    let (code, out, err) = check(&args);
    assert_eq!(code, Some(2), "PowerOffice Go fails the check: {err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    let mut seen = Vec::new();
    for connector in report["connectors"].as_array().unwrap() {
        let name = connector["connector"].as_str().unwrap();
        for finding in connector["findings"].as_array().unwrap() {
            let file = finding["file"].as_str().unwrap();
            let (line, column) =
                (finding["line"].as_u64().unwrap(), finding["column"].as_u64().unwrap());
            let message = finding["message"].as_str().unwrap();
            // Every finding is one the connector really has: its place holds what it names.
            let text =
                std::fs::read_to_string(shared_dir().join("connectors").join(name).join(file))
                    .unwrap();
            let at: String = text
                .lines()
                .nth(line as usize - 1)
                .unwrap()
                .chars()
                .skip(column as usize - 1)
                .collect();
            let subject = match finding["code"].as_str().unwrap() {
                "unknown-secret" => message.split(':').next().unwrap().to_owned(),
                // A missing field is placed at its enclosing block.
                _ => {
                    format!("\"{}\"", message.split('`').nth(1).unwrap().split('.').next().unwrap())
                }
            };
            assert!(
                at.starts_with(&subject),
                "{name}/{file}:{line}:{column} holds {at:?}, not {subject}"
            );
            seen.push(format!(
                "{name} {} {file}:{line}: {subject}",
                finding["severity"].as_str().unwrap()
            ));
        }
    }
    assert_eq!(
        seen,
        [
            "powerofficego error templates/system.json:5: $SECRET(subscription_key)",
            "powerofficego error templates/system.json:8: $SECRET(application_key)",
            "powerofficego error templates/system.json:12: $SECRET(subscription_key)",
            "powerofficego error templates/system.json:108: $SECRET(application_key)",
            "superoffice warning manifest.json:108: \"oauth2\"",
            "webcrm warning manifest.json:5: \"jwt\"",
        ]
    );
    assert_eq!((report["errors"].as_u64(), report["warnings"].as_u64()), (Some(4), Some(2)));
    let warnings: Vec<&str> = report["connectors"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["findings"].as_array().unwrap())
        .filter(|f| f["severity"] == "warning")
        .map(|f| f["message"].as_str().unwrap())
        .collect();
    assert!(
        warnings[0].contains("`oauth2.jwks_uri`")
            && warnings[0].contains("/login/.well-known/jwks")
    );
    assert!(warnings[1].contains("`jwt.jwt_header_key`") && warnings[1].contains("authCode"));
}

#[test]
fn findings_read_like_a_compilers_and_the_exit_code_tells_ci() {
    let dir = connector("powerofficego");
    let (code, out, err) = check(&[dir.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    let first = out.lines().next().unwrap();
    assert_eq!(
        first,
        format!(
            "{}/templates/system.json:5:37: error: $SECRET(subscription_key): no such secret: scheme api_key injects only api_key; if the user supplies it, declare `subscription_key` in manifest.json's extra_secrets",
            dir.display()
        )
    );
    assert!(out.ends_with("1 connector checked: 4 errors, 0 warnings\n"), "{out}");
    assert_eq!(err, "error: the check found errors\n");

    // The remedy the message names works.
    let fixed = broken_copy("powerofficego", |m| {
        m["extra_secrets"] = serde_json::json!({
            "application_key": {"description": "PowerOffice Go application key"},
            "subscription_key": {"description": "PowerOffice Go subscription key"},
        });
    });
    let (code, out, _) = check(&[fixed.path().to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.ends_with(": ok (api_key)\n"), "{out}");

    // Warnings pass unless denied.
    let webcrm = connector("webcrm");
    assert_eq!(check(&[webcrm.to_str().unwrap()]).0, Some(0));
    assert_eq!(check(&[webcrm.to_str().unwrap(), "--deny-warnings"]).0, Some(2));
}

#[test]
fn bad_connectors_are_named_with_the_problem_and_exit_code_2() {
    // Malformed JSON: the file, line and column.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("manifest.json"),
        "{\n  \"auth\": \"oauth2\",\n  \"datatypes\": {,}\n}",
    )
    .unwrap();
    let (code, out, _) = check(&[dir.path().to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(
        out.starts_with(&format!(
            "{}/manifest.json:3:17: error: key must be a string",
            dir.path().display()
        )),
        "{out}"
    );

    // A template that reads secrets, and no `auth` to supply them.
    let no_auth = broken_copy("wix", |m| {
        m.as_object_mut().unwrap().remove("auth");
    });
    let (code, out, _) = check(&[no_auth.path().to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(out.contains("templates/system.json:4:23: error: $SECRET(api_key): no such secret: manifest.json names no `auth` scheme to supply it"), "{out}");

    // An auth_variant no loaded scheme serves: the loaded ones are named.
    let unknown = broken_copy("tripletex", |m| m["auth_variant"] = "tripletex-v3".into());
    let (code, out, _) = check(&[unknown.path().to_str().unwrap()]);
    assert_eq!(code, Some(2));
    let line = out.lines().next().unwrap();
    assert!(line.contains("manifest.json:7:3: error: no loaded scheme serves auth `api_key` with auth_variant `tripletex-v3`; loaded schemes: api_key (api_key), jwt (api_key/jwt), oauth2 (oauth2), oauth2_client_credentials (oauth2/client_credentials), oauth2_private_key_jwt (oauth2/private_key_jwt), poweroffice (api_key/poweroffice), service_account (api_key/service_account), superoffice (oauth2/superoffice-ticket), tripletex (api_key/tripletex)"), "{line}");
    assert_eq!(
        out.lines().filter(|l| l.contains(": error: ")).count(),
        1,
        "one finding, not one per secret"
    );

    // A manifest field the scheme cannot do without.
    let no_token_url = broken_copy("hubspot", |m| {
        m["oauth2"].as_object_mut().unwrap().remove("token_url");
    });
    let (code, out, _) = check(&[no_token_url.path().to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(out.contains("error: `oauth2.token_url` is missing: scheme oauth2 needs it (The provider's token endpoint)"), "{out}");

    // An undeclared variable, and a template that is not there.
    let undeclared = broken_copy("woocommerce", |m| {
        m["additional_parameters"].as_object_mut().unwrap().remove("domain");
        m["datatypes"]["orders"] = serde_json::json!({"template": "templates/orders.json"});
    });
    let (code, out, _) = check(&[undeclared.path().to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(
        out.contains("templates/system.json:")
            && out.contains("error: {{@ domain @}}: no such variable"),
        "{out}"
    );
    assert!(out.contains("error: template templates/orders.json cannot be read"), "{out}");

    // No folder at all.
    let (code, out, _) = check(&["/nonexistent/connector"]);
    assert_eq!(code, Some(2));
    assert!(out.contains("/nonexistent/connector/manifest.json:1:1: error: not found"), "{out}");
}
