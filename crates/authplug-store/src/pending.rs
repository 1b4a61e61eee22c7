//! Onboardings waiting for their consent's callback. The browser may come back to any instance
//! sharing the store, so what the callback needs (the scheme's continuation, the user's
//! secrets) is kept here, sealed like every value, under the SHA-256 of its `state`; taking it
//! deletes it in the same statement, so a state is good for one callback across instances.

use std::time::Duration;

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::clock::after;
use crate::crypto::Place;
use crate::{Result, Store, StoreError};

impl Store {
    /// Keeps `plaintext` for the callback carrying `state`, for `ttl`.
    pub fn put_pending_onboarding(
        &self,
        state: &str,
        plaintext: &[u8],
        ttl: Duration,
    ) -> Result<()> {
        let key = state_key(state);
        let sealed = self.keys.seal(&place(&key), plaintext)?;
        let now = self.clock.now_ms();
        let until = after(now, ttl);
        if self.tx(true, |tx| tx.put_pending(&key, &sealed, until, now))? {
            Ok(())
        } else {
            Err(StoreError::Exists("a pending onboarding with the same state".into()))
        }
    }

    /// The pending onboarding of `state`, removed; `None` when it is unknown, expired or was
    /// taken already (by this instance or another).
    pub fn take_pending_onboarding(&self, state: &str) -> Result<Option<Zeroizing<Vec<u8>>>> {
        let key = state_key(state);
        let Some((sealed, until)) = self.tx(true, |tx| tx.take_pending(&key))? else {
            return Ok(None);
        };
        if until < self.clock.now_ms() {
            return Ok(None);
        }
        match self.keys.open(&place(&key), &sealed) {
            Ok(plaintext) => Ok(Some(plaintext)),
            // Sealed under a key a rotation retired during the consent (rotation reseals
            // systems, not these short-lived rows): as good as expired, the user starts again.
            Err(StoreError::WrongKey { .. }) => Ok(None),
            Err(other) => Err(other),
        }
    }
}

/// The row's key: the state's hash, so the table never holds a live state.
fn state_key(state: &str) -> String {
    Sha256::digest(state.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn place(key: &str) -> Place<'_> {
    Place { system: "(pending onboarding)", kind: "pending", name: key }
}
