//! Every real connector in `shared/connectors` resolves its `(auth, auth_variant)` to a scheme the
//! host loaded from the built plugin files, or is clearly one that needs no authentication.

use authplug_host::{LoadOptions, Registry};
use tests::{plugin_dir, shared_dir};

#[test]
fn every_real_connector_resolves_to_a_loaded_scheme() {
    let registry = Registry::load(&LoadOptions::from_dirs([plugin_dir()]));
    assert_eq!(registry.refusals(), &[]);
    let mut resolved = Vec::new();
    let mut folders: Vec<_> = std::fs::read_dir(shared_dir().join("connectors"))
        .expect("the connectors beside the checkout")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.join("manifest.json").is_file())
        .collect();
    folders.sort();
    for folder in &folders {
        let name = folder.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(folder.join("manifest.json")).unwrap();
        let manifest: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}/manifest.json: {e}"));
        let Some(auth) = manifest["auth"].as_str() else {
            resolved.push(format!("{name}: needs no authentication"));
            continue;
        };
        let variant = manifest["auth_variant"].as_str();
        let scheme = registry.resolve(auth, variant).unwrap_or_else(|| {
            panic!("{name}: no loaded scheme serves auth {auth:?} variant {variant:?}")
        });
        resolved.push(format!("{name}: {}", scheme.descriptor().id));
    }
    assert_eq!(
        resolved,
        [
            "hubspot: oauth2",
            "powerofficego: api_key",
            "superoffice: superoffice",
            "tripletex: tripletex",
            "webcrm: jwt",
            "wix: api_key",
            "woocommerce: api_key",
        ]
    );
}
