//! The binary boundary between the authplug host and a scheme plugin: the only FFI code.
//!
//! A plugin is a `cdylib` that exports one [abi_stable] root module, [`PluginModRef`], with two
//! entries, plus a [`HostHandle`] the host passes into every call:
//!
//! ```text
//! describe() -> RString                                           // JSON PluginManifest
//! call(method, request, host) -> RResult<RString, RString>       // JSON in, JSON out or JSON error
//! host.call(method, request) -> RResult<RString, RString>        // the plugin's one callback
//! ```
//!
//! **This module is frozen.** abi_stable refuses a plugin whose root module is a shorter prefix of
//! the host's (upstream issue #118) and compares root-module versions, so any change here would
//! force every connector team to rebuild. Everything that evolves is JSON defined in
//! `authplug-protocol`, under that crate's semver. Consequently the version strings below are
//! written out instead of taken from `Cargo.toml`.
//!
//! Panics never cross this boundary: every `extern "C"` function here runs its body under
//! `catch_unwind` (a panic reaching an `extern "C"` frame would abort the process), and reports it
//! as an error string instead.
//!
//! Safety is concentrated here so that the rest of the workspace can `deny(unsafe_code)`.
#![allow(unsafe_code)]

use std::any::Any;
use std::ffi::c_void;
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use abi_stable::library::{
    __call_root_module_loader, lib_header_from_path, CheckTypeLayout, LibHeader, LibraryError,
    RootModule, RootModuleResult,
};
use abi_stable::prefix_type::PrefixTypeTrait;
use abi_stable::sabi_types::VersionStrings;
use abi_stable::std_types::{RErr, ROk, RResult, RStr, RString};
use abi_stable::{declare_root_module_statics, StableAbi};

pub use abi_stable::library::LibraryError as AbiLibraryError;

/// The version of this binary interface. Frozen at 1.0.0: see the module documentation.
pub const ABI_VERSION: &str = "1.0.0";

/// Result of a boundary call: `Ok(json)` or `Err(json error body)`.
pub type CallResult = RResult<RString, RString>;

/// The plugin's root module, the one symbol a plugin file exports.
#[allow(missing_debug_implementations)] // derive-generated prefix types have no Debug
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModRef)))]
#[sabi(missing_field(panic))]
pub struct PluginMod {
    /// The plugin's manifest, as JSON.
    pub describe: extern "C" fn() -> RString,
    /// One generic entry: `method` names the operation, `request` is its JSON input.
    #[sabi(last_prefix_field)]
    pub call: for<'a> extern "C" fn(RStr<'a>, RStr<'a>, HostHandle<'a>) -> CallResult,
}

impl RootModule for PluginModRef {
    declare_root_module_statics! {PluginModRef}

    const BASE_NAME: &'static str = "authplug_plugin";
    const NAME: &'static str = "authplug_plugin";
    const VERSION_STRINGS: VersionStrings = VersionStrings::new(ABI_VERSION);
}

/// The host's side of a call: one generic callback, valid for the duration of the call only.
#[repr(C)]
#[derive(StableAbi, Clone, Copy)]
pub struct HostHandle<'a> {
    context: *const c_void,
    callback: for<'b> extern "C" fn(*const c_void, RStr<'b>, RStr<'b>) -> CallResult,
    _lifetime: PhantomData<&'a ()>,
}

impl std::fmt::Debug for HostHandle<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HostHandle")
    }
}

/// A host callback as ordinary Rust: `(method, request json) -> Ok(json) | Err(json error)`.
pub type HostFn<'a> = dyn Fn(&str, &str) -> Result<String, String> + 'a;

impl<'a> HostHandle<'a> {
    /// Runs `body` with a handle that forwards to `host`. The handle must not outlive `body`, which
    /// the lifetime enforces for safe code.
    pub fn with<R>(host: &'a HostFn<'a>, body: impl FnOnce(HostHandle<'a>) -> R) -> R {
        let fat: &&HostFn<'a> = &host;
        let handle = HostHandle {
            context: fat as *const &HostFn<'a> as *const c_void,
            callback: host_trampoline,
            _lifetime: PhantomData,
        };
        body(handle)
    }

    /// Calls the host.
    pub fn call(&self, method: &str, request: &str) -> Result<String, String> {
        (self.callback)(self.context, RStr::from(method), RStr::from(request))
            .into_result()
            .map(RString::into_string)
            .map_err(RString::into_string)
    }
}

extern "C" fn host_trampoline(
    context: *const c_void,
    method: RStr<'_>,
    request: RStr<'_>,
) -> CallResult {
    // SAFETY: `context` was made in `HostHandle::with` from a `&&HostFn` that outlives the handle.
    let host: &&HostFn<'_> = unsafe { &*(context as *const &HostFn<'_>) };
    let outcome = catch_unwind(AssertUnwindSafe(|| host(method.as_str(), request.as_str())));
    match outcome {
        Ok(Ok(json)) => ROk(json.into()),
        Ok(Err(json)) => RErr(json.into()),
        Err(payload) => RErr(panic_json("host", &payload).into()),
    }
}

