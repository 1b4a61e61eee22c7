//! Issue 7, check 5: `authplug serve` under load on loopback. wrk sends
//! `POST /v1/systems/{id}/authorize` with an authorize-only token for a system whose access token
//! is valid (no refresh happens), and, in the same run, GETs a static file of the same size
//! from nginx. Both servers get the same CPU (CPU 0) and wrk the other (CPU 1), so each figure
//! is one core's worth of serving; AUTHPLUG_BENCH_PIN=0 shares every core instead.
//!
//! The system comes from oidc-provider's real consent; the server is the release build with the
//! release plugins (`cargo xtask bench` builds both). nginx and wrk are Debian's
//! (`apt-get install nginx-light wrk`).
//!
//! Options (environment): AUTHPLUG_BENCH_SECONDS (10), AUTHPLUG_BENCH_CONNECTIONS (32),
//! AUTHPLUG_BENCH_PIN (1), AUTHPLUG_BENCH_CACHE_MS (the server's --authorize-cache-ms; 0 shows
//! what every answer costs without reuse).

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use tests::lifecycle::{Lab, SYSTEM};
use tests::load::{pinned, post_script, setting, Nginx, Running, Wrk};

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let seconds = setting("AUTHPLUG_BENCH_SECONDS", 10);
    let connections = setting("AUTHPLUG_BENCH_CONNECTIONS", 32);
    let pin = setting("AUTHPLUG_BENCH_PIN", 1) == 1;
    let (server_cpus, load_cpus) = if pin { (Some("0"), Some("1")) } else { (None, None) };
    let wrk = Wrk::new(load_cpus, connections);

    // A system onboarded through oidc-provider's consent, and a worker's authorize-only token.
    let lab = Lab::bench(10, None);
    let tokens = lab.key_file().with_file_name("tokens.json");
    let output = lab
        .command()
        .args(["api-token", "worker", "--scope", &format!("authorize:{SYSTEM}"), "--tokens-file"])
        .arg(&tokens)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let token = String::from_utf8(output.stdout).unwrap().trim().to_owned();

    let mut serve = pinned(server_cpus, &tests::authplug_bin());
    lab.environment(&mut serve);
    let mut child = serve
        .args(["serve", "--listen", "127.0.0.1:0", "--tokens-file"])
        .arg(&tokens)
        .args(["--authorize-cache-ms", &setting("AUTHPLUG_BENCH_CACHE_MS", 1000).to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let authplug = Running { child, signal: "TERM" };
    let url = loop {
        let line = lines.next().expect("serve says where it listens").unwrap();
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    let log = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());
    let authorize = format!("{url}/v1/systems/{SYSTEM}/authorize");

    // One answer first: its size is the static file's.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let body = runtime.block_on(async {
        let response =
            reqwest::Client::new().post(&authorize).bearer_auth(&token).send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.bytes().await.unwrap()
    });
    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let header = answer["headers"][0][0].as_str().unwrap_or_default();
    assert!(header.eq_ignore_ascii_case("authorization"), "the apply step's header: {header}");

    // nginx, one worker, serving a file of exactly that many bytes (no secret in it).
    let nginx = Nginx::start(server_cpus, body.len());
    let static_url = nginx.url.clone();
    let dir = tempfile::tempdir().unwrap();
    let script = post_script(dir.path(), "authorize.lua", None);
    let run = |target: &str, with_token: bool, secs: usize| {
        let script = with_token.then_some((script.as_path(), token.as_str()));
        wrk.run(target, secs, script)
    };
    // Warm both up, then measure each in turn.
    run(&authorize, true, 2);
    run(&static_url, false, 2);
    let served = run(&authorize, true, seconds);
    let file = run(&static_url, false, seconds);

    // The server's own counts: refreshes (none expected: the token stays valid) and answers
    // from memory.
    let metrics = runtime.block_on(async {
        reqwest::get(format!("{url}/metrics")).await.unwrap().text().await.unwrap()
    });
    let counter = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} is not in /metrics"))
    };
    let refreshes = counter("authplug_lifecycle_events_total{kind=\"refreshed\"}");
    let hits = counter("authplug_authorize_cache_total{result=\"hit\"}");
    let misses = counter("authplug_authorize_cache_total{result=\"miss\"}");
    drop(nginx);
    drop(authplug);
    let log = log.join().unwrap();
    assert!(!log.iter().any(|l| l.contains(&token)), "the token never reaches the log");

    let where_ = if pin { "servers on CPU 0, wrk on CPU 1" } else { "every core shared" };
    println!(
        "authorize_load: {} bytes per answer, {connections} connections, {seconds} s each, {where_}, authorize cache {} ms, plugins {}",
        body.len(),
        setting("AUTHPLUG_BENCH_CACHE_MS", 1000),
        match std::env::var("AUTHPLUG_ISOLATION").as_deref() {
            Ok("process") => "isolated (AUTHPLUG_ISOLATION=process)",
            _ => "in-process (shipped beside the binary)",
        }
    );
    println!("| server | requests/s | p50 | p99 | requests |");
    println!("|---|---|---|---|---|");
    for (name, load) in
        [("authplug POST /v1/systems/{id}/authorize", &served), ("nginx static file", &file)]
    {
        println!(
            "| {name} | {:.0} | {:.2} ms | {:.2} ms | {} |",
            load.requests_per_sec, load.p50_ms, load.p99_ms, load.requests
        );
    }
    let ratio = served.requests_per_sec / file.requests_per_sec;
    println!(
        "authorize_load: ratio authplug/nginx {ratio:.2} (goal at least 0.5: {}); refreshes during the run: {refreshes}; authorize answers from memory: {hits}, computed: {misses}",
        if ratio >= 0.5 { "met" } else { "NOT met" }
    );
}
