//! Schemes linked statically (the rlib of a scheme crate) register through inventory and run
//! in-process, with the same contract checks and panic containment as loaded plugins.

use std::collections::BTreeMap;

use authplug_host::{HostServices, LoadOptions, Origin, Registry};
use authplug_protocol::{ErrorCode, OnboardRequest, Secret};

// Link the scheme crates so that their registrations are part of this binary.
use api_key as _;
use misbehaving_plugin as _;

fn request(token_name: &str) -> OnboardRequest {
    OnboardRequest {
        scheme: String::new(),
        required: BTreeMap::from([(token_name.to_owned(), Secret::new("static-secret-value"))]),
        ..Default::default()
    }
}

#[test]
fn linked_schemes_are_registered_and_called_in_process() {
    let registry =
        Registry::load(&LoadOptions { dirs: vec![], include_static: true, ..Default::default() });
    let ids: Vec<&str> = registry.schemes().map(|s| s.id()).collect();
    assert_eq!(ids, ["api_key", "fetcher", "liar", "panicky", "steady"]);
    let api_key = registry.get("api_key").unwrap();
    assert!(matches!(api_key.origin(), Origin::Static { crate_name: "api-key", .. }));
    assert!(api_key.onboard(request("api_key"), &HostServices::offline()).is_ok());

    let error = registry
        .get("panicky")
        .unwrap()
        .onboard(request("token"), &HostServices::offline())
        .unwrap_err();
    assert_eq!(error.code, ErrorCode::PluginPanic);
    assert!(!error.message.contains("static-secret-value"), "{error}");

    let error = registry
        .get("liar")
        .unwrap()
        .onboard(request("token"), &HostServices::offline())
        .unwrap_err();
    assert_eq!(error.code, ErrorCode::ContractViolation);
}

#[test]
fn a_static_scheme_and_a_plugin_with_the_same_id_conflict() {
    let dir = tests::plugin_folder(&[(&tests::plugin("api_key"), "libapi_key.so")]);
    let registry = Registry::load(&LoadOptions {
        dirs: vec![dir.path().to_owned()],
        include_static: true,
        ..Default::default()
    });
    assert!(registry.get("api_key").is_none());
    let line = registry
        .refusals()
        .iter()
        .map(ToString::to_string)
        .find(|l| l.contains("api_key"))
        .unwrap();
    assert!(line.contains("(linked) api-key") && line.contains("libapi_key.so"), "{line}");
}
