//! Several processes on one store: compare-and-set from two processes loses no update, and a
//! process killed with SIGKILL in the middle of writes or of a key rotation loses nothing that was
//! committed. The child processes are this test binary, started again with a role.

mod support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use authplug_store::{Change, Injected, Keyring, Location, Store, StoreError};
use support::{exposed, secrets, system, Backend, Kind};

const ROLE: &str = "AUTHPLUG_STORE_CHILD";

/// The entry point of child processes; does nothing in a normal test run.
#[test]
fn child_process() {
    let Ok(role) = std::env::var(ROLE) else { return };
    let location = Location::parse(&std::env::var("AUTHPLUG_STORE_LOCATION").unwrap());
    let key_file = std::env::var("AUTHPLUG_STORE_KEY_FILE").unwrap();
    let store = Store::open(&location, Keyring::from_file(Path::new(&key_file)).unwrap()).unwrap();
    match role.as_str() {
        // Increments the counter of system `s` `AUTHPLUG_STORE_COUNT` times (forever if unset) by
        // compare-and-set, printing `commit: <version> <counter>` after each commit.
        // With AUTHPLUG_STORE_THREADS, that many threads do so at once (their commits are then
        // grouped), each `AUTHPLUG_STORE_COUNT` times.
        "increment" => {
            let count: Option<u64> =
                std::env::var("AUTHPLUG_STORE_COUNT").ok().map(|c| c.parse().unwrap());
            let threads: usize =
                std::env::var("AUTHPLUG_STORE_THREADS").map_or(1, |t| t.parse().unwrap());
            std::thread::scope(|scope| {
                for _ in 0..threads {
                    scope.spawn(|| increment(&store, count));
                }
            });
        }
        "rotate" => {
            let rotation =
                store.rotate_key(&mut |done, total| println!("rekeyed {done}/{total}")).unwrap();
            println!("rotated {}", rotation.current_key);
        }
        other => panic!("unknown role {other}"),
    }
}

fn increment(store: &Store, count: Option<u64>) {
    let mut done = 0;
    while count.is_none_or(|c| done < c) {
        let record = store.get("s").unwrap().unwrap();
        let next: u64 = record.injected["counter"].expose().parse::<u64>().unwrap() + 1;
        let change = Change {
            injected: Some(Injected::new(
                secrets(&[("counter", &next.to_string()), ("token", &format!("token-{next}"))]),
                None,
            )),
            ..Change::default()
        };
        match store.update("s", record.summary.version, change, "child") {
            Ok(updated) => {
                println!("commit: {} {next}", updated.summary.version);
                done += 1;
            }
            Err(StoreError::VersionConflict { .. }) => continue,
            Err(other) => panic!("{other}"),
        }
    }
}

