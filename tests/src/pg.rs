//! A PostgreSQL cluster of one test's own, which it may stop and start again (the shared one of
//! `cargo xtask test` serves every other test meanwhile). Listens on 127.0.0.1 only; stopped by
//! its data folder, never by name.

use std::path::PathBuf;
use std::process::Command;

#[derive(Debug)]
pub struct Cluster {
    bin: PathBuf,
    data: tempfile::TempDir,
    pub port: u16,
    /// initdb and postgres refuse to run as root: then they run as `postgres`.
    run_as: Option<&'static str>,
}

impl Cluster {
    /// A new cluster, started, with the client tools of `AUTHPLUG_TEST_PG_BIN`.
    pub fn start() -> Self {
        let bin = PathBuf::from(
            std::env::var_os("AUTHPLUG_TEST_PG_BIN")
                .expect("AUTHPLUG_TEST_PG_BIN is not set: run the tests with `cargo xtask test`"),
        );
        let root = Command::new("id").arg("-u").output().unwrap().stdout.starts_with(b"0\n");
        let run_as = root.then_some("postgres");
        let data = tempfile::tempdir().unwrap();
        if let Some(user) = run_as {
            let mut owned = Command::new("chown");
            owned.arg(format!("{user}:{user}")).arg(data.path());
            assert!(owned.status().unwrap().success());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let cluster = Self { bin, data, port, run_as };
        let folder = cluster.folder();
        cluster
            .run("initdb", &["-D", &folder, "-U", "postgres", "-A", "trust", "--no-instructions"]);
        cluster.start_again();
        cluster
    }

    fn folder(&self) -> String {
        self.data.path().join("db").display().to_string()
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let program = self.bin.join(tool);
        let mut command = match self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&program);
                c
            }
            None => Command::new(&program),
        };
        let status = command.args(args).stdout(std::process::Stdio::null()).status().unwrap();
        assert!(status.success(), "{tool} {args:?}: {status}");
    }

    /// The admin URL of the `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the cluster (again), waiting until it accepts connections.
    pub fn start_again(&self) {
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {}",
            self.port,
            self.data.path().join("db").display()
        );
        let log = self.data.path().join("db/server.log").display().to_string();
        self.run("pg_ctl", &["-D", &self.folder(), "-o", &options, "-l", &log, "-w", "start"]);
    }

    /// Stops it as an operator's restart does (`-m fast`: sessions are terminated).
    pub fn stop(&self) {
        self.run("pg_ctl", &["-D", &self.folder(), "-m", "fast", "-w", "stop"]);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let (folder, pg_ctl) = (self.folder(), self.bin.join("pg_ctl"));
        let mut command = match self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(pg_ctl);
                c
            }
            None => Command::new(pg_ctl),
        };
        let _ = command
            .args(["-D", &folder, "-m", "immediate", "-w", "stop"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}
