//! What the load benchmarks share: Debian's wrk and nginx found on the PATH, processes pinned to
//! CPUs and stopped by their own id, wrk's figures, and an nginx serving a static file of the
//! size of an authorize answer (the reference every ratio is measured against).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A number from the environment, or `default`.
pub fn setting(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// `program`, found on the PATH, or the bench stops with what to install.
pub fn tool(program: &str, package: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .chain([PathBuf::from("/usr/sbin")])
                .map(|dir| dir.join(program))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            eprintln!("bench: {program} is not installed: apt-get install {package}");
            std::process::exit(2)
        })
}

/// `program` on `cpus` (a taskset list), or anywhere when `cpus` is None.
pub fn pinned(cpus: Option<&str>, program: &Path) -> Command {
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
#[derive(Debug)]
pub struct Running {
    pub child: Child,
    pub signal: &'static str,
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
pub struct Load {
    pub requests_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub requests: u64,
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

/// Debian's wrk on `cpus`, one thread and `connections` connections.
#[derive(Debug, Clone)]
pub struct Wrk {
    pub program: PathBuf,
    pub cpus: Option<String>,
    pub connections: usize,
}

impl Wrk {
    pub fn new(cpus: Option<&str>, connections: usize) -> Self {
        Self { program: tool("wrk", "wrk"), cpus: cpus.map(str::to_owned), connections }
    }

    /// Runs against `url` for `seconds`, with the Lua script if given; the token travels in the
    /// environment, never on the command line.
    pub fn run(&self, url: &str, seconds: usize, script: Option<(&Path, &str)>) -> Load {
        let mut command = pinned(self.cpus.as_deref(), &self.program);
        command.args([
            "-t1",
            &format!("-c{}", self.connections),
            &format!("-d{seconds}s"),
            "--latency",
        ]);
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
}

/// A wrk script that POSTs with the bearer token of `AUTHPLUG_BENCH_TOKEN`; with `paths`, each
/// request goes to one of them at random (the Lua expression given picks it).
pub fn post_script(dir: &Path, name: &str, path_expression: Option<&str>) -> PathBuf {
    let script = dir.join(name);
    let mut text = String::from(
        "wrk.method = \"POST\"\nwrk.headers[\"Authorization\"] = \"Bearer \" .. os.getenv(\"AUTHPLUG_BENCH_TOKEN\")\n",
    );
    if let Some(expression) = path_expression {
        text.push_str(&format!(
            "request = function()\n  return wrk.format(nil, {expression})\nend\n"
        ));
    }
    std::fs::write(&script, text).unwrap();
    script
}

/// nginx, one worker on `cpus`, serving a file of `size` bytes (no secret in it) from a folder
/// of its own; stopped with its process when dropped.
#[derive(Debug)]
pub struct Nginx {
    pub url: String,
    _process: Running,
    _dir: tempfile::TempDir,
}

impl Nginx {
    pub fn start(cpus: Option<&str>, size: usize) -> Self {
        let program = tool("nginx", "nginx-light");
        let dir = tempfile::tempdir().unwrap();
        let www = dir.path().join("www");
        std::fs::create_dir(&www).unwrap();
        std::fs::write(www.join("authorize.json"), vec![b'x'; size]).unwrap();
        // nginx's worker runs as nobody when started by root: it must be able to read the file.
        for path in [dir.path(), &www] {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let prefix = dir.path().display().to_string();
        std::fs::write(
            dir.path().join("nginx.conf"),
            format!(
                "worker_processes 1;\ndaemon off;\npid {prefix}/nginx.pid;\nerror_log {prefix}/error.log;\n\
                 events {{ worker_connections 4096; }}\n\
                 http {{ access_log off; default_type application/json; sendfile on; tcp_nopush on;\n\
                   keepalive_requests 100000000;\n\
                   server {{ listen 127.0.0.1:{port}; root {prefix}/www; }} }}\n"
            ),
        )
        .unwrap();
        let process = Running {
            child: pinned(cpus, &program)
                .args(["-p", &prefix, "-e", &format!("{prefix}/error.log"), "-c"])
                .arg(dir.path().join("nginx.conf"))
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("nginx starts"),
            signal: "QUIT",
        };
        let url = format!("http://127.0.0.1:{port}/authorize.json");
        let started = Instant::now();
        let served = tokio::runtime::Runtime::new().unwrap().block_on(async {
            loop {
                if let Ok(response) = reqwest::get(&url).await {
                    assert_eq!(response.status(), 200);
                    break response.bytes().await.unwrap().len();
                }
                assert!(started.elapsed() < Duration::from_secs(10), "nginx did not start");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        assert_eq!(served, size);
        Self { url, _process: process, _dir: dir }
    }
}

/// A process's memory figure from `/proc/PID/status` (`VmRSS:`, `VmHWM:`), in KiB.
pub fn memory_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|rest| rest.split_whitespace().next().and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}
