//! Issue 5, check 6: refreshing 10,000 credentials against a local token endpoint, oidc-provider
//! (refresh tokens rotated and reuse detected, RS256 JWT access tokens), compared with a plain
//! HTTP load loop of refresh grants against the same server in the same run; and the engine's
//! memory per stored credential.
//!
//! The grants come from the real consent. The plain loop refreshes each grant once and keeps the
//! rotated refresh token; those tokens are then stored and the engine refreshes every one of them
//! again with a sweep: the release `oauth2` plugin file (dlopened), the host transport, the
//! SQLite store with `synchronous=FULL`, leases and the journal. The loop runs first, so the
//! engine meets the bigger server (more objects in its memory adapter).
//!
//! A real provider runs on other machines than the engine. On one machine the two would compete
//! for the same cores, and the ratio would measure how CPU is shared rather than what the engine
//! costs the endpoint. So by default the provider is pinned to CPU 0 and this process (the plain
//! loop and the engine alike) to the others; AUTHPLUG_BENCH_PIN=0 shares every core and reports
//! that figure instead. The CPU time per refresh of both sides is printed either way.
//!
//! Run with `cargo xtask bench`. Options (environment): AUTHPLUG_BENCH_GRANTS (10000),
//! AUTHPLUG_BENCH_CONCURRENCY (32), AUTHPLUG_BENCH_PIN (1).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use authplug_engine::{EngineConfig, Events};
use authplug_protocol::Secret;
use authplug_store::NewSystem;
use tests::lifecycle::Lab;

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// User plus system CPU time of a process so far, in seconds.
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime and stime are 14 and 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: f64 =
        fields.get(11..13).map_or(0.0, |f| f.iter().filter_map(|t| t.parse::<f64>().ok()).sum());
    ticks / 100.0
}

/// Runs `work` for every item on `threads` threads.
fn in_parallel<T: Send, R: Send>(
    items: Vec<T>,
    threads: usize,
    work: impl Fn(T) -> R + Sync,
) -> Vec<R> {
    let queue = Mutex::new(items.into_iter().enumerate().collect::<Vec<_>>());
    let done = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let Some((i, item)) = queue.lock().unwrap().pop() else { break };
                let result = work(item);
                done.lock().unwrap().push((i, result));
            });
        }
    });
    let mut done = done.into_inner().unwrap();
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

