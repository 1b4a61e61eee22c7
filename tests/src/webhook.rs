//! A webhook receiver for the tests: it keeps what authplug delivers, once the signature
//! verifies.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use authplug_engine::webhook::{verify, SIGNATURE_HEADER};
use authplug_protocol::Secret;
use authplug_testkit::{FakeServer, Response};

/// A webhook receiver that keeps the events whose signature verifies; it answers the first
/// `fail_first` deliveries with 503, so retries are exercised.
pub fn receiver(
    secret: &str,
    fail_first: usize,
) -> (FakeServer, Arc<Mutex<Vec<serde_json::Value>>>) {
    let events: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let (kept, secret) = (events.clone(), Secret::new(secret));
    let failures = std::sync::atomic::AtomicUsize::new(0);
    let server = FakeServer::start(move |request| {
        if failures.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < fail_first {
            return Response::text(503, "busy");
        }
        let signature = request.header(SIGNATURE_HEADER).unwrap_or("");
        let now = authplug_store::now_secs();
        if !verify(&secret, signature, &request.body, now, Duration::from_secs(300)) {
            return Response::text(401, "bad signature");
        }
        kept.lock().unwrap().push(serde_json::from_slice(&request.body).unwrap());
        Response::text(204, "")
    });
    (server, events)
}

/// The kinds of the delivered events about `system`, in order.
pub fn kinds(delivered: &Mutex<Vec<serde_json::Value>>, system: &str) -> Vec<String> {
    let events = delivered.lock().unwrap();
    events
        .iter()
        .filter(|e| e["system"] == system)
        .map(|e| e["kind"].as_str().unwrap_or_default().to_owned())
        .collect()
}
