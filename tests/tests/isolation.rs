//! Isolated plugins, as an operator runs them: `authplug serve --isolation process` with a
//! plugin whose schemes segfault, abort, overflow their stack, spin, allocate without bound, exit
//! and print on the protocol channel, inside a call. Each such call fails with its own code in
//! bounded time; the server keeps its pid and `/readyz`; a stream of authorize calls for a system
//! of another scheme, running all along, sees no failure; and each crashed plugin is started again
//! and serves its next call.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tests::desk::Desk;
use tests::{fixture, library_file, plugin, plugin_folder, stdout};

const HOSTILE: [(&str, &str); 7] = [
    ("segfault", "plugin_crashed"),
    ("abort", "plugin_crashed"),
    ("overflow", "plugin_crashed"),
    ("spin", "plugin_timeout"),
    ("hog", "plugin_crashed"),
    ("quit", "plugin_crashed"),
    ("garbage", "plugin_crashed"),
];

/// A connector folder per scheme: `(name, auth, auth_variant)`.
fn connectors(desk: &Desk, list: &[(&str, &str, Option<&str>)]) -> std::path::PathBuf {
    let root = desk.dir.path().join("connectors");
    for (name, auth, variant) in list {
        let dir = root.join(name);
        std::fs::create_dir_all(dir.join("templates")).unwrap();
        let mut manifest = json!({"auth": auth, "system-template": "templates/system.json"});
        if let Some(variant) = variant {
            manifest["auth_variant"] = (*variant).into();
        }
        std::fs::write(dir.join("manifest.json"), manifest.to_string()).unwrap();
        std::fs::write(dir.join("templates/system.json"), "{}").unwrap();
    }
    root
}

async fn post(url: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = reqwest::Client::new().post(url).bearer_auth(token);
    if let Some(body) = body {
        request = request.header("content-type", "application/json").body(body.to_string());
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, serde_json::from_slice(&response.bytes().await.unwrap()).unwrap_or(Value::Null))
}

