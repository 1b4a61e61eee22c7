//! What each scheme's calls came to since startup, for `/metrics` and `/readyz`: calls by
//! method, failures by error code, and latency. Plain counters behind one mutex per scheme.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use authplug_protocol::ErrorCode;

/// Latency buckets, seconds (a call into a plugin is microseconds; one with HTTP, up to seconds).
pub const BUCKETS: [f64; 10] = [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 10.0];

#[derive(Debug, Default)]
pub(crate) struct CallStats {
    inner: Mutex<Counts>,
}

/// A scheme's counts, as read at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    /// Calls by method (`onboard`, `refresh`, `apply`).
    pub calls: BTreeMap<String, u64>,
    /// Failed calls by error code (`plugin_crashed`, `provider`, ...).
    pub failures: BTreeMap<String, u64>,
    /// Calls at or under each of [`BUCKETS`].
    pub buckets: [u64; BUCKETS.len()],
    pub seconds: f64,
    pub count: u64,
}

impl CallStats {
    pub(crate) fn record(&self, method: &str, took: Duration, failure: Option<&ErrorCode>) {
        let mut counts = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        *counts.calls.entry(method.to_owned()).or_default() += 1;
        if let Some(code) = failure {
            *counts.failures.entry(code.to_string()).or_default() += 1;
        }
        let seconds = took.as_secs_f64();
        for (bucket, bound) in counts.buckets.iter_mut().zip(BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        counts.seconds += seconds;
        counts.count += 1;
    }

    pub(crate) fn read(&self) -> Counts {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
