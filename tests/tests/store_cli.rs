//! The credential store from the command line, as an operator uses it.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use authplug_protocol::Secret;
use authplug_store::{Keyring, Location, NewSystem, Store};
use tests::{authplug_bin, stderr, stdout};

const ACCESS: &str = "cli-access-token-41d7";
const CLIENT_SECRET: &str = "cli-client-secret-9be2";

struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    /// A SQLite store with one system, sealed by a key file, both in a temporary folder.
    fn new() -> Self {
        let setup = Self { dir: tempfile::tempdir().unwrap() };
        let store = setup.store();
        store
            .create(
                NewSystem {
                    id: "hubspot-prod".into(),
                    scheme: "oauth2".into(),
                    parameters: BTreeMap::from([(
                        "token_url".into(),
                        "https://api.hubapi.com/oauth/v1/token".into(),
                    )]),
                    required: BTreeMap::from([(
                        "client_secret".into(),
                        Secret::new(CLIENT_SECRET),
                    )]),
                    injected: BTreeMap::from([("oauth_access_token".into(), Secret::new(ACCESS))]),
                    expires_at: Some(1_900_000_000),
                },
                "test",
            )
            .unwrap();
        setup
    }

    fn store_path(&self) -> std::path::PathBuf {
        self.dir.path().join("store.sqlite3")
    }

    fn key_file(&self) -> std::path::PathBuf {
        self.dir.path().join("master.key")
    }

    fn store(&self) -> Store {
        Store::open(
            &Location::Sqlite(self.store_path()),
            Keyring::from_file(&self.key_file()).unwrap(),
        )
        .unwrap()
    }

    fn run(&self, args: &[&str]) -> Output {
        run(
            args,
            &[
                ("AUTHPLUG_STORE", self.store_path().to_str().unwrap()),
                ("AUTHPLUG_KEY_FILE", self.key_file().to_str().unwrap()),
                ("USER", "operator"),
            ],
        )
    }
}

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(authplug_bin());
    command
        .args(args)
        .env_remove("AUTHPLUG_MASTER_KEY")
        .env_remove("AUTHPLUG_STORE")
        .env_remove("AUTHPLUG_KEY_FILE");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().unwrap()
}

fn all_output(output: &Output) -> String {
    format!("{}{}", stdout(output), stderr(output))
}

