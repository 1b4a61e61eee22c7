//! The observer that journals a refresh attempt's request as it leaves, and reads the
//! provider's `Retry-After` from what comes back.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use authplug_host::{CallError, HttpObserver};
use authplug_protocol::{ErrorBody, HttpRequest, HttpResponse, RefreshOutcome, Secret};
use authplug_store::{Attempt, Store};

#[derive(Debug)]
pub(crate) struct Journal {
    store: Arc<Store>,
    attempt: Attempt,
    /// The lease is renewed for this long as the request leaves.
    lease_ttl: std::time::Duration,
    sent: AtomicBool,
    retry_after: Mutex<Option<u64>>,
    answered_at_ms: AtomicI64,
    /// Token-like values the provider sent back, scrubbed from anything the scheme says about
    /// the attempt (the host scrubs only what went in).
    received: Mutex<Vec<Secret>>,
}

impl Journal {
    pub(crate) fn new(store: Arc<Store>, attempt: Attempt, lease_ttl: std::time::Duration) -> Self {
        Self {
            store,
            attempt,
            lease_ttl,
            sent: AtomicBool::new(false),
            retry_after: Mutex::new(None),
            answered_at_ms: AtomicI64::new(0),
            received: Mutex::new(Vec::new()),
        }
    }

    /// When the last answer (or transport failure) came back, Unix milliseconds.
    pub(crate) fn answered_at_ms(&self) -> Option<i64> {
        Some(self.answered_at_ms.load(Ordering::SeqCst)).filter(|at| *at > 0)
    }

    /// `text` without any token-like value the provider sent during this attempt.
    pub(crate) fn scrub(&self, text: String) -> String {
        let received = self.received.lock().unwrap_or_else(|p| p.into_inner());
        received.iter().fold(text, |text, value| text.replace(value.expose(), "[redacted]"))
    }

    /// The scheme's answer with every reason and message scrubbed by [`Journal::scrub`].
    pub(crate) fn scrub_outcome(
        &self,
        outcome: Result<RefreshOutcome, CallError>,
    ) -> Result<RefreshOutcome, CallError> {
        match outcome {
            Ok(RefreshOutcome::Reauthorize { reason }) => {
                Ok(RefreshOutcome::Reauthorize { reason: self.scrub(reason) })
            }
            Ok(RefreshOutcome::Transient { reason, retry_after_secs }) => {
                Ok(RefreshOutcome::Transient { reason: self.scrub(reason), retry_after_secs })
            }
            Ok(RefreshOutcome::Unchanged { reason }) => {
                Ok(RefreshOutcome::Unchanged { reason: self.scrub(reason) })
            }
            Err(mut error) => {
                error.message = self.scrub(error.message);
                Err(error)
            }
            renewed => renewed,
        }
    }

    /// The provider's last `Retry-After` (429 or 503), in seconds.
    pub(crate) fn retry_after(&self) -> Option<u64> {
        *self.retry_after.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl HttpObserver for Journal {
    /// The first request of an attempt is where the window opens: from here until the result is
    /// stored, the provider may have consumed the refresh token. It is journaled before it
    /// leaves; a request that cannot be journaled is not sent.
    fn sending(&self, _request: &HttpRequest) -> Result<(), String> {
        if self.sent.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        // Refused unless the lease is still this attempt's: a holder whose lease lapsed while
        // it prepared the request must not send a refresh token another holder may be using.
        self.store.mark_sent(&self.attempt, self.lease_ttl).map_err(|e| {
            self.sent.store(false, Ordering::SeqCst);
            format!("not sent: the refresh could not be journaled under its lease first ({e})")
        })
    }

    fn answered(&self, response: &Result<HttpResponse, ErrorBody>) {
        self.answered_at_ms.store(self.store.clock().now_ms(), Ordering::SeqCst);
        let Ok(response) = response else { return };
        if let Ok(serde_json::Value::Object(fields)) =
            serde_json::from_slice::<serde_json::Value>(&response.body)
        {
            let mut received = self.received.lock().unwrap_or_else(|p| p.into_inner());
            for (name, value) in fields {
                match value {
                    serde_json::Value::String(value)
                        if value.len() >= 8
                            && ["token", "ticket", "secret"].iter().any(|k| name.contains(k)) =>
                    {
                        received.push(Secret::new(value))
                    }
                    _ => {}
                }
            }
        }
        if response.status != 429 && response.status != 503 {
            return;
        }
        let value = response
            .headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("retry-after"))
            .and_then(|(_, value)| parse_retry_after(value, self.store.clock().now_secs()));
        *self.retry_after.lock().unwrap_or_else(|p| p.into_inner()) = value;
    }
}

/// `Retry-After` as seconds from `now`: delta-seconds or an HTTP date (RFC 9110 10.2.3).
pub(crate) fn parse_retry_after(value: &str, now: i64) -> Option<u64> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(seconds);
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some(u64::try_from(date.timestamp() - now).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_the_provider_sent_are_scrubbed_from_reasons() {
        let dir = tempfile::tempdir().unwrap();
        let location = authplug_store::Location::Sqlite(dir.path().join("s.sqlite3"));
        let keys =
            authplug_store::Keyring::fixed(vec![authplug_store::MasterKey::generate().unwrap()]);
        let store = Arc::new(Store::open(&location, keys).unwrap());
        let attempt = Attempt::started(1, "s", "h", 1, 0);
        let journal = Journal::new(store, attempt, std::time::Duration::from_secs(1));
        let body = br#"{"access_token":"at-new-123456","token_type":"Bearer","expires_in":"x"}"#;
        journal.answered(&Ok(HttpResponse { status: 200, headers: vec![], body: body.to_vec() }));
        assert_eq!(
            journal.scrub("cannot parse at-new-123456 here".into()),
            "cannot parse [redacted] here"
        );
    }

    #[test]
    fn retry_after_takes_seconds_and_http_dates() {
        assert_eq!(parse_retry_after("120", 0), Some(120));
        let now = chrono::DateTime::parse_from_rfc2822("Wed, 21 Oct 2015 07:28:00 GMT")
            .unwrap()
            .timestamp();
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now), Some(30));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now), Some(0), "past");
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
