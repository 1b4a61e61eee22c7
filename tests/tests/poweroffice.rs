//! The real `powerofficego` connector, with only `auth_variant: poweroffice` added to its
//! manifest, through `authplug check`, `connect`, `request` and `token` against the fake
//! PowerOffice Go (`authplug_testkit::poweroffice`): client credentials with the application and
//! client keys, the subscription key on every request.

use authplug_testkit::poweroffice::PowerOffice;
use serde_json::Value;
use tests::desk::Desk;

const APPLICATION_KEY: &str = "5f3c1f0e-app-key-of-the-integration";
const CLIENT_KEY: &str = "9a7b2c4d-client-key-of-the-customer";
const SUBSCRIPTION_KEY: &str = "c0ffee00-subscription-key";

fn connector(desk: &Desk) -> String {
    let dir = desk.connector("powerofficego", |manifest| {
        manifest["auth_variant"] = "poweroffice".into();
    });
    dir.to_string_lossy().into_owned()
}

fn connect(
    desk: &Desk,
    folder: &str,
    fake: &PowerOffice,
    client_key: &str,
) -> std::process::Output {
    desk.authplug()
        .args(["connect", folder, "--system", "po-acme", "--no-prompt"])
        .args(["--param", &format!("base_url={}", fake.base_url())])
        .args(["--param", "base_url_v1=https://api.poweroffice.invalid"])
        .args(["--secret", &format!("application_key={APPLICATION_KEY}")])
        .args(["--secret", &format!("api_key={client_key}")])
        .args(["--secret", &format!("subscription_key={SUBSCRIPTION_KEY}")])
        .output()
        .unwrap()
}

#[test]
fn the_powerofficego_connector_with_its_variant_passes_check() {
    let desk = Desk::new();
    let folder = connector(&desk);
    let output = desk.authplug().args(["check", &folder, "--deny-warnings"]).output().unwrap();
    let said = format!("{}{}", tests::stdout(&output), tests::stderr(&output));
    assert!(output.status.success(), "{said}");
    assert!(said.contains("powerofficego: ok (poweroffice)"), "{said}");
}

#[test]
fn it_connects_and_requests_carry_the_bearer_token_and_the_subscription_key() {
    let fake = PowerOffice::start(APPLICATION_KEY, CLIENT_KEY, SUBSCRIPTION_KEY);
    let desk = Desk::new();
    let folder = connector(&desk);
    let output = connect(&desk, &folder, &fake, CLIENT_KEY);
    let stderr = tests::stderr(&output);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(fake.tokens_issued(), 1);
    // The scheme's verification, with the token and the subscription key, at the base URL given.
    let verified = format!(
        "po-acme: verified: the scheme's GET {}/v2/ClientIntegrationInformation in ",
        fake.base_url()
    );
    assert!(stderr.contains(&verified), "{stderr}");
    for key in [APPLICATION_KEY, CLIENT_KEY, SUBSCRIPTION_KEY] {
        assert!(!stderr.contains(key), "{stderr}");
    }
    // What the real templates read is injected: the three keys, and the token beside them.
    let record = desk.store().get("po-acme").unwrap().unwrap();
    assert_eq!(record.injected["application_key"].expose(), APPLICATION_KEY);
    assert_eq!(record.injected["api_key"].expose(), CLIENT_KEY);
    assert_eq!(record.injected["subscription_key"].expose(), SUBSCRIPTION_KEY);
    let token = record.injected["oauth_access_token"].expose().to_owned();
    let lapses = record.summary.expires_at.unwrap();
    assert!((lapses - authplug_store::now_secs() - 1200).abs() <= 5, "20-minute tokens");

    let url = format!("{}/v2/customers", fake.base_url());
    let output = desk.authplug().args(["request", "po-acme", "GET", &url]).output().unwrap();
    assert!(output.status.success(), "{}", tests::stderr(&output));
    assert!(tests::stderr(&output).contains("HTTP 200"), "{}", tests::stderr(&output));
    let headers = fake.last_call_headers();
    let header = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    assert_eq!(header("authorization"), Some(format!("Bearer {token}").as_str()));
    assert_eq!(header("ocp-apim-subscription-key"), Some(SUBSCRIPTION_KEY));

    // Renewal: tokens that lapse in 4 s are due at half that; the next request fetches one.
    fake.set_token_lifetime(4);
    let output = desk.authplug().args(["refresh", "po-acme"]).output().unwrap();
    assert!(output.status.success(), "{}", tests::stderr(&output));
    let due = desk.store().get("po-acme").unwrap().unwrap().summary.expires_at.unwrap() - 2;
    let wait = due - authplug_store::now_secs();
    if wait > 0 {
        std::thread::sleep(std::time::Duration::from_secs(wait as u64));
    }
    let output = desk.authplug().args(["token", "po-acme", "--json"]).output().unwrap();
    let answer: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(answer["refreshed"], true, "{answer}");
    assert_eq!(fake.tokens_issued(), 3);

    // The customer replaces the client key: the next renewal is refused, and a human must act.
    fake.set_client_key("a-new-client-key");
    let output = desk.authplug().args(["refresh", "po-acme"]).output().unwrap();
    assert_eq!(output.status.code(), Some(7), "{}", tests::stderr(&output));
    assert!(tests::stderr(&output).contains("invalid_client"), "{}", tests::stderr(&output));
}

