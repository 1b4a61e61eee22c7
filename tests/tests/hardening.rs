//! Issue 16: what an attacker's probe and a careless operator found, each as the command they
//! ran. Connector folders are copies of the real ones, edited as an attacker would.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Output;

use serde_json::json;
use tests::desk::Desk;
use tests::{stderr, stdout};

const KEY: &str = "wc-api-key-5f0e91";

/// A desk with the real `woocommerce` connector connected as system `w`.
fn connected() -> (Desk, std::path::PathBuf) {
    let desk = Desk::new();
    let connector = desk.connector("woocommerce", |_| {});
    let output = connect(&desk, &connector);
    assert!(output.status.success(), "{}", stderr(&output));
    (desk, connector)
}

fn connect(desk: &Desk, connector: &Path) -> Output {
    desk.authplug()
        .arg("connect")
        .arg(connector)
        .args(["--system", "w", "--secret", &format!("api_key={KEY}"), "--no-prompt"])
        .args(["--param", "consumer_key=ck", "--param", "domain=shop.example.com"])
        .output()
        .unwrap()
}

fn render(desk: &Desk, connector: &Path, out: &Path) -> Output {
    desk.authplug()
        .arg("render")
        .arg(connector)
        .args(["--system", "w", "--reveal", "--output"])
        .arg(out)
        .output()
        .unwrap()
}

/// What a command said, on either stream.
fn said(output: &Output) -> String {
    format!("{}{}", stdout(output), stderr(output))
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_datatype_named_like_a_path_is_refused_by_check_and_render_and_writes_nothing() {
    let (desk, _) = connected();
    let escape = desk.dir.path().join("escape");
    for name in ["../../escape/x", "/tmp/authplug-abs-probe", "a\u{202e}b"] {
        let connector = desk.dir.path().join(format!("evil-{}", name.len()));
        tests::desk::copy_connector("woocommerce", &connector, |m| {
            m["datatypes"][name] = json!({"template": "templates/products.json"});
        });
        let checked = desk.authplug().arg("check").arg(&connector).output().unwrap();
        assert_eq!(checked.status.code(), Some(2), "{}", said(&checked));
        assert!(said(&checked).contains("manifest.json:"), "{}", said(&checked));
        assert!(said(&checked).contains("a datatype's name names its rendered file"));
        let out = desk.dir.path().join("out");
        let rendered = render(&desk, &connector, &out);
        assert_eq!(rendered.status.code(), Some(2), "{}", stderr(&rendered));
        assert_eq!(stderr(&rendered).lines().filter(|l| l.starts_with("error:")).count(), 1);
    }
    assert!(!escape.exists() && !Path::new("/tmp/authplug-abs-probe.json").exists());
}

#[test]
fn render_replaces_a_planted_link_and_a_loose_file_with_private_files() {
    let (desk, connector) = connected();
    let out = desk.dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let elsewhere = desk.dir.path().join("elsewhere.json");
    std::fs::write(&elsewhere, "{}").unwrap();
    std::os::unix::fs::symlink(&elsewhere, out.join("system.json")).unwrap();
    std::fs::write(out.join("products.json"), "{}").unwrap();
    std::fs::set_permissions(out.join("products.json"), std::fs::Permissions::from_mode(0o666))
        .unwrap();
    let rendered = render(&desk, &connector, &out);
    assert!(rendered.status.success(), "{}", stderr(&rendered));
    assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), "{}", "the link was not followed");
    let system = std::fs::read_to_string(out.join("system.json")).unwrap();
    assert!(system.contains(KEY), "the revealed secret is in the file written");
    assert_eq!((mode(&out.join("system.json")), mode(&out.join("products.json"))), (0o600, 0o600));
    // A folder render creates is its owner's only.
    let fresh = desk.dir.path().join("fresh/out");
    assert!(render(&desk, &connector, &fresh).status.success());
    assert_eq!(mode(&fresh), 0o700);
}

