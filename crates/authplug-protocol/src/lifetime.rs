//! How long what a scheme hands out stays good: its renewal policy, and whether `apply`'s output
//! is a short-lived credential.

use serde::{Deserialize, Serialize};

/// How a scheme's credentials are kept valid. Since 1.2.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshPolicy {
    /// Whether the scheme implements `refresh`.
    #[serde(default)]
    pub renews: bool,
    /// Refresh this many seconds before `expires_at` (the engine's default when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub margin_secs: Option<u64>,
}

/// What the headers and query parameters of `apply` carry. Since 1.4.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApplyOutput {
    /// Not declared (a plugin older than protocol 1.4): treated as [`ApplyOutput::LongLived`].
    #[default]
    Unspecified,
    /// A credential derived from the user's secrets that lapses on its own and from which they
    /// cannot be recovered (an OAuth2 access token, a session token or ticket, hours to days):
    /// a worker that may only authorize requests may hold it.
    ShortLived,
    /// The long-lived secret itself, or something it can be recovered from (an API key, a
    /// password in a Basic header, an application token): only tokens that may read long-lived
    /// secrets receive it.
    LongLived,
}

impl ApplyOutput {
    pub fn is_unspecified(&self) -> bool {
        *self == ApplyOutput::Unspecified
    }

    /// Whether a worker that may not read long-lived secrets may receive it.
    pub fn is_short_lived(&self) -> bool {
        *self == ApplyOutput::ShortLived
    }
}
