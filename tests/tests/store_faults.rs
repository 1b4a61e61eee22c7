//! Issue 16, item 17: the database fails under a running `authplug serve` handling authorize and
//! refresh traffic. PostgreSQL restarted (a cluster of this test's own) and its sessions
//! terminated (`pg_terminate_backend`, on this test's database of the shared cluster): answers
//! meanwhile are fast 503s that say so, `/readyz` says the store is down, traffic recovers
//! within 5 s of the database coming back without a restart of `serve`, and exactly one refresh
//! grant reaches oidc-provider per due credential (counted at the proxy in front of it).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tests::lifecycle::{Lab, SYSTEM};

struct Serving {
    child: tests::Reaped,
    api: Api,
    log: Arc<Mutex<Vec<String>>>,
}

/// Where a server answers, and with which token; calls through a runtime of its own.
#[derive(Clone)]
struct Api {
    url: String,
    token: String,
}

impl Drop for Serving {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "serve's log:\n{}",
                self.log.lock().unwrap_or_else(|p| p.into_inner()).join("\n")
            );
        }
        // The child stops when `child` is dropped.
    }
}

/// `serve` on the lab's store, every authorize reading the store (no reuse cache).
fn serve(lab: &Lab) -> Serving {
    let tokens = lab.key_file().with_file_name("tokens.json");
    let made = lab
        .command()
        .args(["api-token", "ops", "--scope", "admin", "--tokens-file"])
        .arg(&tokens)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let token = String::from_utf8(made.stdout).unwrap().trim().to_owned();
    let mut command = lab.command();
    command.args(["serve", "--authorize-cache-ms", "0", "--sweep-interval", "1"]);
    let (child, url, lines) = tests::serve(&mut command, &tokens);
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = log.clone();
    std::thread::spawn(move || {
        lines.map_while(Result::ok).for_each(|l| sink.lock().unwrap().push(l))
    });
    Serving { child, api: Api { url, token }, log }
}

/// A client: a runtime and a connection pool, for synchronous tests.
struct Client {
    runtime: tokio::runtime::Runtime,
    http: reqwest::Client,
}

fn client() -> Client {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().unwrap();
    Client { runtime, http }
}

/// One call: status, body, how long it took.
fn call(client: &Client, api: &Api, method: &str, path: &str) -> (u16, Value, Duration) {
    let started = Instant::now();
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let request = client.http.request(method, format!("{}{path}", api.url)).bearer_auth(&api.token);
    client.runtime.block_on(async {
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => panic!("{path} after {:?}: {error}", started.elapsed()),
        };
        let status = response.status().as_u16();
        let body = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap_or(Value::Null);
        (status, body, started.elapsed())
    })
}

fn authorize(client: &Client, api: &Api) -> (u16, Value, Duration) {
    call(client, api, "POST", &format!("/v1/systems/{SYSTEM}/authorize"))
}

/// Authorize calls in a loop until stopped: every answer's status, error code and duration.
struct Traffic {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<(u16, String, Duration)>>,
}

impl Traffic {
    fn start(api: &Api) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, api) = (stop.clone(), api.clone());
        let thread = std::thread::spawn(move || {
            let (client, mut seen) = (client(), Vec::new());
            while !flag.load(Ordering::SeqCst) {
                let (status, body, took) = authorize(&client, &api);
                seen.push((status, body["error"].as_str().unwrap_or("").to_owned(), took));
            }
            seen
        });
        Self { stop, thread }
    }

    fn finish(self) -> Vec<(u16, String, Duration)> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap()
    }
}

