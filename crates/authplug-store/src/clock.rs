//! The one clock a store and the engine over it read. Production uses the system's; tests
//! inject a [`ManualClock`] ([`Store::with_clock`](crate::Store::with_clock)) to put due times,
//! leases and backoffs where they want them without waiting.
//!
//! Leases and backoffs are compared across processes and hosts, so every instance sharing a
//! store must use real time: a manual clock is for a store one test owns.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock time, as Unix milliseconds.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Now, in Unix milliseconds.
    fn now_ms(&self) -> i64;

    /// Now, in Unix seconds (rounded down).
    fn now_secs(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        now_ms()
    }
}

/// A clock that moves only when told: for tests.
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock showing `at_ms` (Unix milliseconds).
    pub fn at(at_ms: i64) -> Self {
        Self(AtomicI64::new(at_ms))
    }

    /// A clock showing the system's time now.
    pub fn starting_now() -> Self {
        Self::at(now_ms())
    }

    pub fn set(&self, at_ms: i64) {
        self.0.store(at_ms, Ordering::SeqCst);
    }

    pub fn advance(&self, by: std::time::Duration) {
        self.0.fetch_add(i64::try_from(by.as_millis()).unwrap_or(i64::MAX / 2), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// The system's time, Unix seconds (for code that has no store to ask).
pub fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// The system's time, Unix milliseconds (for code that has no store to ask).
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// `ttl` after `from_ms`, saturating.
pub(crate) fn after(from_ms: i64, ttl: std::time::Duration) -> i64 {
    from_ms.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let clock = ManualClock::at(1_500);
        assert_eq!((clock.now_ms(), clock.now_secs()), (1_500, 1));
        clock.advance(std::time::Duration::from_millis(600));
        assert_eq!(clock.now_secs(), 2);
        clock.set(-1);
        assert_eq!(clock.now_secs(), -1, "rounded down, not toward zero");
    }
}