#[test]
fn store_export_replaces_a_planted_link_and_a_loose_file() {
    let (desk, _) = connected();
    let elsewhere = desk.dir.path().join("elsewhere");
    std::fs::write(&elsewhere, "keep").unwrap();
    let bundle = desk.dir.path().join("bundle.json");
    std::os::unix::fs::symlink(&elsewhere, &bundle).unwrap();
    let exported = desk.authplug().args(["store", "export", "-o"]).arg(&bundle).output().unwrap();
    assert!(exported.status.success(), "{}", stderr(&exported));
    assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), "keep");
    assert!(!std::fs::symlink_metadata(&bundle).unwrap().file_type().is_symlink());
    std::fs::set_permissions(&bundle, std::fs::Permissions::from_mode(0o666)).unwrap();
    let again = desk.authplug().args(["store", "export", "-o"]).arg(&bundle).output().unwrap();
    assert!(again.status.success());
    assert_eq!(mode(&bundle), 0o600);
}

#[test]
fn templates_outside_the_folder_and_templates_that_are_not_json_are_refused() {
    let (desk, _) = connected();
    let secret_elsewhere = desk.dir.path().join("elsewhere.json");
    std::fs::write(&secret_elsewhere, "{\"stolen\": true}").unwrap();
    // An absolute path, a climb out with `..`: refused where the manifest names them.
    for path in [secret_elsewhere.to_str().unwrap(), "templates/../../elsewhere.json"] {
        let connector = desk.dir.path().join(format!("c{}", path.len()));
        tests::desk::copy_connector("woocommerce", &connector, |m| {
            m["system-template"] = json!(path);
        });
        let checked = desk.authplug().arg("check").arg(&connector).output().unwrap();
        assert_eq!(checked.status.code(), Some(2), "{}", said(&checked));
        assert!(said(&checked).contains(&format!("template {path:?}")), "{}", said(&checked));
    }
    // A link out of the folder.
    let linked = desk.connector("woocommerce", |_| {});
    let system = linked.join("templates/system.json");
    std::fs::remove_file(&system).unwrap();
    std::os::unix::fs::symlink(&secret_elsewhere, &system).unwrap();
    let checked = desk.authplug().arg("check").arg(&linked).output().unwrap();
    assert_eq!(checked.status.code(), Some(2), "{}", said(&checked));
    assert!(said(&checked).contains("outside the connector folder"), "{}", said(&checked));
    let rendered = render(&desk, &linked, &desk.dir.path().join("o"));
    assert_eq!(rendered.status.code(), Some(2));
    assert!(!stdout(&rendered).contains("stolen"));
    // Not JSON.
    std::fs::remove_file(&system).unwrap();
    std::fs::write(&system, "{\"_id\": \"{{@ system @}}\", \"n\": {{@ page @}},, }").unwrap();
    let checked = desk.authplug().arg("check").arg(&linked).output().unwrap();
    assert_eq!(checked.status.code(), Some(2));
    assert!(
        said(&checked).contains("templates/system.json:1:45: error: not JSON"),
        "{}",
        said(&checked)
    );
}

#[test]
fn an_oversized_manifest_or_template_is_refused_with_its_size() {
    let desk = Desk::new();
    let connector = desk.connector("woocommerce", |_| {});
    let big = vec![b' '; authplug_connector::MAX_TEMPLATE_BYTES as usize + 1];
    std::fs::write(connector.join("templates/products.json"), &big).unwrap();
    let checked = desk.authplug().arg("check").arg(&connector).output().unwrap();
    let expected = format!("it is {} bytes; the largest read is", big.len());
    assert!(said(&checked).contains(&expected), "{}", said(&checked));
    let manifest = connector.join("manifest.json");
    std::fs::write(&manifest, &big[..authplug_connector::MAX_MANIFEST_BYTES as usize + 1]).unwrap();
    let checked = desk.authplug().arg("check").arg(&connector).output().unwrap();
    assert_eq!(checked.status.code(), Some(2));
    assert!(
        said(&checked).contains("manifest.json:1:1: error: it is 4194305 bytes"),
        "{}",
        said(&checked)
    );
}

