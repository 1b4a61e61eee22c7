//! The authplug SDK: what a scheme plugin author writes against.
//!
//! A scheme is a type implementing [`Scheme`]. A plugin crate registers its schemes with
//! [`register_scheme!`] and, once per crate, exports them with [`export_plugin!`]. The crate is
//! built as `crate-type = ["cdylib", "rlib"]`: the host loads the cdylib at startup; the rlib lets
//! the same scheme be linked statically (its own tests, and the host's registry picks up statically
//! linked schemes too).
//!
//! ```ignore
//! use authplug_sdk::prelude::*;
//!
//! struct MyScheme;
//! impl Scheme for MyScheme { /* descriptor, onboard */ }
//!
//! authplug_sdk::register_scheme!(MyScheme);
//! authplug_sdk::export_plugin!();
//! ```
//!
//! A plugin does no I/O of its own: HTTP goes through the host ([`Host::http`], or
//! [`Host::http_client`] for the `oauth2` crate), which owns TLS, timeouts, redirects, size limits
//! and the SSRF guard. Panics inside a scheme become a `plugin_panic` error for that call only.

pub mod docs;
mod entry;
pub mod expiry;
mod host;
pub mod oauth;
pub mod provider;
pub mod tenant;

pub use authplug_protocol as protocol;
pub use authplug_protocol::{
    ApplyOutput, ApplyRequest, ApplyResponse, AuthPair, ErrorBody, ErrorCode, HttpRequest,
    HttpResponse, InjectedSecret, ManifestField, OnboardRequest, OnboardStep, RefreshOutcome,
    RefreshPolicy, RefreshRequest, RequiredSecret, Resume, RevokeRequest, Revoked,
    SchemeDescriptor, Secret, Source, ValueType, VerifyRequest,
};
pub use host::{Host, HostCall, HostHttp, HostHttpError};
/// The `oauth2` crate the SDK's [`HostHttp`] implements `SyncHttpClient` for: use this one, so the
/// versions match.
pub use oauth2;
/// This SDK's version, for tools that write a dependency on it (`authplug schemes new`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The `serde` of the protocol's types, for a scheme's own answers: derive with
/// `#[derive(authplug_sdk::serde::Deserialize)] #[serde(crate = "authplug_sdk::serde")]`.
pub use serde;
/// The `serde_json` whose `Value` the protocol's parameters and outputs hold.
pub use serde_json;

/// The error a scheme returns: a code and one line for a human, never with a secret value.
pub type Error = ErrorBody;

/// The value of the required secret `name`, or a clear error naming it when it is missing or
/// empty (never quoting any value).
pub fn required_secret<'a>(
    secrets: &'a std::collections::BTreeMap<String, Secret>,
    name: &str,
) -> Result<&'a str, Error> {
    secrets.get(name).map(Secret::expose).filter(|v| !v.is_empty()).ok_or_else(|| {
        Error::new(ErrorCode::InvalidInput, format!("the secret `{name}` is missing or empty"))
    })
}

/// RFC 6750: `token` as a bearer credential in the `Authorization` header, for `apply`.
pub fn bearer(token: &str) -> ApplyResponse {
    ApplyResponse {
        headers: vec![("Authorization".into(), Secret::new(format!("Bearer {token}")))],
        query: vec![],
    }
}

/// An authentication scheme. Implementations should read like the provider's documentation.
pub trait Scheme: Send + Sync + 'static {
    /// The scheme's contract: what it needs and what it injects.
    fn descriptor(&self) -> SchemeDescriptor;

    /// Runs onboarding with the user's required secrets.
    fn onboard(&self, request: OnboardRequest, host: &Host<'_>) -> Result<OnboardStep, Error>;

    /// The headers and query parameters one outbound request needs, from the injected secrets.
    /// Schemes whose connectors apply the secrets themselves may keep this default.
    fn apply(&self, request: ApplyRequest, host: &Host<'_>) -> Result<ApplyResponse, Error> {
        let _ = (request, host);
        Err(Error::new(ErrorCode::UnknownMethod, "this scheme does not apply credentials"))
    }

    /// Renews the stored credential. Schemes whose secrets never expire keep this default.
    fn refresh(&self, request: RefreshRequest, host: &Host<'_>) -> Result<RefreshOutcome, Error> {
        let _ = (request, host);
        Err(Error::new(ErrorCode::UnknownMethod, "this scheme does not renew credentials"))
    }

    /// Revokes the stored credential at the provider before the system is deleted (RFC 7009 for
    /// OAuth2): answer which injected secrets were revoked, and notes for what was not. An error
    /// (`provider`, `http`) means the provider did not revoke: the host keeps the system. Schemes
    /// whose provider has nothing to revoke keep this default; the host deletes with a note.
    fn revoke(&self, request: RevokeRequest, host: &Host<'_>) -> Result<Revoked, Error> {
        let _ = (request, host);
        Err(Error::new(ErrorCode::UnknownMethod, "this scheme does not revoke credentials"))
    }
}

/// One registered scheme; created by [`register_scheme!`].
#[derive(Clone, Copy)]
pub struct Registration {
    pub scheme: &'static dyn Scheme,
    /// The crate that registered it, e.g. `api-key` (for listings of statically linked schemes).
    pub crate_name: &'static str,
    pub crate_version: &'static str,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration").field("crate_name", &self.crate_name).finish()
    }
}

inventory::collect!(Registration);

/// Every scheme registered in this artifact (this plugin file, or the host binary or test that
/// links scheme crates statically). Registrations do not cross a shared-library boundary.
pub fn registered() -> impl Iterator<Item = &'static Registration> {
    inventory::iter::<Registration>.into_iter()
}

/// Registers a scheme value (a constant expression, e.g. a unit struct) with this artifact.
#[macro_export]
macro_rules! register_scheme {
    ($scheme:expr) => {
        $crate::__private::inventory::submit! {
            $crate::Registration {
                scheme: &$scheme,
                crate_name: env!("CARGO_PKG_NAME"),
                crate_version: env!("CARGO_PKG_VERSION"),
            }
        }
    };
}

/// Exports every scheme this crate registered as the plugin's root module, under the crate's name
/// and version. Once per plugin crate.
#[macro_export]
macro_rules! export_plugin {
    () => {
        $crate::__private::inventory::submit! {
            $crate::__private::PluginIdentity {
                name: env!("CARGO_PKG_NAME"),
                version: env!("CARGO_PKG_VERSION"),
            }
        }
    };
}

#[doc(hidden)]
pub mod __private {
    pub use crate::entry::PluginIdentity;
    pub use inventory;
}

/// Dispatches one boundary call to the registered schemes: the plugin side of the protocol.
pub use entry::dispatch;

/// The plugin manifest built from this artifact's registrations.
pub use entry::manifest;

/// What most scheme crates import.
pub mod prelude {
    pub use crate::required_secret;
    pub use crate::{
        ApplyOutput, ApplyRequest, ApplyResponse, AuthPair, Error, ErrorCode, Host, InjectedSecret,
        ManifestField, OnboardRequest, OnboardStep, RefreshOutcome, RefreshPolicy, RefreshRequest,
        RequiredSecret, Resume, RevokeRequest, Revoked, Scheme, SchemeDescriptor, Secret, Source,
        ValueType, VerifyRequest,
    };
}
