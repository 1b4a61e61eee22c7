//! The observer that journals a refresh attempt's request as it leaves, and reads the
//! provider's `Retry-After` from what comes back.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use authplug_host::HttpObserver;
use authplug_protocol::{ErrorBody, HttpRequest, HttpResponse};
use authplug_store::{Attempt, Store};

#[derive(Debug)]
pub(crate) struct Journal {
    store: Arc<Store>,
    attempt: Attempt,
    sent: AtomicBool,
    retry_after: Mutex<Option<u64>>,
    answered_at_ms: AtomicI64,
}

impl Journal {
    pub(crate) fn new(store: Arc<Store>, attempt: Attempt) -> Self {
        Self {
            store,
            attempt,
            sent: AtomicBool::new(false),
            retry_after: Mutex::new(None),
            answered_at_ms: AtomicI64::new(0),
        }
    }

    /// When the last answer (or transport failure) came back, Unix milliseconds.
    pub(crate) fn answered_at_ms(&self) -> Option<i64> {
        Some(self.answered_at_ms.load(Ordering::SeqCst)).filter(|at| *at > 0)
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
        self.store.mark_sent(&self.attempt).map_err(|e| {
            self.sent.store(false, Ordering::SeqCst);
            format!("not sent: the refresh could not be journaled first ({e})")
        })
    }

    fn answered(&self, response: &Result<HttpResponse, ErrorBody>) {
        self.answered_at_ms.store(authplug_store::now_ms(), Ordering::SeqCst);
        let Ok(response) = response else { return };
        if response.status != 429 && response.status != 503 {
            return;
        }
        let value = response
            .headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("retry-after"))
            .and_then(|(_, value)| parse_retry_after(value, authplug_store::now_secs()));
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