/// Calls authorize until it answers 200, for at most `within`: how long it took.
fn recovered(client: &Client, api: &Api, within: Duration) -> Duration {
    let back = Instant::now();
    loop {
        let (status, body, _) = authorize(client, api);
        if status == 200 {
            return back.elapsed();
        }
        assert_eq!(body["error"], "store_unavailable", "{status} {body}");
        assert!(back.elapsed() < within, "not recovered within {within:?}: {status} {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn header(body: &Value) -> String {
    body["headers"][0][1].as_str().unwrap().to_owned()
}

/// Every answer of the traffic was a 200 or a fast 503 that names the store.
fn judge(seen: &[(u16, String, Duration)]) -> usize {
    for (status, code, took) in seen {
        match status {
            200 => {}
            503 => {
                assert_eq!(code, "store_unavailable");
                assert!(*took < Duration::from_secs(1), "a 503 took {took:?}");
            }
            _ => panic!("answered {status} {code}"),
        }
    }
    seen.iter().filter(|(status, ..)| *status == 503).count()
}

#[test]
fn postgres_restarted_under_traffic_answers_fast_503s_and_recovers_without_a_double_refresh() {
    let cluster = tests::pg::Cluster::start();
    let lab = Lab::postgres_on(&cluster.url());
    let serving = serve(&lab);
    let client = client();
    let (status, first, _) = authorize(&client, &serving.api);
    assert_eq!(status, 200, "{first}");
    let grants = lab.proxy.forwarded();

    // Due as the database goes away for 1.5 s, as an operator's restart does (the outage runs
    // on its own thread: it does not wait for the calls made meanwhile).
    lab.make_due(SYSTEM);
    let traffic = Traffic::start(&serving.api);
    let cluster = Arc::new(cluster);
    let (stopped, is_down) = std::sync::mpsc::channel();
    let restart = {
        let cluster = cluster.clone();
        std::thread::spawn(move || {
            cluster.stop();
            stopped.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(1500));
            cluster.start_again();
            Instant::now()
        })
    };
    is_down.recv().unwrap();
    let down = Instant::now();
    let (ready, readyz, _) = call(&client, &serving.api, "GET", "/readyz");
    let mut outage = Vec::new();
    for _ in 0..5 {
        outage.push(authorize(&client, &serving.api));
    }
    let back = restart.join().unwrap();
    recovered(&client, &serving.api, Duration::from_secs(5));
    let took = back.elapsed();
    eprintln!("store_faults: authorize answered 200 {took:?} after PostgreSQL was back");
    assert!(took < Duration::from_secs(5), "recovered within 5 s of the restart");
    std::thread::sleep(Duration::from_millis(300));
    let seen = traffic.finish();
    let outage_took = back.duration_since(down);

    assert_eq!((ready, readyz["error"].as_str()), (503, Some("not_ready")), "{readyz}");
    assert!(readyz["message"].as_str().unwrap().contains("store unavailable"), "{readyz}");
    // A call answers at once with 503, unless it joined the refresh under way when the
    // database went away: that one waits for the database (the renewed credential exists
    // nowhere else until stored) and answers 200.
    for (status, body, took) in &outage {
        match status {
            503 => {
                assert_eq!(body["error"], "store_unavailable", "{body}");
                assert!(*took < Duration::from_secs(1), "a 503 in the outage took {took:?}");
            }
            200 => {}
            _ => panic!("in the outage: {status} {body}"),
        }
    }
    let failed = judge(&seen);
    eprintln!("store_faults: traffic {} calls, {failed} answered 503", seen.len());
    let spanned =
        seen.iter().filter(|(status, _, took)| *status == 200 && *took > outage_took).count();
    assert!(failed + spanned > 0, "the traffic saw the outage");
    assert!(seen.len() > failed, "and the recovery");
    let mut serving = serving;
    assert!(serving.child.try_wait().unwrap().is_none(), "serve was not restarted: it still runs");
    let (status, after, _) = authorize(&client, &serving.api);
    assert_eq!(status, 200);
    assert_ne!(header(&after), header(&first), "the credential was renewed");
    assert_eq!(lab.proxy.forwarded() - grants, 1, "exactly one refresh grant");
    let log = serving.log.lock().unwrap().join("\n");
    assert!(log.contains("request failed") && log.contains("store unavailable"), "{log}");

    // The stored refresh token is the one the provider knows: a second renewal works.
    lab.make_due(SYSTEM);
    let (status, again, _) = authorize(&client, &serving.api);
    assert_eq!(status, 200, "{again}");
    assert_eq!(lab.proxy.forwarded() - grants, 2);
}

#[test]
fn postgres_sessions_terminated_under_traffic_are_replaced_at_once() {
    let lab = Lab::postgres();
    let serving = serve(&lab);
    let client = client();
    let (status, first, _) = authorize(&client, &serving.api);
    assert_eq!(status, 200, "{first}");
    let grants = lab.proxy.forwarded();
    let traffic = Traffic::start(&serving.api);
    let authplug_store::Location::Postgres(url) = &lab.location else { unreachable!() };
    let database = url.rsplit('/').next().unwrap().to_owned();
    let mut admin = postgres::Client::connect(url, postgres::NoTls).unwrap();
    let mut terminated = 0;
    for round in 0..3 {
        if round == 1 {
            lab.make_due(SYSTEM);
        }
        let rows = admin
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[&database],
            )
            .unwrap();
        terminated += rows.len();
        let took = recovered(&client, &serving.api, Duration::from_secs(5));
        eprintln!("store_faults: {} session(s) terminated, 200 again after {took:?}", rows.len());
    }
    std::thread::sleep(Duration::from_millis(300));
    let seen = traffic.finish();
    assert!(terminated >= 3, "serve's sessions were terminated ({terminated})");
    judge(&seen);
    let (status, after, _) = authorize(&client, &serving.api);
    assert_eq!(status, 200);
    assert_ne!(header(&after), header(&first), "renewed");
    assert_eq!(lab.proxy.forwarded() - grants, 1, "exactly one refresh grant");
}
