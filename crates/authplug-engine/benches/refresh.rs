//! The engine's own ceiling: refreshing 10,000 stored credentials against an in-memory token
//! endpoint that does almost nothing, compared with that endpoint's throughput measured by a
//! plain HTTP load loop in the same run, and the engine's memory per stored credential. Against
//! an endpoint this cheap, sharing the machine's cores, the ratio is the engine's CPU cost per
//! refresh next to a bare HTTP exchange; `tests/benches/oidc_refresh.rs` measures the same
//! against a real provider (issue 5, check 6).
//!
//! The endpoint rotates refresh tokens and refuses a reused one, like oidc-provider. The engine
//! runs the real path: the release `oauth2` plugin file (dlopened), the host transport, a SQLite
//! store with `synchronous=FULL`, leases and the journal. Run with `cargo xtask bench`.
//!
//! Options (environment): AUTHPLUG_BENCH_CREDENTIALS (10000), AUTHPLUG_BENCH_CONCURRENCY (16).

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use authplug_engine::{Engine, EngineConfig, Events};
use authplug_host::{HostServices, LoadOptions, Registry, Transport, TransportConfig};
use authplug_protocol::Secret;
use authplug_store::{Keyring, Location, MasterKey, NewSystem, Store};
use authplug_testkit::{FakeServer, Response};

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn plugin_dir() -> PathBuf {
    let dir =
        std::env::var_os("AUTHPLUG_BENCH_PLUGIN_DIR").map(PathBuf::from).unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/release/plugins")
        });
    assert!(dir.is_dir(), "no release plugins in {}: run `cargo xtask bench`", dir.display());
    dir
}

/// A token endpoint that rotates refresh tokens: each valid one is consumed once.
fn token_endpoint(valid: Arc<Mutex<HashSet<String>>>) -> FakeServer {
    FakeServer::start(move |request| {
        let token = request.form("refresh_token").unwrap_or_default();
        if !valid.lock().unwrap().remove(&token) {
            return Response::json(400, &serde_json::json!({"error": "invalid_grant"}));
        }
        let next = format!("rt-{:032x}", rand::random::<u128>());
        valid.lock().unwrap().insert(next.clone());
        Response::json(
            200,
            &serde_json::json!({
                "access_token": format!("at-{:032x}", rand::random::<u128>()),
                "token_type": "Bearer",
                "expires_in": 300,
                "refresh_token": next,
            }),
        )
    })
}

