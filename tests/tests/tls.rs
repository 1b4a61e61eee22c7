//! Issue 16, item 16: `serve` over TLS with a certificate this test made, reloaded on SIGHUP, and
//! plain HTTP only on loopback unless the operator says `--insecure-http`.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use tests::desk::Desk;
use tests::stderr;

/// A self-signed certificate for 127.0.0.1 and localhost: (certificate PEM, key PEM).
fn certificate() -> (String, String) {
    let made =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    (made.cert.pem(), made.key_pair.serialize_pem())
}

/// Writes the pair where serve reads it, the key 0600 (replaced whole, as an operator's renewal
/// does).
fn install(dir: &Path, (cert, key): &(String, String)) {
    for (name, text, mode) in [("cert.pem", cert, 0o644), ("key.pem", key, 0o600)] {
        let next = dir.join(format!("{name}.next"));
        std::fs::write(&next, text).unwrap();
        std::fs::set_permissions(&next, std::fs::Permissions::from_mode(mode)).unwrap();
        std::fs::rename(&next, dir.join(name)).unwrap();
    }
}

/// The status of GET `url`/healthz by a client that trusts `trusted` only, or the error.
fn healthz(url: &str, trusted: &str) -> Result<u16, String> {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(trusted.as_bytes()).unwrap())
            .build()
            .unwrap();
        let answer = client.get(format!("{url}/healthz")).send().await;
        answer.map(|a| a.status().as_u16()).map_err(|e| format!("{e:?}"))
    })
}

#[test]
fn serve_speaks_tls_with_the_certificate_given_and_takes_a_new_one_on_sighup() {
    let desk = Desk::new();
    let (tokens, _) = desk.admin_token();
    let first = certificate();
    install(desk.dir.path(), &first);
    let mut command = desk.authplug();
    command.arg("serve").arg("--tls-cert").arg(desk.dir.path().join("cert.pem"));
    command.arg("--tls-key").arg(desk.dir.path().join("key.pem"));
    let (mut child, url, mut lines) = tests::serve(&mut command, &tokens);
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    assert_eq!(healthz(&url, &first.0), Ok(200), "a client that trusts the certificate");
    let second = certificate();
    let refused = healthz(&url, &second.0).expect_err("a client that trusts another one");
    assert!(refused.contains("certificate") || refused.contains("Certificate"), "{refused}");
    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = url.replacen("https://", "http://", 1);
    assert!(healthz(&plain, &first.0).is_err(), "plain HTTP answered");

    let mut hang_up = |waited: &str| {
        let pid = child.id().to_string();
        assert!(std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success());
        loop {
            let line = lines.next().expect("serve says what it reloaded").unwrap();
            assert!(!line.contains("-----BEGIN"), "a PEM block in the log: {line}");
            if line.contains("TLS certificate") {
                assert!(line.contains(waited), "{line}");
                return line;
            }
        }
    };
    install(desk.dir.path(), &second);
    hang_up("reloaded the TLS certificate from");
    assert_eq!(healthz(&url, &second.0), Ok(200), "the renewed certificate after SIGHUP");
    assert!(healthz(&url, &first.0).is_err(), "the old one is no longer served");

    // A renewal gone wrong (a key that is not the certificate's) keeps the one in use.
    install(desk.dir.path(), &(certificate().0, second.1.clone()));
    let kept = hang_up("kept the old TLS certificate");
    assert!(kept.contains("key.pem") && kept.contains("not the key of the certificate"), "{kept}");
    assert_eq!(healthz(&url, &second.0), Ok(200), "still served");

    assert!(tests::terminate(&mut child).success());
}

#[test]
fn the_key_must_be_private_and_plain_http_stays_on_loopback_unless_the_operator_says_so() {
    let desk = Desk::new();
    let (tokens, _) = desk.admin_token();
    let pair = certificate();
    install(desk.dir.path(), &pair);
    let (cert, key) = (desk.dir.path().join("cert.pem"), desk.dir.path().join("key.pem"));
    let serve = |extra: &[&str]| {
        let mut command = desk.authplug();
        command.arg("serve").arg("--tokens-file").arg(&tokens).args(extra);
        command.output().unwrap()
    };
    let files = ["--listen", "127.0.0.1:0", "--tls-cert", cert.to_str().unwrap()];
    let key_flag = ["--tls-key", key.to_str().unwrap()];

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let output = serve(&[&files[..], &key_flag[..]].concat());
    assert_eq!(output.status.code(), Some(10), "{}", stderr(&output));
    assert!(stderr(&output).contains("key.pem") && stderr(&output).contains("0640"));
    assert!(!stderr(&output).contains("PRIVATE KEY"), "{}", stderr(&output));

    std::fs::write(&key, "not a key\n").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let output = serve(&[&files[..], &key_flag[..]].concat());
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("key.pem: no PEM private key"), "{}", stderr(&output));

    let output = serve(&files);
    assert_eq!(output.status.code(), Some(2), "a certificate without its key");
    assert!(stderr(&output).contains("--tls-key"), "{}", stderr(&output));

    // Refused before anything listens; the address is never bound.
    let output = serve(&["--listen", "0.0.0.0:0"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let said = stderr(&output);
    assert_eq!(said.lines().count(), 1, "one line: {said}");
    assert!(said.contains("--listen 0.0.0.0:0") && said.contains("--insecure-http"), "{said}");
    assert!(!said.contains("listening on"), "{said}");
}
