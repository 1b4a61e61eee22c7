//! Loading plugin files at startup, as a user sees it through `authplug schemes`: good plugins
//! load from their files, bad files are refused with one clear line each, and the good ones still
//! load beside them.

use std::path::Path;

use serde_json::Value;
use tests::{authplug, fixture, plugin, plugin_dir, plugin_folder, stderr, stdout};

fn schemes_json(dir: &Path) -> (Value, String) {
    let output = authplug(dir, &["schemes", "--json"]);
    assert!(output.status.success(), "authplug failed: {}", stderr(&output));
    (serde_json::from_str(&stdout(&output)).expect("valid JSON"), stderr(&output))
}

fn ids(listing: &Value) -> Vec<&str> {
    listing["schemes"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect()
}

/// The warning lines on stderr that mention `file`.
fn lines_naming<'a>(stderr: &'a str, file: &Path) -> Vec<&'a str> {
    let name = file.display().to_string();
    stderr.lines().filter(|l| l.contains(&name)).collect()
}

#[test]
fn api_key_is_listed_from_its_shared_library_with_version_and_protocol() {
    let (listing, warnings) = schemes_json(&plugin_dir());
    assert_eq!(warnings, "", "no warnings expected");
    let api_key = listing["schemes"].as_array().unwrap().iter().find(|s| s["id"] == "api_key");
    let api_key = api_key.expect("api_key is loaded");
    assert_eq!(api_key["source"]["kind"], "plugin");
    assert_eq!(api_key["source"]["file"], plugin("api_key").display().to_string());
    assert_eq!(api_key["plugin"]["name"], "api-key");
    assert_eq!(api_key["plugin"]["version"], "0.1.0");
    assert_eq!(api_key["protocol"], authplug_protocol::PROTOCOL_VERSION);

    // The table a person reads carries the same facts.
    let table = stdout(&authplug(&plugin_dir(), &["schemes"]));
    let row = table.lines().find(|l| l.starts_with("api_key ")).expect("an api_key row");
    for fact in ["API key", "api-key", "0.1.0", authplug_protocol::PROTOCOL_VERSION] {
        assert!(row.contains(fact), "{fact} missing from {row}");
    }
    assert!(row.contains(&plugin("api_key").display().to_string()));
}

#[test]
fn bad_files_are_refused_one_line_each_and_good_plugins_still_load() {
    let empty = tempfile::NamedTempFile::new().unwrap();
    let text = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(text.path(), "this is not a shared library\n").unwrap();
    let dir = plugin_folder(&[
        (&plugin("api_key"), "libapi_key.so"),
        (&fixture("misbehaving_plugin"), "libmisbehaving_plugin.so"),
        (empty.path(), "empty.so"),
        (text.path(), "notes.so"),
        (&fixture("not_a_plugin"), "libnot_a_plugin.so"),
        (&fixture("future_major_plugin"), "libfuture_major_plugin.so"),
    ]);
    let (listing, warnings) = schemes_json(dir.path());
    assert_eq!(ids(&listing), ["api_key", "fetcher", "liar", "panicky", "steady"]);

    let expectations = [
        ("empty.so", "empty file"),
        ("notes.so", "not a shared library"),
        ("libnot_a_plugin.so", "not an authplug plugin"),
        ("libfuture_major_plugin.so", "incompatible protocol: plugin speaks 2.0.0"),
    ];
    for (file, reason) in expectations {
        let lines = lines_naming(&warnings, &dir.path().join(file));
        assert_eq!(lines.len(), 1, "exactly one line for {file}:\n{warnings}");
        let line = lines[0];
        assert!(line.contains(reason), "{file}: expected {reason:?} in {line:?}");
        assert!(line.chars().count() <= 300 + "warning: ".len(), "too long: {line}");
        assert!(line.starts_with("warning: plugin refused: "), "{line}");
    }
    let refused = listing["refused"].as_array().unwrap();
    assert_eq!(refused.len(), expectations.len(), "{refused:?}");
    assert_eq!(warnings.lines().count(), expectations.len(), "{warnings}");
}

#[test]
fn two_plugins_claiming_one_scheme_id_are_both_named_and_neither_loads() {
    let dir = plugin_folder(&[
        (&plugin("api_key"), "libapi_key.so"),
        (&plugin("api_key"), "libapi_key_copy.so"),
        (&fixture("misbehaving_plugin"), "libmisbehaving_plugin.so"),
    ]);
    let (listing, warnings) = schemes_json(dir.path());
    assert_eq!(
        ids(&listing),
        ["fetcher", "liar", "panicky", "steady"],
        "the good plugin still loads"
    );
    let lines: Vec<&str> = warnings.lines().collect();
    assert_eq!(lines.len(), 1, "{warnings}");
    let first = dir.path().join("libapi_key.so").display().to_string();
    let second = dir.path().join("libapi_key_copy.so").display().to_string();
    assert!(lines[0].contains(&first) && lines[0].contains(&second), "{}", lines[0]);
    assert!(lines[0].contains("scheme id `api_key`"), "{}", lines[0]);
}

