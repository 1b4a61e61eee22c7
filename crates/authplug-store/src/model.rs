//! What the store keeps, as its callers see it: systems with their secrets, the changes made to
//! them, and the audit trail. Every enum here is stored by name ([`State::as_str`] and friends)
//! and parsed back strictly: a name no authplug writes is a damaged store, not a default.

use std::collections::BTreeMap;
use std::fmt;

use authplug_protocol::Secret;
use serde::{Deserialize, Serialize};

use crate::{Result, StoreError};

/// The lifecycle state of a stored credential. (A refresh in flight is not a state: it is a held
/// lease with an unfinished attempt, which `authplug status` shows as `refreshing`.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Active,
    /// The provider refused the credential: a human must onboard it again.
    NeedsReauth,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Active => "active",
            State::NeedsReauth => "needs_reauth",
        }
    }

    pub(crate) fn parse(text: &str) -> Result<Self> {
        match text {
            "active" => Ok(State::Active),
            "needs_reauth" => Ok(State::NeedsReauth),
            other => {
                Err(StoreError::corrupt(format!("unknown state {other:?} in the systems table")))
            }
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A state to set, with the reason that goes with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lifecycle {
    Active,
    /// With the provider's reason.
    NeedsReauth(String),
}

impl Lifecycle {
    pub fn state(&self) -> State {
        match self {
            Lifecycle::Active => State::Active,
            Lifecycle::NeedsReauth(_) => State::NeedsReauth,
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            Lifecycle::Active => None,
            Lifecycle::NeedsReauth(reason) => Some(reason),
        }
    }

    /// From a stored state and reason (a reason without `needs_reauth` is dropped).
    pub fn from_parts(state: State, reason: Option<String>) -> Self {
        match state {
            State::Active => Lifecycle::Active,
            State::NeedsReauth => Lifecycle::NeedsReauth(reason.unwrap_or_default()),
        }
    }
}

/// What [`Store::delete_at`](crate::Store::delete_at) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deletion {
    Deleted,
    /// The system changed since the version given: nothing was deleted.
    Moved,
    /// There is no such system.
    Gone,
}

/// Which set a secret belongs to: what the user supplied, or what the scheme injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SecretKind {
    Required,
    Injected,
}

impl SecretKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SecretKind::Required => "required",
            SecretKind::Injected => "injected",
        }
    }

    pub(crate) fn parse(text: &str) -> Result<Self> {
        match text {
            "required" => Ok(SecretKind::Required),
            "injected" => Ok(SecretKind::Injected),
            other => Err(StoreError::corrupt(format!("unknown secret kind {other:?}"))),
        }
    }
}

/// The parameter under which onboarding records a system's connector (`{"name": ...}`); the
/// store keeps the name in a column of its own, to filter listings by it.
pub const CONNECTOR_PARAMETER: &str = "connector";

/// A system as stored, with its secrets decrypted.
#[derive(Debug, Clone, PartialEq)]
pub struct SystemRecord {
    pub summary: SystemSummary,
    pub required: BTreeMap<String, Secret>,
    pub injected: BTreeMap<String, Secret>,
}

/// A system's metadata: everything but the values.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SystemSummary {
    pub id: String,
    pub scheme: String,
    pub state: State,
    /// Why the state is what it is (the provider's reason for `needs_reauth`).
    pub state_reason: Option<String>,
    pub parameters: BTreeMap<String, serde_json::Value>,
    /// When the injected secrets stop working, Unix seconds.
    pub expires_at: Option<i64>,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_refresh_at: Option<i64>,
    pub failures: i64,
    /// Secret names, `required.x` / `injected.y`, for listings.
    pub secret_names: Vec<String>,
    /// Key ids the values are sealed under.
    pub key_ids: Vec<String>,
    /// When a sweep should next look at the system, Unix seconds (see [`crate::schedule`]);
    /// `None`: never (its secrets do not expire, or it needs re-authorisation).
    pub due_at: Option<i64>,
}

impl SystemSummary {
    /// When the injected secrets were issued (their last refresh, or the onboarding), Unix
    /// seconds.
    pub fn issued_at(&self) -> i64 {
        self.last_refresh_at.unwrap_or(self.created_at)
    }
}

/// A system to create.
#[derive(Debug, Clone, Default)]
pub struct NewSystem {
    pub id: String,
    pub scheme: String,
    pub parameters: BTreeMap<String, serde_json::Value>,
    pub required: BTreeMap<String, Secret>,
    pub injected: BTreeMap<String, Secret>,
    pub expires_at: Option<i64>,
}

/// A new set of injected secrets and when it stops working: the two always change together.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Injected {
    pub secrets: BTreeMap<String, Secret>,
    /// Unix seconds; `None`: they do not expire.
    pub expires_at: Option<i64>,
    /// How long before expiry the engine will refresh them (its scheme's margin), so that the
    /// store indexes the moment they fall due; `None`: the earliest any margin could give (half
    /// their lifetime before expiry), which the sweep refines.
    pub margin_secs: Option<i64>,
}

impl Injected {
    pub fn new(secrets: BTreeMap<String, Secret>, expires_at: Option<i64>) -> Self {
        Self { secrets, expires_at, margin_secs: None }
    }

    /// The same, falling due `margin_secs` before expiry (capped at half the lifetime).
    pub fn with_margin(mut self, margin_secs: i64) -> Self {
        self.margin_secs = Some(margin_secs);
        self
    }
}

/// A change to a system; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct Change {
    pub scheme: Option<String>,
    pub parameters: Option<BTreeMap<String, serde_json::Value>>,
    /// Replaces the whole set of required secrets.
    pub required: Option<BTreeMap<String, Secret>>,
    /// Replaces the whole set of injected secrets, and their expiry.
    pub injected: Option<Injected>,
    pub state: Option<Lifecycle>,
    pub last_refresh_at: Option<i64>,
    pub failures: Option<i64>,
}

/// One line of the audit trail: who did what to which system, when. Never a value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub system_id: String,
    /// Unix seconds.
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub detail: serde_json::Value,
}

/// What [`Store::onboarded`](crate::Store::onboarded) stored.
#[derive(Debug, Clone)]
pub struct Onboarded {
    pub record: SystemRecord,
    /// The system it replaced, as it was (`None`: a new system).
    pub previous: Option<SystemSummary>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_names_read_back_and_unknown_ones_are_damage() {
        for state in [State::Active, State::NeedsReauth] {
            assert_eq!(State::parse(state.as_str()).unwrap(), state);
        }
        for kind in [SecretKind::Required, SecretKind::Injected] {
            assert_eq!(SecretKind::parse(kind.as_str()).unwrap(), kind);
        }
        assert!(matches!(State::parse("refreshing"), Err(StoreError::Corrupt { .. })));
        assert!(matches!(SecretKind::parse(""), Err(StoreError::Corrupt { .. })));
        let back = Lifecycle::from_parts(State::NeedsReauth, Some("invalid_grant".into()));
        assert_eq!((back.state(), back.reason()), (State::NeedsReauth, Some("invalid_grant")));
        assert_eq!(Lifecycle::from_parts(State::Active, Some("x".into())).reason(), None);
    }
}