fn child(
    backend: &Backend,
    key_file: &Path,
    role: &str,
    count: Option<u64>,
    threads: usize,
) -> Child {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["child_process", "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env("AUTHPLUG_STORE_LOCATION", backend.location_text())
        .env("AUTHPLUG_STORE_KEY_FILE", key_file)
        .env("AUTHPLUG_STORE_THREADS", threads.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(count) = count {
        command.env("AUTHPLUG_STORE_COUNT", count.to_string());
    }
    command.spawn().unwrap()
}

/// `(version, counter)` of every `ok` line.
fn commits(lines: &[String]) -> Vec<(i64, u64)> {
    lines
        .iter()
        // libtest may print `test child_process ... ` in front of the first line.
        .filter_map(|l| l.split_once("commit: ").map(|(_, rest)| rest))
        .map(|l| {
            let (version, counter) = l.split_once(' ').unwrap();
            (version.parse().unwrap(), counter.parse().unwrap())
        })
        .collect()
}

fn setup(kind: Kind) -> (Backend, std::path::PathBuf, Store) {
    let backend = Backend::new(kind);
    let key_file = backend.dir.path().join("master.key");
    let store = backend.open_with(Keyring::from_file(&key_file).unwrap()).unwrap();
    store.create(system("s", &[("counter", "0"), ("token", "token-0")]), "test").unwrap();
    (backend, key_file, store)
}

fn two_processes_lose_no_update(kind: Kind) {
    const EACH: u64 = 1000;
    let (backend, key_file, store) = setup(kind);
    let children = [
        child(&backend, &key_file, "increment", Some(EACH), 1),
        child(&backend, &key_file, "increment", Some(EACH), 1),
    ];
    let mut all = Vec::new();
    for mut process in children {
        let lines: Vec<String> =
            BufReader::new(process.stdout.take().unwrap()).lines().map(Result::unwrap).collect();
        assert!(process.wait().unwrap().success());
        let mine = commits(&lines);
        assert_eq!(mine.len() as u64, EACH, "every process made all its writes");
        all.extend(mine);
    }
    // Every successful write is a distinct version, each wrote the counter its version implies,
    // and together they are every version from 2 to 2001: none lost, none doubled.
    let versions: BTreeSet<i64> = all.iter().map(|(v, _)| *v).collect();
    assert_eq!(versions.len(), all.len(), "no version was written twice");
    assert_eq!(versions, (2..=(2 * EACH as i64 + 1)).collect());
    assert!(all.iter().all(|(version, counter)| *counter as i64 == version - 1));
    let record = store.get("s").unwrap().unwrap();
    assert_eq!(record.summary.version, 2 * EACH as i64 + 1);
    assert_eq!(exposed(&record.injected)["counter"], (2 * EACH).to_string());
}

fn killed_writers_lose_nothing_committed(kind: Kind) {
    let (backend, key_file, _store) = setup(kind);
    for round in 0..50 {
        // Four writer threads, so that commits are grouped when the kill lands.
        let mut process = child(&backend, &key_file, "increment", None, 4);
        let mut reader = BufReader::new(process.stdout.take().unwrap());
        let mut lines = Vec::new();
        // Synchronise on the first commit, then kill at a random moment of the writing.
        loop {
            let mut line = String::new();
            assert!(reader.read_line(&mut line).unwrap() > 0, "the writer died before writing");
            let committed = line.contains("commit: ");
            lines.push(line.trim().to_owned());
            if committed {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(support::random_below(40)));
        process.kill().unwrap(); // SIGKILL
        process.wait().unwrap();
        lines.extend(reader.lines().map_while(Result::ok));
        let (last_version, _) = *commits(&lines).last().unwrap();

        let store = backend.open_with(Keyring::from_file(&key_file).unwrap()).unwrap();
        let record = store.get("s").unwrap().unwrap();
        let counter: i64 = record.injected["counter"].expose().parse().unwrap();
        assert!(
            record.summary.version >= last_version,
            "round {round}: a committed write was lost"
        );
        assert_eq!(counter, record.summary.version - 1, "round {round}: torn write");
        assert_eq!(exposed(&record.injected)["token"], format!("token-{counter}"));
    }
}

fn killed_rotations_lose_nothing(kind: Kind) {
    let backend = Backend::new(kind);
    let key_file = backend.dir.path().join("master.key");
    let store = backend.open_with(Keyring::from_file(&key_file).unwrap()).unwrap();
    for i in 0..30 {
        store
            .create(system(&format!("s{i:02}"), &[("token", &format!("rotated-value-{i}"))]), "t")
            .unwrap();
    }
    drop(store);
    let mut interrupted = 0;
    for round in 0..50 {
        let mut process = child(&backend, &key_file, "rotate", None, 1);
        std::thread::sleep(Duration::from_millis(support::random_below(60)));
        process.kill().unwrap();
        process.wait().unwrap();
        let out: Vec<String> =
            BufReader::new(process.stdout.take().unwrap()).lines().map_while(Result::ok).collect();
        if !out.iter().any(|l| l.contains("rotated ")) {
            interrupted += 1;
        }
        // Whatever the moment, the store opens and every value decrypts.
        let store = backend
            .open_with(Keyring::from_file(&key_file).unwrap())
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        for i in 0..30 {
            let record = store.get(&format!("s{i:02}")).unwrap().unwrap();
            assert_eq!(
                exposed(&record.injected)["token"],
                format!("rotated-value-{i}"),
                "round {round}"
            );
        }
    }
    // Finish whatever rotation is pending: afterwards one key seals everything.
    let store = backend.open_with(Keyring::from_file(&key_file).unwrap()).unwrap();
    store.rotate_key(&mut |_, _| {}).unwrap();
    let keys: BTreeSet<String> =
        store.list().unwrap().into_iter().flat_map(|s| s.key_ids).collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(store.keyring().ids().len(), 1, "retired keys left the key file");
    eprintln!("{kind:?}: {interrupted} of 50 rotations were killed before they finished");
    assert!(interrupted > 0, "no kill landed inside a rotation: the test proved nothing");
}

mod sqlite {
    use super::*;

    #[test]
    fn two_processes_1000_compare_and_sets_each_lose_no_update() {
        two_processes_lose_no_update(Kind::Sqlite);
    }

    #[test]
    fn sigkill_during_writes_50_times_loses_nothing_committed() {
        killed_writers_lose_nothing_committed(Kind::Sqlite);
    }

    #[test]
    fn sigkill_during_rotate_key_50_times_loses_nothing() {
        killed_rotations_lose_nothing(Kind::Sqlite);
    }
}

mod postgres {
    use super::*;

    #[test]
    fn two_processes_1000_compare_and_sets_each_lose_no_update() {
        two_processes_lose_no_update(Kind::Postgres);
    }

    #[test]
    fn sigkill_during_writes_50_times_loses_nothing_committed() {
        killed_writers_lose_nothing_committed(Kind::Postgres);
    }

    #[test]
    fn sigkill_during_rotate_key_50_times_loses_nothing() {
        killed_rotations_lose_nothing(Kind::Postgres);
    }
}
