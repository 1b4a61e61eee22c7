//! One plugin file opened on its own, outside a registry, with the same checks as at startup:
//! for `authplug schemes test`, which answers the plugin's callbacks itself.

use std::path::Path;

use authplug_abi::HostFn;
use authplug_protocol::PluginManifest;

use crate::loader::{self, LoadedFile};

/// A loaded plugin file. Dropping it does not unload the library (no plugin ever is).
#[derive(Debug)]
pub struct PluginFile {
    loaded: LoadedFile,
}

impl PluginFile {
    /// Loads `path` as the host would at startup (file checks, binary interface, protocol
    /// version, descriptors); the reason it is refused otherwise, in one line.
    pub fn open(path: &Path) -> Result<Self, String> {
        loader::load_file(path).map(|loaded| Self { loaded })
    }

    /// What the plugin says about itself.
    pub fn manifest(&self) -> &PluginManifest {
        &self.loaded.manifest
    }

    /// One raw call through the boundary: `host` answers the plugin's callbacks. Nothing is
    /// checked or scrubbed (the registry's schemes do that); a panic comes back as the
    /// plugin's `plugin_panic` error.
    pub fn call(&self, method: &str, request: &str, host: &HostFn<'_>) -> Result<String, String> {
        self.loaded.plugin.call(method, request, host)
    }
}