fn main() {
    let credentials = setting("AUTHPLUG_BENCH_CREDENTIALS", 10_000);
    let concurrency = setting("AUTHPLUG_BENCH_CONCURRENCY", 16);
    let valid: Arc<Mutex<HashSet<String>>> = Arc::default();
    let endpoint = token_endpoint(valid.clone());
    let token_url = format!("{}/token", endpoint.url());
    let runtime = tokio::runtime::Runtime::new().unwrap();

    // 1. The endpoint alone: a plain load loop, same concurrency, same request shape.
    let loop_tokens: Vec<String> = (0..credentials).map(|i| format!("loop-{i}")).collect();
    valid.lock().unwrap().extend(loop_tokens.iter().cloned());
    let client = reqwest::Client::new();
    let started = Instant::now();
    runtime.block_on(async {
        let queue = Arc::new(Mutex::new(loop_tokens));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..concurrency {
            let (queue, client, url) = (queue.clone(), client.clone(), token_url.clone());
            tasks.spawn(async move {
                loop {
                    let Some(token) = queue.lock().unwrap().pop() else { break };
                    let response = client
                        .post(&url)
                        .basic_auth("app", Some("app-secret"))
                        .form(&[("grant_type", "refresh_token"), ("refresh_token", &token)])
                        .send()
                        .await
                        .unwrap();
                    assert!(response.status().is_success());
                    response.bytes().await.unwrap();
                }
            });
        }
        while tasks.join_next().await.is_some() {}
    });
    let endpoint_rate = credentials as f64 / started.elapsed().as_secs_f64();

    // 2. The engine: 10,000 due credentials in a SQLite store, refreshed by a sweep.
    // AUTHPLUG_BENCH_DIR puts the store elsewhere (e.g. /dev/shm, to see what fsync costs).
    let dir = match std::env::var_os("AUTHPLUG_BENCH_DIR") {
        Some(base) => tempfile::tempdir_in(base).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let location = Location::Sqlite(dir.path().join("bench.sqlite3"));
    let store =
        Store::open(&location, Keyring::fixed(vec![MasterKey::generate().unwrap()])).unwrap();
    let parameters: BTreeMap<String, serde_json::Value> =
        serde_json::from_value(serde_json::json!({
            "login_url": format!("{}/auth", endpoint.url()),
            "token_url": token_url,
        }))
        .unwrap();
    let due = authplug_store::now_secs();
    for i in 0..credentials {
        let refresh = format!("engine-{i}");
        valid.lock().unwrap().insert(refresh.clone());
        store
            .create(
                NewSystem {
                    id: format!("system-{i:05}"),
                    scheme: "oauth2".into(),
                    parameters: parameters.clone(),
                    required: BTreeMap::from([
                        ("client_id".into(), Secret::new("app")),
                        ("client_secret".into(), Secret::new("app-secret")),
                    ]),
                    injected: BTreeMap::from([
                        ("oauth_access_token".into(), Secret::new("old")),
                        ("oauth_refresh_token".into(), Secret::new(refresh)),
                    ]),
                    expires_at: Some(due),
                },
                "bench",
            )
            .unwrap();
    }
    let registry = Registry::load(&LoadOptions::from_dirs([plugin_dir()]));
    assert!(registry.get("oauth2").is_some(), "the oauth2 plugin loads");
    let transport = Transport::new(
        TransportConfig { allow_loopback_http: true, ..TransportConfig::default() },
        runtime.handle().clone(),
    )
    .unwrap();
    let engine = Arc::new(Engine::new(
        Arc::new(store),
        Arc::new(registry),
        HostServices::new(Arc::new(transport)),
        EngineConfig::default(),
        Events::default(),
    ));
    let rss_before = authplug_testkit::process_memory_kib("VmRSS:");
    let started = Instant::now();
    let results = runtime.block_on(engine.sweep(concurrency)).unwrap();
    let elapsed = started.elapsed();
    let peak = authplug_testkit::process_memory_kib("VmHWM:");
    let failed: Vec<_> = results.iter().filter(|(_, r)| r.is_err()).collect();
    assert!(failed.is_empty(), "{} refreshes failed, first: {:?}", failed.len(), failed.first());
    assert_eq!(results.len(), credentials);
    let engine_rate = credentials as f64 / elapsed.as_secs_f64();

    // Where the time goes: the journal's send-to-answer and answer-to-stored times.
    let mut round_trips = Vec::new();
    let mut persist = Vec::new();
    for i in (0..credentials).step_by((credentials / 200).max(1)) {
        let attempt = &engine.store().attempts(&format!("system-{i:05}"), 1).unwrap()[0];
        let (sent, answered, finished) = (
            attempt.sent_at_ms.unwrap(),
            attempt.answered_at_ms.unwrap(),
            attempt.finished_at_ms.unwrap(),
        );
        round_trips.push(answered - sent);
        persist.push(finished - answered);
    }
    round_trips.sort();
    persist.sort();

    println!(
        "refresh of {credentials} credentials, concurrency {concurrency}, {} cores",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    println!("  endpoint alone (plain HTTP loop): {endpoint_rate:>8.0} refreshes/s");
    println!(
        "  engine (plugin, store, journal):  {engine_rate:>8.0} refreshes/s  ({:.1} s)",
        elapsed.as_secs_f64()
    );
    println!("  ratio engine/endpoint:            {:>8.2}", engine_rate / endpoint_rate);
    println!(
        "  per refresh: round trip median {} ms, answer-to-stored median {} ms (p99 {} ms)",
        round_trips[round_trips.len() / 2],
        persist[persist.len() / 2],
        persist[persist.len() * 99 / 100]
    );
    println!(
        "  memory: RSS {} KiB before the sweep, peak {} KiB: {:.0} bytes per stored credential while sweeping",
        rss_before,
        peak,
        (peak.saturating_sub(rss_before) * 1024) as f64 / credentials as f64
    );
    std::hint::black_box(Duration::ZERO);
}