#[test]
fn render_offers_the_platform_variables_check_accepts() {
    // Item 14: wix's system template reads `{{@ account_id @}}`, a variable the platform
    // provides; connect stored it as a parameter, so render resolves it.
    let desk = Desk::new();
    let wix = desk.connector("wix", |_| {});
    let connected = desk
        .authplug()
        .arg("connect")
        .arg(&wix)
        .args(["--system", "wx", "--secret", "api_key=wix-key", "--no-prompt"])
        .args(["--param", "account_id=123", "--param", "wix-site-id=site-9"])
        .output()
        .unwrap();
    assert!(connected.status.success(), "{}", stderr(&connected));
    let checked = desk.authplug().arg("check").arg(&wix).output().unwrap();
    assert!(checked.status.success(), "{}", said(&checked));
    let rendered =
        desk.authplug().arg("render").arg(&wix).args(["--system", "wx"]).output().unwrap();
    assert!(rendered.status.success(), "{}", stderr(&rendered));
    let system: serde_json::Value = serde_json::from_str(&stdout(&rendered)).unwrap();
    assert_eq!(system["headers"]["wix-site-id"], "123");
}

#[test]
fn an_authconfig_with_a_byte_order_mark_and_comments_gives_the_values_meant() {
    // Item 13: an editor's byte-order mark and a comment after a value.
    let desk = Desk::new();
    let connector = desk.connector("woocommerce", |_| {});
    std::fs::write(
        connector.join(".authconfig"),
        format!("\u{feff}api_key={KEY}   # the shop's key\n"),
    )
    .unwrap();
    let connected = desk
        .authplug()
        .arg("connect")
        .arg(&connector)
        .args(["--system", "w", "--no-prompt", "--param", "consumer_key=ck"])
        .args(["--param", "domain=shop.example.com"])
        .output()
        .unwrap();
    assert!(connected.status.success(), "{}", stderr(&connected));
    let record = desk.store().get("w").unwrap().unwrap();
    assert_eq!(record.injected["api_key"].expose(), KEY);
}

#[test]
fn system_ids_are_plain_in_every_command_and_route_and_never_printed_raw() {
    // Item 7.
    let desk = Desk::new();
    let connector = desk.connector("woocommerce", |_| {});
    for id in
        ["", "a\u{1b}[31mred", "crm\r\nforged: line", "evil\u{202e}gnp.exe", &"x".repeat(10_000)]
    {
        for args in [vec!["token", id], vec!["systems", "show", id], vec!["refresh", id]] {
            let output = desk.authplug().args(&args).output().unwrap();
            assert_eq!(output.status.code(), Some(2), "{args:?}: {}", stderr(&output));
            let said = stderr(&output);
            assert!(said.starts_with("error: system id \""), "{said}");
            assert!(!said.contains('\u{1b}') && !said.contains('\r') && !said.contains('\u{202e}'));
            assert!(said.len() < 400, "a long id is cut");
        }
        let connected = desk
            .authplug()
            .arg("connect")
            .arg(&connector)
            .args(["--system", id, "--secret", "api_key=k", "--no-prompt"])
            .output()
            .unwrap();
        assert_eq!(connected.status.code(), Some(2), "{}", stderr(&connected));
    }
    let (tokens, admin) = desk.admin_token();
    let mut serve = desk.authplug();
    serve.arg("serve");
    let (mut child, url, _log) = tests::serve(&mut serve, &tokens);
    let answers: Vec<_> =
        ["/v1/systems/a%0Ab", "/v1/systems/a%1B%5B31m/authorize", "/v1/systems/-rf"]
            .iter()
            .map(|path| {
                tests::call(
                    &url,
                    if path.ends_with("authorize") { "POST" } else { "GET" },
                    path,
                    &admin,
                )
            })
            .collect();
    let _ = child.kill();
    let _ = child.wait();
    for (status, body) in answers {
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_system_id")), "{body}");
    }
}

