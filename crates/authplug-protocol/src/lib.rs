//! The messages that cross the plugin boundary, as plain serde data.
//!
//! The binary boundary (`authplug-abi`) is frozen: it moves opaque JSON strings between the host and
//! a plugin. Everything that evolves lives here, under one semver, [`PROTOCOL_VERSION`]:
//!
//! * a **minor** bump may add optional fields (always `#[serde(default)]`), new methods and new host
//!   callbacks; a plugin built against an older minor keeps loading and working;
//! * a **major** bump is anything else, and the host refuses plugins of another major.
//!
//! Unknown fields are ignored on both sides (no `deny_unknown_fields` anywhere), so a message from a
//! newer peer still parses. Methods that a plugin does not know answer
//! [`ErrorCode::UnknownMethod`]; the host checks [`method::since`] before it calls one.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

mod http;
mod lifetime;
mod revoke;
mod secret;
mod verify;
mod version;

pub use http::{base64_encode, HttpRequest, HttpResponse};
pub use lifetime::{ApplyOutput, RefreshPolicy};
pub use revoke::{RevokeRequest, Revoked};
pub use secret::Secret;
pub use verify::{parameter_text, Unfilled, VerifyRequest, SAFE_METHODS};
pub use version::{ProtocolVersion, VersionError};

/// The protocol version this crate defines. Kept equal to the crate's own version.
pub const PROTOCOL_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The methods a host may call on a plugin (the `method` argument of the boundary's `call` entry).
pub mod method {
    /// Run onboarding for a scheme: [`crate::OnboardRequest`] -> [`crate::OnboardStep`].
    pub const ONBOARD: &str = "onboard";
    /// What one outbound request needs: [`crate::ApplyRequest`] -> [`crate::ApplyResponse`].
    /// Since 1.1.
    pub const APPLY: &str = "apply";
    /// Renew a stored credential: [`crate::RefreshRequest`] -> [`crate::RefreshOutcome`].
    /// Since 1.2.
    pub const REFRESH: &str = "refresh";
    /// Revoke a stored credential at the provider before it is deleted: [`crate::RevokeRequest`]
    /// -> [`crate::Revoked`]. Since 1.5.
    pub const REVOKE: &str = "revoke";

    /// The protocol version (`major.minor`) that introduced `method`, or `None` if unknown.
    pub fn since(method: &str) -> Option<(u64, u64)> {
        match method {
            ONBOARD => Some((1, 0)),
            APPLY => Some((1, 1)),
            REFRESH => Some((1, 2)),
            REVOKE => Some((1, 5)),
            _ => None,
        }
    }
}

/// The callbacks a plugin may make on the host (the host handle's one `call` entry).
pub mod host_method {
    /// Perform one HTTP request with the host's transport: [`crate::HttpRequest`] ->
    /// [`crate::HttpResponse`].
    pub const HTTP: &str = "http";
}

/// What a plugin says about itself when the host loads it (the boundary's `describe` entry).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginManifest {
    /// The protocol version the plugin was built against (`PROTOCOL_VERSION` of its SDK).
    pub protocol: String,
    pub plugin: PluginInfo,
    pub schemes: Vec<SchemeDescriptor>,
}

/// The plugin crate's identity, for listings and error messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
}

/// The contract of one authentication scheme. Build it with `..Default::default()` so that
/// fields added by later protocol minors do not break your code.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SchemeDescriptor {
    /// Stable identifier, `[a-z][a-z0-9_-]*`, e.g. `api_key`.
    pub id: String,
    /// Human name, used as the section title of the reference page, e.g. `API key`.
    pub display_name: String,
    /// The `(auth, auth_variant)` pairs of connector manifests that this scheme serves.
    pub serves: Vec<AuthPair>,
    /// Secrets the user must supply.
    pub required: Vec<RequiredSecret>,
    /// Secrets the scheme injects into the connector's system. The host enforces that onboarding
    /// yields exactly these names.
    pub injected: Vec<InjectedSecret>,
    /// The sentence that opens the scheme's section of the reference page, when the generic one
    /// ("For connectors that use ``auth`` authentication, ...") does not fit. Since 1.1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intro: Option<String>,
    /// Remarks listed under the tables of the reference page (examples, caveats). Since 1.1.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// How the credentials are kept valid. Since 1.2.
    #[serde(default)]
    pub refresh: RefreshPolicy,
    /// The connector manifest fields the scheme reads (`authplug check` reports the ones a
    /// connector lacks). Since 1.3.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub manifest_fields: Vec<ManifestField>,
    /// Whether what `apply` adds to a request is a short-lived credential or the long-lived
    /// secret itself: the server hands the latter only to tokens that may read long-lived
    /// secrets. Since 1.4.
    #[serde(default, skip_serializing_if = "ApplyOutput::is_unspecified")]
    pub apply_output: ApplyOutput,
    /// A cheap request that tells whether a stored credential works (`authplug verify`, run after
    /// `connect`); a connector's manifest may declare its own, which wins. Since 1.6.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifyRequest>,
}

