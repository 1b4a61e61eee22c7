//! Issue 17: a million systems on one store. For each store size N (10,000, 100,000 and
//! 1,000,000) and each backend (SQLite, PostgreSQL), the bench fills a store through the store's
//! own API (`Store::create_batch`: every value really sealed) and runs the release
//! `authplug serve` on it, reporting:
//!
//! - the time from start to the first `/readyz` 200, and serve's resident memory at rest (after
//!   its first sweep, which finds nothing due);
//! - the latency of one page of `GET /v1/systems?limit=100`, walked by cursor (p50, p99);
//! - authorize throughput with the reuse cache on (one system) and off (a system drawn at random
//!   from the N for each request), next to nginx serving a file of the same size, in the same run;
//! - one sweep with 1 % of the systems due (OAuth2 systems whose refresh token an in-process token
//!   endpoint rotates): its time as serve reports it (`authplug_sweep_duration_seconds`), the
//!   refreshes, and serve's peak resident memory (`VmHWM`) over that serve's life.
//!
//! The other 99 % are API-key systems of 50 connectors. Servers run on CPU 0 and wrk on CPU 1
//! (AUTHPLUG_BENCH_PIN=0 shares every core). Run with `cargo xtask bench -- -p tests --bench
//! scale` (it builds the release binary and plugins and starts PostgreSQL).
//!
//! Options (environment): AUTHPLUG_BENCH_SCALE (sizes, `10000,100000,1000000`),
//! AUTHPLUG_BENCH_BACKENDS (`sqlite,postgres`), AUTHPLUG_BENCH_SECONDS (3, per wrk run),
//! AUTHPLUG_BENCH_PAGES (1000), AUTHPLUG_BENCH_DIR (where the SQLite stores go),
//! AUTHPLUG_BENCH_PERF (a folder: `perf record -g` of serve during the uncached authorize run
//! and the 1 % sweep, as `uncached.data` and `sweep.data`).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use authplug_protocol::Secret;
use authplug_store::NewSystem;
use authplug_testkit::{FakeServer, Response};
#[path = "scale/place.rs"]
mod place;

use place::{fill, place, Http, Place};
use tests::load::{memory_kib, pinned, post_script, setting, Load, Nginx, Running, Wrk};

/// Systems per `create_batch` call (one transaction).
const BATCH: usize = 2000;
/// Every `DUE_EVERY`th system is an OAuth2 one, due in the sweep phase.
const DUE_EVERY: usize = 100;

fn id(i: usize) -> String {
    format!("sys-{i:07}")
}

fn api_key_system(i: usize) -> NewSystem {
    let key = Secret::new(format!("key-{i:07}-{:024x}", i as u128 * 0x9e37_79b9));
    NewSystem {
        id: id(i),
        scheme: "api_key".into(),
        parameters: BTreeMap::from([
            ("connector".into(), serde_json::json!(format!("shop-{:02}", i % 50))),
            ("style".into(), serde_json::json!("bearer")),
        ]),
        required: BTreeMap::from([("api_key".into(), key.clone())]),
        injected: BTreeMap::from([("api_key".into(), key)]),
        expires_at: None,
    }
}

fn oauth2_system(i: usize, token_url: &str, refresh: &str, expires_at: i64) -> NewSystem {
    NewSystem {
        id: id(i),
        scheme: "oauth2".into(),
        parameters: serde_json::from_value(serde_json::json!({
            "connector": "crm",
            "login_url": format!("{token_url}/auth"),
            "token_url": format!("{token_url}/token"),
        }))
        .unwrap(),
        required: BTreeMap::from([
            ("client_id".into(), Secret::new("app")),
            ("client_secret".into(), Secret::new("app-secret")),
        ]),
        injected: BTreeMap::from([
            ("oauth_access_token".into(), Secret::new(format!("at-{i:07}"))),
            ("oauth_refresh_token".into(), Secret::new(refresh)),
        ]),
        expires_at: Some(expires_at),
    }
}

