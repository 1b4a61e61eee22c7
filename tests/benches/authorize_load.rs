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
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tests::lifecycle::{Lab, SYSTEM};

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// `program`, found on the PATH, or the bench stops with what to install.
fn tool(program: &str, package: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .chain([PathBuf::from("/usr/sbin")])
                .map(|dir| dir.join(program))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            eprintln!("authorize_load: {program} is not installed: apt-get install {package}");
            std::process::exit(2)
        })
}

/// `program` on `cpus` (a taskset list), or anywhere when `cpus` is None.
fn pinned(cpus: Option<&str>, program: &Path) -> Command {
    match cpus {
        Some(cpus) => {
            let mut command = Command::new("taskset");
            command.args(["-c", cpus]).arg(program);
            command
        }
        None => Command::new(program),
    }
}

/// A process stopped by its own id, with `signal`, when dropped.
struct Running {
    child: Child,
    signal: &'static str,
}

impl Drop for Running {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-s", self.signal, &pid]).status();
        let _ = self.child.wait();
    }
}

/// What wrk measured.
#[derive(Debug)]
struct Load {
    requests_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    requests: u64,
}

/// wrk's latency figure (`812.00us`, `1.20ms`, `2.00s`) in milliseconds.
fn millis(text: &str) -> f64 {
    let (number, unit) =
        text.split_at(text.find(|c: char| c.is_alphabetic()).unwrap_or(text.len()));
    let value: f64 = number.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => value / 1000.0,
        "ms" => value,
        "s" => value * 1000.0,
        "m" => value * 60_000.0,
        _ => f64::NAN,
    }
}

fn parse_wrk(output: &str) -> Load {
    let field = |prefix: &str| -> Option<&str> {
        output.lines().map(str::trim).find_map(|l| l.strip_prefix(prefix)).map(str::trim)
    };
    assert!(
        field("Non-2xx or 3xx responses:").is_none(),
        "every answer must be a success:\n{output}"
    );
    let requests = output
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    Load {
        requests_per_sec: field("Requests/sec:").and_then(|v| v.parse().ok()).unwrap_or(0.0),
        p50_ms: field("50%").map_or(f64::NAN, millis),
        p99_ms: field("99%").map_or(f64::NAN, millis),
        requests,
    }
}

/// Runs wrk against `url` for `seconds`, with the Lua script if given; the token travels in the
/// environment, never on the command line.
fn wrk(
    wrk: &Path,
    cpus: Option<&str>,
    url: &str,
    seconds: usize,
    connections: usize,
    script: Option<(&Path, &str)>,
) -> Load {
    let mut command = pinned(cpus, wrk);
    command.args(["-t1", &format!("-c{connections}"), &format!("-d{seconds}s"), "--latency"]);
    if let Some((script, token)) = script {
        command.arg("-s").arg(script).env("AUTHPLUG_BENCH_TOKEN", token);
    }
    let output = command.arg(url).output().expect("wrk runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "wrk failed: {text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    parse_wrk(&text)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let seconds = setting("AUTHPLUG_BENCH_SECONDS", 10);
    let connections = setting("AUTHPLUG_BENCH_CONNECTIONS", 32);
    let pin = setting("AUTHPLUG_BENCH_PIN", 1) == 1;
    let (server_cpus, load_cpus) = if pin { (Some("0"), Some("1")) } else { (None, None) };
    let (wrk_bin, nginx_bin) = (tool("wrk", "wrk"), tool("nginx", "nginx-light"));

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
    let dir = tempfile::tempdir().unwrap();
    let www = dir.path().join("www");
    std::fs::create_dir(&www).unwrap();
    std::fs::write(www.join("authorize.json"), vec![b'x'; body.len()]).unwrap();
    // nginx's worker runs as nobody when started by root: it must be able to read the file.
    for path in [dir.path(), &www] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let nginx_port =
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let prefix = dir.path().display();
    std::fs::write(
        dir.path().join("nginx.conf"),
        format!(
            "worker_processes 1;\ndaemon off;\npid {prefix}/nginx.pid;\nerror_log {prefix}/error.log;\n\
             events {{ worker_connections 4096; }}\n\
             http {{ access_log off; default_type application/json; sendfile on; tcp_nopush on;\n\
               keepalive_requests 100000000;\n\
               server {{ listen 127.0.0.1:{nginx_port}; root {prefix}/www; }} }}\n"
        ),
    )
    .unwrap();
    let nginx = Running {
        child: pinned(server_cpus, &nginx_bin)
            .args(["-p", &prefix.to_string(), "-e", &format!("{prefix}/error.log"), "-c"])
            .arg(dir.path().join("nginx.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("nginx starts"),
        signal: "QUIT",
    };
    let static_url = format!("http://127.0.0.1:{nginx_port}/authorize.json");
    let started = Instant::now();
    let size = runtime.block_on(async {
        loop {
            if let Ok(response) = reqwest::get(&static_url).await {
                assert_eq!(response.status(), 200);
                break response.bytes().await.unwrap().len();
            }
            assert!(started.elapsed() < Duration::from_secs(10), "nginx did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    assert_eq!(size, body.len());

    let script = dir.path().join("authorize.lua");
    std::fs::write(
        &script,
        "wrk.method = \"POST\"\nwrk.headers[\"Authorization\"] = \"Bearer \" .. os.getenv(\"AUTHPLUG_BENCH_TOKEN\")\n",
    )
    .unwrap();
    let run = |target: &str, with_token: bool, secs: usize| {
        let script = with_token.then_some((script.as_path(), token.as_str()));
        wrk(&wrk_bin, load_cpus, target, secs, connections, script)
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
