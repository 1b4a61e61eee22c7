//! The engine against a real token endpoint: oidc-provider (refresh tokens rotated, RS256 JWT
//! access tokens), compared with a plain HTTP loop of refresh grants against the same server in
//! the same run. The companion of `authplug-engine`'s in-memory endpoint bench: that one shows
//! the engine's own ceiling, this one what it costs against a provider that does real work.
//! Run with `cargo xtask bench`. AUTHPLUG_BENCH_GRANTS (default 64: the in-memory adapter keeps about 1000 objects, so about 150 grants) grants per side.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use authplug_engine::{EngineConfig, Events};
use tests::lifecycle::Lab;

fn main() {
    if std::env::var_os("AUTHPLUG_TEST_PEERS_DIR").is_none() {
        eprintln!("AUTHPLUG_TEST_PEERS_DIR not set: oidc-provider bench skipped (use `cargo xtask bench`)");
        return;
    }
    let grants: usize =
        std::env::var("AUTHPLUG_BENCH_GRANTS").ok().and_then(|v| v.parse().ok()).unwrap_or(64);
    let concurrency: usize =
        std::env::var("AUTHPLUG_BENCH_CONCURRENCY").ok().and_then(|v| v.parse().ok()).unwrap_or(16);
    let lab = Lab::sqlite_direct();
    let started = Instant::now();
    let loop_tokens: Vec<String> =
        (0..grants).map(|_| lab.consent().0["oauth_refresh_token"].expose().to_owned()).collect();
    for i in 1..grants {
        lab.onboard_new(&format!("system-{i:04}"));
    }
    eprintln!("{} grants by consent in {:.1} s", 2 * grants, started.elapsed().as_secs_f64());

    let url = format!("{}/token", lab.provider.issuer);
    let started = Instant::now();
    lab.host.block_on(async {
        let client = reqwest::Client::new();
        let queue = Arc::new(Mutex::new(loop_tokens));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..concurrency {
            let (queue, client, url) = (queue.clone(), client.clone(), url.clone());
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
                    let status = response.status();
                    let body = response.bytes().await.unwrap();
                    assert!(status.is_success(), "{status}: {}", String::from_utf8_lossy(&body));
                }
            });
        }
        while tasks.join_next().await.is_some() {}
    });
    let endpoint_rate = grants as f64 / started.elapsed().as_secs_f64();

    // Every system refreshed once: keep-alive at 0 makes them all count as idle.
    let config = EngineConfig { keepalive: Some(Duration::ZERO), ..EngineConfig::default() };
    let engine = lab.engine(config, Duration::from_secs(30), Events::default());
    let started = Instant::now();
    let results = lab.host.block_on(engine.sweep(concurrency)).unwrap();
    let elapsed = started.elapsed();
    assert_eq!(results.len(), grants);
    assert!(results.iter().all(|(_, r)| r.is_ok()), "every refresh succeeded");
    let engine_rate = grants as f64 / elapsed.as_secs_f64();
    println!("refresh of {grants} credentials against oidc-provider, concurrency {concurrency}");
    println!("  oidc-provider alone (plain HTTP loop): {endpoint_rate:>7.0} refreshes/s");
    println!("  engine (plugin, store, journal):       {engine_rate:>7.0} refreshes/s");
    println!("  ratio engine/endpoint:                 {:>7.2}", engine_rate / endpoint_rate);
}
