//! `authplug docs` regenerates the spec page's sections from the loaded descriptors.

use tests::rst::sections;
use tests::{authplug, plugin_dir, shared_dir, stdout};

#[test]
fn generated_sections_match_the_spec_page() {
    let spec = std::fs::read_to_string(shared_dir().join("spec/authentication-schemes.rst"))
        .expect("the spec page beside the checkout");
    let spec = sections(&spec);
    let output = authplug(&plugin_dir(), &["docs"]);
    assert!(output.status.success());
    let generated = sections(&stdout(&output));
    let titles = |s: &std::collections::BTreeMap<String, _>| s.keys().cloned().collect::<Vec<_>>();
    assert_eq!(titles(&generated), titles(&spec), "every scheme of the spec page, no other");
    for (title, section) in &generated {
        let expected =
            spec.get(title).unwrap_or_else(|| panic!("no section {title:?} in the spec"));
        assert_eq!(section, expected, "section {title:?}");
        assert!(!section.required.is_empty() && !section.injected.is_empty());
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