/// What a plugin implements to be exported; the SDK provides the implementation.
pub trait PluginEntry: 'static {
    /// The manifest JSON.
    fn describe() -> String;
    /// One call; errors are JSON error bodies.
    fn call(method: &str, request: &str, host: HostHandle<'_>) -> Result<String, String>;
    /// The JSON error body for a panic with this message (the SDK formats it per the protocol).
    fn panic_error(message: &str) -> String;
}

extern "C" fn describe_entry<P: PluginEntry>() -> RString {
    match catch_unwind(P::describe) {
        Ok(json) => json.into(),
        // An unparsable manifest: the host refuses the plugin and says the describe entry failed.
        Err(payload) => format!("describe panicked: {}", panic_message(&payload)).into(),
    }
}

extern "C" fn call_entry<'a, P: PluginEntry>(
    method: RStr<'a>,
    request: RStr<'a>,
    host: HostHandle<'a>,
) -> CallResult {
    let outcome =
        catch_unwind(AssertUnwindSafe(|| P::call(method.as_str(), request.as_str(), host)));
    match outcome {
        Ok(Ok(json)) => ROk(json.into()),
        Ok(Err(json)) => RErr(json.into()),
        Err(payload) => {
            let message = panic_message(&payload);
            let body = catch_unwind(AssertUnwindSafe(|| P::panic_error(&message)))
                .unwrap_or_else(|_| panic_json("plugin", &payload));
            RErr(body.into())
        }
    }
}

/// The root module of a plugin whose entries are `P`.
pub fn root_module<P: PluginEntry>() -> PluginModRef {
    PluginMod { describe: describe_entry::<P>, call: call_entry::<P> }.leak_into_prefix()
}

#[doc(hidden)]
pub extern "C" fn erased_root_module<P: PluginEntry>() -> RootModuleResult {
    __call_root_module_loader(root_module::<P>)
}

/// The header a plugin exports; use through [`export_plugin_entry!`].
pub const fn lib_header<P: PluginEntry>() -> LibHeader {
    // SAFETY: the constructor returns a `PrefixRef<PluginMod>` erased by abi_stable itself, which
    // is exactly what `from_constructor::<PluginModRef>` requires.
    unsafe {
        LibHeader::from_constructor::<PluginModRef>(erased_root_module::<P>, CheckTypeLayout::Yes)
    }
}

/// The exported symbol's name, as abi_stable's `#[export_root_module]` would spell it. A unit test
/// pins it to abi_stable's own constant, so an upgrade that changes it fails loudly.
pub const ROOT_SYMBOL: &str = "_1as_0lib_1header_0root_bmodule_bloader";

/// Exports `$entry` (a [`PluginEntry`]) as this library's root module. Called once per cdylib, by
/// `authplug_sdk::export_plugin!`; the generated static is what [`load`] looks up.
#[macro_export]
macro_rules! export_plugin_entry {
    ($entry:ty) => {
        #[no_mangle]
        pub static _1as_0lib_1header_0root_bmodule_bloader: $crate::LibHeaderExport =
            $crate::lib_header::<$entry>();
    };
}

#[doc(hidden)]
pub type LibHeaderExport = LibHeader;

/// A loaded plugin's entries, callable from safe code.
#[derive(Clone, Copy)]
pub struct Plugin {
    module: PluginModRef,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Plugin")
    }
}

impl Plugin {
    /// The manifest JSON the plugin describes itself with.
    pub fn describe(&self) -> String {
        (self.module.describe())().into_string()
    }

    /// One call through the boundary; `host` answers the plugin's callbacks during the call.
    pub fn call(&self, method: &str, request: &str, host: &HostFn<'_>) -> Result<String, String> {
        let call = self.module.call();
        HostHandle::with(host, |handle| {
            call(RStr::from(method), RStr::from(request), handle)
                .into_result()
                .map(RString::into_string)
                .map_err(RString::into_string)
        })
    }
}