#[test]
fn an_isolated_plugin_that_crashes_or_hangs_costs_only_its_own_call() {
    let desk = Desk::new();
    let plugins = plugin_folder(&[
        (&plugin("api_key"), &library_file("api_key")),
        (&fixture("hostile_plugin"), &library_file("hostile_plugin")),
    ]);
    let mut list = vec![("shop", "api_key", None)];
    list.extend(HOSTILE.iter().map(|(id, _)| (*id, "hostile", Some(*id))));
    let connectors = connectors(&desk, &list);
    let (tokens, admin) = desk.admin_token();
    let mut serve = desk.authplug();
    serve
        .env("AUTHPLUG_PLUGIN_DIR", plugins.path())
        .args(["--isolation", "process", "--plugin-timeout", "1", "--plugin-memory", "512"])
        .args(["serve", "--authorize-cache-ms", "0", "--connectors"])
        .arg(&connectors);
    let (mut server, url, _log) = tests::serve(&mut serve, &tokens);
    let pid = server.id();
    let runtime = tokio::runtime::Runtime::new().unwrap();

    let body = json!({"connector": "shop", "secrets": {"api_key": "shop-key-0123456789"}});
    let (status, answer) =
        runtime.block_on(post(&format!("{url}/v1/systems/shop/onboard"), &admin, Some(body)));
    assert_eq!(status, 200, "{answer}");

    // Authorize calls for the shop, as fast as they go, all along.
    let stop = Arc::new(AtomicBool::new(false));
    let (served, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let stream = {
        let (stop, served, failed) = (stop.clone(), served.clone(), failed.clone());
        let (url, admin) = (format!("{url}/v1/systems/shop/authorize"), admin.clone());
        runtime.spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let (status, _) = post(&url, &admin, None).await;
                let counter = if status == 200 { &served } else { &failed };
                counter.fetch_add(1, Ordering::SeqCst);
            }
        })
    };

    for (id, code) in HOSTILE {
        let onboard = format!("{url}/v1/systems/{id}-1/onboard");
        let body = json!({"connector": id, "secrets": {"key": format!("{id}-secret-0123456789")},
                          "parameters": {"misbehave": true}});
        let started = Instant::now();
        let (status, answer) = runtime.block_on(post(&onboard, &admin, Some(body)));
        let took = started.elapsed();
        assert!(matches!(status, 502 | 504), "{id}: {status} {answer}");
        assert_eq!(answer["error"], code, "{id}: {answer}");
        let message = answer["message"].as_str().unwrap();
        eprintln!("{id}: {code} after {took:?}: {message}");
        assert!(message.contains("libhostile_plugin.so"), "{id} names the file: {message}");
        assert!(!message.contains("secret-0123456789"), "{id}: no secret in {message}");
        // The onboarding deadline is three times --plugin-timeout.
        assert!(took < Duration::from_secs(8), "{id} failed in bounded time: {took:?}");
        // Started again, it serves the next call.
        let body = json!({"connector": id, "secrets": {"key": format!("{id}-secret-0123456789")}});
        let again = format!("{url}/v1/systems/{id}-2/onboard");
        let (status, answer) = runtime.block_on(post(&again, &admin, Some(body)));
        assert_eq!(status, 200, "{id} restarted: {answer}");
    }

    stop.store(true, Ordering::SeqCst);
    runtime.block_on(stream).unwrap();
    let readyz = runtime.block_on(async { reqwest::get(format!("{url}/readyz")).await.unwrap() });
    assert_eq!(readyz.status(), 200);
    let ready: Value =
        runtime.block_on(async { serde_json::from_slice(&readyz.bytes().await.unwrap()).unwrap() });
    assert_eq!(ready["degraded"], json!([]), "every plugin was started again: {ready}");
    let metrics = runtime.block_on(async {
        let response = reqwest::Client::new()
            .get(format!("{url}/metrics"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        response.text().await.unwrap()
    });
    for (id, code) in HOSTILE {
        let failed = format!("authplug_plugin_failures_total{{scheme=\"{id}\",code=\"{code}\"}} 1");
        assert!(metrics.contains(&failed), "{failed} in:\n{metrics}");
        // The seven schemes share one file, one process: seven restarts in all.
        let restarted = format!("authplug_plugin_restarts_total{{scheme=\"{id}\"}} 7");
        assert!(metrics.contains(&restarted), "{restarted} in:\n{metrics}");
    }
    assert!(metrics.contains("authplug_plugin_calls_total{scheme=\"api_key\",method=\"apply\"}"));
    assert_eq!(server.try_wait().unwrap(), None, "the server still runs");
    assert_eq!(server.id(), pid);
    let (served, failed) = (served.load(Ordering::SeqCst), failed.load(Ordering::SeqCst));
    assert_eq!(failed, 0, "no authorize call of the other scheme failed ({served} served)");
    assert!(served > 10, "the stream ran all along: {served}");
    let _ = server.kill();
    let _ = server.wait();
}

#[test]
fn a_misbehaving_plugin_asked_to_run_in_process_is_warned_about_and_a_panic_is_still_a_panic() {
    let plugins = plugin_folder(&[(&fixture("misbehaving_plugin"), "libmisbehaving_plugin.so")]);
    let output = tests::authplug(plugins.path(), &["--isolation", "in-process", "schemes"]);
    let said = tests::stderr(&output);
    let warnings: Vec<&str> = said.lines().filter(|l| l.contains("runs in-process")).collect();
    assert_eq!(warnings.len(), 1, "one line for the file: {said}");
    assert!(warnings[0].contains("libmisbehaving_plugin.so") && warnings[0].contains("unisolated"));
    assert!(stdout(&output).contains("in-process"), "{}", stdout(&output));
    let isolated =
        tests::authplug(plugins.path(), &["--isolation", "auto", "schemes", "show", "panicky"]);
    assert!(stdout(&isolated).contains("runs:      process"), "{}", stdout(&isolated));
    assert!(!tests::stderr(&isolated).contains("runs in-process"));

    // A panic is `plugin_panic` in both modes, its secret scrubbed, and nothing is stored.
    let desk = Desk::new();
    let connectors = connectors(&desk, &[("panicky", "fixture", Some("panicky"))]);
    for mode in ["in-process", "process"] {
        let output = desk
            .authplug()
            .env("AUTHPLUG_PLUGIN_DIR", plugins.path())
            .args(["--isolation", mode, "connect"])
            .arg(connectors.join("panicky"))
            .args(["--system", "p", "--no-prompt", "--secret", "token=panic-secret-0123456789"])
            .output()
            .unwrap();
        let said = tests::stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{mode}: {said}");
        assert!(said.contains("plugin_panic: scheme panicked"), "{mode}: {said}");
        assert!(!said.contains("panic-secret-0123456789"), "{mode}: {said}");
    }
}
