//! `authplug serve` as an operator runs it: started on a fresh store with the built plugins,
//! probed, and called by workers with tokens of different scopes, against oidc-provider.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use tests::lifecycle::{Lab, SYSTEM};
use tests::server::{api_token, built_schemes, call, HubSpot, Server};

#[test]
fn every_route_wants_a_token_of_the_right_scope_and_secrets_stay_out_of_logs() {
    let lab = Lab::sqlite();
    let tokens = lab.key_file().with_file_name("tokens.json");
    let admin = api_token(&lab, &tokens, "ops", &["admin"]);
    let reader = api_token(&lab, &tokens, "reader", &[&format!("secrets:{SYSTEM}")]);
    let worker = api_token(&lab, &tokens, "worker", &[&format!("authorize:{SYSTEM}")]);
    let stranger = api_token(&lab, &tokens, "stranger", &["secrets:other", "authorize:other"]);
    // Connectors come later: the folder starts empty.
    let connectors = lab.key_file().with_file_name("connectors");
    std::fs::create_dir_all(&connectors).unwrap();
    let mut server =
        Server::start_with(&lab, &tokens, &["--connectors", connectors.to_str().unwrap()]);
    eprintln!(
        "serve: /readyz answered {} ms after the process started",
        server.ready_after.as_millis()
    );
    assert!(
        server.ready_after < Duration::from_secs(2),
        "ready within 2 s: {:?}",
        server.ready_after
    );

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let base = &server.url;
    let routes = [
        ("GET", format!("{base}/v1/systems")),
        ("GET", format!("{base}/v1/systems/{SYSTEM}")),
        ("GET", format!("{base}/v1/systems/{SYSTEM}/secrets")),
        ("POST", format!("{base}/v1/systems/{SYSTEM}/authorize")),
        ("DELETE", format!("{base}/v1/systems/{SYSTEM}")),
        ("POST", format!("{base}/v1/systems/{SYSTEM}/onboard")),
        ("GET", format!("{base}/v1/connectors")),
    ];
    runtime.block_on(async {
        for (method, url) in &routes {
            for token in [None, Some("ap_not-a-token")] {
                let (status, cache, _) = call(method, url, token).await;
                assert_eq!(status, 401, "{method} {url} with {token:?}");
                assert_eq!(cache, "no-store");
            }
            let (status, _, body) = call(method, url, Some(&stranger)).await;
            assert_eq!(status, 403, "{method} {url} with another system's token: {body}");
        }
        // Each scope exactly: the worker may authorize only, the reader may not list or delete.
        assert_eq!(call("GET", &routes[2].1, Some(&worker)).await.0, 403);
        assert_eq!(call("GET", &routes[0].1, Some(&reader)).await.0, 403);
        assert_eq!(call("DELETE", &routes[4].1, Some(&reader)).await.0, 403);

        let (status, cache, read) = call("GET", &routes[2].1, Some(&reader)).await;
        assert_eq!((status, cache.as_str()), (200, "no-store"));
        assert!(read["secrets"]["oauth_access_token"].is_string());
        assert!(
            read["secrets"].get("oauth_refresh_token").is_none(),
            "refresh tokens only to long-lived scopes"
        );
        assert!(read["secrets"].get("oauth_client_secret").is_none());
        assert_eq!(
            read["withheld"],
            serde_json::json!(["oauth_client_secret", "oauth_refresh_token"])
        );
        let (_, _, full) = call("GET", &routes[2].1, Some(&admin)).await;
        assert!(full["secrets"]["oauth_refresh_token"].is_string());

        let (status, _, authorized) = call("POST", &routes[3].1, Some(&worker)).await;
        assert_eq!(status, 200, "{authorized}");
        let access = read["secrets"]["oauth_access_token"].as_str().unwrap();
        assert_eq!(authorized["headers"][0][0], "Authorization");
        assert!(
            authorized["headers"][0][1] == format!("Bearer {access}"),
            "the bearer header of the stored token"
        );
        assert!(authorized.get("secrets").is_none());

        let (status, _, listed) = call("GET", &routes[0].1, Some(&admin)).await;
        assert_eq!(status, 200);
        assert_eq!(listed["systems"][0]["id"], SYSTEM);
        assert!(!listed.to_string().contains(access), "listings carry no value");
    });

    // Every secret read is in the audit trail, with the token's name.
    let audit = lab.store().audit(SYSTEM).unwrap();
    let reads: Vec<&str> =
        audit.iter().filter(|a| a.action == "secrets_read").map(|a| a.actor.as_str()).collect();
    assert_eq!(reads, ["api:reader", "api:ops"]);

    // Nothing secret in the server's log.
    let record = lab.store().get(SYSTEM).unwrap().unwrap();
    let log = server.log.lock().unwrap().join("\n");
    for (name, value) in record.injected.iter().chain(&record.required) {
        assert!(!log.contains(value.expose()), "{name} appeared in the log");
    }
    for token in [&admin, &reader, &worker, &stranger] {
        assert!(!log.contains(token.as_str()));
    }

    // A token and a connector added while serving are there after SIGHUP reloads the
    // configuration.
    let late = api_token(&lab, &tokens, "late", &["admin"]);
    let listed = runtime.block_on(call("GET", &routes[6].1, Some(&admin))).2;
    assert_eq!(listed["connectors"], serde_json::json!([]));
    tests::desk::copy_connector("hubspot", &connectors.join("hubspot"), |_| {});
    assert_eq!(
        runtime.block_on(call("GET", &routes[0].1, Some(&late))).0,
        401,
        "not before the reload"
    );
    let pid = server.child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    let reloaded = runtime.block_on(async {
        // The reload is asynchronous to the signal: poll until it has happened (bounded).
        for _ in 0..200 {
            if call("GET", &routes[0].1, Some(&late)).await.0 == 200 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    });
    assert!(reloaded, "the new token works after SIGHUP");
    assert_eq!(
        runtime.block_on(call("GET", &routes[0].1, Some(&admin))).0,
        200,
        "the old ones still do"
    );
    // The connector, with the inputs its onboarding wants (names, never values).
    let listed = runtime.block_on(call("GET", &routes[6].1, Some(&late))).2;
    assert_eq!(listed["connectors"][0]["name"], "hubspot", "{listed}");
    assert_eq!(listed["connectors"][0]["scheme"], "oauth2");
    let inputs: Vec<&str> = listed["connectors"][0]["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(inputs, ["client_id", "client_secret"]);

    // The connect page: static, served without a token, under a strict policy; and off when
    // asked.
    let page = runtime.block_on(async {
        let response = reqwest::get(format!("{}/", server.url)).await.unwrap();
        assert_eq!(response.status(), 200);
        let policy = response.headers()["content-security-policy"].to_str().unwrap().to_owned();
        assert!(policy.contains("script-src 'self'") && !policy.contains("unsafe-inline"));
        response.text().await.unwrap()
    });
    assert!(page.contains("<script src=\"/ui/app.js\" defer></script>"), "{page}");

    assert!(server.stop().success(), "a graceful stop");
    assert!(server.log.lock().unwrap().iter().any(|l| l.contains("authplug serve: stopped")));
    let api_only = Server::start_with(&lab, &tokens, &["--no-web-page"]);
    let status = runtime
        .block_on(async { reqwest::get(format!("{}/", api_only.url)).await.unwrap().status() });
    assert_eq!(status, 404, "no page with --no-web-page");
}

#[test]
fn a_connector_onboarded_through_the_api_serves_a_hundred_reads_across_an_expiry_with_one_refresh()
{
    let lab = Lab::sqlite();
    let hubspot = HubSpot::new(&lab);
    let admin = &hubspot.admin;
    let reader = api_token(&lab, &hubspot.tokens, "reader", &["secrets:crm-api"]);
    let server = hubspot.serve(&lab);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = reqwest::Client::new();

    // Onboarding: start, the consent in "the browser", the callback to the server.
    let started = runtime.block_on(async {
        let response = hubspot.onboard(&server, "crm-api", None).await;
        assert_eq!(response.status(), 200);
        serde_json::from_slice::<Value>(&response.bytes().await.unwrap()).unwrap()
    });
    assert_eq!(started["step"], "redirect");
    let redirect = format!("{}/v1/onboarding/callback", server.url);

    // A page's onboarding (return_to) whose consent the user refuses goes back to the page
    // with the outcome's code only; a return_to that leaves this server is refused up front.
    let (refused, escaping) = runtime.block_on(async {
        let escaping = hubspot.onboard(&server, "refused", Some("/\t/evil.example")).await.status();
        let answer = hubspot.onboard(&server, "refused", Some("/")).await.bytes().await.unwrap();
        let answer: Value = serde_json::from_slice(&answer).unwrap();
        let consent = reqwest::Url::parse(answer["url"].as_str().unwrap()).unwrap();
        let state = consent.query_pairs().find(|(k, _)| k == "state").unwrap().1.into_owned();
        let no_redirects =
            reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let url = reqwest::Url::parse_with_params(
            &redirect,
            [
                ("state", state.as_str()),
                ("error", "access_denied"),
                ("error_description", "<b>no</b>"),
            ],
        )
        .unwrap();
        let response = no_redirects.get(url).send().await.unwrap();
        (response, escaping)
    });
    assert_eq!(escaping, 400, "an open redirect is refused");
    assert_eq!(refused.status(), 303);
    assert_eq!(refused.headers()["location"], "/#error=consent_refused");
    assert!(lab.store().get("refused").unwrap().is_none(), "nothing stored");
    let query =
        runtime.block_on(tests::oidc::follow_consent(started["url"].as_str().unwrap(), &redirect));
    // The browser comes back to another instance on the same store (behind one load balancer):
    // it finishes the onboarding.
    let other = hubspot.serve(&lab);
    let elsewhere = format!("{}/v1/onboarding/callback", other.url);
    let there = reqwest::Url::parse_with_params(&elsewhere, &query).unwrap();
    let page = runtime.block_on(async { reqwest::get(there).await.unwrap() });
    assert_eq!(page.status(), 200);
    drop(other);
    // The same callback again, at the first instance (a replay), is refused.
    let callback = reqwest::Url::parse_with_params(&redirect, &query).unwrap();
    let (replay, page) = runtime.block_on(async {
        let response = reqwest::get(callback).await.unwrap();
        (response.status(), response.text().await.unwrap())
    });
    assert_eq!(replay, 400);
    assert!(page.contains("already used state: start the onboarding again"), "{page}");
    assert!(page.contains("<a href=\"/\">Back to authplug</a>"), "a page for a person: {page}");
    let forged = format!("{redirect}?code=x&state=forged-state-0123456789");
    assert_eq!(runtime.block_on(async { reqwest::get(forged).await.unwrap().status() }), 400);
    let record = lab.store().get("crm-api").unwrap().expect("onboarded through the API");
    assert!(record.injected.contains_key("oauth_refresh_token"));

    // 100 concurrent reads across an expiry: one refresh grant at the server.
    let before = lab.proxy.forwarded();
    let old = record.injected["oauth_access_token"].expose().to_owned();
    lab.make_due("crm-api");
    let url = format!("{}/v1/systems/crm-api/secrets", server.url);
    let seen: Vec<String> = runtime.block_on(async {
        let calls: Vec<_> = (0..100)
            .map(|_| {
                let (client, url, reader) = (client.clone(), url.clone(), reader.clone());
                tokio::spawn(async move {
                    let response = client.get(&url).bearer_auth(&reader).send().await.unwrap();
                    assert_eq!(response.status(), 200);
                    let body: Value =
                        serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
                    body["secrets"]["oauth_access_token"].as_str().unwrap().to_owned()
                })
            })
            .collect();
        let mut seen = Vec::new();
        for call in calls {
            seen.push(call.await.unwrap());
        }
        seen
    });
    assert_eq!(lab.proxy.forwarded() - before, 1, "exactly one refresh grant reached the server");
    assert!(seen.iter().all(|t| t == &seen[0]), "every caller got the same token");
    assert!(seen[0] != old, "a new token");

    // The metrics saw it: one refresh, two active credentials, a hundred reads.
    let metrics = runtime.block_on(async {
        let response = reqwest::get(format!("{}/metrics", server.url)).await.unwrap();
        String::from_utf8(response.bytes().await.unwrap().to_vec()).unwrap()
    });
    assert!(
        metrics.contains("authplug_lifecycle_events_total{kind=\"refreshed\"} 1\n"),
        "{metrics}"
    );
    assert!(metrics.contains("authplug_credentials{state=\"active\"} 2\n"), "{metrics}");
    assert!(
        metrics.contains(
            "authplug_http_requests_total{route=\"/v1/systems/{id}/secrets\",status=\"200\"} 100\n"
        ),
        "{metrics}"
    );
    assert!(!metrics.contains(&seen[0]) && !metrics.contains("crm-api"), "no value, no system id");

    // A deleted system is not authorised from memory: its reused answer goes with it.
    let authorize = format!("{}/v1/systems/crm-api/authorize", server.url);
    let system = format!("{}/v1/systems/crm-api", server.url);
    runtime.block_on(async {
        assert_eq!(call("POST", &authorize, Some(admin)).await.0, 200);
        assert_eq!(call("POST", &authorize, Some(admin)).await.0, 200);
        assert_eq!(call("DELETE", &system, Some(admin)).await.0, 204);
        assert_eq!(call("POST", &authorize, Some(admin)).await.0, 404);
    });
    let metrics = runtime.block_on(async {
        let response = reqwest::get(format!("{}/metrics", server.url)).await.unwrap();
        response.text().await.unwrap()
    });
    assert!(metrics.contains("authplug_authorize_cache_total{result=\"hit\"} 1\n"), "{metrics}");
    assert!(metrics.contains("authplug_authorize_cache_total{result=\"miss\"} 2\n"), "{metrics}");
}

#[test]
fn the_readmes_first_command_serves_a_fresh_store_with_every_built_plugin() {
    // `cargo xtask run -- serve` as a new user types it (the build is up to date), with a fresh
    // home so that the embedded default store is new, and a free port.
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let first = readme.split("```sh").nth(1).unwrap().lines().nth(1).unwrap();
    let command = first.split("  #").next().unwrap().trim();
    assert_eq!(command, "cargo xtask run -- serve");
    let home = tempfile::tempdir().unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let started = Instant::now();
    let mut cargo = std::process::Command::new(env!("CARGO"))
        .args(["xtask", "run", "--", "serve"])
        .current_dir(root)
        .env("XDG_DATA_HOME", home.path().join("data"))
        .env("XDG_CONFIG_HOME", home.path().join("config"))
        .env("AUTHPLUG_LISTEN", "127.0.0.1:0")
        .env_remove("AUTHPLUG_PLUGIN_DIR")
        .env_remove("AUTHPLUG_STORE")
        .env_remove("AUTHPLUG_KEY_FILE")
        .env_remove("AUTHPLUG_MASTER_KEY")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(cargo.stderr.take().unwrap()).lines();
    let line = loop {
        let line = lines.next().expect("serve started").unwrap();
        if line.contains("listening on ") {
            break line;
        }
    };
    let url =
        line.split("listening on ").nth(1).unwrap().split_whitespace().next().unwrap().to_owned();
    let pid = line.split("pid ").nth(1).unwrap().split(')').next().unwrap().to_owned();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let ready: Value = runtime.block_on(async {
        let response = reqwest::get(format!("{url}/readyz")).await.unwrap();
        serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
    });
    eprintln!(
        "serve: README command to /readyz in {} ms (cargo's up-to-date check included)",
        started.elapsed().as_millis()
    );
    // Stop authplug by its own id; cargo and xtask then end with its exit code.
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = cargo.wait().unwrap();
    assert_eq!(
        ready["schemes"].as_array().unwrap().len(),
        built_schemes(),
        "every built plugin: {ready}"
    );
    assert_eq!(ready["systems"], 0, "a fresh store");
    assert!(
        home.path().join("data/authplug/store.sqlite3").is_file(),
        "the embedded default store"
    );
    assert!(status.success(), "stopped gracefully: {status}");
}

/// A system that needs re-authorisation, onboarded again through the API and its consent:
/// active again, and the onboarding service says `recovered` exactly once, to the webhook and
/// in the server's log.
#[test]
fn onboarding_again_through_the_api_a_system_that_needs_reauthorisation_says_it_recovered_once() {
    let lab = Lab::sqlite();
    let hubspot = HubSpot::new(&lab);
    let (hook, delivered) = tests::webhook::receiver("serve-whsec", 0);
    let secret_file = lab.key_file().with_file_name("webhook.secret");
    std::fs::write(&secret_file, "serve-whsec").unwrap();
    let hook_url = format!("{}/events", hook.url());
    let extra = [
        "--connectors",
        hubspot.connectors.to_str().unwrap(),
        "--webhook-url",
        &hook_url,
        "--webhook-secret-file",
        secret_file.to_str().unwrap(),
        "-v",
    ];
    let mut server = Server::start_with(&lab, &hubspot.tokens, &extra);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let redirect = format!("{}/v1/onboarding/callback", server.url);
    let onboard = |replace: bool| {
        runtime.block_on(async {
            let body = serde_json::json!({"replace": replace});
            let answer = hubspot.onboard_with(&server, "crm-again", body).await;
            let started: Value = serde_json::from_slice(&answer.bytes().await.unwrap()).unwrap();
            assert_eq!(started["step"], "redirect", "{started}");
            let query =
                tests::oidc::follow_consent(started["url"].as_str().unwrap(), &redirect).await;
            let callback = reqwest::Url::parse_with_params(&redirect, &query).unwrap();
            assert_eq!(reqwest::get(callback).await.unwrap().status(), 200);
        })
    };
    onboard(false);
    let store = lab.store();
    let version = store.version("crm-again").unwrap().unwrap();
    let lost = authplug_store::Change {
        state: Some(authplug_store::Lifecycle::NeedsReauth("invalid_grant: revoked".into())),
        ..Default::default()
    };
    store.update("crm-again", version, lost, "test").unwrap();
    onboard(true);
    let record = store.get("crm-again").unwrap().unwrap();
    assert_eq!(record.summary.state, authplug_store::State::Active);
    // A graceful stop delivers what is queued and closes the log.
    assert!(server.stop().success());
    assert_eq!(tests::webhook::kinds(&delivered, "crm-again"), ["recovered"]);
    let log = server.log.lock().unwrap();
    let said: Vec<&String> = log.iter().filter(|l| l.contains("crm-again recovered")).collect();
    assert_eq!(said.len(), 1, "one log line: {log:?}");
    let audited = store.audit("crm-again").unwrap();
    assert_eq!(audited.iter().filter(|e| e.action == "recovered").count(), 1);
}
