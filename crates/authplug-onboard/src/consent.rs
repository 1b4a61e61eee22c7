//! The consent step: a scheme sends the user to the provider, and the provider sends the
//! browser back with a `state`. Either the front end waits for that callback itself (the CLI's
//! loopback server), or the onboarding waits sealed in the store for the callback to reach any
//! instance sharing it ([`Park`], the server's).

use std::collections::BTreeMap;
use std::time::Duration;

use authplug_protocol::Secret;
use authplug_store::Store;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::{OnboardError, Plan};

/// How the browser comes back from a consent.
pub trait Consent {
    /// The scheme sent the user to `url`; the provider will call back with `state`. Answer the
    /// callback's query when it has come, or [`Answer::Later`] once `parked` is kept for
    /// [`Onboarder::resume`](crate::Onboarder::resume).
    fn redirect(
        &mut self,
        url: &str,
        state: &str,
        parked: Parked<'_>,
    ) -> Result<Answer, OnboardError>;
}

/// What a consent gave back.
#[derive(Debug)]
pub enum Answer {
    /// The callback's query parameters (`state`, `code`, or `error`).
    Callback(BTreeMap<String, String>),
    /// The onboarding is parked; the callback will resume it.
    Later,
}

/// An onboarding waiting for its consent, ready to be kept. Holds secrets: never printed.
pub struct Parked<'a> {
    pub(crate) store: &'a Store,
    pub(crate) state: &'a str,
    pub(crate) plan: &'a Plan,
    pub(crate) continuation: &'a Secret,
}

impl std::fmt::Debug for Parked<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parked").field("system", &self.plan.system).finish_non_exhaustive()
    }
}

impl Parked<'_> {
    /// Seals the onboarding in the store under the state's hash, for `ttl`: the callback may
    /// reach any instance sharing the store, once.
    pub fn keep(self, ttl: Duration) -> Result<(), OnboardError> {
        let pending = PendingRef { plan: self.plan, continuation: self.continuation };
        let bytes = Zeroizing::new(
            serde_json::to_vec(&pending)
                .map_err(|_| OnboardError::Consent("cannot encode an onboarding".into()))?,
        );
        Ok(self.store.put_pending_onboarding(self.state, &bytes, ttl)?)
    }
}

/// Parks every consent in the store for the given time: the server's way.
#[derive(Debug, Clone, Copy)]
pub struct Park(pub Duration);

impl Consent for Park {
    fn redirect(
        &mut self,
        _url: &str,
        _state: &str,
        parked: Parked<'_>,
    ) -> Result<Answer, OnboardError> {
        parked.keep(self.0)?;
        Ok(Answer::Later)
    }
}

#[derive(Serialize)]
struct PendingRef<'a> {
    plan: &'a Plan,
    continuation: &'a Secret,
}

/// A parked onboarding, taken back from the store by its callback's `state`. Holds secrets.
#[derive(Deserialize)]
pub struct Pending {
    pub(crate) plan: Plan,
    pub(crate) continuation: Secret,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").field("system", &self.plan.system).finish_non_exhaustive()
    }
}

impl Pending {
    /// The system it onboards.
    pub fn system(&self) -> &str {
        &self.plan.system
    }

    /// Where the front end sends the browser when done, if it said.
    pub fn return_to(&self) -> Option<&str> {
        self.plan.return_to.as_deref()
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, OnboardError> {
        serde_json::from_slice(bytes).map_err(|_| {
            OnboardError::Consent("a pending onboarding could not be read back".into())
        })
    }
}