/// A field of the connector manifest that a scheme reads, e.g. `oauth2.token_url`. Since 1.3.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestField {
    /// The dotted path in `manifest.json`, e.g. `oauth2.token_url`.
    pub path: String,
    pub description: String,
    /// The scheme cannot work without it: a connector lacking it fails `authplug check`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub required: bool,
    /// What the scheme uses when the field is absent, in words (`authCode`, or "the
    /// environment's /login/.well-known/jwks"): a connector lacking it gets a warning, since
    /// other tools may not share the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

impl ManifestField {
    /// The parameter the field arrives as: its path's last segment (`oauth2.token_url` is
    /// `token_url`).
    pub fn parameter(&self) -> &str {
        self.path.rsplit('.').next().unwrap_or(&self.path)
    }

    /// A field the scheme cannot work without.
    pub fn required(path: &str, description: &str) -> Self {
        Self { path: path.into(), description: description.into(), required: true, default: None }
    }

    /// A field the scheme reads if present and otherwise does without.
    pub fn optional(path: &str, description: &str) -> Self {
        Self { path: path.into(), description: description.into(), required: false, default: None }
    }

    /// A field with a documented default used when it is absent.
    pub fn defaulted(path: &str, description: &str, default: &str) -> Self {
        Self {
            path: path.into(),
            description: description.into(),
            required: false,
            default: Some(default.into()),
        }
    }
}

/// One `(auth, auth_variant)` pair of a connector manifest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AuthPair {
    pub auth: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_variant: Option<String>,
}

impl AuthPair {
    pub fn new(auth: &str, auth_variant: Option<&str>) -> Self {
        Self { auth: auth.to_owned(), auth_variant: auth_variant.map(str::to_owned) }
    }
}

impl fmt::Display for AuthPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.auth_variant {
            Some(variant) => write!(f, "{}/{}", self.auth, variant),
            None => f.write_str(&self.auth),
        }
    }
}

/// A secret the user supplies during onboarding.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RequiredSecret {
    pub name: String,
    pub description: String,
    /// Whether the value is confidential (hidden when prompted, never echoed). Defaults to true.
    #[serde(default = "yes")]
    pub secret: bool,
    /// Supplied by the operator's configuration (e.g. a partner's private key), not by the user
    /// onboarding a connector; not listed in the reference page's table. Since 1.2.
    #[serde(default, skip_serializing_if = "is_false")]
    pub operator: bool,
}

impl RequiredSecret {
    /// A confidential secret the user supplies.
    pub fn new(name: &str, description: &str) -> Self {
        Self { name: name.into(), description: description.into(), secret: true, operator: false }
    }

    /// Not confidential (e.g. a client id): may be echoed when prompted.
    pub fn public(mut self) -> Self {
        self.secret = false;
        self
    }

    /// Supplied by the operator's configuration rather than the user.
    pub fn from_operator(mut self) -> Self {
        self.operator = true;
        self
    }
}

/// A secret the scheme injects into the connector's system configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InjectedSecret {
    pub name: String,
    pub description: String,
    #[serde(rename = "type", default)]
    pub value_type: ValueType,
    /// Where the value comes from. Since 1.2; older plugins say nothing (`unspecified`).
    #[serde(default, skip_serializing_if = "Source::is_unspecified")]
    pub source: Source,
    /// Injected so that existing templates keep working, beyond the scheme's documented contract
    /// (SuperOffice's templates read the OAuth2 set); listed in a note, not in the table. Since 1.2.
    #[serde(default, skip_serializing_if = "is_false")]
    pub compat: bool,
}

impl InjectedSecret {
    /// A string secret with its documented description and where it comes from.
    pub fn new(name: &str, description: &str, source: Source) -> Self {
        Self {
            name: name.into(),
            description: description.into(),
            value_type: ValueType::String,
            source,
            compat: false,
        }
    }

    /// Injected for existing templates, beyond the documented contract.
    pub fn compat(mut self) -> Self {
        self.compat = true;
        self
    }
}

/// Where an injected value comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    /// Not declared (a plugin older than protocol 1.2).
    #[default]
    Unspecified,
    /// Copied unchanged from the required secret `from`.
    Copied { from: String },
    /// Obtained from the provider during onboarding, and not renewed.
    Onboarding,
    /// Obtained during onboarding and renewed at runtime by `refresh`.
    Renewed,
}

impl Source {
    pub fn is_unspecified(&self) -> bool {
        *self == Source::Unspecified
    }
}

/// The type column of the reference page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ValueType {
    #[default]
    String,
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueType::String => f.write_str("String"),
        }
    }
}

fn yes() -> bool {
    true
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// Input of [`method::ONBOARD`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OnboardRequest {
    /// Which of the plugin's schemes is meant.
    pub scheme: String,
    /// The required secrets, by name.
    pub required: BTreeMap<String, Secret>,
    /// Non-secret parameters (e.g. the connector manifest's scheme block).
    #[serde(default)]
    pub parameters: BTreeMap<String, serde_json::Value>,
    /// Where the user's browser comes back to after a consent (the host's callback). Since 1.2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_uri: Option<String>,
    /// The continuation of an earlier `redirect` step, with what came back. Since 1.2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<Resume>,
}

