//! Event webhooks: each event is POSTed as JSON, in order, retried with backoff, and signed so
//! that receivers can check it came from us and was not replayed.
//!
//! The signature header is `authplug-signature: t=<unix seconds>,v1=<hex>` where `v1` is
//! HMAC-SHA256 under the shared secret of `"<t>.<body>"`. A receiver recomputes it over the raw
//! body, compares in constant time, and rejects a `t` far from its clock (see [`verify`]).
//! `authplug-event-id` repeats the event id, for receivers that de-duplicate retried deliveries.

use std::time::Duration;

use authplug_protocol::Secret;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::{mpsc, oneshot};

use crate::events::Event;

pub const SIGNATURE_HEADER: &str = "authplug-signature";
pub const EVENT_ID_HEADER: &str = "authplug-event-id";

/// Where events are POSTed, and the secret that signs them.
#[derive(Debug, Clone)]
pub struct Webhook {
    pub url: String,
    pub secret: Secret,
    /// Deliveries per event before it is given up on (and logged).
    pub attempts: u32,
    /// The wait after the first failed delivery; doubled each time.
    pub backoff: Duration,
    pub timeout: Duration,
}

impl Webhook {
    pub fn new(url: impl Into<String>, secret: Secret) -> Self {
        Self {
            url: url.into(),
            secret,
            attempts: 5,
            backoff: Duration::from_millis(500),
            timeout: Duration::from_secs(10),
        }
    }
}

/// The signature header's value for `body` at `timestamp` (Unix seconds).
pub fn sign(secret: &Secret, timestamp: i64, body: &[u8]) -> String {
    format!("t={timestamp},v1={}", hex(&mac(secret, timestamp, body).finalize().into_bytes()))
}

/// Checks a signature header against `body`: the MAC must match and `t` be within `tolerance`
/// of `now` (Unix seconds).
pub fn verify(secret: &Secret, header: &str, body: &[u8], now: i64, tolerance: Duration) -> bool {
    let mut timestamp = None;
    let mut signature = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => timestamp = value.parse::<i64>().ok(),
            Some(("v1", value)) => signature = unhex(value),
            _ => {}
        }
    }
    let (Some(timestamp), Some(signature)) = (timestamp, signature) else { return false };
    if now.abs_diff(timestamp) > tolerance.as_secs() {
        return false;
    }
    mac(secret, timestamp, body).verify_slice(&signature).is_ok()
}

fn mac(secret: &Secret, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

enum Job {
    Deliver(Box<Event>),
    Flush(oneshot::Sender<()>),
}

/// The delivery worker's queue: events go out one at a time, in order.
#[derive(Debug)]
pub(crate) struct WebhookQueue {
    jobs: mpsc::UnboundedSender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Job")
    }
}

impl WebhookQueue {
    pub(crate) fn start(webhook: Webhook) -> Self {
        let (jobs, mut queue) = mpsc::unbounded_channel::<Job>();
        let client = reqwest::Client::builder()
            .timeout(webhook.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("the webhook client builds");
        tokio::spawn(async move {
            while let Some(job) = queue.recv().await {
                match job {
                    Job::Deliver(event) => deliver(&client, &webhook, &event).await,
                    Job::Flush(done) => {
                        let _ = done.send(());
                    }
                }
            }
        });
        Self { jobs }
    }

    pub(crate) fn push(&self, event: Event) {
        let _ = self.jobs.send(Job::Deliver(Box::new(event)));
    }

    pub(crate) async fn flush(&self, timeout: Duration) -> bool {
        let (done, wait) = oneshot::channel();
        if self.jobs.send(Job::Flush(done)).is_err() {
            return true;
        }
        tokio::time::timeout(timeout, wait).await.is_ok()
    }
}

async fn deliver(client: &reqwest::Client, webhook: &Webhook, event: &Event) {
    let body = serde_json::to_vec(event).expect("events serialise");
    let mut wait = webhook.backoff;
    for attempt in 1..=webhook.attempts.max(1) {
        let signature = sign(&webhook.secret, authplug_store::now_secs(), &body);
        let answer = client
            .post(&webhook.url)
            .header("content-type", "application/json")
            .header(SIGNATURE_HEADER, signature)
            .header(EVENT_ID_HEADER, &event.id)
            .body(body.clone())
            .send()
            .await;
        let retry = match &answer {
            Ok(response) if response.status().is_success() => return,
            Ok(response) => {
                let status = response.status();
                tracing::warn!(status = status.as_u16(), attempt, event = %event.id, "webhook refused the event");
                status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429
            }
            Err(error) => {
                let kind = if error.is_timeout() { "timed out" } else { "failed" };
                tracing::warn!(attempt, event = %event.id, "webhook delivery {kind}");
                true
            }
        };
        if !retry || attempt == webhook.attempts {
            break;
        }
        tokio::time::sleep(wait).await;
        wait = wait.saturating_mul(2);
    }
    tracing::error!(event = %event.id, kind = event.kind.as_str(), system = %event.system, "webhook delivery given up");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_for_its_body_secret_and_time() {
        let secret = Secret::new("whsec");
        let header = sign(&secret, 1_000, b"{\"a\":1}");
        let ten = Duration::from_secs(10);
        assert!(verify(&secret, &header, b"{\"a\":1}", 1_005, ten));
        assert!(!verify(&secret, &header, b"{\"a\":2}", 1_005, ten), "another body");
        assert!(!verify(&Secret::new("other"), &header, b"{\"a\":1}", 1_005, ten));
        assert!(!verify(&secret, &header, b"{\"a\":1}", 1_100, ten), "a replay");
        assert!(!verify(&secret, "t=1000,v1=zz", b"{\"a\":1}", 1_000, ten));
        // A known answer, computed independently (Python's hmac): HMAC-SHA256("k", "1.x").
        assert_eq!(
            sign(&Secret::new("k"), 1, b"x"),
            "t=1,v1=976cb87e4f568d1c0f03f32859e90af8597cf00b978ba37c229c97d3a15b8449"
        );
    }
}
