//! `/metrics` in the Prometheus text format: lifecycle events by kind (counted from the engine's
//! event stream), credentials per state (read from the store at scrape time), and HTTP requests
//! by route and status with a latency histogram. Counters are plain atomics behind one mutex:
//! no metrics crate is needed for a dozen series.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// Latency buckets, seconds.
const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

/// The plugin series: calls by scheme and method, failures by error code, restarts and
/// whether it is down (isolated plugins), and call latency.
pub fn render_plugins(out: &mut String, registry: &authplug_host::Registry) {
    let schemes: Vec<_> = registry.schemes().map(|s| (s.id(), s.counts(), s)).collect();
    out.push_str("# HELP authplug_plugin_calls_total Calls into schemes by method.\n");
    out.push_str("# TYPE authplug_plugin_calls_total counter\n");
    for (id, counts, _) in &schemes {
        for (method, count) in &counts.calls {
            let _ = writeln!(
                out,
                "authplug_plugin_calls_total{{scheme=\"{id}\",method=\"{method}\"}} {count}"
            );
        }
    }
    out.push_str("# HELP authplug_plugin_failures_total Failed calls into schemes by error code (plugin_crashed, plugin_timeout, plugin_panic, provider, ...).\n");
    out.push_str("# TYPE authplug_plugin_failures_total counter\n");
    for (id, counts, _) in &schemes {
        for (code, count) in &counts.failures {
            let _ = writeln!(
                out,
                "authplug_plugin_failures_total{{scheme=\"{id}\",code=\"{code}\"}} {count}"
            );
        }
    }
    out.push_str("# HELP authplug_plugin_restarts_total Times an isolated plugin's process was started again after it failed (per file: its schemes share one).\n");
    out.push_str("# TYPE authplug_plugin_restarts_total counter\n");
    let isolated: Vec<_> = schemes.iter().filter(|(_, _, s)| s.restarts().is_some()).collect();
    for (id, _, scheme) in &isolated {
        let restarts = scheme.restarts().unwrap_or_default();
        let _ = writeln!(out, "authplug_plugin_restarts_total{{scheme=\"{id}\"}} {restarts}");
    }
    out.push_str("# HELP authplug_plugin_degraded Whether an isolated plugin's process is down (1) until it is started again.\n");
    out.push_str("# TYPE authplug_plugin_degraded gauge\n");
    for (id, _, scheme) in &isolated {
        let down = u8::from(scheme.degraded());
        let _ = writeln!(out, "authplug_plugin_degraded{{scheme=\"{id}\"}} {down}");
    }
    out.push_str("# HELP authplug_plugin_call_duration_seconds Latency of calls into schemes.\n");
    out.push_str("# TYPE authplug_plugin_call_duration_seconds histogram\n");
    for (id, counts, _) in &schemes {
        for (bound, count) in authplug_host::CALL_BUCKETS.iter().zip(counts.buckets) {
            let _ = writeln!(out, "authplug_plugin_call_duration_seconds_bucket{{scheme=\"{id}\",le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(
            out,
            "authplug_plugin_call_duration_seconds_bucket{{scheme=\"{id}\",le=\"+Inf\"}} {}",
            counts.count
        );
        let _ = writeln!(
            out,
            "authplug_plugin_call_duration_seconds_sum{{scheme=\"{id}\"}} {}",
            counts.seconds
        );
        let _ = writeln!(
            out,
            "authplug_plugin_call_duration_seconds_count{{scheme=\"{id}\"}} {}",
            counts.count
        );
    }
}

/// One unlabelled metric: its help, its type (`gauge` or `counter`) and its value.
fn single(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
}

/// The authorize cache's size: answers kept, the bytes they hold, and those dropped for room.
pub fn render_cache(out: &mut String, (entries, bytes, evicted): (usize, usize, u64)) {
    let cache = "authplug_authorize_cache";
    single(out, &format!("{cache}_entries"), "gauge", "Authorize answers kept in memory.", entries);
    let held = "What the kept answers hold (estimated).";
    single(out, &format!("{cache}_bytes"), "gauge", held, bytes);
    let evicted_help = "Answers dropped before their time to make room (--authorize-cache-entries, --authorize-cache-mib).";
    single(out, &format!("{cache}_evicted_total"), "counter", evicted_help, evicted);
}

/// The authorize audit's backlog: token-and-system pairs waiting to be written, and calls
/// not audited because the backlog was full.
pub fn render_audit(out: &mut String, waiting: usize, not_audited: u64) {
    let waiting_help =
        "Token-and-system pairs of authorize calls waiting to be written to the audit trail.";
    single(out, "authplug_authorize_audit_waiting", "gauge", waiting_help, waiting);
    let dropped_help =
        "Authorize calls not audited: the backlog was full (the store refusing writes).";
    single(out, "authplug_authorize_audit_dropped_total", "counter", dropped_help, not_audited);
}

#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    events: BTreeMap<&'static str, u64>,
    /// (route, status) -> count.
    requests: BTreeMap<(&'static str, u16), u64>,
    /// route -> (bucket counts, sum of seconds, count).
    latency: BTreeMap<&'static str, ([u64; BUCKETS.len()], f64, u64)>,
    sweeps: Sweeps,
}

/// The sweeps so far, and the last one's figures.
#[derive(Debug, Default)]
struct Sweeps {
    total: u64,
    errors: u64,
    last_seconds: f64,
    last_refreshed: u64,
    last_failed: u64,
}

impl Metrics {
    pub fn event(&self, kind: &'static str) {
        *self.lock().events.entry(kind).or_default() += 1;
    }

    pub fn request(&self, route: &'static str, status: u16, took: Duration) {
        let mut inner = self.lock();
        *inner.requests.entry((route, status)).or_default() += 1;
        let seconds = took.as_secs_f64();
        let (buckets, sum, count) = inner.latency.entry(route).or_default();
        for (bucket, bound) in buckets.iter_mut().zip(BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        *sum += seconds;
        *count += 1;
    }

    /// A sweep that ended: how long it took, the systems it refreshed and those it failed to.
    pub fn sweep(&self, took: Duration, refreshed: u64, failed: u64) {
        let sweeps = &mut self.lock().sweeps;
        sweeps.total += 1;
        sweeps.last_seconds = took.as_secs_f64();
        (sweeps.last_refreshed, sweeps.last_failed) = (refreshed, failed);
    }

    /// A sweep that could not run (the store failed it).
    pub fn sweep_failed(&self, took: Duration) {
        let sweeps = &mut self.lock().sweeps;
        sweeps.total += 1;
        sweeps.errors += 1;
        sweeps.last_seconds = took.as_secs_f64();
        (sweeps.last_refreshed, sweeps.last_failed) = (0, 0);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The exposition, with the credential counts by state and the authorize cache's hits and
    /// misses given by the caller.
    pub fn render(&self, states: &BTreeMap<String, u64>, cache: (u64, u64)) -> String {
        let inner = self.lock();
        let mut out = String::new();
        out.push_str("# HELP authplug_lifecycle_events_total Lifecycle events: refreshed, refresh_failed, needs_reauth, recovered.\n");
        out.push_str("# TYPE authplug_lifecycle_events_total counter\n");
        for kind in ["refreshed", "refresh_failed", "needs_reauth", "recovered"] {
            let count = inner.events.get(kind).copied().unwrap_or(0);
            let _ = writeln!(out, "authplug_lifecycle_events_total{{kind=\"{kind}\"}} {count}");
        }
        out.push_str("# HELP authplug_credentials Stored systems by lifecycle state.\n");
        out.push_str("# TYPE authplug_credentials gauge\n");
        for (state, count) in states {
            let _ = writeln!(out, "authplug_credentials{{state=\"{state}\"}} {count}");
        }
        let sweeps = &inner.sweeps;
        out.push_str(
            "# HELP authplug_sweeps_total Sweeps ended (the store's failures included).\n",
        );
        out.push_str("# TYPE authplug_sweeps_total counter\n");
        let _ = writeln!(out, "authplug_sweeps_total {}", sweeps.total);
        out.push_str("# HELP authplug_sweep_errors_total Sweeps the store failed.\n");
        out.push_str("# TYPE authplug_sweep_errors_total counter\n");
        let _ = writeln!(out, "authplug_sweep_errors_total {}", sweeps.errors);
        out.push_str("# HELP authplug_sweep_duration_seconds How long the last sweep took.\n");
        out.push_str("# TYPE authplug_sweep_duration_seconds gauge\n");
        let _ = writeln!(out, "authplug_sweep_duration_seconds {}", sweeps.last_seconds);
        out.push_str("# HELP authplug_sweep_refreshed Systems the last sweep refreshed.\n");
        out.push_str("# TYPE authplug_sweep_refreshed gauge\n");
        let _ = writeln!(out, "authplug_sweep_refreshed {}", sweeps.last_refreshed);
        out.push_str("# HELP authplug_sweep_failed Systems the last sweep failed to refresh.\n");
        out.push_str("# TYPE authplug_sweep_failed gauge\n");
        let _ = writeln!(out, "authplug_sweep_failed {}", sweeps.last_failed);
        out.push_str("# HELP authplug_authorize_cache_total Authorize calls answered from memory (hit) or not (miss).\n");
        out.push_str("# TYPE authplug_authorize_cache_total counter\n");
        let _ = writeln!(out, "authplug_authorize_cache_total{{result=\"hit\"}} {}", cache.0);
        let _ = writeln!(out, "authplug_authorize_cache_total{{result=\"miss\"}} {}", cache.1);
        out.push_str("# HELP authplug_http_requests_total HTTP requests by route and status.\n");
        out.push_str("# TYPE authplug_http_requests_total counter\n");
        for ((route, status), count) in &inner.requests {
            let _ = writeln!(
                out,
                "authplug_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {count}"
            );
        }
        out.push_str(
            "# HELP authplug_http_request_duration_seconds HTTP request latency by route.\n",
        );
        out.push_str("# TYPE authplug_http_request_duration_seconds histogram\n");
        for (route, (buckets, sum, count)) in &inner.latency {
            for (bucket, bound) in buckets.iter().zip(BUCKETS) {
                let _ = writeln!(out, "authplug_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {bucket}");
            }
            let _ = writeln!(out, "authplug_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {count}");
            let _ = writeln!(
                out,
                "authplug_http_request_duration_seconds_sum{{route=\"{route}\"}} {sum}"
            );
            let _ = writeln!(
                out,
                "authplug_http_request_duration_seconds_count{{route=\"{route}\"}} {count}"
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_counts_and_buckets() {
        let metrics = Metrics::default();
        metrics.event("refreshed");
        metrics.event("refreshed");
        metrics.request("/v1/systems/{id}/secrets", 200, Duration::from_millis(3));
        let text = metrics.render(&BTreeMap::from([("active".to_owned(), 2)]), (7, 3));
        assert!(text.contains("authplug_authorize_cache_total{result=\"hit\"} 7\n"));
        assert!(text.contains("authplug_lifecycle_events_total{kind=\"refreshed\"} 2\n"));
        assert!(text.contains("authplug_lifecycle_events_total{kind=\"needs_reauth\"} 0\n"));
        assert!(text.contains("authplug_credentials{state=\"active\"} 2\n"));
        assert!(text.contains("le=\"0.0025\"} 0\n") && text.contains("le=\"0.005\"} 1\n"));
        assert!(text.contains(
            "authplug_http_requests_total{route=\"/v1/systems/{id}/secrets\",status=\"200\"} 1\n"
        ));
    }

    #[test]
    fn the_cache_and_audit_sizes_are_a_help_a_type_and_a_value_each() {
        let mut text = String::new();
        render_cache(&mut text, (4, 1024, 2));
        render_audit(&mut text, 17, 5);
        for (name, kind, value) in [
            ("authplug_authorize_cache_entries", "gauge", "4"),
            ("authplug_authorize_cache_bytes", "gauge", "1024"),
            ("authplug_authorize_cache_evicted_total", "counter", "2"),
            ("authplug_authorize_audit_waiting", "gauge", "17"),
            ("authplug_authorize_audit_dropped_total", "counter", "5"),
        ] {
            let at = text.find(&format!("# HELP {name} ")).unwrap_or_else(|| panic!("{name}"));
            let lines: Vec<&str> = text[at..].lines().take(3).collect();
            assert_eq!(lines[1], format!("# TYPE {name} {kind}"));
            assert_eq!(lines[2], format!("{name} {value}"));
        }
        assert_eq!(text.lines().count(), 15, "three lines each, nothing else");
    }
}