fn main() {
    if std::env::var_os("AUTHPLUG_TEST_PEERS_DIR").is_none() {
        eprintln!("AUTHPLUG_TEST_PEERS_DIR not set: oidc-provider bench skipped (use `cargo xtask bench`)");
        return;
    }
    let grants = setting("AUTHPLUG_BENCH_GRANTS", 10_000);
    let concurrency = setting("AUTHPLUG_BENCH_CONCURRENCY", 32);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pin = setting("AUTHPLUG_BENCH_PIN", 1) == 1 && cores >= 2;
    if pin {
        // Every thread of this process, now and later, off CPU 0.
        let status = std::process::Command::new("taskset")
            .args(["-a", "-p", "-c", &format!("1-{}", cores - 1), &std::process::id().to_string()])
            .stdout(std::process::Stdio::null())
            .status()
            .expect("taskset runs");
        assert!(status.success(), "taskset could not pin the bench");
    }
    let lab = Lab::bench(grants, pin.then_some("0"));

    let started = Instant::now();
    let consented = in_parallel((0..grants).collect(), 4, |_| lab.consent());
    eprintln!("{grants} grants by consent in {:.1} s", started.elapsed().as_secs_f64());

    // 1. The endpoint alone: a plain load loop, same concurrency, same request shape.
    let url = format!("{}/token", lab.provider.issuer);
    let tokens: Vec<(usize, String)> = consented
        .iter()
        .enumerate()
        .map(|(i, (injected, _))| (i, injected["oauth_refresh_token"].expose().to_owned()))
        .collect();
    let rotated: Arc<Mutex<BTreeMap<usize, (String, i64)>>> = Arc::default();
    let provider_pid = lab.provider.pid().to_string();
    let (own_cpu, provider_cpu) = (cpu_seconds("self"), cpu_seconds(&provider_pid));
    let started = Instant::now();
    lab.host.block_on(async {
        let client = reqwest::Client::new();
        let queue = Arc::new(Mutex::new(tokens));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..concurrency {
            let (queue, client, url, rotated) =
                (queue.clone(), client.clone(), url.clone(), rotated.clone());
            tasks.spawn(async move {
                loop {
                    let Some((i, token)) = queue.lock().unwrap().pop() else { break };
                    let response = client
                        .post(&url)
                        .basic_auth("app", Some("app-secret"))
                        .form(&[("grant_type", "refresh_token"), ("refresh_token", &token)])
                        .send()
                        .await
                        .unwrap();
                    let status = response.status();
                    let body = response.bytes().await.unwrap();
                    assert!(status.is_success(), "the plain loop's refresh failed: {status}");
                    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    let refresh = answer["refresh_token"].as_str().unwrap().to_owned();
                    let expires_in = answer["expires_in"].as_i64().unwrap();
                    rotated.lock().unwrap().insert(i, (refresh, expires_in));
                }
            });
        }
        while tasks.join_next().await.is_some() {}
    });
    let endpoint_rate = grants as f64 / started.elapsed().as_secs_f64();
    let loop_cpu = (
        (cpu_seconds("self") - own_cpu) / grants as f64,
        (cpu_seconds(&provider_pid) - provider_cpu) / grants as f64,
    );

    // 2. The rotated tokens, stored as systems (not timed).
    let rotated = std::mem::take(&mut *rotated.lock().unwrap());
    assert_eq!(rotated.len(), grants);
    let store = lab.store();
    let now = authplug_store::now_secs();
    let systems: Vec<(usize, String, i64)> =
        rotated.into_iter().map(|(i, (token, expires_in))| (i, token, expires_in)).collect();
    in_parallel(systems, 8, |(i, token, expires_in)| {
        let new = NewSystem {
            id: format!("system-{i:05}"),
            scheme: "oauth2".into(),
            parameters: lab.parameters(),
            required: lab.required(),
            injected: BTreeMap::from([
                ("oauth_access_token".into(), Secret::new("superseded")),
                ("oauth_refresh_token".into(), Secret::new(token)),
            ]),
            expires_at: Some(now + expires_in),
        };
        store.create(new, "bench").unwrap();
    });
    drop(store);

    // 3. The engine: every system is refreshed once (keep-alive 0 makes them all idle).
    let config = EngineConfig { keepalive: Some(Duration::ZERO), ..EngineConfig::default() };
    let engine = lab.engine(config, Duration::from_secs(30), Events::default());
    let rss_before = authplug_testkit::process_memory_kib("VmRSS:");
    let (own_cpu, provider_cpu) = (cpu_seconds("self"), cpu_seconds(&provider_pid));
    let started = Instant::now();
    let results = lab.host.block_on(engine.sweep(concurrency)).unwrap();
    let elapsed = started.elapsed();
    let engine_cpu = (
        (cpu_seconds("self") - own_cpu) / grants as f64,
        (cpu_seconds(&provider_pid) - provider_cpu) / grants as f64,
    );
    let peak = authplug_testkit::process_memory_kib("VmHWM:");
    let failed: Vec<_> = results.iter().filter(|(_, r)| r.is_err()).collect();
    assert!(failed.is_empty(), "{} refreshes failed, first: {:?}", failed.len(), failed.first());
    // The lab's own system is swept too.
    let refreshed = results.len();
    assert_eq!(refreshed, grants + 1);
    let engine_rate = refreshed as f64 / elapsed.as_secs_f64();

    let placement = if pin {
        format!("provider on CPU 0, engine and loop on CPUs 1-{}", cores - 1)
    } else {
        format!("all {cores} cores shared")
    };
    println!(
        "refresh of {refreshed} credentials against oidc-provider, concurrency {concurrency}, {placement}"
    );
    println!("  oidc-provider alone (plain HTTP loop): {endpoint_rate:>7.0} refreshes/s");
    println!(
        "  engine (plugin, store, journal):       {engine_rate:>7.0} refreshes/s  ({:.1} s)",
        elapsed.as_secs_f64()
    );
    println!("  ratio engine/endpoint:                 {:>7.2}", engine_rate / endpoint_rate);
    println!(
        "  CPU per refresh: plain loop {:.2} ms + provider {:.2} ms; engine {:.2} ms + provider {:.2} ms",
        loop_cpu.0 * 1e3,
        loop_cpu.1 * 1e3,
        engine_cpu.0 * 1e3,
        engine_cpu.1 * 1e3
    );
    println!(
        "  memory: RSS {rss_before} KiB before the sweep, peak {peak} KiB: {:.0} bytes per stored credential while sweeping",
        (peak.saturating_sub(rss_before) * 1024) as f64 / refreshed as f64
    );
}
