//! How the engine behaves. The defaults suit production; tests shorten the waits.

use std::time::Duration;

/// The engine's settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Refresh this long before expiry when the scheme declares no margin. Either margin is
    /// capped at half the credential's lifetime, so short-lived tokens are not always "due".
    pub default_margin: Duration,
    /// How long a refresh lease lasts. It is renewed at each attempt and again as the request
    /// leaves (and a holder whose lease lapsed is refused then), so it must outlast one attempt:
    /// the transport's timeout, with room for clock differences between hosts.
    pub lease_ttl: Duration,
    /// How long a caller waits for another instance's refresh before giving up.
    pub wait_for_other: Duration,
    /// How often a waiting caller re-reads the store (plus up to as much again of jitter).
    pub poll: Duration,
    pub backoff: Backoff,
    /// Refresh credentials that have not been refreshed for this long even when they are not due,
    /// for providers that expire unused refresh tokens. Off by default.
    pub keepalive: Option<Duration>,
    /// Who acts, for the audit trail.
    pub actor: String,
    /// How long an `authorize` answer is reused for the same system (bounded also by the
    /// moment its secrets become due). Zero turns the reuse off. Another instance's change to
    /// a system is seen here at most this late.
    pub authorize_cache: Duration,
    /// The most `authorize` answers kept at once, and the most bytes they may hold (an
    /// estimate: their secrets, headers and parameters). When either is reached the answers
    /// kept longest are dropped first; a store of a million systems never means a million
    /// answers in memory.
    pub authorize_cache_entries: usize,
    pub authorize_cache_bytes: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            default_margin: Duration::from_secs(300),
            lease_ttl: Duration::from_secs(120),
            wait_for_other: Duration::from_secs(90),
            poll: Duration::from_millis(25),
            backoff: Backoff::default(),
            keepalive: None,
            actor: "engine".into(),
            authorize_cache: Duration::from_secs(1),
            authorize_cache_entries: 100_000,
            authorize_cache_bytes: 64 << 20,
        }
    }
}

/// Capped exponential backoff with jitter for transient failures.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// The wait after the first failure.
    pub base: Duration,
    /// The longest wait.
    pub cap: Duration,
    /// Attempts within one refresh call before the engine gives up for now.
    pub attempts_per_call: u32,
    /// The longest wait between two attempts within one call; a longer one (a long
    /// `Retry-After`) ends the call, and is recorded so that nobody tries before it.
    pub max_wait_in_call: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(300),
            attempts_per_call: 3,
            max_wait_in_call: Duration::from_secs(10),
        }
    }
}

impl Backoff {
    /// The wait after `failures` consecutive failures (1 or more): `base * 2^(failures-1)`,
    /// capped, then scaled by `jitter` in `[0.5, 1.0]` so that instances do not retry in step.
    pub fn delay(&self, failures: u32, jitter: f64) -> Duration {
        let exponent = failures.saturating_sub(1).min(30);
        let full = self.base.saturating_mul(1u32 << exponent).min(self.cap);
        full.mul_f64(jitter.clamp(0.5, 1.0))
    }

    /// A random jitter for [`Backoff::delay`], in `[0.5, 1.0]`.
    pub fn jitter() -> f64 {
        0.5 + rand::random::<f64>() / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap_and_jitter_only_shortens() {
        let backoff = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
            ..Backoff::default()
        };
        assert_eq!(backoff.delay(1, 1.0), Duration::from_millis(100));
        assert_eq!(backoff.delay(3, 1.0), Duration::from_millis(400));
        assert_eq!(backoff.delay(30, 1.0), Duration::from_secs(1));
        assert_eq!(backoff.delay(99, 1.0), Duration::from_secs(1));
        assert_eq!(backoff.delay(3, 0.5), Duration::from_millis(200));
        assert_eq!(backoff.delay(3, 0.0), Duration::from_millis(200), "jitter is clamped");
    }
}
