//! The plugin side of the boundary: manifest, dispatch of calls, and panic containment.

use std::cell::RefCell;
use std::sync::Once;

use authplug_abi::{HostHandle, PluginEntry};
use authplug_protocol::{
    method, ApplyRequest, ErrorBody, ErrorCode, OnboardRequest, PluginInfo, PluginManifest,
    RefreshRequest, RevokeRequest, PROTOCOL_VERSION,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{registered, Host, Scheme};

/// The plugin crate's identity, submitted by `export_plugin!` from its `Cargo.toml`.
#[derive(Debug)]
pub struct PluginIdentity {
    pub name: &'static str,
    pub version: &'static str,
}

inventory::collect!(PluginIdentity);

/// The [`PluginEntry`] of every plugin built with this SDK.
///
/// The exported root-module symbol is defined once, here, rather than by a macro in each plugin
/// crate: two scheme crates linked statically into one binary (the host's tests) would otherwise
/// define the same `#[no_mangle]` symbol twice. A plugin crate only submits its identity.
#[derive(Debug)]
pub struct Entry;

authplug_abi::export_plugin_entry!(crate::entry::Entry);

impl PluginEntry for Entry {
    fn describe() -> String {
        install_quiet_panic_hook();
        let mut identities = inventory::iter::<PluginIdentity>.into_iter();
        let manifest = match (identities.next(), identities.next()) {
            (Some(identity), None) => manifest(identity.name, identity.version),
            // No `export_plugin!`: a manifest the host refuses with a message saying so.
            (None, _) => {
                return "the plugin crate does not call authplug_sdk::export_plugin!()".into()
            }
            (Some(_), Some(_)) => {
                return "more than one crate in this plugin calls authplug_sdk::export_plugin!()"
                    .into();
            }
        };
        serde_json::to_string(&manifest).expect("a manifest always serialises")
    }

    fn call(method: &str, request: &str, host: HostHandle<'_>) -> Result<String, String> {
        install_quiet_panic_hook();
        dispatch(method, request, &Host::new(&host))
    }

    fn panic_error(message: &str) -> String {
        let location = LAST_PANIC.with(|last| last.borrow_mut().take());
        let message = match location {
            Some(location) => format!("scheme panicked at {location}: {message}"),
            None => format!("scheme panicked: {message}"),
        };
        ErrorBody::new(ErrorCode::PluginPanic, message).to_json()
    }
}

/// The manifest of this artifact's registered schemes.
pub fn manifest(name: &str, version: &str) -> PluginManifest {
    PluginManifest {
        protocol: PROTOCOL_VERSION.to_owned(),
        plugin: PluginInfo { name: name.to_owned(), version: version.to_owned() },
        schemes: registered().map(|r| r.scheme.descriptor()).collect(),
    }
}

/// Runs one call: `method` with its JSON `request`, answering JSON or a JSON error body.
pub fn dispatch(method: &str, request: &str, host: &Host<'_>) -> Result<String, String> {
    let outcome = match method {
        method::ONBOARD => parse::<OnboardRequest>(method, request).and_then(|request| {
            let scheme = find(&request.scheme)?;
            answer(scheme.onboard(request, host)?)
        }),
        method::REFRESH => parse::<RefreshRequest>(method, request).and_then(|request| {
            let scheme = find(&request.scheme)?;
            answer(scheme.refresh(request, host)?)
        }),
        method::REVOKE => parse::<RevokeRequest>(method, request).and_then(|request| {
            let scheme = find(&request.scheme)?;
            answer(scheme.revoke(request, host)?)
        }),
        method::APPLY => parse::<ApplyRequest>(method, request).and_then(|request| {
            let scheme = find(&request.scheme)?;
            answer(scheme.apply(request, host)?)
        }),
        _ => Err(ErrorBody::new(
            ErrorCode::UnknownMethod,
            format!(
                "this plugin does not know the method {method:?} (protocol {PROTOCOL_VERSION})"
            ),
        )),
    };
    outcome.map_err(|error| error.to_json())
}

fn find(id: &str) -> Result<&'static dyn Scheme, ErrorBody> {
    // The ids, read from the descriptors once: a descriptor is built anew by each call of
    // `descriptor()`, which cost more than a whole `apply`.
    static BY_ID: std::sync::OnceLock<Vec<(String, &'static dyn Scheme)>> =
        std::sync::OnceLock::new();
    let schemes =
        BY_ID.get_or_init(|| registered().map(|r| (r.scheme.descriptor().id, r.scheme)).collect());
    schemes.iter().find(|(known, _)| known == id).map(|(_, scheme)| *scheme).ok_or_else(|| {
        ErrorBody::new(ErrorCode::UnknownScheme, format!("this plugin has no scheme {id:?}"))
    })
}

/// Parses a request without ever quoting it: serde's messages can contain input values.
fn parse<T: DeserializeOwned>(method: &str, request: &str) -> Result<T, ErrorBody> {
    serde_json::from_str(request).map_err(|e| {
        ErrorBody::new(
            ErrorCode::InvalidInput,
            format!(
                "malformed {method} request ({:?} error at line {} column {})",
                e.classify(),
                e.line(),
                e.column()
            ),
        )
    })
}

fn answer<T: Serialize>(value: T) -> Result<String, ErrorBody> {
    serde_json::to_string(&value)
        .map_err(|_| ErrorBody::new(ErrorCode::Internal, "the scheme's answer did not serialise"))
}

thread_local! {
    /// Where the last panic on this thread happened, kept by the quiet hook for `panic_error`.
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Each plugin file links its own copy of std, so this hook only affects panics inside the plugin.
/// The default hook would print the panic message (which may hold a value) to stderr; this one
/// keeps only the location, and the message travels in the `plugin_panic` error, where the host
/// scrubs the call's secret values from it.
fn install_quiet_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let location = info.location().map(|l| format!("{}:{}", l.file(), l.line()));
            LAST_PANIC.with(|last| *last.borrow_mut() = location);
        }));
    });
}
