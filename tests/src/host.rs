//! A host in the test process: a transport that may reach the loopback fakes, and a registry
//! loaded from a folder holding only the named plugin files (dlopen, as in production).

use std::collections::BTreeMap;
use std::sync::Arc;

use authplug_host::{
    HostServices, LoadOptions, LoadedScheme, Registry, Transport, TransportConfig,
};

use authplug_protocol::Secret;

use crate::{library_file, plugin, plugin_folder};

/// The host side of a test: its runtime, services and registry live as long as it does.
pub struct PluginHost {
    runtime: tokio::runtime::Runtime,
    pub services: HostServices,
    pub registry: Registry,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PluginHost")
    }
}

impl PluginHost {
    /// Loads the built plugins of these crates (library names, e.g. `tripletex`, `jwt_scheme`);
    /// panics if any is refused.
    pub fn load(crates: &[&str]) -> Self {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let config = TransportConfig { allow_loopback_http: true, ..TransportConfig::default() };
        let transport = Transport::new(config, runtime.handle().clone()).unwrap();
        let files: Vec<_> = crates.iter().map(|c| (plugin(c), library_file(c))).collect();
        let borrowed: Vec<_> = files.iter().map(|(p, f)| (p.as_path(), f.as_str())).collect();
        let dir = plugin_folder(&borrowed);
        let registry = Registry::load(&LoadOptions::from_dirs([dir.path()]));
        assert_eq!(registry.refusals(), &[]);
        Self { runtime, services: HostServices::new(Arc::new(transport)), registry, _dir: dir }
    }

    /// The host's runtime, for transports and engines that share it.
    pub fn handle(&self) -> tokio::runtime::Handle {
        self.runtime.handle().clone()
    }

    /// Runs a future on the host's runtime (a browser following a consent page, a test's request).
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// A lifecycle engine over `store`, with every built plugin, a transport on this host's
    /// runtime (loopback allowed, `timeout` per request) and the given settings and events.
    pub fn engine(
        &self,
        store: authplug_store::Store,
        config: authplug_engine::EngineConfig,
        timeout: std::time::Duration,
        events: authplug_engine::Events,
    ) -> Arc<authplug_engine::Engine> {
        let transport = Transport::new(
            TransportConfig { allow_loopback_http: true, timeout, ..TransportConfig::default() },
            self.handle(),
        )
        .unwrap();
        let registry = Registry::load(&LoadOptions::from_dirs([crate::plugin_dir()]));
        assert_eq!(registry.refusals(), &[]);
        Arc::new(authplug_engine::Engine::new(
            Arc::new(store),
            Arc::new(registry),
            HostServices::new(Arc::new(transport)),
            config,
            events,
        ))
    }

    /// The scheme serving `(auth, auth_variant)`.
    pub fn scheme(&self, auth: &str, auth_variant: Option<&str>) -> &LoadedScheme {
        self.registry.resolve(auth, auth_variant).unwrap()
    }
}

/// Secrets from `(name, value)` pairs.
pub fn secrets(pairs: &[(&str, &str)]) -> BTreeMap<String, Secret> {
    pairs.iter().map(|(k, v)| (k.to_string(), Secret::new(*v))).collect()
}

/// A SQLite store in a fresh temporary folder, sealed by a generated key (keep the folder).
pub fn temp_store() -> (tempfile::TempDir, authplug_store::Store) {
    let dir = tempfile::tempdir().unwrap();
    let location = authplug_store::Location::Sqlite(dir.path().join("store.sqlite3"));
    let keys = authplug_store::Keyring::fixed(vec![authplug_store::MasterKey::generate().unwrap()]);
    let store = authplug_store::Store::open(&location, keys).unwrap();
    (dir, store)
}

/// Connector parameters from a JSON object.
pub fn parameters(value: serde_json::Value) -> BTreeMap<String, serde_json::Value> {
    serde_json::from_value(value).unwrap()
}

/// Asserts that neither the error's text nor its `Debug` quotes any of `values`.
pub fn no_secret_in(error: &(impl std::fmt::Display + std::fmt::Debug), values: &[&str]) {
    let text = format!("{error} {error:?}");
    for value in values {
        assert!(!text.contains(value), "{value} leaked: {text}");
    }
}