/// A token endpoint that rotates refresh tokens: each valid one is consumed once.
fn token_endpoint(valid: Arc<Mutex<HashSet<String>>>) -> FakeServer {
    FakeServer::start(move |request| {
        let token = request.form("refresh_token").unwrap_or_default();
        if !valid.lock().unwrap().remove(&token) {
            return Response::json(400, &serde_json::json!({"error": "invalid_grant"}));
        }
        let next = format!("rt-{:032x}", rand_u128());
        valid.lock().unwrap().insert(next.clone());
        Response::json(
            200,
            &serde_json::json!({
                "access_token": format!("at-{:032x}", rand_u128()),
                "token_type": "Bearer",
                "expires_in": 3600,
                "refresh_token": next,
            }),
        )
    })
}

/// A new value each call (tokens need only be unique).
fn rand_u128() -> u128 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) as u128
}

/// A running `authplug serve` on the place's store.
struct Serve {
    url: String,
    pid: u32,
    ready_after: Duration,
    http: Http,
    log: Arc<Mutex<Vec<String>>>,
    /// A message for each sweep that refreshed anything (its log line).
    sweeps: std::sync::mpsc::Receiver<()>,
    _process: Running,
}

impl Serve {
    /// Sweeps every `sweep_secs` (the first at once).
    fn start(
        place: &Place,
        tokens: &Path,
        cpus: Option<&str>,
        cache_ms: u64,
        sweep_secs: u64,
    ) -> Self {
        let mut command = pinned(cpus, &tests::authplug_bin());
        tests::authplug_environment(&mut command, &place.store_arg(), &place.key_file);
        let started = Instant::now();
        command
            .args(["serve", "--sweep-interval", &sweep_secs.to_string()])
            .args(["--authorize-cache-ms", &cache_ms.to_string()])
            // The sweep's own line says when it ended (polling /metrics would compete with it).
            .env("AUTHPLUG_LOG", "warn,authplug_server=info")
            .env("AUTHPLUG_LOG_JSON", "1");
        let (child, url, lines) = tests::serve(&mut command, tokens);
        let pid = child.id();
        let process = Running { child: child.into_inner(), signal: "TERM" };
        // The rest of its log is read so that it never blocks on a full pipe; the last lines are
        // kept for a failure's message.
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let kept = log.clone();
        let (swept, sweeps) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                // `sweep` or `sweep failed`, as JSON.
                if line.contains(r#""message":"sweep"#) {
                    let _ = swept.send(());
                }
                let mut kept = kept.lock().unwrap();
                if kept.len() == 40 {
                    kept.remove(0);
                }
                kept.push(line);
            }
        });
        let http = Http::new();
        let ready_after = loop {
            if http.call(reqwest::Method::GET, &format!("{url}/readyz"), None).0 == 200 {
                break started.elapsed();
            }
            assert!(started.elapsed() < Duration::from_secs(60), "serve was not ready in 60 s");
            std::thread::sleep(Duration::from_millis(2));
        };
        Self { url, pid, ready_after, http, log, sweeps, _process: process }
    }

    fn metrics(&self) -> String {
        let (status, body) =
            self.http.call(reqwest::Method::GET, &format!("{}/metrics", self.url), None);
        assert_eq!(status, 200, "/metrics answers");
        String::from_utf8(body).unwrap()
    }

    fn metric(&self, name: &str) -> f64 {
        let text = self.metrics();
        text.lines()
            .find_map(|l| l.strip_prefix(name).filter(|rest| rest.starts_with(' ')))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} is not in /metrics"))
    }

    /// Waits until serve has finished `count` sweeps (polling its metrics).
    fn sweeps(&self, count: f64, within: Duration) {
        let started = Instant::now();
        while self.metric("authplug_sweeps_total") < count {
            assert!(started.elapsed() < within, "serve did not finish sweep {count} in {within:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Walks `pages` pages of 100 by cursor: each page's latency, in milliseconds, sorted.
    fn pages(&self, token: &str, pages: usize) -> Vec<f64> {
        let mut latencies = Vec::with_capacity(pages);
        let mut cursor: Option<String> = None;
        for _ in 0..pages {
            let mut url = format!("{}/v1/systems?limit=100", self.url);
            if let Some(cursor) = &cursor {
                url.push_str(&format!("&cursor={cursor}"));
            }
            let started = Instant::now();
            let (status, body) = self.http.call(reqwest::Method::GET, &url, Some(token));
            assert_eq!(status, 200, "a page of /v1/systems");
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
            latencies.push(started.elapsed().as_secs_f64() * 1000.0);
            cursor = body["next_cursor"].as_str().map(str::to_owned);
            let listed = body["systems"].as_array().map_or(0, Vec::len);
            assert!(listed == 100 || cursor.is_none(), "a full page, but for the last: {listed}");
            if cursor.is_none() {
                break;
            }
        }
        latencies.sort_by(f64::total_cmp);
        latencies
    }
}

/// With AUTHPLUG_BENCH_PERF=DIR, `perf record -g` of serve into `DIR/{what}.data` (Debian's
/// linux-perf) until dropped (stopped by its own id).
fn perf(serve: &Serve, what: &str) -> Option<Running> {
    let dir = PathBuf::from(std::env::var_os("AUTHPLUG_BENCH_PERF")?);
    let child = std::process::Command::new("perf")
        .args(["record", "-g", "-o"])
        .arg(dir.join(format!("{what}.data")))
        .args(["-p", &serve.pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("perf runs");
    Some(Running { child, signal: "INT" })
}

fn percentile(sorted: &[f64], p: usize) -> f64 {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

/// One size on one backend: the row of each table.
struct Row {
    backend: String,
    n: usize,
    load_rate: f64,
    ready_ms: f64,
    rest_mib: f64,
    idle_sweep_ms: f64,
    page_p50: f64,
    page_p99: f64,
    cached: Load,
    uncached: Load,
    nginx: Load,
    due: usize,
    sweep_ms: f64,
    sweep_refreshed: f64,
    sweep_peak_mib: f64,
    sweep_rss_mib: f64,
    ready_after_due_ms: f64,
}

fn measure(backend: &str, n: usize, wrk: &Wrk, cpus: Option<&str>, seconds: usize) -> Option<Row> {
    let place = place(backend, n)?;
    let store = place.store();
    let due = n / DUE_EVERY;
    // 1. The 99 %: API-key systems, never due.
    let plain = (0..n).filter(|i| i % DUE_EVERY != 0).map(api_key_system);
    let load_rate = fill(&store, plain, n - due, &format!("{backend} N={n}"));
    let tokens = place.dir.path().join("tokens.json");
    let made = std::process::Command::new(tests::authplug_bin())
        .args(["api-token", "bench", "--scope", "admin", "--tokens-file"])
        .arg(&tokens)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let token = String::from_utf8(made.stdout).unwrap().trim().to_owned();

    // 2. serve at rest: readiness, memory, pages, and cached authorize of one system.
    let serve = Serve::start(&place, &tokens, cpus, 1000, 1);
    let ready_ms = serve.ready_after.as_secs_f64() * 1000.0;
    serve.sweeps(2.0, Duration::from_secs(60));
    let idle_sweep_ms = serve.metric("authplug_sweep_duration_seconds") * 1000.0;
    let rest_mib = memory_kib(serve.pid, "VmRSS:") as f64 / 1024.0;
    let pages = serve.pages(&token, setting("AUTHPLUG_BENCH_PAGES", 1000));
    let dir = tempfile::tempdir().unwrap();
    let one = format!("{}/v1/systems/{}/authorize", serve.url, id(1));
    let (status, body) = serve.http.call(reqwest::Method::POST, &one, Some(&token));
    assert_eq!(status, 200, "authorize answers");
    let size = body.len();
    let nginx = Nginx::start(cpus, size);
    let fixed = post_script(dir.path(), "one.lua", None);
    wrk.run(&one, 1, Some((&fixed, &token)));
    let cached = wrk.run(&one, seconds, Some((&fixed, &token)));
    wrk.run(&nginx.url, 1, None);
    let nginx_load = wrk.run(&nginx.url, seconds, None);
    drop(serve);

    // 3. Uncached: a system drawn at random for each request (never a multiple of 100: those are
    // the OAuth2 ones, not stored yet).
    let serve = Serve::start(&place, &tokens, cpus, 0, 3600);
    let random = post_script(
        dir.path(),
        "random.lua",
        Some(&format!(
            "string.format(\"/v1/systems/sys-%07d/authorize\", math.random(0, {}) * {DUE_EVERY} + math.random(1, {}))",
            n / DUE_EVERY - 1,
            DUE_EVERY - 1
        )),
    );
    let base = format!("{}/", serve.url);
    wrk.run(&base, 1, Some((&random, &token)));
    let perf_uncached = perf(&serve, "uncached");
    let uncached = wrk.run(&base, seconds, Some((&random, &token)));
    drop(perf_uncached);
    drop(serve);

    // 4. The 1 %: OAuth2 systems already due, then one serve's first sweep refreshes them.
    let valid: Arc<Mutex<HashSet<String>>> = Arc::default();
    let endpoint = token_endpoint(valid.clone());
    let now = authplug_store::now_secs();
    let due_systems = (0..n).step_by(DUE_EVERY).map(|i| {
        let refresh = format!("rt-start-{i:07}");
        valid.lock().unwrap().insert(refresh.clone());
        oauth2_system(i, &endpoint.url(), &refresh, now)
    });
    fill(&store, due_systems, due, &format!("{backend} N={n} due"));
    let indexed = store.due(now + 1, &authplug_store::Walk::start(), due + 1).unwrap();
    assert_eq!(indexed.len(), due, "the due index holds every due system");
    drop(store);
    // Its first sweep only (the next is an hour away): the figures read are that sweep's.
    let serve = Serve::start(&place, &tokens, cpus, 1000, 3600);
    let ready_after_due_ms = serve.ready_after.as_secs_f64() * 1000.0;
    let profile = perf(&serve, "sweep");
    let mut sweep_rss: u64 = 0;
    let started = Instant::now();
    while serve.sweeps.recv_timeout(Duration::from_millis(20)).is_err() {
        sweep_rss = sweep_rss.max(memory_kib(serve.pid, "VmRSS:"));
        assert!(started.elapsed() < Duration::from_secs(600), "the sweep did not end in 10 min");
    }
    drop(profile);
    let sweep_ms = serve.metric("authplug_sweep_duration_seconds") * 1000.0;
    let sweep_refreshed = serve.metric("authplug_sweep_refreshed");
    let sweep_peak_mib = memory_kib(serve.pid, "VmHWM:") as f64 / 1024.0;
    let failed = serve.metric("authplug_sweep_failed");
    let errors = serve.metric("authplug_sweep_errors_total");
    let mut log = serve.log.lock().unwrap().join("\n");
    if sweep_refreshed as usize != due {
        let mut status = std::process::Command::new(tests::authplug_bin());
        tests::authplug_environment(&mut status, &place.store_arg(), &place.key_file);
        let out = status
            .args(["status", "--scheme", "oauth2", "--limit", "2", "--json"])
            .output()
            .unwrap();
        log.push_str(&format!("\nstatus: {}{}", tests::stdout(&out), tests::stderr(&out)));
        log.push_str(&format!("\nmetrics: {}", serve.metrics()));
    }
    assert_eq!((failed, errors), (0.0, 0.0), "no refresh of the sweep fails:\n{log}");
    assert_eq!(sweep_refreshed as usize, due, "the sweep refreshes every due system:\n{log}");
    drop(serve);
    Some(Row {
        backend: backend.into(),
        n,
        load_rate,
        ready_ms,
        rest_mib,
        idle_sweep_ms,
        page_p50: percentile(&pages, 50),
        page_p99: percentile(&pages, 99),
        cached,
        uncached,
        nginx: nginx_load,
        due,
        sweep_ms,
        sweep_refreshed,
        sweep_peak_mib,
        sweep_rss_mib: sweep_rss as f64 / 1024.0,
        ready_after_due_ms,
    })
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let sizes: Vec<usize> = std::env::var("AUTHPLUG_BENCH_SCALE")
        .unwrap_or_else(|_| "10000,100000,1000000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let backends =
        std::env::var("AUTHPLUG_BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    let seconds = setting("AUTHPLUG_BENCH_SECONDS", 3);
    let pin = setting("AUTHPLUG_BENCH_PIN", 1) == 1;
    let (server_cpus, load_cpus) = if pin { (Some("0"), Some("1")) } else { (None, None) };
    let wrk = Wrk::new(load_cpus, 32);
    let mut rows = Vec::new();
    for backend in backends.split(',').map(str::trim) {
        for &n in &sizes {
            if let Some(row) = measure(backend, n, &wrk, server_cpus, seconds) {
                rows.push(row);
            }
        }
    }
    print(&rows, seconds, pin);
}

fn print(rows: &[Row], seconds: usize, pin: bool) {
    let where_ = if pin { "servers on CPU 0, wrk on CPU 1" } else { "every core shared" };
    println!("scale: {seconds} s per wrk run, 32 connections, {where_}");
    println!("| backend | systems | stored/s | /readyz after start (none due / 1 % due) | RSS at rest | sweep, none due | page of 100 p50 / p99 | sweep, 1 % due | refreshed | RSS during sweep (max sampled / peak) |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {:.0} | {:.0} / {:.0} ms | {:.1} MiB | {:.1} ms | {:.2} / {:.2} ms | {:.0} ms ({} due) | {:.0} | {:.1} / {:.1} MiB |",
            r.backend, r.n, r.load_rate, r.ready_ms, r.ready_after_due_ms, r.rest_mib, r.idle_sweep_ms, r.page_p50,
            r.page_p99, r.sweep_ms, r.due, r.sweep_refreshed, r.sweep_rss_mib, r.sweep_peak_mib
        );
    }
    println!();
    println!("| backend | systems | authorize cached req/s (p99) | uncached, random system req/s (p99) | nginx req/s | cached/nginx | uncached/nginx |");
    println!("|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {:.0} ({:.2} ms) | {:.0} ({:.2} ms) | {:.0} | {:.2} | {:.2} |",
            r.backend,
            r.n,
            r.cached.requests_per_sec,
            r.cached.p99_ms,
            r.uncached.requests_per_sec,
            r.uncached.p99_ms,
            r.nginx.requests_per_sec,
            r.cached.requests_per_sec / r.nginx.requests_per_sec,
            r.uncached.requests_per_sec / r.nginx.requests_per_sec
        );
    }
    for r in rows {
        let goals = [
            ("RSS at rest under 150 MiB", r.rest_mib < 150.0),
            ("RSS during the sweep under 150 MiB", r.sweep_peak_mib < 150.0),
            ("/readyz within 1 s", r.ready_ms.max(r.ready_after_due_ms) < 1000.0),
            ("page p99 under 20 ms", r.page_p99 < 20.0),
            ("cached at least 1.0 of nginx", r.cached.requests_per_sec >= r.nginx.requests_per_sec),
            (
                "uncached at least 0.5 of nginx",
                r.uncached.requests_per_sec >= 0.5 * r.nginx.requests_per_sec,
            ),
        ];
        let missed: Vec<_> = goals.iter().filter(|(_, met)| !met).map(|(what, _)| *what).collect();
        println!(
            "scale: {} N={}: {}",
            r.backend,
            r.n,
            if missed.is_empty() {
                "every goal met".to_owned()
            } else {
                format!("NOT met: {}", missed.join("; "))
            }
        );
    }
}
