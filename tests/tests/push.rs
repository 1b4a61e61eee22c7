//! `authplug push` to a fake integration node, and `authplug request` with a stored system's
//! credentials: the steps after `connect` in a connector developer's day.

use authplug_testkit::tripletex::Tripletex;
use tests::desk::Desk;
use tests::node::FakeNode;

const CONSUMER: &str = "consumer-6f1d2c3b-secret";
const EMPLOYEE: &str = "employee-9a8b7c6d-secret";
const NODE_JWT: &str = "node-jwt-5e6f7a8b";

/// A desk with the Tripletex connector connected (against the fake) as `tripletex-acme`.
fn connected(fake: &Tripletex) -> Desk {
    let desk = Desk::new();
    let dir = desk.connector("tripletex", |_| {});
    std::fs::write(
        dir.join(".authconfig"),
        format!(
            "consumer_token={CONSUMER}\nemployee_token={EMPLOYEE}\nbase_url={}\n",
            fake.base_url()
        ),
    )
    .unwrap();
    let output = desk
        .authplug()
        .args(["connect", dir.to_str().unwrap(), "--system", "tripletex-acme", "--no-prompt"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    desk
}

#[test]
fn push_sends_the_injected_secrets_and_merges_the_environment() {
    let fake = Tripletex::start(CONSUMER, EMPLOYEE);
    let desk = connected(&fake);
    let node = FakeNode::start(NODE_JWT, &[("existing", "keep-me")]);

    // A dry run names what would go, and sends nothing.
    let dry = desk
        .authplug()
        .args(["push", "tripletex-acme", "--node", &node.url(), "--dry-run"])
        .env_remove("AUTHPLUG_NODE_JWT")
        .output()
        .unwrap();
    assert!(dry.status.success());
    let said = String::from_utf8_lossy(&dry.stdout);
    assert!(said.contains("consumer_token, employee_token, webhook_secret"), "{said}");
    assert!(!said.contains(CONSUMER));
    assert!(node.state.lock().unwrap().requests.is_empty(), "a dry run sends nothing");

    let output = desk
        .authplug()
        .args(["push", "tripletex-acme", "--node", &node.url(), "--json"])
        .env("AUTHPLUG_NODE_JWT", NODE_JWT)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(!stderr.contains(CONSUMER) && !stderr.contains(NODE_JWT), "{stderr}");
    // Exactly what the scheme injects, and the webhook secret the manifest asks for.
    let pushed = node.secrets_of("tripletex-acme");
    let names: Vec<&String> = pushed.keys().collect();
    assert_eq!(names, ["consumer_token", "employee_token", "webhook_secret"]);
    assert_eq!(pushed["consumer_token"], CONSUMER);
    let record = desk.store().get("tripletex-acme").unwrap().unwrap();
    // Compared, never printed: it is a secret.
    assert!(pushed["webhook_secret"] == record.required["webhook_secret"].expose());
    // The environment was merged, not replaced.
    let env = node.state.lock().unwrap().env.clone();
    assert_eq!(env["existing"], "keep-me");
    assert_eq!(env["base_url"], fake.base_url());
    assert_eq!(
        node.state.lock().unwrap().requests,
        ["POST /api/systems/tripletex-acme/secrets", "GET /api/env", "PUT /api/env",]
    );
}

#[test]
fn a_node_that_refuses_or_fails_gets_a_clear_error_and_nothing_changes_locally() {
    let fake = Tripletex::start(CONSUMER, EMPLOYEE);
    let desk = connected(&fake);
    let before = desk.store().get("tripletex-acme").unwrap().unwrap().summary;

    // A wrong token: 401.
    let node = FakeNode::start(NODE_JWT, &[]);
    let output = desk
        .authplug()
        .args(["push", "tripletex-acme", "--node", &node.url()])
        .env("AUTHPLUG_NODE_JWT", "wrong-token")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/api/systems/tripletex-acme/secrets: the node refused the node token (check AUTHPLUG_NODE_JWT): HTTP 401 Unauthorized; nothing further was sent"), "{stderr}");
    assert!(!stderr.contains("wrong-token") && !stderr.contains(CONSUMER), "{stderr}");

    // A failing node: 500, and the environment is not touched.
    node.state.lock().unwrap().failing = Some(500);
    let output = desk
        .authplug()
        .args(["push", "tripletex-acme", "--node", &node.url()])
        .env("AUTHPLUG_NODE_JWT", NODE_JWT)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("the node failed: HTTP 500"));
    assert!(node.state.lock().unwrap().env.is_empty());

    let after = desk.store().get("tripletex-acme").unwrap().unwrap().summary;
    assert_eq!(
        (after.version, after.state),
        (before.version, before.state),
        "nothing changed locally"
    );

    // Secrets never go in clear to another machine.
    let output = desk
        .authplug()
        .args(["push", "tripletex-acme", "--node", "http://node.example"])
        .env("AUTHPLUG_NODE_JWT", NODE_JWT)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn request_applies_the_schemes_credentials_to_one_call() {
    let fake = Tripletex::start(CONSUMER, EMPLOYEE);
    let desk = connected(&fake);
    let url = format!("{}/v2/token/session/>whoAmI", fake.base_url());
    let output = desk.authplug().args(["request", "tripletex-acme", "GET", &url]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("HTTP 200"), "{stderr}");
    let body: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(body["value"].is_object(), "whoAmI answered: {body}");

    // Without the credentials the same call is refused: the check can fail.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let plain = runtime.block_on(async { reqwest::get(&url).await.unwrap().status() });
    assert_eq!(plain, 401);
}