#[test]
fn a_secret_with_a_line_end_is_never_served_as_a_header_value() {
    // Item 11: an API key pasted with CR/LF (or planted to split the connector's request).
    let desk = Desk::new();
    let connector = desk.connector("woocommerce", |_| {});
    let connected = desk
        .authplug()
        .arg("connect")
        .arg(&connector)
        .args(["--system", "w", "--secret", "api_key=k-1\r\nX-Forged: 1", "--no-prompt"])
        .output()
        .unwrap();
    assert!(connected.status.success(), "{}", stderr(&connected));
    let (tokens, admin) = desk.admin_token();
    let mut serve = desk.authplug();
    serve.arg("serve");
    let (mut child, url, _log) = tests::serve(&mut serve, &tokens);
    let (status, body) = tests::call(&url, "POST", "/v1/systems/w/authorize", &admin);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!((status, body["error"].as_str()), (409, Some("invalid_secret")), "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("holds CR") && !message.contains("Forged"), "{message}");
}

#[test]
fn serve_says_why_a_plugin_file_was_refused_and_readyz_names_the_schemes_it_lacks() {
    // Item 4: a second copy of a plugin disables its scheme.
    use std::io::BufRead as _;
    let (desk, _) = connected();
    let api_key = tests::plugin("api_key");
    let oauth2 = tests::plugin("oauth2_scheme");
    let plugins = tests::plugin_folder(&[
        (&api_key, &tests::library_file("api_key")),
        (&api_key, &tests::library_file("api_key_copy")),
        (&oauth2, &tests::library_file("oauth2_scheme")),
    ]);
    let (tokens, _) = desk.admin_token();
    let mut child = desk
        .authplug()
        .env("AUTHPLUG_PLUGIN_DIR", plugins.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--tokens-file"])
        .arg(&tokens)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut before = Vec::new();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("serve starts").unwrap();
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
        before.push(line);
    };
    let (status, ready) = tests::call(&url, "GET", "/readyz", "");
    let _ = child.kill();
    let _ = child.wait();
    let refusals: Vec<&String> = before.iter().filter(|l| l.contains("plugin refused")).collect();
    assert_eq!(refusals.len(), 1, "{before:#?}");
    assert!(refusals[0].contains("both claim the scheme id `api_key`"), "{}", refusals[0]);
    assert!(
        before.iter().any(|l| l.contains("1 stored system(s) use scheme `api_key`")),
        "{before:#?}"
    );
    assert_eq!((status, ready["status"].as_str()), (200, Some("degraded")), "{ready}");
    assert_eq!(ready["missing"], json!([{"scheme": "api_key", "systems": 1}]));
    assert_eq!(ready["degraded"], json!(["api_key"]));
}

#[test]
fn key_store_and_tokens_files_others_could_write_are_refused_and_a_readable_store_is_tightened() {
    // Item 6.
    let (desk, _) = connected();
    let chmod = |path: &Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    let systems = |desk: &Desk| desk.authplug().arg("systems").output().unwrap();
    // A store file others may read is tightened; one others may write is refused.
    chmod(&desk.store_path(), 0o644);
    assert!(systems(&desk).status.success());
    assert_eq!(mode(&desk.store_path()), 0o600);
    chmod(&desk.store_path(), 0o666);
    let refused = systems(&desk);
    assert_eq!(refused.status.code(), Some(10), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("refused: it is writable by group or others (mode 0666"));
    chmod(&desk.store_path(), 0o600);
    // The key file: readable by others is enough to refuse it.
    chmod(&desk.key_file(), 0o644);
    let refused = systems(&desk);
    assert_eq!(refused.status.code(), Some(10), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("master.key: refused: it is readable by group or others"));
    chmod(&desk.key_file(), 0o600);
    // The tokens file, at start.
    let (tokens, _) = desk.admin_token();
    chmod(&tokens, 0o666);
    let serve = desk
        .authplug()
        .args(["serve", "--listen", "127.0.0.1:0", "--tokens-file"])
        .arg(&tokens)
        .output()
        .unwrap();
    assert_eq!(serve.status.code(), Some(10), "{}", stderr(&serve));
    assert!(stderr(&serve).contains("tokens.json: refused: it is writable by group or others"));
}

/// Sends `request` on a new connection to `address` and returns the status line of the answer
/// (or what went wrong), and how long it took.
fn raw(address: &str, request: &str) -> (String, std::time::Duration) {
    use std::io::{Read as _, Write as _};
    let started = std::time::Instant::now();
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = [0u8; 512];
    let said = match stream.read(&mut answer) {
        Ok(n) => String::from_utf8_lossy(&answer[..n]).lines().next().unwrap_or("").to_owned(),
        Err(e) => format!("no answer: {e}"),
    };
    (said, started.elapsed())
}

#[test]
fn serve_limits_idle_connections_slow_heads_and_declared_bodies() {
    // Item 3.
    use std::io::Read as _;
    let desk = Desk::new();
    let (tokens, _) = desk.admin_token();
    let mut serve = desk.authplug();
    serve.args(["serve", "--max-connections", "8", "--header-timeout", "1"]);
    let (mut child, url, _log) = tests::serve(&mut serve, &tokens);
    let address = url.trim_start_matches("http://").to_owned();
    // Five times the cap of idle sockets: the probe still answers within a second.
    let idle: Vec<std::net::TcpStream> =
        (0..40).map(|_| std::net::TcpStream::connect(&address).unwrap()).collect();
    let (status, took) =
        raw(&address, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    // A body declared huge, without a token: refused before a byte of it is sent.
    let (huge, huge_took) = raw(
        &address,
        "POST /v1/systems/w/onboard HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n",
    );
    // A connection that never sends its head is closed after the header timeout.
    let mut slow = std::net::TcpStream::connect(&address).unwrap();
    slow.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    let started = std::time::Instant::now();
    let closed = slow.read(&mut [0u8; 16]);
    let slow_took = started.elapsed();
    let _ = child.kill();
    let _ = child.wait();
    drop(idle);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(took < std::time::Duration::from_secs(1), "{took:?}");
    assert_eq!(huge, "HTTP/1.1 413 Payload Too Large");
    assert!(huge_took < std::time::Duration::from_secs(1), "{huge_took:?}");
    assert!(matches!(closed, Ok(0)), "{closed:?}");
    assert!(slow_took < std::time::Duration::from_secs(4), "{slow_took:?}");
}

#[test]
fn an_authorize_only_token_never_receives_a_long_lived_key_and_every_call_is_audited() {
    // Item 5: the API key scheme's header is the key itself.
    let (desk, _) = connected();
    let (tokens, admin) = desk.admin_token();
    let token = |name: &str, scopes: &[&str]| {
        let mut command = desk.authplug();
        command.args(["api-token", name]);
        for scope in scopes {
            command.args(["--scope", scope]);
        }
        let made = command.arg("--tokens-file").arg(&tokens).output().unwrap();
        assert!(made.status.success(), "{}", stderr(&made));
        stdout(&made).trim().to_owned()
    };
    let worker = token("worker", &["authorize:w"]);
    let reader = token("reader", &["secrets:w"]);
    let keyed = token("keyed", &["authorize:w", "long-lived:w"]);
    let mut serve = desk.authplug();
    serve.arg("serve");
    let (mut child, url, _log) = tests::serve(&mut serve, &tokens);
    let refused: Vec<_> = [&worker, &reader]
        .iter()
        .map(|t| tests::call(&url, "POST", "/v1/systems/w/authorize", t))
        .collect();
    let served: Vec<_> =
        (0..3).map(|_| tests::call(&url, "POST", "/v1/systems/w/authorize", &keyed)).collect();
    let by_admin = tests::call(&url, "POST", "/v1/systems/w/authorize", &admin);
    // Stopped gracefully: the minute in progress goes to the audit trail.
    assert!(tests::terminate(&mut child).success());

    for (status, body) in refused {
        assert_eq!((status, body["error"].as_str()), (403, Some("long_lived")), "{body}");
        let message = body["message"].as_str().unwrap();
        assert!(
            message.contains("api_key scheme") && message.contains("long-lived:w"),
            "{message}"
        );
        assert!(!body.to_string().contains(KEY));
    }
    for (status, body) in served.iter().chain([&by_admin]) {
        assert_eq!(*status, 200, "{body}");
        assert!(body["headers"].to_string().contains(KEY), "{body}");
    }
    let audit = desk.store().audit("w").unwrap();
    // Summed per token: a minute may end between two calls.
    let mut rows = std::collections::BTreeMap::<&str, (u64, u64)>::new();
    for row in audit.iter().filter(|a| a.action == "authorized") {
        let sum = rows.entry(row.actor.as_str()).or_default();
        sum.0 += row.detail["served"].as_u64().unwrap();
        sum.1 += row.detail["refused"].as_u64().unwrap();
    }
    assert_eq!(rows.len(), 4, "a row per token: {rows:?}");
    assert_eq!(rows["api:worker"], (0, 1));
    assert_eq!(rows["api:reader"], (0, 1));
    assert_eq!(rows["api:keyed"], (3, 0));
    assert_eq!(rows["api:ops"], (1, 0));
}