/// What the host hands back after a `redirect` step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resume {
    /// The step's `continuation`, unchanged (kept by the host, never shown to the user).
    pub continuation: Secret,
    /// The query parameters of the callback (`code`, `state`, `iss`, or `error`, ...). The host
    /// has already checked `state` against the step's.
    pub callback: BTreeMap<String, String>,
}

/// Output of [`method::ONBOARD`]: the next step. Later protocol minors add steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum OnboardStep {
    /// Send the user's browser to `url`; resume with what comes back to the redirect URI, if its
    /// `state` equals this one. Since 1.2.
    Redirect {
        url: String,
        state: String,
        /// Opaque to the host, secret (e.g. the PKCE verifier): handed back in [`Resume`].
        continuation: Secret,
    },
    /// Onboarding is complete.
    Done {
        /// Exactly the scheme's declared injected secrets.
        injected: BTreeMap<String, Secret>,
        /// When the injected secrets stop working (Unix seconds), if they expire.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_at: Option<i64>,
        /// Non-secret facts learned on the way, e.g. `account_id` (the tenant) or `base_url`.
        /// Since 1.2.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        outputs: BTreeMap<String, serde_json::Value>,
    },
}

/// Input of [`method::REFRESH`]: the stored credential to renew.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RefreshRequest {
    pub scheme: String,
    pub required: BTreeMap<String, Secret>,
    pub injected: BTreeMap<String, Secret>,
    #[serde(default)]
    pub parameters: BTreeMap<String, serde_json::Value>,
}

/// Output of [`method::REFRESH`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RefreshOutcome {
    /// The renewed injected secrets (exactly the declared ones; unchanged values included).
    Renewed {
        injected: BTreeMap<String, Secret>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_at: Option<i64>,
    },
    /// A human must authorise again (revoked grant, invalid client, ...): do not retry.
    Reauthorize { reason: String },
    /// Try again later (timeout, 5xx, 429, truncated answer).
    Transient {
        reason: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_secs: Option<u64>,
    },
    /// Nothing to renew with, and nothing changed: the provider issued no refresh token (an
    /// offline token that never expires). The host keeps the stored secrets as they are while
    /// they do not expire, and asks for re-authorisation when they do. Since 1.5.
    Unchanged { reason: String },
}

/// Input of [`method::APPLY`]: make one outbound request authenticated.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ApplyRequest {
    pub scheme: String,
    /// The stored injected secrets.
    pub injected: BTreeMap<String, Secret>,
    /// How to apply them where the scheme offers choices (e.g. header name, query parameter).
    #[serde(default)]
    pub parameters: BTreeMap<String, serde_json::Value>,
}

/// Output of [`method::APPLY`]: what to add to the outbound request. Values are secret.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ApplyResponse {
    #[serde(default)]
    pub headers: Vec<(String, Secret)>,
    #[serde(default)]
    pub query: Vec<(String, Secret)>,
}

impl OnboardStep {
    /// Onboarding complete, without outputs. Prefer this to the struct literal: it keeps compiling
    /// when a protocol minor adds fields.
    pub fn done(injected: BTreeMap<String, Secret>, expires_at: Option<i64>) -> Self {
        OnboardStep::Done { injected, expires_at, outputs: BTreeMap::new() }
    }

    /// The same step with the non-secret fact `name` among a `Done` step's outputs (e.g.
    /// `account_id`, the tenant); other steps are returned unchanged.
    pub fn with_output(mut self, name: &str, value: impl Into<serde_json::Value>) -> Self {
        if let OnboardStep::Done { outputs, .. } = &mut self {
            outputs.insert(name.to_owned(), value.into());
        }
        self
    }
}

/// The error half of every call, in both directions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: ErrorCode,
    /// One line for a human. Never contains a secret value.
    pub message: String,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    /// The JSON form; infallible for this plain struct.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| {
            r#"{"code":"internal","message":"unserializable error"}"#.to_owned()
        })
    }
}

impl fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// Machine-readable error classes. Unknown codes from a newer peer parse as `Other`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request was malformed or a required input is missing or unusable.
    InvalidInput,
    /// The plugin does not have the named scheme.
    UnknownScheme,
    /// The plugin does not know the method (built against an older protocol).
    UnknownMethod,
    /// The plugin panicked; the call failed, the plugin stays loaded.
    PluginPanic,
    /// An isolated plugin's process died during the call (a crash, an abort, `exit`, or an
    /// answer that is not the protocol); it is restarted for the next call. Said by the host only.
    PluginCrashed,
    /// An isolated plugin did not answer within the call's deadline and was stopped. Said by the
    /// host only.
    PluginTimeout,
    /// An HTTP request through the host failed (transport, policy, size).
    Http,
    /// The provider refused (wrong credentials, revoked grant, ...).
    Provider,
    /// The plugin broke the scheme contract (e.g. injected an undeclared secret).
    ContractViolation,
    /// A bug or an unexpected state.
    Internal,
    #[serde(other)]
    Other,
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = serde_json::to_value(self).ok();
        f.write_str(text.as_ref().and_then(|v| v.as_str()).unwrap_or("other"))
    }
}

#[cfg(test)]
mod tests;
