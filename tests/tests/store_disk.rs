//! Issue 16, items 12 and 17: a SQLite store on a file system that fills up or turns read-only,
//! a real one (a small tmpfs this test mounts; CI runs as root). Changes fail with a clear
//! error and lose nothing, stored secrets are still served, `/readyz` says writes fail, and
//! everything works again once space returns.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tests::desk::Desk;
use tests::{stderr, stdout};

const KEY: &str = "wc-api-key-disk-7e21";

/// A 4 MiB tmpfs mounted on a temporary folder, unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            mounted.status.success(),
            "mounting a small tmpfs needs root (CI runs as root): {}",
            stderr(&mounted)
        );
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the file system to the last byte: the file that holds the space.
    fn fill(&self) -> PathBuf {
        let filler = self.path().join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 4096];
        loop {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
                Err(e) => panic!("filling the disk: {e}"),
            }
        }
        filler
    }

    fn remount(&self, mode: &str) {
        let done = Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(self.path())
            .output()
            .unwrap();
        assert!(done.status.success(), "{}", stderr(&done));
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// `authplug` of the desk, its store on `store`.
fn authplug(desk: &Desk, store: &Path) -> Command {
    let mut command = desk.authplug();
    command.env("AUTHPLUG_STORE", store);
    command
}

fn connect(desk: &Desk, store: &Path, id: &str) -> Output {
    let connector = desk.dir.path().join("woocommerce");
    if !connector.exists() {
        desk.connector("woocommerce", |_| {});
    }
    authplug(desk, store)
        .arg("connect")
        .arg(&connector)
        .args(["--system", id, "--secret", &format!("api_key={KEY}"), "--no-prompt"])
        .args(["--param", "consumer_key=ck", "--param", "domain=shop.example.com"])
        .output()
        .unwrap()
}

#[test]
fn a_full_file_system_fails_changes_clearly_serves_stored_secrets_and_recovers() {
    let disk = SmallDisk::mount();
    let desk = Desk::new();
    let store = disk.path().join("store.sqlite3");
    let connected = connect(&desk, &store, "w");
    assert!(connected.status.success(), "{}", stderr(&connected));
    let (tokens, admin) = desk.admin_token();
    let mut command = authplug(&desk, &store);
    command.args(["serve", "--authorize-cache-ms", "0"]);
    let (mut child, url, _log) = tests::serve(&mut command, &tokens);
    assert_eq!(tests::call(&url, "POST", "/v1/systems/w/authorize", &admin).0, 200);

    let filler = disk.fill();
    // Stored secrets are still served, by serve and by the read-only commands.
    for _ in 0..3 {
        let (status, body) = tests::call(&url, "POST", "/v1/systems/w/authorize", &admin);
        assert_eq!(status, 200, "{body}");
        assert!(body["headers"].to_string().contains(KEY));
    }
    let listed = authplug(&desk, &store).args(["systems", "--json"]).output().unwrap();
    assert!(listed.status.success(), "{}", stderr(&listed));
    assert!(stdout(&listed).contains("\"w\""), "{}", stdout(&listed));
    let token = authplug(&desk, &store).args(["token", "w"]).output().unwrap();
    assert!(token.status.success(), "{}", stderr(&token));
    assert!(stdout(&token).contains(KEY));
    // Changes fail, saying why, and lose nothing.
    let refused = connect(&desk, &store, "x");
    assert_eq!(refused.status.code(), Some(5), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("the file system is full"), "{}", stderr(&refused));
    let (status, body) = tests::call(&url, "DELETE", "/v1/systems/w", &admin);
    assert_eq!((status, body["error"].as_str()), (503, Some("store_unavailable")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("full"), "{body}");
    assert_eq!(
        tests::call(&url, "POST", "/v1/systems/w/authorize", &admin).0,
        200,
        "w is still there"
    );
    let (status, ready) = tests::call(&url, "GET", "/readyz", &admin);
    assert_eq!((status, ready["status"].as_str()), (200, Some("degraded")), "{ready}");
    assert_eq!(ready["store"]["writes"], "failing", "{ready}");

    // Space returns: changes work again, and readiness follows the next write.
    std::fs::remove_file(filler).unwrap();
    let connected = connect(&desk, &store, "x");
    assert!(connected.status.success(), "{}", stderr(&connected));
    assert_eq!(tests::call(&url, "DELETE", "/v1/systems/x", &admin).0, 204);
    let (_, ready) = tests::call(&url, "GET", "/readyz", &admin);
    assert_eq!((ready["status"].as_str(), &ready["store"]["writes"]), (Some("ok"), &"ok".into()));
    assert!(tests::terminate(&mut child).success());

    // With no process holding the store open, SQLite cannot create the shared-memory index it
    // reads a WAL store through on a full disk: said so, in one line, and nothing changed.
    let filler = disk.fill();
    let listed = authplug(&desk, &store).args(["systems", "--json"]).output().unwrap();
    assert_eq!(listed.status.code(), Some(5), "{}", stderr(&listed));
    let said = stderr(&listed);
    assert!(said.contains("the file system is full") && said.contains("free some space"), "{said}");
    std::fs::remove_file(filler).unwrap();
    let listed = authplug(&desk, &store).args(["systems", "--json"]).output().unwrap();
    assert!(listed.status.success(), "{}", stderr(&listed));
    assert!(stdout(&listed).contains("\"w\"") && !stdout(&listed).contains("\"x\""));
}

#[test]
fn a_read_only_file_system_serves_reads_and_refuses_changes_in_one_line() {
    let disk = SmallDisk::mount();
    let desk = Desk::new();
    let store = disk.path().join("store.sqlite3");
    let connected = connect(&desk, &store, "w");
    assert!(connected.status.success(), "{}", stderr(&connected));
    disk.remount("ro");

    let listed = authplug(&desk, &store).args(["systems", "--json"]).output().unwrap();
    assert!(listed.status.success(), "{}", stderr(&listed));
    assert!(stdout(&listed).contains("\"w\""));
    let token = authplug(&desk, &store).args(["token", "w"]).output().unwrap();
    assert!(token.status.success(), "{}", stderr(&token));
    assert!(stdout(&token).contains(KEY));
    let deleted =
        authplug(&desk, &store).args(["systems", "delete", "w", "--yes"]).output().unwrap();
    assert_eq!(deleted.status.code(), Some(5), "{}", stderr(&deleted));
    let said = stderr(&deleted);
    assert!(said.contains("cannot be written") || said.contains("read-only"), "{said}");
    assert!(!said.contains(KEY));

    disk.remount("rw");
    let deleted =
        authplug(&desk, &store).args(["systems", "delete", "w", "--yes"]).output().unwrap();
    assert!(deleted.status.success(), "{}", stderr(&deleted));
}