#[test]
fn strict_mode_turns_a_refusal_into_exit_code_3() {
    let empty = tempfile::NamedTempFile::new().unwrap();
    let dir = plugin_folder(&[(&plugin("api_key"), "libapi_key.so"), (empty.path(), "empty.so")]);
    let output = authplug(dir.path(), &["--strict-plugins", "schemes"]);
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(stderr(&output).contains("--strict-plugins"));
    // The same from the environment, as a service manager would set it.
    let output = std::process::Command::new(tests::authplug_bin())
        .args(["schemes"])
        .env("AUTHPLUG_PLUGIN_DIR", dir.path())
        .env("AUTHPLUG_STRICT_PLUGINS", "1")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
}

#[test]
fn an_unknown_scheme_names_the_loaded_ones_with_exit_code_4() {
    let dir = plugin_folder(&[
        (&plugin("api_key"), "libapi_key.so"),
        (&plugin("oauth2_scheme"), "liboauth2_scheme.so"),
    ]);
    let output = authplug(dir.path(), &["schemes", "show", "oauth3"]);
    assert_eq!(output.status.code(), Some(4));
    assert_eq!(
        stderr(&output).trim(),
        "error: unknown scheme `oauth3`; loaded schemes: api_key, oauth2"
    );
}

#[test]
fn schemes_show_tells_what_a_scheme_requires_and_injects() {
    let output = authplug(&plugin_dir(), &["schemes", "show", "api_key"]);
    assert!(output.status.success());
    let text = stdout(&output);
    assert!(text.starts_with("api_key (API key)\n"), "{text}");
    assert!(text.contains("The key used to authenticate the client."));
    assert!(text.contains("The api key as provided in the connector configuration."));
    assert!(text.contains(&plugin("api_key").display().to_string()));
    assert!(text.contains("  renews:    no (the injected secrets do not expire)"), "{text}");
    assert!(text.contains("  verifies:  nothing declared"), "{text}");

    // Where each value comes from, who supplies it, and how it is kept valid.
    let text = stdout(&authplug(&plugin_dir(), &["schemes", "show", "superoffice"]));
    for line in [
        "[secret, from the operator's configuration]",
        "SO-Apptoken            String      The client secret as provided in the connector configuration. [copied from client_secret]",
        "[obtained during onboarding, renewed, for existing templates]",
        "  renews:    yes, 1800 s before expiry",
        "  verifies:  GET {base_url}/{account_id}/api/v1/User/currentPrincipal",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
}

#[test]
fn a_scheme_built_outside_the_workspace_is_loaded_by_the_unchanged_host() {
    let dir = plugin_folder(&[
        (&plugin("api_key"), "libapi_key.so"),
        (&fixture("out_of_tree_scheme"), "libout_of_tree_scheme.so"),
    ]);
    let (listing, warnings) = schemes_json(dir.path());
    assert_eq!(warnings, "");
    let scheme = listing["schemes"].as_array().unwrap().iter().find(|s| s["id"] == "static_bearer");
    let scheme = scheme.expect("the out-of-tree scheme is loaded");
    assert_eq!(scheme["plugin"]["name"], "out-of-tree-scheme");
    assert_eq!(scheme["plugin"]["version"], "0.3.0");
    assert_eq!(scheme["descriptor"]["serves"][0]["auth_variant"], "static_bearer");
}

#[test]
fn the_readme_command_lists_api_key_from_the_build() {
    // `cargo xtask run -- schemes` as a new user types it; the build is already up to date.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let output = std::process::Command::new(env!("CARGO"))
        .args(["xtask", "run", "--", "schemes", "--json"])
        .current_dir(root)
        .env_remove("AUTHPLUG_PLUGIN_DIR")
        .output()
        .expect("cargo runs");
    assert!(output.status.success(), "{}", stderr(&output));
    let listing: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let api_key = listing["schemes"].as_array().unwrap().iter().find(|s| s["id"] == "api_key");
    let file = api_key.expect("api_key listed")["source"]["file"].as_str().unwrap().to_owned();
    assert!(file.ends_with("libapi_key.so"), "{file}");
}
