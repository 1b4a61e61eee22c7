//! Calls through the real boundary: the host dlopens the built plugin files and calls them.

use std::collections::BTreeMap;

use authplug_host::{HostServices, LoadOptions, Registry};
use authplug_protocol::{
    ApplyRequest, ErrorCode, OnboardRequest, OnboardStep, Secret, PROTOCOL_VERSION,
};
use tests::{fixture, plugin, plugin_folder};

const SECRET: &str = "tok-7f3a9c1e-very-secret";

fn registry(files: &[(&std::path::Path, &str)]) -> (Registry, tempfile::TempDir) {
    let dir = plugin_folder(files);
    let registry = Registry::load(&LoadOptions::from_dirs([dir.path()]));
    assert_eq!(registry.refusals(), &[], "all files load");
    (registry, dir)
}

fn onboard_request(pairs: &[(&str, &str)]) -> OnboardRequest {
    OnboardRequest {
        scheme: String::new(),
        required: pairs.iter().map(|(k, v)| (k.to_string(), Secret::new(*v))).collect(),
        ..Default::default()
    }
}

fn injected(step: OnboardStep) -> BTreeMap<String, String> {
    let OnboardStep::Done { injected, .. } = step else { panic!("expected the done step") };
    injected.into_iter().map(|(k, v)| (k, v.expose().to_owned())).collect()
}

#[test]
fn api_key_onboards_and_applies_through_its_shared_library() {
    let (registry, _dir) = registry(&[(&plugin("api_key"), "libapi_key.so")]);
    let scheme = registry.resolve("api_key", None).expect("resolved by (auth, auth_variant)");
    let host = HostServices::offline();
    let step = scheme.onboard(onboard_request(&[("api_key", SECRET)]), &host).unwrap();
    assert_eq!(injected(step), BTreeMap::from([("api_key".into(), SECRET.into())]));

    let request = ApplyRequest {
        scheme: String::new(),
        injected: BTreeMap::from([("api_key".into(), Secret::new(SECRET))]),
        parameters: serde_json::from_value(serde_json::json!({"style": "bearer"})).unwrap(),
    };
    let applied = scheme.apply(request, &host).unwrap();
    assert_eq!(applied.headers[0].0, "Authorization");
    assert_eq!(applied.headers[0].1.expose(), format!("Bearer {SECRET}"));
}

#[test]
fn missing_or_unexpected_required_secrets_are_refused_before_the_call() {
    let (registry, _dir) = registry(&[(&plugin("api_key"), "libapi_key.so")]);
    let scheme = registry.get("api_key").unwrap();
    let host = HostServices::offline();
    let error = scheme.onboard(onboard_request(&[]), &host).unwrap_err();
    assert_eq!(error.code, ErrorCode::InvalidInput);
    assert_eq!(
        error.to_string(),
        "scheme `api_key`: invalid_input: required secret `api_key` is missing"
    );
    let error = scheme
        .onboard(onboard_request(&[("api_key", SECRET), ("apikey", SECRET)]), &host)
        .unwrap_err();
    assert!(error.message.contains("`apikey` is not one this scheme takes"), "{error}");
    assert!(!error.to_string().contains(SECRET));
}

#[test]
fn a_panicking_scheme_fails_its_call_and_the_process_keeps_serving() {
    let (registry, _dir) = registry(&[
        (&plugin("api_key"), "libapi_key.so"),
        (&fixture("misbehaving_plugin"), "libmisbehaving_plugin.so"),
    ]);
    let host = HostServices::offline();
    for _ in 0..3 {
        let error = registry
            .get("panicky")
            .unwrap()
            .onboard(onboard_request(&[("token", SECRET)]), &host)
            .unwrap_err();
        assert_eq!(error.code, ErrorCode::PluginPanic);
        assert!(error.message.contains("cannot handle token [redacted]"), "{}", error.message);
        assert!(
            error.message.contains("misbehaving-plugin/src/lib.rs"),
            "location: {}",
            error.message
        );
        assert!(!error.message.contains(SECRET));

        // The same plugin file and another one both keep working.
        let steady = registry.get("steady").unwrap();
        assert_eq!(
            injected(steady.onboard(onboard_request(&[("token", "t")]), &host).unwrap())["token"],
            "t"
        );
        let api_key = registry.get("api_key").unwrap();
        assert!(api_key.onboard(onboard_request(&[("api_key", "k")]), &host).is_ok());
    }
}

/// The panic must not print the secret anywhere either: run the panicking call in a child process
/// (this very test binary) and read everything it wrote.
#[test]
fn a_plugin_panic_prints_nothing_secret() {
    if std::env::var_os("AUTHPLUG_CHILD").is_some() {
        let (registry, _dir) =
            registry(&[(&fixture("misbehaving_plugin"), "libmisbehaving_plugin.so")]);
        let error = registry
            .get("panicky")
            .unwrap()
            .onboard(onboard_request(&[("token", SECRET)]), &HostServices::offline())
            .unwrap_err();
        println!("child saw: {error}");
        return;
    }
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "a_plugin_panic_prints_nothing_secret",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("AUTHPLUG_CHILD", "1")
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{all}");
    assert!(all.contains("child saw: scheme `panicky`: plugin_panic"), "{all}");
    assert!(!all.contains(SECRET), "the secret leaked:\n{all}");
}

