//! `authplug docs` regenerates the spec page's sections from the loaded descriptors.

use tests::rst::sections;
use tests::{authplug, plugin_dir, shared_dir, stdout};

/// The sections of schemes the spec page does not have (yet): `plugins/client-credentials` and
/// `plugins/poweroffice`.
const BEYOND_THE_SPEC: &[&str] = &[
    "OAuth2 client credentials",
    "OAuth2 client credentials with a private key",
    "Service account",
    "PowerOffice Go authentication",
];

#[test]
fn generated_sections_match_the_spec_page() {
    let spec = std::fs::read_to_string(shared_dir().join("spec/authentication-schemes.rst"))
        .expect("the spec page beside the checkout");
    let spec = sections(&spec);
    let output = authplug(&plugin_dir(), &["docs"]);
    assert!(output.status.success());
    let generated = sections(&stdout(&output));
    let titles = |s: &std::collections::BTreeMap<String, _>| s.keys().cloned().collect::<Vec<_>>();
    // The spec page's schemes, and the ones authplug adds beyond it (issue 18), no other.
    let mut expected = titles(&spec);
    expected.extend(BEYOND_THE_SPEC.iter().map(|t| t.to_string()));
    expected.sort();
    assert_eq!(titles(&generated), expected, "every scheme of the spec page and ours, no other");
    for (title, section) in &generated {
        assert!(!section.required.is_empty() && !section.injected.is_empty(), "{title}");
        if BEYOND_THE_SPEC.contains(&title.as_str()) {
            continue;
        }
        let expected =
            spec.get(title).unwrap_or_else(|| panic!("no section {title:?} in the spec"));
        assert_eq!(section, expected, "section {title:?}");
    }
}

#[test]
fn docs_writes_a_file_and_refuses_unknown_schemes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("schemes.rst");
    let output = authplug(&plugin_dir(), &["docs", "--output", out.to_str().unwrap(), "api_key"]);
    assert!(output.status.success());
    let page = std::fs::read_to_string(&out).unwrap();
    assert!(page.starts_with("Authentication schemes\n======================\n"));
    assert!(page.contains("* Example of connectors using API key: PowerofficeGo, WooCommerce, Wix"));

    let output = authplug(&plugin_dir(), &["docs", "nope"]);
    assert_eq!(output.status.code(), Some(4));
}

#[test]
fn schemes_shows_the_client_credentials_schemes_loaded_from_their_plugin_file() {
    let output = authplug(&plugin_dir(), &["schemes", "--json"]);
    assert!(output.status.success());
    let listing: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    let file = tests::library_file("client_credentials");
    for (id, served) in [
        ("oauth2_client_credentials", "client_credentials"),
        ("oauth2_private_key_jwt", "private_key_jwt"),
        ("service_account", "service_account"),
    ] {
        let scheme = listing["schemes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .unwrap_or_else(|| panic!("{id} is not listed: {listing}"));
        assert_eq!(scheme["source"]["kind"], "plugin", "{id}");
        assert!(scheme["source"]["file"].as_str().unwrap().ends_with(&file), "{scheme}");
        assert_eq!(scheme["plugin"]["name"], "client-credentials");
        assert_eq!(scheme["descriptor"]["serves"][0]["auth_variant"], served);
        assert_eq!(scheme["descriptor"]["refresh"]["renews"], true, "{id} fetches again");
    }
}