/// Why a file could not be loaded as a plugin.
#[derive(Debug)]
pub enum LoadError {
    /// The dynamic loader could not open it (its message follows).
    Open(String),
    /// It is a shared library but exports no authplug root module.
    NotAPlugin,
    /// It exports a root module of another abi_stable or authplug ABI version.
    AbiVersion(String),
    /// The root module's layout differs from this host's.
    Layout(String),
    /// The plugin's root module constructor failed.
    Init(String),
}

/// Loads the plugin at `path`. The library is never unloaded (abi_stable leaks it on purpose).
pub fn load(path: &Path) -> Result<Plugin, LoadError> {
    let header = lib_header_from_path(path).map_err(classify)?;
    let module = header.init_root_module::<PluginModRef>().map_err(classify)?;
    Ok(Plugin { module })
}

fn classify(error: LibraryError) -> LoadError {
    match error {
        LibraryError::OpenError { err, .. } => LoadError::Open(err.to_string()),
        LibraryError::GetSymbolError { .. } => LoadError::NotAPlugin,
        LibraryError::ParseVersionError(e) => LoadError::AbiVersion(e.to_string()),
        LibraryError::IncompatibleVersionNumber { expected_version, actual_version, .. } => {
            LoadError::AbiVersion(format!(
                "plugin ABI {actual_version}, this host's ABI {expected_version}"
            ))
        }
        LibraryError::InvalidAbiHeader(header) => LoadError::AbiVersion(format!(
            "abi_stable {}.{} library, this host uses another",
            header.abi_major, header.abi_minor
        )),
        LibraryError::AbiInstability(_) => {
            LoadError::Layout("root module layout differs from this host's".into())
        }
        LibraryError::InvalidCAbi { .. } => LoadError::Layout("C ABI mismatch".into()),
        LibraryError::RootModule { err, .. } => LoadError::Init(err.to_string()),
        other => LoadError::Open(other.to_string()),
    }
}

/// The text of a panic payload (`&str` or `String`), or a placeholder.
pub fn panic_message(payload: &Box<dyn Any + Send>) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// A protocol-shaped error body for a panic, for when nothing better can be formatted.
fn panic_json(side: &str, payload: &Box<dyn Any + Send>) -> String {
    let message = format!("{side} panicked: {}", panic_message(payload));
    let escaped: String = message
        .chars()
        .flat_map(|c| match c {
            '"' => vec!['\\', '"'],
            '\\' => vec!['\\', '\\'],
            c if c.is_control() => vec![' '],
            c => vec![c],
        })
        .collect();
    format!(r#"{{"code":"plugin_panic","message":"{escaped}"}}"#)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_symbol_matches_abi_stable() {
        assert_eq!(ROOT_SYMBOL, abi_stable::library::ROOT_MODULE_LOADER_NAME);
    }

    struct Echo;
    impl PluginEntry for Echo {
        fn describe() -> String {
            "{}".into()
        }
        fn call(method: &str, request: &str, host: HostHandle<'_>) -> Result<String, String> {
            match method {
                "echo" => Ok(request.to_owned()),
                "ask-host" => host.call("time", request),
                _ => panic!("boom \"quoted\""),
            }
        }
        fn panic_error(message: &str) -> String {
            format!("panic:{message}")
        }
    }

    fn host(method: &str, request: &str) -> Result<String, String> {
        if method == "time" {
            Ok(format!("host saw {request}"))
        } else {
            Err("nope".into())
        }
    }

    #[test]
    fn calls_round_trip_through_the_extern_entries() {
        let plugin = Plugin { module: root_module::<Echo>() };
        assert_eq!(plugin.describe(), "{}");
        assert_eq!(plugin.call("echo", "x", &host), Ok("x".into()));
        assert_eq!(plugin.call("ask-host", "y", &host), Ok("host saw y".into()));
    }

    #[test]
    fn a_panic_becomes_an_error_not_an_abort() {
        let plugin = Plugin { module: root_module::<Echo>() };
        assert_eq!(plugin.call("other", "", &host), Err("panic:boom \"quoted\"".into()));
    }

    #[test]
    fn a_host_panic_is_reported_to_the_plugin_as_an_error() {
        let plugin = Plugin { module: root_module::<Echo>() };
        let panicking: &HostFn<'_> = &|_, _| panic!("host \"bug\"");
        let error = plugin.call("ask-host", "", panicking).unwrap_err();
        let body: serde_json::Value = serde_json::from_str(&error).expect("valid JSON");
        assert_eq!(body["code"], "plugin_panic");
        assert_eq!(body["message"], "host panicked: host \"bug\"");
    }
}