#[test]
fn the_contract_is_enforced_on_what_a_plugin_injects() {
    let (registry, _dir) =
        registry(&[(&fixture("misbehaving_plugin"), "libmisbehaving_plugin.so")]);
    let liar = registry.get("liar").unwrap();
    let host = HostServices::offline();
    let error = liar.onboard(onboard_request(&[("token", SECRET)]), &host).unwrap_err();
    assert_eq!(error.code, ErrorCode::ContractViolation);
    assert!(error.message.contains("`undeclared` was injected but never declared"), "{error}");
    assert!(!error.to_string().contains("smuggled-value"));

    let mut request = onboard_request(&[("token", SECRET)]);
    request.parameters.insert("omit".into(), serde_json::Value::Bool(true));
    let error = liar.onboard(request, &host).unwrap_err();
    assert_eq!(error.code, ErrorCode::ContractViolation);
    assert!(error.message.contains("`token` was declared but not injected"), "{error}");
}

#[test]
fn a_plugin_built_against_the_previous_minor_loads_and_works() {
    let (registry, _dir) = registry(&[
        (&plugin("api_key"), "libapi_key.so"),
        (&fixture("old_minor_scheme"), "libold_minor_scheme.so"),
    ]);
    let legacy = registry.resolve("api_key", Some("legacy")).expect("the 1.0 plugin is loaded");
    assert_eq!(legacy.origin().protocol().to_string(), "1.0.0");
    assert_ne!(PROTOCOL_VERSION, "1.0.0", "the host is newer than the fixture");
    // Fields that 1.1 added take their defaults.
    assert_eq!(legacy.descriptor().intro, None);
    assert!(legacy.descriptor().notes.is_empty());

    let host = HostServices::offline();
    let step = legacy.onboard(onboard_request(&[("token", SECRET)]), &host).unwrap();
    assert_eq!(injected(step)["legacy_token"], SECRET);

    // A method 1.1 added is answered by the host, without calling the old plugin.
    let request = ApplyRequest {
        scheme: String::new(),
        injected: BTreeMap::new(),
        parameters: BTreeMap::new(),
    };
    let error = legacy.apply(request, &host).unwrap_err();
    assert_eq!(error.code, ErrorCode::UnknownMethod);
    assert!(error.message.contains("`apply` needs protocol 1.1"), "{error}");
}

#[test]
fn the_out_of_tree_scheme_runs_its_flow() {
    let (registry, _dir) =
        registry(&[(&fixture("out_of_tree_scheme"), "libout_of_tree_scheme.so")]);
    let scheme = registry.resolve("api_key", Some("static_bearer")).unwrap();
    let host = HostServices::offline();
    let step = scheme.onboard(onboard_request(&[("token", SECRET)]), &host).unwrap();
    let secrets = injected(step);
    let request = ApplyRequest {
        scheme: String::new(),
        injected: secrets.into_iter().map(|(k, v)| (k, Secret::new(v))).collect(),
        parameters: BTreeMap::new(),
    };
    let applied = scheme.apply(request, &host).unwrap();
    assert_eq!(applied.headers[0].1.expose(), format!("Bearer {SECRET}"));
}

/// A one-shot HTTP server on loopback that answers `body` and hands back the request it saw.
fn one_shot_server(body: &'static str) -> (u16, std::thread::JoinHandle<String>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let (mut socket, _) = listener.accept().unwrap();
        socket.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        let mut seen = Vec::new();
        let mut buffer = [0u8; 4096];
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = socket.read(&mut buffer).unwrap();
            assert!(n > 0, "client closed early");
            seen.extend_from_slice(&buffer[..n]);
        }
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        socket.write_all(answer.as_bytes()).unwrap();
        String::from_utf8_lossy(&seen).into_owned()
    });
    (port, handle)
}

fn networked_host(runtime: &tokio::runtime::Runtime) -> HostServices {
    let config = authplug_host::TransportConfig {
        allow_loopback_http: true,
        ..authplug_host::TransportConfig::default()
    };
    let transport = authplug_host::Transport::new(config, runtime.handle().clone()).unwrap();
    HostServices::new(std::sync::Arc::new(transport))
}

#[test]
fn a_plugin_makes_http_requests_through_the_host_with_the_oauth2_client() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (registry, _dir) =
        registry(&[(&fixture("misbehaving_plugin"), "libmisbehaving_plugin.so")]);
    let (port, server) = one_shot_server("fresh-token-from-server");
    let mut request = onboard_request(&[("token", SECRET)]);
    request.parameters.insert("url".into(), format!("http://127.0.0.1:{port}/token").into());
    // Called from this plain thread, as the host calls plugins from blocking threads.
    let step =
        registry.get("fetcher").unwrap().onboard(request, &networked_host(&runtime)).unwrap();
    assert_eq!(injected(step)["token"], "fresh-token-from-server");
    let seen = server.join().unwrap();
    assert!(seen.starts_with("GET /token HTTP/1.1\r\n"), "{seen}");
    assert!(seen.to_lowercase().contains(&format!("authorization: bearer {SECRET}")), "{seen}");
}

#[test]
fn the_host_policy_applies_to_plugin_requests() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (registry, _dir) =
        registry(&[(&fixture("misbehaving_plugin"), "libmisbehaving_plugin.so")]);
    for (url, reason) in [
        ("https://169.254.169.254/latest/meta-data", "not a public address"),
        ("http://example.com/token", "https only"),
    ] {
        let mut request = onboard_request(&[("token", SECRET)]);
        request.parameters.insert("url".into(), url.into());
        let error = registry
            .get("fetcher")
            .unwrap()
            .onboard(request, &networked_host(&runtime))
            .unwrap_err();
        assert_eq!(error.code, ErrorCode::Http, "{error}");
        assert!(error.message.contains(reason), "{url}: {error}");
    }
}
