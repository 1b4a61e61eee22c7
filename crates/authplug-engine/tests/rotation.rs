//! Refresh-token quirks of real providers, each against a faithful fake token endpoint:
//!
//! - one-use refresh tokens whose second use is refused (`invalid_grant`) and revokes the grant
//!   (providers that refuse a reuse within a second are the lenient case of this fake): the race
//!   that peers with two refreshers lose. The engine never sends a
//!   refresh token twice, also with two engines (two processes) on one store;
//! - a provider that returns a new refresh token only sometimes (rotation on every other
//!   refresh): the token kept is always the one that still works.

mod support;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use authplug_engine::{Engine, EngineConfig};
use authplug_store::{Keyring, Location, MasterKey, State, Store};
use authplug_testkit::{FakeServer, Response};

use oauth2_scheme as _;

const SYSTEM: &str = "crm";

/// What the fake saw: every refresh token sent, in order.
#[derive(Default)]
struct Seen {
    sent: Vec<String>,
    valid: BTreeSet<String>,
    revoked: bool,
}

/// A token endpoint whose refresh tokens work once (`rotate_every` = 1) or are replaced on every
/// `rotate_every`-th refresh only (kept valid until then).
fn provider(rotate_every: usize) -> (FakeServer, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen {
        valid: BTreeSet::from(["rt-0".to_owned()]),
        ..Seen::default()
    }));
    let shared = seen.clone();
    let server = FakeServer::start(move |request| {
        let mut seen = shared.lock().unwrap();
        let used = request.form("refresh_token").unwrap_or_default();
        let reused = seen.sent.contains(&used) && rotate_every == 1;
        seen.sent.push(used.clone());
        if reused || seen.revoked || !seen.valid.contains(&used) {
            // A second use revokes the whole grant, as one-use providers do.
            seen.revoked = true;
            return Response::json(400, &serde_json::json!({"error": "invalid_grant"}));
        }
        let n = seen.sent.len();
        let mut answer = serde_json::json!({
            "access_token": format!("at-{n}"), "token_type": "Bearer", "expires_in": 3600,
        });
        if n % rotate_every == 0 {
            seen.valid.remove(&used);
            let next = format!("rt-{n}");
            seen.valid.insert(next.clone());
            answer["refresh_token"] = next.into();
        }
        Response::json(200, &answer)
    });
    (server, seen)
}

/// A store holding `crm` onboarded at `server` with `rt-0`, and `engines` engines over it (each
/// with its own store handle, as separate processes would have).
fn engines(server: &FakeServer, engines: usize) -> (tempfile::TempDir, Vec<Arc<Engine>>) {
    let dir = tempfile::tempdir().unwrap();
    let key = MasterKey::generate().unwrap();
    let location = Location::Sqlite(dir.path().join("store.sqlite3"));
    let open = || Store::open(&location, Keyring::fixed(vec![key.clone()])).unwrap();
    let token_url = format!("{}/token", server.url());
    open().create(support::oauth2_system(SYSTEM, &token_url, &[], "rt-0", None), "test").unwrap();
    let made =
        (0..engines).map(|_| support::engine(Arc::new(open()), EngineConfig::default())).collect();
    (dir, made)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_use_refresh_tokens_are_never_sent_twice_by_two_engines_refreshing_at_once() {
    let (server, seen) = provider(1);
    let (_dir, engines) = engines(&server, 2);
    // Forced refreshes from both engines at once, within well under a second.
    let calls: Vec<_> = (0..16)
        .map(|i| {
            let engine = engines[i % 2].clone();
            tokio::spawn(async move { engine.refresh(SYSTEM).await })
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    // Concurrent forced refreshes share one grant (the single flight hands its result to those
    // waiting); refreshes one after the other, alternating engines within milliseconds, each
    // send the token the previous one stored.
    let burst = seen.lock().unwrap().sent.len();
    for i in 0..8 {
        engines[i % 2].refresh(SYSTEM).await.unwrap();
    }
    let seen = seen.lock().unwrap();
    assert!(!seen.revoked, "no refresh token was used twice: {:?}", seen.sent);
    let distinct: BTreeSet<&String> = seen.sent.iter().collect();
    assert_eq!(distinct.len(), seen.sent.len(), "{:?}", seen.sent);
    assert_eq!(seen.sent.len(), burst + 8, "each later refresh sent one grant");
    let stored = engines[1].store().get(SYSTEM).unwrap().unwrap();
    let last = format!("rt-{}", seen.sent.len());
    assert_eq!(stored.injected["oauth_refresh_token"].expose(), last);
    assert_eq!(stored.summary.state, State::Active);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_token_returned_only_sometimes_keeps_the_one_that_still_works() {
    let (server, seen) = provider(2);
    let (_dir, engines) = engines(&server, 1);
    let mut kept = Vec::new();
    for _ in 0..5 {
        let token = engines[0].refresh(SYSTEM).await.unwrap();
        kept.push(token.injected["oauth_refresh_token"].expose().to_owned());
    }
    // Rotated on the 2nd and 4th refresh only; in between the old one is kept and still works.
    assert_eq!(kept, ["rt-0", "rt-2", "rt-2", "rt-4", "rt-4"]);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.sent, ["rt-0", "rt-0", "rt-2", "rt-2", "rt-4"]);
    assert!(!seen.revoked);
}