#[test]
fn a_wrong_client_key_or_subscription_key_fails_connect_in_one_line() {
    let fake = PowerOffice::start(APPLICATION_KEY, CLIENT_KEY, "another-subscription");
    let desk = Desk::new();
    let folder = connector(&desk);
    let output = connect(&desk, &folder, &fake, CLIENT_KEY);
    assert!(!output.status.success());
    let stderr = tests::stderr(&output);
    let error = stderr.lines().find(|l| l.starts_with("error:")).expect("an error line");
    assert!(
        error.contains("refused the client credentials: the token endpoint answered HTTP 401"),
        "{stderr}"
    );

    let fake = PowerOffice::start(APPLICATION_KEY, CLIENT_KEY, SUBSCRIPTION_KEY);
    let output = connect(&desk, &folder, &fake, "not-the-client-key");
    assert!(!output.status.success());
    let stderr = tests::stderr(&output);
    assert!(stderr.contains("refused the client credentials: invalid_client"), "{stderr}");
    assert!(!stderr.contains("not-the-client-key"), "{stderr}");
    assert!(desk.store().get("po-acme").unwrap().is_none(), "nothing stored");
}

#[test]
fn the_integrators_keys_can_come_from_the_operator_and_the_customer_gives_only_the_client_key() {
    let fake = PowerOffice::start(APPLICATION_KEY, CLIENT_KEY, SUBSCRIPTION_KEY);
    let desk = Desk::new();
    let folder = connector(&desk);
    let operator = desk.dir.path().join("operator-secrets.json");
    let keys = serde_json::json!({"poweroffice": {
        "application_key": APPLICATION_KEY, "subscription_key": SUBSCRIPTION_KEY}});
    std::fs::write(&operator, keys.to_string()).unwrap();
    std::fs::set_permissions(&operator, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .unwrap();
    let output = desk
        .authplug()
        .args(["connect", &folder, "--system", "po-acme", "--no-prompt"])
        .args(["--param", &format!("base_url={}", fake.base_url())])
        .args(["--param", "base_url_v1=https://api.poweroffice.invalid"])
        .args(["--secret", &format!("api_key={CLIENT_KEY}")])
        .arg("--operator-secrets")
        .arg(&operator)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", tests::stderr(&output));
    assert_eq!(fake.tokens_issued(), 1);
    let record = desk.store().get("po-acme").unwrap().unwrap();
    assert_eq!(record.injected["subscription_key"].expose(), SUBSCRIPTION_KEY);
}
