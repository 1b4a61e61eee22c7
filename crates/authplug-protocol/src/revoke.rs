//! Revocation (since 1.5): before a system is deleted, its scheme may revoke the credential at
//! the provider (RFC 7009 for OAuth2), so that no grant outlives the connection.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Secret;

/// Input of [`crate::method::REVOKE`]: the stored credential to revoke.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RevokeRequest {
    pub scheme: String,
    pub required: BTreeMap<String, Secret>,
    pub injected: BTreeMap<String, Secret>,
    #[serde(default)]
    pub parameters: BTreeMap<String, serde_json::Value>,
}

/// Output of [`crate::method::REVOKE`]. A provider that refused or failed to revoke is an error
/// (`provider`, or `http` for one that could not be reached), not this answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revoked {
    /// The injected secrets the provider revoked, by name (e.g. `oauth_refresh_token`).
    #[serde(default)]
    pub revoked: Vec<String>,
    /// What the operator should know: a token the provider does not revoke (it lapses at its
    /// expiry), or a connector that declares no revocation endpoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}
