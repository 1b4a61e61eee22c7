//! Deleting with revocation while a refresh is under way: the delete waits for the refresh's
//! lease, then revokes what that refresh stored (the rotated refresh token), so no grant the
//! provider issued outlives the system. A fake token endpoint holds the refresh grant until the
//! test lets it answer; its revocation endpoint records what it was asked to revoke.

mod support;

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use authplug_engine::{EngineConfig, Revocation};
use authplug_store::{Keyring, Location, MasterKey, Store};
use authplug_testkit::{FakeServer, Response};

use oauth2_scheme as _;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_during_a_refresh_revokes_the_token_that_refresh_stored() {
    let (arrived, arrivals) = mpsc::channel::<()>();
    let (release, released) = mpsc::channel::<()>();
    let released = Mutex::new(released);
    let arrived = Mutex::new(arrived);
    let revoked: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = revoked.clone();
    let server = FakeServer::start(move |request| match request.path.as_str() {
        "/token" => {
            arrived.lock().unwrap().send(()).unwrap();
            released.lock().unwrap().recv().unwrap();
            Response::json(
                200,
                &serde_json::json!({"access_token": "at-1", "token_type": "Bearer",
                    "expires_in": 3600, "refresh_token": "rt-1"}),
            )
        }
        "/revoke" => {
            seen.lock().unwrap().push(request.form("token").unwrap_or_default());
            Response::json(200, &serde_json::json!({}))
        }
        _ => Response::json(404, &serde_json::json!({})),
    });
    let dir = tempfile::tempdir().unwrap();
    let keys = Keyring::fixed(vec![MasterKey::generate().unwrap()]);
    let store = Store::open(&Location::Sqlite(dir.path().join("s.sqlite3")), keys).unwrap();
    let revocation = vec![("revocation_url", format!("{}/revoke", server.url()))];
    let token_url = format!("{}/token", server.url());
    let expires_at = Some(authplug_store::now_secs() + 3600);
    let system = support::oauth2_system("crm", &token_url, &revocation, "rt-0", expires_at);
    store.create(system, "test").unwrap();
    let engine = support::engine(Arc::new(store), EngineConfig::default());

    // An operator's forced refresh is at the provider (rt-0 sent, rt-1 not yet stored) ...
    let refreshing = engine.clone();
    let refresh = tokio::spawn(async move { refreshing.refresh("crm").await });
    tokio::task::spawn_blocking(move || arrivals.recv()).await.unwrap().unwrap();
    // ... when another operator deletes the system with revocation; then the refresh answers.
    let deleting = engine.clone();
    let delete =
        tokio::spawn(async move { deleting.delete("crm", "ops", Revocation::Revoke).await });
    release.send(()).unwrap();
    let token = refresh.await.unwrap().unwrap();
    assert_eq!(token.injected["oauth_refresh_token"].expose(), "rt-1");
    let deleted = delete.await.unwrap().unwrap();
    assert_eq!(deleted.revoked, ["oauth_refresh_token", "oauth_access_token"]);
    assert_eq!(
        *revoked.lock().unwrap(),
        ["rt-1", "at-1"],
        "what the refresh stored is what was revoked"
    );
    assert!(engine.store().get("crm").unwrap().is_none());
}
