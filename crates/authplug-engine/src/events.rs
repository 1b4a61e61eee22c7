//! Events: one for every transition of a credential's lifecycle. Each is a structured log line
//! (target `authplug::event`), a line in the system's audit trail (written by the engine in the
//! transaction that made the transition), and, when configured, a signed webhook.

use serde::Serialize;
use tokio::sync::mpsc;

use crate::webhook::{Webhook, WebhookQueue};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// New injected secrets were stored.
    Refreshed,
    /// An attempt failed transiently; `retry_in_ms` says when the next one comes.
    RefreshFailed,
    /// The provider refused the credential for good: a human must onboard it again.
    NeedsReauth,
    /// Working again after failures or after re-authorisation.
    Recovered,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Refreshed => "refreshed",
            EventKind::RefreshFailed => "refresh_failed",
            EventKind::NeedsReauth => "needs_reauth",
            EventKind::Recovered => "recovered",
        }
    }
}

/// One event. Never carries a secret value: `reason` is the provider's error code and
/// description, scrubbed by the host of the call's values.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// Unique, for receivers that get a retried delivery twice.
    pub id: String,
    pub kind: EventKind,
    pub system: String,
    pub scheme: String,
    /// RFC 3339, UTC, milliseconds.
    pub at: String,
    /// The lease holder that acted: `host/pid/nonce#n`.
    pub holder: String,
    /// The attempt within the call (1, 2, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// When the stored secrets stop working, Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The backoff before the next attempt, milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_in_ms: Option<u64>,
    /// What the provider asked for in `Retry-After`, seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
    /// Consecutive failed attempts so far.
    pub failures: i64,
}

impl Event {
    /// An event of `kind` about `system`, by `holder`, at `now` (Unix milliseconds).
    pub(crate) fn new(kind: EventKind, system: &str, scheme: &str, holder: &str, now: i64) -> Self {
        let at = chrono::DateTime::from_timestamp_millis(now)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_default();
        Self {
            id: format!("{now:x}-{:016x}", rand::random::<u64>()),
            kind,
            system: system.to_owned(),
            scheme: scheme.to_owned(),
            at,
            holder: holder.to_owned(),
            attempt: None,
            expires_at: None,
            reason: None,
            retry_in_ms: None,
            retry_after_secs: None,
            failures: 0,
        }
    }
}

impl Event {
    /// The event as an audit line `(action, detail)`, written with the transition it reports.
    pub(crate) fn audit_line(&self) -> (String, serde_json::Value) {
        (self.kind.as_str().to_owned(), serde_json::to_value(self).expect("events serialise"))
    }
}

/// Where events go: the log, an optional webhook, and in-process listeners.
#[derive(Debug, Default)]
pub struct Events {
    webhook: Option<WebhookQueue>,
    listeners: std::sync::Mutex<Vec<mpsc::UnboundedSender<Event>>>,
}

impl Events {
    /// Events delivered to `webhook` as well as logged. Must be called inside a tokio runtime.
    pub fn with_webhook(webhook: Webhook) -> Self {
        Self { webhook: Some(WebhookQueue::start(webhook)), ..Self::default() }
    }

    /// A channel receiving every later event (the server's stream, tests).
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<Event> {
        let (sender, receiver) = mpsc::unbounded_channel();
        self.listeners.lock().unwrap_or_else(|p| p.into_inner()).push(sender);
        receiver
    }

    pub(crate) fn emit(&self, event: Event) {
        let fields = (
            event.kind.as_str(),
            event.system.as_str(),
            event.scheme.as_str(),
            event.reason.as_deref().unwrap_or(""),
        );
        match event.kind {
            EventKind::Refreshed | EventKind::Recovered => tracing::info!(
                target: "authplug::event",
                event = fields.0, system = fields.1, scheme = fields.2,
                expires_at = event.expires_at, attempt = event.attempt, holder = %event.holder,
                "{} {}", fields.1, fields.0
            ),
            EventKind::RefreshFailed => tracing::warn!(
                target: "authplug::event",
                event = fields.0, system = fields.1, scheme = fields.2, reason = fields.3,
                attempt = event.attempt, retry_in_ms = event.retry_in_ms,
                retry_after_secs = event.retry_after_secs, failures = event.failures,
                holder = %event.holder,
                "{} {}: {}", fields.1, fields.0, fields.3
            ),
            EventKind::NeedsReauth => tracing::error!(
                target: "authplug::event",
                event = fields.0, system = fields.1, scheme = fields.2, reason = fields.3,
                holder = %event.holder,
                "{} {}: {}", fields.1, fields.0, fields.3
            ),
        }
        self.listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|listener| listener.send(event.clone()).is_ok());
        if let Some(webhook) = &self.webhook {
            webhook.push(event);
        }
    }

    /// Waits until every event so far was delivered to the webhook (or given up on), at most
    /// `timeout`. Returns false on timeout. A command calls this before it exits.
    pub async fn flush(&self, timeout: std::time::Duration) -> bool {
        match &self.webhook {
            Some(webhook) => webhook.flush(timeout).await,
            None => true,
        }
    }
}
