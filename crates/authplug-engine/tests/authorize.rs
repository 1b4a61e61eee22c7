//! `Engine::authorize` answers on the calling (async) thread when it can: a SQLite read on an
//! idle connection and an in-process apply. An apply that calls the host back cannot run there
//! (the HTTP callback blocks): the callback is refused before anything is sent, and the whole
//! apply runs again on a blocking thread. These tests hold the engine to that with a scheme
//! whose apply fetches a nonce from its provider for every request.

#[allow(dead_code, reason = "shared by the engine's tests; this one uses only the engine")]
mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use authplug_engine::EngineConfig;
use authplug_protocol::HttpRequest;
use authplug_sdk::prelude::*;
use authplug_store::{Keyring, Location, MasterKey, NewSystem, Store};
use authplug_testkit::{FakeServer, Response};

/// A scheme whose every request carries a fresh nonce from the provider (`nonce_url`), and the
/// key.
#[derive(Debug, Clone, Copy)]
struct NonceKey;

impl Scheme for NonceKey {
    fn descriptor(&self) -> SchemeDescriptor {
        SchemeDescriptor {
            id: "nonce_key".into(),
            display_name: "Key with a nonce per request".into(),
            serves: vec![AuthPair::new("nonce_key", None)],
            required: vec![RequiredSecret::new("key", "The key.")],
            injected: vec![InjectedSecret::new(
                "key",
                "The key.",
                Source::Copied { from: "key".into() },
            )],
            ..SchemeDescriptor::default()
        }
    }

    fn onboard(&self, request: OnboardRequest, _host: &Host<'_>) -> Result<OnboardStep, Error> {
        Ok(OnboardStep::done(request.required, None))
    }

    fn apply(&self, request: ApplyRequest, host: &Host<'_>) -> Result<ApplyResponse, Error> {
        let url = request.parameters["nonce_url"].as_str().unwrap_or_default().to_owned();
        let get = HttpRequest { method: "GET".into(), url, headers: vec![], body: vec![] };
        let answer = host.http(&get).map_err(|e| Error::new(e.code, e.message))?;
        let nonce = String::from_utf8_lossy(&answer.body).into_owned();
        let mut response = ApplyResponse::default();
        response.headers.push(("X-Nonce".into(), nonce.into()));
        response.headers.push(("X-Key".into(), request.injected["key"].clone()));
        Ok(response)
    }
}

authplug_sdk::register_scheme!(NonceKey);

fn store(dir: &tempfile::TempDir) -> Arc<Store> {
    let location = Location::Sqlite(dir.path().join("store.sqlite3"));
    let keys = Keyring::fixed(vec![MasterKey::generate().unwrap()]);
    Arc::new(Store::open(&location, keys).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apply_that_calls_the_host_is_refused_on_the_async_thread_and_made_on_a_blocking_one() {
    let served = Arc::new(AtomicUsize::new(0));
    let counter = served.clone();
    let provider = FakeServer::start(move |_| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        Response::text(200, &format!("nonce-{n}"))
    });
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let key = Secret::new("k-1");
    store
        .create(
            NewSystem {
                id: "shop".into(),
                scheme: "nonce_key".into(),
                parameters: BTreeMap::from([(
                    "nonce_url".into(),
                    format!("{}/nonce", provider.url()).into(),
                )]),
                required: BTreeMap::from([("key".into(), key.clone())]),
                injected: BTreeMap::from([("key".into(), key)]),
                expires_at: None,
            },
            "test",
        )
        .unwrap();
    // No reuse: every call computes its answer.
    let config = EngineConfig { authorize_cache: std::time::Duration::ZERO, ..Default::default() };
    let engine = support::engine(store.clone(), config);
    for call in 0..3 {
        let answer = engine.authorize("shop").await.unwrap();
        let headers: BTreeMap<&str, &str> =
            answer.applied.headers.iter().map(|(k, v)| (k.as_str(), v.expose())).collect();
        // One request per answer: the refused attempt on the async thread sent nothing.
        assert_eq!(headers["X-Nonce"], format!("nonce-{call}"));
        assert_eq!(headers["X-Key"], "k-1");
        assert_eq!(served.load(Ordering::SeqCst), call + 1);
    }
    // The refused attempts are not counted as calls (nor as failures).
    let counts = engine.registry().get("nonce_key").unwrap().counts();
    let applies = counts.calls.get("apply").copied().unwrap_or_default();
    assert_eq!(applies, 3, "{counts:?}");
    assert!(counts.failures.is_empty(), "{counts:?}");
}
