//! Real peers the tests need, started on loopback and stopped by their own handle.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Result;

/// A throwaway PostgreSQL cluster in a temporary folder, listening on 127.0.0.1 only.
pub struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    run_as: Option<&'static str>,
}

impl Postgres {
    pub fn start() -> Result<Self> {
        let bin = find_bin()?;
        // initdb and postgres refuse to run as root: run them as the `postgres` user then.
        let run_as = is_root().then_some("postgres");
        let data = std::env::temp_dir().join(format!("authplug-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data);
        std::fs::create_dir_all(&data)
            .map_err(|e| format!("cannot create {}: {e}", data.display()))?;
        if let Some(user) = run_as {
            chown(&data, user)?;
        }
        let port = free_port()?;
        let pg = Self { bin, data, port, run_as };
        pg.run(
            "initdb",
            &[
                "-D",
                path(&pg.data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-instructions",
            ],
        )?;
        let options = format!("-c listen_addresses=127.0.0.1 -p {} -k {}", pg.port, path(&pg.data));
        let log = pg.data.join("server.log");
        if let Err(e) = pg
            .run("pg_ctl", &["-D", path(&pg.data), "-o", &options, "-l", path(&log), "-w", "start"])
        {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            let _ = std::fs::remove_dir_all(&pg.data);
            return Err(format!("{e}\n{log}"));
        }
        eprintln!("xtask: PostgreSQL on 127.0.0.1:{} ({})", pg.port, pg.data.display());
        Ok(pg)
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Tells tests where the server is and where its client tools are.
    pub fn set_env(&self, command: &mut Command) {
        command.env("AUTHPLUG_TEST_PG_URL", self.url()).env("AUTHPLUG_TEST_PG_BIN", &self.bin);
    }

    pub fn stop(self) {
        let _ = self.run("pg_ctl", &["-D", path(&self.data), "-m", "fast", "-w", "stop"]);
        let _ = std::fs::remove_dir_all(&self.data);
    }

    fn run(&self, tool: &str, args: &[&str]) -> Result {
        let program = self.bin.join(tool);
        let mut command = match self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&program);
                c
            }
            None => Command::new(&program),
        };
        command.args(args).stdout(std::process::Stdio::null());
        let status =
            command.status().map_err(|e| format!("cannot run {}: {e}", program.display()))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("{tool} failed with {status}"))
        }
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

/// `AUTHPLUG_PG_BIN`, else the newest `/usr/lib/postgresql/<version>/bin`, else `pg_config`.
fn find_bin() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("AUTHPLUG_PG_BIN") {
        return Ok(dir.into());
    }
    let mut candidates: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    candidates.sort();
    if let Some((_, bin)) = candidates.pop() {
        return Ok(bin);
    }
    let output = Command::new("pg_config").arg("--bindir").output();
    match output {
        Ok(o) if o.status.success() => Ok(PathBuf::from(String::from_utf8_lossy(&o.stdout).trim())),
        _ => {
            Err("no PostgreSQL server binaries: `apt-get install postgresql` (as .ci/run does) or \
                  set AUTHPLUG_PG_BIN"
                .into())
        }
    }
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false)
}

fn chown(dir: &Path, user: &str) -> Result {
    let status = Command::new("chown")
        .arg(format!("{user}:{user}"))
        .arg(dir)
        .status()
        .map_err(|e| format!("cannot run chown: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("chown {user} {} failed", dir.display()))
    }
}

fn free_port() -> Result<u16> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}

/// Installs the Node peers (oidc-provider) from `tests/peers/package-lock.json` with `npm ci`,
/// unless they are installed already. Returns the folder the tests start them from.
pub fn install_node_peers(root: &Path) -> Result<PathBuf> {
    let dir = root.join("tests/peers");
    let installed = dir.join("node_modules/.package-lock.json");
    let lock = dir.join("package-lock.json");
    let fresh = match (std::fs::metadata(&installed), std::fs::metadata(&lock)) {
        (Ok(i), Ok(l)) => i.modified().ok() >= l.modified().ok(),
        _ => false,
    };
    if !fresh {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .status()
            .map_err(|e| format!("cannot run npm (install Node.js 20 or newer): {e}"))?;
        if !status.success() {
            return Err(format!("npm ci in {} failed with {status}", dir.display()));
        }
    }
    Ok(dir)
}