#[test]
fn systems_lists_metadata_and_never_values() {
    let setup = Setup::new();
    let output = setup.run(&["systems"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let table = stdout(&output);
    let row = table.lines().find(|l| l.starts_with("hubspot-prod")).expect("a row");
    for fact in ["oauth2", "active", "2030-03-17 17:46:40", " 1 "] {
        assert!(row.contains(fact), "{fact:?} missing in {row:?}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&setup.run(&["systems", "--json"]))).unwrap();
    assert_eq!(json[0]["id"], "hubspot-prod");
    assert_eq!(json[0]["secret_names"][0], "injected.oauth_access_token");
    for output in [output, setup.run(&["systems", "--json"])] {
        let text = all_output(&output);
        assert!(!text.contains(ACCESS) && !text.contains(CLIENT_SECRET), "{text}");
    }
}

#[test]
fn show_masks_values_unless_revealed_and_reveal_is_audited() {
    let setup = Setup::new();
    let masked = setup.run(&["systems", "show", "hubspot-prod"]);
    assert!(masked.status.success());
    let text = all_output(&masked);
    assert!(text.contains("oauth_access_token = ********"), "{text}");
    assert!(text.contains("token_url = \"https://api.hubapi.com/oauth/v1/token\""), "{text}");
    assert!(!text.contains(ACCESS) && !text.contains(CLIENT_SECRET));
    assert!(setup.store().audit("hubspot-prod").unwrap().iter().all(|e| e.action != "revealed"));

    let revealed = setup.run(&["systems", "show", "hubspot-prod", "--reveal"]);
    assert!(stdout(&revealed).contains(&format!("oauth_access_token = {ACCESS}")));
    let json: serde_json::Value = serde_json::from_str(&stdout(&setup.run(&[
        "systems",
        "show",
        "hubspot-prod",
        "--reveal",
        "--json",
    ])))
    .unwrap();
    assert_eq!(json["required"]["client_secret"], CLIENT_SECRET);
    let trail = setup.store().audit("hubspot-prod").unwrap();
    let reveals: Vec<_> = trail.iter().filter(|e| e.action == "revealed").collect();
    assert_eq!(reveals.len(), 2);
    assert_eq!(reveals[0].actor, "cli:operator");
    let audit = setup.run(&["systems", "audit", "hubspot-prod"]);
    assert!(stdout(&audit).contains("cli:operator") && stdout(&audit).contains("revealed"));
}

#[test]
fn delete_needs_confirmation_and_unknown_systems_exit_4() {
    let setup = Setup::new();
    let refused = setup.run(&["systems", "delete", "hubspot-prod"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(stderr(&refused).contains("--yes"));
    assert!(setup.store().get("hubspot-prod").unwrap().is_some());
    assert!(setup.run(&["systems", "delete", "hubspot-prod", "--yes"]).status.success());
    assert!(setup.store().get("hubspot-prod").unwrap().is_none());
    let missing = setup.run(&["systems", "show", "hubspot-prod"]);
    assert_eq!(missing.status.code(), Some(4));
    assert_eq!(stderr(&missing).trim(), "error: no system `hubspot-prod`");
}

#[test]
fn rotate_key_reseals_and_the_values_stay_readable() {
    let setup = Setup::new();
    let before = setup.store().list().unwrap()[0].key_ids.clone();
    let output = setup.run(&["store", "rotate-key", "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let rotation: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(rotation["systems_rekeyed"], 1);
    assert_eq!(rotation["retired_keys"][0], before[0]);
    assert!(stderr(&output).contains("re-encrypting: 1/1 systems"));
    let record = setup.store().get("hubspot-prod").unwrap().unwrap();
    assert_eq!(record.injected["oauth_access_token"].expose(), ACCESS);
    assert_ne!(record.summary.key_ids, before);
}

#[test]
fn export_and_import_restore_a_store() {
    let setup = Setup::new();
    let bundle = setup.dir.path().join("backup.authplug");
    let output = setup.run(&["store", "export", "--output", bundle.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&bundle).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(!String::from_utf8_lossy(&std::fs::read(&bundle).unwrap()).contains(ACCESS));

    let other = setup.dir.path().join("restored.sqlite3");
    let restore = |extra: &[&str]| {
        let mut args = vec!["store", "import", bundle.to_str().unwrap()];
        args.extend_from_slice(extra);
        run(
            &args,
            &[
                ("AUTHPLUG_STORE", other.to_str().unwrap()),
                ("AUTHPLUG_KEY_FILE", setup.key_file().to_str().unwrap()),
            ],
        )
    };
    let output = restore(&[]);
    assert!(
        stdout(&output).contains("1 created, 0 replaced, 0 skipped"),
        "{}",
        all_output(&output)
    );
    assert!(stdout(&restore(&[])).contains("0 created, 0 replaced, 1 skipped"));
    assert!(stdout(&restore(&["--replace"])).contains("0 created, 1 replaced, 0 skipped"));
    let store =
        Store::open(&Location::Sqlite(other), Keyring::from_file(&setup.key_file()).unwrap())
            .unwrap();
    assert_eq!(
        store.get("hubspot-prod").unwrap().unwrap().injected["oauth_access_token"].expose(),
        ACCESS
    );
}

#[test]
fn a_wrong_master_key_exits_5_with_a_clear_message() {
    let setup = Setup::new();
    let wrong = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="; // 32 bytes, not the store's key
    let output = run(
        &["systems"],
        &[("AUTHPLUG_STORE", setup.store_path().to_str().unwrap()), ("AUTHPLUG_MASTER_KEY", wrong)],
    );
    assert_eq!(output.status.code(), Some(5));
    let message = stderr(&output);
    assert!(message.starts_with("error: wrong master key: values are sealed under k"), "{message}");
    assert_eq!(message.lines().count(), 1);
    let malformed = run(
        &["systems"],
        &[
            ("AUTHPLUG_STORE", setup.store_path().to_str().unwrap()),
            ("AUTHPLUG_MASTER_KEY", "short"),
        ],
    );
    assert_eq!(malformed.status.code(), Some(5));
    assert!(stderr(&malformed).contains("AUTHPLUG_MASTER_KEY"), "{}", stderr(&malformed));
}

#[test]
fn the_default_store_and_key_follow_xdg() {
    let home = tempfile::tempdir().unwrap();
    let data = home.path().join("data");
    let config = home.path().join("config");
    let output = run(
        &["systems"],
        &[("XDG_DATA_HOME", data.to_str().unwrap()), ("XDG_CONFIG_HOME", config.to_str().unwrap())],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stderr(&output).contains("no systems in"));
    let key_file = config.join("authplug/master.key");
    assert!(data.join("authplug/store.sqlite3").is_file());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(Path::new(&key_file)).unwrap().permissions().mode() & 0o777,
        0o600
    );
}
